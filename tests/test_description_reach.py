"""The arms reach every place of the cell from the fixed stance, with a top-down grasp.

A small damped-least-squares IK on the pinocchio model of urdf/humanoid.urdf.xacro (arm joints
only, waist and legs at the standing pose, joint limits enforced by clamping, seeded restarts)
must put the TCP within 2 mm of each target with its approach axis (TCP x) within 0.02 rad of
straight down, in a configuration whose collision geometry (coal) is clear of the cell's
table, X-ray cabinet and bins: every table slot (with the nearer arm), the X-ray fixture seat
(left arm, reaching in through the open port), both bins (right arm) and the review tray, each
at grasp height and 10 cm above it (pre-grasp / approach).
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


def solve_ik_seeded(model, arm, target, stance, restarts=80, valid=None):
    """Runs solve_ik from the standing pose, the ready seed, then seeded random restarts.

    Args:
        valid: optional predicate on q (e.g. collision-free); a converged q must pass it.

    Returns:
        The first converged (and valid) result, else the one with the smallest position error
        (reported as not converged).
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
        if result[0] and (valid is None or valid(result[1])):
            return result
        if result[0]:
            result = (False, result[1], result[2], result[3])
        best = result if best is None or result[2] < best[2] else best
    return best


class CellCollisions:
    """Robot collision geometry (from the URDF) against the cell's boxes (from cell.yaml)."""

    def __init__(self, model, urdf_xml, cell):
        import coal
        import pinocchio as pin
        from humanoid_inspection.sim import sdf_world
        self.model = model
        self.geom = pin.buildGeomFromUrdfString(model, urdf_xml, pin.COLLISION)
        robot_count = len(self.geom.geometryObjects)
        groups = [('table', cell.table.pose.matrix(), sdf_world.table_boxes(cell)),
                  ('xray_cabinet', cell.xray_cabinet.pose.matrix(),
                   sdf_world.cabinet_boxes(cell.xray_cabinet))]
        groups += [(f'{b.name}_bin', b.pose.matrix(), sdf_world.bin_boxes(b))
                   for b in (cell.accept_bin, cell.reject_bin)]
        for name, frame, boxes in groups:
            for box in boxes:
                centre = frame[:3, :3] @ np.array(box.xyz) + frame[:3, 3]
                self.geom.addGeometryObject(pin.GeometryObject(
                    f'{name}/{box.name}', 0, 0, pin.SE3(frame[:3, :3], centre),
                    coal.Box(*box.size)))
        for i in range(robot_count):
            for j in range(robot_count, len(self.geom.geometryObjects)):
                self.geom.addCollisionPair(pin.CollisionPair(i, j))
        self.geom_data = pin.GeometryData(self.geom)
        self.data = model.createData()

    def colliding(self, q):
        """Returns the (robot geometry, cell box) name pairs in contact at q."""
        import pinocchio as pin
        pin.computeCollisions(self.model, self.data, self.geom, self.geom_data, q, False)
        objects = self.geom.geometryObjects
        return [(objects[p.first].name, objects[p.second].name)
                for k, p in enumerate(self.geom.collisionPairs)
                if self.geom_data.collisionResults[k].isCollision()]

    def free(self, q):
        return not self.colliding(q)


@pytest.fixture(scope='module')
def model_and_stance():
    import pinocchio as pin
    urdf = rd.expand_xacro()
    model = pin.buildModelFromXML(urdf)
    q = pin.neutral(model)
    for name, value in rd.standing_pose().items():
        q[model.idx_qs[model.getJointId(name)]] = value
    return model, q, CellCollisions(model, urdf, load_cell())


def test_standing_pose_is_clear_of_the_cell(model_and_stance):
    _, stance, collisions = model_and_stance
    assert collisions.colliding(stance) == []


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
    model, stance, collisions = model_and_stance
    # The IK works in world coordinates: the model is fixed-base with world as its root.
    target = point + [0.0, 0.0, height]
    ok, q, pos_err, ang_err = solve_ik_seeded(model, arm, target, stance,
                                              valid=collisions.free)
    assert ok, (f'{arm} arm cannot reach {name} at {np.round(target, 3)} top-down without '
                f'touching the cell: {pos_err * 1000:.1f} mm, {ang_err:.3f} rad left, '
                f'contacts {collisions.colliding(q)}')
    assert collisions.free(q)
    idx = [model.idx_qs[model.getJointId(j)] for j in rd.ARM_JOINTS[arm]]
    assert np.all(q[idx] >= model.lowerPositionLimit[idx] - 1e-9)
    assert np.all(q[idx] <= model.upperPositionLimit[idx] + 1e-9)


def test_far_point_is_out_of_reach(model_and_stance):
    """The check is not vacuous: a point 1.2 m in front of the robot is reported unreachable."""
    model, stance, _ = model_and_stance
    ok, _, pos_err, _ = solve_ik(model, 'left_tcp', np.array([1.2, 0.2, 1.0]), DOWN,
                                 rd.ARM_JOINTS['left'], stance, iterations=150)
    assert not ok and pos_err > 0.1
