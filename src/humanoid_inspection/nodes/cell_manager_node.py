"""cell_manager node: runs the inspection cycle (action run_inspection_cycle) over ROS.

The cycle itself is pure logic (humanoid_inspection.cell.cycle); this node implements its
CellServices with ROS clients: perception/detections (topic), affordance/predict (srv),
pick_place (action), xray/acquire (srv) + inspect_part (action), and the simulation's ground
truth service when one is configured (report only, never used for a decision). Every call is
asynchronous with a timeout, on a ReentrantCallbackGroup under a MultiThreadedExecutor. It
publishes cell/status (CellStatus) on every event and at status_rate_hz, and diagnostics.
"""

import json
import threading
import time
from typing import Optional

import numpy as np

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from humanoid_inspection_interfaces.action import InspectPart, PickPlace, RunInspectionCycle
from humanoid_inspection_interfaces.msg import Affordance, CellStatus, DetectionArray
from humanoid_inspection_interfaces.srv import AcquireRadiograph, PredictAffordance
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from humanoid_inspection.cell.cycle import (
    CellServices, CycleConfig, Grasp, Grasps, Inspection, InspectionCycle, MoveOutcome,
    PartSighting, Perception, ServiceUnavailable)
from humanoid_inspection.cell.handover import SpotLook, take_from_spot
from humanoid_inspection.cell.places import (approach_axis, object_box_in_base,
                                             object_box_in_grasp, pose_from_quaternion)
from humanoid_inspection.cell.records import RecordsStore
from humanoid_inspection.nodes.conversions import ImageConversionError, image_to_numpy
from humanoid_inspection.nodes.node_support import (
    Param, StartupError, declare_typed_parameters, reject_unknown_parameters, run_node)
from humanoid_inspection.nodes.service_calls import call_resending

ENDED_STATUSES = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED,
                  GoalStatus.STATUS_ABORTED)
RESULT_REASK_S = 5.0     # a goal this long ended without its result arriving: ask again


def wait_action_result(handle, timeout: float, what: str, on_tick=None, log=None,
                       reask_s: float = RESULT_REASK_S):
    """The wrapped result (status, result) of an accepted goal, waited for up to timeout (s).

    The result is asked for once more whenever the goal's status (the action's status topic)
    has said for reask_s that the goal ended but no result came: a result response that DDS
    lost would otherwise hold the cycle until the timeout (the server keeps the result).
    on_tick() is called every 50 ms while waiting (cancel checks); log(line) gets a line
    for each repeated request.

    Raises:
        ServiceUnavailable: no result within timeout, or the result request failed.
    """
    future = handle.get_result_async()
    deadline = time.monotonic() + timeout
    ended_at = None
    while not future.done():
        if on_tick is not None:
            on_tick()
        now = time.monotonic()
        if now > deadline:
            raise ServiceUnavailable(f'{what}: no result within {timeout:.0f} s')
        if handle.status in ENDED_STATUSES:
            ended_at = now if ended_at is None else ended_at
            if now - ended_at >= reask_s:
                if log is not None:
                    log(f'{what}: the goal ended {now - ended_at:.0f} s ago and its result '
                        'has not arrived; asking for it again')
                future = handle.get_result_async()
                ended_at = now
        time.sleep(0.05)
    exc = future.exception()
    if exc is not None:
        raise ServiceUnavailable(f'{what}: {exc}')
    return future.result()


PARAMS = (
    Param('records_db', 'runs/cell/cell.db', 'records database (SQLite); radiographs beside it'),
    Param('cell_config', '', 'cell geometry YAML; empty = the package config/cell.yaml'),
    Param('arm', '', 'arm for pick_place: left, right or empty = manipulation chooses'),
    Param('base_frame', 'base_link', 'frame of the place poses'),
    Param('min_detection_score', 0.3, 'detections below this score are ignored', 0.0, 1.0),
    Param('max_grasp_attempts', 3, 'grasp attempts per part (next candidate each)', 1, 20),
    Param('xray_attempts', 2, 'acquire + inspect attempts per part', 1, 10),
    Param('sort_attempts', 2, 'attempts to move a part from the fixture to its bin', 1, 10),
    Param('max_consecutive_failures', 3, 'stop the cycle after this many failed parts', 1, 100),
    Param('skip_tolerance_px', 25.0, 'a sighting this close to a skipped part is skipped (px)',
          0.0, 1000.0),
    Param('review_destination', 'review', 'where REVIEW parts go (cell.yaml review location)'),
    Param('review_capacity', 1, 'parts the review location holds (0 = no limit)', 0, 100),
    Param('review_overflow', 'reject_bin', 'where parts for review go once the review location '
          'is full (quarantine); empty = always the review location'),
    Param('save_snapshots', True, 'store a head-camera picture per part'),
    Param('handover_destinations', ['accept_bin', 'reject_bin'],
          'destinations reached from the fixture via the table hand-over spot (one arm cannot '
          'reach both); others are tried directly first'),
    Param('handover_search_m', 0.08, 'the part is looked for this close to the hand-over spot '
          '(m)', 0.0, 1.0),
    Param('park_after_handover', True, 'send the robot to rest (rest_service) after a part '
          'was set on the hand-over spot or a grasp failed, so the other arm can take it'),
    Param('place_drop_m', 0.0, 'clearance above the fixture / review surface at release (m)',
          0.0, 0.2),
    Param('bin_drop_m', 0.05, 'clearance above a bin floor at release (m)', 0.0, 0.5),
    Param('max_centre_offset_m', 0.08, 'a grasp point this close to the part\'s centre (m) is '
          'placed so that the centre lands on the target centre', 0.0, 0.5),
    Param('server_wait_s', 10.0, 'wait for a service/action server to appear (s)', 0.1, 300.0),
    Param('perception_timeout_s', 20.0, 'wait for fresh detections (s)', 0.5, 600.0),
    Param('affordance_timeout_s', 20.0, 'affordance/predict timeout (s)', 0.5, 600.0),
    Param('affordance_retry_s', 30.0, 'take newer detections while affordance/predict has '
          'no depth frame for them (s)', 0.0, 120.0),
    Param('pick_place_timeout_s', 300.0, 'pick_place action timeout (s)', 1.0, 3600.0),
    Param('service_resend_s', 10.0, 'an affordance/predict or xray/acquire request unanswered '
          'this long is sent again (a reply lost while DDS discovery completes; both are '
          'safe to serve twice); their timeouts bound the whole call (s)', 0.5, 600.0),
    Param('acquire_timeout_s', 60.0, 'xray/acquire timeout (s)', 0.5, 600.0),
    Param('inspect_timeout_s', 60.0, 'inspect_part timeout (s)', 0.5, 600.0),
    Param('ground_truth_service', '', 'simulation ground-truth service; empty = none'),
    Param('rest_service', 'manipulation/rest', 'std_srvs/Trigger that sends both arms to the '
          'ready pose (the manipulation node); empty = none (no parking, no rest)'),
    Param('rest_answer_s', 30.0, 'no answer from rest_service this long after a request -> '
          'send it again (a reply lost while DDS discovery completes; a rest from rest is a '
          'no-op); pick_place_timeout_s bounds the whole call (s)', 1.0, 600.0),
    Param('status_rate_hz', 1.0, 'cell/status and diagnostics rate (Hz)', 0.1, 50.0),
)

# pick_place errors meaning "this motion cannot be planned", nothing moved
REACH_ERRORS = ('unreachable', 'plan_failed', 'goal_in_collision', 'invalid_goal')

MOVE_ERROR_NAMES = {
    0: 'ok', 1: 'invalid_goal', 2: 'unreachable', 3: 'start_in_collision',
    4: 'goal_in_collision', 5: 'plan_failed', 6: 'execution_failed', 7: 'canceled',
    8: 'estop', 9: 'grasp_failed', 10: 'start_out_of_limits', 11: 'busy'}


def _stamp_s(stamp) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def defect_to_dict(d) -> dict:
    """XrayDefect message -> JSON-serialisable dict for the records."""
    return {'kind': d.kind, 'confidence': float(d.confidence),
            'box_xyxy': [int(d.x_min_px), int(d.y_min_px), int(d.x_max_px), int(d.y_max_px)],
            'size_mm': float(d.size_mm), 'area_mm2': float(d.area_mm2),
            'contrast': float(d.contrast), 'zone': d.zone,
            'severity_level': int(d.severity_level)}


def truth_for_part(table, part_id: str) -> Optional[dict]:
    """The entry of part_id in the simulation's ground truth ({'parts': [...]} or {id: ...})."""
    parts = table.get('parts', table) if isinstance(table, dict) else table
    if isinstance(parts, dict):
        entry = parts.get(part_id)
        return entry if isinstance(entry, dict) else None
    for entry in parts or []:
        if isinstance(entry, dict) and entry.get('part_id') == part_id:
            return {k: v for k, v in entry.items()
                    if k not in ('position', 'quaternion_wxyz', 'yaw', 'held_by')}
    return None


def _like_grasp(candidates, reference: Grasp):
    """Candidates re-ranked: same closing direction as reference first (it held the part).

    The gripper is symmetric, so closing axes y and -y count as the same; ties keep the
    affordance ranking.
    """
    from scipy.spatial.transform import Rotation
    ref_y = Rotation.from_quat(reference.orientation).as_matrix()[:, 1]

    def key(item):
        rank, g = item
        y = Rotation.from_quat(g.orientation).as_matrix()[:, 1]
        return (-round(abs(float(ref_y @ y)), 1), rank)
    return [g for _, g in sorted(enumerate(candidates), key=key)]


def affordance_to_grasp(index: int, a: Affordance) -> Grasp:
    """Affordance message (base frame) -> Grasp carrying the message as handle."""
    p, q = a.grasp_pose.position, a.grasp_pose.orientation
    return Grasp(index, float(a.score), float(a.gripper_opening_m), (p.x, p.y, p.z),
                 (q.x, q.y, q.z, q.w), handle=a)


def grasp_to_affordance(grasp: Grasp, frame: str, object_id: str) -> Affordance:
    """Grasp -> Affordance message (approach = the pose's x axis)."""
    a = Affordance()
    a.header.frame_id = frame
    a.object_id = object_id
    a.grasp_pose = Pose(position=Point(x=float(grasp.position[0]), y=float(grasp.position[1]),
                                       z=float(grasp.position[2])),
                        orientation=Quaternion(x=float(grasp.orientation[0]),
                                               y=float(grasp.orientation[1]),
                                               z=float(grasp.orientation[2]),
                                               w=float(grasp.orientation[3])))
    ax = approach_axis(grasp.orientation)
    a.approach = Vector3(x=float(ax[0]), y=float(ax[1]), z=float(ax[2]))
    a.gripper_opening_m = float(grasp.opening_m)
    a.score = float(grasp.score)
    a.pixel_space = 'original_image'
    return a


class RosCellServices(CellServices):
    """CellServices over ROS clients of the cell_manager node."""

    def __init__(self, node: 'CellManagerNode'):
        self.node = node
        self.p = node.params
        self._places = None
        self._cell = None
        self._pick_area = None
        self._camera_T = None
        self._active_goal = None
        self._via_table = set(node.params['handover_destinations'])
        self.cancel_requested = lambda: False

    # -- plumbing ---------------------------------------------------------------------------
    def _wait_future(self, future, timeout: float, what: str):
        event = threading.Event()
        future.add_done_callback(lambda _f: event.set())
        if not event.wait(timeout):
            raise ServiceUnavailable(f'{what}: no answer within {timeout:.0f} s')
        exc = future.exception()
        if exc is not None:
            raise ServiceUnavailable(f'{what}: {exc}')
        return future.result()

    def _call_resending(self, client, request, answer_within_s: float, total_s: float,
                        what: str):
        """An idempotent service call sent again when unanswered (nodes/service_calls.py)."""
        try:
            return call_resending(client, request, answer_within_s=answer_within_s,
                                  total_s=total_s, what=what,
                                  log=self.node.get_logger().warning)
        except TimeoutError as exc:
            raise ServiceUnavailable(str(exc)) from None

    def _ready(self, client, what: str) -> None:
        wait = self.p['server_wait_s']
        ok = client.wait_for_server(timeout_sec=wait) if isinstance(client, ActionClient) \
            else client.wait_for_service(timeout_sec=wait)
        if not ok:
            raise ServiceUnavailable(f'{what} is not available (waited {wait:.0f} s; is its node '
                                     'running?)')

    def cell(self):
        """The cell geometry (config/cell.yaml or the cell_config parameter), loaded once."""
        if self._cell is None:
            from humanoid_inspection.cell_geometry import load_cell
            self._cell = load_cell(self.p['cell_config'] or None)
        return self._cell

    def places(self):
        """PlaceTargets from the cell geometry (loaded once)."""
        if self._places is None:
            from humanoid_inspection.cell.places import targets_from_cell
            self._places = targets_from_cell(self.cell(), self.p['place_drop_m'],
                                             self.p['bin_drop_m'])
        return self._places

    # -- CellServices --------------------------------------------------------------------------
    def sim_time(self) -> Optional[float]:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def perceive(self) -> Perception:
        since = self.sim_time()
        retry_until = time.monotonic() + self.p['affordance_retry_s']
        while True:
            seen, stamp, unpaired = self._perceive_once(since)
            # affordance never paired these detections with a depth frame (a large depth
            # image lost on the way): look again with newer detections
            if not unpaired or time.monotonic() > retry_until:
                return seen
            self.node.get_logger().info(f'detections of {stamp:.3f} s not paired with depth '
                                        'by affordance; taking newer ones')
            since = stamp + 1e-6

    def _perceive_once(self, since: float):
        """(Perception, detections stamp, True if affordance had no depth pair for them)."""
        node = self.node
        deadline = time.monotonic() + self.p['perception_timeout_s']
        while True:
            with node.lock:
                det = node.latest_detections
                arrived = node.latest_detections_wall
            if det is not None and _stamp_s(det.header.stamp) >= since:
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f'no fresh perception/detections within {self.p["perception_timeout_s"]:.0f}'
                    ' s (is the perception node running and the camera publishing?)')
            time.sleep(0.02)
        stamp = _stamp_s(det.header.stamp)
        with node.lock:
            image_wall = node.image_arrivals.get(stamp)
            snapshot = node.latest_image
        compute = max(0.0, arrived - image_wall) if image_wall is not None else 0.0
        picture = None
        if snapshot is not None:
            try:
                picture = image_to_numpy(snapshot, allowed=('rgb8',))
            except ImageConversionError as exc:
                node.get_logger().warning(f'snapshot skipped: {exc}')
        if det.diagnostic:
            node.get_logger().info(f'perception: {det.diagnostic}')
        sightings = [
            PartSighting(d.id, d.class_id, float(d.score), (d.center_x_px, d.center_y_px), d)
            for d in det.detections if d.score >= self.p['min_detection_score']]
        sightings.sort(key=lambda s: -s.score)
        low = len(det.detections) - len(sightings)
        ignored, kept, unpaired = [], [], False
        area = self.pick_area()
        for s in sightings:
            centre = self._centre_in_base(s.handle)
            why = area.reason_outside(centre) if centre is not None else ''
            if why:
                ignored.append(f'{s.object_id} {why}')
                continue
            s.handle = {'detection': s.handle, 'stamp': det.header.stamp, 'centre': centre,
                        'grasps': None}
            kept.append(s)
        if kept:
            # grasps of the best part now (it also tells whether affordance paired these
            # detections with a depth frame); the others' when the cycle asks (predict_grasps)
            kept[0].handle['grasps'], unpaired = self._predict(kept[0])
        note = '; '.join(([f'{low} detection(s) below score {self.p["min_detection_score"]}']
                          if low else []) + ignored + ([det.diagnostic] if det.diagnostic
                                                       else []))
        return Perception(kept, compute, picture, note), stamp, unpaired

    def _predict(self, sighting: PartSighting):
        """affordance/predict for one sighting of one DetectionArray; (Grasps, unpaired).

        The request names the detections' stamp: the object ids ('obj_N') only mean something
        within one DetectionArray, and grasps of an older frame put the gripper where a part
        was before the last move (the demo's grasps that closed on nothing). One object per
        call: the cycle needs the grasps of the part it takes (~60 ms instead of ~0.4 s for six).
        unpaired is True when affordance failed before considering any candidate (no depth
        frame paired with these detections).
        """
        client = self.node.predict_client
        self._ready(client, 'affordance/predict')
        t0 = time.monotonic()
        resp = self._call_resending(
            client, PredictAffordance.Request(
                object_id=sighting.object_id, in_base_frame=True,
                detections_stamp=sighting.handle['stamp']),
            self.p['service_resend_s'], self.p['affordance_timeout_s'], 'affordance/predict')
        compute = time.monotonic() - t0
        a = resp.candidates
        nothing_tried = not (a.discarded_no_depth or a.discarded_too_wide
                             or a.discarded_other)
        unpaired = not resp.success and nothing_tried
        cands = [c for c in resp.candidates.candidates if c.object_id == sighting.object_id] \
            if resp.success else []
        grasps = [affordance_to_grasp(i, c) for i, c in enumerate(cands)]
        box = self._box_in_base(sighting.handle['detection'])
        if box is not None:
            for g in grasps:
                g.object_box = object_box_in_grasp(g, *box)
        centre = sighting.handle['centre']
        if centre is not None:
            for g in grasps:
                offset = np.asarray(g.position[:2], float) - centre[:2]
                # a wall grasp lies within the part's half size of its centre
                if np.hypot(*offset) <= self.p['max_centre_offset_m']:
                    g.offset_xy = (float(offset[0]), float(offset[1]))
        empty_reason = (resp.message or a.diagnostic or 'no candidate') + (
            f' (discarded: {a.discarded_no_depth} no depth, {a.discarded_too_wide} too wide, '
            f'{a.discarded_other} other)')
        return Grasps(grasps, compute, '' if grasps else empty_reason), unpaired

    def _box_in_base(self, detection):
        """(4x4 pose, extents) of the detection's oriented box in the base frame, or None.

        The camera pose is the rest pose's (as _centre_in_base); the box becomes each grasp's
        object_box, the part the manipulation planner carries after the grasp.
        """
        if self._centre_in_base(detection) is None:
            return None
        p, q, e = detection.pose.position, detection.pose.orientation, detection.size_m
        quat = np.array([q.x, q.y, q.z, q.w], float)
        if not np.all(np.isfinite(quat)) or abs(np.linalg.norm(quat) - 1.0) > 1e-3:
            return None
        return self._camera_T @ pose_from_quaternion((p.x, p.y, p.z), quat), (e.x, e.y, e.z)

    def _centre_in_base(self, detection) -> Optional[np.ndarray]:
        """The detection's 3D centroid in the base frame, the camera at the rest pose.

        The cycle looks at the table from the rest pose (cycle._loop), so the head camera's
        pose is the standing pose's forward kinematics (affordance.camera_pose).
        """
        if detection is None or not getattr(detection, 'has_3d', False):
            return None
        if self._camera_T is None:
            try:
                from humanoid_inspection.affordance.camera_pose import CameraPoseFK
                fk = CameraPoseFK.from_project()
                self._camera_T = fk.camera_in_base(dict(self.cell().robot.standing_pose))
            except Exception as exc:  # no URDF: place by the grasp point alone
                self.node.get_logger().warning(f'no camera pose for part centres: {exc}')
                self._camera_T = np.zeros((4, 4))
        if not self._camera_T.any():
            return None
        p = detection.pose.position
        return (self._camera_T @ np.array([p.x, p.y, p.z, 1.0]))[:3]

    def pick_area(self):
        """The table area parts are picked from (review tray excluded)."""
        if self._pick_area is None:
            from humanoid_inspection.cell.places import PickArea
            self._pick_area = PickArea.from_cell(self.cell())
        return self._pick_area

    def predict_grasps(self, sighting: PartSighting) -> Grasps:
        if sighting.handle['grasps'] is None:
            sighting.handle['grasps'], unpaired = self._predict(sighting)
            if unpaired:
                self._predict_newer(sighting)
        return sighting.handle['grasps']

    def _predict_newer(self, sighting: PartSighting) -> None:
        """Affordance had no depth frame for sighting's detections: the same part, newer ones.

        Up to affordance_retry_s, newer detections are taken and the part is found again in
        them by its centre (within handover_search_m); sighting then names that detection and
        holds its grasps. (perceive() does this for the best part; this is for a part chosen
        later, whose grasps are asked for only now: demo-final3 lost obj_4 as no_grasp after a
        13 s gap in affordance's depth pairs.)
        """
        centre = sighting.handle['centre']
        if centre is None:
            return
        retry_until = time.monotonic() + self.p['affordance_retry_s']
        stamp = _stamp_s(sighting.handle['stamp'])
        while time.monotonic() < retry_until:
            self.node.get_logger().info(
                f'detections of {stamp:.3f} s not paired with depth by affordance; looking '
                f'for {sighting.object_id} in newer ones')
            try:
                seen, stamp, first_unpaired = self._perceive_once(stamp + 1e-6)
            except ServiceUnavailable:
                return
            near = [(float(np.hypot(*(s.handle['centre'][:2] - centre[:2]))), s)
                    for s in seen.sightings if s.handle['centre'] is not None]
            near = [(d, s) for d, s in near if d <= self.p['handover_search_m']]
            if not near:
                continue
            found = min(near, key=lambda x: x[0])[1]
            # the best part's grasps come with the look (and first_unpaired with them)
            unpaired = first_unpaired if found is seen.sightings[0] else False
            if found.handle['grasps'] is None:
                found.handle['grasps'], unpaired = self._predict(found)
            sighting.object_id, sighting.pixel_xy = found.object_id, found.pixel_xy
            sighting.handle = found.handle
            if not unpaired:
                return

    def _run_pick_place(self, object_id: str, affordances, place_position, place_quat,
                        what: str, carried: Optional[Grasp] = None) -> MoveOutcome:
        """One pick_place goal; carried: the grasp whose object_box is the part's box."""
        client = self.node.pick_place_client
        self._ready(client, 'pick_place')
        goal = PickPlace.Goal()
        box = object_box_in_base(carried) if carried is not None else None
        if box is not None:
            T, size = box
            from scipy.spatial.transform import Rotation
            qx, qy, qz, qw = Rotation.from_matrix(T[:3, :3]).as_quat()
            goal.object_pose.header.frame_id = self.p['base_frame']
            goal.object_pose.pose = Pose(
                position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw)))
            goal.object_size_m = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
        goal.object_id = object_id
        goal.grasp_candidates = list(affordances)
        goal.place_pose = PoseStamped()
        goal.place_pose.header.frame_id = self.p['base_frame']
        goal.place_pose.header.stamp = self.node.get_clock().now().to_msg()
        goal.place_pose.pose.position = Point(x=float(place_position[0]),
                                              y=float(place_position[1]),
                                              z=float(place_position[2]))
        goal.place_pose.pose.orientation = Quaternion(
            x=float(place_quat[0]), y=float(place_quat[1]), z=float(place_quat[2]),
            w=float(place_quat[3]))
        goal.arm = self.p['arm']
        waited_for_state = time.monotonic() + self.p['server_wait_s']
        while True:
            out = self._pick_place_once(client, goal, what)
            # right after a start the manipulation node may not have joint states yet
            if out.error != 'plan_failed' or 'joint_states' not in out.message \
                    or time.monotonic() > waited_for_state:
                return out
            time.sleep(1.0)

    def _pick_place_once(self, client, goal, what: str) -> MoveOutcome:
        handle = self._wait_future(client.send_goal_async(goal), self.p['server_wait_s'],
                                   f'pick_place ({what}) goal')
        if not handle.accepted:
            return MoveOutcome(False, 'busy', f'pick_place rejected the goal ({what})')
        self._active_goal = handle
        canceled = []

        def cancel_when_asked():
            if not canceled and self.cancel_requested():
                handle.cancel_goal_async()
                canceled.append(True)
        try:
            wrapped = wait_action_result(handle, self.p['pick_place_timeout_s'],
                                         f'pick_place ({what})', cancel_when_asked,
                                         self.node.get_logger().warning)
        except ServiceUnavailable:
            handle.cancel_goal_async()
            raise
        finally:
            self._active_goal = None
        r = wrapped.result
        error = MOVE_ERROR_NAMES.get(int(r.error_code), f'error_{r.error_code}')
        if wrapped.status == GoalStatus.STATUS_CANCELED:
            error = 'canceled'
        elif not r.success and int(r.error_code) == 0:
            error = 'execution_failed'
            r.message = r.message or ('pick_place ended without a result (status '
                                      f'{wrapped.status}; see the manipulation log)')
        return MoveOutcome(bool(r.success), 'ok' if r.success else error, r.message,
                           r.arm_used, int(r.grasp_index), float(r.planning_time_s),
                           float(r.trajectory_duration_s))

    def pick_place(self, sighting, grasps, destination) -> MoveOutcome:
        if self.node.rest_client is not None:
            # a pick may have turned the waist; rest is a no-op when already there
            why = self.park('left')
            if why:
                self.node.get_logger().warning(f'robot not at rest before the pick: {why}')
        pos, quat = self.places().place_pose(destination, grasps[0])
        out = self._run_pick_place(sighting.object_id, [g.handle for g in grasps], pos, quat,
                                   f'{sighting.object_id} -> {destination}', grasps[0])
        if out.error == 'grasp_failed' and out.arm in ('left', 'right') \
                and self.p['park_after_handover']:
            # a failed grasp leaves the hand at the part: lift it away before the retry
            why = self.park(out.arm)
            if why:
                self.node.get_logger().warning(f'{out.arm} arm not parked: {why}')
        return out

    def move_from_fixture(self, grasp, destination) -> MoveOutcome:
        """Fixture -> destination directly, or via the part's table spot (two arms).

        The fixture (robot's left) and the bins (robot's right) are not both within one arm's
        reach: when the direct plan fails for reach/collision reasons, the part is set back on
        the table spot it was picked from and the planner (free to choose the arm) takes it
        from there to the destination. A destination that needed the table once goes that way
        directly afterwards.
        """
        if grasp is None:
            return MoveOutcome(False, 'invalid_goal', 'no grasp stored for the part in the '
                               'fixture')
        places = self.places()
        in_fixture = places.fixture_grasp(grasp)
        from_fixture = grasp_to_affordance(in_fixture, self.p['base_frame'], 'fixture_part')
        planning = 0.0
        if destination not in self._via_table:
            pos, quat = places.place_pose(destination, grasp)
            out = self._run_pick_place('fixture_part', [from_fixture], pos, quat,
                                       f'fixture -> {destination}', in_fixture)
            if out.success or out.error not in REACH_ERRORS:
                return out
            self.node.get_logger().info(
                f'fixture -> {destination} is out of one arm\'s reach ({out.message[:120]}); '
                'handing over via the table')
            self._via_table.add(destination)
            planning = out.planning_time_s
        pos, quat = places.return_pose(grasp)
        first = self._run_pick_place('fixture_part', [from_fixture], pos, quat,
                                     'fixture -> table hand-over spot', in_fixture)
        planning += first.planning_time_s
        if not first.success:
            first.planning_time_s = planning
            return first
        if self.p['park_after_handover'] and first.arm in ('left', 'right'):
            why = self.park(first.arm)
            if why:
                self.node.get_logger().warning(f'{first.arm} arm not parked: {why}')
        second = self._pick_from_handover_spot(grasp, destination, pos)
        second.planning_time_s += planning
        second.duration_s += first.duration_s
        second.arm = f'{first.arm}+{second.arm}'
        if not second.success:
            second.fixture_cleared = True
            second.message = (f'part left on the table hand-over spot: {second.error}: '
                              f'{second.message}')
            if second.error == 'grasp_failed':
                second.error = 'execution_failed'
        return second

    def park(self, side: str) -> str:
        """Move the robot to rest (``rest_service``, both arms) so side's hand is clear.

        Returns:
            '' when done, else the reason.
        """
        if self.node.rest_client is None:
            return f'{side} arm not parked: no rest_service configured'
        try:
            return '' if self.go_to_rest() else f'{self.p["rest_service"]} failed'
        except ServiceUnavailable as exc:
            return str(exc)

    def _pick_from_handover_spot(self, grasp: Grasp, destination: str, spot) -> MoveOutcome:
        """Find the part again on the table spot (perception + affordance) and take it on.

        The part rarely lands exactly where it was first grasped (it settles in the fixture
        and on the table), and a grasp that closes on nothing can push it: every grasp
        follows its own look at the spot (cell/handover.py).
        """
        places = self.places()
        # the part's centre was put offset_xy from the grasp point on the spot
        centre = np.asarray(spot[:2], float) - np.asarray(grasp.offset_xy, float)

        def look() -> SpotLook:
            try:
                seen = self.perceive()
            except ServiceUnavailable as exc:
                return SpotLook([], f'hand-over spot not seen again ({exc})')
            distances = [(float(np.hypot(*(s.handle['centre'][:2] - centre))), s)
                         for s in seen.sightings if s.handle['centre'] is not None]
            near = [(d, s) for d, s in distances if d <= self.p['handover_search_m']]
            if not near:
                nearest = min((d for d, _ in distances), default=None)
                return SpotLook([], (
                    f'no part seen within {self.p["handover_search_m"]:.2f} m of its centre '
                    f'({centre[0]:.3f}, {centre[1]:.3f}) m, base frame; '
                    f'{len(seen.sightings)} part(s) seen' +
                    (f', the nearest {nearest:.3f} m away' if nearest is not None else '')))
            try:
                found = self.predict_grasps(min(near, key=lambda x: x[0])[1])
            except ServiceUnavailable as exc:
                return SpotLook([], f'seen again, but no grasp ({exc})')
            candidates = _like_grasp(found.candidates, grasp)
            return SpotLook(candidates, '' if candidates else
                            f'seen again, but no grasp: {found.message}')

        def attempt(candidates) -> MoveOutcome:
            pos, quat = places.place_pose(destination, candidates[0])
            return self._run_pick_place(candidates[0].handle.object_id or 'staged_part',
                                        [g.handle for g in candidates], pos, quat,
                                        f'table hand-over spot -> {destination}', candidates[0])

        blind = Grasp(0, grasp.score, grasp.opening_m, grasp.position, grasp.orientation,
                      offset_xy=grasp.offset_xy, object_box=grasp.object_box)
        blind.handle = grasp_to_affordance(blind, self.p['base_frame'], 'staged_part')
        park = self.park if self.p['park_after_handover'] else \
            (lambda arm: 'park_after_handover is false')
        return take_from_spot(look, attempt, park, blind, self.p['max_grasp_attempts'],
                              self.node.get_logger().warning)

    def acquire_and_inspect(self, expected_part_id: str = '') -> Inspection:
        node = self.node
        self._ready(node.acquire_client, 'xray/acquire')
        t0 = time.monotonic()
        resp = self._call_resending(
            node.acquire_client, AcquireRadiograph.Request(part_id=expected_part_id),
            self.p['service_resend_s'], self.p['acquire_timeout_s'], 'xray/acquire')
        acquire_s = time.monotonic() - t0
        if not resp.success:
            empty = 'empty' in resp.message.lower()
            return Inspection(False, f'xray/acquire: {resp.message}', fixture_empty=empty,
                              acquire_s=acquire_s)
        try:
            image = image_to_numpy(resp.radiograph, allowed=('mono16',))
        except ImageConversionError as exc:
            return Inspection(False, f'xray/acquire returned a bad radiograph: {exc}',
                              acquire_s=acquire_s)
        self._ready(node.inspect_client, 'inspect_part')
        goal = InspectPart.Goal(part_id=resp.part_id, acquire=False, radiograph=resp.radiograph,
                                pixel_pitch_mm=resp.pixel_pitch_mm,
                                magnification=resp.magnification, part_family=resp.part_family)
        handle = self._wait_future(node.inspect_client.send_goal_async(goal),
                                   self.p['server_wait_s'], 'inspect_part goal')
        if not handle.accepted:
            return Inspection(False, 'inspect_part rejected the goal', acquire_s=acquire_s)
        wrapped = wait_action_result(handle, self.p['inspect_timeout_s'], 'inspect_part',
                                     log=node.get_logger().warning)
        r = wrapped.result
        if not r.success:
            return Inspection(False, f'inspect_part: {r.message}', acquire_s=acquire_s)
        res = r.result
        return Inspection(
            True, r.message, False, resp.part_id or res.part_id,
            resp.part_family or res.part_family, res.verdict, list(res.reasons),
            [defect_to_dict(d) for d in res.defects], res.detector, image,
            float(resp.pixel_pitch_mm), float(resp.magnification), float(res.total_time_s),
            acquire_s)

    def ground_truth(self, part_id: str) -> Optional[dict]:
        client = self.node.truth_client
        if client is None or not part_id or not client.wait_for_service(timeout_sec=1.0):
            return None
        resp = self._call_resending(client, client.srv_type.Request(), 2.0, 6.0, 'ground truth')
        if not resp.success:
            return None
        try:
            table = json.loads(resp.message)
        except ValueError:
            return None
        return truth_for_part(table, part_id)

    def go_to_rest(self) -> bool:
        handle = self._active_goal
        if handle is not None:
            handle.cancel_goal_async()
        client = self.node.rest_client
        if client is None:
            return True
        if not client.wait_for_service(timeout_sec=self.p['server_wait_s']):
            raise ServiceUnavailable(f'{self.p["rest_service"]} is not available')
        from std_srvs.srv import Trigger
        resp = self._call_resending(client, Trigger.Request(), self.p['rest_answer_s'],
                                    self.p['pick_place_timeout_s'], self.p['rest_service'])
        return bool(resp.success)


class CellManagerNode(Node):
    """Serves run_inspection_cycle; publishes cell/status and diagnostics."""

    def __init__(self):
        super().__init__('cell_manager')
        self.params = declare_typed_parameters(self, PARAMS)
        reject_unknown_parameters(self)
        if self.params['arm'] not in ('', 'left', 'right'):
            raise StartupError(f"parameter 'arm' must be left, right or empty, got "
                               f"'{self.params['arm']}'")
        try:
            self.config = CycleConfig(
                max_grasp_attempts=self.params['max_grasp_attempts'],
                xray_attempts=self.params['xray_attempts'],
                sort_attempts=self.params['sort_attempts'],
                max_consecutive_failures=self.params['max_consecutive_failures'],
                skip_tolerance_px=self.params['skip_tolerance_px'],
                review_destination=self.params['review_destination'],
                review_capacity=self.params['review_capacity'],
                review_overflow=self.params['review_overflow'],
                save_snapshots=self.params['save_snapshots'])
            self.store = RecordsStore(self.params['records_db'])
        except Exception as exc:
            raise StartupError(f'cell_manager: {exc}') from exc
        self.lock = threading.Lock()
        self.latest_detections = None
        self.latest_detections_wall = 0.0
        self.latest_image = None
        self.image_arrivals = {}
        self.busy = False
        self.status = CellStatus(state='idle')
        self.last_message = 'idle'
        self.cell_services = RosCellServices(self)

        calls = ReentrantCallbackGroup()
        subs = MutuallyExclusiveCallbackGroup()
        self.status_pub = self.create_publisher(CellStatus, 'cell/status', 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, 'diagnostics', 10)
        self.create_subscription(DetectionArray, 'perception/detections', self._on_detections,
                                 10, callback_group=subs)
        self.create_subscription(Image, 'head_camera/color/image_raw', self._on_image,
                                 qos_profile_sensor_data, callback_group=subs)
        self.predict_client = self.create_client(PredictAffordance, 'affordance/predict',
                                                 callback_group=calls)
        self.acquire_client = self.create_client(AcquireRadiograph, 'xray/acquire',
                                                 callback_group=calls)
        self.pick_place_client = ActionClient(self, PickPlace, 'pick_place',
                                              callback_group=calls)
        self.inspect_client = ActionClient(self, InspectPart, 'inspect_part',
                                           callback_group=calls)
        self.truth_client = None
        if self.params['ground_truth_service']:
            from std_srvs.srv import Trigger
            self.truth_client = self.create_client(Trigger, self.params['ground_truth_service'],
                                                   callback_group=calls)
        self.rest_client = None
        if self.params['rest_service']:
            from std_srvs.srv import Trigger
            self.rest_client = self.create_client(Trigger, self.params['rest_service'],
                                                  callback_group=calls)
        self.server = ActionServer(
            self, RunInspectionCycle, 'run_inspection_cycle', self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=calls)
        self.create_timer(1.0 / self.params['status_rate_hz'], self._publish_periodic,
                          callback_group=subs)
        self.get_logger().info(f'cell_manager ready; records in {self.store.db_path}')

    # -- inputs ---------------------------------------------------------------------------
    def _on_detections(self, msg: DetectionArray) -> None:
        with self.lock:
            self.latest_detections = msg
            self.latest_detections_wall = time.monotonic()

    def _on_image(self, msg: Image) -> None:
        with self.lock:
            self.latest_image = msg
            self.image_arrivals[_stamp_s(msg.header.stamp)] = time.monotonic()
            if len(self.image_arrivals) > 400:
                for key in sorted(self.image_arrivals)[:-200]:
                    del self.image_arrivals[key]

    # -- status ---------------------------------------------------------------------------
    def _publish_status(self) -> None:
        self.status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(self.status)

    def _publish_periodic(self) -> None:
        self._publish_status()
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        cycle = DiagnosticStatus(name='cell_manager: cycle', hardware_id='inspection_cell')
        cycle.level = DiagnosticStatus.ERROR if self.status.state == 'error' \
            else DiagnosticStatus.OK
        cycle.message = self.last_message[:200]
        cycle.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('state', self.status.state), ('parts_done', self.status.parts_done),
            ('accepted', self.status.accepted), ('rejected', self.status.rejected),
            ('review', self.status.review), ('failed', self.status.failed),
            ('records_db', self.store.db_path))]
        deps = DiagnosticStatus(name='cell_manager: dependencies', hardware_id='inspection_cell')
        ready = {
            'affordance/predict': self.predict_client.service_is_ready(),
            'xray/acquire': self.acquire_client.service_is_ready(),
            'pick_place': self.pick_place_client.server_is_ready(),
            'inspect_part': self.inspect_client.server_is_ready(),
            'perception/detections': self.count_publishers('perception/detections') > 0,
        }
        missing = [k for k, v in ready.items() if not v]
        deps.level = DiagnosticStatus.WARN if missing else DiagnosticStatus.OK
        deps.message = f'missing: {", ".join(missing)}' if missing else 'all available'
        deps.values = [KeyValue(key=k, value=str(v)) for k, v in ready.items()]
        arr.status = [cycle, deps]
        self.diag_pub.publish(arr)

    # -- action ---------------------------------------------------------------------------
    def _on_goal(self, _goal) -> GoalResponse:
        with self.lock:
            if self.busy:
                self.get_logger().warning('run_inspection_cycle rejected: a cycle is running')
                return GoalResponse.REJECT
            self.busy = True
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        goal = goal_handle.request
        run_id = time.strftime('run%Y%m%d-%H%M%S')
        result = RunInspectionCycle.Result()
        self.status = CellStatus(state='running', message=f'{run_id} started')
        self._publish_status()
        self.cell_services.cancel_requested = lambda: goal_handle.is_cancel_requested

        def on_event(index, record_id, stage, message):
            if goal_handle.is_cancel_requested:
                self.status.state = 'canceling'
            part = record_id
            if record_id:
                try:
                    part = self.store.get(record_id).part_id or record_id
                except Exception:  # the record is informative here
                    pass
            self.status.current_part_id = part
            self.status.stage = stage
            self.status.message = message
            s = cycle.summary
            self.status.parts_done = s.accepted + s.rejected + s.review + s.failed
            self.status.accepted, self.status.rejected = s.accepted, s.rejected
            self.status.review, self.status.failed = s.review, s.failed
            self.last_message = message
            self._publish_status()
            fb = RunInspectionCycle.Feedback(part_id=part, part_index=max(index, 0),
                                             stage=stage, message=message)
            goal_handle.publish_feedback(fb)
            self.get_logger().info(f'[part {index} {part}] {stage}: {message}')

        cycle = InspectionCycle(self.cell_services, self.store, run_id, self.config,
                                on_event=on_event,
                                cancel_requested=lambda: goal_handle.is_cancel_requested)
        try:
            summary = cycle.run(int(goal.max_parts))
        except Exception as exc:  # a bug or a broken store: report, never hang the client
            self.get_logger().error(f'cycle crashed: {exc!r}')
            self.status = CellStatus(state='error', message=str(exc))
            self.last_message = str(exc)
            self._publish_status()
            result.success = False
            result.message = f'cycle error: {exc}'
            with self.lock:
                self.busy = False
            goal_handle.abort()
            return result
        result.success = summary.success
        result.message = summary.message
        result.accepted, result.rejected = summary.accepted, summary.rejected
        result.review, result.failed = summary.review, summary.failed
        result.parts_done = summary.accepted + summary.rejected + summary.review + summary.failed
        result.part_ids = list(summary.part_ids)
        self.status = CellStatus(state='idle' if summary.success or cycle.canceled else 'error',
                                 parts_done=result.parts_done, accepted=result.accepted,
                                 rejected=result.rejected, review=result.review,
                                 failed=result.failed, message=summary.message)
        self.last_message = summary.message
        self._publish_status()
        self.get_logger().info(f'{run_id}: {summary.message} ({result.accepted} accepted, '
                               f'{result.rejected} rejected, {result.review} review, '
                               f'{result.failed} failed)')
        with self.lock:
            self.busy = False
        if cycle.canceled and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif summary.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def shutdown(self) -> None:
        """Close the records store (called by run_node)."""
        try:
            self.store.close()
        except Exception:  # already closed
            pass


def main(args=None) -> int:
    """Entry point of the cell_manager executable."""
    return run_node(CellManagerNode, args=args)


if __name__ == '__main__':
    import sys
    sys.exit(main())
