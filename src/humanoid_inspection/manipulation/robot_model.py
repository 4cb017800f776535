"""Kinematic model of the humanoid for planning: pinocchio model, planning groups, limits.

The model is built from URDF XML (by default the project's xacro, expanded through
``humanoid_inspection.robot_description``) with ``base_link`` as the fixed root (fixed-base mode,
docs/CONTRACTS.md). A *planning group* is an ordered list of 1-DoF joints plus a tip frame:

=================== ========================================== =============
group               joints                                     tip frame
=================== ========================================== =============
``left_arm``        the 7 left arm joints                      ``left_tcp``
``right_arm``       the 7 right arm joints                     ``right_tcp``
``left_arm_waist``  ``waist_yaw`` + the 7 left arm joints      ``left_tcp``
``right_arm_waist`` ``waist_yaw`` + the 7 right arm joints     ``right_tcp``
=================== ========================================== =============

Joint limits: position and velocity come from the URDF ``<limit>`` tags. URDF has no
acceleration limits; they come from :data:`DEFAULT_ACCELERATION_LIMITS` (rad/s^2, or m/s^2 for
prismatic joints, matched on the joint-name suffix) and can be overridden per joint (the
manipulation node reads ``acceleration_limits.<joint>`` from config/manipulation.yaml).

Configurations are numpy vectors in pinocchio's ``q`` order (``RobotModel.joint_names``); groups
hold the indices of their joints in that vector.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import pinocchio as pin

# Acceleration limits by joint-name suffix (the first suffix that matches wins). Values are
# conservative for a 1.7 m humanoid carrying a ~1 kg casting: proximal joints are slower.
DEFAULT_ACCELERATION_LIMITS: Tuple[Tuple[str, float], ...] = (
    ('waist_yaw', 1.5),
    ('shoulder_pitch', 3.0),
    ('shoulder_roll', 3.0),
    ('shoulder_yaw', 4.0),
    ('elbow', 4.0),
    ('wrist_yaw', 6.0),
    ('wrist_pitch', 6.0),
    ('wrist_roll', 6.0),
    ('finger_joint', 0.5),        # m/s^2, prismatic fingers
    ('finger_mirror_joint', 0.5),
    ('neck_yaw', 4.0),
    ('neck_pitch', 4.0),
)
FALLBACK_ACCELERATION_LIMIT = 2.0   # rad/s^2 for any joint matched by no suffix
FALLBACK_VELOCITY_LIMIT = 1.0       # rad/s when the URDF gives velocity="0" or none

SIDES = ('left', 'right')


class UnknownGroupError(KeyError):
    """A planning group name that the model does not define."""


class UnknownFrameError(KeyError):
    """A frame (link / tcp) name that the model does not contain."""


@dataclass(frozen=True)
class GroupSpec:
    """What defines a planning group: its joints (in order) and the frame it positions."""

    joint_names: Tuple[str, ...]
    tip_frame: str


@dataclass(frozen=True)
class PlanningGroup:
    """A planning group resolved against a model (indices and limits as numpy arrays).

    Attributes:
        name: group name, e.g. ``left_arm``.
        joint_names: the group's joints, in planning order.
        tip_frame: the frame IK positions (``<side>_tcp``).
        q_idx: index of each joint in the full configuration vector.
        v_idx: index of each joint in the full velocity vector.
        lower, upper: position limits (rad or m).
        max_velocity: velocity limits (rad/s or m/s).
        max_acceleration: acceleration limits (rad/s^2 or m/s^2).
    """

    name: str
    joint_names: Tuple[str, ...]
    tip_frame: str
    q_idx: np.ndarray
    v_idx: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray

    @property
    def dof(self) -> int:
        """Number of joints in the group."""
        return len(self.joint_names)

    @property
    def side(self) -> Optional[str]:
        """'left' / 'right' for an arm group, else None."""
        for side in SIDES:
            if self.name.startswith(side + '_'):
                return side
        return None


def acceleration_limit_for(joint_name: str,
                           overrides: Optional[Mapping[str, float]] = None) -> float:
    """Acceleration limit of a joint: override, else the suffix table, else the fallback.

    Args:
        joint_name: URDF joint name.
        overrides: optional {joint_name: limit}.

    Returns:
        The limit (rad/s^2 or m/s^2), > 0.
    """
    if overrides and joint_name in overrides:
        return float(overrides[joint_name])
    for suffix, value in DEFAULT_ACCELERATION_LIMITS:
        if joint_name.endswith(suffix):
            return value
    return FALLBACK_ACCELERATION_LIMIT


def _pose_to_matrix(placement: pin.SE3) -> np.ndarray:
    return np.asarray(placement.homogeneous)


class RobotModel:
    """Pinocchio model + planning groups + limits of a fixed-base robot.

    Args:
        urdf_xml: URDF XML string.
        groups: {group name: GroupSpec}.
        acceleration_limits: optional {joint name: limit} overriding the default table.
        reference_q: optional {joint name: value} used by :meth:`reference_configuration`
            (e.g. the standing pose); missing joints take the value nearest 0 inside limits.
        gripper_joints: optional {side: [finger joint names]} (first = the commanded joint).
        locked_joints: joints that never move during manipulation (the legs in fixed-base
            mode); the collision checker skips pairs only they separate.

    Raises:
        ValueError: a group names a joint the URDF lacks or a joint that is not 1-DoF; a limit
            table value is not positive.
        UnknownFrameError: a group's tip frame is not in the model.
    """

    def __init__(self, urdf_xml: str, groups: Mapping[str, GroupSpec],
                 acceleration_limits: Optional[Mapping[str, float]] = None,
                 reference_q: Optional[Mapping[str, float]] = None,
                 gripper_joints: Optional[Mapping[str, Sequence[str]]] = None,
                 locked_joints: Sequence[str] = ()):
        self.urdf_xml = urdf_xml
        self.model: pin.Model = pin.buildModelFromXML(urdf_xml)
        self.data: pin.Data = self.model.createData()
        self.base_frame = self.model.frames[1].name if self.model.nframes > 1 else 'universe'
        self._acc_overrides = dict(acceleration_limits or {})
        for name, value in self._acc_overrides.items():
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f'acceleration limit of {name} must be > 0, got {value}')
        names, lower, upper, vel, acc = [], [], [], [], []
        for jid in range(1, self.model.njoints):
            joint = self.model.joints[jid]
            if joint.nq != 1 or joint.nv != 1:
                raise ValueError(
                    f'joint {self.model.names[jid]} has nq={joint.nq}; only 1-DoF joints '
                    '(revolute/prismatic) are supported')
            name = self.model.names[jid]
            names.append(name)
            lower.append(self.model.lowerPositionLimit[joint.idx_q])
            upper.append(self.model.upperPositionLimit[joint.idx_q])
            v = float(self.model.velocityLimit[joint.idx_v])
            vel.append(v if np.isfinite(v) and v > 0 else FALLBACK_VELOCITY_LIMIT)
            acc.append(acceleration_limit_for(name, self._acc_overrides))
        self.joint_names: Tuple[str, ...] = tuple(names)
        self.lower = np.array(lower, dtype=float)
        self.upper = np.array(upper, dtype=float)
        self.max_velocity = np.array(vel, dtype=float)
        self.max_acceleration = np.array(acc, dtype=float)
        self._joint_index = {n: i for i, n in enumerate(names)}
        self.gripper_joints = {k: list(v) for k, v in (gripper_joints or {}).items()}
        self._reference = dict(reference_q or {})
        self.locked_joints = tuple(j for j in locked_joints if j in self._joint_index)
        self.groups: Dict[str, PlanningGroup] = {
            gname: self._resolve_group(gname, spec) for gname, spec in groups.items()}

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_project(cls, acceleration_limits: Optional[Mapping[str, float]] = None,
                     urdf_xml: Optional[str] = None) -> 'RobotModel':
        """The project's humanoid with the four arm planning groups.

        Args:
            acceleration_limits: optional per-joint overrides of the acceleration table.
            urdf_xml: optional URDF XML (default: the expanded urdf/humanoid.urdf.xacro).

        Returns:
            A RobotModel whose reference configuration is the standing pose.
        """
        from humanoid_inspection import robot_description as rd
        # fixed_base=False: the URDF's root is base_link itself (planning frame); the
        # world <- base_link weld is applied by the caller from cell.yaml.
        xml = urdf_xml if urdf_xml is not None else rd.expand_xacro(fixed_base=False)
        groups = project_groups(rd.ARM_JOINTS, rd.WAIST_JOINTS)
        grippers = {side: [rd.GRIPPER_JOINTS[side], rd.GRIPPER_MIMIC_JOINTS[side]]
                    for side in SIDES}
        legs = rd.LEG_JOINTS['left'] + rd.LEG_JOINTS['right']
        return cls(xml, groups, acceleration_limits, rd.standing_pose(), grippers, legs)

    @classmethod
    def toy(cls, acceleration_limits: Optional[Mapping[str, float]] = None) -> 'RobotModel':
        """The small two-arm test robot of :mod:`toy_robot` with the same four groups."""
        from humanoid_inspection.manipulation import toy_robot as tr
        groups = project_groups(tr.TOY_ARM_JOINTS, tr.TOY_WAIST_JOINTS)
        grippers = {s: [f'{s}_finger_joint', f'{s}_finger_mirror_joint'] for s in SIDES}
        ref = {'left_elbow': -1.2, 'right_elbow': -1.2,
               'left_shoulder_pitch': -0.4, 'right_shoulder_pitch': -0.4}
        return cls(tr.toy_humanoid_urdf(), groups, acceleration_limits, ref, grippers)

    def _resolve_group(self, name: str, spec: GroupSpec) -> PlanningGroup:
        missing = [j for j in spec.joint_names if j not in self._joint_index]
        if missing:
            raise ValueError(f'group {name}: joints {missing} are not in the URDF')
        if not self.model.existFrame(spec.tip_frame):
            raise UnknownFrameError(f'group {name}: tip frame {spec.tip_frame} not in the URDF')
        idx = np.array([self._joint_index[j] for j in spec.joint_names], dtype=int)
        q_idx = np.array([self.model.joints[self.model.getJointId(j)].idx_q
                          for j in spec.joint_names], dtype=int)
        v_idx = np.array([self.model.joints[self.model.getJointId(j)].idx_v
                          for j in spec.joint_names], dtype=int)
        return PlanningGroup(
            name=name, joint_names=tuple(spec.joint_names), tip_frame=spec.tip_frame,
            q_idx=q_idx, v_idx=v_idx, lower=self.lower[idx].copy(), upper=self.upper[idx].copy(),
            max_velocity=self.max_velocity[idx].copy(),
            max_acceleration=self.max_acceleration[idx].copy())

    # ------------------------------------------------------------------ groups / configurations
    @property
    def nq(self) -> int:
        """Size of the full configuration vector."""
        return self.model.nq

    def group(self, name: str) -> PlanningGroup:
        """The planning group called name.

        Raises:
            UnknownGroupError: no such group (the message lists the known ones).
        """
        try:
            return self.groups[name]
        except KeyError:
            raise UnknownGroupError(
                f'unknown planning group {name!r}; known: {sorted(self.groups)}') from None

    def joint_index(self, joint_name: str) -> int:
        """Index of a joint in the full configuration vector.

        Raises:
            KeyError: unknown joint.
        """
        try:
            return self._joint_index[joint_name]
        except KeyError:
            raise KeyError(f'unknown joint {joint_name!r}') from None

    def reference_configuration(self) -> np.ndarray:
        """The reference (standing) configuration, clipped to the limits."""
        q = np.clip(np.zeros(self.nq), self.lower, self.upper)
        for name, value in self._reference.items():
            if name in self._joint_index:
                q[self._joint_index[name]] = value
        return np.clip(q, self.lower, self.upper)

    def configuration_from_dict(self, positions: Mapping[str, float],
                                base: Optional[np.ndarray] = None) -> np.ndarray:
        """Full configuration from {joint: value}; joints not given keep base (or reference).

        Unknown joint names are ignored (joint_states may carry joints the model lacks).
        """
        q = (self.reference_configuration() if base is None else np.array(base, dtype=float))
        for name, value in positions.items():
            i = self._joint_index.get(name)
            if i is not None:
                q[i] = float(value)
        return q

    def configuration_to_dict(self, q: np.ndarray) -> Dict[str, float]:
        """{joint name: value} of a full configuration."""
        return {n: float(v) for n, v in zip(self.joint_names, q)}

    def with_group(self, q_full: np.ndarray, group: PlanningGroup,
                   q_group: np.ndarray) -> np.ndarray:
        """Copy of q_full with the group's joints set to q_group."""
        q = np.array(q_full, dtype=float, copy=True)
        q[group.q_idx] = q_group
        return q

    def limit_violations(self, q: np.ndarray, joint_names: Optional[Iterable[str]] = None,
                         tol: float = 1e-6) -> Dict[str, float]:
        """Joints of q outside their position limits: {name: value} (empty = all inside)."""
        names = self.joint_names if joint_names is None else tuple(joint_names)
        out = {}
        for name in names:
            i = self._joint_index[name]
            if not (self.lower[i] - tol <= q[i] <= self.upper[i] + tol):
                out[name] = float(q[i])
        return out

    # ------------------------------------------------------------------ kinematics
    def frame_id(self, frame: str) -> int:
        """Pinocchio id of a frame.

        Raises:
            UnknownFrameError: no such frame.
        """
        if not self.model.existFrame(frame):
            raise UnknownFrameError(f'unknown frame {frame!r}')
        return self.model.getFrameId(frame)

    def frame_pose(self, q: np.ndarray, frame: str) -> np.ndarray:
        """4x4 pose of a frame in the base frame at configuration q."""
        fid = self.frame_id(frame)
        pin.forwardKinematics(self.model, self.data, np.asarray(q, dtype=float))
        return _pose_to_matrix(pin.updateFramePlacement(self.model, self.data, fid))

    def frame_jacobian(self, q: np.ndarray, frame: str,
                       reference: str = 'world_aligned') -> np.ndarray:
        """6 x nv Jacobian [linear; angular] of a frame.

        Args:
            q: full configuration.
            frame: frame name.
            reference: 'world_aligned' (origin velocity and angular velocity in base axes) or
                'local' (both in the frame's own axes).

        Returns:
            The Jacobian as a (6, nv) array.
        """
        rf = {'world_aligned': pin.LOCAL_WORLD_ALIGNED, 'local': pin.LOCAL,
              'world': pin.WORLD}[reference]
        return pin.computeFrameJacobian(self.model, self.data, np.asarray(q, dtype=float),
                                        self.frame_id(frame), rf).copy()

    def group_jacobian(self, q: np.ndarray, group: PlanningGroup) -> np.ndarray:
        """6 x dof Jacobian of the group's tip frame w.r.t. the group's joints (base axes)."""
        return self.frame_jacobian(q, group.tip_frame)[:, group.v_idx]


def project_groups(arm_joints: Mapping[str, Sequence[str]],
                   waist_joints: Sequence[str]) -> Dict[str, GroupSpec]:
    """The four arm groups from the arm joint lists and the waist joints."""
    groups = {}
    for side in SIDES:
        arm = tuple(arm_joints[side])
        groups[f'{side}_arm'] = GroupSpec(arm, f'{side}_tcp')
        groups[f'{side}_arm_waist'] = GroupSpec(tuple(waist_joints) + arm, f'{side}_tcp')
    return groups
