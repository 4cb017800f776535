"""manipulation node: pick_place action, plan_only service, trajectories to the controllers.

Thin ROS wrapper around humanoid_inspection.manipulation (docs/manipulation.md):

- sub ``joint_states`` (sensor QoS): the start state of every plan and the execution check;
- sub ``safety/estop`` (std_msgs/Bool, reliable): True latches the e-stop: a hold trajectory
  (the measured positions) goes to every controller this node drives from inside the callback,
  the running goal ends with ESTOP, new goals end with ESTOP until a False arrives;
- action ``pick_place`` (PickPlace): plans, then executes segment by segment (feedback = phase),
  confirming each from joint_states within a tolerance and a timeout (EXECUTION_FAILED),
  checking the grasp after ``close`` (finger position > threshold, else GRASP_FAILED); cancel
  sends a hold trajectory and ends with CANCELED; one goal at a time (a second one ends with
  BUSY while the first runs);
- srv ``plan_only`` (PlanPickPlace): the same plan, returned, nothing moves;
- srv ``manipulation/rest`` (std_srvs/Trigger): both arms to the ready pose (the standing pose of
  config/cell.yaml) along collision-checked joint paths; a hand that touches the cell first
  opens and retreats straight back/up. After a failed grasp or execution the pick_place goal
  does that release + retreat itself (``release_on_failure``) before returning. A rest asked
  again while one still runs (a caller whose reply was lost sends it again,
  nodes/service_calls.py) waits for it (up to ``rest_wait_s``) and then answers from where the
  arms are, instead of being refused; a rest asked while a pick_place goal runs is refused;
- pubs ``<left|right>_arm_controller/joint_trajectory``, ``<left|right>_gripper_controller/
  joint_trajectory``, ``waist_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory,
  stamp 0 = start now).

Times (execution timeouts, waits) use the node clock, so use_sim_time follows the simulation.
"""

import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from builtin_interfaces.msg import Duration
from humanoid_inspection_interfaces.action import PickPlace
from humanoid_inspection_interfaces.srv import PlanPickPlace
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from humanoid_inspection import robot_description as rd
from humanoid_inspection.cell_geometry import CellConfigError, load_cell
from humanoid_inspection.manipulation.collision import CollisionChecker
from humanoid_inspection.manipulation.execution import (
    execution_timeout, hold_trajectory, split_by_controller, tracking_error)
from humanoid_inspection.manipulation.goal import (
    FrameResolver, InvalidGoalError, carried_part_from_fields, check_arm,
    grasp_candidates_from_fields, place_pose_from_fields)
from humanoid_inspection.manipulation.pick_place import (
    ErrorCode, PickPlaceConfig, PickPlacePlan, PickPlacePlanner)
from humanoid_inspection.manipulation.recovery import RecoveryError, plan_release, plan_rest
from humanoid_inspection.manipulation.robot_model import RobotModel
from humanoid_inspection.manipulation.scene import obstacles_from_cell
from humanoid_inspection.manipulation.time_parameterization import TimedTrajectory
from humanoid_inspection.nodes.node_support import (
    Param, StartupError, declare_typed_parameters, reject_unknown_parameters, run_node)

CONTROLLERS = ('left_arm_controller', 'right_arm_controller', 'left_gripper_controller',
               'right_gripper_controller', 'waist_controller')

PARAMS = (
    Param('base_frame', 'base_link', 'planning frame (goal poses may be given in it)'),
    Param('world_frame', 'world', 'world frame (goal poses may be given in it; fixed base)'),
    Param('cell_file', '', 'cell geometry YAML; empty = the package config/cell.yaml'),
    Param('collision_padding_m', 0.01, 'margin robot/part vs cell obstacles (m)', 0.0, 0.2),
    Param('table_keepout_height_m', 0.06, 'virtual box this high over the table top, where the '
          'parts wait: joint-space motions stay out of it (0 = none)', 0.0, 0.5),
    Param('planner', 'RRTConnect', 'OMPL geometric planner name'),
    Param('motion_resolution_rad', 0.03, 'collision-check step along motions (rad)',
          0.001, 0.5),
    Param('joint_plan_timeout_s', 0.5, 'OMPL budget per joint-space segment (s)', 0.01, 60.0),
    Param('total_planning_timeout_s', 5.0, 'budget of one pick-and-place plan (s)', 0.05,
          300.0),
    Param('ik_timeout_s', 0.03, 'IK budget per pose (s)', 0.001, 5.0),
    Param('pre_grasp_distance_m', 0.10, 'pre-grasp distance along the approach (m)', 0.0, 0.5),
    Param('lift_height_m', 0.10, 'lift after grasping (m)', 0.0, 0.5),
    Param('place_approach_height_m', 0.10, 'descent onto the place pose (m)', 0.0, 0.5),
    Param('retreat_distance_m', 0.08, 'retreat after releasing (m)', 0.0, 0.5),
    Param('open_margin_m', 0.0, 'gripper opened this much wider than the candidate opening '
          '(m)', 0.0, 0.2),
    Param('release_margin_m', 0.01, 'at the place the gripper opens at least this much wider '
          'than the candidate opening, so it lets go of a part it closed on at almost that '
          'opening (m)', 0.0, 0.2),
    Param('part_depth_m', 0.04, 'carried-part box along the approach axis (m)', 0.001, 0.5),
    Param('part_height_m', 0.04, 'carried-part box along the tcp z axis (m)', 0.001, 0.5),
    Param('part_min_width_m', 0.0, 'carried-part box along the closing axis: at least this (m; '
          'a part held by a wall reaches well beyond the opening)', 0.0, 0.5),
    Param('carried_part_shrink_m', 0.005, 'a goal\'s object box (object_size_m) is carried '
          'with each extent shrunk by twice this (m): a round part\'s box has corners the part '
          'has not', 0.0, 0.05),
    Param('use_waist', 'auto', 'never | auto (arm, then arm + waist) | always'),
    Param('joint_plan_timeout_first_group_s', 0.5, 'use_waist auto: OMPL budget per joint-space '
          'segment of the arm alone, which the arm + waist follows (s)', 0.01, 60.0),
    Param('velocity_scale', 1.0, 'fraction of the joint velocity limits', 0.01, 1.0),
    Param('acceleration_scale', 1.0, 'fraction of the joint acceleration limits', 0.01, 1.0),
    Param('sample_dt_s', 0.02, 'trajectory point spacing (s)', 0.001, 1.0),
    Param('start_tolerance_rad', 0.05, 'start-state limit violations clipped up to this',
          0.0, 0.5),
    Param('goal_tolerance_rad', 0.03, 'arm/waist joints: reached within this (rad)', 0.001,
          1.0),
    Param('gripper_tolerance_m', 0.005, 'finger joint: reached within this (m)', 0.0001, 0.1),
    Param('execution_timeout_scale', 1.5, 'segment timeout = duration x this + margin', 1.0,
          100.0),
    Param('execution_timeout_margin_s', 3.0, 'segment timeout margin (s)', 0.0, 600.0),
    Param('joint_states_max_age_s', 2.0, 'joint_states older than this are stale (s)', 0.01,
          60.0),
    Param('grasp_min_finger_position_m', 0.00075,
          'after close: finger above min(this, expected - tolerance) = part held (m)', 0.0,
          0.1),
    Param('grasp_width_tolerance_m', 0.002,
          'after close: held when the finger is above the expected position minus this (m)',
          0.0, 0.1),
    Param('gripper_settle_s', 0.3, 'wait after the close trajectory before checking (s)', 0.0,
          10.0),
    Param('control_period_s', 0.02, 'execution monitor / hold trajectory period (s)', 0.001,
          1.0),
    Param('release_on_failure', True, 'after a failed grasp / execution: open the gripper and '
          'retreat the hand straight back or up'),
    Param('rest_timeout_s', 2.0, 'OMPL budget per arm of a rest motion (s)', 0.01, 60.0),
    Param('rest_wait_s', 120.0, 'a rest asked while another rest runs waits this long for it '
          '(s)', 0.0, 600.0),
    Param('seed', 0, 'random seed of IK restarts and OMPL (-1 = random)', -1, 2 ** 31 - 1),
)


def to_msg(traj: TimedTrajectory) -> JointTrajectory:
    """TimedTrajectory -> trajectory_msgs/JointTrajectory (stamp 0 = start now)."""
    msg = JointTrajectory()
    msg.joint_names = list(traj.joint_names)
    for t, p, v, a in traj.points():
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in p]
        point.velocities = [float(x) for x in v]
        point.accelerations = [float(x) for x in a]
        # whole nanoseconds first: t = 2.9999999999 must give 3 s 0 ns, not 2 s 0 ns
        sec, nanosec = divmod(int(round(t * 1e9)), 10 ** 9)
        point.time_from_start = Duration(sec=sec, nanosec=nanosec)
        msg.points.append(point)
    return msg


def held_threshold(expected: float, fixed: float, tolerance: float) -> float:
    """Finger position above which a closed gripper holds the part.

    A part narrower than the fixed threshold (a thin bracket web) stops the fingers below it:
    the threshold then follows the commanded opening of that grasp (expected finger position
    with the part held minus ``tolerance``), never below 0.5 mm above fully closed (0 m).

    Args:
        expected: finger position expected with the part held (m).
        fixed: the fixed threshold for wide parts (m).
        tolerance: how far below ``expected`` a holding finger may be (m).

    Returns:
        The threshold (m).
    """
    return max(min(fixed, expected - tolerance), 0.0005)


def _pose_fields(pose) -> Tuple[list, list]:
    p, o = pose.position, pose.orientation
    return [p.x, p.y, p.z], [o.x, o.y, o.z, o.w]


class ManipulationNode(Node):
    """The manipulation node (see module docstring)."""

    def __init__(self):
        super().__init__('manipulation')
        self.p = declare_typed_parameters(self, PARAMS)
        reject_unknown_parameters(self)
        if self.p['use_waist'] not in ('never', 'auto', 'always'):
            raise StartupError(f"parameter 'use_waist' must be never, auto or always, got "
                               f"'{self.p['use_waist']}'")
        try:
            cell = load_cell(self.p['cell_file'] or None)
            self.robot = RobotModel.from_project()
        except (CellConfigError, FileNotFoundError, RuntimeError, ValueError) as exc:
            raise StartupError(f'manipulation: cannot load the robot or the cell: {exc}') from exc
        obstacles = obstacles_from_cell(cell, keepout_height=self.p['table_keepout_height_m'])
        checker = CollisionChecker(self.robot, obstacles, padding=self.p['collision_padding_m'])
        config = PickPlaceConfig(
            pre_grasp_distance_m=self.p['pre_grasp_distance_m'],
            lift_height_m=self.p['lift_height_m'],
            place_approach_height_m=self.p['place_approach_height_m'],
            retreat_distance_m=self.p['retreat_distance_m'],
            open_margin_m=self.p['open_margin_m'],
            release_margin_m=self.p['release_margin_m'],
            max_opening_m=cell.gripper.max_opening_m,
            part_depth_m=self.p['part_depth_m'], part_height_m=self.p['part_height_m'],
            part_min_width_m=self.p['part_min_width_m'],
            carried_part_shrink_m=self.p['carried_part_shrink_m'],
            use_waist=self.p['use_waist'],
            joint_plan_timeout_s=self.p['joint_plan_timeout_s'],
            joint_plan_timeout_first_group_s=self.p['joint_plan_timeout_first_group_s'],
            total_timeout_s=self.p['total_planning_timeout_s'],
            ik_timeout_s=self.p['ik_timeout_s'],
            velocity_scale=self.p['velocity_scale'],
            acceleration_scale=self.p['acceleration_scale'],
            sample_dt=self.p['sample_dt_s'],
            start_tolerance=self.p['start_tolerance_rad'])
        try:
            seed = None if self.p['seed'] < 0 else self.p['seed']
            self.planner = PickPlacePlanner(self.robot, checker, obstacles, config, seed=seed,
                                            planner=self.p['planner'],
                                            resolution=self.p['motion_resolution_rad'])
        except ValueError as exc:
            raise StartupError(f'manipulation: {exc}') from exc
        self.ready_pose = dict(cell.robot.standing_pose)
        self.frames = FrameResolver(self.p['base_frame'], self.p['world_frame'],
                                    cell.robot.pose.matrix())
        self.controller_joints = {c: list(rd.CONTROLLER_JOINTS[c]) for c in CONTROLLERS}

        self._state_lock = threading.Lock()
        self._positions: Dict[str, float] = {}
        self._positions_time: Optional[float] = None
        self._estop = False
        self._busy = threading.Lock()
        self._resting = False           # the holder of _busy is a rest (see _on_rest)
        self._plan_lock = threading.Lock()

        sensor_group = MutuallyExclusiveCallbackGroup()
        estop_group = MutuallyExclusiveCallbackGroup()
        work_group = ReentrantCallbackGroup()
        self.pubs = {c: self.create_publisher(JointTrajectory, f'{c}/joint_trajectory', 10)
                     for c in CONTROLLERS}
        self.create_subscription(JointState, 'joint_states', self._on_joint_states,
                                 qos_profile_sensor_data, callback_group=sensor_group)
        self.create_subscription(Bool, 'safety/estop', self._on_estop,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
                                 callback_group=estop_group)
        self.create_service(PlanPickPlace, 'plan_only', self._on_plan_only,
                            callback_group=work_group)
        self.create_service(Trigger, 'manipulation/rest', self._on_rest,
                            callback_group=work_group)
        self._action = ActionServer(
            self, PickPlace, 'pick_place', execute_callback=self._execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT,
            callback_group=work_group)
        self.get_logger().info(
            f'manipulation ready: {len(obstacles)} cell obstacles, groups '
            f'{sorted(self.robot.groups)}, collision pairs {checker.pair_counts()}')

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_states(self, msg: JointState):
        if len(msg.name) != len(msg.position):
            return
        with self._state_lock:
            for name, value in zip(msg.name, msg.position):
                if np.isfinite(value):
                    self._positions[name] = float(value)
            self._positions_time = self._now()

    def _measured(self) -> Tuple[Dict[str, float], Optional[float]]:
        with self._state_lock:
            age = None if self._positions_time is None else self._now() - self._positions_time
            return dict(self._positions), age

    def _on_estop(self, msg: Bool):
        if msg.data and not self._estop:
            self._estop = True
            self._send_hold(CONTROLLERS)
            self.get_logger().warning('e-stop: holding every controller; new goals refused')
        elif not msg.data and self._estop:
            self._estop = False
            self.get_logger().info('e-stop released')

    def _send_hold(self, controllers) -> None:
        positions, _ = self._measured()
        for c in controllers:
            joints = [j for j in self.controller_joints[c] if j in positions]
            if not joints:
                continue
            hold = hold_trajectory(joints, [positions[j] for j in joints],
                                   self.p['control_period_s'])
            self.pubs[c].publish(to_msg(hold))

    # ------------------------------------------------------------------ planning
    def _start_state(self) -> Tuple[Optional[np.ndarray], str]:
        positions, age = self._measured()
        if age is None:
            return None, 'no joint_states received yet'
        if age > self.p['joint_states_max_age_s']:
            return None, f'joint_states are stale ({age:.2f} s old)'
        needed = set(rd.WAIST_JOINTS) | {j for s in rd.SIDES for j in rd.ARM_JOINTS[s]} | \
            set(rd.GRIPPER_JOINTS.values())
        missing = sorted(needed - set(positions))
        if missing:
            return None, f'joint_states lack {missing}'
        for side in rd.SIDES:
            positions.setdefault(rd.GRIPPER_MIMIC_JOINTS[side], positions[rd.GRIPPER_JOINTS[side]])
        return self.robot.configuration_from_dict(positions), ''

    def _plan(self, request) -> PickPlacePlan:
        """Plan a PickPlace goal / PlanPickPlace request (same fields)."""
        why = check_arm(request.arm)
        if why is not None:
            return PickPlacePlan(ErrorCode.INVALID_GOAL, why)
        try:
            fields = []
            for c in request.grasp_candidates:
                pos, quat = _pose_fields(c.grasp_pose)
                fields.append((pos, quat, c.header.frame_id,
                               [c.approach.x, c.approach.y, c.approach.z],
                               c.gripper_opening_m, c.score))
            grasps = grasp_candidates_from_fields(fields, self.frames)
            pos, quat = _pose_fields(request.place_pose.pose)
            place = place_pose_from_fields(pos, quat, request.place_pose.header.frame_id,
                                           self.frames)
            pos, quat = _pose_fields(request.object_pose.pose)
            size = request.object_size_m
            carried = carried_part_from_fields(pos, quat, request.object_pose.header.frame_id,
                                               (size.x, size.y, size.z), self.frames)
        except InvalidGoalError as exc:
            return PickPlacePlan(ErrorCode.INVALID_GOAL, str(exc))
        q0, why = self._start_state()
        if q0 is None:
            return PickPlacePlan(ErrorCode.PLANNING_FAILED, f'no start state: {why}')
        with self._plan_lock:
            return self.planner.plan(q0, grasps, place, request.arm, carried)

    def _on_plan_only(self, request, response):
        if not self._busy.acquire(blocking=False):
            response.success = False
            response.error_code = int(ErrorCode.BUSY)
            response.message = 'a pick_place goal is executing'
            response.grasp_index = -1
            return response
        try:
            plan = self._plan(request)
        finally:
            self._busy.release()
        response.success = plan.success
        response.error_code = int(plan.error_code)
        response.message = plan.message
        response.arm_used = plan.arm
        response.grasp_index = plan.grasp_index
        response.segment_names = [s.name for s in plan.segments]
        response.segments = [to_msg(s.trajectory) for s in plan.segments]
        response.planning_time_s = float(plan.planning_time_s)
        response.trajectory_duration_s = float(plan.duration)
        self.get_logger().info(f'plan_only: {plan.error_code.name} in '
                               f'{plan.planning_time_s * 1e3:.0f} ms: {plan.message}')
        return response

    # ------------------------------------------------------------------ execution
    def _execute(self, goal_handle):
        result = PickPlace.Result()
        result.grasp_index = -1
        if not self._busy.acquire(blocking=False):
            return self._finish(goal_handle, result, ErrorCode.BUSY,
                                'another pick_place goal is executing')
        try:
            if self._estop:
                return self._finish(goal_handle, result, ErrorCode.ESTOP,
                                    'safety/estop is active')
            request = goal_handle.request
            # the log then shows which hop a goal that never ends was lost on
            self.get_logger().info(
                f"pick_place: goal for '{request.object_id}' with "
                f"{len(request.grasp_candidates)} grasp candidate(s): planning")
            goal_handle.publish_feedback(PickPlace.Feedback(phase='plan'))
            plan = self._plan(goal_handle.request)
            result.planning_time_s = float(plan.planning_time_s)
            if not plan.success:
                return self._finish(goal_handle, result, plan.error_code, plan.message)
            result.arm_used = plan.arm
            result.grasp_index = plan.grasp_index
            result.trajectory_duration_s = float(plan.duration)
            code, message = self._run(goal_handle, plan)
            if code in (ErrorCode.GRASP_FAILED, ErrorCode.EXECUTION_FAILED) \
                    and self.p['release_on_failure']:
                message += self._release(plan.arm)
            return self._finish(goal_handle, result, code, message)
        finally:
            self._busy.release()

    def _release(self, side: str) -> str:
        """Open side's gripper and retreat the hand; returns a note for the result message."""
        q0, why = self._start_state()
        if q0 is None:
            return f'; not released: {why}'
        try:
            with self._plan_lock:
                self.planner.checker.detach(side)
                segments, _ = plan_release(self.planner, q0, side,
                                           self.p['retreat_distance_m'])
        except RecoveryError as exc:
            self.get_logger().warning(f'release after failure: {exc}')
            return f'; not released: {exc}'
        code, message = self._run_segments(None, segments)
        if code is not ErrorCode.SUCCESS:
            return f'; release {code.name}: {message}'
        return '; gripper opened and hand retreated'

    def _on_rest(self, _request, response):
        """manipulation/rest: both arms to the ready pose (see module docstring)."""
        response.success = False
        if self._estop:
            response.message = 'safety/estop is active'
            return response
        if not self._busy.acquire(blocking=False):
            # the same rest asked again (its reply lost in DDS): wait for the one running
            if not (self._resting and self._busy.acquire(timeout=self.p['rest_wait_s'])):
                response.message = ('a rest motion is still running' if self._resting
                                    else 'a pick_place goal is executing')
                return response
        self._resting = True
        try:
            if self._estop:             # set while this call waited for the running rest
                response.message = 'safety/estop is active'
                return response
            q0, why = self._start_state()
            if q0 is None:
                response.message = f'no start state: {why}'
                return response
            t0 = time.perf_counter()
            try:
                with self._plan_lock:
                    segments = plan_rest(self.planner, q0, self.ready_pose,
                                         retreat_m=self.p['retreat_distance_m'],
                                         timeout_s=self.p['rest_timeout_s'],
                                         tolerance=self.p['goal_tolerance_rad'])
            except RecoveryError as exc:
                response.message = f'rest not planned: {exc}'
                return response
            planning = time.perf_counter() - t0
            code, message = self._run_segments(None, segments)
            response.success = code is ErrorCode.SUCCESS
            response.message = (f'at rest ({len(segments)} segment(s), planned in '
                                f'{planning * 1e3:.0f} ms)' if response.success
                                else f'{code.name}: {message}')
        finally:
            self._resting = False
            self._busy.release()
        if response.success:
            self.get_logger().info(f'rest: {response.message}')
        else:
            self.get_logger().warning(f'rest: {response.message}')
        return response

    def _finish(self, goal_handle, result, code: ErrorCode, message: str):
        result.success = code is ErrorCode.SUCCESS
        result.error_code = int(code)
        result.message = message
        # rclpy fixes a call site's severity at its first call: one call site per severity.
        if result.success:
            self.get_logger().info(f'pick_place: {code.name}: {message}')
        else:
            self.get_logger().warning(f'pick_place: {code.name}: {message}')
        if code is ErrorCode.SUCCESS:
            goal_handle.succeed()
        elif code is ErrorCode.CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result

    def _run(self, goal_handle, plan: PickPlacePlan) -> Tuple[ErrorCode, str]:
        code, message = self._run_segments(goal_handle, plan.segments,
                                           plan.grasped_finger_position)
        return code, (plan.message if code is ErrorCode.SUCCESS else message)

    def _run_segments(self, goal_handle, segments,
                      grasped_finger_position: float = 0.0) -> Tuple[ErrorCode, str]:
        """Execute segments in turn (goal_handle None: no feedback / cancel)."""
        for segment in segments:
            if segment.name == 'open':
                # open from where the fingers hold the part, not wider than needed
                positions, _ = self._measured()
                finger = rd.GRIPPER_JOINTS[segment.side]
                segment = self.planner.fit_release(
                    segment, float(positions.get(finger, float('nan'))))
            parts = split_by_controller(segment.trajectory, self.controller_joints)
            if self._estop:
                return ErrorCode.ESTOP, f'e-stop before {segment.name}'
            if goal_handle is not None and goal_handle.is_cancel_requested:
                self._send_hold(CONTROLLERS)
                return ErrorCode.CANCELED, f'canceled before {segment.name}'
            if goal_handle is not None:
                goal_handle.publish_feedback(PickPlace.Feedback(phase=segment.name))
            for controller, traj in parts.items():
                self.pubs[controller].publish(to_msg(traj))
            code, message = self._monitor(goal_handle, segment, list(parts),
                                          grasped_finger_position)
            if code is not ErrorCode.SUCCESS:
                return code, f'{segment.name}: {message}'
        return ErrorCode.SUCCESS, ''

    def _tolerances(self, joint_names: List[str]) -> np.ndarray:
        fingers = set(rd.GRIPPER_JOINTS.values())
        return np.array([self.p['gripper_tolerance_m'] if j in fingers
                         else self.p['goal_tolerance_rad'] for j in joint_names])

    def _monitor(self, goal_handle, segment, controllers: List[str],
                 grasped_finger_position: float) -> Tuple[ErrorCode, str]:
        traj = segment.trajectory
        duration = traj.duration
        final = traj.final_positions()
        tol = self._tolerances(traj.joint_names)
        is_close = segment.name == 'close'
        wait = duration + (self.p['gripper_settle_s'] if is_close else 0.0)
        timeout = execution_timeout(duration, self.p['execution_timeout_scale'],
                                    self.p['execution_timeout_margin_s'])
        t0 = self._now()
        wall_deadline = time.monotonic() + max(60.0, 10.0 * timeout)
        period = self.p['control_period_s']
        while True:
            time.sleep(period)
            if self._estop:
                return ErrorCode.ESTOP, 'e-stop'
            if goal_handle is not None and goal_handle.is_cancel_requested:
                self._send_hold(controllers)
                return ErrorCode.CANCELED, 'canceled'
            positions, age = self._measured()
            elapsed = self._now() - t0
            if age is None or age > self.p['joint_states_max_age_s']:
                if elapsed > timeout or time.monotonic() > wall_deadline:
                    self._send_hold(controllers)
                    return ErrorCode.EXECUTION_FAILED, 'joint_states stopped arriving'
                continue
            if elapsed >= wait:
                if is_close:
                    finger = rd.GRIPPER_JOINTS[segment.side]
                    value = positions.get(finger, 0.0)
                    threshold = held_threshold(grasped_finger_position,
                                               self.p['grasp_min_finger_position_m'],
                                               self.p['grasp_width_tolerance_m'])
                    if value > threshold:
                        return ErrorCode.SUCCESS, ''
                    return ErrorCode.GRASP_FAILED, (
                        f'{finger} closed to {value * 1e3:.1f} mm (<= {threshold * 1e3:.1f} mm, '
                        f'expected {grasped_finger_position * 1e3:.1f} mm with the part): '
                        'nothing held')
                errors = np.array([abs(positions.get(j, np.inf) - f)
                                   for j, f in zip(traj.joint_names, final)])
                if np.all(errors <= tol):
                    return ErrorCode.SUCCESS, ''
            if elapsed > timeout or time.monotonic() > wall_deadline:
                self._send_hold(controllers)
                err, joint = tracking_error(positions, traj.joint_names, final)
                return ErrorCode.EXECUTION_FAILED, (
                    f'not reached after {elapsed:.1f} s (timeout {timeout:.1f} s): {joint} '
                    f'off by {err:.4f}')


def main(args=None) -> int:
    """Console entry point: run the manipulation node."""
    return run_node(ManipulationNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
