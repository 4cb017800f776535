"""`humanoid-inspection report --db PATH [--out DIR] [--run RUN_ID]`: HTML report of a cell run."""

import argparse
import sys

from humanoid_inspection.cell.records import RecordsError


def main(argv=None) -> int:
    """Render the report; print its path. Returns 0, or 2 on a bad database."""
    parser = argparse.ArgumentParser(prog='humanoid-inspection report',
                                     description='Render the HTML report of a cell run.')
    parser.add_argument('--db', required=True, help='records database (cell.db)')
    parser.add_argument('--out', default=None, help='output folder (default: <db dir>/report)')
    parser.add_argument('--run', default=None, help='only this run id')
    args = parser.parse_args(argv)
    from humanoid_inspection.cell.report import render_report
    try:
        index = render_report(args.db, args.out, args.run)
    except RecordsError as exc:
        print(f'humanoid-inspection report: {exc}', file=sys.stderr)
        return 2
    print(f'report: {index}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
