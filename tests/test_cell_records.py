"""Records store: schema, durability (a real SIGKILL of a writer), 16-bit radiographs, errors."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from humanoid_inspection.cell.records import (
    SCHEMA_VERSION, RecordsError, RecordsStore, read_png16, write_png16)


def _radiograph(seed=0, shape=(64, 80)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65535, size=shape, dtype=np.uint16)


def test_schema_wal_and_version(tmp_path):
    store = RecordsStore(tmp_path / 'cell.db')
    conn = sqlite3.connect(tmp_path / 'cell.db')
    assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    assert conn.execute('PRAGMA user_version').fetchone()[0] == SCHEMA_VERSION
    conn.close()
    store.close()
    # reopening an existing store works
    RecordsStore(tmp_path / 'cell.db').close()


def test_full_lifecycle_and_radiograph_png16(tmp_path):
    store = RecordsStore(tmp_path / 'db' / 'cell.db')
    store.start_run('run1', 2)
    rid = store.create('run1', 0, sim_time_s=1.5)
    store.update(rid, 'picked', 'pick', grasp={'index': 0, 'score': 0.9})
    store.update(rid, 'in_fixture', 'placed', arm='right', grasp_index=0, grasp_attempts=1)
    image = _radiograph()
    path = store.record_inspection(
        rid, part_id='P-7', family='housing', verdict='REJECT', reasons=['porosity > level 3'],
        defects=[{'kind': 'gas_porosity', 'box_xyxy': [1, 2, 5, 6], 'size_mm': 1.2}],
        radiograph=image, stage_times={'compute_xray_inspection_s': 0.3}, detector='classical',
        pixel_pitch_mm=0.2, magnification=1.5, destination='reject_bin')
    rec = store.get(rid)
    assert rec.state == 'inspected' and rec.verdict == 'REJECT' and rec.inspections == 1
    assert rec.defects[0]['kind'] == 'gas_porosity'
    assert np.array_equal(read_png16(store.root / path), image)
    assert [r.record_id for r in store.unfinished()] == [rid]
    store.update(rid, 'sorted', 'in bin', outcome='rejected', sim_end_s=9.5)
    rec = store.get(rid)
    assert rec.state == 'sorted' and rec.cycle_time_s == pytest.approx(8.0)
    assert store.unfinished() == []
    states = [e['state'] for e in store.events(rid)]
    assert states[0] == 'pending' and states[-1] == 'sorted'
    assert store.integrity_ok()


def test_bad_input_is_refused_with_a_reason(tmp_path):
    store = RecordsStore(tmp_path / 'cell.db')
    rid = store.create('r', 0)
    with pytest.raises(RecordsError, match='already exists'):
        store.create('r', 0)
    with pytest.raises(RecordsError, match='unknown state'):
        store.update(rid, 'flying')
    with pytest.raises(RecordsError, match='unknown outcome'):
        store.update(rid, None, outcome='great')
    with pytest.raises(RecordsError, match='unknown record field'):
        store.update(rid, None, colour='red')
    with pytest.raises(RecordsError, match='no record'):
        store.get('nope')
    with pytest.raises(RecordsError, match='verdict must be'):
        store.record_inspection(rid, part_id='p', family='hub', verdict='MAYBE', reasons=[],
                                defects=[], radiograph=_radiograph(), stage_times={})
    with pytest.raises(RecordsError, match='uint16'):
        store.record_inspection(rid, part_id='p', family='hub', verdict='ACCEPT', reasons=[],
                                defects=[], radiograph=np.zeros((4, 4), np.float32),
                                stage_times={})
    store.fail(rid, 'no_grasp', 'nothing to hold')
    with pytest.raises(RecordsError, match='is final'):
        store.update(rid, 'picked')
    with pytest.raises(RecordsError, match='2-D uint16'):
        write_png16(tmp_path / 'x.png', np.zeros((2, 2, 3), np.uint16))


def test_foreign_or_newer_database_is_refused(tmp_path):
    other = tmp_path / 'other.db'
    conn = sqlite3.connect(other)
    conn.execute('CREATE TABLE stuff (a)')
    conn.commit()
    conn.close()
    with pytest.raises(RecordsError, match='not a records store'):
        RecordsStore(other)
    newer = tmp_path / 'newer.db'
    RecordsStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute(f'PRAGMA user_version={SCHEMA_VERSION + 1}')
    conn.commit()
    conn.close()
    with pytest.raises(RecordsError, match='schema version'):
        RecordsStore(newer)
    junk = tmp_path / 'junk.db'
    junk.write_bytes(b'this is not sqlite at all' * 100)
    with pytest.raises(RecordsError, match='not a usable SQLite'):
        RecordsStore(junk)


_WRITER = textwrap.dedent('''
    import sys
    import numpy as np
    from humanoid_inspection.cell.records import RecordsStore
    store = RecordsStore(sys.argv[1])
    rng = np.random.default_rng(0)
    i = 0
    while True:
        rid = store.create('crash', i)
        store.update(rid, 'picked', 'p')
        store.update(rid, 'in_fixture', 'f')
        image = rng.integers(0, 65535, size=(256, 256), dtype=np.uint16)
        store.record_inspection(rid, part_id=f'P{i}', family='hub', verdict='ACCEPT',
                                reasons=['ok'], defects=[], radiograph=image,
                                stage_times={'x': 0.1})
        print('INSPECTED', rid, flush=True)
        store.update(rid, 'sorted', 's', outcome='accepted')
        print('SORTED', rid, flush=True)
        i += 1
''')


def test_sigkill_mid_write_loses_nothing_committed(tmp_path):
    db = tmp_path / 'cell.db'
    proc = subprocess.Popen([sys.executable, '-c', _WRITER, str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.split())
        if len(lines) >= 13:
            break
    time.sleep(np.random.default_rng().uniform(0.0, 0.03))  # land anywhere in the next write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    lines += [ln.split() for ln in proc.stdout.read().splitlines() if ln.strip()]
    inspected = [rid for tag, rid in lines if tag == 'INSPECTED']
    sorted_ids = [rid for tag, rid in lines if tag == 'SORTED']
    assert len(inspected) >= 5
    store = RecordsStore(db)
    assert store.integrity_ok()
    for rid in inspected:
        rec = store.get(rid)
        assert rec.verdict == 'ACCEPT' and rec.state in ('inspected', 'sorted')
        image = read_png16(store.root / rec.radiograph_path)
        assert image.shape == (256, 256)
    for rid in sorted_ids:
        assert store.get(rid).state == 'sorted'
    # whatever the writer was doing when it died is visible as unfinished, never lost (a part
    # whose 'sorted' commit landed just before the kill, but not its SORTED line, is sorted)
    unfinished = {r.record_id for r in store.unfinished()}
    for rid in set(inspected) - set(sorted_ids):
        assert rid in unfinished or store.get(rid).state == 'sorted', rid
    assert not unfinished & set(sorted_ids)
