"""Grasp candidates from masks / VLM points on rendered scenes with known parts."""

import numpy as np
import pytest

from humanoid_inspection.affordance.grasp import (
    GraspConfig, grasps_for_detection, grasps_from_mask, grasps_from_points, mask_from_box,
    rotation_to_quaternion, to_frame)
from humanoid_inspection.perception.classical_backend import ClassicalBackend
from humanoid_inspection.perception.rgbd import depth_to_metres
from humanoid_inspection.perception.synthetic_scene import (
    BoxPart, default_camera_pose, demo_parts, render_scene)


@pytest.fixture(scope='module')
def scene():
    frame = render_scene(demo_parts(), default_camera_pose(), depth_noise_m=0.001, dropout=0.02)
    result = ClassicalBackend().detect(frame.color, frame.depth, frame.intrinsics)
    return frame, result, depth_to_metres(frame.depth)


def _truth_index(frame, det):
    d = np.linalg.norm(frame.centroids_cam - det.centroid_m, axis=1)
    return int(np.argmin(d))


def _world(frame, cand):
    T = frame.T_world_cam
    return T[:3, :3] @ cand.position + T[:3, 3], T[:3, :3] @ cand.rotation


def test_best_grasp_is_top_down_across_the_narrow_side(scene):
    frame, result, depth = scene
    for det in result.detections:
        part = frame.parts[_truth_index(frame, det)]
        grasps = grasps_for_detection(det, depth, frame.intrinsics)
        assert grasps.candidates, grasps.diagnostic
        best = grasps.candidates[0]
        p_w, R_w = _world(frame, best)
        assert np.allclose(R_w.T @ R_w, np.eye(3), atol=1e-6)
        assert R_w[:, 0] == pytest.approx([0, 0, -1], abs=0.05)  # approach straight down
        assert p_w[:2] == pytest.approx(part.xy, abs=0.01)
        height = part.size[2] if hasattr(part, 'size') else part.height
        # TCP at half the height, raised so the fingertips (0.02 m below it) clear the table
        cfg = GraspConfig()
        tip_clear = cfg.fingertip_below_tcp_m + cfg.tip_clearance_m
        assert p_w[2] == pytest.approx(max(height / 2, tip_clear), abs=0.008)
        assert p_w[2] - cfg.fingertip_below_tcp_m >= cfg.tip_clearance_m - 0.002
        if hasattr(part, 'size'):  # boxes: fingers close across the short side
            narrow = np.array([-np.sin(part.yaw), np.cos(part.yaw), 0.0]) \
                if part.size[1] < part.size[0] else np.array([np.cos(part.yaw),
                                                               np.sin(part.yaw), 0.0])
            assert abs(R_w[:, 1] @ narrow) > 0.97
            assert min(part.size[:2]) < best.opening_m <= 0.10
        scores = [c.score for c in grasps.candidates]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_too_wide_part_is_discarded_and_counted():
    big = BoxPart((0.0, 0.0), (0.20, 0.16, 0.05))
    frame = render_scene([big], default_camera_pose())
    (det,) = ClassicalBackend().detect(frame.color, frame.depth, frame.intrinsics).detections
    grasps = grasps_for_detection(det, depth_to_metres(frame.depth), frame.intrinsics)
    assert grasps.candidates == []
    assert grasps.discarded_too_wide == 4


def test_wider_gripper_accepts_it():
    big = BoxPart((0.0, 0.0), (0.20, 0.16, 0.05))
    frame = render_scene([big], default_camera_pose())
    (det,) = ClassicalBackend().detect(frame.color, frame.depth, frame.intrinsics).detections
    grasps = grasps_for_detection(det, depth_to_metres(frame.depth), frame.intrinsics,
                                  GraspConfig(max_opening_m=0.25))
    assert grasps.candidates and grasps.candidates[0].opening_m < 0.25


def test_mask_without_depth_is_discarded_and_counted(scene):
    frame, result, depth = scene
    det = result.detections[0]
    holed = depth.copy()
    holed[det.mask] = np.nan
    grasps = grasps_from_mask(det.id, det.mask, holed, frame.intrinsics)
    assert grasps.candidates == [] and grasps.discarded_no_depth == 4
    assert 'valid depth' in grasps.diagnostic


def test_vlm_points_give_one_candidate_each(scene):
    frame, result, depth = scene
    housing_idx = 0
    centre_px = np.nanmean(np.argwhere(frame.object_ids == housing_idx), axis=0)[::-1]
    points = np.array([centre_px, centre_px + [5, -4], [5.0, 5.0]])
    holed = depth.copy()
    holed[:12, :12] = np.nan  # the third point has no depth
    grasps = grasps_from_points('obj', points, holed, frame.intrinsics)
    assert len(grasps.candidates) == 2 and grasps.discarded_no_depth == 1
    p_w, R_w = _world(frame, grasps.candidates[0])
    assert R_w[:, 0] == pytest.approx([0, 0, -1], abs=0.05)
    assert p_w[2] == pytest.approx(0.025, abs=0.01)
    assert grasps.candidates[0].opening_m == pytest.approx(0.06)  # default without a mask
    assert grasps.candidates[0].points_px.shape == (1, 2)


def test_vlm_points_with_mask_use_its_width(scene):
    frame, result, depth = scene
    det = min(result.detections, key=lambda d: np.linalg.norm(
        d.centroid_m - frame.centroids_cam[0]))
    rows, cols = np.nonzero(det.mask)
    grasps = grasps_from_points(det.id, np.array([[cols.mean(), rows.mean()]]), depth,
                                frame.intrinsics, mask=det.mask)
    (cand,) = grasps.candidates
    assert 0.07 <= cand.opening_m <= 0.10  # the housing is 0.07 m across + margin


def test_points_without_any_depth():
    frame = render_scene(demo_parts(), default_camera_pose())
    depth = np.full(frame.depth.shape, np.nan, dtype=np.float32)
    grasps = grasps_from_points('x', np.array([[320.0, 240.0]]), depth, frame.intrinsics)
    assert grasps.candidates == [] and grasps.discarded_no_depth == 1


def test_mask_from_box_segments_the_part(scene):
    frame, result, depth = scene
    box = frame.boxes_xyxy[0]
    mask = mask_from_box(box, depth, frame.intrinsics)
    truth = frame.object_ids == 0
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8


def test_to_frame_and_quaternion(scene):
    frame, result, depth = scene
    grasps = grasps_for_detection(result.detections[0], depth, frame.intrinsics)
    T = frame.T_world_cam
    moved = to_frame(grasps, T, 'world')
    c0, m0 = grasps.candidates[0], moved.candidates[0]
    assert m0.frame == 'world'
    assert m0.position == pytest.approx(T[:3, :3] @ c0.position + T[:3, 3])
    assert m0.matrix() == pytest.approx(T @ c0.matrix())
    with pytest.raises(ValueError):
        to_frame(grasps, np.ones((4, 4)), 'bad')
    x, y, z, w = rotation_to_quaternion(m0.rotation)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    assert R == pytest.approx(m0.rotation, abs=1e-9)


@pytest.mark.parametrize('width,grasped', [(0.086, True), (0.093, False)])
def test_part_almost_as_wide_as_the_gripper_is_grasped_with_the_opening_left(width, grasped):
    # 20 mm of margin would make an 86 mm part too wide for the 100 mm gripper; down to
    # min_opening_margin_m (10 mm) the footprint grasp takes the opening that is left. A 93 mm
    # part would leave 7 mm: too little, still discarded as too wide.
    from humanoid_inspection.affordance.grasp import footprint_margin
    part = BoxPart((0.0, 0.0), (width, 0.07, 0.04))
    frame = render_scene([part], default_camera_pose())
    (det,) = ClassicalBackend().detect(frame.color, frame.depth, frame.intrinsics).detections
    cfg = GraspConfig(max_opening_m=0.10, wall_grasps=False)
    grasps = grasps_for_detection(det, depth_to_metres(frame.depth), frame.intrinsics, cfg)
    across = [c for c in grasps.candidates if c.kind == 'major_centre']
    if grasped:
        assert len(across) == 1 and across[0].opening_m == pytest.approx(0.10)
    else:
        assert not across and grasps.discarded_too_wide >= 1
    # the narrow side keeps the full margin
    narrow = [c for c in grasps.candidates if c.kind == 'minor_centre']
    assert narrow and narrow[0].opening_m == pytest.approx(0.07 + 0.02, abs=0.004)
    assert footprint_margin(0.05, cfg) == cfg.opening_margin_m
    assert footprint_margin(0.085, cfg) == pytest.approx(0.015)
    assert footprint_margin(0.095, cfg) == cfg.opening_margin_m      # left to _candidate
    assert footprint_margin(float('nan'), cfg) == cfg.opening_margin_m
