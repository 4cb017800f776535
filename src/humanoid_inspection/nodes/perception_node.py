"""perception node: head-camera RGB-D -> perception/detections, srv perception/query.

Colour, depth and camera_info are matched by stamp (perception.sync, message_filters' policy)
and subscribed with sensor QoS. Every matched frame gives one DetectionArray; a frame that
cannot be processed (bad encoding, size mismatch, no valid depth, a rejected VLM answer, ...)
gives an empty array whose diagnostic says why, and frames arriving while no camera_info has
ever been received give a periodic 'no camera_info' diagnostic. The backend ('classical' or
'vlm') is chosen by a parameter; the node does not care which one runs.
"""

import threading
import time

import numpy as np
from humanoid_inspection_interfaces.msg import Detection, DetectionArray
from humanoid_inspection_interfaces.srv import QueryScene
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from humanoid_inspection.affordance.grasp import rotation_to_quaternion
from humanoid_inspection.nodes.conversions import (
    ImageConversionError, image_to_numpy, numpy_to_image)
from humanoid_inspection.nodes.node_support import (
    Param, StartupError, declare_typed_parameters, reject_unknown_parameters, run_node)
from humanoid_inspection.perception.classical_backend import ClassicalBackend, ClassicalConfig
from humanoid_inspection.perception.sync import ApproximateTimeSync
from humanoid_inspection.perception.types import CameraIntrinsics, ObjectDetection

COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8')
DEPTH_ENCODINGS = ('32FC1', '16UC1')

PARAMS = (
    Param('backend', 'classical', 'perception backend: classical | vlm'),
    Param('color_topic', 'head_camera/color/image_raw', 'colour image topic (rgb8/bgr8)'),
    Param('depth_topic', 'head_camera/depth/image_raw', 'registered depth (32FC1 m / 16UC1 mm)'),
    Param('camera_info_topic', 'head_camera/color/camera_info', 'camera_info of the colour'),
    Param('detections_topic', 'perception/detections', 'output DetectionArray topic'),
    Param('sync_slop_s', 0.02, 'largest stamp spread of a matched frame (s)', 0.0, 10.0),
    Param('sync_queue_size', 10, 'messages kept per stream while matching', 1, 1000),
    Param('publish_masks', True, 'fill Detection.mask (mono8)'),
    Param('no_camera_info_period_s', 1.0, 'period of the no-camera_info diagnostic (s)',
          0.0, 3600.0),
    Param('classical.min_height_m', 0.008, 'min part height above the plane (m)', 0.0, 1.0),
    Param('classical.max_height_m', 0.35, 'max part height above the plane (m)', 0.0, 5.0),
    Param('classical.color_distance', 45.0, 'RGB distance from the table colour', 0.0, 500.0),
    Param('classical.min_area_px', 120, 'smallest part in pixels', 1, 1000000),
    Param('classical.ransac_threshold_m', 0.006, 'plane inlier distance (m)', 0.0001, 0.1),
    Param('classical.min_plane_fraction', 0.15, 'min share of depth points on the plane',
          0.0, 1.0),
    Param('vlm.model_path', '', 'local Qwen2.5-VL-family checkpoint folder'),
    Param('vlm.device', 'cpu', 'cpu | cuda | cuda:N'),
    Param('vlm.dtype', 'auto', 'auto | bfloat16 | float16 | float32'),
    Param('vlm.max_new_tokens', 256, 'generation budget', 1, 8192),
    Param('vlm.min_pixels', 3136, 'min pixels of the resized model input', 784, 100000000),
    Param('vlm.max_pixels', 1003520, 'max pixels of the resized model input', 784, 100000000),
    Param('vlm.thinking', False, 'let the model think (false appends /no_think)'),
    Param('vlm.coordinate_convention', 'resized_pixels',
          'resized_pixels | normalized_1000 | normalized_1 | percent'),
    Param('vlm.coordinate_order', 'xy', 'xy | yx'),
    Param('vlm.image_preprocessing', 'numpy',
          'numpy (perception/qwen_preprocess.py, same tensors, ~3x faster) | transformers'),
)


def stamp_seconds(header) -> float:
    """A header stamp in seconds."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def intrinsics_from_camera_info(msg: CameraInfo) -> CameraIntrinsics:
    """CameraInfo -> CameraIntrinsics (raises ValueError on an uncalibrated/invalid one)."""
    return CameraIntrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))


def color_to_rgb(msg: Image) -> np.ndarray:
    """Colour Image (rgb8/bgr8/rgba8/bgra8) -> HxWx3 uint8 RGB (ImageConversionError)."""
    arr = image_to_numpy(msg, COLOR_ENCODINGS)
    if msg.encoding.startswith('bgr'):
        arr = arr[:, :, 2::-1]
    return np.ascontiguousarray(arr[:, :, :3])


def detection_to_msg(det: ObjectDetection, header, publish_mask: bool) -> Detection:
    """ObjectDetection -> humanoid_inspection_interfaces/Detection."""
    msg = Detection()
    msg.header = header
    msg.id, msg.class_id, msg.backend = det.id, det.class_id, det.backend
    msg.score = float(det.score)
    x1, y1, x2, y2 = det.box_xyxy
    msg.center_x_px, msg.center_y_px = float((x1 + x2) / 2), float((y1 + y2) / 2)
    msg.size_x_px, msg.size_y_px = float(x2 - x1), float(y2 - y1)
    if publish_mask and det.mask is not None:
        msg.mask = numpy_to_image(det.mask.astype(np.uint8) * 255, 'mono8', header)
    msg.has_3d = bool(det.has_3d)
    if det.has_3d:
        c = det.centroid_m
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in c)
        q = rotation_to_quaternion(det.obb_rotation)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = q
        msg.size_m.x, msg.size_m.y, msg.size_m.z = (float(v) for v in det.obb_extent_m)
    else:
        msg.pose.orientation.w = 1.0
    return msg


class PerceptionNode(Node):
    """Subscribes the head camera, publishes detections, answers scene questions."""

    def __init__(self):
        """Declare parameters, build the backend, wire topics and the service."""
        super().__init__('perception', automatically_declare_parameters_from_overrides=False)
        self.p = declare_typed_parameters(self, PARAMS)
        reject_unknown_parameters(self)
        self.backend = self._make_backend()
        self._lock = threading.Lock()
        self._latest_rgb = None
        self._camera_info_seen = False
        self._last_no_info = -1e9
        self.frames_processed = 0
        self.sync = ApproximateTimeSync(3, self.p['sync_slop_s'], self.p['sync_queue_size'],
                                        self._on_frame)
        self.pub = self.create_publisher(DetectionArray, self.p['detections_topic'], 10)
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(Image, self.p['color_topic'], self._on_color,
                                 qos_profile_sensor_data, callback_group=group)
        self.create_subscription(Image, self.p['depth_topic'], self._on_depth,
                                 qos_profile_sensor_data, callback_group=group)
        self.create_subscription(CameraInfo, self.p['camera_info_topic'], self._on_info,
                                 qos_profile_sensor_data, callback_group=group)
        self.create_service(QueryScene, 'perception/query', self._on_query,
                            callback_group=ReentrantCallbackGroup())
        self.get_logger().info(f"perception ready: backend '{self.backend.name}'")

    def _make_backend(self):
        p = self.p
        if p['backend'] == 'classical':
            return ClassicalBackend(ClassicalConfig(
                min_height_m=p['classical.min_height_m'], max_height_m=p['classical.max_height_m'],
                color_distance=p['classical.color_distance'],
                min_area_px=p['classical.min_area_px'],
                ransac_threshold_m=p['classical.ransac_threshold_m'],
                min_plane_fraction=p['classical.min_plane_fraction']))
        if p['backend'] == 'vlm':
            from humanoid_inspection.perception.vlm_backend import (
                CheckpointError, VlmBackend, VlmConfig)
            try:
                return VlmBackend(VlmConfig(
                    model_path=p['vlm.model_path'], device=p['vlm.device'],
                    dtype=p['vlm.dtype'], max_new_tokens=p['vlm.max_new_tokens'],
                    min_pixels=p['vlm.min_pixels'], max_pixels=p['vlm.max_pixels'],
                    thinking=p['vlm.thinking'],
                    coordinate_convention=p['vlm.coordinate_convention'],
                    coordinate_order=p['vlm.coordinate_order'],
                    image_preprocessing=p['vlm.image_preprocessing']))
            except (CheckpointError, ValueError) as exc:
                raise StartupError(f'perception backend vlm: {exc}') from exc
        raise StartupError(f"parameter 'backend' is '{p['backend']}'; expected classical | vlm")

    # -- inputs -------------------------------------------------------------------------------
    def _on_color(self, msg: Image):
        if not self._camera_info_seen:
            now = time.monotonic()
            if now - self._last_no_info >= self.p['no_camera_info_period_s']:
                self._last_no_info = now
                self._publish_empty(msg.header, 'no camera_info received yet on '
                                    f"'{self.p['camera_info_topic']}': intrinsics unknown")
        self.sync.add(0, stamp_seconds(msg.header), msg)

    def _on_depth(self, msg: Image):
        self.sync.add(1, stamp_seconds(msg.header), msg)

    def _on_info(self, msg: CameraInfo):
        self._camera_info_seen = True
        self.sync.add(2, stamp_seconds(msg.header), msg)

    def _publish_empty(self, header, diagnostic: str):
        out = DetectionArray()
        out.header = header
        out.diagnostic = diagnostic
        self.pub.publish(out)
        self.get_logger().warning(diagnostic, throttle_duration_sec=5.0)

    def _on_frame(self, color_msg: Image, depth_msg: Image, info_msg: CameraInfo):
        header = color_msg.header
        try:
            rgb = color_to_rgb(color_msg)
            depth = image_to_numpy(depth_msg, DEPTH_ENCODINGS)
        except ImageConversionError as exc:
            self._publish_empty(header, f'bad image: {exc}')
            return
        try:
            intrinsics = intrinsics_from_camera_info(info_msg)
        except ValueError as exc:
            self._publish_empty(header, f'bad camera_info: {exc}')
            return
        with self._lock:
            self._latest_rgb = rgb
        try:
            result = self.backend.detect(rgb, depth, intrinsics)
        except Exception as exc:  # a backend bug must not take the node down
            self.get_logger().error(f'backend failed: {exc!r}')
            self._publish_empty(header, f'internal error in backend {self.backend.name}: {exc}')
            return
        out = DetectionArray()
        out.header = header
        out.detections = [detection_to_msg(d, header, self.p['publish_masks'])
                          for d in result.detections]
        out.diagnostic = result.diagnostic
        self.pub.publish(out)
        self.frames_processed += 1

    # -- service ------------------------------------------------------------------------------
    def _on_query(self, request, response):
        if self.backend.name != 'vlm':
            response.success = False
            response.message = (f"backend '{self.backend.name}' has no VLM: start perception "
                                'with backend:=vlm and vlm.model_path set')
            return response
        with self._lock:
            rgb = self._latest_rgb
        if rgb is None:
            response.success = False
            response.message = 'no camera frame received yet'
            return response
        from humanoid_inspection.perception.vlm_parsing import VlmParseError
        try:
            response.answer = self.backend.ask(rgb, request.question)
            response.success = True
        except (ValueError, VlmParseError) as exc:
            response.success = False
            response.message = str(exc)
        return response


def main(args=None) -> int:
    """Console script `perception`."""
    return run_node(PerceptionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
