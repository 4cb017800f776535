"""The humanoid's description: xacro expansion, URDF validity, joints, limits, inertia, loaders.

Checks urdf/humanoid.urdf.xacro through the real tools that consume it: xacro, urdf_parser_py,
pinocchio and MuJoCo, and cross-checks it with CONTRACTS.md, config/cell.yaml and
config/controllers.yaml.
"""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from humanoid_inspection import robot_description as rd
from humanoid_inspection.cell_geometry import load_cell

# CONTRACTS.md, section Joints.
CONTRACT_JOINTS = (
    [f'{s}_{j}' for s in ('left', 'right') for j in (
        'hip_yaw', 'hip_roll', 'hip_pitch', 'knee', 'ankle_pitch', 'ankle_roll')]
    + ['waist_yaw', 'neck_yaw', 'neck_pitch']
    + [f'{s}_{j}' for s in ('left', 'right') for j in (
        'shoulder_pitch', 'shoulder_roll', 'shoulder_yaw', 'elbow', 'wrist_yaw', 'wrist_pitch',
        'wrist_roll')]
    + [f'{s}_{j}' for s in ('left', 'right') for j in ('finger_joint', 'finger_mirror_joint')])
# CONTRACTS.md, section Controllers.
CONTRACT_CONTROLLERS = {
    'left_arm_controller', 'right_arm_controller', 'waist_controller', 'head_controller',
    'left_gripper_controller', 'right_gripper_controller', 'legs_controller'}


@pytest.fixture(scope='module')
def urdf_xml():
    return rd.expand_xacro()


@pytest.fixture(scope='module')
def robot(urdf_xml):
    from urdf_parser_py.urdf import URDF
    return URDF.from_xml_string(urdf_xml)


@pytest.fixture(scope='module')
def pin_model(urdf_xml):
    import pinocchio as pin
    return pin.buildModelFromXML(urdf_xml)


def movable(robot):
    return [j for j in robot.joints if j.type != 'fixed']


def frame_position(model, name, q=None):
    import pinocchio as pin
    data = model.createData()
    q = pin.neutral(model) if q is None else q
    pin.framesForwardKinematics(model, data, q)
    return data.oMf[model.getFrameId(name)]


@pytest.mark.parametrize('use_gazebo', [False, True])
def test_xacro_expands_in_both_modes(use_gazebo):
    xml = rd.expand_xacro(use_gazebo=use_gazebo)
    root = ET.fromstring(xml)
    assert root.tag == 'robot' and root.get('name') == 'humanoid'
    plugin = root.find('ros2_control/hardware/plugin').text
    assert plugin == ('gz_ros2_control/GazeboSimSystem' if use_gazebo
                      else 'mock_components/GenericSystem')
    sensors = root.findall(".//gazebo[@reference='head_camera_link']/sensor")
    if use_gazebo:
        assert len(sensors) == 1 and sensors[0].get('type') == 'rgbd_camera'
        assert sensors[0].findtext('gz_frame_id') == 'head_camera_optical_frame'
        cam = load_cell().head_camera
        assert int(sensors[0].findtext('camera/image/width')) == cam.width
        assert int(sensors[0].findtext('camera/image/height')) == cam.height
        assert float(sensors[0].findtext('camera/horizontal_fov')) == pytest.approx(
            cam.horizontal_fov)
        plugins = {p.get('filename') for p in root.iter('plugin') if p.get('filename')}
        assert {'gz_ros2_control-system', 'gz-sim-joint-state-publisher-system'} <= plugins
        params = root.find(".//plugin[@filename='gz_ros2_control-system']/parameters").text
        assert params == str(rd.controllers_path().resolve())
    else:
        assert not sensors and root.find('gazebo') is None


def test_fixed_base_switch_and_base_pose_from_cell():
    cell = load_cell()
    fixed = ET.fromstring(rd.expand_xacro(fixed_base=True))
    joint = fixed.find("joint[@name='world_to_base_link']")
    assert joint.get('type') == 'fixed' and joint.find('parent').get('link') == 'world'
    xyz = [float(v) for v in joint.find('origin').get('xyz').split()]
    assert xyz == pytest.approx(cell.robot.pose.xyz)
    floating = ET.fromstring(rd.expand_xacro(fixed_base=False))
    assert floating.find("link[@name='world']") is None


def test_urdf_parses_and_joint_names_match_the_contract(robot):
    names = [j.name for j in movable(robot)]
    assert sorted(names) == sorted(CONTRACT_JOINTS)
    assert sorted(rd.all_movable_joints()) == sorted(CONTRACT_JOINTS)
    assert robot.get_root() == 'world'
    for side in ('left', 'right'):
        assert [j for j in rd.ARM_JOINTS[side]] == [
            f'{side}_{j}' for j in ('shoulder_pitch', 'shoulder_roll', 'shoulder_yaw', 'elbow',
                                    'wrist_yaw', 'wrist_pitch', 'wrist_roll')]
        assert robot.joint_map[f'{side}_finger_joint'].type == 'prismatic'
        mirror = robot.joint_map[f'{side}_finger_mirror_joint']
        assert mirror.type == 'prismatic' and mirror.mimic.joint == f'{side}_finger_joint'
    links = {link.name for link in robot.links}
    assert {'world', 'base_link', 'head_camera_link', 'head_camera_optical_frame', 'left_tcp',
            'right_tcp'} <= links


def test_every_movable_joint_has_position_velocity_and_effort_limits(robot):
    cell = load_cell()
    for joint in movable(robot):
        lim = joint.limit
        assert lim is not None, joint.name
        assert lim.lower < lim.upper, joint.name
        assert lim.velocity > 0 and lim.effort > 0, joint.name
        if joint.type == 'revolute':
            assert -math.pi <= lim.lower and lim.upper <= math.pi, joint.name
    finger = robot.joint_map['left_finger_joint'].limit
    assert 2 * finger.upper == pytest.approx(cell.gripper.max_opening_m)


def test_every_link_has_valid_inertia_and_total_mass_is_realistic(robot):
    total = 0.0
    frames = {'world', 'head_camera_optical_frame', 'left_tcp', 'right_tcp', 'left_sole',
              'right_sole'}
    for link in robot.links:
        if link.name in frames:
            assert link.inertial is None, f'{link.name} is a frame, expected no inertia'
            continue
        inertial = link.inertial
        assert inertial is not None and inertial.mass > 0, link.name
        i = inertial.inertia
        tensor = np.array([[i.ixx, i.ixy, i.ixz], [i.ixy, i.iyy, i.iyz], [i.ixz, i.iyz, i.izz]])
        eig = np.linalg.eigvalsh(tensor)
        assert eig.min() > 0, f'{link.name}: inertia not positive definite {eig}'
        a, b, c = eig
        assert a + b >= c - 1e-12 and a + c >= b - 1e-12 and b + c >= a - 1e-12, \
            f'{link.name}: principal moments {eig} violate the triangle inequality'
        assert link.collision is not None and link.visual is not None, link.name
        total += inertial.mass
    assert 55.0 <= total <= 70.0, f'total mass {total:.1f} kg'


def test_pinocchio_loads_it_and_the_body_has_humanoid_proportions(pin_model):
    import pinocchio as pin
    model = pin_model
    assert model.nq == len(CONTRACT_JOINTS)
    for name in CONTRACT_JOINTS:
        assert model.existJointName(name), name
    q = pin.neutral(model)
    for side, sign in (('left', 1), ('right', -1)):
        sole = frame_position(model, f'{side}_sole', q).translation
        assert sole[2] == pytest.approx(0.0, abs=1e-9)  # feet on the floor in fixed-base mode
        shoulder = frame_position(model, f'{side}_shoulder_pitch_link', q).translation
        assert 1.3 <= shoulder[2] <= 1.45 and sign * shoulder[1] > 0.15
    head = frame_position(model, 'head_link', q).translation[2] + 0.08 + 0.10
    assert 1.6 <= head <= 1.8, f'height {head:.2f} m'
    # Arm length (shoulder to TCP, straight arm) between 0.7 and 0.85 m.
    tcp = frame_position(model, 'left_tcp', q).translation
    assert 0.7 <= np.linalg.norm(tcp - shoulder * [1, -1, 1]) <= 0.85


def test_tcp_and_camera_frames_follow_the_contract(pin_model):
    model = pin_model
    # Arm hanging down: the TCP's approach axis x points down, y is the finger closing axis.
    for side in ('left', 'right'):
        rot = frame_position(model, f'{side}_tcp').rotation
        assert rot[:, 0] == pytest.approx([0, 0, -1], abs=1e-9)
        assert rot[:, 1] == pytest.approx([0, 1, 0], abs=1e-9)
    # Optical frame: z forward (= camera link x), x right (= -y), y down (= -z) at neck zero.
    link = frame_position(model, 'head_camera_link').rotation
    optical = frame_position(model, 'head_camera_optical_frame').rotation
    assert optical[:, 2] == pytest.approx(link[:, 0], abs=1e-9)
    assert optical[:, 0] == pytest.approx(-link[:, 1], abs=1e-9)
    assert optical[:, 1] == pytest.approx(-link[:, 2], abs=1e-9)


def test_mujoco_compiles_the_urdf():
    import mujoco
    xml = rd.expand_xacro(mujoco=True)
    model = mujoco.MjModel.from_xml_string(xml)
    assert model.njnt == len(CONTRACT_JOINTS)
    names = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, i) for i in range(model.njnt)}
    assert names == set(CONTRACT_JOINTS)
    bodies = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, i) for i in range(model.nbody)}
    assert {'left_tcp', 'right_tcp', 'head_camera_optical_frame'} <= bodies
    assert float(model.body_mass.sum()) == pytest.approx(62.1, abs=0.5)


def test_standing_pose_is_within_limits_and_sets_the_ros2_control_initial_values(robot):
    pose = rd.standing_pose()
    assert list(pose) == rd.all_movable_joints()
    for name, value in pose.items():
        lim = robot.joint_map[name].limit
        assert lim.lower <= value <= lim.upper, name
    root = ET.fromstring(rd.expand_xacro())
    for joint in root.findall('ros2_control/joint'):
        initial = float(joint.find("state_interface[@name='position']/param").text)
        assert initial == pytest.approx(pose[joint.get('name')])


def test_controllers_yaml_matches_contract_and_urdf(robot):
    config = yaml.safe_load(rd.controllers_path().read_text())
    manager = config['controller_manager']['ros__parameters']
    trajectory = {name for name, value in manager.items()
                  if isinstance(value, dict) and value.get('type', '').startswith(
                      'joint_trajectory_controller/')}
    assert trajectory == CONTRACT_CONTROLLERS
    urdf_joints = {j.name for j in movable(robot)}
    claimed = []
    for name in trajectory:
        joints = config[name]['ros__parameters']['joints']
        assert joints == rd.CONTROLLER_JOINTS[name], name
        assert set(joints) <= urdf_joints, name
        claimed += joints
    assert len(claimed) == len(set(claimed)), 'a joint is claimed by two controllers'
    assert set(claimed) == set(rd.all_actuated_joints())
    # The ros2_control block offers a position command interface for each claimed joint.
    root = ET.fromstring(rd.expand_xacro())
    commanded = {j.get('name') for j in root.findall('ros2_control/joint')
                 if j.find("command_interface[@name='position']") is not None}
    assert commanded == set(claimed)


def test_missing_cell_file_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='cell file'):
        rd.expand_xacro(cell_file=tmp_path / 'nope.yaml')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        rd.expand_xacro(xacro_file=tmp_path / 'nope.urdf.xacro')


def test_head_camera_sees_every_table_slot_in_the_standing_pose(pin_model):
    """Each part slot projects inside the 640x480 image with a margin, hands out of view."""
    import pinocchio as pin
    model, cell = pin_model, load_cell()
    q = pin.neutral(model)
    for name, value in rd.standing_pose().items():
        q[model.idx_qs[model.getJointId(name)]] = value
    camera = frame_position(model, 'head_camera_optical_frame', q)
    fx, fy, cx, cy = cell.head_camera.intrinsics()

    def pixel(point):
        p = camera.rotation.T @ (np.asarray(point, dtype=float) - camera.translation)
        assert p[2] > 0
        return fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy

    margin = 40
    for x, y in cell.table.part_slots + (cell.review.pose.xyz[:2],):
        u, v = pixel((x, y, cell.table.top_z))
        assert margin <= u <= cell.head_camera.width - margin, (x, y, u)
        assert margin <= v <= cell.head_camera.height - margin, (x, y, v)
    for side in ('left', 'right'):
        tcp = frame_position(model, f'{side}_tcp', q).translation
        assert tcp[2] < cell.table.top_z - 0.1  # hands hang below the table top
