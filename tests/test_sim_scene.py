"""The MuJoCo cell: scene compiles and steps, camera, trajectory tracking, grasp, X-ray station.

One simulation per test module where the state does not matter, fresh ones where it does.
MUJOCO_GL=osmesa (conftest) renders offscreen without a display.
"""

import math

import numpy as np
import pytest

from humanoid_inspection import robot_description as rd
from humanoid_inspection.sim.camera import OPTICAL_TO_MJCF, PinholeIntrinsics, RgbdCamera
from humanoid_inspection.sim.factory import SimSetupError, load_simulation, place_in_fixture
from humanoid_inspection.sim.kinematics import body_pose, solve_ik, top_down_grasp
from humanoid_inspection.sim.simulation import make_trajectory
from humanoid_inspection.sim.xray_station import (XrayStationError, acquire_from_simulation,
                                                  station_from_cell)

ARM = ['left_shoulder_pitch', 'left_shoulder_roll', 'left_shoulder_yaw', 'left_elbow',
       'left_wrist_yaw', 'left_wrist_pitch', 'left_wrist_roll']


@pytest.fixture(scope='module')
def sim():
    return load_simulation(num_parts=4, seed=3)


def run_for(sim, seconds):
    sim.step(int(round(seconds / sim.timestep)))


def test_scene_compiles_with_contract_names_and_steps(sim):
    scene = sim.scene
    assert sim.timestep <= 0.002
    for joint in rd.all_movable_joints():
        assert joint in scene.joint_names
    for joint in ('left_finger_mirror_joint', 'right_finger_mirror_joint'):
        assert joint not in scene.actuated          # driven through the URDF mimic
    assert set(sim.follower.controllers) >= {'left_arm_controller', 'head_controller',
                                             'left_gripper_controller', 'legs_controller'}
    assert all(kp > 0 and kv > 0 for kp, kv in scene.gains.values())
    before = sim.joint_positions()
    t0 = sim.time
    run_for(sim, 1.0)
    assert sim.time == pytest.approx(t0 + 1.0)
    after = sim.joint_positions()
    drift = max(abs(after[j] - before[j]) for j in before)
    assert drift < 0.01, 'the standing pose is not held'
    # parts rest on their table slots
    truth = sim.ground_truth()
    top = scene.cell.table.top_z
    for part in truth['parts']:
        slot = scene.cell.table.part_slots[part['slot']]
        assert part['position'][:2] == pytest.approx(slot, abs=0.01)
        assert part['position'][2] == pytest.approx(top, abs=0.003)
        assert part['family'] in ('housing', 'bracket', 'hub')
        assert part['defective'] == bool(part['defects'])


def test_camera_sees_the_table_with_metric_depth(sim):
    cam = RgbdCamera(sim.model, sim.scene.camera, 640, 480, max_range=4.0)
    try:
        frame = cam.render(sim.data)
        k = cam.intrinsics
        optical_pose = cam.optical_pose_world(sim.data)
    finally:
        cam.close()
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    assert frame.rgb.std() > 10, 'blank image'
    # project a point of the table top far from every part into the image; depth there is
    # the z distance of that point in the optical frame, in metres
    table = sim.scene.cell.table
    parts = np.array([p['position'][:2] for p in sim.ground_truth()['parts']])
    tx, ty, _ = table.pose.xyz
    grid = [(tx + dx, ty + dy) for dx in np.linspace(-0.15, 0.15, 7)
            for dy in np.linspace(-0.4, 0.4, 17)]
    x, y = max(grid, key=lambda q: np.min(np.hypot(*(parts - q).T)))
    cam_pose = body_pose(sim.model, sim.data, 'head_camera_optical_frame')
    # the MuJoCo camera's optical pose is the URDF's optical frame
    np.testing.assert_allclose(optical_pose, cam_pose, atol=1e-6)
    p_world = np.array([x, y, table.top_z, 1.0])
    p_opt = np.linalg.inv(cam_pose) @ p_world
    assert p_opt[2] > 0.3
    u, v = k.project(p_opt[:3])[0]
    assert 0 <= u < 640 and 0 <= v < 480, 'table point outside the image'
    measured = frame.depth[int(round(v)), int(round(u))]
    assert measured == pytest.approx(p_opt[2], abs=0.02)
    # the table top is wood-coloured: red > blue there
    r, g, b = frame.rgb[int(round(v)), int(round(u))].astype(int)
    assert r > b


def test_intrinsics_and_frames():
    k = PinholeIntrinsics.from_fovy(640, 480, 45.0)
    assert k.fy == pytest.approx(240 / math.tan(math.radians(22.5)))
    assert (k.cx, k.cy) == (319.5, 239.5)
    assert k.project(np.array([0.0, 0.0, 2.0]))[0] == pytest.approx([319.5, 239.5])
    assert np.allclose(OPTICAL_TO_MJCF @ OPTICAL_TO_MJCF, np.eye(3))
    with pytest.raises(ValueError):
        PinholeIntrinsics.from_fovy(640, 480, 190.0)


def test_position_trajectory_is_tracked():
    s = load_simulation(num_parts=0)
    start = s.joint_positions()
    target = dict(start)
    # swing the arm back (free space: the table is in front, the cabinet on the left)
    target.update({'left_shoulder_pitch': 0.9, 'left_shoulder_yaw': 0.5, 'left_elbow': -0.6,
                   'left_wrist_yaw': 1.0, 'left_wrist_roll': 0.5, 'left_wrist_pitch': 0.3})
    traj = make_trajectory(ARM, [(2.0, [target[j] for j in ARM])])
    assert s.submit('left_arm_controller', traj).accepted
    worst = 0.0
    for _ in range(100):                       # 2 s in 20 ms chunks
        run_for(s, 0.02)
        q_set, _ = s.follower.sample(s.time)
        q = s.joint_positions()
        worst = max(worst, max(abs(q[j] - q_set[s.follower.joint_names.index(j)])
                               for j in ARM))
    run_for(s, 0.5)
    q = s.joint_positions()
    final = max(abs(q[j] - target[j]) for j in ARM)
    assert worst < 0.02, f'tracking error during the motion {worst:.4f} rad'
    assert s.data.ncon == 0
    assert final < 0.005, f'final error {final:.4f} rad'


def test_bad_trajectory_is_rejected_and_the_arm_holds():
    s = load_simulation(num_parts=0)
    run_for(s, 0.2)
    before = s.joint_positions()
    bad = make_trajectory(ARM, [(1.0, [math.nan] + [0.0] * 6)])
    result = s.submit('left_arm_controller', bad)
    assert not result.accepted and 'NaN' in result.reason
    result = s.submit('left_arm_controller', make_trajectory(['nope'], [(1.0, [0.0])]))
    assert not result.accepted and 'unknown joint' in result.reason
    run_for(s, 1.0)
    after = s.joint_positions()
    assert max(abs(after[j] - before[j]) for j in ARM) < 0.005


def _grasp_wall_pose(s, part_id):
    """TCP pose straddling the +y wall of a housing, fingers closing across the wall."""
    part = s.part(part_id).casting.params
    pose = s.part_pose(part_id)
    wall = np.array([0.0, part['width'] / 2000 - part['wall'] / 2000,
                     part['height'] / 1000 + 0.002, 1.0])
    return top_down_grasp((pose @ wall)[:3], pose[:3, 1])


def _move_arm(s, target, seconds):
    q = solve_ik(s.model, s.data.qpos.copy(), 'left_tcp', target, ARM)
    assert s.submit('left_arm_controller',
                    make_trajectory(ARM, [(seconds, [q[j] for j in ARM])])).accepted
    run_for(s, seconds + 0.4)


def _gripper(s, opening, seconds=0.6):
    assert s.submit('left_gripper_controller',
                    make_trajectory(['left_finger_joint'], [(seconds, [opening])])).accepted
    run_for(s, seconds + 0.3)


def _housing_gripped_by_its_wall():
    """(sim, part, TCP pose above the grasp): seed 1's housing held by the left hand."""
    s = load_simulation(num_parts=1, seed=1)
    part = s.scene.parts[0]
    if part.family != 'housing':
        pytest.skip('seed 1 is expected to give a housing')
    grasp = _grasp_wall_pose(s, part.part_id)
    above = grasp.copy()
    above[2, 3] += 0.12
    _gripper(s, 0.05)
    _move_arm(s, above, 2.0)
    _move_arm(s, grasp, 1.5)
    _gripper(s, 0.0)
    assert s.grasp.attached['left'] == part.body
    return s, part, above


def test_weld_grasp_lifts_the_part_and_releases_it():
    s, part, above = _housing_gripped_by_its_wall()
    z0 = s.part_pose(part.part_id)[2, 3]
    assert s.ground_truth()['grasped']['left'] == part.part_id
    _move_arm(s, above, 1.5)
    lifted = s.part_pose(part.part_id)[2, 3] - z0
    assert lifted == pytest.approx(0.12, abs=0.01), 'the part did not follow the gripper'
    _gripper(s, 0.05)
    run_for(s, 0.5)
    assert s.grasp.attached['left'] is None
    assert s.part_pose(part.part_id)[2, 3] - z0 < 0.01, 'the released part did not drop'
    kinds = [e.kind for e in s.events]
    assert kinds == ['attach', 'release']


def test_xray_station_empty_fixture_then_part_in_actual_pose():
    s = load_simulation(num_parts=2, seed=5, defect_probability=1.0)
    station = station_from_cell(s.scene.cell, detector_px=256, pixel_pitch_mm=0.8)
    with pytest.raises(XrayStationError, match='fixture is empty'):
        acquire_from_simulation(s, station)
    part = s.scene.parts[1]
    assert part.defective
    place_in_fixture(s, part.part_id, offset_xy=(0.01, -0.005), yaw=0.3)
    with pytest.raises(XrayStationError, match='not'):
        acquire_from_simulation(s, station, part_id=s.scene.parts[0].part_id)
    acq = acquire_from_simulation(s, station, part_id=part.part_id)
    image = acq.radiograph.image
    assert image.dtype == np.uint16 and image.shape == (256, 256)
    assert acq.part_id == part.part_id and acq.family == part.family
    # the simulator got the part's actual pose: yaw and offset in the fixture (mm)
    yaw = math.atan2(acq.pose_mm[1, 0], acq.pose_mm[0, 0])
    assert yaw == pytest.approx(0.3, abs=0.02)
    assert acq.pose_mm[:2, 3] == pytest.approx([10.0, -5.0], abs=2.0)
    # the hidden defects of the ground truth are the ones imaged
    truth = {d['part_id']: d for d in s.ground_truth()['parts']}[part.part_id]
    assert truth['defective'] and len(truth['defects']) == len(acq.defects)
    assert len(acq.radiograph.truth) >= 1
    assert {t.kind for t in acq.radiograph.truth} <= {d['kind'] for d in acq.defects}
    # the part darkens the detector where it lies
    assert image[acq.radiograph.part_mask].mean() < image[~acq.radiograph.part_mask].mean()


def test_reset_puts_parts_back_and_keeps_time():
    s = load_simulation(num_parts=1, seed=2)
    part = s.scene.parts[0]
    place_in_fixture(s, part.part_id)
    t = s.time
    s.reset()
    assert s.time == pytest.approx(t)
    slot = s.scene.cell.table.part_slots[part.slot]
    assert s.part_pose(part.part_id)[:2, 3] == pytest.approx(slot, abs=1e-6)


def test_setup_errors_name_the_file(tmp_path):
    bad_cell = tmp_path / 'cell.yaml'
    bad_cell.write_text('robot: [1, 2\n')
    with pytest.raises(SimSetupError, match='cell file'):
        load_simulation(cell_path=bad_cell)
    with pytest.raises(SimSetupError, match='no_such.urdf'):
        load_simulation(urdf_path=tmp_path / 'no_such.urdf')
    broken = tmp_path / 'broken.urdf'
    broken.write_text('<robot name="x"><link name="a"></robot>')
    with pytest.raises(SimSetupError, match='not valid XML'):
        load_simulation(urdf_path=broken)
    with pytest.raises(SimSetupError, match='do not fit'):
        load_simulation(num_parts=99)


def test_a_part_touched_wide_and_gripped_closer_is_let_go_just_beyond_the_grip():
    # A hub's rim touched by the outsides of the fingers at the approach opening, its boss
    # gripped 3 mm per finger closer: opening back to the approach opening must let it go (the
    # weld kept the first touch as the grip, and such a hub was carried off the table).
    s, _, _ = _housing_gripped_by_its_wall()
    held_at = s.grasp.finger_position(s.data, 'left')
    # the grip is where the fingers closed most while holding (at most where they rest now)
    assert 0.0 < s.grasp.grip_position('left') <= held_at + 1e-4
    s.grasp._grip_position['left'] = held_at + 0.003      # as if first touched 3 mm wider
    run_for(s, 0.1)                                         # still closing on the part
    assert s.grasp.grip_position('left') <= held_at + 1e-4
    _gripper(s, held_at + 0.002, seconds=0.3)               # open 2 mm beyond the grip
    assert s.grasp.attached['left'] is None
    assert [e.kind for e in s.events] == ['attach', 'release']
