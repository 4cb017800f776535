"""Ranked 3D grasp candidates from a mask or VLM points + depth + intrinsics (no ROS).

Gripper frame (Affordance.msg, CONTRACTS left_tcp/right_tcp): x = approach axis (from the
gripper into the object), y = finger closing direction, z = x cross y. Grasps are top-down:
the approach is minus the support-plane normal, which comes from (in this order) a plane fitted
to the depth ring around the object, the detection's oriented box, or the camera viewing ray.

From a mask, two families of candidates, ranked together:
- Footprint grasps: the object's points are projected on the support plane; the principal axes
  of that footprint give the closing directions. Closing across the minor axis at the footprint
  centre (best), the same shifted by +-1/4 of the length along the major axis, and closing
  across the major axis.
- Wall grasps (affordance/wall_grasps.py), for parts wider than the gripper: pinch grasps
  across a thin raised feature (a housing's wall, a hub's rim or hub, a bracket's web) found
  in the height map of the object and its surroundings (affordance/height_map.py), one finger
  inside the part above its floor and one outside.
From VLM points: one candidate per point, closing across the points' spread (or the mask's
minor axis when a mask is given).

Fingertips: the fingers reach `fingertip_below_tcp_m` below the TCP (pad centre; 0.02 m for the
project's gripper, urdf/humanoid_core.xacro). The TCP sits at half the object's height, or
finger_length/2 below its top if the object is taller than that, but never so low that the
fingertips come closer than `tip_clearance_m` to what lies under the fingers (the table or,
for a wall grasp, the part's floor): the height map gives that level. The opening is the width
along the closing direction plus a margin. A candidate is discarded, and counted, when it needs
more than the gripper's maximum opening (too_wide), its pixels have no valid depth (no_depth),
or a finger would land on something as high as the object (other).
Score in 0..1: valid-depth fraction x (0.5 + 0.5 x spare opening fraction) x position factor
(1 centre, 0.8 shifted, 0.7 across the major axis, <= 0.75 for a wall grasp).
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from humanoid_inspection.affordance.height_map import HeightMap
from humanoid_inspection.affordance.wall_grasps import WallGraspParams, find_wall_grasps
from humanoid_inspection.perception.classical_backend import fit_plane_ransac
from humanoid_inspection.perception.rgbd import backproject_pixels, depth_at
from humanoid_inspection.perception.types import CameraIntrinsics, ObjectDetection


@dataclass
class GraspConfig:
    """Gripper and ranking parameters (m)."""

    max_opening_m: float = 0.10
    finger_length_m: float = 0.06
    opening_margin_m: float = 0.02
    # a part almost as wide as the gripper opens is still grasped across its footprint with
    # the opening that is left, down to this margin (5 mm a side; perception's centroids are
    # within ~1 mm): the 87 mm hub-001005 had no grasp at all with 20 mm
    min_opening_margin_m: float = 0.01
    default_opening_m: float = 0.06
    min_valid_depth_fraction: float = 0.2
    ring_inner_px: int = 4
    ring_outer_px: int = 18
    max_points: int = 3000
    min_object_height_m: float = 0.004
    # fingers (urdf/humanoid_core.xacro): pad width, thickness, tip below the TCP
    finger_width_m: float = 0.02
    finger_thickness_m: float = 0.015
    fingertip_below_tcp_m: float = 0.02
    tip_clearance_m: float = 0.003
    wall_grasps: bool = True
    wall_opening_margin_m: float = 0.01
    max_wall_candidates: int = 6
    wall_top_level: bool = True     # WallGraspParams.top_level (off: the step grid only)
    min_contact_m: float = 0.005
    height_map_cell_m: float = 0.002

    def wall_params(self) -> WallGraspParams:
        """The wall-grasp search parameters implied by this gripper."""
        return WallGraspParams(
            max_opening_m=self.max_opening_m, opening_margin_m=self.wall_opening_margin_m,
            finger_length_m=self.finger_length_m, finger_width_m=self.finger_width_m,
            finger_thickness_m=self.finger_thickness_m,
            fingertip_below_tcp_m=self.fingertip_below_tcp_m,
            tip_clearance_m=self.tip_clearance_m, min_contact_m=self.min_contact_m,
            max_candidates=self.max_wall_candidates, top_level=self.wall_top_level)

    def lowest_tcp(self, under_fingers_m: float = 0.0) -> float:
        """Lowest TCP height above the plane that keeps the fingertips clear of a surface."""
        return max(under_fingers_m, 0.0) + self.tip_clearance_m + self.fingertip_below_tcp_m


@dataclass
class GraspCandidate:
    """One grasp: TCP pose in `frame`, opening, score and its 2D evidence."""

    object_id: str
    position: np.ndarray
    rotation: np.ndarray
    opening_m: float
    score: float
    points_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    frame: str = 'camera'
    kind: str = ''

    @property
    def approach(self) -> np.ndarray:
        """Unit approach axis (the rotation's x column)."""
        return self.rotation[:, 0]

    def matrix(self) -> np.ndarray:
        """4x4 pose of the TCP in self.frame."""
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.rotation, self.position
        return T


@dataclass
class GraspResult:
    """Ranked candidates (best first) and the counts of discarded ones."""

    candidates: List[GraspCandidate] = field(default_factory=list)
    discarded_no_depth: int = 0
    discarded_too_wide: int = 0
    discarded_other: int = 0
    diagnostic: str = ''

    def extend(self, other: 'GraspResult') -> None:
        """Merge other into self (candidates re-ranked, counts summed, reasons joined)."""
        self.candidates = rank(self.candidates + other.candidates)
        self.discarded_no_depth += other.discarded_no_depth
        self.discarded_too_wide += other.discarded_too_wide
        self.discarded_other += other.discarded_other
        self.diagnostic = '; '.join(d for d in (self.diagnostic, other.diagnostic) if d)


def rank(candidates: Sequence[GraspCandidate]) -> List[GraspCandidate]:
    """Candidates sorted best first."""
    return sorted(candidates, key=lambda c: -c.score)


def _fit_plane(points: np.ndarray) -> Optional[np.ndarray]:
    # RANSAC: the ring may also hold neighbouring parts or the object's own top face
    if len(points) < 20:
        return None
    return fit_plane_ransac(points, 64, 0.004, 1500, np.random.default_rng(0))


def support_plane_around(mask: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                         inner_px: int, outer_px: int) -> Optional[np.ndarray]:
    """Plane (n, d), n towards the camera, fitted to the depth in a ring around mask."""
    m = mask.astype(np.uint8)
    outer = cv2.dilate(m, np.ones((2 * outer_px + 1,) * 2, np.uint8))
    inner = cv2.dilate(m, np.ones((2 * inner_px + 1,) * 2, np.uint8))
    ring = (outer > 0) & (inner == 0) & ~np.isnan(depth_m)
    rows, cols = np.nonzero(ring)
    if rows.size > 4000:
        keep = np.linspace(0, rows.size - 1, 4000).astype(int)
        rows, cols = rows[keep], cols[keep]
    return _fit_plane(backproject_pixels(cols, rows, depth_m[rows, cols], intrinsics))


def mask_from_box(box_xyxy, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                  config: Optional[GraspConfig] = None) -> np.ndarray:
    """Object mask inside a 2D box: pixels standing above the plane fitted around the box."""
    cfg = config or GraspConfig()
    h, w = depth_m.shape
    x1, y1, x2, y2 = (int(round(v)) for v in box_xyxy)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    mask = np.zeros(depth_m.shape, dtype=bool)
    if x2 <= x1 or y2 <= y1:
        return mask
    mask[y1:y2, x1:x2] = True
    plane = support_plane_around(mask, depth_m, intrinsics, 2, cfg.ring_outer_px)
    if plane is None:
        return mask & ~np.isnan(depth_m)
    rows, cols = np.nonzero(mask)
    z = depth_m[rows, cols]
    p = backproject_pixels(cols, rows, z, intrinsics)
    with np.errstate(invalid='ignore'):
        above = (p @ plane[:3] + plane[3]) > cfg.min_object_height_m
    out = np.zeros_like(mask)
    out[rows[above], cols[above]] = True
    return out


def _basis(n: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(n, e1)


def _rotation(approach: np.ndarray, closing: np.ndarray) -> np.ndarray:
    x = approach / np.linalg.norm(approach)
    y = closing - (closing @ x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=1)


class _Object:
    """An object's points on its support plane: footprint axes, extents and height."""

    def __init__(self, points: np.ndarray, plane: np.ndarray):
        self.n = plane[:3]
        heights = points @ self.n + plane[3]
        self.top = float(np.percentile(heights, 95))
        foot = points - np.outer(heights, self.n)
        e1, e2 = _basis(self.n)
        ab = np.stack([foot @ e1, foot @ e2], axis=1)
        centre = ab.mean(axis=0)
        evals, evecs = np.linalg.eigh(np.cov((ab - centre).T))
        major2, minor2 = evecs[:, 1], evecs[:, 0]
        self.major = major2[0] * e1 + major2[1] * e2
        self.minor = minor2[0] * e1 + minor2[1] * e2
        proj_major = (ab - centre) @ major2
        proj_minor = (ab - centre) @ minor2
        lo_M, hi_M = np.percentile(proj_major, [1, 99])
        lo_m, hi_m = np.percentile(proj_minor, [1, 99])
        c_ab = centre + major2 * (lo_M + hi_M) / 2 + minor2 * (lo_m + hi_m) / 2
        self.length, self.width = float(hi_M - lo_M), float(hi_m - lo_m)
        self.centre_on_plane = -plane[3] * self.n + c_ab[0] * e1 + c_ab[1] * e2
        self.ab, self.e1, self.e2 = ab, e1, e2

    def grasp_height(self, finger_length: float) -> float:
        return max(self.top / 2.0, self.top - finger_length / 2.0)

    def width_through(self, point_on_plane: np.ndarray, closing: np.ndarray,
                      slab: float = 0.01) -> float:
        """Footprint width along closing through a point (a slab of +-slab m)."""
        along = np.cross(self.n, closing)
        q = np.array([point_on_plane @ self.e1, point_on_plane @ self.e2])
        c2 = np.array([closing @ self.e1, closing @ self.e2])
        a2 = np.array([along @ self.e1, along @ self.e2])
        rel = self.ab - q
        near = np.abs(rel @ a2) < slab
        if near.sum() < 5:
            return float('nan')
        s = rel[near] @ c2
        return float(np.percentile(s, 99) - np.percentile(s, 1))


def _object_points(mask: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics,
                   max_points: int) -> Tuple[np.ndarray, float]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return np.zeros((0, 3)), 0.0
    z = depth_m[rows, cols]
    ok = ~np.isnan(z)
    frac = float(ok.mean())
    rows, cols, z = rows[ok], cols[ok], z[ok]
    if rows.size > max_points:
        keep = np.linspace(0, rows.size - 1, max_points).astype(int)
        rows, cols, z = rows[keep], cols[keep], z[keep]
    return backproject_pixels(cols, rows, z, intrinsics), frac


def _plane_for(det_rotation, mask, depth_m, intrinsics, points, cfg) -> np.ndarray:
    plane = support_plane_around(mask, depth_m, intrinsics, cfg.ring_inner_px, cfg.ring_outer_px)
    if plane is not None:
        return plane
    if det_rotation is not None:
        n = det_rotation[:, 2]
    else:
        c = points.mean(axis=0)
        n = -c / np.linalg.norm(c)  # towards the camera
    n = n if n @ points.mean(axis=0) < 0 else -n
    base = float(np.percentile(points @ n, 2))
    return np.append(n, -base)


def _candidate(obj_id, obj, centre_on_plane, closing, opening, score_factor, valid_frac,
               cfg, points_px, kind, result, tcp_height=None, margin=None):
    if not np.isfinite(opening):
        result.discarded_other += 1
        return
    opening = opening + (cfg.opening_margin_m if margin is None else margin)
    if opening > cfg.max_opening_m:
        result.discarded_too_wide += 1
        return
    if tcp_height is None:
        tcp_height = max(obj.grasp_height(cfg.finger_length_m), cfg.lowest_tcp())
    position = centre_on_plane + obj.n * tcp_height
    spare = 1.0 - opening / cfg.max_opening_m
    score = float(np.clip(valid_frac, 0, 1) * (0.5 + 0.5 * spare) * score_factor)
    result.candidates.append(GraspCandidate(
        obj_id, position, _rotation(-obj.n, closing), float(opening), score,
        np.asarray(points_px, dtype=float).reshape(-1, 2), 'camera', kind))


def grasps_from_mask(object_id: str, mask: np.ndarray, depth_m: np.ndarray,
                     intrinsics: CameraIntrinsics, config: Optional[GraspConfig] = None,
                     obb_rotation: Optional[np.ndarray] = None) -> GraspResult:
    """Ranked top-down grasp candidates for the object under mask (camera frame).

    Args:
        object_id: the detection's id.
        mask: (H, W) bool mask of the object.
        depth_m: (H, W) depth in metres, NaN = no return.
        intrinsics: camera intrinsics.
        config: gripper/ranking parameters.
        obb_rotation: the detection's oriented box (its z axis = the plane normal), used when
            the ring around the mask has too little depth to fit a plane.
    """
    cfg = config or GraspConfig()
    result = GraspResult()
    kinds = ('minor_centre', 'minor_shift_pos', 'minor_shift_neg', 'major_centre')
    points, frac = _object_points(mask, depth_m, intrinsics, cfg.max_points)
    if len(points) < 10 or frac < cfg.min_valid_depth_fraction:
        result.discarded_no_depth += len(kinds)
        result.diagnostic = (f'{object_id}: {100 * frac:.0f} % of its pixels have valid depth '
                             f'(minimum {100 * cfg.min_valid_depth_fraction:.0f} %)')
        return result
    plane = _plane_for(obb_rotation, mask, depth_m, intrinsics, points, cfg)
    obj = _Object(points, plane)
    if obj.top < cfg.min_object_height_m:
        result.discarded_other += len(kinds)
        result.diagnostic = f'{object_id}: no height above the support plane'
        return result
    rows, cols = np.nonzero(mask)
    centre_px = np.array([[cols.mean(), rows.mean()]])
    hm = _height_map(mask, depth_m, intrinsics, plane, obj, points, cfg)
    c = obj.centre_on_plane
    shift = obj.major * obj.length / 4.0
    for kind, centre, closing, factor in (
            ('minor_centre', c, obj.minor, 1.0),
            ('minor_shift_pos', c + shift, obj.minor, 0.8),
            ('minor_shift_neg', c - shift, obj.minor, 0.8),
            ('major_centre', c, obj.major, 0.7)):
        opening = obj.width if closing is obj.minor else obj.length
        if kind.startswith('minor_shift'):
            opening = obj.width_through(centre, closing)
        tcp = None
        margin = footprint_margin(opening, cfg)
        if hm is not None and np.isfinite(opening) and \
                opening + margin <= cfg.max_opening_m:
            landing = _landing_height(hm, centre, closing, opening + margin, cfg)
            if landing >= obj.top - 0.001:
                result.discarded_other += 1
                result.diagnostic = _join(result.diagnostic, f'{object_id}: {kind}: a finger '
                                          f'would land {1e3 * landing:.0f} mm up')
                continue
            tcp = max(obj.grasp_height(cfg.finger_length_m), cfg.lowest_tcp(landing))
        _candidate(object_id, obj, centre, closing, opening, factor, frac, cfg, centre_px,
                   kind, result, tcp, margin)
    if hm is not None and cfg.wall_grasps:
        centre_ab = hm.plane_coords(obj.centre_on_plane)[0]
        for w in find_wall_grasps(hm, cfg.wall_params(), centre_ab):
            on_plane = hm.to_plane(np.array([w.centre_ab[0]]), np.array([w.centre_ab[1]]))[0]
            closing = w.direction_ab[0] * hm.u + w.direction_ab[1] * hm.v
            _candidate(object_id, obj, on_plane, closing, w.width_m, w.score_factor, frac, cfg,
                       centre_px, w.kind, result,
                       w.tip_height_m + cfg.fingertip_below_tcp_m, cfg.wall_opening_margin_m)
    result.candidates = rank(result.candidates)
    return result


def footprint_margin(width: float, cfg: GraspConfig) -> float:
    """Opening added to a footprint width: opening_margin_m, or what is left of the gripper's
    maximum opening when that is between min_opening_margin_m and opening_margin_m."""
    if not np.isfinite(width) or width + cfg.opening_margin_m <= cfg.max_opening_m:
        return cfg.opening_margin_m
    left = cfg.max_opening_m - width
    return float(left) if left >= cfg.min_opening_margin_m else cfg.opening_margin_m


def _join(a: str, b: str) -> str:
    return '; '.join(x for x in (a, b) if x)


def _height_map(mask, depth_m, intrinsics, plane, obj, object_points, cfg
                ) -> Optional[HeightMap]:
    """Height map of the object and a margin around it (for finger landing zones)."""
    margin_m = cfg.finger_thickness_m + cfg.opening_margin_m / 2 + 0.01
    z = float(np.median(object_points[:, 2]))
    if not np.isfinite(z) or z <= 0:
        return None
    pad = int(np.ceil(margin_m * max(intrinsics.fx, intrinsics.fy) / z)) + 2
    rows, cols = np.nonzero(mask)
    h, w = depth_m.shape
    r0, r1 = max(0, rows.min() - pad), min(h, rows.max() + pad + 1)
    c0, c1 = max(0, cols.min() - pad), min(w, cols.max() + pad + 1)
    d = depth_m[r0:r1, c0:c1]
    rr, cc = np.nonzero(~np.isnan(d))        # the whole box around the mask + the margin
    region = backproject_pixels(cc + c0, rr + r0, d[rr, cc], intrinsics)
    half = max(obj.length, obj.width) / 2 + margin_m
    return HeightMap(region, object_points, plane, obj.centre_on_plane, obj.major, half,
                     cfg.height_map_cell_m)


def _landing_height(hm: HeightMap, centre: np.ndarray, closing: np.ndarray, opening: float,
                    cfg: GraspConfig) -> float:
    """Highest known surface under the two fingers of a grasp opened to `opening` (m)."""
    ab = hm.plane_coords(centre)[0]
    c = np.array([closing @ hm.u, closing @ hm.v])
    c /= np.linalg.norm(c)
    out = 0.0
    for lo, hi in ((opening / 2, opening / 2 + cfg.finger_thickness_m),
                   (-opening / 2 - cfg.finger_thickness_m, -opening / 2)):
        top, _ = hm.max_in_rect(ab, c, (lo, hi), cfg.finger_width_m / 2)
        out = max(out, top)
    return out


def grasps_from_points(object_id: str, points_px: np.ndarray, depth_m: np.ndarray,
                       intrinsics: CameraIntrinsics, config: Optional[GraspConfig] = None,
                       mask: Optional[np.ndarray] = None,
                       plane: Optional[np.ndarray] = None) -> GraspResult:
    """One top-down grasp candidate per VLM affordance point (camera frame).

    Args:
        object_id: the object the points belong to.
        points_px: (N, 2) points (x = column, y = row) in original-image pixels.
        depth_m: depth in metres.
        intrinsics: camera intrinsics.
        config: gripper/ranking parameters.
        mask: the object's mask if known: gives the opening through each point and the
            closing direction; without it the opening is config.default_opening_m.
        plane: the support plane (n, d) if known (e.g. PerceptionResult.plane); else fitted
            to the depth in a wide ring around the points.
    """
    cfg = config or GraspConfig()
    result = GraspResult()
    pts = np.asarray(points_px, dtype=float).reshape(-1, 2)
    xyz, kept = [], []
    for x, y in pts:
        z = depth_at(depth_m, x, y)
        if np.isnan(z):
            result.discarded_no_depth += 1
        else:
            xyz.append(backproject_pixels(np.array([x]), np.array([y]), np.array([z]),
                                          intrinsics)[0])
            kept.append((x, y))
    if not xyz:
        result.diagnostic = f'{object_id}: no valid depth at any of the {len(pts)} point(s)'
        return result
    xyz = np.array(xyz)
    h, w = depth_m.shape
    if mask is None:
        region = np.zeros((h, w), dtype=bool)
        for x, y in kept:
            region[max(0, int(y) - 6):int(y) + 7, max(0, int(x) - 6):int(x) + 7] = True
        if plane is None:
            plane = support_plane_around(region, depth_m, intrinsics, 30, 90)
        obj_points, frac = xyz, 1.0
    else:
        obj_points, frac = _object_points(mask, depth_m, intrinsics, cfg.max_points)
        if plane is None and len(obj_points) >= 10:
            plane = support_plane_around(mask, depth_m, intrinsics, cfg.ring_inner_px,
                                         cfg.ring_outer_px)
    if plane is None:
        c = xyz.mean(axis=0)
        n = -c / np.linalg.norm(c)
        plane = np.append(n, -float(np.percentile(xyz @ n, 0)) + 0.02)
    n = plane[:3]
    if mask is not None and len(obj_points) >= 10:
        obj = _Object(obj_points, plane)
        closing = obj.minor
    else:
        obj = None
        if len(xyz) >= 2 and np.ptp(xyz @ _basis(n)[0]) + np.ptp(xyz @ _basis(n)[1]) > 0.005:
            flat = xyz - np.outer(xyz @ n, n)
            along = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)[2][0]
            closing = np.cross(n, along)
        else:
            closing = np.array([1.0, 0.0, 0.0]) - n[0] * n  # camera x on the plane
        closing /= np.linalg.norm(closing)
    for (x, y), p in zip(kept, xyz):
        height = float(p @ n + plane[3])
        on_plane = p - height * n
        if obj is not None:
            opening = obj.width_through(on_plane, closing)
            top = obj.top
        else:
            opening, top = cfg.default_opening_m - cfg.opening_margin_m, height
        if top < cfg.min_object_height_m:
            result.discarded_other += 1
            continue
        grasp_h = max(top / 2.0, top - cfg.finger_length_m / 2.0, cfg.lowest_tcp())
        surrogate = _PointObject(n, grasp_h)
        _candidate(object_id, surrogate, on_plane, closing, opening, 1.0, frac, cfg,
                   [[x, y]], 'vlm_point', result)
    result.candidates = rank(result.candidates)
    return result


class _PointObject:
    """The minimal object description _candidate needs for a VLM point."""

    def __init__(self, n: np.ndarray, grasp_h: float):
        self.n = n
        self._h = grasp_h

    def grasp_height(self, finger_length: float) -> float:
        return self._h


def grasps_for_detection(det: ObjectDetection, depth_m: np.ndarray,
                         intrinsics: CameraIntrinsics,
                         config: Optional[GraspConfig] = None) -> GraspResult:
    """Candidates for a detection: VLM points if it has them, else its mask, else its box."""
    cfg = config or GraspConfig()
    mask = det.mask
    if mask is None or not mask.any():
        mask = mask_from_box(det.box_xyxy, depth_m, intrinsics, cfg)
    if det.points_px is not None and len(det.points_px):
        return grasps_from_points(det.id, det.points_px, depth_m, intrinsics, cfg, mask)
    return grasps_from_mask(det.id, mask, depth_m, intrinsics, cfg, det.obb_rotation)


def to_frame(result: GraspResult, T_target_cam: np.ndarray, frame: str) -> GraspResult:
    """The same candidates expressed in another frame (e.g. base_link) given T_target_cam."""
    T = np.asarray(T_target_cam, dtype=float)
    if T.shape != (4, 4) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6):
        raise ValueError('T_target_cam must be a 4x4 rigid transform')
    out = GraspResult([], result.discarded_no_depth, result.discarded_too_wide,
                      result.discarded_other, result.diagnostic)
    for c in result.candidates:
        out.candidates.append(GraspCandidate(
            c.object_id, T[:3, :3] @ c.position + T[:3, 3], T[:3, :3] @ c.rotation,
            c.opening_m, c.score, c.points_px, frame, c.kind))
    return out


def rotation_to_quaternion(R: np.ndarray) -> Tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a rotation matrix."""
    m = np.asarray(R, dtype=float)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s)
    q = np.array(q)
    q /= np.linalg.norm(q)
    return tuple(float(v) for v in q)


def quaternion_to_rotation(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation of a (x, y, z, w) quaternion (normalised first)."""
    q = np.array([x, y, z, w], dtype=float)
    n = np.linalg.norm(q)
    if n < 1e-12:
        return np.eye(3)
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
