"""Where every part physically is at the end of a run, against where the records say it went.

A cell that reports "REJECT -> reject_bin" must have the part in the reject bin: a part that
fell off the table, was carried off in a hand or dropped beside a bin is an escape the records
cannot show. In simulation the truth is known (``sim/ground_truth``: every part's pose and the
gripper holding it), so the demo and the end-to-end tests check it (cell/demo.py).

Positions are the parts' body origins in the world frame, which lie on the underside of the
casting (a part on the table has its origin at the table top). No ROS here.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from humanoid_inspection.cell_geometry import xy_in_frame

# how far (m) a part's origin may lie outside a place's footprint and above its surface and
# still be "there": a part is released above a bin and can come to rest against its wall, and
# one set down on the fixture or tray may slide a little
FOOTPRINT_MARGIN_M = 0.03
BELOW_SURFACE_M = 0.02
ABOVE_SURFACE_M = 0.25
# below this height (m) a part lies on the floor
FLOOR_Z_M = 0.30

# where the cell puts a part that was sorted, by the record's outcome
SORTED_OUTCOMES = ('accepted', 'rejected', 'review')


@dataclass(frozen=True)
class Area:
    """A place in the world: footprint centre and size (m, along its own axes), its yaw
    (rad, as the place's pose in config/cell.yaml), surface height."""

    name: str
    centre_xy: Sequence[float]
    size_xy: Sequence[float]
    surface_z: float
    yaw: float = 0.0

    @staticmethod
    def of(name: str, pose, size_xy) -> 'Area':
        """The Area of a cell_geometry Pose (centre of the surface) and footprint size."""
        return Area(name, pose.xyz[:2], size_xy, pose.xyz[2], pose.rpy[2])

    def holds(self, position) -> bool:
        """Whether a part origin at position (world, m) lies in this place."""
        p = np.asarray(position, float)
        local = xy_in_frame(p, self.centre_xy, self.yaw)
        half = np.asarray(self.size_xy, float)[:2] / 2.0 + FOOTPRINT_MARGIN_M
        return bool(np.all(np.abs(local) <= half) and
                    self.surface_z - BELOW_SURFACE_M <= p[2] <= self.surface_z + ABOVE_SURFACE_M)


def cell_areas(cell) -> List[Area]:
    """The places of a CellGeometry, most specific first (the review tray lies on the table).

    Names are the destinations of the records (cell/places.py): accept_bin, reject_bin,
    review, fixture; then table.
    """
    fixture = cell.xray_cabinet.fixture
    return [Area.of('accept_bin', cell.accept_bin.pose, cell.accept_bin.inner_size),
            Area.of('reject_bin', cell.reject_bin.pose, cell.reject_bin.inner_size),
            Area.of('review', cell.review.pose, cell.review.size),
            Area.of('fixture', fixture.pose, fixture.size[:2]),
            Area.of('table', cell.table.pose, cell.table.size[:2])]


def locate(position, held_by: Optional[str], areas: Iterable[Area]) -> str:
    """The place a part is in: an area's name, 'held by <gripper>', 'floor' or 'elsewhere'.

    Raises:
        ValueError: a position that is not three finite numbers.
    """
    try:
        p = np.asarray(position, float)
    except (TypeError, ValueError):
        p = np.full(0, np.nan)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f'part position must be three finite numbers, got {position!r}')
    if held_by:
        return f'held by {held_by}'
    for area in areas:
        if area.holds(p):
            return area.name
    return 'floor' if p[2] < FLOOR_Z_M else 'elsewhere'


@dataclass
class PartLocation:
    """One part at the end of a run: where the records put it and where it is."""

    part_id: str
    outcome: Optional[str]       # the record's outcome; None: no record (never handled)
    expected: Optional[str]      # where it must be; None: no claim (a failure left it somewhere)
    found: str                   # locate()
    position: List[float]        # world, m

    @property
    def mismatch(self) -> bool:
        """The records say the part is somewhere it is not."""
        return self.expected is not None and self.found != self.expected

    def to_dict(self) -> Dict[str, object]:
        """JSON-friendly, with 'mismatch'."""
        return {**asdict(self), 'mismatch': self.mismatch}


def audit_locations(truth: dict, records, cell) -> List[PartLocation]:
    """Every simulated part with its recorded outcome, where it must be and where it is.

    A sorted part (accepted / rejected / review) must be at its record's destination; a part
    with no record must still be on the table; a part whose handling failed makes no claim
    (its record gives the reason), but where it ended is reported all the same.

    Args:
        truth: the simulation's ground truth (``Simulation.ground_truth()``: 'parts' with
            'part_id', 'position', 'held_by').
        records: the run's PartRecords (cell/records.py), in order; the last record of a part
            counts.
        cell: the CellGeometry the simulation was built from.

    Raises:
        ValueError: truth without a parts list, or a part with a malformed position.
    """
    parts = truth.get('parts') if isinstance(truth, dict) else None
    if not isinstance(parts, list):
        raise ValueError('ground truth has no parts list')
    last = {r.part_id: r for r in records if r.part_id}
    areas = cell_areas(cell)
    rows = []
    for part in parts:
        rec = last.get(part['part_id'])
        if rec is None:
            outcome, expected = None, 'table'
        else:
            outcome = rec.outcome
            expected = rec.destination if outcome in SORTED_OUTCOMES else None
        rows.append(PartLocation(part['part_id'], outcome, expected,
                                 locate(part['position'], part.get('held_by'), areas),
                                 [float(v) for v in part['position']]))
    return rows


def format_locations(rows: Sequence[PartLocation]) -> str:
    """A table: part, recorded outcome, where it must be, where it is, and a flag."""
    head = f'{"part":<16}{"outcome":<18}{"must be in":<13}{"is in":<14}'
    lines = [head, '-' * (len(head) + 10)]
    for r in rows:
        flag = 'NOT THERE' if r.mismatch else ''
        lines.append(f'{r.part_id[:15]:<16}{(r.outcome or "not handled")[:17]:<18}'
                     f'{(r.expected or "-"):<13}{r.found[:13]:<14}{flag}')
    return '\n'.join(lines)
