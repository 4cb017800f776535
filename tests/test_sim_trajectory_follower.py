"""Pure tests of the joint trajectory follower (interpolation, replacement, stop, rejections)."""

import math

import numpy as np
import pytest

from humanoid_inspection.sim.trajectory_follower import (
    JointLimit, Trajectory, TrajectoryFollower, TrajectoryPoint)

CONTROLLERS = {'arm': ['a1', 'a2'], 'grip': ['g']}
LIMITS = {'a1': JointLimit(-2.0, 2.0, 1.0), 'a2': JointLimit(-1.0, 1.0, 2.0),
          'g': JointLimit(0.0, 0.05, 0.1)}


def make(interpolation='splines'):
    return TrajectoryFollower(CONTROLLERS, LIMITS, {'a1': 0.0, 'a2': 0.0, 'g': 0.02},
                              interpolation=interpolation)


def traj(points, names=('a1', 'a2'), start=0.0):
    return Trajectory(tuple(names), tuple(TrajectoryPoint(*p) for p in points), start)


def setpoint(f, t, joint):
    q, v = f.sample(t)
    return q[f.joint_names.index(joint)], v[f.joint_names.index(joint)]


MEASURED = {'a1': 0.0, 'a2': 0.0, 'g': 0.02}


def test_initial_hold_and_joint_order():
    f = make()
    assert f.joint_names == ('a1', 'a2', 'g')
    q, v = f.sample(0.0)
    np.testing.assert_allclose(q, [0.0, 0.0, 0.02])
    np.testing.assert_allclose(v, 0.0)


def test_linear_interpolation_from_current_state_then_hold():
    f = make()
    r = f.submit('arm', traj([(1.0, (0.5, -0.5)), (2.0, (1.0, 0.5))]), now=10.0,
                 measured=MEASURED)
    assert r.accepted, r.reason
    assert setpoint(f, 10.5, 'a1') == pytest.approx((0.25, 0.5))
    assert setpoint(f, 11.5, 'a2')[0] == pytest.approx(0.0)
    assert setpoint(f, 11.5, 'a2')[1] == pytest.approx(1.0)
    assert f.status('arm') == 'active'
    assert setpoint(f, 20.0, 'a1') == pytest.approx((1.0, 0.0))
    assert f.status('arm') == 'done'
    # the other controller did not move
    assert setpoint(f, 20.0, 'g')[0] == pytest.approx(0.02)


def test_cubic_interpolation_when_velocities_given():
    f = make()
    r = f.submit('arm', traj([(0.0, (0.0, 0.0), (0.0, 0.0)),
                              (2.0, (1.0, 0.0), (0.0, 0.0))]), now=0.0, measured=MEASURED)
    assert r.accepted, r.reason
    q_mid, v_mid = setpoint(f, 1.0, 'a1')
    assert q_mid == pytest.approx(0.5)
    assert v_mid == pytest.approx(0.75)          # cubic peak 1.5 * mean velocity
    q_q, _ = setpoint(f, 0.5, 'a1')
    assert q_q == pytest.approx(0.15625)         # 3s^2 - 2s^3 at s=0.25, not linear 0.25
    assert setpoint(f, 2.0, 'a1')[0] == pytest.approx(1.0)


def test_linear_mode_ignores_velocities():
    f = make('linear')
    f.submit('arm', traj([(0.0, (0.0, 0.0), (0.0, 0.0)), (2.0, (1.0, 0.0), (0.0, 0.0))]),
             now=0.0, measured=MEASURED)
    assert setpoint(f, 0.5, 'a1')[0] == pytest.approx(0.25)


def test_future_start_time_holds_until_start():
    f = make()
    f.submit('arm', traj([(1.0, (1.0, 0.0))], start=5.0), now=1.0, measured=MEASURED)
    assert f.status('arm') == 'waiting'
    assert setpoint(f, 4.0, 'a1') == pytest.approx((0.0, 0.0))
    assert setpoint(f, 5.5, 'a1')[0] == pytest.approx(0.5)


def test_new_trajectory_replaces_old_from_current_state():
    f = make()
    f.submit('arm', traj([(2.0, (1.0, 0.0))]), now=0.0, measured=MEASURED)
    q_now, _ = setpoint(f, 1.0, 'a1')
    assert q_now == pytest.approx(0.5)
    r = f.submit('arm', traj([(1.0, (0.0, 0.0))]), now=1.0, measured={'a1': 0.5, 'a2': 0.0})
    assert r.accepted
    assert setpoint(f, 1.5, 'a1')[0] == pytest.approx(0.25)   # from 0.5 back to 0
    assert setpoint(f, 3.0, 'a1')[0] == pytest.approx(0.0)    # the old target is gone


def test_empty_trajectory_stops_and_holds():
    f = make()
    f.submit('arm', traj([(2.0, (1.0, 0.0))]), now=0.0, measured=MEASURED)
    r = f.submit('arm', traj([]), now=1.0, measured=MEASURED)
    assert r.accepted and 'stop' in r.reason
    assert f.status('arm') == 'stopped'
    assert setpoint(f, 1.5, 'a1') == pytest.approx((0.5, 0.0))
    assert setpoint(f, 10.0, 'a1') == pytest.approx((0.5, 0.0))


def test_partial_joints_and_any_order():
    f = make()
    f.submit('arm', traj([(1.0, (-0.5,))], names=('a2',)), now=0.0, measured=MEASURED)
    assert setpoint(f, 1.0, 'a2')[0] == pytest.approx(-0.5)
    assert setpoint(f, 1.0, 'a1')[0] == pytest.approx(0.0)
    f.submit('arm', traj([(1.0, (0.3, 0.6))], names=('a2', 'a1')), now=2.0,
             measured={'a1': 0.0, 'a2': -0.5})
    assert setpoint(f, 3.0, 'a1')[0] == pytest.approx(0.6)
    assert setpoint(f, 3.0, 'a2')[0] == pytest.approx(0.3)


def test_first_point_at_zero_jump_is_checked_against_measured():
    f = make()
    # the gripper set-point is 0.02 but the fingers are measured at 0.03 (blocked by a part)
    r = f.submit('grip', traj([(0.0, (0.03,)), (0.5, (0.05,))], names=('g',)), now=0.0,
                 measured={'g': 0.03})
    assert r.accepted, r.reason
    r = f.submit('arm', traj([(0.0, (1.0, 0.0)), (5.0, (1.0, 0.0))]), now=0.0,
                 measured=MEASURED)
    assert not r.accepted and 'jump' in r.reason


@pytest.mark.parametrize('controller,trajectory,needle', [
    ('nope', traj([(1.0, (0.1, 0.1))]), 'unknown controller'),
    ('arm', traj([(1.0, (0.1, 0.1))], names=('a1', 'zz')), 'unknown joint'),
    ('arm', traj([(1.0, (0.1, 0.01))], names=('a1', 'g')), 'do not belong'),
    ('arm', traj([(1.0, (0.1, 0.1))], names=('a1', 'a1')), 'duplicate'),
    ('arm', traj([(1.0, (0.1, 0.1)), (1.0, (0.2, 0.1))]), 'increase strictly'),
    ('arm', traj([(1.0, (0.1, 0.1)), (0.5, (0.2, 0.1))]), 'increase strictly'),
    ('arm', traj([(-1.0, (0.1, 0.1))]), 'negative'),
    ('arm', traj([(1.0, (math.nan, 0.1))]), 'NaN'),
    ('arm', traj([(1.0, (0.1, math.inf))]), 'NaN or infinite'),
    ('arm', traj([(1.0, (0.1,))]), '1 positions for 2 joints'),
    ('arm', traj([(1.0, (0.1, 0.1), (0.1,))]), '1 velocities'),
    ('arm', traj([(1.0, (0.1, 0.1), (0.0, math.nan))]), 'velocity is NaN'),
    ('arm', traj([(5.0, (2.5, 0.0))]), 'outside its limits'),
    ('arm', traj([(5.0, (0.0, -1.2))]), 'outside its limits'),
    ('arm', traj([(0.3, (1.0, 0.0))]), 'over its velocity limit'),
    ('arm', traj([(4.0, (1.0, 0.0), (3.0, 0.0))]), 'exceeds its limit'),
    ('arm', traj([(0.0, (0.5, 0.0), (0.0, 0.0)), (1.0, (1.4, 0.0), (0.0, 0.0))]),
     'over its velocity limit'),                  # mean 0.9 ok, cubic peak 1.35 > 1.0
    ('arm', traj([(0.0, (1.9, 0.0), (0.0, 0.0)), (4.0, (1.9, 0.0), (0.0, 0.0))]), 'jump'),
    ('arm', traj([(0.0, (0.5, 0.0), (0.0, 0.0)), (3.0, (1.9, 0.0), (1.0, 0.0)),
                  (9.0, (0.5, 0.0), (0.0, 0.0))]), 'leaves the limits'),
])
def test_rejections_give_a_reason_and_hold(controller, trajectory, needle):
    f = make()
    f.submit('arm', traj([(2.0, (1.0, 0.0))]), now=0.0, measured=MEASURED)
    r = f.submit(controller, trajectory, now=1.0, measured={'a1': 0.5, 'a2': 0.0, 'g': 0.02})
    assert not r.accepted
    assert needle in r.reason, r.reason
    if controller == 'arm':
        assert f.status('arm') == 'rejected'
        # holds where the previous trajectory was when the bad one came
        assert setpoint(f, 1.5, 'a1') == pytest.approx((0.5, 0.0))
        assert setpoint(f, 9.0, 'a1') == pytest.approx((0.5, 0.0))


def test_hold_resets_every_controller():
    f = make()
    f.submit('arm', traj([(2.0, (1.0, 0.0))]), now=0.0, measured=MEASURED)
    f.hold({'a1': 0.3, 'g': 1.0})
    assert setpoint(f, 5.0, 'a1') == pytest.approx((0.3, 0.0))
    assert setpoint(f, 5.0, 'g')[0] == pytest.approx(0.05)   # clipped into the limits


def test_constructor_errors():
    with pytest.raises(ValueError, match='interpolation'):
        TrajectoryFollower(CONTROLLERS, LIMITS, {}, interpolation='quintic')
    with pytest.raises(ValueError, match='no limits'):
        TrajectoryFollower({'x': ['q']}, LIMITS, {})
    with pytest.raises(ValueError, match='controllers'):
        TrajectoryFollower({'x': ['a1'], 'y': ['a1']}, LIMITS, {})


def test_a_hair_of_overshoot_between_points_is_accepted_and_clipped():
    # a planner path running along a1's upper limit (2.0): the cubic between the two points
    # bulges 2 mrad above it (0.05 % of the 4 rad range); the demo's arm stalled on 0.1 mrad
    f = make()
    r = f.submit('arm', traj([(1.0, (1.996, 0.0), (0.016, 0.0)),
                              (2.0, (2.0, 0.0), (-0.016, 0.0))]), now=0.0,
                 measured={'a1': 1.99, 'a2': 0.0, 'g': 0.02})
    assert r.accepted, r.reason
    peak = max(setpoint(f, t, 'a1')[0] for t in np.linspace(0.0, 2.0, 201))
    assert peak <= 2.0


def test_a_point_a_hair_outside_the_limits_is_clipped_further_out_refused():
    # a hold at the measured position of a joint that contact pushed 0.01 rad past its limit
    # (1 % of the range is clipped: a1's range is 4 rad -> 0.04 rad)
    f = make()
    r = f.submit('arm', traj([(0.1, (2.01, 0.0))]), now=0.0,
                 measured={'a1': 2.01, 'a2': 0.0, 'g': 0.02})
    assert r.accepted, r.reason
    assert setpoint(f, 1.0, 'a1')[0] == pytest.approx(2.0)
    r = f.submit('arm', traj([(0.1, (2.1, 0.0))]), now=2.0, measured=MEASURED)
    assert not r.accepted and 'outside its limits' in r.reason
