"""Manipulation IK: round trips, joint limits, reach, time-out, bad input, the DLS baseline."""

import numpy as np
import pytest

from humanoid_inspection.manipulation.ik import IKSolver, IKStatus, solve_dls_baseline
from humanoid_inspection.manipulation.robot_model import RobotModel


@pytest.fixture(scope='module')
def robot():
    return RobotModel.from_project()


def _random_targets(robot, group, n, seed):
    rng = np.random.default_rng(seed)
    q0 = robot.reference_configuration()
    out = []
    for _ in range(n):
        q = robot.with_group(q0, group, rng.uniform(group.lower, group.upper))
        out.append((q, robot.frame_pose(q, group.tip_frame)))
    return q0, out


@pytest.mark.parametrize('group_name', ['left_arm', 'right_arm', 'left_arm_waist'])
def test_round_trip_on_random_reachable_targets(robot, group_name):
    group = robot.group(group_name)
    solver = IKSolver(robot, group)
    q0, targets = _random_targets(robot, group, 60, seed=11)
    for _, target in targets:
        res = solver.solve(target, q0, timeout_s=1.0)     # correctness here, not speed
        assert res.success, res.message
        assert res.position_error <= 1e-4 and res.orientation_error <= 1e-3
        # the solution is inside the limits and really reaches the target (independent FK)
        assert robot.limit_violations(res.q_full, group.joint_names, tol=0.0) == {}
        pose = robot.frame_pose(res.q_full, group.tip_frame)
        np.testing.assert_allclose(pose[:3, 3], target[:3, 3], atol=1e-4)
        np.testing.assert_allclose(pose[:3, :3], target[:3, :3], atol=2e-3)
        # joints outside the group keep the seed's values
        others = np.setdiff1d(np.arange(robot.nq), group.q_idx)
        np.testing.assert_array_equal(res.q_full[others], q0[others])


def test_seed_near_the_solution_converges_in_few_iterations(robot):
    group = robot.group('left_arm')
    solver = IKSolver(robot, group)
    q0, targets = _random_targets(robot, group, 10, seed=5)
    for q_true, target in targets:
        seed = robot.with_group(q_true, group, q_true[group.q_idx] + 0.02)
        res = solver.solve(target, seed, timeout_s=1.0)
        assert res.success and res.attempts == 1 and res.iterations < 15


def test_unreachable_target_is_reported(robot):
    group = robot.group('right_arm')
    solver = IKSolver(robot, group)
    q0 = robot.reference_configuration()
    far = np.eye(4)
    far[:3, 3] = [2.0, -0.5, 0.0]
    res = solver.solve(far, q0)
    assert res.status is IKStatus.UNREACHABLE and 'reach' in res.message
    assert res.iterations == 0         # rejected by the reach bound, no iterations


def test_target_needing_out_of_limit_joint_gives_joint_limits(robot):
    group = robot.group('left_arm')
    solver = IKSolver(robot, group)
    q0 = robot.reference_configuration()
    q_bad = q0.copy()
    # the elbow bends one way only (upper limit 0): a mirrored bend is outside the limits
    q_bad[robot.joint_index('left_elbow')] = 1.2
    q_bad[robot.joint_index('left_shoulder_pitch')] = -0.6
    target = robot.frame_pose(q_bad, 'left_tcp')
    res = solver.solve(target, q0, max_attempts=30, timeout_s=1.0)
    if res.success:   # an equivalent in-limit configuration exists for this pose
        assert robot.limit_violations(res.q_full, group.joint_names, tol=0.0) == {}
    else:
        assert res.status is IKStatus.JOINT_LIMITS, res.message


def test_time_budget_is_respected(robot):
    group = robot.group('left_arm')
    solver = IKSolver(robot, group)
    q0 = robot.reference_configuration()
    # reachable in position, impossible orientation for this wrist -> many restarts
    target = robot.frame_pose(q0, 'left_tcp')
    target[:3, 3] += [0.25, 0.0, 0.35]
    res = solver.solve(target, q0, timeout_s=0.003, max_attempts=10_000)
    assert res.status in (IKStatus.TIMEOUT, IKStatus.SUCCESS)
    if res.status is IKStatus.TIMEOUT:
        assert res.attempts < 10_000 and 'CPU time budget' in res.message


def test_time_budget_is_cpu_time_not_wall_time(robot):
    # A validity callback that sleeps (a loaded machine: wall time passes, this thread's CPU
    # time does not) must not cut the attempts short (the sleeps alone exceed 30 ms).
    import time
    group = robot.group('left_arm')
    solver = IKSolver(robot, group)
    _, targets = _random_targets(robot, group, 1, seed=2)
    q_true, target = targets[0]

    def sleepy_reject(q):
        time.sleep(0.02)
        return False

    res = solver.solve(target, q_true, timeout_s=0.03, max_attempts=8, is_valid=sleepy_reject)
    assert res.status is IKStatus.IN_COLLISION and res.attempts == 8, res.message
    assert res.time_s > 0.03                   # reported time is wall time


def test_validity_callback_rejects_solutions(robot):
    group = robot.group('left_arm')
    solver = IKSolver(robot, group)
    _, targets = _random_targets(robot, group, 1, seed=2)
    q_true, target = targets[0]
    res = solver.solve(target, q_true, is_valid=lambda q: False, max_attempts=5)
    assert res.status is IKStatus.IN_COLLISION


@pytest.mark.parametrize('bad', ['nan', 'shape', 'rotation'])
def test_bad_targets_give_invalid_input(robot, bad):
    solver = IKSolver(robot, 'left_arm')
    q0 = robot.reference_configuration()
    target = robot.frame_pose(q0, 'left_tcp')
    if bad == 'nan':
        target[0, 3] = np.nan
    elif bad == 'shape':
        target = target[:3]
    else:
        target[:3, :3] *= 1.1
    res = solver.solve(target, q0)
    assert res.status is IKStatus.INVALID_INPUT and res.q is None


def test_bad_seed_gives_invalid_input(robot):
    solver = IKSolver(robot, 'left_arm')
    q0 = robot.reference_configuration()
    res = solver.solve(robot.frame_pose(q0, 'left_tcp'), q0[:5])
    assert res.status is IKStatus.INVALID_INPUT


def test_dls_baseline_solves_easy_targets_and_stays_in_limits(robot):
    group = robot.group('left_arm')
    q0, targets = _random_targets(robot, group, 30, seed=9)
    solved = 0
    for q_true, target in targets:
        seed = robot.with_group(q_true, group, q_true[group.q_idx] + 0.05)
        res = solve_dls_baseline(robot, group, target, np.clip(seed, robot.lower, robot.upper))
        solved += res.success
        assert robot.limit_violations(res.q_full, group.joint_names, tol=0.0) == {}
    assert solved >= 25
