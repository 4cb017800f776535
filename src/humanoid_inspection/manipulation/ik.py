"""Inverse kinematics of a planning group's tip frame, inside joint limits.

Solver (:class:`IKSolver`): Levenberg-Marquardt with Sugihara's damping
(``lambda = E(q) + bias``, E = half the squared weighted pose error; T. Sugihara, "Solvability-
unconcerned inverse kinematics by the Levenberg-Marquardt method", IEEE T-RO 2011), joint-limit
projection after every step, stagnation detection and random restarts inside the limits, an
optional validity callback (e.g. collision) that rejects a converged solution and restarts, and
a time budget in CPU time of the calling thread (machine load does not change the answer).
Each iteration is one pinocchio call (``computeFrameJacobian``, which also
updates the frame placement) plus one 7x7 solve, ~15 us in Python.

Failure reasons (:class:`IKStatus`):

- ``UNREACHABLE``: the target is beyond the chain's reach, or no attempt converged even with
  the joint limits ignored.
- ``JOINT_LIMITS``: a solution exists when the limits are ignored, none inside them.
- ``IN_COLLISION``: solutions were found but every one was rejected by the validity callback.
- ``TIMEOUT``: the time budget ran out before the attempts did.
- ``INVALID_INPUT``: NaN/inf or a non-rigid target, seed of the wrong size.

:func:`solve_dls_baseline` is the plain damped-least-squares baseline of the benchmark (fixed
damping, clamping, one attempt from the seed).
"""

import enum
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pinocchio as pin
from scipy.linalg import lapack

from humanoid_inspection.manipulation.robot_model import PlanningGroup, RobotModel


def _spd_solve(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve h x = g for a symmetric positive definite h (falls back to a general solve)."""
    if not len(g):
        return g
    _, x, info = lapack.dposv(h, g)
    return x if info == 0 else np.linalg.solve(h, g)


class IKStatus(enum.Enum):
    """Outcome of an IK query."""

    SUCCESS = 'success'
    UNREACHABLE = 'unreachable'
    JOINT_LIMITS = 'joint_limits'
    IN_COLLISION = 'in_collision'
    TIMEOUT = 'timeout'
    INVALID_INPUT = 'invalid_input'


@dataclass
class IKResult:
    """Result of :meth:`IKSolver.solve`.

    Attributes:
        status: IKStatus.
        q: group configuration (dof,) on success, else the best configuration found or None.
        q_full: full configuration with the group set to q (None if q is None).
        position_error: |p - p_target| (m) of q.
        orientation_error: rotation angle (rad) between the frame and the target at q.
        iterations: LM iterations over all attempts.
        attempts: attempts started (1 = converged from the seed).
        time_s: wall time spent.
        message: human-readable reason.
    """

    status: IKStatus
    q: Optional[np.ndarray]
    q_full: Optional[np.ndarray]
    position_error: float
    orientation_error: float
    iterations: int
    attempts: int
    time_s: float
    message: str = ''

    @property
    def success(self) -> bool:
        """True when status is SUCCESS."""
        return self.status is IKStatus.SUCCESS


def check_target(target: np.ndarray) -> Optional[str]:
    """Why a 4x4 target pose is invalid (None if it is a finite rigid transform)."""
    target = np.asarray(target, dtype=float)
    if target.shape != (4, 4):
        return f'target must be a 4x4 homogeneous matrix, got shape {target.shape}'
    if not np.all(np.isfinite(target)):
        return 'target contains NaN or inf'
    rot = target[:3, :3]
    if (np.abs(rot.T @ rot - np.eye(3)).max() > 1e-6 or abs(np.linalg.det(rot) - 1.0) > 1e-6
            or np.abs(target[3] - [0, 0, 0, 1]).max() > 1e-9):
        return 'target rotation is not orthonormal (non-normalised quaternion?)'
    return None


class IKSolver:
    """IK for one planning group of a RobotModel.

    Args:
        robot: the RobotModel.
        group: group name or PlanningGroup.
        rotation_weight: metres per radian used to weigh orientation against position errors.
        max_iterations: LM iterations per attempt.
        stall_iterations: an attempt that has not reduced its error by 1% over this many
            iterations is abandoned (random restart).
        limit_margin: solutions are kept this far (rad or m) inside the joint limits, so a
            spline through them (time parameterisation) does not cross a limit.
    """

    def __init__(self, robot: RobotModel, group, rotation_weight: float = 0.2,
                 max_iterations: int = 60, stall_iterations: int = 8,
                 limit_margin: float = 1e-3):
        self.robot = robot
        self.group: PlanningGroup = group if isinstance(group, PlanningGroup) else \
            robot.group(group)
        self.model = robot.model
        self.data = robot.model.createData()
        self.fid = robot.frame_id(self.group.tip_frame)
        self.rotation_weight = float(rotation_weight)
        self.max_iterations = int(max_iterations)
        self.stall_iterations = int(stall_iterations)
        span = self.group.upper - self.group.lower
        margin = np.minimum(float(limit_margin), 0.25 * span)
        self._lo = self.group.lower + margin
        self._hi = self.group.upper - margin
        self._reach_origin_joint = self.model.getJointId(self.group.joint_names[0])
        self._reach = self._chain_reach()

    def _chain_reach(self) -> float:
        """Upper bound of the distance from the first joint's origin to the tip frame."""
        q = self.robot.reference_configuration()
        pin.forwardKinematics(self.model, self.data, q)
        pts = [self.data.oMi[self.model.getJointId(j)].translation.copy()
               for j in self.group.joint_names]
        pts.append(pin.updateFramePlacement(self.model, self.data, self.fid).translation.copy())
        return float(sum(np.linalg.norm(b - a) for a, b in zip(pts[:-1], pts[1:])))

    def _reach_origin(self, q_full: np.ndarray) -> np.ndarray:
        pin.forwardKinematics(self.model, self.data, q_full)
        return self.data.oMi[self._reach_origin_joint].translation.copy()

    def random_configuration(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform random group configuration inside the limits."""
        return rng.uniform(self._lo, self._hi)

    def _attempt(self, q_full: np.ndarray, p_t: np.ndarray, r_t: np.ndarray, pos_tol: float,
                 rot_tol: float, clamp: bool, deadline: float):
        """One LM descent from q_full (modified in place). Returns (converged, its, perr, rerr)."""
        model, data, fid = self.model, self.data, self.fid
        idx = self.group.q_idx
        vidx = self.group.v_idx
        lo, hi = self._lo, self._hi
        w = self.rotation_weight
        damping_eye = np.eye(len(idx))
        best = np.inf
        best_it = 0
        perr = rerr = np.inf
        e = np.empty(6)
        it = 0
        for it in range(1, self.max_iterations + 1):
            jac = pin.computeFrameJacobian(model, data, q_full, fid, pin.LOCAL_WORLD_ALIGNED)
            m = data.oMf[fid]
            rot = m.rotation
            e[:3] = p_t - m.translation
            e[3:] = rot @ pin.log3(rot.T @ r_t)
            perr = float(np.sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]))
            rerr = float(np.sqrt(e[3] * e[3] + e[4] * e[4] + e[5] * e[5]))
            if perr <= pos_tol and rerr <= rot_tol:
                return True, it, perr, rerr
            e[3:] *= w
            err2 = float(e @ e)
            if err2 < best * 0.98:
                best = err2
                best_it = it
            elif it - best_it >= self.stall_iterations or time.thread_time() > deadline:
                break
            jg = jac[:, vidx]
            jg[3:] *= w
            h = jg.T @ jg
            h += (0.5 * err2 + 1e-4) * damping_eye
            # H is symmetric positive definite: LAPACK's Cholesky solve, 4x less call
            # overhead than np.linalg.solve at this size.
            dq = _spd_solve(h, jg.T @ e)
            q = q_full[idx] + dq
            if clamp:
                out = (q < lo) | (q > hi)
                if out.any():
                    # Active set: freeze the joints the step pushes through a limit, move them
                    # to the limit, and let the other joints take up the rest of the error.
                    free = ~out
                    q0 = q_full[idx]
                    q = np.clip(q, lo, hi)
                    e2 = e - jg[:, out] @ (q[out] - q0[out])
                    jf = jg[:, free]
                    hf = jf.T @ jf + (0.5 * err2 + 1e-4) * np.eye(jf.shape[1])
                    q[free] = np.clip(q0[free] + _spd_solve(hf, jf.T @ e2), lo[free],
                                      hi[free])
            q_full[idx] = q
        return False, it, perr, rerr

    def solve(self, target: np.ndarray, seed_full: np.ndarray,
              position_tolerance: float = 1e-4, orientation_tolerance: float = 1e-3,
              timeout_s: float = 0.05, max_attempts: int = 100,
              rng: Optional[np.random.Generator] = None,
              is_valid: Optional[Callable[[np.ndarray], bool]] = None) -> IKResult:
        """Find group joint values putting the tip frame at target.

        Args:
            target: 4x4 pose of the tip frame in the base frame.
            seed_full: full configuration: the first attempt starts from it, and the joints
                outside the group keep its values.
            position_tolerance: accepted position error (m).
            orientation_tolerance: accepted orientation error (rad).
            timeout_s: budget (s) in CPU time of the calling thread (IKResult.time_s is wall
                time).
            max_attempts: the seed + random restarts.
            rng: random generator of the restarts (default: seeded with 0, deterministic).
            is_valid: optional callback(q_full) -> bool; a converged solution it rejects
                counts as a failed attempt (e.g. a collision check).

        Returns:
            IKResult (never raises for bad input: status INVALID_INPUT).
        """
        t0 = time.perf_counter()
        # The budget is CPU time of the calling thread: on a loaded machine (the cell runs six
        # processes on two cores) a wall-clock budget became a few restarts and IK failures.
        deadline = time.thread_time() + timeout_s
        why = check_target(target)
        seed_full = np.asarray(seed_full, dtype=float)
        if why is None and (seed_full.shape != (self.robot.nq,)
                            or not np.all(np.isfinite(seed_full))):
            why = f'seed must be a finite vector of size {self.robot.nq}'
        if why is None and not (np.isfinite(position_tolerance) and position_tolerance > 0
                                and np.isfinite(orientation_tolerance)
                                and orientation_tolerance > 0 and timeout_s > 0):
            why = 'tolerances and timeout must be positive'
        if why is not None:
            return IKResult(IKStatus.INVALID_INPUT, None, None, np.inf, np.inf, 0, 0,
                            time.perf_counter() - t0, why)
        target = np.asarray(target, dtype=float)
        p_t = target[:3, 3].copy()
        r_t = target[:3, :3].copy()
        rng = rng if rng is not None else np.random.default_rng(0)
        dist = float(np.linalg.norm(p_t - self._reach_origin(seed_full)))
        if dist > self._reach + position_tolerance:
            return IKResult(IKStatus.UNREACHABLE, None, None, dist - self._reach, np.inf, 0, 0,
                            time.perf_counter() - t0,
                            f'target is {dist:.3f} m from the chain root, reach is '
                            f'{self._reach:.3f} m')
        q_full = seed_full.copy()
        q_full[self.group.q_idx] = np.clip(q_full[self.group.q_idx], self._lo, self._hi)
        iterations = 0
        rejected = 0
        best = (np.inf, None, np.inf, np.inf)
        attempts = 0
        timed_out = False
        for attempts in range(1, max_attempts + 1):
            if attempts > 1:
                q_full[self.group.q_idx] = self.random_configuration(rng)
            ok, its, perr, rerr = self._attempt(q_full, p_t, r_t, position_tolerance,
                                                orientation_tolerance, True, deadline)
            iterations += its
            if ok:
                if is_valid is None or is_valid(q_full):
                    q = q_full[self.group.q_idx].copy()
                    return IKResult(IKStatus.SUCCESS, q, q_full.copy(), perr, rerr, iterations,
                                    attempts, time.perf_counter() - t0, 'solved')
                rejected += 1
            score = perr + self.rotation_weight * rerr
            if score < best[0]:
                best = (score, q_full[self.group.q_idx].copy(), perr, rerr)
            if time.thread_time() > deadline:
                timed_out = attempts < max_attempts
                break
        _, q_best, perr, rerr = best
        q_best_full = None if q_best is None else self.robot.with_group(seed_full, self.group,
                                                                         q_best)
        elapsed = time.perf_counter() - t0
        if rejected:
            return IKResult(IKStatus.IN_COLLISION, q_best, q_best_full, perr, rerr, iterations,
                            attempts, elapsed,
                            f'{rejected} solution(s) found, all rejected by the validity check')
        if timed_out:
            return IKResult(IKStatus.TIMEOUT, q_best, q_best_full, perr, rerr, iterations,
                            attempts, elapsed, f'CPU time budget {timeout_s * 1e3:.1f} ms used '
                            f'after {attempts} attempt(s)')
        # Diagnose: would the target be reachable without the joint limits?
        q_free = seed_full.copy()
        unconstrained = False
        for k in range(4):
            if k:
                q_free[self.group.q_idx] = self.random_configuration(rng)
            ok, _, _, _ = self._attempt(q_free, p_t, r_t, position_tolerance,
                                        orientation_tolerance, False, np.inf)
            if ok:
                unconstrained = True
                break
        elapsed = time.perf_counter() - t0
        if unconstrained:
            return IKResult(IKStatus.JOINT_LIMITS, q_best, q_best_full, perr, rerr, iterations,
                            attempts, elapsed, 'a solution exists only outside the joint limits')
        return IKResult(IKStatus.UNREACHABLE, q_best, q_best_full, perr, rerr, iterations,
                        attempts, elapsed, f'no solution in {attempts} attempts '
                        f'(best error {perr * 1e3:.1f} mm, {np.degrees(rerr):.1f} deg)')


def solve_dls_baseline(robot: RobotModel, group: PlanningGroup, target: np.ndarray,
                       seed_full: np.ndarray, position_tolerance: float = 1e-4,
                       orientation_tolerance: float = 1e-3, damping: float = 0.05,
                       max_iterations: int = 500) -> IKResult:
    """Plain damped least squares: fixed damping, limit clamping, one attempt from the seed.

    dq = J^T (J J^T + damping^2 I)^-1 e, with e = [position error; orientation error (log3)].

    Args:
        robot: the RobotModel.
        group: the PlanningGroup.
        target: 4x4 target pose of the tip frame.
        seed_full: full seed configuration.
        position_tolerance: accepted position error (m).
        orientation_tolerance: accepted orientation error (rad).
        damping: the fixed damping factor.
        max_iterations: iteration cap.

    Returns:
        IKResult with status SUCCESS or UNREACHABLE (no diagnosis).
    """
    t0 = time.perf_counter()
    model = robot.model
    data = model.createData()
    fid = robot.frame_id(group.tip_frame)
    q_full = np.array(seed_full, dtype=float)
    p_t = target[:3, 3]
    r_t = target[:3, :3]
    lam = damping * damping * np.eye(6)
    e = np.empty(6)
    perr = rerr = np.inf
    for it in range(1, max_iterations + 1):
        jac = pin.computeFrameJacobian(model, data, q_full, fid, pin.LOCAL_WORLD_ALIGNED)
        m = data.oMf[fid]
        e[:3] = p_t - m.translation
        e[3:] = m.rotation @ pin.log3(m.rotation.T @ r_t)
        perr = float(np.linalg.norm(e[:3]))
        rerr = float(np.linalg.norm(e[3:]))
        if perr <= position_tolerance and rerr <= orientation_tolerance:
            q = q_full[group.q_idx].copy()
            return IKResult(IKStatus.SUCCESS, q, q_full, perr, rerr, it, 1,
                            time.perf_counter() - t0, 'solved')
        jg = jac[:, group.v_idx]
        dq = jg.T @ np.linalg.solve(jg @ jg.T + lam, e)
        q_full[group.q_idx] = np.clip(q_full[group.q_idx] + dq, group.lower, group.upper)
    return IKResult(IKStatus.UNREACHABLE, q_full[group.q_idx].copy(), q_full, perr, rerr,
                    max_iterations, 1, time.perf_counter() - t0, 'did not converge')
