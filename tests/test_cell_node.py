"""cell_manager node as a real process: action, status, diagnostics, clear failures."""

import pytest

from conftest import lose_replies, wait_for

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
        'records_db': str(db), 'perception_timeout_s': 1.5, 'server_wait_s': 2.0,
        'status_rate_hz': 5.0}})
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


class FakeCellServers:
    """Stand-ins for perception, affordance, manipulation and the X-ray station, in-process.

    They exercise cell_manager's real ROS clients (topics, services, actions, timeouts) while
    the other nodes are tested on their own; the end-to-end test uses the real ones.
    """

    def __init__(self, node, parts, camera_T=None):
        import numpy as np
        from humanoid_inspection_interfaces.action import InspectPart, PickPlace
        from humanoid_inspection_interfaces.msg import DetectionArray
        from humanoid_inspection_interfaces.srv import AcquireRadiograph, PredictAffordance
        from rclpy.action import ActionServer
        from rclpy.callback_groups import ReentrantCallbackGroup
        self.np = np
        self.node = node
        # dicts: id, slot, grasp_failures; optional score, too_wide (affordance finds no
        # grasp), unpaired_calls (affordance answers 'no depth pair' that many times first)
        self.table = list(parts)
        self.camera_T = camera_T        # base <- camera: detections get 3D boxes on the table
        self.predict_calls = []
        self.fixture = None
        self.bins = {}
        self.place_goals = []
        group = ReentrantCallbackGroup()
        self.det_pub = node.create_publisher(DetectionArray, 'perception/detections', 10)
        node.create_timer(0.1, self._publish, callback_group=group)
        node.create_service(PredictAffordance, 'affordance/predict', self._predict,
                            callback_group=group)
        node.create_service(AcquireRadiograph, 'xray/acquire', self._acquire,
                            callback_group=group)
        ActionServer(node, PickPlace, 'pick_place', self._pick_place, callback_group=group)
        ActionServer(node, InspectPart, 'inspect_part', self._inspect, callback_group=group)
        from std_srvs.srv import Trigger
        self.rest_calls = 0
        self.rest_replies_lost = 0        # replies to drop, as Fast DDS does in discovery
        rest = node.create_service(Trigger, 'manipulation/rest', self._rest,
                                   callback_group=group)
        lose_replies(rest, self._lose_rest_reply)

    def _lose_rest_reply(self, _response) -> bool:
        if self.rest_replies_lost > 0:
            self.rest_replies_lost -= 1
            return True
        return False

    def _rest(self, _request, response):
        self.rest_calls += 1
        response.success = True
        response.message = 'at rest'
        return response

    def _publish(self):
        from humanoid_inspection_interfaces.msg import Detection, DetectionArray
        msg = DetectionArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for i, p in enumerate(self.table):
            d = Detection(id=f'obj_{i}', class_id='hub', score=p.get('score', 0.9),
                          center_x_px=100.0 + 120 * p['slot'], center_y_px=300.0)
            if self.camera_T is not None:
                c = self.np.linalg.solve(self.camera_T, self.np.r_[self.box_centre(p), 1.0])
                d.has_3d = True
                d.pose.position.x, d.pose.position.y, d.pose.position.z = (float(v)
                                                                           for v in c[:3])
                d.pose.orientation.w = 1.0
                d.size_m.x, d.size_m.y, d.size_m.z = 0.1, 0.1, 0.03
            msg.detections.append(d)
        self.det_pub.publish(msg)

    @staticmethod
    def box_centre(part):
        """Base-frame centre of a part's 3D box: on the table at its slot."""
        from humanoid_inspection.cell_geometry import load_cell
        cell = load_cell()
        x, y = cell.table.part_slots[part['slot']]
        return cell.world_to_base((x, y, cell.table.top_z + 0.015))

    def _predict(self, req, resp):
        from humanoid_inspection_interfaces.msg import Affordance
        self.predict_calls.append(req.object_id)
        if self.camera_T is not None:
            part = self.table[int(req.object_id.split('_')[-1])]
            if part.get('unpaired_calls', 0) > 0:
                part['unpaired_calls'] -= 1
                resp.success, resp.message = False, 'the detections have no depth pair'
                return resp
            if part.get('too_wide'):
                resp.success, resp.message = False, 'no valid grasp candidate'
                resp.candidates.discarded_too_wide = 2
                return resp
        resp.success = True
        for i, _ in enumerate(self.table):
            for k in range(2):
                a = Affordance(object_id=f'obj_{i}', gripper_opening_m=0.06, score=0.9 - 0.1 * k)
                a.header.frame_id = 'base_link'
                a.grasp_pose.position.x, a.grasp_pose.position.z = 0.4, -0.04
                a.grasp_pose.orientation.w = 1.0
                resp.candidates.candidates.append(a)
        return resp

    def _pick_place(self, goal_handle):
        from humanoid_inspection_interfaces.action import PickPlace
        goal = goal_handle.request
        self.place_goals.append(goal)
        res = PickPlace.Result(arm_used='left', grasp_index=0, planning_time_s=0.2)
        if goal.object_id == 'fixture_part':
            self.bins.setdefault(round(goal.place_pose.pose.position.y, 2), []).append(
                self.fixture)
            self.fixture = None
            res.success = True
        else:
            part = self.table[int(goal.object_id.split('_')[-1])]
            if part['grasp_failures'] > 0:
                part['grasp_failures'] -= 1
                res.error_code = PickPlace.Result.GRASP_FAILED
                res.message = 'closed on nothing'
            else:
                self.table.remove(part)
                self.fixture = part
                res.success = True
        goal_handle.succeed()
        return res

    def _acquire(self, req, resp):
        from humanoid_inspection.nodes.conversions import numpy_to_image
        if self.fixture is None:
            resp.success, resp.message = False, 'fixture is empty'
            return resp
        resp.success = True
        resp.radiograph = numpy_to_image(self.np.full((32, 40), 20000, self.np.uint16),
                                         'mono16')
        resp.pixel_pitch_mm, resp.magnification = 0.2, 1.3
        resp.part_id, resp.part_family = self.fixture['id'], 'hub'
        return resp

    def _inspect(self, goal_handle):
        from humanoid_inspection_interfaces.action import InspectPart
        from humanoid_inspection_interfaces.msg import XrayDefect
        goal = goal_handle.request
        res = InspectPart.Result(success=True)
        bad = goal.part_id.endswith('bad')
        res.result.part_id = goal.part_id
        res.result.verdict = 'REJECT' if bad else 'ACCEPT'
        res.result.reasons = ['porosity level 5 > 3'] if bad else []
        res.result.total_time_s = 0.3
        if bad:
            res.result.defects = [XrayDefect(kind='gas_porosity', x_min_px=3, y_min_px=4,
                                             x_max_px=9, y_max_px=10, size_mm=1.5)]
        goal_handle.succeed()
        return res


def test_cycle_over_fake_servers_records_every_part(launch_nodes, ros_client, tmp_path):
    from humanoid_inspection.cell.records import RecordsStore
    fake = FakeCellServers(ros_client.node, [
        {'id': 'C-1', 'slot': 0, 'grasp_failures': 1},
        {'id': 'C-2-bad', 'slot': 1, 'grasp_failures': 0},
        {'id': 'C-3', 'slot': 2, 'grasp_failures': 0}])
    db = tmp_path / 'cell.db'
    stack = launch_nodes(['cell_manager'], params={'cell_manager': {
        'records_db': str(db), 'perception_timeout_s': 5.0,
        'handover_destinations': ['none']}})   # stand-ins: direct route fixture -> bin
    result, feedback = _send_goal(ros_client, 0)
    stack.check_alive()
    r = result.result
    assert r.success, r.message
    assert (r.accepted, r.rejected, r.failed) == (2, 1, 0)
    assert list(r.part_ids) == ['C-1', 'C-2-bad', 'C-3']
    assert {f.stage for f in feedback} >= {'perceive', 'affordance', 'pick_to_fixture', 'xray',
                                          'record', 'sort'}
    assert all(g.place_pose.header.frame_id == 'base_link' for g in fake.place_goals)
    assert fake.table == [] and fake.fixture is None
    store = RecordsStore(db)
    recs = store.all()
    assert [x.outcome for x in recs] == ['accepted', 'rejected', 'accepted']
    assert recs[0].grasp_attempts == 2
    assert recs[1].defects[0]['box_xyxy'] == [3, 4, 9, 10]
    assert all((store.root / x.radiograph_path).is_file() for x in recs)


def test_a_lost_rest_reply_is_asked_again_not_waited_out(launch_nodes, ros_client, tmp_path):
    # CI: manipulation served cell_manager's first manipulation/rest call but Fast DDS dropped
    # the reply (the server had not yet matched the client's reply reader); cell_manager
    # waited silently for pick_place_timeout_s (300 s). Now it asks again after rest_answer_s.
    fake = FakeCellServers(ros_client.node, [{'id': 'C-1', 'slot': 0, 'grasp_failures': 0}])
    fake.rest_replies_lost = 1
    stack = launch_nodes(['cell_manager'], params={'cell_manager': {
        'records_db': str(tmp_path / 'cell.db'), 'perception_timeout_s': 5.0,
        'rest_answer_s': 2.0, 'handover_destinations': ['none']}})
    result, _ = _send_goal(ros_client, 1, timeout=90.0)
    stack.check_alive()
    assert result.result.success and list(result.result.part_ids) == ['C-1'], \
        result.result.message
    assert fake.rest_replies_lost == 0 and fake.rest_calls >= 3   # lost, asked again, ...
    log = stack.processes[0].log_tail(200)
    assert 'manipulation/rest: no answer within 2 s; sending the request again' in log
    assert 'no rest motion' not in log


def test_a_part_chosen_later_is_found_again_when_its_detections_had_no_depth(
        launch_nodes, ros_client, tmp_path):
    # C-1 (best score) has no grasp and is skipped; C-2 is then chosen from a look whose
    # grasps were not asked for yet, and affordance has no depth frame for those detections:
    # cell_manager finds C-2 again in newer detections (by its centre) instead of recording
    # no_grasp. Every pick_place goal carries the part's 3D box.
    import numpy as np
    from humanoid_inspection.affordance.camera_pose import CameraPoseFK
    from humanoid_inspection.cell.records import RecordsStore
    from humanoid_inspection.cell_geometry import load_cell
    camera_T = CameraPoseFK.from_project().camera_in_base(
        dict(load_cell().robot.standing_pose))
    fake = FakeCellServers(ros_client.node, [
        {'id': 'C-1', 'slot': 0, 'grasp_failures': 0, 'score': 0.95, 'too_wide': True},
        {'id': 'C-2', 'slot': 1, 'grasp_failures': 0, 'unpaired_calls': 1}], camera_T)
    db = tmp_path / 'cell.db'
    stack = launch_nodes(['cell_manager'], params={'cell_manager': {
        'records_db': str(db), 'perception_timeout_s': 5.0, 'affordance_retry_s': 10.0,
        'handover_destinations': ['none']}})
    result, _ = _send_goal(ros_client, 0)
    stack.check_alive()
    r = result.result
    assert list(r.part_ids)[-1] == 'C-2' and len(r.part_ids) == 2, r.message
    recs = RecordsStore(db).all()
    assert [x.outcome for x in recs] == ['no_grasp', 'accepted']
    assert 'no depth pair' not in (recs[1].failure_reason or '')
    assert fake.predict_calls.count('obj_1') >= 2       # unpaired once, then found again
    # the goals carry the part's box: from the table, where perception saw it
    table_goal = fake.place_goals[0]
    assert table_goal.object_pose.header.frame_id == 'base_link'
    p = table_goal.object_pose.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z],
                               FakeCellServers.box_centre({'slot': 1}), atol=1e-4)
    size = table_goal.object_size_m
    np.testing.assert_allclose([size.x, size.y, size.z], [0.1, 0.1, 0.03], atol=1e-6)
    # from the fixture: the same box, where the part was put (above the seat)
    out = fake.place_goals[1]
    assert out.object_id == 'fixture_part' and out.object_size_m.x == pytest.approx(0.1)
    cell = load_cell()
    seat = cell.world_to_base(cell.xray_cabinet.fixture.pose.xyz)
    assert out.object_pose.pose.position.z > seat[2]


def test_ground_truth_entry_of_a_part():
    from humanoid_inspection.nodes.cell_manager_node import truth_for_part
    table = {'time': 3.0, 'parts': [
        {'part_id': 'hub-1', 'defective': True, 'defects': [{'kind': 'crack'}], 'yaw': 0.1},
        {'part_id': 'hub-2', 'defective': False, 'defects': []}]}
    assert truth_for_part(table, 'hub-1') == {'part_id': 'hub-1', 'defective': True,
                                              'defects': [{'kind': 'crack'}]}
    assert truth_for_part(table, 'nope') is None
    assert truth_for_part({'hub-3': {'defective': False}}, 'hub-3') == {'defective': False}


class _GoalHandle:
    """A goal handle (rclpy's ClientGoalHandle API) whose first result response is lost."""

    def __init__(self, status, results):
        from rclpy.task import Future
        self.status = status
        self.requests = 0
        self._futures = []
        for value in results:
            future = Future()
            if value is not None:
                future.set_result(value)
            self._futures.append(future)

    def get_result_async(self):
        self.requests += 1
        return self._futures[min(self.requests, len(self._futures)) - 1]


def test_a_lost_result_is_asked_for_again_once_the_goal_has_ended():
    from action_msgs.msg import GoalStatus
    from humanoid_inspection.cell.cycle import ServiceUnavailable
    from humanoid_inspection.nodes.cell_manager_node import wait_action_result
    lines, ticks = [], []
    ended = _GoalHandle(GoalStatus.STATUS_SUCCEEDED, [None, 'the result'])
    assert wait_action_result(ended, 5.0, 'pick_place', lambda: ticks.append(1), lines.append,
                              reask_s=0.2) == 'the result'
    assert ended.requests == 2 and ticks
    assert lines and 'pick_place: the goal ended' in lines[0] and 'asking for it again' in lines[0]
    # a goal still running is not asked again: its result is waited for up to the timeout
    running = _GoalHandle(GoalStatus.STATUS_EXECUTING, [None, 'too early'])
    with pytest.raises(ServiceUnavailable, match='inspect_part: no result within 1 s'):
        wait_action_result(running, 1.0, 'inspect_part', reask_s=0.1)
    assert running.requests == 1
    # a result request that failed is an unavailable service, not a crash
    failed = _GoalHandle(GoalStatus.STATUS_ABORTED, [None])
    failed._futures[0].set_exception(RuntimeError('context shut down'))
    with pytest.raises(ServiceUnavailable, match='pick_place: context shut down'):
        wait_action_result(failed, 1.0, 'pick_place')
