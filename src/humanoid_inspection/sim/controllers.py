"""Controller names and joints from config/controllers.yaml (ros2_control format), no ROS.

The file is the controller_manager's parameter file: `controller_manager.ros__parameters`
lists the controllers with their `type`, and each controller's own `ros__parameters` block
names its joints (`joints: [...]`, or `joint: name` for a gripper action controller).
Broadcasters (no joints) are skipped. The simulation accepts a trajectory_msgs/JointTrajectory
on `<controller>/joint_trajectory` for every controller found here.
"""

from pathlib import Path
from typing import Dict, List, Optional, Union

import yaml

CONTROLLERS_FILE = 'controllers.yaml'


class ControllerConfigError(ValueError):
    """controllers.yaml is missing, unreadable or malformed (the message says where)."""


def default_controllers_path() -> Path:
    """config/controllers.yaml of the source tree or the installed package."""
    source = Path(__file__).resolve().parents[3] / 'config' / CONTROLLERS_FILE
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('humanoid_inspection')) / 'config' / \
            CONTROLLERS_FILE
    except Exception:  # ament index missing / package not installed
        return source


def parse_controllers(data, source: str = CONTROLLERS_FILE) -> Dict[str, List[str]]:
    """controller name -> joints from a parsed controllers.yaml.

    Raises:
        ControllerConfigError: no controller_manager block, a controller without a
            parameter block, or joints that are not a list of names.
    """
    if not isinstance(data, dict):
        raise ControllerConfigError(f'{source}: top level must be a mapping')
    try:
        declared = data['controller_manager']['ros__parameters']
    except (KeyError, TypeError):
        raise ControllerConfigError(
            f'{source}: missing controller_manager.ros__parameters') from None
    out: Dict[str, List[str]] = {}
    for name, value in declared.items():
        if not isinstance(value, dict) or 'type' not in value:
            continue
        if 'broadcaster' in str(value['type']):
            continue
        block = (data.get(name) or {}).get('ros__parameters') if isinstance(
            data.get(name), dict) else None
        if block is None:
            raise ControllerConfigError(f'{source}: controller {name} has no ros__parameters')
        joints = block.get('joints', block.get('joint'))
        if isinstance(joints, str):
            joints = [joints]
        if not isinstance(joints, list) or not joints or \
                not all(isinstance(j, str) and j for j in joints):
            raise ControllerConfigError(
                f'{source}: {name}.ros__parameters.joints must be a list of joint names '
                f'(got {joints!r})')
        out[name] = list(joints)
    if not out:
        raise ControllerConfigError(f'{source}: declares no controller with joints')
    return out


def load_controllers(path: Optional[Union[str, Path]] = None) -> Dict[str, List[str]]:
    """controller name -> joints from controllers.yaml (default: the package's).

    Raises:
        ControllerConfigError: the file cannot be read or is malformed.
    """
    path = Path(path) if path else default_controllers_path()
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except OSError as exc:
        raise ControllerConfigError(f'cannot read controller file {path}: {exc}') from exc
    except yaml.YAMLError as exc:
        raise ControllerConfigError(f'{path}: not valid YAML: {exc}') from exc
    return parse_controllers(data, str(path))
