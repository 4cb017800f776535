"""Cell metrics and the HTML report, from a records database filled by hand."""

import json

import numpy as np
import pytest

from humanoid_inspection.cell import report_cli
from humanoid_inspection.cell.metrics import cell_metrics, format_summary, truth_label
from humanoid_inspection.cell.records import RecordsStore
from humanoid_inspection.cell.report import draw_overlay, render_report


def _fill(store, cases):
    """cases: (verdict, truth_defective) pairs; all parts sorted by verdict."""
    store.start_run('r', 0)
    for i, (verdict, defective) in enumerate(cases):
        rid = store.create('r', i, sim_time_s=10.0 * i)
        store.update(rid, 'picked', grasp_attempts=1 + (i == 0))
        store.update(rid, 'in_fixture', arm='left', grasp_index=0)
        image = np.full((60, 80), 30000, np.uint16)
        image[20:30, 20:30] = 20000
        defects = [{'kind': 'gas_porosity', 'box_xyxy': [20, 20, 30, 30], 'size_mm': 2.0}] \
            if verdict != 'ACCEPT' else []
        store.record_inspection(rid, part_id=f'P{i}', family='hub', verdict=verdict,
                                reasons=[f'rule {i}'], defects=defects, radiograph=image,
                                stage_times={})
        store.update(rid, None, ground_truth={'defective': defective,
                                              'defects': [{'box_xyxy': [19, 19, 31, 31]}]},
                     stage_times={'compute_perception_s': 0.2, 'compute_affordance_s': 0.1,
                                  'compute_planning_s': 0.5, 'compute_xray_inspection_s': 0.4,
                                  'wall_xray_s': 1.0})
        store.update(rid, 'sorted', outcome={'ACCEPT': 'accepted', 'REJECT': 'rejected',
                                             'REVIEW': 'review'}[verdict],
                     snapshot_path=store.save_snapshot(rid, np.zeros((20, 30, 3), np.uint8)),
                     sim_end_s=10.0 * i + 7.0)
    rid = store.create('r', len(cases))
    store.fail(rid, 'no_grasp', 'too wide')


def test_metrics_definitions(tmp_path):
    store = RecordsStore(tmp_path / 'cell.db')
    # good ACCEPT, good REJECT (false reject), bad REJECT, bad ACCEPT (escape), bad REVIEW
    _fill(store, [('ACCEPT', False), ('REJECT', False), ('REJECT', True), ('ACCEPT', True),
                  ('REVIEW', True)])
    m = cell_metrics(store.all())
    assert m['parts'] == 6 and m['inspected'] == 5 and m['parts_with_truth'] == 5
    assert m['verdict_accuracy'] == pytest.approx(2 / 5)
    assert m['escapes'] == 1 and m['escape_rate'] == pytest.approx(1 / 3)
    assert m['false_rejects'] == 1 and m['false_reject_rate'] == pytest.approx(1 / 2)
    assert m['grasp_attempts'] == 6 and m['grasp_success_rate'] == pytest.approx(5 / 6)
    assert m['cycle_time_sim_s']['mean'] == pytest.approx(7.0)
    assert m['compute_total_per_part_s']['mean'] == pytest.approx(1.2)
    assert m['parts_within_compute_budget'] == 5
    assert m['outcomes'] == {'accepted': 2, 'rejected': 2, 'review': 1, 'no_grasp': 1}
    json.dumps(m)
    assert 'escapes (bad accepted)  1' in format_summary(m)


def test_metrics_of_nothing_are_empty_not_errors():
    m = cell_metrics([])
    assert m['verdict_accuracy'] is None and m['escape_rate'] is None
    format_summary(m)


def test_truth_label():
    assert truth_label({'expected_verdict': 'REJECT', 'defective': False}) == 'defective'
    assert truth_label({'defective': False}) == 'good'
    assert truth_label(None) is None and truth_label({'x': 1}) is None


def test_report_renders_pictures_and_tables(tmp_path):
    store = RecordsStore(tmp_path / 'run' / 'cell.db')
    _fill(store, [('ACCEPT', False), ('REJECT', True)])
    store.close()
    index = render_report(tmp_path / 'run' / 'cell.db', tmp_path / 'out')
    page = index.read_text()
    assert 'Verdict vs ground truth' in page and 'P1' in page and 'too wide' in page
    imgs = sorted(p.name for p in (tmp_path / 'out' / 'img').iterdir())
    assert 'stage_times.png' in imgs and 'cycle_times.png' in imgs
    assert 'r-001_overlay.png' in imgs and 'r-001_snapshot.jpg' in imgs
    for name in imgs:
        assert f'img/{name}' in page
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['parts'] == 3
    assert 'Where the parts are' not in page     # recorded data alone cannot know


def test_report_shows_where_the_parts_are(tmp_path):
    from humanoid_inspection.cell.audit import PartLocation
    store = RecordsStore(tmp_path / 'run' / 'cell.db')
    _fill(store, [('REJECT', True)])
    store.close()
    rows = [PartLocation('P0', 'rejected', 'reject_bin', 'floor', [0.5, -0.2, 0.01]),
            PartLocation('P9', None, 'table', 'table', [0.34, 0.24, 0.85])]
    page = render_report(tmp_path / 'run' / 'cell.db', tmp_path / 'out',
                         locations=[r.to_dict() for r in rows]).read_text()
    section = page.split('Where the parts are')[1]
    assert '<td class="bad">floor (NOT THERE)</td>' in section
    assert '<td class="ok">table</td>' in section and 'not handled' in section
    assert '0.500, -0.200, 0.010' in section


def test_overlay_draws_boxes_in_kind_colour():
    image = np.full((50, 50), 40000, np.uint16)
    view = draw_overlay(image, [{'kind': 'crack', 'box_xyxy': [10, 10, 20, 20]}])
    assert view.shape == (50, 50, 3)
    assert tuple(view[10, 15]) == (0, 0, 255)


def test_report_cli(tmp_path, capsys):
    store = RecordsStore(tmp_path / 'cell.db')
    _fill(store, [('ACCEPT', False)])
    store.close()
    assert report_cli.main(['--db', str(tmp_path / 'cell.db')]) == 0
    assert 'report:' in capsys.readouterr().out
    assert (tmp_path / 'report' / 'index.html').is_file()
    assert report_cli.main(['--db', str(tmp_path / 'missing.db')]) == 2
    assert 'no records database' in capsys.readouterr().err


def test_report_cli_shows_the_demo_part_locations(tmp_path, capsys):
    """A demo folder re-rendered: the locations come from its metrics.json; a broken one is
    named and left out, the report still made."""
    from humanoid_inspection.cell.audit import PartLocation
    store = RecordsStore(tmp_path / 'cell.db')
    _fill(store, [('REJECT', True)])
    store.close()
    row = PartLocation('P0', 'rejected', 'reject_bin', 'floor', [0.5, -0.2, 0.01]).to_dict()
    (tmp_path / 'metrics.json').write_text(json.dumps({'part_locations': [row]}))
    assert report_cli.main(['--db', str(tmp_path / 'cell.db')]) == 0
    page = (tmp_path / 'report' / 'index.html').read_text()
    assert 'floor (NOT THERE)' in page
    (tmp_path / 'metrics.json').write_text(json.dumps({'part_locations': [{'part_id': 'P0'}]}))
    assert report_cli.main(['--db', str(tmp_path / 'cell.db')]) == 0
    assert 'part locations left out' in capsys.readouterr().err
    assert 'Where the parts are' not in (tmp_path / 'report' / 'index.html').read_text()
    (tmp_path / 'metrics.json').write_text('{not json')
    assert report_cli.main(['--db', str(tmp_path / 'cell.db')]) == 0
    assert 'unreadable' in capsys.readouterr().err
