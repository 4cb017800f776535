"""Small kinematics helpers on the simulation model (for tests, benchmarks and scripted moves).

The planner of the stack lives in manipulation/ (pinocchio); this is a self-contained damped
least-squares IK on MuJoCo's own Jacobians so that the simulation can be exercised (e.g. "put
the left gripper above this part") without the planning stack.
"""

from typing import Dict, Mapping, Optional, Sequence

import numpy as np


def body_pose(model, data, body: str) -> np.ndarray:
    """4x4 world pose of a body of a forward-computed MjData."""
    import mujoco
    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    if i < 0:
        raise ValueError(f"no body named '{body}'")
    pose = np.eye(4)
    pose[:3, :3] = data.xmat[i].reshape(3, 3)
    pose[:3, 3] = data.xpos[i]
    return pose


def solve_ik(model, qpos: np.ndarray, body: str, target: np.ndarray,
             joints: Sequence[str], iterations: int = 400, damping: float = 1e-2,
             rotation_weight: float = 0.3, tolerance: float = 1e-4, restarts: int = 8,
             seed: int = 0) -> Dict[str, float]:
    """Joint positions that put `body` at the 4x4 world `target` (damped least squares).

    Args:
        model: the MjModel.
        qpos: starting configuration (full qpos).
        body: the body to place (e.g. 'left_tcp').
        target: 4x4 world pose.
        joints: joints allowed to move (hinge/slide).
        iterations: most iterations.
        damping: Levenberg-Marquardt damping.
        rotation_weight: weight of the orientation error (rad) against position (m).
        tolerance: stop when the weighted error norm is below this.
        restarts: further attempts from random configurations when the first fails.
        seed: seed of the random restarts.

    Returns:
        joint -> position (clipped to the joint ranges).

    Raises:
        ValueError: unknown body or joint, or no convergence within 2 mm / 0.01 rad.
    """
    rng = np.random.default_rng(seed)
    best = None
    for attempt in range(restarts + 1):
        start = np.array(qpos, float)
        if attempt:
            for j in joints:
                jid = model.joint(j).id
                lo, hi = model.jnt_range[jid]
                start[model.jnt_qposadr[jid]] = rng.uniform(lo, hi)
        result, pos_err, rot_err = _dls(model, start, body, target, joints, iterations,
                                        damping, rotation_weight, tolerance)
        if best is None or pos_err + rot_err < best[1] + best[2]:
            best = (result, pos_err, rot_err)
        if pos_err <= 0.002 and rot_err <= 0.01:
            return result
    result, pos_err, rot_err = best
    if pos_err > 0.002 or rot_err > 0.01:
        raise ValueError(f"IK for '{body}' did not converge: position error {pos_err:.4f} m, "
                         f'orientation error {rot_err:.3f} rad')
    return result


def _dls(model, qpos, body, target, joints, iterations, damping, rotation_weight, tolerance):
    import mujoco
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    if bid < 0:
        raise ValueError(f"no body named '{body}'")
    jids = []
    for j in joints:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)
        if jid < 0:
            raise ValueError(f"no joint named '{j}'")
        jids.append(jid)
    qadr = np.array([model.jnt_qposadr[j] for j in jids])
    dadr = np.array([model.jnt_dofadr[j] for j in jids])
    lo = np.array([model.jnt_range[j][0] for j in jids])
    hi = np.array([model.jnt_range[j][1] for j in jids])
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    target = np.asarray(target, float)
    err = np.inf
    pos_err = rot_err = np.inf
    for _ in range(iterations):
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        cur_r = data.xmat[bid].reshape(3, 3)
        e_pos = target[:3, 3] - data.xpos[bid]
        r_err = target[:3, :3] @ cur_r.T
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, r_err.flatten())
        e_rot = np.zeros(3)
        mujoco.mju_quat2Vel(e_rot, quat, 1.0)
        pos_err, rot_err = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
        e = np.concatenate([e_pos, rotation_weight * e_rot])
        err = float(np.linalg.norm(e))
        if err < tolerance:
            break
        mujoco.mj_jacBody(model, data, jacp, jacr, bid)
        jac = np.vstack([jacp[:, dadr], rotation_weight * jacr[:, dadr]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), e)
        data.qpos[qadr] = np.clip(data.qpos[qadr] + dq, lo, hi)
    return {j: float(data.qpos[a]) for j, a in zip(joints, qadr)}, pos_err, rot_err


def top_down_grasp(position: Sequence[float], closing_axis: Sequence[float]) -> np.ndarray:
    """4x4 TCP pose approaching straight down (x = -z world) with fingers closing along
    closing_axis (projected into the horizontal plane)."""
    y = np.array(closing_axis, float)
    y[2] = 0.0
    y /= np.linalg.norm(y)
    x = np.array([0.0, 0.0, -1.0])
    z = np.cross(x, y)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([x, y, z])
    pose[:3, 3] = position
    return pose


def joint_dict(names: Sequence[str], values: Sequence[float],
               base: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
    """dict(base) updated with names -> values."""
    out = dict(base or {})
    out.update({n: float(v) for n, v in zip(names, values)})
    return out
