"""The nodes of the stack, in one place: executables, node names, parameter files.

Read by launch/bringup.launch.py and launch/sim_mujoco.launch.py (ros2 launch on a
workstation), by launch/sim_gazebo.launch.py, and by the process launcher used on machines
without `ros2 launch` (humanoid-inspection launch, the demo and the tests). No ROS imports.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

PACKAGE = 'humanoid_inspection'


@dataclass(frozen=True)
class NodeSpec:
    """One node process of the stack.

    Attributes:
        executable: console script of this package (setup.py entry point).
        name: ROS node name (also the top-level key of its parameter file).
        param_files: parameter files, relative to the package's config/ folder.
        robot: True if it also runs on the real robot (mujoco_sim does not).
    """

    executable: str
    name: str
    param_files: Tuple[str, ...] = field(default_factory=tuple)
    robot: bool = True


SIM_NODE = NodeSpec('mujoco_sim', 'mujoco_sim', ('mujoco_sim.yaml',), robot=False)
APP_NODES: Tuple[NodeSpec, ...] = (
    NodeSpec('perception', 'perception', ('perception.yaml',)),
    NodeSpec('affordance', 'affordance', ('affordance.yaml',)),
    NodeSpec('xray_inspection', 'xray_inspection', ('xray_inspection.yaml',)),
    NodeSpec('manipulation', 'manipulation', ('manipulation.yaml',)),
    NodeSpec('cell_manager', 'cell_manager', ('cell_manager.yaml',)),
)
ALL_NODES: Tuple[NodeSpec, ...] = (SIM_NODE,) + APP_NODES


def source_root() -> Path:
    """The repository root when running from the source tree (src/ layout)."""
    return Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """The package's config/ folder: source tree first, then the installed share folder."""
    candidate = source_root() / 'config'
    if candidate.is_dir():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / 'config'
    except Exception as exc:  # PackageNotFoundError or ament_index missing
        raise FileNotFoundError(
            f'cannot find the config/ folder of {PACKAGE} (looked in {candidate} and the '
            'ament index)') from exc


def nodes_by_name(names: Optional[Sequence[str]] = None) -> List[NodeSpec]:
    """The specs with the given node names (all nodes when names is None), in stack order."""
    if names is None:
        return list(ALL_NODES)
    known = {spec.name: spec for spec in ALL_NODES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown node(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [spec for spec in ALL_NODES if spec.name in names]


def ros_arguments(spec: NodeSpec, use_sim_time: bool, configs: Optional[Path] = None,
                  extra_params: Optional[Dict[str, object]] = None,
                  extra_param_files: Sequence[Path] = ()) -> List[str]:
    """The `--ros-args ...` part of a node's command line."""
    configs = configs or config_dir()
    args = ['--ros-args', '-r', f'__node:={spec.name}']
    for name in spec.param_files:
        args += ['--params-file', str(configs / name)]
    for path in extra_param_files:
        args += ['--params-file', str(path)]
    args += ['-p', f'use_sim_time:={"true" if use_sim_time else "false"}']
    for key, value in (extra_params or {}).items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        args += ['-p', f'{key}:={value}']
    return args


def executable_path(spec: NodeSpec) -> str:
    """Absolute path of the node's console script next to the running interpreter, or its name."""
    import sys
    candidate = Path(sys.executable).parent / spec.executable
    if candidate.exists():
        return str(candidate)
    return spec.executable if os.sep not in spec.executable else str(candidate)
