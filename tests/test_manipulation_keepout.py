"""The virtual keep-out box over the table (the waiting parts are not in the planning scene)."""

import numpy as np
import pytest

from humanoid_inspection.cell_geometry import load_cell
from humanoid_inspection.manipulation.collision import AttachedObject, CollisionChecker
from humanoid_inspection.manipulation.pick_place import (
    GraspCandidate, PickPlaceConfig, PickPlacePlanner, grasp_from_axis)
from humanoid_inspection.manipulation.robot_model import RobotModel
from humanoid_inspection.manipulation.scene import keepout_zones_at, obstacles_from_cell


@pytest.fixture(scope='module')
def cell():
    return load_cell()


def test_keepout_box_covers_the_table_top_and_is_found_at_table_points(cell):
    obstacles = obstacles_from_cell(cell, keepout_height=0.06)
    box = {o.name: o for o in obstacles}['keepout_table']
    assert box.size[2] == pytest.approx(0.06)
    assert box.size[:2] == pytest.approx(tuple(cell.table.size[:2]))
    x, y = cell.table.part_slots[0]
    on_table = cell.world_to_base((x, y, cell.table.top_z + 0.025))
    assert keepout_zones_at(obstacles, on_table) == ['keepout_table']
    above = cell.world_to_base((x, y, cell.table.top_z + 0.15))      # pre-grasp height
    assert keepout_zones_at(obstacles, above) == ['keepout_table']
    seat = cell.xray_cabinet.fixture.pose.xyz
    assert keepout_zones_at(obstacles, cell.world_to_base((seat[0], seat[1], seat[2] + 0.02))) \
        == []
    assert 'keepout_table' not in {o.name for o in obstacles_from_cell(cell)}


def test_a_table_pick_to_the_fixture_plans_with_the_keepout_box(cell):
    robot = RobotModel.from_project()
    obstacles = obstacles_from_cell(cell, keepout_height=0.06)
    planner = PickPlacePlanner(robot, CollisionChecker(robot, obstacles), obstacles,
                               PickPlaceConfig(max_opening_m=cell.gripper.max_opening_m,
                                               ik_timeout_s=0.2, total_timeout_s=20.0),
                               seed=3)
    q = robot.reference_configuration()
    q[robot.joint_index('left_shoulder_roll')] = 0.1
    q[robot.joint_index('right_shoulder_roll')] = -0.1
    x, y = cell.table.part_slots[1]
    grasp = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + 0.025)), (0, 0, -1))
    seat = cell.xray_cabinet.fixture.pose.xyz
    place = grasp.copy()
    place[:3, 3] = cell.world_to_base((seat[0], seat[1], seat[2] + 0.025))
    plan = planner.plan(q, [GraspCandidate(grasp, 0.05)], place, 'left')
    assert plan.success, plan.message
    # the joint-space segments never enter the keep-out box (the lines at the grasp may)
    for seg in plan.segments:
        if seg.name not in ('pre_grasp', 'transfer'):
            continue
        if seg.name == 'transfer':
            planner.checker.attach('left', AttachedObject('box', (0.04, 0.05, 0.04)))
        q_seg = q.copy()
        for row in seg.trajectory.positions[::5]:
            for name, value in zip(seg.trajectory.joint_names, row):
                q_seg[robot.joint_index(name)] = value
            pairs = planner.checker.colliding_pairs(q_seg)
            assert not [p for p in pairs if 'keepout_table' in p], (seg.name, pairs)
        planner.checker.detach('left')
    assert np.isfinite(plan.duration)
