"""End to end: the MuJoCo sim and every node as separate processes, a short inspection cycle.

- test_short_cycle_records_and_report: 2 parts through the real stack; records, radiographs,
  report and metrics.
- test_sigkill_mid_cycle_then_restart: SIGKILL every node of the robot software while a part
  sits in the X-ray fixture, restart them, run again: no inspected part lost its record and the
  part left in the fixture is inspected again (not skipped). The simulation process stands for
  the physical cell and is not killed: a crash of the robot's software does not move the parts.
"""

import importlib.util
import time

import pytest

from conftest import wait_for
from humanoid_inspection import launch_spec

pytestmark = [pytest.mark.ros, pytest.mark.slow]

_MISSING = [s.name for s in launch_spec.ALL_NODES
            if importlib.util.find_spec(f'humanoid_inspection.nodes.{s.executable}_node') is None]
requires_stack = pytest.mark.skipif(
    bool(_MISSING), reason=f'stack incomplete, missing node(s): {", ".join(_MISSING)}')

APP = [s.name for s in launch_spec.APP_NODES]


def _params(db, parts, seed):
    from humanoid_inspection.cell.demo import sim_params
    return {'mujoco_sim': sim_params(parts, seed, 0.5),
            'cell_manager': {'records_db': str(db), 'ground_truth_service': 'sim/ground_truth'}}


def _goal(client, stack, max_parts, timeout):
    from humanoid_inspection.nodes.cell_demo_client import wait_cell_ready
    from humanoid_inspection_interfaces.action import RunInspectionCycle
    from rclpy.action import ActionClient
    action = ActionClient(client.node, RunInspectionCycle, 'run_inspection_cycle')
    # as the demo (and an operator) does: the goal goes once cell_manager sees all its servers
    wait_cell_ready(client.node, action, 120.0, stack.check_alive)
    # after a SIGKILL the dead server can still look ready until DDS forgets it: resend
    deadline = time.monotonic() + timeout
    while True:
        future = action.send_goal_async(RunInspectionCycle.Goal(max_parts=max_parts))
        try:
            handle = client.wait_future(future, 10.0)
            break
        except TimeoutError:
            stack.check_alive()
            assert time.monotonic() < deadline, 'run_inspection_cycle never took the goal'
    assert handle.accepted
    return handle.get_result_async()


def _wait_result(future, stacks, timeout):
    deadline = time.monotonic() + timeout
    while not future.done():
        for stack in stacks:
            stack.check_alive()
        assert time.monotonic() < deadline, 'cycle did not finish in time'
        time.sleep(0.5)
    return future.result().result


def _where_things_stand(store, stacks, lines: int = 25) -> str:
    """The records with their events, and the end of every node's log: what a timeout needs."""
    out = []
    for rec in store.all():
        out.append(f'record {rec.record_id} state={rec.state} reason={rec.failure_reason!r}')
        out += [f"  {e['time']} {e['state']}: {e['message']}" for e in store.events(rec.record_id)]
    if not out:
        out.append('no record was made')
    for stack in stacks:
        for proc in stack.processes:
            out.append(f'--- {proc.spec.name} (alive={proc.alive}):\n{proc.log_tail(lines)}')
    return '\n'.join(out)


@requires_stack
def test_short_cycle_records_and_report(launch_nodes, ros_client, tmp_path):
    from humanoid_inspection.cell.records import RecordsStore
    from humanoid_inspection.cell.report import render_report
    db = tmp_path / 'cell.db'
    stack = launch_nodes([s.name for s in launch_spec.ALL_NODES], params=_params(db, 2, 7),
                         use_sim_time=True)
    result = _wait_result(_goal(ros_client, stack, 1, 200.0), [stack], 200.0)
    store = RecordsStore(db)
    records = store.all()
    assert len(records) == 1, result.message
    rec = records[0]
    # every outcome is recorded with a reason
    assert rec.state in ('sorted', 'inspected', 'failed') and (rec.verdict or rec.failure_reason)
    assert rec.verdict is not None, f'part not brought to the X-ray station: {rec.failure_reason}'
    # perceived, grasped, X-rayed and judged by the real nodes; the record says so
    assert rec.part_id and (store.root / rec.radiograph_path).is_file()
    assert rec.ground_truth is not None and 'defective' in rec.ground_truth
    assert rec.stage_times['compute_xray_inspection_s'] > 0
    index = render_report(db, tmp_path / 'report')
    assert rec.part_id in index.read_text()
    assert result.success and rec.state == 'sorted', \
        f'part inspected but not sorted: {rec.failure_reason or result.message}'
    assert rec.ground_truth.get('expected_verdict') in ('ACCEPT', 'REVIEW', 'REJECT')
    assert result.accepted + result.rejected + result.review == 1
    # the part is physically where the record says it went, the other one still on the table
    rows = _where_parts_are(ros_client, records)
    assert [(r.part_id, r.found) for r in rows if r.part_id == rec.part_id] == \
        [(rec.part_id, rec.destination)]
    assert not [r for r in rows if r.mismatch], [r.to_dict() for r in rows]


def _where_parts_are(client, records):
    """cell/audit.py's rows from the simulation's ground truth service."""
    import json
    from std_srvs.srv import Trigger
    from humanoid_inspection.cell.audit import audit_locations
    from humanoid_inspection.cell_geometry import load_cell
    truth = client.node.create_client(Trigger, 'sim/ground_truth')
    assert truth.wait_for_service(timeout_sec=10.0)
    reply = client.wait_future(truth.call_async(Trigger.Request()), 10.0)
    return audit_locations(json.loads(reply.message), records, load_cell())


@requires_stack
def test_sigkill_mid_cycle_then_restart(launch_nodes, ros_client, tmp_path):
    from humanoid_inspection.cell.records import RecordsStore
    db = tmp_path / 'cell.db'
    params = _params(db, 2, 5)
    sim = launch_nodes(['mujoco_sim'], params=params, use_sim_time=True,
                       log_dir=tmp_path / 'logs_sim')
    app = launch_nodes(APP, params=params, use_sim_time=True, log_dir=tmp_path / 'logs1')
    first_run = _goal(ros_client, app, 1, 200.0)
    store = RecordsStore(db)

    def in_fixture():
        sim.check_alive()
        app.check_alive()
        recs = store.all()
        if recs and recs[0].state == 'failed':
            pytest.xfail(f'part never reached the fixture: {recs[0].failure_reason}')
        if first_run.done() and not (recs and recs[0].state == 'in_fixture'):
            # the run ended before its part reached the fixture: say why now, not in 200 s
            result = first_run.result().result
            raise AssertionError(f'the first run ended before the fixture: {result.message!r}'
                                 f'\n{_where_things_stand(store, [sim, app])}')
        return recs and recs[0].state == 'in_fixture'

    try:
        wait_for(in_fixture, 200.0, interval=0.05, what='part 1 in the X-ray fixture')
    except TimeoutError as exc:
        raise TimeoutError(f'{exc}\n{_where_things_stand(store, [sim, app])}') from None
    app.kill()                                     # SIGKILL every robot-software process
    (rec,) = store.all()
    assert rec.state == 'in_fixture' and rec.verdict is None and rec.inspections == 0
    app2 = launch_nodes(APP, params=params, use_sim_time=True, log_dir=tmp_path / 'logs2')
    result = _wait_result(_goal(ros_client, app2, 1, 200.0), [sim, app2], 200.0)
    again = store.get(rec.record_id)
    # the part left in the fixture was found there and inspected, not skipped
    assert again.verdict in ('ACCEPT', 'REJECT', 'REVIEW'), (again.state, result.message)
    assert again.inspections == 1 and (store.root / again.radiograph_path).is_file()
    assert again.part_id
    events = [e['message'] for e in store.events(rec.record_id)]
    assert any('inspected #1' in m for m in events)
    # nothing committed before the kill was lost, and no duplicate record was made for it
    assert store.all()[0].record_id == rec.record_id
    assert sum(1 for r in store.all() if r.part_id == again.part_id) == 1
    # and after the crash the records still tell where every part physically is
    assert not [r for r in _where_parts_are(ros_client, store.all()) if r.mismatch]
