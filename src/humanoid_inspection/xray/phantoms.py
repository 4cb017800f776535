"""Parametric die-cast parts ('phantoms') with hidden defects, seeded and reproducible.

A part is a stack of *features* in its own frame (mm): x, y in the fixture plane, z up from
the seat plane (z = 0, where the part rests) towards the X-ray source. A feature is a set of
polygon contours (even-odd rule, so a contour inside another is a hole) extruded from z0 to
z1, optionally lofted (top contours differ from the bottom ones: draft angles, gussets).
Material = union of the positive features minus the union of the negative features (holes cut
through everything they span). Positive features that touch must overlap (not just abut) so
that the anti-aliased rasterisation of the union has no seams.

Families (all in the die-casting alloy, walls ~2-12 mm, sections up to ~60 mm along the beam):
- 'housing': rounded rectangular shell, base plate, walls, internal ribs, corner bosses with
  screw holes, windows in the base.
- 'bracket': L-bracket: base flange with holes and a slot, upright web (seen edge-on: a thick
  band), triangular gussets, web/flange fillet.
- 'hub': wheel-like disk: web, rim, central hub with bore and bolt holes, spokes, lightening
  holes.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from humanoid_inspection.xray.defects import DEFECT_KINDS, DefectPlacer

PART_FAMILIES = ('housing', 'bracket', 'hub')
DEFAULT_DEFECT_PROBABILITY = 0.7
_OVERLAP = 0.5  # mm by which touching positive features overlap


# ----------------------------------------------------------------------------- 2D contours

def circle(cx: float, cy: float, r: float, segments: int = 0) -> np.ndarray:
    """Polygon (n, 2) approximating a circle (sagitta error < 0.01 mm)."""
    if segments <= 0:
        segments = int(np.clip(np.pi / np.arccos(max(1e-6, 1.0 - 0.01 / max(r, 0.02))),
                               16, 256))
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    return np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])


def lofted_circle(cx: float, cy: float, r_bottom: float, r_top: float) -> tuple:
    """(bottom, top) circle polygons with the same vertex count, for a lofted feature."""
    bottom = circle(cx, cy, max(r_bottom, r_top))
    return circle(cx, cy, r_bottom, len(bottom)), circle(cx, cy, r_top, len(bottom))


def rounded_rect(cx, cy, width, height, radius=0.0, angle=0.0, corner_segments=10):
    """Polygon (n, 2) of a rectangle with rounded corners, rotated by `angle` rad."""
    radius = float(np.clip(radius, 0.0, min(width, height) / 2.0 - 1e-6))
    hx, hy = width / 2.0 - radius, height / 2.0 - radius
    points = []
    for (sx, sy, start) in ((1, 1, 0.0), (-1, 1, 0.5), (-1, -1, 1.0), (1, -1, 1.5)):
        if radius > 0:
            angles = np.pi * (start + np.linspace(0, 0.5, corner_segments))
            points.append(np.column_stack([sx * hx + radius * np.cos(angles),
                                           sy * hy + radius * np.sin(angles)]))
        else:
            points.append(np.array([[sx * hx, sy * hy]]))
    points = np.vstack(points)
    c, s = np.cos(angle), np.sin(angle)
    rotated = points @ np.array([[c, s], [-s, c]])
    return rotated + np.array([cx, cy])


def stadium(x0, y0, x1, y1, radius, segments=24):
    """Polygon (n, 2) of a slot: the set within `radius` of the segment (x0,y0)-(x1,y1)."""
    angle = np.arctan2(y1 - y0, x1 - x0)
    length = float(np.hypot(x1 - x0, y1 - y0))
    return rounded_rect((x0 + x1) / 2, (y0 + y1) / 2, length + 2 * radius, 2 * radius,
                        radius, angle, segments)


def _points_in_polygon(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd crossing test; points (N, 2), vertices (V, 2) or per-point (N, V, 2)."""
    if vertices.ndim == 2:
        vertices = vertices[None]
    x, y = points[:, 0:1], points[:, 1:2]
    xa, ya = vertices[..., 0], vertices[..., 1]
    xb, yb = np.roll(xa, -1, axis=-1), np.roll(ya, -1, axis=-1)
    straddles = (ya > y) != (yb > y)
    with np.errstate(divide='ignore', invalid='ignore'):
        x_cross = xa + (y - ya) * (xb - xa) / (yb - ya)
    return (np.count_nonzero(straddles & (x < x_cross), axis=-1) % 2) == 1


@dataclass
class Feature:
    """Extruded (or lofted) polygon contours between z0 and z1 (mm, part frame).

    Attributes:
        name: what it is ('base', 'wall', 'rib3', 'boss_hole1', ...).
        bottom: list of (n, 2) contours at z0 (even-odd rule).
        z0, z1: extent along z, z0 < z1.
        positive: True adds material, False cuts a hole.
        top: contours at z1 (same vertex counts) for a lofted feature; None = prism.
    """

    name: str
    bottom: list
    z0: float
    z1: float
    positive: bool = True
    top: list = None

    def __post_init__(self):
        if not self.z1 > self.z0:
            raise ValueError(f'feature {self.name}: z1 ({self.z1}) must exceed z0 ({self.z0})')
        if self.top is not None and [c.shape for c in self.top] != \
                [c.shape for c in self.bottom]:
            raise ValueError(f'feature {self.name}: top contours must match the bottom ones')

    def contours_at(self, z: float) -> list:
        """The contours of the cross-section at height z (assumed within z0..z1)."""
        if self.top is None:
            return self.bottom
        f = float(np.clip((z - self.z0) / (self.z1 - self.z0), 0.0, 1.0))
        return [b + f * (t - b) for b, t in zip(self.bottom, self.top)]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """True for points (N, 3) inside the feature."""
        inside_z = (points[:, 2] >= self.z0) & (points[:, 2] <= self.z1)
        result = np.zeros(len(points), bool)
        if not inside_z.any():
            return result
        subset = points[inside_z]
        crossings = np.zeros(len(subset), int)
        for index, bottom in enumerate(self.bottom):
            if self.top is None:
                vertices = bottom
            else:
                f = np.clip((subset[:, 2] - self.z0) / (self.z1 - self.z0), 0, 1)
                vertices = bottom[None] + f[:, None, None] * (self.top[index] - bottom)[None]
            crossings += _points_in_polygon(subset[:, :2], vertices)
        result[inside_z] = crossings % 2 == 1
        return result


@dataclass
class CastingPart:
    """A die-cast part: geometry (features) + hidden defects (ground truth).

    Attributes:
        family: one of PART_FAMILIES.
        part_id: '<family>-<seed>'.
        seed: the generator seed.
        features: list of Feature (part frame, mm).
        defects: list of DefectSpec (part frame, mm) -- the hidden ground truth.
        material: alloy name (physics.MATERIALS).
        params: the sampled family parameters (mm), for records.
    """

    family: str
    part_id: str
    seed: int
    features: list
    defects: list = field(default_factory=list)
    material: str = 'AlSi9Cu3'
    params: dict = field(default_factory=dict)

    @property
    def height_mm(self) -> float:
        """Top of the part above the seat plane (mm)."""
        return max(f.z1 for f in self.features if f.positive)

    @property
    def bounds_xy(self) -> tuple:
        """(xmin, ymin, xmax, ymax) of the positive features (mm)."""
        points = np.vstack([c for f in self.features if f.positive for c in f.bottom +
                            (f.top or [])])
        return (*points.min(0), *points.max(0))

    @property
    def radius_xy(self) -> float:
        """Largest distance of the part outline from the z axis (mm)."""
        points = np.vstack([c for f in self.features if f.positive for c in f.bottom])
        return float(np.linalg.norm(points, axis=1).max())

    def z_breaks(self) -> list:
        """Sorted heights (mm) where the set of active features changes."""
        values = {0.0}
        for f in self.features:
            for z in (f.z0, f.z1):
                if 0.0 <= z <= self.height_mm:
                    values.add(round(float(z), 6))
        values.add(self.height_mm)
        return sorted(values)

    def contains(self, points) -> np.ndarray:
        """True for points (N, 3) in the part frame (mm) that lie in the material."""
        points = np.atleast_2d(np.asarray(points, float))
        inside = np.zeros(len(points), bool)
        for f in self.features:
            if f.positive:
                inside |= f.contains(points)
        for f in self.features:
            if not f.positive and inside.any():
                inside &= ~f.contains(points)
        return inside

    def sample_material_points(self, rng, count: int = 4000) -> np.ndarray:
        """Uniform random points inside the material (rejection sampling)."""
        xmin, ymin, xmax, ymax = self.bounds_xy
        found = []
        total = 0
        for _ in range(200):
            candidates = np.column_stack([rng.uniform(xmin, xmax, count),
                                          rng.uniform(ymin, ymax, count),
                                          rng.uniform(0, self.height_mm, count)])
            keep = candidates[self.contains(candidates)]
            found.append(keep)
            total += len(keep)
            if total >= count:
                break
        return np.vstack(found)[:count]

    def summary(self) -> dict:
        """JSON-friendly description of the part and its defects."""
        return {'family': self.family, 'part_id': self.part_id, 'seed': self.seed,
                'material': self.material, 'height_mm': round(self.height_mm, 3),
                'params': {k: (round(v, 4) if isinstance(v, float) else v)
                           for k, v in self.params.items()},
                'defects': [d.to_dict() for d in self.defects]}


# ------------------------------------------------------------------------------ families

def _housing(rng):
    length, width = rng.uniform(70, 130), rng.uniform(50, 100)
    height, base = rng.uniform(18, 40), rng.uniform(2.5, 6.0)
    wall, corner = rng.uniform(2.5, 6.0), rng.uniform(4.0, 12.0)
    draft = rng.uniform(0.2, 0.6)  # inward offset of the wall top (mm), die draft
    outer = rounded_rect(0, 0, length, width, corner)
    inner = rounded_rect(0, 0, length - 2 * wall, width - 2 * wall, max(corner - wall, 0.5))
    outer_top = rounded_rect(0, 0, length - 2 * draft, width - 2 * draft, corner - draft)
    inner_top = rounded_rect(0, 0, length - 2 * wall, width - 2 * wall,
                             max(corner - wall, 0.5))
    features = [
        Feature('base', [outer], 0.0, base),
        Feature('wall', [outer, inner], base - _OVERLAP, height, top=[outer_top, inner_top]),
    ]
    inner_x, inner_y = length / 2 - wall, width / 2 - wall
    rib_t = rng.uniform(1.5, 4.0)
    ribs_x = int(rng.integers(0, 4))
    ribs_y = int(rng.integers(0, 3))
    rib_h = height * rng.uniform(0.4, 0.9)
    xs = np.linspace(-inner_x, inner_x, ribs_x + 2)[1:-1]
    ys = np.linspace(-inner_y, inner_y, ribs_y + 2)[1:-1]
    for i, x in enumerate(xs):
        features.append(Feature(f'rib_x{i}', [rounded_rect(x, 0, rib_t, 2 * inner_y + 2 *
                                                           _OVERLAP)],
                                base - _OVERLAP, rib_h))
    for i, y in enumerate(ys):
        features.append(Feature(f'rib_y{i}', [rounded_rect(0, y, 2 * inner_x + 2 * _OVERLAP,
                                                           rib_t)],
                                base - _OVERLAP, rib_h))
    boss_r = rng.uniform(3.5, 7.0)
    hole_r = boss_r * rng.uniform(0.35, 0.55)
    boss_h = height * rng.uniform(0.6, 1.0)
    inset = wall + boss_r * 0.8
    corners = [(sx * (length / 2 - inset), sy * (width / 2 - inset))
               for sx in (-1, 1) for sy in (-1, 1)]
    bosses = corners if rng.random() < 0.7 else corners[:2] + corners[3:]
    for i, (x, y) in enumerate(bosses):
        bottom, top = lofted_circle(x, y, boss_r, boss_r - 0.3)
        features.append(Feature(f'boss{i}', [bottom], base - _OVERLAP, boss_h, top=[top]))
        features.append(Feature(f'boss_hole{i}', [circle(x, y, hole_r)], -1.0, height + 1.0,
                                positive=False))
    # windows in the base, centred in the cells between ribs, clear of bosses
    cell_x = np.concatenate([[-inner_x], xs, [inner_x]])
    cell_y = np.concatenate([[-inner_y], ys, [inner_y]])
    windows = 0
    for _ in range(int(rng.integers(0, 4))):
        i, j = int(rng.integers(len(cell_x) - 1)), int(rng.integers(len(cell_y) - 1))
        cx, cy = (cell_x[i] + cell_x[i + 1]) / 2, (cell_y[j] + cell_y[j + 1]) / 2
        w = (cell_x[i + 1] - cell_x[i] - rib_t) * rng.uniform(0.25, 0.5)
        h = (cell_y[j + 1] - cell_y[j] - rib_t) * rng.uniform(0.25, 0.5)
        clear = all(np.hypot(cx - bx, cy - by) > boss_r + max(w, h) / 2 + 3 for bx, by in bosses)
        if w > 4 and h > 4 and clear:
            features.append(Feature(f'window{windows}', [rounded_rect(cx, cy, w, h,
                                                                      min(w, h) * 0.3)],
                                    -1.0, base + 0.01, positive=False))
            windows += 1
    params = dict(length=length, width=width, height=height, base=base, wall=wall,
                  rib_thickness=rib_t, ribs=int(ribs_x + ribs_y), boss_radius=boss_r,
                  hole_radius=hole_r, windows=windows)
    return features, params


def _bracket(rng):
    length, depth = rng.uniform(60, 120), rng.uniform(35, 65)
    flange, web_t = rng.uniform(4.0, 10.0), rng.uniform(3.0, 8.0)
    height = rng.uniform(25, 55)
    y_web = depth / 2 - web_t / 2  # web along the back edge
    features = [
        Feature('flange', [rounded_rect(0, 0, length, depth, rng.uniform(3, 10))], 0.0, flange),
        Feature('web', [rounded_rect(0, y_web, length * rng.uniform(0.7, 1.0), web_t, 1.0)],
                flange - _OVERLAP, height),
    ]
    fillet = rng.uniform(2.0, 6.0)
    web_len = length * 0.7
    bottom = rounded_rect(0, y_web - web_t / 2 - fillet / 2 + _OVERLAP / 2, web_len,
                          fillet + _OVERLAP, 0.0)
    top = rounded_rect(0, y_web - web_t / 2 + _OVERLAP / 2 - 0.05, web_len, _OVERLAP + 0.1, 0.0)
    features.append(Feature('fillet', [bottom], flange - _OVERLAP, flange + fillet, top=[top]))
    gussets = int(rng.integers(1, 4))
    gusset_t = rng.uniform(3.0, 7.0)
    reach = (depth - web_t) * rng.uniform(0.5, 0.85)
    gusset_h = height * rng.uniform(0.6, 0.95)
    for i, x in enumerate(np.linspace(-web_len / 2 + 6, web_len / 2 - 6, gussets)
                          if gussets > 1 else [0.0]):
        y_face = y_web - web_t / 2 + _OVERLAP
        bottom = rounded_rect(x, y_face - reach / 2, gusset_t, reach, 0.0)
        top = rounded_rect(x, y_face - 0.6, gusset_t, 1.2, 0.0)
        features.append(Feature(f'gusset{i}', [bottom], flange - _OVERLAP, gusset_h, top=[top]))
    holes = 0
    hole_r = rng.uniform(3.0, 6.5)
    for sx in (-1, 1):
        x = sx * (length / 2 - hole_r - rng.uniform(4, 8))
        y = -depth / 2 + hole_r + rng.uniform(4, 8)
        features.append(Feature(f'hole{holes}', [circle(x, y, hole_r)], -1.0, flange + 0.01,
                                positive=False))
        holes += 1
    if rng.random() < 0.6:
        half = length * rng.uniform(0.08, 0.18)
        y = -depth / 2 + hole_r + 6
        features.append(Feature('slot', [stadium(-half, y, half, y, rng.uniform(2.5, 4.5))],
                                -1.0, flange + 0.01, positive=False))
    params = dict(length=length, depth=depth, flange=flange, web=web_t, height=height,
                  gussets=gussets, gusset_thickness=gusset_t, fillet=fillet, hole_radius=hole_r)
    return features, params


def _hub(rng):
    radius, web = rng.uniform(40, 70), rng.uniform(3.0, 7.0)
    rim_w, rim_h = rng.uniform(4.0, 9.0), rng.uniform(12, 30)
    hub_r = rng.uniform(12, 22)
    hub_h = rim_h + rng.uniform(0, 15)
    bore_r = hub_r * rng.uniform(0.35, 0.55)
    rim_in = radius - rim_w
    rim_bottom, rim_top = lofted_circle(0, 0, radius, radius - 0.4)
    hub_bottom, hub_top = lofted_circle(0, 0, hub_r, hub_r - 0.5)
    inner = circle(0, 0, rim_in)
    features = [
        Feature('web', [circle(0, 0, radius)], 0.0, web),
        Feature('rim', [rim_bottom, inner], web - _OVERLAP, rim_h, top=[rim_top, inner]),
        Feature('hub', [hub_bottom], web - _OVERLAP, hub_h, top=[hub_top]),
        Feature('bore', [circle(0, 0, bore_r)], -1.0, hub_h + 1.0, positive=False),
    ]
    spokes = int(rng.integers(3, 7))
    spoke_w = rng.uniform(4.0, 9.0)
    spoke_h = rim_h * rng.uniform(0.5, 1.0)
    phase = rng.uniform(0, 2 * np.pi)
    span = rim_in - hub_r + 2 * _OVERLAP + 1.0
    middle = (rim_in + hub_r) / 2
    for i in range(spokes):
        angle = phase + 2 * np.pi * i / spokes
        features.append(Feature(f'spoke{i}', [rounded_rect(middle * np.cos(angle),
                                                           middle * np.sin(angle), span,
                                                           spoke_w, 0.0, angle)],
                                web - _OVERLAP, spoke_h))
    # lightening holes midway between spokes, through the web only
    gap = 2 * np.pi * middle / spokes - spoke_w
    light_r = min(gap / 2 - 3.0, (rim_in - hub_r) / 2 - 3.0)
    lightening = 0
    if light_r > 3.0 and rng.random() < 0.8:
        light_r *= rng.uniform(0.6, 1.0)
        for i in range(spokes):
            angle = phase + 2 * np.pi * (i + 0.5) / spokes
            features.append(Feature(f'lightening{i}', [circle(middle * np.cos(angle),
                                                              middle * np.sin(angle),
                                                              light_r)],
                                    -1.0, web + 0.01, positive=False))
            lightening += 1
    bolt_r = (hub_r - bore_r) / 2 - 2.0
    bolts = 0
    if bolt_r > 1.5:
        bolt_r = min(bolt_r, 4.0) * rng.uniform(0.6, 1.0)
        pitch = (hub_r + bore_r) / 2
        count = int(rng.integers(3, 7))
        if 2 * pitch * np.sin(np.pi / count) > 2 * bolt_r + 2.0:
            for i in range(count):
                angle = 2 * np.pi * i / count
                features.append(Feature(f'bolt{i}', [circle(pitch * np.cos(angle),
                                                            pitch * np.sin(angle), bolt_r)],
                                        -1.0, hub_h + 1.0, positive=False))
                bolts += 1
    params = dict(radius=radius, web=web, rim_width=rim_w, rim_height=rim_h, hub_radius=hub_r,
                  hub_height=hub_h, bore_radius=bore_r, spokes=spokes, spoke_width=spoke_w,
                  lightening_holes=lightening, bolt_holes=bolts)
    return features, params


_BUILDERS = {'housing': _housing, 'bracket': _bracket, 'hub': _hub}


def generate_part(family: str, seed: int, defect_probability: float =
                  DEFAULT_DEFECT_PROBABILITY, defect_kinds=DEFECT_KINDS,
                  max_defects: int = 5) -> CastingPart:
    """A random part of a family with random hidden defects; same seed -> same part.

    Args:
        family: one of PART_FAMILIES.
        seed: integer seed (>= 0).
        defect_probability: chance (0..1) that the part has defects at all.
        defect_kinds: kinds to draw from (subset of DEFECT_KINDS).
        max_defects: most defect events per part (a porosity cluster is one event).

    Returns:
        The CastingPart with its defects.

    Raises:
        ValueError: for an unknown family or kind, a negative seed or a probability
            outside 0..1.
    """
    if family not in PART_FAMILIES:
        raise ValueError(f"unknown part family '{family}'; known: {PART_FAMILIES}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
    if not 0.0 <= float(defect_probability) <= 1.0:
        raise ValueError(f'defect_probability must lie in 0..1, got {defect_probability}')
    kinds = tuple(defect_kinds)
    unknown = [k for k in kinds if k not in DEFECT_KINDS]
    if unknown or not kinds:
        raise ValueError(f'defect kinds must be a non-empty subset of {DEFECT_KINDS}, '
                         f'got {kinds}')
    rng = np.random.default_rng([int(seed), PART_FAMILIES.index(family)])
    features, params = _BUILDERS[family](rng)
    part = CastingPart(family, f'{family}-{int(seed):06d}', int(seed), features, params=params)
    if rng.random() < defect_probability and max_defects > 0:
        events = int(min(max_defects, 1 + rng.poisson(1.0)))
        placer = DefectPlacer(part.contains, part.sample_material_points(rng), rng)
        for event in range(events):
            kind = kinds[int(rng.integers(len(kinds)))]
            placer.place(kind, cluster_id=event)
        part.defects = list(placer.placed)
    return part


def scaled_part(part: CastingPart, scale: float) -> CastingPart:
    """The same part with every dimension of its geometry times `scale`, about the part's
    origin: a casting that shrank more or less than its model (die-casting's linear
    shrinkage is known to a few tenths of a percent). Defects move with the material around
    them and keep their own size and shape.

    Raises:
        ValueError: scale not within 0.9..1.1.
    """
    if not 0.9 <= float(scale) <= 1.1:
        raise ValueError(f'scale must lie in 0.9..1.1, got {scale}')
    k = float(scale)
    features = [replace(f, bottom=[c * k for c in f.bottom], z0=f.z0 * k, z1=f.z1 * k,
                        top=None if f.top is None else [c * k for c in f.top])
                for f in part.features]
    defects = []
    for d in part.defects:
        shift = np.asarray(d.center_mm, float) * (k - 1.0)
        defects.append(replace(d, center_mm=d.center_mm + shift,
                               shapes=[replace(shape, center=shape.center + shift)
                                       for shape in d.shapes]))
    return replace(part, features=features, defects=defects)
