"""`humanoid-inspection inspect PATH...`: inspect radiograph files or folders without ROS.

Reads 8/16-bit grey PNG or TIFF files (folders: their files with those extensions, sorted),
runs the pipeline (detect + grade) on each, and writes into --out:
results.json (one entry per file: verdict, reasons, defects, timings, or the error),
report.html (a table with overlay pictures) and overlays/<name>.png.
A file that cannot be read (corrupt, colour, unsupported) is reported with its reason and the
others are still inspected; the exit code is 1 when any file failed, else 0.
"""

import argparse
import html
import json
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = ('.png', '.tif', '.tiff')


def read_radiograph(path: Path) -> np.ndarray:
    """Read a grey 8/16-bit radiograph.

    Raises:
        ValueError: unreadable/corrupt file, colour image, unsupported bit depth.
    """
    import cv2
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"unsupported file type '{path.suffix}' (use PNG or TIFF)")
    data = np.fromfile(str(path), np.uint8)
    if data.size == 0:
        raise ValueError('empty file')
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError('cannot decode the image (corrupt or truncated file?)')
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if image.shape[2] == 1 or np.all(image == image[:, :, :1]):
            image = image[:, :, 0]
        else:
            raise ValueError('colour image: radiographs must be single-channel grey')
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'unsupported pixel type {image.dtype} (8- or 16-bit grey)')
    return image


def collect_files(paths) -> list:
    """Files named on the command line, folders expanded (sorted), duplicates removed."""
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.iterdir()
                            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(p)
    seen, out = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            out.append(f)
    return out


def write_html(out_dir: Path, entries: list, title: str) -> Path:
    """report.html: one row per file with verdict, reasons, defects and the overlay."""
    colours = {'ACCEPT': '#1a7f37', 'REJECT': '#cf222e', 'REVIEW': '#bf8700', 'ERROR': '#6e7781'}
    rows = []
    for e in entries:
        verdict = e.get('verdict', 'ERROR')
        reasons = e.get('reasons') or [e.get('error', '')]
        pic = (f'<a href="{html.escape(e["overlay"])}"><img src="{html.escape(e["overlay"])}" '
               'width="320"></a>' if e.get('overlay') else '')
        defects = ''.join(
            f'<li>{html.escape(d["kind"])} {d["size_mm"]:.2f} mm, conf {d["confidence"]:.2f}, '
            f'zone {html.escape(d["zone"] or "-")}, level {d["severity_level"]}</li>'
            for d in e.get('defects', []))
        rows.append(
            f'<tr><td>{html.escape(e["file"])}</td>'
            f'<td style="color:{colours.get(verdict, "#000")};font-weight:bold">{verdict}</td>'
            f'<td><ul>{"".join(f"<li>{html.escape(r)}</li>" for r in reasons)}</ul>'
            f'<ul>{defects}</ul></td>'
            f'<td>{e.get("total_time_s", 0):.3f}</td><td>{pic}</td></tr>')
    counts = {}
    for e in entries:
        counts[e.get('verdict', 'ERROR')] = counts.get(e.get('verdict', 'ERROR'), 0) + 1
    summary = ', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))
    page = f'''<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td{{vertical-align:top;border-bottom:1px solid #ccc;
padding:4px}} table{{border-collapse:collapse}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{len(entries)} file(s): {html.escape(summary)}</p>
<table><tr><th>file</th><th>verdict</th><th>reasons / defects</th><th>time (s)</th>
<th>overlay</th></tr>{''.join(rows)}</table></body></html>'''
    path = out_dir / 'report.html'
    path.write_text(page, encoding='utf-8')
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    from humanoid_inspection.xray.detector import DETECTOR_NAMES
    ap = argparse.ArgumentParser(prog='humanoid-inspection inspect', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('paths', nargs='+', help='radiograph files (PNG/TIFF) or folders')
    ap.add_argument('--out', default='inspection_report', help='output folder')
    ap.add_argument('--detector', default='default', choices=('default',) + DETECTOR_NAMES)
    ap.add_argument('--pixel-pitch-mm', type=float, default=0.2,
                    help='detector pixel pitch (mm)')
    ap.add_argument('--magnification', type=float, default=1.0)
    ap.add_argument('--family', default='generic',
                    help='part family of the acceptance table (housing, bracket, hub, generic)')
    ap.add_argument('--table', default=None, help='acceptance table YAML (default E505 table)')
    ap.add_argument('--no-overlays', action='store_true', help='skip the overlay pictures')
    return ap


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection inspect`."""
    import cv2

    from humanoid_inspection.xray.grading import load_table
    from humanoid_inspection.xray.pipeline import inspect_radiograph, render_overlay

    args = build_parser().parse_args(argv)
    try:
        table = load_table(args.table)
        table.zones(args.family)
        from humanoid_inspection.xray.detector import mm_per_px
        mm_per_px(args.pixel_pitch_mm, args.magnification)
    except (ValueError, OSError) as exc:
        print(f'inspect: {exc}', file=sys.stderr)
        return 2
    files = collect_files(args.paths)
    if not files:
        print('inspect: no PNG/TIFF files found in ' + ', '.join(args.paths), file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    (out_dir / 'overlays').mkdir(parents=True, exist_ok=True)
    entries, failed = [], 0
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        entry = {'file': str(f)}
        try:
            if not f.exists():
                raise ValueError('no such file')
            image = read_radiograph(f)
            outcome = inspect_radiograph(image, args.pixel_pitch_mm, args.magnification,
                                         args.family, args.detector, table)
            entry.update(outcome.to_dict())
            if not args.no_overlays:
                name = f'overlays/{i:04d}_{f.stem}.png'
                cv2.imwrite(str(out_dir / name),
                            cv2.cvtColor(render_overlay(image, outcome), cv2.COLOR_RGB2BGR))
                entry['overlay'] = name
            print(f'[{i + 1}/{len(files)}] {f}: {outcome.verdict} '
                  f'({len(outcome.defects)} defect(s), {outcome.total_time_s * 1000:.0f} ms)')
        except (ValueError, OSError) as exc:
            failed += 1
            entry['error'] = str(exc)
            print(f'[{i + 1}/{len(files)}] {f}: ERROR {exc}', file=sys.stderr)
        entries.append(entry)
    summary = {'files': len(files), 'failed': failed, 'detector': args.detector,
               'family': args.family, 'pixel_pitch_mm': args.pixel_pitch_mm,
               'magnification': args.magnification,
               'wall_time_s': round(time.perf_counter() - t0, 3), 'results': entries}
    (out_dir / 'results.json').write_text(json.dumps(summary, indent=2), encoding='utf-8')
    report = write_html(out_dir, entries, 'Radiograph inspection')
    print(f'wrote {out_dir / "results.json"} and {report}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
