"""The part model a part id names, and the 'cnn+reference' detector of that part.

In the simulated cell every part is a phantom `generate_part(family, seed)` whose id is
'<family>-<seed>' (`CastingPart.part_id`: the seed written with at least six digits), so the
id names the part's model the way a part number names its CAD in a real factory. The sound
model (geometry without defects) is all the reference needs: `generate_part` draws the
geometry before the defects, so it is the cell's part whatever defect probability the cell
used.

- `parse_part_id` / `part_model`: id -> (family, seed) / sound CastingPart; ValueError with
  the reason for an id that names no model.
- `acquisition_config`: the XraySimConfig of a radiograph taken by the station
  (`sim/xray_station.py station_from_cell` builds its config the same way).
- `station_acquisition`: the same with the cell's X-ray station's distances, kV and mAs
  wherever a setting is given as 0.
- `ReferenceCache`: the PartReference of recent (part id, acquisition) pairs, so that a
  re-inspection of a part does not rebuild its model.
- `reference_detector`: the ReferenceDetector of a part id, a base detector and a config.

No ROS imports.
"""

import re
import threading
from collections import OrderedDict
from dataclasses import astuple, replace
from typing import Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.xray.phantoms import PART_FAMILIES, CastingPart, generate_part
from humanoid_inspection.xray.simulator import XraySimConfig

_PART_ID = re.compile(r'(?P<family>[a-z]+)-(?P<seed>[0-9]+)')
SEED_DIGITS = 6                      # CastingPart.part_id: f'{family}-{seed:06d}'


def parse_part_id(part_id: str) -> Tuple[str, int]:
    """(family, seed) of a part id '<family>-<seed>' as `generate_part` writes it.

    Raises:
        ValueError: not a string, not '<family>-<digits>', an unknown family, or a seed not
            written the way `CastingPart.part_id` writes it (at least six digits, no extra
            leading zeros): such an id is not the id of any modelled part.
    """
    if not isinstance(part_id, str):
        raise ValueError(f'part id must be a string, got {type(part_id).__name__}')
    match = _PART_ID.fullmatch(part_id)
    if match is None:
        raise ValueError(f"part id '{part_id}' is not '<family>-<seed>' (e.g. 'housing-000042')")
    family, digits = match.group('family'), match.group('seed')
    if family not in PART_FAMILIES:
        raise ValueError(f"part id '{part_id}': unknown part family '{family}'; known: "
                         f"{', '.join(PART_FAMILIES)}")
    seed = int(digits)
    canonical = f'{seed:0{SEED_DIGITS}d}'
    if digits != canonical:
        raise ValueError(f"part id '{part_id}': the seed is written '{canonical}' in part ids")
    return family, seed


def part_model(part_id: str) -> CastingPart:
    """The sound model (no defects) of the part with this id.

    Raises:
        ValueError: the id names no model (parse_part_id).
    """
    family, seed = parse_part_id(part_id)
    return generate_part(family, seed, defect_probability=0.0)


def acquisition_config(shape: Sequence[int], pixel_pitch_mm: float, sod_mm: float,
                       sdd_mm: float, kv: float, mas: float) -> XraySimConfig:
    """The XraySimConfig of a radiograph of `shape` (rows, cols) taken with these settings;
    every other setting (filtration, detector, scatter...) is the simulator's default, as
    in the station's config (sim/xray_station.py station_from_cell).

    Raises:
        ValueError: a bad shape or setting (the simulator's reason).
    """
    if len(shape) != 2:
        raise ValueError(f'shape must be (rows, cols), got {tuple(shape)}')
    rows, cols = (int(v) for v in shape)
    config = XraySimConfig(detector_px=rows if rows == cols else (rows, cols),
                           pixel_pitch_mm=float(pixel_pitch_mm), kv=float(kv), mas=float(mas),
                           sod_mm=float(sod_mm), sdd_mm=float(sdd_mm))
    config.validate()
    return config


def station_acquisition(shape: Sequence[int], pixel_pitch_mm: float, sod_mm: float = 0.0,
                        sdd_mm: float = 0.0, kv: float = 0.0, mas: float = 0.0,
                        cell=None) -> XraySimConfig:
    """acquisition_config of a radiograph of the cell's X-ray station, each setting given as
    0 being the station's: the source-object and source-detector distances of the cell's
    X-ray cabinet (`cell`, a CellGeometry; None = the package's config/cell.yaml, loaded only
    when a distance is 0), and the station's default kV and mAs (sim/xray_station.py).

    Raises:
        ValueError: a negative setting, a cell file that cannot be read (CellConfigError is a
            ValueError), a bad shape or setting.
    """
    from humanoid_inspection.sim.xray_station import STATION_KV, STATION_MAS
    for name, value in (('sod_mm', sod_mm), ('sdd_mm', sdd_mm), ('kv', kv), ('mas', mas)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f'{name} must be >= 0 (0 = the station\'s), got {value}')
    if not (sod_mm and sdd_mm):
        if cell is None:
            from humanoid_inspection.cell_geometry import load_cell
            cell = load_cell()
        cabinet = cell.xray_cabinet
        sod_mm = sod_mm or cabinet.source_to_object_mm
        sdd_mm = sdd_mm or cabinet.source_to_detector_mm
    return acquisition_config(shape, pixel_pitch_mm, sod_mm, sdd_mm, kv or STATION_KV,
                              mas or STATION_MAS)


class ReferenceCache:
    """The PartReference of the last `size` (part id, acquisition config, front end) keys.

    Building a reference generates the model (milliseconds to a few tenths of a second);
    its renders are made per radiograph anyway. The cache keeps the model of a part that is
    inspected again (a second view, a re-inspection) and bounds the memory.
    """

    def __init__(self, size: int = 8):
        if int(size) < 1:
            raise ValueError(f'cache size must be >= 1, got {size}')
        self.size = int(size)
        self._entries: 'OrderedDict[tuple, object]' = OrderedDict()
        self._lock = threading.Lock()      # the node inspects goals on several threads
        self.builds = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, part_id: str, config: XraySimConfig, front_end=None):
        """The PartReference of the part id's model under `config`.

        Raises:
            ValueError: the id names no model, or a bad config.
        """
        from humanoid_inspection.xray.reference import PartReference
        if not isinstance(config, XraySimConfig):
            raise ValueError(f'config must be an XraySimConfig, got {type(config).__name__}')
        key = (part_id, astuple(config), front_end)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        reference = PartReference(part_model(part_id), replace(config), front_end)
        with self._lock:
            self.builds += 1
            self._entries[key] = reference
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return reference


def reference_detector(part_id: str, base, config: XraySimConfig,
                       cache: Optional[ReferenceCache] = None,
                       initial_pose: Optional[np.ndarray] = None, **kwargs):
    """The ReferenceDetector of the part with this id: `base` (a detector with a front end,
    e.g. get_detector('cnn')) run against its model rendered with `config`, starting from
    `initial_pose` (None: the fixture's origin). kwargs go to ReferenceDetector.

    Raises:
        ValueError: the id names no model, a bad config, or a base detector without a
            front end.
    """
    from humanoid_inspection.xray.detector_reference import (
        ReferenceDetector, require_front_end)
    require_front_end(base)        # before its params build the reference
    cache = cache if cache is not None else ReferenceCache(1)
    reference = cache.get(part_id, config, base.params)
    return ReferenceDetector(base, reference, initial_pose=initial_pose, **kwargs)


__all__ = ('ReferenceCache', 'acquisition_config', 'parse_part_id', 'part_model',
           'reference_detector', 'station_acquisition')
