"""Time parameterisation of joint-space paths under velocity and acceleration limits.

Primary method: TOPP-RA (``toppra``, Pham & Pham 2018, seidel solver) on a not-a-knot cubic
spline through the waypoints, on 2 x N grid points (50..200). TOPP-RA enforces the limits at
its grid points only; between them the joint accelerations of the spline can overshoot by a
few percent. So every trajectory is then **checked densely** (every ``check_dt`` s): if a
velocity or acceleration exceeds its limit, time is stretched uniformly by the factor that
brings the worst ratio to 1 (velocities scale with 1/k, accelerations with 1/k^2); the output
samples themselves (which fall between the dense samples) are checked too, and stretched again
if one is over a limit. Positions are checked against the joint limits (a spline can overshoot
a waypoint that sits on a limit). TOPP-RA's constant-acceleration output is evaluated
vectorised here (toppra's own evaluation loops in Python over the samples, 6 x per path).

A rejected spline (position overshoot, or ``validate`` - the planner's collision check - said
no) is tried once more through the polyline resampled every ``resample_step`` rad (the spline
then stays near the checked straight segments and rounds the corners).

Fallback (TOPP-RA failure, or the resampled spline rejected too): the polyline itself,
stopping at every waypoint, each segment a synchronised time-optimal trapezoidal (or
triangular) velocity profile. It follows exactly the collision-checked straight segments and
stays inside the limits by construction.

Output: :class:`TimedTrajectory` (the shape of trajectory_msgs/JointTrajectory: joint names and
points with positions, velocities, accelerations, time_from_start), sampled every
``sample_dt`` s plus the exact final point.
"""

import functools
import logging
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

_LOG = logging.getLogger(__name__)

_CONSTRAINTS: dict = {}

# A spline overshooting a position limit by at most this much (rad or m) is clipped to it;
# more selects the fallback.
POSITION_CLIP_TOLERANCE = 2e-3
# Uniform stretches tried until every output sample is inside the limits (then the fallback).
_MAX_STRETCHES = 4


@dataclass
class TimedTrajectory:
    """A sampled joint trajectory (JointTrajectory-shaped).

    Attributes:
        joint_names: the joints, in column order.
        times: (M,) time_from_start of each point (s), starting at 0.
        positions, velocities, accelerations: (M, n) arrays.
        method: 'toppra' or 'trapezoidal'.
        resample_step: when the spline through the waypoints is rejected, TOPP-RA is tried
            again on the polyline resampled every resample_step rad (0 = not).
        time_scale: uniform time stretch applied after TOPP-RA (1.0 = none).
    """

    joint_names: List[str]
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray
    method: str = 'toppra'
    time_scale: float = 1.0

    @property
    def duration(self) -> float:
        """Time of the last point (s)."""
        return float(self.times[-1]) if len(self.times) else 0.0

    def points(self):
        """Iterate (time_from_start, positions, velocities, accelerations) per point."""
        for k in range(len(self.times)):
            yield (float(self.times[k]), self.positions[k], self.velocities[k],
                   self.accelerations[k])

    def final_positions(self) -> np.ndarray:
        """Positions of the last point."""
        return self.positions[-1].copy()


class TimeParameterizationError(RuntimeError):
    """The path cannot be timed (bad limits or shape)."""


def limit_violations(traj: TimedTrajectory, lower: np.ndarray, upper: np.ndarray,
                     max_velocity: np.ndarray, max_acceleration: np.ndarray,
                     tol: float = 1e-6) -> List[str]:
    """Every limit a sampled trajectory breaks (empty list = within limits at every point).

    Args:
        traj: the trajectory.
        lower, upper: position limits per joint.
        max_velocity, max_acceleration: symmetric limits per joint.
        tol: relative tolerance on velocity/acceleration, absolute on positions.

    Returns:
        Human-readable violations ('joint j: velocity 2.1 > 2.0 at t=0.53 s', ...).
    """
    out = []
    checks = (('position', traj.positions, None),
              ('velocity', traj.velocities, max_velocity),
              ('acceleration', traj.accelerations, max_acceleration))
    for what, values, limit in checks:
        for j, name in enumerate(traj.joint_names):
            col = values[:, j]
            if limit is None:
                bad = np.flatnonzero((col < lower[j] - tol) | (col > upper[j] + tol))
                if len(bad):
                    k = bad[0]
                    out.append(f'{name}: position {col[k]:.4f} outside [{lower[j]:.4f}, '
                               f'{upper[j]:.4f}] at t={traj.times[k]:.3f} s')
            else:
                bad = np.flatnonzero(np.abs(col) > limit[j] * (1 + tol) + 1e-12)
                if len(bad):
                    k = bad[np.argmax(np.abs(col[bad]))]
                    out.append(f'{name}: {what} {col[k]:.4f} > {limit[j]:.4f} '
                               f'at t={traj.times[k]:.3f} s')
    if not np.all(np.diff(traj.times) > 0):
        out.append('times are not strictly increasing')
    for what, values in (('position', traj.positions), ('velocity', traj.velocities),
                         ('acceleration', traj.accelerations)):
        if not np.all(np.isfinite(values)):
            out.append(f'non-finite {what}')
    return out


def resample_polyline(path: np.ndarray, step: float) -> np.ndarray:
    """Insert points along each segment so no joint moves more than step between points."""
    out = [path[0]]
    for a, b in zip(path[:-1], path[1:]):
        k = max(1, int(np.ceil(np.abs(b - a).max() / step)))
        frac = (np.arange(1, k + 1) / k)[:, None]
        out.extend(a + (b - a) * frac)
    return np.asarray(out)


def _dedupe(path: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    keep = [0]
    for k in range(1, len(path)):
        if np.abs(path[k] - path[keep[-1]]).max() > eps:
            keep.append(k)
    return path[keep]


def _trapezoid(length: float, v: float, a: float):
    """Rest-to-rest profile for a scalar distance: returns (t_acc, t_cruise, v_peak)."""
    t_acc = v / a
    if a * t_acc * t_acc >= length:        # triangular: never reaches v
        t_acc = np.sqrt(length / a)
        return t_acc, 0.0, a * t_acc
    return t_acc, (length - a * t_acc * t_acc) / v, v


def _trapezoid_sample(t: np.ndarray, length: float, v: float, a: float):
    """Position, velocity, acceleration of the scalar profile at times t."""
    t_acc, t_cruise, vp = _trapezoid(length, v, a)
    t_end = 2 * t_acc + t_cruise
    s = np.empty_like(t)
    sd = np.empty_like(t)
    sdd = np.empty_like(t)
    m1 = t < t_acc
    m3 = t >= t_acc + t_cruise
    m2 = ~m1 & ~m3
    s[m1] = 0.5 * a * t[m1] ** 2
    sd[m1] = a * t[m1]
    sdd[m1] = a
    s[m2] = 0.5 * a * t_acc ** 2 + vp * (t[m2] - t_acc)
    sd[m2] = vp
    sdd[m2] = 0.0
    tr = np.clip(t_end - t[m3], 0.0, None)
    s[m3] = length - 0.5 * a * tr ** 2
    sd[m3] = a * tr
    sdd[m3] = -a
    sdd[t >= t_end] = 0.0
    return s, sd, sdd, t_end


def _segment_limits(delta: np.ndarray, max_velocity: np.ndarray,
                    max_acceleration: np.ndarray):
    """Velocity and acceleration limits of the scalar s in [0, 1] along a straight segment."""
    absd = np.abs(delta)
    moving = absd > 1e-12
    return (float(np.min(max_velocity[moving] / absd[moving])),
            float(np.min(max_acceleration[moving] / absd[moving])))


def trapezoidal_duration(path: np.ndarray, max_velocity: np.ndarray,
                         max_acceleration: np.ndarray) -> float:
    """Duration (s) of :func:`trapezoidal_trajectory` on the same (deduplicated) path."""
    path = _dedupe(np.asarray(path, dtype=float))
    total = 0.0
    for a_pt, b_pt in zip(path[:-1], path[1:]):
        v_s, a_s = _segment_limits(b_pt - a_pt, max_velocity, max_acceleration)
        t_acc, t_cruise, _ = _trapezoid(1.0, v_s, a_s)
        total += 2 * t_acc + t_cruise
    return total


def trapezoidal_trajectory(path: np.ndarray, joint_names: Sequence[str],
                           max_velocity: np.ndarray, max_acceleration: np.ndarray,
                           sample_dt: float = 0.02) -> TimedTrajectory:
    """Stop-at-every-waypoint timing: straight segments with synchronised trapezoids.

    Args:
        path: (N, n) waypoints.
        joint_names: n joint names.
        max_velocity, max_acceleration: (n,) limits.
        sample_dt: sampling period of the output (s).

    Returns:
        TimedTrajectory (method 'trapezoidal'), within the limits by construction.
    """
    path = _dedupe(np.asarray(path, dtype=float))
    n = path.shape[1]
    times, pos, vel, acc = [np.zeros(1)], [path[:1]], [np.zeros((1, n))], [np.zeros((1, n))]
    t0 = 0.0
    for a_pt, b_pt in zip(path[:-1], path[1:]):
        delta = b_pt - a_pt
        # Scalar s in [0, 1] along the segment; limits in s units.
        v_s, a_s = _segment_limits(delta, max_velocity, max_acceleration)
        _, _, _, t_end = _trapezoid_sample(np.zeros(1), 1.0, v_s, a_s)
        k = max(2, int(np.ceil(t_end / sample_dt)) + 1)
        t = np.linspace(0.0, t_end, k)[1:]
        s, sd, sdd, _ = _trapezoid_sample(t, 1.0, v_s, a_s)
        s[-1], sd[-1], sdd[-1] = 1.0, 0.0, 0.0
        times.append(t0 + t)
        pos.append(a_pt + s[:, None] * delta)
        vel.append(sd[:, None] * delta)
        acc.append(sdd[:, None] * delta)
        t0 += t_end
    return TimedTrajectory(list(joint_names), np.concatenate(times), np.vstack(pos),
                           np.vstack(vel), np.vstack(acc), method='trapezoidal')


def _toppra_setup():
    """Import toppra, quiet its logs, and memoise its solver probe (once per process).

    Called at import of this module: importing toppra costs ~0.6 s of CPU (1.5 s of wall time
    on the loaded machine), which the first plan of a node paid before. toppra's algorithm
    constructor calls ``available_solvers()`` on every instance, which runs two
    ``importlib.util.find_spec`` look-ups (~0.6 ms per call); the answer cannot change within
    a process.
    """
    import toppra
    import toppra.algorithm        # noqa: F401 (imported here, not at the first plan)
    import toppra.constraint       # noqa: F401
    import toppra.solverwrapper as wrappers
    if not getattr(wrappers.available_solvers, '_memoised', False):
        probe = functools.lru_cache(maxsize=None)(wrappers.available_solvers)
        probe._memoised = True
        wrappers.available_solvers = probe
    toppra.setup_logging('WARNING')
    logging.getLogger('toppra').setLevel(logging.WARNING)
    return toppra


_TOPPRA = _toppra_setup()


def _constraints(max_velocity: np.ndarray, max_acceleration: np.ndarray):
    """TOPP-RA's joint velocity and acceleration constraints (cached per limits).

    Building them formats their arrays into log strings (~25 ms), so they are made once per
    set of limits; :func:`prepare` makes them ahead of the first plan.
    """
    key = (tuple(np.asarray(max_velocity, dtype=float)),
           tuple(np.asarray(max_acceleration, dtype=float)))
    constraints = _CONSTRAINTS.get(key)
    if constraints is None:
        constraint = _TOPPRA.constraint
        vmax = np.asarray(max_velocity, dtype=float)
        amax = np.asarray(max_acceleration, dtype=float)
        constraints = _CONSTRAINTS[key] = (
            constraint.JointVelocityConstraint(np.vstack([-vmax, vmax]).T),
            constraint.JointAccelerationConstraint(np.vstack([-amax, amax]).T))
    return constraints


def prepare(max_velocity: np.ndarray, max_acceleration: np.ndarray) -> None:
    """Build the TOPP-RA constraints of a set of limits now (not at the first plan)."""
    _constraints(max_velocity, max_acceleration)


class _ConstAccelTrajectory:
    """TOPP-RA's output as toppra's ParametrizeConstAccel builds it, evaluated vectorised.

    Between grid points s_i the path acceleration is constant, u_i = (sd_{i+1}^2 - sd_i^2) /
    (2 (s_{i+1} - s_i)), reached in t_{i+1} - t_i = 2 (s_{i+1} - s_i) / (sd_i + sd_{i+1}).
    :meth:`evaluate` returns q, qd, qdd at many times from one evaluation of s, sd, sdd
    (toppra's own ``__call__`` loops in Python over the times, once per derivative order).
    """

    def __init__(self, spline, gridpoints: np.ndarray, sd: np.ndarray):
        self.spline = spline
        self.ss = np.asarray(gridpoints, dtype=float)
        self.sd = np.asarray(sd, dtype=float)
        ds = np.diff(self.ss)
        self.u = 0.5 * np.diff(self.sd ** 2) / ds
        self.ts = np.concatenate([[0.0], np.cumsum(2.0 * ds / (self.sd[:-1] + self.sd[1:]))])
        self.duration = float(self.ts[-1])

    def evaluate(self, t: np.ndarray):
        """(q, qd, qdd) at times t (arrays (len(t), n))."""
        idx = np.clip(np.searchsorted(self.ts, t, side='right') - 1, 0, len(self.u) - 1)
        dt = t - self.ts[idx]
        u = self.u[idx]
        v = self.sd[idx] + dt * u
        s = np.clip(self.ss[idx] + dt * self.sd[idx] + 0.5 * dt * dt * u, self.ss[0],
                    self.ss[-1])
        d1 = self.spline(s, 1)
        q = self.spline(s)
        qd = d1 * v[:, None]
        qdd = self.spline(s, 2) * (v * v)[:, None] + d1 * u[:, None]
        return q, qd, qdd


def _toppra_trajectory(path, max_velocity, max_acceleration, grid_points):
    from toppra.algorithm.algorithm import ParameterizationReturnCode
    ss = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    spline = _TOPPRA.SplineInterpolator(ss, path, bc_type='not-a-knot')
    pc_v, pc_a = _constraints(max_velocity, max_acceleration)
    grid = np.linspace(0.0, ss[-1], max(grid_points, 2))
    inst = _TOPPRA.algorithm.TOPPRA([pc_v, pc_a], spline, gridpoints=grid,
                                    solver_wrapper='seidel')
    inst.compute_parameterization(0.0, 0.0)
    data = inst.problem_data
    if data.return_code != ParameterizationReturnCode.Ok or data.sd_vec is None:
        return None
    return _ConstAccelTrajectory(spline, data.gridpoints, data.sd_vec)


def time_parameterize(path: np.ndarray, joint_names: Sequence[str], lower: np.ndarray,
                      upper: np.ndarray, max_velocity: np.ndarray,
                      max_acceleration: np.ndarray, sample_dt: float = 0.02,
                      check_dt: float = 0.004,
                      validate: Optional[Callable[[np.ndarray], bool]] = None,
                      method: str = 'toppra', resample_step: float = 0.15) -> TimedTrajectory:
    """Time a joint-space path so that it is inside every limit at every sample.

    Args:
        path: (N, n) waypoints (N >= 1), each inside [lower, upper].
        joint_names: n joint names.
        lower, upper: position limits (n,).
        max_velocity, max_acceleration: symmetric limits (n,), > 0.
        sample_dt: period of the output points (s).
        check_dt: period of the dense limit check (s).
        validate: optional callback(positions (M, n)) -> bool run on the densely sampled
            TOPP-RA positions (e.g. a collision check); False selects the fallback.
        method: 'toppra' or 'trapezoidal'.
        resample_step: when the spline through the waypoints is rejected, TOPP-RA is tried
            again on the polyline resampled every resample_step rad (0 = not).

    Returns:
        TimedTrajectory starting and ending at rest.

    Raises:
        TimeParameterizationError: bad shapes, non-finite values, non-positive limits, or a
            waypoint outside the position limits.
    """
    path = np.atleast_2d(np.asarray(path, dtype=float))
    n = len(joint_names)
    vmax = np.asarray(max_velocity, dtype=float)
    amax = np.asarray(max_acceleration, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    if path.ndim != 2 or path.shape[1] != n or len(path) < 1:
        raise TimeParameterizationError(f'path must be (N, {n}), got {path.shape}')
    if not np.all(np.isfinite(path)):
        raise TimeParameterizationError('path contains NaN or inf')
    if vmax.shape != (n,) or amax.shape != (n,) or np.any(vmax <= 0) or np.any(amax <= 0):
        raise TimeParameterizationError('velocity/acceleration limits must be (n,) and > 0')
    if np.any(path < lower - 1e-9) or np.any(path > upper + 1e-9):
        raise TimeParameterizationError('a waypoint is outside the joint position limits')
    path = _dedupe(path)
    if len(path) == 1:
        z = np.zeros((1, n))
        return TimedTrajectory(list(joint_names), np.zeros(1), path.copy(), z, z.copy(),
                               method='none')
    if method not in ('toppra', 'trapezoidal'):
        raise TimeParameterizationError(f"method must be 'toppra' or 'trapezoidal': {method}")
    if method == 'trapezoidal' or len(path) == 2:
        # A straight rest-to-rest segment: the synchronised trapezoid is already the
        # time-optimal profile under velocity and acceleration limits.
        return trapezoidal_trajectory(path, joint_names, vmax, amax, sample_dt)
    traj = _try_toppra(path, joint_names, lower, upper, vmax, amax, sample_dt, check_dt,
                       validate)
    if traj is None and resample_step > 0:
        # The spline through the waypoints cut a corner into an obstacle (or overshot a
        # limit): a spline through the polyline resampled every resample_step rad stays
        # within a fraction of that step of the checked straight segments, rounding each
        # corner instead of stopping there like the fallback.
        dense = resample_polyline(path, resample_step)
        if len(dense) > len(path):
            traj = _try_toppra(dense, joint_names, lower, upper, vmax, amax, sample_dt,
                               check_dt, validate)
    # The fallback is only sampled when it is used; its duration is known in closed form.
    if traj is None or traj.duration >= trapezoidal_duration(path, vmax, amax):
        return trapezoidal_trajectory(path, joint_names, vmax, amax, sample_dt)
    return traj


def _try_toppra(path, joint_names, lower, upper, vmax, amax, sample_dt, check_dt,
                validate) -> Optional[TimedTrajectory]:
    try:
        return _toppra_sampled(path, joint_names, lower, upper, vmax, amax, sample_dt,
                               check_dt, validate)
    except Exception as exc:  # toppra raises assorted errors on degenerate paths
        _LOG.debug('TOPP-RA failed (%s)', exc)
        return None


def _toppra_sampled(path, joint_names, lower, upper, vmax, amax, sample_dt, check_dt,
                    validate) -> Optional[TimedTrajectory]:
    grid = int(np.clip(2 * len(path), 50, 200))
    jt = _toppra_trajectory(path, vmax, amax, grid)
    if jt is None or not np.isfinite(jt.duration) or jt.duration <= 0:
        return None
    duration = jt.duration
    tc = np.append(np.arange(0.0, duration, check_dt), duration)
    qc, qdc, qddc = jt.evaluate(tc)
    overshoot = max(float(np.max(lower - qc)), float(np.max(qc - upper)), 0.0)
    if overshoot > POSITION_CLIP_TOLERANCE:
        return None
    if validate is not None and not validate(qc):
        return None
    r_v = float(np.max(np.abs(qdc) / vmax))
    r_a = float(np.max(np.abs(qddc) / amax))
    # Stretch so the worst dense sample sits 0.5 % inside its limit.
    scale = max(1.0, r_v / 0.995, np.sqrt(r_a / 0.995))
    for _ in range(_MAX_STRETCHES):
        t_out = np.append(np.arange(0.0, duration, sample_dt / scale), duration)
        q, qd, qdd = jt.evaluate(t_out)
        qd /= scale
        qdd /= scale ** 2
        qd[0] = qd[-1] = 0.0
        qdd[-1] = 0.0
        # The output samples are what the controller gets: they fall between the dense
        # check's times (where a constant-acceleration piece starts, the acceleration can be
        # a few % above every dense sample), so they are checked themselves.
        r_v = float(np.max(np.abs(qd) / vmax))
        r_a = float(np.max(np.abs(qdd) / amax))
        if r_v <= 1.0 and r_a <= 1.0:
            break
        scale *= max(1.0, r_v / 0.995, np.sqrt(r_a / 0.995))
    else:
        return None
    q[0], q[-1] = path[0], path[-1]
    np.clip(q, lower, upper, out=q)     # spline overshoot <= POSITION_CLIP_TOLERANCE
    return TimedTrajectory(list(joint_names), t_out * scale, q, qd, qdd, method='toppra',
                           time_scale=scale)
