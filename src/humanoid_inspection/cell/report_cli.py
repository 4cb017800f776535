"""`humanoid-inspection report --db PATH [--out DIR] [--run RUN_ID]`: HTML report of a cell run.

A demo run's folder holds its `metrics.json` beside `cell.db`; the part locations the demo
checked against the simulation (cell/audit.py, `part_locations`) are taken from it, so the
report re-rendered from the folder shows them as the demo's did.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Tuple

from humanoid_inspection.cell.records import RecordsError


def _location_keys() -> Tuple[str, ...]:
    """The keys of a PartLocation.to_dict() row (what the report's section reads)."""
    from dataclasses import fields
    from humanoid_inspection.cell.audit import PartLocation
    return tuple(f.name for f in fields(PartLocation)) + ('mismatch',)


def demo_locations(db) -> Tuple[Optional[list], str]:
    """The demo's part_locations from metrics.json beside the database.

    Returns:
        (rows or None, '' or why a metrics.json that exists gave none).
    """
    path = Path(db).parent / 'metrics.json'
    if not path.is_file():
        return None, ''
    try:
        rows = json.loads(path.read_text()).get('part_locations')
    except (OSError, ValueError, AttributeError) as exc:
        return None, f'{path}: unreadable ({exc})'
    if rows is None:
        return None, ''
    keys = _location_keys()
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and all(k in r for k in keys) for r in rows):
        return None, f'{path}: part_locations is not a list of {", ".join(keys)}'
    return rows, ''


def main(argv=None) -> int:
    """Render the report; print its path. Returns 0, or 2 on a bad database."""
    parser = argparse.ArgumentParser(prog='humanoid-inspection report',
                                     description='Render the HTML report of a cell run.')
    parser.add_argument('--db', required=True, help='records database (cell.db)')
    parser.add_argument('--out', default=None, help='output folder (default: <db dir>/report)')
    parser.add_argument('--run', default=None, help='only this run id')
    args = parser.parse_args(argv)
    from humanoid_inspection.cell.report import render_report
    locations, why = demo_locations(args.db)
    if why:
        print(f'humanoid-inspection report: part locations left out: {why}', file=sys.stderr)
    try:
        index = render_report(args.db, args.out, args.run, locations=locations)
    except RecordsError as exc:
        print(f'humanoid-inspection report: {exc}', file=sys.stderr)
        return 2
    print(f'report: {index}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
