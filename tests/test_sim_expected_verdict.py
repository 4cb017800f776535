"""The sim's ground-truth verdict: a part's TRUE defects graded with the project's table."""

from types import SimpleNamespace

import numpy as np

from humanoid_inspection.xray.grading import truth_verdict as expected_verdict


def _radiograph(*truth):
    return SimpleNamespace(image=np.zeros((1024, 1024), np.uint16), truth=list(truth))


def _defect(kind, size_mm, area_mm2, centre=(500, 500), half=6):
    x, y = centre
    return SimpleNamespace(kind=kind, box_xyxy=(x - half, y - half, x + half, y + half),
                           mask=np.ones((2 * half, 2 * half), bool), size_mm=size_mm,
                           area_mm2=area_mm2, contrast=0.1)


def test_no_defect_is_accept():
    assert expected_verdict(_radiograph(), 'housing') == 'ACCEPT'


def test_a_crack_is_reject_at_any_size():
    assert expected_verdict(_radiograph(_defect('crack', 1.0, 0.5)), 'bracket') == 'REJECT'


def test_a_tiny_pore_is_not_reject_and_a_huge_one_is():
    assert expected_verdict(_radiograph(_defect('gas_porosity', 0.3, 0.05)), 'hub') != 'REJECT'
    assert expected_verdict(_radiograph(_defect('gas_porosity', 30.0, 400.0, half=60)),
                            'hub') == 'REJECT'
