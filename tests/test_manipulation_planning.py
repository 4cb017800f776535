"""Manipulation planning: OMPL joint plans in the cell, Cartesian lines, timing within limits."""

import numpy as np
import pytest

from humanoid_inspection.cell_geometry import load_cell
from humanoid_inspection.manipulation.collision import CollisionChecker
from humanoid_inspection.manipulation.pick_place import grasp_from_axis
from humanoid_inspection.manipulation.planner import MotionPlanner, PlanStatus
from humanoid_inspection.manipulation.robot_model import RobotModel
from humanoid_inspection.manipulation.scene import obstacles_from_cell
from humanoid_inspection.manipulation.time_parameterization import (
    TimeParameterizationError, limit_violations, time_parameterize, trapezoidal_trajectory)


@pytest.fixture(scope='module')
def robot():
    return RobotModel.from_project()


@pytest.fixture(scope='module')
def cell():
    return load_cell()


@pytest.fixture(scope='module')
def planner(robot, cell):
    return MotionPlanner(robot, CollisionChecker(robot, obstacles_from_cell(cell)), seed=1)


def ready(robot):
    q = robot.reference_configuration()
    q[robot.joint_index('left_shoulder_roll')] = 0.1
    q[robot.joint_index('right_shoulder_roll')] = -0.1
    return q


def dense_path_is_free(planner, group, q_full, path, step=0.005):
    """No real collision (a checker without the planner's 1 cm padding) every step rad.

    The planner checks its paths every 0.03 rad (taut rope-shortened ones every 0.01 rad)
    with the padding; states between its checks may reach into the padding, not into an
    obstacle.
    """
    checker = CollisionChecker(planner.robot, planner.checker.obstacles, padding=0.0)
    for side in ('left', 'right'):
        if planner.checker.attached(side) is not None:
            checker.attach(side, planner.checker.attached(side))
    ctx = checker.context(group)
    q = q_full.copy()
    for a, b in zip(path[:-1], path[1:]):
        n = max(1, int(np.ceil(np.abs(b - a).max() / step)))
        for k in range(n + 1):
            q[group.q_idx] = a + (b - a) * k / n
            if ctx.in_collision_narrowphase(q):
                return False
    return True


def above_table_goal(planner, robot, cell, side, slot):
    x, y = cell.table.part_slots[slot]
    target = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + 0.15)), (0, 0, -1))
    res = planner.solve_ik(robot.group(f'{side}_arm'), ready(robot), target, timeout_s=1.0,
                           max_attempts=100)
    assert res.success, res.message
    return res


def test_joint_plan_from_standing_to_above_the_table_is_collision_free(planner, robot, cell):
    group = robot.group('right_arm')
    goal = above_table_goal(planner, robot, cell, 'right', 3)
    q0 = ready(robot)
    res = planner.plan_joint(group, q0, goal.q, timeout_s=2.0)
    assert res.success, res.message
    np.testing.assert_allclose(res.path[0], q0[group.q_idx])
    np.testing.assert_allclose(res.path[-1], goal.q)
    assert dense_path_is_free(planner, group, q0, res.path)
    traj = planner.time_parameterize(group, res.path, q0)
    assert limit_violations(traj, group.lower, group.upper, group.max_velocity,
                            group.max_acceleration) == []
    np.testing.assert_allclose(traj.positions[0], q0[group.q_idx])
    np.testing.assert_allclose(traj.positions[-1], goal.q)
    # the timed spline itself is collision-free, sampled densely
    assert dense_path_is_free(planner, group, q0, traj.positions, step=0.02)


def test_remembered_paths_are_reused_only_where_they_are_free(planner, robot, cell):
    group = robot.group('right_arm')
    q0 = ready(robot)
    def goal(slot):       # slots 1-3, 6, 7: reachable, never by a straight joint motion
        x, y = cell.table.part_slots[slot]
        target = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + 0.15)),
                                 (0, 0, -1))
        res = planner.solve_ik(group, q0, target, timeout_s=1.0, max_attempts=100)
        assert res.success, res.message
        return res

    first_goal, second_goal = goal(1), goal(3)
    planner.forget_experience()
    first = planner.plan_joint(group, q0, first_goal.q, timeout_s=2.0)
    assert first.success and first.planner == 'RRTConnect', first.message   # no direct path
    second = planner.plan_joint(group, q0, second_goal.q, timeout_s=2.0)
    assert second.success and second.planner == 'experience', second.message
    np.testing.assert_allclose(second.path[[0, -1]], [q0[group.q_idx], second_goal.q])
    assert dense_path_is_free(planner, group, q0, second.path)
    # a remembered path through the table is re-checked and not reused
    x, y = cell.table.part_slots[2]
    inside = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z - 0.02)), (0, 0, -1))
    ik = planner.ik_solver(group).solve(inside, q0)
    assert ik.success and planner.checker.in_collision(ik.q_full, group)
    planner.forget_experience()
    planner._remember(group, np.vstack([q0[group.q_idx], ik.q, first_goal.q]))
    third = planner.plan_joint(group, q0, second_goal.q, timeout_s=2.0)
    assert third.success and third.planner == 'RRTConnect', third.message
    assert dense_path_is_free(planner, group, q0, third.path)
    planner.forget_experience()
    planner.experience = 0          # off: nothing is remembered or reused
    try:
        planner.plan_joint(group, q0, first_goal.q, timeout_s=2.0)
        again = planner.plan_joint(group, q0, second_goal.q, timeout_s=2.0)
        assert again.planner == 'RRTConnect'
    finally:
        planner.experience = 32


def test_ompl_budget_is_cpu_time_with_a_wall_cap(robot):
    import time
    from humanoid_inspection.manipulation.planner import OMPL_WALL_CAP
    planner = MotionPlanner(robot, CollisionChecker(robot, []), seed=2)
    group = robot.group('right_arm')
    q0 = robot.reference_configuration()
    qa = q0[group.q_idx].copy()
    qb = qa.copy()
    qb[0] += 0.5

    class Wall:            # a slab across the first joint's range: no path exists
        def __init__(self, sleep_s=0.0):
            self.sleep_s = sleep_s

        def in_collision(self, q):
            if self.sleep_s:
                time.sleep(self.sleep_s)
            return abs(q[group.q_idx][0] - qa[0] - 0.25) < 0.05

    cpu, wall = time.thread_time(), time.perf_counter()
    assert planner._ompl(group, Wall(), q0, qa, qb, 0.2, 0.06) is None
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    # stopped by the CPU budget (or, on a machine loaded beyond 3x, by the wall cap)
    assert cpu < 0.6 and (cpu >= 0.2 or wall >= 0.2 * OMPL_WALL_CAP)
    # checks that sleep (wall time passes, CPU time does not): stopped by the wall cap
    wall = time.perf_counter()
    assert planner._ompl(group, Wall(0.002), q0, qa, qb, 0.1, 0.06) is None
    assert 0.1 * OMPL_WALL_CAP <= time.perf_counter() - wall < 0.1 * OMPL_WALL_CAP + 1.0


def test_motion_checks_visit_every_state_coarse_first():
    from humanoid_inspection.manipulation.planner import _coarse_first_order
    for steps in range(0, 40):
        order = _coarse_first_order(steps)
        assert sorted(order) == list(range(1, steps + 1))
        if steps >= 4:
            assert order[:steps // 4] == list(range(steps, steps - 4 * (steps // 4), -4))


def test_start_and_goal_checks(planner, robot, cell):
    group = robot.group('left_arm')
    q0 = ready(robot)
    bad = q0.copy()
    bad[robot.joint_index('left_elbow')] = 0.5          # elbow upper limit is 0
    res = planner.plan_joint(group, bad, q0[group.q_idx])
    assert res.status is PlanStatus.START_OUT_OF_LIMITS and 'left_elbow' in res.message
    res = planner.plan_joint(group, q0, np.full(group.dof, np.nan))
    assert res.status is PlanStatus.INVALID_INPUT
    # goal in the table: IK for a tcp inside the table top, without collision checking
    x, y = cell.table.part_slots[1]
    inside = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z - 0.015)), (0, 0, -1))
    ik = planner.ik_solver(group).solve(inside, q0)
    assert ik.success
    res = planner.plan_joint(group, q0, ik.q)
    assert res.status is PlanStatus.GOAL_IN_COLLISION and 'table' in res.message
    # start in collision
    res = planner.plan_joint(group, ik.q_full, q0[group.q_idx])
    assert res.status is PlanStatus.START_IN_COLLISION
    # plan_to_pose: collision-aware IK cannot find a free solution inside the table
    res = planner.plan_to_pose(group, q0, inside)
    assert res.status in (PlanStatus.GOAL_IN_COLLISION, PlanStatus.UNREACHABLE)
    far = np.eye(4)
    far[:3, 3] = [2.0, 0.0, 0.0]
    assert planner.plan_to_pose(group, q0, far).status is PlanStatus.UNREACHABLE


def test_cartesian_line_is_straight_and_continuous(planner, robot, cell):
    group = robot.group('right_arm')
    goal = above_table_goal(planner, robot, cell, 'right', 2)
    start = goal.q_full
    pose = robot.frame_pose(start, 'right_tcp')
    down = pose.copy()
    down[2, 3] -= 0.08
    res = planner.cartesian_path(group, start, down, step=0.01)
    assert res.success and res.fraction == 1.0, res.message
    assert np.abs(np.diff(res.path, axis=0)).max() < 0.3
    for row in res.path:
        p = robot.frame_pose(robot.with_group(start, group, row), 'right_tcp')
        # on the vertical line, orientation kept
        np.testing.assert_allclose(p[:2, 3], pose[:2, 3], atol=2e-4)
        np.testing.assert_allclose(p[:3, :3], pose[:3, :3], atol=3e-3)
    # a line into the table stops with the fraction achieved
    into = pose.copy()
    into[2, 3] -= 0.4
    res = planner.cartesian_path(group, start, into)
    assert not res.success and 0.0 < res.fraction < 1.0
    assert res.status is PlanStatus.GOAL_IN_COLLISION


def test_time_parameterization_is_inside_limits_at_every_dense_sample():
    rng = np.random.default_rng(0)
    n = 7
    lower, upper = -np.full(n, 2.5), np.full(n, 2.5)
    vmax, amax = rng.uniform(1.0, 3.0, n), rng.uniform(2.0, 6.0, n)
    names = [f'j{i}' for i in range(n)]
    for trial in range(8):
        k = int(rng.integers(2, 30))
        path = np.clip(np.cumsum(rng.uniform(-0.3, 0.3, (k, n)), axis=0), lower, upper)
        traj = time_parameterize(path, names, lower, upper, vmax, amax, sample_dt=0.001)
        assert limit_violations(traj, lower, upper, vmax, amax) == [], traj.method
        np.testing.assert_allclose(traj.positions[0], path[0], atol=1e-9)
        np.testing.assert_allclose(traj.positions[-1], path[-1], atol=1e-9)
        assert np.all(traj.velocities[0] == 0) and np.all(traj.velocities[-1] == 0)
        # positions are the integral of velocities (consistent samples)
        integrated = traj.positions[0] + np.concatenate([np.zeros((1, n)), np.cumsum(
            0.5 * (traj.velocities[1:] + traj.velocities[:-1]) * np.diff(traj.times)[:, None],
            axis=0)])
        np.testing.assert_allclose(integrated, traj.positions, atol=5e-3)


def test_toppra_output_samples_are_inside_the_limits_on_smooth_paths():
    # Regression: the output samples fall between the 4 ms dense-check times; where a
    # constant-acceleration piece starts, 6 % of these paths had a sample 0.2-2 % over an
    # acceleration limit before the output samples were checked themselves.
    rng = np.random.default_rng(0)
    n = 7
    lower, upper = -np.full(n, 3.0), np.full(n, 3.0)
    names = [f'j{i}' for i in range(n)]
    methods = []
    for _ in range(100):
        vmax, amax = rng.uniform(1.0, 3.0, n), rng.uniform(2.0, 6.0, n)
        s = np.linspace(0, 1, int(rng.integers(3, 40)))[:, None]
        path = (0.8 * np.sin(s * rng.uniform(0.5, 3.0, n)[None, :] + rng.uniform(0, 1, n))
                + 0.01 * rng.normal(size=(len(s), n)))
        traj = time_parameterize(path, names, lower, upper, vmax, amax)
        methods.append(traj.method)
        assert limit_violations(traj, lower, upper, vmax, amax) == []
        np.testing.assert_allclose(traj.positions[[0, -1]], path[[0, -1]], atol=1e-9)
    assert methods.count('toppra') > 70


def test_a_rejected_spline_is_retried_through_the_resampled_polyline():
    # An L-shaped path: the spline through its 3 waypoints overshoots the corner by 12 cm, into
    # a 'wall' 2 cm beyond it; through the polyline resampled every 0.15 rad it stays within
    # 1.3 cm and rounds the corner instead of stopping there.
    path = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    lim = np.full(2, 3.0)
    vmax, amax = np.ones(2), np.full(2, 2.0)
    seen = []

    def wall(q):
        seen.append(float(q[:, 0].max()))
        return q[:, 0].max() <= 1.02

    traj = time_parameterize(path, ['a', 'b'], -lim, lim, vmax, amax, validate=wall)
    assert traj.method == 'toppra' and len(seen) == 2 and seen[0] > 1.1
    assert traj.positions[:, 0].max() <= 1.02
    assert limit_violations(traj, -lim, lim, vmax, amax) == []
    assert traj.duration < trapezoidal_trajectory(path, ['a', 'b'], vmax, amax).duration
    stop_and_go = time_parameterize(path, ['a', 'b'], -lim, lim, vmax, amax, validate=wall,
                                    resample_step=0.0)
    assert stop_and_go.method == 'trapezoidal'


def test_smooth_dense_paths_use_toppra_and_beat_stop_and_go():
    n = 6
    s = np.linspace(0, 1, 40)[:, None]
    path = 0.8 * np.sin(s * np.linspace(0.5, 2.0, n)[None, :])
    lim = np.full(n, 3.0)
    names = [f'j{i}' for i in range(n)]
    traj = time_parameterize(path, names, -lim, lim, np.full(n, 2.0), np.full(n, 4.0))
    stop_go = trapezoidal_trajectory(path, names, np.full(n, 2.0), np.full(n, 4.0))
    assert traj.method == 'toppra'
    assert traj.duration < 0.5 * stop_go.duration
    assert limit_violations(stop_go, -lim, lim, np.full(n, 2.0), np.full(n, 4.0)) == []


def test_time_parameterization_rejects_bad_input():
    names = ['a', 'b']
    ok = np.zeros((2, 2))
    with pytest.raises(TimeParameterizationError, match='NaN'):
        time_parameterize(np.array([[0, 0], [np.nan, 0]]), names, -np.ones(2), np.ones(2),
                          np.ones(2), np.ones(2))
    with pytest.raises(TimeParameterizationError, match='> 0'):
        time_parameterize(ok, names, -np.ones(2), np.ones(2), np.zeros(2), np.ones(2))
    with pytest.raises(TimeParameterizationError, match='outside'):
        time_parameterize(np.array([[0, 0], [2, 0]]), names, -np.ones(2), np.ones(2),
                          np.ones(2), np.ones(2))
    single = time_parameterize(ok, names, -np.ones(2), np.ones(2), np.ones(2), np.ones(2))
    assert len(single.times) == 1 and single.duration == 0.0
