"""Classical defect detector on small synthetic radiographs with planted voids/inclusions.

The images are built here (Beer-Lambert through a stepped aluminium plate with a hole and a
rib, blur, Poisson + read noise, 16-bit), independent of the project's simulator, so the
detector is checked against a known truth.
"""

import numpy as np
import pytest

from humanoid_inspection.xray.detector import (
    DetectedDefect, InspectionCancelled, make_detector, validate_radiograph)
from humanoid_inspection.xray.detector_classical import ClassicalDetector

MU_AL = 0.06      # 1/mm, aluminium at a typical die-casting tube voltage (order of magnitude)
MU_FE = 0.9       # 1/mm, an iron-rich inclusion
I0 = 40000.0      # open-beam counts


def make_test_radiograph(shape=(256, 256), seed=0, voids=(), inclusions=(), cracks=(),
                         pitch_mm=0.1, dtype=np.uint16):
    """A stepped plate radiograph with planted defects.

    Args:
        shape: (H, W).
        seed: noise seed.
        voids: (x_px, y_px, radius_px) spherical voids.
        inclusions: (x_px, y_px, radius_px) spherical iron inclusions.
        cracks: (x0, y0, x1, y1, width_px, depth_mm) thin planar voids.
        pitch_mm: object-plane pixel size used for the thickness map.
        dtype: uint16 or uint8 output.

    Returns:
        (image, truth) with truth a list of (kind, (x0, y0, x1, y1)).
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    thick = np.full(shape, 12.0)
    thick[:, w // 2:] = 20.0                                  # a wall step
    thick[int(h * 0.75):int(h * 0.85), :] += 8.0               # a rib
    hole = (xx - w * 0.2) ** 2 + (yy - h * 0.2) ** 2 < (0.08 * min(h, w)) ** 2
    thick[hole] = 0.0                                          # a through hole
    thick[:, :8] = 0.0                                         # air at the left border
    atten = MU_AL * thick
    truth = []
    for x, y, r in voids:
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        chord = 2 * np.sqrt(np.clip(r * r - d2, 0, None)) * pitch_mm
        atten -= MU_AL * chord
        truth.append(('void', (int(x - r), int(y - r), int(np.ceil(x + r)), int(np.ceil(y + r)))))
    for x, y, r in inclusions:
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        chord = 2 * np.sqrt(np.clip(r * r - d2, 0, None)) * pitch_mm
        atten += (MU_FE - MU_AL) * chord
        truth.append(('inclusion',
                      (int(x - r), int(y - r), int(np.ceil(x + r)), int(np.ceil(y + r)))))
    for x0, y0, x1, y1, width, depth in cracks:
        length = np.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        along = (xx - x0) * ux + (yy - y0) * uy
        across = np.abs(-(xx - x0) * uy + (yy - y0) * ux)
        on = (along >= 0) & (along <= length) & (across <= width / 2)
        atten[on] -= MU_AL * depth
        truth.append(('crack', (int(min(x0, x1) - width), int(min(y0, y1) - width),
                                int(max(x0, x1) + width), int(max(y0, y1) + width))))
    import cv2
    counts = I0 * np.exp(-atten)
    counts = cv2.GaussianBlur(counts, (0, 0), 0.7)
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(counts).astype(np.float64) + rng.normal(0, 20.0, shape)
    if dtype == np.uint8:
        return np.clip(noisy / I0 * 255, 0, 255).astype(np.uint8), truth
    return np.clip(noisy, 0, 65535).astype(np.uint16), truth


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched(defects, box, min_iou=0.3):
    return [d for d in defects if _iou(d.box_xyxy, box) >= min_iou]


def test_clean_plate_has_no_false_alarms():
    image, _ = make_test_radiograph(seed=1)
    defects = make_detector('classical').detect(image, 0.1, 1.0)
    assert defects == [], [d.to_dict() for d in defects]


def test_planted_voids_and_inclusion_are_found_and_classified():
    image, truth = make_test_radiograph(
        seed=2, voids=[(90, 110, 6), (190, 60, 9)], inclusions=[(100, 170, 5)])
    defects = ClassicalDetector().detect(image, 0.1, 1.0)
    for kind, box in truth:
        hits = _matched(defects, box)
        assert hits, f'{kind} at {box} missed: {[d.to_dict() for d in defects]}'
        if kind == 'inclusion':
            assert hits[0].kind == 'inclusion' and hits[0].contrast > 0
        else:
            assert hits[0].kind in ('gas_porosity', 'shrinkage') and hits[0].contrast < 0
    assert len(defects) == len(truth)


def test_sizes_are_in_object_plane_millimetres():
    image, _ = make_test_radiograph(seed=3, voids=[(100, 100, 10)])
    # pitch 0.2 mm at magnification 2 -> 0.1 mm per object-plane pixel
    (d,) = ClassicalDetector().detect(image, 0.2, 2.0)
    assert isinstance(d, DetectedDefect)
    assert 1.4 < d.size_mm < 2.6          # 20 px diameter ~ 2 mm
    assert 1.5 < d.area_mm2 < 4.5         # pi * 1^2 ~ 3.1 mm^2 (visible part of the sphere)
    assert d.mask.shape == (d.box_xyxy[3] - d.box_xyxy[1], d.box_xyxy[2] - d.box_xyxy[0])
    assert 0 < d.confidence < 1


def test_crack_is_classified_as_crack():
    image, truth = make_test_radiograph(seed=4, cracks=[(60, 120, 110, 150, 2, 3.0)])
    defects = ClassicalDetector().detect(image, 0.1, 1.0)
    hits = _matched(defects, truth[0][1], 0.2)
    assert hits and hits[0].kind == 'crack', [d.to_dict() for d in defects]


def test_eight_bit_input_works():
    image, truth = make_test_radiograph(seed=5, voids=[(100, 100, 9)], dtype=np.uint8)
    defects = ClassicalDetector().detect(image, 0.1, 1.0)
    assert _matched(defects, truth[0][1])


def test_constant_and_saturated_images_give_no_defects():
    det = ClassicalDetector()
    assert det.detect(np.full((64, 64), 1000, np.uint16), 0.1, 1.0) == []
    assert det.detect(np.full((64, 64), 65535, np.uint16), 0.1, 1.0) == []


@pytest.mark.parametrize('bad, reason', [
    (np.zeros((0, 10), np.uint16), 'empty'),
    (np.zeros((8, 8), np.uint16), 'too small'),
    (np.zeros((32, 32, 3), np.uint8), '2-D'),
    (np.full((32, 32), np.nan, np.float32), 'NaN'),
    (np.zeros((32, 32), np.int64), 'dtype'),
    ([[1, 2], [3, 4]], 'numpy array'),
])
def test_bad_images_are_refused_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        validate_radiograph(bad)


def test_absurdly_large_image_is_refused_without_allocating():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint16), (100000, 100000), (0, 0))
    with pytest.raises(ValueError, match='too large'):
        validate_radiograph(big)


@pytest.mark.parametrize('pitch, mag', [(0.0, 1.0), (float('nan'), 1.0), (0.1, -2.0)])
def test_bad_geometry_is_refused(pitch, mag):
    with pytest.raises(ValueError, match='finite positive'):
        ClassicalDetector().detect(np.zeros((32, 32), np.uint16), pitch, mag)


def test_cancel_stops_detection():
    image, _ = make_test_radiograph(seed=6)
    with pytest.raises(InspectionCancelled):
        ClassicalDetector().detect(image, 0.1, 1.0, should_cancel=lambda: True)


def test_unknown_detector_name_is_refused():
    with pytest.raises(ValueError, match='unknown detector'):
        make_detector('yolo')
