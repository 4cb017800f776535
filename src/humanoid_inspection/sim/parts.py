"""Die-cast parts in the simulated cell: which parts, where, and their collision shapes.

Each simulated part is a project phantom (`xray.phantoms.generate_part`), so the part the robot
picks is the very part the virtual X-ray station images: its hidden defect list (the phantom's
`defects`) is the ground truth of the cell. The rigid body uses primitive shapes built from the
phantom's own parameters (part frame: origin at the centre of the seat plane, z up, metres):
- housing: base plate + four walls (an open-top box shell, so a wall can be grasped);
- bracket: base flange + upright web (+ the gussets' footprint as a low box);
- hub: web disk + rim (a ring of boxes) + central hub cylinder + spokes.
Density = the die-casting alloy (2.7 g/cm^3), so masses come out at 0.05-0.8 kg.

`plan_parts()` chooses families, seeds, slots and yaw from one seed (reproducible).
"""

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.xray.phantoms import PART_FAMILIES, CastingPart, generate_part

ALLOY_DENSITY = 2700.0   # kg/m^3
MM = 1e-3


@dataclass(frozen=True)
class BoxShape:
    """A collision box in the part frame: centre (m), half sizes (m), yaw about z (rad)."""

    center: Tuple[float, float, float]
    half: Tuple[float, float, float]
    yaw: float = 0.0


@dataclass(frozen=True)
class CylinderShape:
    """A collision cylinder along the part's z: centre (m), radius (m), half height (m)."""

    center: Tuple[float, float, float]
    radius: float
    half_height: float


@dataclass
class SimPart:
    """One part of the simulated cell.

    Attributes:
        index: position in the scene's part list.
        casting: the phantom (geometry + hidden defects).
        slot: table slot it starts on.
        yaw: initial yaw on the slot (rad).
        shapes: collision shapes (part frame, m).
        body: MuJoCo body name.
    """

    index: int
    casting: CastingPart
    slot: int
    yaw: float
    shapes: List[object] = field(default_factory=list)

    @property
    def part_id(self) -> str:
        """The phantom's id, '<family>-<seed>'."""
        return self.casting.part_id

    @property
    def family(self) -> str:
        """housing, bracket or hub."""
        return self.casting.family

    @property
    def body(self) -> str:
        """Name of the part's free body in the MuJoCo model."""
        return f'part_{self.index}'

    @property
    def defective(self) -> bool:
        """True if the phantom has at least one defect (the hidden ground truth)."""
        return bool(self.casting.defects)

    @property
    def height(self) -> float:
        """Height of the part (m)."""
        return self.casting.height_mm * MM


def _contour_bounds(feature) -> Tuple[float, float, float, float]:
    pts = np.vstack(feature.bottom)
    return (*pts.min(0), *pts.max(0))


def _feature(part: CastingPart, name: str):
    for f in part.features:
        if f.name == name:
            return f
    return None


def _housing_shapes(part: CastingPart) -> List[object]:
    p = part.params
    length, width, height = p['length'] * MM, p['width'] * MM, p['height'] * MM
    base, wall = p['base'] * MM, p['wall'] * MM
    wall_h = height - base
    zc = base + wall_h / 2
    return [
        BoxShape((0.0, 0.0, base / 2), (length / 2, width / 2, base / 2)),
        BoxShape((length / 2 - wall / 2, 0.0, zc), (wall / 2, width / 2, wall_h / 2)),
        BoxShape((-length / 2 + wall / 2, 0.0, zc), (wall / 2, width / 2, wall_h / 2)),
        BoxShape((0.0, width / 2 - wall / 2, zc), (length / 2 - wall, wall / 2, wall_h / 2)),
        BoxShape((0.0, -width / 2 + wall / 2, zc), (length / 2 - wall, wall / 2, wall_h / 2)),
    ]


def _bracket_shapes(part: CastingPart) -> List[object]:
    p = part.params
    length, depth, flange = p['length'] * MM, p['depth'] * MM, p['flange'] * MM
    height = p['height'] * MM
    shapes: List[object] = [BoxShape((0.0, 0.0, flange / 2), (length / 2, depth / 2, flange / 2))]
    web = _feature(part, 'web')
    x0, y0, x1, y1 = (v * MM for v in _contour_bounds(web))
    shapes.append(BoxShape(((x0 + x1) / 2, (y0 + y1) / 2, (flange + height) / 2),
                           ((x1 - x0) / 2, (y1 - y0) / 2, (height - flange) / 2)))
    return shapes


def _hub_shapes(part: CastingPart, rim_segments: int = 16) -> List[object]:
    p = part.params
    radius, web = p['radius'] * MM, p['web'] * MM
    rim_w, rim_h = p['rim_width'] * MM, p['rim_height'] * MM
    hub_r, hub_h = p['hub_radius'] * MM, p['hub_height'] * MM
    shapes: List[object] = [CylinderShape((0.0, 0.0, web / 2), radius, web / 2),
                            CylinderShape((0.0, 0.0, hub_h / 2), hub_r, hub_h / 2)]
    mid = radius - rim_w / 2
    half_len = mid * math.tan(math.pi / rim_segments) + rim_w / 2
    for i in range(rim_segments):
        a = 2 * math.pi * i / rim_segments
        shapes.append(BoxShape((mid * math.cos(a), mid * math.sin(a), rim_h / 2),
                               (rim_w / 2, half_len, rim_h / 2), a))
    spoke_h = None
    for f in part.features:
        if f.name.startswith('spoke'):
            c = np.vstack(f.bottom).mean(0) * MM
            a = math.atan2(c[1], c[0])
            spoke_h = f.z1 * MM
            span = (radius - rim_w - hub_r)
            shapes.append(BoxShape((float(c[0]), float(c[1]), spoke_h / 2),
                                   (span / 2, p['spoke_width'] * MM / 2, spoke_h / 2), a))
    return shapes


_SHAPES = {'housing': _housing_shapes, 'bracket': _bracket_shapes, 'hub': _hub_shapes}


def collision_shapes(part: CastingPart) -> List[object]:
    """Primitive shapes (part frame, m) approximating the phantom."""
    return _SHAPES[part.family](part)


def plan_parts(count: int, seed: int, slots: int, families: Sequence[str] = PART_FAMILIES,
               defect_probability: Optional[float] = None,
               yaw_jitter: float = math.radians(10.0)) -> List[SimPart]:
    """Choose the parts of a run: families in turn, seeded phantoms, slots, yaw.

    Args:
        count: number of parts (0..slots).
        seed: master seed; the same seed gives the same parts, defects and poses.
        slots: number of table slots.
        families: families to cycle through.
        defect_probability: phantom defect probability (None = the phantom default).
        yaw_jitter: largest |yaw| on the slot (rad).

    Returns:
        The SimParts, part i on slot order[i].

    Raises:
        ValueError: more parts than slots, a negative count/seed or an unknown family.
    """
    if count < 0 or seed < 0:
        raise ValueError(f'part count and seed must be >= 0 (got {count}, {seed})')
    if count > slots:
        raise ValueError(f'{count} parts do not fit on {slots} table slots')
    unknown = [f for f in families if f not in PART_FAMILIES]
    if unknown or not families:
        raise ValueError(f'unknown part families {unknown}; known: {PART_FAMILIES}')
    rng = np.random.default_rng([int(seed), 7])
    order = rng.permutation(slots)[:count]
    start = int(rng.integers(len(families)))
    parts = []
    for i in range(count):
        family = families[(start + i) % len(families)]
        part_seed = int(seed) * 1000 + i
        kwargs = {} if defect_probability is None else {'defect_probability': defect_probability}
        casting = generate_part(family, part_seed, **kwargs)
        yaw = float(rng.uniform(-yaw_jitter, yaw_jitter))
        parts.append(SimPart(i, casting, int(order[i]), yaw, collision_shapes(casting)))
    return parts
