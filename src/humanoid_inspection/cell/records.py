"""Traceable records of the inspection cell: one SQLite row per part, radiographs beside it.

Durability rules (what a crash may and may not lose):
- the database runs in WAL mode with ``synchronous=FULL``: a transaction that returned from
  commit survives a SIGKILL of the writer or a power cut;
- a radiograph is written as a 16-bit PNG to a temporary name, fsynced and renamed into
  ``<db dir>/radiographs/`` BEFORE the row that points at it is committed, so a committed row
  never points at a missing or half-written image;
- the cell commits state ``inspected`` (verdict, defects, reasons, radiograph) BEFORE the part
  leaves the X-ray station, then ``sorted`` once it is in its bin.

Part states (column ``state``)::

    pending -> picked -> in_fixture -> inspected -> sorted
         \\________\\__________\\____________\\______-> failed   (with failure_reason)

``picked``, ``in_fixture`` and ``inspected`` are *unfinished*: after a restart
:meth:`RecordsStore.unfinished` returns them so the cell finds the part again (in the fixture)
and inspects it again instead of skipping it. The schema version is kept in
``PRAGMA user_version``.
"""

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np

SCHEMA_VERSION = 1

STATES = ('pending', 'picked', 'in_fixture', 'inspected', 'sorted', 'failed')
FINAL_STATES = ('sorted', 'failed')
UNFINISHED_STATES = ('picked', 'in_fixture', 'inspected')

# outcome of a finished record
OUTCOMES = (
    'accepted', 'rejected', 'review',           # sorted by verdict
    'no_grasp',          # no grasp candidate for the part
    'plan_failed',       # pick/place could not be planned (unreachable, collision, ...)
    'grasp_failed',      # every grasp attempt failed
    'execution_failed',  # the robot did not follow a trajectory
    'xray_failed',       # acquisition or inspection failed
    'sort_failed',       # inspected but could not be moved to its bin
    'canceled',          # the cycle was canceled while this part was handled
    'interrupted',       # the cell stopped (crash) and the part could not be found again
    'node_unavailable',  # a node of the stack did not answer
    'estop',             # the safety stop was active
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS parts (
    record_id        TEXT PRIMARY KEY,      -- '<run_id>-<seq>' assigned by the cell
    run_id           TEXT NOT NULL,
    seq              INTEGER NOT NULL,      -- order of the part within its run
    part_id          TEXT,                  -- traceable id reported by the X-ray station
    family           TEXT,                  -- part family (housing, bracket, hub)
    state            TEXT NOT NULL CHECK (state IN ({', '.join(repr(s) for s in STATES)})),
    outcome          TEXT,                  -- see records.OUTCOMES; NULL while unfinished
    verdict          TEXT,                  -- ACCEPT | REJECT | REVIEW; NULL if not inspected
    reasons_json     TEXT,                  -- JSON list of grading reasons
    defects_json     TEXT,                  -- JSON list of defects (kind, box px, size mm, ...)
    detector         TEXT,
    stage_times_json TEXT,                  -- JSON {{stage: wall seconds}}
    radiograph_path  TEXT,                  -- relative to the database folder
    snapshot_path    TEXT,                  -- head-camera picture, relative to the db folder
    pixel_pitch_mm   REAL,
    magnification    REAL,
    arm              TEXT,
    grasp_index      INTEGER,
    grasp_attempts   INTEGER NOT NULL DEFAULT 0,
    grasp_json       TEXT,                  -- JSON of the grasp that held the part
    destination      TEXT,                  -- accept_bin | reject_bin | review
    inspections      INTEGER NOT NULL DEFAULT 0,  -- radiographs graded for this part
    ground_truth_json TEXT,                 -- simulation ground truth (report only)
    failure_reason   TEXT,
    created_at       REAL NOT NULL,         -- unix time (s)
    updated_at       REAL NOT NULL,
    sim_start_s      REAL,                  -- simulation clock when the part was started
    sim_end_s        REAL                   -- simulation clock when it was finished
);
CREATE INDEX IF NOT EXISTS parts_state ON parts(state);
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL,
    time      REAL NOT NULL,
    state     TEXT NOT NULL,
    message   TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    ended_at     REAL,
    max_parts    INTEGER,
    message      TEXT,
    summary_json TEXT
);
"""

_JSON_COLUMNS = {'reasons_json': 'reasons', 'defects_json': 'defects',
                 'stage_times_json': 'stage_times', 'grasp_json': 'grasp',
                 'ground_truth_json': 'ground_truth'}


class RecordsError(RuntimeError):
    """The records store cannot do what was asked; the message says why."""


@dataclass
class PartRecord:
    """One part's record as read from the store (JSON columns decoded)."""

    record_id: str
    run_id: str
    seq: int
    state: str
    created_at: float
    updated_at: float
    part_id: Optional[str] = None
    family: Optional[str] = None
    outcome: Optional[str] = None
    verdict: Optional[str] = None
    reasons: List[str] = field(default_factory=list)
    defects: List[Dict[str, Any]] = field(default_factory=list)
    detector: Optional[str] = None
    stage_times: Dict[str, float] = field(default_factory=dict)
    radiograph_path: Optional[str] = None
    snapshot_path: Optional[str] = None
    pixel_pitch_mm: Optional[float] = None
    magnification: Optional[float] = None
    arm: Optional[str] = None
    grasp_index: Optional[int] = None
    grasp_attempts: int = 0
    grasp: Optional[Dict[str, Any]] = None
    destination: Optional[str] = None
    inspections: int = 0
    ground_truth: Optional[Dict[str, Any]] = None
    failure_reason: Optional[str] = None
    sim_start_s: Optional[float] = None
    sim_end_s: Optional[float] = None

    @property
    def cycle_time_s(self) -> Optional[float]:
        """Simulation time from the start of the part to its end, or None."""
        if self.sim_start_s is None or self.sim_end_s is None:
            return None
        return self.sim_end_s - self.sim_start_s


_RECORD_FIELDS = {f.name for f in fields(PartRecord)}
_WRITABLE = _RECORD_FIELDS - {'record_id', 'run_id', 'seq', 'state', 'created_at', 'updated_at'}


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_png16(path: Path, image: np.ndarray) -> None:
    """Write a uint16 image as a 16-bit PNG atomically (tmp file, fsync, rename, dir fsync).

    Raises:
        RecordsError: the image is not a 2-D uint16 array or the file cannot be written.
    """
    image = np.asarray(image)
    if image.dtype != np.uint16 or image.ndim != 2 or image.size == 0:
        raise RecordsError(
            f'radiograph must be a non-empty 2-D uint16 array, got {image.dtype} {image.shape}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode('.png', image)
    if not ok:
        raise RecordsError(f'PNG encoding failed for {path}')
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as fh:
        fh.write(buf.tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_png16(path: Path) -> np.ndarray:
    """Read a 16-bit PNG written by write_png16 (uint16 HxW).

    Raises:
        RecordsError: missing file or not a 16-bit single-channel PNG.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RecordsError(f'cannot read radiograph {path}')
    if image.dtype != np.uint16 or image.ndim != 2:
        raise RecordsError(f'{path} is not a 16-bit grey PNG ({image.dtype} {image.shape})')
    return image


class RecordsStore:
    """The SQLite store of part records (thread-safe; one connection guarded by a lock).

    Args:
        db_path: the database file; its folder is created, radiographs go to
            ``<folder>/radiographs`` and snapshots to ``<folder>/snapshots``.

    Raises:
        RecordsError: the file is not a database of this schema, or a newer schema version.
    """

    def __init__(self, db_path):
        self.db_path = Path(db_path).resolve()
        self.root = self.db_path.parent
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.db_path), timeout=30.0,
                                         isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            mode = self._conn.execute('PRAGMA journal_mode=WAL').fetchone()[0]
            self._conn.execute('PRAGMA synchronous=FULL')
            self._conn.execute('PRAGMA foreign_keys=ON')
            version = self._conn.execute('PRAGMA user_version').fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise RecordsError(f'{self.db_path} is not a usable SQLite database: {exc}') from exc
        if str(mode).lower() != 'wal':
            raise RecordsError(f'{self.db_path}: WAL mode refused (journal_mode={mode})')
        if version > SCHEMA_VERSION:
            raise RecordsError(
                f'{self.db_path} has records schema version {version}, this code knows '
                f'{SCHEMA_VERSION}: use a newer humanoid_inspection')
        if version == 0:
            tables = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if tables - {'sqlite_sequence'}:
                raise RecordsError(
                    f'{self.db_path} is a SQLite database but not a records store '
                    f'(tables {sorted(tables)})')
            with self._tx() as conn:
                conn.executescript(
                    f'BEGIN;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;')

    # -- plumbing -------------------------------------------------------------------------
    class _Tx:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            return self.store._conn

        def __exit__(self, *exc):
            self.store._lock.release()
            return False

    def _tx(self):
        return RecordsStore._Tx(self)

    def close(self) -> None:
        """Close the connection (checkpoints the WAL)."""
        with self._tx() as conn:
            conn.close()

    def _write(self, sql: str, params=(), event=None) -> None:
        with self._tx() as conn:
            conn.execute('BEGIN IMMEDIATE')
            try:
                cur = conn.execute(sql, params)
                if cur.rowcount == 0:
                    raise RecordsError('no such record')
                if event is not None:
                    conn.execute('INSERT INTO events(record_id, time, state, message) '
                                 'VALUES (?, ?, ?, ?)', event)
                conn.execute('COMMIT')
            except Exception:
                conn.execute('ROLLBACK')
                raise

    @staticmethod
    def _row_to_record(row: sqlite3.Row) -> PartRecord:
        values = {}
        for key in row.keys():
            if key in _JSON_COLUMNS:
                raw = row[key]
                values[_JSON_COLUMNS[key]] = json.loads(raw) if raw else None
            else:
                values[key] = row[key]
        for key, empty in (('reasons', list), ('defects', list), ('stage_times', dict)):
            if values.get(key) is None:
                values[key] = empty()
        return PartRecord(**values)

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, run_id: str, max_parts: int = 0) -> None:
        """Register a cycle run."""
        with self._tx() as conn:
            conn.execute('INSERT OR REPLACE INTO runs(run_id, started_at, max_parts) '
                         'VALUES (?, ?, ?)', (run_id, time.time(), int(max_parts)))

    def end_run(self, run_id: str, message: str, summary: dict) -> None:
        """Store the end and summary of a run."""
        with self._tx() as conn:
            conn.execute('UPDATE runs SET ended_at=?, message=?, summary_json=? WHERE run_id=?',
                         (time.time(), message, json.dumps(summary), run_id))

    def runs(self) -> List[dict]:
        """All runs, oldest first."""
        with self._tx() as conn:
            rows = conn.execute('SELECT * FROM runs ORDER BY started_at').fetchall()
        return [dict(r) for r in rows]

    # -- parts ----------------------------------------------------------------------------
    def create(self, run_id: str, seq: int, sim_time_s: Optional[float] = None,
               record_id: Optional[str] = None) -> str:
        """Create a record in state 'pending'; return its record_id."""
        record_id = record_id or f'{run_id}-{int(seq):03d}'
        now = time.time()
        with self._tx() as conn:
            conn.execute('BEGIN IMMEDIATE')
            try:
                conn.execute(
                    'INSERT INTO parts(record_id, run_id, seq, state, created_at, updated_at, '
                    'sim_start_s) VALUES (?, ?, ?, ?, ?, ?, ?)',
                    (record_id, run_id, int(seq), 'pending', now, now, sim_time_s))
                conn.execute('INSERT INTO events(record_id, time, state, message) '
                             'VALUES (?, ?, ?, ?)', (record_id, now, 'pending', 'created'))
                conn.execute('COMMIT')
            except sqlite3.IntegrityError as exc:
                conn.execute('ROLLBACK')
                raise RecordsError(f'record {record_id} already exists') from exc
        return record_id

    def update(self, record_id: str, state: Optional[str] = None, message: str = '',
               **values) -> None:
        """Set columns of a record (and optionally its state) in one committed transaction.

        Args:
            record_id: the record.
            state: new state (one of STATES) or None to keep it.
            message: text of the audit event.
            **values: PartRecord field names (reasons, defects, stage_times, grasp and
                ground_truth are JSON-encoded).

        Raises:
            RecordsError: unknown record, state, outcome or field; a final record changed.
        """
        unknown = set(values) - _WRITABLE
        if unknown:
            raise RecordsError(f'unknown record field(s): {sorted(unknown)}')
        if state is not None and state not in STATES:
            raise RecordsError(f"unknown state '{state}' (one of {STATES})")
        outcome = values.get('outcome')
        if outcome is not None and outcome not in OUTCOMES:
            raise RecordsError(f"unknown outcome '{outcome}' (one of {OUTCOMES})")
        columns = {}
        reverse = {v: k for k, v in _JSON_COLUMNS.items()}
        for key, value in values.items():
            if key in reverse:
                columns[reverse[key]] = None if value is None else json.dumps(value)
            else:
                columns[key] = value
        if state is not None:
            columns['state'] = state
        now = time.time()
        columns['updated_at'] = now
        current = self.get(record_id)
        if current.state in FINAL_STATES and state is not None and state != current.state:
            raise RecordsError(
                f'record {record_id} is final ({current.state}); cannot move to {state}')
        assignments = ', '.join(f'{k}=?' for k in columns)
        event_state = state or current.state
        self._write(f'UPDATE parts SET {assignments} WHERE record_id=?',
                    tuple(columns.values()) + (record_id,),
                    event=(record_id, now, event_state, message))

    def save_radiograph(self, record_id: str, image: np.ndarray, inspection_no: int) -> str:
        """Write the radiograph as a 16-bit PNG beside the database; return its relative path.

        The file is durable when this returns; the caller then commits the row pointing at it.
        """
        rel = Path('radiographs') / f'{record_id}_{int(inspection_no)}.png'
        write_png16(self.root / rel, image)
        return str(rel)

    def save_snapshot(self, record_id: str, rgb: np.ndarray) -> str:
        """Write a head-camera RGB picture (uint8 HxWx3) beside the database; return its path."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise RecordsError(f'snapshot must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}')
        rel = Path('snapshots') / f'{record_id}.jpg'
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / rel.with_name(rel.name + '.tmp.jpg')
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise RecordsError(f'cannot write snapshot {tmp}')
        os.replace(tmp, self.root / rel)
        return str(rel)

    def record_inspection(self, record_id: str, *, part_id: str, family: str, verdict: str,
                          reasons: List[str], defects: List[dict], radiograph: np.ndarray,
                          stage_times: Dict[str, float], detector: str = '',
                          pixel_pitch_mm: float = 0.0, magnification: float = 0.0,
                          destination: str = '') -> str:
        """Store the radiograph file, then commit state 'inspected' with the verdict.

        Call this BEFORE the part leaves the X-ray station. Returns the radiograph path.
        """
        if verdict not in ('ACCEPT', 'REJECT', 'REVIEW'):
            raise RecordsError(f"verdict must be ACCEPT, REJECT or REVIEW, got '{verdict}'")
        current = self.get(record_id)
        number = current.inspections + 1
        path = self.save_radiograph(record_id, radiograph, number)
        times = dict(current.stage_times)
        times.update(stage_times)
        self.update(record_id, 'inspected', f'inspected #{number}: {verdict}',
                    part_id=part_id, family=family, verdict=verdict, reasons=list(reasons),
                    defects=list(defects), radiograph_path=path, stage_times=times,
                    detector=detector, pixel_pitch_mm=float(pixel_pitch_mm),
                    magnification=float(magnification), inspections=number,
                    destination=destination or None)
        return path

    def fail(self, record_id: str, outcome: str, reason: str,
             sim_time_s: Optional[float] = None) -> None:
        """Finish a record as failed with an outcome and a human-readable reason."""
        self.update(record_id, 'failed', reason, outcome=outcome, failure_reason=reason,
                    sim_end_s=sim_time_s)

    def get(self, record_id: str) -> PartRecord:
        """The record, or RecordsError if it does not exist."""
        with self._tx() as conn:
            row = conn.execute('SELECT * FROM parts WHERE record_id=?', (record_id,)).fetchone()
        if row is None:
            raise RecordsError(f'no record {record_id}')
        return self._row_to_record(row)

    def all(self, run_id: Optional[str] = None) -> List[PartRecord]:
        """All records (of one run if given), in creation order."""
        with self._tx() as conn:
            if run_id is None:
                rows = conn.execute('SELECT * FROM parts ORDER BY created_at, seq').fetchall()
            else:
                rows = conn.execute('SELECT * FROM parts WHERE run_id=? ORDER BY seq',
                                    (run_id,)).fetchall()
        return [self._row_to_record(r) for r in rows]

    def unfinished(self) -> List[PartRecord]:
        """Records a crash left in 'picked', 'in_fixture' or 'inspected', oldest first."""
        marks = ', '.join('?' for _ in UNFINISHED_STATES)
        with self._tx() as conn:
            rows = conn.execute(f'SELECT * FROM parts WHERE state IN ({marks}) '
                                'ORDER BY created_at', UNFINISHED_STATES).fetchall()
        return [self._row_to_record(r) for r in rows]

    def stale_pending(self) -> List[PartRecord]:
        """Records created but never picked (the part is still where it was)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM parts WHERE state='pending' "
                                'ORDER BY created_at').fetchall()
        return [self._row_to_record(r) for r in rows]

    def events(self, record_id: str) -> List[dict]:
        """The audit trail of one record, oldest first."""
        with self._tx() as conn:
            rows = conn.execute('SELECT * FROM events WHERE record_id=? ORDER BY id',
                                (record_id,)).fetchall()
        return [dict(r) for r in rows]

    def integrity_ok(self) -> bool:
        """True when SQLite's integrity check passes."""
        with self._tx() as conn:
            return conn.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
