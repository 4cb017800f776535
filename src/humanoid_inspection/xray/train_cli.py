"""`humanoid-inspection xray-train`: train the learned defect detector (PatchNet) on simulations.

Reproducible from the command and the seed: the training radiographs are simulated from part
seeds [seed_base, seed_base + n_images) (families in turn), the front end (candidates.py) finds
the candidates of each, every candidate is labelled from the exact ground truth, and torch
trains deterministically on the CPU with a fixed thread count. The held-out evaluation set of
`xray-eval` uses part seeds from 100000 on, never seen here.

Labels of a candidate (working pixel (x, y)):
- the defect whose mask, grown by one pixel, contains it (the smallest one if several): its
  class and its box (distances from the candidate to the four sides, log units);
- ignored (no loss) when that defect is nearly invisible (|contrast| < VISIBLE_CONTRAST,
  metrics.py) or when the candidate lies near a defect's box without touching its mask;
- background otherwise (part structure, noise).

Box refiner (box_refiner.py), trained after PatchNet in the same run: crops of z and S around
every visible defect (from its box centre) and every candidate on one (from the candidate), at
every scale whose range (widened by box_refiner.SAMPLE_SCALE_SLACK) holds its box, with the
box sides as targets (--refine-epochs, 0: none; --refine-width).

The committed weights (docs/xray_inspection.md gives the time they took):
    humanoid-inspection xray-train --images 1200 --epochs 16 --width 24 --refine-width 32 \
        --refine-epochs 60 --out src/humanoid_inspection/xray/models/adr_patchnet.pt

`--reference` trains the base of 'cnn+reference' instead: the candidates are those of the
residual against each part's registered sound model (detector_reference.reference_front_end),
the acquisitions straying by --pose-error-mm/-deg, --kv-error and --scale-error as xray-eval's
do. `--blob-sigma S` adds blob candidates of scale S (candidates.blob_candidates) to the
maxima of |z|; S is stored in the checkpoint, so inspection proposes the same ones. The
committed ones (detector_reference.REFERENCE_WEIGHTS; ~22 min on the 2-core machine):
    humanoid-inspection xray-train --reference --pose-error-mm 1 --pose-error-deg 1 \
        --kv-error 0.02 --scale-error 0.003 --images 600 --negatives 1.0 --epochs 60 \
        --blob-sigma 1.5 --workers 2 --threads 2 \
        --out src/humanoid_inspection/xray/models/adr_patchnet_reference.pt

`--model seg` trains the dense SegNet detector instead (train_seg.py, its own options), and
`--model unet` the previous TinyUNet detector (train_unet.py, its own options).
"""

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from humanoid_inspection.xray.train_options import (
    add_run_options, first_not_positive, training_parser)

IGNORE = -1
REFINE_BATCH = 64          # box refiner batch (~10 k samples from 1200 radiographs)


def label_candidates(fe, xs, ys, truth, visible_contrast: float):
    """Class index (IGNORE = -1 for no loss) and box log-distance targets per candidate.

    Args:
        fe: FrontEnd of the radiograph.
        xs, ys: candidate working-pixel columns / rows.
        truth: list of DefectTruth (radiograph pixels).
        visible_contrast: defects fainter than this are ignored.

    Returns:
        (labels int64 (N,), box float32 (N, 4)).
    """
    import cv2

    from humanoid_inspection.xray.detector_cnn import BOX_LOG_OFFSET, CLASSES
    n = len(xs)
    labels = np.zeros(n, np.int64)
    box = np.zeros((n, 4), np.float32)
    best_area = np.full(n, np.inf)
    sx, sy = fe.scale_xy
    h, w = fe.z.shape
    grow = np.ones((3, 3), np.uint8)
    for t in truth:
        x0, y0, x1, y1 = t.box_xyxy
        bx0, by0, bx1, by1 = x0 / sx, y0 / sy, x1 / sx, y1 / sy
        near = (xs >= bx0 - 3) & (xs < bx1 + 3) & (ys >= by0 - 3) & (ys < by1 + 3)
        if not near.any():
            continue
        # the mask on the working grid, grown by one pixel
        wx0, wy0 = max(0, int(bx0) - 2), max(0, int(by0) - 2)
        wx1, wy1 = min(w, int(np.ceil(bx1)) + 2), min(h, int(np.ceil(by1)) + 2)
        full = np.zeros((int(round((wy1 - wy0) * sy)), int(round((wx1 - wx0) * sx))), np.uint8)
        fy0, fx0 = int(round(wy0 * sy)), int(round(wx0 * sx))
        full[y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0] = t.mask
        small = cv2.resize(full, (wx1 - wx0, wy1 - wy0), interpolation=cv2.INTER_AREA) > 0 \
            if (sx, sy) != (1.0, 1.0) else full > 0
        small = cv2.dilate(small.astype(np.uint8), grow) > 0
        idx = np.nonzero(near)[0]
        inside = np.zeros(len(idx), bool)
        rr, cc = ys[idx] - wy0, xs[idx] - wx0
        valid = (rr >= 0) & (rr < small.shape[0]) & (cc >= 0) & (cc < small.shape[1])
        inside[valid] = small[rr[valid], cc[valid]]
        area = float(t.mask.sum())
        for k, j in enumerate(idx):
            if not inside[k]:
                if labels[j] == 0:
                    labels[j] = IGNORE
                continue
            if area >= best_area[j]:
                continue
            best_area[j] = area
            if abs(t.contrast) < visible_contrast:
                labels[j] = IGNORE
                continue
            labels[j] = CLASSES.index(t.kind)
            cx, cy = xs[j] + 0.5, ys[j] + 0.5
            d = np.array([cx - bx0, cy - by0, bx1 - cx, by1 - cy])
            box[j] = np.log(np.maximum(d, 0.25) + BOX_LOG_OFFSET)
    return labels, box


def training_radiograph(i: int, seed_base: int, size_px: int, defect_probability: float,
                        errors=None):
    """(part seed, Radiograph, part model, nominal XraySimConfig) of the i-th training
    radiograph: part seed seed_base + i, family PART_FAMILIES[i mod 3], the simulator's noise
    seeded with the part seed. `errors` (AcquisitionErrors): an acquisition that strays from
    the nominal one as xray-eval's do (None: the part at the fixture's origin, as modelled)."""
    from humanoid_inspection.xray.phantoms import PART_FAMILIES, generate_part
    from humanoid_inspection.xray.simulator import XraySimConfig, simulate_radiograph
    config = XraySimConfig.for_size(size_px)
    seed = seed_base + i
    family = PART_FAMILIES[i % len(PART_FAMILIES)]
    part = generate_part(family, seed, defect_probability=defect_probability)
    rad = simulate_radiograph(part, config, seed=seed) if errors is None else \
        errors.radiograph(part, config, seed)[0]
    return seed, rad, part, config


class TrainingSet(NamedTuple):
    """What xray-train learns from (simulate_training_set).

    Attributes:
        patches: float16 (N, C, P, P) PatchNet inputs of the candidates.
        labels: int64 (N,) class index per candidate (IGNORE: no loss).
        boxes: float32 (N, 4) box log-distance targets (defect candidates).
        refine_crops: float16 (M, 2, RAW_CROP_PX, RAW_CROP_PX) z/S crops around the small
            visible defects (box_refiner.truth_samples).
        refine_polarity: float32 (M,) +1 void, -1 inclusion.
        refine_sides: float32 (M, 4) their box sides relative to the crop centre.
        refine_scale: float32 (M,) the scale of each crop (box_refiner.REFINE_SCALES).
    """

    patches: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    refine_crops: np.ndarray
    refine_polarity: np.ndarray
    refine_sides: np.ndarray
    refine_scale: np.ndarray


def simulate_training_set(n_images: int, seed_base: int, size_px: int,
                          defect_probability: float, params=None, progress: bool = True,
                          cache=None, negative_fraction: float = 1.0,
                          reference_errors=None, workers: int = 1) -> TrainingSet:
    """Simulate radiographs and turn their candidates and defects into a TrainingSet.

    Background candidates are kept with probability `negative_fraction` (seeded per image;
    the trainer weights them up by its inverse), defect candidates always.
    `reference_errors` (AcquisitionErrors): learn from the residual against each part's
    registered model (detector_reference.reference_front_end, as 'cnn+reference' inspects),
    the acquisitions straying by these errors; a radiograph whose registration is not
    trusted is used with the image-only front end, as at inspection. None: the image-only
    front end ('cnn').
    `workers`: processes that simulate radiographs side by side (each radiograph is seeded on
    its own, so the set is the same for any number).
    `cache`: optional .npz path reused when it holds the same set (same arguments).
    """
    from tqdm import tqdm

    from humanoid_inspection.xray.box_refiner import REFINE_VERSION
    from humanoid_inspection.xray.candidates import PATCH_VERSION, FrontEndParams
    from humanoid_inspection.xray.metrics import VISIBLE_CONTRAST

    if int(workers) < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')
    params = params or FrontEndParams()
    key = (f'v{PATCH_VERSION}-r{REFINE_VERSION}-{n_images}-{seed_base}-{size_px}-'
           f'{defect_probability}-{VISIBLE_CONTRAST}-{negative_fraction}-'
           f'{sorted(params.__dict__.items())}')
    if reference_errors is not None:
        key += f'-reference{reference_errors}'
    if cache is not None and Path(cache).is_file():
        data = np.load(cache)
        if str(data['key']) == key:
            return TrainingSet(*(data[name] for name in TrainingSet._fields))
    job = SampleJob(seed_base, size_px, defect_probability, params, negative_fraction,
                    reference_errors, VISIBLE_CONTRAST)
    patches, labels, boxes, refine = [], [], [], []
    untrusted = 0
    with _image_pool(workers) as pool:
        samples = map(job, range(n_images)) if pool is None else \
            pool.imap(job, range(n_images), chunksize=1)
        for p, lab, box, ref, not_referenced in tqdm(
                samples, total=n_images, desc='simulate', disable=not progress,
                file=sys.stdout):
            patches.append(p)
            labels.append(lab)
            boxes.append(box)
            refine.append(ref)
            untrusted += not_referenced
    out = TrainingSet(np.concatenate(patches), np.concatenate(labels), np.concatenate(boxes),
                      *(np.concatenate([r[k] for r in refine]) for k in range(4)))
    if untrusted:
        print(f'xray-train: {untrusted} of {n_images} radiographs used without the reference '
              '(registration failed or untrusted)', file=sys.stderr)
    if cache is not None:
        np.savez(cache, key=np.array(key), **out._asdict())
    return out


class SampleJob(NamedTuple):
    """What simulate_training_set makes of the i-th radiograph: `job(i)` -> (patches,
    labels, boxes, refiner samples (4 arrays), whether the reference was not used). A
    picklable callable, so worker processes can run it."""

    seed_base: int
    size_px: int
    defect_probability: float
    params: object
    negative_fraction: float
    reference_errors: object
    visible_contrast: float

    def __call__(self, i: int):
        from humanoid_inspection.xray.box_refiner import (
            ScaledMaps, candidate_samples, truth_samples)
        from humanoid_inspection.xray.candidates import (
            compute_front_end, detector_candidates, extract_patches)
        from humanoid_inspection.xray.detector import mm_per_px
        from humanoid_inspection.xray.detector_cnn import BOX_LOG_OFFSET
        from humanoid_inspection.xray.detector_reference import reference_front_end
        from humanoid_inspection.xray.reference import PartReference
        params = self.params
        seed, rad, part, config = training_radiograph(
            i, self.seed_base, self.size_px, self.defect_probability, self.reference_errors)
        fe = compute_front_end(rad.image, mm_per_px(rad.pixel_pitch_mm, rad.magnification),
                               params)
        not_referenced = False
        if self.reference_errors is not None:
            referenced = reference_front_end(fe, PartReference(part, config, params))[0]
            not_referenced = referenced is None
            fe = fe if referenced is None else referenced
        xs, ys, _ = detector_candidates(fe.z, params)
        lab, box = label_candidates(fe, xs, ys, rad.truth, self.visible_contrast)
        keep = (lab != 0) | (np.random.default_rng([seed, 11]).random(len(lab)) <
                             self.negative_fraction)
        xs, ys, lab, box = xs[keep], ys[keep], lab[keep], box[keep]
        patches = extract_patches(fe, xs, ys, params.context_factor).astype(np.float16)
        maps = ScaledMaps(fe)
        from_truth = truth_samples(fe, rad.truth, self.visible_contrast, maps)
        from_candidates = candidate_samples(fe, xs, ys, lab, box, BOX_LOG_OFFSET, maps)
        refine = [np.concatenate([a, b]) for a, b in zip(from_truth, from_candidates)]
        return patches, lab, box, refine, not_referenced


@contextlib.contextmanager
def _image_pool(workers: int):
    """A pool of `workers` processes, or None for 1 (the radiographs are made in this
    process). Spawned, not forked: a child forked while OpenCV's thread pool was busy in
    the parent (the registration's ECC) hung in its first OpenCV call."""
    if int(workers) <= 1:
        yield None
        return
    import multiprocessing
    with multiprocessing.get_context('spawn').Pool(int(workers)) as pool:
        yield pool


def dihedral(x, box, k: int):
    """Apply one of the 8 flips/transposes to patches (N, C, P, P) and their box targets."""
    if k & 4:            # transpose: x <-> y
        x = x.transpose(0, 1, 3, 2)
        box = box[:, [1, 0, 3, 2]]
    if k & 1:            # mirror left-right
        x = x[:, :, :, ::-1]
        box = box[:, [2, 1, 0, 3]]
    if k & 2:            # mirror up-down
        x = x[:, :, ::-1, :]
        box = box[:, [0, 3, 2, 1]]
    return np.ascontiguousarray(x), np.ascontiguousarray(box)


def _optimiser_step(opt, sched, loss, losses: list, bar) -> None:
    """One optimiser + schedule step on loss; the loss is logged and shown every 50 steps."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    losses.append(float(loss.detach()))
    bar.update(1)
    if len(losses) % 50 == 0:
        bar.set_postfix(loss=f'{np.mean(losses[-50:]):.4f}')


def train_box_refiner(data: TrainingSet, args):
    """Train the box refiner (box_refiner.py) on the training set's small visible defects.

    Each step sees a batch of defects from crop centres jittered by up to MAX_JITTER_PX
    (the detector's centre error) under one of the 8 flips/transposes; smooth-L1 loss on the
    four sides (working pixels); AdamW + one-cycle LR; its own seeded generator, and torch
    re-seeded with the seed before its initial weights are drawn, so neither network depends
    on the other's training (PatchNet's weights do not change with the refiner's options,
    and the refiner's not with PatchNet's).

    Returns:
        (BoxRefiner in eval mode, {'refine_samples', 'refine_final_loss'}).
    """
    import torch
    from tqdm import tqdm

    from humanoid_inspection.xray.box_refiner import (
        BoxRefiner, dihedral_sides, jittered_inputs)
    rng = np.random.default_rng([args.seed, 1])
    torch.manual_seed(args.seed)
    refiner = BoxRefiner(width=args.refine_width)
    n = len(data.refine_sides)
    batch = min(REFINE_BATCH, max(1, n))
    steps_per_epoch = max(1, n // batch)
    total = steps_per_epoch * args.refine_epochs
    opt = torch.optim.AdamW(refiner.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total,
                                                pct_start=0.1)
    refiner.train()
    losses = []
    bar = tqdm(total=total if n else 0, desc='refiner', disable=args.quiet, file=sys.stdout,
               mininterval=5.0)
    for _ in range(args.refine_epochs if n else 0):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            idx = np.sort(order[s * batch:(s + 1) * batch])
            x, t = jittered_inputs(data.refine_crops[idx], data.refine_polarity[idx],
                                   data.refine_sides[idx], data.refine_scale[idx], rng)
            x, t = dihedral_sides(x, t, int(rng.integers(8)))
            loss = torch.nn.functional.smooth_l1_loss(refiner(torch.from_numpy(x)),
                                                      torch.from_numpy(t), beta=0.5)
            _optimiser_step(opt, sched, loss, losses, bar)
    bar.close()
    refiner.eval()
    return refiner, {'refine_samples': int(n),
                     'refine_final_loss': float(np.mean(losses[-100:])) if losses else
                     float('nan')}


def train(args) -> dict:
    """Run the training described by the parsed args; return a summary dict."""
    import torch
    from tqdm import tqdm

    from humanoid_inspection.xray.candidates import FrontEndParams
    from humanoid_inspection.xray.checkpoint import write_weights
    from humanoid_inspection.xray.detector_cnn import (
        CLASSES, PatchNet, count_parameters, save_model)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    params = FrontEndParams(blob_sigma_px=args.blob_sigma)
    errors = reference_errors(args)
    data = simulate_training_set(
        args.images, args.seed_base, args.size, args.defect_probability, params,
        progress=not args.quiet, cache=args.cache, negative_fraction=args.negatives,
        reference_errors=errors, workers=args.workers)
    patches, labels, boxes = data.patches, data.labels, data.boxes
    t_sim = time.perf_counter() - t0
    used = np.nonzero(labels != IGNORE)[0]
    n_pos = int((labels[used] > 0).sum())
    model = PatchNet(width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(used) // args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total,
                                                pct_start=0.1)
    # defect classes weighted by the inverse of their frequency (inclusions are the rarest
    # candidates and, being dark like walls and ribs, were the ones the network gave up on)
    counts = np.bincount(labels[used], minlength=len(CLASSES))[1:].astype(float)
    balance = counts.sum() / len(counts) / np.maximum(counts, 1.0)
    weights = torch.tensor([1.0 / args.negatives] + list(args.defect_weight * balance),
                           dtype=torch.float32)
    ce = torch.nn.CrossEntropyLoss(weight=weights)
    model.train()
    losses = []
    bar = tqdm(total=total, desc='train', disable=args.quiet, file=sys.stdout, mininterval=5.0)
    for _ in range(args.epochs):
        order = rng.permutation(used)
        for s in range(steps_per_epoch):
            idx = np.sort(order[s * args.batch:(s + 1) * args.batch])
            x, b = dihedral(patches[idx].astype(np.float32), boxes[idx], int(rng.integers(8)))
            y = torch.from_numpy(labels[idx])
            logits, pred_box = model(torch.from_numpy(x))
            loss = ce(logits, y)
            pos = y > 0
            if pos.any():
                loss = loss + args.box_weight * torch.nn.functional.smooth_l1_loss(
                    pred_box[pos], torch.from_numpy(b)[pos], beta=0.2)
            _optimiser_step(opt, sched, loss, losses, bar)
    bar.close()
    refiner, refine_meta = train_box_refiner(data, args) if args.refine_epochs else (None, {})
    t_total = time.perf_counter() - t0
    meta = {'command': 'humanoid-inspection xray-train ' + ' '.join(args.argv),
            'seed': args.seed, 'images': args.images, 'seed_base': args.seed_base,
            'size_px': args.size, 'epochs': args.epochs, 'batch': args.batch,
            'negatives_kept': args.negatives, 'candidates': int(len(labels)),
            'used': int(len(used)), 'positives': n_pos,
            'final_loss': float(np.mean(losses[-100:])) if losses else float('nan'),
            'refine_epochs': args.refine_epochs, 'refine_width': args.refine_width,
            'reference': None if errors is None else asdict(errors),
            **refine_meta,
            'simulate_s': round(t_sim, 1), 'total_s': round(t_total, 1),
            'threads': args.threads, 'parameters': count_parameters(model),
            'torch': str(torch.__version__)}
    model.eval()
    return write_weights(args.out, lambda path: save_model(model, path, meta, params, refiner),
                         meta)


def reference_errors(args):
    """The AcquisitionErrors of a --reference training, or None (image-only)."""
    from humanoid_inspection.xray.acquisition_errors import errors_from_args
    return errors_from_args(args) if args.reference else None


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    from humanoid_inspection.xray.acquisition_errors import add_error_options
    from humanoid_inspection.xray.detector_cnn import DEFAULT_WEIGHTS
    ap = training_parser('humanoid-inspection xray-train', __doc__, DEFAULT_WEIGHTS, 1200, 1.0)
    ap.add_argument('--model', choices=('patch', 'seg', 'unet'), default='patch',
                    help="'patch': the 'cnn' detector's networks; 'seg': the dense 'seg' "
                    "detector; 'unet': the previous one (their own options: xray-train "
                    '--model seg --help)')
    ap.add_argument('--negatives', type=float, default=0.3,
                    help='share of the background candidates kept (weighted up by 1 / share)')
    ap.add_argument('--epochs', type=int, default=16)
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--width', type=int, default=24,
                    help="first convolution width of PatchNet")
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--defect-weight', type=float, default=3.0,
                    help='cross-entropy weight of the defect classes (x the inverse of each '
                    "class' share of the defect candidates)")
    ap.add_argument('--box-weight', type=float, default=2.0, help='weight of the box loss')
    ap.add_argument('--refine-epochs', type=int, default=60,
                    help='epochs of the box refiner (box_refiner.py; 0: none)')
    ap.add_argument('--refine-width', type=int, default=32,
                    help='first convolution width of the box refiner')
    ap.add_argument('--reference', action='store_true',
                    help="learn from the residuals against each part's registered model "
                    "(what 'cnn+reference' inspects) instead of the image-only front end")
    add_error_options(ap, 'with --reference')
    ap.add_argument('--blob-sigma', type=float, default=0.0,
                    help='add blob candidates of this scale (working px; '
                    'candidates.blob_candidates) to the maxima of |z|, at training and, '
                    'stored in the checkpoint, at inspection (0: none)')
    ap.add_argument('--workers', type=int, default=1,
                    help='processes simulating the training radiographs side by side (the '
                    'training set, so the weights, are the same for any number)')
    add_run_options(ap, threads=1, cached='simulated candidates')
    return ap


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection xray-train`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--model' in argv:
        i = argv.index('--model')
        if i + 1 < len(argv) and argv[i + 1] == 'unet':
            from humanoid_inspection.xray import train_unet
            return train_unet.main(argv[:i] + argv[i + 2:])
        if i + 1 < len(argv) and argv[i + 1] == 'seg':
            from humanoid_inspection.xray import train_seg
            return train_seg.main(argv[:i] + argv[i + 2:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    option = first_not_positive(args, ('images', 'epochs', 'batch', 'threads', 'width',
                                       'refine_width', 'workers'))
    if option:
        print(f'xray-train: {option} must be positive', file=sys.stderr)
        return 2
    if args.refine_epochs < 0:
        print('xray-train: --refine-epochs must not be negative', file=sys.stderr)
        return 2
    if not args.blob_sigma >= 0:
        print('xray-train: --blob-sigma must not be negative', file=sys.stderr)
        return 2
    if not 0 < args.negatives <= 1:
        print('xray-train: --negatives must lie in (0, 1]', file=sys.stderr)
        return 2
    if args.size < 64:
        print('xray-train: --size must be at least 64 px', file=sys.stderr)
        return 2
    try:
        errors = reference_errors(args)
        if errors is not None:
            errors.validate()
    except ValueError as exc:
        print(f'xray-train: {exc}', file=sys.stderr)
        return 2
    if errors is None and any((args.pose_error_mm, args.pose_error_deg, args.kv_error,
                               args.scale_error)):
        print('xray-train: the acquisition errors apply to --reference only', file=sys.stderr)
        return 2
    summary = train(args)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
