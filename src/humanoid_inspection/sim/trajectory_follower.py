"""Joint trajectory following like ros2_control's joint_trajectory_controller (no ROS).

One `TrajectoryFollower` holds every controller of the robot (names and joints from
config/controllers.yaml). It turns the trajectories it is given into a position + velocity
set-point per joint at any time, which the simulation feeds to its PD actuators.

Behaviour (joint_trajectory_controller's, with the choices written down):
- A new trajectory replaces the one running on the same controller. It starts from the
  current state: the measured positions of its joints and the velocities of the current
  set-point (JTC's closed-loop default).
- `start_time` 0 means "start now"; a later start time holds the current set-point until then.
- Interpolation ('splines', the default): between two points that both carry velocities a
  cubic Hermite segment, otherwise linear (JTC uses linear when only positions are given).
  'linear' forces linear segments everywhere. After the last point the last position is held.
- An empty trajectory (no points) stops the controller: it holds its current set-point.
- A trajectory may name a subset of the controller's joints (the others hold their set-point).
- Rejected (a `SubmitResult` with accepted=False and the reason; the controller then stops and
  holds its current set-point): unknown controller, unknown joints or joints of another
  controller, duplicate joints, a point whose positions/velocities have the wrong length,
  NaN/inf values, negative or non-increasing time_from_start, positions outside the joint
  limits, velocities above the joint's velocity limit (given velocities and the interpolated
  path sampled along every segment), and a first point at time 0 that is farther than
  `jump_tolerance` from where the joint is (that would be a jump).
- The interpolated path between two points may overshoot a limit by a hair (a cubic between
  samples that run along the limit, e.g. a planner path with a joint at its bound): up to
  `INTERPOLATION_SLACK` x the joint's range that is accepted and the set-point is clipped into
  the limits (the joint stops at its limit, as a hardware controller clamps its command).
"""

import math
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

INTERPOLATIONS = ('splines', 'linear')
# Relative slack on the velocity limit and absolute slack on the position limits.
VELOCITY_SLACK = 0.02
POSITION_SLACK = 1e-4
# Overshoot of the interpolated path between points accepted (and clipped), as a fraction of
# the joint's range: 0.1 % of a 4 rad arm joint = 4 mrad, of a 5 cm finger travel = 0.05 mm.
INTERPOLATION_SLACK = 1e-3
# Points this far (fraction of the joint's range) outside the limits are clipped into them, not
# refused: the manipulation node's hold at a measured position a contact had pushed 0.01 rad past
# a wrist limit was refused and the arm could not be stopped or recovered.
WAYPOINT_CLIP = 0.01
# Samples per segment when checking the interpolated path against the limits.
SAMPLES_PER_SEGMENT = 16


@dataclass(frozen=True)
class JointLimit:
    """Limits of one joint (rad or m; rad/s or m/s). velocity may be math.inf."""

    lower: float
    upper: float
    velocity: float = math.inf


@dataclass(frozen=True)
class TrajectoryPoint:
    """One waypoint: time from the trajectory start (s), positions, optional velocities."""

    time_from_start: float
    positions: Tuple[float, ...]
    velocities: Tuple[float, ...] = ()


@dataclass(frozen=True)
class Trajectory:
    """A joint trajectory as trajectory_msgs/JointTrajectory carries it.

    start_time is in the follower's clock (simulation seconds); 0 means "start now".
    """

    joint_names: Tuple[str, ...]
    points: Tuple[TrajectoryPoint, ...]
    start_time: float = 0.0


@dataclass(frozen=True)
class SubmitResult:
    """What the follower did with a trajectory."""

    controller: str
    accepted: bool
    reason: str = ''


@dataclass
class _Segment:
    t0: float
    t1: float
    q0: np.ndarray
    q1: np.ndarray
    v0: Optional[np.ndarray]
    v1: Optional[np.ndarray]

    def sample(self, t: float) -> Tuple[np.ndarray, np.ndarray]:
        dt = self.t1 - self.t0
        if dt <= 0.0:
            return self.q1.copy(), np.zeros_like(self.q1)
        s = min(max((t - self.t0) / dt, 0.0), 1.0)
        if self.v0 is None or self.v1 is None:
            return self.q0 + s * (self.q1 - self.q0), (self.q1 - self.q0) / dt
        # Cubic Hermite with end velocities (scaled to the unit interval).
        h00 = 2 * s**3 - 3 * s**2 + 1
        h10 = s**3 - 2 * s**2 + s
        h01 = -2 * s**3 + 3 * s**2
        h11 = s**3 - s**2
        q = h00 * self.q0 + h10 * dt * self.v0 + h01 * self.q1 + h11 * dt * self.v1
        d00 = 6 * s**2 - 6 * s
        d10 = 3 * s**2 - 4 * s + 1
        d01 = -6 * s**2 + 6 * s
        d11 = 3 * s**2 - 2 * s
        v = (d00 * self.q0 + d10 * dt * self.v0 + d01 * self.q1 + d11 * dt * self.v1) / dt
        return q, v


@dataclass
class _ControllerState:
    name: str
    joints: Tuple[str, ...]
    index: np.ndarray                     # positions of these joints in the follower's arrays
    segments: List[_Segment] = field(default_factory=list)
    mask: Optional[np.ndarray] = None     # which of `joints` the running trajectory drives
    hold_q: Optional[np.ndarray] = None   # set-point when no trajectory runs
    hold_v: Optional[np.ndarray] = None
    status: str = 'idle'                  # idle | waiting | active | done | stopped | rejected


class TrajectoryFollower:
    """Set-points for every controller's joints from the trajectories submitted to them.

    Thread-safe: submit() may be called from a ROS callback while sample() runs in the
    physics loop.
    """

    def __init__(self, controllers: Mapping[str, Sequence[str]],
                 limits: Mapping[str, JointLimit], initial: Mapping[str, float],
                 interpolation: str = 'splines', jump_tolerance: float = 0.05):
        """Create the follower.

        Args:
            controllers: controller name -> its joint names.
            limits: joint name -> JointLimit (every controlled joint needs one).
            initial: joint name -> initial set-point (missing joints start at 0, clipped).
            interpolation: 'splines' (linear or cubic per segment) or 'linear'.
            jump_tolerance: largest distance (rad or m) a first point at time 0 may be from
                the joint's measured position or set-point.

        Raises:
            ValueError: a joint in two controllers, a joint without limits, bad interpolation.
        """
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got '{interpolation}'")
        self.interpolation = interpolation
        self.jump_tolerance = float(jump_tolerance)
        names: List[str] = []
        owner: Dict[str, str] = {}
        for ctrl, joints in controllers.items():
            for j in joints:
                if j in owner:
                    raise ValueError(f"joint '{j}' is in controllers '{owner[j]}' and '{ctrl}'")
                if j not in limits:
                    raise ValueError(f"joint '{j}' of controller '{ctrl}' has no limits")
                owner[j] = ctrl
                names.append(j)
        self.joint_names: Tuple[str, ...] = tuple(names)
        self._owner = owner
        self._slot = {j: i for i, j in enumerate(names)}
        self.lower = np.array([limits[j].lower for j in names], dtype=float)
        self.upper = np.array([limits[j].upper for j in names], dtype=float)
        self.vmax = np.array([limits[j].velocity for j in names], dtype=float)
        span = np.where(np.isfinite(self.upper - self.lower), self.upper - self.lower, 0.0)
        self.span = span
        self.path_slack = np.maximum(POSITION_SLACK, INTERPOLATION_SLACK * span)
        q0 = np.array([float(initial.get(j, 0.0)) for j in names], dtype=float)
        q0 = np.clip(q0, self.lower, self.upper)
        self._lock = threading.Lock()
        self._controllers: Dict[str, _ControllerState] = {}
        for ctrl, joints in controllers.items():
            idx = np.array([self._slot[j] for j in joints], dtype=int)
            self._controllers[ctrl] = _ControllerState(
                ctrl, tuple(joints), idx, hold_q=q0[idx].copy(), hold_v=np.zeros(len(idx)))

    @property
    def controllers(self) -> Tuple[str, ...]:
        """The controller names."""
        return tuple(self._controllers)

    def controller_joints(self, controller: str) -> Tuple[str, ...]:
        """Joint names of one controller."""
        return self._controllers[controller].joints

    def status(self, controller: str) -> str:
        """'idle', 'waiting', 'active', 'done', 'stopped' or 'rejected' (last event)."""
        with self._lock:
            return self._controllers[controller].status

    # ------------------------------------------------------------------ set-points
    def _sample_controller(self, c: _ControllerState, t: float) -> Tuple[np.ndarray, np.ndarray]:
        q = c.hold_q.copy()
        v = c.hold_v.copy()
        if c.segments:
            if t < c.segments[0].t0:
                return q, np.zeros_like(v)
            seg = c.segments[-1]
            for s in c.segments:
                if t <= s.t1:
                    seg = s
                    break
            sq, sv = seg.sample(t)
            if t > c.segments[-1].t1:
                sv = np.zeros_like(sv)
            q[c.mask] = sq
            v[c.mask] = sv
            v[~c.mask] = 0.0
        return q, v

    def sample(self, t: float) -> Tuple[np.ndarray, np.ndarray]:
        """Set-point positions and velocities of all joints (order: joint_names) at time t."""
        q = np.zeros(len(self.joint_names))
        v = np.zeros(len(self.joint_names))
        with self._lock:
            for c in self._controllers.values():
                cq, cv = self._sample_controller(c, t)
                q[c.index] = np.clip(cq, self.lower[c.index], self.upper[c.index])
                v[c.index] = cv
                if c.segments and t >= c.segments[0].t0 and c.status == 'waiting':
                    c.status = 'active'
                if c.segments and t > c.segments[-1].t1 and c.status == 'active':
                    self._freeze(c, t)
                    c.status = 'done'
        return q, v

    def _freeze(self, c: _ControllerState, t: float) -> None:
        """Stop the running trajectory of c: hold its set-point at time t (zero velocity)."""
        q, _ = self._sample_controller(c, t)
        c.hold_q = q
        c.hold_v = np.zeros_like(q)
        c.segments = []
        c.mask = None

    def hold(self, positions: Mapping[str, float], t: float = 0.0) -> None:
        """Drop every trajectory and hold the given positions (joints not given keep theirs)."""
        with self._lock:
            for c in self._controllers.values():
                self._freeze(c, t)
                for k, j in enumerate(c.joints):
                    if j in positions:
                        c.hold_q[k] = min(max(float(positions[j]), self.lower[c.index[k]]),
                                          self.upper[c.index[k]])
                c.status = 'idle'

    # ------------------------------------------------------------------ submission
    def submit(self, controller: str, trajectory: Trajectory, now: float,
               measured: Mapping[str, float]) -> SubmitResult:
        """Validate trajectory and make it the controller's running trajectory.

        Args:
            controller: the controller name.
            trajectory: the trajectory (start_time 0 = now).
            now: the current time of the follower's clock (s).
            measured: joint name -> measured position (joints missing use the set-point).

        Returns:
            SubmitResult; when not accepted the controller stops and holds its set-point.
        """
        if controller not in self._controllers:
            return SubmitResult(controller, False, f"unknown controller '{controller}' "
                                f"(known: {', '.join(self._controllers)})")
        with self._lock:
            c = self._controllers[controller]
            if not trajectory.points:
                self._freeze(c, now)
                c.status = 'stopped'
                return SubmitResult(controller, True, 'empty trajectory: stopped, holding')
            try:
                mask, segments = self._build(c, trajectory, now, measured)
            except ValueError as exc:
                self._freeze(c, now)
                c.status = 'rejected'
                return SubmitResult(controller, False, str(exc))
            # The set-point of the joints the trajectory leaves out is frozen now.
            self._freeze(c, now)
            c.segments = segments
            c.mask = mask
            c.status = 'waiting' if segments[0].t0 > now else 'active'
            return SubmitResult(controller, True, f'accepted {len(trajectory.points)} point(s)')

    def _build(self, c: _ControllerState, traj: Trajectory, now: float,
               measured: Mapping[str, float]) -> Tuple[np.ndarray, List[_Segment]]:
        names = list(traj.joint_names)
        if len(set(names)) != len(names):
            raise ValueError(f'duplicate joint names in {names}')
        unknown = [j for j in names if j not in self._slot]
        if unknown:
            raise ValueError(f"unknown joint(s) {', '.join(unknown)} for controller '{c.name}'")
        foreign = [j for j in names if self._owner[j] != c.name]
        if foreign:
            raise ValueError(f"joint(s) {', '.join(foreign)} do not belong to controller "
                             f"'{c.name}' (its joints: {', '.join(c.joints)})")
        if not names:
            raise ValueError('trajectory names no joints')
        local = [c.joints.index(j) for j in names]      # columns of the trajectory in c
        mask = np.zeros(len(c.joints), dtype=bool)
        mask[local] = True
        cols = np.nonzero(mask)[0]
        order = [names.index(c.joints[k]) for k in cols]  # trajectory columns in c order
        gidx = c.index[cols]
        n = len(names)

        start = now if traj.start_time <= 0.0 else float(traj.start_time)
        if not math.isfinite(start):
            raise ValueError(f'start time {traj.start_time} is not finite')
        times, qs, vs = [], [], []
        has_vel = True
        for i, p in enumerate(traj.points):
            t = float(p.time_from_start)
            if not math.isfinite(t) or t < 0.0:
                raise ValueError(f'point {i}: time_from_start {t} is negative or not finite')
            if times and t <= times[-1]:
                raise ValueError(f'point {i}: time_from_start {t} s is not after the previous '
                                 f'point ({times[-1]} s): times must increase strictly')
            if len(p.positions) != n:
                raise ValueError(f'point {i}: {len(p.positions)} positions for {n} joints')
            q = np.asarray(p.positions, dtype=float)[order]
            if not np.all(np.isfinite(q)):
                bad = [names[k] for k in range(n) if not math.isfinite(p.positions[k])]
                raise ValueError(f"point {i}: position of {', '.join(bad)} is NaN or infinite")
            v = None
            if len(p.velocities):
                if len(p.velocities) != n:
                    raise ValueError(
                        f'point {i}: {len(p.velocities)} velocities for {n} joints')
                v = np.asarray(p.velocities, dtype=float)[order]
                if not np.all(np.isfinite(v)):
                    raise ValueError(f'point {i}: a velocity is NaN or infinite')
                over = np.abs(v) > self.vmax[gidx] * (1 + VELOCITY_SLACK)
                if np.any(over):
                    k = int(np.argmax(over))
                    raise ValueError(
                        f"point {i}: velocity {v[k]:.3f} of joint '{c.joints[cols[k]]}' "
                        f'exceeds its limit {self.vmax[gidx][k]:.3f}')
            else:
                has_vel = False
            # a point a hair outside (a hold at a measured position that contact pushed past
            # the limit) is clipped; further out it is refused
            clip = WAYPOINT_CLIP * self.span[gidx]
            low = q < self.lower[gidx] - np.maximum(POSITION_SLACK, clip)
            high = q > self.upper[gidx] + np.maximum(POSITION_SLACK, clip)
            q = np.clip(q, self.lower[gidx], self.upper[gidx])
            if np.any(low | high):
                k = int(np.argmax(low | high))
                raise ValueError(
                    f"point {i}: position {q[k]:.4f} of joint '{c.joints[cols[k]]}' is outside "
                    f'its limits [{self.lower[gidx][k]:.4f}, {self.upper[gidx][k]:.4f}]')
            times.append(t)
            qs.append(q)
            vs.append(v)

        cur_q, cur_v = self._sample_controller(c, now)
        set_q = cur_q[cols]
        meas_q = np.array([float(measured.get(c.joints[k], set_q[m]))
                           for m, k in enumerate(cols)])
        meas_q = np.where(np.isfinite(meas_q), meas_q, set_q)
        # Start from the measured position, clipped into the limits (gravity or contact can
        # push a joint a hair outside them).
        q_start = np.clip(meas_q, self.lower[gidx], self.upper[gidx])
        v_start = cur_v[cols]
        if times[0] == 0.0:
            dist = np.minimum(np.abs(qs[0] - meas_q), np.abs(qs[0] - set_q))
            if np.any(dist > self.jump_tolerance):
                k = int(np.argmax(dist))
                raise ValueError(
                    f"point 0 at time 0: joint '{c.joints[cols[k]]}' would jump {dist[k]:.3f} "
                    f'from its current position (tolerance {self.jump_tolerance})')
        splines = self.interpolation == 'splines'
        segments: List[_Segment] = []
        prev_t, prev_q, prev_v = 0.0, q_start, v_start
        for i, (t, q, v) in enumerate(zip(times, qs, vs)):
            cubic = splines and has_vel and v is not None
            if t == 0.0:
                segments.append(_Segment(start, start, q, q, None, None))
            else:
                seg = _Segment(start + prev_t, start + t, prev_q, q,
                               prev_v if cubic else None, v if cubic else None)
                self._check_segment(seg, c, cols, i)
                segments.append(seg)
            prev_t, prev_q = t, q
            prev_v = v if v is not None else np.zeros_like(q)
        return mask, segments

    def _check_segment(self, seg: _Segment, c: _ControllerState, cols: np.ndarray,
                       point: int) -> None:
        gidx = c.index[cols]
        vlim = self.vmax[gidx] * (1 + VELOCITY_SLACK) + 1e-9
        for t in np.linspace(seg.t0, seg.t1, SAMPLES_PER_SEGMENT + 1):
            q, v = seg.sample(float(t))
            over = np.abs(v) > vlim
            if np.any(over):
                k = int(np.argmax(over))
                raise ValueError(
                    f"segment to point {point} ({seg.t1 - seg.t0:.3f} s long): joint "
                    f"'{c.joints[cols[k]]}' needs {abs(v[k]):.3f}, over its velocity limit "
                    f'{self.vmax[gidx][k]:.3f}')
            slack = self.path_slack[gidx]
            out = (q < self.lower[gidx] - slack) | (q > self.upper[gidx] + slack)
            if np.any(out):
                k = int(np.argmax(out))
                raise ValueError(
                    f"segment to point {point}: the interpolated path leaves the limits of joint "
                    f"'{c.joints[cols[k]]}' ({q[k]:.4f} outside "
                    f'[{self.lower[gidx][k]:.4f}, {self.upper[gidx][k]:.4f}])')
