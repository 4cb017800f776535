"""Classical RGB-D part detector: support plane + clustering + colour (the default backend).

Pipeline per frame (no ROS, no learned weights):
1. validate the frame (rgbd.validate_frame) -- bad input gives a diagnostic, never a guess;
2. fit the support plane (table top) with RANSAC on a strided grid of depth points, refine by
   least squares on its inliers; the plane's normal is oriented towards the camera; of the
   large parallel planes (table, floor) the nearest to the camera is the support;
3. height of every pixel above that plane; candidate pixels are those between min_height_m
   and max_height_m inside the image region covered by the plane (convex hull of its
   inliers), plus low pixels (>= color_min_height_m) whose colour differs from the table's
   median colour by more than color_distance (thin parts lying flat);
4. morphological opening, connected components (8-connected), area and size filters;
   components cut by the image border are dropped (their box and centroid would be wrong);
5. per component: 2D box, mask, oriented box from the minimum-area rectangle of its points
   projected on the plane and its height above it; the 3D centroid is the oriented box centre
   (the part's volumetric centre, not the mean of its visible surface).
"""

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from humanoid_inspection.perception.rgbd import (
    InvalidFrameError, backproject_image, height_above_plane, validate_frame)
from humanoid_inspection.perception.types import (
    CameraIntrinsics, ObjectDetection, PerceptionResult)


@dataclass
class ClassicalConfig:
    """Parameters of the classical backend (units: metres, pixels, RGB 0..255)."""

    plane_stride: int = 4
    ransac_iterations: int = 64
    ransac_threshold_m: float = 0.006
    ransac_sample_points: int = 2000
    min_plane_fraction: float = 0.15
    min_height_m: float = 0.008
    max_height_m: float = 0.35
    color_min_height_m: float = 0.003
    color_distance: float = 45.0
    min_area_px: int = 120
    min_extent_m: float = 0.01
    max_extent_m: float = 0.45
    opening_kernel_px: int = 3
    border_margin_px: int = 4
    min_valid_depth_fraction: float = 0.01
    class_colors: Dict[str, Tuple[int, int, int]] = field(default_factory=dict)
    class_color_tolerance: float = 40.0
    default_class: str = 'die_cast_part'
    seed: int = 0


def _plane_basis(n: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(n, e1)


def fit_plane_ransac(points: np.ndarray, iterations: int, threshold: float,
                     sample_points: int, rng: np.random.Generator) -> Optional[np.ndarray]:
    """RANSAC + least-squares plane (n, d) with n.p + d = 0, d >= 0 (normal to the camera).

    Args:
        points: (N, 3) finite points.
        iterations: number of 3-point hypotheses (scored all at once).
        threshold: inlier distance (m).
        sample_points: points used to score hypotheses.
        rng: random generator.

    Returns:
        The plane, or None with fewer than 3 points or only degenerate samples.
    """
    if len(points) < 3:
        return None
    scoring = points[rng.choice(len(points), min(sample_points, len(points)), replace=False)]
    tri = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-9
    if not np.any(ok):
        return None
    normals = normals[ok] / norms[ok, None]
    ds = -np.einsum('ij,ij->i', normals, tri[ok, 0])
    counts = (np.abs(scoring @ normals.T + ds) < threshold).sum(axis=0)
    best = int(np.argmax(counts))
    plane = np.append(normals[best], ds[best])
    for _ in range(2):  # least-squares refinement on the inliers of all points
        inliers = points[np.abs(points @ plane[:3] + plane[3]) < threshold]
        if len(inliers) < 3:
            break
        centre = inliers.mean(axis=0)
        n = np.linalg.svd(inliers - centre, full_matrices=False)[2][2]
        plane = np.append(n, -n @ centre)
    if plane[3] < 0:
        plane = -plane
    return plane


def fit_support_plane(points: np.ndarray, iterations: int, threshold: float,
                      sample_points: int, rng: np.random.Generator, min_fraction: float,
                      max_planes: int = 3, max_tilt_deg: float = 15.0) -> Optional[np.ndarray]:
    """The support plane: the nearest to the camera of the large planes parallel to the largest.

    A head camera looking down at a table also sees the floor beside and beyond it, as large
    as the table top or larger when parts cover the table (seed 3 of the cell: floor 45.1 %,
    table 44.0 % of the depth points); the largest plane alone was then the floor, and every
    part was "not on the table". Planes are peeled off one by one (RANSAC on the points the
    earlier ones left), and among those parallel to the first (within max_tilt_deg) that hold
    at least min_fraction of all points, the nearest one (smallest d) is the support.

    Args:
        points: (N, 3) finite points.
        iterations, threshold, sample_points, rng: as fit_plane_ransac.
        min_fraction: smallest share of all points a support plane holds.
        max_planes: planes peeled off at most.
        max_tilt_deg: largest angle between a candidate's normal and the first plane's.

    Returns:
        The plane (n, d) with d >= 0, or None as fit_plane_ransac.
    """
    first = fit_plane_ransac(points, iterations, threshold, sample_points, rng)
    if first is None:
        return None
    best = first
    rest = points[np.abs(points @ first[:3] + first[3]) >= threshold]
    cos_max = np.cos(np.radians(max_tilt_deg))
    for _ in range(max_planes - 1):
        if len(rest) < max(3, min_fraction * len(points)):
            break
        plane = fit_plane_ransac(rest, iterations, threshold, sample_points, rng)
        if plane is None:
            break
        inliers = np.abs(rest @ plane[:3] + plane[3]) < threshold
        if inliers.sum() >= min_fraction * len(points) and \
                abs(float(plane[:3] @ first[:3])) >= cos_max and plane[3] < best[3]:
            best = plane
        rest = rest[~inliers]
    return best


class ClassicalBackend:
    """Detects parts standing on a support plane in registered RGB-D frames."""

    name = 'classical'

    def __init__(self, config: Optional[ClassicalConfig] = None):
        """Create the backend with config (defaults: ClassicalConfig())."""
        self.config = config or ClassicalConfig()
        self._kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (self.config.opening_kernel_px,) * 2)

    def detect(self, color: Optional[np.ndarray], depth: Optional[np.ndarray],
               intrinsics: Optional[CameraIntrinsics]) -> PerceptionResult:
        """Find the parts in one frame.

        Args:
            color: (H, W, 3) uint8 RGB.
            depth: (H, W) float32 metres (NaN = no return) or uint16 millimetres.
            intrinsics: camera intrinsics, None if no camera_info has arrived.

        Returns:
            A PerceptionResult; on invalid input or when no plane is found, no detections and
            the reason in .diagnostic.
        """
        cfg = self.config
        timings = {}
        t0 = time.perf_counter()
        try:
            color, depth_m = validate_frame(color, depth, intrinsics,
                                            cfg.min_valid_depth_fraction)
        except InvalidFrameError as exc:
            return PerceptionResult(diagnostic=str(exc))
        s = cfg.plane_stride
        pts = backproject_image(depth_m[::s, ::s], _strided(intrinsics, s))
        valid = ~np.isnan(pts[..., 2])
        rng = np.random.default_rng(cfg.seed)
        plane = fit_support_plane(pts[valid], cfg.ransac_iterations, cfg.ransac_threshold_m,
                                  cfg.ransac_sample_points, rng, cfg.min_plane_fraction)
        timings['plane_ms'] = (time.perf_counter() - t0) * 1e3
        if plane is None:
            return PerceptionResult(diagnostic='no support plane found (too few depth points)',
                                    timings_ms=timings)
        inlier_grid = np.zeros(valid.shape, dtype=bool)
        inlier_grid[valid] = np.abs(pts[valid] @ plane[:3] + plane[3]) < cfg.ransac_threshold_m
        if inlier_grid.sum() < cfg.min_plane_fraction * valid.sum():
            return PerceptionResult(
                diagnostic=f'no support plane found (best plane holds '
                           f'{100.0 * inlier_grid.sum() / valid.sum():.1f} % of the depth '
                           f'points, minimum {100.0 * cfg.min_plane_fraction:.0f} %)',
                timings_ms=timings, plane=plane)
        t1 = time.perf_counter()
        height = height_above_plane(depth_m, intrinsics, plane)
        rows, cols = np.nonzero(inlier_grid)
        hull = cv2.convexHull(np.stack([cols * s, rows * s], axis=1).astype(np.int32))
        region = np.zeros(depth_m.shape, dtype=np.uint8)
        cv2.fillConvexPoly(region, hull, 1)
        table_rgb = np.median(color[::s, ::s][inlier_grid], axis=0)
        with np.errstate(invalid='ignore'):
            tall = (height > cfg.min_height_m) & (height < cfg.max_height_m)
            low = height > cfg.color_min_height_m
        cand = tall
        if cfg.color_distance > 0:
            diff = color.astype(np.int16) - table_rgb.astype(np.int16)
            dist2 = np.einsum('ijk,ijk->ij', diff, diff, dtype=np.int32)
            cand = tall | (low & (dist2 > cfg.color_distance ** 2))
        cand = (cand & (region > 0)).astype(np.uint8)
        cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, self._kernel)
        n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
        timings['segment_ms'] = (time.perf_counter() - t1) * 1e3
        t2 = time.perf_counter()
        detections = []
        for label in range(1, n_labels):
            x, y, w, h, area = stats[label]
            if area < cfg.min_area_px:
                continue
            m = cfg.border_margin_px
            if m >= 0 and (x < m or y < m or x + w > labels.shape[1] - m
                           or y + h > labels.shape[0] - m):
                continue  # cut by the image border: its box and centroid would be wrong
            det = self._describe(label, labels[y:y + h, x:x + w], (x, y, w, h), color,
                                 depth_m, height, intrinsics, plane)
            if det is not None:
                det.id = f'obj_{len(detections)}'
                detections.append(det)
        timings['describe_ms'] = (time.perf_counter() - t2) * 1e3
        timings['total_ms'] = (time.perf_counter() - t0) * 1e3
        diagnostic = '' if detections else 'empty scene: no object found above the support plane'
        return PerceptionResult(detections, diagnostic, timings, plane)

    def _describe(self, label, label_crop, box, color, depth_m, height, intrinsics, plane):
        cfg = self.config
        x, y, w, h = box
        crop = label_crop == label
        sub_depth = depth_m[y:y + h, x:x + w]
        sel = crop & ~np.isnan(sub_depth)
        if sel.sum() < 10:
            return None
        rr, cc = np.nonzero(sel)
        z = sub_depth[rr, cc]
        p = np.stack([(cc + x - intrinsics.cx) / intrinsics.fx * z,
                      (rr + y - intrinsics.cy) / intrinsics.fy * z, z], axis=1)
        n = plane[:3]
        e1, e2 = _plane_basis(n)
        hts = p @ n + plane[3]
        top = float(np.percentile(hts, 95))
        foot = p - np.outer(hts, n)
        ab = np.stack([foot @ e1, foot @ e2], axis=1).astype(np.float32)
        (ca, cb), (wa, wb), angle = cv2.minAreaRect(ab)
        th = np.radians(angle)
        ax = np.cos(th) * e1 + np.sin(th) * e2
        ay = -np.sin(th) * e1 + np.cos(th) * e2
        ext = np.array([wa, wb])
        if wb > wa:
            ax, ay, ext = ay, -ax, ext[::-1]
        if ext[0] < cfg.min_extent_m or ext[0] > cfg.max_extent_m or top < cfg.color_min_height_m:
            return None
        rot = np.stack([ax, ay, np.cross(ax, ay)], axis=1)
        plane_origin = -plane[3] * n
        centre = plane_origin + ca * e1 + cb * e2 + n * top / 2.0
        mask = np.zeros(depth_m.shape, dtype=bool)
        mask[y:y + h, x:x + w] = crop
        mean_rgb = color[y:y + h, x:x + w][crop].mean(axis=0)
        valid_fraction = sel.sum() / crop.sum()
        score = float(np.clip(valid_fraction, 0, 1) * np.clip(top / (3 * cfg.min_height_m), 0, 1))
        return ObjectDetection(
            id='', class_id=self._classify(mean_rgb), score=score, backend=self.name,
            box_xyxy=(float(x), float(y), float(x + w), float(y + h)), mask=mask,
            centroid_m=centre, obb_rotation=rot,
            obb_extent_m=np.array([ext[0], ext[1], top]),
            mean_rgb=tuple(float(c) for c in mean_rgb))

    def _classify(self, rgb: np.ndarray) -> str:
        best, best_d = self.config.default_class, self.config.class_color_tolerance
        for name, ref in self.config.class_colors.items():
            d = float(np.linalg.norm(rgb - np.asarray(ref, dtype=float)))
            if d <= best_d:
                best, best_d = name, d
        return best


def _strided(intr: CameraIntrinsics, s: int) -> CameraIntrinsics:
    """Intrinsics of the image subsampled as image[::s, ::s]."""
    return CameraIntrinsics(intr.fx / s, intr.fy / s, intr.cx / s, intr.cy / s,
                            (intr.width + s - 1) // s, (intr.height + s - 1) // s)
