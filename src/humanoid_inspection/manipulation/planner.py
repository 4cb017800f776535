"""Collision-free motion planning for a planning group: OMPL joint-space plans, Cartesian lines.

- :meth:`MotionPlanner.plan_joint`: start/goal checks (limits, collision), then the straight
  joint-space segment if it is collision-free, else OMPL (RRTConnect by default; any planner
  of ``ompl.geometric`` by name) in the group's joint box with the collision checker as state
  validity, discrete motion checking every ``resolution x coarse_factor`` rad while exploring,
  OMPL's path simplifier on the result (vertex reduction + rope shortcutting by default; the
  full shortcut + smoothing on request), then the final path re-checked every ``resolution``
  rad (replanned at the fine resolution if that fails). Before OMPL, **experience reuse** (as
  OMPL's Lightning framework / MoveIt's cached paths): the interior waypoints of the group's
  stored paths whose ends are nearest to the new start and goal, re-connected to them and
  re-checked at the fine resolution against the current scene (a reused path is as
  collision-free as a new one), then one shortcut pass.
- :meth:`MotionPlanner.plan_to_pose`: collision-aware IK (goal state), then plan_joint.
- :meth:`MotionPlanner.cartesian_path`: a straight tool line (position lerp + rotation slerp)
  cut every ``step`` m / ``rotation_step`` rad, IK at each cut seeded by the previous solution
  (no restarts, so the arm cannot flip), rejected on a joint jump larger than
  ``jump_threshold`` rad, on a collision of the state or of the motion to it. Like MoveIt's
  computeCartesianPath it reports the fraction achieved.
- :meth:`MotionPlanner.time_parameterize`: TOPP-RA timing (time_parameterization.py) whose
  densely sampled positions are collision-checked before being accepted.

Paths are (N, dof) arrays of the group's joint values; the joints outside the group keep the
values of the start configuration.
"""

import enum
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pinocchio as pin

from humanoid_inspection.manipulation.collision import CollisionChecker, CollisionContext
from humanoid_inspection.manipulation.ik import IKSolver, IKStatus, check_target
from humanoid_inspection.manipulation.robot_model import PlanningGroup, RobotModel
from humanoid_inspection.manipulation.time_parameterization import (TimedTrajectory,
                                                                    prepare,
                                                                    time_parameterize)


_OMPL_SEEDED = False
# OMPL's budget is CPU time; its wall time is capped at this multiple of the budget.
OMPL_WALL_CAP = 2.0
# Rope-shortened (taut) paths are checked every resolution / TAUT_CHECK_DIVISOR rad.
TAUT_CHECK_DIVISOR = 3.0


def _coarse_first_order(steps: int) -> List[int]:
    """1..steps, every 4th index (ending at steps) first, then the odd and the rest."""
    order = list(range(steps, 0, -4))
    order += [k for k in range(steps - 2, 0, -4)]
    order += [k for k in range(1, steps + 1) if (steps - k) % 2]
    return order


class PlanStatus(enum.Enum):
    """Outcome of a planning query."""

    SUCCESS = 'success'
    INVALID_INPUT = 'invalid_input'
    START_OUT_OF_LIMITS = 'start_out_of_limits'
    START_IN_COLLISION = 'start_in_collision'
    GOAL_OUT_OF_LIMITS = 'goal_out_of_limits'
    GOAL_IN_COLLISION = 'goal_in_collision'
    UNREACHABLE = 'unreachable'
    PLANNING_FAILED = 'planning_failed'


@dataclass
class PathResult:
    """A planned geometric path (or why there is none).

    Attributes:
        status: PlanStatus.
        path: (N, dof) group joint values, N >= 2 on success (None on failure, except a
            partial Cartesian path).
        message: human-readable detail.
        planning_time_s: wall time of the query.
        fraction: Cartesian paths: fraction of the line achieved (1.0 = all).
        planner: 'direct', the OMPL planner's name, or 'cartesian'.
    """

    status: PlanStatus
    path: Optional[np.ndarray] = None
    message: str = ''
    planning_time_s: float = 0.0
    fraction: float = 0.0
    planner: str = ''
    colliding: list = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when status is SUCCESS."""
        return self.status is PlanStatus.SUCCESS


def interpolate_pose(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Pose at fraction s from a to b: linear position, geodesic (slerp) rotation."""
    out = np.eye(4)
    out[:3, 3] = a[:3, 3] + s * (b[:3, 3] - a[:3, 3])
    out[:3, :3] = a[:3, :3] @ pin.exp3(s * pin.log3(a[:3, :3].T @ b[:3, :3]))
    return out


class MotionPlanner:
    """Planner for the groups of a RobotModel against a CollisionChecker.

    Args:
        robot: the RobotModel.
        checker: the CollisionChecker (cell obstacles, attached parts).
        resolution: max joint step (rad) between collision-checked states along a motion.
        planner: name of an ``ompl.geometric`` planner (RRTConnect, RRT, BKPIECE1, ...).
        simplify_time_s: time given to OMPL's full path simplifier (simplify='full').
        simplify: 'rope' (OMPL's vertex reduction then rope shortcutting, default), 'reduce'
            (vertex reduction only), 'full' (OMPL's simplify(): shortcutting + smoothing), or
            'none'.
        coarse_factor: OMPL explores with motion checks every resolution x coarse_factor;
            the result is validated at resolution (and replanned at it if that fails).
        seed: seed of OMPL's and the IK restarts' random generators (None = nondeterministic).
        experience: joint paths remembered per group for reuse (0 = no reuse).
        experience_tries: stored paths tried (nearest ends first) before OMPL.
    """

    def __init__(self, robot: RobotModel, checker: CollisionChecker, resolution: float = 0.03,
                 planner: str = 'RRTConnect', simplify_time_s: float = 0.02,
                 seed: Optional[int] = 0, simplify: str = 'rope', coarse_factor: float = 2.0,
                 experience: int = 32, experience_tries: int = 3):
        from ompl import geometric as og
        from ompl import util as ou
        ou.setLogLevel(ou.LogLevel.LOG_WARN)
        if not hasattr(og, planner):
            raise ValueError(f'unknown OMPL planner {planner!r}')
        self.robot = robot
        self.checker = checker
        self.resolution = float(resolution)
        self.planner_name = planner
        self.simplify_time_s = float(simplify_time_s)
        if simplify not in ('none', 'reduce', 'rope', 'full'):
            raise ValueError("simplify must be 'none', 'reduce', 'rope' or 'full', "
                             f'got {simplify!r}')
        self.simplify = simplify
        self.coarse_factor = max(1.0, float(coarse_factor))
        self.rng = np.random.default_rng(seed)
        global _OMPL_SEEDED
        if seed is not None and not _OMPL_SEEDED:
            # OMPL accepts one seed per process (later calls only print an error).
            ou.RNG.setSeed(int(seed) + 1)
            _OMPL_SEEDED = True
        self._ik = {}
        for group in robot.groups.values():     # TOPP-RA constraints now, not at a first plan
            prepare(group.max_velocity, group.max_acceleration)
        self.experience = max(0, int(experience))
        self.experience_tries = max(0, int(experience_tries))
        self._experience: Dict[str, List[np.ndarray]] = {}

    def ik_solver(self, group: PlanningGroup) -> IKSolver:
        """The (cached) IKSolver of a group."""
        solver = self._ik.get(group.name)
        if solver is None:
            solver = self._ik[group.name] = IKSolver(self.robot, group)
        return solver

    # ------------------------------------------------------------------ state / motion checks
    def check_state(self, group: PlanningGroup, q_full: np.ndarray,
                    ctx: Optional[CollisionContext] = None, role: str = 'start'
                    ) -> Optional[Tuple[PlanStatus, str, list]]:
        """None if q_full is a valid state for group, else (status, message, colliding pairs).

        Limits are checked on the group's joints; collisions with every pair (role 'start')
        or the group's pairs (role 'goal').
        """
        q_full = np.asarray(q_full, dtype=float)
        if q_full.shape != (self.robot.nq,) or not np.all(np.isfinite(q_full)):
            return (PlanStatus.INVALID_INPUT,
                    f'{role} configuration must be {self.robot.nq} finite values', [])
        bad = self.robot.limit_violations(q_full, group.joint_names, tol=1e-6)
        if bad:
            status = (PlanStatus.START_OUT_OF_LIMITS if role == 'start'
                      else PlanStatus.GOAL_OUT_OF_LIMITS)
            return status, f'{role} outside joint limits: {bad}', []
        ctx = ctx or self.checker.context(group)
        if ctx.in_collision(q_full):
            pairs = ctx.colliding_pairs(q_full)
            status = (PlanStatus.START_IN_COLLISION if role == 'start'
                      else PlanStatus.GOAL_IN_COLLISION)
            return status, f'{role} in collision: {pairs}', pairs
        return None

    def motion_valid(self, ctx: CollisionContext, q_full: np.ndarray, group: PlanningGroup,
                     qa: np.ndarray, qb: np.ndarray, step: Optional[float] = None) -> bool:
        """True if the straight joint motion qa -> qb is collision-free every step rad
        (default: resolution)."""
        steps = int(np.ceil(np.abs(qb - qa).max() / (step or self.resolution)))
        q = np.array(q_full, dtype=float)
        # Every 4th state first, then the states between: a blocked motion is usually found
        # after a quarter of the checks (the answer is the same).
        for k in _coarse_first_order(steps):
            q[group.q_idx] = qa + (qb - qa) * (k / steps)
            if ctx.in_collision(q):
                return False
        return True

    def path_valid(self, ctx: CollisionContext, q_full: np.ndarray, group: PlanningGroup,
                   path: np.ndarray, step: Optional[float] = None) -> bool:
        """True if every segment of a path is collision-free (checked every step rad)."""
        return all(self.motion_valid(ctx, q_full, group, a, b, step)
                   for a, b in zip(path[:-1], path[1:]))

    # ------------------------------------------------------------------ joint-space planning
    def plan_joint(self, group: PlanningGroup, q_start_full: np.ndarray, q_goal: np.ndarray,
                   allowed: Iterable[Tuple[str, str]] = (), timeout_s: float = 1.0
                   ) -> PathResult:
        """Collision-free joint path from the start configuration to q_goal (group values).

        Args:
            group: the PlanningGroup.
            q_start_full: full start configuration.
            q_goal: (dof,) goal joint values of the group.
            allowed: (name, name) pairs whose collisions are ignored.
            timeout_s: OMPL's time budget (s of CPU time of the calling thread; wall time at
                most OMPL_WALL_CAP times that).

        Returns:
            PathResult (path (N, dof) from start to goal on success).
        """
        t0 = time.perf_counter()
        allowed = tuple(allowed)
        ctx = self.checker.context(group, allowed)
        q_goal = np.asarray(q_goal, dtype=float)
        bad = self.check_state(group, q_start_full, ctx, 'start')
        if bad is None and (q_goal.shape != (group.dof,) or not np.all(np.isfinite(q_goal))):
            bad = (PlanStatus.INVALID_INPUT, f'goal must be {group.dof} finite values', [])
        if bad is None:
            bad = self.check_state(group, self.robot.with_group(q_start_full, group, q_goal),
                                   ctx, 'goal')
        if bad is not None:
            return PathResult(bad[0], None, bad[1], time.perf_counter() - t0, colliding=bad[2])
        q_start_full = np.asarray(q_start_full, dtype=float)
        qa = q_start_full[group.q_idx].copy()
        if self.motion_valid(ctx, q_start_full, group, qa, q_goal):
            return PathResult(PlanStatus.SUCCESS, np.vstack([qa, q_goal]), 'direct',
                              time.perf_counter() - t0, 1.0, 'direct')
        path = self._reuse(group, ctx, q_start_full, qa, q_goal)
        if path is not None:
            return PathResult(PlanStatus.SUCCESS, path, f'experience, {len(path)} waypoints',
                              time.perf_counter() - t0, 1.0, 'experience')
        # Explore at a coarse motion resolution (fewer checks), then validate the final path
        # at the fine one; a path that fails it is planned again at the fine resolution.
        cpu0 = time.thread_time()
        found = self._ompl(group, ctx, q_start_full, qa, q_goal, timeout_s,
                           self.resolution * self.coarse_factor)
        path, step = self._accept(ctx, q_start_full, group, found)
        if found is not None and path is None:
            remaining = max(0.01, timeout_s - (time.thread_time() - cpu0))
            path, step = self._accept(ctx, q_start_full, group, self._ompl(
                group, ctx, q_start_full, qa, q_goal, remaining, self.resolution))
        elapsed = time.perf_counter() - t0
        if path is None:
            return PathResult(PlanStatus.PLANNING_FAILED, None,
                              f'{self.planner_name} found no path in {timeout_s:.2f} s (CPU)',
                              elapsed, 0.0, self.planner_name)
        self._remember(group, path, step=step)
        return PathResult(PlanStatus.SUCCESS, path, f'{self.planner_name}, {len(path)} waypoints',
                          elapsed, 1.0, self.planner_name)

    def _accept(self, ctx: CollisionContext, q_full: np.ndarray, group: PlanningGroup,
                found: Optional[Tuple[np.ndarray, np.ndarray]]):
        """(path, check step) of OMPL's result that passes the final check, or (None, None).

        A rope-shortened path lies taut along the obstacles, where states between checks
        every resolution rad can reach into the padding (and, on 1 of 89 bench joint
        queries, into an obstacle): it is checked every resolution / TAUT_CHECK_DIVISOR
        rad; if it fails, the vertex-reduced path before the rope is checked every
        resolution rad.
        """
        if found is None:
            return None, None
        taut, reduced = found
        fine = self.resolution / TAUT_CHECK_DIVISOR
        if taut is not reduced and self.path_valid(ctx, q_full, group, taut, fine):
            return taut, fine
        if self.path_valid(ctx, q_full, group, reduced):
            return reduced, self.resolution
        return None, None

    # ------------------------------------------------------------------ experience
    def _remember(self, group: PlanningGroup, path: np.ndarray, index: Optional[int] = None,
                  step: Optional[float] = None):
        """Store a path with interior waypoints and the step (rad) its interior must be checked
        at (most recent first; index: move that stored path up instead)."""
        if not self.experience or len(path) < 3:
            return
        paths = self._experience.setdefault(group.name, [])
        if index is not None:
            paths.insert(0, paths.pop(index))
        else:
            paths.insert(0, (np.array(path, dtype=float), step or self.resolution))
        del paths[self.experience:]

    def forget_experience(self) -> None:
        """Drop every remembered path."""
        self._experience.clear()

    def _reuse(self, group: PlanningGroup, ctx: CollisionContext, q_full: np.ndarray,
               qa: np.ndarray, qb: np.ndarray) -> Optional[np.ndarray]:
        """A stored path re-connected to qa and qb, collision-free at resolution, or None.

        Candidates are ordered by the execution time they would take at full joint speed
        (sum over segments of max_j |dq_j| / vmax_j: far ends and detours cost), so the
        quickest, not just the nearest, is tried first; the new end segments are checked
        before the interior (they are the likelier to fail).
        """
        paths = self._experience.get(group.name)
        if not paths or not self.experience_tries:
            return None
        candidates = [np.vstack([qa, p[1:-1], qb]) for p, _ in paths]
        cost = [float((np.abs(np.diff(c, axis=0)) / group.max_velocity).max(axis=1).sum())
                for c in candidates]
        for k in np.argsort(cost, kind='stable')[:self.experience_tries]:
            path = candidates[k]
            if not (self.motion_valid(ctx, q_full, group, path[0], path[1])
                    and self.motion_valid(ctx, q_full, group, path[-2], path[-1])
                    and self.path_valid(ctx, q_full, group, path[1:-1], paths[k][1])):
                continue
            self._remember(group, path, int(k))
            return self._shortcut(ctx, q_full, group, path)
        return None

    def _shortcut(self, ctx: CollisionContext, q_full: np.ndarray, group: PlanningGroup,
                  path: np.ndarray) -> np.ndarray:
        """Drop each interior waypoint whose neighbours connect directly (one pass).

        The stored paths were simplified by OMPL for their own ends; re-connected to new
        ends, this pass removes the waypoints the new ends make unnecessary (~100 checks;
        OMPL's rope shortcutting at the fine resolution cost ~6x that for ~3 % shorter
        motions).
        """
        keep = [path[0]]
        for k in range(1, len(path) - 1):
            if not self.motion_valid(ctx, q_full, group, keep[-1], path[k + 1]):
                keep.append(path[k])
        keep.append(path[-1])
        return np.asarray(keep)

    def _setup(self, group: PlanningGroup, ctx: CollisionContext, q_full: np.ndarray,
               resolution: float):
        """OMPL SimpleSetup of the group's joint box, validity = ctx, checks every resolution."""
        from ompl import base as ob
        from ompl import geometric as og
        n = group.dof
        space = ob.RealVectorStateSpace(n)
        bounds = ob.RealVectorBounds(n)
        for i in range(n):
            bounds.setLow(i, float(group.lower[i]))
            bounds.setHigh(i, float(group.upper[i]))
        space.setBounds(bounds)
        ss = og.SimpleSetup(space)
        buf = np.array(q_full, dtype=float)
        idx = group.q_idx
        rng_n = range(n)

        def valid(state) -> bool:
            buf[idx] = [state[i] for i in rng_n]
            return not ctx.in_collision(buf)

        ss.setStateValidityChecker(valid)
        si = ss.getSpaceInformation()
        si.setStateValidityCheckingResolution(min(0.5, resolution / space.getMaximumExtent()))
        return space, si, ss

    @staticmethod
    def _to_state(space, values: np.ndarray):
        state = space.allocState()
        for i, v in enumerate(values):
            state[i] = float(v)
        return state

    @staticmethod
    def _to_array(path, n: int) -> np.ndarray:
        return np.array([[path.getState(k)[i] for i in range(n)]
                         for k in range(path.getStateCount())])

    def _ompl(self, group, ctx, q_full, qa, qb, timeout_s, resolution) -> Optional[np.ndarray]:
        from ompl import base as ob
        from ompl import geometric as og
        space, si, ss = self._setup(group, ctx, q_full, resolution)
        ss.setStartAndGoalStates(self._to_state(space, qa), self._to_state(space, qb))
        ss.setPlanner(getattr(og, self.planner_name)(si))
        # The budget is CPU time of this thread (the validity checks run in it): on a loaded
        # machine a wall-clock budget turned into PLANNING_FAILED (0.5 s was too short in the
        # cell, six processes on two cores). Wall time is capped at OMPL_WALL_CAP x the budget.
        cpu_end = time.thread_time() + float(timeout_s)
        wall_end = time.perf_counter() + OMPL_WALL_CAP * float(timeout_s)
        solved = ss.solve(ob.PlannerTerminationCondition(
            lambda: time.thread_time() > cpu_end or time.perf_counter() > wall_end))
        if not solved or str(solved) != 'Exact solution':
            return None
        sol = ss.getSolutionPath()
        simplifier = og.PathSimplifier(si)
        # OMPL's full simplify() (shortcut + B-spline rounds) costs 2-4x the planning time in
        # collision checks. Vertex reduction then rope shortcutting (Hauser's rope: the path
        # pulled taut between its vertices) gets paths as fast to execute as simplify()'s
        # for ~1/2 of its checks (bench joint queries: 3.7 s vs 3.8 s of motion, 3400 vs 7000
        # checks; vertex reduction alone: 5.0 s, 3000 checks). Returned: (path, the
        # vertex-reduced path) - see _accept.
        if self.simplify in ('reduce', 'rope'):
            simplifier.reduceVertices(sol)
            reduced = self._to_array(sol, group.dof)
            if self.simplify == 'rope':
                simplifier.ropeShortcutPath(sol)
        elif self.simplify == 'full':
            simplifier.simplify(sol, self.simplify_time_s, True)
        path = self._to_array(sol, group.dof)
        if self.simplify not in ('reduce', 'rope'):
            reduced = path
        elif self.simplify == 'reduce':
            path = reduced
        for p in (path, reduced):
            p[0], p[-1] = qa, qb
        return path, reduced

    # ------------------------------------------------------------------ pose goals
    def solve_ik(self, group: PlanningGroup, q_seed_full: np.ndarray, target: np.ndarray,
                 allowed: Iterable[Tuple[str, str]] = (), timeout_s: float = 0.05,
                 max_attempts: int = 30):
        """Collision-free IK (IKResult) for group's tip at target, seeded by q_seed_full."""
        ctx = self.checker.context(group, tuple(allowed))
        return self.ik_solver(group).solve(
            target, q_seed_full, timeout_s=timeout_s, max_attempts=max_attempts, rng=self.rng,
            is_valid=lambda q: not ctx.in_collision(q))

    def plan_to_pose(self, group: PlanningGroup, q_start_full: np.ndarray, target: np.ndarray,
                     allowed: Iterable[Tuple[str, str]] = (), timeout_s: float = 1.0,
                     ik_timeout_s: float = 0.05) -> PathResult:
        """IK for target (collision-free), then plan_joint to it.

        Returns:
            PathResult; UNREACHABLE / GOAL_OUT_OF_LIMITS / GOAL_IN_COLLISION when IK fails.
        """
        t0 = time.perf_counter()
        why = check_target(target)
        if why is not None:
            return PathResult(PlanStatus.INVALID_INPUT, None, why, time.perf_counter() - t0)
        bad = self.check_state(group, q_start_full, None, 'start')
        if bad is not None:
            return PathResult(bad[0], None, bad[1], time.perf_counter() - t0, colliding=bad[2])
        ik = self.solve_ik(group, q_start_full, target, allowed, ik_timeout_s)
        if not ik.success:
            status = {IKStatus.IN_COLLISION: PlanStatus.GOAL_IN_COLLISION,
                      IKStatus.JOINT_LIMITS: PlanStatus.GOAL_OUT_OF_LIMITS,
                      IKStatus.INVALID_INPUT: PlanStatus.INVALID_INPUT}.get(
                          ik.status, PlanStatus.UNREACHABLE)
            return PathResult(status, None, f'IK: {ik.message}', time.perf_counter() - t0)
        res = self.plan_joint(group, q_start_full, ik.q, allowed, timeout_s)
        res.planning_time_s = time.perf_counter() - t0
        return res

    def cartesian_path(self, group: PlanningGroup, q_start_full: np.ndarray,
                       target: np.ndarray, allowed: Iterable[Tuple[str, str]] = (),
                       step: float = 0.01, rotation_step: float = 0.1,
                       jump_threshold: float = 0.3, ik_timeout_s: float = 0.005
                       ) -> PathResult:
        """Straight tool-frame line from the start pose to target.

        Args:
            group: the PlanningGroup.
            q_start_full: full start configuration.
            target: 4x4 goal pose of the tip frame (base frame).
            allowed: (name, name) pairs whose collisions are ignored.
            step: max tool translation between IK cuts (m).
            rotation_step: max tool rotation between IK cuts (rad).
            jump_threshold: max change of any joint between consecutive cuts (rad).
            ik_timeout_s: IK budget per cut.

        Returns:
            PathResult; on failure status UNREACHABLE (IK or jump) or GOAL_IN_COLLISION with
            the partial path and the fraction achieved.
        """
        t0 = time.perf_counter()
        why = check_target(target)
        if why is not None:
            return PathResult(PlanStatus.INVALID_INPUT, None, why, time.perf_counter() - t0)
        ctx = self.checker.context(group, tuple(allowed))
        bad = self.check_state(group, q_start_full, ctx, 'start')
        if bad is not None:
            return PathResult(bad[0], None, bad[1], time.perf_counter() - t0, colliding=bad[2])
        q = np.array(q_start_full, dtype=float)
        start_pose = self.robot.frame_pose(q, group.tip_frame)
        dist = float(np.linalg.norm(target[:3, 3] - start_pose[:3, 3]))
        angle = float(np.linalg.norm(pin.log3(start_pose[:3, :3].T @ target[:3, :3])))
        n = max(1, int(np.ceil(dist / step)), int(np.ceil(angle / rotation_step)))
        solver = self.ik_solver(group)
        path = [q[group.q_idx].copy()]
        reason = ''
        status = PlanStatus.SUCCESS
        for k in range(1, n + 1):
            pose = interpolate_pose(start_pose, target, k / n)
            ik = solver.solve(pose, q, timeout_s=ik_timeout_s, max_attempts=1)
            if not ik.success:
                status, reason = PlanStatus.UNREACHABLE, f'IK failed at {k}/{n}: {ik.message}'
                break
            if np.abs(ik.q - path[-1]).max() > jump_threshold:
                status, reason = PlanStatus.UNREACHABLE, f'joint jump at {k}/{n}'
                break
            if not self.motion_valid(ctx, q, group, path[-1], ik.q):
                status = PlanStatus.GOAL_IN_COLLISION
                q_bad = self.robot.with_group(q, group, ik.q)
                reason = f'collision at {k}/{n}: {ctx.colliding_pairs(q_bad)}'
                break
            path.append(ik.q)
            q = ik.q_full
        fraction = (len(path) - 1) / n
        return PathResult(status, np.asarray(path), reason or f'{n} cuts',
                          time.perf_counter() - t0, fraction, 'cartesian')

    # ------------------------------------------------------------------ timing
    def time_parameterize(self, group: PlanningGroup, path: np.ndarray, q_full: np.ndarray,
                          allowed: Iterable[Tuple[str, str]] = (), sample_dt: float = 0.02,
                          velocity_scale: float = 1.0, acceleration_scale: float = 1.0
                          ) -> TimedTrajectory:
        """TOPP-RA timing of a group path whose densely sampled spline is collision-checked.

        Args:
            group: the PlanningGroup.
            path: (N, dof) path.
            q_full: full configuration giving the joints outside the group.
            allowed: (name, name) pairs ignored in the spline's collision check.
            sample_dt: output sampling period (s).
            velocity_scale, acceleration_scale: fractions (0, 1] of the limits to use.

        Returns:
            TimedTrajectory within the (scaled) limits at every sample.
        """
        ctx = self.checker.context(group, tuple(allowed))
        buf = np.array(q_full, dtype=float)

        def spline_collision_free(positions: np.ndarray) -> bool:
            # Check a sample every `resolution` rad of (L-inf) joint travel along the spline.
            travel = np.concatenate([[0.0], np.cumsum(
                np.abs(np.diff(positions, axis=0)).max(axis=1))])
            marks = np.floor(travel / self.resolution)
            keep = np.flatnonzero(np.diff(marks, prepend=-1.0) > 0)
            for row in positions[np.append(keep, len(positions) - 1)]:
                buf[group.q_idx] = row
                if ctx.in_collision(buf):
                    return False
            return True

        return time_parameterize(
            path, list(group.joint_names), group.lower, group.upper,
            group.max_velocity * velocity_scale, group.max_acceleration * acceleration_scale,
            sample_dt=sample_dt, validate=spline_collision_free)
