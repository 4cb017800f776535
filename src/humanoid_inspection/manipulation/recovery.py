"""Release-and-retreat and rest motions (after a failed grasp or execution, between parts).

A failed grasp leaves the hand closed on the table or in the fixture, so the next plan would
start in collision. :func:`plan_release` opens the gripper and moves the hand straight back
along its approach axis (or straight up when that line is blocked); :func:`plan_rest` does the
same for every hand that touches the cell and then plans a collision-free joint path of each
arm (the first one with the waist) to the ready pose. The start contacts of the hand with the
cell are allowed only for the release/retreat lines; the joint path to the ready pose is checked
against everything (unless the retreated hand still touches the cell, then the hand-vs-cell
pairs stay allowed).
"""

from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.manipulation.pick_place import PickPlacePlanner, Segment


class RecoveryError(Exception):
    """A release / rest motion could not be planned (message says why)."""


def ready_configuration(planner: PickPlacePlanner, q_now: np.ndarray,
                        pose: Mapping[str, float]) -> np.ndarray:
    """q_now with every joint named in pose set to its value (clipped into the limits)."""
    robot = planner.robot
    q = np.asarray(q_now, dtype=float).copy()
    for name, value in pose.items():
        if name in robot.joint_names:
            i = robot.joint_index(name)
            q[i] = np.clip(value, robot.lower[i], robot.upper[i])
    return q


def _hand_vs_cell(planner: PickPlacePlanner, side: str) -> Tuple[Tuple[str, str], ...]:
    names = [o.name for o in planner.obstacles]
    return tuple((a, b) for a in planner.checker.hand_links(side) for b in names)


def _touches_cell(planner: PickPlacePlanner, q: np.ndarray, side: str) -> bool:
    hand = set(planner.checker.hand_links(side))
    cell = {o.name for o in planner.obstacles}
    return any((a in hand and b in cell) or (b in hand and a in cell)
               for a, b in planner.checker.colliding_pairs(q))


def plan_release(planner: PickPlacePlanner, q_start: np.ndarray, side: str,
                 distance_m: float, open_m: Optional[float] = None
                 ) -> Tuple[List[Segment], np.ndarray]:
    """Open side's gripper and retreat the hand straight back (or up) by distance_m.

    Args:
        planner: the PickPlacePlanner (robot, checker, obstacles, timing config).
        q_start: full start configuration (measured).
        side: 'left' or 'right'.
        distance_m: retreat length (m).
        open_m: finger position to open to (m); None = half the joint's travel.

    Returns:
        (segments 'open' and 'retreat', configuration at the end).

    Raises:
        RecoveryError: no straight retreat line is collision-free.
    """
    robot = planner.robot
    # a contact may have pushed a joint past its limit: start from the nearest valid state
    q_start = np.clip(np.asarray(q_start, dtype=float), robot.lower, robot.upper)
    groups = [robot.groups[n] for n in (f'{side}_arm', f'{side}_arm_waist') if n in robot.groups]
    finger = planner.finger_joints(side)[0]
    j = robot.joint_index(finger)
    f_now = float(q_start[j])
    f_open = float(robot.upper[j]) * 0.5 if open_m is None else float(open_m)
    f_open = max(f_open, f_now)
    segments = []
    if f_open - f_now > 1e-4:
        segments.append(Segment('open', planner.gripper_trajectory(side, f_now, f_open), '',
                                side, f_open))
    q = planner._with_fingers(q_start, side, f_open)
    allowed = _hand_vs_cell(planner, side)
    tcp = robot.frame_pose(q, groups[0].tip_frame)
    back = tcp.copy()
    back[:3, 3] -= tcp[:3, 0] * distance_m
    up = tcp.copy()
    up[2, 3] += distance_m
    messages = []
    for what, target in (('back', back), ('up', up)):
        for group in groups:      # the arm alone first, then with the waist
            res = planner.planner.cartesian_path(
                group, q, target, allowed, step=planner.config.cartesian_step_m,
                ik_timeout_s=max(planner.config.ik_timeout_s, 0.1))
            if res.success:
                segments.append(Segment('retreat', planner._time(group, res.path, q, allowed),
                                        group.name, side))
                return segments, robot.with_group(q, group, res.path[-1])
            messages.append(f'{what} ({group.name}): {res.message}')
    raise RecoveryError(f'{side} hand: no straight retreat ({"; ".join(messages)})')


def plan_rest(planner: PickPlacePlanner, q_start: np.ndarray, pose: Mapping[str, float],
              sides: Sequence[str] = ('left', 'right'), retreat_m: float = 0.08,
              timeout_s: float = 2.0, tolerance: float = 0.02) -> List[Segment]:
    """Both arms (in turn) to the ready pose, releasing and retreating a hand on the cell first.

    Args:
        planner: the PickPlacePlanner.
        q_start: full start configuration (measured).
        pose: ready pose, joint name -> value (arm joints used; others ignored).
        sides: arms to move, in this order.
        retreat_m: retreat length of a hand that touches the cell (m).
        timeout_s: OMPL budget per arm (s).
        tolerance: an arm already within this of the ready pose (rad) is not moved.

    Returns:
        Segments ('open', 'retreat', 'rest'), possibly empty (already at rest).

    Raises:
        RecoveryError: a motion could not be planned.
    """
    robot = planner.robot
    q = np.clip(np.asarray(q_start, dtype=float), robot.lower, robot.upper)
    segments: List[Segment] = []
    for side in sides:
        planner.checker.detach(side)
    for k, side in enumerate(sides):
        # the first arm brings the waist back too (a pick may have turned it)
        name = f'{side}_arm_waist' if k == 0 and f'{side}_arm_waist' in robot.groups \
            else f'{side}_arm'
        group = robot.groups[name]
        goal = ready_configuration(planner, q, pose)[group.q_idx]
        if np.max(np.abs(q[group.q_idx] - goal)) <= tolerance:
            continue
        if _touches_cell(planner, q, side):
            release, q = plan_release(planner, q, side, retreat_m)
            if np.max(np.abs(q[group.q_idx] - goal)) <= tolerance:
                continue
            segments += release
        allowed = _hand_vs_cell(planner, side) if _touches_cell(planner, q, side) else ()
        res = planner.planner.plan_joint(group, q, goal, allowed, timeout_s)
        if not res.success:
            raise RecoveryError(f'{group.name} to the ready pose: {res.message}')
        segments.append(Segment('rest', planner._time(group, res.path, q, allowed),
                                group.name, side))
        q = robot.with_group(q, group, res.path[-1])
    return segments

