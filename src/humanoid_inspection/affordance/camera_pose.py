"""Camera pose in the robot base frame from joint positions (pinocchio FK, no ROS).

The head camera moves with waist_yaw, neck_yaw and neck_pitch, so grasp candidates computed in
the camera optical frame are brought into base_link with T_base_camera(q) from forward
kinematics of the project's URDF (humanoid_inspection.robot_description.expand_xacro()).
Joints absent from a joint_states message keep their neutral (zero) position.
"""

from typing import Mapping, Optional

import numpy as np

CAMERA_FRAME = 'head_camera_optical_frame'
BASE_FRAME = 'base_link'


class CameraPoseError(RuntimeError):
    """The URDF cannot be loaded or lacks the base/camera frames."""


class CameraPoseFK:
    """T_base_camera(q) by pinocchio forward kinematics of a URDF."""

    def __init__(self, urdf_xml: str, camera_frame: str = CAMERA_FRAME,
                 base_frame: str = BASE_FRAME):
        """Build the kinematic model from URDF XML.

        Raises:
            CameraPoseError: unparsable URDF or a missing frame (the message names it).
        """
        import pinocchio as pin
        self._pin = pin
        try:
            self.model = pin.buildModelFromXML(urdf_xml)
        except Exception as exc:  # pinocchio raises ValueError/RuntimeError variants
            raise CameraPoseError(f'cannot build a kinematic model from the URDF: {exc}') from exc
        self.data = self.model.createData()
        for frame in (camera_frame, base_frame):
            if not self.model.existFrame(frame):
                raise CameraPoseError(f"URDF has no frame '{frame}'")
        self.camera_id = self.model.getFrameId(camera_frame)
        self.base_id = self.model.getFrameId(base_frame)
        self._q0 = pin.neutral(self.model)

    @classmethod
    def from_project(cls) -> 'CameraPoseFK':
        """The model of the project's humanoid (robot_description.expand_xacro()).

        Raises:
            CameraPoseError: robot_description is not available or fails.
        """
        try:
            from humanoid_inspection import robot_description
            urdf = robot_description.expand_xacro()
        except Exception as exc:  # ImportError while the module is missing, xacro errors
            raise CameraPoseError(f'cannot expand the project URDF: {exc}') from exc
        return cls(urdf)

    def configuration(self, positions: Mapping[str, float]) -> np.ndarray:
        """The full configuration with the named revolute/prismatic joints set."""
        q = self._q0.copy()
        for name, value in positions.items():
            if not self.model.existJointName(name):
                continue
            joint = self.model.joints[self.model.getJointId(name)]
            if joint.nq == 1:
                q[joint.idx_q] = float(value)
        return q

    def camera_in_base(self, positions: Optional[Mapping[str, float]] = None) -> np.ndarray:
        """4x4 pose of the camera optical frame in the base frame for joint positions."""
        pin = self._pin
        q = self.configuration(positions or {})
        pin.framesForwardKinematics(self.model, self.data, q)
        T_w_base = self.data.oMf[self.base_id].homogeneous
        T_w_cam = self.data.oMf[self.camera_id].homogeneous
        return np.linalg.inv(T_w_base) @ T_w_cam


def pose_from_xyz_rpy(xyz, rpy) -> np.ndarray:
    """4x4 transform from a translation and fixed-axis roll/pitch/yaw (URDF convention)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    R = np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                  [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                  [-sp, cp * sr, cp * cr]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, np.asarray(xyz, dtype=float)
    return T
