"""Ray-cast RGB-D frames of boxes, cylinders and compound parts on a table, with ground truth.

Used by the tests and the benchmarks of the perception and affordance modules: a scene is a
table top (world z = 0, world z up) with parts resting on it, seen by a pinhole camera whose
pose comes from look_at(). render_scene() returns the colour image, the depth in metres
(NaN = no return), the intrinsics and, per object, the true centroid and 2D box in the camera
optical frame / image. Compound parts (a union of boxes/cylinders that all rest on the table, one
object id) model the cell's castings: open_box() = a housing (base plate + four walls),
bracket() = flange + upright web, hub() = web disk + rim ring + central hub. No ROS.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.perception.types import CameraIntrinsics


@dataclass(frozen=True)
class BoxPart:
    """A box resting on the table: centre xy (m), size (sx, sy, sz) (m), yaw (rad), RGB."""

    xy: Tuple[float, float]
    size: Tuple[float, float, float]
    yaw: float = 0.0
    rgb: Tuple[int, int, int] = (170, 170, 180)


@dataclass(frozen=True)
class CylinderPart:
    """An upright cylinder resting on the table: centre xy, radius, height (m), RGB."""

    xy: Tuple[float, float]
    radius: float
    height: float
    rgb: Tuple[int, int, int] = (150, 155, 165)


@dataclass(frozen=True)
class CompoundPart:
    """One part made of pieces that all rest on the table (their union is rendered).

    Attributes:
        xy: reference centre (m); the true centroid is (xy, height / 2), the bounding-box centre.
        height: overall height (m).
        pieces: BoxPart / CylinderPart items (world xy, their own yaw).
        rgb: colour of the whole part.
        kind: 'open_box', 'bracket', 'hub' (for tests and figures).
    """

    xy: Tuple[float, float]
    height: float
    pieces: Tuple = ()
    rgb: Tuple[int, int, int] = (185, 185, 195)
    kind: str = ''


def _place(xy, yaw, local_xy):
    c, s = np.cos(yaw), np.sin(yaw)
    return (float(xy[0] + c * local_xy[0] - s * local_xy[1]),
            float(xy[1] + s * local_xy[0] + c * local_xy[1]))


def open_box(xy, size, wall: float, base: float, yaw: float = 0.0,
             rgb=(185, 185, 195)) -> CompoundPart:
    """An open-top box shell like the cell's housings: base plate + four walls.

    Args:
        xy: centre on the table (m).
        size: outer (length, width, height) (m).
        wall: wall thickness (m).
        base: base plate thickness (m).
        yaw: rotation about the table normal (rad).
        rgb: colour.
    """
    lx, ly, h = size
    pieces = [BoxPart(_place(xy, yaw, (0, 0)), (lx, ly, base), yaw, rgb),
              BoxPart(_place(xy, yaw, (lx / 2 - wall / 2, 0)), (wall, ly, h), yaw, rgb),
              BoxPart(_place(xy, yaw, (-lx / 2 + wall / 2, 0)), (wall, ly, h), yaw, rgb),
              BoxPart(_place(xy, yaw, (0, ly / 2 - wall / 2)), (lx - 2 * wall, wall, h), yaw,
                      rgb),
              BoxPart(_place(xy, yaw, (0, -ly / 2 + wall / 2)), (lx - 2 * wall, wall, h), yaw,
                      rgb)]
    return CompoundPart(tuple(xy), h, tuple(pieces), rgb, 'open_box')


def bracket(xy, length: float, depth: float, flange: float, web: float, height: float,
            web_offset: float = 0.0, yaw: float = 0.0, rgb=(160, 165, 175)) -> CompoundPart:
    """An L/T bracket: flange plate (length x depth x flange) + upright web along its length.

    Args:
        web_offset: web centre offset across the flange (m, local y).
    """
    pieces = (BoxPart(_place(xy, yaw, (0, 0)), (length, depth, flange), yaw, rgb),
              BoxPart(_place(xy, yaw, (0, web_offset)), (length, web, height), yaw, rgb))
    return CompoundPart(tuple(xy), height, pieces, rgb, 'bracket')


def hub(xy, radius: float, web: float, rim_width: float, rim_height: float, hub_radius: float,
        hub_height: float, segments: int = 16, rgb=(200, 195, 185)) -> CompoundPart:
    """A wheel hub: web disk + rim (a ring of `segments` boxes) + central hub cylinder."""
    pieces = [CylinderPart(tuple(xy), radius, web, rgb),
              CylinderPart(tuple(xy), hub_radius, hub_height, rgb)]
    mid = radius - rim_width / 2
    half_len = mid * np.tan(np.pi / segments) + rim_width / 2
    for i in range(segments):
        a = 2 * np.pi * i / segments
        pieces.append(BoxPart((float(xy[0] + mid * np.cos(a)), float(xy[1] + mid * np.sin(a))),
                              (rim_width, 2 * half_len, rim_height), a, rgb))
    return CompoundPart(tuple(xy), max(rim_height, hub_height), tuple(pieces), rgb, 'hub')


def _part_height(part) -> float:
    if isinstance(part, BoxPart):
        return part.size[2]
    return part.height


def _bounding_sphere(part: CompoundPart) -> Tuple[np.ndarray, float]:
    centre = np.array([part.xy[0], part.xy[1], part.height / 2])
    r = 0.0
    for piece in part.pieces:
        if isinstance(piece, BoxPart):
            reach = np.hypot(piece.size[0], piece.size[1]) / 2
        else:
            reach = piece.radius
        r = max(r, np.hypot(piece.xy[0] - centre[0], piece.xy[1] - centre[1]) + reach)
    return centre, float(np.hypot(r, part.height / 2)) + 1e-3


def _hit_part(o, d, part):
    if isinstance(part, CompoundPart):
        best_t = np.full(len(d), np.inf)
        best_n = np.zeros_like(d)
        # only the rays through the part's bounding sphere are cast against its pieces
        centre, radius = _bounding_sphere(part)
        oc = o - centre
        b = np.einsum('ij,ij->i', d, oc)
        disc = b ** 2 - np.einsum('ij,ij->i', d, d) * (np.einsum('ij,ij->i', oc, oc) - radius ** 2)
        near = np.nonzero(disc >= 0)[0]
        for piece in part.pieces:
            t, n = _hit_part(o[near], d[near], piece)
            closer = t < best_t[near]
            best_t[near[closer]] = t[closer]
            best_n[near[closer]] = n[closer]
        return best_t, best_n
    return _hit_box(o, d, part) if isinstance(part, BoxPart) else _hit_cylinder(o, d, part)


@dataclass
class SyntheticFrame:
    """A rendered frame and its ground truth.

    Attributes:
        color: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 metres, NaN = no return.
        intrinsics: the camera intrinsics.
        T_world_cam: 4x4 pose of the camera optical frame in the world (table) frame.
        object_ids: (H, W) int, -1 table/background, i the index of the visible part.
        centroids_cam: (N, 3) true volumetric centres of the parts, camera frame (m).
        boxes_xyxy: (N, 4) 2D boxes of the visible pixels of each part (NaN if not visible).
    """

    color: np.ndarray
    depth: np.ndarray
    intrinsics: CameraIntrinsics
    T_world_cam: np.ndarray
    object_ids: np.ndarray
    centroids_cam: np.ndarray
    boxes_xyxy: np.ndarray
    parts: List = field(default_factory=list)


def look_at(eye: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """4x4 world pose of a camera optical frame (z forward, x right, y down) at eye."""
    eye = np.asarray(eye, dtype=float)
    z = np.asarray(target, dtype=float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-9:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def _hit_box(o, d, part: BoxPart):
    c, s = np.cos(part.yaw), np.sin(part.yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    centre = np.array([part.xy[0], part.xy[1], part.size[2] / 2.0])
    ol = (o - centre) @ R
    dl = d @ R
    half = np.asarray(part.size) / 2.0
    with np.errstate(divide='ignore', invalid='ignore'):
        t1 = (-half - ol) / dl
        t2 = (half - ol) / dl
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (tmax >= tmin) & (tmin > 0)
    t = np.where(hit, tmin, np.inf)
    axis = np.argmax(np.minimum(t1, t2), axis=1)
    normals_local = np.zeros_like(dl)
    idx = np.arange(len(dl))
    normals_local[idx, axis] = -np.sign(dl[idx, axis])
    return t, normals_local @ R.T


def _hit_cylinder(o, d, part: CylinderPart):
    cx, cy = part.xy
    ox, oy = o[:, 0] - cx, o[:, 1] - cy
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (ox * d[:, 0] + oy * d[:, 1])
    c = ox ** 2 + oy ** 2 - part.radius ** 2
    disc = b ** 2 - 4 * a * c
    with np.errstate(invalid='ignore', divide='ignore'):
        ts = (-b - np.sqrt(disc)) / (2 * a)
    z_side = o[:, 2] + ts * d[:, 2]
    side = (disc >= 0) & (ts > 0) & (z_side >= 0) & (z_side <= part.height)
    t = np.where(side, ts, np.inf)
    with np.errstate(divide='ignore', invalid='ignore'):
        tc = (part.height - o[:, 2]) / d[:, 2]
    px, py = ox + tc * d[:, 0], oy + tc * d[:, 1]
    cap = (tc > 0) & (px ** 2 + py ** 2 <= part.radius ** 2)
    use_cap = cap & (tc < t)
    t = np.where(use_cap, tc, t)
    n = np.zeros_like(d)
    n[:, 0] = (ox + t * d[:, 0]) / part.radius
    n[:, 1] = (oy + t * d[:, 1]) / part.radius
    n[use_cap] = (0.0, 0.0, 1.0)
    return t, n


def render_scene(parts: Sequence, T_world_cam: np.ndarray,
                 intrinsics: Optional[CameraIntrinsics] = None,
                 table_size: Tuple[float, float] = (1.2, 1.6), table_height: float = 0.75,
                 table_rgb=(95, 110, 90), floor_rgb=(60, 60, 60), depth_noise_m: float = 0.0,
                 dropout: float = 0.0, seed: int = 0) -> SyntheticFrame:
    """Render parts on a table centred at the world origin.

    Args:
        parts: BoxPart / CylinderPart / CompoundPart items.
        T_world_cam: camera optical frame pose (see look_at()).
        intrinsics: default 640x480 with 60 deg horizontal field of view.
        table_size: table top extent along world x, y (m); the floor is table_height below.
        depth_noise_m: standard deviation of additive Gaussian depth noise.
        dropout: fraction of depth pixels set to NaN at random.
        seed: noise seed.
    """
    intr = intrinsics or CameraIntrinsics.from_fov(640, 480, 60.0)
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid((np.arange(intr.width) - intr.cx) / intr.fx,
                       (np.arange(intr.height) - intr.cy) / intr.fy)
    d_cam = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    R, p = T_world_cam[:3, :3], T_world_cam[:3, 3]
    d = d_cam @ R.T
    o = np.broadcast_to(p, d.shape)
    n_px = d.shape[0]
    best_t = np.full(n_px, np.inf)
    best_id = np.full(n_px, -3)
    normals = np.zeros((n_px, 3))
    normals[:, 2] = 1.0
    with np.errstate(divide='ignore', invalid='ignore'):
        t_table = -o[:, 2] / d[:, 2]
        t_floor = (-table_height - o[:, 2]) / d[:, 2]
    hx, hy = table_size[0] / 2, table_size[1] / 2
    on_table = (t_table > 0) & (np.abs(o[:, 0] + t_table * d[:, 0]) <= hx) & \
        (np.abs(o[:, 1] + t_table * d[:, 1]) <= hy)
    best_t = np.where(on_table, t_table, best_t)
    best_id[on_table] = -1
    floor = (t_floor > 0) & (t_floor < best_t)
    best_t = np.where(floor, t_floor, best_t)
    best_id[floor] = -2
    for i, part in enumerate(parts):
        t, n = _hit_part(o, d, part)
        closer = t < best_t
        best_t[closer] = t[closer]
        best_id[closer] = i
        normals[closer] = n[closer]
    depth = best_t.astype(np.float32)  # the camera-frame ray has z = 1, so t is the depth
    light = np.array([0.3, -0.2, 1.0])
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.55 * np.clip(normals @ light, 0.0, 1.0)
    palette = np.array([floor_rgb, table_rgb] + [p.rgb for p in parts], dtype=float)
    rgb = palette[best_id + 2] * shade[:, None]
    rgb = rgb + rng.normal(0.0, 2.0, rgb.shape)
    color = np.clip(rgb, 0, 255).astype(np.uint8).reshape(intr.height, intr.width, 3)
    depth[~np.isfinite(depth)] = np.nan
    if depth_noise_m > 0:
        depth += rng.normal(0.0, depth_noise_m, depth.shape).astype(np.float32)
    if dropout > 0:
        depth[rng.random(depth.shape) < dropout] = np.nan
    depth = depth.reshape(intr.height, intr.width)
    ids = np.where(best_id >= 0, best_id, -1).reshape(intr.height, intr.width)
    T_cam_world = np.linalg.inv(T_world_cam)
    centroids, boxes = [], []
    for i, part in enumerate(parts):
        h = _part_height(part)
        cw = np.array([part.xy[0], part.xy[1], h / 2.0, 1.0])
        centroids.append((T_cam_world @ cw)[:3])
        rows, cols = np.nonzero(ids == i)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] if rows.size
                     else [np.nan] * 4)
    return SyntheticFrame(color, depth, intr, T_world_cam, ids,
                          np.array(centroids).reshape(-1, 3),
                          np.array(boxes, dtype=float).reshape(-1, 4), list(parts))


def default_camera_pose() -> np.ndarray:
    """The head-camera-like view used by tests and benchmarks: 0.6 m up, looking down ~50 deg."""
    return look_at([-0.45, 0.0, 0.55], [0.05, 0.0, 0.0])


def demo_parts() -> List:
    """Three parts like the cell's castings: a housing, a bracket and a hub."""
    return [BoxPart((0.0, -0.15), (0.09, 0.07, 0.05), yaw=0.3, rgb=(185, 185, 195)),
            BoxPart((0.05, 0.05), (0.12, 0.04, 0.025), yaw=-0.5, rgb=(160, 165, 175)),
            CylinderPart((-0.08, 0.18), 0.035, 0.04, rgb=(200, 195, 185))]
