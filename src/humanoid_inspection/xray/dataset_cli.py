"""`humanoid-inspection xray-dataset`: simulated radiographs + COCO-style ground truth.

Writes, under --out:
  images/<index>.png        16-bit grey PNG radiographs (detector ADU)
  annotations.json          COCO-style: images (with acquisition + part metadata),
                            annotations (bbox [x, y, w, h] px, RLE segmentation, category,
                            size_mm, area (px) and area_mm2, subtype, contrast), categories
  previews/<index>.png      8-bit overlays of the ground truth for the first --previews images

Image i is fully determined by (--seed, i): family, part, defects, acquisition settings,
pose and noise, so any subset can be regenerated and runs with any --workers agree.

Example:
  humanoid-inspection xray-dataset --out data/xray_train --n 500 --seed 1 --size 1024
"""

import argparse
import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from humanoid_inspection.xray.coco import CATEGORIES, annotation_records
from humanoid_inspection.xray.defects import DEFECT_KINDS
from humanoid_inspection.xray.phantoms import PART_FAMILIES, generate_part
from humanoid_inspection.xray.preview import draw_truth_overlay
from humanoid_inspection.xray.simulator import (XraySimConfig, config_to_dict,
                                                simulate_radiograph)

FIELD_OF_VIEW_MM = 204.8


def sample_acquisition(rng: np.random.Generator, size: int, vary: bool = True,
                       field_of_view_mm: float = FIELD_OF_VIEW_MM):
    """Random but plausible acquisition settings and part pose.

    Args:
        rng: numpy Generator.
        size: detector side in pixels.
        vary: randomise kV (90..140 in 10 kV steps, so spectra stay cached), mAs, focal
            spot, scatter, blur and noise (else the defaults).
        field_of_view_mm: detector side in mm (pitch = fov / size).

    Returns:
        (XraySimConfig, 4x4 pose): yaw 0..360 deg, shift up to +-8 mm.
    """
    if vary:
        config = XraySimConfig.for_size(
            size, field_of_view_mm, kv=float(10 * rng.integers(9, 15)),
            mas=float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))),
            focal_spot_mm=float(rng.uniform(0.2, 1.0)),
            scatter_fraction=float(rng.uniform(0.05, 0.2)),
            detector_blur_px=float(rng.uniform(0.4, 0.9)),
            read_noise_adu=float(rng.uniform(2.0, 8.0)),
            sod_mm=float(rng.uniform(650, 750)), sdd_mm=900.0)
    else:
        config = XraySimConfig.for_size(size, field_of_view_mm)
    yaw = float(rng.uniform(0, 2 * np.pi))
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:2, 3] = rng.uniform(-8, 8, 2)
    return config, pose


def simulate_sample(index: int, seed: int, size: int, families, defect_probability: float,
                    kinds=DEFECT_KINDS, vary: bool = True):
    """The radiograph and part of dataset item `index` (deterministic in seed and index)."""
    rng = np.random.default_rng([int(seed), int(index), 31])
    family = families[int(rng.integers(len(families)))]
    part_seed = int(rng.integers(0, 2 ** 31 - 1))
    part = generate_part(family, part_seed, defect_probability=defect_probability,
                         defect_kinds=kinds)
    config, pose = sample_acquisition(rng, size, vary)
    radiograph = simulate_radiograph(part, config, pose, seed=int(rng.integers(0, 2 ** 31 - 1)))
    return radiograph, part


def _work(job):
    index, options = job
    radiograph, part = simulate_sample(index, options['seed'], options['size'],
                                       options['families'], options['defect_probability'],
                                       options['kinds'], options['vary'])
    out = Path(options['out'])
    name = f'{index:06d}.png'
    if not cv2.imwrite(str(out / 'images' / name), radiograph.image):
        raise OSError(f'could not write {out / "images" / name}')
    if index < options['previews']:
        rgb = draw_truth_overlay(radiograph.image, radiograph.truth, radiograph.part_mask,
                                 radiograph.config.dark_offset_adu, max_side=1024)
        cv2.imwrite(str(out / 'previews' / name), rgb[:, :, ::-1])
    rows, cols = radiograph.image.shape
    image = {'id': index, 'file_name': f'images/{name}', 'height': rows, 'width': cols,
             'part_family': part.family, 'part_id': part.part_id,
             'pixel_pitch_mm': radiograph.pixel_pitch_mm,
             'magnification': round(radiograph.magnification, 6),
             'noise_seed': radiograph.seed, 'pose': np.round(radiograph.pose, 6).tolist(),
             'acquisition': config_to_dict(radiograph.config), 'part': part.summary(),
             'simulation_s': round(radiograph.timings_s['total'], 4)}
    return image, radiograph.truth, (rows, cols)


def _save_sample_overlay(args, images, annotations, path: Path, max_side: int = 900):
    """Overlay of the image with the most defect kinds (then defects), cropped to the part."""
    def score(image):
        own = [a for a in annotations if a['image_id'] == image['id']]
        return len({a['category_id'] for a in own}), len(own), -image['id']

    best = max(images, key=score)
    radiograph, _ = simulate_sample(best['id'], args.seed, args.size, args.family_list,
                                    args.defect_probability, args.kind_list,
                                    not args.fixed_acquisition)
    ys, xs = np.nonzero(radiograph.part_mask)
    margin = 20
    if ys.size:
        r0, r1 = max(0, ys.min() - margin), min(radiograph.image.shape[0], ys.max() + margin)
        c0, c1 = max(0, xs.min() - margin), min(radiograph.image.shape[1], xs.max() + margin)
    else:
        r0, c0, (r1, c1) = 0, 0, radiograph.image.shape
    truth = [{'kind': t.kind, 'size_mm': t.size_mm,
              'box_xyxy': (t.box_xyxy[0] - c0, t.box_xyxy[1] - r0, t.box_xyxy[2] - c0,
                           t.box_xyxy[3] - r0)} for t in radiograph.truth]
    rgb = draw_truth_overlay(radiograph.image[r0:r1, c0:c1], truth,
                             radiograph.part_mask[r0:r1, c0:c1],
                             radiograph.config.dark_offset_adu, max_side=max_side)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f'sample overlay: image {best["id"]} ({best["part_id"]}) -> {path}')


def parse_args(argv):
    """Command-line options."""
    parser = argparse.ArgumentParser(prog='humanoid-inspection xray-dataset',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output folder (created)')
    parser.add_argument('--n', type=int, default=100, help='number of radiographs')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed')
    parser.add_argument('--size', type=int, default=1024, help='detector side (px)')
    parser.add_argument('--families', default=','.join(PART_FAMILIES),
                        help=f'comma list from {",".join(PART_FAMILIES)}')
    parser.add_argument('--kinds', default=','.join(DEFECT_KINDS),
                        help=f'defect kinds, comma list from {",".join(DEFECT_KINDS)}')
    parser.add_argument('--defect-probability', type=float, default=0.7,
                        help='chance that a part has defects (0..1)')
    parser.add_argument('--previews', type=int, default=4,
                        help='write ground-truth overlays for the first N images')
    parser.add_argument('--fixed-acquisition', action='store_true',
                        help='default kV/mAs/blur/noise for every image (no randomisation)')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes')
    parser.add_argument('--sample-overlay', default=None, metavar='PNG',
                        help='also save the overlay of the image showing the most defect '
                             'kinds, cropped to the part (e.g. for the README)')
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(',') if f.strip()]
    kinds = [k.strip() for k in args.kinds.split(',') if k.strip()]
    problems = []
    if args.n < 1:
        problems.append('--n must be >= 1')
    if not 16 <= args.size <= 4096:
        problems.append('--size must lie in 16..4096')
    if args.seed < 0:
        problems.append('--seed must be >= 0')
    if not 0.0 <= args.defect_probability <= 1.0:
        problems.append('--defect-probability must lie in 0..1')
    if args.workers < 1:
        problems.append('--workers must be >= 1')
    unknown = [f for f in families if f not in PART_FAMILIES]
    if unknown or not families:
        problems.append(f'unknown --families {unknown}; known: {",".join(PART_FAMILIES)}')
    unknown = [k for k in kinds if k not in DEFECT_KINDS]
    if unknown or not kinds:
        problems.append(f'unknown --kinds {unknown}; known: {",".join(DEFECT_KINDS)}')
    if problems:
        parser.error('; '.join(problems))
    args.family_list, args.kind_list = tuple(families), tuple(kinds)
    return args


def main(argv=None) -> int:
    """Generate the dataset; returns the exit code."""
    from tqdm import tqdm  # noqa: PLC0415

    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    (out / 'previews').mkdir(exist_ok=True)
    options = {'seed': args.seed, 'size': args.size, 'families': args.family_list,
               'defect_probability': args.defect_probability, 'kinds': args.kind_list,
               'vary': not args.fixed_acquisition, 'out': str(out),
               'previews': args.previews}
    jobs = [(index, options) for index in range(args.n)]
    images, annotations = [], []
    start = time.perf_counter()
    pool = get_context('spawn').Pool(args.workers) if args.workers > 1 else None
    try:
        results = pool.imap(_work, jobs) if pool else map(_work, jobs)
        for image, truth, shape in tqdm(results, total=args.n, desc='radiographs',
                                        unit='img'):
            images.append(image)
            annotations += annotation_records(truth, image['id'], len(annotations) + 1, shape)
    finally:
        if pool:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - start
    if args.sample_overlay:
        _save_sample_overlay(args, images, annotations, Path(args.sample_overlay))
    dataset = {
        'info': {'description': 'humanoid_inspection simulated die-cast radiographs',
                 'seed': args.seed, 'n': args.n, 'size': args.size,
                 'families': list(args.family_list), 'kinds': list(args.kind_list),
                 'defect_probability': args.defect_probability,
                 'varied_acquisition': not args.fixed_acquisition,
                 'bbox_format': 'xywh pixels; segmentation: uncompressed RLE (column-major)',
                 'generation_s': round(elapsed, 2)},
        'licenses': [], 'categories': CATEGORIES, 'images': images,
        'annotations': annotations}
    temporary = out / 'annotations.json.tmp'
    temporary.write_text(json.dumps(dataset))
    os.replace(temporary, out / 'annotations.json')
    counts = {c['name']: sum(a['category_id'] == c['id'] for a in annotations)
              for c in CATEGORIES}
    print(f'wrote {args.n} radiographs and {len(annotations)} annotations {counts} to {out} '
          f'in {elapsed:.1f} s ({elapsed / args.n:.3f} s/image)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
