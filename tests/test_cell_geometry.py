"""config/cell.yaml and its loader: contents, layout sanity, and clear errors on bad values."""

import copy
import math

import numpy as np
import pytest
import yaml

from humanoid_inspection import cell_geometry as cg
from humanoid_inspection.cell_geometry import CellConfigError, load_cell, parse_cell


@pytest.fixture(scope='module')
def raw():
    return yaml.safe_load(cg.default_cell_path().read_text())


def test_default_cell_loads_with_the_contract_contents():
    cell = load_cell()
    assert cg.default_cell_path().name == 'cell.yaml'
    assert len(cell.table.part_slots) >= 6
    assert cell.head_camera.width == 640 and cell.head_camera.height == 480
    assert 0.08 <= cell.gripper.max_opening_m <= 0.12
    assert cell.gripper.finger_travel_m == pytest.approx(cell.gripper.max_opening_m / 2)
    assert set(cell.bins()) == {'accept', 'reject'}
    fx, fy, cx, cy = cell.head_camera.intrinsics()
    assert fx == fy and cx == pytest.approx(319.5) and cy == pytest.approx(239.5)
    assert fx == pytest.approx(320 / math.tan(cell.head_camera.horizontal_fov / 2))
    assert cell.table.slot_pose(0).xyz[2] == cell.table.top_z
    with pytest.raises(IndexError):
        cell.table.slot_pose(len(cell.table.part_slots))


def test_layout_objects_do_not_overlap_and_sit_around_the_robot():
    """Footprints (x-y boxes) of table, cabinet and bins are disjoint and within 1 m."""
    cell = load_cell()

    def footprint(xyz, sx, sy):
        return (xyz[0] - sx / 2, xyz[0] + sx / 2, xyz[1] - sy / 2, xyz[1] + sy / 2)

    boxes = {
        'table': footprint(cell.table.pose.xyz, *cell.table.size[:2]),
        'cabinet': footprint(cell.xray_cabinet.pose.xyz, *cell.xray_cabinet.size[:2]),
    }
    for name, b in cell.bins().items():
        t = b.wall_thickness
        boxes[name] = footprint(b.pose.xyz, b.inner_size[0] + 2 * t, b.inner_size[1] + 2 * t)
    names = sorted(boxes)
    for i, a in enumerate(names):
        ax0, ax1, ay0, ay1 = boxes[a]
        assert max(abs(ax0), abs(ax1), abs(ay0), abs(ay1)) < 1.0, a
        for b in names[i + 1:]:
            bx0, bx1, by0, by1 = boxes[b]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f'{a} overlaps {b}'
    # The robot's feet/pelvis stand clear of everything (pelvis footprint 0.2 x 0.3 m).
    for name, (x0, x1, y0, y1) in boxes.items():
        assert x1 <= -0.12 or x0 >= 0.12 or y1 <= -0.2 or y0 >= 0.2, name
    # The fixture seat is inside the cabinet chamber, on its floor.
    cab, fix = cell.xray_cabinet, cell.xray_cabinet.fixture
    assert fix.pose.xyz[2] - fix.size[2] == pytest.approx(cab.pose.xyz[2] + cab.base_height)
    for k in (0, 1):
        assert abs(fix.pose.xyz[k] - cab.pose.xyz[k]) + fix.size[k] / 2 < cab.size[k] / 2


def test_world_to_base_uses_the_robot_base_pose():
    cell = load_cell()
    base = np.array(cell.robot.pose.xyz)
    assert cell.world_to_base(base) == pytest.approx([0, 0, 0])
    assert cell.world_to_base(base + [0.1, 0, 0]) == pytest.approx([0.1, 0, 0])


def test_rpy_matrix_matches_the_urdf_convention():
    r = cg.rpy_to_matrix((0.1, -0.2, 0.3))
    cx, sx = math.cos(0.1), math.sin(0.1)
    cy, sy = math.cos(-0.2), math.sin(-0.2)
    cz, sz = math.cos(0.3), math.sin(0.3)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    assert r == pytest.approx(rz @ ry @ rx)


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@pytest.mark.parametrize('path,value,message', [
    (('table', 'size'), [0.4, 0.9, -0.04], r'table\.size\[2\] must be > 0'),
    (('table', 'size'), [0.4, 0.9], r'table\.size must be a list of 3 numbers'),
    (('table', 'part_slots', 3), [0.34, 'left'], r'table\.part_slots\[3\]\[1\] must be a number'),
    (('table', 'part_slots', 0), [2.0, 0.0], r'table\.part_slots\[0\] .* off the table'),
    (('table', 'part_slots'), [], r'table\.part_slots must be a non-empty list'),
    (('robot', 'base_xyz'), [0.0, 0.0, float('nan')], r'robot\.base_xyz\[2\] must be finite'),
    (('robot', 'standing_pose', 'neck_pitch'), 'down', r'standing_pose\.neck_pitch'),
    (('xray_cabinet', 'open_side'), 'front', r'xray_cabinet\.open_side must be one of'),
    (('xray_cabinet', 'fixture', 'xyz'), [0.22, 0.63, 0.9],
     r'xray_cabinet\.fixture\.xyz\[2\] must put the seat on the chamber floor'),
    (('xray_cabinet', 'source_to_detector_mm'), 100.0, r'source_to_detector_mm must exceed'),
    (('accept_bin', 'wall_height'), 0, r'accept_bin\.wall_height must be > 0'),
    (('reject_bin', 'colour'), [1.0, 0.0, 0.0, 2.0], r'reject_bin\.colour\[3\] must be in'),
    (('reject_bin',), KeyError, r'reject_bin is missing'),
    (('head_camera', 'width'), 640.5, r'head_camera\.width must be a positive integer'),
    (('head_camera', 'far'), 0.05, r'head_camera\.far must exceed near'),
    (('gripper', 'max_opening_m'), True, r'gripper\.max_opening_m must be a number'),
    (('gripper', 'extra_key'), 1.0, r"gripper has unknown key\(s\) \['extra_key'\]"),
])
def test_bad_value_gives_an_error_naming_the_key(raw, path, value, message):
    data = copy.deepcopy(raw)
    _set(data, path, value)
    with pytest.raises(CellConfigError, match=message):
        parse_cell(data, source='cell.yaml')


def test_unreadable_or_invalid_files_give_clear_errors(tmp_path):
    with pytest.raises(CellConfigError, match='cannot read cell file'):
        load_cell(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('table: [unclosed\n')
    with pytest.raises(CellConfigError, match='not valid YAML'):
        load_cell(bad)
    bad.write_text('- just\n- a list\n')
    with pytest.raises(CellConfigError, match='must be a mapping'):
        load_cell(bad)


def test_a_modified_copy_loads_from_an_explicit_path(raw, tmp_path):
    data = copy.deepcopy(raw)
    data['table']['part_slots'] = data['table']['part_slots'][:2]
    path = tmp_path / 'cell.yaml'
    path.write_text(yaml.safe_dump(data))
    cell = load_cell(path)
    assert len(cell.table.part_slots) == 2 and cell.source == str(path)
