"""mujoco_sim node: the MuJoCo simulation of the humanoid and the cell, on ROS 2.

Publishes (stamps are simulation time; other nodes run with use_sim_time):
- /clock (rosgraph_msgs/Clock) at clock_rate_hz
- joint_states (sensor_msgs/JointState: position rad|m, velocity, effort N m|N)
- head_camera/color/image_raw (rgb8), head_camera/depth/image_raw (32FC1, metres, NaN = no
  return), head_camera/color/camera_info and head_camera/depth/camera_info (same intrinsics:
  depth is registered to colour), sensor QoS, frame head_camera_optical_frame
- xray/image_raw (mono16) after each acquisition
- sim/ground_truth (std_msgs/String, JSON, latched): parts with family, pose, hidden defects
Subscribes: <controller>/joint_trajectory (trajectory_msgs/JointTrajectory) for every
controller of config/controllers.yaml; a bad trajectory is rejected with a logged reason and
the controller holds its position.
Serves: xray/acquire (AcquireRadiograph: error 'fixture is empty ...' when nothing rests in the
fixture), sim/ground_truth (std_srvs/Trigger, JSON in message), sim/reset (std_srvs/Trigger).
Physics runs in its own thread at real time, the camera renders in another (sim/runner.py).
"""

import math
import os
import threading

from builtin_interfaces.msg import Time
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from humanoid_inspection.nodes.conversions import numpy_to_image
from humanoid_inspection.nodes.node_support import (Param, StartupError,
                                                    declare_typed_parameters,
                                                    reject_unknown_parameters, run_node)
from humanoid_inspection_interfaces.srv import AcquireRadiograph

PARAMS = (
    Param('urdf_path', '', 'robot URDF or xacro; empty = the package humanoid.urdf.xacro'),
    Param('cell_path', '', 'cell geometry YAML; empty = the package config/cell.yaml'),
    Param('controllers_path', '', 'controllers YAML; empty = the package config/controllers.yaml'),
    Param('num_parts', 6, 'die-cast parts spawned on the table slots', 0, 64),
    Param('part_seed', 0, 'seed of the parts (families, phantoms, hidden defects, yaw)', 0,
          2 ** 31 - 1),
    Param('defect_probability', -1.0, 'chance a part has defects; < 0 = phantom default',
          -1.0, 1.0),
    Param('fixture_part', -1, 'index of a part that starts in the X-ray fixture; -1 = none',
          -1, 63),
    Param('timestep', 0.002, 'physics time step (s)', 0.0001, 0.002),
    Param('real_time_factor', 1.0, 'simulated seconds per wall second; 0 = as fast as possible',
          0.0, 100.0),
    Param('render', True, 'render and publish the head camera'),
    Param('camera_rate_hz', 15.0, 'head camera frames per simulated second', 0.1, 60.0),
    Param('joint_state_rate_hz', 100.0, 'joint_states rate (Hz, sim time)', 1.0, 500.0),
    Param('clock_rate_hz', 100.0, '/clock rate (Hz, sim time)', 1.0, 1000.0),
    Param('ground_truth_rate_hz', 2.0, 'sim/ground_truth topic rate (Hz, sim time)', 0.1, 50.0),
    Param('interpolation', 'splines', "trajectory interpolation: 'splines' or 'linear'"),
    Param('xray_detector_px', 1024, 'virtual X-ray detector size (px, square)', 16, 4096),
    Param('xray_pixel_pitch_mm', 0.2, 'virtual X-ray detector pixel pitch (mm)', 0.01, 2.0),
    Param('xray_kv', 110.0, 'default tube voltage (kV)', 20.0, 450.0),
    Param('xray_mas', 2.0, 'default tube current-time product (mAs)', 0.01, 1000.0),
    Param('fixture_tolerance_m', 0.05, 'largest part offset from the seat centre (m)',
          0.001, 0.5),
    Param('viewer', False, 'open MuJoCo passive viewer when a display exists'),
    Param('camera_frame', 'head_camera_optical_frame', 'frame_id of the camera images'),
    Param('xray_frame', 'xray_detector', 'frame_id of the radiographs'),
)


def stamp(seconds: float) -> Time:
    """builtin_interfaces/Time of a simulation time in seconds."""
    sec = int(math.floor(seconds))
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999999999))


def duration_s(d) -> float:
    """Seconds of a builtin_interfaces/Duration."""
    return float(d.sec) + float(d.nanosec) * 1e-9


def trajectory_from_msg(msg: JointTrajectory):
    """trajectory_msgs/JointTrajectory -> sim.trajectory_follower.Trajectory."""
    from humanoid_inspection.sim.trajectory_follower import Trajectory, TrajectoryPoint
    start = float(msg.header.stamp.sec) + float(msg.header.stamp.nanosec) * 1e-9
    points = tuple(TrajectoryPoint(duration_s(p.time_from_start),
                                   tuple(float(v) for v in p.positions),
                                   tuple(float(v) for v in p.velocities))
                   for p in msg.points)
    return Trajectory(tuple(msg.joint_names), points, start)


class MujocoSimNode(Node):
    """The simulated cell on ROS."""

    def __init__(self):
        """Load the files, build the simulation, start publishing; StartupError on bad input."""
        super().__init__('mujoco_sim')
        self.p = declare_typed_parameters(self, PARAMS)
        reject_unknown_parameters(self)
        if self.p['interpolation'] not in ('splines', 'linear'):
            raise StartupError(f"parameter 'interpolation' must be 'splines' or 'linear', got "
                               f"'{self.p['interpolation']}'")
        from humanoid_inspection.sim.factory import SimSetupError, load_simulation
        from humanoid_inspection.sim.runner import RealTimeRunner
        from humanoid_inspection.sim.scene import SceneOptions
        from humanoid_inspection.sim.xray_station import XrayStationError, station_from_cell
        self.runner = None
        self.viewer = None
        prob = self.p['defect_probability']
        try:
            self.sim = load_simulation(
                self.p['urdf_path'] or None, self.p['cell_path'] or None,
                self.p['controllers_path'] or None, self.p['num_parts'], self.p['part_seed'],
                defect_probability=None if prob < 0 else prob,
                options=SceneOptions(timestep=self.p['timestep']),
                interpolation=self.p['interpolation'], fixture_part=self.p['fixture_part'])
        except SimSetupError as exc:
            raise StartupError(f'mujoco_sim: {exc}') from exc
        cell = self.sim.scene.cell
        try:
            self.station = station_from_cell(
                cell, self.p['xray_detector_px'], self.p['xray_pixel_pitch_mm'],
                self.p['xray_kv'], self.p['xray_mas'],
                xy_tolerance=self.p['fixture_tolerance_m'])
        except XrayStationError as exc:
            raise StartupError(f'mujoco_sim: X-ray station: {exc}') from exc
        self._xray_lock = threading.Lock()

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.clock_pub = self.create_publisher(Clock, '/clock', reliable)
        self.joint_pub = self.create_publisher(JointState, 'joint_states', reliable)
        self.color_pub = self.create_publisher(Image, 'head_camera/color/image_raw',
                                               qos_profile_sensor_data)
        self.depth_pub = self.create_publisher(Image, 'head_camera/depth/image_raw',
                                               qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, 'head_camera/color/camera_info',
                                              qos_profile_sensor_data)
        self.depth_info_pub = self.create_publisher(
            CameraInfo, 'head_camera/depth/camera_info', qos_profile_sensor_data)
        self.xray_pub = self.create_publisher(Image, 'xray/image_raw',
                                              QoSProfile(depth=2))
        self.truth_pub = self.create_publisher(String, 'sim/ground_truth', latched)

        commands = ReentrantCallbackGroup()
        for controller in self.sim.follower.controllers:
            self.create_subscription(
                JointTrajectory, f'{controller}/joint_trajectory',
                lambda msg, c=controller: self._on_trajectory(c, msg), reliable,
                callback_group=commands)
        services = ReentrantCallbackGroup()
        self.create_service(AcquireRadiograph, 'xray/acquire', self._on_acquire,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, 'sim/ground_truth', self._on_ground_truth,
                            callback_group=services)
        self.create_service(Trigger, 'sim/reset', self._on_reset, callback_group=services)

        cam = cell.head_camera
        self.runner = RealTimeRunner(
            self.sim, real_time_factor=self.p['real_time_factor'],
            camera_rate_hz=self.p['camera_rate_hz'], render=self.p['render'],
            on_frame=self._on_frame, on_error=self._on_thread_error,
            camera_kwargs={'width': cam.width, 'height': cam.height, 'max_range': cam.far,
                           'min_range': cam.near})
        self.runner.every(1.0 / self.p['clock_rate_hz'], self._publish_clock)
        self.runner.every(1.0 / self.p['joint_state_rate_hz'], self._publish_joint_states)
        self.runner.every(1.0 / self.p['ground_truth_rate_hz'], self._publish_truth)
        self._camera_info = None
        try:
            self.runner.start()
        except RuntimeError as exc:
            raise StartupError(f'mujoco_sim: {exc}') from exc
        if self.p['render']:
            self._camera_info = self._make_camera_info(self.runner.intrinsics)
        self._publish_truth(self.sim.time)
        if self.p['viewer']:
            from humanoid_inspection.sim.viewer import start_viewer
            self.viewer, why = start_viewer(self.sim)
            if self.viewer is None:
                self.get_logger().info(f'viewer not opened: {why}')
        gains = ', '.join(f'{j}: kp {kp:.0f} kv {kv:.1f}' for j, (kp, kv) in
                          list(self.sim.scene.gains.items())[:3])
        self.get_logger().info(
            f'MuJoCo cell running: {len(self.sim.scene.parts)} parts (seed '
            f"{self.p['part_seed']}), dt {self.sim.timestep * 1000:.1f} ms, controllers "
            f"{', '.join(self.sim.follower.controllers)}, camera "
            f"{'%.0f Hz' % self.p['camera_rate_hz'] if self.p['render'] else 'off'} "
            f'(gains e.g. {gains} ...)')

    # ------------------------------------------------------------------ publishing
    def _publish_clock(self, t: float) -> None:
        if self.context.ok():
            self.clock_pub.publish(Clock(clock=stamp(t)))

    def _publish_joint_states(self, _t: float) -> None:
        if not self.context.ok():
            return
        names, q, v, e, t = self.sim.joint_state()
        msg = JointState()
        msg.header.stamp = stamp(t)
        msg.name = names
        msg.position = q.tolist()
        msg.velocity = v.tolist()
        msg.effort = e.tolist()
        self.joint_pub.publish(msg)

    def _publish_truth(self, _t: float) -> None:
        if self.context.ok():
            self.truth_pub.publish(String(data=self.sim.ground_truth_json()))

    def _make_camera_info(self, k) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = self.p['camera_frame']
        info.width, info.height = k.width, k.height
        info.distortion_model = 'plumb_bob'
        info.d = [0.0] * 5
        info.k = list(k.k)
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = list(k.p)
        return info

    def _on_frame(self, frame) -> None:
        if not self.context.ok():
            return
        header = Header(stamp=stamp(frame.sim_time), frame_id=self.p['camera_frame'])
        self.color_pub.publish(numpy_to_image(frame.rgb, 'rgb8', header))
        self.depth_pub.publish(numpy_to_image(frame.depth, '32FC1', header))
        if self._camera_info is not None:
            self._camera_info.header = header
            self.info_pub.publish(self._camera_info)
            self.depth_info_pub.publish(self._camera_info)

    def _on_thread_error(self, exc: BaseException) -> None:
        if not self.context.ok():
            return          # shutting down: publishers are gone
        self.get_logger().fatal(f'simulation thread stopped: {type(exc).__name__}: {exc}')

    # ------------------------------------------------------------------ commands
    def _on_trajectory(self, controller: str, msg: JointTrajectory) -> None:
        result = self.sim.submit(controller, trajectory_from_msg(msg))
        if result.accepted:
            self.get_logger().debug(f'{controller}: {result.reason}')
        else:
            self.get_logger().warning(
                f'{controller}: trajectory rejected: {result.reason}; holding position')

    def _on_acquire(self, request, response):
        from humanoid_inspection.sim.xray_station import (XrayStationError,
                                                          acquire_from_simulation)
        with self._xray_lock:
            try:
                acq = acquire_from_simulation(self.sim, self.station, request.part_id,
                                              float(request.tube_kv), float(request.tube_mas))
            except XrayStationError as exc:
                response.success = False
                response.message = str(exc)
                self.get_logger().warning(f'xray/acquire: {exc}')
                return response
        header = Header(stamp=stamp(self.sim.time), frame_id=self.p['xray_frame'])
        image = numpy_to_image(acq.radiograph.image, 'mono16', header)
        response.success = True
        response.message = (f'{acq.part_id} imaged at yaw '
                            f'{math.degrees(math.atan2(acq.pose_mm[1, 0], acq.pose_mm[0, 0])):.1f}'
                            f' deg, offset ({acq.pose_mm[0, 3]:.1f}, {acq.pose_mm[1, 3]:.1f}) mm')
        response.radiograph = image
        response.pixel_pitch_mm = float(acq.radiograph.pixel_pitch_mm)
        response.magnification = float(acq.radiograph.magnification)
        response.part_id = acq.part_id
        response.part_family = acq.family
        self.xray_pub.publish(image)
        self.get_logger().info(f'xray/acquire: {response.message}')
        return response

    def _on_ground_truth(self, _request, response):
        response.success = True
        response.message = self.sim.ground_truth_json()
        return response

    def _on_reset(self, _request, response):
        from humanoid_inspection.sim.factory import place_in_fixture
        self.sim.reset()
        if self.p['fixture_part'] >= 0:
            place_in_fixture(self.sim, self.sim.scene.parts[self.p['fixture_part']].part_id)
        self._publish_truth(self.sim.time)
        response.success = True
        response.message = ('simulation reset: robot standing, parts on their slots '
                            '(simulation time keeps running)')
        self.get_logger().info(response.message)
        return response

    def shutdown(self) -> None:
        """Stop the threads and the viewer (called by run_node before destroy_node)."""
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        if self.runner is not None:
            self.runner.stop()
            self.runner = None


def main(args=None) -> int:
    """Console script `mujoco_sim`."""
    os.environ.setdefault('MUJOCO_GL', 'osmesa')
    os.environ.setdefault('PYOPENGL_PLATFORM', os.environ['MUJOCO_GL'])
    return run_node(MujocoSimNode, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
