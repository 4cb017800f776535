"""The per-part inspection cycle as pure logic, written against an abstract CellServices.

Per part::

    perceive -> affordance -> pick_to_fixture -> xray (acquire + inspect) -> record -> sort

- ``perceive``: the head camera's detections of the parts on the table (the best one first);
  parts skipped earlier in this run (no grasp, plan failure) are not tried again.
- ``affordance``: ranked grasp candidates for the chosen part, in the robot base frame.
- ``pick_to_fixture``: pick_place into the X-ray fixture. A failed grasp (the gripper closed on
  nothing) is retried with the next candidate (up to ``max_grasp_attempts``); a plan failure
  (unreachable, collision, no path) is recorded and the part skipped with the reason.
- ``xray``: acquire a radiograph of the part in the fixture and grade it; one retry; a part that
  still cannot be judged goes to the review location with outcome ``xray_failed``.
- ``record``: state ``inspected`` with verdict, defects, reasons and the 16-bit radiograph is
  committed BEFORE the part leaves the fixture.
- ``sort``: pick_place from the fixture into the accept bin (ACCEPT), the reject bin (REJECT)
  or the review location (REVIEW: a human decides; see docs/cell.md), then state ``sorted``.

Recovery at the start of every run: records left ``picked`` / ``in_fixture`` by a crash are
looked up in the fixture and inspected again (a new radiograph; the record keeps the count);
records left ``inspected`` are sorted with their committed verdict. Cancel is honoured between
stages (and the services may abort a running motion): the robot goes to rest, a part in the
fixture stays recorded as unfinished and is picked up by the next run's recovery.
"""

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from humanoid_inspection.cell.records import RecordsStore

STAGES = ('perceive', 'affordance', 'pick_to_fixture', 'xray', 'record', 'sort')

# MoveOutcome.error values
MOVE_ERRORS = ('ok', 'invalid_goal', 'unreachable', 'start_in_collision', 'goal_in_collision',
               'plan_failed', 'execution_failed', 'canceled', 'estop', 'grasp_failed',
               'start_out_of_limits', 'busy')
PLAN_ERRORS = ('invalid_goal', 'unreachable', 'start_in_collision', 'goal_in_collision',
               'plan_failed', 'start_out_of_limits')

DESTINATIONS = {'ACCEPT': 'accept_bin', 'REJECT': 'reject_bin', 'REVIEW': 'review'}
OUTCOME_OF_VERDICT = {'ACCEPT': 'accepted', 'REJECT': 'rejected', 'REVIEW': 'review'}


class ServiceUnavailable(RuntimeError):
    """A node of the stack did not answer (not started, died, timed out)."""


class CycleStop(RuntimeError):
    """The cycle cannot go on (estop, a node down, the fixture blocked); message says why."""

    def __init__(self, message: str, outcome: str = 'node_unavailable'):
        super().__init__(message)
        self.outcome = outcome


@dataclass
class PartSighting:
    """One part seen on the table."""

    object_id: str
    family: str = ''
    score: float = 0.0
    pixel_xy: tuple = (0.0, 0.0)      # box centre in the head-camera image (px)
    handle: Any = None                # service-specific data (e.g. the Detection message)

    def near(self, other: 'PartSighting', tolerance_px: float) -> bool:
        """True when both sightings are within tolerance_px of each other in the image."""
        return float(np.hypot(self.pixel_xy[0] - other.pixel_xy[0],
                              self.pixel_xy[1] - other.pixel_xy[1])) <= tolerance_px


@dataclass
class Perception:
    """What perceive() saw: sightings (best first), compute time and an optional picture."""

    sightings: List[PartSighting]
    compute_s: float = 0.0
    snapshot: Optional[np.ndarray] = None   # uint8 HxWx3 RGB of the head camera
    note: str = ''                          # what was seen but left out, and why


@dataclass
class Grasp:
    """One ranked grasp candidate in the robot base frame."""

    index: int
    score: float
    opening_m: float
    position: tuple          # grasp point (m)
    orientation: tuple       # quaternion x, y, z, w
    handle: Any = None       # service-specific data (e.g. the Affordance message)
    offset_xy: tuple = (0.0, 0.0)   # grasp point minus the part's centre, base frame x, y (m)
    # the part's box in the grasp (TCP) frame: centre x, y, z (m), quaternion x, y, z, w,
    # extents x, y, z (m); () = unknown. Fixed while held, so it follows the grasp wherever
    # the part is put (the manipulation planner carries it as the part's collision box).
    object_box: tuple = ()

    def to_json(self) -> dict:
        """JSON-serialisable form (for the record)."""
        return {'index': int(self.index), 'score': float(self.score),
                'opening_m': float(self.opening_m),
                'position': [float(v) for v in self.position],
                'orientation': [float(v) for v in self.orientation],
                'offset_xy': [float(v) for v in self.offset_xy],
                'object_box': [float(v) for v in self.object_box]}

    @staticmethod
    def from_json(data: dict) -> 'Grasp':
        """Inverse of to_json."""
        return Grasp(int(data['index']), float(data['score']), float(data['opening_m']),
                     tuple(data['position']), tuple(data['orientation']),
                     offset_xy=tuple(data.get('offset_xy', (0.0, 0.0))),
                     object_box=tuple(data.get('object_box', ())))


@dataclass
class Grasps:
    """predict_grasps() result: candidates best first, compute time, reason when empty."""

    candidates: List[Grasp]
    compute_s: float = 0.0
    message: str = ''


@dataclass
class MoveOutcome:
    """Result of a pick_place."""

    success: bool
    error: str = 'ok'            # one of MOVE_ERRORS
    message: str = ''
    arm: str = ''
    grasp_index: int = -1        # index into the candidates passed in, -1 if none executed
    planning_time_s: float = 0.0
    duration_s: float = 0.0      # trajectory duration (s, simulated robot time)
    fixture_cleared: bool = False  # a failed move_from_fixture that left the fixture empty


@dataclass
class Inspection:
    """Result of acquire + inspect of the part in the fixture."""

    success: bool
    message: str = ''
    fixture_empty: bool = False
    part_id: str = ''
    family: str = ''
    verdict: str = ''
    reasons: List[str] = field(default_factory=list)
    defects: List[dict] = field(default_factory=list)
    detector: str = ''
    radiograph: Optional[np.ndarray] = None   # uint16 HxW
    pixel_pitch_mm: float = 0.0
    magnification: float = 0.0
    compute_s: float = 0.0                    # inspection compute (detect + grade), s
    acquire_s: float = 0.0                    # acquisition (simulated exposure), s


class CellServices(ABC):
    """What the cycle needs from the cell; the node implements it with ROS clients.

    Methods raise ServiceUnavailable when the node behind them does not answer.
    """

    @abstractmethod
    def perceive(self) -> Perception:
        """Parts on the table now, best candidate first."""

    @abstractmethod
    def predict_grasps(self, sighting: PartSighting) -> Grasps:
        """Ranked grasp candidates for the sighting, in the robot base frame."""

    @abstractmethod
    def pick_place(self, sighting: PartSighting, grasps: List[Grasp],
                   destination: str) -> MoveOutcome:
        """Pick the part with the first workable candidate and place it at destination."""

    @abstractmethod
    def move_from_fixture(self, grasp: Optional[Grasp], destination: str) -> MoveOutcome:
        """Pick the part in the X-ray fixture and place it at destination."""

    @abstractmethod
    def acquire_and_inspect(self, expected_part_id: str = '') -> Inspection:
        """Radiograph the part in the fixture and grade it."""

    @abstractmethod
    def go_to_rest(self) -> bool:
        """Move the robot to its rest pose; True when it got there."""

    def ground_truth(self, part_id: str) -> Optional[dict]:
        """The simulation's ground truth for a part (report only), None when unknown."""
        return None

    def sim_time(self) -> Optional[float]:
        """The simulation clock (s), None when unknown."""
        return None


@dataclass
class CycleConfig:
    """Knobs of the cycle (config/cell_manager.yaml)."""

    max_grasp_attempts: int = 3
    xray_attempts: int = 2
    sort_attempts: int = 2
    max_consecutive_failures: int = 3
    skip_tolerance_px: float = 25.0
    review_destination: str = 'review'
    save_snapshots: bool = True
    review_capacity: int = 1            # parts the review location holds (0 = no limit)
    review_overflow: str = 'reject_bin'  # where parts for review go once it is full

    def __post_init__(self):
        for name in ('max_grasp_attempts', 'xray_attempts', 'sort_attempts',
                     'max_consecutive_failures'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')


@dataclass
class CycleSummary:
    """What a run did (the action result and the demo's table)."""

    run_id: str
    success: bool
    message: str
    parts_done: int = 0
    accepted: int = 0
    rejected: int = 0
    review: int = 0
    failed: int = 0
    recovered: int = 0
    part_ids: List[str] = field(default_factory=list)
    record_ids: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-serialisable form."""
        return dict(self.__dict__)


EventCallback = Callable[[int, str, str, str], None]   # (part_index, record_id, stage, message)


class InspectionCycle:
    """Runs parts through the cell and records every outcome.

    Args:
        services: the CellServices implementation.
        store: the records store.
        run_id: id of this run (prefix of the record ids).
        config: CycleConfig.
        on_event: called with (part_index, record_id, stage, message) at each stage.
        cancel_requested: returns True once the caller wants the cycle to stop.
    """

    def __init__(self, services: CellServices, store: RecordsStore, run_id: str,
                 config: Optional[CycleConfig] = None, on_event: Optional[EventCallback] = None,
                 cancel_requested: Optional[Callable[[], bool]] = None):
        self.services = services
        self.store = store
        self.run_id = run_id
        self.config = config or CycleConfig()
        self._on_event = on_event or (lambda *a: None)
        self._cancel = cancel_requested or (lambda: False)
        self._skipped: List[PartSighting] = []
        self.summary = CycleSummary(run_id, False, '')
        self.canceled = False

    # -- helpers ---------------------------------------------------------------------------
    def _event(self, index: int, record_id: str, stage: str, message: str) -> None:
        self._on_event(index, record_id, stage, message)

    def _sim(self) -> Optional[float]:
        try:
            return self.services.sim_time()
        except Exception:  # the clock is informative only
            return None

    def _finish_failed(self, record_id: str, outcome: str, reason: str) -> None:
        self.store.fail(record_id, outcome, reason, sim_time_s=self._sim())
        self.summary.failed += 1

    def _finish_sorted(self, record_id: str, verdict: str, destination: str) -> None:
        outcome = OUTCOME_OF_VERDICT[verdict]
        self.store.update(record_id, 'sorted', f'sorted to {destination}', outcome=outcome,
                          destination=destination, sim_end_s=self._sim())
        setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)

    def _count_part(self, record_id: str) -> None:
        rec = self.store.get(record_id)
        self.summary.part_ids.append(rec.part_id or record_id)
        self.summary.record_ids.append(record_id)

    # -- public ----------------------------------------------------------------------------
    def run(self, max_parts: int = 0) -> CycleSummary:
        """Recover unfinished parts, then inspect up to max_parts parts (0 = until empty)."""
        if int(max_parts) < 0:
            raise ValueError(f'max_parts must be >= 0, got {max_parts}')
        self.store.start_run(self.run_id, int(max_parts))
        message = ''
        success = True
        try:
            self._recover()
            message = self._loop(int(max_parts))
        except CycleStop as exc:
            success = False
            message = str(exc)
        except ServiceUnavailable as exc:
            success = False
            message = f'stopped: {exc}'
        if self.canceled:
            success = False
            message = 'canceled'
        if not success:
            # said now, not with the result: the rest motion below waits for a robot that may
            # not answer (up to its own timeout)
            self._event(-1, '', 'cycle', message)
        try:
            self.services.go_to_rest()
        except ServiceUnavailable as exc:
            message += f' (robot not sent to rest: {exc})'
            success = False
        self.summary.success = success
        self.summary.message = message
        self.store.end_run(self.run_id, message, self.summary.to_json())
        return self.summary

    # -- recovery -------------------------------------------------------------------------
    def _recover(self) -> None:
        for rec in self.store.stale_pending():
            self.store.fail(rec.record_id, 'interrupted',
                            'cell stopped before the pick; the part stayed on the table '
                            'and is handled again as a new part')
        for rec in self.store.unfinished():
            if self._cancel():
                self.canceled = True
                return
            self.summary.recovered += 1
            self._event(-1, rec.record_id, 'xray', f'recovering {rec.record_id} ({rec.state})')
            grasp = Grasp.from_json(rec.grasp) if rec.grasp else None
            if rec.state in ('picked', 'in_fixture'):
                if not self._inspect(-1, rec.record_id):
                    self._count_part(rec.record_id)
                    continue
            verdict = self.store.get(rec.record_id).verdict
            self._sort(-1, rec.record_id, verdict, grasp, recovering=True)
            self._count_part(rec.record_id)

    # -- main loop ------------------------------------------------------------------------
    def _loop(self, max_parts: int) -> str:
        consecutive_failures = 0
        index = 0
        while max_parts == 0 or index < max_parts:
            if self._cancel():
                self.canceled = True
                return 'canceled'
            # look from the rest pose: after a sort the waist may be turned and an arm in
            # view, and the head camera then sees the cabinet, the bins or the arm as "parts"
            # at odd angles (the demo's spurious detections and missed wall grasps)
            try:
                rested = self.services.go_to_rest()
            except ServiceUnavailable as exc:
                rested = False
                self._event(index, '', 'perceive', f'no rest motion ({exc})')
            if not rested:
                self._event(index, '', 'perceive', 'robot not at rest; looking anyway')
            self._event(index, '', 'perceive', 'looking at the table')
            t0 = time.monotonic()
            seen = self.services.perceive()
            perceive_wall = time.monotonic() - t0
            candidates = [s for s in seen.sightings
                          if not any(s.near(k, self.config.skip_tolerance_px)
                                     for k in self._skipped)]
            if not candidates:
                skipped = len(seen.sightings) - len(candidates)
                note = f' ({skipped} part(s) left that cannot be handled)' if skipped else ''
                note += f' [{seen.note}]' if seen.note else ''
                return f'table empty after {index} part(s){note}'
            sighting = candidates[0]
            record_id = self.store.create(self.run_id, index, sim_time_s=self._sim())
            self.summary.parts_done += 1
            times = {'wall_perceive_s': perceive_wall, 'compute_perception_s': seen.compute_s}
            values: Dict[str, Any] = {'family': sighting.family or None, 'stage_times': times}
            if self.config.save_snapshots and seen.snapshot is not None:
                values['snapshot_path'] = self.store.save_snapshot(record_id, seen.snapshot)
            self.store.update(record_id, None, f'chose {sighting.object_id}', **values)
            self._event(index, record_id, 'perceive',
                        f'{len(candidates)} part(s) on the table; taking {sighting.object_id} '
                        f'({sighting.family or "?"})')
            ok = self._part(index, record_id, sighting)
            self._count_part(record_id)
            consecutive_failures = 0 if ok else consecutive_failures + 1
            if consecutive_failures >= self.config.max_consecutive_failures:
                last = self.store.get(record_id).failure_reason
                raise CycleStop(f'{consecutive_failures} parts in a row failed; stopping '
                                f'(last: {last})')
            index += 1
            if self.canceled:
                return 'canceled'
        return f'{index} part(s) done'

    def _canceled_between(self, index: int, record_id: str, where: str) -> bool:
        if not self._cancel():
            return False
        self.canceled = True
        rec = self.store.get(record_id)
        if rec.state == 'pending':
            self._finish_failed(record_id, 'canceled', f'cycle canceled {where}')
        else:
            self.store.update(record_id, None,
                              f'cycle canceled {where}; part left in the fixture, the next '
                              'run inspects and sorts it')
        self._event(index, record_id, 'record', f'canceled {where}')
        return True

    def _review_destination(self) -> str:
        """The review location, or review_overflow once it holds review_capacity parts.

        A review tray holds one part (cell.yaml review); a second one set on it was blocked
        (the demo's 'place: not reached'). Parts already there: records of this database that
        ended (sorted or failed) with the review location as destination.
        """
        cfg = self.config
        if cfg.review_capacity <= 0 or not cfg.review_overflow:
            return cfg.review_destination
        there = sum(1 for r in self.store.all() if r.destination == cfg.review_destination
                    and r.state in ('sorted', 'failed'))
        return cfg.review_destination if there < cfg.review_capacity else cfg.review_overflow

    def _add_times(self, record_id: str, **times: float) -> None:
        rec = self.store.get(record_id)
        merged = dict(rec.stage_times)
        for key, value in times.items():
            merged[key] = merged.get(key, 0.0) + float(value)
        self.store.update(record_id, None, 'timings', stage_times=merged)

    def _part(self, index: int, record_id: str, sighting: PartSighting) -> bool:
        """One part from the table to its bin; True when sorted by verdict."""
        if self._canceled_between(index, record_id, 'before the affordance stage'):
            return False
        self._event(index, record_id, 'affordance', 'predicting grasps')
        t0 = time.monotonic()
        grasps = self.services.predict_grasps(sighting)
        self._add_times(record_id, wall_affordance_s=time.monotonic() - t0,
                        compute_affordance_s=grasps.compute_s)
        if not grasps.candidates:
            reason = f'no grasp candidate for {sighting.object_id}'
            reason += f': {grasps.message}' if grasps.message else ''
            self._skipped.append(sighting)
            self._finish_failed(record_id, 'no_grasp', reason)
            self._event(index, record_id, 'affordance', reason)
            return False
        self._event(index, record_id, 'affordance',
                    f'{len(grasps.candidates)} grasp candidate(s), best score '
                    f'{grasps.candidates[0].score:.2f}')
        if self._canceled_between(index, record_id, 'before the pick'):
            return False
        if not self._pick_to_fixture(index, record_id, sighting, grasps.candidates):
            return False
        if self._canceled_between(index, record_id, 'with the part in the fixture'):
            return False
        if not self._inspect(index, record_id):
            return False
        if self._canceled_between(index, record_id, 'after the inspection'):
            return False
        rec = self.store.get(record_id)
        grasp = Grasp.from_json(rec.grasp) if rec.grasp else None
        return self._sort(index, record_id, rec.verdict, grasp, sighting=sighting)

    def _pick_to_fixture(self, index: int, record_id: str, sighting: PartSighting,
                         candidates: List[Grasp]) -> bool:
        remaining = list(candidates)
        attempts = 0
        self.store.update(record_id, 'picked', 'picking to the X-ray fixture',
                          grasp=candidates[0].to_json())
        while remaining and attempts < self.config.max_grasp_attempts:
            attempts += 1
            self._event(index, record_id, 'pick_to_fixture',
                        f'attempt {attempts}: {len(remaining)} candidate(s)')
            t0 = time.monotonic()
            out = self.services.pick_place(sighting, remaining, 'fixture')
            self._add_times(record_id, wall_pick_to_fixture_s=time.monotonic() - t0,
                            compute_planning_s=out.planning_time_s)
            self.store.update(record_id, None, f'pick attempt {attempts}: {out.error} '
                              f'{out.message}'.strip(), grasp_attempts=attempts)
            if out.success:
                used = remaining[max(out.grasp_index, 0)] if remaining else None
                self.store.update(record_id, 'in_fixture', 'placed in the X-ray fixture',
                                  arm=out.arm, grasp_index=used.index if used else None,
                                  grasp=used.to_json() if used else None)
                self._event(index, record_id, 'pick_to_fixture',
                            f'in the fixture ({out.arm} arm, grasp #{used.index if used else -1}, '
                            f'plan {out.planning_time_s:.2f} s)')
                return True
            if out.error == 'grasp_failed':
                executed = out.grasp_index if out.grasp_index >= 0 else 0
                remaining = remaining[executed + 1:]
                self._event(index, record_id, 'pick_to_fixture',
                            f'grasp failed ({out.message}); trying the next candidate')
                continue
            return self._move_failed(index, record_id, sighting, out, 'pick to the fixture')
        reason = (f'grasp failed {attempts} time(s); no candidate left'
                  if not remaining else f'grasp failed {attempts} time(s) (attempt limit)')
        self._skipped.append(sighting)
        self._finish_failed(record_id, 'grasp_failed', reason)
        self._event(index, record_id, 'pick_to_fixture', reason)
        self.services.go_to_rest()
        return False

    def _move_failed(self, index: int, record_id: str, sighting: Optional[PartSighting],
                     out: MoveOutcome, what: str) -> bool:
        reason = f'{what}: {out.error}: {out.message}'.strip()
        if out.error == 'estop':
            self._finish_failed(record_id, 'estop', reason)
            raise CycleStop(f'safety stop active ({reason})', 'estop')
        if out.error == 'canceled':
            self.canceled = True
            self.store.update(record_id, None, f'canceled during {what}; left unfinished')
            self._event(index, record_id, 'pick_to_fixture', f'canceled during {what}')
            return False
        outcome = 'plan_failed' if out.error in PLAN_ERRORS else 'execution_failed'
        if sighting is not None:
            self._skipped.append(sighting)
        self._finish_failed(record_id, outcome, reason)
        self._event(index, record_id, 'pick_to_fixture', f'skipped: {reason}')
        self.services.go_to_rest()
        return False

    def _inspect(self, index: int, record_id: str) -> bool:
        """Acquire + inspect the part in the fixture; commit 'inspected' on success."""
        rec = self.store.get(record_id)
        last = None
        for attempt in range(1, self.config.xray_attempts + 1):
            self._event(index, record_id, 'xray', f'acquiring radiograph (attempt {attempt})')
            t0 = time.monotonic()
            insp = self.services.acquire_and_inspect(rec.part_id or '')
            self._add_times(record_id, wall_xray_s=time.monotonic() - t0,
                            compute_xray_inspection_s=insp.compute_s,
                            wall_acquire_s=insp.acquire_s)
            last = insp
            if insp.success:
                break
            if insp.fixture_empty:
                break
        if not last.success:
            if last.fixture_empty:
                reason = f'the X-ray fixture is empty ({last.message})'
                outcome = 'interrupted' if rec.state == 'picked' else 'xray_failed'
                if rec.state == 'picked':
                    reason = ('cell stopped during the transfer; the part is not in the '
                              f'fixture (check gripper and table): {last.message}')
                self._finish_failed(record_id, outcome, reason)
                self._event(index, record_id, 'xray', reason)
                self.services.go_to_rest()
                return False
            reason = f'X-ray inspection failed: {last.message}'
            self._event(index, record_id, 'xray', reason + '; sending the part to review')
            grasp = Grasp.from_json(rec.grasp) if rec.grasp else None
            review = self._review_destination()
            out = self.services.move_from_fixture(grasp, review)
            if not out.success:
                self.store.update(record_id, None, f'{reason}; could not clear the fixture: '
                                  f'{out.error} {out.message}', failure_reason=reason)
                raise CycleStop(f'{reason}; the part is stuck in the fixture '
                                f'({out.error}: {out.message})', 'xray_failed')
            self.store.update(record_id, None, f'moved to {review} for review',
                              destination=review)
            self._finish_failed(record_id, 'xray_failed', reason)
            return False
        self._event(index, record_id, 'record', f'{insp.verdict}: {len(insp.defects)} defect(s)')
        destination = DESTINATIONS[insp.verdict]
        if insp.verdict == 'REVIEW':
            destination = self._review_destination()
        self.store.record_inspection(
            record_id, part_id=insp.part_id, family=insp.family, verdict=insp.verdict,
            reasons=insp.reasons, defects=insp.defects, radiograph=insp.radiograph,
            stage_times={}, detector=insp.detector, pixel_pitch_mm=insp.pixel_pitch_mm,
            magnification=insp.magnification, destination=destination)
        try:
            truth = self.services.ground_truth(insp.part_id)
        except Exception:  # ground truth is for the report only; never fatal
            truth = None
        if truth is not None:
            self.store.update(record_id, None, 'ground truth attached', ground_truth=truth)
        self._event(index, record_id, 'xray',
                    f'part {insp.part_id} ({insp.family}): {insp.verdict}'
                    + (f' - {insp.reasons[0]}' if insp.reasons else ''))
        return True

    def _sort(self, index: int, record_id: str, verdict: str, grasp: Optional[Grasp],
              recovering: bool = False, sighting: Optional[PartSighting] = None) -> bool:
        destination = DESTINATIONS[verdict]
        if verdict == 'REVIEW':
            destination = self._review_destination()
            if destination != self.config.review_destination:
                self._event(index, record_id, 'sort',
                            f'{self.config.review_destination} holds '
                            f'{self.config.review_capacity} part(s) already: the part for '
                            f'review is quarantined in {destination}')
        last = None
        for attempt in range(1, self.config.sort_attempts + 1):
            self._event(index, record_id, 'sort', f'to {destination} (attempt {attempt})')
            t0 = time.monotonic()
            out = self.services.move_from_fixture(grasp, destination)
            self._add_times(record_id, wall_sort_s=time.monotonic() - t0,
                            compute_planning_s=out.planning_time_s)
            last = out
            if not out.success:
                self.store.update(record_id, None, f'sort attempt {attempt} to {destination}: '
                                  f'{out.error}: {out.message}')
            if out.success:
                self._finish_sorted(record_id, verdict, destination)
                self._event(index, record_id, 'sort', f'{verdict} -> {destination}')
                return True
            if out.error in ('estop', 'canceled') or out.fixture_cleared:
                break
            if out.error != 'grasp_failed':
                break
        reason = f'sorting to {destination} failed: {last.error}: {last.message}'
        if last.fixture_cleared and last.error not in ('estop', 'canceled'):
            # the part is out of the fixture (on the table): record it, keep going
            if sighting is not None:
                self._skipped.append(sighting)
            self._finish_failed(record_id, 'sort_failed', f'{reason} (verdict {verdict} kept)')
            self._event(index, record_id, 'sort', reason)
            self.services.go_to_rest()
            return False
        if last.error == 'grasp_failed' and recovering:
            self._finish_failed(record_id, 'interrupted',
                                'after a restart the inspected part was no longer in the '
                                f'fixture (verdict {verdict} kept): {last.message}')
            return False
        self.store.update(record_id, None, reason + '; part stays in the fixture',
                          failure_reason=reason)
        if last.error == 'estop':
            raise CycleStop(f'safety stop active ({reason})', 'estop')
        if last.error == 'canceled':
            self.canceled = True
            return False
        raise CycleStop(f'{reason}; the part was not sorted, stopping the cycle', 'sort_failed')
