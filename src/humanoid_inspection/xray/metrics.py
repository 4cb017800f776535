"""Detection metrics for radiographic ADR, as pure functions (numpy only, no ROS).

- COCO-style box AP: greedy matching of predictions (highest score first) to unmatched ground
  truth boxes at an IoU threshold, precision made monotone, sampled at 101 recall points;
  AP50 and AP50:95 (mean over IoU 0.50, 0.55, ..., 0.95). Class-agnostic (the boxes), as the
  real annotations carry no class.
- The same AP restricted to a defect size range (e.g. >= 1 mm), COCO area-range style: truths
  outside the range are ignored, and so are the predictions that can only match one of them
  (match_image_in_size_range, average_precision(..., size_range_mm=...)).
- Recall by defect kind and by size bin, false alarms per image, at an operating score.
- A 'centre' criterion for loose real annotations: a prediction matches a ground truth box when
  the centre of either lies inside the other.
- Part-level escape rate (defective part accepted) and false-reject rate (good part rejected).

Boxes are (x_min, y_min, x_max, y_max) in pixels, max exclusive.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

IOU_THRESHOLDS_COCO = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
SIZE_BINS_MM = (('<1mm', 0.0, 1.0), ('1-3mm', 1.0, 3.0), ('>3mm', 3.0, float('inf')))
# A simulated defect whose largest relative change of the noise-free signal
# (DefectTruth.contrast) is below this is treated as invisible: xray-train ignores its pixels
# and xray-eval reports the figures both on all defects and on the visible ones.
VISIBLE_CONTRAST = 0.02
# The size range: defects of 1 mm and more ([low, high) in mm, as SIZE_BINS_MM).
SIZE_RANGE_GE_1MM = (1.0, float('inf'))
# Bins of the ideal observer's d' (DefectTruth.detectability) for the probability of
# detection: below the Rose criterion (d' 5) even an ideal observer that does not know where
# to look cannot tell a defect from noise; above it, a miss is the detector's (and its
# background estimate's) doing.
ROSE_DETECTABILITY = 5.0
DETECTABILITY_BINS = (("d'<5", 0.0, 5.0), ("d'5-15", 5.0, 15.0), ("d'15-50", 15.0, 50.0),
                      ("d'>=50", 50.0, float('inf')))


@dataclass
class ImageRecord:
    """Predictions and ground truth of one image.

    Attributes:
        pred_boxes: (N, 4) predicted boxes.
        pred_scores: (N,) confidences.
        gt_boxes: (M, 4) ground-truth boxes.
        gt_kinds: M defect kinds ('' when unknown).
        gt_sizes_mm: M sizes in mm (nan when unknown).
        pred_kinds: N predicted kinds.
        name: image identifier.
        gt_detectability: M ideal-observer d' (simulated truth; nan when unknown).
    """

    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    gt_boxes: np.ndarray
    gt_kinds: List[str] = field(default_factory=list)
    gt_sizes_mm: List[float] = field(default_factory=list)
    pred_kinds: List[str] = field(default_factory=list)
    name: str = ''
    gt_detectability: List[float] = field(default_factory=list)

    def __post_init__(self):
        self.pred_boxes = np.asarray(self.pred_boxes, float).reshape(-1, 4)
        self.pred_scores = np.asarray(self.pred_scores, float).reshape(-1)
        self.gt_boxes = np.asarray(self.gt_boxes, float).reshape(-1, 4)
        if len(self.pred_scores) != len(self.pred_boxes):
            raise ValueError('pred_boxes and pred_scores differ in length')
        if not self.gt_kinds:
            self.gt_kinds = [''] * len(self.gt_boxes)
        if not self.gt_sizes_mm:
            self.gt_sizes_mm = [float('nan')] * len(self.gt_boxes)
        if not self.gt_detectability:
            self.gt_detectability = [float('nan')] * len(self.gt_boxes)
        if len(self.gt_detectability) != len(self.gt_boxes):
            raise ValueError('gt_detectability and gt_boxes differ in length')


def iou_matrix(a, b) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4) -> (N, M)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0],
                                                                     b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1],
                                                                     b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def centre_match_matrix(pred, gt) -> np.ndarray:
    """1.0 where the centre of the prediction lies in the gt box or the gt centre in the
    prediction, else 0.0 -> (N, M). Used for loose real-image annotations."""
    p = np.asarray(pred, float).reshape(-1, 4)
    g = np.asarray(gt, float).reshape(-1, 4)
    pc = np.stack([(p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2], 1)
    gc = np.stack([(g[:, 0] + g[:, 2]) / 2, (g[:, 1] + g[:, 3]) / 2], 1)

    def inside(c, boxes):
        return ((c[:, None, 0] >= boxes[None, :, 0]) & (c[:, None, 0] <= boxes[None, :, 2])
                & (c[:, None, 1] >= boxes[None, :, 1]) & (c[:, None, 1] <= boxes[None, :, 3]))
    return (inside(pc, g) | inside(gc, p).T).astype(float)


def _similarity(rec: ImageRecord, criterion: str) -> np.ndarray:
    if criterion == 'centre':
        return centre_match_matrix(rec.pred_boxes, rec.gt_boxes)
    return iou_matrix(rec.pred_boxes, rec.gt_boxes)


def match_image(rec: ImageRecord, threshold: float, criterion: str = 'iou',
                min_score: float = -np.inf):
    """Greedy COCO matching of one image.

    Args:
        rec: the image's predictions and ground truth.
        threshold: IoU needed for a match (for 'centre': any value in (0, 1]).
        criterion: 'iou' or 'centre'.
        min_score: predictions below it are ignored.

    Returns:
        (order, tp, gt_matched): prediction indices by decreasing score (kept ones), a bool
        per kept prediction (true positive), and per gt the index of its matching prediction
        or -1.
    """
    keep = np.nonzero(rec.pred_scores >= min_score)[0]
    order = keep[np.argsort(-rec.pred_scores[keep], kind='stable')]
    sim = _similarity(rec, criterion)
    gt_matched = np.full(len(rec.gt_boxes), -1, int)
    tp = np.zeros(len(order), bool)
    for k, i in enumerate(order):
        if len(rec.gt_boxes) == 0:
            break
        cand = np.where(gt_matched < 0, sim[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= threshold and cand[j] > 0:
            tp[k] = True
            gt_matched[j] = i
    return order, tp, gt_matched


def gt_outside_size_range(rec: ImageRecord, size_range_mm: Optional[Tuple[float, float]]
                          ) -> np.ndarray:
    """Per ground-truth box: True when its size is outside [low, high) mm or not finite
    (all False when size_range_mm is None)."""
    sizes = np.asarray(rec.gt_sizes_mm, float).reshape(-1)
    if size_range_mm is None:
        return np.zeros(len(rec.gt_boxes), bool)
    low, high = size_range_mm
    with np.errstate(invalid='ignore'):
        inside = np.isfinite(sizes) & (sizes >= low) & (sizes < high)
    return ~inside


def match_image_in_size_range(rec: ImageRecord, threshold: float,
                              size_range_mm: Optional[Tuple[float, float]],
                              criterion: str = 'iou', min_score: float = -np.inf):
    """Greedy matching of one image with COCO's area-range ignore rule, by defect size.

    Ground-truth boxes whose size is outside size_range_mm ([low, high) mm) or not finite are
    *ignored* truths. Predictions are taken by decreasing score (ties and the match test as in
    match_image); each first takes the most similar unmatched non-ignored truth at or above
    the threshold (a true positive); failing that, the most similar unmatched ignored truth at
    or above the threshold, and the prediction is then *ignored* (neither true nor false
    positive); failing both, it is a false positive. Stricter than COCO on one point: COCO
    also ignores an unmatched prediction whose own area is outside the range; here an
    unmatched prediction is a false positive whatever its size (a prediction carries no
    trustworthy 3-D size). With size_range_mm None nothing is ignored and the result is
    match_image's.

    Args:
        rec: the image's predictions and ground truth (gt_sizes_mm used).
        threshold: IoU needed for a match (for 'centre': any value in (0, 1]).
        size_range_mm: (low, high) in mm, or None (every truth counts).
        criterion: 'iou' or 'centre'.
        min_score: predictions below it are left out.

    Returns:
        (order, tp, pred_ignored, gt_matched, gt_ignored): kept prediction indices by
        decreasing score, per kept prediction bools (true positive; ignored), per gt the index
        of its matching prediction or -1, and per gt a bool (outside the range).
    """
    keep = np.nonzero(rec.pred_scores >= min_score)[0]
    order = keep[np.argsort(-rec.pred_scores[keep], kind='stable')]
    sim = _similarity(rec, criterion)
    gt_ignored = gt_outside_size_range(rec, size_range_mm)
    gt_matched = np.full(len(rec.gt_boxes), -1, int)
    tp = np.zeros(len(order), bool)
    pred_ignored = np.zeros(len(order), bool)
    for k, i in enumerate(order):
        if len(rec.gt_boxes) == 0:
            break
        for take_ignored in (False, True):
            cand = np.where((gt_matched < 0) & (gt_ignored == take_ignored), sim[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= threshold and cand[j] > 0:
                gt_matched[j] = i
                tp[k] = not take_ignored
                pred_ignored[k] = take_ignored
                break
    return order, tp, pred_ignored, gt_matched, gt_ignored


def average_precision(records: Sequence[ImageRecord], threshold: float = 0.5,
                      criterion: str = 'iou',
                      size_range_mm: Optional[Tuple[float, float]] = None) -> float:
    """COCO 101-point interpolated AP over a set of images (nan when there is no gt).

    Args:
        records: the images.
        threshold: IoU needed for a match (for 'centre': any value in (0, 1]).
        criterion: 'iou' or 'centre'.
        size_range_mm: None (every truth counts), or (low, high) mm for the AP of the
            defects in [low, high) with COCO's area-range semantics (see
            match_image_in_size_range): the truths outside it and the predictions matched to
            them are left out, and n_gt counts the truths in the range only; e.g.
            SIZE_RANGE_GE_1MM for the issue's "AP50 for defects of 1 mm and more". nan
            when no truth is in the range.
    """
    scores, tps = [], []
    n_gt = 0
    for rec in records:
        order, tp, ignored, _, gt_ignored = match_image_in_size_range(
            rec, threshold, size_range_mm, criterion)
        scores.append(rec.pred_scores[order][~ignored])
        tps.append(tp[~ignored])
        n_gt += int(np.count_nonzero(~gt_ignored))
    if n_gt == 0:
        return float('nan')
    scores = np.concatenate(scores) if scores else np.zeros(0)
    tps = np.concatenate(tps) if tps else np.zeros(0, bool)
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind='stable')
    tp_cum = np.cumsum(tps[order])
    fp_cum = np.cumsum(~tps[order])
    recall = tp_cum / n_gt
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1e-12)
    # monotone precision envelope
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side='left')
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(np.mean(sampled))


def ap_per_class(records: Sequence[ImageRecord], threshold: float = 0.5) -> Dict[str, float]:
    """COCO's per-category AP: for each defect kind with ground truth, the AP of the
    predictions of that kind against the boxes of that kind (a box found with the wrong
    kind is a miss and a false alarm). Its mean over the kinds is COCO's default 'AP';
    the headline figures of this module are class-agnostic (average_precision).

    Returns:
        {kind: AP} for every kind that has ground truth (sorted).
    """
    kinds = sorted({k for r in records for k in r.gt_kinds if k})
    out = {}
    for kind in kinds:
        subset = []
        for r in records:
            p = [i for i, k in enumerate(r.pred_kinds) if k == kind]
            g = [j for j, k in enumerate(r.gt_kinds) if k == kind]
            subset.append(ImageRecord(r.pred_boxes[p], r.pred_scores[p], r.gt_boxes[g],
                                      [kind] * len(g), [r.gt_sizes_mm[j] for j in g],
                                      [kind] * len(p), r.name))
        out[kind] = average_precision(subset, threshold)
    return out


def ap50_95(records: Sequence[ImageRecord],
            size_range_mm: Optional[Tuple[float, float]] = None) -> float:
    """Mean AP over IoU 0.50:0.05:0.95 (size_range_mm as in average_precision)."""
    return float(np.mean([average_precision(records, t, size_range_mm=size_range_mm)
                          for t in IOU_THRESHOLDS_COCO]))


def _bin(value: float, bins) -> str:
    if value is None or not np.isfinite(value):
        return 'unknown'
    for name, low, high in bins:
        if low <= value < high:
            return name
    return 'unknown'


def size_bin(size_mm: float) -> str:
    """Name of the size bin of a defect ('<1mm', '1-3mm', '>3mm', 'unknown')."""
    return _bin(size_mm, SIZE_BINS_MM)


def detectability_bin(d_prime: float) -> str:
    """Name of the DETECTABILITY_BINS bin of a defect's d' ('unknown' when nan)."""
    return _bin(d_prime, DETECTABILITY_BINS)


def operating_point(records: Sequence[ImageRecord], min_score: float, threshold: float = 0.5,
                    criterion: str = 'iou') -> dict:
    """Recall (overall, by kind, by size bin), precision and false alarms at one score.

    Returns:
        dict with recall, precision, false_alarms_per_image, n_gt, n_pred, tp, fp,
        recall_by_kind {kind: {recall, n}}, recall_by_size {bin: {recall, n}},
        recall_ge_1mm, recall_ge_1mm_by_detectability {DETECTABILITY_BINS name or 'unknown':
        {recall, n}} (the defects >= 1 mm by their d').
    """
    tp_total = fp_total = n_gt = n_pred = 0
    by_kind: Dict[str, List[int]] = {}
    by_size: Dict[str, List[int]] = {}
    by_detectability: Dict[str, List[int]] = {}
    ge1 = [0, 0]
    for rec in records:
        order, tp, gt_matched = match_image(rec, threshold, criterion, min_score)
        tp_total += int(tp.sum())
        fp_total += int((~tp).sum())
        n_pred += len(order)
        n_gt += len(rec.gt_boxes)
        for j, matched in enumerate(gt_matched):
            hit = int(matched >= 0)
            k = rec.gt_kinds[j] or 'unknown'
            by_kind.setdefault(k, [0, 0])
            by_kind[k][0] += hit
            by_kind[k][1] += 1
            s = size_bin(rec.gt_sizes_mm[j])
            by_size.setdefault(s, [0, 0])
            by_size[s][0] += hit
            by_size[s][1] += 1
            if np.isfinite(rec.gt_sizes_mm[j]) and rec.gt_sizes_mm[j] >= 1.0:
                ge1[0] += hit
                ge1[1] += 1
                d = detectability_bin(rec.gt_detectability[j])
                by_detectability.setdefault(d, [0, 0])
                by_detectability[d][0] += hit
                by_detectability[d][1] += 1

    def ratio(a, b):
        return float(a / b) if b else float('nan')
    return {
        'min_score': float(min_score), 'threshold': float(threshold), 'criterion': criterion,
        'n_images': len(records), 'n_gt': n_gt, 'n_pred': n_pred, 'tp': tp_total,
        'fp': fp_total, 'recall': ratio(tp_total, n_gt), 'precision': ratio(tp_total, n_pred),
        'false_alarms_per_image': ratio(fp_total, len(records)),
        'recall_ge_1mm': ratio(*ge1), 'n_gt_ge_1mm': ge1[1],
        'recall_by_kind': {k: {'recall': ratio(*v), 'n': v[1]}
                           for k, v in sorted(by_kind.items())},
        'recall_by_size': {k: {'recall': ratio(*v), 'n': v[1]}
                           for k, v in sorted(by_size.items())},
        # the probability of detection of the defects >= 1 mm by the ideal observer's d'
        'recall_ge_1mm_by_detectability': {
            name: {'recall': ratio(*by_detectability[name]), 'n': by_detectability[name][1]}
            for name in [b[0] for b in DETECTABILITY_BINS] + ['unknown']
            if name in by_detectability},
    }


def truth_outcomes(records: Sequence[ImageRecord], min_score: float, threshold: float = 0.5,
                   criterion: str = 'iou') -> dict:
    """Every ground-truth defect with whether it was found at one score, for probability of
    detection (POD) curves.

    Returns:
        dict of equal-length numpy arrays: size_mm, detectability (d'), kind, hit (bool).
    """
    sizes, d_primes, kinds, hits = [], [], [], []
    for rec in records:
        _, _, gt_matched = match_image(rec, threshold, criterion, min_score)
        sizes.extend(rec.gt_sizes_mm)
        d_primes.extend(rec.gt_detectability)
        kinds.extend(rec.gt_kinds)
        hits.extend(gt_matched >= 0)
    return {'size_mm': np.asarray(sizes, float), 'detectability': np.asarray(d_primes, float),
            'kind': np.asarray(kinds, str), 'hit': np.asarray(hits, bool)}


def operating_point_in_size_range(records: Sequence[ImageRecord], min_score: float,
                                  size_range_mm: Tuple[float, float] = SIZE_RANGE_GE_1MM,
                                  threshold: float = 0.5, criterion: str = 'iou') -> dict:
    """Recall and false alarms at one score with the ignore rule of match_image_in_size_range:
    a prediction that matches only a truth outside the range is no false alarm.

    Returns:
        dict with min_score, size_range_mm ([low, high], None for an infinite high), n_gt
        (truths in the range), tp, fp, ignored (predictions matched to truths outside it),
        recall, false_alarms_per_image.
    """
    tp_total = fp_total = ignored_total = n_gt = 0
    for rec in records:
        _, tp, ignored, _, gt_ignored = match_image_in_size_range(
            rec, threshold, size_range_mm, criterion, min_score)
        tp_total += int(tp.sum())
        ignored_total += int(ignored.sum())
        fp_total += int((~tp & ~ignored).sum())
        n_gt += int(np.count_nonzero(~gt_ignored))
    return {
        'min_score': float(min_score),
        'size_range_mm': [float(v) if np.isfinite(v) else None for v in size_range_mm],
        'threshold': float(threshold), 'criterion': criterion, 'n_images': len(records),
        'n_gt': n_gt, 'tp': tp_total, 'fp': fp_total, 'ignored': ignored_total,
        'recall': float(tp_total / n_gt) if n_gt else float('nan'),
        'false_alarms_per_image': float(fp_total / len(records)) if records else float('nan'),
    }


def part_level_rates(truth_defective: Sequence[bool], verdicts: Sequence[str]) -> dict:
    """Escape rate (defective part ACCEPTed) and false-reject rate (good part REJECTed).

    REVIEW is neither an escape nor a reject; its share is reported for both populations.

    Raises:
        ValueError: lengths differ or a verdict is not ACCEPT/REJECT/REVIEW.
    """
    if len(truth_defective) != len(verdicts):
        raise ValueError('truth and verdict lists differ in length')
    bad = [v for v in verdicts if v not in ('ACCEPT', 'REJECT', 'REVIEW')]
    if bad:
        raise ValueError(f'unknown verdict(s): {sorted(set(bad))}')
    defective = [v for t, v in zip(truth_defective, verdicts) if t]
    good = [v for t, v in zip(truth_defective, verdicts) if not t]

    def share(vs, verdict):
        return float(sum(v == verdict for v in vs) / len(vs)) if vs else float('nan')
    return {
        'n_defective_parts': len(defective), 'n_good_parts': len(good),
        'escape_rate': share(defective, 'ACCEPT'),
        'false_reject_rate': share(good, 'REJECT'),
        'review_rate_defective': share(defective, 'REVIEW'),
        'review_rate_good': share(good, 'REVIEW'),
    }


def best_f1_score_threshold(records: Sequence[ImageRecord], threshold: float = 0.5,
                            criterion: str = 'iou') -> Optional[float]:
    """The confidence threshold that maximises F1 (None without predictions)."""
    scores = np.unique(np.concatenate([r.pred_scores for r in records] or [np.zeros(0)]))
    if scores.size == 0:
        return None
    best, best_f1 = None, -1.0
    for s in scores[::max(1, len(scores) // 200)]:
        op = operating_point(records, s, threshold, criterion)
        p, r = op['precision'], op['recall']
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        if f1 > best_f1:
            best, best_f1 = float(s), f1
    return best


def operating_point_at_false_alarms(records: Sequence[ImageRecord], max_fa_per_image: float,
                                    threshold: float = 0.5, criterion: str = 'iou') -> dict:
    """The operating point with the lowest score threshold whose false alarms per image stay
    at or below max_fa_per_image (the issue's "recall at <= 0.2 false alarms per image").

    Returns:
        operating_point(...) at that score (its 'min_score' says which), or the one at a
        score above every prediction (nothing reported) when no threshold qualifies.
    """
    scores = np.unique(np.concatenate([r.pred_scores for r in records] or [np.zeros(0)]))
    best = operating_point(records, float('inf'), threshold, criterion)
    # false alarms only grow as the threshold falls: bisect over the sorted scores
    lo, hi = 0, len(scores) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        op = operating_point(records, float(scores[mid]), threshold, criterion)
        if op['false_alarms_per_image'] <= max_fa_per_image:
            best, hi = op, mid - 1
        else:
            lo = mid + 1
    return best
