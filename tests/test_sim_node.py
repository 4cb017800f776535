"""mujoco_sim as a separate process over DDS (loopback, own domain): clock, joint states,
camera, trajectory following, rejection, X-ray on an empty fixture, ground truth, start-up
errors."""

import json
import subprocess
import threading

import numpy as np
import pytest
from conftest import wait_for

from humanoid_inspection import launch_spec
from humanoid_inspection.launcher import ros_environment

pytestmark = pytest.mark.ros

SIM_PARAMS = {'num_parts': 2, 'part_seed': 4, 'camera_rate_hz': 10.0,
              'xray_detector_px': 128, 'xray_pixel_pitch_mm': 1.6}


class Latest:
    """Keeps the last message of a topic and a count."""

    def __init__(self):
        self.msg = None
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, msg):
        with self.lock:
            self.msg = msg
            self.count += 1


def test_node_publishes_follows_and_serves(launch_nodes, ros_client):
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from humanoid_inspection.nodes.conversions import image_to_numpy
    from humanoid_inspection_interfaces.srv import AcquireRadiograph

    stack = launch_nodes(['mujoco_sim'], params={'mujoco_sim': SIM_PARAMS})
    node = ros_client.node
    clock, joints, color, depth, info = Latest(), Latest(), Latest(), Latest(), Latest()
    node.create_subscription(Clock, '/clock', clock, 10)
    node.create_subscription(JointState, 'joint_states', joints, 10)
    node.create_subscription(Image, 'head_camera/color/image_raw', color,
                             qos_profile_sensor_data)
    node.create_subscription(Image, 'head_camera/depth/image_raw', depth,
                             qos_profile_sensor_data)
    node.create_subscription(CameraInfo, 'head_camera/color/camera_info', info,
                             qos_profile_sensor_data)
    try:
        wait_for(lambda: joints.count > 5 and clock.count > 5 and color.count and depth.count
                 and info.count, 40.0, what='clock, joint_states and camera topics')
    except TimeoutError:
        stack.check_alive()
        raise
    # camera: rgb8 + 32FC1 metres, same size as camera_info
    rgb = image_to_numpy(color.msg, allowed=['rgb8'])
    d = image_to_numpy(depth.msg, allowed=['32FC1'])
    assert rgb.shape == (info.msg.height, info.msg.width, 3) == (480, 640, 3)
    assert d.shape == (480, 640)
    assert 0.3 < float(np.nanmedian(d)) < 4.0
    assert info.msg.k[0] > 0 and color.msg.header.frame_id == 'head_camera_optical_frame'
    t0 = clock.msg.clock.sec + clock.msg.clock.nanosec * 1e-9
    wait_for(lambda: clock.msg.clock.sec + clock.msg.clock.nanosec * 1e-9 > t0 + 0.5, 10.0,
             what='sim time advancing')

    pub = node.create_publisher(JointTrajectory, 'head_controller/joint_trajectory', 10)
    wait_for(lambda: pub.get_subscription_count() > 0, 10.0, what='trajectory subscriber')

    def neck(name):
        return joints.msg.position[list(joints.msg.name).index(name)]

    target = 0.4
    msg = JointTrajectory()
    msg.joint_names = ['neck_yaw']
    msg.points = [JointTrajectoryPoint(positions=[target])]
    msg.points[0].time_from_start.sec = 1
    pub.publish(msg)
    wait_for(lambda: abs(neck('neck_yaw') - target) < 0.01, 20.0, what='neck_yaw at target')

    # a bad trajectory (non-monotonic times) is rejected: the head holds
    bad = JointTrajectory()
    bad.joint_names = ['neck_yaw']
    bad.points = [JointTrajectoryPoint(positions=[-0.5]), JointTrajectoryPoint(positions=[0.0])]
    bad.points[0].time_from_start.sec = 2
    bad.points[1].time_from_start.sec = 1
    pub.publish(bad)
    t_bad = clock.msg.clock.sec
    wait_for(lambda: clock.msg.clock.sec >= t_bad + 2, 20.0, what='2 s of sim time')
    assert abs(neck('neck_yaw') - target) < 0.01

    acquire = node.create_client(AcquireRadiograph, 'xray/acquire')
    assert acquire.wait_for_service(timeout_sec=10.0)
    resp = ros_client.wait_future(acquire.call_async(AcquireRadiograph.Request()), 30.0)
    assert not resp.success and 'fixture is empty' in resp.message

    truth = node.create_client(Trigger, 'sim/ground_truth')
    assert truth.wait_for_service(timeout_sec=10.0)
    resp = ros_client.wait_future(truth.call_async(Trigger.Request()), 10.0)
    table = json.loads(resp.message)
    assert len(table['parts']) == 2
    assert all(isinstance(p['defective'], bool) for p in table['parts'])
    stack.check_alive()
    log = stack.processes[0].log_path.read_text()
    assert 'trajectory rejected' in log and 'increase strictly' in log


def test_unreadable_files_stop_the_node_at_start(tmp_path, ros_domain_id):
    spec = launch_spec.nodes_by_name(['mujoco_sim'])[0]
    for key, path in (('urdf_path', tmp_path / 'missing.urdf'),
                      ('cell_path', tmp_path / 'missing_cell.yaml')):
        args = [launch_spec.executable_path(spec)] + launch_spec.ros_arguments(
            spec, False, extra_params={key: str(path)})
        result = subprocess.run(args, env=ros_environment(ros_domain_id), capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0
        out = result.stderr + result.stdout
        assert path.name in out and '[FATAL]' in out, out[-2000:]
