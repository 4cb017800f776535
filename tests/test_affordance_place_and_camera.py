"""Place poses from the cell geometry and the camera pose from forward kinematics."""

import numpy as np
import pytest

from humanoid_inspection.affordance.camera_pose import (
    CameraPoseError, CameraPoseFK, pose_from_xyz_rpy)
from humanoid_inspection.affordance.place import place_poses
from humanoid_inspection.cell_geometry import load_cell

HEAD_URDF = """<?xml version="1.0"?>
<robot name="head_test">
  <link name="base_link"/>
  <link name="neck_link"/>
  <link name="head_link"/>
  <link name="head_camera_link"/>
  <link name="head_camera_optical_frame"/>
  <joint name="neck_yaw" type="revolute">
    <parent link="base_link"/><child link="neck_link"/>
    <origin xyz="0 0 0.5" rpy="0 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-1.5" upper="1.5" effort="10" velocity="1"/>
  </joint>
  <joint name="neck_pitch" type="revolute">
    <parent link="neck_link"/><child link="head_link"/>
    <origin xyz="0 0 0.1" rpy="0 0 0"/><axis xyz="0 1 0"/>
    <limit lower="-1.0" upper="1.0" effort="10" velocity="1"/>
  </joint>
  <joint name="camera_mount" type="fixed">
    <parent link="head_link"/><child link="head_camera_link"/>
    <origin xyz="0.08 0 0.05" rpy="0 0 0"/>
  </joint>
  <joint name="camera_optical" type="fixed">
    <parent link="head_camera_link"/><child link="head_camera_optical_frame"/>
    <origin xyz="0 0 0" rpy="-1.5707963267948966 0 -1.5707963267948966"/>
  </joint>
</robot>
"""


def test_place_poses_follow_the_cell():
    cell = load_cell()
    poses = place_poses(cell, grasp_height_m=0.02)
    assert set(poses) == {'fixture', 'accept_bin', 'reject_bin', 'review'}
    seat = np.asarray(cell.xray_cabinet.fixture.pose.xyz)
    assert poses['fixture'].position == pytest.approx(cell.world_to_base(seat + [0, 0, 0.02]))
    # pre-place in front of the cabinet's open (-y) port
    front_y = cell.xray_cabinet.pose.xyz[1] - cell.xray_cabinet.size[1] / 2
    pre_world = cell.robot.pose.matrix() @ np.append(poses['fixture'].pre_place, 1.0)
    assert pre_world[1] < front_y
    for name, b in cell.bins().items():
        p = poses[f'{name}_bin']
        rim = b.pose.xyz[2] + b.wall_height
        world = cell.robot.pose.matrix() @ np.append(p.position, 1.0)
        assert world[2] > rim and world[:2] == pytest.approx(b.pose.xyz[:2])
    for p in poses.values():
        R = p.rotation
        assert np.allclose(R.T @ R, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)
        approach_world = cell.robot.pose.rotation() @ R[:, 0]
        assert approach_world == pytest.approx([0, 0, -1])


def test_camera_pose_from_joint_positions():
    fk = CameraPoseFK(HEAD_URDF)
    T0 = fk.camera_in_base({})
    assert T0[:3, 3] == pytest.approx([0.08, 0.0, 0.65])
    # optical z (forward) = base x, optical x (right) = base -y, optical y (down) = base -z
    assert T0[:3, 2] == pytest.approx([1, 0, 0], abs=1e-9)
    assert T0[:3, 0] == pytest.approx([0, -1, 0], abs=1e-9)
    pitch = 0.6
    T = fk.camera_in_base({'neck_pitch': pitch, 'unknown_joint': 3.0})
    expected = (pose_from_xyz_rpy([0, 0, 0.6], [0, pitch, 0])
                @ pose_from_xyz_rpy([0.08, 0, 0.05], [0, 0, 0])
                @ pose_from_xyz_rpy([0, 0, 0], [-np.pi / 2, 0, -np.pi / 2]))
    assert T == pytest.approx(expected, abs=1e-9)
    assert T[:3, 2] @ [0, 0, -1] > 0.5  # pitched down: looks towards the floor


def test_camera_pose_errors():
    with pytest.raises(CameraPoseError, match="no frame 'head_camera_optical_frame'"):
        CameraPoseFK(HEAD_URDF.replace('head_camera_optical_frame', 'cam'))
    with pytest.raises(CameraPoseError):
        CameraPoseFK('<robot name="x"><link name="a"/></robot', )
