"""Benchmark of the inspection cell: compute time per stage per part and the cell's metrics.

Runs the demo pipeline (sim + every node as its own process, a seeded cycle) or reads the
records of an earlier run (--db), then prints and saves (bench/results/cell.json):
compute time per stage (perception, affordance, planning, X-ray inspection; mean / p95 / max),
their sum per part against the factory anchor of 2 s per part, wall time per stage, cycle time
per part in simulation time, verdict accuracy, escapes, false rejects, grasp success.
Baseline in the same run: the 2 s/part anchor, and a previous result file when --baseline is
given (e.g. the committed bench/results/cell.json) with the change per stage.

    python bench/bench_cell.py --parts 6 --seed 7
    python bench/bench_cell.py --db runs/demo-XXXX/cell.db
"""

import argparse
import json
import sys
import time
from pathlib import Path

from humanoid_inspection.cell.metrics import (
    COMPUTE_BUDGET_S, COMPUTE_STAGES, WALL_STAGES, cell_metrics, format_summary)
from humanoid_inspection.cell.records import RecordsStore


def _row(name, stats, base=None):
    if not stats or stats.get('mean') is None:
        return f'{name:<22}{"n/a":>10}'
    line = f'{name:<22}{stats["mean"]:>10.3f}{stats["p95"]:>10.3f}{stats["max"]:>10.3f}'
    if base and base.get('mean'):
        line += f'{100.0 * (stats["mean"] - base["mean"]) / base["mean"]:>+10.1f} %'
    return line


def main(argv=None) -> int:
    """Run or read a cell run; print and save its figures. Exit 1 if over the budget."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--db', help='records database of an earlier run (skip running)')
    parser.add_argument('--parts', type=int, default=6)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--out', default='bench/results/cell.json')
    parser.add_argument('--baseline', help='earlier result JSON to compare against')
    args = parser.parse_args(argv)

    run = {}
    if args.db:
        db = Path(args.db)
    else:
        from humanoid_inspection.cell.demo import DemoError, run_demo
        out_dir = Path('runs') / f'bench-cell-{time.strftime("%Y%m%d-%H%M%S")}'
        try:
            run = run_demo(args.parts, args.seed, out_dir)
        except DemoError as exc:
            print(f'BENCH FAILED: {exc}', file=sys.stderr)
            return 1
        db = Path(run['db'])
    store = RecordsStore(db)
    records = store.all()
    store.close()
    metrics = cell_metrics(records)
    base = None
    if args.baseline and Path(args.baseline).is_file():
        base = json.loads(Path(args.baseline).read_text()).get('metrics')

    print(f'cell benchmark: {len(records)} part record(s) from {db}')
    print(f'{"compute stage (s)":<22}{"mean":>10}{"p95":>10}{"max":>10}'
          + (f'{"vs base":>12}' if base else ''))
    for stage in COMPUTE_STAGES:
        print(_row(stage, metrics['compute_time_s'][stage],
                   base and base['compute_time_s'].get(stage)))
    print(_row('ALL STAGES / part', metrics['compute_total_per_part_s'],
               base and base.get('compute_total_per_part_s')))
    print(f'{"anchor":<22}{COMPUTE_BUDGET_S:>10.3f}  (factory: all stages < 2 s per part)')
    print(f'\n{"wall stage (s)":<22}{"mean":>10}{"p95":>10}{"max":>10}')
    for stage in WALL_STAGES:
        print(_row(stage, metrics['wall_time_s'][stage], base and base['wall_time_s'].get(stage)))
    print('\n' + format_summary(metrics))
    total = metrics['compute_total_per_part_s']
    within = total['max'] is not None and total['max'] < COMPUTE_BUDGET_S
    print(f'\nall stages < {COMPUTE_BUDGET_S:.0f} s per part: {"YES" if within else "NO"}')

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        'command': 'python bench/bench_cell.py ' + ' '.join(argv or sys.argv[1:]),
        'db': str(db), 'run': {k: v for k, v in run.items() if k != 'exit_codes'},
        'within_budget': within, 'metrics': metrics}, indent=2, default=str))
    print(f'saved {out}')
    return 0 if within else 1


if __name__ == '__main__':
    sys.exit(main())
