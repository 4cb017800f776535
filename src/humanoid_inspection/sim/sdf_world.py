"""Generates worlds/inspection_cell.sdf (gz sim Harmonic, SDFormat 1.9) from config/cell.yaml.

The Gazebo world and the MuJoCo scene are both built from the same `CellGeometry`, so the
cell has one source of truth. The committed SDF is regenerated and compared by a test
(tests/test_gazebo_world.py); after editing config/cell.yaml run::

    python -m humanoid_inspection.sim.sdf_world            # rewrites worlds/inspection_cell.sdf
    python -m humanoid_inspection.sim.sdf_world --check    # exit 1 if the file is stale

Model / link names are stable (`table`, `xray_cabinet`, `xray_fixture`, `accept_bin`,
`reject_bin`, `review_tray`, `part_<i>`) so tests and tools can find them. The humanoid is not
in the world: launch/sim_gazebo.launch.py spawns it from robot_description. Pure Python.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from humanoid_inspection.cell_geometry import Bin, CellGeometry, XrayCabinet, load_cell

WORLD_NAME = 'inspection_cell'
# Die-cast stand-ins placed in the first slots so a Gazebo session has parts to pick
# (aluminium-coloured boxes; size x, y, z in m; mass kg). The MuJoCo sim spawns its own parts
# with hidden defects; these carry none.
STAND_IN_PART_SIZE = (0.08, 0.06, 0.05)
STAND_IN_PART_MASS = 0.35
STAND_IN_PARTS = 4


@dataclass(frozen=True)
class BoxPart:
    """One box of a static model, in the model frame.

    Attributes:
        name: link-unique element name.
        xyz: centre in the model frame, m.
        size: full extents, m.
        rgba: colour.
        collide: False for purely visual elements.
    """

    name: str
    xyz: Tuple[float, float, float]
    size: Tuple[float, float, float]
    rgba: Tuple[float, float, float, float]
    collide: bool = True


def _f(value: float) -> str:
    """Formats a float compactly and deterministically (no -0, 6 decimals at most)."""
    text = f'{float(value):.6f}'.rstrip('0').rstrip('.')
    return '0' if text in ('-0', '') else text


def _v(values: Sequence[float]) -> str:
    return ' '.join(_f(v) for v in values)


GREY = (0.55, 0.57, 0.60, 1.0)
WOOD = (0.72, 0.58, 0.40, 1.0)
STEEL = (0.35, 0.37, 0.40, 1.0)
LEAD_YELLOW = (0.95, 0.80, 0.15, 1.0)
ALUMINIUM = (0.78, 0.79, 0.80, 1.0)


def table_boxes(cell: CellGeometry) -> List[BoxPart]:
    """Returns the table's top slab and four legs in the table frame (top-surface centre)."""
    t = cell.table
    sx, sy, th = t.size
    leg_h = t.top_z - th
    boxes = [BoxPart('top', (0.0, 0.0, -th / 2), (sx, sy, th), WOOD)]
    for i, (kx, ky) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
        boxes.append(BoxPart(
            f'leg_{i}', (kx * (sx - t.leg_size) / 2, ky * (sy - t.leg_size) / 2,
                         -th - leg_h / 2), (t.leg_size, t.leg_size, leg_h), STEEL))
    return boxes


def cabinet_boxes(cab: XrayCabinet) -> List[BoxPart]:
    """Returns the X-ray cabinet's solid base, roof and three walls in the cabinet frame.

    The frame is the centre of the footprint on the floor; the side named by `open_side` is the
    open loading port (no wall).
    """
    sx, sy, height = cab.size
    t, bh = cab.wall_thickness, cab.base_height
    wall_h = height - bh - t
    wall_z = bh + wall_h / 2
    boxes = [
        BoxPart('base', (0.0, 0.0, bh / 2), (sx, sy, bh), GREY),
        BoxPart('roof', (0.0, 0.0, height - t / 2), (sx, sy, t), GREY),
    ]
    walls = {
        '+x': BoxPart('wall_px', (sx / 2 - t / 2, 0.0, wall_z), (t, sy, wall_h), GREY),
        '-x': BoxPart('wall_nx', (-sx / 2 + t / 2, 0.0, wall_z), (t, sy, wall_h), GREY),
        '+y': BoxPart('wall_py', (0.0, sy / 2 - t / 2, wall_z), (sx, t, wall_h), GREY),
        '-y': BoxPart('wall_ny', (0.0, -sy / 2 + t / 2, wall_z), (sx, t, wall_h), GREY),
    }
    boxes += [box for side, box in walls.items() if side != cab.open_side]
    return boxes


def bin_boxes(b: Bin) -> List[BoxPart]:
    """Returns a bin's bottom, four walls and stand in the bin frame (inner-bottom centre)."""
    ix, iy = b.inner_size
    t, wh = b.wall_thickness, b.wall_height
    stand_h = b.pose.xyz[2] - t
    colour = tuple(b.colour)
    return [
        BoxPart('bottom', (0.0, 0.0, -t / 2), (ix + 2 * t, iy + 2 * t, t), colour),
        BoxPart('wall_px', ((ix + t) / 2, 0.0, wh / 2), (t, iy + 2 * t, wh), colour),
        BoxPart('wall_nx', (-(ix + t) / 2, 0.0, wh / 2), (t, iy + 2 * t, wh), colour),
        BoxPart('wall_py', (0.0, (iy + t) / 2, wh / 2), (ix, t, wh), colour),
        BoxPart('wall_ny', (0.0, -(iy + t) / 2, wh / 2), (ix, t, wh), colour),
        BoxPart('stand', (0.0, 0.0, -t - stand_h / 2), (ix, iy, stand_h), STEEL),
    ]


def _box_elements(box: BoxPart, indent: str) -> List[str]:
    geometry = f'<geometry><box><size>{_v(box.size)}</size></box></geometry>'
    lines = []
    if box.collide:
        lines += [f'{indent}<collision name="{box.name}_collision">',
                  f'{indent}  <pose>{_v(box.xyz)} 0 0 0</pose>',
                  f'{indent}  {geometry}',
                  f'{indent}</collision>']
    lines += [f'{indent}<visual name="{box.name}_visual">',
              f'{indent}  <pose>{_v(box.xyz)} 0 0 0</pose>',
              f'{indent}  {geometry}',
              f'{indent}  <material><ambient>{_v(box.rgba)}</ambient>'
              f'<diffuse>{_v(box.rgba)}</diffuse></material>',
              f'{indent}</visual>']
    return lines


def _static_model(name: str, xyz: Sequence[float], rpy: Sequence[float],
                  boxes: Sequence[BoxPart], extra: Sequence[str] = ()) -> List[str]:
    lines = [f'    <model name="{name}">',
             '      <static>true</static>',
             f'      <pose>{_v(xyz)} {_v(rpy)}</pose>',
             '      <link name="link">']
    for box in boxes:
        lines += _box_elements(box, '        ')
    lines += list(extra)
    lines += ['      </link>', '    </model>']
    return lines


def _fixture_model(cell: CellGeometry) -> List[str]:
    fix = cell.xray_cabinet.fixture
    seat = BoxPart('seat', (0.0, 0.0, -fix.size[2] / 2), fix.size, LEAD_YELLOW)
    cab = cell.xray_cabinet
    # Source (visual only): a cylinder under the roof straight above the seat.
    roof_z = cab.pose.xyz[2] + cab.size[2] - cab.wall_thickness
    source_len = 0.08
    source_z = roof_z - source_len / 2 - fix.pose.xyz[2]
    extra = ['        <visual name="xray_source_visual">',
             f'          <pose>0 0 {_f(source_z)} 0 0 0</pose>',
             f'          <geometry><cylinder><radius>0.04</radius><length>{_f(source_len)}'
             '</length></cylinder></geometry>',
             f'          <material><ambient>{_v(STEEL)}</ambient>'
             f'<diffuse>{_v(STEEL)}</diffuse></material>',
             '        </visual>']
    return _static_model('xray_fixture', fix.pose.xyz, fix.pose.rpy, [seat], extra)


def _part_model(index: int, xyz: Sequence[float]) -> List[str]:
    sx, sy, sz = STAND_IN_PART_SIZE
    m = STAND_IN_PART_MASS
    ixx, iyy, izz = (m * (sy * sy + sz * sz) / 12, m * (sx * sx + sz * sz) / 12,
                     m * (sx * sx + sy * sy) / 12)
    box = BoxPart('body', (0.0, 0.0, 0.0), STAND_IN_PART_SIZE, ALUMINIUM)
    lines = [f'    <model name="part_{index}">',
             f'      <pose>{_f(xyz[0])} {_f(xyz[1])} {_f(xyz[2] + sz / 2)} 0 0 0</pose>',
             '      <link name="link">',
             '        <inertial>',
             f'          <mass>{_f(m)}</mass>',
             f'          <inertia><ixx>{_f(ixx)}</ixx><iyy>{_f(iyy)}</iyy><izz>{_f(izz)}</izz>'
             '<ixy>0</ixy><ixz>0</ixz><iyz>0</iyz></inertia>',
             '        </inertial>']
    lines += _box_elements(box, '        ')
    lines += ['      </link>', '    </model>']
    return lines


def build_world(cell: Optional[CellGeometry] = None, parts: int = STAND_IN_PARTS) -> str:
    """Returns the SDF world of the cell.

    Args:
        cell: the cell geometry (default: `load_cell()`).
        parts: number of stand-in parts placed in the first table slots.

    Returns:
        The SDF XML text (deterministic: same cell, same text).

    Raises:
        ValueError: when more parts are asked for than the table has slots.
    """
    cell = cell or load_cell()
    if not 0 <= parts <= len(cell.table.part_slots):
        raise ValueError(f'parts must be in [0, {len(cell.table.part_slots)}] (got {parts})')
    cab = cell.xray_cabinet
    review = cell.review
    review_box = BoxPart('tray', (0.0, 0.0, 0.001), (review.size[0], review.size[1], 0.002),
                         (0.20, 0.45, 0.90, 1.0), collide=False)
    lines = [
        '<?xml version="1.0"?>',
        '<!-- GENERATED by humanoid_inspection.sim.sdf_world from config/cell.yaml.',
        '     Do not edit: change config/cell.yaml and run',
        '     `python -m humanoid_inspection.sim.sdf_world` (a test compares the two). -->',
        '<sdf version="1.9">',
        f'  <world name="{WORLD_NAME}">',
        '    <physics name="2ms" type="ignored">',
        '      <max_step_size>0.002</max_step_size>',
        '      <real_time_factor>1.0</real_time_factor>',
        '    </physics>',
        '    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>',
        '    <plugin filename="gz-sim-user-commands-system"'
        ' name="gz::sim::systems::UserCommands"/>',
        '    <plugin filename="gz-sim-scene-broadcaster-system"'
        ' name="gz::sim::systems::SceneBroadcaster"/>',
        '    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">',
        '      <render_engine>ogre2</render_engine>',
        '    </plugin>',
        '    <plugin filename="gz-sim-contact-system" name="gz::sim::systems::Contact"/>',
        '    <gravity>0 0 -9.81</gravity>',
        '    <scene>',
        '      <ambient>0.6 0.6 0.6 1</ambient>',
        '      <background>0.85 0.88 0.92 1</background>',
        '      <shadows>true</shadows>',
        '    </scene>',
        '    <light type="directional" name="sun">',
        '      <cast_shadows>true</cast_shadows>',
        '      <pose>0 0 6 0 0 0</pose>',
        '      <diffuse>0.9 0.9 0.9 1</diffuse>',
        '      <specular>0.2 0.2 0.2 1</specular>',
        '      <direction>-0.3 0.2 -0.9</direction>',
        '    </light>',
        '    <model name="ground_plane">',
        '      <static>true</static>',
        '      <link name="link">',
        '        <collision name="collision">',
        '          <geometry><plane><normal>0 0 1</normal><size>20 20</size></plane></geometry>',
        '        </collision>',
        '        <visual name="visual">',
        '          <geometry><plane><normal>0 0 1</normal><size>20 20</size></plane></geometry>',
        '          <material><ambient>0.7 0.7 0.7 1</ambient>'
        '<diffuse>0.7 0.7 0.7 1</diffuse></material>',
        '        </visual>',
        '      </link>',
        '    </model>',
    ]
    lines += _static_model('table', cell.table.pose.xyz, cell.table.pose.rpy, table_boxes(cell))
    lines += _static_model('xray_cabinet', cab.pose.xyz, cab.pose.rpy, cabinet_boxes(cab))
    lines += _fixture_model(cell)
    for b in (cell.accept_bin, cell.reject_bin):
        lines += _static_model(f'{b.name}_bin', b.pose.xyz, b.pose.rpy, bin_boxes(b))
    lines += _static_model('review_tray', review.pose.xyz, review.pose.rpy, [review_box])
    for i in range(parts):
        x, y = cell.table.part_slots[i]
        lines += _part_model(i, (x, y, cell.table.top_z))
    lines += ['  </world>', '</sdf>', '']
    return '\n'.join(lines)


def default_world_path() -> Path:
    """Returns worlds/inspection_cell.sdf of the source tree."""
    return Path(__file__).resolve().parents[3] / 'worlds' / f'{WORLD_NAME}.sdf'


def model_box_sizes(sdf_text: str) -> dict:
    """Parses an SDF world into {model: {element: (pose xyz, box size)}} for cross-checks.

    Args:
        sdf_text: SDF XML.

    Returns:
        Per model: its pose (key '__pose__', 6 floats) and each collision/visual box.
    """
    import xml.etree.ElementTree as ET
    root = ET.fromstring(sdf_text)
    out = {}
    for model in root.iter('model'):
        entry = {'__pose__': tuple(float(v) for v in model.findtext('pose', '0 0 0 0 0 0')
                                   .split())}
        for element in list(model.iter('collision')) + list(model.iter('visual')):
            size = element.findtext('geometry/box/size')
            if size is None:
                continue
            pose = element.findtext('pose', '0 0 0 0 0 0').split()
            entry[element.get('name')] = (tuple(float(v) for v in pose[:3]),
                                          tuple(float(v) for v in size.split()))
        out[model.get('name')] = entry
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Writes (or with --check, verifies) worlds/inspection_cell.sdf from config/cell.yaml."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cell', default=None, help='cell YAML (default: config/cell.yaml)')
    parser.add_argument('--out', default=str(default_world_path()), help='SDF file to write')
    parser.add_argument('--parts', type=int, default=STAND_IN_PARTS,
                        help='stand-in parts in the first table slots')
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 if the file differs from the generated one')
    args = parser.parse_args(argv)
    text = build_world(load_cell(args.cell), parts=args.parts)
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding='utf-8') if out.is_file() else ''
        if current != text:
            print(f'{out} is stale: run python -m humanoid_inspection.sim.sdf_world',
                  file=sys.stderr)
            return 1
        print(f'{out} is up to date')
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding='utf-8')
    print(f'wrote {out} ({len(text)} bytes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())


__all__ = ['BoxPart', 'WORLD_NAME', 'bin_boxes', 'build_world', 'cabinet_boxes',
           'default_world_path', 'main', 'model_box_sizes', 'table_boxes']
