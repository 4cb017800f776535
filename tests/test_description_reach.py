"""The arms reach every place of the cell from the fixed stance, with a top-down grasp.

A small damped-least-squares IK on the pinocchio model of urdf/humanoid.urdf.xacro (arm joints
only, waist and legs at the standing pose, joint limits enforced by clamping) must put the TCP
within 2 mm of each target with its approach axis (TCP x) within 0.02 rad of straight down:
every table slot (with the nearer arm), the X-ray fixture seat (left arm), both bins (right
arm) and the review tray, each at grasp height and 10 cm above it (pre-grasp / approach).
"""

import numpy as np
import pytest

from humanoid_inspection import robot_description as rd
from humanoid_inspection.cell_geometry import load_cell

PART_HALF_HEIGHT = 0.025   # grasp point above the surface a part rests on, m
APPROACH_CLEARANCE = 0.10  # pre-grasp height above the grasp point, m
DOWN = np.array([0.0, 0.0, -1.0])


def _skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def solve_ik(model, frame, target, approach, joints, q_start, iterations=400):
    """Position + approach-axis IK by damped least squares with joint-limit clamping.

    Returns:
        (converged, q, position error m, axis error rad).
    """
    import pinocchio as pin
    data = model.createData()
    fid = model.getFrameId(frame)
    idx = [model.idx_qs[model.getJointId(j)] for j in joints]
    lower, upper = model.lowerPositionLimit[idx], model.upperPositionLimit[idx]
    q = q_start.copy()
    for _ in range(iterations):
        pin.forwardKinematics(model, data, q)
        pin.updateFramePlacements(model, data)
        placement = data.oMf[fid]
        axis = placement.rotation[:, 0]
        error = np.concatenate([target - placement.translation, np.cross(axis, approach)])
        pos_err = np.linalg.norm(error[:3])
        ang_err = np.arccos(np.clip(axis @ approach, -1.0, 1.0))
        if pos_err < 2e-3 and ang_err < 0.02:
            return True, q, pos_err, ang_err
        jac = pin.computeFrameJacobian(model, data, q, fid, pin.LOCAL_WORLD_ALIGNED)[:, idx]
        # d(axis x approach)/dt = -[approach]x [axis]x omega
        task = np.vstack([jac[:3], -_skew(approach) @ _skew(axis) @ jac[3:]])
        step = task.T @ np.linalg.solve(task @ task.T + 1e-2 * np.eye(6), error)
        q[idx] = np.clip(q[idx] + 0.5 * step, lower, upper)
    return False, q, pos_err, ang_err


# Alternative IK seeds (arm joint values, left arm; mirrored for the right): the standing pose,
# and a "ready" pose with the forearm forward, from which top-down solutions with a raised
# elbow are found.
READY_SEED = {'shoulder_pitch': -0.6, 'shoulder_roll': 0.3, 'shoulder_yaw': 0.0,
              'elbow': -1.6, 'wrist_yaw': 0.0, 'wrist_pitch': 0.6, 'wrist_roll': 0.0}


def solve_ik_seeded(model, arm, target, stance, restarts=30):
    """Runs solve_ik from the standing pose, the ready seed, then seeded random restarts.

    Returns:
        The first converged result, else the one with the smallest position error.
    """
    best = None
    ready = stance.copy()
    for joint, value in READY_SEED.items():
        sign = -1.0 if arm == 'right' and joint in ('shoulder_roll', 'shoulder_yaw',
                                                   'wrist_yaw', 'wrist_roll') else 1.0
        ready[model.idx_qs[model.getJointId(f'{arm}_{joint}')]] = sign * value
    idx = [model.idx_qs[model.getJointId(j)] for j in rd.ARM_JOINTS[arm]]
    rng = np.random.default_rng(0)
    seeds = [stance, ready]
    for _ in range(restarts):
        seed = stance.copy()
        seed[idx] = rng.uniform(model.lowerPositionLimit[idx], model.upperPositionLimit[idx])
        seeds.append(seed)
    for seed in seeds:
        result = solve_ik(model, f'{arm}_tcp', target, DOWN, rd.ARM_JOINTS[arm], seed)
        if result[0]:
            return result
        best = result if best is None or result[2] < best[2] else best
    return best


@pytest.fixture(scope='module')
def model_and_stance():
    import pinocchio as pin
    model = pin.buildModelFromXML(rd.expand_xacro())
    q = pin.neutral(model)
    for name, value in rd.standing_pose().items():
        q[model.idx_qs[model.getJointId(name)]] = value
    return model, q


def cell_targets():
    """(name, arm, grasp point in world) for every place the robot must reach."""
    cell = load_cell()
    out = []
    for i, (x, y) in enumerate(cell.table.part_slots):
        out.append((f'slot{i}', 'left' if y >= 0 else 'right',
                    np.array([x, y, cell.table.top_z + PART_HALF_HEIGHT])))
    out.append(('xray_fixture', 'left',
                np.array(cell.xray_cabinet.fixture.pose.xyz) + [0, 0, PART_HALF_HEIGHT]))
    for b in (cell.accept_bin, cell.reject_bin):
        out.append((f'{b.name}_bin', 'right', np.array(b.drop_pose(clearance=0.03).xyz)))
    review_arm = 'left' if cell.review.pose.xyz[1] >= 0 else 'right'
    out.append(('review', review_arm,
                np.array(cell.review.pose.xyz) + [0, 0, PART_HALF_HEIGHT]))
    return out


@pytest.mark.parametrize('height', [0.0, APPROACH_CLEARANCE], ids=['grasp', 'pregrasp'])
@pytest.mark.parametrize('name,arm,point', cell_targets(), ids=[t[0] for t in cell_targets()])
def test_arm_reaches_target_top_down(model_and_stance, name, arm, point, height):
    model, stance = model_and_stance
    # The IK works in world coordinates: the model is fixed-base with world as its root.
    target = point + [0.0, 0.0, height]
    ok, q, pos_err, ang_err = solve_ik_seeded(model, arm, target, stance)
    assert ok, (f'{arm} arm cannot reach {name} at {np.round(target, 3)} top-down: '
                f'{pos_err * 1000:.1f} mm, {ang_err:.3f} rad left')
    idx = [model.idx_qs[model.getJointId(j)] for j in rd.ARM_JOINTS[arm]]
    assert np.all(q[idx] >= model.lowerPositionLimit[idx] - 1e-9)
    assert np.all(q[idx] <= model.upperPositionLimit[idx] + 1e-9)


def test_far_point_is_out_of_reach(model_and_stance):
    """The check is not vacuous: a point 1.2 m in front of the robot is reported unreachable."""
    model, stance = model_and_stance
    ok, _, pos_err, _ = solve_ik(model, 'left_tcp', np.array([1.2, 0.2, 1.0]), DOWN,
                                 rd.ARM_JOINTS['left'], stance, iterations=150)
    assert not ok and pos_err > 0.1
