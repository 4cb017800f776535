"""How often affordance finds no grasp at all for a part, over the poses it can lie in.

A part without a grasp candidate is given up (`no_grasp`) and stays on the table: the README
demo exited 1 once for seed-7 hub-007001 ("4 too wide", no wall grasp). This bench puts each
part of the seed's cell alone on the table (the others moved out of view), turns it through
--yaw-range degrees either way in --yaw-step steps and shifts it 1 cm along x and along y at
each yaw, lets it settle, renders the head camera, detects it (classical backend,
config/perception.yaml) and asks for grasps (config/affordance.yaml), as bench_cell_pick does.

Baseline in the same run, from the same look: the wall-grasp search without its top level
(GraspConfig.wall_top_level=False: levels on the 3 mm step grid only, as before).

With --pick, every pose where the two differ (no grasp in one, or another best candidate) is
also picked into the X-ray fixture with each (bench_cell_pick.try_part: the planner and the
sim's trajectory follower, the other parts back on their slots, up to 3 attempts): whether the
grasps now found also hold.

Usage: python bench/bench_grasp_availability.py [--seed 7] [--parts 6] [--only hub-007001]
       [--yaw-range 45] [--yaw-step 15] [--pick] [--out bench/results/grasp_availability.json]
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))
sys.path.insert(0, str(ROOT / 'bench'))

from bench_cell_pick import Cell, nearest_detection, try_part  # noqa: E402

SHIFTS_M = ((0.0, 0.0), (0.01, 0.0), (0.0, 0.01))
OUT_OF_VIEW = (3.0, 3.0, 0.05)


def _candidates(det, depth, intr, cfg) -> list:
    from humanoid_inspection.affordance.grasp import grasps_for_detection
    res = grasps_for_detection(det, depth, intr, cfg)
    return [(c.kind, round(1e3 * c.opening_m)) for c in res.candidates]


def sweep_part(cell: Cell, part_id: str, yaws_deg, baseline_cfg) -> list:
    """Rows (yaw offset, shift, candidates now, candidates baseline) for one part alone."""
    sim = cell.sim
    home = sim.part_pose(part_id)
    yaw0 = math.atan2(home[1, 0], home[0, 0])
    for k, other in enumerate(p.part_id for p in sim.scene.parts):
        if other != part_id:
            sim.set_part_pose(other, [OUT_OF_VIEW[0] + 0.5 * k, OUT_OF_VIEW[1], OUT_OF_VIEW[2]],
                              0.0)
    rows = []
    for dyaw in yaws_deg:
        for dx, dy in SHIFTS_M:
            xy = home[:2, 3] + [dx, dy]
            sim.set_part_pose(part_id, [xy[0], xy[1], home[2, 3] + 0.0005],
                              yaw0 + math.radians(dyaw))
            sim.step(100)
            dets, depth, intr, T = cell.look()
            det = nearest_detection(cell, dets, T, xy)
            row = {'yaw_offset_deg': dyaw, 'shift_m': [dx, dy],
                   'pose': [float(xy[0]), float(xy[1]), yaw0 + math.radians(dyaw)]}
            if det is None:
                row['result'] = 'not_detected'
            else:
                row['candidates'] = _candidates(det, depth, intr, cell.grasp_cfg)
                row['baseline_candidates'] = _candidates(det, depth, intr, baseline_cfg)
            rows.append(row)
    return rows


def pick_where_they_differ(seed: int, parts: int, index: int, rows: list) -> dict:
    """Pick the part with each config at the poses whose best candidate differs."""
    tally = {'now': {}, 'baseline': {}}
    for row in rows:
        if 'candidates' not in row or row['candidates'][:1] == row['baseline_candidates'][:1]:
            continue
        for name, found, changes in (('now', row['candidates'], None),
                                     ('baseline', row['baseline_candidates'],
                                      {'wall_top_level': False})):
            if not found:
                result = 'no_grasp'
            else:
                # 'no_grasp: <diagnostic>' when the other parts back on the table change it
                result = try_part(seed, parts, index, verbose=False, pose=row['pose'],
                                  grasp_changes=changes)['result'].split(':')[0]
            row[f'pick_{name}'] = result
            tally[name][result] = tally[name].get(result, 0) + 1
        print(f"    yaw {row['yaw_offset_deg']:+.0f} deg, shift {row['shift_m']}: now "
              f"{row['pick_now']}, baseline {row['pick_baseline']}", flush=True)
    return tally


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--parts', type=int, default=6)
    parser.add_argument('--only', default='', help='part ids, comma separated')
    parser.add_argument('--yaw-range', type=float, default=45.0)
    parser.add_argument('--yaw-step', type=float, default=15.0)
    parser.add_argument('--pick', action='store_true',
                        help='pick where the two configs differ (minutes per pose)')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                             'grasp_availability.json'))
    args = parser.parse_args(argv)
    if not args.yaw_step > 0:
        parser.error('--yaw-step must be > 0')
    yaws = list(np.arange(-args.yaw_range, args.yaw_range + 1e-9, args.yaw_step))
    unused = [Cell(args.seed, args.parts)]      # the first part's sweep starts from this one
    ids = [p.part_id for p in unused[0].sim.scene.parts]
    if args.only:
        wanted = args.only.split(',')
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            parser.error(f'no such part(s) in seed {args.seed}: {unknown}; there are {ids}')
        ids = [i for i in ids if i in wanted]
    results, t0 = [], time.perf_counter()
    for n, part_id in enumerate(ids, 1):
        cell = unused.pop() if unused else Cell(args.seed, args.parts)
        baseline_cfg = dataclasses.replace(cell.grasp_cfg, wall_top_level=False)
        rows = sweep_part(cell, part_id, yaws, baseline_cfg)
        seen = [r for r in rows if 'candidates' in r]
        none_now = sum(1 for r in seen if not r['candidates'])
        none_base = sum(1 for r in seen if not r['baseline_candidates'])
        # where the baseline had a grasp, did the best one change (the one the cell tries)?
        changed = sum(1 for r in seen if r['baseline_candidates']
                      and r['candidates'][:1] != r['baseline_candidates'][:1])
        entry = {'part': part_id, 'poses': len(rows), 'detected': len(seen),
                 'no_grasp': none_now, 'baseline_no_grasp': none_base,
                 'best_changed': changed, 'rows': rows}
        results.append(entry)
        print(f'[{n}/{len(ids)}] {part_id}: no grasp in {none_now}/{len(seen)} poses '
              f'(baseline {none_base}/{len(seen)}), best candidate changed in {changed}, '
              f'{len(rows) - len(seen)} not detected, {time.perf_counter() - t0:.0f} s',
              flush=True)
        if args.pick:
            index = [p.part_id for p in cell.sim.scene.parts].index(part_id)
            entry['picks'] = pick_where_they_differ(args.seed, args.parts, index, rows)
            print(f"  picks where they differ: now {entry['picks']['now']}, baseline "
                  f"{entry['picks']['baseline']}", flush=True)
    total = sum(r['detected'] for r in results)
    summary = {'seed': args.seed, 'yaws_deg': [float(y) for y in yaws],
               'shifts_m': [list(s) for s in SHIFTS_M], 'poses_detected': total,
               'no_grasp': sum(r['no_grasp'] for r in results),
               'baseline_no_grasp': sum(r['baseline_no_grasp'] for r in results),
               'best_changed': sum(r['best_changed'] for r in results),
               'parts': results}
    print(f"no grasp: {summary['no_grasp']}/{total} poses; baseline (step-grid levels only): "
          f"{summary['baseline_no_grasp']}/{total}; best candidate changed in "
          f"{summary['best_changed']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=float))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
