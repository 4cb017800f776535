"""Place poses of the cell (frame arithmetic, no ROS)."""

import numpy as np
import pytest

from humanoid_inspection.cell.cycle import Grasp
from humanoid_inspection.cell.places import (PlaceTargets, Target, approach_axis,
                                             object_box_in_base, object_box_in_grasp,
                                             pose_matrix)


def _targets():
    world_T_base = pose_matrix((0.0, 0.0, 1.0), (0.0, 0.0, np.pi / 2))
    targets = {'fixture': Target('fixture', (0.6, 0.3, 0.9), 0.01),
               'accept_bin': Target('accept_bin', (0.3, -0.5, 0.5), 0.05),
               'reject_bin': Target('reject_bin', (0.3, 0.5, 0.5), 0.05),
               'review': Target('review', (0.5, 0.0, 0.75), 0.01)}
    return PlaceTargets(world_T_base, 0.75, targets)


def test_place_keeps_grasp_height_and_orientation():
    places = _targets()
    # grasp point 4 cm above the table top (world z 0.79 = base z -0.21)
    grasp = Grasp(0, 0.9, 0.05, (0.1, -0.5, -0.21), (0.0, 0.0, 0.0, 1.0))
    assert places.grasp_height(grasp) == pytest.approx(0.04)
    pos, quat = places.place_pose('fixture', grasp)
    world = places.world_T_base @ np.r_[pos, 1.0]
    assert world[:3] == pytest.approx([0.6, 0.3, 0.9 + 0.04 + 0.01])
    assert quat == pytest.approx([0, 0, 0, 1])
    back = places.fixture_grasp(grasp)
    world = places.world_T_base @ np.r_[back.position, 1.0]
    assert world[:3] == pytest.approx([0.6, 0.3, 0.94])
    assert approach_axis((0, 0, 0, 1)) == pytest.approx([1, 0, 0])


def test_bad_input():
    places = _targets()
    with pytest.raises(ValueError, match='unknown destination'):
        places.place_pose('floor', Grasp(0, 1, 0.05, (0, 0, 0), (0, 0, 0, 1)))
    with pytest.raises(ValueError, match='non-finite'):
        places.place_pose('review', Grasp(0, 1, 0.05, (np.nan, 0, 0), (0, 0, 0, 1)))
    with pytest.raises(ValueError, match='missing'):
        PlaceTargets(np.eye(4), 0.7, {})
    with pytest.raises(ValueError, match='rigid'):
        PlaceTargets(np.ones((4, 4)), 0.7, _targets().targets)


def test_targets_from_the_cell_yaml():
    from humanoid_inspection.cell.places import targets_from_cell
    from humanoid_inspection.cell_geometry import load_cell
    cell = load_cell()
    places = targets_from_cell(cell, drop_m=0.01, bin_drop_m=0.05)
    grasp = Grasp(0, 1.0, 0.05, tuple(cell.world_to_base((0.34, 0.08, cell.table.top_z + 0.03))),
                  (0, 0, 0, 1))
    pos, _ = places.place_pose('accept_bin', grasp)
    world = places.world_T_base @ np.r_[pos, 1.0]
    rim = cell.accept_bin.pose.xyz[2] + cell.accept_bin.wall_height
    assert world[2] == pytest.approx(rim + 0.05 + 0.03)
    pos, _ = places.place_pose('fixture', grasp)
    world = places.world_T_base @ np.r_[pos, 1.0]
    assert world[:2] == pytest.approx(cell.xray_cabinet.fixture.pose.xyz[:2])


def test_pick_area_excludes_the_review_tray():
    from humanoid_inspection.cell.places import PickArea
    from humanoid_inspection.cell_geometry import load_cell
    cell = load_cell()
    area = PickArea.from_cell(cell)
    slot = cell.table.slot_pose(1).xyz
    assert area.reason_outside(cell.world_to_base(slot)) == ''
    tray = cell.review.pose.xyz
    assert area.reason_outside(cell.world_to_base(tray)) == 'on the review tray'
    assert area.reason_outside(cell.world_to_base(cell.accept_bin.pose.xyz)) == \
        'not on the table'


def test_the_part_centre_lands_on_the_target_centre():
    # a wall grasp 40 mm from the part's centre (+x of the base = +y of the world here): the
    # grasp point goes 40 mm beside the seat centre so the part's centre lands on it
    places = _targets()
    grasp = Grasp(0, 0.9, 0.02, (0.1, -0.5, -0.21), (0.0, 0.0, 0.0, 1.0), offset_xy=(0.04, 0.0))
    pos, _ = places.place_pose('fixture', grasp)
    world = places.world_T_base @ np.r_[pos, 1.0]
    assert world[:3] == pytest.approx([0.6, 0.34, 0.95])
    back = places.fixture_grasp(grasp)
    assert (places.world_T_base @ np.r_[back.position, 1.0])[:2] == pytest.approx([0.6, 0.34])
    assert back.offset_xy == (0.04, 0.0)
    assert Grasp.from_json(grasp.to_json()).offset_xy == (0.04, 0.0)
    assert Grasp.from_json({k: v for k, v in grasp.to_json().items()
                            if k != 'offset_xy'}).offset_xy == (0.0, 0.0)


def test_the_part_box_follows_the_grasp_into_the_fixture():
    # The part's box (perception's, base frame) is kept relative to the grasp, so the box
    # sent with the fixture pick is where the part was put: its centre on the seat centre.
    places = _targets()
    grasp = Grasp(0, 0.9, 0.02, (0.1, -0.5, -0.21), (0.0, 0.7071068, 0.0, 0.7071068),
                  offset_xy=(0.04, 0.0))
    box = pose_matrix((0.06, -0.5, -0.235), (0.0, 0.0, 0.3))      # centre 40 mm from the grasp
    grasp.object_box = object_box_in_grasp(grasp, box, (0.12, 0.12, 0.03))
    T, size = object_box_in_base(grasp)
    np.testing.assert_allclose(T, box, atol=1e-6)
    assert size == pytest.approx((0.12, 0.12, 0.03))
    stored = Grasp.from_json(grasp.to_json())
    assert stored.object_box == pytest.approx(grasp.object_box)
    in_fixture, _ = object_box_in_base(places.fixture_grasp(stored))
    world = places.world_T_base @ in_fixture
    # the seat centre (0.6, 0.3) at 0.9; the box centre half its height above it
    assert world[:3, 3] == pytest.approx([0.6, 0.3, 0.9 + 0.015], abs=1e-6)
    np.testing.assert_allclose(in_fixture[:3, :3], box[:3, :3], atol=1e-6)
    # unknown box: nothing sent (older records without the field, or a bad box)
    assert object_box_in_base(Grasp.from_json({k: v for k, v in grasp.to_json().items()
                                               if k != 'object_box'})) is None
    assert object_box_in_grasp(grasp, box, (0.12, 0.0, 0.03)) == ()
    assert object_box_in_grasp(grasp, np.full((4, 4), np.nan), (0.1, 0.1, 0.1)) == ()
