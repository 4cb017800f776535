"""xray_inspection node: action `inspect_part` -> defects, verdict, reasons (thin ROS wrapper).

Goal: a part id and either a radiograph (mono8, mono16 or 32FC1) or acquire=true, in which
case the radiograph comes from the `xray/acquire` service (AcquireRadiograph), called
asynchronously with a timeout. The work is xray.pipeline.inspect_radiograph(); cancellation is
checked between stages and inside the detector. Publishes `inspection/results`
(InspectionResult), `inspection/overlay` (rgb8) and `inspection/markers` (MarkerArray, one box
per defect in the detector frame, metres). Parameters: config/xray_inspection.yaml.

With `reference_model` a part whose id names its model ('<family>-<seed>',
xray/part_models.py) is inspected against the model's registered radiograph
('cnn+reference', xray/detector_reference.py), rendered with the station's settings
(source_to_object_mm, source_to_detector_mm, tube_kv, tube_mas; 0 = the cell's station);
a part id that names no model, or a registration that fails or is not trusted, is inspected
image-only and the result's detector and message say so. `reference_policy: confirm` runs the
model only for a part the detector alone does not ACCEPT (xray/confirm.py).
"""

import math
import os
import time
from pathlib import Path

import numpy as np
from humanoid_inspection_interfaces.action import InspectPart
from humanoid_inspection_interfaces.msg import InspectionResult, XrayDefect
from humanoid_inspection_interfaces.srv import AcquireRadiograph
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from humanoid_inspection.nodes.conversions import (
    ImageConversionError, image_to_numpy, numpy_to_image)
from humanoid_inspection.nodes.node_support import (
    Param, StartupError, declare_typed_parameters, reject_unknown_parameters, run_node)

ACCEPTED_ENCODINGS = ('mono8', 'mono16', '32FC1')
PARAMS = (
    Param('detector', 'default', "defect detector: 'default' (= 'cnn'), 'classical', 'cnn', "
          "'seg', 'ensemble' or 'unet'"),
    Param('default_pixel_pitch_mm', 0.2, 'detector pixel pitch used when the goal gives 0 (mm)',
          1e-4, 10.0),
    Param('default_magnification', 1.2857, 'geometric magnification used when the goal gives 0',
          1.0, 100.0),
    Param('default_family', 'generic', 'part family used when the goal leaves it empty'),
    Param('acceptance_table', '', 'acceptance table YAML; empty = config/acceptance_e505.yaml'),
    Param('acquire_timeout_s', 10.0, 'how long to wait for the xray/acquire service (s)',
          0.1, 300.0),
    Param('save_radiographs_dir', '', 'if set, every radiograph is saved there as 16-bit PNG'),
    Param('detector_frame_id', 'xray_detector', 'frame of the overlay and the markers'),
    Param('publish_overlay', True, 'publish the rgb8 overlay picture'),
    Param('reference_model', False, "inspect a part whose id names its model ('<family>-"
          "<seed>') against the model's registered radiograph ('<detector>+reference'; "
          "the detector needs a front end: 'cnn' or 'default')"),
    Param('cell_file', '', 'cell geometry YAML of the X-ray cabinet; empty = the package '
          'config/cell.yaml'),
    Param('source_to_object_mm', 0.0, "reference: source to fixture seat (mm); 0 = the "
          "cabinet's in cell_file", 0.0, 1e5),
    Param('source_to_detector_mm', 0.0, "reference: source to detector (mm); 0 = the "
          "cabinet's in cell_file", 0.0, 1e5),
    Param('tube_kv', 0.0, "reference: tube voltage of the radiographs (kV); 0 = the "
          "station's default", 0.0, 1000.0),
    Param('tube_mas', 0.0, "reference: exposure of the radiographs (mAs); 0 = the "
          "station's default", 0.0, 1e5),
    Param('reference_cache_size', 8, 'reference: part models kept for re-inspection', 1, 1024),
    Param('reference_policy', 'always', "reference: 'always' (every part whose id names a "
          "model is inspected against it) or 'confirm' (the detector alone first; only a part "
          "it does not ACCEPT is inspected again against its model, and that verdict stands)"),
)


class InspectionAborted(Exception):
    """The goal cannot be carried out; str() is the reason returned to the client."""


class XrayInspectionNode(Node):
    """Action server inspect_part around the no-ROS inspection pipeline."""

    def __init__(self):
        """Declare parameters, load the table and detector, create the ROS interfaces."""
        super().__init__('xray_inspection')
        self.p = declare_typed_parameters(self, PARAMS)
        reject_unknown_parameters(self)
        from humanoid_inspection.xray.grading import load_table
        from humanoid_inspection.xray.pipeline import get_detector
        try:
            self.table = load_table(self.p['acceptance_table'] or None)
            self.table.zones(self.p['default_family'])
            self.detector = get_detector(self.p['detector'])
        except (ValueError, OSError) as exc:
            raise StartupError(f'xray_inspection: {exc}') from exc
        self.references = self.cell = self.reference_base = None
        if self.p['reference_model']:
            self._setup_reference()
        self.group = ReentrantCallbackGroup()
        self.results_pub = self.create_publisher(InspectionResult, 'inspection/results', 10)
        self.overlay_pub = self.create_publisher(Image, 'inspection/overlay', 2)
        self.markers_pub = self.create_publisher(MarkerArray, 'inspection/markers', 2)
        self.acquire_client = self.create_client(AcquireRadiograph, 'xray/acquire',
                                                 callback_group=self.group)
        self.server = ActionServer(
            self, InspectPart, 'inspect_part', execute_callback=self.execute,
            goal_callback=lambda goal: GoalResponse.ACCEPT,
            cancel_callback=lambda handle: CancelResponse.ACCEPT, callback_group=self.group)
        against = ''
        if self.references is not None:
            against = (' (+reference where the part id names a model' +
                       (', for parts it does not ACCEPT)'
                        if self.p['reference_policy'] == 'confirm' else ')'))
        self.get_logger().info(
            f"ready: detector '{self.detector.name}'{against}, "
            f"table {self.table.source}, default family '{self.p['default_family']}'")

    def _setup_reference(self):
        """Check that the detector can run on a reference and that the station's settings
        are valid (the cell file read when a distance is 0). Raises StartupError."""
        from humanoid_inspection.cell_geometry import load_cell
        from humanoid_inspection.xray.detector_reference import has_front_end, reference_base
        from humanoid_inspection.xray.part_models import ReferenceCache
        from humanoid_inspection.xray.confirm import POLICIES
        if self.p['reference_policy'] not in POLICIES:
            raise StartupError(f"xray_inspection: reference_policy must be one of "
                               f"{', '.join(POLICIES)}, got '{self.p['reference_policy']}'")
        if not has_front_end(self.detector):
            raise StartupError(f"xray_inspection: reference_model needs a detector with a "
                               f"front end ('cnn' or 'default'), not '{self.detector.name}'")
        try:
            if not (self.p['source_to_object_mm'] and self.p['source_to_detector_mm']):
                self.cell = load_cell(self.p['cell_file'] or None)
            config = self._station_config((1024, 1024), self.p['default_pixel_pitch_mm'])
        except (ValueError, OSError) as exc:
            raise StartupError(f'xray_inspection: reference_model: {exc}') from exc
        try:       # the network trained against references ('cnn'), loaded before goals
            self.reference_base = reference_base(self.p['detector'])
        except (ValueError, OSError) as exc:
            raise StartupError(f'xray_inspection: reference_model: {exc}') from exc
        # the station's tube spectrum (spekpy: ~3 s the first time in a process) is built
        # here, not in the first part's inspection
        from humanoid_inspection.xray.simulator import transmission_table
        transmission_table(config)
        self.references = ReferenceCache(self.p['reference_cache_size'])
        self.get_logger().info(
            f'reference model on: SOD {config.sod_mm:g} mm, SDD {config.sdd_mm:g} mm, '
            f'{config.kv:g} kV, {config.mas:g} mAs')

    def _station_config(self, shape, pitch):
        from humanoid_inspection.xray.part_models import station_acquisition
        return station_acquisition(
            shape, pitch, self.p['source_to_object_mm'], self.p['source_to_detector_mm'],
            self.p['tube_kv'], self.p['tube_mas'], cell=self.cell)

    def _detector_for(self, part_id, image, pitch):
        """(detector, why not against the model or None): the part's ReferenceDetector when
        reference_model is on and the id names a model, else the node's detector."""
        from humanoid_inspection.xray.part_models import reference_detector
        if self.references is None:
            return self.detector, None
        try:
            config = self._station_config(image.shape[:2], pitch)
            return reference_detector(part_id, self.reference_base, config, self.references,
                                      image_only=self.detector), None
        except ValueError as exc:
            return self.detector, f'no model: {exc}'

    # ----------------------------------------------------------------- goal handling
    def _geometry(self, goal):
        """Pitch, magnification, family of the goal (0/empty = defaults). Raises."""
        if not goal.part_id.strip():
            raise InspectionAborted('invalid goal: empty part_id')
        pitch, mag = float(goal.pixel_pitch_mm), float(goal.magnification)
        for name, value in (('pixel_pitch_mm', pitch), ('magnification', mag)):
            if not math.isfinite(value) or value < 0:
                raise InspectionAborted(f'invalid goal: {name} must be finite and >= 0 '
                                        f'(0 = node default), got {value}')
        pitch = pitch or self.p['default_pixel_pitch_mm']
        mag = mag or self.p['default_magnification']
        family = goal.part_family or self.p['default_family']
        try:
            self.table.zones(family)
        except ValueError as exc:
            raise InspectionAborted(f'invalid goal: {exc}') from None
        return pitch, mag, family

    def _acquire(self, goal_handle, part_id):
        """Call xray/acquire asynchronously; return the response. Raises InspectionAborted."""
        timeout = self.p['acquire_timeout_s']
        deadline = time.monotonic() + timeout
        while not self.acquire_client.service_is_ready():
            self._check_cancel(goal_handle)
            if time.monotonic() > deadline:
                raise InspectionAborted(
                    f'xray/acquire service not available after {timeout:.1f} s')
            time.sleep(0.05)
        future = self.acquire_client.call_async(AcquireRadiograph.Request(part_id=part_id))
        while not future.done():
            self._check_cancel(goal_handle)
            if time.monotonic() > deadline:
                future.cancel()
                raise InspectionAborted(f'xray/acquire did not answer within {timeout:.1f} s')
            time.sleep(0.01)
        response = future.result()
        if response is None or not response.success:
            reason = response.message if response is not None else 'no response'
            raise InspectionAborted(f'xray/acquire failed: {reason}')
        return response

    @staticmethod
    def _check_cancel(goal_handle):
        from humanoid_inspection.xray.detector import InspectionCancelled
        if goal_handle.is_cancel_requested:
            raise InspectionCancelled('inspection cancelled')

    def _feedback(self, goal_handle, stage, progress):
        fb = InspectPart.Feedback(stage=stage, progress=float(progress))
        goal_handle.publish_feedback(fb)

    def execute(self, goal_handle):
        """Run one inspection; always returns a Result (success false + reason on failure)."""
        from humanoid_inspection.xray.detector import InspectionCancelled
        goal = goal_handle.request
        t0 = time.perf_counter()
        stage_times = {}
        try:
            pitch, mag, family = self._geometry(goal)
            msg_image = goal.radiograph
            if goal.acquire:
                self._feedback(goal_handle, 'acquire', 0.0)
                t = time.perf_counter()
                resp = self._acquire(goal_handle, goal.part_id)
                stage_times['acquire'] = time.perf_counter() - t
                msg_image = resp.radiograph
                if not goal.pixel_pitch_mm and resp.pixel_pitch_mm > 0:
                    pitch = float(resp.pixel_pitch_mm)
                if not goal.magnification and resp.magnification > 0:
                    mag = float(resp.magnification)
                if not goal.part_family and resp.part_family:
                    family = resp.part_family if resp.part_family in self.table.families \
                        else family
            self._feedback(goal_handle, 'validate', 0.05)
            try:
                image = image_to_numpy(msg_image, allowed=ACCEPTED_ENCODINGS)
            except ImageConversionError as exc:
                raise InspectionAborted(f'radiograph rejected: {exc}') from None
            try:
                outcome, detector, image_only, screened = self._inspect(
                    goal_handle, image, pitch, mag, family)
            except ValueError as exc:
                raise InspectionAborted(f'radiograph rejected: {exc}') from None
            if detector is not self.detector:
                image_only = self._reference_outcome(goal.part_id, detector, outcome)
            self._feedback(goal_handle, 'publish', 0.95)
            self._check_cancel(goal_handle)
            t = time.perf_counter()
            path = self._save(image, goal.part_id)
            result_msg = self._result_msg(goal, msg_image.header, outcome, stage_times, path)
            self.results_pub.publish(result_msg)
            self._publish_pictures(image, outcome, msg_image.header, pitch)
            stage_times['publish'] = time.perf_counter() - t
            result_msg.stage_names = list(result_msg.stage_names) + ['publish']
            result_msg.stage_times_s = list(result_msg.stage_times_s) + [stage_times['publish']]
            result_msg.total_time_s = float(time.perf_counter() - t0)
            goal_handle.succeed()
            message = outcome.verdict
            if screened is not None and not image_only:
                message += f' (confirmed against the model; {self.detector.name} alone: ' \
                    f'{screened.verdict})'
            if image_only:
                message += f' (image-only: {image_only})'
                self.get_logger().info(f'{goal.part_id}: inspected image-only: {image_only}')
            self.get_logger().info(f'{goal.part_id}: {outcome.verdict} by {outcome.detector} '
                                   f'({len(outcome.defects)} defect(s), '
                                   f'{result_msg.total_time_s:.3f} s)')
            return InspectPart.Result(success=True, message=message, result=result_msg)
        except InspectionCancelled:
            goal_handle.canceled()
            self.get_logger().info(f'{goal.part_id}: inspection cancelled')
            return InspectPart.Result(success=False, message='inspection cancelled')
        except InspectionAborted as exc:
            goal_handle.abort()
            self.get_logger().warning(f'{goal.part_id or "<no id>"}: {exc}')
            return InspectPart.Result(success=False, message=str(exc))

    def _inspect(self, goal_handle, image, pitch, mag, family):
        """(outcome, detector that ran last, why the model was not used or None, the
        image-only screen's outcome where reference_policy 'confirm' went on to the model).

        Raises:
            ValueError: a bad radiograph. InspectionCancelled: cancelled.
        """
        from humanoid_inspection.xray.confirm import inspect_confirmed
        from humanoid_inspection.xray.pipeline import inspect_radiograph
        part_id = goal_handle.request.part_id
        checks = {'should_cancel': lambda: goal_handle.is_cancel_requested,
                  'progress': lambda s, f: self._feedback(goal_handle, s, f)}
        if self.references is None or self.p['reference_policy'] != 'confirm':
            detector, why = self._detector_for(part_id, image, pitch)
            return (inspect_radiograph(image, pitch, mag, family, detector=detector,
                                       table=self.table, **checks), detector, why, None)
        chosen = [self.detector, None]

        def confirmer():
            chosen[:] = self._detector_for(part_id, image, pitch)
            return chosen[0] if chosen[0] is not self.detector else None
        outcome, screened = inspect_confirmed(image, pitch, mag, family, self.detector,
                                              confirmer, self.table, **checks)
        return outcome, chosen[0], chosen[1], screened

    def _reference_outcome(self, part_id, detector, outcome):
        """Name what ran, split the registration's time off 'detect', log the registration;
        return why the model was not used (None when it was)."""
        from humanoid_inspection.xray.detector_reference import account_registration
        from humanoid_inspection.xray.simulator import pose_yaw
        why = account_registration(detector, outcome)
        est = detector.last_estimate
        if est is not None:
            x, y = est.pose[0, 3], est.pose[1, 3]
            yaw = math.degrees(pose_yaw(est.pose))
            self.get_logger().info(
                f'{part_id}: registered to its model: ECC correlation {est.correlation:.5f}, '
                f'part at ({x:.2f}, {y:.2f}) mm, yaw {yaw:.2f} deg, scale {est.scale:.5f}, '
                f'{est.seconds:.2f} s')
        if why is not None:
            self.get_logger().warning(f'{part_id}: model not used: {detector.last_fallback}')
        return why

    # ----------------------------------------------------------------- outputs
    def _save(self, image, part_id) -> str:
        folder = self.p['save_radiographs_dir']
        if not folder:
            return ''
        import cv2
        Path(folder).mkdir(parents=True, exist_ok=True)
        safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in part_id)[:80]
        path = os.path.join(folder, f'{safe}_{time.strftime("%Y%m%dT%H%M%S")}.png')
        if image.dtype == np.uint16 or image.dtype == np.uint8:
            out = image
        else:
            lo, hi = float(image.min()), float(image.max())
            out = ((image - lo) * (65535.0 / max(hi - lo, 1e-12))).astype(np.uint16)
        cv2.imwrite(path, out)
        return path

    def _result_msg(self, goal, header, outcome, stage_times, path) -> InspectionResult:
        msg = InspectionResult()
        msg.header = header
        msg.header.frame_id = header.frame_id or self.p['detector_frame_id']
        if msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0:
            msg.header.stamp = self.get_clock().now().to_msg()
        msg.part_id = goal.part_id
        msg.part_family = outcome.family
        msg.verdict = outcome.verdict
        msg.reasons = list(outcome.reasons)
        msg.detector = outcome.detector
        for d in outcome.defects:
            x0, y0, x1, y1 = (int(v) for v in d.box_xyxy)
            mask = numpy_to_image((d.mask.astype(np.uint8) * 255), 'mono8')
            msg.defects.append(XrayDefect(
                kind=d.kind, confidence=float(d.confidence), x_min_px=x0, y_min_px=y0,
                x_max_px=x1, y_max_px=y1, mask=mask, size_mm=float(d.size_mm),
                area_mm2=float(d.area_mm2), contrast=float(d.contrast), zone=d.zone,
                severity_level=int(d.severity_level)))
        times = dict(stage_times)
        times.update(outcome.stage_times_s)
        msg.stage_names = list(times)
        msg.stage_times_s = [float(v) for v in times.values()]
        msg.total_time_s = float(sum(times.values()))
        msg.radiograph_path = path
        return msg

    def _publish_pictures(self, image, outcome, header, pitch):
        from humanoid_inspection.xray.pipeline import KIND_COLOURS_RGB, render_overlay
        frame = header.frame_id or self.p['detector_frame_id']
        if self.p['publish_overlay']:
            overlay = numpy_to_image(render_overlay(image, outcome), 'rgb8')
            overlay.header.frame_id = frame
            overlay.header.stamp = self.get_clock().now().to_msg()
            self.overlay_pub.publish(overlay)
        markers = MarkerArray()
        markers.markers.append(Marker(action=Marker.DELETEALL))
        h, w = image.shape[:2]
        m_per_px = pitch / 1000.0
        for i, d in enumerate(outcome.defects):
            x0, y0, x1, y1 = d.box_xyxy
            mk = Marker(ns='xray_defects', id=i, type=Marker.CUBE, action=Marker.ADD)
            mk.header.frame_id = frame
            mk.pose.position.x = ((x0 + x1) / 2 - w / 2) * m_per_px
            mk.pose.position.y = ((y0 + y1) / 2 - h / 2) * m_per_px
            mk.pose.orientation.w = 1.0
            mk.scale.x = max(1, x1 - x0) * m_per_px
            mk.scale.y = max(1, y1 - y0) * m_per_px
            mk.scale.z = 0.001
            r, g, b = KIND_COLOURS_RGB.get(d.kind, (255, 0, 255))
            mk.color = ColorRGBA(r=r / 255, g=g / 255, b=b / 255, a=0.8)
            mk.text = f'{d.kind} {d.size_mm:.1f} mm'
            markers.markers.append(mk)
        self.markers_pub.publish(markers)


def main(args=None) -> int:
    """Console script `xray_inspection`."""
    return run_node(XrayInspectionNode, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
