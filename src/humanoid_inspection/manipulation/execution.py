"""Execution helpers (no ROS): split a planned segment per controller, confirm it was reached.

- :func:`split_by_controller`: a segment's trajectory may span several controllers (an arm
  group with the waist; pre_grasp also opens the gripper); each controller gets the columns of
  its own joints with the same time stamps.
- :func:`tracking_error`: max |measured - target| over some joints, from a joint_states-style
  {name: position} map (missing joints count as not reached).
- :func:`execution_timeout`: how long to wait for a segment before EXECUTION_FAILED.
"""

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from humanoid_inspection.manipulation.time_parameterization import TimedTrajectory


def split_by_controller(traj: TimedTrajectory,
                        controller_joints: Mapping[str, Sequence[str]]
                        ) -> Dict[str, TimedTrajectory]:
    """{controller: sub-trajectory} for every controller owning at least one of traj's joints.

    Raises:
        ValueError: a joint of traj belongs to no controller.
    """
    owner = {j: c for c, joints in controller_joints.items() for j in joints}
    missing = [j for j in traj.joint_names if j not in owner]
    if missing:
        raise ValueError(f'joints {missing} belong to no controller')
    out: Dict[str, TimedTrajectory] = {}
    for controller in dict.fromkeys(owner[j] for j in traj.joint_names):
        cols = [k for k, j in enumerate(traj.joint_names) if owner[j] == controller]
        out[controller] = TimedTrajectory(
            [traj.joint_names[k] for k in cols], traj.times.copy(), traj.positions[:, cols],
            traj.velocities[:, cols], traj.accelerations[:, cols], traj.method, traj.time_scale)
    return out


def tracking_error(measured: Mapping[str, float], joint_names: Sequence[str],
                   target: Sequence[float]) -> Tuple[float, str]:
    """(max |measured - target|, worst joint); inf when a joint is missing from measured."""
    worst, name = 0.0, ''
    for j, value in zip(joint_names, target):
        if j not in measured:
            return float('inf'), j
        err = abs(float(measured[j]) - float(value))
        if err > worst:
            worst, name = err, j
    return worst, name


def execution_timeout(duration: float, scale: float, margin: float) -> float:
    """Seconds (ROS time) to wait for a segment of the given duration to be reached."""
    return float(duration) * float(scale) + float(margin)


def hold_trajectory(joint_names: Sequence[str], positions: Sequence[float],
                    time_from_start: float) -> TimedTrajectory:
    """A one-point trajectory holding positions (zero velocity) reached after time_from_start."""
    n = len(joint_names)
    p = np.asarray(positions, dtype=float).reshape(1, n)
    return TimedTrajectory(list(joint_names), np.array([float(time_from_start)]), p,
                           np.zeros((1, n)), np.zeros((1, n)), method='hold')
