"""Inspecting a cell run's radiographs again, offline: what the records say of each one, and
how the verdicts compare.

The cell inspects with the fast image-only detector; its records store every radiograph
(16-bit PNG) with the part id, family, pixel pitch and magnification it was taken with, the
verdict and detector of the cell, and in simulation the part's expected verdict. So
`humanoid-inspection inspect --records cell.db --reference` can give every part a second
opinion against its model ('cnn+reference', too slow for the cell's 2 s per part) and count
where the two verdicts and the truth agree. No ROS imports.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

VERDICTS = ('ACCEPT', 'REJECT', 'REVIEW')


@dataclass(frozen=True)
class RecordedRadiograph:
    """One radiograph of a cell run and what the cell recorded with it.

    Attributes:
        path: the 16-bit PNG.
        record_id: the part's record.
        part_id, family: as the X-ray station reported them.
        pixel_pitch_mm, magnification: the acquisition's geometry.
        cell_verdict, cell_detector: the cell's verdict and the detector that gave it.
        expected_verdict: the verdict of the part's true defects (simulation), or None.
    """

    path: Path
    record_id: str
    part_id: str
    family: str
    pixel_pitch_mm: float
    magnification: float
    cell_verdict: Optional[str]
    cell_detector: Optional[str]
    expected_verdict: Optional[str] = None


def recorded_radiographs(db_path) -> List[RecordedRadiograph]:
    """The inspected radiographs of a cell's records database, in record order (every run).

    Raises:
        FileNotFoundError: no such database (one is never created here).
        ValueError: the file is not a records database (RecordsError's reason).
    """
    from humanoid_inspection.cell.records import RecordsError, RecordsStore
    db = Path(db_path)
    if not db.is_file():
        raise FileNotFoundError(f'no records database {db}')
    try:
        store = RecordsStore(db)
    except RecordsError as exc:
        raise ValueError(str(exc)) from None
    try:
        records = store.all()
    finally:
        store.close()
    out = []
    for r in records:
        if not r.radiograph_path:
            continue                   # never inspected (no grasp, failed pick, ...)
        truth = r.ground_truth or {}
        out.append(RecordedRadiograph(
            path=store.root / r.radiograph_path, record_id=r.record_id,
            part_id=r.part_id or '', family=r.family or 'generic',
            pixel_pitch_mm=float(r.pixel_pitch_mm or 0.0),
            magnification=float(r.magnification or 0.0), cell_verdict=r.verdict,
            cell_detector=r.detector, expected_verdict=truth.get('expected_verdict')))
    return out


def compare_verdicts(pairs) -> Dict[str, int]:
    """How the first verdicts of (verdict, reference verdict) pairs agree with the second
    (pairs with a missing or unknown verdict skipped).

    Returns:
        {n, same, escapes (ACCEPT where the reference says REJECT), false_rejects (REJECT
        where it says ACCEPT)}.
    """
    pairs = [(a, b) for a, b in pairs if a in VERDICTS and b in VERDICTS]
    return {'n': len(pairs), 'same': sum(a == b for a, b in pairs),
            'escapes': sum(a == 'ACCEPT' and b == 'REJECT' for a, b in pairs),
            'false_rejects': sum(a == 'REJECT' and b == 'ACCEPT' for a, b in pairs)}


def verdict_agreement(entries: Sequence[dict]) -> dict:
    """How the verdicts of the inspection entries ('verdict', 'cell_verdict',
    'expected_verdict'; missing or errors skipped) agree.

    Returns:
        {'offline_vs_cell', 'offline_vs_expected', 'cell_vs_expected'}: each {n, same,
        escapes (the first said ACCEPT where the second said REJECT), false_rejects (the
        other way round)}.
    """
    def pairs(first, second):
        return [(e.get(first), e.get(second)) for e in entries]
    return {'offline_vs_cell': compare_verdicts(pairs('verdict', 'cell_verdict')),
            'offline_vs_expected': compare_verdicts(pairs('verdict', 'expected_verdict')),
            'cell_vs_expected': compare_verdicts(pairs('cell_verdict', 'expected_verdict'))}
