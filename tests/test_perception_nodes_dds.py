"""perception + affordance nodes as separate processes over real DDS (loopback, own domain)."""

import numpy as np
import pytest

from conftest import wait_for
from humanoid_inspection.perception.synthetic_scene import (
    default_camera_pose, demo_parts, render_scene)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope='module')
def frame():
    return render_scene(demo_parts(), default_camera_pose(), depth_noise_m=0.001)


class CameraFeed:
    """Publishes colour, depth and camera_info like the sim's head camera (sensor QoS)."""

    def __init__(self, client, frame):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        node = client.node
        self.node, self.frame = node, frame
        self.color = node.create_publisher(Image, 'head_camera/color/image_raw',
                                           qos_profile_sensor_data)
        self.depth = node.create_publisher(Image, 'head_camera/depth/image_raw',
                                           qos_profile_sensor_data)
        self.info = node.create_publisher(CameraInfo, 'head_camera/color/camera_info',
                                          qos_profile_sensor_data)

    def publish(self, color=None, depth=None, encoding='rgb8', with_info=True):
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import Header

        from humanoid_inspection.nodes.conversions import numpy_to_image
        f = self.frame
        header = Header(stamp=self.node.get_clock().now().to_msg(),
                        frame_id='head_camera_optical_frame')
        color = f.color if color is None else color
        depth = f.depth if depth is None else depth
        self.color.publish(numpy_to_image(color, encoding, header))
        self.depth.publish(numpy_to_image(depth, '32FC1', header))
        if with_info:
            info = CameraInfo(header=header, width=f.intrinsics.width,
                              height=f.intrinsics.height)
            info.k = [float(v) for v in f.intrinsics.matrix().ravel()]
            self.info.publish(info)


def _collect(client, msg_type, topic):
    got = []
    client.node.create_subscription(msg_type, topic, got.append, 10)
    return got


def _feed_until(feed, predicate, timeout, what, **kwargs):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed.publish(**kwargs)
        if predicate():
            return predicate()
        time.sleep(0.2)
    raise TimeoutError(f'timed out waiting for {what}')


def test_detections_and_grasps_over_dds(launch_nodes, ros_client, frame):
    from humanoid_inspection_interfaces.msg import AffordanceArray, DetectionArray
    from humanoid_inspection_interfaces.srv import PredictAffordance, QueryScene
    stack = launch_nodes(['perception', 'affordance'],
                         params={'affordance': {'camera_pose_source': 'fixed'}})
    dets = _collect(ros_client, DetectionArray, 'perception/detections')
    cands = _collect(ros_client, AffordanceArray, 'affordance/candidates')
    feed = CameraFeed(ros_client, frame)
    good = _feed_until(feed, lambda: [d for d in dets if d.detections], 60, 'detections')
    stack.check_alive()
    msg = good[-1]
    assert msg.diagnostic == '' and len(msg.detections) == 3
    assert msg.header.frame_id == 'head_camera_optical_frame'
    for d in msg.detections:
        assert d.has_3d and d.backend == 'classical' and 0 < d.score <= 1
        assert (d.mask.width, d.mask.height) == (640, 480) and d.mask.encoding == 'mono8'
        centre = np.array([d.pose.position.x, d.pose.position.y, d.pose.position.z])
        assert np.min(np.linalg.norm(frame.centroids_cam - centre, axis=1)) < 0.005
    arr = _feed_until(feed, lambda: [c for c in cands if c.candidates], 30, 'candidates')[-1]
    assert arr.header.frame_id == 'base_link'
    assert {c.object_id for c in arr.candidates} == {d.id for d in msg.detections}, \
        (arr.diagnostic, arr.discarded_too_wide, arr.discarded_no_depth, arr.discarded_other)
    assert all(c.gripper_opening_m <= 0.10 + 1e-6 for c in arr.candidates)
    scores = [c.score for c in arr.candidates]
    assert scores == sorted(scores, reverse=True)
    predict = ros_client.node.create_client(PredictAffordance, 'affordance/predict')
    assert predict.wait_for_service(timeout_sec=10)
    resp = ros_client.wait_future(predict.call_async(
        PredictAffordance.Request(object_id='obj_0', in_base_frame=False)), 10)
    assert resp.success and resp.candidates.header.frame_id == 'head_camera_optical_frame'
    assert {c.object_id for c in resp.candidates.candidates} == {'obj_0'}
    query = ros_client.node.create_client(QueryScene, 'perception/query')
    assert query.wait_for_service(timeout_sec=10)
    answer = ros_client.wait_future(query.call_async(QueryScene.Request(question='How many?')), 10)
    assert not answer.success and 'backend:=vlm' in answer.message
    stack.check_alive()


def test_bad_input_gives_diagnostics_over_dds(launch_nodes, ros_client, frame):
    from humanoid_inspection_interfaces.msg import DetectionArray
    stack = launch_nodes(['perception'])
    dets = _collect(ros_client, DetectionArray, 'perception/detections')
    feed = CameraFeed(ros_client, frame)

    def diagnosed(text):
        return lambda: [d for d in dets if text in d.diagnostic]

    got = _feed_until(feed, diagnosed('no camera_info'), 60, 'no-camera_info diagnostic',
                      with_info=False)
    assert got[-1].detections == []
    small = np.ascontiguousarray(frame.depth[:240, :320])
    got = _feed_until(feed, diagnosed('sizes differ'), 20, 'size mismatch', depth=small)
    assert got[-1].detections == []
    grey = np.ascontiguousarray(frame.color[:, :, 0])
    got = _feed_until(feed, diagnosed('unsupported encoding'), 20, 'bad encoding',
                      color=grey, encoding='mono8')
    assert got[-1].detections == []
    nan_depth = np.full(frame.depth.shape, np.nan, dtype=np.float32)
    got = _feed_until(feed, diagnosed('no valid pixel'), 20, 'all-NaN depth', depth=nan_depth)
    assert got[-1].detections == []
    stack.check_alive()  # none of it crashed the node
