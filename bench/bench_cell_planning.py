"""Planning time per part for the plans the cell makes, arm-alone OMPL budget before and after.

What cell_manager asks manipulation to plan for one part, planned (not executed) with the real
libraries and the node's settings (config/manipulation.yaml), on the seeded cell of the demo:

1. table -> X-ray fixture, from rest (the part's grasp candidates from the classical backend and
   the affordance on one head-camera frame, the part's box carried, as cell_manager sends it);
2. fixture -> the part's bin (accept_bin for a good part, reject_bin for a defective one), from
   where plan 1 ended; after the first such plan fails for reach, every later part goes
   fixture -> its table spot (the hand-over, from where plan 1 ended) and
3. table spot -> bin, from rest (the robot parks after the hand-over).

The parts are taken in index order on one planner, as the manipulation node keeps one planner
for the whole cycle. Two planners run the same sequence in the same run:

- ``before``: the arm alone with the full OMPL budget (``joint_plan_timeout_s``) while the arm +
  waist follows it: the planner before ``joint_plan_timeout_first_group_s``;
- ``after``: config/manipulation.yaml as it is (``joint_plan_timeout_first_group_s`` for the
  arm alone while the waist group follows).

Planning alone here, on a quiet machine, is what the cell's planning stage would take without
the other processes of the cell competing for the 2 cores (compare with bench/bench_cell.py).

Printed and saved: planning time per plan and per part (sum of its plans), the groups used and
the failed attempts.

Usage: python bench/bench_cell_planning.py [--seed 7] [--parts 6] [--repeats 1]
       [--out bench/results/cell_planning.json]
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))
sys.path.insert(0, str(ROOT / 'bench'))

from bench_cell_pick import Cell, carried_box, grasp_record, nearest_detection  # noqa: E402


def _stats(values):
    v = np.asarray(values, float)
    if v.size == 0:
        return {'n': 0}
    return {'n': int(v.size), 'mean': float(v.mean()), 'median': float(np.median(v)),
            'p95': float(np.percentile(v, 95)), 'max': float(v.max()),
            'sum': float(v.sum())}


def part_jobs(cell, parts):
    """Per part: (part, candidates (GraspCandidate list), Grasp records, carried box)."""
    from humanoid_inspection.affordance.grasp import grasps_for_detection, to_frame
    from humanoid_inspection.cell.places import object_box_in_grasp
    from humanoid_inspection.manipulation.pick_place import GraspCandidate
    dets, depth_m, intr, T_base_cam = cell.look()
    jobs = []
    for part in parts:
        det = nearest_detection(cell, dets, T_base_cam, cell.sim.part_pose(part.part_id)[:2, 3])
        if det is None:
            print(f'  {part.part_id}: not detected, skipped', flush=True)
            continue
        res = grasps_for_detection(det, depth_m, intr, cell.grasp_cfg)
        base = to_frame(res, T_base_cam, 'base_link').candidates
        if not base:
            print(f'  {part.part_id}: no grasp ({res.diagnostic}), skipped', flush=True)
            continue
        box = carried_box(det, T_base_cam)
        records = []
        for c in base:
            g = grasp_record(c, det, T_base_cam)
            g.object_box = object_box_in_grasp(g, box.pose, box.size)
            records.append(g)
        cands = [GraspCandidate(c.matrix(), c.opening_m, c.score) for c in base]
        jobs.append((part, cands, records, box))
    return jobs


def final_configuration(robot, q_start, plan):
    """The full configuration at the end of a plan (its last arm segment's last sample)."""
    q = np.array(q_start, float)
    for seg in plan.segments:
        names = seg.trajectory.joint_names
        for name, value in zip(names, seg.trajectory.positions[-1]):
            q[robot.joint_index(name)] = value
    return q


def run_sequence(cell, planner, jobs, q_rest, label):
    """Plan every part's table -> fixture -> (hand-over ->) bin; one row per part."""
    from humanoid_inspection.cell.places import (grasp_matrix, object_box_in_base,
                                                 pose_from_quaternion)
    from humanoid_inspection.manipulation.pick_place import CarriedPart, GraspCandidate
    via_table = set()
    rows = []

    def plan(q0, cands, position, quat, grasp_record, what):
        box = object_box_in_base(grasp_record)
        carried = CarriedPart(box[0], box[1]) if box is not None else None
        t0 = time.perf_counter()
        out = planner.plan(q0, cands, pose_from_quaternion(position, quat), '', carried)
        entry = {'what': what, 'plan_s': time.perf_counter() - t0,
                 'code': out.error_code.name, 'group': out.group, 'attempts': out.attempts,
                 'message': out.message[:240]}
        print(f'    [{label}] {what}: {entry["code"]} {entry["group"]} '
              f'{entry["plan_s"]:.2f} s ({out.attempts} attempt(s))', flush=True)
        return out, entry

    for part, cands, records, _ in jobs:
        destination = 'reject_bin' if part.casting.defects else 'accept_bin'
        row = {'part': part.part_id, 'destination': destination, 'plans': []}
        p1, e = plan(q_rest, cands, *cell.places.place_pose('fixture', records[0]), records[0],
                     'table -> fixture')
        row['plans'].append(e)
        if not p1.success:
            rows.append(row)
            continue
        grasp = records[p1.grasp_index]
        q_fixture = final_configuration(cell.robot, q_rest, p1)
        in_fixture = cell.places.fixture_grasp(grasp)
        from_fixture = [GraspCandidate(grasp_matrix(in_fixture), in_fixture.opening_m, 1.0)]
        done = False
        if destination not in via_table:
            p2, e = plan(q_fixture, from_fixture, *cell.places.place_pose(destination, grasp),
                         in_fixture, f'fixture -> {destination}')
            row['plans'].append(e)
            done = p2.success
            if not done:
                via_table.add(destination)
        if not done:
            p2, e = plan(q_fixture, from_fixture, *cell.places.return_pose(grasp), in_fixture,
                         'fixture -> table hand-over spot')
            row['plans'].append(e)
            if p2.success:
                at_spot = [GraspCandidate(grasp_matrix(grasp), grasp.opening_m, 1.0)]
                _, e = plan(q_rest, at_spot, *cell.places.place_pose(destination, grasp),
                            grasp, f'table hand-over spot -> {destination}')
                row['plans'].append(e)
        row['planning_s'] = float(sum(p['plan_s'] for p in row['plans']))
        # a failed direct fixture -> bin plan is expected (the hand-over follows it)
        row['all_planned'] = row['plans'][-1]['code'] == 'SUCCESS' and \
            row['plans'][-1]['what'].endswith(destination)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    """Plan the seeded cell's sequence with the planner before and after; print, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--parts', type=int, default=6)
    parser.add_argument('--repeats', type=int, default=1,
                        help='sequences per planner (planner seeds 0..repeats-1)')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                              'cell_planning.json'))
    args = parser.parse_args(argv)
    from humanoid_inspection.manipulation.pick_place import PickPlacePlanner
    from humanoid_inspection.sim.parts import plan_parts
    print(f'cell seed {args.seed}: building the sim, looking at the table', flush=True)
    cell = Cell(args.seed, args.parts)
    parts = plan_parts(args.parts, args.seed, 8, defect_probability=0.5)
    jobs = part_jobs(cell, parts)
    q_rest = cell.q_now()
    after_cfg = cell.planner.config
    before_cfg = dataclasses.replace(
        after_cfg, joint_plan_timeout_first_group_s=after_cfg.joint_plan_timeout_s)
    variants = {'before': before_cfg, 'after': after_cfg}
    results = {}
    for repeat in range(args.repeats):
        for label, cfg in variants.items():
            print(f'{label} (planner seed {repeat})', flush=True)
            planner = PickPlacePlanner(cell.robot, cell.planner.checker, cell.planner.obstacles,
                                       dataclasses.replace(cfg), seed=repeat,
                                       planner=cell.mp['planner'],
                                       resolution=cell.mp['motion_resolution_rad'])
            results.setdefault(label, []).extend(
                run_sequence(cell, planner, jobs, q_rest, label))
    summary = {}
    for label, rows in results.items():
        per_part = [r['planning_s'] for r in rows if 'planning_s' in r]
        per_plan = [p['plan_s'] for r in rows for p in r['plans']]
        summary[label] = {
            'parts': len(rows), 'all_planned': sum(bool(r.get('all_planned')) for r in rows),
            'planning_per_part_s': _stats(per_part),
            'planning_per_plan_s': _stats(per_plan),
            'failed_attempts': int(sum(max(0, p['attempts'] - 1) for r in rows
                                       for p in r['plans'])),
            'waist_plans': int(sum(p['group'].endswith('_waist') for r in rows
                                   for p in r['plans'])),
        }
    print(f"\n{'planner':<8}{'parts ok':>10}{'mean s/part':>13}{'median':>9}{'max':>8}"
          f"{'plans':>7}{'failed attempts':>17}{'waist plans':>13}")
    for label, s in summary.items():
        pp = s['planning_per_part_s']
        print(f"{label:<8}{s['all_planned']:>6}/{s['parts']:<3}{pp.get('mean', 0):>13.2f}"
              f"{pp.get('median', 0):>9.2f}{pp.get('max', 0):>8.2f}"
              f"{s['planning_per_plan_s']['n']:>7}{s['failed_attempts']:>17}"
              f"{s['waist_plans']:>13}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        'command': 'python bench/bench_cell_planning.py ' +
        ' '.join(argv if argv is not None else sys.argv[1:]),
        'seed': args.seed, 'repeats': args.repeats, 'summary': summary, 'parts': results},
        indent=2, default=float))
    print(f'saved {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
