"""`humanoid-inspection xray-train --model unet`: train the previous TinyUNet segmenter.

Reproducible from the command and the seed: the training radiographs are simulated from part
seeds [seed_base, seed_base + n_images) (families in turn), crops and batches come from a
seeded generator, torch runs deterministic on the CPU with a fixed thread count. The held-out
evaluation set of `xray-eval` uses part seeds from 100000 on, never seen here.

Example (the committed weights, about 10 min on 2 cores):
    humanoid-inspection xray-train --model unet \
        --out src/humanoid_inspection/xray/models/adr_unet.pt
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from humanoid_inspection.xray.train_options import (
    add_run_options, first_not_positive, training_parser)

IGNORE_LABEL = 255       # pixels of nearly invisible defects: neither defect nor background


def simulate_training_set(n_images: int, seed_base: int, size_px: int, defect_probability: float,
                          progress: bool = True, cache=None):
    """Simulate radiographs and turn them into training items.

    Each item is (inputs float16 (2,H,W), labels uint8 (H,W), centres int (n,2) rows/cols of
    the visible defects). Defects with |contrast| < VISIBLE_CONTRAST (metrics.py) are labelled
    IGNORE_LABEL: the loss neither rewards nor punishes the network on them.
    `cache`: optional .npz path; reused when it holds the same set (same arguments).
    """
    from tqdm import tqdm

    from humanoid_inspection.xray.detector import validate_radiograph
    from humanoid_inspection.xray.detector_unet import CLASSES, preprocess
    from humanoid_inspection.xray.metrics import VISIBLE_CONTRAST
    from humanoid_inspection.xray.phantoms import PART_FAMILIES, generate_part
    from humanoid_inspection.xray.simulator import XraySimConfig, simulate_radiograph

    key = f'{n_images}-{seed_base}-{size_px}-{defect_probability}-{VISIBLE_CONTRAST}'
    if cache is not None and Path(cache).is_file():
        data = np.load(cache)
        if str(data['key']) == key:
            return [(data[f'x{i}'], data[f'y{i}'], data[f'c{i}']) for i in range(n_images)]
    config = XraySimConfig.for_size(size_px)
    items = []
    for i in tqdm(range(n_images), desc='simulate', disable=not progress, file=sys.stdout):
        seed = seed_base + i
        family = PART_FAMILIES[i % len(PART_FAMILIES)]
        part = generate_part(family, seed, defect_probability=defect_probability)
        rad = simulate_radiograph(part, config, seed=seed)
        inputs = preprocess(validate_radiograph(rad.image)).astype(np.float16)
        labels = np.zeros(rad.image.shape, np.uint8)
        centres = []
        for t in rad.truth:
            x0, y0, x1, y1 = t.box_xyxy
            visible = abs(t.contrast) >= VISIBLE_CONTRAST
            labels[y0:y1, x0:x1][t.mask] = CLASSES.index(t.kind) if visible else IGNORE_LABEL
            if visible:
                centres.append(((y0 + y1) // 2, (x0 + x1) // 2))
        items.append((inputs, labels, np.array(centres, np.int64).reshape(-1, 2)))
    if cache is not None:
        arrays = {'key': np.array(key)}
        for i, (x, y, c) in enumerate(items):
            arrays.update({f'x{i}': x, f'y{i}': y, f'c{i}': c})
        np.savez(cache, **arrays)
    return items


def sample_batch(items, rng: np.random.Generator, batch: int, crop: int, p_defect: float):
    """A batch of random crops (inputs (B,2,c,c), labels (B,c,c)), flipped/rotated.

    A share p_defect of the crops contains a visible defect, picked uniformly among the
    defects (not among defect pixels, which would favour the large cracks).
    """
    xs, ys = [], []
    for _ in range(batch):
        inputs, labels, centres = items[int(rng.integers(len(items)))]
        h, w = labels.shape
        if rng.random() < p_defect and len(centres):
            cy, cx = centres[int(rng.integers(len(centres)))]
            y0 = int(np.clip(cy - rng.integers(8, crop - 8), 0, h - crop))
            x0 = int(np.clip(cx - rng.integers(8, crop - 8), 0, w - crop))
        else:
            y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        x = inputs[:, y0:y0 + crop, x0:x0 + crop].astype(np.float32)
        y = labels[y0:y0 + crop, x0:x0 + crop]
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return np.stack(xs), np.stack(ys).astype(np.int64)


def train(args) -> dict:
    """Run the training described by the parsed args; return a summary dict."""
    import torch
    from tqdm import tqdm

    from humanoid_inspection.xray.checkpoint import write_weights
    from humanoid_inspection.xray.detector_unet import (
        CLASSES, TinyUNet, count_parameters, save_model)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    items = simulate_training_set(args.images, args.seed_base, args.size, args.defect_probability,
                                  progress=not args.quiet, cache=args.cache)
    t_sim = time.perf_counter() - t0
    model = TinyUNet(width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.1)
    weights = torch.tensor([1.0] + [args.defect_weight] * (len(CLASSES) - 1))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE_LABEL)
    model.train()
    losses = []
    bar = tqdm(range(args.steps), desc='train', disable=args.quiet, file=sys.stdout,
               mininterval=5.0)
    for step in bar:
        x, y = sample_batch(items, rng, args.batch, args.crop, args.p_defect)
        logits = model(torch.from_numpy(x))
        target = torch.from_numpy(y)
        # weighted cross-entropy for the class + soft Dice on defect-vs-background: defect
        # pixels are ~0.2 % of a crop, cross-entropy alone settles for 'background everywhere'
        p_defect = 1.0 - torch.softmax(logits, 1)[:, 0]
        valid = (target != IGNORE_LABEL).float()
        fg = ((target > 0) & (target != IGNORE_LABEL)).float()
        p_defect = p_defect * valid
        dice = 1.0 - (2 * (p_defect * fg).sum() + 1.0) / (p_defect.sum() + fg.sum() + 1.0)
        loss = loss_fn(logits, target)
        if args.dice_weight > 0:
            loss = loss + args.dice_weight * dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f'{np.mean(losses[-50:]):.4f}')
    t_total = time.perf_counter() - t0
    meta = {'command': 'humanoid-inspection xray-train --model unet ' + ' '.join(args.argv),
            'seed': args.seed, 'images': args.images, 'seed_base': args.seed_base,
            'size_px': args.size, 'steps': args.steps, 'batch': args.batch, 'crop': args.crop,
            'final_loss': float(np.mean(losses[-100:])), 'simulate_s': round(t_sim, 1),
            'total_s': round(t_total, 1), 'threads': args.threads,
            'parameters': count_parameters(model), 'torch': str(torch.__version__)}
    model.eval()
    return write_weights(args.out, lambda path: save_model(model, path, meta), meta)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    from humanoid_inspection.xray.detector_unet import DEFAULT_WEIGHTS
    ap = training_parser('humanoid-inspection xray-train --model unet', __doc__,
                         DEFAULT_WEIGHTS, 150, 0.9)
    ap.add_argument('--steps', type=int, default=2500)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--crop', type=int, default=192)
    ap.add_argument('--p-defect', type=float, default=0.7,
                    help='share of crops centred near a defect')
    ap.add_argument('--dice-weight', type=float, default=1.0,
                    help='weight of the defect-vs-background soft Dice term')
    ap.add_argument('--defect-weight', type=float, default=3.0,
                    help='cross-entropy weight of the defect classes')
    ap.add_argument('--width', type=int, default=16, help='U-Net first-level width')
    ap.add_argument('--lr', type=float, default=3e-3)
    add_run_options(ap, threads=2)
    return ap


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection xray-train`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    option = first_not_positive(args, ('images', 'steps', 'batch', 'threads'))
    if option:
        print(f'xray-train: {option} must be positive', file=sys.stderr)
        return 2
    if args.crop % 16 or args.crop < 32 or args.crop > args.size:
        print('xray-train: --crop must be a multiple of 16 in 32..size', file=sys.stderr)
        return 2
    summary = train(args)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
