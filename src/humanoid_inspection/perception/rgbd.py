"""RGB-D frame checks and depth geometry (back-projection, plane distance), no ROS.

validate_frame() is the single gate every backend and the affordance module pass a frame
through: it turns each kind of bad input (no intrinsics yet, size mismatch, unsupported
dtype, depth without a single valid pixel) into an InvalidFrameError whose message is the
diagnostic the node publishes.
"""

from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from humanoid_inspection.perception.types import CameraIntrinsics

# Depth readings outside this range (m) are treated as no return.
DEPTH_RANGE_M = (0.05, 10.0)


class InvalidFrameError(ValueError):
    """The frame cannot be processed; str(err) is the reason (published as a diagnostic)."""


def depth_to_metres(depth: np.ndarray) -> np.ndarray:
    """Return depth in metres as float32 with NaN where there is no valid return.

    Accepts float32/float64 in metres (32FC1; NaN, inf or 0 = no return) and uint16 in
    millimetres (16UC1; 0 = no return).

    Raises:
        InvalidFrameError: any other dtype or shape.
    """
    if depth.ndim != 2:
        raise InvalidFrameError(f'depth must be a single-channel image, got shape {depth.shape}')
    if depth.dtype == np.uint16:
        out = depth.astype(np.float32) * np.float32(0.001)
    elif depth.dtype in (np.float32, np.float64):
        out = depth.astype(np.float32, copy=True)
    else:
        raise InvalidFrameError(
            f'unsupported depth dtype {depth.dtype} (expected float32 metres or uint16 mm)')
    bad = ~np.isfinite(out) | (out < DEPTH_RANGE_M[0]) | (out > DEPTH_RANGE_M[1])
    out[bad] = np.nan
    return out


def validate_frame(color: Optional[np.ndarray], depth: Optional[np.ndarray],
                   intrinsics: Optional[CameraIntrinsics],
                   min_valid_depth_fraction: float = 0.01) -> Tuple[np.ndarray, np.ndarray]:
    """Check a colour + depth + intrinsics triple; return (rgb uint8 HxWx3, depth metres).

    Args:
        color: (H, W, 3) uint8 RGB image.
        depth: (H, W) depth, float metres or uint16 millimetres, registered to the colour.
        intrinsics: the camera's intrinsics, or None when no camera_info has arrived.
        min_valid_depth_fraction: below this fraction of valid depth pixels the frame is
            rejected (a covered or broken sensor).

    Raises:
        InvalidFrameError: with the reason.
    """
    if intrinsics is None:
        raise InvalidFrameError('no camera_info received yet: intrinsics unknown')
    if color is None or depth is None:
        raise InvalidFrameError('colour or depth image missing')
    if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
        raise InvalidFrameError(
            f'colour must be HxWx3 uint8 RGB, got shape {color.shape} dtype {color.dtype}')
    if color.shape[:2] != depth.shape[:2]:
        raise InvalidFrameError(
            f'colour {color.shape[1]}x{color.shape[0]} and depth '
            f'{depth.shape[1] if depth.ndim > 1 else "?"}x{depth.shape[0]} sizes differ '
            '(depth must be registered to colour)')
    if (intrinsics.width, intrinsics.height) != (color.shape[1], color.shape[0]):
        raise InvalidFrameError(
            f'camera_info size {intrinsics.width}x{intrinsics.height} differs from the image '
            f'size {color.shape[1]}x{color.shape[0]}')
    depth_m = depth_to_metres(depth)
    valid = np.count_nonzero(~np.isnan(depth_m))
    if valid == 0:
        raise InvalidFrameError('depth has no valid pixel (all NaN, zero or out of range)')
    if valid < min_valid_depth_fraction * depth_m.size:
        raise InvalidFrameError(
            f'only {100.0 * valid / depth_m.size:.2f} % of depth pixels are valid '
            f'(minimum {100.0 * min_valid_depth_fraction:.2f} %)')
    return color, depth_m


@lru_cache(maxsize=8)
def _ray_grid(intrinsics: CameraIntrinsics) -> Tuple[np.ndarray, np.ndarray]:
    u = (np.arange(intrinsics.width, dtype=np.float32) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(intrinsics.height, dtype=np.float32) - intrinsics.cy) / intrinsics.fy
    return u[None, :], v[:, None]


def backproject_image(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Return the (H, W, 3) camera-frame points of a depth image (NaN where depth is NaN)."""
    u, v = _ray_grid(intrinsics)
    return np.stack(np.broadcast_arrays(u * depth_m, v * depth_m, depth_m), axis=-1)


def backproject_pixels(us: np.ndarray, vs: np.ndarray, zs: np.ndarray,
                       intrinsics: CameraIntrinsics) -> np.ndarray:
    """Return (N, 3) camera-frame points of pixels (us = columns, vs = rows) at depths zs."""
    us = np.asarray(us, dtype=float)
    vs = np.asarray(vs, dtype=float)
    zs = np.asarray(zs, dtype=float)
    return np.stack([(us - intrinsics.cx) / intrinsics.fx * zs,
                     (vs - intrinsics.cy) / intrinsics.fy * zs, zs], axis=-1)


def project_points(points: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Return (N, 2) pixel coordinates (column, row) of camera-frame points (z > 0)."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return np.stack([intrinsics.fx * points[:, 0] / points[:, 2] + intrinsics.cx,
                     intrinsics.fy * points[:, 1] / points[:, 2] + intrinsics.cy], axis=-1)


def height_above_plane(depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                       plane: np.ndarray) -> np.ndarray:
    """Signed distance (m) of every depth pixel from plane (n, d), positive towards n."""
    u, v = _ray_grid(intrinsics)
    n = plane[:3].astype(np.float32)
    return (n[0] * u + n[1] * v + n[2]) * depth_m + np.float32(plane[3])


def depth_at(depth_m: np.ndarray, x: float, y: float, radius: int = 3) -> float:
    """Median valid depth (m) in a (2r+1)^2 window around pixel (x, y); NaN if none."""
    h, w = depth_m.shape
    xi, yi = int(round(x)), int(round(y))
    if not (0 <= xi < w and 0 <= yi < h):
        return float('nan')
    win = depth_m[max(0, yi - radius):yi + radius + 1, max(0, xi - radius):xi + radius + 1]
    win = win[~np.isnan(win)]
    return float(np.median(win)) if win.size else float('nan')
