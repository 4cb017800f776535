"""Pick-and-place planning in the cell: the sequence, its limits and continuity, error codes."""

import numpy as np
import pytest

from humanoid_inspection.cell_geometry import load_cell
from humanoid_inspection.manipulation.collision import AttachedObject, CollisionChecker
from humanoid_inspection.manipulation.goal import (
    FrameResolver, InvalidGoalError, carried_part_from_fields, grasp_candidates_from_fields,
    place_pose_from_fields)
from humanoid_inspection.manipulation.pick_place import (
    PHASES, CarriedPart, ErrorCode, GraspCandidate, PickPlaceConfig, PickPlacePlanner,
    grasp_from_axis)
from humanoid_inspection.manipulation.robot_model import RobotModel
from humanoid_inspection.manipulation.scene import obstacles_from_cell
from humanoid_inspection.manipulation.time_parameterization import limit_violations


@pytest.fixture(scope='module')
def robot():
    return RobotModel.from_project()


@pytest.fixture(scope='module')
def cell():
    return load_cell()


@pytest.fixture(scope='module')
def planner(robot, cell):
    obstacles = obstacles_from_cell(cell)
    # generous IK budget: the tests check behaviour, not speed (CI machines may be loaded)
    config = PickPlaceConfig(max_opening_m=cell.gripper.max_opening_m, ik_timeout_s=0.2)
    return PickPlacePlanner(robot, CollisionChecker(robot, obstacles), obstacles, config, seed=3)


def ready(robot):
    q = robot.reference_configuration()
    q[robot.joint_index('left_shoulder_roll')] = 0.1
    q[robot.joint_index('right_shoulder_roll')] = -0.1
    return q


def table_grasp(cell, slot, height=0.03):
    x, y = cell.table.part_slots[slot]
    return grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + height)), (0, 0, -1))


def place_at(cell, xyz_world, grasp, rise):
    pose = grasp.copy()
    pose[:3, 3] = cell.world_to_base((xyz_world[0], xyz_world[1], xyz_world[2] + rise))
    return pose


def test_code_values_match_the_action_definition():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / 'interfaces' / 'action' /
            'PickPlace.action').read_text()
    consts = {}
    for line in text.splitlines():
        parts = line.split('#')[0].split()
        if len(parts) == 2 and parts[0] == 'int32' and '=' in parts[1]:
            name, value = parts[1].split('=')
            consts[name] = int(value)
    assert consts == {c.name: int(c) for c in ErrorCode}
    feedback = text.split('# Feedback')[1]
    for phase in PHASES:
        assert f'"{phase}"' in feedback


@pytest.mark.parametrize('slot,dest', [(2, 'accept'), (1, 'fixture')])
def test_pick_from_the_table_and_place(planner, robot, cell, slot, dest):
    grasp = table_grasp(cell, slot)
    if dest == 'accept':
        b = cell.accept_bin
        place = place_at(cell, b.pose.xyz, grasp, 0.03 + b.wall_height + 0.05)
    else:
        place = place_at(cell, cell.xray_cabinet.fixture.pose.xyz, grasp, 0.04)
    q0 = ready(robot)
    plan = planner.plan(q0, [GraspCandidate(grasp, 0.05, 0.9)], place)
    assert plan.success, plan.message
    assert [s.name for s in plan.segments] == list(PHASES[1:])
    assert plan.grasp_index == 0 and plan.arm in ('left', 'right')
    # every segment inside every limit at every sample; consecutive segments connect
    current = q0.copy()
    for seg in plan.segments:
        traj = seg.trajectory
        idx = [robot.joint_index(j) for j in traj.joint_names]
        assert limit_violations(traj, robot.lower[idx], robot.upper[idx],
                                robot.max_velocity[idx], robot.max_acceleration[idx]) == [], \
            seg.name
        if seg.name not in ('close', 'open'):     # gripper closes on the part, not to target
            np.testing.assert_allclose(traj.positions[0], current[idx], atol=1e-6,
                                       err_msg=seg.name)
        current[idx] = traj.positions[-1]
        if seg.name == 'close':
            current[idx] = plan.grasped_finger_position
    # the arm reached the grasp at the end of approach and the place pose at the end of place
    def tcp_after(name):
        q = q0.copy()
        for seg in plan.segments:
            idx = [robot.joint_index(j) for j in seg.trajectory.joint_names]
            q[idx] = seg.trajectory.positions[-1]
            if seg.name == name:
                return robot.frame_pose(q, f'{plan.arm}_tcp')
    grasp_reached = tcp_after('approach')
    np.testing.assert_allclose(grasp_reached[:3, 3], grasp[:3, 3], atol=1e-3)
    np.testing.assert_allclose(grasp_reached[:3, 0], grasp[:3, 0], atol=1e-2)
    np.testing.assert_allclose(tcp_after('place')[:3, 3], place[:3, 3], atol=1e-3)
    assert plan.duration > 0       # (no timing assertion: wall time depends on the load)
    # the free-space segments are collision-free at every output sample, checked by a separate
    # checker without padding (the part attached during the transfer)
    independent = CollisionChecker(robot, obstacles_from_cell(cell), padding=0.0)
    q = q0.copy()
    for seg in plan.segments:
        idx = [robot.joint_index(j) for j in seg.trajectory.joint_names]
        # the mirror finger mimics the commanded one (URDF <mimic>): a trajectory names only
        # the commanded finger, so copy it (an open mirror finger beside a held part is not
        # a state the robot can be in)
        for fingers in robot.gripper_joints.values():
            q[robot.joint_index(fingers[1])] = q[robot.joint_index(fingers[0])]
        if seg.name in ('pre_grasp', 'transfer'):
            if seg.name == 'transfer':
                independent.attach(plan.arm, AttachedObject(
                    'box', (planner.config.part_depth_m, 0.05, planner.config.part_height_m)))
            ctx = independent.context(robot.group(seg.group))
            for row in seg.trajectory.positions:
                q[idx] = row
                assert not ctx.in_collision_narrowphase(q), (seg.name, ctx.colliding_pairs(q))
            independent.detach(plan.arm)
        q[idx] = seg.trajectory.positions[-1]


def test_ranked_candidates_skip_the_impossible_one(planner, robot, cell):
    far = grasp_from_axis((1.5, 0.0, 0.0), (0, 0, -1))
    grasp = table_grasp(cell, 5)
    place = place_at(cell, cell.review.pose.xyz, grasp, 0.04)
    plan = planner.plan(ready(robot), [GraspCandidate(far, 0.05), GraspCandidate(grasp, 0.05)],
                        place)
    assert plan.success and plan.grasp_index == 1


def test_requested_arm_is_used(planner, robot, cell):
    grasp = table_grasp(cell, 6)
    b = cell.reject_bin
    place = place_at(cell, b.pose.xyz, grasp, 0.03 + b.wall_height + 0.05)
    plan = planner.plan(ready(robot), [GraspCandidate(grasp, 0.05)], place, arm='right')
    assert plan.success and plan.arm == 'right' and plan.group.startswith('right_arm')


def test_error_codes(planner, robot, cell):
    q0 = ready(robot)
    grasp = table_grasp(cell, 2)
    place = place_at(cell, cell.review.pose.xyz, grasp, 0.04)
    ok = [GraspCandidate(grasp, 0.05)]
    # invalid goals
    assert planner.plan(q0, [], place).error_code is ErrorCode.INVALID_GOAL
    nan = grasp.copy()
    nan[0, 3] = np.nan
    assert planner.plan(q0, [GraspCandidate(nan, 0.05)], place).error_code \
        is ErrorCode.INVALID_GOAL
    assert planner.plan(q0, ok, place, arm='middle').error_code is ErrorCode.INVALID_GOAL
    assert planner.plan(q0, [GraspCandidate(grasp, 0.5)], place).error_code \
        is ErrorCode.INVALID_GOAL        # wider than the gripper
    # unreachable
    far = grasp_from_axis((2.0, 0.0, 0.0), (0, 0, -1))
    assert planner.plan(q0, [GraspCandidate(far, 0.05)], place).error_code \
        is ErrorCode.UNREACHABLE
    # grasp inside the table: every IK solution collides
    inside = table_grasp(cell, 2, height=-0.015)
    code = planner.plan(q0, [GraspCandidate(inside, 0.05)], place).error_code
    assert code is ErrorCode.GOAL_IN_COLLISION
    # start outside the limits / in collision
    bad = q0.copy()
    bad[robot.joint_index('right_elbow')] = 0.3
    assert planner.plan(bad, ok, place).error_code is ErrorCode.START_OUT_OF_LIMITS
    collide = q0.copy()
    collide[robot.joint_index('left_shoulder_roll')] = 0.6    # left hand into the cabinet
    plan = planner.plan(collide, ok, place)
    assert plan.error_code is ErrorCode.START_IN_COLLISION and 'xray' in plan.message
    assert not plan.segments


def test_goal_fields_are_validated():
    frames = FrameResolver('base_link', 'world', np.eye(4))
    good = ([0.3, 0.0, 0.0], [0, 0.7071068, 0, 0.7071068], 'base_link', [0, 0, -1], 0.05, 1.0)
    [cand] = grasp_candidates_from_fields([good], frames)
    np.testing.assert_allclose(cand.pose[:3, 0], [0, 0, -1], atol=1e-6)
    bad_cases = {
        'normalised': ([0.3, 0, 0], [0, 0, 0, 2.0], 'base_link', [0, 0, 0], 0.05, 1.0),
        'finite': ([np.nan, 0, 0], [0, 0, 0, 1.0], 'base_link', [0, 0, 0], 0.05, 1.0),
        'frame': ([0.3, 0, 0], [0, 0, 0, 1.0], 'head_camera_optical_frame', [0, 0, 0], 0.05,
                  1.0),
        'differs': ([0.3, 0, 0], [0, 0, 0, 1.0], 'base_link', [0, 0, -1], 0.05, 1.0),
        'opening': ([0.3, 0, 0], [0, 0, 0, 1.0], 'base_link', [0, 0, 0], -0.01, 1.0),
    }
    for reason, fields in bad_cases.items():
        with pytest.raises(InvalidGoalError, match=reason):
            grasp_candidates_from_fields([fields], frames)
    world = FrameResolver('base_link', 'world', np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.92], [0, 0, 0, 1.0]]))
    pose = place_pose_from_fields([0.3, 0.0, 0.9], [0, 0, 0, 1], 'world', world)
    assert pose[2, 3] == pytest.approx(-0.02)
    with pytest.raises(InvalidGoalError, match='frame'):
        place_pose_from_fields([0.3, 0.0, 0.9], [0, 0, 0, 1], '', world)
    # the carried part's box: all-zero size = unknown (None, whatever the pose); a box is
    # taken into the base frame; bad sizes, poses and frames are refused by name
    assert carried_part_from_fields([0, 0, 0], [0, 0, 0, 1], '', (0, 0, 0), world) is None
    box = carried_part_from_fields([0.3, 0.0, 0.9], [0, 0, 0, 1], 'world', (0.1, 0.1, 0.03),
                                   world)
    assert box.pose[2, 3] == pytest.approx(-0.02) and box.size == (0.1, 0.1, 0.03)
    for size, pose, frame, reason in (
            ((0.1, -0.1, 0.03), [0, 0, 0, 1], 'world', 'object_size_m'),
            ((0.1, np.nan, 0.03), [0, 0, 0, 1], 'world', 'object_size_m'),
            ((2.0, 0.1, 0.03), [0, 0, 0, 1], 'world', 'larger than any'),
            ((0.1, 0.1, 0.03), [0, 0, 0, 3], 'world', 'normalised'),
            ((0.1, 0.1, 0.03), [0, 0, 0, 1], 'head_camera_optical_frame', 'frame')):
        with pytest.raises(InvalidGoalError, match=reason):
            carried_part_from_fields([0.3, 0.0, 0.9], pose, frame, size, world)


@pytest.mark.parametrize('open_margin', [0.0, 0.02])
@pytest.mark.parametrize('opening', [0.05, 0.095])
def test_release_opens_beyond_where_the_fingers_closed(planner, robot, cell, opening,
                                                        open_margin):
    # The fingers may close on the part at almost the candidate opening: the release must open
    # wider than that (the sim lets go only past 0.5 mm), even with open_margin_m 0.
    grasp = table_grasp(cell, 2)
    b = cell.accept_bin
    place = place_at(cell, b.pose.xyz, grasp, 0.03 + b.wall_height + 0.05)
    from dataclasses import replace
    saved = planner.config
    planner.config = replace(saved, open_margin_m=open_margin)
    try:
        plan = planner.plan(ready(robot), [GraspCandidate(grasp, opening, 0.9)], place)
    finally:
        planner.config = saved
    assert plan.success, plan.message
    release = {s.name: s for s in plan.segments}['open']
    held = planner.finger_position(opening, plan.arm)
    expected = planner.finger_position(
        min(opening + max(open_margin, saved.release_margin_m), saved.max_opening_m), plan.arm)
    assert release.gripper_target == pytest.approx(expected)
    assert release.gripper_target - held > 0.0005


def test_the_maximum_opening_sent_as_float32_is_valid(planner, robot, cell):
    # Affordance.gripper_opening_m is float32: a grasp at the gripper's maximum opening (a part
    # almost as wide as it opens) arrives as 0.10000000149 m; that is not "outside (0, 0.1]"
    # (two parts of a demo were refused so), while a real excess still is.
    grasp = table_grasp(cell, 2)
    place = place_at(cell, cell.review.pose.xyz, grasp, 0.04)
    max_open = planner.config.max_opening_m
    as_float32 = float(np.float32(max_open))
    assert as_float32 > max_open
    assert planner.validate_goal([GraspCandidate(grasp, as_float32, 0.9)], place, '',
                                 max_open) is None
    why = planner.validate_goal([GraspCandidate(grasp, max_open + 0.001, 0.9)], place, '',
                                max_open)
    assert why is not None and 'opening' in why


def test_release_is_fitted_to_the_measured_grip(planner, robot, cell):
    # A hub boss held at 31 mm of a 44 mm candidate: opening to 44 + 10 mm pushed the fingers
    # against the rim around the boss and the retreat lifted the hub out of the fixture. The
    # release opens to the measured grip + release_margin_m, at least as wide as the hand came
    # in (candidate opening + open_margin_m), at most to the planned target.
    grasp = table_grasp(cell, 2)
    b = cell.accept_bin
    place = place_at(cell, b.pose.xyz, grasp, 0.03 + b.wall_height + 0.05)
    opening = 0.044
    from dataclasses import replace
    saved = planner.config
    planner.config = replace(saved, open_margin_m=0.0)      # as config/manipulation.yaml
    try:
        _fitted_release_checks(planner, grasp, place, opening, robot)
    finally:
        planner.config = saved


def _fitted_release_checks(planner, grasp, place, opening, robot):
    plan = planner.plan(ready(robot), [GraspCandidate(grasp, opening, 0.9)], place)
    assert plan.success, plan.message
    segments = {s.name: s for s in plan.segments}
    release = segments['open']
    f_candidate = planner.finger_position(opening + planner.config.open_margin_m, plan.arm)
    margin = planner.config.release_margin_m * planner.config.finger_position_per_opening
    assert release.release_floor == pytest.approx(f_candidate)
    inside = planner.fit_release(release, 0.0154)          # gripped well inside the opening
    assert inside.gripper_target == pytest.approx(f_candidate)
    assert inside.trajectory.positions[0, 0] == pytest.approx(0.0154)
    assert inside.trajectory.positions[-1, 0] == pytest.approx(f_candidate)
    near = planner.fit_release(release, f_candidate - 0.001)   # at almost the opening
    assert near.gripper_target == pytest.approx(f_candidate - 0.001 + margin)
    assert near.gripper_target - (f_candidate - 0.001) > 0.0005
    assert planner.fit_release(release, f_candidate + 0.01).gripper_target == \
        pytest.approx(release.gripper_target)                 # never wider than planned
    assert planner.fit_release(release, float('nan')) is release
    assert planner.fit_release(segments['close'], 0.0154) is segments['close']


def test_the_carried_part_box_is_what_the_carry_keeps_clear(planner, robot, cell):
    # A hub held by its rim hangs beside the gripper: the planner carries the part's box at
    # its offset from the grasp (not a small box at the TCP), so the box ends on the seat,
    # and a box that cannot fit into the X-ray cabinet is refused instead of hitting it.
    grasp = table_grasp(cell, 1)
    place = place_at(cell, cell.xray_cabinet.fixture.pose.xyz, grasp, 0.03)
    box_pose = grasp.copy()
    box_pose[:3, :3] = np.eye(3)
    box_pose[:3, 3] = grasp[:3, 3] + [0.05, 0.0, -0.015]    # 5 cm beside the grasp point
    part = CarriedPart(box_pose, (0.14, 0.14, 0.03))
    q0 = ready(robot)
    plan = planner.plan(q0, [GraspCandidate(grasp, 0.02, 0.9)], place, '', part)
    assert plan.success, plan.message
    # at the end of 'place' the box sits where the grasp's offset puts it: on the seat
    q = q0.copy()
    independent = CollisionChecker(robot, obstacles_from_cell(cell), padding=0.0)
    for seg in plan.segments:
        idx = [robot.joint_index(j) for j in seg.trajectory.joint_names]
        for fingers in robot.gripper_joints.values():
            q[robot.joint_index(fingers[1])] = q[robot.joint_index(fingers[0])]
        if seg.name == 'transfer':
            # the box rides with the hand at its offset from the grasp, shrunk as configured
            # less 5 mm (no padding here): every transfer sample clear of the cell
            offset = np.linalg.solve(grasp, box_pose)
            independent.attach(plan.arm, AttachedObject('box', (0.13, 0.13, 0.02), offset))
            ctx = independent.context(robot.group(seg.group))
            for row in seg.trajectory.positions:
                q[idx] = row
                assert not ctx.in_collision_narrowphase(q), ctx.colliding_pairs(q)
            independent.detach(plan.arm)
        q[idx] = seg.trajectory.positions[-1]
        if seg.name == 'place':
            placed = robot.frame_pose(q, f'{plan.arm}_tcp') @ np.linalg.solve(grasp, box_pose)
            seat = cell.world_to_base(cell.xray_cabinet.fixture.pose.xyz)
            # the box's bottom (centre - 15 mm) on the seat, its centre 5 cm beside the TCP
            assert placed[2, 3] - 0.015 == pytest.approx(seat[2], abs=2e-3)
            assert np.linalg.norm(placed[:2, 3] - place[:2, 3]) == pytest.approx(0.05, abs=2e-3)
    too_big = CarriedPart(box_pose, (0.9, 0.9, 0.03))
    refused = planner.plan(q0, [GraspCandidate(grasp, 0.02, 0.9)], place, '', too_big)
    assert not refused.success
    assert refused.error_code is ErrorCode.GOAL_IN_COLLISION, refused.message
    assert 'attached_' in refused.message
    bad = planner.plan(q0, [GraspCandidate(grasp, 0.02, 0.9)], place, '',
                       CarriedPart(box_pose, (0.1, 0.0, 0.03)))
    assert bad.error_code is ErrorCode.INVALID_GOAL and 'size' in bad.message



@pytest.mark.parametrize('use_waist,budget', [('auto', 0.4), ('never', 1.5)])
def test_the_arm_alone_gets_the_short_joint_budget_only_when_the_waist_follows(
        robot, cell, use_waist, budget):
    # a transfer the arm alone could not make used the whole 1.5 s before the arm + waist
    # planned it; with nothing after it the arm alone keeps the full budget
    obstacles = obstacles_from_cell(cell)
    config = PickPlaceConfig(max_opening_m=cell.gripper.max_opening_m, ik_timeout_s=0.2,
                             use_waist=use_waist, joint_plan_timeout_s=1.5,
                             joint_plan_timeout_first_group_s=0.4)
    planner = PickPlacePlanner(robot, CollisionChecker(robot, obstacles), obstacles, config,
                               seed=3)
    budgets = []
    plan_joint = planner.planner.plan_joint

    def recording(group, q_from, q_to, allowed, timeout):
        budgets.append((group.name, timeout))
        return plan_joint(group, q_from, q_to, allowed, timeout)

    planner.planner.plan_joint = recording
    grasp = table_grasp(cell, 4)       # slot 4 -> fixture: the left arm alone plans it
    plan = planner.plan(ready(robot), [GraspCandidate(grasp, 0.05, 0.9)],
                        place_at(cell, cell.xray_cabinet.fixture.pose.xyz, grasp, 0.04))
    assert plan.success and plan.group == 'left_arm', plan.message
    assert [g for g, _ in budgets] == ['left_arm', 'left_arm']     # pre_grasp, transfer
    assert [round(t, 6) for _, t in budgets] == [budget, budget]
