"""Shared detector front end: working resolution, edge-keeping background, noise units.

Includes the regression of the diagnosis in docs/xray_inspection.md: a pore 1 mm from a wall
and a 4 mm through hole, simulated with the project's simulator. The former background (a
6 mm opening/closing square with a noise map that rose at edges) lost the pore and flagged the
wall, the hole and the plate corners; the small square keeps the part and leaves the pore.
"""

import functools

import numpy as np
import pytest

from humanoid_inspection.xray.candidates import (
    PATCH_CHANNELS, PATCH_PX, FrontEndParams, blob_candidates, blob_response, compute_front_end,
    detector_candidates, extract_patches, find_candidates, flood_region, working_factor)
from humanoid_inspection.xray.defects import DefectSpec, Ellipsoid
from humanoid_inspection.xray.detector_classical import ClassicalDetector
from humanoid_inspection.xray.metrics import iou_matrix
from humanoid_inspection.xray.phantoms import CastingPart, Feature, circle, rounded_rect
from humanoid_inspection.xray.simulator import XraySimConfig, simulate_radiograph


@functools.lru_cache(maxsize=1)
def wall_plate_radiograph(seed=3):
    """6 mm plate, a 20 mm high wall, a 4 mm through hole, a 1.2 mm pore 1 mm from the wall."""
    plate = Feature('plate', [rounded_rect(0, 0, 70, 70, 3.0)], 0.0, 6.0)
    wall = Feature('wall', [rounded_rect(14, 0, 5, 60, 0.5)], 5.5, 26.0)
    hole = Feature('hole', [circle(-18, -18, 2.0)], -1.0, 7.0, positive=False)
    centre = np.array([10.3, 5.0, 3.0])
    pore = DefectSpec('gas_porosity', centre, 1.2, [Ellipsoid(centre, np.full(3, 0.6))])
    part = CastingPart('plate', 'wallplate-0', 0, [plate, wall, hole], defects=[pore])
    return simulate_radiograph(part, XraySimConfig(detector_px=512, pixel_pitch_mm=0.2),
                               seed=seed)


def test_working_factor_follows_the_object_pixel():
    assert working_factor(0.2 / 1.29, 0.15) == 1       # 1024 px simulator radiographs
    assert working_factor(0.1 / 1.29, 0.15) == 2       # 2048 px: processed at 1024
    assert working_factor(0.05, 0.15) == 3
    assert working_factor(1.0, 0.15) == 1


def test_pore_next_to_a_wall_is_found_and_the_part_is_not_flagged():
    rad = wall_plate_radiograph()
    (truth,) = rad.truth
    defects = ClassicalDetector().detect(rad.image, rad.pixel_pitch_mm, rad.magnification)
    assert len(defects) == 1, [d.to_dict() for d in defects]
    assert iou_matrix([defects[0].box_xyxy], [truth.box_xyxy])[0, 0] >= 0.5
    assert defects[0].kind == 'gas_porosity' and defects[0].contrast < 0


def test_residual_is_in_noise_units_and_keeps_straight_edges():
    rad = wall_plate_radiograph()
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    assert fe.factor == 1 and fe.z.shape == rad.image.shape
    (truth,) = rad.truth
    x0, y0, x1, y1 = truth.box_xyxy
    assert fe.z[y0:y1, x0:x1].max() > 20                # the pore stands out
    inside = rad.part_mask.copy()
    inside[y0 - 10:y1 + 10, x0 - 10:x1 + 10] = False
    z = fe.z[inside]
    assert 0.5 < 1.4826 * np.median(np.abs(z)) < 2.0     # noise units
    assert np.percentile(np.abs(z), 99.9) < 8            # walls and the hole leave no residual


def test_candidates_flood_and_patches():
    z = np.zeros((40, 50), np.float32)
    z[10:13, 20:24] = 8.0
    z[11, 21] = 10.0
    z[30, 5] = -6.0
    xs, ys, values = find_candidates(z, 3.0, 5)
    assert list(zip(xs, ys)) == [(21, 11), (5, 30)] and values[1] < 0
    x0, y0, mask = flood_region(z, 21, 11, 1.0, 0.4, 2.0)
    assert (x0, y0, mask.shape, int(mask.sum())) == (20, 10, (3, 4), 12)
    rad = wall_plate_radiograph()
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    patches = extract_patches(fe, np.array([0, 255, 511]), np.array([0, 255, 511]))
    assert patches.shape == (3, PATCH_CHANNELS, PATCH_PX, PATCH_PX)
    assert np.all(np.isfinite(patches)) and np.abs(patches).max() <= 4.0
    assert patches[1, 1, PATCH_PX // 2, PATCH_PX // 2] == 0.0    # centred on the candidate


def test_two_k_radiograph_is_processed_at_half_resolution():
    image = np.full((256, 256), 30000, np.uint16)
    fe = compute_front_end(image, 0.075, FrontEndParams())
    assert fe.factor == 2 and fe.z.shape == (128, 128) and fe.scale_xy == (2.0, 2.0)
    assert fe.mm_per_px == pytest.approx(0.15)
    assert np.all(np.isfinite(fe.z))


def pore_on_a_flank():
    """z of a strong pore (peak 60 at x 30) and a smaller one 7 px to its right (peak 20) on
    its flank: |z| has no maximum at the smaller one, the blob response does."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    strong = 60.0 * np.exp(-((xx - 30) ** 2 + (yy - 32) ** 2) / (2 * 3.0 ** 2))
    weak = 20.0 * np.exp(-((xx - 37) ** 2 + (yy - 32) ** 2) / (2 * 1.5 ** 2))
    return (strong + weak).astype(np.float32)


def test_blob_candidates_find_the_pore_on_a_stronger_ones_flank():
    z = pore_on_a_flank()
    xs, ys, _ = find_candidates(z, 2.5, 5)
    assert list(zip(xs, ys)) == [(30, 32)]               # one |z| maximum for the two pores
    params = FrontEndParams(blob_sigma_px=1.5)
    cx, cy, response = detector_candidates(z, params)
    assert response is not None and response.shape == z.shape
    assert (cx[0], cy[0]) == (30, 32)                    # the |z| maxima come first
    assert len(cx) == 2 and abs(cx[1] - 37) <= 1 and cy[1] == 32
    # off by default: exactly the maxima of |z|
    ox, oy, none = detector_candidates(z, FrontEndParams())
    assert none is None and list(zip(ox, oy)) == [(30, 32)]


def test_blob_candidates_keep_apart_from_maxima_and_below_threshold_and_see_dark_blobs():
    z = pore_on_a_flank()
    response = blob_response(z, 1.5)
    # a blob candidate within 2 px of an existing candidate is not added again
    bx, by = blob_candidates(z, response, 2.5, np.array([35]), np.array([32]))
    assert not any(abs(x - 37) <= 1 and y == 32 for x, y in zip(bx, by))
    # nor where |z| is below the threshold
    assert len(blob_candidates(z, response, 100.0, np.zeros(0, int), np.zeros(0, int))[0]) == 0
    # an inclusion (dark, z < 0) gives a dark blob candidate
    dark = -pore_on_a_flank()
    dx, dy = blob_candidates(dark, blob_response(dark, 1.5), 2.5, np.array([30]),
                             np.array([32]))
    assert len(dx) == 1 and abs(dx[0] - 37) <= 1 and dy[0] == 32
    # noise alone at the threshold gives few: blob candidates need |z| > threshold too
    noise = np.random.default_rng(0).normal(0, 1, (256, 256)).astype(np.float32)
    nx, _ = blob_candidates(noise, blob_response(noise, 1.5), 2.5, np.zeros(0, int),
                            np.zeros(0, int))
    assert len(nx) < 0.01 * noise.size
