"""Place poses for the X-ray fixture, the bins and the review tray from config/cell.yaml.

Poses are TCP poses in base_link (fixed-base mode: base_link is welded to world at the cell's
robot pose), in the gripper convention of Affordance.msg: x = approach (world -z: the part
keeps the top-down orientation it was grasped with), y = closing direction (world x).
- fixture: the part's bottom on the seat's top surface, i.e. the TCP grasp_height_m above it;
  the X-ray cabinet's port faces the robot (-y), so the pre-place pose is in front of the
  port at the same height and the hand moves in horizontally (+y).
- bins: released from drop_clearance_m above the rim; pre-place = the same point.
- review: set down on the tray surface like the fixture, pre-place straight above.
"""

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from humanoid_inspection.cell_geometry import CellGeometry, load_cell

# columns: x (approach) = world -z, y (closing) = world x, z = x cross y = world -y
_TOP_DOWN_WORLD = np.stack([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0],
                            np.cross([0.0, 0.0, -1.0], [1.0, 0.0, 0.0])], axis=1)


@dataclass
class PlacePose:
    """Where to release a part: TCP pose and the pose to come from, in base_link."""

    name: str
    position: np.ndarray
    rotation: np.ndarray
    pre_place: np.ndarray
    release: bool = True

    def matrix(self) -> np.ndarray:
        """4x4 TCP pose in base_link."""
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.rotation, self.position
        return T


def place_poses(cell: Optional[CellGeometry] = None, grasp_height_m: float = 0.025,
                drop_clearance_m: float = 0.05, port_clearance_m: float = 0.12,
                lift_m: float = 0.10) -> Dict[str, PlacePose]:
    """Place poses by name: 'fixture', 'accept_bin', 'reject_bin', 'review'.

    Args:
        cell: the cell geometry (default: load_cell()).
        grasp_height_m: height of the TCP above the part's bottom (from the grasp).
        drop_clearance_m: release height above a bin's rim.
        port_clearance_m: distance of the fixture's pre-place pose in front of the port.
        lift_m: height of the review pre-place pose above the place pose.
    """
    cell = cell or load_cell()
    R_base_world = np.linalg.inv(cell.robot.pose.matrix())[:3, :3]
    rot = R_base_world @ _TOP_DOWN_WORLD

    def base(p):
        return cell.world_to_base(p)

    seat = np.asarray(cell.xray_cabinet.fixture.pose.xyz, dtype=float)
    fixture = seat + [0.0, 0.0, grasp_height_m]
    cab = cell.xray_cabinet
    port_y = cab.pose.xyz[1] - cab.size[1] / 2.0 - port_clearance_m
    out = {'fixture': PlacePose('fixture', base(fixture), rot,
                                base([fixture[0], port_y, fixture[2]]))}
    for name, b in (('accept_bin', cell.accept_bin), ('reject_bin', cell.reject_bin)):
        drop = np.asarray(b.drop_pose(drop_clearance_m).xyz, dtype=float) + [0, 0, grasp_height_m]
        out[name] = PlacePose(name, base(drop), rot, base(drop))
    tray = np.asarray(cell.review.pose.xyz, dtype=float) + [0.0, 0.0, grasp_height_m]
    out['review'] = PlacePose('review', base(tray), rot, base(tray + [0.0, 0.0, lift_m]))
    return out
