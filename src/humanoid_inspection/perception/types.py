"""Data types shared by the perception backends, the affordance module and the nodes.

Every backend (classical RGB-D, VLM) returns a PerceptionResult holding ObjectDetection items,
so the perception node does not care which backend ran. All 2D coordinates are pixels of the
ORIGINAL camera image (x = column, y = row); all 3D quantities are metres in the camera optical
frame (x right, y down, z forward).
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of a (registered) RGB-D camera.

    Attributes:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels.
        width, height: image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k, width: int, height: int) -> 'CameraIntrinsics':
        """Build from a row-major 3x3 camera matrix K (9 numbers, as in CameraInfo.k).

        Raises:
            ValueError: K is not 9 finite numbers with positive focal lengths, or the size is
                not positive.
        """
        k = np.asarray(k, dtype=float).reshape(-1)
        if k.size != 9 or not np.all(np.isfinite(k)):
            raise ValueError(f'camera matrix K must be 9 finite numbers, got {k.tolist()}')
        if k[0] <= 0 or k[4] <= 0:
            raise ValueError(f'camera matrix K has non-positive focal length(s) fx={k[0]}, '
                             f'fy={k[4]} (camera_info not calibrated?)')
        if width <= 0 or height <= 0:
            raise ValueError(f'camera size must be positive, got {width}x{height}')
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> 'CameraIntrinsics':
        """Square-pixel intrinsics from the horizontal field of view, principal point centred."""
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2.0)
        return cls(float(f), float(f), (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class ObjectDetection:
    """One object found in a frame.

    Attributes:
        id: unique within one result, e.g. 'obj_0'.
        class_id: label ('die_cast_part', or a family name / the VLM's label).
        score: confidence 0..1.
        backend: 'classical' or 'vlm'.
        box_xyxy: (x1, y1, x2, y2) axis-aligned box in original-image pixels.
        mask: bool (H, W) mask of the object, or None when the backend has none.
        centroid_m: (3,) centroid in the camera optical frame (m), or None without valid depth.
        obb_rotation: (3, 3) rotation whose columns are the oriented box axes (camera frame).
        obb_extent_m: (3,) oriented box extents along those axes (m).
        points_px: (N, 2) 2D evidence points (e.g. VLM affordance points), original pixels.
        mean_rgb: mean colour of the object's pixels (0..255), or None.
    """

    id: str
    class_id: str
    score: float
    backend: str
    box_xyxy: Tuple[float, float, float, float]
    mask: Optional[np.ndarray] = None
    centroid_m: Optional[np.ndarray] = None
    obb_rotation: Optional[np.ndarray] = None
    obb_extent_m: Optional[np.ndarray] = None
    points_px: Optional[np.ndarray] = None
    mean_rgb: Optional[Tuple[float, float, float]] = None

    @property
    def has_3d(self) -> bool:
        """True when the 3D centroid and oriented box are known."""
        return self.centroid_m is not None and self.obb_rotation is not None


@dataclass
class PerceptionResult:
    """All detections of one frame plus the reason when the frame could not be processed.

    Attributes:
        detections: the objects (empty on an empty scene or on invalid input).
        diagnostic: '' when the frame was processed normally, else the reason.
        timings_ms: stage name -> milliseconds.
        plane: (4,) support plane (n, d) with n.p + d = 0, n pointing to the camera, or None.
    """

    detections: List[ObjectDetection] = field(default_factory=list)
    diagnostic: str = ''
    timings_ms: dict = field(default_factory=dict)
    plane: Optional[np.ndarray] = None
