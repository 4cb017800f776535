"""Detection metrics on hand-made cases whose AP/recall can be worked out on paper."""

import numpy as np
import pytest

from humanoid_inspection.xray.metrics import (
    ImageRecord, ap50_95, ap_per_class, average_precision, centre_match_matrix, iou_matrix,
    operating_point, part_level_rates, size_bin)


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
