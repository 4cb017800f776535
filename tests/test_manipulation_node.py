"""manipulation node as a separate process over DDS: plan_only, bad goals, e-stop, execution."""

import math
import threading
import time

import pytest

from conftest import wait_for

pytestmark = pytest.mark.ros

FAST = {'manipulation': {'execution_timeout_scale': 1.0, 'execution_timeout_margin_s': 0.5}}


def ready_joint_state():
    """Standing pose with the arms 0.1 rad closer to the body, as a JointState."""
    from sensor_msgs.msg import JointState
    from humanoid_inspection import robot_description as rd
    pose = rd.standing_pose()
    pose['left_shoulder_roll'] = 0.1
    pose['right_shoulder_roll'] = -0.1
    msg = JointState()
    msg.name = list(pose)
    msg.position = [float(v) for v in pose.values()]
    return msg


class JointStatePublisher:
    """Publishes a fixed joint state at 50 Hz (a robot that never moves)."""

    def __init__(self, node):
        from sensor_msgs.msg import JointState
        self.msg = ready_joint_state()
        self.pub = node.create_publisher(JointState, 'joint_states', 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.pub.publish(self.msg)
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2.0)


def table_request(request_cls, frame='base_link', nan=False):
    """A PickPlace goal / PlanPickPlace request: slot 2 of the table to the review tray."""
    from geometry_msgs.msg import Pose, PoseStamped
    from humanoid_inspection_interfaces.msg import Affordance
    from humanoid_inspection.cell_geometry import load_cell
    cell = load_cell()
    x, y = cell.table.part_slots[2]
    grasp = cell.world_to_base((x, y, cell.table.top_z + 0.03))
    review = cell.world_to_base((cell.review.pose.xyz[0], cell.review.pose.xyz[1],
                                 cell.review.pose.xyz[2] + 0.04))
    down = (0.0, math.sqrt(0.5), 0.0, math.sqrt(0.5))      # x axis pointing down
    req = request_cls()
    req.object_id = 'part_0'
    aff = Affordance()
    aff.header.frame_id = frame
    aff.grasp_pose = Pose()
    aff.grasp_pose.position.x, aff.grasp_pose.position.y, aff.grasp_pose.position.z = \
        (float(v) for v in grasp)
    if nan:
        aff.grasp_pose.position.x = float('nan')
    (aff.grasp_pose.orientation.x, aff.grasp_pose.orientation.y, aff.grasp_pose.orientation.z,
     aff.grasp_pose.orientation.w) = down
    aff.approach.z = -1.0
    aff.gripper_opening_m = 0.05
    aff.score = 0.9
    req.grasp_candidates = [aff]
    req.place_pose = PoseStamped()
    req.place_pose.header.frame_id = 'base_link'
    p = req.place_pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in review)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = down
    return req


def send_goal(client, goal, timeout=30.0, feedback=None):
    from humanoid_inspection_interfaces.action import PickPlace
    from rclpy.action import ActionClient
    action = getattr(client, '_pick_place', None)
    if action is None:
        action = client._pick_place = ActionClient(client.node, PickPlace, 'pick_place')
    assert action.wait_for_server(timeout_sec=30.0), 'pick_place not served'
    handle = client.wait_future(action.send_goal_async(
        goal, feedback_callback=(lambda m: feedback.append(m.feedback.phase))
        if feedback is not None else None), 10.0)
    assert handle.accepted
    return handle, handle.get_result_async()


def test_plan_only_bad_goals_estop_and_execution(launch_nodes, ros_client):
    from humanoid_inspection_interfaces.action import PickPlace
    from humanoid_inspection_interfaces.srv import PlanPickPlace
    from std_msgs.msg import Bool
    from trajectory_msgs.msg import JointTrajectory
    stack = launch_nodes(['manipulation'], params=FAST)
    node = ros_client.node
    states = JointStatePublisher(node)
    received = {}
    for c in ('left_arm_controller', 'right_arm_controller', 'left_gripper_controller',
              'right_gripper_controller', 'waist_controller'):
        node.create_subscription(
            JointTrajectory, f'{c}/joint_trajectory',
            lambda m, c=c: received.setdefault(c, []).append((time.monotonic(), m)), 10)
    estop = node.create_publisher(Bool, 'safety/estop', 10)
    try:
        srv = node.create_client(PlanPickPlace, 'plan_only')
        assert srv.wait_for_service(timeout_sec=30.0), 'plan_only not served'
        wait_for(lambda: states.pub.get_subscription_count() > 0, 10.0, what='subscriber')
        time.sleep(0.3)     # a few joint_states reach the node
        # 1. plan_only: a full plan, nothing published
        resp = ros_client.wait_future(srv.call_async(table_request(PlanPickPlace.Request)), 30.0)
        stack.check_alive()
        assert resp.success, resp.message
        assert resp.error_code == PickPlace.Result.SUCCESS
        assert list(resp.segment_names) == ['pre_grasp', 'approach', 'close', 'lift',
                                            'transfer', 'place', 'open', 'retreat']
        assert len(resp.segments) == 8 and resp.trajectory_duration_s > 0
        for seg in resp.segments:
            times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec
                     for p in seg.points]
            assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
        assert not received
        # 2. plan_only with a NaN grasp / an unknown frame -> INVALID_GOAL
        resp = ros_client.wait_future(srv.call_async(
            table_request(PlanPickPlace.Request, nan=True)), 10.0)
        assert resp.error_code == PickPlace.Result.INVALID_GOAL and 'finite' in resp.message
        resp = ros_client.wait_future(srv.call_async(
            table_request(PlanPickPlace.Request, frame='head_camera_optical_frame')), 10.0)
        assert resp.error_code == PickPlace.Result.INVALID_GOAL and 'frame' in resp.message
        # ... and with a carried-part box of a negative size / one too big to carry anywhere
        bad_box = table_request(PlanPickPlace.Request)
        bad_box.object_pose.header.frame_id = 'base_link'
        bad_box.object_pose.pose.position = bad_box.grasp_candidates[0].grasp_pose.position
        bad_box.object_size_m.x, bad_box.object_size_m.y, bad_box.object_size_m.z = \
            0.1, -0.1, 0.03
        resp = ros_client.wait_future(srv.call_async(bad_box), 10.0)
        assert resp.error_code == PickPlace.Result.INVALID_GOAL and \
            'object_size_m' in resp.message
        bad_box.object_size_m.x, bad_box.object_size_m.y = 0.9, 0.9
        resp = ros_client.wait_future(srv.call_async(bad_box), 30.0)
        assert resp.error_code == PickPlace.Result.GOAL_IN_COLLISION and \
            'attached_' in resp.message, resp.message
        # 3. pick_place with NaN fails cleanly, nothing moves
        _, result = send_goal(ros_client, table_request(PickPlace.Goal, nan=True))
        r = ros_client.wait_future(result, 20.0).result
        assert not r.success and r.error_code == PickPlace.Result.INVALID_GOAL
        assert not received
        # 4. a valid goal executes: the first segment goes out; the robot (static joint
        #    states) never moves, so e-stop it: hold trajectories within one control period
        phases = []
        _, result = send_goal(ros_client, table_request(PickPlace.Goal), feedback=phases)
        wait_for(lambda: received.get('right_arm_controller') or
                 received.get('left_arm_controller'), 20.0, what='a trajectory')
        arm = 'right' if 'right_arm_controller' in received else 'left'
        first = received[f'{arm}_arm_controller'][0][1]
        assert len(first.points) > 2 and first.joint_names[0] == f'{arm}_shoulder_pitch'
        # the gripper opens during pre_grasp (its own controller, same segment)
        wait_for(lambda: received.get(f'{arm}_gripper_controller'), 5.0, what='gripper')
        t_stop = time.monotonic()
        estop.publish(Bool(data=True))
        r = ros_client.wait_future(result, 20.0).result
        assert r.error_code == PickPlace.Result.ESTOP, r.message
        assert phases[:2] == ['plan', 'pre_grasp']
        holds = [(t, m) for t, m in received[f'{arm}_arm_controller'] if len(m.points) == 1]
        assert holds, 'no hold trajectory after the e-stop'
        assert holds[0][0] - t_stop < 0.5
        hold = holds[0][1]
        assert list(hold.points[0].velocities) == [0.0] * 7
        # 5. while the e-stop is latched, new goals end with ESTOP
        _, result = send_goal(ros_client, table_request(PickPlace.Goal))
        r = ros_client.wait_future(result, 20.0).result
        assert r.error_code == PickPlace.Result.ESTOP
        # 6. released: a goal is planned and executed again; the robot does not follow, so it
        #    ends with EXECUTION_FAILED (short timeouts in FAST)
        estop.publish(Bool(data=False))
        time.sleep(0.5)
        _, result = send_goal(ros_client, table_request(PickPlace.Goal))
        r = ros_client.wait_future(result, 60.0).result
        assert r.error_code == PickPlace.Result.EXECUTION_FAILED, r.message
        assert 'pre_grasp' in r.message and r.planning_time_s > 0
        stack.check_alive()
    finally:
        states.stop()


def test_cancel_sends_a_hold(launch_nodes, ros_client):
    from humanoid_inspection_interfaces.action import PickPlace
    from trajectory_msgs.msg import JointTrajectory
    launch_nodes(['manipulation'])
    node = ros_client.node
    states = JointStatePublisher(node)
    received = []
    for side in ('left', 'right'):
        node.create_subscription(JointTrajectory, f'{side}_arm_controller/joint_trajectory',
                                 lambda m: received.append(m), 10)
    try:
        send_goal(ros_client, PickPlace.Goal())     # waits for the server; empty -> INVALID
        wait_for(lambda: states.pub.get_subscription_count() > 0, 10.0, what='subscriber')
        time.sleep(0.3)
        handle, result = send_goal(ros_client, table_request(PickPlace.Goal))
        wait_for(lambda: received, 30.0, what='first trajectory')
        ros_client.wait_future(handle.cancel_goal_async(), 10.0)
        r = ros_client.wait_future(result, 20.0)
        assert r.result.error_code == PickPlace.Result.CANCELED, r.result.message
        wait_for(lambda: len(received[-1].points) == 1, 5.0, what='hold trajectory')
    finally:
        states.stop()


def test_a_rest_asked_again_while_one_runs_waits_for_it(launch_nodes, ros_client):
    # cell_manager sends a rest again when its reply does not come (a reply lost in DDS
    # discovery, nodes/service_calls.py). If the first rest is only slow, the second must not
    # be refused ("busy") while the arms still move: it waits, then answers from where they are.
    # This robot never moves, so each rest ends when its execution times out.
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory
    stack = launch_nodes(['manipulation'], params=FAST)
    node = ros_client.node
    states = JointStatePublisher(node)
    roll = list(states.msg.name).index('left_wrist_roll')
    positions = list(states.msg.position)
    positions[roll] += 0.5                  # the left wrist 0.5 rad from the ready pose
    states.msg.position = positions
    sent = []
    node.create_subscription(JointTrajectory, 'left_arm_controller/joint_trajectory',
                             lambda m: sent.append(time.monotonic()), 10)
    try:
        rest = node.create_client(Trigger, 'manipulation/rest')
        assert rest.wait_for_service(timeout_sec=30.0), 'manipulation/rest not served'
        wait_for(lambda: states.pub.get_subscription_count() > 0, 10.0, what='subscriber')
        time.sleep(0.3)
        done = {}
        first = rest.call_async(Trigger.Request())
        first.add_done_callback(lambda _f: done.setdefault('first', time.monotonic()))
        wait_for(lambda: sent or first.done(), 30.0, what="the first rest's trajectory")
        assert sent, first.result().message if first.done() else "no trajectory"
        second = rest.call_async(Trigger.Request())
        second.add_done_callback(lambda _f: done.setdefault('second', time.monotonic()))
        a = ros_client.wait_future(first, 60.0)
        b = ros_client.wait_future(second, 60.0)
        stack.check_alive()
        assert not a.success and 'EXECUTION' in a.message, a.message     # it never got there
        assert 'running' not in b.message and 'pick_place' not in b.message, b.message
        assert done['second'] > done['first']
        # the second planned and sent its own motion after the first had ended
        assert any(t > done['first'] - 0.05 for t in sent[1:]), (sent, done)
    finally:
        states.stop()
