"""Height map of an object and its surroundings over the support plane (no ROS).

The depth points around an object are binned into a square grid lying in the support plane
(axes u, v; `cell_m` per cell); each cell keeps the HIGHEST point above the plane that falls in
it (a wall's side face lands in the wall's own cells, so its top wins). Cells that no point
reaches are unknown (NaN): holes of one cell (pixel sampling coarser than the grid) are filled
from their neighbours; larger unknown areas are shadows (the floor behind a wall, seen at a slant)
and stay unknown. Spikes (a cell with fewer than two neighbours about as high: a noisy point of
a wall's side face landing beside it) are cut to their neighbourhood's median. The grasp
planners read profiles of this map (`profile`) and the highest cell under a gripper part
(`max_in_rect`).
"""

from typing import Tuple

import cv2
import numpy as np


class HeightMap:
    """Max height above the plane per cell of a grid in the plane.

    Attributes:
        heights: (N, N) float array, metres above the plane, NaN = unknown.
        occupied: (N, N) bool, cells hit by the OBJECT's own points (not its neighbours').
        origin: (3,) point on the plane at grid coordinates (0, 0) (the grid centre).
        u, v: (3,) unit axes of the grid in the plane (camera frame).
        n: (3,) plane normal (towards the camera).
        cell_m: cell size (m).
    """

    def __init__(self, points: np.ndarray, object_points: np.ndarray, plane: np.ndarray,
                 origin: np.ndarray, u: np.ndarray, half_extent_m: float, cell_m: float = 0.002,
                 max_height_m: float = 0.35, spike_m: float = 0.004):
        """Bin the points.

        Args:
            points: (N, 3) camera-frame points of the object AND its surroundings.
            object_points: (M, 3) the object's own points (for `occupied`).
            plane: (4,) support plane (n, d), n towards the camera.
            origin: (3,) point on the plane, the grid centre.
            u: (3,) first grid axis (in the plane; re-orthogonalised).
            half_extent_m: the grid covers +-half_extent_m around origin along u and v.
            cell_m: cell size (m).
            max_height_m: points higher than this above the plane are ignored.
            spike_m: height tolerance of the spike test (see the module docstring).
        """
        self.n = np.asarray(plane[:3], dtype=float)
        self.d = float(plane[3])
        self.origin = np.asarray(origin, dtype=float)
        u = np.asarray(u, dtype=float) - (np.asarray(u) @ self.n) * self.n
        self.u = u / np.linalg.norm(u)
        self.v = np.cross(self.n, self.u)
        self.cell_m = float(cell_m)
        self.spike_m = float(spike_m)
        self.size = int(np.ceil(2 * half_extent_m / cell_m)) | 1
        self.half = self.size // 2
        self.heights = self._bin(points, max_height_m, fill=True)
        self.occupied = ~np.isnan(self._bin(object_points, max_height_m, fill=False))

    def _indices(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        rel = points - self.origin
        h = points @ self.n + self.d
        iu = np.round(rel @ self.u / self.cell_m).astype(int) + self.half
        iv = np.round(rel @ self.v / self.cell_m).astype(int) + self.half
        return iu, iv, h

    def _bin(self, points: np.ndarray, max_height_m: float, fill: bool) -> np.ndarray:
        grid = np.full((self.size, self.size), -np.inf)
        if len(points):
            iu, iv, h = self._indices(np.asarray(points, dtype=float))
            ok = (iu >= 0) & (iu < self.size) & (iv >= 0) & (iv < self.size) & \
                np.isfinite(h) & (h < max_height_m)
            np.maximum.at(grid, (iv[ok], iu[ok]), np.maximum(h[ok], 0.0))
        known = np.isfinite(grid)
        if fill:
            # one-cell holes: the max of the known 3x3 neighbours (needs >= 3 of them)
            g = np.where(known, grid, -1.0).astype(np.float32)
            neigh_max = cv2.dilate(g, np.ones((3, 3), np.uint8))
            count = cv2.filter2D(known.astype(np.float32), -1, np.ones((3, 3), np.float32),
                                 borderType=cv2.BORDER_CONSTANT)
            hole = ~known & (count >= 3)
            grid[hole] = neigh_max[hole]
            known |= hole
            # spikes: a cell with fewer than 2 of its 8 neighbours at (or above) its height
            # minus spike_m is cut to its neighbourhood's median (depth noise on a wall's side
            # face lands a point or two a cell off the face; a real wall or rim is a line of
            # cells, each with >= 2 neighbours along it)
            g = np.pad(np.where(known, grid, -1.0), 1, constant_values=-1.0)
            n = self.size
            shifted = np.stack([g[1 + dy:1 + dy + n, 1 + dx:1 + dx + n]
                                for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
            centre = g[1:-1, 1:-1]
            support = (shifted >= centre - self.spike_m).sum(axis=0)
            rows, cols = np.nonzero(known & (support < 2))
            if len(rows):
                median = np.median(shifted[:, rows, cols], axis=0)
                cut = centre[rows, cols] > median + self.spike_m
                grid[rows[cut], cols[cut]] = median[cut]
        grid[~known] = np.nan
        return grid

    def to_plane(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(K, 3) camera-frame points on the plane at grid coordinates (a, b) in metres."""
        return self.origin + np.outer(a, self.u) + np.outer(b, self.v)

    def plane_coords(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) grid coordinates (m) of camera-frame points (projected on the plane)."""
        rel = np.atleast_2d(points) - self.origin
        return np.stack([rel @ self.u, rel @ self.v], axis=1)

    def sample(self, a: np.ndarray, b: np.ndarray, grid: np.ndarray = None) -> np.ndarray:
        """Nearest-cell values at grid coordinates (m); NaN outside the grid or unknown."""
        grid = self.heights if grid is None else grid
        iu = np.round(np.asarray(a) / self.cell_m).astype(int) + self.half
        iv = np.round(np.asarray(b) / self.cell_m).astype(int) + self.half
        inside = (iu >= 0) & (iu < self.size) & (iv >= 0) & (iv < self.size)
        out = np.full(np.shape(iu), np.nan, dtype=float)
        out[inside] = grid[iv[inside], iu[inside]]
        return out

    def profile(self, direction: np.ndarray, t: np.ndarray, s: np.ndarray,
                centre: Tuple[float, float] = (0.0, 0.0), grid: np.ndarray = None
                ) -> np.ndarray:
        """(len(s), len(t)) samples along lines: centre + t * direction + s * perpendicular.

        Args:
            direction: (2,) unit direction in grid coordinates.
            t: positions along the direction (m).
            s: offsets of the lines across it (m).
            centre: (2,) grid coordinates (m) of t = s = 0.
            grid: the array to sample (default the heights).
        """
        c = np.asarray(direction, dtype=float)
        p = np.array([-c[1], c[0]])
        a = centre[0] + t[None, :] * c[0] + s[:, None] * p[0]
        b = centre[1] + t[None, :] * c[1] + s[:, None] * p[1]
        return self.sample(a, b, grid)

    def max_in_rect(self, centre: np.ndarray, direction: np.ndarray, t_range: Tuple[float, float],
                    half_width: float) -> Tuple[float, float]:
        """Highest known cell and the known fraction in a rectangle of the grid.

        Args:
            centre: (2,) grid coordinates (m).
            direction: (2,) unit direction; the rectangle spans t_range along it and
                +-half_width across it.

        Returns:
            (max height m or -inf when nothing is known, fraction of known cells 0..1).
        """
        step = self.cell_m
        t = np.arange(t_range[0], t_range[1] + step / 2, step)
        s = np.arange(-half_width, half_width + step / 2, step)
        vals = self.profile(direction, t, s, tuple(centre))
        known = ~np.isnan(vals)
        if not known.any():
            return -np.inf, 0.0
        return float(vals[known].max()), float(known.mean())
