"""HTML report of the inspection cell from its records database (no ROS).

The page (``<out>/index.html``, pictures under ``<out>/img/``) shows: the headline metrics, the
confusion table of verdict vs the simulation's ground truth, compute time per stage per part
(stacked bars), a histogram of the cycle time per part (simulation time), and one row per part
with the radiograph (8-bit windowed view of the 16-bit file) and its defect boxes drawn on it,
the head-camera snapshot, verdict, ground truth, reasons, outcome and timings.
"""

import html
import json
import shutil
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from humanoid_inspection.cell.metrics import (
    COMPUTE_STAGES, VERDICT_COLUMNS, cell_metrics, compute_total_s, format_summary, truth_label)
from humanoid_inspection.cell.records import PartRecord, RecordsError, RecordsStore, read_png16

KIND_COLOURS_BGR = {'gas_porosity': (0, 200, 255), 'shrinkage': (255, 80, 0),
                    'crack': (0, 0, 255), 'inclusion': (0, 255, 0)}


def window_to_8bit(image: np.ndarray) -> np.ndarray:
    """Map a 16-bit radiograph to 8 bits with a 1..99 percentile window."""
    img = image.astype(np.float32)
    lo, hi = np.percentile(img, [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((img - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8)


def defect_box(defect: dict) -> Optional[tuple]:
    """(x0, y0, x1, y1) pixel box of a defect dict, or None."""
    if 'box_xyxy' in defect:
        return tuple(int(v) for v in defect['box_xyxy'])
    keys = ('x_min_px', 'y_min_px', 'x_max_px', 'y_max_px')
    if all(k in defect for k in keys):
        return tuple(int(defect[k]) for k in keys)
    return None


def draw_overlay(image16: np.ndarray, defects: List[dict],
                 truth_boxes: Optional[List[tuple]] = None) -> np.ndarray:
    """BGR picture of the radiograph with found defects (colour by kind) and truth (white)."""
    view = cv2.cvtColor(window_to_8bit(image16), cv2.COLOR_GRAY2BGR)
    scale = max(1, int(round(max(view.shape[:2]) / 400)))
    for box in truth_boxes or []:
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(view, (x0 - 2, y0 - 2), (x1 + 2, y1 + 2), (255, 255, 255), scale,
                      cv2.LINE_4)
    for d in defects:
        box = defect_box(d)
        if box is None:
            continue
        colour = KIND_COLOURS_BGR.get(d.get('kind'), (255, 0, 255))
        cv2.rectangle(view, box[:2], box[2:], colour, scale + 1)
        cv2.putText(view, str(d.get('kind', '?')), (box[0], max(12, box[1] - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, colour, scale)
    return view


def _plots(records: List[PartRecord], img_dir: Path) -> dict:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    out = {}
    inspected = [r for r in records if r.stage_times]
    if inspected:
        fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(inspected) + 2), 3.2))
        bottom = np.zeros(len(inspected))
        labels = [r.part_id or r.record_id.split('-')[-1] for r in inspected]
        for stage in COMPUTE_STAGES:
            vals = np.array([r.stage_times.get(f'compute_{stage}_s', 0.0) for r in inspected])
            ax.bar(labels, vals, bottom=bottom, label=stage)
            bottom += vals
        ax.axhline(2.0, color='red', linestyle='--', linewidth=1, label='2 s budget')
        ax.set_ylabel('compute time (s)')
        ax.set_title('compute time per stage per part')
        ax.tick_params(axis='x', rotation=60, labelsize=7)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(img_dir / 'stage_times.png', dpi=90)
        plt.close(fig)
        out['stage_times'] = 'img/stage_times.png'
    cycle = [r.cycle_time_s for r in records if r.state == 'sorted' and r.cycle_time_s]
    if cycle:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.hist(cycle, bins=max(3, min(15, len(cycle))), color='tab:blue', edgecolor='black')
        ax.set_xlabel('cycle time per part (simulation s)')
        ax.set_ylabel('parts')
        ax.set_title('cycle time histogram')
        fig.tight_layout()
        fig.savefig(img_dir / 'cycle_times.png', dpi=90)
        plt.close(fig)
        out['cycle_times'] = 'img/cycle_times.png'
    return out


def _truth_boxes(rec: PartRecord) -> List[tuple]:
    truth = rec.ground_truth or {}
    boxes = []
    for d in truth.get('defects', []) or []:
        if isinstance(d, dict):
            box = defect_box(d)
            if box is not None:
                boxes.append(box)
    return boxes


def _esc(value) -> str:
    return html.escape('' if value is None else str(value))


_CSS = '''
body{font-family:sans-serif;margin:20px;color:#222}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #bbb;padding:4px 8px;vertical-align:top;font-size:13px}
th{background:#eee} .ok{background:#d9f2d9} .bad{background:#f8d0d0} .rev{background:#fff2c0}
img.rg{max-width:360px} img.snap{max-width:240px} pre{background:#f6f6f6;padding:8px}
'''


def _locations_html(locations: list) -> str:
    """The 'where the parts are' section: one row per part, a part not where its record
    says in red."""
    rows = ''.join(
        f'<tr><td>{_esc(loc["part_id"])}</td><td>{_esc(loc["outcome"] or "not handled")}</td>'
        f'<td>{_esc(loc["expected"] or "-")}</td>'
        f'<td class="{"bad" if loc["mismatch"] else ("ok" if loc["expected"] else "")}">'
        f'{_esc(loc["found"])}{" (NOT THERE)" if loc["mismatch"] else ""}</td>'
        f'<td>{", ".join(f"{v:.3f}" for v in loc["position"])}</td></tr>' for loc in locations)
    return ('<h2>Where the parts are (simulation truth, end of the run)</h2>'
            '<p>A part recorded as sorted must lie at its record\'s destination, a part '
            'with no record on the table; a failed part makes no claim.</p>'
            '<table><tr><th>part</th><th>recorded outcome</th><th>must be in</th>'
            f'<th>is in</th><th>position (world, m)</th></tr>{rows}</table>')


def render_report(db_path, out_dir=None, run_id: Optional[str] = None,
                  locations: Optional[list] = None) -> Path:
    """Render the report of a records database; return the path of index.html.

    Args:
        db_path: the records database (cell.db).
        out_dir: output folder (default ``<db folder>/report``).
        run_id: only this run's records (default: all).
        locations: where the parts physically are at the end of the run
            (cell/audit.py ``PartLocation.to_dict()`` rows, from the simulation's truth);
            None: no such section (a report of recorded data alone cannot know).

    Raises:
        RecordsError: missing or unreadable database.
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise RecordsError(f'no records database at {db_path}')
    store = RecordsStore(db_path)
    try:
        records = store.all(run_id)
        runs = store.runs()
    finally:
        store.close()
    out = Path(out_dir) if out_dir else db_path.parent / 'report'
    img_dir = out / 'img'
    img_dir.mkdir(parents=True, exist_ok=True)
    metrics = cell_metrics(records)
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2))
    plots = _plots(records, img_dir)

    rows = []
    for rec in records:
        rg_html = '<i>no radiograph</i>'
        if rec.radiograph_path:
            try:
                image = read_png16(store.root / rec.radiograph_path)
                name = f'{rec.record_id}_overlay.png'
                cv2.imwrite(str(img_dir / name), draw_overlay(image, rec.defects,
                                                              _truth_boxes(rec)))
                rg_html = f'<img class="rg" src="img/{_esc(name)}">'
            except RecordsError as exc:
                rg_html = f'<i>{_esc(exc)}</i>'
        snap_html = ''
        if rec.snapshot_path and (store.root / rec.snapshot_path).is_file():
            name = f'{rec.record_id}_snapshot.jpg'
            shutil.copyfile(store.root / rec.snapshot_path, img_dir / name)
            snap_html = f'<img class="snap" src="img/{_esc(name)}">'
        label = truth_label(rec.ground_truth)
        css = ''
        if label and rec.verdict:
            right = (label == 'good' and rec.verdict == 'ACCEPT') or \
                (label == 'defective' and rec.verdict == 'REJECT')
            css = 'ok' if right else ('rev' if rec.verdict == 'REVIEW' else 'bad')
        defects = ', '.join(
            f"{d.get('kind', '?')} {float(d.get('size_mm', 0)):.1f} mm" for d in rec.defects)
        times = ', '.join(f'{k[:-2]} {v:.2f}' for k, v in sorted(rec.stage_times.items()))
        cycle = f'{rec.cycle_time_s:.1f} s' if rec.cycle_time_s is not None else ''
        rows.append(
            f'<tr><td><b>{_esc(rec.part_id or "?")}</b><br>{_esc(rec.record_id)}<br>'
            f'{_esc(rec.family)}<br>state {_esc(rec.state)}<br>outcome <b>{_esc(rec.outcome)}'
            f'</b><br>{_esc(rec.failure_reason)}</td>'
            f'<td>{rg_html}</td><td>{snap_html}</td>'
            f'<td class="{css}">verdict <b>{_esc(rec.verdict)}</b><br>truth {_esc(label)}'
            f'<br>to {_esc(rec.destination)}</td>'
            f'<td>{_esc(defects)}<br><small>{"<br>".join(_esc(r) for r in rec.reasons)}'
            f'</small></td>'
            f'<td><small>arm {_esc(rec.arm)}, grasp #{_esc(rec.grasp_index)}, '
            f'{rec.grasp_attempts} attempt(s), {rec.inspections} inspection(s)<br>'
            f'cycle {cycle}<br>{_esc(times)}</small></td></tr>')

    conf = metrics['confusion']
    conf_rows = ''.join(
        f'<tr><th>{label}</th>' + ''.join(f'<td>{conf[label][v]}</td>' for v in VERDICT_COLUMNS)
        + '</tr>' for label in ('good', 'defective'))
    plot_html = ''.join(f'<img src="{_esc(p)}"> ' for p in plots.values())
    run_html = ''.join(
        f'<tr><td>{_esc(r["run_id"])}</td><td>{_esc(r["message"])}</td></tr>' for r in runs
        if run_id is None or r['run_id'] == run_id)
    where_html = '' if locations is None else _locations_html(locations)
    page = f'''<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Inspection cell report</title><style>{_CSS}</style></head><body>
<h1>Inspection cell report</h1>
<p>database: {_esc(db_path.resolve())}; {len(records)} part record(s)</p>
<h2>Summary</h2><pre>{_esc(format_summary(metrics))}</pre>
<h2>Verdict vs ground truth (simulation)</h2>
<table><tr><th>truth \\ verdict</th>{''.join(f"<th>{v}</th>" for v in VERDICT_COLUMNS)}</tr>
{conf_rows}</table>
<h2>Timing</h2>{plot_html}
<h2>Parts</h2>
<p>Radiograph boxes: orange porosity, blue shrinkage, red crack, green inclusion; white = the
simulation's ground truth where known.</p>
<table><tr><th>part</th><th>radiograph + defects</th><th>head camera</th><th>verdict</th>
<th>defects / reasons</th><th>robot / timing (s)</th></tr>
{''.join(rows)}</table>
{where_html}
<h2>Runs</h2><table><tr><th>run</th><th>result</th></tr>{run_html}</table>
</body></html>
'''
    index = out / 'index.html'
    index.write_text(page)
    return index
