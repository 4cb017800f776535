"""xray_inspection node as a real process over DDS: verdicts, bad goals, acquire, cancel."""

import math
import time

import numpy as np
import pytest

from conftest import wait_for
from test_xray_detector import make_test_radiograph

pytestmark = pytest.mark.ros


class Client:
    """Action client + fake xray/acquire service living in the test's ROS node."""

    def __init__(self, ros_client, acquire_image=None):
        from humanoid_inspection_interfaces.action import InspectPart
        from humanoid_inspection_interfaces.msg import InspectionResult
        from humanoid_inspection_interfaces.srv import AcquireRadiograph
        from rclpy.action import ActionClient
        from rclpy.callback_groups import ReentrantCallbackGroup
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray
        self.ros = ros_client
        node = ros_client.node
        self.InspectPart = InspectPart
        self.action = ActionClient(node, InspectPart, 'inspect_part')
        self.results, self.overlays, self.markers = [], [], []
        node.create_subscription(InspectionResult, 'inspection/results', self.results.append, 10)
        node.create_subscription(Image, 'inspection/overlay', self.overlays.append, 10)
        node.create_subscription(MarkerArray, 'inspection/markers', self.markers.append, 10)
        self.acquire_image = acquire_image
        if acquire_image is not None:
            node.create_service(AcquireRadiograph, 'xray/acquire', self._acquire,
                                callback_group=ReentrantCallbackGroup())
        assert self.action.wait_for_server(timeout_sec=30.0), 'inspect_part not served'

    def _acquire(self, request, response):
        from humanoid_inspection.nodes.conversions import numpy_to_image
        response.success = True
        response.radiograph = numpy_to_image(self.acquire_image, 'mono16')
        response.pixel_pitch_mm = 0.1
        response.magnification = 1.0
        response.part_id = request.part_id
        response.part_family = 'housing'
        return response

    def send(self, timeout=60.0, cancel_after_s=None, cancel_on_stage=None, **fields):
        goal = self.InspectPart.Goal(**fields)
        feedback = []
        handle = self.ros.wait_future(self.action.send_goal_async(
            goal, feedback_callback=lambda m: feedback.append(m.feedback.stage)), 10.0)
        assert handle.accepted
        if cancel_after_s is not None:
            time.sleep(cancel_after_s)
            self.ros.wait_future(handle.cancel_goal_async(), 10.0)
        if cancel_on_stage is not None:
            wait_for(lambda: cancel_on_stage in feedback, timeout,
                     what=f"feedback '{cancel_on_stage}'")
            self.ros.wait_future(handle.cancel_goal_async(), 10.0)
        wrapped = self.ros.wait_future(handle.get_result_async(), timeout)
        return wrapped.status, wrapped.result, feedback


def mono16(image):
    from humanoid_inspection.nodes.conversions import numpy_to_image
    return numpy_to_image(image, 'mono16')


def test_inspect_part_goals(launch_nodes, ros_client):
    from action_msgs.msg import GoalStatus
    from humanoid_inspection.nodes.conversions import numpy_to_image
    stack = launch_nodes(['xray_inspection'], params={'xray_inspection': {
        'detector': 'classical', 'default_family': 'housing', 'acquire_timeout_s': 20.0}})
    crack_img, _ = make_test_radiograph(seed=21, cracks=[(60, 120, 110, 150, 2, 3.0)])
    client = Client(ros_client, acquire_image=crack_img)

    # a mono16 radiograph with a crack -> REJECT with the rule
    status, result, feedback = client.send(part_id='P-001', radiograph=mono16(crack_img),
                                           pixel_pitch_mm=0.1, magnification=1.0)
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    r = result.result
    assert r.verdict == 'REJECT' and r.part_id == 'P-001' and r.part_family == 'housing'
    assert any('crack' in reason and 'not permitted' in reason for reason in r.reasons)
    assert any(d.kind == 'crack' and d.severity_level == 8 for d in r.defects)
    assert r.detector == 'classical' and 'detect' in r.stage_names
    assert len(r.stage_names) == len(r.stage_times_s) and r.total_time_s > 0
    assert {'validate', 'detect', 'grade'} <= set(feedback)
    wait_for(lambda: client.results and client.overlays and client.markers, 10.0,
             what='results, overlay and markers')
    assert client.results[-1].verdict == 'REJECT'
    assert client.overlays[-1].encoding == 'rgb8'
    assert len(client.markers[-1].markers) == 1 + len(r.defects)

    # a clean part as 32FC1 -> ACCEPT
    clean, _ = make_test_radiograph(seed=22)
    status, result, _ = client.send(part_id='P-002', radiograph=numpy_to_image(
        clean.astype(np.float32), '32FC1'), pixel_pitch_mm=0.1, magnification=1.0)
    assert result.success and result.result.verdict == 'ACCEPT', result.result.reasons

    # unsupported encoding, truncated buffer, bad goal fields -> aborted with the reason
    rgb = numpy_to_image(np.zeros((32, 32, 3), np.uint8), 'rgb8')
    status, result, _ = client.send(part_id='P-003', radiograph=rgb)
    assert status == GoalStatus.STATUS_ABORTED and not result.success
    assert "unsupported encoding 'rgb8'" in result.message
    truncated = mono16(clean)
    truncated.data = bytes(truncated.data)[:-100]
    _, result, _ = client.send(part_id='P-004', radiograph=truncated)
    assert not result.success and 'truncated buffer' in result.message
    _, result, _ = client.send(part_id='', radiograph=mono16(clean))
    assert not result.success and 'empty part_id' in result.message
    _, result, _ = client.send(part_id='P-005', radiograph=mono16(clean),
                               pixel_pitch_mm=math.nan)
    assert not result.success and 'pixel_pitch_mm' in result.message
    _, result, _ = client.send(part_id='P-006', radiograph=mono16(clean),
                               pixel_pitch_mm=-0.1)
    assert not result.success and 'pixel_pitch_mm' in result.message
    _, result, _ = client.send(part_id='P-007', radiograph=mono16(clean), part_family='engine')
    assert not result.success and "unknown part family 'engine'" in result.message

    # acquire=true -> the radiograph comes from xray/acquire (the fake station has a crack)
    status, result, feedback = client.send(part_id='P-008', acquire=True)
    assert result.success and result.result.verdict == 'REJECT', result.message
    assert feedback[0] == 'acquire' and 'acquire' in result.result.stage_names
    stack.check_alive()


def test_cancel_while_waiting_for_the_station(launch_nodes, ros_client):
    from action_msgs.msg import GoalStatus
    launch_nodes(['xray_inspection'], params={'xray_inspection': {
        'detector': 'classical', 'acquire_timeout_s': 30.0}})
    client = Client(ros_client)                      # no xray/acquire service
    t0 = time.monotonic()
    status, result, feedback = client.send(part_id='P-100', acquire=True, cancel_after_s=1.0)
    assert status == GoalStatus.STATUS_CANCELED
    assert not result.success and 'cancelled' in result.message
    assert time.monotonic() - t0 < 15.0 and feedback == ['acquire']


def test_bad_detector_parameter_fails_startup(launch_nodes):
    stack = launch_nodes(['xray_inspection'], params={'xray_inspection': {'detector': 'yolo'}})
    wait_for(lambda: stack.dead(), 30.0, what='xray_inspection to exit')
    assert stack.processes[0].popen.returncode == 2
    assert "unknown detector 'yolo'" in stack.processes[0].log_tail()


def box_iou(a, b):
    """IoU of two (x0, y0, x1, y1) pixel boxes, ends inclusive."""
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    area = [(r[2] - r[0] + 1) * (r[3] - r[1] + 1) for r in (a, b)]
    return ix * iy / (sum(area) - ix * iy)


def test_inspect_against_the_part_model(launch_nodes, ros_client):
    """reference_model on, the station's settings by default (the cell's cabinet): a
    radiograph of a known part off the fixture's origin is registered to the model its id
    names and its inclusion found; ids that name no model, and a model that is not the
    part, are inspected image-only with the reason; cancel works during the registration."""
    from action_msgs.msg import GoalStatus
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.sim.xray_station import station_from_cell
    from humanoid_inspection.xray.phantoms import generate_part
    from humanoid_inspection.xray.simulator import resting_pose, simulate_radiograph
    stack = launch_nodes(['xray_inspection'], params={'xray_inspection': {
        'detector': 'cnn', 'reference_model': True}})
    client = Client(ros_client)
    # the mujoco_sim station at 256 px (same field of view): the part 3 / -2 mm and 6 deg
    # off the origin, where the registration starts
    config = station_from_cell(load_cell(), detector_px=256, pixel_pitch_mm=0.8).config
    hub = generate_part('hub', 100003, defect_probability=1.0)
    rad = simulate_radiograph(hub, config, pose=resting_pose(3.0, -2.0, np.radians(6.0)),
                              seed=3)
    (truth,) = rad.truth
    assert truth.kind == 'inclusion' and truth.size_mm > 2.0
    image = mono16(rad.image)
    geometry = {'pixel_pitch_mm': rad.pixel_pitch_mm, 'magnification': rad.magnification,
                'part_family': 'hub'}

    status, result, feedback = client.send(part_id=hub.part_id, radiograph=image, **geometry)
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    r = result.result
    assert r.detector == 'cnn+reference' and result.message == r.verdict
    assert r.stage_names == ['validate', 'register', 'detect', 'grade', 'publish']
    assert len(r.stage_times_s) == 5 and all(t >= 0 for t in r.stage_times_s)
    found = [d for d in r.defects if box_iou((d.x_min_px, d.y_min_px, d.x_max_px,
                                              d.y_max_px), truth.box_xyxy) >= 0.5]
    assert found and found[0].kind == 'inclusion', [(d.kind, d.x_min_px, d.y_min_px)
                                                    for d in r.defects]
    assert r.verdict == 'REJECT', r.reasons

    # ids that name no model: inspected image-only, the reason in the message
    for part_id, why in (('P-001', "is not '<family>-<seed>'"),
                         ('hub-100003 ', "is not '<family>-<seed>'"),
                         ('gear-100003', "unknown part family 'gear'"),
                         ('hub-0100003', "the seed is written '100003' in part ids")):
        status, result, _ = client.send(part_id=part_id, radiograph=image, **geometry)
        assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
        r = result.result
        assert r.detector == 'cnn' and 'register' not in r.stage_names
        assert result.message.startswith(f'{r.verdict} (image-only: no model: part id ')
        assert why in result.message and r.part_id == part_id

    # a model that is not the part in the radiograph: the registration is refused
    status, result, _ = client.send(part_id='bracket-100002', radiograph=image, **geometry)
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    assert result.result.detector == 'cnn'
    assert f'{result.result.verdict} (image-only: reference not used: ' in result.message

    # cancel while the 1024 px radiograph's reference is rendered and registered
    big = station_from_cell(load_cell()).config
    rad = simulate_radiograph(hub, big, pose=resting_pose(3.0, -2.0, np.radians(6.0)),
                              seed=4)
    status, result, feedback = client.send(
        part_id=hub.part_id, radiograph=mono16(rad.image), cancel_on_stage='detect',
        pixel_pitch_mm=rad.pixel_pitch_mm, magnification=rad.magnification)
    assert status == GoalStatus.STATUS_CANCELED, result.message
    assert not result.success and 'cancelled' in result.message
    stack.check_alive()


def test_reference_model_needs_a_detector_with_a_front_end(launch_nodes):
    stack = launch_nodes(['xray_inspection'], params={'xray_inspection': {
        'detector': 'classical', 'reference_model': True}})
    wait_for(lambda: stack.dead(), 30.0, what='xray_inspection to exit')
    assert stack.processes[0].popen.returncode == 2
    assert "reference_model needs a detector with a front end ('cnn' or 'default'), not " \
        "'classical'" in stack.processes[0].log_tail()


def _station_radiograph(part_id, seed=3):
    """A 1024 px radiograph of the sound part `part_id` by the cell's station, 3 / -2 mm and
    6 deg off the fixture's origin."""
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.sim.xray_station import station_from_cell
    from humanoid_inspection.xray.part_models import part_model
    from humanoid_inspection.xray.simulator import resting_pose, simulate_radiograph
    config = station_from_cell(load_cell()).config
    return simulate_radiograph(part_model(part_id), config, seed=seed,
                               pose=resting_pose(3.0, -2.0, np.radians(6.0)))


def test_confirm_policy_runs_the_model_only_where_the_detector_does_not_accept(
        launch_nodes, ros_client):
    """reference_policy 'confirm': a sound housing the image-only cnn REJECTs (a corner boss
    called an inclusion, as in the demo) is ACCEPTed against its model, and the result says
    both; one cnn ACCEPTs is not registered at all; an id without a model keeps the screen's
    verdict with the reason."""
    from action_msgs.msg import GoalStatus
    stack = launch_nodes(['xray_inspection'], params={'xray_inspection': {
        'detector': 'cnn', 'reference_model': True, 'reference_policy': 'confirm'}})
    client = Client(ros_client)
    rejected = _station_radiograph('housing-007002')
    geometry = {'pixel_pitch_mm': rejected.pixel_pitch_mm,
                'magnification': rejected.magnification, 'part_family': 'housing'}

    status, result, feedback = client.send(part_id='housing-007002',
                                           radiograph=mono16(rejected.image), **geometry)
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    r = result.result
    assert result.message == 'ACCEPT (confirmed against the model; cnn alone: REJECT)'
    assert r.verdict == 'ACCEPT' and r.detector == 'cnn+reference'
    assert r.stage_names == ['validate', 'screen', 'register', 'detect', 'grade', 'publish']
    assert feedback[0] == 'validate' and feedback[-1] == 'publish'

    accepted = _station_radiograph('housing-007005')
    status, result, _ = client.send(part_id='housing-007005',
                                    radiograph=mono16(accepted.image), **geometry)
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    r = result.result
    assert result.message == 'ACCEPT' and r.detector == 'cnn'
    assert 'screen' not in r.stage_names and 'register' not in r.stage_names

    status, result, _ = client.send(part_id='P-001', radiograph=mono16(rejected.image),
                                    **geometry)
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    assert result.result.verdict == 'REJECT' and result.result.detector == 'cnn'
    assert result.message.startswith("REJECT (image-only: no model: part id 'P-001'")
    stack.check_alive()


def test_bad_reference_policy_fails_startup(launch_nodes):
    stack = launch_nodes(['xray_inspection'], params={'xray_inspection': {
        'detector': 'cnn', 'reference_model': True, 'reference_policy': 'sometimes'}})
    wait_for(lambda: stack.dead(), 30.0, what='xray_inspection to exit')
    assert stack.processes[0].popen.returncode == 2
    assert "reference_policy must be one of always, confirm, got 'sometimes'" in \
        stack.processes[0].log_tail()
