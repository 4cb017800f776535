"""`humanoid-inspection inspect PATH...`: inspect radiograph files or folders without ROS.

Reads 8/16-bit grey PNG or TIFF files (folders: their files with those extensions, sorted),
runs the pipeline (detect + grade) on each, and writes into --out:
results.json (one entry per file: verdict, reasons, defects, timings, or the error),
report.html (a table with overlay pictures) and overlays/<name>.png.
A file that cannot be read (corrupt, colour, unsupported) is reported with its reason and the
others are still inspected; the exit code is 1 when any file failed, else 0.

Against the part's model (simulation-aided ADR, docs/xray_inspection.md): with --reference
each radiograph is registered to the rendered model of its part and inspected on the residual
('cnn+reference'), as the cell's X-ray station took it (distances from the cell file, the
station's kV and mAs). The part comes from --part-id (every file), or from a cell run's
records: --records runs/<run>/cell.db inspects every radiograph the cell recorded, with its
part id, family, pitch and magnification, and compares the verdicts with the cell's and with
the simulation's expected ones (a second opinion, offline: the model costs ~1 s per
radiograph, too slow for the cell's 2 s per part). A part id that names no model, or a
registration that is not trusted, is inspected image-only and says why.
"""

import argparse
import html
import json
import sys
import time
from dataclasses import dataclass, field
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


def write_html(out_dir: Path, entries: list, title: str, agreement: dict = None) -> Path:
    """report.html: one row per file with verdict, reasons, defects and the overlay; with a
    cell's records also the cell's and the expected verdicts and how they agree."""
    colours = {'ACCEPT': '#1a7f37', 'REJECT': '#cf222e', 'REVIEW': '#bf8700', 'ERROR': '#6e7781'}

    def coloured(verdict):
        if not verdict:
            return '-'
        return (f'<span style="color:{colours.get(verdict, "#000")};font-weight:bold">'
                f'{html.escape(verdict)}</span>')
    recorded = any('cell_verdict' in e for e in entries)
    rows = []
    for e in entries:
        verdict = e.get('verdict', 'ERROR')
        reasons = e.get('reasons') or [e.get('error', '')]
        if e.get('reference_not_used'):
            reasons = reasons + [e['reference_not_used']]
        pic = (f'<a href="{html.escape(e["overlay"])}"><img src="{html.escape(e["overlay"])}" '
               'width="320"></a>' if e.get('overlay') else '')
        defects = ''.join(
            f'<li>{html.escape(d["kind"])} {d["size_mm"]:.2f} mm, conf {d["confidence"]:.2f}, '
            f'zone {html.escape(d["zone"] or "-")}, level {d["severity_level"]}</li>'
            for d in e.get('defects', []))
        part = html.escape(e.get('part_id', ''))
        cells = (f'<td>{coloured(e.get("cell_verdict"))} '
                 f'({html.escape(str(e.get("cell_detector") or "-"))})</td>'
                 f'<td>{coloured(e.get("expected_verdict"))}</td>') if recorded else ''
        rows.append(
            f'<tr><td>{html.escape(e["file"])}<br>{part}</td>'
            f'<td>{coloured(verdict)}<br>{html.escape(e.get("detector", ""))}</td>{cells}'
            f'<td><ul>{"".join(f"<li>{html.escape(r)}</li>" for r in reasons)}</ul>'
            f'<ul>{defects}</ul></td>'
            f'<td>{e.get("total_time_s", 0):.3f}</td><td>{pic}</td></tr>')
    counts = {}
    for e in entries:
        counts[e.get('verdict', 'ERROR')] = counts.get(e.get('verdict', 'ERROR'), 0) + 1
    summary = ', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))
    agree = ''.join(
        f'<li>{html.escape(k.replace("_", " "))}: {a["same"]} of {a["n"]} the same, '
        f'{a["escapes"]} ACCEPT where REJECT, {a["false_rejects"]} REJECT where ACCEPT</li>'
        for k, a in (agreement or {}).items())
    heads = '<th>the cell\'s verdict</th><th>expected</th>' if recorded else ''
    page = f'''<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td{{vertical-align:top;border-bottom:1px solid #ccc;
padding:4px}} table{{border-collapse:collapse}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{len(entries)} file(s): {html.escape(summary)}</p>
{f"<ul>{agree}</ul>" if agree else ""}
<table><tr><th>file / part</th><th>verdict / detector</th>{heads}<th>reasons / defects</th>
<th>time (s)</th><th>overlay</th></tr>{''.join(rows)}</table></body></html>'''
    path = out_dir / 'report.html'
    path.write_text(page, encoding='utf-8')
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    from humanoid_inspection.xray.detector import DETECTOR_NAMES
    ap = argparse.ArgumentParser(prog='humanoid-inspection inspect', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('paths', nargs='*', help='radiograph files (PNG/TIFF) or folders')
    ap.add_argument('--out', default='inspection_report', help='output folder')
    ap.add_argument('--detector', default='default', choices=('default',) + DETECTOR_NAMES)
    ap.add_argument('--pixel-pitch-mm', type=float, default=0.2,
                    help='detector pixel pitch (mm)')
    ap.add_argument('--magnification', type=float, default=1.0)
    ap.add_argument('--family', default=None,
                    help='part family of the acceptance table (housing, bracket, hub, generic; '
                    'default: the part id\'s, else generic)')
    ap.add_argument('--table', default=None, help='acceptance table YAML (default E505 table)')
    ap.add_argument('--no-overlays', action='store_true', help='skip the overlay pictures')
    ap.add_argument('--mask-unexposed', action='store_true',
                    help="image-intensifier radiographs: drop detections at the field's dark "
                    'surround (xray/exposure.py; not for parts that run past the image edge)')
    ap.add_argument('--part-id', default='',
                    help="the part every file shows, '<family>-<seed>' (names its model)")
    ap.add_argument('--records', default=None, metavar='CELL_DB',
                    help="a cell run's records database: inspect every radiograph it "
                    'recorded, with its part id and geometry, instead of PATHS')
    ap.add_argument('--reference', action='store_true',
                    help="inspect against each part's registered model (needs --part-id or "
                    '--records; detector cnn or default)')
    ap.add_argument('--cell', default=None,
                    help='cell file of the X-ray station (default: the package\'s cell.yaml)')
    return ap


@dataclass
class Job:
    """One radiograph to inspect and what is known of it."""

    path: Path
    part_id: str
    family: str
    pixel_pitch_mm: float
    magnification: float
    recorded: dict = field(default_factory=dict)    # the cell's record, with --records


def jobs_from_args(args) -> list:
    """The radiographs to inspect (files or a cell's records).

    Raises:
        ValueError, FileNotFoundError: bad options, no files, a bad records database.
    """
    from humanoid_inspection.xray.detector import mm_per_px
    from humanoid_inspection.xray.part_models import parse_part_id
    if bool(args.paths) == bool(args.records):
        raise ValueError('give radiograph PATHS or --records CELL_DB (one of them)')
    if args.reference and not (args.part_id or args.records):
        raise ValueError('--reference needs the part: --part-id ID or --records CELL_DB')
    if args.records:
        if args.part_id:
            raise ValueError('--part-id and --records exclude each other (the records name '
                             'each part)')
        from humanoid_inspection.xray.reinspection import recorded_radiographs
        jobs = [Job(r.path, r.part_id, args.family or r.family, r.pixel_pitch_mm,
                    r.magnification, {'record_id': r.record_id, 'cell_verdict': r.cell_verdict,
                                      'cell_detector': r.cell_detector,
                                      'expected_verdict': r.expected_verdict})
                for r in recorded_radiographs(args.records)]
        if not jobs:
            raise ValueError(f'{args.records} records no radiograph')
        return jobs
    mm_per_px(args.pixel_pitch_mm, args.magnification)
    family = args.family
    if args.part_id:
        family = family or parse_part_id(args.part_id)[0]     # ValueError: names no model
    files = collect_files(args.paths)
    if not files:
        raise ValueError('no PNG/TIFF files found in ' + ', '.join(args.paths))
    return [Job(f, args.part_id, family or 'generic', args.pixel_pitch_mm,
                args.magnification) for f in files]


class ReferenceInspectors:
    """The 'cnn+reference' detector of each job's part (models cached), or the image-only
    detector with the reason where the part names no model."""

    def __init__(self, name: str, cell_file=None):
        from humanoid_inspection.cell_geometry import load_cell
        from humanoid_inspection.xray.detector_reference import reference_base, require_front_end
        from humanoid_inspection.xray.part_models import ReferenceCache
        from humanoid_inspection.xray.pipeline import get_detector
        self.image_only = get_detector(name)
        require_front_end(self.image_only)
        self.base = reference_base(name)
        self.cell = load_cell(cell_file)
        self.cache = ReferenceCache(4)

    def detector_for(self, job: Job, shape):
        """(detector, why the model is not used or None)."""
        from humanoid_inspection.xray.part_models import reference_detector, station_acquisition
        try:
            config = station_acquisition(shape, job.pixel_pitch_mm, cell=self.cell)
            return reference_detector(job.part_id, self.base, config, self.cache,
                                      image_only=self.image_only), None
        except ValueError as exc:
            return self.image_only, f'reference not used: no model: {exc}'


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection inspect`."""
    import cv2

    from humanoid_inspection.xray.grading import load_table
    from humanoid_inspection.xray.pipeline import inspect_radiograph, render_overlay

    args = build_parser().parse_args(argv)
    try:
        table = load_table(args.table)
        if args.family:
            table.zones(args.family)            # a bad family before any file is looked at
        jobs = jobs_from_args(args)
        for family in sorted({j.family for j in jobs}):
            table.zones(family)
        inspectors = ReferenceInspectors(args.detector, args.cell) if args.reference else None
    except (ValueError, OSError) as exc:
        print(f'inspect: {exc}', file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    (out_dir / 'overlays').mkdir(parents=True, exist_ok=True)
    entries, failed = [], 0
    t0 = time.perf_counter()
    for i, job in enumerate(jobs):
        f = job.path
        entry = {'file': str(f), **({'part_id': job.part_id} if job.part_id else {}),
                 **job.recorded}
        try:
            if not f.exists():
                raise ValueError('no such file')
            image = read_radiograph(f)
            detector, why = (inspectors.detector_for(job, image.shape[:2]) if inspectors
                             else (args.detector, None))
            outcome = inspect_radiograph(image, job.pixel_pitch_mm, job.magnification,
                                         job.family, detector, table,
                                         mask_unexposed=args.mask_unexposed)
            if why is None and inspectors and detector is not inspectors.image_only:
                from humanoid_inspection.xray.detector_reference import account_registration
                why = account_registration(detector, outcome)
            entry.update(outcome.to_dict())
            if why:
                entry['reference_not_used'] = why
            if not args.no_overlays:
                name = f'overlays/{i:04d}_{f.stem}.png'
                cv2.imwrite(str(out_dir / name),
                            cv2.cvtColor(render_overlay(image, outcome), cv2.COLOR_RGB2BGR))
                entry['overlay'] = name
            cell = (f', cell: {job.recorded["cell_verdict"]}' if job.recorded.get('cell_verdict')
                    else '')
            print(f'[{i + 1}/{len(jobs)}] {f}: {outcome.verdict} ({outcome.detector}, '
                  f'{len(outcome.defects)} defect(s), {outcome.total_time_s * 1000:.0f} ms'
                  f'{cell}){" - " + why if why else ""}')
        except (ValueError, OSError) as exc:
            failed += 1
            entry['error'] = str(exc)
            print(f'[{i + 1}/{len(jobs)}] {f}: ERROR {exc}', file=sys.stderr)
        entries.append(entry)
    summary = {'files': len(jobs), 'failed': failed, 'detector': args.detector,
               'reference': bool(args.reference), 'records': args.records,
               'family': args.family, 'pixel_pitch_mm': args.pixel_pitch_mm,
               'magnification': args.magnification,
               'wall_time_s': round(time.perf_counter() - t0, 3), 'results': entries}
    if args.records:
        from humanoid_inspection.xray.reinspection import verdict_agreement
        summary['agreement'] = agreement = verdict_agreement(entries)
        for key, a in agreement.items():
            print(f'{key.replace("_", " ")}: {a["same"]} of {a["n"]} the same, '
                  f'{a["escapes"]} ACCEPT where REJECT, {a["false_rejects"]} REJECT where '
                  'ACCEPT')
    (out_dir / 'results.json').write_text(json.dumps(summary, indent=2), encoding='utf-8')
    report = write_html(out_dir, entries, 'Radiograph inspection', summary.get('agreement'))
    print(f'wrote {out_dir / "results.json"} and {report}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
