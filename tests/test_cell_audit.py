"""Where the parts are against where the records put them (cell/audit.py), on the real cell.

The positions come from the real simulation where it matters (parts on their table slots, a
part put in the fixture); places of the bins and the tray are read from config/cell.yaml.
"""

import math

import pytest

from humanoid_inspection.cell.audit import (audit_locations, cell_areas, format_locations,
                                            locate)
from humanoid_inspection.cell.records import PartRecord
from humanoid_inspection.cell_geometry import load_cell


@pytest.fixture(scope='module')
def cell():
    return load_cell()


def _record(part_id, outcome, destination=None, seq=0):
    return PartRecord(record_id=f'r{seq}', run_id='run', seq=seq, state='sorted',
                      created_at=0.0, updated_at=0.0, part_id=part_id, outcome=outcome,
                      destination=destination)


def _in(cell, area_name, dz=0.01):
    area = {a.name: a for a in cell_areas(cell)}[area_name]
    return [float(area.centre_xy[0]), float(area.centre_xy[1]), area.surface_z + dz]


def test_places_of_the_cell(cell):
    areas = cell_areas(cell)
    assert [a.name for a in areas] == ['accept_bin', 'reject_bin', 'review', 'fixture', 'table']
    assert locate(_in(cell, 'accept_bin'), None, areas) == 'accept_bin'
    assert locate(_in(cell, 'reject_bin', 0.08), None, areas) == 'reject_bin'
    # the review tray lies on the table: the tray wins
    assert locate(_in(cell, 'review'), None, areas) == 'review'
    assert locate(_in(cell, 'fixture'), None, areas) == 'fixture'
    slot = cell.table.slot_pose(3).xyz
    assert locate(slot, None, areas) == 'table'
    # in a hand, wherever the hand is
    assert locate(_in(cell, 'accept_bin'), 'left', areas) == 'held by left'
    # beside the table, on the floor; above the table, out of reach of any place
    assert locate([0.43, 0.6, 0.02], None, areas) == 'floor'
    assert locate([0.43, 0.0, 1.5], None, areas) == 'elsewhere'
    # just beside a bin's footprint is not in it
    x, y, z = _in(cell, 'reject_bin')
    assert locate([x, y + cell.reject_bin.inner_size[1] / 2 + 0.05, z], None, areas) != \
        'reject_bin'


def test_a_turned_place_is_judged_along_its_own_axes():
    from humanoid_inspection.cell.audit import Area
    from humanoid_inspection.cell_geometry import Pose
    # a 0.40 x 0.10 m tray turned 90 deg: it now runs along y
    tray = Area.of('tray', Pose((1.0, 0.0, 0.5), (0.0, 0.0, math.pi / 2)), (0.40, 0.10))
    assert tray.holds([1.0, 0.18, 0.51]) and not tray.holds([1.18, 0.0, 0.51])
    assert Area.of('tray', Pose((1.0, 0.0, 0.5)), (0.40, 0.10)).holds([1.18, 0.0, 0.51])


@pytest.mark.parametrize('position', [[0.1, 0.2], [0.1, math.nan, 0.8], 'here'])
def test_malformed_position_is_refused(cell, position):
    with pytest.raises(ValueError, match='three finite numbers'):
        locate(position, None, cell_areas(cell))


def test_audit_flags_a_sorted_part_that_is_not_in_its_bin(cell):
    truth = {'parts': [
        {'part_id': 'a', 'position': _in(cell, 'reject_bin'), 'held_by': None},
        {'part_id': 'b', 'position': [0.5, -0.2, 0.0], 'held_by': None},    # on the floor
        {'part_id': 'c', 'position': _in(cell, 'review'), 'held_by': None},
        {'part_id': 'd', 'position': list(cell.table.slot_pose(0).xyz), 'held_by': None},
        {'part_id': 'e', 'position': _in(cell, 'fixture'), 'held_by': 'right'},
        {'part_id': 'f', 'position': _in(cell, 'accept_bin'), 'held_by': None},
    ]}
    records = [_record('a', 'rejected', 'reject_bin', 0),
               _record('b', 'rejected', 'reject_bin', 1),
               # REVIEW sent to the reject bin once the tray is full: the record says where
               _record('c', 'review', 'reject_bin', 2),
               _record('e', 'sort_failed', 'reject_bin', 4),
               # an earlier record of f that failed, then the one that sorted it
               _record('f', 'grasp_failed', None, 5), _record('f', 'accepted', 'accept_bin', 6)]
    rows = {r.part_id: r for r in audit_locations(truth, records, cell)}
    assert [(k, r.found, r.mismatch) for k, r in rows.items()] == [
        ('a', 'reject_bin', False), ('b', 'floor', True), ('c', 'review', True),
        ('d', 'table', False), ('e', 'held by right', False), ('f', 'accept_bin', False)]
    assert rows['d'].outcome is None and rows['d'].expected == 'table'
    # a failed part makes no claim, and its place is still reported
    assert rows['e'].expected is None
    table = format_locations(list(rows.values()))
    assert table.count('NOT THERE') == 2 and 'held by right' in table
    assert rows['b'].to_dict()['mismatch'] is True


def test_audit_of_the_simulated_cell_as_it_starts(cell):
    """Every part of a fresh simulation is on the table, one in the fixture once put there."""
    from humanoid_inspection.sim.factory import load_simulation, place_in_fixture
    sim = load_simulation(num_parts=6, seed=7)
    part = sim.scene.parts[2].part_id
    place_in_fixture(sim, part)
    sim.step(100)
    rows = audit_locations(sim.ground_truth(), [], cell)
    found = {r.part_id: r.found for r in rows}
    assert found.pop(part) == 'fixture'
    assert set(found.values()) == {'table'} and len(found) == 5
    # the part in the fixture has no record, so the records say it is still on the table
    assert [r.part_id for r in rows if r.mismatch] == [part]


def test_truth_without_parts_is_refused(cell):
    with pytest.raises(ValueError, match='no parts list'):
        audit_locations({'time': 1.0}, [], cell)


def test_demo_fails_when_a_part_is_not_where_its_record_says(cell):
    from humanoid_inspection.cell.demo import check_locations
    records = [_record('a', 'rejected', 'reject_bin', 0)]
    truth = {'parts': [{'part_id': 'a', 'position': [0.5, -0.2, 0.0], 'held_by': None}]}
    metrics = {}
    problems, table = check_locations({'final_truth': truth}, records, metrics)
    assert problems == ['a is recorded as rejected, so it must be in reject_bin, but it is in '
                        'floor']
    assert 'NOT THERE' in table and metrics['part_locations'][0]['found'] == 'floor'
    truth['parts'][0]['position'] = _in(cell, 'reject_bin')
    assert check_locations({'final_truth': truth}, records, {})[0] == []
    # truth that could not be read fails the demo too, with the reason
    metrics = {}
    problems, table = check_locations({'final_truth_error': 'sim/ground_truth: not served'},
                                      records, metrics)
    assert problems == ['where the parts are could not be checked: sim/ground_truth: not '
                        'served'] and table == '' and metrics['part_locations'] is None
