"""`humanoid-inspection demo`: the simulated inspection cell end to end, in one command.

Starts the MuJoCo simulation and every node of the stack as separate processes (the process
launcher, DDS on loopback, a ROS domain of its own), asks cell_manager to run a cycle over a
seeded mix of good and defective castings, prints a line per part and stage while it runs,
then prints a summary table, writes the HTML report and metrics JSON, stops every process and
exits non-zero if anything failed. ``--record PATH`` records every topic to an MCAP file.

This module imports no ROS itself: the ROS client (nodes/cell_demo_client.py) is imported
after the DDS environment has been set.
"""

import argparse
import importlib.util
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from humanoid_inspection import launch_spec


class DemoError(RuntimeError):
    """The demo cannot run or did not complete; the message says what to do."""


def _log(message: str) -> None:
    print(f'[demo {time.strftime("%H:%M:%S")}] {message}', flush=True)


def check_stack(specs) -> None:
    """Raise DemoError naming every node whose module is missing (the demo needs them all)."""
    missing = []
    for spec in specs:
        module = f'humanoid_inspection.nodes.{spec.executable}_node'
        if importlib.util.find_spec(module) is None:
            missing.append(f'{spec.name} ({module})')
    if missing:
        raise DemoError('the stack is incomplete, these node(s) do not exist yet: '
                        + ', '.join(missing) + '. The demo runs the real nodes only; it does '
                        'not fake their results.')
    try:
        importlib.import_module('humanoid_inspection_interfaces.action')
    except ImportError as exc:
        raise DemoError(f'the interfaces are not built ({exc}); run scripts/setup.sh and '
                        'source scripts/env.sh (or use scripts/demo.sh)') from exc


def sim_params(parts: int, seed: int, defect_fraction: float) -> Dict[str, object]:
    """Parameters of mujoco_sim for a seeded table of castings."""
    return {'num_parts': int(parts), 'part_seed': int(seed),
            'defect_probability': float(defect_fraction)}


def _feedback_printer():
    last = {}

    def on_feedback(fb) -> None:
        key = (fb.part_id, fb.stage, fb.message)
        if last.get('key') == key:
            return
        last['key'] = key
        part = fb.part_id or '-'
        _log(f'part {fb.part_index + 1} [{part}] {fb.stage:<15} {fb.message}')
    return on_feedback


def summary_table(records) -> str:
    """One line per part: id, family, verdict, ground truth, outcome, cycle time."""
    from humanoid_inspection.cell.metrics import truth_label
    head = f'{"part":<14}{"family":<9}{"verdict":<8}{"truth":<10}{"outcome":<16}{"cycle s":>8}'
    lines = [head, '-' * len(head)]
    for r in records:
        cycle = f'{r.cycle_time_s:8.1f}' if r.cycle_time_s is not None else f'{"":>8}'
        lines.append(f'{(r.part_id or r.record_id)[:13]:<14}{(r.family or "?")[:8]:<9}'
                     f'{(r.verdict or "-"):<8}{(truth_label(r.ground_truth) or "?"):<10}'
                     f'{(r.outcome or r.state)[:15]:<16}{cycle}')
        if r.failure_reason:
            lines.append(f'{"":<14}reason: {r.failure_reason[:80]}')
    return '\n'.join(lines)


def run_demo(parts: int, seed: int, out_dir: Path, record: Optional[Path] = None,
             timeout_s: float = 900.0, ready_timeout_s: float = 180.0,
             defect_fraction: float = 0.5, domain_id: Optional[int] = None,
             node_params: Optional[Dict[str, dict]] = None, max_parts: Optional[int] = None,
             specs=None) -> dict:
    """Run the whole demo; return {'result', 'metrics', 'report', 'db', ...}.

    Raises:
        DemoError: missing nodes, a node that died, a timeout, a failed cycle.
    """
    from humanoid_inspection.launcher import StackLauncher, fastdds_profile
    specs = list(specs or launch_spec.ALL_NODES)
    check_stack(specs)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    db = out_dir / 'cell.db'
    domain_id = domain_id if domain_id is not None else random.Random().randint(1, 50)
    os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    profile = fastdds_profile()     # this process's client too, not only the nodes
    if profile is not None:
        os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(profile))
    params = {'mujoco_sim': sim_params(parts, seed, defect_fraction),
              'cell_manager': {'records_db': str(db), 'ground_truth_service': 'sim/ground_truth',
                               # go on through every part so each one is inspected and its
                               # outcome recorded, even when sorting keeps failing
                               'max_consecutive_failures': max(3, int(parts))}}
    for name, values in (node_params or {}).items():
        params.setdefault(name, {}).update(values)
    _log(f'starting {len(specs)} processes on ROS_DOMAIN_ID={domain_id} (loopback DDS); '
         f'logs in {out_dir / "logs"}')
    stack = StackLauncher(specs, out_dir / 'logs', use_sim_time=True, domain_id=domain_id,
                          params=params, echo=False)
    client = None
    started = time.monotonic()
    outcome = {'db': str(db), 'out_dir': str(out_dir), 'domain_id': domain_id}
    try:
        stack.start()
        from humanoid_inspection.nodes.cell_demo_client import DemoClient
        client = DemoClient()
        if record is not None:
            client.start_recording(record)
            _log(f'recording every topic to {record}')
        client.wait_ready(ready_timeout_s, stack.check_alive, _log)
        _log(f'stack ready after {time.monotonic() - started:.1f} s; running the cycle over '
             f'{parts} part(s) (seed {seed})')
        t0 = time.monotonic()
        result = client.run_cycle(
            max_parts if max_parts is not None else parts, timeout_s, stack.check_alive,
            _feedback_printer(), on_interrupt=lambda: _log(
                f'interrupted: cancelling the cycle (robot to rest, up to '
                f'{client.cancel_wait_s:.0f} s; Ctrl-C again to skip), then stopping all '
                f'processes'))
        outcome['cycle_wall_s'] = time.monotonic() - t0
        outcome['result'] = {k: getattr(result, k) for k in (
            'success', 'message', 'parts_done', 'accepted', 'rejected', 'review', 'failed')}
        outcome['result']['part_ids'] = list(result.part_ids)
        try:
            outcome['final_truth'] = client.ground_truth(15.0, stack.check_alive)
        except (TimeoutError, RuntimeError) as exc:
            outcome['final_truth_error'] = str(exc)
            _log(f'cannot check where the parts are: {exc}')
    except KeyboardInterrupt:
        cancelled = client.cancelled_result if client is not None else None
        if cancelled is not None:
            _log(f'cycle cancelled: {cancelled.message} ({cancelled.parts_done} part(s) done)')
        raise
    except TimeoutError as exc:
        raise DemoError(f'{exc}\n{_dead_nodes(stack)}') from exc
    except RuntimeError as exc:
        if isinstance(exc, DemoError):
            raise
        raise DemoError(str(exc)) from exc
    finally:
        if client is not None:
            if client.recorder is not None:
                outcome['recorded'] = dict(client.recorder.file.counts)
                outcome['record_skipped'] = dict(client.recorder.file.skipped)
            client.close()
        # A Ctrl-C while stopping would leave node processes behind: finish the stop first.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            codes = stack.stop()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        outcome['exit_codes'] = codes
        _log(f'all processes stopped: {codes}')
    outcome['total_wall_s'] = time.monotonic() - started
    return outcome


def _dead_nodes(stack) -> str:
    dead = stack.dead()
    if not dead:
        return 'all node processes were still running'
    return '\n'.join(f'--- {p.spec.name} exited with code {p.popen.returncode}:\n'
                     f'{p.log_tail(15)}' for p in dead)


def check_locations(outcome: dict, records, metrics: dict) -> Tuple[List[str], str]:
    """Where the parts physically are against the records (cell/audit.py).

    Stores the rows in metrics['part_locations'] (None with metrics['part_locations_error']
    when the simulation's truth could not be read).

    Returns:
        (problems, the table to print).
    """
    from humanoid_inspection.cell.audit import audit_locations, format_locations
    from humanoid_inspection.cell_geometry import load_cell
    truth = outcome.get('final_truth')
    if truth is None:
        metrics['part_locations'] = None
        metrics['part_locations_error'] = outcome.get('final_truth_error', 'not read')
        why = metrics['part_locations_error']
        return [f'where the parts are could not be checked: {why}'], ''
    rows = audit_locations(truth, records, load_cell())
    metrics['part_locations'] = [r.to_dict() for r in rows]
    problems = [f'{r.part_id} is recorded as {r.outcome or "not handled"}, so it must be in '
                f'{r.expected}, but it is in {r.found}' for r in rows if r.mismatch]
    return problems, 'where the parts are (simulation truth):\n' + format_locations(rows)


def finish(outcome: dict, parts: int) -> int:
    """Report, metrics JSON, summary table; return the exit code."""
    from humanoid_inspection.cell.metrics import cell_metrics, format_summary
    from humanoid_inspection.cell.records import RecordsStore
    from humanoid_inspection.cell.report import render_report
    store = RecordsStore(outcome['db'])
    records = store.all()
    store.close()
    metrics = cell_metrics(records)
    metrics['cycle_wall_s'] = outcome.get('cycle_wall_s')
    metrics['total_wall_s'] = outcome.get('total_wall_s')
    metrics['result'] = outcome.get('result')
    out_dir = Path(outcome['out_dir'])
    locations, location_table = check_locations(outcome, records, metrics)
    (out_dir / 'metrics.json').write_text(json.dumps(metrics, indent=2))
    report = render_report(outcome['db'], out_dir / 'report',
                           locations=metrics.get('part_locations'))
    print('\n' + summary_table(records) + '\n')
    print(format_summary(metrics) + '\n')
    if location_table:
        print(location_table + '\n')
    result = outcome.get('result') or {}
    print(f'cycle: {result.get("message")}')
    print(f'report:  {report}')
    print(f'metrics: {out_dir / "metrics.json"}')
    print(f'records: {outcome["db"]}')
    if outcome.get('recorded') is not None:
        print(f'recorded {sum(outcome["recorded"].values())} messages on '
              f'{len(outcome["recorded"])} topics')
    problems: List[str] = []
    if not result.get('success'):
        problems.append(f'the cycle did not succeed: {result.get("message")}')
    sorted_parts = result.get('accepted', 0) + result.get('rejected', 0) + result.get('review', 0)
    if sorted_parts < parts:
        problems.append(f'only {sorted_parts} of {parts} part(s) were inspected and sorted')
    if metrics['escapes']:
        problems.append(f'{metrics["escapes"]} defective part(s) were accepted (escapes)')
    problems += locations
    for problem in problems:
        print(f'DEMO FAILED: {problem}', file=sys.stderr)
    return 1 if problems else 0


def main(argv=None) -> int:
    """Entry point of `humanoid-inspection demo`."""
    parser = argparse.ArgumentParser(
        prog='humanoid-inspection demo',
        description='Run the simulated inspection cell end to end (MuJoCo + every node as its '
                    'own process on loopback DDS) and report.')
    parser.add_argument('--parts', type=int, default=6, help='castings on the table (>= 1)')
    parser.add_argument('--seed', type=int, default=7, help='seed of the part mix')
    parser.add_argument('--defect-fraction', type=float, default=0.5,
                        help='share of defective castings (0..1)')
    parser.add_argument('--out', default=None, help='output folder (default runs/demo-<time>)')
    parser.add_argument('--record', default=None, metavar='PATH',
                        help='record every topic to this MCAP file')
    parser.add_argument('--timeout', type=float, default=900.0, help='cycle timeout (s)')
    parser.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID (default: '
                        'random 1..50; the tests use 51..100)')
    args = parser.parse_args(argv)
    if args.parts < 1:
        parser.error('--parts must be >= 1')
    if not 0.0 <= args.defect_fraction <= 1.0:
        parser.error('--defect-fraction must be within 0..1')
    out = Path(args.out or f'runs/demo-{time.strftime("%Y%m%d-%H%M%S")}')
    try:
        outcome = run_demo(args.parts, args.seed, out, Path(args.record) if args.record else None,
                           timeout_s=args.timeout, defect_fraction=args.defect_fraction,
                           domain_id=args.domain_id)
    except DemoError as exc:
        print(f'DEMO FAILED: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'DEMO INTERRUPTED (all processes stopped); the records so far are in '
              f'{out / "cell.db"} (`humanoid-inspection report --db {out / "cell.db"}`)',
              file=sys.stderr)
        return 130
    return finish(outcome, args.parts)


if __name__ == '__main__':
    sys.exit(main())
