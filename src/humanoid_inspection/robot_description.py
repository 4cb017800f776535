"""The humanoid's description in Python: the xacro file, its expansion, joint groups, poses.

`expand_xacro()` runs the `xacro` Python package on urdf/humanoid.urdf.xacro, so no ROS
installation is needed: the xacro uses relative includes only (no ``$(find ...)``) and reads the
base pose, gripper and camera parameters and the standing pose from config/cell.yaml.
Pure Python, no ROS imports.

Example:
    >>> from humanoid_inspection import robot_description as rd
    >>> urdf = rd.expand_xacro()                    # fixed-base, real-hardware tags
    >>> import pinocchio as pin; model = pin.buildModelFromXML(urdf)
"""

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from humanoid_inspection.cell_geometry import CellGeometry, Pose, load_cell

PACKAGE = 'humanoid_inspection'
XACRO_FILE = 'humanoid.urdf.xacro'

SIDES = ('left', 'right')

LEG_JOINTS: Dict[str, List[str]] = {
    side: [f'{side}_{j}' for j in ('hip_yaw', 'hip_roll', 'hip_pitch', 'knee', 'ankle_pitch',
                                   'ankle_roll')]
    for side in SIDES
}
WAIST_JOINTS: List[str] = ['waist_yaw']
HEAD_JOINTS: List[str] = ['neck_yaw', 'neck_pitch']
ARM_JOINTS: Dict[str, List[str]] = {
    side: [f'{side}_{j}' for j in ('shoulder_pitch', 'shoulder_roll', 'shoulder_yaw', 'elbow',
                                   'wrist_yaw', 'wrist_pitch', 'wrist_roll')]
    for side in SIDES
}
# The commanded finger joint of each gripper (metres of travel per finger; opening = 2 x value).
GRIPPER_JOINTS: Dict[str, str] = {side: f'{side}_finger_joint' for side in SIDES}
# The mimicking finger of each gripper (same travel, opposite direction; never commanded).
GRIPPER_MIMIC_JOINTS: Dict[str, str] = {side: f'{side}_finger_mirror_joint' for side in SIDES}

TCP_FRAMES: Dict[str, str] = {side: f'{side}_tcp' for side in SIDES}
BASE_FRAME = 'base_link'
WORLD_FRAME = 'world'
CAMERA_FRAME = 'head_camera_link'
CAMERA_OPTICAL_FRAME = 'head_camera_optical_frame'

# controller name -> joints (config/controllers.yaml; CONTRACTS.md).
CONTROLLER_JOINTS: Dict[str, List[str]] = {
    'left_arm_controller': ARM_JOINTS['left'],
    'right_arm_controller': ARM_JOINTS['right'],
    'waist_controller': WAIST_JOINTS,
    'head_controller': HEAD_JOINTS,
    'left_gripper_controller': [GRIPPER_JOINTS['left']],
    'right_gripper_controller': [GRIPPER_JOINTS['right']],
    'legs_controller': LEG_JOINTS['left'] + LEG_JOINTS['right'],
}


def all_actuated_joints() -> List[str]:
    """Returns every commanded joint (legs, waist, head, arms, finger masters), in URDF order.

    The mimic fingers (GRIPPER_MIMIC_JOINTS) are not included.
    """
    return (LEG_JOINTS['left'] + LEG_JOINTS['right'] + WAIST_JOINTS + HEAD_JOINTS
            + ARM_JOINTS['left'] + ARM_JOINTS['right'] + [GRIPPER_JOINTS[s] for s in SIDES])


def all_movable_joints() -> List[str]:
    """Returns every non-fixed joint of the URDF (the actuated ones plus the mimic fingers)."""
    return all_actuated_joints() + [GRIPPER_MIMIC_JOINTS[s] for s in SIDES]


def package_root() -> Path:
    """Returns the folder holding urdf/ and config/: the source tree, else the install share.

    Raises:
        FileNotFoundError: when neither the source tree nor the ament index has the package.
    """
    source = Path(__file__).resolve().parents[2]
    if (source / 'urdf' / XACRO_FILE).is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # ament_index missing or package not installed
        raise FileNotFoundError(
            f'cannot find urdf/{XACRO_FILE}: not in {source} and {PACKAGE} is not in the '
            'ament index') from exc
    if not (share / 'urdf' / XACRO_FILE).is_file():
        raise FileNotFoundError(f'cannot find urdf/{XACRO_FILE} in {source} or {share}')
    return share


def urdf_path() -> Path:
    """Returns the path of urdf/humanoid.urdf.xacro."""
    return package_root() / 'urdf' / XACRO_FILE


def controllers_path() -> Path:
    """Returns the path of config/controllers.yaml."""
    return package_root() / 'config' / 'controllers.yaml'


def expand_xacro(use_gazebo: bool = False, fixed_base: bool = True, mujoco: bool = False,
                 cell_file: Optional[Union[str, Path]] = None,
                 controllers_file: Optional[Union[str, Path]] = None,
                 hardware_plugin: str = 'mock_components/GenericSystem',
                 xacro_file: Optional[Union[str, Path]] = None) -> str:
    """Expands the humanoid's xacro into URDF XML.

    Args:
        use_gazebo: add the Gazebo sensor/plugin tags and the gz_ros2_control hardware.
        fixed_base: weld base_link to `world` at the cell's robot.base_xyz / base_rpy.
        mujoco: add the <mujoco><compiler/></mujoco> block MuJoCo needs to compile the URDF
            directly (fixed frames such as left_tcp kept as bodies).
        cell_file: cell geometry YAML (default: the package's config/cell.yaml).
        controllers_file: ros2_control parameters for gz_ros2_control (default: the package's
            config/controllers.yaml, as an absolute path).
        hardware_plugin: ros2_control hardware plugin when use_gazebo is False.
        xacro_file: the xacro to expand (default: `urdf_path()`).

    Returns:
        The URDF XML string.

    Raises:
        FileNotFoundError: when the xacro or the cell file does not exist.
        RuntimeError: when xacro fails (the message carries xacro's reason).
    """
    import xacro

    path = Path(xacro_file) if xacro_file is not None else urdf_path()
    if not path.is_file():
        raise FileNotFoundError(f'robot description {path} does not exist')
    cell = Path(cell_file) if cell_file is not None else package_root() / 'config' / 'cell.yaml'
    if not cell.is_file():
        raise FileNotFoundError(f'cell file {cell} does not exist')
    load_cell(cell)  # validates with a clear message before xacro reads it
    controllers = Path(controllers_file) if controllers_file else controllers_path()
    mappings = {
        'use_gazebo': str(bool(use_gazebo)).lower(),
        'fixed_base': str(bool(fixed_base)).lower(),
        'mujoco': str(bool(mujoco)).lower(),
        'cell_file': str(cell.resolve()),
        'controllers_file': str(controllers.resolve()),
        'hardware_plugin': hardware_plugin,
    }
    try:
        document = xacro.process_file(str(path), mappings=mappings)
    except Exception as exc:  # xacro raises XacroException and plain errors alike
        raise RuntimeError(f'xacro failed on {path}: {exc}') from exc
    return document.toprettyxml(indent='  ')


def standing_pose(cell: Optional[CellGeometry] = None) -> Dict[str, float]:
    """Returns the standing pose (joint -> rad, or m per finger) from config/cell.yaml.

    Args:
        cell: a loaded cell (default: `load_cell()`).

    Raises:
        ValueError: when the cell's standing pose misses or adds joints.
    """
    cell = cell or load_cell()
    pose = dict(cell.robot.standing_pose)
    expected = set(all_movable_joints())
    missing, extra = sorted(expected - set(pose)), sorted(set(pose) - expected)
    if missing or extra:
        raise ValueError(f'{cell.source}: robot.standing_pose must list exactly the robot\'s '
                         f'movable joints; missing {missing}, unknown {extra}')
    return {name: pose[name] for name in all_movable_joints()}


def base_pose(cell: Optional[CellGeometry] = None) -> Pose:
    """Returns world <- base_link in fixed-base mode (robot.base_xyz / base_rpy of cell.yaml)."""
    return (cell or load_cell()).robot.pose


def base_xyz_rpy(cell: Optional[CellGeometry] = None) -> Tuple[Tuple[float, float, float],
                                                              Tuple[float, float, float]]:
    """Returns (xyz, rpy) of base_link in world."""
    pose = base_pose(cell)
    return pose.xyz, pose.rpy
