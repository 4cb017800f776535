"""Common types of the defect detectors (ADR) and the factory that picks one.

A detector turns a radiograph (2-D array, 8/16-bit or float, transmission polarity: bright =
less attenuation) into a list of DetectedDefect. Two implementations exist:

- 'classical' (detector_classical.py): background estimation, difference image, adaptive
  threshold, connected components with blob features and rules;
- 'cnn' (detector_cnn.py): a small torch segmentation network trained on simulator data.

`make_detector('default')` returns the one that measured better (see docs/xray_inspection.md).
No ROS imports.
"""

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

DEFECT_KINDS = ('gas_porosity', 'shrinkage', 'crack', 'inclusion')
DETECTOR_NAMES = ('classical', 'cnn', 'seg', 'ensemble', 'unet')
# Chosen from the measurements in docs/xray_inspection.md (bench/bench_xray_adr.py): the
# CNN has the higher AP50 and fewer false alarms on the synthetic held-out set (both are far
# from the targets; see the doc).
DEFAULT_DETECTOR = 'cnn'

MIN_SIDE_PX = 16                 # smaller images cannot hold a background estimate
MAX_PIXELS = 8192 * 8192         # larger ones are refused (memory/time guard)


class InspectionCancelled(RuntimeError):
    """Raised inside a detector or the pipeline when the caller asked to stop."""


@dataclass
class DetectedDefect:
    """One discontinuity found in a radiograph.

    Attributes:
        kind: one of DEFECT_KINDS.
        confidence: 0..1.
        box_xyxy: (x_min, y_min, x_max, y_max) in pixels, max exclusive (x = column).
        mask: bool array of shape (y_max - y_min, x_max - x_min), the defect pixels.
        size_mm: largest extent in the object plane (mm).
        area_mm2: projected area in the object plane (mm^2).
        contrast: (I_bg - I) / I_bg averaged over the mask (voids < 0, inclusions > 0).
        zone: grading zone ('' until graded).
        severity_level: ASTM E505-style level 1..8 (0 until graded).
        features: extra numbers the detector measured (snr, elongation, solidity, ...).
    """

    kind: str
    confidence: float
    box_xyxy: Tuple[int, int, int, int]
    mask: np.ndarray
    size_mm: float
    area_mm2: float
    contrast: float
    zone: str = ''
    severity_level: int = 0
    features: dict = field(default_factory=dict)

    @property
    def area_px(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def centre_xy(self) -> Tuple[float, float]:
        """Centre of the box (x, y) in pixels."""
        x0, y0, x1, y1 = self.box_xyxy
        return (0.5 * (x0 + x1), 0.5 * (y0 + y1))

    def to_dict(self) -> dict:
        """JSON-friendly summary (no mask)."""
        return {
            'kind': self.kind, 'confidence': round(float(self.confidence), 4),
            'box_xyxy': [int(v) for v in self.box_xyxy],
            'size_mm': round(float(self.size_mm), 3), 'area_mm2': round(float(self.area_mm2), 3),
            'contrast': round(float(self.contrast), 5), 'zone': self.zone,
            'severity_level': int(self.severity_level),
            'features': {k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v)
                         for k, v in self.features.items()},
        }


CancelCheck = Optional[Callable[[], bool]]


def check_cancel(should_cancel: CancelCheck) -> None:
    """Raise InspectionCancelled if should_cancel() says so."""
    if should_cancel is not None and should_cancel():
        raise InspectionCancelled('inspection cancelled')


def validate_radiograph(image, copy: bool = True) -> np.ndarray:
    """Check a radiograph and return it as a 2-D array.

    Accepts uint8, uint16 and float (finite) 2-D arrays, or (H, W, 1).

    Args:
        image: the radiograph.
        copy: True: return float32 (a copy for integer input); False: integer images are
            returned as they are (no 4-byte copy of a large radiograph), float ones as float32.

    Raises:
        ValueError: not an array, wrong shape/dtype, empty, too small/large, NaN/inf values.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f'radiograph must be a numpy array, got {type(image).__name__}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise ValueError(f'radiograph must be 2-D (one channel), got shape {image.shape}')
    if image.size == 0:
        raise ValueError(f'radiograph is empty (shape {image.shape})')
    h, w = image.shape
    if min(h, w) < MIN_SIDE_PX:
        raise ValueError(f'radiograph {w}x{h} is too small (min side {MIN_SIDE_PX} px)')
    if h * w > MAX_PIXELS:
        raise ValueError(f'radiograph {w}x{h} is too large (max {MAX_PIXELS} pixels)')
    if image.dtype in (np.uint8, np.uint16):
        return image.astype(np.float32) if copy else image
    if image.dtype in (np.float32, np.float64):
        out = image.astype(np.float32, copy=copy)
        if not np.all(np.isfinite(out)):
            raise ValueError('radiograph contains NaN or infinite values')
        return out
    raise ValueError(f'unsupported radiograph dtype {image.dtype} (uint8, uint16 or float)')


def mm_per_px(pixel_pitch_mm: float, magnification: float) -> float:
    """Size of one detector pixel projected into the object plane (mm).

    Raises:
        ValueError: pitch or magnification not finite and positive.
    """
    for name, value in (('pixel_pitch_mm', pixel_pitch_mm), ('magnification', magnification)):
        if value is None or not math.isfinite(float(value)) or float(value) <= 0:
            raise ValueError(f'{name} must be a finite positive number, got {value!r}')
    return float(pixel_pitch_mm) / float(magnification)


def make_detector(name: str = 'default', **kwargs):
    """Build a detector by name: 'classical', 'cnn', 'seg', 'ensemble', 'unet' or 'default'
    (= DEFAULT_DETECTOR).

    Every detector has `name` and `detect(image, pixel_pitch_mm, magnification,
    should_cancel=None) -> List[DetectedDefect]`.

    Raises:
        ValueError: unknown name.
    """
    key = DEFAULT_DETECTOR if name in ('default', '', None) else name
    if key == 'classical':
        from humanoid_inspection.xray.detector_classical import ClassicalDetector
        return ClassicalDetector(**kwargs)
    if key == 'cnn':
        from humanoid_inspection.xray.detector_cnn import CnnDetector
        return CnnDetector(**kwargs)
    if key == 'seg':
        from humanoid_inspection.xray.detector_seg import SegDetector
        return SegDetector(**kwargs)
    if key == 'ensemble':
        from humanoid_inspection.xray.detector_ensemble import EnsembleDetector
        return EnsembleDetector(**kwargs)
    if key == 'unet':
        from humanoid_inspection.xray.detector_unet import UnetDetector
        return UnetDetector(**kwargs)
    raise ValueError(f"unknown detector '{name}' (choose from: default, "
                     f"{', '.join(DETECTOR_NAMES)})")


def sort_by_confidence(defects: List[DetectedDefect]) -> List[DetectedDefect]:
    """Defects in decreasing confidence (stable)."""
    return sorted(defects, key=lambda d: -d.confidence)
