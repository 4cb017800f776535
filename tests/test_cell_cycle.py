"""The inspection cycle's state machine against a fake cell (pure logic, no ROS)."""

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import pytest

from humanoid_inspection.cell.cycle import (
    CellServices, CycleConfig, Grasp, Grasps, InspectionCycle, Inspection, MoveOutcome,
    Perception, PartSighting, ServiceUnavailable)
from humanoid_inspection.cell.records import RecordsStore


class Crash(BaseException):
    """Stands for the process being killed: nothing after it runs."""


@dataclass
class FakePart:
    part_id: str
    family: str = 'housing'
    defective: bool = False
    review: bool = False
    pixel_xy: tuple = (100.0, 100.0)
    graspable: bool = True
    reachable: bool = True
    grasp_failures: int = 0
    xray_failures: int = 0


@dataclass
class FakeCell(CellServices):
    """A tiny world: parts on a table, one fixture, bins; counts robot motions."""

    table: List[FakePart]
    fixture: Optional[FakePart] = None
    bins: dict = field(default_factory=lambda: {'accept_bin': [], 'reject_bin': [],
                                                'review': []})
    clock: float = 0.0
    at_rest: bool = True
    crash_at: str = ''           # method name that raises Crash (once)
    unavailable: str = ''        # method name that raises ServiceUnavailable
    estop: bool = False
    cancel_after: str = ''       # method name after which cancel is requested
    cancel_flag: bool = False
    handover_fails: bool = False  # sorting leaves the part on the table, fixture empty

    def _enter(self, name):
        self.clock += 1.0
        if self.unavailable == name:
            raise ServiceUnavailable(f'{name}: node not answering')
        if self.crash_at == name:
            self.crash_at = ''
            raise Crash(name)

    def _leave(self, name):
        if self.cancel_after == name:
            self.cancel_flag = True

    def sim_time(self):
        return self.clock

    def perceive(self):
        self._enter('perceive')
        sightings = [PartSighting(f'obj_{i}', p.family, 0.9, p.pixel_xy, handle=p)
                     for i, p in enumerate(self.table)]
        self._leave('perceive')
        return Perception(sightings, 0.05, np.zeros((8, 8, 3), np.uint8))

    def predict_grasps(self, sighting):
        self._enter('predict_grasps')
        if not sighting.handle.graspable:
            return Grasps([], 0.01, 'part wider than the gripper')
        cands = [Grasp(i, 0.9 - 0.1 * i, 0.05, (0.5, 0.0, 0.8), (0, 0, 0, 1), handle=i)
                 for i in range(3)]
        self._leave('predict_grasps')
        return Grasps(cands, 0.02)

    def pick_place(self, sighting, grasps, destination):
        self._enter('pick_place')
        self.at_rest = False
        part = sighting.handle
        if self.estop:
            return MoveOutcome(False, 'estop', 'safety/estop is active')
        if not part.reachable:
            return MoveOutcome(False, 'unreachable', 'no IK solution', planning_time_s=0.3)
        if part.grasp_failures > 0:
            part.grasp_failures -= 1
            return MoveOutcome(False, 'grasp_failed', 'gripper closed on nothing', 'right', 0,
                               0.2)
        assert destination == 'fixture' and self.fixture is None
        self.table.remove(part)
        self.fixture = part
        self._leave('pick_place')
        return MoveOutcome(True, 'ok', '', 'right', 0, 0.25, 6.0)

    def move_from_fixture(self, grasp, destination):
        self._enter('move_from_fixture')
        self.at_rest = False
        if self.fixture is None:
            return MoveOutcome(False, 'grasp_failed', 'gripper closed on nothing')
        if self.handover_fails and destination != 'review':
            self.table.append(self.fixture)
            self.fixture = None
            return MoveOutcome(False, 'plan_failed', 'part left on the table hand-over spot',
                               fixture_cleared=True)
        self.bins[destination].append(self.fixture)
        self.fixture = None
        self._leave('move_from_fixture')
        return MoveOutcome(True, 'ok', '', 'right', 0, 0.2, 5.0)

    def acquire_and_inspect(self, expected_part_id=''):
        self._enter('acquire_and_inspect')
        part = self.fixture
        if part is None:
            return Inspection(False, 'fixture is empty', fixture_empty=True)
        if part.xray_failures > 0:
            part.xray_failures -= 1
            return Inspection(False, 'tube arc: acquisition failed')
        verdict = 'REVIEW' if part.review else ('REJECT' if part.defective else 'ACCEPT')
        defects = [{'kind': 'shrinkage', 'box_xyxy': [2, 2, 6, 6]}] if part.defective else []
        self._leave('acquire_and_inspect')
        return Inspection(True, '', False, part.part_id, part.family, verdict,
                          [f'graded {verdict}'], defects, 'classical',
                          np.full((16, 16), 1000, np.uint16), 0.2, 1.4, 0.4, 0.1)

    def ground_truth(self, part_id):
        return {'defective': any(p.defective for p in [self.fixture] if p)}

    def go_to_rest(self):
        self.at_rest = True
        return True


def _run(tmp_path, cell, max_parts=0, run_id='run', config=None):
    store = RecordsStore(tmp_path / 'cell.db')
    events = []
    cycle = InspectionCycle(cell, store, run_id, config or CycleConfig(),
                            on_event=lambda *e: events.append(e),
                            cancel_requested=lambda: cell.cancel_flag)
    return cycle.run(max_parts), store, events


def _parts(n=4):
    return [FakePart(f'P{i}', defective=bool(i % 2), pixel_xy=(100.0 * i, 50.0))
            for i in range(n)]


def test_sorts_good_and_defective_parts_and_records_everything(tmp_path):
    cell = FakeCell(_parts(4))
    summary, store, events = _run(tmp_path, cell)
    assert summary.success, summary.message
    assert (summary.accepted, summary.rejected, summary.failed) == (2, 2, 0)
    assert [p.part_id for p in cell.bins['accept_bin']] == ['P0', 'P2']
    assert [p.part_id for p in cell.bins['reject_bin']] == ['P1', 'P3']
    assert 'table empty' in summary.message and cell.at_rest
    records = store.all()
    assert all(r.state == 'sorted' and r.radiograph_path and r.snapshot_path for r in records)
    assert [r.outcome for r in records] == ['accepted', 'rejected', 'accepted', 'rejected']
    assert records[1].ground_truth == {'defective': True}
    assert records[0].cycle_time_s > 0
    assert records[0].stage_times['compute_planning_s'] == pytest.approx(0.45)
    stages = {e[2] for e in events}
    assert {'perceive', 'affordance', 'pick_to_fixture', 'xray', 'record', 'sort'} <= stages
    # the 'inspected' state was committed before the part left the fixture
    for rec in records:
        states = [e['state'] for e in store.events(rec.record_id)]
        assert states.index('inspected') < states.index('sorted')


def test_max_parts_limits_the_cycle(tmp_path):
    summary, store, _ = _run(tmp_path, FakeCell(_parts(4)), max_parts=2)
    assert summary.parts_done == 2 and len(store.all()) == 2
    with pytest.raises(ValueError, match='max_parts'):
        _run(tmp_path / 'b', FakeCell(_parts(1)), max_parts=-1)


def test_failed_grasp_is_retried_with_the_next_candidate(tmp_path):
    parts = _parts(1)
    parts[0].grasp_failures = 1
    summary, store, _ = _run(tmp_path, FakeCell(parts))
    rec = store.all()[0]
    assert rec.outcome == 'accepted' and rec.grasp_attempts == 2 and rec.grasp_index == 1


def test_grasp_that_always_fails_is_recorded_and_skipped(tmp_path):
    parts = _parts(2)
    parts[0].grasp_failures = 99
    cell = FakeCell(parts)
    summary, store, _ = _run(tmp_path, cell)
    first, second = store.all()
    assert first.outcome == 'grasp_failed' and 'no candidate left' in first.failure_reason
    assert second.outcome == 'rejected'
    assert '1 part(s) left' in summary.message


def test_no_grasp_and_unreachable_parts_are_skipped_with_reasons(tmp_path):
    parts = _parts(3)
    parts[0].graspable = False
    parts[1].reachable = False
    summary, store, _ = _run(tmp_path, FakeCell(parts))
    a, b, c = store.all()
    assert a.outcome == 'no_grasp' and 'wider than the gripper' in a.failure_reason
    assert b.outcome == 'plan_failed' and 'unreachable' in b.failure_reason
    assert c.outcome == 'accepted'
    assert summary.failed == 2 and summary.success


def test_xray_failure_goes_to_review_with_a_reason(tmp_path):
    parts = _parts(1)
    parts[0].xray_failures = 5
    part = parts[0]
    cell = FakeCell(parts)
    summary, store, _ = _run(tmp_path, cell)
    rec = store.all()[0]
    assert rec.outcome == 'xray_failed' and 'tube arc' in rec.failure_reason
    assert cell.bins['review'] == [part] and cell.fixture is None


def test_single_xray_glitch_is_retried(tmp_path):
    parts = _parts(1)
    parts[0].xray_failures = 1
    _, store, _ = _run(tmp_path, FakeCell(parts))
    assert store.all()[0].outcome == 'accepted'


def test_review_verdict_goes_to_the_review_location(tmp_path):
    parts = _parts(1)
    parts[0].review = True
    part = parts[0]
    cell = FakeCell(parts)
    summary, store, _ = _run(tmp_path, cell)
    assert store.all()[0].outcome == 'review' and cell.bins['review'] == [part]
    assert summary.review == 1


def test_cancel_leaves_robot_at_rest_and_next_run_finishes_the_part(tmp_path):
    cell = FakeCell(_parts(3), cancel_after='pick_place')
    summary, store, _ = _run(tmp_path, cell)
    assert not summary.success and summary.message == 'canceled' and cell.at_rest
    rec = store.all()[0]
    assert rec.state == 'in_fixture' and cell.fixture is not None
    cell.cancel_after, cell.cancel_flag = '', False
    summary2, store2, _ = _run(tmp_path, cell, run_id='run2')
    assert summary2.recovered == 1 and summary2.success
    assert store2.get(rec.record_id).state == 'sorted'
    assert len(store2.all()) == 3 and all(r.state == 'sorted' for r in store2.all())


def test_crash_after_inspection_keeps_verdict_and_sorts_on_restart(tmp_path):
    parts = _parts(2)
    cell = FakeCell(parts, crash_at='move_from_fixture')
    with pytest.raises(Crash):
        _run(tmp_path, cell)
    store = RecordsStore(tmp_path / 'cell.db')
    (rec,) = store.all()
    assert rec.state == 'inspected' and rec.verdict == 'ACCEPT' and rec.radiograph_path
    summary, store, _ = _run(tmp_path, cell, run_id='run2')
    assert summary.recovered == 1
    rec = store.get(rec.record_id)
    assert rec.state == 'sorted' and rec.inspections == 1
    assert [p.part_id for p in cell.bins['accept_bin']] == ['P0']


def test_crash_with_part_in_fixture_reinspects_it(tmp_path):
    cell = FakeCell(_parts(2), crash_at='acquire_and_inspect')
    with pytest.raises(Crash):
        _run(tmp_path, cell)
    summary, store, _ = _run(tmp_path, cell, run_id='run2')
    first = store.all()[0]
    assert first.state == 'sorted' and first.inspections == 1 and first.part_id == 'P0'
    assert summary.recovered == 1 and summary.accepted + summary.rejected == 2


def test_crash_during_transfer_with_empty_fixture_is_recorded(tmp_path):
    cell = FakeCell(_parts(1), crash_at='pick_place')
    with pytest.raises(Crash):
        _run(tmp_path, cell)
    summary, store, _ = _run(tmp_path, cell, run_id='run2')
    first = store.all()[0]
    assert first.outcome == 'interrupted' and 'not in the fixture' in first.failure_reason
    assert store.all()[1].outcome == 'accepted'   # the part was still on the table


def test_estop_stops_the_cycle(tmp_path):
    cell = FakeCell(_parts(2), estop=True)
    summary, store, _ = _run(tmp_path, cell)
    assert not summary.success and 'safety stop' in summary.message
    assert store.all()[0].outcome == 'estop' and len(store.all()) == 1


def test_dead_node_stops_cleanly_and_keeps_records(tmp_path):
    cell = FakeCell(_parts(2), unavailable='acquire_and_inspect')
    rests = []
    cell.go_to_rest = lambda: rests.append(len(events)) or True
    events = []
    store = RecordsStore(tmp_path / 'cell.db')
    summary = InspectionCycle(cell, store, 'run', CycleConfig(),
                              on_event=lambda *e: events.append(e)).run()
    assert not summary.success and 'node not answering' in summary.message
    assert store.all()[0].state == 'in_fixture'   # found again by the next run
    # the stop is said as it happens, before the closing rest motion (which can wait for a
    # robot that does not answer)
    stops = [i for i, e in enumerate(events) if e[2] == 'cycle']
    assert len(stops) == 1 and 'node not answering' in events[stops[0]][3]
    assert rests[-1] == stops[0] + 1


def test_consecutive_failures_stop_the_cycle(tmp_path):
    parts = _parts(5)
    for p in parts:
        p.reachable = False
    summary, store, _ = _run(tmp_path, FakeCell(parts), config=CycleConfig(
        max_consecutive_failures=2))
    assert not summary.success and '2 parts in a row failed' in summary.message


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match='max_grasp_attempts'):
        CycleConfig(max_grasp_attempts=0)


def test_failed_handover_is_recorded_and_the_cycle_goes_on(tmp_path):
    cell = FakeCell(_parts(3), handover_fails=True)
    summary, store, _ = _run(tmp_path, cell, config=CycleConfig(max_consecutive_failures=5))
    recs = store.all()
    assert len(recs) == 3 and all(r.outcome == 'sort_failed' for r in recs)
    assert all(r.verdict and 'verdict' in r.failure_reason for r in recs)
    assert '3 part(s) left that cannot be handled' in summary.message
    assert cell.fixture is None and cell.at_rest


def test_the_table_is_looked_at_from_the_rest_pose(tmp_path):
    # after a sort the waist may be turned and an arm in view: the cycle sends the robot to
    # rest before every look (the demo saw the cabinet as a part from a turned waist)
    class Watching(FakeCell):
        looks_at_rest: list = None

        def perceive(self):
            self.looks_at_rest = (self.looks_at_rest or []) + [self.at_rest]
            return super().perceive()

    cell = Watching(_parts(3))
    summary, _, _ = _run(tmp_path, cell)
    assert summary.success, summary.message
    assert cell.looks_at_rest == [True] * 4      # 3 parts + the empty table


def test_rest_service_down_still_looks(tmp_path):
    class NoRest(FakeCell):
        def go_to_rest(self):
            raise ServiceUnavailable('manipulation/rest is not available')

    cell = NoRest(_parts(1))
    summary, _, events = _run(tmp_path, cell)
    assert any('no rest motion' in e[3] for e in events)
    assert cell.bins['accept_bin'] or not summary.success


def test_a_full_review_tray_sends_further_review_parts_to_quarantine(tmp_path):
    parts = [FakePart(f'R{i}', review=True, pixel_xy=(100.0 * i, 50.0)) for i in range(2)]
    cell = FakeCell(parts)
    summary, store, events = _run(tmp_path, cell)
    assert summary.success, summary.message
    assert summary.review == 2
    assert [p.part_id for p in cell.bins['review']] == ['R0']
    assert [p.part_id for p in cell.bins['reject_bin']] == ['R1']
    assert [(r.outcome, r.destination) for r in store.all()] == [
        ('review', 'review'), ('review', 'reject_bin')]
    assert any('quarantined in reject_bin' in e[3] for e in events)
