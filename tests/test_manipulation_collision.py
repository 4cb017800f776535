"""Manipulation collision: self-collision with the ACM, the cell's boxes, the carried part."""

import numpy as np
import pytest

from humanoid_inspection.cell_geometry import load_cell
from humanoid_inspection.manipulation.collision import (
    AttachedObject, CollisionChecker, Obstacle, box_pose)
from humanoid_inspection.manipulation.ik import IKSolver
from humanoid_inspection.manipulation.pick_place import grasp_from_axis
from humanoid_inspection.manipulation.robot_model import RobotModel
from humanoid_inspection.manipulation.scene import obstacles_from_cell, support_obstacles


@pytest.fixture(scope='module')
def robot():
    return RobotModel.from_project()


@pytest.fixture(scope='module')
def cell():
    return load_cell()


@pytest.fixture()
def checker(robot, cell):
    return CollisionChecker(robot, obstacles_from_cell(cell), padding=0.0)


def ready(robot):
    """Standing pose with the arms 0.1 rad closer to the body (clear of the cabinet/bins)."""
    q = robot.reference_configuration()
    q[robot.joint_index('left_shoulder_roll')] = 0.1
    q[robot.joint_index('right_shoulder_roll')] = -0.1
    return q


def test_cell_obstacles_come_from_cell_yaml(cell):
    obs = {o.name: o for o in obstacles_from_cell(cell)}
    for name in ('table', 'xray_base', 'xray_roof', 'xray_fixture', 'accept_bin_floor',
                 'reject_bin_wall_negy', 'floor'):
        assert name in obs
    # the cabinet's open side has no wall
    assert f'xray_wall_{"neg" if cell.xray_cabinet.open_side[0] == "-" else "pos"}' \
           f'{cell.xray_cabinet.open_side[1]}' not in obs
    table = obs['table']
    top_base = cell.table.top_z - cell.robot.pose.xyz[2]
    assert table.pose[2, 3] + table.size[2] / 2 == pytest.approx(top_base)
    part = cell.world_to_base((*cell.table.part_slots[0], cell.table.top_z + 0.03))
    assert support_obstacles(list(obs.values()), part)[0] == 'table'


def test_ready_pose_is_free_and_adjacent_links_are_not_checked(robot, checker):
    assert checker.colliding_pairs(ready(robot)) == []
    pairs = {frozenset((checker.owner(p.first), checker.owner(p.second)))
             for p in checker.geom_model.collisionPairs}
    assert frozenset(('left_upper_arm_link', 'left_forearm_link')) not in pairs   # adjacent
    assert frozenset(('left_thigh_link', 'table')) not in pairs or True           # locked legs
    kinds = checker.pair_counts()
    assert kinds['self'] > 0 and kinds['world'] > 0


def test_self_collision_is_detected(robot, checker):
    group = robot.group('left_arm')
    rng = np.random.default_rng(0)
    q0 = ready(robot)
    obstacle_names = {o.name for o in checker.obstacles}
    for _ in range(2000):
        q = robot.with_group(q0, group, rng.uniform(group.lower, group.upper))
        pairs = checker.colliding_pairs(q)
        if pairs and all(a not in obstacle_names and b not in obstacle_names for a, b in pairs):
            break
    else:
        pytest.fail('no self-collision found in 2000 samples')
    assert checker.in_collision(q)
    assert all(a.startswith(('left_', 'torso', 'base', 'head', 'right_', 'pelvis', 'waist'))
               for a, _ in pairs), pairs


def test_hand_in_the_table_collides(robot, checker, cell):
    group = robot.group('right_arm')
    x, y = cell.table.part_slots[2]
    target = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z - 0.01)), (0, 0, -1))
    res = IKSolver(robot, group).solve(target, ready(robot), timeout_s=1.0)
    assert res.success, res.message
    pairs = checker.colliding_pairs(res.q_full)
    assert any('table' in p for p in pairs), pairs
    # allowing exactly those pairs (e.g. fingers touching the support surface) clears it
    assert not checker.in_collision(res.q_full, allowed=pairs)


def test_carried_part_collides_where_the_hand_does_not(robot, checker, cell):
    group = robot.group('right_arm')
    x, y = cell.table.part_slots[2]
    # tcp 6 cm above the table: the hand is free, a 16 cm long part (along the approach axis,
    # pointing down) goes through the table top
    target = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + 0.06)), (0, 0, -1))
    res = IKSolver(robot, group).solve(target, ready(robot), timeout_s=1.0,
                                       is_valid=lambda q: not checker.in_collision(q))
    assert res.success, res.message
    q = res.q_full
    assert not checker.in_collision(q)
    checker.attach('right', AttachedObject('box', (0.16, 0.04, 0.04)))
    pairs = checker.colliding_pairs(q)
    assert ('attached_right', 'table') in pairs or ('table', 'attached_right') in pairs
    # the part touches the hand links by construction: those pairs are never checked
    assert not any('attached_right' in p and 'right_hand_link' in p for p in pairs)
    assert not checker.in_collision(q, allowed=[('attached_right', 'table')])
    checker.detach('right')
    assert not checker.in_collision(q)


def test_attach_rejects_bad_shapes(robot, checker):
    with pytest.raises(ValueError, match='shape'):
        checker.attach('left', AttachedObject('sphere', (0.1,)))
    with pytest.raises(ValueError, match='dimensions'):
        checker.attach('left', AttachedObject('box', (0.1, -0.1, 0.1)))
    with pytest.raises(ValueError, match='side'):
        checker.attach('middle', AttachedObject('box', (0.1, 0.1, 0.1)))


def test_padding_reports_near_misses(robot, cell):
    q = ready(robot)
    obstacle = Obstacle('probe', (0.05, 0.05, 0.05), box_pose(
        robot.frame_pose(q, 'right_tcp')[:3, 3] + [0.0, 0.0, -0.12]))
    exact = CollisionChecker(robot, [obstacle], padding=0.0)
    padded = CollisionChecker(robot, [obstacle], padding=0.2)
    assert not exact.in_collision(q)
    assert padded.in_collision(q)


@pytest.mark.parametrize('broadphase', ['naive', 'dynamic_aabb_tree'])
def test_broad_phase_never_misses_a_narrow_phase_collision(robot, cell, broadphase):
    checker = CollisionChecker(robot, obstacles_from_cell(cell), broadphase=broadphase)
    checker.attach('left', AttachedObject('box', (0.04, 0.05, 0.04)))
    rng = np.random.default_rng(4)
    q0 = ready(robot)
    hits = 0
    for name in ('left_arm', 'right_arm_waist'):
        group = robot.group(name)
        ctx = checker.context(group)
        for _ in range(300):
            q = robot.with_group(q0, group, rng.uniform(group.lower, group.upper))
            if ctx.in_collision_narrowphase(q):
                hits += 1
                assert ctx.in_collision(q)
    assert hits > 50
    with pytest.raises(ValueError, match='broadphase'):
        CollisionChecker(robot, [], broadphase='octree')


def test_contexts_sharing_data_answer_like_separate_checkers(robot, cell):
    # The contexts of one attachment state share one GeometryData (active pairs switched per
    # query) and re-attaching reuses the robot + cell model: the answers must be those of
    # checkers that were built for one context each.
    obstacles = obstacles_from_cell(cell)
    part = AttachedObject('box', (0.04, 0.07, 0.04))
    shared = CollisionChecker(robot, obstacles)
    shared.attach('right', AttachedObject('cylinder', (0.02, 0.05)))
    shared.detach('right')
    shared.attach('right', part)
    specs = [('right_arm', ()), ('right_arm_waist', (('right_hand_link', 'table'),
                                                     ('attached_right', 'table'))),
             ('left_arm', ()), (None, ())]
    contexts, references = [], []
    for name, allowed in specs:
        group = robot.group(name) if name else None
        contexts.append(shared.context(group, allowed))
        alone = CollisionChecker(robot, obstacles)
        alone.attach('right', part)
        references.append(alone.context(group, allowed))
        assert contexts[-1].active_pair_count == references[-1].active_pair_count
    rng = np.random.default_rng(7)
    q0 = ready(robot)
    arms = robot.group('right_arm_waist').q_idx.tolist() + robot.group('left_arm').q_idx.tolist()
    answers = set()
    for _ in range(250):
        q = q0.copy()
        q[arms] = rng.uniform(robot.lower[arms], robot.upper[arms])
        for k in rng.permutation(len(specs)):
            got = contexts[k].in_collision(q)
            assert got == references[k].in_collision(q)
            answers.add(got)
            if got:
                assert sorted(contexts[k].colliding_pairs(q)) == \
                    sorted(references[k].colliding_pairs(q))
    assert answers == {True, False}


def test_group_context_checks_only_pairs_the_group_moves(robot, checker):
    full = checker.context()
    left = checker.context(robot.group('left_arm'))
    assert 0 < left.active_pair_count < full.active_pair_count
