"""The cell as collision boxes in the robot's base frame, built from config/cell.yaml.

One source of truth: :func:`obstacles_from_cell` reads a
``humanoid_inspection.cell_geometry.CellGeometry`` (the same one the MuJoCo scene and the SDF
world come from) and returns :class:`~humanoid_inspection.manipulation.collision.Obstacle`
boxes expressed in ``base_link`` (fixed-base mode: world <- base_link is ``robot.base_xyz/rpy``):

- ``table``: the top slab, and ``table_leg_<i>`` its four legs;
- ``xray_base`` (the solid lower body up to the chamber floor), ``xray_roof``, ``xray_wall_*``
  (every side except the open loading port ``open_side``) and ``xray_fixture`` (the part seat);
- ``<name>_bin_floor``, ``<name>_bin_wall_<side>`` (four thin walls) and ``<name>_bin_stand``
  (from the floor to the bin's bottom) for the accept and reject bins;
- ``floor``: a thin slab at z = 0 (the feet stand on it; legs are locked so never checked);
- ``keepout_table`` (only with ``keepout_height`` > 0): a virtual box over the whole table top,
  that high. The parts waiting on the table are not in this scene (perception does not send
  them), so without it a joint-space path could sweep the hand or the carried part through
  them (the seed-7 demo knocked a bracket over on its neighbour's transfer). The straight
  approach / lift / place / retreat lines at a point over the table may enter it
  (:func:`keepout_zones_at`); the joint-space segments stay out.

Each box's name says what it is; :func:`support_obstacles` finds the box a point rests on
(used to allow hand/part contact with the surface being grasped from or placed on).
"""

from typing import List, Sequence

import numpy as np

KEEPOUT_PREFIX = 'keepout_'

from humanoid_inspection.manipulation.collision import Obstacle


def _box(name: str, centre_local: Sequence[float], size: Sequence[float],
         frame: np.ndarray, base_T_world: np.ndarray) -> Obstacle:
    """Box whose centre is given in a local frame (world <- local = frame)."""
    local = np.eye(4)
    local[:3, 3] = centre_local
    return Obstacle(name, tuple(float(s) for s in size), base_T_world @ frame @ local)


def obstacles_from_cell(cell, floor: bool = True, keepout_height: float = 0.0
                        ) -> List[Obstacle]:
    """The cell's collision boxes in the base frame.

    Args:
        cell: a CellGeometry (humanoid_inspection.cell_geometry.load_cell()).
        floor: include the floor slab.
        keepout_height: height (m) of the virtual keep-out box over the table top where the
            parts wait; 0 = none.

    Returns:
        The obstacles (see module docstring for names).
    """
    base_T_world = np.linalg.inv(cell.robot.pose.matrix())
    out: List[Obstacle] = []

    # Table: slab (pose = centre of its top surface) and legs from the floor to the slab.
    table = cell.table
    tf = table.pose.matrix()
    sx, sy, sz = table.size
    out.append(_box('table', (0, 0, -sz / 2), table.size, tf, base_T_world))
    leg_h = table.top_z - sz
    leg = table.leg_size
    if leg_h > 0:
        for i, (ix, iy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
            centre = (ix * (sx / 2 - leg / 2), iy * (sy / 2 - leg / 2), -sz - leg_h / 2)
            out.append(_box(f'table_leg_{i}', centre, (leg, leg, leg_h), tf, base_T_world))

    # X-ray cabinet: pose = centre of the footprint on the floor.
    cab = cell.xray_cabinet
    cf = cab.pose.matrix()
    cx, cy, ch = cab.size
    t = cab.wall_thickness
    out.append(_box('xray_base', (0, 0, cab.base_height / 2), (cx, cy, cab.base_height), cf,
                    base_T_world))
    out.append(_box('xray_roof', (0, 0, ch - t / 2), (cx, cy, t), cf, base_T_world))
    chamber_h = ch - cab.base_height - t
    zc = cab.base_height + chamber_h / 2
    walls = {
        '+x': ((cx / 2 - t / 2, 0, zc), (t, cy, chamber_h)),
        '-x': ((-cx / 2 + t / 2, 0, zc), (t, cy, chamber_h)),
        '+y': ((0, cy / 2 - t / 2, zc), (cx, t, chamber_h)),
        '-y': ((0, -cy / 2 + t / 2, zc), (cx, t, chamber_h)),
    }
    for side, (centre, size) in walls.items():
        if side != cab.open_side:
            sign = 'pos' if side[0] == '+' else 'neg'
            out.append(_box(f'xray_wall_{sign}{side[1]}', centre, size, cf, base_T_world))
    fix = cab.fixture
    out.append(_box('xray_fixture', (0, 0, -fix.size[2] / 2), fix.size, fix.pose.matrix(),
                    base_T_world))

    # Bins: pose = centre of the inner bottom surface.
    for b in (cell.accept_bin, cell.reject_bin):
        bf = b.pose.matrix()
        ix, iy = b.inner_size
        t = b.wall_thickness
        h = b.wall_height
        name = f'{b.name}_bin'
        out.append(_box(f'{name}_floor', (0, 0, -t / 2), (ix + 2 * t, iy + 2 * t, t), bf,
                        base_T_world))
        out.append(_box(f'{name}_wall_posx', (ix / 2 + t / 2, 0, h / 2), (t, iy + 2 * t, h), bf,
                        base_T_world))
        out.append(_box(f'{name}_wall_negx', (-ix / 2 - t / 2, 0, h / 2), (t, iy + 2 * t, h),
                        bf, base_T_world))
        out.append(_box(f'{name}_wall_posy', (0, iy / 2 + t / 2, h / 2), (ix, t, h), bf,
                        base_T_world))
        out.append(_box(f'{name}_wall_negy', (0, -iy / 2 - t / 2, h / 2), (ix, t, h), bf,
                        base_T_world))
        stand_h = b.pose.xyz[2] - t
        if stand_h > 0:
            out.append(_box(f'{name}_stand', (0, 0, -t - stand_h / 2),
                            (0.6 * ix, 0.6 * iy, stand_h), bf, base_T_world))
    if keepout_height > 0:
        out.append(_box(f'{KEEPOUT_PREFIX}table', (0, 0, keepout_height / 2),
                        (sx, sy, keepout_height), tf, base_T_world))
    if floor:
        floor_world = np.eye(4)
        out.append(_box('floor', (0.5, 0, -0.005), (3.0, 3.0, 0.01), floor_world, base_T_world))
    return out


def support_obstacles(obstacles: Sequence[Obstacle], point: np.ndarray,
                      max_gap: float = 0.25) -> List[str]:
    """Names of the boxes whose top face lies under point within max_gap (base frame).

    Args:
        obstacles: the cell's boxes.
        point: (3,) point in the base frame (e.g. a grasp or place position).
        max_gap: max height of point above the top face (m).

    Returns:
        Names of the supporting boxes, nearest top face first (the table under a part, the
        fixture seat, a bin floor).
    """
    point = np.asarray(point, dtype=float)
    found = []
    for ob in obstacles:
        local = np.linalg.inv(ob.pose) @ np.r_[point, 1.0]
        half = np.asarray(ob.size) / 2
        gap = local[2] - half[2]
        if abs(local[0]) <= half[0] and abs(local[1]) <= half[1] and 0.0 <= gap <= max_gap:
            found.append((gap, ob.name))
    return [name for _, name in sorted(found)]


def keepout_zones_at(obstacles: Sequence[Obstacle], point: np.ndarray,
                     max_gap: float = 0.25) -> List[str]:
    """Names of the keep-out boxes over or around point (base frame).

    A point inside a keep-out box's footprint, from its bottom to ``max_gap`` above its top
    (a grasp or place point on the table, and the straight lines from it), may reach into it.
    """
    point = np.asarray(point, dtype=float)
    out = []
    for ob in obstacles:
        if not ob.name.startswith(KEEPOUT_PREFIX):
            continue
        local = np.linalg.inv(ob.pose) @ np.r_[point, 1.0]
        half = np.asarray(ob.size) / 2
        if abs(local[0]) <= half[0] and abs(local[1]) <= half[1] and \
                -half[2] <= local[2] <= half[2] + max_gap:
            out.append(ob.name)
    return out
