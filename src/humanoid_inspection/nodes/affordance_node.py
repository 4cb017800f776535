"""affordance node: detections + depth -> ranked grasp candidates, rviz markers, a service.

Subscribes perception/detections and the registered depth (sensor QoS) matched by stamp, plus
camera_info; publishes affordance/candidates (AffordanceArray, best first, discards counted)
and affordance/markers (an arrow along each grasp's approach axis and a bar across its finger
opening); serves affordance/predict. Candidates are turned into base_frame with the camera
pose from /joint_states by pinocchio forward kinematics of the project URDF
(affordance.camera_pose) or, where that URDF is not available, from a fixed pose parameter.

The last `pair_history` detection/depth pairs are kept by the detections' stamp:
affordance/predict answers for the DetectionArray its request names (`detections_stamp`; the
object ids are only unique within one array), waiting up to `predict_wait_s` for that pair,
so a caller never gets grasps computed on an older frame (the cell grasped at a part's old
place). The candidates topic is computed for every pair only while someone subscribes to it
or to the markers (6 parts cost ~0.4 s of a 2-core machine per frame at 15 Hz otherwise).
"""

import threading
import time
from collections import OrderedDict, deque

import numpy as np
from geometry_msgs.msg import Point
from humanoid_inspection_interfaces.msg import Affordance, AffordanceArray
from humanoid_inspection_interfaces.msg import DetectionArray
from humanoid_inspection_interfaces.srv import PredictAffordance
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from humanoid_inspection.affordance.camera_pose import (
    CameraPoseError, CameraPoseFK, pose_from_xyz_rpy)
from humanoid_inspection.affordance.grasp import (
    GraspConfig, GraspResult, grasps_for_detection, quaternion_to_rotation,
    rotation_to_quaternion, to_frame)
from humanoid_inspection.nodes.conversions import ImageConversionError, image_to_numpy
from humanoid_inspection.nodes.node_support import (
    Param, StartupError, declare_typed_parameters, reject_unknown_parameters, run_node)
from humanoid_inspection.nodes.perception_node import (
    DEPTH_ENCODINGS, intrinsics_from_camera_info, stamp_seconds)
from humanoid_inspection.perception.rgbd import InvalidFrameError, depth_to_metres
from humanoid_inspection.perception.sync import ApproximateTimeSync
from humanoid_inspection.perception.types import ObjectDetection

OPTICAL_IN_LINK = pose_from_xyz_rpy([0, 0, 0], [-np.pi / 2, 0.0, -np.pi / 2])

PARAMS = (
    Param('detections_topic', 'perception/detections', 'input DetectionArray topic'),
    Param('depth_topic', 'head_camera/depth/image_raw', 'registered depth (32FC1 / 16UC1)'),
    Param('camera_info_topic', 'head_camera/color/camera_info', 'camera_info'),
    Param('candidates_topic', 'affordance/candidates', 'output AffordanceArray topic'),
    Param('markers_topic', 'affordance/markers', 'output MarkerArray topic'),
    Param('sync_slop_s', 0.05, 'detections vs depth stamp tolerance (s)', 0.0, 10.0),
    Param('sync_queue_size', 45, 'depth frames (and detections) kept while waiting for a '
          'partner: perception lags the depth stream by up to queue / camera rate', 1, 1000),
    Param('output_in_base_frame', True, 'candidates topic in base_frame, else camera frame'),
    Param('base_frame', 'base_link', 'robot base frame'),
    Param('camera_pose_source', 'auto', 'auto | joint_states | fixed'),
    Param('camera_link_xyz', [0.05, 0.0, 0.62], 'fixed head_camera_link position in base (m)'),
    Param('camera_link_rpy', [0.0, 0.9, 0.0], 'fixed head_camera_link roll/pitch/yaw (rad)'),
    Param('max_opening_m', 0.0, 'gripper max opening (m), 0 = cell.yaml', 0.0, 1.0),
    Param('finger_length_m', 0.0, 'finger length (m), 0 = cell.yaml', 0.0, 1.0),
    Param('opening_margin_m', 0.02, 'opening added to the object width (m)', 0.0, 0.2),
    Param('min_opening_margin_m', 0.01, 'a part almost as wide as the gripper opens is grasped '
          'across its footprint with the opening left, down to this margin (m)', 0.0, 0.2),
    Param('default_opening_m', 0.06, 'opening for VLM points without a mask (m)', 0.0, 1.0),
    Param('max_candidates_per_object', 4, 'keep at most this many per object', 1, 100),
    Param('wall_grasps', True, 'also pinch grasps across walls/rims/webs (parts too wide)'),
    Param('wall_opening_margin_m', 0.01, 'opening added to a wall thickness (m)', 0.0, 0.1),
    Param('fingertip_below_tcp_m', 0.02, 'fingertips below the TCP (m, gripper geometry)',
          0.0, 0.5),
    Param('tip_clearance_m', 0.003, 'fingertips above what lies under them (m)', 0.0, 0.1),
    Param('pair_history', 30, 'detection/depth pairs kept for affordance/predict', 1, 1000),
    Param('predict_wait_s', 1.0, 'affordance/predict waits this long for the requested '
          "detections' depth pair (s)", 0.0, 60.0),
    Param('predict_depth_tolerance_s', 1.0, 'affordance/predict pairs detections whose own '
          'depth frame is gone with the first depth frame at most this much later (s; the '
          'scene must not move in between; 0 = exact frames only)', 0.0, 10.0),
)


def detection_from_msg(msg, depth_shape) -> ObjectDetection:
    """Detection message -> ObjectDetection (mask decoded when present and of the right size)."""
    x1 = msg.center_x_px - msg.size_x_px / 2
    y1 = msg.center_y_px - msg.size_y_px / 2
    det = ObjectDetection(msg.id, msg.class_id, msg.score, msg.backend,
                          (x1, y1, x1 + msg.size_x_px, y1 + msg.size_y_px))
    if msg.mask.width > 0:
        try:
            mask = image_to_numpy(msg.mask, ('mono8',)) > 0
            if mask.shape == tuple(depth_shape):
                det.mask = mask
        except ImageConversionError:
            pass
    if msg.has_3d:
        p, o = msg.pose.position, msg.pose.orientation
        det.centroid_m = np.array([p.x, p.y, p.z])
        det.obb_rotation = quaternion_to_rotation(o.x, o.y, o.z, o.w)
        det.obb_extent_m = np.array([msg.size_m.x, msg.size_m.y, msg.size_m.z])
    return det


class AffordanceNode(Node):
    """Grasp candidates for the latest detections."""

    def __init__(self):
        """Declare parameters, set up the camera pose source, topics and the service."""
        super().__init__('affordance')
        self.p = declare_typed_parameters(self, PARAMS)
        reject_unknown_parameters(self)
        self.grasp_config = self._grasp_config()
        self.fk = None
        source = self.p['camera_pose_source']
        if source not in ('auto', 'joint_states', 'fixed'):
            raise StartupError(f"camera_pose_source '{source}': expected auto | joint_states "
                               '| fixed')
        if source in ('auto', 'joint_states'):
            try:
                self.fk = CameraPoseFK.from_project()
            except CameraPoseError as exc:
                if source == 'joint_states':
                    raise StartupError(f'camera_pose_source joint_states: {exc}') from exc
                self.get_logger().warning(f'using the fixed camera pose: {exc}')
        self.fixed_T = pose_from_xyz_rpy(self.p['camera_link_xyz'],
                                         self.p['camera_link_rpy']) @ OPTICAL_IN_LINK
        self._joints = {}
        self._lock = threading.Lock()
        self._info = None
        self._latest = None  # (detections, depth, intrinsics)
        self._pairs = OrderedDict()   # detections stamp (ns) -> (detections, depth, intrinsics)
        self._detections = OrderedDict()  # detections stamp (ns) -> DetectionArray
        self._depths = deque(maxlen=self.p['sync_queue_size'])   # (stamp ns, depth Image)
        self.sync = ApproximateTimeSync(2, self.p['sync_slop_s'], self.p['sync_queue_size'],
                                        self._on_pair)
        group = MutuallyExclusiveCallbackGroup()
        self.pub = self.create_publisher(AffordanceArray, self.p['candidates_topic'], 10)
        self.markers = self.create_publisher(MarkerArray, self.p['markers_topic'], 10)
        self.create_subscription(DetectionArray, self.p['detections_topic'],
                                 self._on_detections, 10, callback_group=group)
        self.create_subscription(Image, self.p['depth_topic'], self._on_depth,
                                 qos_profile_sensor_data, callback_group=group)
        self.create_subscription(CameraInfo, self.p['camera_info_topic'], self._on_info,
                                 qos_profile_sensor_data, callback_group=group)
        if self.fk is not None:
            # 100 Hz: its own group, so depth frames are taken before DDS overwrites them
            self.create_subscription(JointState, 'joint_states', self._on_joints, 10,
                                     callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(PredictAffordance, 'affordance/predict', self._on_predict,
                            callback_group=ReentrantCallbackGroup())
        self.get_logger().info('affordance ready (camera pose: '
                               f"{'joint_states FK' if self.fk else 'fixed'})")

    def _grasp_config(self) -> GraspConfig:
        max_open, finger = self.p['max_opening_m'], self.p['finger_length_m']
        if max_open <= 0 or finger <= 0:
            from humanoid_inspection.cell_geometry import load_cell
            try:
                gripper = load_cell().gripper
            except Exception as exc:  # CellConfigError, missing file
                raise StartupError(f'cannot read the gripper from cell.yaml: {exc}') from exc
            max_open = max_open if max_open > 0 else gripper.max_opening_m
            finger = finger if finger > 0 else gripper.finger_length_m
        return GraspConfig(max_opening_m=max_open, finger_length_m=finger,
                           opening_margin_m=self.p['opening_margin_m'],
                           min_opening_margin_m=self.p['min_opening_margin_m'],
                           default_opening_m=self.p['default_opening_m'],
                           wall_grasps=self.p['wall_grasps'],
                           wall_opening_margin_m=self.p['wall_opening_margin_m'],
                           fingertip_below_tcp_m=self.p['fingertip_below_tcp_m'],
                           tip_clearance_m=self.p['tip_clearance_m'])

    def _on_info(self, msg):
        try:
            intr = intrinsics_from_camera_info(msg)
        except ValueError as exc:
            self.get_logger().warning(f'bad camera_info: {exc}', throttle_duration_sec=5.0)
            return
        with self._lock:
            self._info = intr

    def _on_detections(self, msg: DetectionArray):
        with self._lock:
            self._detections[_stamp_ns(msg.header.stamp)] = msg
            while len(self._detections) > self.p['pair_history']:
                self._detections.popitem(last=False)
        self.sync.add(0, stamp_seconds(msg.header), msg)

    def _on_depth(self, msg: Image):
        with self._lock:
            self._depths.append((_stamp_ns(msg.header.stamp), msg))
        self.sync.add(1, stamp_seconds(msg.header), msg)

    def _on_joints(self, msg: JointState):
        with self._lock:
            self._joints.update(zip(msg.name, msg.position))

    def camera_in_base(self) -> np.ndarray:
        """T_base_camera now (FK of the latest joint_states, or the fixed pose)."""
        if self.fk is None:
            return self.fixed_T
        with self._lock:
            joints = dict(self._joints)
        return self.fk.camera_in_base(joints)

    # -- processing ---------------------------------------------------------------------------
    def _on_pair(self, det_msg: DetectionArray, depth_msg: Image):
        with self._lock:
            intr = self._info
            self._latest = (det_msg, depth_msg, intr)
            self._pairs[_stamp_ns(det_msg.header.stamp)] = self._latest
            while len(self._pairs) > self.p['pair_history']:
                self._pairs.popitem(last=False)
        if not (self.pub.get_subscription_count() or self.markers.get_subscription_count()):
            return
        result, header = self.compute(det_msg, depth_msg, intr)
        frame_in_base = self.p['output_in_base_frame']
        out = self._to_msg(result, header, frame_in_base)
        self.pub.publish(out)
        self.markers.publish(self._markers(out))

    def compute(self, det_msg, depth_msg, intr, object_id: str = ''):
        """Grasp candidates (camera frame) for the detections; (GraspResult, header)."""
        header = det_msg.header
        result = GraspResult()
        if det_msg.diagnostic and not det_msg.detections:
            result.diagnostic = f'perception: {det_msg.diagnostic}'
            return result, header
        if intr is None:
            result.diagnostic = 'no camera_info received yet'
            result.discarded_other = len(det_msg.detections)
            return result, header
        try:
            depth = image_to_numpy(depth_msg, DEPTH_ENCODINGS)
            if depth.shape != (intr.height, intr.width):
                raise InvalidFrameError(f'depth {depth.shape[1]}x{depth.shape[0]} differs from '
                                        f'camera_info {intr.width}x{intr.height}')
            depth_m = depth_to_metres(depth)
        except (ImageConversionError, InvalidFrameError) as exc:
            result.diagnostic = f'bad depth: {exc}'
            result.discarded_other = len(det_msg.detections)
            return result, header
        dets = [d for d in det_msg.detections if not object_id or d.id == object_id]
        if object_id and not dets:
            result.diagnostic = f"no detection with id '{object_id}'"
            return result, header
        keep = self.p['max_candidates_per_object']
        for d in dets:
            try:
                part = grasps_for_detection(detection_from_msg(d, depth_m.shape), depth_m, intr,
                                            self.grasp_config)
            except Exception as exc:  # one bad object must not lose the others
                part = GraspResult(discarded_other=1, diagnostic=f'{d.id}: {exc}')
            part.candidates = part.candidates[:keep]
            result.extend(part)
        if not result.candidates and not result.diagnostic:
            result.diagnostic = 'no detections' if not dets else 'no valid grasp candidate'
        return result, header

    def _to_msg(self, result: GraspResult, header, in_base: bool) -> AffordanceArray:
        out = AffordanceArray()
        out.header = Header(stamp=header.stamp, frame_id=header.frame_id)  # a copy
        if in_base:
            result = to_frame(result, self.camera_in_base(), self.p['base_frame'])
            out.header.frame_id = self.p['base_frame']
        for c in result.candidates:
            a = Affordance()
            a.header = out.header
            a.object_id = c.object_id
            a.grasp_pose.position.x, a.grasp_pose.position.y, a.grasp_pose.position.z = (
                float(v) for v in c.position)
            q = rotation_to_quaternion(c.rotation)
            o = a.grasp_pose.orientation
            o.x, o.y, o.z, o.w = q
            a.approach.x, a.approach.y, a.approach.z = (float(v) for v in c.approach)
            a.gripper_opening_m = float(c.opening_m)
            a.score = float(c.score)
            a.points_px = [Point(x=float(x), y=float(y), z=0.0) for x, y in c.points_px]
            a.pixel_space = 'original_image'
            out.candidates.append(a)
        out.discarded_no_depth = result.discarded_no_depth
        out.discarded_too_wide = result.discarded_too_wide
        out.discarded_other = result.discarded_other
        out.diagnostic = result.diagnostic
        return out

    def _markers(self, arr: AffordanceArray) -> MarkerArray:
        markers = MarkerArray()
        clear = Marker()
        clear.action = Marker.DELETEALL
        markers.markers.append(clear)
        for i, a in enumerate(arr.candidates):
            p = a.grasp_pose.position
            tip = np.array([p.x, p.y, p.z])
            tail = tip - 0.08 * np.array([a.approach.x, a.approach.y, a.approach.z])
            arrow = Marker()
            arrow.header = arr.header
            arrow.ns, arrow.id, arrow.type = 'grasp_approach', i, Marker.ARROW
            arrow.points = [Point(x=float(tail[0]), y=float(tail[1]), z=float(tail[2])),
                            Point(x=p.x, y=p.y, z=p.z)]
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.006, 0.012, 0.015
            arrow.color.r, arrow.color.g, arrow.color.a = 1.0 - a.score, a.score, 1.0
            arrow.pose.orientation.w = 1.0
            o = a.grasp_pose.orientation
            closing = quaternion_to_rotation(o.x, o.y, o.z, o.w)[:, 1]
            half = closing * a.gripper_opening_m / 2
            bar = Marker()
            bar.header = arr.header
            bar.ns, bar.id, bar.type = 'grasp_opening', i, Marker.LINE_LIST
            bar.points = [Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))
                          for v in (tip - half, tip + half)]
            bar.scale.x = 0.004
            bar.color.b, bar.color.a = 1.0, 1.0
            bar.pose.orientation.w = 1.0
            markers.markers += [arrow, bar]
        return markers

    def _pair_for(self, stamp_ns: int):
        """(pair or None, why) for the detections of stamp_ns (0 = the latest pair)."""
        deadline = time.monotonic() + self.p['predict_wait_s']
        while True:
            with self._lock:
                pair = self._latest if not stamp_ns else self._pairs.get(stamp_ns)
                held = list(self._pairs)
                newest_depth = self._depths[-1][0] if self._depths else None
                if pair is None and stamp_ns:
                    pair = self._later_depth_pair(stamp_ns)
            if pair is not None:
                return pair, ''
            if time.monotonic() >= deadline:
                if not stamp_ns:
                    return None, 'no detections with matching depth received yet'
                have = (f'{held[0] * 1e-9:.3f}..{held[-1] * 1e-9:.3f} s' if held else 'none')
                depth = f'{newest_depth * 1e-9:.3f} s' if newest_depth is not None else 'none'
                return None, (f'the detections of stamp {stamp_ns * 1e-9:.3f} s have no depth '
                              f'pair (pairs held: {have}; newest depth frame: {depth})')
            time.sleep(0.02)

    def _later_depth_pair(self, stamp_ns: int):
        """The detections of stamp_ns with the first depth frame after them (lock held).

        Their own depth frame may be gone (a 1.2 MB best-effort image dropped, or evicted while
        perception lagged); a frame at most `predict_depth_tolerance_s` later shows the same
        scene when nothing moved in between (the cell looks at the table from rest and waits
        for this answer before moving). None when there is no such frame.
        """
        det = self._detections.get(stamp_ns)
        if det is None:
            return None
        limit = stamp_ns + int(self.p['predict_depth_tolerance_s'] * 1e9)
        later = [(t, m) for t, m in self._depths if stamp_ns <= t <= limit]
        if not later:
            return None
        return det, min(later, key=lambda item: item[0])[1], self._info

    def _on_predict(self, request, response):
        latest, why = self._pair_for(_stamp_ns(request.detections_stamp))
        with self._lock:
            intr = self._info
        if latest is None:
            response.success = False
            response.message = why
            return response
        det_msg, depth_msg, intr_then = latest
        result, header = self.compute(det_msg, depth_msg, intr_then or intr,
                                      request.object_id)
        response.candidates = self._to_msg(result, header, request.in_base_frame)
        response.success = bool(response.candidates.candidates)
        response.message = result.diagnostic
        return response


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def main(args=None) -> int:
    """Console script `affordance`."""
    return run_node(AffordanceNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
