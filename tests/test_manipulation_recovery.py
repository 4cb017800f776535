"""Release-and-retreat and rest motions: from a hand closed on the table back to the ready pose."""

import numpy as np
import pytest

from humanoid_inspection.cell_geometry import load_cell
from humanoid_inspection.manipulation.collision import CollisionChecker
from humanoid_inspection.manipulation.pick_place import (
    GraspCandidate, PickPlaceConfig, PickPlacePlanner, grasp_from_axis)
from humanoid_inspection.manipulation.recovery import (
    RecoveryError, plan_release, plan_rest, ready_configuration)
from humanoid_inspection.manipulation.robot_model import RobotModel
from humanoid_inspection.manipulation.scene import obstacles_from_cell
from humanoid_inspection.manipulation.time_parameterization import limit_violations
from humanoid_inspection.nodes.manipulation_node import held_threshold


@pytest.fixture(scope='module')
def setup():
    robot = RobotModel.from_project()
    cell = load_cell()
    obstacles = obstacles_from_cell(cell)
    config = PickPlaceConfig(max_opening_m=cell.gripper.max_opening_m, ik_timeout_s=0.2)
    planner = PickPlacePlanner(robot, CollisionChecker(robot, obstacles), obstacles, config,
                               seed=3)
    return robot, cell, planner


def _hand_on_table(robot, cell, planner):
    """The configuration at the end of 'approach' with the fingers closed (a failed grasp)."""
    ready = ready_configuration(planner, robot.reference_configuration(),
                                dict(cell.robot.standing_pose))
    x, y = cell.table.part_slots[1]
    grasp = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + 0.005)), (0, 0, -1))
    place = grasp.copy()
    place[2, 3] += 0.05
    plan = planner.plan(ready, [GraspCandidate(grasp, 0.05, 0.9)], place)
    assert plan.success, plan.message
    q = ready.copy()
    for seg in plan.segments:
        idx = [robot.joint_index(j) for j in seg.trajectory.joint_names]
        q[idx] = seg.trajectory.positions[-1]
        if seg.name == 'close':
            break
    return ready, q, plan.arm


def _check_limits(robot, segments):
    for seg in segments:
        traj = seg.trajectory
        idx = [robot.joint_index(j) for j in traj.joint_names]
        assert limit_violations(traj, robot.lower[idx], robot.upper[idx],
                                robot.max_velocity[idx], robot.max_acceleration[idx]) == []


def test_release_opens_and_retreats_then_rest_reaches_ready(setup):
    robot, cell, planner = setup
    ready, q_failed, side = _hand_on_table(robot, cell, planner)
    segments, q_after = plan_release(planner, q_failed, side, 0.08)
    assert [s.name for s in segments] == ['open', 'retreat']
    tcp0 = robot.frame_pose(q_failed, f'{side}_tcp')[:3, 3]
    tcp1 = robot.frame_pose(q_after, f'{side}_tcp')[:3, 3]
    assert np.linalg.norm(tcp1 - tcp0) == pytest.approx(0.08, abs=5e-3)
    assert tcp1[2] > tcp0[2] + 0.05           # top-down grasp: back = up
    _check_limits(robot, segments)
    rest = plan_rest(planner, q_failed, dict(cell.robot.standing_pose))
    assert [s.name for s in rest][-1] == 'rest'
    _check_limits(robot, rest)
    q = q_failed.copy()
    for seg in rest:
        idx = [robot.joint_index(j) for j in seg.trajectory.joint_names]
        q[idx] = seg.trajectory.positions[-1]
    arm = robot.groups[f'{side}_arm'].q_idx
    np.testing.assert_allclose(q[arm], ready[arm], atol=1e-6)


def test_rest_at_ready_does_nothing(setup):
    robot, cell, planner = setup
    ready = ready_configuration(planner, robot.reference_configuration(),
                                dict(cell.robot.standing_pose))
    assert plan_rest(planner, ready, dict(cell.robot.standing_pose)) == []


def test_release_without_a_free_line_is_an_error(setup):
    robot, cell, planner = setup
    _, q_failed, side = _hand_on_table(robot, cell, planner)
    with pytest.raises(RecoveryError, match='no straight retreat'):
        plan_release(planner, q_failed, side, 5.0)      # 5 m: beyond reach both ways


def test_held_threshold_follows_the_grasp_opening():
    assert held_threshold(0.025, 0.004, 0.002) == pytest.approx(0.004)   # wide part
    assert held_threshold(0.003, 0.004, 0.002) == pytest.approx(0.001)   # 6 mm web
    assert held_threshold(0.001, 0.004, 0.002) == pytest.approx(0.0005)  # floor


def test_to_msg_times_round_up_to_the_next_second():
    """A point at 2.9999999999 s must be 3 s, not 2 s (a non-increasing time the sim rejects)."""
    from humanoid_inspection.manipulation.time_parameterization import TimedTrajectory
    from humanoid_inspection.nodes.manipulation_node import to_msg
    times = np.array([0.0, 1.5, 2.9999999999, 3.5])
    z = np.zeros((4, 1))
    msg = to_msg(TimedTrajectory(['j'], times, z, z, z))
    stamps = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    assert np.all(np.diff(stamps) > 0)
    assert (msg.points[2].time_from_start.sec, msg.points[2].time_from_start.nanosec) == (3, 0)


def test_release_from_a_joint_pushed_past_its_limit(setup):
    # the seed-7 demo: a carried part jammed a wrist joint 0.012 rad past its limit; the
    # release must start from the nearest valid state instead of refusing ("start outside
    # joint limits"). (The wrist roll at its limit puts this hand into its own wrist here.)
    robot, cell, planner = setup
    _, q_failed, side = _hand_on_table(robot, cell, planner)
    j = robot.joint_index(f'{side}_wrist_pitch')
    q_failed = q_failed.copy()
    q_failed[j] = robot.lower[j] - 0.012
    segments, q_after = plan_release(planner, q_failed, side, 0.08)
    assert [s.name for s in segments] == ['open', 'retreat']
    assert robot.lower[j] <= q_after[j] <= robot.upper[j]
