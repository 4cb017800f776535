"""Grading of detected defects against an ASTM E505-structured acceptance table.

The table (config/acceptance_e505.yaml) gives, per discontinuity category, how a measured
indication maps to a severity level 1..8, and per part family and zone the maximum acceptable
level; cracks / cold shuts are not permitted at all. `grade()` assigns each defect its zone and
level (written into the defect) and returns the verdict ACCEPT / REJECT / REVIEW with one
human-readable reason per rule that fired, e.g.
"REJECT: gas_porosity level 5 in zone 'critical' exceeds max level 2
(acceptance_e505.yaml: housing.critical.gas_porosity)". No ROS imports.
"""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from humanoid_inspection.xray.detector import DEFECT_KINDS, DetectedDefect

ACCEPT, REJECT, REVIEW = 'ACCEPT', 'REJECT', 'REVIEW'
_RANK = {ACCEPT: 0, REVIEW: 1, REJECT: 2}
MAX_LEVEL = 8


class GradingTableError(ValueError):
    """The acceptance table is malformed; the message names the offending key."""


@dataclass(frozen=True)
class Category:
    """How one discontinuity category is rated."""

    kind: str
    measure: str = 'size_mm'
    bounds: Tuple[float, ...] = ()
    not_permitted: bool = False
    # graded from this confidence instead of review.ignore_below_confidence (None: that one)
    ignore_below_confidence: Optional[float] = None

    def level(self, value: float) -> int:
        """Severity level 1..8 of a measured value."""
        return 1 + sum(1 for b in self.bounds if value >= b)


@dataclass(frozen=True)
class Zone:
    """A zone of a part family: image regions (fractions) and the max level per category."""

    name: str
    regions: Tuple[Tuple[float, float, float, float], ...]
    max_level: Dict[str, int]

    def contains(self, fx: float, fy: float) -> bool:
        """True if the point (fractions of width, height) lies in one of the regions."""
        return any(x0 <= fx <= x1 and y0 <= fy <= y1 for x0, y0, x1, y1 in self.regions)


@dataclass
class AcceptanceTable:
    """A parsed acceptance table."""

    name: str
    source: str
    categories: Dict[str, Category]
    families: Dict[str, Dict[str, Zone]]
    default_zone: Dict[str, str]
    min_confidence: float = 0.6
    ignore_below_confidence: float = 0.3
    margin_fraction: float = 0.1

    def zones(self, family: str) -> Dict[str, Zone]:
        """Zones of a family. Raises ValueError for an unknown family."""
        if family not in self.families:
            raise ValueError(f"unknown part family '{family}' in {self.source} "
                             f"(known: {', '.join(sorted(self.families))})")
        return self.families[family]


@dataclass
class GradingResult:
    """Verdict of one part, with the reasons and per-defect decisions."""

    verdict: str
    reasons: List[str] = field(default_factory=list)
    decisions: List[str] = field(default_factory=list)   # per defect: ACCEPT/REVIEW/REJECT/-


def default_table_path() -> Path:
    """config/acceptance_e505.yaml of the package (source tree or installed share)."""
    from humanoid_inspection.launch_spec import config_dir
    return config_dir() / 'acceptance_e505.yaml'


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GradingTableError(f'{where}: expected a number, got {value!r}')
    return float(value)


def parse_table(data: dict, source: str = '<dict>') -> AcceptanceTable:
    """Build an AcceptanceTable from the YAML structure. Raises GradingTableError."""
    if not isinstance(data, dict):
        raise GradingTableError(f'{source}: top level must be a mapping')
    cats = {}
    for kind, spec in (data.get('categories') or {}).items():
        if kind not in DEFECT_KINDS:
            raise GradingTableError(f'{source}: categories.{kind}: unknown defect kind '
                                    f"(known: {', '.join(DEFECT_KINDS)})")
        floor = spec.get('ignore_below_confidence')
        if floor is not None:
            floor = _number(floor, f'{source}: categories.{kind}.ignore_below_confidence')
            if not 0.0 <= floor <= 1.0:
                raise GradingTableError(f'{source}: categories.{kind}.ignore_below_confidence '
                                        f'must be within 0..1, got {floor}')
        if spec.get('not_permitted'):
            cats[kind] = Category(kind, not_permitted=True, ignore_below_confidence=floor)
            continue
        measure = spec.get('measure', 'size_mm')
        if measure not in ('size_mm', 'area_mm2'):
            raise GradingTableError(f'{source}: categories.{kind}.measure must be size_mm or '
                                    f'area_mm2, got {measure!r}')
        bounds = tuple(_number(b, f'{source}: categories.{kind}.bounds')
                       for b in spec.get('bounds', ()))
        if len(bounds) != MAX_LEVEL - 1 or list(bounds) != sorted(bounds):
            raise GradingTableError(f'{source}: categories.{kind}.bounds must be '
                                    f'{MAX_LEVEL - 1} increasing numbers')
        cats[kind] = Category(kind, measure, bounds, ignore_below_confidence=floor)
    missing = [k for k in DEFECT_KINDS if k not in cats]
    if missing:
        raise GradingTableError(f"{source}: categories missing: {', '.join(missing)}")
    families, defaults = {}, {}
    for fam, fspec in (data.get('families') or {}).items():
        zones = {}
        for zname, zspec in (fspec.get('zones') or {}).items():
            where = f'{source}: families.{fam}.zones.{zname}'
            regions = []
            for r in zspec.get('regions') or []:
                if len(r) != 4:
                    raise GradingTableError(f'{where}.regions: each region is [x0, y0, x1, y1]')
                regions.append(tuple(_number(v, f'{where}.regions') for v in r))
            levels = {}
            for kind, lvl in (zspec.get('max_level') or {}).items():
                if kind not in cats:
                    raise GradingTableError(f'{where}.max_level.{kind}: unknown category')
                lvl = _number(lvl, f'{where}.max_level.{kind}')
                if not 0 <= lvl <= MAX_LEVEL:
                    raise GradingTableError(f'{where}.max_level.{kind}: must be 0..{MAX_LEVEL}')
                levels[kind] = int(lvl)
            zones[zname] = Zone(zname, tuple(regions), levels)
        if not zones:
            raise GradingTableError(f'{source}: families.{fam} has no zones')
        default = fspec.get('default_zone', next(iter(zones)))
        if default not in zones:
            raise GradingTableError(f'{source}: families.{fam}.default_zone {default!r} '
                                    'is not one of its zones')
        families[fam], defaults[fam] = zones, default
    if not families:
        raise GradingTableError(f'{source}: no families')
    review = data.get('review') or {}
    return AcceptanceTable(
        name=str(data.get('name', Path(source).stem)), source=os.path.basename(source),
        categories=cats, families=families, default_zone=defaults,
        min_confidence=_number(review.get('min_confidence', 0.6), 'review.min_confidence'),
        ignore_below_confidence=_number(review.get('ignore_below_confidence', 0.3),
                                        'review.ignore_below_confidence'),
        margin_fraction=_number(review.get('margin_fraction', 0.1), 'review.margin_fraction'))


def load_table(path=None) -> AcceptanceTable:
    """Load and check an acceptance table YAML (default: config/acceptance_e505.yaml).

    Raises:
        FileNotFoundError: no such file. GradingTableError: malformed table.
    """
    path = Path(path) if path is not None else default_table_path()
    with open(path, encoding='utf-8') as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise GradingTableError(f'{path}: not valid YAML: {exc}') from exc
    return parse_table(data, str(path))


def locate_zone(table: AcceptanceTable, family: str, defect: DetectedDefect,
                image_shape: Tuple[int, int]) -> str:
    """Name of the first zone of the family whose regions hold the defect's box centre."""
    zones = table.zones(family)
    h, w = image_shape
    cx, cy = defect.centre_xy
    fx, fy = cx / max(w, 1), cy / max(h, 1)
    for zone in zones.values():
        if zone.contains(fx, fy):
            return zone.name
    return table.default_zone[family]


def grade(defects: Sequence[DetectedDefect], family: str, image_shape: Tuple[int, int],
          table: Optional[AcceptanceTable] = None,
          zone_of: Optional[Callable[[DetectedDefect], str]] = None) -> GradingResult:
    """Grade the defects of one part.

    Sets `zone` and `severity_level` on each defect (0 for ignored low-confidence ones).

    Args:
        defects: the detections.
        family: part family (a key of the table's families).
        image_shape: (H, W) of the radiograph, for the zone regions.
        table: acceptance table (default: load_table()).
        zone_of: optional override mapping a defect to a zone name (e.g. from a CAD mask).

    Returns:
        GradingResult with the verdict, the reasons and one decision per defect.

    Raises:
        ValueError: unknown family, or zone_of returned an unknown zone.
    """
    table = table or load_table()
    zones = table.zones(family)
    reasons: List[Tuple[int, str]] = []
    decisions = []
    verdict = ACCEPT
    src = table.source
    graded = 0
    for d in defects:
        category = table.categories.get(d.kind)
        floor = table.ignore_below_confidence
        if category is not None and category.ignore_below_confidence is not None:
            floor = category.ignore_below_confidence
        if d.confidence < floor:
            decisions.append('-')
            continue
        graded += 1
        zname = zone_of(d) if zone_of else locate_zone(table, family, d, image_shape)
        if zname not in zones:
            raise ValueError(f"zone '{zname}' is not a zone of family '{family}'")
        d.zone = zname
        cat = table.categories[d.kind]
        rule = f'{src}: {family}.{zname}.{d.kind}'
        where = f'at x={d.centre_xy[0]:.0f} y={d.centre_xy[1]:.0f} px'
        unsure = d.confidence < table.min_confidence
        if cat.not_permitted:
            d.severity_level = MAX_LEVEL
            if unsure:
                decision = REVIEW
                text = (f'REVIEW: possible {d.kind} (confidence {d.confidence:.2f} < '
                        f'{table.min_confidence:.2f}) in zone \'{zname}\' {where}; cracks are '
                        f'not permitted ({src}: categories.{d.kind}.not_permitted)')
            else:
                decision = REJECT
                text = (f'REJECT: {d.kind} ({d.size_mm:.1f} mm) in zone \'{zname}\' {where}: '
                        f'not permitted at any size ({src}: categories.{d.kind}.not_permitted)')
        else:
            value = d.size_mm if cat.measure == 'size_mm' else d.area_mm2
            unit = 'mm' if cat.measure == 'size_mm' else 'mm2'
            level = cat.level(value)
            d.severity_level = level
            limit = zones[zname].max_level.get(d.kind, MAX_LEVEL)
            if level > limit:
                if unsure:
                    decision = REVIEW
                    text = (f'REVIEW: {d.kind} level {level} ({value:.2f} {unit}) in zone '
                            f"'{zname}' would exceed max level {limit} but confidence "
                            f'{d.confidence:.2f} < {table.min_confidence:.2f} ({rule})')
                else:
                    decision = REJECT
                    text = (f'REJECT: {d.kind} level {level} ({value:.2f} {unit}) in zone '
                            f"'{zname}' {where} exceeds max level {limit} ({rule})")
            elif 1 <= limit < MAX_LEVEL and \
                    value >= cat.bounds[limit - 1] * (1.0 - table.margin_fraction):
                decision = REVIEW
                text = (f'REVIEW: {d.kind} level {level} ({value:.2f} {unit}) in zone '
                        f"'{zname}' {where} is within {table.margin_fraction:.0%} of the "
                        f'level-{limit + 1} bound {cat.bounds[limit - 1]:g} {unit} ({rule})')
            else:
                decision = ACCEPT
                text = ''
        decisions.append(decision)
        if text:
            reasons.append((_RANK[decision], text))
        if _RANK[decision] > _RANK[verdict]:
            verdict = decision
    reasons.sort(key=lambda r: -r[0])
    texts = [t for _, t in reasons]
    if verdict == ACCEPT:
        texts.append(f'ACCEPT: {graded} indication(s), all within the limits of '
                     f"family '{family}' ({src})" if graded else
                     f'ACCEPT: no indications above confidence '
                     f'{table.ignore_below_confidence:.2f} ({src})')
    return GradingResult(verdict, texts, decisions)


def truth_verdict(radiograph, family: str, table: Optional[AcceptanceTable] = None) -> str:
    """The verdict of a perfect detector on a simulated radiograph: its true defects
    (`radiograph.truth`: confidence 1, true kind, box, mask, 3-D size, projected area) graded
    with the acceptance table, so zones and severity levels follow grade() exactly. What the
    simulated cell expects of a part and what xray-eval grades the detectors' verdicts
    against.

    Returns:
        'ACCEPT', 'REVIEW' or 'REJECT'.
    """
    defects = [DetectedDefect(kind=t.kind, confidence=1.0,
                              box_xyxy=tuple(int(v) for v in t.box_xyxy),
                              mask=np.asarray(t.mask, dtype=bool), size_mm=float(t.size_mm),
                              area_mm2=float(t.area_mm2),
                              contrast=float(getattr(t, 'contrast', 0.0)))
               for t in radiograph.truth]
    return grade(defects, family, radiograph.image.shape[:2], table).verdict
