"""One call from files to a ready Simulation (used by the node, the tests and the benchmark).

Every way the inputs can be wrong ends in `SimSetupError` whose message names the file and
the reason: an unreadable or invalid URDF/xacro, cell.yaml or controllers.yaml, controllers
naming joints the robot lacks, more parts than table slots.
"""

from pathlib import Path
from typing import Optional, Union

from humanoid_inspection.sim.scene import SceneError, SceneOptions, build_scene
from humanoid_inspection.sim.simulation import Simulation

PathLike = Optional[Union[str, Path]]


class SimSetupError(RuntimeError):
    """The simulation cannot be built; the message says which file and why."""


def read_robot_description(urdf_path: PathLike = None, cell_path: PathLike = None) -> str:
    """The URDF XML: expand the package xacro (default), a given .xacro, or read a .urdf.

    Raises:
        SimSetupError: the file is missing/unreadable or xacro fails.
    """
    from humanoid_inspection import robot_description
    try:
        if not urdf_path or str(urdf_path).endswith('.xacro'):
            return robot_description.expand_xacro(
                xacro_file=urdf_path or None, cell_file=cell_path or None)
        return Path(urdf_path).read_text(encoding='utf-8')
    except (OSError, RuntimeError, ValueError) as exc:
        raise SimSetupError(f'cannot read the robot description '
                            f"{urdf_path or robot_description.urdf_path()}: {exc}") from exc


def load_simulation(urdf_path: PathLike = None, cell_path: PathLike = None,
                    controllers_path: PathLike = None, num_parts: int = 6, seed: int = 0,
                    defect_probability: Optional[float] = None,
                    options: SceneOptions = SceneOptions(), interpolation: str = 'splines',
                    fixture_part: int = -1) -> Simulation:
    """Build the cell simulation from its files.

    Args:
        urdf_path: URDF or xacro file ('' / None = the package's humanoid.urdf.xacro).
        cell_path: cell.yaml (None = the package's).
        controllers_path: controllers.yaml (None = the package's).
        num_parts: parts on the table (0..number of slots).
        seed: master seed of the parts (families, phantoms, defects, yaw).
        defect_probability: phantom defect probability (None = phantom default).
        options: SceneOptions.
        interpolation: trajectory interpolation ('splines' or 'linear').
        fixture_part: index of a part to start in the X-ray fixture (-1 = none).

    Raises:
        SimSetupError: with the file and the reason.
    """
    from humanoid_inspection import robot_description
    from humanoid_inspection.cell_geometry import CellConfigError, load_cell
    from humanoid_inspection.sim.controllers import ControllerConfigError, load_controllers
    from humanoid_inspection.sim.parts import plan_parts
    try:
        cell = load_cell(cell_path or None)
    except CellConfigError as exc:
        raise SimSetupError(f'cell file: {exc}') from exc
    urdf = read_robot_description(urdf_path, cell_path)
    try:
        controllers = load_controllers(controllers_path or None)
    except ControllerConfigError as exc:
        raise SimSetupError(f'controllers file: {exc}') from exc
    try:
        parts = plan_parts(int(num_parts), int(seed), len(cell.table.part_slots),
                           defect_probability=defect_probability)
    except ValueError as exc:
        raise SimSetupError(f'parts: {exc}') from exc
    try:
        standing = robot_description.standing_pose(cell)
    except (ValueError, AttributeError):
        standing = {}
    try:
        scene = build_scene(urdf, cell, parts, standing, options)
        sim = Simulation(scene, controllers, interpolation=interpolation)
    except (SceneError, ValueError) as exc:
        raise SimSetupError(f'simulation model: {exc}') from exc
    if fixture_part >= 0:
        if fixture_part >= len(parts):
            raise SimSetupError(f'fixture_part {fixture_part} but only {len(parts)} parts')
        place_in_fixture(sim, parts[fixture_part].part_id)
    return sim


def place_in_fixture(sim: Simulation, part_id: str, offset_xy=(0.0, 0.0),
                     yaw: float = 0.0) -> None:
    """Teleport a part onto the X-ray fixture seat (test/demo helper) and let it settle."""
    import math
    f = sim.scene.fixture_pose
    xyz = f[:3, :3] @ [offset_xy[0], offset_xy[1], 0.0005] + f[:3, 3]
    sim.set_part_pose(part_id, xyz, yaw + math.atan2(f[1, 0], f[0, 0]))
    sim.step(int(0.2 / sim.timestep))
