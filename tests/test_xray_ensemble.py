"""The 'ensemble' detector: fusing the cnn's and the seg's answers, one shared front end."""

import cv2
import numpy as np
import pytest
import torch

from humanoid_inspection.xray.detector import (
    DetectedDefect, InspectionCancelled, make_detector)
from humanoid_inspection.xray.detector_ensemble import EnsembleDetector, fuse
from humanoid_inspection.xray.detector_seg import SegDetector, SegNet, save_model
from test_xray_detector import make_test_radiograph


def _defect(box, confidence, kind='gas_porosity'):
    x0, y0, x1, y1 = box
    return DetectedDefect(kind=kind, confidence=confidence, box_xyxy=box,
                          mask=np.ones((y1 - y0, x1 - x0), bool), size_mm=1.0,
                          area_mm2=1.0, contrast=-0.1)


def test_agreement_averages_and_a_lone_detection_counts_half():
    cnn = [_defect((10, 10, 20, 20), 0.9, 'crack'), _defect((50, 50, 56, 56), 0.8)]
    seg = [_defect((11, 10, 21, 20), 0.7), _defect((80, 80, 90, 90), 0.95)]
    out = fuse(cnn, seg)
    assert [round(d.confidence, 3) for d in out] == [0.8, 0.475, 0.4]
    both, seg_only, cnn_only = out
    # the pair keeps the first detector's box and class
    assert both.box_xyxy == (10, 10, 20, 20) and both.kind == 'crack'
    assert both.features['agreement'] == 1.0 and seg_only.features['agreement'] == 0.0
    assert seg_only.box_xyxy == (80, 80, 90, 90) and cnn_only.box_xyxy == (50, 50, 56, 56)


def test_each_detection_is_paired_once_and_only_above_the_overlap():
    cnn = [_defect((10, 10, 20, 20), 0.9), _defect((11, 10, 21, 20), 0.6)]
    seg = [_defect((10, 10, 20, 20), 0.8), _defect((30, 10, 40, 20), 0.9)]
    out = fuse(cnn, seg)
    assert sum(d.features['agreement'] for d in out) == 1.0 and len(out) == 3
    # IoU 0.25 < 0.3: no pair
    out = fuse([_defect((0, 0, 10, 10), 0.9)], [_defect((6, 0, 16, 10), 0.9)])
    assert [d.features['agreement'] for d in out] == [0.0, 0.0]
    assert fuse([], []) == [] and len(fuse([], seg)) == 2


def test_ensemble_detect_contract(tmp_path):
    torch.manual_seed(3)
    save_model(SegNet(width=8).eval(), tmp_path / 'seg.pt')
    det = make_detector('ensemble', seg=SegDetector(tmp_path / 'seg.pt'))
    assert isinstance(det, EnsembleDetector)
    image, _ = make_test_radiograph((256, 256), seed=32, voids=[(100, 110, 10)])
    cv_before, torch_before = cv2.getNumThreads(), torch.get_num_threads()
    for d in det.detect(image, 0.1, 1.0):
        assert 0 <= d.confidence <= 1 and d.features['agreement'] in (0.0, 1.0)
    # the seg's inputs run on a second thread: nothing may change the process's settings
    assert (cv2.getNumThreads(), torch.get_num_threads()) == (cv_before, torch_before)
    with pytest.raises(InspectionCancelled):
        det.detect(image, 0.1, 1.0, should_cancel=lambda: True)
    with pytest.raises(ValueError):
        det.detect(np.zeros((8, 8), np.uint16), 0.1, 1.0)
