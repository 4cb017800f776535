"""`humanoid-inspection xray-train --model seg`: train the dense SegNet detector (detector_seg).

Reproducible from the command and the seed: the training radiographs are simulated from part
seeds [seed_base, seed_base + n_images) (families in turn, the simulator's noise seeded with
the part seed, as for the 'cnn' detector), each is turned into crops by a generator seeded
with its part seed (so the worker processes that simulate in parallel change nothing), and
torch trains deterministically on the CPU with a fixed thread count. The held-out evaluation
set of `xray-eval` uses part seeds from 100000 on, never seen here.

Targets, per working pixel (the front end's resolution): the class of the defect whose exact
mask covers it (smaller defects drawn over larger ones), IGNORE for the masks of nearly
invisible defects (|contrast| < VISIBLE_CONTRAST, metrics.py).

Crops (CROP_PX square) per radiograph: CROPS_ON_DEFECTS around randomly chosen visible
defects and CROPS_ON_PART at random points of the part; training takes TRAIN_CROP_PX
sub-crops at random offsets, in one of the 8 flips/transposes.

Loss: class cross-entropy + soft Dice of defect vs background (defect pixels are a fraction of
a percent of a crop). The defect classes are weighted --defect-weight x the inverse of their
share of the defect pixels (without it the pores, the most numerous kind, took the cracks
too). AdamW, one-cycle learning rate.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from humanoid_inspection.xray.train_options import (
    add_run_options, first_not_positive, training_parser)

IGNORE = 255
CROP_PX = 160
TRAIN_CROP_PX = 128
CROPS_ON_DEFECTS = 6
CROPS_ON_PART = 4
DATA_VERSION = 3            # bumped whenever the crops change (training caches)


def label_maps(fe, truth, visible_contrast: float) -> np.ndarray:
    """Class labels (uint8, working resolution of `fe`) of a radiograph's defects.

    Args:
        fe: candidates.FrontEnd of the radiograph.
        truth: the radiograph's DefectTruth list (radiograph pixels).
        visible_contrast: defects fainter than this are IGNORE.
    """
    from humanoid_inspection.xray.detector_seg import CLASSES
    h, w = fe.z.shape
    sx, sy = fe.scale_xy
    labels = np.zeros((h, w), np.uint8)
    # larger defects first, so a small one inside a large one keeps its own label
    for t in sorted(truth, key=lambda t: -int(np.count_nonzero(t.mask))):
        x0, y0, x1, y1 = t.box_xyxy
        # a working pixel is covered when the radiograph pixel under its centre is
        wx0, wy0 = int(x0 // sx), int(y0 // sy)
        wx1, wy1 = min(w, int(np.ceil(x1 / sx))), min(h, int(np.ceil(y1 / sy)))
        cols = np.floor((np.arange(wx0, wx1) + 0.5) * sx).astype(int) - x0
        rows = np.floor((np.arange(wy0, wy1) + 0.5) * sy).astype(int) - y0
        mask = t.mask[np.clip(rows, 0, y1 - y0 - 1)[:, None],
                      np.clip(cols, 0, x1 - x0 - 1)[None, :]]
        visible = abs(t.contrast) >= visible_contrast
        labels[wy0:wy1, wx0:wx1][mask] = CLASSES.index(t.kind) if visible else IGNORE
    return labels


def radiograph_crops(seed: int, family: str, size_px: int, defect_probability: float,
                     visible_contrast: float):
    """Simulate one training radiograph and cut its crops.

    Returns:
        (inputs float16 (n, C, CROP_PX, CROP_PX), labels uint8 (n, CROP_PX, CROP_PX),
        number of visible defects).
    """
    import cv2

    from humanoid_inspection.xray.candidates import FrontEndParams, compute_front_end
    from humanoid_inspection.xray.detector import mm_per_px
    from humanoid_inspection.xray.detector_seg import seg_inputs
    from humanoid_inspection.xray.phantoms import generate_part
    from humanoid_inspection.xray.simulator import XraySimConfig, simulate_radiograph
    cv2.setNumThreads(1)
    part = generate_part(family, seed, defect_probability=defect_probability)
    rad = simulate_radiograph(part, XraySimConfig.for_size(size_px), seed=seed)
    fe = compute_front_end(rad.image, mm_per_px(rad.pixel_pitch_mm, rad.magnification),
                           FrontEndParams())
    inputs = seg_inputs(fe)
    labels = label_maps(fe, rad.truth, visible_contrast)
    h, w = labels.shape
    c = min(CROP_PX, h, w)
    rng = np.random.default_rng([seed, 23])
    sx, sy = fe.scale_xy
    visible = [t for t in rad.truth if abs(t.contrast) >= visible_contrast]
    points = []
    for _ in range(CROPS_ON_DEFECTS if visible else 0):
        t = visible[int(rng.integers(len(visible)))]
        x0, y0, x1, y1 = t.box_xyxy
        points.append((0.5 * (y0 + y1) / sy + rng.integers(-c // 3, c // 3 + 1),
                       0.5 * (x0 + x1) / sx + rng.integers(-c // 3, c // 3 + 1)))
    level = fe.B
    part_rows, part_cols = np.nonzero(level < np.percentile(level[::4, ::4], 99) - 0.1)
    for _ in range(CROPS_ON_PART):
        if len(part_rows):
            k = int(rng.integers(len(part_rows)))
            points.append((part_rows[k], part_cols[k]))
        else:
            points.append((rng.integers(h), rng.integers(w)))
    xs, ys = [], []
    for py, px in points:
        y0 = int(np.clip(py - c // 2, 0, h - c))
        x0 = int(np.clip(px - c // 2, 0, w - c))
        xs.append(inputs[:, y0:y0 + c, x0:x0 + c].astype(np.float16))
        ys.append(labels[y0:y0 + c, x0:x0 + c])
    return np.stack(xs), np.stack(ys), len(visible)


def _crops_of(job):
    return radiograph_crops(*job)


def simulate_training_crops(n_images: int, seed_base: int, size_px: int,
                            defect_probability: float, workers: int = 2,
                            progress: bool = True, cache=None):
    """Crops of the training set (radiograph_crops of part seeds seed_base + i, families in
    turn), simulated by `workers` processes (the result does not depend on their number).

    `cache`: optional .npz path reused when it holds the same set (same arguments).

    Returns:
        dict inputs, labels (stacked crops), defects (visible defects in all).
    """
    from tqdm import tqdm

    from humanoid_inspection.xray.metrics import VISIBLE_CONTRAST
    from humanoid_inspection.xray.phantoms import PART_FAMILIES
    key = (f'v{DATA_VERSION}-{n_images}-{seed_base}-{size_px}-{defect_probability}-'
           f'{VISIBLE_CONTRAST}-{CROP_PX}-{CROPS_ON_DEFECTS}-{CROPS_ON_PART}')
    if cache is not None and Path(cache).is_file():
        data = np.load(cache)
        if str(data['key']) == key:
            return {k: data[k] for k in ('inputs', 'labels', 'defects')}
    jobs = [(seed_base + i, PART_FAMILIES[i % len(PART_FAMILIES)], size_px,
             defect_probability, VISIBLE_CONTRAST) for i in range(n_images)]
    bar = tqdm(total=n_images, desc='simulate', disable=not progress, file=sys.stdout,
               mininterval=5.0)
    results = []
    if workers > 1:
        import multiprocessing as mp
        with mp.get_context('spawn').Pool(workers) as pool:
            for r in pool.imap(_crops_of, jobs, chunksize=4):
                results.append(r)
                bar.update(1)
    else:
        for job in jobs:
            results.append(_crops_of(job))
            bar.update(1)
    bar.close()
    out = {'inputs': np.concatenate([r[0] for r in results]),
           'labels': np.concatenate([r[1] for r in results]),
           'defects': np.array(sum(r[2] for r in results))}
    if cache is not None:
        np.savez(cache, key=np.array(key), **out)
    return out


def dihedral_batch(arrays, k: int):
    """The same one of the 8 flips/transposes applied to the last two axes of every array."""
    out = []
    for a in arrays:
        if k & 4:
            a = np.swapaxes(a, -1, -2)
        if k & 1:
            a = a[..., ::-1]
        if k & 2:
            a = a[..., ::-1, :]
        out.append(np.ascontiguousarray(a))
    return out


def train(args) -> dict:
    """Run the training described by the parsed args; return a summary dict."""
    import torch
    from tqdm import tqdm

    from humanoid_inspection.xray.candidates import FrontEndParams
    from humanoid_inspection.xray.checkpoint import write_weights
    from humanoid_inspection.xray.detector_seg import (
        CLASSES, SegNet, count_parameters, save_model)
    from humanoid_inspection.xray.train_cli import _optimiser_step

    t0 = time.perf_counter()
    data = simulate_training_crops(args.images, args.seed_base, args.size,
                                   args.defect_probability, args.workers,
                                   progress=not args.quiet, cache=args.cache)
    t_sim = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    inputs, labels = data['inputs'], data['labels']
    n = len(inputs)
    model = SegNet(width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, n // args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total,
                                                pct_start=0.1)
    counts = np.bincount(labels.ravel(), minlength=IGNORE + 1)[1:len(CLASSES)].astype(float)
    balance = counts.sum() / len(counts) / np.maximum(counts, 1.0)
    weights = torch.tensor([1.0] + list(args.defect_weight * balance), dtype=torch.float32)
    ce = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)
    model.train()
    losses = []
    c = TRAIN_CROP_PX
    bar = tqdm(total=total, desc='train', disable=args.quiet, file=sys.stdout, mininterval=5.0)
    for _ in range(args.epochs):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            idx = np.sort(order[s * args.batch:(s + 1) * args.batch])
            oy, ox = (int(v) for v in rng.integers(0, inputs.shape[-1] - c + 1, 2))
            sl = (slice(oy, oy + c), slice(ox, ox + c))
            x, y = dihedral_batch([inputs[idx][..., sl[0], sl[1]],
                                   labels[idx][..., sl[0], sl[1]]], int(rng.integers(8)))
            logits = model(torch.from_numpy(x.astype(np.float32)))
            target = torch.from_numpy(y.astype(np.int64))
            valid = (target != IGNORE).float()
            fg = ((target > 0) & (target != IGNORE)).float()
            p_defect = (1.0 - torch.softmax(logits, 1)[:, 0]) * valid
            dice = 1.0 - (2 * (p_defect * fg).sum() + 1.0) / (p_defect.sum() + fg.sum() + 1.0)
            loss = ce(logits, target) + args.dice_weight * dice
            _optimiser_step(opt, sched, loss, losses, bar)
    bar.close()
    t_total = time.perf_counter() - t0
    meta = {'command': 'humanoid-inspection xray-train --model seg ' + ' '.join(args.argv),
            'seed': args.seed, 'images': args.images, 'seed_base': args.seed_base,
            'size_px': args.size, 'epochs': args.epochs, 'batch': args.batch,
            'crops': int(n), 'visible_defects': int(data['defects']),
            'class_weights': [round(float(v), 3) for v in weights],
            'final_loss': float(np.mean(losses[-100:])) if losses else float('nan'),
            'simulate_s': round(t_sim, 1), 'total_s': round(t_total, 1),
            'threads': args.threads, 'workers': args.workers,
            'parameters': count_parameters(model), 'torch': str(torch.__version__)}
    model.eval()
    return write_weights(args.out, lambda path: save_model(model, path, meta, FrontEndParams()),
                         meta)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    from humanoid_inspection.xray.detector_seg import DEFAULT_WEIGHTS
    ap = training_parser('humanoid-inspection xray-train --model seg', __doc__,
                         DEFAULT_WEIGHTS, 1000, 1.0)
    ap.add_argument('--epochs', type=int, default=16)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--width', type=int, default=16, help='U-Net first-level width')
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--defect-weight', type=float, default=3.0,
                    help='cross-entropy weight of the defect classes (times the inverse of '
                    'their share of the defect pixels)')
    ap.add_argument('--dice-weight', type=float, default=1.0,
                    help='weight of the defect-vs-background soft Dice term')
    ap.add_argument('--workers', type=int, default=2,
                    help='processes simulating the training set (no effect on the result)')
    add_run_options(ap, threads=2, threads_help='torch threads while training',
                    cached='training crops')
    return ap


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection xray-train --model seg`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    option = first_not_positive(args, ('images', 'epochs', 'batch', 'threads', 'workers',
                                       'width'))
    if option:
        print(f'xray-train: {option} must be positive', file=sys.stderr)
        return 2
    if args.size < CROP_PX:
        print(f'xray-train: --size must be at least {CROP_PX} px', file=sys.stderr)
        return 2
    summary = train(args)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
