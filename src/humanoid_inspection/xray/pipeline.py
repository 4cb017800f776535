"""One call from a radiograph to a graded verdict: validate -> detect -> grade.

`inspect_radiograph()` is what the xray_inspection node, the `inspect` CLI and the cell use.
Image-quality problems that make a verdict meaningless (a constant image, mostly saturated
pixels) do not raise: the part goes to REVIEW with the reason. Malformed input (empty, NaN,
wrong shape or dtype, bad geometry, unknown family) raises ValueError with the reason.
With mask_unexposed, detections in or at the edge of a region the beam did not reach
(exposure.py: an image intensifier's dark surround) are dropped before grading, whatever the
detector. No ROS imports.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from humanoid_inspection.xray.detector import (
    DEFAULT_DETECTOR, DetectedDefect, check_cancel, make_detector, mm_per_px,
    validate_radiograph)
from humanoid_inspection.xray.exposure import drop_unexposed
from humanoid_inspection.xray.grading import REVIEW, AcceptanceTable, grade, load_table

SATURATED_SHARE_REVIEW = 0.5      # more saturated pixels than this -> REVIEW
_DETECTORS: Dict[str, object] = {}
_TABLE: List[AcceptanceTable] = []


@dataclass
class InspectionOutcome:
    """Everything one inspection produced.

    Attributes:
        defects: detections (graded: zone and severity level set).
        verdict: 'ACCEPT' | 'REJECT' | 'REVIEW'.
        reasons: human-readable reasons, each naming the rule that fired.
        stage_times_s: wall time per stage, in order ('validate', 'detect', 'grade').
        detector: name of the detector used.
        family: part family graded against.
        image_shape: (H, W).
        total_time_s: wall time of the whole call.
    """

    defects: List[DetectedDefect]
    verdict: str
    reasons: List[str]
    stage_times_s: Dict[str, float] = field(default_factory=dict)
    detector: str = ''
    family: str = ''
    image_shape: tuple = (0, 0)
    total_time_s: float = 0.0

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {'verdict': self.verdict, 'reasons': list(self.reasons),
                'detector': self.detector, 'family': self.family,
                'image_shape': [int(v) for v in self.image_shape],
                'defects': [d.to_dict() for d in self.defects],
                'stage_times_s': {k: round(v, 5) for k, v in self.stage_times_s.items()},
                'total_time_s': round(self.total_time_s, 5)}


def get_detector(name_or_detector: Union[str, object] = 'default'):
    """A detector by name (built once per process and cached) or the object itself."""
    if not isinstance(name_or_detector, str):
        return name_or_detector
    key = DEFAULT_DETECTOR if name_or_detector in ('', 'default') else name_or_detector
    if key not in _DETECTORS:
        _DETECTORS[key] = make_detector(key)
    return _DETECTORS[key]


def image_quality_problem(image: np.ndarray) -> Optional[str]:
    """A reason why no verdict can be trusted on this image, or None."""
    if image.dtype in (np.uint8, np.uint16) and image.ndim == 2:
        import cv2
        lo, hi = cv2.minMaxLoc(image)[:2]           # one pass, no float copy
    else:
        lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 0:
        return f'REVIEW: radiograph is constant (all pixels {lo:g}): no exposure or no part?'
    if image.dtype in (np.uint8, np.uint16):
        full = np.iinfo(image.dtype).max
        if hi < full:
            return None
        share = float(np.count_nonzero(image >= full)) / image.size
        if share > SATURATED_SHARE_REVIEW:
            return (f'REVIEW: {share:.0%} of the pixels are saturated at {full}: '
                    'over-exposed radiograph')
    return None


def inspect_radiograph(image: np.ndarray, pixel_pitch_mm: float, magnification: float,
                       family: str, detector: Union[str, object] = 'default',
                       table: Optional[AcceptanceTable] = None,
                       should_cancel: Optional[Callable[[], bool]] = None,
                       progress: Optional[Callable[[str, float], None]] = None,
                       mask_unexposed: bool = False) -> InspectionOutcome:
    """Inspect one radiograph.

    Args:
        image: 2-D uint8/uint16/float radiograph (transmission: bright = thin/void).
        pixel_pitch_mm: detector pixel pitch (mm).
        magnification: geometric magnification (SDD / SOD).
        family: part family of the acceptance table ('housing', 'bracket', 'hub', 'generic').
        detector: 'default' or a name of detector.DETECTOR_NAMES, or a detector object.
        table: acceptance table (default config/acceptance_e505.yaml, loaded once).
        should_cancel: polled between stages (and inside the detector); when it returns True
            InspectionCancelled is raised.
        progress: called with (stage, fraction 0..1) as stages start.
        mask_unexposed: drop the detections at a region the beam did not reach
            (exposure.drop_unexposed; for image-intensifier radiographs: darkness alone
            cannot tell that region from thick metal at the border).

    Returns:
        InspectionOutcome.

    Raises:
        ValueError: malformed image, geometry, detector name or family.
        InspectionCancelled: should_cancel() returned True.
    """
    t_start = time.perf_counter()
    times = {}

    def stage(name, fraction):
        check_cancel(should_cancel)
        if progress is not None:
            progress(name, fraction)
        return time.perf_counter()

    t = stage('validate', 0.0)
    if table is None:
        if not _TABLE:
            _TABLE.append(load_table())
        table = _TABLE[0]
    table.zones(family)                       # unknown family -> ValueError now
    validate_radiograph(image, copy=False)
    mm_per_px(pixel_pitch_mm, magnification)
    det = get_detector(detector)
    problem = image_quality_problem(np.asarray(image))
    times['validate'] = time.perf_counter() - t
    if problem:
        return InspectionOutcome([], REVIEW, [problem], times, det.name, family,
                                 tuple(image.shape[:2]), time.perf_counter() - t_start)
    t = stage('detect', 0.1)
    defects = det.detect(image, pixel_pitch_mm, magnification, should_cancel=should_cancel)
    if mask_unexposed:
        defects = drop_unexposed(defects, image)
    times['detect'] = time.perf_counter() - t
    t = stage('grade', 0.9)
    result = grade(defects, family, tuple(image.shape[:2]), table)
    times['grade'] = time.perf_counter() - t
    return InspectionOutcome(defects, result.verdict, result.reasons, times, det.name, family,
                             tuple(image.shape[:2]), time.perf_counter() - t_start)


KIND_COLOURS_RGB = {'gas_porosity': (255, 200, 0), 'shrinkage': (255, 80, 0),
                    'crack': (255, 0, 0), 'inclusion': (0, 160, 255)}
VERDICT_COLOURS_RGB = {'ACCEPT': (0, 200, 0), 'REJECT': (230, 0, 0), 'REVIEW': (255, 170, 0)}


def display_image(image: np.ndarray) -> np.ndarray:
    """uint8 grey view of a radiograph (0.5-99.5 percentile stretch)."""
    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img[::2, ::2], [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def render_overlay(image: np.ndarray, outcome: InspectionOutcome) -> np.ndarray:
    """RGB uint8 picture of the radiograph with defect masks, boxes, labels and the verdict."""
    import cv2
    grey = display_image(image)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    h, w = grey.shape
    scale = max(0.4, min(h, w) / 1400.0)
    thick = max(1, int(round(min(h, w) / 700)))
    for d in outcome.defects:
        colour = KIND_COLOURS_RGB.get(d.kind, (255, 0, 255))
        x0, y0, x1, y1 = d.box_xyxy
        region = rgb[y0:y1, x0:x1]
        region[d.mask] = (0.5 * region[d.mask] + 0.5 * np.array(colour)).astype(np.uint8)
        pad = 2 + thick
        cv2.rectangle(rgb, (x0 - pad, y0 - pad), (x1 + pad, y1 + pad), colour, thick)
        label = f'{d.kind} {d.size_mm:.1f}mm {d.confidence:.2f}'
        if d.severity_level:
            label += f' L{d.severity_level}'
        cv2.putText(rgb, label, (x0, max(12, y0 - pad - 3)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour, thick, cv2.LINE_AA)
    cv2.putText(rgb, outcome.verdict, (10, int(40 * scale) + 10), cv2.FONT_HERSHEY_SIMPLEX,
                scale * 2, VERDICT_COLOURS_RGB.get(outcome.verdict, (255, 255, 255)),
                thick * 2, cv2.LINE_AA)
    return rgb
