"""cell_manager node as a real process: action, status, diagnostics, clear failures."""

import pytest

from conftest import wait_for

pytestmark = pytest.mark.ros


def _send_goal(client, max_parts, timeout=60.0):
    from humanoid_inspection_interfaces.action import RunInspectionCycle
    from rclpy.action import ActionClient
    action = ActionClient(client.node, RunInspectionCycle, 'run_inspection_cycle')
    assert action.wait_for_server(timeout_sec=20.0), 'run_inspection_cycle not served'
    feedback = []
    handle = client.wait_future(action.send_goal_async(
        RunInspectionCycle.Goal(max_parts=max_parts),
        feedback_callback=lambda m: feedback.append(m.feedback)), 10.0)
    assert handle.accepted
    result = client.wait_future(handle.get_result_async(), timeout)
    return result, feedback


def test_cycle_without_perception_stops_with_a_clear_reason(launch_nodes, ros_client, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from humanoid_inspection_interfaces.msg import CellStatus
    db = tmp_path / 'cell.db'
    stack = launch_nodes(['cell_manager'], params={'cell_manager': {
        'records_db': str(db), 'perception_timeout_s': 1.5, 'status_rate_hz': 5.0}})
    statuses, diags = [], []
    ros_client.node.create_subscription(CellStatus, 'cell/status', statuses.append, 10)
    ros_client.node.create_subscription(DiagnosticArray, 'diagnostics', diags.append, 10)
    result, feedback = _send_goal(ros_client, 1)
    stack.check_alive()
    assert not result.result.success
    assert 'perception/detections' in result.result.message
    assert feedback and feedback[0].stage == 'perceive'
    wait_for(lambda: any(s.state == 'error' for s in statuses), 10.0, what='error status')
    wait_for(lambda: diags, 10.0, what='diagnostics')
    names = {s.name for s in diags[-1].status}
    assert 'cell_manager: dependencies' in names
    deps = [s for s in diags[-1].status if s.name == 'cell_manager: dependencies'][0]
    assert 'pick_place' in deps.message
    assert db.is_file()


def test_bad_parameter_fails_startup_with_its_name(launch_nodes, tmp_path):
    stack = launch_nodes(['cell_manager'], params={'cell_manager': {
        'records_db': str(tmp_path / 'c.db'), 'arm': 'middle'}})
    wait_for(lambda: stack.dead(), 20.0, what='cell_manager to exit')
    proc = stack.processes[0]
    assert proc.popen.returncode == 2
    assert "parameter 'arm'" in proc.log_tail()
