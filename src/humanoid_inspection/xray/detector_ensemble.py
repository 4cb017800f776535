"""ADR 'ensemble': the 'cnn' and 'seg' detectors on one shared front end, their answers fused.

The two see a radiograph differently: 'cnn' judges the front end's candidates one patch at a
time (and redraws their boxes with its refiner), 'seg' labels every pixel. Where both report
a defect (boxes overlapping by IoU >= MATCH_IOU) the detection is the cnn's (its box, mask,
class) with the mean of the two confidences; a defect only one of them reports keeps its
own detection at half its confidence (one opinion out of two). Agreement ranks first, so the
false alarms of either one (each makes its own) fall below the defects both see.

Costs the front end once, plus both networks; the seg's input maps (OpenCV) are computed on a
second thread while the cnn runs. No ROS imports.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import List

from humanoid_inspection.xray.candidates import cv_threads, radiograph_front_end
from humanoid_inspection.xray.detector import (
    CancelCheck, DetectedDefect, check_cancel, sort_by_confidence)
from humanoid_inspection.xray.metrics import iou_matrix

MATCH_IOU = 0.3


def fuse(first: List[DetectedDefect], second: List[DetectedDefect],
         match_iou: float = MATCH_IOU) -> List[DetectedDefect]:
    """Fuse two detectors' answers for one radiograph (see the module doc).

    `first`'s detections are taken in decreasing confidence; each is paired with the
    unpaired detection of `second` it overlaps most, when that IoU is >= match_iou.

    Returns:
        the fused detections, most confident first.
    """
    first = sort_by_confidence(first)
    second = sort_by_confidence(second)
    iou = iou_matrix([d.box_xyxy for d in first], [d.box_xyxy for d in second])
    paired = set()
    out = []
    for i, d in enumerate(first):
        best, j_best = match_iou, -1
        for j in range(len(second)):
            if j not in paired and iou[i, j] >= best:
                best, j_best = iou[i, j], j
        if j_best >= 0:
            paired.add(j_best)
            other = second[j_best].confidence
            out.append(replace(d, confidence=0.5 * (d.confidence + other),
                               features=dict(d.features, agreement=1.0)))
        else:
            out.append(replace(d, confidence=0.5 * d.confidence,
                               features=dict(d.features, agreement=0.0)))
    for j, d in enumerate(second):
        if j not in paired:
            out.append(replace(d, confidence=0.5 * d.confidence,
                               features=dict(d.features, agreement=0.0)))
    return sort_by_confidence(out)


class EnsembleDetector:
    """'cnn' + 'seg' on one front end, fused (fuse)."""

    name = 'ensemble'

    def __init__(self, cnn=None, seg=None):
        """Args: the two detectors (default: the committed weights of each)."""
        from humanoid_inspection.xray.detector_cnn import CnnDetector
        from humanoid_inspection.xray.detector_seg import SegDetector
        self.cnn = cnn if cnn is not None else CnnDetector()
        self.seg = seg if seg is not None else SegDetector()
        # one front end serves both: the candidate threshold only matters to the cnn
        self.params = replace(self.cnn.params, peak_threshold=self.seg.params.peak_threshold)
        if self.params != self.seg.params:
            raise ValueError('the cnn and seg detectors were trained on different front ends: '
                             f'{self.cnn.params} vs {self.seg.params}')

    def detect(self, image, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None) -> List[DetectedDefect]:
        """Find defects (same contract as ClassicalDetector.detect).

        Raises:
            ValueError: bad image or geometry. InspectionCancelled: cancelled.
        """
        with cv_threads():
            fe, mmpp = radiograph_front_end(image, pixel_pitch_mm, magnification, self.params,
                                            should_cancel)
            # the seg's input maps (OpenCV, no torch) on a second thread while the cnn runs
            with ThreadPoolExecutor(max_workers=1) as pool:
                prepared = pool.submit(self.seg.prepare, fe)
                from_cnn = self.cnn.detect_on_front_end(fe, mmpp, should_cancel)
                prepared = prepared.result()
        check_cancel(should_cancel)
        from_seg = self.seg.detect_prepared(fe, mmpp, prepared, should_cancel)
        return fuse(from_cnn, from_seg)
