"""Benchmark of the manipulation stack: IK and pick-and-place planning in the cell.

IK: random reachable targets (forward kinematics of uniformly random configurations inside the
limits), spread over the four planning groups, solved from the standing pose by the project's
solver (LM + restarts) and by a plain damped-least-squares baseline in the same run.

Planning: seeded pick-and-place queries in the cell of config/cell.yaml: a part in a random
table slot (+-2 cm), grasped from above with a random rotation about the vertical, placed at a
random destination (X-ray fixture, accept bin, reject bin, review tray); full plan (IK, OMPL,
Cartesian segments, TOPP-RA) from the ready pose. Compared in the same run, interleaved query
by query (same machine load):

- ``planner``: the current code (remembered paths reused before OMPL);
- ``planner_no_experience``: the same with path reuse off (what a first-of-its-kind query
  costs, e.g. the cell's first pick to a new place);
- ``previous``: the manipulation package of git revision ``--baseline-rev`` (default: the code
  before the planning-speed work), loaded from git into a temporary package;
- ``baseline``: OMPL's full path simplification and fine-resolution exploration (MoveIt's
  default behaviour) on the first ``--baseline-queries`` queries.

    python bench/bench_manipulation.py            # prints a table, writes the JSON
    python bench/bench_manipulation.py --ik-targets 200 --queries 20 --baseline-queries 5

Output: bench/results/manipulation.json (created if missing).
"""

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))

from humanoid_inspection.cell_geometry import load_cell  # noqa: E402
from humanoid_inspection.manipulation.collision import CollisionChecker  # noqa: E402
from humanoid_inspection.manipulation.ik import IKSolver, solve_dls_baseline  # noqa: E402
from humanoid_inspection.manipulation.pick_place import (  # noqa: E402
    GraspCandidate, PickPlaceConfig, PickPlacePlanner, grasp_from_axis)
from humanoid_inspection.manipulation.robot_model import RobotModel  # noqa: E402
from humanoid_inspection.manipulation.scene import obstacles_from_cell  # noqa: E402

DESTINATIONS = ('fixture', 'accept_bin', 'reject_bin', 'review')
# The manipulation code before the planning-speed work (path reuse, shared collision data,
# vectorised TOPP-RA output, 10 ms IK budget of the arm alone).
DEFAULT_BASELINE_REV = '47b0c8f'
PACKAGE = 'humanoid_inspection.manipulation'


def ready_configuration(robot: RobotModel) -> np.ndarray:
    """Standing pose with the arms 0.1 rad closer to the body (see docs/manipulation.md)."""
    q = robot.reference_configuration()
    q[robot.joint_index('left_shoulder_roll')] = 0.1
    q[robot.joint_index('right_shoulder_roll')] = -0.1
    return q


def stats(values) -> dict:
    """Median / p95 / mean / max of a list (ms if given seconds x 1e3 by the caller)."""
    a = np.asarray(values, dtype=float)
    if not len(a):
        return {'median': None, 'p95': None, 'mean': None, 'max': None}
    return {'median': float(np.median(a)), 'p95': float(np.percentile(a, 95)),
            'mean': float(a.mean()), 'max': float(a.max())}


def bench_ik(robot: RobotModel, n_targets: int, seed: int) -> dict:
    """IK timing/success of the solver and the DLS baseline on the same targets."""
    rng = np.random.default_rng(seed)
    q0 = robot.reference_configuration()
    groups = sorted(robot.groups)
    out = {'targets': n_targets, 'seed_configuration': 'standing pose', 'groups': groups}
    rows = {'lm_restarts': ([], [], []), 'dls_baseline': ([], [], [])}
    per_group = {g: {'lm_ok': 0, 'dls_ok': 0, 'n': 0} for g in groups}
    solvers = {g: IKSolver(robot, g) for g in groups}
    for k in tqdm(range(n_targets), desc='IK targets', unit='target'):
        name = groups[k % len(groups)]
        group = robot.group(name)
        q = robot.with_group(q0, group, rng.uniform(group.lower, group.upper))
        target = robot.frame_pose(q, group.tip_frame)
        cpu = time.thread_time()
        res = solvers[name].solve(target, q0)
        rows['lm_restarts'][2].append((time.thread_time() - cpu) * 1e3)
        rows['lm_restarts'][0].append(res.time_s * 1e3)
        rows['lm_restarts'][1].append(res.success)
        cpu = time.thread_time()
        base = solve_dls_baseline(robot, group, target, q0)
        rows['dls_baseline'][2].append((time.thread_time() - cpu) * 1e3)
        rows['dls_baseline'][0].append(base.time_s * 1e3)
        rows['dls_baseline'][1].append(base.success)
        per_group[name]['n'] += 1
        per_group[name]['lm_ok'] += int(res.success)
        per_group[name]['dls_ok'] += int(base.success)
    for method, (times, ok, cpu_times) in rows.items():
        out[method] = {'time_ms': stats(times), 'cpu_ms': stats(cpu_times),
                       'success_rate': float(np.mean(ok))}
    out['per_group'] = per_group
    return out


def make_queries(cell, n: int, seed: int) -> list:
    """Seeded (grasp pose, place pose, description) queries in base_link."""
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        slot = int(rng.integers(len(cell.table.part_slots)))
        x, y = np.asarray(cell.table.part_slots[slot]) + rng.uniform(-0.02, 0.02, 2)
        height = float(rng.uniform(0.02, 0.04))      # grasp point above the table top
        yaw = float(rng.uniform(-np.pi / 2, np.pi / 2))
        closing = (np.cos(yaw), np.sin(yaw), 0.0)
        grasp = grasp_from_axis(cell.world_to_base((x, y, cell.table.top_z + height)),
                                (0, 0, -1), closing)
        dest = DESTINATIONS[int(rng.integers(len(DESTINATIONS)))]
        if dest == 'fixture':
            xyz = cell.xray_cabinet.fixture.pose.xyz
            rise = height + 0.01
        elif dest == 'review':
            xyz = cell.review.pose.xyz
            rise = height + 0.01
        else:
            b = cell.accept_bin if dest == 'accept_bin' else cell.reject_bin
            xyz = b.pose.xyz
            rise = height + b.wall_height + 0.05
        place = grasp.copy()
        place[:3, 3] = cell.world_to_base((xyz[0], xyz[1], xyz[2] + rise))
        queries.append((grasp, place, f'slot {slot} -> {dest}'))
    return queries


def current_implementation() -> SimpleNamespace:
    """The classes of this checkout's manipulation package."""
    from humanoid_inspection.manipulation import pick_place
    return SimpleNamespace(name='current', RobotModel=RobotModel,
                           CollisionChecker=CollisionChecker,
                           obstacles_from_cell=obstacles_from_cell,
                           PickPlacePlanner=PickPlacePlanner, PickPlaceConfig=PickPlaceConfig,
                           GraspCandidate=GraspCandidate, planner_module=None,
                           pick_place=pick_place)


def revision_implementation(rev: str) -> SimpleNamespace:
    """The manipulation package of git revision rev, imported under another name.

    The files are read with ``git show`` into a temporary folder as package
    ``manipulation_<rev>`` (imports of the package rewritten), so both versions run in one
    process on the same queries.

    Raises:
        RuntimeError: git is not available or the revision has no manipulation package.
    """
    rel = 'src/' + PACKAGE.replace('.', '/')
    try:
        names = subprocess.run(['git', 'ls-tree', '--name-only', f'{rev}:{rel}'], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f'cannot read {rel} at git revision {rev}: {exc}') from exc
    package = f'manipulation_{rev}'.replace('-', '_')
    folder = Path(tempfile.mkdtemp(prefix='bench_manipulation_')) / package
    folder.mkdir()
    for name in names:
        if name.endswith('.py'):
            text = subprocess.run(['git', 'show', f'{rev}:{rel}/{name}'], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            (folder / name).write_text(text.replace(PACKAGE, package))
    sys.path.insert(0, str(folder.parent))
    mod = {m: importlib.import_module(f'{package}.{m}')
           for m in ('robot_model', 'collision', 'scene', 'pick_place', 'planner')}
    mod['planner']._OMPL_SEEDED = True     # OMPL takes one seed per process (set by ours)
    return SimpleNamespace(name=f'git {rev}', RobotModel=mod['robot_model'].RobotModel,
                           CollisionChecker=mod['collision'].CollisionChecker,
                           obstacles_from_cell=mod['scene'].obstacles_from_cell,
                           PickPlacePlanner=mod['pick_place'].PickPlacePlanner,
                           PickPlaceConfig=mod['pick_place'].PickPlaceConfig,
                           GraspCandidate=mod['pick_place'].GraspCandidate,
                           pick_place=mod['pick_place'])


def make_planner(impl: SimpleNamespace, cell, simplify: Optional[str] = None,
                 coarse_factor: Optional[float] = None, experience: bool = True):
    """A PickPlacePlanner of an implementation for the cell.

    simplify / coarse_factor: OMPL settings (None: the implementation's defaults).
    """
    robot = impl.RobotModel.from_project()
    obstacles = impl.obstacles_from_cell(cell)
    checker = impl.CollisionChecker(robot, obstacles)
    planner = impl.PickPlacePlanner(robot, checker, obstacles,
                                    impl.PickPlaceConfig(max_opening_m=cell.gripper.max_opening_m),
                                    seed=0)
    if simplify is not None:
        planner.planner.simplify = simplify
    if coarse_factor is not None:
        planner.planner.coarse_factor = coarse_factor
    if not experience and hasattr(planner.planner, 'experience'):
        planner.planner.experience = 0
    planner.ready = ready_configuration(robot)
    planner.impl = impl
    return planner


def summarize(name: str, runs: list) -> dict:
    """Timing, success, trajectory duration, error codes of a list of (plan, ms)."""
    codes = Counter(p.error_code.name for p, _ in runs)
    return {'name': name, 'queries': len(runs),
            'planning_time_ms': stats([ms for _, ms in runs]),
            # CPU time of the planning thread: what the plan costs on a free core (the wall
            # time above grows with the machine's load, this much less)
            'planning_cpu_ms': stats([getattr(p, 'cpu_ms', np.nan) for p, _ in runs]),
            'success_rate': codes.get('SUCCESS', 0) / max(1, len(runs)),
            'trajectory_duration_s': stats([p.duration for p, _ in runs if p.success]),
            'error_codes': dict(codes),
            'groups_used': dict(Counter(p.group for p, _ in runs if p.success))}


def bench_planning(cell, queries, n_baseline: int, baseline_rev: str) -> dict:
    """Plan every query with each variant, interleaved query by query (same load)."""
    current = current_implementation()
    variants = {
        'planner': ('RRTConnect + vertex reduction + rope shortcut, coarse-then-fine checks, '
                    'path reuse', make_planner(current, cell), len(queries)),
        'planner_no_experience': ('same without path reuse (first-of-its-kind queries)',
                                  make_planner(current, cell, experience=False),
                                  len(queries)),
    }
    if baseline_rev:
        try:
            previous = revision_implementation(baseline_rev)
            variants['previous'] = (f'manipulation package of git {baseline_rev}',
                                    make_planner(previous, cell), len(queries))
        except RuntimeError as exc:
            print(f'no previous-code baseline: {exc}', file=sys.stderr)
    variants['baseline'] = ('RRTConnect + OMPL full simplify, fine checks (MoveIt-like)',
                            make_planner(current, cell, 'full', 1.0, False), n_baseline)
    runs = {key: [] for key in variants}
    for k, (grasp, place, _) in enumerate(tqdm(queries, desc='pick/place', unit='query')):
        for key, (_, planner, count) in variants.items():
            if k < count:
                cand = planner.impl.GraspCandidate(grasp, 0.05)
                cpu = time.thread_time()
                plan = planner.plan(planner.ready, [cand], place)
                plan.cpu_ms = (time.thread_time() - cpu) * 1e3
                runs[key].append((plan, plan.planning_time_s * 1e3))
    out = {key: summarize(title, runs[key]) for key, (title, _, _) in variants.items()}
    # Trajectory durations compared on the same work: the queries every full-length variant
    # planned, with the same planning group (the waist group's motions are slower).
    full = [key for key, (_, _, count) in variants.items() if count == len(queries)]
    same = [k for k in range(len(queries))
            if all(runs[key][k][0].success for key in full)
            and len({runs[key][k][0].group for key in full}) == 1]
    out['paired_trajectory_duration_s'] = {
        'queries': len(same),
        'mean': {key: float(np.mean([runs[key][k][0].duration for k in same])) if same
                 else None for key in full}}
    out['planner_on_baseline_queries'] = summarize('planner, first queries only',
                                                   runs['planner'][:n_baseline])
    cold = min(20, len(queries))
    out['planner_first_queries'] = summarize(f'planner, first {cold} queries (little to reuse)',
                                             runs['planner'][:cold])
    return out


def main(argv=None) -> int:
    """Run the benchmark; print a summary and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ik-targets', type=int, default=1000)
    parser.add_argument('--queries', type=int, default=100)
    parser.add_argument('--baseline-queries', type=int, default=30)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--baseline-rev', default=DEFAULT_BASELINE_REV,
                        help="git revision of the 'previous' variant ('' = none)")
    parser.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' /
                        'manipulation.json')
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    robot = RobotModel.from_project()
    cell = load_cell()
    result = {
        'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                    'platform': platform.platform()},
        'command': 'python bench/bench_manipulation.py ' + ' '.join(argv or sys.argv[1:]),
        'targets': {'ik_median_ms': 1.0, 'ik_success_rate': 0.995,
                    'planning_median_ms': 100.0},
        'load_average_before': os.getloadavg(),
    }
    result['ik'] = bench_ik(robot, args.ik_targets, args.seed)
    queries = make_queries(cell, args.queries, args.seed)
    result['load_average_before_planning'] = os.getloadavg()
    result['planning'] = bench_planning(cell, queries, args.baseline_queries, args.baseline_rev)
    result['wall_time_s'] = time.perf_counter() - t0
    result['load_average_after'] = os.getloadavg()

    ik = result['ik']
    print(f"\nIK on {ik['targets']} random reachable targets ({', '.join(ik['groups'])}):")
    for method in ('lm_restarts', 'dls_baseline'):
        r = ik[method]
        print(f"  {method:13s} median {r['time_ms']['median']:.3f} ms  p95 "
              f"{r['time_ms']['p95']:.3f} ms (CPU {r['cpu_ms']['median']:.3f} / "
              f"{r['cpu_ms']['p95']:.3f} ms)  success {100 * r['success_rate']:.1f} %")
    for key, r in result['planning'].items():
        if key == 'paired_trajectory_duration_s' or not r['queries']:
            continue
        d = r['trajectory_duration_s']
        print(f"pick/place {key} ({r['queries']} queries): "
              f"median {r['planning_time_ms']['median']:.0f} ms  p95 "
              f"{r['planning_time_ms']['p95']:.0f} ms (CPU {r['planning_cpu_ms']['median']:.0f} / "
              f"{r['planning_cpu_ms']['p95']:.0f} ms)  success "
              f"{100 * r['success_rate']:.0f} %  trajectory median "
              f"{d['median'] if d['median'] is None else round(d['median'], 2)} s  "
              f"codes {r['error_codes']}")
    paired = result['planning']['paired_trajectory_duration_s']
    print(f"trajectory duration, mean over the {paired['queries']} queries every variant "
          f"planned with the same group: " + ', '.join(
              f'{key} {value:.2f} s' for key, value in paired['mean'].items()
              if value is not None))
    print(f'load average (1, 5, 15 min) before: {result["load_average_before"]}, before '
          f'planning: {result["load_average_before_planning"]}, after: '
          f'{result["load_average_after"]}')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
