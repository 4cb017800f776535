"""The inspection cell's geometry, loaded and validated from config/cell.yaml.

config/cell.yaml is the single source of truth for where things are in the cell (metres,
radians, `world` frame: floor under the robot, x forward, y left, z up). The MuJoCo scene,
worlds/inspection_cell.sdf, the planner's collision objects and the place poses are all built
from the `CellGeometry` returned by `load_cell()`. Pure Python (PyYAML + numpy), no ROS.

Every validation error names the offending key, e.g.
``cell.yaml: table.size[2] must be > 0 (got -0.04)``.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

PACKAGE = 'humanoid_inspection'
CELL_FILE = 'cell.yaml'

Vec2 = Tuple[float, float]
Vec3 = Tuple[float, float, float]


class CellConfigError(ValueError):
    """config/cell.yaml is missing, unreadable or has a bad value (the message names the key)."""


@dataclass(frozen=True)
class Pose:
    """A pose in the world frame.

    Attributes:
        xyz: position, m.
        rpy: fixed-axis roll, pitch, yaw (URDF convention: R = Rz(yaw) Ry(pitch) Rx(roll)), rad.
    """

    xyz: Vec3
    rpy: Vec3 = (0.0, 0.0, 0.0)

    def rotation(self) -> np.ndarray:
        """Returns the 3x3 rotation matrix of rpy."""
        return rpy_to_matrix(self.rpy)

    def matrix(self) -> np.ndarray:
        """Returns the 4x4 homogeneous transform world <- this pose."""
        out = np.eye(4)
        out[:3, :3] = self.rotation()
        out[:3, 3] = self.xyz
        return out


@dataclass(frozen=True)
class RobotBase:
    """Where base_link (the pelvis) is welded to world in fixed-base mode, and its stance.

    Attributes:
        pose: world <- base_link.
        standing_pose: joint name -> position (rad, or m per finger for the finger joints).
    """

    pose: Pose
    standing_pose: Tuple[Tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Table:
    """The part table. pose = centre of the top surface; size = slab extents (x, y, z)."""

    pose: Pose
    size: Vec3
    leg_size: float
    part_slots: Tuple[Vec2, ...]
    slot_size: Vec2

    @property
    def top_z(self) -> float:
        """Height of the table top, m."""
        return self.pose.xyz[2]

    def slot_pose(self, index: int) -> Pose:
        """Returns the pose of part slot `index` on the table top (z = top surface).

        Raises:
            IndexError: when the slot does not exist.
        """
        if not 0 <= index < len(self.part_slots):
            raise IndexError(f'table has {len(self.part_slots)} part slots, no slot {index}')
        x, y = self.part_slots[index]
        return Pose((x, y, self.top_z), self.pose.rpy)


@dataclass(frozen=True)
class Fixture:
    """The X-ray part seat. pose = centre of the seat's top surface (where the part rests)."""

    pose: Pose
    size: Vec3


@dataclass(frozen=True)
class XrayCabinet:
    """The shielded X-ray cabinet with an open loading port facing the robot.

    pose = centre of the cabinet footprint on the floor; size = outer (x, y, height).
    """

    pose: Pose
    size: Vec3
    wall_thickness: float
    base_height: float
    open_side: str
    fixture: Fixture
    source_to_object_mm: float
    source_to_detector_mm: float


@dataclass(frozen=True)
class Bin:
    """An open-top bin on a stand. pose = centre of the inner bottom surface."""

    name: str
    pose: Pose
    inner_size: Vec2
    wall_height: float
    wall_thickness: float
    colour: Tuple[float, float, float, float]

    def drop_pose(self, clearance: float = 0.05) -> Pose:
        """Returns the point above the bin's rim from which a part is released.

        Args:
            clearance: height above the rim, m.
        """
        x, y, z = self.pose.xyz
        return Pose((x, y, z + self.wall_height + clearance), self.pose.rpy)


@dataclass(frozen=True)
class ReviewLocation:
    """Tray on which REVIEW parts are set down. pose = centre of the tray surface."""

    pose: Pose
    size: Vec2


@dataclass(frozen=True)
class HeadCameraConfig:
    """The head RGB-D camera (depth registered to colour, same intrinsics)."""

    width: int
    height: int
    horizontal_fov: float
    near: float
    far: float
    rate_hz: float

    def intrinsics(self) -> Tuple[float, float, float, float]:
        """Returns (fx, fy, cx, cy) of the pinhole model, pixels (square pixels)."""
        fx = self.width / (2.0 * math.tan(self.horizontal_fov / 2.0))
        return fx, fx, (self.width - 1) / 2.0, (self.height - 1) / 2.0

    @property
    def vertical_fov(self) -> float:
        """Vertical field of view, rad."""
        return 2.0 * math.atan(math.tan(self.horizontal_fov / 2.0) * self.height / self.width)


@dataclass(frozen=True)
class GripperConfig:
    """The parallel grippers (both hands alike)."""

    max_opening_m: float
    finger_length_m: float
    finger_width_m: float
    max_force_n: float
    tcp_offset_m: float

    @property
    def finger_travel_m(self) -> float:
        """Travel of one finger (finger_joint upper limit), m."""
        return self.max_opening_m / 2.0


@dataclass(frozen=True)
class CellGeometry:
    """Everything in config/cell.yaml, validated."""

    robot: RobotBase
    table: Table
    xray_cabinet: XrayCabinet
    accept_bin: Bin
    reject_bin: Bin
    review: ReviewLocation
    head_camera: HeadCameraConfig
    gripper: GripperConfig
    source: str = ''

    def bins(self) -> Dict[str, Bin]:
        """Returns the bins by verdict name ('accept', 'reject')."""
        return {'accept': self.accept_bin, 'reject': self.reject_bin}

    def world_to_base(self, xyz: Sequence[float]) -> np.ndarray:
        """Returns a world point expressed in base_link (fixed-base mode).

        Args:
            xyz: point in the world frame, m.
        """
        transform = np.linalg.inv(self.robot.pose.matrix())
        return transform[:3, :3] @ np.asarray(xyz, dtype=float) + transform[:3, 3]


def rpy_to_matrix(rpy: Sequence[float]) -> np.ndarray:
    """Returns R = Rz(yaw) Ry(pitch) Rx(roll) (the URDF / SDF convention).

    Args:
        rpy: roll, pitch, yaw, rad.
    """
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def xy_in_frame(point_xy: Sequence[float], origin_xy: Sequence[float],
                yaw: float) -> np.ndarray:
    """A world point's (x, y) in the planar frame at origin_xy turned by yaw (rad)."""
    d = np.asarray(point_xy, float)[:2] - np.asarray(origin_xy, float)[:2]
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])


# ----------------------------------------------------------------------------- file lookup

def default_cell_path() -> Path:
    """Returns the package's config/cell.yaml: the source tree first, then the install.

    Looks in the repository (``<repo>/config`` next to ``src/``), then in
    ``share/humanoid_inspection/config`` through the ament index when it is available.

    Raises:
        CellConfigError: when neither exists.
    """
    source = Path(__file__).resolve().parents[2] / 'config' / CELL_FILE
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE)) / 'config' / CELL_FILE
        if installed.is_file():
            return installed
    except Exception:  # ament_index missing or package not in the index
        installed = None
    raise CellConfigError(
        f'cannot find {CELL_FILE}: looked in {source} and the ament index '
        f'(share/{PACKAGE}/config; found {installed})')


# ----------------------------------------------------------------------------- validation

class _Reader:
    """Typed access to a YAML mapping, raising CellConfigError that names the key path."""

    def __init__(self, data: Any, path: str, source: str):
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail(path, f'must be a mapping (got {type(data).__name__})')
        self.data = data

    def fail(self, key: str, message: str):
        raise CellConfigError(f'{self.source}: {key} {message}')

    def key(self, name: str) -> str:
        return f'{self.path}.{name}' if self.path else name

    def raw(self, name: str, default: Any = ...) -> Any:
        if name not in self.data:
            if default is not ...:
                return default
            self.fail(self.key(name), 'is missing')
        return self.data[name]

    def sub(self, name: str) -> '_Reader':
        return _Reader(self.raw(name), self.key(name), self.source)

    def number(self, name: str, default: Any = ..., positive: bool = False,
               non_negative: bool = False) -> float:
        return _number(self.raw(name, default), self.key(name), self.source,
                       positive, non_negative)

    def vector(self, name: str, length: int, default: Any = ..., positive: bool = False,
               ) -> Tuple[float, ...]:
        return _vector(self.raw(name, default), self.key(name), length, self.source, positive)

    def pose(self, xyz: str = 'xyz', rpy: str = 'rpy') -> Pose:
        return Pose(self.vector(xyz, 3), self.vector(rpy, 3, default=[0.0, 0.0, 0.0]))

    def unknown_keys(self, allowed: Sequence[str]):
        extra = sorted(set(self.data) - set(allowed))
        if extra:
            self.fail(self.path or 'top level', f'has unknown key(s) {extra}; allowed: '
                      f'{sorted(allowed)}')


def _number(value: Any, key: str, source: str, positive: bool = False,
            non_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CellConfigError(f'{source}: {key} must be a number (got {value!r})')
    value = float(value)
    if not math.isfinite(value):
        raise CellConfigError(f'{source}: {key} must be finite (got {value!r})')
    if positive and value <= 0.0:
        raise CellConfigError(f'{source}: {key} must be > 0 (got {value!r})')
    if non_negative and value < 0.0:
        raise CellConfigError(f'{source}: {key} must be >= 0 (got {value!r})')
    return value


def _vector(value: Any, key: str, length: int, source: str, positive: bool = False,
            ) -> Tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise CellConfigError(
            f'{source}: {key} must be a list of {length} numbers (got {value!r})')
    return tuple(_number(v, f'{key}[{i}]', source, positive) for i, v in enumerate(value))


def _read_bin(reader: _Reader, name: str) -> Bin:
    sub = reader.sub(name)
    sub.unknown_keys(['xyz', 'rpy', 'inner_size', 'wall_height', 'wall_thickness', 'colour'])
    colour = sub.vector('colour', 4, default=[0.5, 0.5, 0.5, 1.0])
    for i, c in enumerate(colour):
        if not 0.0 <= c <= 1.0:
            sub.fail(f'{sub.key("colour")}[{i}]', f'must be in [0, 1] (got {c!r})')
    return Bin(name=name.replace('_bin', ''), pose=sub.pose(),
               inner_size=sub.vector('inner_size', 2, positive=True),
               wall_height=sub.number('wall_height', positive=True),
               wall_thickness=sub.number('wall_thickness', positive=True),
               colour=colour)


def parse_cell(data: Any, source: str = CELL_FILE) -> CellGeometry:
    """Validates a parsed cell.yaml mapping and builds the CellGeometry.

    Args:
        data: the YAML document (a dict).
        source: name used in error messages.

    Returns:
        The validated geometry.

    Raises:
        CellConfigError: on a missing key, wrong type, non-finite or out-of-range value; the
            message names the key (e.g. ``table.part_slots[3][0]``).
    """
    top = _Reader(data, '', source)
    top.unknown_keys(['robot', 'table', 'xray_cabinet', 'accept_bin', 'reject_bin', 'review',
                      'head_camera', 'gripper'])

    robot = top.sub('robot')
    robot.unknown_keys(['base_xyz', 'base_rpy', 'standing_pose'])
    stance = robot.raw('standing_pose')
    if not isinstance(stance, dict) or not stance:
        robot.fail('robot.standing_pose', f'must be a mapping joint -> position (got {stance!r})')
    stance_items = tuple((str(name), _number(value, f'robot.standing_pose.{name}', source))
                         for name, value in stance.items())
    robot_base = RobotBase(robot.pose('base_xyz', 'base_rpy'), stance_items)
    if robot_base.pose.xyz[2] <= 0.0:
        robot.fail('robot.base_xyz[2]', f'must be > 0 (got {robot_base.pose.xyz[2]!r})')

    tab = top.sub('table')
    tab.unknown_keys(['xyz', 'rpy', 'size', 'leg_size', 'part_slots', 'slot_size'])
    size = tab.vector('size', 3, positive=True)
    pose = tab.pose()
    slots_raw = tab.raw('part_slots')
    if not isinstance(slots_raw, list) or not slots_raw:
        tab.fail('table.part_slots', f'must be a non-empty list of [x, y] (got {slots_raw!r})')
    slots = tuple(_vector(s, f'table.part_slots[{i}]', 2, source)
                  for i, s in enumerate(slots_raw))
    local = np.linalg.inv(pose.matrix())
    for i, (x, y) in enumerate(slots):
        p = local[:3, :3] @ np.array([x, y, pose.xyz[2]]) + local[:3, 3]
        if abs(p[0]) > size[0] / 2 or abs(p[1]) > size[1] / 2:
            tab.fail(f'table.part_slots[{i}]', f'= [{x}, {y}] is off the table top')
    table = Table(pose=pose, size=size, leg_size=tab.number('leg_size', positive=True),
                  part_slots=slots, slot_size=tab.vector('slot_size', 2, positive=True))

    cab = top.sub('xray_cabinet')
    cab.unknown_keys(['xyz', 'rpy', 'size', 'wall_thickness', 'base_height', 'open_side',
                      'fixture', 'source_to_object_mm', 'source_to_detector_mm'])
    fix = cab.sub('fixture')
    fix.unknown_keys(['xyz', 'rpy', 'size'])
    fixture = Fixture(fix.pose(), fix.vector('size', 3, positive=True))
    open_side = cab.raw('open_side')
    if open_side not in ('+x', '-x', '+y', '-y'):
        cab.fail('xray_cabinet.open_side', f"must be one of '+x', '-x', '+y', '-y' "
                 f'(got {open_side!r})')
    cabinet = XrayCabinet(
        pose=cab.pose(), size=cab.vector('size', 3, positive=True),
        wall_thickness=cab.number('wall_thickness', positive=True),
        base_height=cab.number('base_height', positive=True), open_side=open_side,
        fixture=fixture,
        source_to_object_mm=cab.number('source_to_object_mm', positive=True),
        source_to_detector_mm=cab.number('source_to_detector_mm', positive=True))
    if cabinet.base_height >= cabinet.size[2]:
        cab.fail('xray_cabinet.base_height', f'must be below the cabinet height '
                 f'{cabinet.size[2]} (got {cabinet.base_height})')
    if cabinet.source_to_detector_mm <= cabinet.source_to_object_mm:
        cab.fail('xray_cabinet.source_to_detector_mm', 'must exceed source_to_object_mm')
    seat_bottom = fixture.pose.xyz[2] - fixture.size[2]
    floor = cabinet.pose.xyz[2] + cabinet.base_height
    if abs(seat_bottom - floor) > 1e-6:
        fix.fail('xray_cabinet.fixture.xyz[2]', f'must put the seat on the chamber floor: '
                 f'xyz[2] - size[2] = {seat_bottom:.4f} != base_height {floor:.4f}')

    review = top.sub('review')
    review.unknown_keys(['xyz', 'rpy', 'size'])
    review_loc = ReviewLocation(review.pose(), review.vector('size', 2, positive=True))

    cam = top.sub('head_camera')
    cam.unknown_keys(['width', 'height', 'horizontal_fov', 'near', 'far', 'rate_hz'])
    width, height = cam.raw('width'), cam.raw('height')
    for key, value in (('width', width), ('height', height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            cam.fail(f'head_camera.{key}', f'must be a positive integer (got {value!r})')
    fov = cam.number('horizontal_fov', positive=True)
    if fov >= math.pi:
        cam.fail('head_camera.horizontal_fov', f'must be < pi rad (got {fov!r})')
    near, far = cam.number('near', positive=True), cam.number('far', positive=True)
    if far <= near:
        cam.fail('head_camera.far', f'must exceed near ({near}) (got {far!r})')
    camera = HeadCameraConfig(width, height, fov, near, far, cam.number('rate_hz', positive=True))

    grip = top.sub('gripper')
    grip.unknown_keys(['max_opening_m', 'finger_length_m', 'finger_width_m', 'max_force_n',
                       'tcp_offset_m'])
    gripper = GripperConfig(
        max_opening_m=grip.number('max_opening_m', positive=True),
        finger_length_m=grip.number('finger_length_m', positive=True),
        finger_width_m=grip.number('finger_width_m', positive=True),
        max_force_n=grip.number('max_force_n', positive=True),
        tcp_offset_m=grip.number('tcp_offset_m', positive=True))
    if gripper.max_opening_m > 0.3:
        grip.fail('gripper.max_opening_m', f'must be <= 0.3 m (got {gripper.max_opening_m})')

    return CellGeometry(robot=robot_base, table=table, xray_cabinet=cabinet,
                        accept_bin=_read_bin(top, 'accept_bin'),
                        reject_bin=_read_bin(top, 'reject_bin'),
                        review=review_loc, head_camera=camera, gripper=gripper, source=source)


def load_cell(path: Optional[Union[str, Path]] = None) -> CellGeometry:
    """Loads and validates config/cell.yaml.

    Args:
        path: the YAML file; None = the package's config/cell.yaml (`default_cell_path()`).

    Returns:
        The validated CellGeometry.

    Raises:
        CellConfigError: when the file is missing, is not valid YAML, or has a bad value (the
            message names the file and the key).
    """
    path = Path(path) if path is not None else default_cell_path()
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise CellConfigError(f'cannot read cell file {path}: {exc}') from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CellConfigError(f'{path}: not valid YAML: {exc}') from exc
    return parse_cell(data, source=str(path))


def as_dict(cell: CellGeometry) -> Dict[str, Any]:
    """Returns a plain-dict summary (for logs and docs)."""
    from dataclasses import asdict
    return asdict(cell)


__all__: List[str] = [
    'Bin', 'CellConfigError', 'CellGeometry', 'Fixture', 'GripperConfig', 'HeadCameraConfig',
    'Pose', 'ReviewLocation', 'RobotBase', 'Table', 'XrayCabinet', 'default_cell_path',
    'load_cell', 'parse_cell', 'rpy_to_matrix', 'as_dict',
]
