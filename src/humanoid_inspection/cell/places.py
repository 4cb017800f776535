"""Where the cell puts a part: place poses for the fixture, the bins and the review location.

A place pose is "where the grasp point goes" (PickPlace.action), in the robot base frame. The
part keeps the orientation it was grasped with; the grasp point keeps its height above the face
the part rests on, so the part lands on the target surface (plus a small drop clearance), and
its offset from the part's centre (``Grasp.offset_xy``), so the part's centre lands on the
target's centre (a housing grasped by a wall sat 40 mm off the X-ray seat otherwise).
Geometry comes from config/cell.yaml through ``humanoid_inspection.cell_geometry`` (adapter
:func:`targets_from_cell`); this module itself only does the frame arithmetic (numpy/scipy).
"""

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_inspection.cell.cycle import Grasp
from humanoid_inspection.cell_geometry import xy_in_frame

DESTINATIONS = ('fixture', 'accept_bin', 'reject_bin', 'review')


@dataclass(frozen=True)
class Target:
    """A place target in the world frame: centre of the surface the part rests on."""

    name: str
    xyz: Tuple[float, float, float]     # world frame (m); z = height of the resting surface
    drop_m: float = 0.01                # clearance above the surface when the gripper opens


def pose_matrix(xyz, rpy) -> np.ndarray:
    """4x4 transform from a translation (m) and roll-pitch-yaw (rad, extrinsic xyz)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler('xyz', rpy).as_matrix()
    m[:3, 3] = xyz
    return m


def pose_from_quaternion(xyz, quat_xyzw) -> np.ndarray:
    """4x4 transform from a translation (m) and a unit quaternion (x, y, z, w)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(np.asarray(quat_xyzw, float)).as_matrix()
    m[:3, 3] = np.asarray(xyz, float)
    return m


class PlaceTargets:
    """Place poses in the robot base frame for the cell's destinations.

    Args:
        world_T_base: 4x4 pose of base_link in the world.
        table_top_z: height of the table top in the world (m): parts are grasped there.
        targets: destination name -> Target (needs every name in DESTINATIONS).

    Raises:
        ValueError: a destination is missing or the transform is not a rigid 4x4.
    """

    def __init__(self, world_T_base: np.ndarray, table_top_z: float,
                 targets: Dict[str, Target]):
        world_T_base = np.asarray(world_T_base, dtype=float)
        if world_T_base.shape != (4, 4) or not np.allclose(
                world_T_base[:3, :3] @ world_T_base[:3, :3].T, np.eye(3), atol=1e-6):
            raise ValueError('world_T_base must be a rigid 4x4 transform')
        missing = [d for d in DESTINATIONS if d not in targets]
        if missing:
            raise ValueError(f'place targets missing: {missing}')
        self.world_T_base = world_T_base
        self.base_T_world = np.linalg.inv(world_T_base)
        self.table_top_z = float(table_top_z)
        self.targets = dict(targets)

    def grasp_height(self, grasp: Grasp) -> float:
        """Height of the grasp point above the table top (m), at least 5 mm."""
        p = self.world_T_base @ np.r_[np.asarray(grasp.position, float), 1.0]
        return max(0.005, float(p[2]) - self.table_top_z)

    def place_pose(self, destination: str, grasp: Grasp) -> Tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion xyzw (4,)) of the grasp point at destination, base frame.

        Raises:
            ValueError: unknown destination or a non-finite grasp.
        """
        if destination not in self.targets:
            raise ValueError(f"unknown destination '{destination}' "
                             f'(known: {sorted(self.targets)})')
        pos = np.asarray(grasp.position, float)
        quat = np.asarray(grasp.orientation, float)
        if pos.shape != (3,) or quat.shape != (4,) or not np.all(np.isfinite(pos)) \
                or not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 1e-6:
            raise ValueError(f'grasp #{grasp.index} has a non-finite or malformed pose')
        target = self.targets[destination]
        offset = self.world_T_base[:3, :3] @ np.array([*np.asarray(grasp.offset_xy, float)[:2],
                                                        0.0])
        world = np.array([target.xyz[0] + offset[0], target.xyz[1] + offset[1],
                          target.xyz[2] + self.grasp_height(grasp) + target.drop_m, 1.0])
        base = self.base_T_world @ world
        return base[:3], quat / np.linalg.norm(quat)

    def return_pose(self, grasp: Grasp) -> Tuple[np.ndarray, np.ndarray]:
        """Place pose that puts the part back where it was grasped on the table (+ drop).

        Used as the hand-over spot when one arm cannot carry a part from the fixture to its
        bin: the part goes back to its (now free) table spot, and the other arm takes it there.
        """
        up = self.base_T_world[:3, :3] @ np.array([0.0, 0.0, self.targets['fixture'].drop_m])
        quat = np.asarray(grasp.orientation, float)
        return np.asarray(grasp.position, float) + up, quat / np.linalg.norm(quat)

    def fixture_grasp(self, grasp: Grasp) -> Grasp:
        """The grasp that takes the part back out of the fixture (where it was placed)."""
        pos, quat = self.place_pose('fixture', grasp)
        pos = pos - (self.base_T_world[:3, :3] @ np.array([0, 0, self.targets['fixture'].drop_m]))
        return Grasp(0, grasp.score, grasp.opening_m, tuple(pos), tuple(quat),
                     offset_xy=tuple(grasp.offset_xy), object_box=tuple(grasp.object_box))


def grasp_matrix(grasp: Grasp) -> np.ndarray:
    """4x4 pose of the grasp (TCP) in the base frame."""
    return pose_from_quaternion(grasp.position, grasp.orientation)


def object_box_in_grasp(grasp: Grasp, box_pose: np.ndarray, size) -> tuple:
    """Grasp.object_box of a part whose box (4x4 centre pose, base frame; extents) is known.

    Returns:
        (x, y, z, qx, qy, qz, qw, sx, sy, sz) in the grasp's TCP frame, or () when the box
        is not finite or has a non-positive extent.
    """
    box_pose = np.asarray(box_pose, float)
    size = np.asarray(size, float)
    if box_pose.shape != (4, 4) or size.shape != (3,) or not np.all(np.isfinite(box_pose)) \
            or not np.all(np.isfinite(size)) or np.any(size <= 0):
        return ()
    rel = np.linalg.solve(grasp_matrix(grasp), box_pose)
    quat = Rotation.from_matrix(rel[:3, :3]).as_quat()
    return tuple(float(v) for v in (*rel[:3, 3], *quat, *size))


def object_box_in_base(grasp: Grasp):
    """(4x4 centre pose in the base frame, extents) of grasp.object_box; None if unknown."""
    box = np.asarray(grasp.object_box, float)
    if box.shape != (10,) or not np.all(np.isfinite(box)):
        return None
    return (grasp_matrix(grasp) @ pose_from_quaternion(box[:3], box[3:7]),
            tuple(float(v) for v in box[7:]))


def approach_axis(quat_xyzw) -> np.ndarray:
    """The gripper's approach axis (its x axis) for a quaternion x, y, z, w."""
    return Rotation.from_quat(quat_xyzw).as_matrix()[:, 0]


def targets_from_cell(cell, drop_m: float = 0.01, bin_drop_m: float = 0.05) -> PlaceTargets:
    """PlaceTargets from a humanoid_inspection.cell_geometry.CellGeometry.

    Parts are set down on the fixture seat and the review tray (drop_m above the surface) and
    released above the bins (bin_drop_m above the rim).
    """
    bins = {
        name: Target(name, tuple(b.pose.xyz), float(b.wall_height) + bin_drop_m)
        for name, b in (('accept_bin', cell.accept_bin), ('reject_bin', cell.reject_bin))}
    targets = {
        'fixture': Target('fixture', tuple(cell.xray_cabinet.fixture.pose.xyz), drop_m),
        'review': Target('review', tuple(cell.review.pose.xyz), drop_m),
        **bins,
    }
    return PlaceTargets(cell.robot.pose.matrix(), float(cell.table.top_z), targets)


class PickArea:
    """The part of the table parts are picked from: the table top minus the review tray.

    Parts the cell has put on the review tray lie on the table too; the cell must not pick
    them up again.

    Args:
        world_T_base: 4x4 pose of base_link in the world.
        table_xy, table_size, table_yaw: centre (m), full size x, y (m) and yaw of the top.
        excluded: (centre xy, size xy) rectangles (world, axis-aligned) left out, e.g. review.
        margin_m: grown around each excluded rectangle.
    """

    def __init__(self, world_T_base, table_xy, table_size, table_yaw=0.0, excluded=(),
                 margin_m: float = 0.03):
        self.world_T_base = np.asarray(world_T_base, float)
        self.table_xy = np.asarray(table_xy, float)[:2]
        self.table_half = np.asarray(table_size, float)[:2] / 2.0
        self.table_yaw = float(table_yaw)
        self.excluded = [(np.asarray(c, float)[:2], np.asarray(s, float)[:2] / 2.0 + margin_m)
                         for c, s in excluded]

    @staticmethod
    def from_cell(cell, margin_m: float = 0.03) -> 'PickArea':
        """The pick area of a CellGeometry (review tray excluded)."""
        t = cell.table
        return PickArea(cell.robot.pose.matrix(), t.pose.xyz, t.size, t.pose.rpy[2],
                        [(cell.review.pose.xyz, cell.review.size)], margin_m)

    def reason_outside(self, position_base) -> str:
        """'' when a base-frame point lies in the pick area, else why not."""
        p = self.world_T_base @ np.r_[np.asarray(position_base, float)[:3], 1.0]
        local = xy_in_frame(p, self.table_xy, self.table_yaw)
        if np.any(np.abs(local) > self.table_half):
            return 'not on the table'
        for centre, half in self.excluded:
            if np.all(np.abs(p[:2] - centre) <= half):
                return 'on the review tray'
        return ''
