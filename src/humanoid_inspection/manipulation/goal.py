"""Goal validation for pick-and-place requests: poses, frames, grasp candidates (no ROS).

The manipulation node hands the raw fields of a PickPlace goal (positions, quaternions x y z w,
frame ids, approach vectors, openings) to :func:`grasp_candidates_from_fields` and
:func:`place_pose_from_fields`; anything malformed raises :class:`InvalidGoalError` whose
message says which field and why (-> PickPlace.Result.INVALID_GOAL):

- NaN / inf anywhere, a quaternion whose norm is not 1 (tolerance 1e-3) or is zero;
- a frame other than the base frame or the world frame (world <- base_link is known from
  config/cell.yaml in fixed-base mode); an empty frame id is rejected, not guessed;
- an approach vector that is not unit length or disagrees with the grasp pose's x axis by more
  than ``max_approach_angle`` (the Affordance convention: approach = the pose's x axis); a zero
  approach vector means "use the pose's x axis".
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from humanoid_inspection.manipulation.pick_place import CarriedPart, GraspCandidate

QUATERNION_NORM_TOLERANCE = 1e-3


class InvalidGoalError(ValueError):
    """A goal field is malformed; the message names the field."""


@dataclass(frozen=True)
class FrameResolver:
    """Expresses poses in the base frame.

    Attributes:
        base_frame: the planning frame (base_link).
        world_frame: the world frame name.
        world_T_base: 4x4 pose of the base frame in the world (fixed-base mode).
    """

    base_frame: str = 'base_link'
    world_frame: str = 'world'
    world_T_base: np.ndarray = None

    def to_base(self, pose: np.ndarray, frame_id: str, what: str) -> np.ndarray:
        """pose (4x4 in frame_id) -> 4x4 in the base frame.

        Raises:
            InvalidGoalError: unknown frame.
        """
        if frame_id == self.base_frame:
            return pose
        if frame_id == self.world_frame and self.world_T_base is not None:
            return np.linalg.inv(self.world_T_base) @ pose
        known = [self.base_frame] + ([self.world_frame] if self.world_T_base is not None else [])
        raise InvalidGoalError(f'{what}: frame {frame_id!r} is not one of {known}')


def quaternion_to_matrix(q_xyzw: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = q_xyzw
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def pose_matrix(position: Sequence[float], quaternion_xyzw: Sequence[float],
                what: str) -> np.ndarray:
    """4x4 pose from a position and a quaternion, strictly validated.

    Raises:
        InvalidGoalError: non-finite values or a quaternion that is not normalised.
    """
    p = np.asarray(position, dtype=float)
    q = np.asarray(quaternion_xyzw, dtype=float)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InvalidGoalError(f'{what}: position must be 3 finite numbers, got {p.tolist()}')
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise InvalidGoalError(f'{what}: orientation must be 4 finite numbers, got {q.tolist()}')
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise InvalidGoalError(f'{what}: quaternion is not normalised (norm {norm:.6f})')
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(q / norm)
    out[:3, 3] = p
    return out


def place_pose_from_fields(position, quaternion_xyzw, frame_id: str,
                           frames: FrameResolver) -> np.ndarray:
    """The place pose (4x4, base frame) of a goal; raises InvalidGoalError."""
    return frames.to_base(pose_matrix(position, quaternion_xyzw, 'place_pose'), frame_id,
                          'place_pose')


def carried_part_from_fields(position, quaternion_xyzw, frame_id: str, size,
                             frames: FrameResolver) -> Optional[CarriedPart]:
    """The goal's carried-part box in the base frame; None when its size is all zero.

    Raises:
        InvalidGoalError: a bad pose or frame, or a size that is not 3 positive finite extents.
    """
    s = np.asarray(size, dtype=float)
    if s.shape == (3,) and np.all(s == 0):
        return None
    if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InvalidGoalError(f'object_size_m must be 3 positive finite extents (or all zero '
                               f'= unknown), got {s.tolist()}')
    pose = frames.to_base(pose_matrix(position, quaternion_xyzw, 'object_pose'), frame_id,
                          'object_pose')
    part = CarriedPart(pose, tuple(float(v) for v in s))
    why = part.validate()
    if why is not None:
        raise InvalidGoalError(f'object_pose / object_size_m: {why}')
    return part


def grasp_candidates_from_fields(candidates, frames: FrameResolver,
                                 max_approach_angle: float = 0.2) -> list:
    """GraspCandidates (base frame) from (position, quaternion, frame, approach, opening, score).

    Args:
        candidates: iterable of tuples (position, quaternion_xyzw, frame_id, approach (3,),
            opening_m, score).
        frames: the FrameResolver.
        max_approach_angle: max angle (rad) between approach and the pose's x axis.

    Returns:
        list of GraspCandidate, same order.

    Raises:
        InvalidGoalError: naming the candidate index and the field.
    """
    out = []
    for k, (position, quat, frame_id, approach, opening, score) in enumerate(candidates):
        what = f'grasp_candidates[{k}]'
        pose = frames.to_base(pose_matrix(position, quat, what), frame_id, what)
        a = np.asarray(approach, dtype=float)
        if a.shape != (3,) or not np.all(np.isfinite(a)):
            raise InvalidGoalError(f'{what}: approach must be 3 finite numbers')
        norm = float(np.linalg.norm(a))
        if norm > 1e-9:
            if abs(norm - 1.0) > 1e-2:
                raise InvalidGoalError(f'{what}: approach is not a unit vector (norm {norm:.4f})')
            a_base = frames.to_base(_direction(a), frame_id, what)[:3, 0]
            angle = float(np.arccos(np.clip(a_base @ pose[:3, 0], -1.0, 1.0)))
            if angle > max_approach_angle:
                raise InvalidGoalError(
                    f'{what}: approach differs from the grasp pose x axis by '
                    f'{np.degrees(angle):.1f} deg (max {np.degrees(max_approach_angle):.1f})')
        opening = float(opening)
        if not np.isfinite(opening) or opening <= 0:
            raise InvalidGoalError(f'{what}: gripper_opening_m must be > 0, got {opening}')
        out.append(GraspCandidate(pose, opening, float(score)))
    return out


def _direction(vec: np.ndarray) -> np.ndarray:
    """A pose whose x axis is vec (translation 0), to rotate directions between frames."""
    out = np.zeros((4, 4))
    out[:3, 0] = vec / np.linalg.norm(vec)
    out[3, 3] = 1.0
    return out


def check_arm(arm: str) -> Optional[str]:
    """Why an arm field is invalid (None if '', 'left' or 'right')."""
    if arm not in ('', 'left', 'right'):
        return f"arm must be 'left', 'right' or '' (got {arm!r})"
    return None
