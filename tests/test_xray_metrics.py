"""Detection metrics on hand-made cases whose AP/recall can be worked out on paper."""

import numpy as np
import pytest

from humanoid_inspection.xray.metrics import (
    ImageRecord, ap50_95, ap_per_class, average_precision, centre_match_matrix,
    detectability_bin, iou_matrix, operating_point, part_level_rates, size_bin, truth_outcomes)


def rec(pred, scores, gt, kinds=(), sizes=()):
    return ImageRecord(np.array(pred, float).reshape(-1, 4), scores,
                       np.array(gt, float).reshape(-1, 4), list(kinds), list(sizes))


def test_iou_of_known_boxes():
    m = iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert m[0] == pytest.approx([1.0, 50 / 150, 0.0])


def test_perfect_detections_give_ap_one_at_every_iou():
    r = rec([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [[0, 0, 10, 10], [20, 20, 30, 30]])
    assert average_precision([r], 0.5) == pytest.approx(1.0)
    assert ap50_95([r]) == pytest.approx(1.0)


def test_false_positive_ranked_first_halves_precision_at_first_hit():
    # scores: FP 0.9, TP 0.8 (one gt) -> precision at recall 1 is 0.5 -> AP = 0.5
    r = rec([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [[0, 0, 10, 10]])
    assert average_precision([r], 0.5) == pytest.approx(0.5)


def test_false_positive_ranked_last_does_not_hurt_ap():
    r = rec([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.1], [[0, 0, 10, 10]])
    assert average_precision([r], 0.5) == pytest.approx(1.0)


def test_half_recall_across_two_images():
    # two gts, one found with precision 1 -> recall points 0..0.5 have precision 1 -> 51/101
    a = rec([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]])
    b = rec([], [], [[0, 0, 10, 10]])
    assert average_precision([a, b], 0.5) == pytest.approx(51 / 101)


def test_iou_threshold_sensitivity_in_ap50_95():
    # IoU = 0.68 (box 10x10 vs 10x... ) counts for thresholds 0.50..0.65 -> 4 of 10
    pred = [0, 0, 10, 10]
    gt = [0, 0, 10, 6.8]   # IoU = 68/100
    r = rec([pred], [0.9], [gt])
    assert iou_matrix([pred], [gt])[0, 0] == pytest.approx(0.68)
    assert ap50_95([r]) == pytest.approx(0.4)


def test_per_class_ap_needs_the_right_kind():
    # two pores and a crack, all boxed; one pore called a crack
    gt = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 60, 50]]
    r = ImageRecord(np.array(gt, float), [0.9, 0.8, 0.7], np.array(gt, float),
                    ['gas_porosity', 'gas_porosity', 'crack'], [1.0, 1.0, 3.0],
                    ['gas_porosity', 'crack', 'crack'])
    assert average_precision([r], 0.5) == pytest.approx(1.0)      # class-agnostic
    per = ap_per_class([r], 0.5)
    assert list(per) == ['crack', 'gas_porosity']
    # gas porosity: one of two found, precision 1 -> 51/101
    assert per['gas_porosity'] == pytest.approx(51 / 101)
    # crack: FP (0.8) ranked before the TP (0.7) -> precision 0.5 at recall 1
    assert per['crack'] == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive():
    r = rec([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [[0, 0, 10, 10]])
    op = operating_point([r], 0.0)
    assert op['tp'] == 1 and op['fp'] == 1 and op['false_alarms_per_image'] == 1.0


def test_no_ground_truth_gives_nan_ap():
    assert np.isnan(average_precision([rec([[0, 0, 1, 1]], [0.5], [])]))


def test_recall_by_kind_and_size_bin_at_operating_score():
    r = rec([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0.9, 0.3, 0.8],
            [[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70]],
            kinds=['gas_porosity', 'crack', 'crack'], sizes=[0.5, 2.0, 5.0])
    op = operating_point([r], min_score=0.5)
    assert op['recall'] == pytest.approx(1 / 3)
    assert op['recall_by_kind']['gas_porosity'] == {'recall': 1.0, 'n': 1}
    assert op['recall_by_kind']['crack'] == {'recall': 0.0, 'n': 2}
    assert op['recall_by_size']['<1mm']['recall'] == 1.0
    assert op['recall_by_size']['1-3mm']['recall'] == 0.0
    assert op['recall_ge_1mm'] == 0.0 and op['n_gt_ge_1mm'] == 2
    assert op['fp'] == 1 and op['precision'] == pytest.approx(0.5)


def test_recall_of_defects_of_1mm_and_more_by_detectability():
    # three truths >= 1 mm (d' 3, 12 and 80) and one < 1 mm; the d' 12 one is missed
    r = ImageRecord([[0, 0, 10, 10], [40, 40, 50, 50], [60, 60, 70, 70]], [0.9, 0.8, 0.7],
                    [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]],
                    ['crack'] * 4, [2.0, 1.5, 4.0, 0.5], gt_detectability=[3.0, 12.0, 80.0, 9.0])
    by_d = operating_point([r], min_score=0.5)['recall_ge_1mm_by_detectability']
    assert by_d == {"d'<5": {'recall': 1.0, 'n': 1}, "d'5-15": {'recall': 0.0, 'n': 1},
                    "d'>=50": {'recall': 1.0, 'n': 1}}
    out = truth_outcomes([r], min_score=0.75)
    assert out['hit'].tolist() == [True, False, True, False]
    assert out['detectability'].tolist() == [3.0, 12.0, 80.0, 9.0]
    assert out['size_mm'].tolist() == [2.0, 1.5, 4.0, 0.5]
    assert [detectability_bin(d) for d in (4.9, 5.0, 49.0, 50.0, float('nan'))] == \
        ["d'<5", "d'5-15", "d'15-50", "d'>=50", 'unknown']
    # real annotations carry no d': every truth lands in 'unknown'
    plain = rec([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]], sizes=[2.0])
    assert operating_point([plain], 0.5)['recall_ge_1mm_by_detectability'] == \
        {'unknown': {'recall': 1.0, 'n': 1}}
    with pytest.raises(ValueError, match='gt_detectability'):
        ImageRecord([], [], [[0, 0, 1, 1]], gt_detectability=[1.0, 2.0])


def test_centre_criterion_matches_loose_boxes():
    m = centre_match_matrix([[4, 4, 6, 6]], [[0, 0, 30, 30], [50, 50, 60, 60]])
    assert m.tolist() == [[1.0, 0.0]]
    r = rec([[4, 4, 6, 6]], [0.9], [[0, 0, 30, 30]])
    assert average_precision([r], 0.5) == 0.0
    assert average_precision([r], 0.5, criterion='centre') == pytest.approx(1.0)


def test_size_bins():
    assert [size_bin(s) for s in (0.3, 1.0, 2.9, 3.0, float('nan'))] == \
        ['<1mm', '1-3mm', '1-3mm', '>3mm', 'unknown']


def test_part_level_rates():
    rates = part_level_rates([True, True, True, False, False],
                             ['ACCEPT', 'REJECT', 'REVIEW', 'REJECT', 'ACCEPT'])
    assert rates['escape_rate'] == pytest.approx(1 / 3)
    assert rates['false_reject_rate'] == pytest.approx(0.5)
    assert rates['review_rate_defective'] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match='unknown verdict'):
        part_level_rates([True], ['MAYBE'])
    with pytest.raises(ValueError, match='length'):
        part_level_rates([True], [])


def test_evaluate_reports_visible_only_figures(tmp_path):
    from humanoid_inspection.xray.evaluate_cli import evaluate, synthetic_items
    items = list(synthetic_items(3, 100000, 256))
    n_gt = sum(len(item['gt_boxes']) for item in items)
    assert n_gt > 0
    result = evaluate(items, 'classical', 0.5, tmp_path, grade_parts=True, n_crops=1,
                      progress=False)
    vis = result['visible_only']
    assert vis['n_gt'] + vis['n_invisible'] == n_gt
    assert vis['min_abs_contrast'] > 0 and 0.0 <= result['ap50'] <= 1.0
    # AP for defects >= 1 mm beside (not instead of) the all-defects AP
    n_ge1 = sum(s >= 1.0 for item in items for s in item['gt_sizes'])
    op = result['operating_point_iou50_ge_1mm']
    assert op['n_gt'] == n_ge1 and op['size_range_mm'] == [1.0, None]
    for key in ('ap50_ge_1mm', 'ap50_95_ge_1mm'):
        assert (0.0 <= result[key] <= 1.0) if n_ge1 else np.isnan(result[key])
    assert result['ap50_95_ge_1mm'] <= result['ap50_ge_1mm'] or not n_ge1
    # the ideal observer's verdict on the same defects and the POD figure
    d = result['detectability_ge_1mm']
    assert d['n_gt'] == n_ge1 and 0 <= d['n_below_rose'] <= n_ge1
    found = result['operating_point_iou50']['recall_ge_1mm'] * n_ge1 if n_ge1 else 0
    assert d['misses_below_rose'] + d['misses_at_or_above_rose'] == n_ge1 - round(found)
    # over all defects: every defect counted, and AP50 cannot beat what the detector found
    every = result['detectability_all']
    assert every['n_gt'] == n_gt and every['min_size_mm'] == 0.0
    assert every['n_below_rose'] >= d['n_below_rose']
    misses = n_gt - round(result['operating_point_iou50']['recall'] * n_gt)
    assert every['misses_below_rose'] + every['misses_at_or_above_rose'] == misses
    assert (tmp_path / result['pod_figure']).stat().st_size > 1000
    # each pictured miss says how visible it was; a false alarm has no truth to say it of
    assert result['worst_misses'] and all(m['detectability'] >= 0
                                          for m in result['worst_misses'])
    assert all('detectability' not in f for f in result['worst_false_alarms'])


def test_operating_point_at_a_false_alarm_budget():
    from humanoid_inspection.xray.metrics import operating_point_at_false_alarms
    # image a: TP 0.9, FP 0.8, TP 0.6; image b: FP 0.7, TP 0.3 -> at <= 0.5 FA/img the lowest
    # admissible score is 0.8 (1 FA over 2 images): recall 1/3
    a = rec([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.6],
            [[0, 0, 10, 10], [20, 20, 30, 30]])
    b = rec([[50, 50, 60, 60], [0, 0, 10, 10]], [0.7, 0.3], [[0, 0, 10, 10]])
    op = operating_point_at_false_alarms([a, b], 0.5)
    assert op['min_score'] == pytest.approx(0.8) and op['recall'] == pytest.approx(1 / 3)
    op = operating_point_at_false_alarms([a, b], 1.0)
    assert op['min_score'] == pytest.approx(0.3) and op['recall'] == pytest.approx(1.0)
    none = operating_point_at_false_alarms([b], 0.0)
    assert none['n_pred'] == 0 and none['recall'] == 0.0


# AP restricted to defects >= 1 mm (COCO area-range semantics): L = large truth (>= 1 mm),
# S = small truth (< 1 mm, ignored)
GE1 = (1.0, float('inf'))


def test_prediction_on_a_small_truth_is_neither_tp_nor_fp():
    from humanoid_inspection.xray.metrics import SIZE_RANGE_GE_1MM
    assert SIZE_RANGE_GE_1MM == GE1
    l1, l2, s, away = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]
    # by score: TP on L1 0.9, on S 0.8, FP 0.7, TP on L2 0.6. Without the S prediction:
    # precision 1 up to recall 0.5, 2/3 at recall 1 -> (51 + 50 * 2/3) / 101
    r = rec([l1, s, away, l2], [0.9, 0.8, 0.7, 0.6], [l1, l2, s], sizes=[2.0, 1.5, 0.5])
    expected = (51 + 50 * 2 / 3) / 101
    assert average_precision([r], 0.5, size_range_mm=GE1) == pytest.approx(expected)
    # the same as the plain AP with the small truth and its prediction removed
    plain = rec([l1, away, l2], [0.9, 0.7, 0.6], [l1, l2], sizes=[2.0, 1.5])
    assert average_precision([plain], 0.5) == pytest.approx(expected)
    # counted as a FP it would give 0.5 at recall 1: (51 + 50 * 0.5) / 101 -> differs
    assert expected != pytest.approx((51 + 50 * 0.5) / 101)


def test_unmatched_small_truth_does_not_lower_recall():
    r = rec([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10], [40, 40, 50, 50]], sizes=[1.0, 0.99])
    assert average_precision([r], 0.5) == pytest.approx(51 / 101)
    assert average_precision([r], 0.5, size_range_mm=GE1) == pytest.approx(1.0)
    assert ap50_95([r], size_range_mm=GE1) == pytest.approx(1.0)


def test_prediction_over_large_and_small_truth_takes_the_large_one():
    from humanoid_inspection.xray.metrics import (
        match_image, match_image_in_size_range, operating_point_in_size_range)
    pred = [0, 0, 10, 10]
    small, large = [0, 0, 10, 9], [0, 0, 10, 6]    # IoU 0.9 and 0.6 with pred
    r = rec([pred], [0.9], [small, large], sizes=[0.8, 1.5])
    # the plain matching takes the more similar (small) truth ...
    assert match_image(r, 0.5)[2].tolist() == [0, -1]
    # ... the size-range matching the large one first
    order, tp, ignored, gt_matched, gt_ignored = match_image_in_size_range(r, 0.5, GE1)
    assert tp.tolist() == [True] and ignored.tolist() == [False]
    assert gt_matched.tolist() == [-1, 0] and gt_ignored.tolist() == [True, False]
    assert average_precision([r], 0.5, size_range_mm=GE1) == pytest.approx(1.0)
    # a second, lower-scored prediction on the small truth then takes it and is ignored
    r2 = rec([pred, small], [0.9, 0.5], [small, large], sizes=[0.8, 1.5])
    _, tp, ignored, gt_matched, _ = match_image_in_size_range(r2, 0.5, GE1)
    assert tp.tolist() == [True, False] and ignored.tolist() == [False, True]
    assert gt_matched.tolist() == [1, 0]
    op = operating_point_in_size_range([r2], 0.0)
    assert (op['tp'], op['fp'], op['ignored'], op['n_gt']) == (1, 0, 1, 1)
    assert op['recall'] == 1.0 and op['false_alarms_per_image'] == 0.0
    assert op['size_range_mm'] == [1.0, None]
    # the plain matching pairs them the other way round
    assert match_image(r2, 0.5)[2].tolist() == [0, 1]


def test_unmatched_prediction_is_a_false_positive_whatever_its_size():
    from humanoid_inspection.xray.metrics import operating_point_in_size_range
    # a 1-px prediction matching nothing, ranked first: precision 0.5 at recall 1
    r = rec([[50, 50, 51, 51], [0, 0, 10, 10]], [0.9, 0.8], [[0, 0, 10, 10], [30, 30, 31, 31]],
            sizes=[2.0, 0.3])
    assert average_precision([r], 0.5, size_range_mm=GE1) == pytest.approx(0.5)
    op = operating_point_in_size_range([r], 0.0)
    assert (op['tp'], op['fp'], op['ignored']) == (1, 1, 0)


def _average_precision_before_size_ranges(records, threshold=0.5, criterion='iou'):
    """average_precision as it was before size_range_mm (reference for bit-identity)."""
    from humanoid_inspection.xray.metrics import match_image
    scores, tps, n_gt = [], [], 0
    for r in records:
        order, tp, _ = match_image(r, threshold, criterion)
        scores.append(r.pred_scores[order])
        tps.append(tp)
        n_gt += len(r.gt_boxes)
    if n_gt == 0:
        return float('nan')
    scores, tps = np.concatenate(scores), np.concatenate(tps)
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind='stable')
    tp_cum, fp_cum = np.cumsum(tps[order]), np.cumsum(~tps[order])
    recall = tp_cum / n_gt
    precision = np.maximum.accumulate((tp_cum / np.maximum(tp_cum + fp_cum, 1e-12))[::-1])[::-1]
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side='left')
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(np.mean(sampled))


def _random_records(seed, n_images=12):
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(n_images):
        n_gt = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n_gt, 2))
        wh = rng.uniform(3, 30, (n_gt, 2))
        gt = np.hstack([xy, xy + wh])
        # jittered copies of some truths (also duplicates) and random boxes
        preds = [g + rng.normal(0, 3, 4) for g in gt for _ in range(int(rng.integers(0, 3)))]
        for _ in range(int(rng.integers(0, 4))):
            p = rng.uniform(0, 200, 2)
            preds.append(np.hstack([p, p + rng.uniform(3, 30, 2)]))
        preds = np.array(preds).reshape(-1, 4)
        preds[:, 2:] = np.maximum(preds[:, 2:], preds[:, :2] + 1)
        scores = np.round(rng.uniform(0, 1, len(preds)), 1)    # ties on purpose
        sizes = list(rng.uniform(0.2, 4.0, n_gt))
        records.append(ImageRecord(preds, scores, gt, [], sizes))
    return records


def test_no_size_range_is_bit_identical_to_the_plain_ap():
    for seed in range(5):
        records = _random_records(seed)
        for t in (0.25, 0.5, 0.75):
            old = _average_precision_before_size_ranges(records, t)
            assert average_precision(records, t) == old
            # a range holding every (finite) size ignores nothing
            assert average_precision(records, t, size_range_mm=(0.0, float('inf'))) == old
        assert average_precision(records, 0.5, 'centre') == \
            _average_precision_before_size_ranges(records, 0.5, 'centre')
    # and the range does change it where small truths exist
    records = _random_records(0)
    assert average_precision(records, 0.5, size_range_mm=GE1) != average_precision(records)


def test_size_range_ap_is_nan_without_truth_in_the_range():
    # only a small and an unknown-size truth, both found
    r = rec([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8],
            [[0, 0, 10, 10], [20, 20, 30, 30]], sizes=[0.5, float('nan')])
    assert np.isnan(average_precision([r], 0.5, size_range_mm=GE1))
    assert np.isnan(ap50_95([r], size_range_mm=GE1))
    # the upper end is exclusive, like SIZE_BINS_MM: a 3.0 mm truth is out of [1, 3)
    r3 = rec([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10]], sizes=[3.0])
    assert np.isnan(average_precision([r3], 0.5, size_range_mm=(1.0, 3.0)))
    assert average_precision([r3], 0.5, size_range_mm=(3.0, 10.0)) == pytest.approx(1.0)
