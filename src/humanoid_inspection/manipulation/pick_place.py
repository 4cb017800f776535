"""Pick-and-place task planning: from ranked grasp candidates and a place pose to timed segments.

Sequence (segment names = the PickPlace feedback phases):

=============  ===========================================================================
``pre_grasp``  joint-space plan (OMPL) from the start to the pre-grasp pose, ``pre_grasp_
               distance_m`` back along the approach axis; the gripper opens on the way
``approach``   straight tool line along the approach axis to the grasp pose
``close``      gripper closes (commanded fully closed: the part stops the fingers)
``lift``       straight line up (+z of base_link) by ``lift_height_m``, part attached
``transfer``   joint-space plan to the pre-place pose (``place_approach_height_m`` above)
``place``      straight line down to the place pose
``open``       gripper opens, part detached
``retreat``    straight line back along the approach axis (or up) by ``retreat_distance_m``
=============  ===========================================================================

Planning runs backwards where that keeps the straight segments exact: the grasp IK is solved
first (collision-aware), the approach is the Cartesian line from the grasp back to the pre-grasp
(reversed), the place descent likewise from the place pose up. The hand (and the carried part)
may touch the surface the part rests on during approach / lift / place / retreat (allowed pairs
with the supporting box found under the grasp and place points); the transfer is checked against
everything. A 180-degree roll about the approach axis gives the same grasp for the symmetric
parallel gripper, so it is tried when the given roll fails (the place pose is rolled the same
way so the part keeps its orientation).

Arm choice: the requested arm, or both (nearest shoulder first); per arm the group without the
waist first, then with it (``use_waist``). The first candidate (in rank order) that plans wins.

Error codes (:class:`ErrorCode`) are the ``PickPlace.Result`` constants of
interfaces/action/PickPlace.action.
"""

import enum
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.manipulation.collision import (ATTACHED_PREFIX, AttachedObject,
                                                        CollisionChecker, Obstacle)
from humanoid_inspection.manipulation.ik import IKStatus, check_target
from humanoid_inspection.manipulation.planner import MotionPlanner, PathResult, PlanStatus
from humanoid_inspection.manipulation.robot_model import SIDES, PlanningGroup, RobotModel
from humanoid_inspection.manipulation.scene import keepout_zones_at, support_obstacles
from humanoid_inspection.manipulation.time_parameterization import (TimedTrajectory,
                                                                    _trapezoid_sample)


FLOAT32_SLACK_M = 1e-6    # openings travel as float32 (Affordance.gripper_opening_m)


class ErrorCode(enum.IntEnum):
    """Result codes; values equal the PickPlace.Result constants (PickPlace.action)."""

    SUCCESS = 0
    INVALID_GOAL = 1          # NaN / non-normalised pose, unknown frame or arm, no candidates
    UNREACHABLE = 2           # no IK solution (or straight segment) for any candidate
    START_IN_COLLISION = 3
    GOAL_IN_COLLISION = 4     # every IK solution / straight segment collides
    PLANNING_FAILED = 5       # no collision-free joint path within the time budget
    EXECUTION_FAILED = 6      # joint_states did not reach the target within tolerance/timeout
    CANCELED = 7
    ESTOP = 8
    GRASP_FAILED = 9          # the gripper closed on nothing
    START_OUT_OF_LIMITS = 10
    BUSY = 11


PHASES = ('plan', 'pre_grasp', 'approach', 'close', 'lift', 'transfer', 'place', 'open',
          'retreat')

_STATUS_TO_CODE = {
    PlanStatus.SUCCESS: ErrorCode.SUCCESS,
    PlanStatus.INVALID_INPUT: ErrorCode.INVALID_GOAL,
    PlanStatus.START_OUT_OF_LIMITS: ErrorCode.START_OUT_OF_LIMITS,
    PlanStatus.START_IN_COLLISION: ErrorCode.START_IN_COLLISION,
    PlanStatus.GOAL_OUT_OF_LIMITS: ErrorCode.UNREACHABLE,
    PlanStatus.GOAL_IN_COLLISION: ErrorCode.GOAL_IN_COLLISION,
    PlanStatus.UNREACHABLE: ErrorCode.UNREACHABLE,
    PlanStatus.PLANNING_FAILED: ErrorCode.PLANNING_FAILED,
}
# When every candidate fails, the reported code is the one that got furthest.
_FAILURE_RANK = {ErrorCode.UNREACHABLE: 1, ErrorCode.GOAL_IN_COLLISION: 2,
                 ErrorCode.START_IN_COLLISION: 2, ErrorCode.PLANNING_FAILED: 3}


@dataclass(frozen=True)
class GraspCandidate:
    """A grasp: tool pose at the grasp (base frame, x = approach axis) and finger opening.

    Attributes:
        pose: 4x4 pose of <side>_tcp at the grasp.
        opening_m: finger opening the part needs (both fingers, m).
        score: ranking score (informational; candidates are tried in list order).
    """

    pose: np.ndarray = field(compare=False)
    opening_m: float
    score: float = 0.0


@dataclass(frozen=True)
class CarriedPart:
    """The part's box as seen before the grasp, carried rigidly with the hand once grasped.

    Attributes:
        pose: 4x4 pose of the box centre in the base frame (at the grasp; z up for a part
            lying on a surface).
        size: full extents along the box's own x, y, z axes (m).
    """

    pose: np.ndarray = field(compare=False)
    size: Tuple[float, float, float]

    def validate(self) -> Optional[str]:
        """None when usable, else the reason."""
        pose = np.asarray(self.pose, dtype=float)
        size = np.asarray(self.size, dtype=float)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            return 'carried part pose must be a finite 4x4 transform'
        if not np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-4):
            return 'carried part orientation is not a rotation (non-normalised quaternion?)'
        if size.shape != (3,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            return f'carried part size must be 3 positive extents, got {tuple(self.size)}'
        if np.any(size > 1.0):
            return f'carried part size {tuple(self.size)} m is larger than any cell part'
        return None


@dataclass
class PickPlaceConfig:
    """Tunables of the pick-and-place sequence (config/manipulation.yaml mirrors them)."""

    pre_grasp_distance_m: float = 0.10
    lift_height_m: float = 0.10
    place_approach_height_m: float = 0.10
    retreat_distance_m: float = 0.08
    open_margin_m: float = 0.02           # opened this much wider than the part needs
    release_margin_m: float = 0.01        # at the place, opened at least this much wider than the
                                          # candidate opening (the fingers may have closed on the
                                          # part at almost that opening: opening back to it only
                                          # does not let go)
    max_opening_m: float = 0.10           # gripper.max_opening_m of cell.yaml
    finger_position_per_opening: float = 0.5   # finger joint travel per metre of opening
    part_depth_m: float = 0.04            # carried-part box along the approach axis
    part_height_m: float = 0.04           # carried-part box along the tcp z axis
    part_min_width_m: float = 0.0         # carried-part box along the closing axis: at least this
                                          # (a part held by a wall reaches beyond the opening)
    # With a CarriedPart (the part's box from perception) the carried part is that box, each
    # extent shrunk by twice this (the box of a round part has corners the part has not);
    # without one, the part_* box above, centred on the TCP.
    carried_part_shrink_m: float = 0.005
    use_waist: str = 'auto'               # 'never' | 'auto' (arm first, then arm+waist) | 'always'
    try_flipped_grasp: bool = True
    joint_plan_timeout_s: float = 0.5
    total_timeout_s: float = 5.0
    ik_timeout_s: float = 0.03
    # IK attempts (seed + random restarts, 30 otherwise) of a group another group is tried
    # after (use_waist auto: the arm alone, then arm + waist). On the bench its successes take
    # 2 attempts median, 19 at the 99th percentile; a pose it cannot reach used the whole IK
    # budget (30 attempts / ik_timeout_s) before the waist group got its turn. A count, not a
    # time, so a loaded machine does not push more plans onto the slower waist.
    ik_attempts_first_group: int = 20
    # OMPL budget per joint-space segment of such a first group: a transfer the arm alone
    # cannot make used the whole joint_plan_timeout_s (1.5 s in the node) before the waist group
    # planned it in the demo.
    joint_plan_timeout_first_group_s: float = 0.5
    ik_solutions: int = 4                 # IK solutions tried per grasp / place pose
    cartesian_step_m: float = 0.01
    velocity_scale: float = 1.0
    acceleration_scale: float = 1.0
    sample_dt: float = 0.02
    start_tolerance: float = 0.01         # start-state limit violations clipped up to this

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in ('pre_grasp_distance_m', 'lift_height_m', 'place_approach_height_m',
                     'retreat_distance_m', 'max_opening_m', 'finger_position_per_opening',
                     'part_depth_m', 'part_height_m', 'joint_plan_timeout_s', 'total_timeout_s',
                     'ik_timeout_s', 'ik_attempts_first_group',
                     'joint_plan_timeout_first_group_s', 'cartesian_step_m', 'sample_dt'):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f'pick_place config {name} must be > 0, got {value}')
        for name in ('velocity_scale', 'acceleration_scale'):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f'pick_place config {name} must be in (0, 1], got {value}')
        if self.use_waist not in ('never', 'auto', 'always'):
            raise ValueError(f"use_waist must be never/auto/always, got {self.use_waist!r}")


@dataclass
class Segment:
    """One timed segment of the plan.

    Attributes:
        name: phase name (see PHASES).
        trajectory: the timed trajectory (its joint_names may span several controllers).
        group: planning group of the arm motion ('' for gripper-only segments).
        side: 'left' / 'right'.
        gripper_target: for 'close' / 'open': the commanded finger position (m).
        release_floor: for 'open': the finger position the hand came in with (candidate
            opening + open_margin_m), the least the release opens (see
            :meth:`PickPlacePlanner.fit_release`).
    """

    name: str
    trajectory: TimedTrajectory
    group: str
    side: str
    gripper_target: Optional[float] = None
    release_floor: Optional[float] = None


@dataclass
class PickPlacePlan:
    """Result of :meth:`PickPlacePlanner.plan`."""

    error_code: ErrorCode
    message: str
    arm: str = ''
    group: str = ''
    grasp_index: int = -1
    segments: List[Segment] = field(default_factory=list)
    planning_time_s: float = 0.0
    grasped_finger_position: float = 0.0   # finger position expected with the part held
    attempts: int = 0

    @property
    def success(self) -> bool:
        """True when error_code is SUCCESS."""
        return self.error_code is ErrorCode.SUCCESS

    @property
    def duration(self) -> float:
        """Sum of the segment durations (s)."""
        return float(sum(s.trajectory.duration for s in self.segments))


class _Failure(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def rotation_about_x(angle: float) -> np.ndarray:
    """4x4 rotation about the local x axis."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.eye(4)
    out[1:3, 1:3] = [[c, -s], [s, c]]
    return out


def grasp_from_axis(position: Sequence[float], approach: Sequence[float],
                    closing: Optional[Sequence[float]] = None) -> np.ndarray:
    """Tool pose with x = approach axis, y = finger closing direction (orthogonalised).

    Args:
        position: grasp point (base frame, m).
        approach: approach direction (unit or not).
        closing: desired closing direction; default: the horizontal direction orthogonal
            to approach (or base y for a horizontal approach).

    Returns:
        4x4 pose.

    Raises:
        ValueError: zero or non-finite vectors.
    """
    x = np.asarray(approach, dtype=float)
    p = np.asarray(position, dtype=float)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(p))) or np.linalg.norm(x) < 1e-9:
        raise ValueError('approach and position must be finite, approach non-zero')
    x = x / np.linalg.norm(x)
    y = np.asarray(closing, dtype=float) if closing is not None else np.cross([0, 0, 1.0], x)
    if np.linalg.norm(y - (y @ x) * x) < 1e-6:
        y = np.array([0.0, 1.0, 0.0])
    y = y - (y @ x) * x
    y /= np.linalg.norm(y)
    out = np.eye(4)
    out[:3, :3] = np.column_stack([x, y, np.cross(x, y)])
    out[:3, 3] = p
    return out


def scalar_profile(f0: float, f1: float, vmax: float, amax: float,
                   times: np.ndarray, duration: Optional[float] = None):
    """Rest-to-rest trapezoid f0 -> f1, optionally stretched to duration; sampled at times.

    Returns:
        (positions, velocities, accelerations, duration) arrays over times.
    """
    length = abs(f1 - f0)
    sign = 1.0 if f1 >= f0 else -1.0
    if length < 1e-12:
        z = np.zeros_like(times)
        return np.full_like(times, f0), z, z.copy(), 0.0
    _, _, _, t_opt = _trapezoid_sample(np.zeros(1), length, vmax, amax)
    total = t_opt if duration is None else max(duration, t_opt)
    k = t_opt / total
    s, sd, sdd, _ = _trapezoid_sample(np.clip(times * k, 0.0, t_opt), length, vmax, amax)
    return f0 + sign * s, sign * sd * k, sign * sdd * k * k, total


class PickPlacePlanner:
    """Plans pick-and-place sequences for the humanoid's arms in the cell.

    Args:
        robot: the RobotModel (with gripper_joints).
        checker: the CollisionChecker holding the cell's obstacles.
        obstacles: the same obstacles (to find the support surfaces).
        config: PickPlaceConfig.
        seed: random seed (IK restarts, OMPL).
        planner: OMPL geometric planner name.
        resolution: collision-check step along joint motions (rad).
    """

    def __init__(self, robot: RobotModel, checker: CollisionChecker,
                 obstacles: Sequence[Obstacle] = (), config: Optional[PickPlaceConfig] = None,
                 seed: Optional[int] = 0, planner: str = 'RRTConnect',
                 resolution: float = 0.03):
        self.robot = robot
        self.checker = checker
        self.obstacles = list(obstacles)
        self._supports_at: Dict[tuple, List[str]] = {}
        self.config = config or PickPlaceConfig()
        self.config.validate()
        self.planner = MotionPlanner(robot, checker, resolution=resolution, planner=planner,
                                     seed=seed)

    # ------------------------------------------------------------------ helpers
    def finger_joints(self, side: str) -> List[str]:
        """Finger joints of side (first = the commanded one)."""
        return list(self.robot.gripper_joints.get(side, []))

    def finger_position(self, opening: float, side: str) -> float:
        """Commanded finger joint value for an opening, clipped to the joint's limits."""
        j = self.robot.joint_index(self.finger_joints(side)[0])
        return float(np.clip(opening * self.config.finger_position_per_opening,
                             self.robot.lower[j], self.robot.upper[j]))

    def closed_finger_position(self, side: str) -> float:
        """The fully closed finger position (lower limit)."""
        return float(self.robot.lower[self.robot.joint_index(self.finger_joints(side)[0])])

    def _with_fingers(self, q: np.ndarray, side: str, value: float) -> np.ndarray:
        q = q.copy()
        for name in self.finger_joints(side):
            i = self.robot.joint_index(name)
            q[i] = np.clip(value, self.robot.lower[i], self.robot.upper[i])
        return q

    def _groups_for(self, side: str) -> List[PlanningGroup]:
        names = {'never': [f'{side}_arm'], 'always': [f'{side}_arm_waist'],
                 'auto': [f'{side}_arm', f'{side}_arm_waist']}[self.config.use_waist]
        return [self.robot.groups[n] for n in names if n in self.robot.groups]

    def _arm_order(self, arm: str, q0: np.ndarray, grasp: np.ndarray,
                   place: np.ndarray) -> List[str]:
        if arm:
            return [arm]
        dist = {}
        for side in SIDES:
            group = self.robot.groups.get(f'{side}_arm')
            if group is None:
                continue
            # pinocchio names each joint's frame after the joint
            shoulder = self.robot.frame_pose(q0, group.joint_names[0])[:3, 3]
            dist[side] = (np.linalg.norm(grasp[:3, 3] - shoulder)
                          + np.linalg.norm(place[:3, 3] - shoulder))
        return sorted(dist, key=dist.get)

    def _allowed(self, side: str, point: np.ndarray, with_part: bool) -> Tuple[tuple, ...]:
        # the surface under the point, and a keep-out zone over it (the table's, where the
        # parts wait): the straight lines at a grasp / place point may touch or enter them.
        # Looked up once per point (a 4x4 inverse per obstacle: ~0.4 ms; 8 calls per query).
        key = tuple(np.round(np.asarray(point, dtype=float), 9))
        supports = self._supports_at.get(key)
        if supports is None:
            supports = support_obstacles(self.obstacles, point)[:1] + \
                keepout_zones_at(self.obstacles, point)
            if len(self._supports_at) > 256:
                self._supports_at.clear()
            self._supports_at[key] = supports
        names = list(self.checker.hand_links(side))
        if with_part:
            names.append(ATTACHED_PREFIX + side)
        return tuple((a, b) for a in names for b in supports)

    def _time(self, group, path, q_full, allowed) -> TimedTrajectory:
        return self.planner.time_parameterize(
            group, path, q_full, allowed, sample_dt=self.config.sample_dt,
            velocity_scale=self.config.velocity_scale,
            acceleration_scale=self.config.acceleration_scale)

    def _finger_limits(self, side: str) -> Tuple[float, float]:
        j = self.robot.joint_index(self.finger_joints(side)[0])
        return (float(self.robot.max_velocity[j]) * self.config.velocity_scale,
                float(self.robot.max_acceleration[j]) * self.config.acceleration_scale)

    def fit_release(self, segment: Segment, measured: float) -> Segment:
        """The 'open' segment re-aimed at the finger position measured just before it.

        The plan opens to the candidate opening plus ``release_margin_m``, since a part
        gripped at almost the candidate opening is not let go by opening back to it. A part
        gripped well inside the opening (a hub boss held at 31 mm of a 44 mm candidate) needs
        no more than the candidate opening, and opening wider pushed the fingers against the
        hub's rim around the boss: the retreat then lifted the hub back out of the fixture.
        So the release opens to the measured position plus the margin, at least as wide as the
        hand came in (``release_floor``), at most to the planned target.

        Args:
            segment: the plan's 'open' segment.
            measured: the finger joint position measured with the part still held (m).

        Returns:
            The segment to execute (the same one when nothing changes or it is not 'open').
        """
        if segment.name != 'open' or segment.release_floor is None \
                or segment.gripper_target is None or not np.isfinite(measured):
            return segment
        margin = self.config.release_margin_m * self.config.finger_position_per_opening
        target = min(segment.gripper_target, max(segment.release_floor, measured + margin))
        if abs(target - segment.gripper_target) < 1e-6:
            return segment
        return Segment('open', self.gripper_trajectory(segment.side, measured, target), '',
                       segment.side, target, release_floor=segment.release_floor)

    def gripper_trajectory(self, side: str, f0: float, f1: float) -> TimedTrajectory:
        """Gripper-only rest-to-rest trajectory of the commanded finger joint."""
        vmax, amax = self._finger_limits(side)
        _, _, _, total = scalar_profile(f0, f1, vmax, amax, np.zeros(1))
        n = max(2, int(np.ceil(total / self.config.sample_dt)) + 1)
        times = np.linspace(0.0, max(total, 1e-3), n)
        p, v, a, _ = scalar_profile(f0, f1, vmax, amax, times, max(total, 1e-3))
        p[-1], v[-1], a[-1] = f1, 0.0, 0.0
        return TimedTrajectory([self.finger_joints(side)[0]], times, p[:, None], v[:, None],
                               a[:, None], method='trapezoidal')

    def _with_parallel_finger(self, traj: TimedTrajectory, side: str, f0: float,
                              f1: float) -> TimedTrajectory:
        """Add the finger joint moving f0 -> f1 during traj (stretching traj if needed)."""
        vmax, amax = self._finger_limits(side)
        _, _, _, t_finger = scalar_profile(f0, f1, vmax, amax, np.zeros(1))
        times, pos, vel, acc = traj.times, traj.positions, traj.velocities, traj.accelerations
        if traj.duration < t_finger:
            if len(times) < 2:      # the arm does not move: hold it
                n = max(2, int(np.ceil(t_finger / self.config.sample_dt)) + 1)
                times = np.linspace(0.0, t_finger, n)
                pos = np.repeat(pos[:1], n, axis=0)
                vel = np.zeros_like(pos)
                acc = np.zeros_like(pos)
            else:
                k = t_finger / traj.duration
                times, vel, acc = times * k, vel / k, acc / (k * k)
        p, v, a, _ = scalar_profile(f0, f1, vmax, amax, times, float(times[-1]))
        p[-1], v[-1], a[-1] = f1, 0.0, 0.0
        return TimedTrajectory(traj.joint_names + [self.finger_joints(side)[0]], times,
                               np.column_stack([pos, p]), np.column_stack([vel, v]),
                               np.column_stack([acc, a]), method=traj.method,
                               time_scale=traj.time_scale)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def validate_goal(grasps: Sequence[GraspCandidate], place_pose: np.ndarray, arm: str,
                      max_opening: float) -> Optional[str]:
        """Why a goal is invalid (None if valid)."""
        if arm not in ('', 'left', 'right'):
            return f"arm must be 'left', 'right' or '' (got {arm!r})"
        if not grasps:
            return 'no grasp candidates'
        for k, g in enumerate(grasps):
            why = check_target(g.pose)
            if why is not None:
                return f'grasp candidate {k}: {why}'
            # the message field is float32: the maximum opening itself arrives 1.5e-9 m over
            if not np.isfinite(g.opening_m) or g.opening_m <= 0 or \
                    g.opening_m > max_opening + FLOAT32_SLACK_M:
                return (f'grasp candidate {k}: opening {g.opening_m} m outside (0, '
                        f'{max_opening}] m')
        why = check_target(place_pose)
        if why is not None:
            return f'place pose: {why}'
        return None

    def check_start(self, q0: np.ndarray, sides: Sequence[str]
                    ) -> Tuple[Optional[_Failure], np.ndarray]:
        """Start-state checks: (failure or None, start clipped into limits)."""
        q0 = np.asarray(q0, dtype=float)
        if q0.shape != (self.robot.nq,) or not np.all(np.isfinite(q0)):
            return _Failure(ErrorCode.INVALID_GOAL,
                            f'start state must be {self.robot.nq} finite joint values'), q0
        joints = set(self.robot.joint_names) - set(self.checker_locked_joints())
        tol = self.config.start_tolerance
        bad = self.robot.limit_violations(q0, sorted(joints), tol=tol)
        if bad:
            return _Failure(ErrorCode.START_OUT_OF_LIMITS,
                            f'start state outside joint limits (> {tol}): {bad}'), q0
        q0 = np.clip(q0, self.robot.lower, self.robot.upper)
        pairs = self.checker.colliding_pairs(q0)
        if pairs:
            return _Failure(ErrorCode.START_IN_COLLISION, f'start state in collision: {pairs}'), q0
        return None, q0

    def checker_locked_joints(self) -> List[str]:
        """Joints the checker treats as locked (not limit-checked at the start)."""
        model = self.robot.model
        return [model.names[j] for j in getattr(self.checker, '_locked', set())]

    # ------------------------------------------------------------------ planning
    def plan(self, q_start: np.ndarray, grasps: Sequence[GraspCandidate],
             place_pose: np.ndarray, arm: str = '',
             carried: Optional[CarriedPart] = None) -> PickPlacePlan:
        """Plan a pick-and-place.

        Args:
            q_start: full start configuration (from joint_states).
            grasps: ranked candidates (base frame).
            place_pose: 4x4 tool pose at release (base frame).
            arm: 'left', 'right' or '' (choose).
            carried: the part's box (base frame, before the grasp). Once grasped it moves with
                the hand, and the lift, transfer and place keep the whole part clear of the
                cell; None = a small box at the TCP (config part_*), which misses a part held
                by its rim hanging beside the gripper.

        Returns:
            PickPlacePlan (error_code SUCCESS with the segments, or the reason).
        """
        t0 = time.perf_counter()
        why = self.validate_goal(grasps, place_pose, arm, self.config.max_opening_m)
        if why is None and carried is not None:
            why = carried.validate()
        if why is not None:
            return PickPlacePlan(ErrorCode.INVALID_GOAL, why,
                                 planning_time_s=time.perf_counter() - t0)
        failure, q0 = self.check_start(q_start, [arm] if arm else SIDES)
        if failure is not None:
            return PickPlacePlan(failure.code, failure.message,
                                 planning_time_s=time.perf_counter() - t0)
        deadline = t0 + self.config.total_timeout_s
        failures: List[Tuple[ErrorCode, str]] = []
        attempts = 0
        rolls = (0.0, np.pi) if self.config.try_flipped_grasp else (0.0,)
        for index, grasp in enumerate(grasps):
            for roll in rolls:
                g_pose = grasp.pose @ rotation_about_x(roll)
                p_pose = np.asarray(place_pose, dtype=float) @ rotation_about_x(roll)
                for side in self._arm_order(arm, q0, g_pose, p_pose):
                    groups = self._groups_for(side)
                    for group_index, group in enumerate(groups):
                        # the arm alone is limited while the arm + waist follows it
                        limited = group_index + 1 < len(groups)
                        if time.perf_counter() > deadline:
                            failures.append((ErrorCode.PLANNING_FAILED,
                                             f'time budget {self.config.total_timeout_s} s '
                                             'exhausted'))
                            return self._failed(failures, t0, attempts)
                        attempts += 1
                        try:
                            segments, grasped = self._plan_one(
                                group, side, q0, g_pose, grasp.opening_m, p_pose, deadline,
                                self._carried_object(carried, g_pose, grasp.opening_m),
                                limited)
                        except _Failure as exc:
                            failures.append((exc.code, f'candidate {index} roll '
                                             f'{np.degrees(roll):.0f} {group.name}: '
                                             f'{exc.message}'))
                            continue
                        elapsed = time.perf_counter() - t0
                        # the failed attempts before it say where planning time went
                        tried = f'; after {len(failures)} failed: ' + '; '.join(
                            m[:80] for _, m in failures[:3]) if failures else ''
                        return PickPlacePlan(
                            ErrorCode.SUCCESS, f'planned with {group.name}, candidate {index} '
                            f'in {elapsed:.2f} s{tried}',
                            side, group.name, index, segments, elapsed, grasped, attempts)
        return self._failed(failures, t0, attempts)

    @staticmethod
    def _failed(failures, t0, attempts) -> PickPlacePlan:
        code = max((c for c, _ in failures), key=lambda c: _FAILURE_RANK.get(c, 0),
                   default=ErrorCode.PLANNING_FAILED)
        detail = '; '.join(m for c, m in failures if c == code)[:600]
        return PickPlacePlan(code, detail or 'no candidate planned',
                             planning_time_s=time.perf_counter() - t0, attempts=attempts)

    def _check(self, res: PathResult, what: str) -> np.ndarray:
        if res.success:
            return res.path
        code = _STATUS_TO_CODE.get(res.status, ErrorCode.PLANNING_FAILED)
        if code is ErrorCode.START_IN_COLLISION:
            code = ErrorCode.GOAL_IN_COLLISION   # a later segment's start = an earlier goal
        raise _Failure(code, f'{what}: {res.message}')

    def _cartesian(self, group, q_from, target, allowed, what) -> np.ndarray:
        res = self.planner.cartesian_path(group, q_from, target, allowed,
                                          step=self.config.cartesian_step_m,
                                          ik_timeout_s=self.config.ik_timeout_s)
        if not res.success:
            code = _STATUS_TO_CODE.get(res.status, ErrorCode.UNREACHABLE)
            if code is ErrorCode.START_IN_COLLISION:
                # a line starts at a grasp / place pose, not at the robot's start state (that
                # is checked first): e.g. the part held at the grasp touching the robot
                code = ErrorCode.GOAL_IN_COLLISION
            raise _Failure(code, f'{what}: {res.message} (fraction {res.fraction:.2f})')
        return res.path

    def _ik(self, group, q_seed, target, allowed, what, max_attempts=None) -> np.ndarray:
        ik = self.planner.solve_ik(group, q_seed, target, allowed, self.config.ik_timeout_s,
                                   **({'max_attempts': max_attempts} if max_attempts else {}))
        if ik.success:
            return ik.q_full
        code = ErrorCode.GOAL_IN_COLLISION if ik.status is IKStatus.IN_COLLISION \
            else ErrorCode.UNREACHABLE
        raise _Failure(code, f'{what}: IK {ik.status.value}: {ik.message}')

    def _ik_and_line(self, group, q_seed, target, line_target, allowed, what,
                     ik_attempts=None) -> Tuple[np.ndarray, np.ndarray]:
        """IK at target plus the straight line from target to line_target.

        Tries up to ``config.ik_solutions`` IK solutions (the first seeded by q_seed, the
        others by random configurations) until the line is feasible.

        Returns:
            (full configuration at target, (N, dof) path target -> line_target).
        """
        failure = None
        seed = q_seed
        for k in range(self.config.ik_solutions):
            if k:
                seed = self.robot.with_group(q_seed, group, self.planner.ik_solver(
                    group).random_configuration(self.planner.rng))
            try:
                q_target = self._ik(group, seed, target, allowed, what, ik_attempts)
            except _Failure as exc:
                # IK already restarted from random seeds: another seed will not do better.
                if failure is None or _FAILURE_RANK.get(exc.code, 0) > _FAILURE_RANK.get(
                        failure.code, 0):
                    failure = exc
                break
            try:
                return q_target, self._cartesian(group, q_target, line_target, allowed, what)
            except _Failure as exc:
                if failure is None or _FAILURE_RANK.get(exc.code, 0) > _FAILURE_RANK.get(
                        failure.code, 0):
                    failure = exc
        raise failure

    def _carried_object(self, carried: Optional[CarriedPart], grasp: np.ndarray,
                        opening: float) -> AttachedObject:
        """The collision object the hand carries after grasping at grasp (TCP frame)."""
        cfg = self.config
        if carried is None:
            return AttachedObject('box', (cfg.part_depth_m,
                                          max(opening, 0.005, cfg.part_min_width_m),
                                          cfg.part_height_m))
        dims = np.maximum(np.asarray(carried.size, float) - 2 * cfg.carried_part_shrink_m,
                          0.005)
        offset = np.linalg.solve(np.asarray(grasp, float), np.asarray(carried.pose, float))
        return AttachedObject('box', tuple(float(d) for d in dims), offset)

    def _plan_one(self, group: PlanningGroup, side: str, q0: np.ndarray, grasp: np.ndarray,
                  opening: float, place: np.ndarray, deadline: float, part: AttachedObject,
                  limited: bool = False):
        """Plan one candidate with one group; limited: a wider group is tried after this one
        (``ik_attempts_first_group`` IK attempts, ``joint_plan_timeout_first_group_s``)."""
        cfg = self.config
        robot = self.robot
        ik_attempts = cfg.ik_attempts_first_group if limited else None
        joint_timeout = cfg.joint_plan_timeout_first_group_s if limited \
            else cfg.joint_plan_timeout_s
        f_open = self.finger_position(min(opening + cfg.open_margin_m, cfg.max_opening_m), side)
        f_held = self.finger_position(opening, side)
        f_release = self.finger_position(
            min(opening + max(cfg.open_margin_m, cfg.release_margin_m), cfg.max_opening_m), side)
        f_closed = self.closed_finger_position(side)
        f_start = float(q0[robot.joint_index(self.finger_joints(side)[0])])
        allow_pick = self._allowed(side, grasp[:3, 3], False)
        allow_pick_part = self._allowed(side, grasp[:3, 3], True)
        allow_place_part = self._allowed(side, place[:3, 3], True)
        allow_place = self._allowed(side, place[:3, 3], False)

        # Cheap checks first (IK and straight lines: approach, lift, place, retreat), so a group
        # that cannot reach the place fails before any OMPL planning; then the two joint plans.
        # --- approach (planned backwards from the grasp IK).
        self.checker.detach(side)
        q0_open = self._with_fingers(q0, side, f_open)
        pre = grasp.copy()
        pre[:3, 3] -= grasp[:3, 0] * cfg.pre_grasp_distance_m
        _, back = self._ik_and_line(group, q0_open, grasp, pre, allow_pick, 'approach',
                                    ik_attempts)
        approach_path = back[::-1]
        q_pre = robot.with_group(q0_open, group, approach_path[0])
        # --- lift and place with the part attached, fingers on the part.
        q_held = self._with_fingers(robot.with_group(q0, group, approach_path[-1]), side, f_held)
        try:
            self.checker.attach(side, part)
            lift_pose = grasp.copy()
            lift_pose[2, 3] += cfg.lift_height_m
            lift_path = self._cartesian(group, q_held, lift_pose, allow_pick_part, 'lift')
            q_lift = robot.with_group(q_held, group, lift_path[-1])
            pre_place = place.copy()
            pre_place[2, 3] += cfg.place_approach_height_m
            _, down_rev = self._ik_and_line(group, q_lift, place, pre_place, allow_place_part,
                                            'place', ik_attempts)
            place_path = down_rev[::-1]
            q_pre_place = robot.with_group(q_lift, group, place_path[0])
        finally:
            self.checker.detach(side)
        # --- retreat after release.
        q_released = self._with_fingers(robot.with_group(q0, group, place_path[-1]), side,
                                        f_release)
        retreat_pose = place.copy()
        retreat_pose[:3, 3] -= place[:3, 0] * cfg.retreat_distance_m
        try:
            retreat_path = self._cartesian(group, q_released, retreat_pose, allow_place,
                                           'retreat')
        except _Failure:
            retreat_pose = place.copy()
            retreat_pose[2, 3] += cfg.retreat_distance_m
            retreat_path = self._cartesian(group, q_released, retreat_pose, allow_place,
                                           'retreat (up)')
        # --- joint-space plans: start -> pre-grasp, lift -> pre-place (part attached).
        timeout = min(joint_timeout, max(0.01, deadline - time.perf_counter()))
        pre_path = self._check(self.planner.plan_joint(group, q0_open, approach_path[0], (),
                                                       timeout), 'pre_grasp')
        try:
            self.checker.attach(side, part)
            timeout = min(joint_timeout, max(0.01, deadline - time.perf_counter()))
            transfer_path = self._check(self.planner.plan_joint(
                group, q_lift, place_path[0], (), timeout), 'transfer')
            segs_carry = [
                ('lift', lift_path, q_held, allow_pick_part),
                ('transfer', transfer_path, q_lift, ()),
                ('place', place_path, q_pre_place, allow_place_part),
            ]
            timed_carry = [(name, self._time(group, path, qf, allowed))
                           for name, path, qf, allowed in segs_carry]
        finally:
            self.checker.detach(side)

        pre_traj = self._with_parallel_finger(self._time(group, pre_path, q0_open, ()), side,
                                              f_start, f_open)
        segments = [
            Segment('pre_grasp', pre_traj, group.name, side),
            Segment('approach', self._time(group, approach_path, q_pre, allow_pick),
                    group.name, side),
            Segment('close', self.gripper_trajectory(side, f_open, f_closed), '', side,
                    f_closed),
        ]
        segments += [Segment(name, traj, group.name, side) for name, traj in timed_carry]
        segments += [
            Segment('open', self.gripper_trajectory(side, f_held, f_release), '', side,
                    f_release, release_floor=f_open),
            Segment('retreat', self._time(group, retreat_path, q_released, allow_place),
                    group.name, side),
        ]
        return segments, f_held


def describe_codes() -> Dict[int, str]:
    """{code value: name} of ErrorCode (for docs and logs)."""
    return {int(c): c.name for c in ErrorCode}
