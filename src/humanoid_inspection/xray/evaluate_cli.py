"""`humanoid-inspection xray-eval`: measure the defect detectors.

Two kinds of data:
- synthetic (default): a held-out set simulated from part seeds [seed_base, seed_base + n)
  (seed_base 100000: never used by xray-train), families in turn. Box AP50 / AP50:95 (all
  defects, and for defects >= 1 mm with COCO's area-range ignore rule), recall by kind and size
  bin, false alarms per image at --min-score, and part-level escape and
  false-reject rates from the graded verdicts (against 'has a defect' and against the verdict
  of the true defects graded with the acceptance table).
- gdxray: real radiographs in GDXray "Castings" layout with an annotations CSV
  (series,image,x1,y1,x2,y2): class-agnostic AP and recall at IoU 0.5, IoU 0.25 and the
  centre-in-box criterion (the real boxes are loose). --series selects series (split by
  series, never by image). GDXray publishes no pixel size: the images are taken at
  GDXRAY_PIXEL_MM (--pixel-pitch-mm for a folder of known geometry). A file that cannot be
  read is reported and skipped.

Synthetic acquisitions can stray from the nominal one (--pose-error-mm, --pose-error-deg,
--kv-error, --scale-error: the part's offset in the fixture, the tube voltage, the casting's
size against its model), and 'cnn+reference' inspects each radiograph against its part's
model, registered to it (simulation-aided ADR, xray/reference.py): it reports how well the
registration found the pose and scale.

Writes <out>/metrics.json and <out>/report.html with crops of the worst misses and false
alarms under <out>/crops/ (keep --out outside the repository for licensed real images).
"""

import argparse
import csv
import html
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from humanoid_inspection.xray.acquisition_errors import (
    AcquisitionErrors, add_error_options, errors_from_args)

HELD_OUT_SEED_BASE = 100000
REFERENCE_SUFFIX = '+reference'
# GDXray publishes no pixel size (image-intensifier views of wheels and knuckles at unknown
# zoom). The detectors work in object-plane mm: a 1.7 mm background square, simulated defects
# of 0.3-8 mm. Taken at 0.2 mm a pixel, GDXray's defects (boxes of 20-150 px) would be 4-30 mm,
# wider than the square, and vanish into the background estimate. At 0.04 mm they are
# 0.8-6 mm. Chosen on the 17 series of the development subset (cnn, AP50 / false alarms per
# image at 0.16, 0.1, 0.063, 0.04, 0.025, 0.016, 0.01 mm: 0.000 / 49, 0.000 / 59, 0.001 / 34,
# 0.015 / 4.8, 0.011 / 2.7, 0.003 / 1.4, 0.000 / 0.4): a scale that suits the detectors, not
# a physical size, and no cure for the domain gap (docs/xray_inspection.md, "Real radiographs")
GDXRAY_PIXEL_MM = 0.04


def synthetic_items(n: int, seed_base: int, size_px: int, mas: float = None,
                    errors: AcquisitionErrors = AcquisitionErrors()):
    """Yield dicts (name, image, pitch, mag, family, gt boxes/kinds/sizes) from the simulator.

    `mas`: the exposure (mA s per radiograph) instead of the simulator's default; the parts,
    their defects and the noise seeds stay the same, so the set differs only in its dose.
    `errors`: acquisitions at a random offset in the fixture and kV (AcquisitionErrors).
    Each item also carries the part's model ('part_model'), the nominal settings ('config'),
    the true pose ('pose') and scale ('scale'): what a '+reference' detector is given, and
    checked against.
    """
    from dataclasses import replace

    from humanoid_inspection.xray.grading import truth_verdict
    from humanoid_inspection.xray.phantoms import PART_FAMILIES, generate_part
    from humanoid_inspection.xray.simulator import XraySimConfig
    errors.validate()
    config = XraySimConfig.for_size(size_px)
    if mas is not None:
        config = replace(config, mas=float(mas))    # validated: ValueError when not > 0
    for i in range(n):
        seed = seed_base + i
        family = PART_FAMILIES[i % len(PART_FAMILIES)]
        part = generate_part(family, seed)
        rad, pose, part_scale = errors.radiograph(part, config, seed)
        yield {'name': f'{family}_{seed}', 'image': rad.image, 'pitch': rad.pixel_pitch_mm,
               'part_model': part, 'config': config, 'pose': pose, 'scale': part_scale,
               'mag': rad.magnification, 'family': family,
               'gt_boxes': [t.box_xyxy for t in rad.truth],
               'gt_kinds': [t.kind for t in rad.truth],
               'gt_sizes': [float(t.size_mm) for t in rad.truth],
               'gt_contrasts': [float(t.contrast) for t in rad.truth],
               'gt_detectability': [float(t.detectability) for t in rad.truth],
               'expected_verdict': truth_verdict(rad, family)}


def gdxray_items(root: Path, csv_path: Path, series=None, pitch=GDXRAY_PIXEL_MM, mag=1.0,
                 skipped: Optional[list] = None):
    """Yield dicts for every image of the annotated series (boxes from the CSV), taken at
    `pitch` mm a pixel and magnification `mag`. An image that cannot be read is skipped and
    (name, reason) appended to `skipped`."""
    import cv2
    boxes = {}
    with open(csv_path, newline='') as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row['image'], []).append(
                (int(float(row['x1'])), int(float(row['y1'])),
                 int(float(row['x2'])) + 1, int(float(row['y2'])) + 1))
            boxes.setdefault('series:' + row['series'], [])
    all_series = sorted(k.split(':', 1)[1] for k in boxes if k.startswith('series:'))
    chosen = [s for s in all_series if series is None or s in series]
    for s in chosen:
        for img_path in sorted((root / 'Castings' / s).glob('*.png')):
            rel = f'{s}/{img_path.name}'
            image = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
            if image is None:
                if skipped is not None:
                    skipped.append((rel, 'cannot decode the image'))
                continue
            if image.ndim == 3:
                image = image[:, :, 0]
            gt = boxes.get(rel, [])
            # GDXray's images come from an image intensifier: a dark surround to its field
            yield {'name': rel, 'image': image, 'pitch': pitch, 'mag': mag, 'series': s,
                   'mask_unexposed': True,
                   'family': 'generic', 'gt_boxes': gt, 'gt_kinds': [''] * len(gt),
                   'gt_sizes': [float('nan')] * len(gt)}


def _crop_png(image, box, path: Path, colour):
    import cv2

    from humanoid_inspection.xray.pipeline import display_image
    x0, y0, x1, y1 = [int(v) for v in box]
    m = max(16, int(0.75 * max(x1 - x0, y1 - y0)))
    h, w = image.shape
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    crop = display_image(image[cy0:cy1, cx0:cx1])
    rgb = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(rgb, (x0 - cx0, y0 - cy0), (x1 - cx0 - 1, y1 - cy0 - 1), colour, 1)
    scale = max(1, 160 // max(rgb.shape[:2]))
    rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), rgb)


def detectability_summary(outcomes: dict, min_size_mm: float = 1.0) -> dict:
    """What the ideal observer says about the defects of at least `min_size_mm` (0: all):
    how many it could see (d' at or above the Rose criterion), so the recall a perfect
    detector could be expected to reach, and the detector's misses split into the ones
    below and above that line. A detector's AP over the same defects cannot exceed its
    recall, so the ceiling bounds the AP50 too (a detector may still hit a defect below the
    line by chance: the ceiling is an expectation, not a proof)."""
    from humanoid_inspection.xray import metrics as M
    big = outcomes['size_mm'] >= float(min_size_mm)
    d = outcomes['detectability'][big]
    hit = outcomes['hit'][big]
    seen = d >= M.ROSE_DETECTABILITY
    n = int(big.sum())
    return {'rose_criterion': M.ROSE_DETECTABILITY, 'min_size_mm': float(min_size_mm),
            'n_gt': n, 'n_below_rose': int((~seen).sum()),
            'recall_ceiling': float(seen.mean()) if n else float('nan'),
            'misses_below_rose': int((~seen & ~hit).sum()),
            'misses_at_or_above_rose': int((seen & ~hit).sum()),
            'median_detectability_of_misses': float(np.median(d[~hit])) if (~hit).any()
            else float('nan')}


def _binned_recall(values: np.ndarray, hits: np.ndarray, edges):
    """(bin names, recall, count) of the non-empty bins [edges[i], edges[i + 1])."""
    names, recalls, counts = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        sel = (values >= low) & (values < high)
        if sel.any():
            names.append(f'{low:g}-{high:g}' if np.isfinite(high) else f'>={low:g}')
            recalls.append(float(hits[sel].mean()))
            counts.append(int(sel.sum()))
    return names, recalls, counts


def write_pod_figure(outcomes: dict, path: Path, title: str) -> None:
    """Probability of detection (recall at the operating score) by defect size and by the
    ideal observer's d', one bar per bin labelled with its count, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from humanoid_inspection.xray import metrics as M
    panels = [('defect size (mm)', outcomes['size_mm'], outcomes['hit'],
               (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, np.inf))]
    big = outcomes['size_mm'] >= 1.0
    if np.isfinite(outcomes['detectability']).any():
        panels.append(("ideal observer d' (defects >= 1 mm)", outcomes['detectability'][big],
                       outcomes['hit'][big], (0.0, M.ROSE_DETECTABILITY, 10.0, 15.0, 25.0,
                                              50.0, 100.0, np.inf)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (label, values, hits, edges) in zip(axes[0], panels):
        names, recalls, counts = _binned_recall(values, hits, edges)
        bars = ax.bar(range(len(names)), recalls, color='#4a7ab5')
        for bar, count in zip(bars, counts):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, f'n={count}',
                    ha='center', fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_ylim(0, 1.12)
        ax.axhline(0.95, color='#c0392b', linestyle='--', linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel('probability of detection')
    fig.suptitle(f'POD, {title} (dashed: 0.95)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def item_detector(detector_name: str, item: dict, reference_base=None):
    """What inspects one item: the detector's name, or for '<base>+reference' a
    ReferenceDetector of detector_reference.reference_base(<base>) (or of `reference_base`,
    a detector object) and the item's part model.

    Raises:
        ValueError: a '+reference' detector on an item without a part model (real images).
    """
    if not detector_name.endswith(REFERENCE_SUFFIX):
        return detector_name
    from humanoid_inspection.xray import detector_reference
    from humanoid_inspection.xray.reference import PartReference
    if 'part_model' not in item:
        raise ValueError(f"'{detector_name}' compares each radiograph with its part's model: "
                         'synthetic data only')
    from humanoid_inspection.xray.pipeline import get_detector
    name = detector_name[:-len(REFERENCE_SUFFIX)]
    base = reference_base or detector_reference.reference_base(name)
    return detector_reference.ReferenceDetector(
        base, PartReference(item['part_model'], item['config'], getattr(base, 'params', None)),
        image_only=get_detector(name))


def reference_base_detector(detector_name: str, weights=None, min_peak=None):
    """The base detector of a '<base>+reference' name built with other weights or another
    lowest candidate |z| (xray-eval --reference-weights / --reference-min-peak), or None
    when neither is given (detector_reference.reference_base is used); built by
    detector_reference.reference_cnn (the reference-trained weights with their own settings
    unless other weights are given).

    Raises:
        ValueError: options for a detector that takes none. FileNotFoundError: no weights.
    """
    if weights is None and min_peak is None:
        return None
    base = detector_name[:-len(REFERENCE_SUFFIX)] if detector_name.endswith(
        REFERENCE_SUFFIX) else None
    if base not in ('cnn', 'default'):
        raise ValueError('--reference-weights and --reference-min-peak apply to '
                         f"'cnn+reference' only, not to '{detector_name}'")
    from humanoid_inspection.xray.detector_reference import reference_cnn
    return reference_cnn(weights, min_peak)


def pose_error_summary(estimates) -> dict:
    """Registration figures of a '+reference' detector: per item (its PoseEstimate, the true
    pose, the true scale) -> medians and maxima of the position, angle and scale errors, the
    lowest ECC correlation and the median time."""
    from humanoid_inspection.xray.simulator import pose_yaw

    def angle(pose):
        return float(np.degrees(pose_yaw(pose)))

    position = [float(np.max(np.abs(e.pose[:2, 3] - pose[:2, 3]))) for e, pose, _ in estimates]
    turn = [abs(angle(e.pose) - angle(pose)) for e, pose, _ in estimates]
    scale = [abs(e.scale - true_scale) for e, _, true_scale in estimates]
    return {'n': len(estimates),
            'median_error_mm': float(np.median(position)), 'max_error_mm': float(np.max(position)),
            'median_error_deg': float(np.median(turn)), 'max_error_deg': float(np.max(turn)),
            'median_scale_error': float(np.median(scale)), 'max_scale_error': float(np.max(scale)),
            'min_correlation': float(min(e.correlation for e, _, _ in estimates)),
            'median_seconds': float(np.median([e.seconds for e, _, _ in estimates]))}


def series_summary(records, series, min_score: float) -> dict:
    """Per series (a real folder's sub-folder: views of one part at one zoom), in the order
    first seen: images, boxes, AP50, AP25, AP centre, and recall and false alarms per image
    at IoU 0.5 and `min_score`. The series of a real set differ in part and zoom, and the
    pooled figures can hide that one series carries them."""
    from humanoid_inspection.xray import metrics as M
    out = {}
    for name in dict.fromkeys(series):
        group = [r for r, s in zip(records, series) if s == name]
        op = M.operating_point(group, min_score, 0.5)
        out[name] = {'n_images': len(group), 'n_gt': int(op['n_gt']),
                     'ap50': M.average_precision(group, 0.5),
                     'ap25': M.average_precision(group, 0.25),
                     'ap_centre': M.average_precision(group, 0.5, 'centre'),
                     'recall': op['recall'],
                     'false_alarms_per_image': op['false_alarms_per_image']}
    return out


def evaluate(items, detector_name: str, min_score: float, out_dir: Path, grade_parts: bool,
             n_crops: int = 12, progress: bool = True, reference_base=None) -> dict:
    """Run one detector over the items; return the metrics dict (and write crops).
    `reference_base`: the base detector object of a '+reference' detector (item_detector)."""
    from tqdm import tqdm

    from humanoid_inspection.xray import metrics as M
    from humanoid_inspection.xray.pipeline import inspect_radiograph

    records, visible_records, times, truth_def, verdicts = [], [], [], [], []
    truth_reject, estimates, extra, fallbacks = [], [], {}, []
    misses, false_alarms, images = [], [], {}
    for item in tqdm(items, desc=detector_name, disable=not progress, file=sys.stdout):
        detector = item_detector(detector_name, item, reference_base)
        t = time.perf_counter()
        outcome = inspect_radiograph(item['image'], item['pitch'], item['mag'], item['family'],
                                     detector=detector,
                                     mask_unexposed=item.get('mask_unexposed', False))
        times.append(time.perf_counter() - t)
        if getattr(detector, 'last_fallback', None):
            fallbacks.append({'image': item['name'], 'reason': detector.last_fallback})
        estimate = getattr(detector, 'last_estimate', None)
        if estimate is not None and not getattr(detector, 'last_fallback', None):
            estimates.append((estimate, item['pose'], item['scale']))
            if n_crops and 'residual_figure' not in extra and len(item['gt_boxes']):
                extra['residual_figure'] = f'crops/{detector_name}_residuals.png'
                (out_dir / 'crops').mkdir(parents=True, exist_ok=True)
                write_residual_figure(item, detector.last_front_end,
                                      out_dir / extra['residual_figure'])
        ds = outcome.defects
        rec = M.ImageRecord([d.box_xyxy for d in ds], [d.confidence for d in ds],
                            item['gt_boxes'], item['gt_kinds'], item['gt_sizes'],
                            [d.kind for d in ds], item['name'],
                            item.get('gt_detectability', []))
        records.append(rec)
        if 'gt_contrasts' in item:
            keep = [j for j, c in enumerate(item['gt_contrasts'])
                    if abs(c) >= M.VISIBLE_CONTRAST]
            visible_records.append(M.ImageRecord(
                rec.pred_boxes, rec.pred_scores, rec.gt_boxes[keep],
                [item['gt_kinds'][j] for j in keep], [item['gt_sizes'][j] for j in keep],
                rec.pred_kinds, item['name']))
        truth_def.append(len(item['gt_boxes']) > 0)
        truth_reject.append(item.get('expected_verdict') == 'REJECT')
        verdicts.append(outcome.verdict)
        order, tp, gt_matched = M.match_image(rec, 0.5, 'iou', min_score)
        for k, i in enumerate(order):
            if not tp[k]:
                false_alarms.append((float(rec.pred_scores[i]), item['name'],
                                     rec.pred_boxes[i].tolist(), ds[i].kind, float('nan')))
        for j, mt in enumerate(gt_matched):
            if mt < 0:
                misses.append((item['gt_sizes'][j] if np.isfinite(item['gt_sizes'][j]) else
                               float((rec.gt_boxes[j, 2] - rec.gt_boxes[j, 0])),
                               item['name'], rec.gt_boxes[j].tolist(), item['gt_kinds'][j],
                               float(rec.gt_detectability[j])))
        images[item['name']] = item['image'] if n_crops else None
    result = {
        'detector': detector_name, 'n_images': len(records),
        'ap50': M.average_precision(records, 0.5), 'ap50_95': M.ap50_95(records),
        # the AP target is for defects >= 1 mm: COCO area-range semantics (smaller
        # truths and the predictions that only match them are left out; metrics.py)
        'ap50_ge_1mm': M.average_precision(records, 0.5, size_range_mm=M.SIZE_RANGE_GE_1MM),
        'ap50_95_ge_1mm': M.ap50_95(records, size_range_mm=M.SIZE_RANGE_GE_1MM),
        'ap25': M.average_precision(records, 0.25),
        # COCO's default averages per category (the kind must be right); the headline AP
        # above is class-agnostic (a box on a defect counts whatever kind it was given)
        'ap50_per_class': M.ap_per_class(records, 0.5),
        'ap_centre': M.average_precision(records, 0.5, 'centre'),
        'operating_point_iou50': M.operating_point(records, min_score, 0.5),
        'operating_point_iou25': M.operating_point(records, min_score, 0.25),
        'operating_point_centre': M.operating_point(records, min_score, 0.5, 'centre'),
        # the same ignore rule at the operating score: a box on a < 1 mm defect is no FA
        'operating_point_iou50_ge_1mm': M.operating_point_in_size_range(
            records, min_score, M.SIZE_RANGE_GE_1MM, 0.5),
        # the target is stated at <= 0.2 false alarms per image: the lowest score
        # threshold that keeps to it, and the recall there
        'operating_point_fa_0.2': M.operating_point_at_false_alarms(records, 0.2, 0.5),
        'latency_s': {'median': float(np.median(times)), 'p95': float(np.percentile(times, 95)),
                      'mean': float(np.mean(times))},
    }
    if any('series' in item for item in items):
        result['by_series'] = series_summary(records, [item.get('series', '') for item in items],
                                             min_score)
    if estimates:
        result['pose_estimate'] = pose_error_summary(estimates)
    if fallbacks or estimates:
        # radiographs a '+reference' detector inspected without the reference (why)
        result['reference_fallbacks'] = fallbacks
    result.update(extra)
    per_class = [v for v in result['ap50_per_class'].values() if np.isfinite(v)]
    result['map50_per_class'] = float(np.mean(per_class)) if per_class else float('nan')
    if visible_records:
        # the same predictions against the visible defects only (|contrast| >=
        # VISIBLE_CONTRAST); a prediction on an invisible defect then counts as a false alarm
        n_all = sum(len(r.gt_boxes) for r in records)
        n_vis = sum(len(r.gt_boxes) for r in visible_records)
        op = M.operating_point(visible_records, min_score, 0.5)
        result['visible_only'] = {
            'min_abs_contrast': M.VISIBLE_CONTRAST, 'n_gt': n_vis, 'n_invisible': n_all - n_vis,
            'ap50': M.average_precision(visible_records, 0.5),
            'recall': op['recall'], 'recall_ge_1mm': op['recall_ge_1mm'],
            'false_alarms_per_image': op['false_alarms_per_image']}
    outcomes = M.truth_outcomes(records, min_score, 0.5)
    if np.isfinite(outcomes['detectability']).any():
        result['detectability_ge_1mm'] = detectability_summary(outcomes)
        result['detectability_all'] = detectability_summary(outcomes, 0.0)
    if grade_parts:
        # 'defective' = any true defect, even one the acceptance table accepts
        result['part_level'] = M.part_level_rates(truth_def, verdicts)
        if all('expected_verdict' in item for item in items):
            # 'defective' = the true defects graded with the table give REJECT (a perfect
            # detector's verdict): an escape is then a part that must be rejected and was
            # accepted, a false reject an acceptable part that was rejected
            result['part_level_graded_truth'] = M.part_level_rates(truth_reject, verdicts)
    crops = out_dir / 'crops'
    crops.mkdir(parents=True, exist_ok=True)
    if n_crops and np.isfinite(outcomes['size_mm']).any():   # real sets carry no sizes
        fname = f'{detector_name}_pod.png'
        write_pod_figure(outcomes, crops / fname, f'{detector_name} at score >= {min_score}')
        result['pod_figure'] = f'crops/{fname}'
    result['worst_misses'], result['worst_false_alarms'] = [], []
    for key, rows, colour in (('worst_misses', sorted(misses, reverse=True), (0, 200, 0)),
                              ('worst_false_alarms', sorted(false_alarms, reverse=True),
                               (0, 0, 255))):
        for n, (value, name, box, kind, d_prime) in enumerate(rows[:n_crops]):
            fname = f'{detector_name}_{key}_{n:02d}.png'
            _crop_png(images[name], box, crops / fname, colour)
            result[key].append({'image': name, 'box_xyxy': [int(v) for v in box],
                                'kind': kind, 'value': round(float(value), 4),
                                'crop': f'crops/{fname}'})
            if np.isfinite(d_prime):      # a miss of a simulated defect: its d'
                result[key][-1]['detectability'] = round(d_prime, 1)
    return result


def write_residual_figure(item: dict, referenced, path: Path) -> None:
    """Radiograph, the image-only front end's z and z against the part's registered
    reference, side by side (+-10 noise units, truth boxes in green), as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from humanoid_inspection.xray.candidates import radiograph_front_end
    from humanoid_inspection.xray.pipeline import display_image
    plain, _ = radiograph_front_end(item['image'], item['pitch'], item['mag'])
    sx, sy = referenced.scale_xy
    panels = [('radiograph', display_image(item['image']), (1.0, 1.0), 'gray', None),
              ('z, background from the image alone', plain.z, plain.scale_xy, 'RdBu_r', 10),
              ("z against the part's registered model", referenced.z, (sx, sy), 'RdBu_r', 10)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for ax, (title, image, (fx, fy), cmap, limit) in zip(axes, panels):
        kwargs = {'vmin': -limit, 'vmax': limit} if limit else {}
        ax.imshow(image, cmap=cmap, interpolation='nearest', **kwargs)
        for x0, y0, x1, y1 in item['gt_boxes']:
            ax.add_patch(Rectangle((x0 / fx - 3, y0 / fy - 3), (x1 - x0) / fx + 6,
                                   (y1 - y0) / fy + 6, fill=False, edgecolor='#00c000'))
        ax.set_title(title, fontsize=10)
        ax.axis('off')
    fig.suptitle(f'{item["name"]}: residual in noise units (colour range +-10)', fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_html(out_dir: Path, results: list, title: str) -> Path:
    """report.html with the headline figures and the crops."""
    parts = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
             '</title><style>body{font-family:sans-serif} td,th{padding:3px 8px;'
             'border-bottom:1px solid #ccc} img{margin:2px;border:1px solid #999}</style>'
             f'</head><body><h1>{html.escape(title)}</h1><table><tr><th>detector</th>'
             '<th>AP50</th><th>AP50 &ge;1mm</th><th>AP50:95</th><th>AP50:95 &ge;1mm</th>'
             '<th>AP25</th><th>AP centre</th><th>recall</th>'
             '<th>FA/image</th><th>median latency (s)</th></tr>']
    for r in results:
        op = r['operating_point_iou50']
        parts.append(f'<tr><td>{r["detector"]}</td><td>{r["ap50"]:.3f}</td>'
                     f'<td>{r["ap50_ge_1mm"]:.3f}</td><td>{r["ap50_95"]:.3f}</td>'
                     f'<td>{r["ap50_95_ge_1mm"]:.3f}</td><td>{r["ap25"]:.3f}</td>'
                     f'<td>{r["ap_centre"]:.3f}</td><td>{op["recall"]:.3f}</td>'
                     f'<td>{op["false_alarms_per_image"]:.2f}</td>'
                     f'<td>{r["latency_s"]["median"]:.3f}</td></tr>')
    parts.append('</table>')
    for r in results:
        if r.get('by_series'):
            parts.append(f'<h2>{r["detector"]}: by series</h2><table><tr><th>series</th>'
                         '<th>images</th><th>boxes</th><th>AP50</th><th>AP25</th>'
                         '<th>AP centre</th><th>recall</th><th>FA/image</th></tr>')
            for name, v in r['by_series'].items():
                parts.append(f'<tr><td>{html.escape(str(name))}</td><td>{v["n_images"]}</td>'
                             f'<td>{v["n_gt"]}</td><td>{v["ap50"]:.3f}</td>'
                             f'<td>{v["ap25"]:.3f}</td><td>{v["ap_centre"]:.3f}</td>'
                             f'<td>{v["recall"]:.3f}</td>'
                             f'<td>{v["false_alarms_per_image"]:.2f}</td></tr>')
            parts.append('</table>')
        if r.get('residual_figure'):
            p = r['pose_estimate']
            parts.append(f'<h2>{r["detector"]}: the part\'s structure against its model</h2>'
                         f'<p>Pose found by registration on {p["n"]} radiographs: error '
                         f'median {p["median_error_mm"]:.4f} mm / {p["median_error_deg"]:.4f} '
                         f'deg, max {p["max_error_mm"]:.4f} mm / {p["max_error_deg"]:.4f} deg; '
                         f'scale error median {p["median_scale_error"]:.5f}, max '
                         f'{p["max_scale_error"]:.5f}; median {p["median_seconds"]:.2f} s.</p>'
                         f'<img src="{r["residual_figure"]}">')
        if r.get('pod_figure'):
            parts.append(f'<h2>{r["detector"]}: probability of detection</h2>')
            d = r.get('detectability_ge_1mm')
            if d:
                parts.append(
                    f'<p>{d["n_below_rose"]} of {d["n_gt"]} defects &ge;1 mm are below the '
                    f'Rose criterion (ideal-observer d\' &lt; {d["rose_criterion"]:g}): a '
                    f'perfect detector could reach a recall of {d["recall_ceiling"]:.3f}. '
                    f'Misses: {d["misses_below_rose"]} below it, '
                    f'{d["misses_at_or_above_rose"]} at or above it.</p>')
            d = r.get('detectability_all')
            if d:
                parts.append(
                    f'<p>Of all {d["n_gt"]} defects, {d["n_below_rose"]} are below it: '
                    f'recall over all defects, and so AP50, could be expected to reach '
                    f'{d["recall_ceiling"]:.3f} at most.</p>')
            parts.append(f'<img src="{r["pod_figure"]}">')
        for key, label in (('worst_misses', 'worst misses (green: truth)'),
                           ('worst_false_alarms', 'worst false alarms (red: detection)')):
            parts.append(f'<h2>{r["detector"]}: {label}</h2><div>')
            for c in r[key]:
                d_prime = f' d\'={c["detectability"]}' if 'detectability' in c else ''
                parts.append(f'<img src="{c["crop"]}" title="{html.escape(c["image"])} '
                             f'{c["kind"]} {c["value"]}{d_prime}">')
            parts.append('</div>')
    parts.append('</body></html>')
    path = out_dir / 'report.html'
    path.write_text('\n'.join(parts), encoding='utf-8')
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    ap = argparse.ArgumentParser(prog='humanoid-inspection xray-eval', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dataset', choices=('synthetic', 'gdxray'), default='synthetic')
    ap.add_argument('--detectors', default='classical,cnn',
                    help="comma-separated; synthetic data also takes 'cnn+reference' (cnn "
                    "against each part's registered model, xray/reference.py)")
    ap.add_argument('--images', type=int, default=60, help='synthetic: held-out radiographs')
    ap.add_argument('--seed-base', type=int, default=HELD_OUT_SEED_BASE)
    ap.add_argument('--size', type=int, default=1024, help='synthetic: detector side (px)')
    ap.add_argument('--mas', type=float, default=None,
                    help='synthetic: exposure in mA s per radiograph (default: the '
                    "simulator's, 2); the same parts at another dose")
    add_error_options(ap, 'synthetic')
    ap.add_argument('--reference-weights', default=None,
                    help="'cnn+reference': PatchNet weights of its base detector (default: "
                    'detector_reference.REFERENCE_WEIGHTS, from xray-train --reference)')
    ap.add_argument('--reference-min-peak', type=float, default=None,
                    help="'cnn+reference': lowest |z| of a candidate shown to its network "
                    '(default: detector_reference.REFERENCE_MIN_PEAK with the default '
                    'weights, detector_cnn.MIN_PEAK with others)')
    ap.add_argument('--root', default=None, help='gdxray: folder holding Castings/')
    ap.add_argument('--annotations', default=None,
                    help='gdxray: CSV series,image,x1,y1,x2,y2 '
                    '(default ROOT/annotations_xyxy.csv)')
    ap.add_argument('--series', default=None, help='gdxray: comma-separated series to use')
    ap.add_argument('--pixel-pitch-mm', type=float, default=None,
                    help=f'gdxray: object-plane size of a pixel in mm (default '
                    f'{GDXRAY_PIXEL_MM}, the scale GDXray is taken at: it publishes none)')
    ap.add_argument('--magnification', type=float, default=1.0, help='gdxray: geometric '
                    'magnification (the pixel pitch is divided by it)')
    ap.add_argument('--min-score', type=float, default=0.5, help='operating confidence')
    ap.add_argument('--out', default='xray_eval', help='output folder')
    ap.add_argument('--quiet', action='store_true')
    return ap


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection xray-eval`."""
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [d.strip() for d in args.detectors.split(',') if d.strip()]
    results, skipped = [], []
    if args.dataset == 'gdxray':
        from humanoid_inspection.xray.detector import mm_per_px
        if args.pixel_pitch_mm is None:
            args.pixel_pitch_mm = GDXRAY_PIXEL_MM
        try:
            mm_per_px(args.pixel_pitch_mm, args.magnification)
        except ValueError as exc:
            print(f'xray-eval: --pixel-pitch-mm / --magnification: {exc}', file=sys.stderr)
            return 2
    elif args.pixel_pitch_mm is not None or args.magnification != 1.0:
        print('xray-eval: --pixel-pitch-mm and --magnification are for --dataset gdxray (the '
              "synthetic radiographs carry their own geometry)", file=sys.stderr)
        return 2
    for name in names:
        if args.dataset == 'synthetic':
            try:
                errors = errors_from_args(args)
                items = list(synthetic_items(args.images, args.seed_base, args.size,
                                             args.mas, errors)) if not results else items
            except ValueError as exc:
                print(f'xray-eval: {exc}', file=sys.stderr)
                return 2
            grade_parts = True
        else:
            if not args.root:
                print('xray-eval: --root is required for --dataset gdxray', file=sys.stderr)
                return 2
            root = Path(args.root)
            csv_path = Path(args.annotations) if args.annotations else \
                root / 'annotations_xyxy.csv'
            if not csv_path.is_file():
                print(f'xray-eval: no annotations file {csv_path}', file=sys.stderr)
                return 2
            series = set(args.series.split(',')) if args.series else None
            if not results:
                items = list(gdxray_items(root, csv_path, series, args.pixel_pitch_mm,
                                          args.magnification, skipped))
                for bad_file, why in skipped:
                    print(f'xray-eval: skipped {bad_file}: {why}', file=sys.stderr)
            grade_parts = False
        try:
            base = reference_base_detector(name, args.reference_weights,
                                           args.reference_min_peak)
            results.append(evaluate(items, name, args.min_score, out_dir, grade_parts,
                                    progress=not args.quiet, reference_base=base))
        except (ValueError, FileNotFoundError) as exc:
            print(f'xray-eval: {name}: {exc}', file=sys.stderr)
            return 2
        r = results[-1]
        op = r['operating_point_iou50']
        print(f'{name}: AP50 {r["ap50"]:.3f}  AP50>=1mm {r["ap50_ge_1mm"]:.3f}'
              f'  AP50:95 {r["ap50_95"]:.3f}  AP50:95>=1mm {r["ap50_95_ge_1mm"]:.3f}'
              f'  AP25 {r["ap25"]:.3f}'
              f'  per-class mAP50 {r["map50_per_class"]:.3f}'
              f'  AP(centre) {r["ap_centre"]:.3f}  recall {op["recall"]:.3f}'
              f'  recall>=1mm {op["recall_ge_1mm"]:.3f}  FA/img '
              f'{op["false_alarms_per_image"]:.2f}  median {r["latency_s"]["median"]:.3f} s')
        for series_name, v in r.get('by_series', {}).items():
            print(f'  {series_name}: {v["n_images"]} images, {v["n_gt"]} boxes, AP50 '
                  f'{v["ap50"]:.3f}  AP25 {v["ap25"]:.3f}  AP(centre) {v["ap_centre"]:.3f}  '
                  f'recall {v["recall"]:.3f}  FA/img {v["false_alarms_per_image"]:.2f}')
        if r.get('reference_fallbacks'):
            print(f'  inspected without the reference (registration failed or untrusted): '
                  f'{len(r["reference_fallbacks"])} radiographs, ' + ', '.join(
                      f['image'] for f in r['reference_fallbacks']))
        p = r.get('pose_estimate')
        if p:
            print(f'  pose found by registration: error median {p["median_error_mm"]:.4f} '
                  f'mm / {p["median_error_deg"]:.4f} deg / scale {p["median_scale_error"]:.5f},'
                  f' max {p["max_error_mm"]:.4f} mm / {p["max_error_deg"]:.4f} deg / scale '
                  f'{p["max_scale_error"]:.5f}, lowest ECC correlation '
                  f'{p["min_correlation"]:.4f}, median {p["median_seconds"]:.2f} s')
        d = r.get('detectability_ge_1mm')
        if d:
            print(f'  defects >= 1 mm: {d["n_below_rose"]} of {d["n_gt"]} below the Rose '
                  f'criterion (d\' < {d["rose_criterion"]:g}), recall ceiling '
                  f'{d["recall_ceiling"]:.3f}; misses {d["misses_below_rose"]} below, '
                  f'{d["misses_at_or_above_rose"]} at or above it')
        d = r.get('detectability_all')
        if d:
            print(f'  all defects: {d["n_below_rose"]} of {d["n_gt"]} below it, recall (and '
                  f'AP50) ceiling {d["recall_ceiling"]:.3f}')
    summary = {'dataset': args.dataset, 'args': vars(args), 'results': results,
               'skipped': [{'image': n, 'reason': why} for n, why in skipped]}
    (out_dir / 'metrics.json').write_text(json.dumps(summary, indent=2, default=float))
    page = write_html(out_dir, results, f'X-ray ADR evaluation ({args.dataset})')
    print(f'wrote {out_dir / "metrics.json"} and {page}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
