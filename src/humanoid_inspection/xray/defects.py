"""Casting defects as analytic 3D solids, their ray chords, and seeded random generators.

Every defect is a union of simple solids (ellipsoids, oriented boxes) in the part frame (mm).
The simulator intersects each detector ray with them exactly: chord lengths come from the
ray/solid intervals and the union of overlapping intervals, so a sponge of overlapping voids
is not counted twice.

Kinds and sizes (largest dimension, mm), after the usual die-casting defect catalogues:
- gas_porosity: clusters of round voids, each 0.3-3 mm (entrapped air / die-lube gas);
  one DefectSpec per pore, pores of one cluster share `cluster_id`.
- shrinkage: irregular sponge-like voids, 1-8 mm, branches of small elongated voids
  (interdendritic shrinkage in the last-to-solidify thick sections).
- crack: thin planar discontinuity, length 2-15 mm, opening 0.1-0.4 mm, plane within 25 deg of
  the beam axis (radiography only shows cracks roughly along the beam); subtype 'hot_tear'
  (jagged) or 'cold_shut' (smooth, longer).
- inclusion: denser than the alloy, 0.5-4 mm, lumpy; material 'fe_intermetallic' (sludge,
  70 %) or 'steel' (foreign metal from ladle / shot sleeve, 30 %). Oxide (alumina) inclusions
  are not drawn: denser, yet in a Cu-bearing alloy they attenuate about as much as the alloy
  (less below ~60 keV, more above), so radiography cannot see them (physics.ALUMINA shows it).
Defects are placed only where their whole solid (plus a margin) lies inside the part material.
"""

from dataclasses import dataclass, field

import numpy as np

DEFECT_KINDS = ('gas_porosity', 'shrinkage', 'crack', 'inclusion')
SIZE_RANGES_MM = {
    'gas_porosity': (0.3, 3.0),
    'shrinkage': (1.0, 8.0),
    'crack': (2.0, 15.0),
    'inclusion': (0.5, 4.0),
}
CRACK_OPENING_MM = (0.1, 0.4)
CRACK_MAX_TILT_DEG = 25.0
PLACEMENT_MARGIN_MM = 0.3

_UNIT_DIRECTIONS = np.array([(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1)
                             for z in (-1, 0, 1) if (x, y, z) != (0, 0, 0)], float)
_UNIT_DIRECTIONS /= np.linalg.norm(_UNIT_DIRECTIONS, axis=1, keepdims=True)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (columns = local axes)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass
class Ellipsoid:
    """Solid ellipsoid: centre (mm), semi-axes (mm), rotation (columns = local axes)."""

    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def bounding_radius(self) -> float:
        """Radius of a sphere about `center` enclosing the solid."""
        return float(np.max(self.radii))

    def surface_points(self, margin: float = 0.0) -> np.ndarray:
        """Points on the surface inflated by `margin` (mm), shape (26, 3)."""
        local = _UNIT_DIRECTIONS * (self.radii + margin)
        return self.center + local @ self.rotation.T

    def intervals(self, origin: np.ndarray, directions: np.ndarray):
        """Entry/exit distances (mm) along unit rays origin + s d; misses give (0, 0)."""
        scale = 1.0 / self.radii
        o = ((origin - self.center) @ self.rotation) * scale
        d = (directions @ self.rotation) * scale
        a = np.einsum('ij,ij->i', d, d)
        b = 2.0 * (d @ o)
        c = float(o @ o) - 1.0
        disc = b * b - 4.0 * a * c
        hit = disc > 0
        root = np.sqrt(np.where(hit, disc, 0.0))
        s0 = np.where(hit, (-b - root) / (2.0 * a), 0.0)
        s1 = np.where(hit, (-b + root) / (2.0 * a), 0.0)
        return s0, s1


@dataclass
class Box:
    """Solid oriented box: centre (mm), half sizes (mm), rotation (columns = local axes)."""

    center: np.ndarray
    half: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def bounding_radius(self) -> float:
        """Radius of a sphere about `center` enclosing the solid."""
        return float(np.linalg.norm(self.half))

    def surface_points(self, margin: float = 0.0) -> np.ndarray:
        """Corners, edge points (every <= 1 mm) and face centres, inflated by `margin`."""
        half = self.half + margin
        axes = []
        for h in half:
            count = max(2, int(np.ceil(2 * h / 1.0)) + 1)
            axes.append(np.linspace(-h, h, count))
        grid = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)
        on_surface = np.any(np.isclose(np.abs(grid), half), axis=1)
        return self.center + grid[on_surface] @ self.rotation.T

    def intervals(self, origin: np.ndarray, directions: np.ndarray):
        """Entry/exit distances (mm) along unit rays origin + s d; misses give (0, 0)."""
        o = (origin - self.center) @ self.rotation
        d = directions @ self.rotation
        with np.errstate(divide='ignore', invalid='ignore'):
            inverse = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (-self.half - o) * inverse
        t2 = (self.half - o) * inverse
        s0 = np.minimum(t1, t2).max(1)
        s1 = np.maximum(t1, t2).min(1)
        hit = s1 > s0
        return np.where(hit, s0, 0.0), np.where(hit, s1, 0.0)


def union_length(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Total length covered by K intervals per ray, overlaps counted once.

    Args:
        starts, ends: arrays (K, P); an empty interval has start == end.

    Returns:
        Array (P,) of union lengths.
    """
    if starts.shape[0] == 1:
        return ends[0] - starts[0]
    order = np.argsort(starts, axis=0)
    a = np.take_along_axis(starts, order, 0)
    b = np.take_along_axis(ends, order, 0)
    reach = np.maximum.accumulate(b, axis=0)
    previous = np.vstack([np.full((1, a.shape[1]), -np.inf), reach[:-1]])
    return np.maximum(0.0, b - np.maximum(a, previous)).sum(0)


@dataclass
class DefectSpec:
    """One defect of a part: the hidden ground truth.

    Attributes:
        kind: one of DEFECT_KINDS.
        center_mm: centre in the part frame (mm), shape (3,).
        size_mm: largest dimension (Feret diameter) of the solid (mm).
        shapes: list of Ellipsoid / Box whose union is the defect.
        material: None for a void, else the inclusion material name.
        defect_id: index within the part.
        cluster_id: pores of one gas-porosity cluster share it (None for other kinds).
        subtype: finer class ('pore', 'sponge', 'hot_tear', 'cold_shut', 'fe_intermetallic'...).
        opening_mm: crack opening (width) in mm, 0 for other kinds.
    """

    kind: str
    center_mm: np.ndarray
    size_mm: float
    shapes: list
    material: str = None
    defect_id: int = 0
    cluster_id: int = None
    subtype: str = ''
    opening_mm: float = 0.0

    @property
    def bounding_radius(self) -> float:
        """Radius about center_mm of a sphere enclosing every shape."""
        return max(float(np.linalg.norm(s.center - self.center_mm)) + s.bounding_radius
                   for s in self.shapes)

    @property
    def is_void(self) -> bool:
        """True for voids (gas, shrinkage, cracks), False for inclusions."""
        return self.material is None

    def surface_points(self, margin: float = 0.0) -> np.ndarray:
        """Points on the surfaces of all shapes (mm, part frame)."""
        return np.vstack([s.surface_points(margin) for s in self.shapes])

    def chord_mm(self, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Path length (mm) of each unit ray inside the defect (union of its shapes)."""
        pairs = [s.intervals(origin, directions) for s in self.shapes]
        starts = np.stack([p[0] for p in pairs])
        ends = np.stack([p[1] for p in pairs])
        return union_length(starts, ends)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no shapes)."""
        return {'kind': self.kind, 'center_mm': [round(float(v), 4) for v in self.center_mm],
                'size_mm': round(float(self.size_mm), 4), 'material': self.material,
                'defect_id': self.defect_id, 'cluster_id': self.cluster_id,
                'subtype': self.subtype, 'opening_mm': round(float(self.opening_mm), 4)}


def feret_diameter(points: np.ndarray) -> float:
    """Largest distance between two of the points (mm)."""
    if len(points) > 600:
        points = points[np.linspace(0, len(points) - 1, 600).astype(int)]
    diff = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((diff ** 2).sum(-1)).max())


# --------------------------------------------------------------------------- shapes per kind

def _pore(center, diameter, rng):
    radii = diameter / 2.0 * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.8, 1.0)])
    return [Ellipsoid(np.asarray(center, float), radii, random_rotation(rng))]


def _sponge(center, size, rng):
    """Branches of small elongated voids grown from `center` within a sphere of `size`."""
    center = np.asarray(center, float)
    shapes = []
    branches = int(rng.integers(2, 6))
    for _ in range(branches):
        position = center.copy()
        direction = rng.standard_normal(3)
        direction[2] *= 0.6
        direction /= np.linalg.norm(direction)
        steps = int(rng.integers(3, 9))
        for _ in range(steps):
            direction += rng.normal(0, 0.6, 3)
            direction /= np.linalg.norm(direction)
            radius = size * rng.uniform(0.05, 0.11)
            step = radius * rng.uniform(1.2, 2.0)
            candidate = position + direction * step
            if np.linalg.norm(candidate - center) > size / 2.0 - radius:
                break
            position = candidate
            long_axis = direction
            helper = np.array([0, 0, 1.0]) if abs(long_axis[2]) < 0.9 else np.array([1.0, 0, 0])
            second = np.cross(long_axis, helper)
            second /= np.linalg.norm(second)
            rotation = np.column_stack([long_axis, second, np.cross(long_axis, second)])
            radii = radius * np.array([rng.uniform(1.4, 2.4), 1.0, rng.uniform(0.6, 1.0)])
            shapes.append(Ellipsoid(position.copy(), radii, rotation))
    core = size * rng.uniform(0.08, 0.14)
    shapes.append(Ellipsoid(center, np.array([core, core * 0.8, core * 0.7]),
                            random_rotation(rng)))
    return shapes


def _crack(center, length, opening, rng, subtype):
    """Chain of thin boxes along a jagged trace in a plane near the beam (z) axis."""
    center = np.asarray(center, float)
    angle = rng.uniform(0, np.pi)
    trace = np.array([np.cos(angle), np.sin(angle), 0.0])
    horizontal_normal = np.array([-np.sin(angle), np.cos(angle), 0.0])
    tilt = np.radians(rng.uniform(-CRACK_MAX_TILT_DEG, CRACK_MAX_TILT_DEG))
    depth_axis = np.cos(tilt) * np.array([0, 0, 1.0]) + np.sin(tilt) * horizontal_normal
    normal = np.cross(trace, depth_axis)
    if subtype == 'cold_shut':
        segments, jag = int(rng.integers(4, 7)), 0.04
        depth = rng.uniform(1.0, min(4.0, length * 0.5))
    else:
        segments, jag = int(rng.integers(6, 12)), 0.18
        depth = rng.uniform(0.8, min(3.0, length * 0.4))
    along = np.linspace(-length / 2.0, length / 2.0, segments + 1)
    offsets = np.cumsum(rng.normal(0, jag * length / segments, segments + 1))
    offsets -= np.linspace(offsets[0], offsets[-1], segments + 1)  # ends on the trace line
    vertices = center + along[:, None] * trace + offsets[:, None] * normal
    shapes = []
    for i in range(segments):
        a, b = vertices[i], vertices[i + 1]
        axis = b - a
        seg_length = float(np.linalg.norm(axis))
        axis /= seg_length
        third = np.cross(axis, depth_axis)
        third /= np.linalg.norm(third)
        second = np.cross(third, axis)
        middle = (along[i] + along[i + 1]) / 2.0
        taper = np.sqrt(max(0.0, 1.0 - (2.0 * middle / length) ** 2))
        width = opening * (0.35 + 0.65 * taper)
        half = np.array([seg_length / 2.0 + width / 2.0, depth * (0.5 + 0.5 * taper) / 2.0,
                         width / 2.0])
        shapes.append(Box((a + b) / 2.0, half, np.column_stack([axis, second, third])))
    return shapes


def _inclusion(center, size, rng):
    center = np.asarray(center, float)
    main = size / 2.0 * np.array([1.0, rng.uniform(0.55, 0.9), rng.uniform(0.5, 0.85)])
    shapes = [Ellipsoid(center, main, random_rotation(rng))]
    for _ in range(int(rng.integers(0, 3))):
        offset = rng.standard_normal(3)
        offset *= size * 0.25 / np.linalg.norm(offset)
        lobe = size / 2.0 * rng.uniform(0.3, 0.5)
        shapes.append(Ellipsoid(center + offset, np.full(3, lobe) * rng.uniform(0.7, 1.0, 3),
                                random_rotation(rng)))
    return shapes


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


class DefectPlacer:
    """Places defects inside a part's material without overlaps.

    Args:
        contains: callable (N, 3) points in mm -> bool array, True inside the material.
        material_points: (M, 3) random points known to lie in the material (candidate centres).
        rng: numpy Generator.
        max_tries: candidate positions tried per defect.
    """

    def __init__(self, contains, material_points, rng, max_tries: int = 300):
        self.contains = contains
        self.candidates = np.asarray(material_points, float)
        self.rng = rng
        self.max_tries = max_tries
        self.placed = []

    def _free(self, center, radius) -> bool:
        return all(np.linalg.norm(center - d.center_mm) > radius + d.bounding_radius + 0.3
                   for d in self.placed)

    def _fits(self, shapes, margin=PLACEMENT_MARGIN_MM) -> bool:
        points = np.vstack([s.surface_points(margin) for s in shapes])
        return bool(np.all(self.contains(points)))

    def _random_center(self):
        return self.candidates[self.rng.integers(len(self.candidates))] + \
            self.rng.normal(0, 0.3, 3)

    def _accept(self, spec: DefectSpec) -> DefectSpec:
        spec.defect_id = len(self.placed)
        self.placed.append(spec)
        return spec

    def place(self, kind: str, cluster_id: int = 0) -> list:
        """Place one defect (a whole cluster for gas porosity); [] when nothing fits.

        Raises:
            ValueError: for an unknown kind.
        """
        if kind not in DEFECT_KINDS:
            raise ValueError(f"unknown defect kind '{kind}'; known: {DEFECT_KINDS}")
        low, high = SIZE_RANGES_MM[kind]
        for attempt in range(self.max_tries):
            # shrink the requested size on repeated failure so thin parts still get defects
            shrink = 1.0 if attempt < self.max_tries // 2 else 0.6
            center = self._random_center()
            if kind == 'gas_porosity':
                specs = self._place_cluster(center, low, high * shrink, cluster_id)
                if specs:
                    return specs
                continue
            size = _log_uniform(self.rng, low, max(low, high * shrink))
            if kind == 'shrinkage':
                shapes, subtype, material, opening = _sponge(center, size, self.rng), \
                    'sponge', None, 0.0
            elif kind == 'crack':
                subtype = 'cold_shut' if self.rng.random() < 0.3 else 'hot_tear'
                opening = self.rng.uniform(*CRACK_OPENING_MM)
                shapes, material = _crack(center, size, opening, self.rng, subtype), None
            else:
                subtype = 'fe_intermetallic' if self.rng.random() < 0.7 else 'steel'
                shapes, material, opening = _inclusion(center, size, self.rng), subtype, 0.0
            spec = DefectSpec(kind, center, 0.0, shapes, material, subtype=subtype,
                              opening_mm=opening)
            if not self._free(center, spec.bounding_radius) or not self._fits(shapes):
                continue
            spec.size_mm = feret_diameter(spec.surface_points())
            if spec.size_mm < low:
                continue
            return [self._accept(spec)]
        return []

    def _place_cluster(self, center, low, high, cluster_id):
        base = _log_uniform(self.rng, low, max(low, high))
        count = int(min(1 + self.rng.geometric(0.35), 12))
        spread = base * self.rng.uniform(1.5, 4.0) + 0.5
        pores = []
        for index in range(count * 4):
            if len(pores) == count:
                break
            diameter = max(low, base * self.rng.uniform(0.5, 1.0))
            position = center if index == 0 else center + self.rng.normal(0, spread / 2.0, 3)
            shapes = _pore(position, diameter, self.rng)
            radius = shapes[0].bounding_radius
            if any(np.linalg.norm(position - p.center_mm) < radius + p.bounding_radius + 0.15
                   for p in pores):
                continue
            if not self._free(position, radius) or not self._fits(shapes):
                if index == 0:
                    return []
                continue
            pores.append(DefectSpec('gas_porosity', np.asarray(position, float),
                                    2.0 * float(shapes[0].radii.max()), shapes,
                                    cluster_id=cluster_id, subtype='pore'))
        return [self._accept(p) for p in pores]
