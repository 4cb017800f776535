"""A cell run's radiographs inspected again against their parts' models
(`humanoid-inspection inspect --records ... --reference`, xray/reinspection.py), and the
registration's share of an outcome (detector_reference.account_registration)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from humanoid_inspection import cli
from humanoid_inspection.cell.records import RecordsStore
from humanoid_inspection.xray.detector_reference import account_registration
from humanoid_inspection.xray.part_models import station_acquisition
from humanoid_inspection.xray.phantoms import generate_part
from humanoid_inspection.xray.reinspection import recorded_radiographs, verdict_agreement
from humanoid_inspection.xray.simulator import resting_pose, simulate_radiograph

PITCH = 0.8            # 256 px radiographs of the station: the whole part at test speed


def _cell_run(tmp_path):
    """A records database as the cell leaves it: a hub with a 2.7 mm inclusion that the
    cell ACCEPTed (expected REJECT), a radiograph of an id that names no model, and a part
    that was never inspected."""
    store = RecordsStore(tmp_path / 'run' / 'cell.db')
    cast = generate_part('hub', 100003, defect_probability=1.0)
    rad = simulate_radiograph(cast, station_acquisition((256, 256), PITCH),
                              pose=resting_pose(3.0, -2.0, np.radians(6.0)), seed=3)
    for seq, part_id, image in ((0, cast.part_id, rad.image), (1, 'P-001', rad.image),
                                (2, None, None)):
        rid = store.create('run1', seq)
        if image is None:
            store.fail(rid, 'no_grasp', 'no grasp')
            continue
        store.record_inspection(rid, part_id=part_id, family='hub', verdict='ACCEPT',
                                reasons=['ACCEPT: no indications'], defects=[],
                                radiograph=image, stage_times={}, detector='cnn',
                                pixel_pitch_mm=PITCH, magnification=rad.magnification)
        store.update(rid, ground_truth={'expected_verdict': 'REJECT'})
    store.close()
    return tmp_path / 'run' / 'cell.db', rad


def test_recorded_radiographs_are_read_without_changing_the_records(tmp_path):
    db, rad = _cell_run(tmp_path)
    before = db.read_bytes()
    recorded = recorded_radiographs(db)
    assert [r.part_id for r in recorded] == ['hub-100003', 'P-001']     # never inspected: none
    first = recorded[0]
    assert first.path.is_file() and first.path.parent.name == 'radiographs'
    assert first.pixel_pitch_mm == pytest.approx(PITCH)
    assert first.magnification == pytest.approx(rad.magnification)
    assert (first.cell_verdict, first.cell_detector, first.expected_verdict) == \
        ('ACCEPT', 'cnn', 'REJECT')
    assert db.read_bytes() == before
    with pytest.raises(FileNotFoundError, match='no records database'):
        recorded_radiographs(tmp_path / 'missing.db')
    assert not (tmp_path / 'missing.db').exists()
    (tmp_path / 'junk.db').write_bytes(b'not sqlite at all' * 100)
    with pytest.raises(ValueError, match='not a usable SQLite database'):
        recorded_radiographs(tmp_path / 'junk.db')


def test_the_second_opinion_against_the_model_and_how_the_verdicts_agree(tmp_path, capsys):
    db, _ = _cell_run(tmp_path)
    out = tmp_path / 'again'
    code = cli.main(['inspect', '--records', str(db), '--reference', '--out', str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / 'results.json').read_text())
    hub, unknown = results['results']
    # the hub against its registered model: the inclusion rejects it, as its truth says
    assert hub['detector'] == 'cnn+reference' and 'reference_not_used' not in hub
    assert list(hub['stage_times_s'])[:3] == ['validate', 'register', 'detect']
    assert hub['verdict'] == 'REJECT' and hub['cell_verdict'] == 'ACCEPT'
    assert any(d['kind'] == 'inclusion' for d in hub['defects'])
    # an id that names no model: image-only, and why
    assert unknown['detector'] == 'cnn' and 'register' not in unknown['stage_times_s']
    assert "no model: part id 'P-001'" in unknown['reference_not_used']
    agreement = results['agreement']
    assert agreement['cell_vs_expected'] == {'n': 2, 'same': 0, 'escapes': 2,
                                             'false_rejects': 0}
    assert agreement['offline_vs_expected']['same'] >= 1
    page = (out / 'report.html').read_text()
    assert 'hub-100003' in page and 'cell vs expected: 0 of 2 the same' in page
    assert (out / hub['overlay']).is_file()


def test_one_part_by_its_id_and_bad_options(tmp_path, capsys):
    db, _ = _cell_run(tmp_path)
    image = recorded_radiographs(db)[0].path
    out = tmp_path / 'one'
    assert cli.main(['inspect', str(image), '--part-id', 'hub-100003', '--reference',
                     '--pixel-pitch-mm', str(PITCH), '--out', str(out), '--no-overlays']) == 0
    (entry,) = json.loads((out / 'results.json').read_text())['results']
    assert entry['detector'] == 'cnn+reference' and entry['part_id'] == 'hub-100003'
    capsys.readouterr()
    for argv, why in (
            (['inspect', '--reference', str(image)], '--reference needs the part'),
            (['inspect'], 'give radiograph PATHS or --records'),
            (['inspect', str(image), '--records', str(db)], 'give radiograph PATHS or'),
            (['inspect', '--records', str(db), '--part-id', 'hub-100003'], 'exclude each other'),
            (['inspect', '--records', str(tmp_path / 'none.db')], 'no records database'),
            (['inspect', str(image), '--part-id', 'engine-000001'], "unknown part family"),
            (['inspect', '--records', str(db), '--reference', '--detector', 'classical'],
             "'classical' cannot run on a reference")):
        assert cli.main(argv + ['--out', str(tmp_path / 'bad')]) == 2, argv
        assert why in capsys.readouterr().err, argv
    assert not (tmp_path / 'none.db').exists()


def test_verdict_agreement_counts_escapes_and_false_rejects_both_ways():
    entries = [{'verdict': 'ACCEPT', 'cell_verdict': 'REJECT', 'expected_verdict': 'REJECT'},
               {'verdict': 'REJECT', 'cell_verdict': 'REJECT', 'expected_verdict': 'ACCEPT'},
               {'verdict': 'REVIEW', 'cell_verdict': 'ACCEPT', 'expected_verdict': None},
               {'error': 'cannot decode', 'cell_verdict': 'ACCEPT'}]
    a = verdict_agreement(entries)
    assert a['offline_vs_expected'] == {'n': 2, 'same': 0, 'escapes': 1, 'false_rejects': 1}
    assert a['offline_vs_cell'] == {'n': 3, 'same': 1, 'escapes': 1, 'false_rejects': 0}
    assert a['cell_vs_expected'] == {'n': 2, 'same': 1, 'escapes': 0, 'false_rejects': 1}


def test_account_registration_moves_its_time_into_a_register_stage():
    est = SimpleNamespace(seconds=0.3)
    detector = SimpleNamespace(last_estimate=est, last_fallback=None,
                               image_only=SimpleNamespace(name='cnn'))
    outcome = SimpleNamespace(stage_times_s={'validate': 0.01, 'detect': 0.5, 'grade': 0.02},
                              detector='cnn+reference')
    assert account_registration(detector, outcome) is None
    assert list(outcome.stage_times_s) == ['validate', 'register', 'detect', 'grade']
    assert outcome.stage_times_s['register'] == pytest.approx(0.3)
    assert outcome.stage_times_s['detect'] == pytest.approx(0.2)
    # an untrusted registration: its time still counted, the image-only detector named
    detector.last_fallback = 'the registered reference matches with ECC correlation 0.98'
    outcome = SimpleNamespace(stage_times_s={'detect': 0.2}, detector='cnn+reference')
    why = account_registration(detector, outcome)
    assert why == 'reference not used: ' + detector.last_fallback
    assert outcome.detector == 'cnn' and outcome.stage_times_s['register'] == 0.2
