"""Wall / rim / web grasps for parts wider than the gripper, on rendered scenes of the castings.

The scenes are ray-cast (perception/synthetic_scene.py) with 1 mm depth noise and 2 % dropout:
an open box shell like the cell's housings (wider than the gripper from every side), a bracket
(flange + upright web) and a hub (web disk + rim + central hub). Ground truth comes from the
part parameters; grasps are checked in the world (table) frame.
"""

import dataclasses

import numpy as np
import pytest

from humanoid_inspection.affordance.grasp import GraspConfig, grasps_for_detection
from humanoid_inspection.affordance.height_map import HeightMap
from humanoid_inspection.perception.classical_backend import ClassicalBackend
from humanoid_inspection.perception.rgbd import depth_to_metres
from humanoid_inspection.perception.synthetic_scene import (
    BoxPart, bracket, default_camera_pose, hub, open_box, render_scene)

BOX = dict(xy=(0.0, -0.15), size=(0.12, 0.11, 0.03), wall=0.004, base=0.005, yaw=0.3)
BRACKET = dict(xy=(0.06, 0.04), length=0.11, depth=0.05, flange=0.006, web=0.005, height=0.04,
               yaw=-0.5)
HUB = dict(xy=(-0.06, 0.2), radius=0.06, web=0.005, rim_width=0.007, rim_height=0.02,
           hub_radius=0.018, hub_height=0.03)
CFG = GraspConfig()


def _render(parts, seed=0):
    frame = render_scene(parts, default_camera_pose(), depth_noise_m=0.001, dropout=0.02,
                         seed=seed)
    result = ClassicalBackend().detect(frame.color, frame.depth, frame.intrinsics)
    return frame, result, depth_to_metres(frame.depth)


@pytest.fixture(scope='module')
def castings():
    parts = [open_box(BOX['xy'], BOX['size'], BOX['wall'], BOX['base'], BOX['yaw']),
             bracket(**BRACKET), hub(**HUB)]
    frame, result, depth = _render(parts)
    assert len(result.detections) == 3, result.diagnostic
    grasps = {}
    for det in result.detections:
        i = int(np.argmin(np.linalg.norm(frame.centroids_cam - det.centroid_m, axis=1)))
        grasps[parts[i].kind] = grasps_for_detection(det, depth, frame.intrinsics, CFG)
    return frame, grasps


def _world(frame, cand):
    T = frame.T_world_cam
    return T[:3, :3] @ cand.position + T[:3, 3], T[:3, :3] @ cand.rotation


def _local(xy, yaw, p):
    c, s = np.cos(yaw), np.sin(yaw)
    d = np.asarray(p[:2]) - xy
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])


def test_every_casting_gets_a_candidate(castings):
    _, grasps = castings
    for kind, g in grasps.items():
        assert g.candidates, f'{kind}: {g.diagnostic}'
        scores = [c.score for c in g.candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(0 < c.opening_m <= CFG.max_opening_m for c in g.candidates)


def test_housing_wider_than_the_gripper_is_grasped_by_a_wall(castings):
    frame, grasps = castings
    g = grasps['open_box']
    assert g.discarded_too_wide == 4          # no footprint grasp fits, counted
    lx, ly, h = BOX['size']
    for cand in g.candidates:
        assert cand.kind == 'wall'
        p, R = _world(frame, cand)
        assert R[:, 0] == pytest.approx([0, 0, -1], abs=0.05)
        q = _local(BOX['xy'], BOX['yaw'], p)
        # on a wall's centre line, fingers closing across that wall
        walls = [(abs(q[0] - sx * (lx - BOX['wall']) / 2), np.array([1.0, 0.0]))
                 for sx in (-1, 1)] + \
            [(abs(q[1] - sy * (ly - BOX['wall']) / 2), np.array([0.0, 1.0])) for sy in (-1, 1)]
        dist, normal = min(walls, key=lambda w: w[0])
        assert dist < 0.006, f'{q} is not on a wall'
        closing = _local((0.0, 0.0), BOX['yaw'], R[:2, 1])
        assert abs(closing @ normal) > 0.97
        assert BOX['wall'] < cand.opening_m <= BOX['wall'] + 0.025
        # fingertips above the base plate (inside) with clearance, pads on the wall
        tip = p[2] - CFG.fingertip_below_tcp_m
        assert BOX['base'] + CFG.tip_clearance_m - 0.002 <= tip <= h - CFG.min_contact_m
    # the best ones are spread over different walls / places (NMS)
    pos = np.array([_world(frame, c)[0] for c in g.candidates])
    assert len(pos) >= 3 and np.ptp(pos[:, :2], axis=0).max() > 0.03


def test_bracket_web_is_grasped_across_its_thickness(castings):
    frame, grasps = castings
    g = grasps['bracket']
    web = [c for c in g.candidates if c.kind == 'wall']
    assert web, [c.kind for c in g.candidates]
    assert g.candidates[0].kind == 'minor_centre'   # the whole-part grasp fits and ranks first
    y_axis = np.array([-np.sin(BRACKET['yaw']), np.cos(BRACKET['yaw'])])
    for cand in web:
        p, R = _world(frame, cand)
        assert abs(_local(BRACKET['xy'], BRACKET['yaw'], p)[1]) < 0.005   # on the web
        assert abs(R[:2, 1] @ y_axis) > 0.95
        assert p[2] - CFG.fingertip_below_tcp_m >= BRACKET['flange'] + 0.001


def test_hub_is_grasped_by_its_rim_or_its_hub(castings):
    frame, grasps = castings
    g = grasps['hub']
    assert g.discarded_too_wide == 4
    rim_mid = HUB['radius'] - HUB['rim_width'] / 2
    kinds = set()
    for cand in g.candidates:
        p, R = _world(frame, cand)
        tip = p[2] - CFG.fingertip_below_tcp_m
        assert tip >= HUB['web'] + 0.001                       # above the web disk
        r_vec = p[:2] - HUB['xy']
        r = np.linalg.norm(r_vec)
        if abs(r - rim_mid) < 0.006:                           # on the rim, closing radially
            assert abs(R[:2, 1] @ (r_vec / r)) > 0.95
            kinds.add('rim')
        else:       # across the central hub: the pads (finger_width wide) reach 4 mm into it
            assert cand.kind == 'raised'
            assert r - CFG.finger_width_m / 2 < HUB['hub_radius'] - 0.004
            chord = 2 * np.sqrt(HUB['hub_radius'] ** 2 - r ** 2)
            assert chord - 0.004 < cand.opening_m <= 2 * HUB['hub_radius'] + 0.02
            kinds.add('hub')
    assert kinds    # the hub chords rank first (centred); the rim: next test


def test_hub_rim_is_grasped_when_more_candidates_are_kept():
    frame, result, depth = _render([hub(**HUB)])
    cfg = dataclasses.replace(CFG, max_wall_candidates=12)
    g = grasps_for_detection(result.detections[0], depth, frame.intrinsics, cfg)
    rim_mid = HUB['radius'] - HUB['rim_width'] / 2
    on_rim = []
    for cand in g.candidates:
        p, R = _world(frame, cand)
        r_vec = p[:2] - HUB['xy']
        r = np.linalg.norm(r_vec)
        if abs(r - rim_mid) < 0.006:
            assert abs(R[:2, 1] @ (r_vec / r)) > 0.95         # closing radially
            assert p[2] - CFG.fingertip_below_tcp_m >= HUB['web'] + 0.001
            on_rim.append(cand)
    assert on_rim, [c.kind for c in g.candidates]


def test_a_blocked_wall_is_not_grasped():
    """A tall block 12 mm outside the housing's -y wall leaves no room for the outer finger.

    The finger needs its 15 mm thickness + 5 mm clearance. Seen from the camera the two merge
    into one component, so the detection gets the housing's true mask (a test of the grasp
    planner given a right segmentation).
    """
    lx, ly, h = BOX['size']
    c, s = np.cos(BOX['yaw']), np.sin(BOX['yaw'])
    local = np.array([0.0, -ly / 2 - 0.012 - 0.006])
    block_xy = (BOX['xy'][0] + c * local[0] - s * local[1],
                BOX['xy'][1] + s * local[0] + c * local[1])
    parts = [open_box(BOX['xy'], BOX['size'], BOX['wall'], BOX['base'], BOX['yaw']),
             BoxPart(block_xy, (lx, 0.012, 0.05), BOX['yaw'], rgb=(150, 150, 160))]
    frame, result, depth = _render(parts, seed=1)
    det = dataclasses.replace(result.detections[0], mask=frame.object_ids == 0)
    g = grasps_for_detection(det, depth, frame.intrinsics, CFG)
    assert g.candidates
    for cand in g.candidates:
        q = _local(BOX['xy'], BOX['yaw'], _world(frame, cand)[0])
        assert q[1] > -ly / 2 + 0.01, f'grasp on the blocked wall at {q}'


def test_wall_grasps_can_be_switched_off(castings):
    frame, grasps = castings
    parts = [open_box(BOX['xy'], BOX['size'], BOX['wall'], BOX['base'], BOX['yaw'])]
    frame, result, depth = _render(parts)
    (det,) = result.detections
    g = grasps_for_detection(det, depth, frame.intrinsics, GraspConfig(wall_grasps=False))
    assert g.candidates == [] and g.discarded_too_wide == 4


def test_height_map_bins_the_highest_point_and_cuts_spikes():
    plane = np.array([0.0, 0.0, 1.0, 0.0])            # z up, the plane z = 0
    u, v = np.meshgrid(np.arange(-0.02, 0.0201, 0.001), np.arange(-0.02, 0.0201, 0.001))
    floor = np.stack([u.ravel(), v.ravel(), np.full(u.size, 0.005)], axis=1)
    ridge = floor[np.abs(floor[:, 0]) < 0.002].copy()
    ridge[:, 2] = 0.03                                 # a 4 mm wide, 30 mm high ridge along v
    spike = np.array([[0.012, 0.0, 0.025]])            # one noisy point
    hm = HeightMap(np.vstack([floor, ridge, spike]), ridge, plane, np.zeros(3),
                   np.array([1.0, 0.0, 0.0]), 0.02, 0.002)
    assert hm.sample(np.array([0.0]), np.array([0.01]))[0] == pytest.approx(0.03)
    assert hm.sample(np.array([0.012]), np.array([0.0]))[0] == pytest.approx(0.005, abs=1e-3)
    assert hm.occupied[hm.half, hm.half] and not hm.occupied[hm.half, hm.half + 6]
    top, known = hm.max_in_rect(np.array([0.0, 0.0]), np.array([1.0, 0.0]), (0.004, 0.015),
                                0.005)
    assert top == pytest.approx(0.005, abs=1e-3) and known == 1.0
    assert hm.sample(np.array([0.5]), np.array([0.0]))[0] != hm.sample(
        np.array([0.5]), np.array([0.0]))[0]          # outside the grid: NaN


def _grid_points(x0, x1, y0, y1, z, step=0.001):
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1)


def test_runs_that_all_lack_contact_give_no_grasp_not_an_error():
    # The demo's affordance error "zero-size array to reduction operation minimum": a part
    # too wide to pinch anywhere (a 120 mm slab, 20 mm high) beside a low rib (6 mm): the rib's
    # runs fit the gripper but leave under 5 mm of contact above the fingertips, so every run
    # was filtered out and the ranking reduced an empty array.
    from humanoid_inspection.affordance.wall_grasps import WallGraspParams, find_wall_grasps
    slab = _grid_points(-0.06, 0.06, -0.06, 0.06, 0.020)
    rib = _grid_points(-0.03, 0.03, 0.09, 0.094, 0.006)
    part = np.vstack([slab, rib])
    table = _grid_points(-0.12, 0.12, -0.10, 0.14, 0.0)
    hm = HeightMap(np.vstack([table, part]), part, np.array([0.0, 0.0, 1.0, 0.0]),
                   np.array([0.0, 0.02, 0.0]), np.array([1.0, 0.0, 0.0]), 0.12)
    assert find_wall_grasps(hm, WallGraspParams(), (0.0, 0.0)) == []


def _spoked_hub(spokes: int, spoke_yaw: float):
    """Points (1 mm grid) of a hub like seed-7 hub-007001 with `spokes` spokes, on a table.

    Web 5.2 mm, rim 6 mm wide and 12.9 mm high, spokes 5.6 mm wide and 10.3 mm high, the
    central boss 36.6 mm across and 18.8 mm high.
    """
    x, y = _grid_points(-0.062, 0.062, -0.062, 0.062, 0.0)[:, :2].T
    r = np.hypot(x, y)
    z = np.full(x.size, np.nan)
    z[r <= 0.060] = 0.0052
    z[(r >= 0.054) & (r <= 0.060)] = 0.0129
    for k in range(spokes):
        t = spoke_yaw + 2 * np.pi * k / spokes
        along, across = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
        z[(along >= 0.018) & (along <= 0.054) & (np.abs(across) <= 0.0028)] = 0.0103
    z[r <= 0.0183] = 0.01875
    keep = ~np.isnan(z)
    part = np.stack([x[keep], y[keep], z[keep]], axis=1)
    table = _grid_points(-0.1, 0.1, -0.1, 0.1, 0.0)
    return HeightMap(np.vstack([table, part]), part, np.array([0.0, 0.0, 1.0, 0.0]),
                     np.zeros(3), np.array([1.0, 0.0, 0.0]), 0.075)


@pytest.mark.parametrize('spoke_yaw_deg', [12.0, 42.0])
def test_a_tall_boss_between_spokes_is_grasped_with_the_tips_above_the_spokes(spoke_yaw_deg):
    # seed-7 hub-007001 had no grasp in 13 of 57 poses (the demo gave it up as no_grasp):
    # every landing zone beside its boss held a spoke, the tips had to be at 13.3 mm, and the
    # boss leaves 5 mm of contact only for levels up to 13.8 mm, between the 3 mm step
    # grid's 12 and 15 mm. The highest level that can leave min_contact_m is searched too.
    from humanoid_inspection.affordance.wall_grasps import WallGraspParams, find_wall_grasps
    hm = _spoked_hub(6, np.radians(spoke_yaw_deg))
    p = WallGraspParams()
    assert find_wall_grasps(hm, dataclasses.replace(p, top_level=False), (0.0, 0.0)) == []
    grasps = find_wall_grasps(hm, p, (0.0, 0.0))
    assert grasps
    for g in grasps:
        assert g.kind == 'raised' and np.hypot(*g.centre_ab) < 0.0183      # across the boss
        assert g.tip_height_m >= 0.0103 + p.tip_clearance_m - 1e-6        # above the spokes
        assert g.top_m - g.tip_height_m >= p.min_contact_m - 1e-9
        assert g.width_m + p.opening_margin_m <= p.max_opening_m
