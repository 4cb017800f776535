"""Manipulation robot model: groups, limits, FK and Jacobians against finite differences."""

import numpy as np
import pinocchio as pin
import pytest

from humanoid_inspection.manipulation.robot_model import (
    DEFAULT_ACCELERATION_LIMITS, RobotModel, UnknownFrameError, UnknownGroupError,
    acceleration_limit_for)


@pytest.fixture(scope='module')
def robot():
    return RobotModel.from_project()


@pytest.fixture(scope='module')
def toy():
    return RobotModel.toy()


def test_project_groups_and_limits(robot):
    assert set(robot.groups) == {'left_arm', 'right_arm', 'left_arm_waist', 'right_arm_waist'}
    left = robot.group('left_arm')
    assert left.dof == 7 and left.tip_frame == 'left_tcp'
    assert left.joint_names[0] == 'left_shoulder_pitch'
    waist = robot.group('right_arm_waist')
    assert waist.dof == 8 and waist.joint_names[0] == 'waist_yaw'
    for g in robot.groups.values():
        assert np.all(g.lower < g.upper)
        assert np.all(g.max_velocity > 0) and np.all(g.max_acceleration > 0)
    # base_link is the planning frame: the model's root link
    assert robot.base_frame == 'base_link'
    # legs are locked (fixed base)
    assert 'left_knee' in robot.locked_joints


def test_unknown_group_and_frame_are_clear(robot):
    with pytest.raises(UnknownGroupError, match='left_leg'):
        robot.group('left_leg')
    with pytest.raises(UnknownFrameError, match='no_such_frame'):
        robot.frame_pose(robot.reference_configuration(), 'no_such_frame')


def test_acceleration_table_and_overrides():
    assert acceleration_limit_for('left_elbow') == dict(DEFAULT_ACCELERATION_LIMITS)['elbow']
    assert acceleration_limit_for('left_elbow', {'left_elbow': 1.25}) == 1.25
    robot = RobotModel.toy(acceleration_limits={'left_elbow': 1.25})
    assert robot.max_acceleration[robot.joint_index('left_elbow')] == 1.25
    with pytest.raises(ValueError, match='must be > 0'):
        RobotModel.toy(acceleration_limits={'left_elbow': 0.0})


def test_reference_configuration_is_the_standing_pose(robot):
    from humanoid_inspection import robot_description as rd
    q = robot.reference_configuration()
    stand = rd.standing_pose()
    for name, value in stand.items():
        i = robot.joint_index(name)
        assert q[i] == pytest.approx(np.clip(value, robot.lower[i], robot.upper[i]))


@pytest.mark.parametrize('which', ['project', 'toy'])
@pytest.mark.parametrize('group_name', ['left_arm', 'right_arm_waist'])
def test_jacobian_matches_finite_differences(which, group_name, robot, toy):
    model = robot if which == 'project' else toy
    group = model.group(group_name)
    rng = np.random.default_rng(3)
    h = 1e-6
    for _ in range(5):
        q = model.with_group(model.reference_configuration(), group,
                             rng.uniform(group.lower, group.upper))
        jac = model.group_jacobian(q, group)
        pose = model.frame_pose(q, group.tip_frame)
        fd = np.zeros_like(jac)
        for k in range(group.dof):
            dq = q.copy()
            dq[group.q_idx[k]] += h
            pose2 = model.frame_pose(dq, group.tip_frame)
            fd[:3, k] = (pose2[:3, 3] - pose[:3, 3]) / h
            # angular velocity in base axes: log of R2 R1^T
            fd[3:, k] = pin.log3(pose2[:3, :3] @ pose[:3, :3].T) / h
        np.testing.assert_allclose(jac, fd, atol=2e-5)


def test_fk_composes_with_known_geometry(toy):
    # toy arm straight down: the tcp is below the shoulder by the link lengths (+ palm + tcp)
    q = np.zeros(toy.nq)
    shoulder = toy.frame_pose(q, 'left_shoulder_pitch')
    tcp = toy.frame_pose(q, 'left_tcp')
    assert tcp[0, 3] == pytest.approx(shoulder[0, 3], abs=1e-6)
    assert shoulder[2, 3] - tcp[2, 3] == pytest.approx(0.12 + 0.16 + 0.12 + 0.14 + 0.04 + 0.04
                                                       + 0.05, abs=1e-6)
    # tcp x axis (approach) points down the arm
    np.testing.assert_allclose(tcp[:3, 0], [0, 0, -1], atol=1e-6)


def test_configuration_dict_round_trip(robot):
    q = robot.reference_configuration()
    d = robot.configuration_to_dict(q)
    d['left_elbow'] = -1.0
    d['not_a_joint'] = 3.0         # joint_states may carry joints the model lacks: ignored
    q2 = robot.configuration_from_dict(d)
    assert q2[robot.joint_index('left_elbow')] == -1.0
    assert robot.limit_violations(q2) == {}
    q2[robot.joint_index('left_elbow')] = 1.0
    assert 'left_elbow' in robot.limit_violations(q2)
