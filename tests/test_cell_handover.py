"""Taking a part on from the table hand-over spot (cell/handover.py): pure logic, fakes for
the robot's look, grasp and park."""

import pytest

from humanoid_inspection.cell.cycle import Grasp, MoveOutcome
from humanoid_inspection.cell.handover import SpotLook, take_from_spot, untried_first


def grasp(x, y=0.0, index=0):
    return Grasp(index, 0.5, 0.05, (x, y, 0.8), (0.0, 0.0, 0.0, 1.0))


class Spot:
    """A part on the spot: each look sees the grasps of `looks` in turn (the part moves
    when a grasp misses); a grasp holds when its point is in `holds`."""

    def __init__(self, looks, holds=(), error='grasp_failed'):
        self.looks = list(looks)
        self.holds = [tuple(p) for p in holds]
        self.error = error
        self.seen = 0
        self.tried = []
        self.parked = []

    def look(self):
        self.seen += 1
        return self.looks.pop(0) if self.looks else SpotLook([], 'nothing there')

    def attempt(self, candidates):
        g = candidates[0]
        self.tried.append(tuple(g.position))
        if tuple(g.position) in self.holds:
            return MoveOutcome(True, arm='right', grasp_index=0, planning_time_s=0.5)
        return MoveOutcome(False, self.error, 'the right finger closed to 0.0 mm', 'right', 0,
                           planning_time_s=0.5)

    def park(self, arm):
        self.parked.append(arm)
        return ''


BLIND = grasp(9.0)


def test_a_miss_is_followed_by_a_fresh_look_and_the_arm_parked_between():
    # the first grasp pushes the part: the second look sees it 2 cm further on
    spot = Spot([SpotLook([grasp(0.0)]), SpotLook([grasp(0.02)])], holds=[(0.02, 0.0, 0.8)])
    out = take_from_spot(spot.look, spot.attempt, spot.park, BLIND, 3)
    assert out.success
    assert spot.tried == [(0.0, 0.0, 0.8), (0.02, 0.0, 0.8)]
    assert spot.seen == 2 and spot.parked == ['right']
    assert out.planning_time_s == pytest.approx(1.0)      # summed over the attempts


def test_the_grasp_that_missed_is_tried_last():
    same = [grasp(0.0), grasp(0.05)]                      # the part did not move
    spot = Spot([SpotLook(list(same)), SpotLook(list(same))], holds=[(0.05, 0.0, 0.8)])
    out = take_from_spot(spot.look, spot.attempt, spot.park, BLIND, 3)
    assert out.success and spot.tried == [(0.0, 0.0, 0.8), (0.05, 0.0, 0.8)]
    assert untried_first(same, [(0.004, 0.0, 0.8)])[0].position == (0.05, 0.0, 0.8)


def test_attempts_are_bounded_and_the_last_miss_is_returned_without_parking():
    spot = Spot([SpotLook([grasp(0.01 * k)]) for k in range(5)])
    out = take_from_spot(spot.look, spot.attempt, spot.park, BLIND, 3)
    assert not out.success and out.error == 'grasp_failed'
    assert len(spot.tried) == 3 and spot.parked == ['right', 'right']
    assert out.planning_time_s == pytest.approx(1.5)


def test_not_seen_grasps_blind_once_then_gives_up():
    spot = Spot([])                                       # never seen again
    notes = []
    out = take_from_spot(spot.look, spot.attempt, spot.park, BLIND, 3, notes.append)
    assert not out.success and spot.tried == [BLIND.position]
    assert spot.seen == 2 and 'giving up' in notes[-1] and 'nothing there' in notes[0]


def test_a_plan_failure_is_not_retried():
    spot = Spot([SpotLook([grasp(0.0)]), SpotLook([grasp(0.02)])], error='unreachable')
    out = take_from_spot(spot.look, spot.attempt, spot.park, BLIND, 3)
    assert out.error == 'unreachable' and len(spot.tried) == 1 and not spot.parked


def test_at_least_one_attempt():
    with pytest.raises(ValueError, match='at least 1'):
        take_from_spot(lambda: SpotLook(), lambda c: MoveOutcome(True), lambda a: '', BLIND, 0)
