"""The virtual X-ray station: radiographs of the part that rests in the cabinet's fixture.

A part "rests in the fixture" when its frame (centre of its seat plane) is within
`xy_tolerance` of the seat centre in the seat plane, within `z_tolerance` above/below the seat
surface, tilted less than `tilt_tolerance_deg` from upright, slower than `speed_tolerance`,
and not held by a gripper. Of several candidates the one nearest the seat centre is imaged.

The radiograph is simulated by the project's X-ray simulator (xray/simulator.py) from the
part's phantom (geometry + its seeded hidden defects) in the part's ACTUAL pose in the fixture:
its yaw about the beam axis and its x/y offset from the seat centre, converted to the
simulator's fixture frame in mm (the beam is vertical, so the small residual tilt of a resting
part is dropped: the simulator images parts resting on their base). Source-object and
source-detector distances come from cell.yaml (`xray_cabinet.source_to_*_mm`).
"""

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from humanoid_inspection.xray.grading import truth_verdict
from humanoid_inspection.xray.phantoms import CastingPart
from humanoid_inspection.xray.simulator import (
    Radiograph, XraySimConfig, pose_yaw, resting_pose, simulate_radiograph)


class XrayStationError(RuntimeError):
    """The station cannot take a radiograph (empty fixture, wrong part, bad settings)."""


@dataclass
class XrayAcquisition:
    """One radiograph of the part in the fixture.

    Attributes:
        radiograph: the simulator's Radiograph (uint16 image + projected defect truth).
        part_id: id of the imaged part.
        family: its family.
        pose_mm: 4x4 part-to-fixture transform given to the simulator (mm).
        defects: the part's hidden defects (DefectSpec dicts, part frame mm).
        expected_verdict: the verdict the grading table gives the part's TRUE defects as they
            project in this radiograph (ground truth for the cell's metrics).
    """

    radiograph: Radiograph
    part_id: str
    family: str
    pose_mm: np.ndarray
    defects: list
    expected_verdict: str = ''


def fixture_relative(fixture_pose: np.ndarray, part_pose: np.ndarray) -> np.ndarray:
    """4x4 pose of the part in the fixture seat frame (m)."""
    return np.linalg.inv(np.asarray(fixture_pose, float)) @ np.asarray(part_pose, float)


class XrayStation:
    """Finds the part in the fixture and simulates its radiograph."""

    def __init__(self, fixture_pose: np.ndarray, sod_mm: float, sdd_mm: float,
                 config: Optional[XraySimConfig] = None, xy_tolerance: float = 0.05,
                 z_tolerance: float = 0.01, tilt_tolerance_deg: float = 5.0,
                 speed_tolerance: float = 0.05):
        """Set up the station.

        Args:
            fixture_pose: 4x4 world pose of the seat surface centre (z up = towards source).
            sod_mm: source to seat-plane distance (mm).
            sdd_mm: source to detector distance (mm).
            config: detector/tube settings (its sod/sdd are replaced by the cell's);
                None = XraySimConfig defaults.
            xy_tolerance: largest offset of the part frame from the seat centre (m).
            z_tolerance: largest height of the part frame above/below the seat (m).
            tilt_tolerance_deg: largest tilt of the part's z axis from the seat normal.
            speed_tolerance: largest linear speed of a resting part (m/s).

        Raises:
            XrayStationError: invalid geometry or settings (the simulator's reason).
        """
        self.fixture_pose = np.asarray(fixture_pose, float)
        self.config = replace(config or XraySimConfig(), sod_mm=float(sod_mm),
                              sdd_mm=float(sdd_mm))
        try:
            self.config.validate()
        except ValueError as exc:
            raise XrayStationError(f'invalid X-ray settings: {exc}') from exc
        self.xy_tolerance = float(xy_tolerance)
        self.z_tolerance = float(z_tolerance)
        self.tilt_tolerance = math.radians(float(tilt_tolerance_deg))
        self.speed_tolerance = float(speed_tolerance)
        self.count = 0

    def in_fixture(self, part_pose: np.ndarray) -> Tuple[bool, str, float]:
        """(rests in the fixture?, why not, distance from the seat centre in m)."""
        rel = fixture_relative(self.fixture_pose, part_pose)
        dxy = float(np.hypot(rel[0, 3], rel[1, 3]))
        tilt = math.acos(max(-1.0, min(1.0, float(rel[2, 2]))))
        if dxy > self.xy_tolerance:
            return False, f'{dxy * 1000:.0f} mm from the seat centre', dxy
        if abs(rel[2, 3]) > self.z_tolerance:
            return False, f'{rel[2, 3] * 1000:.0f} mm above the seat', dxy
        if tilt > self.tilt_tolerance:
            return False, f'tilted {math.degrees(tilt):.0f} deg', dxy
        return True, '', dxy

    def find_part(self, poses: Mapping[str, np.ndarray], held: Iterable[str] = (),
                  speeds: Optional[Mapping[str, float]] = None) -> Optional[str]:
        """The id of the part resting in the fixture, or None.

        Args:
            poses: part id -> 4x4 world pose.
            held: ids of parts a gripper holds (not resting).
            speeds: part id -> linear speed (m/s); None = all at rest.
        """
        held = set(held)
        best, best_d = None, math.inf
        for pid, pose in poses.items():
            ok, _, d = self.in_fixture(pose)
            if not ok or pid in held:
                continue
            if speeds is not None and speeds.get(pid, 0.0) > self.speed_tolerance:
                continue
            if d < best_d:
                best, best_d = pid, d
        return best

    def pose_for_simulator(self, part_pose: np.ndarray) -> np.ndarray:
        """Part-to-fixture transform in mm, reduced to yaw + translation (resting part)."""
        rel = fixture_relative(self.fixture_pose, part_pose)
        return resting_pose(rel[0, 3] * 1000.0, rel[1, 3] * 1000.0, pose_yaw(rel),
                            max(rel[2, 3], 0.0) * 1000.0)

    def acquire(self, part: CastingPart, part_pose: np.ndarray, kv: float = 0.0,
                mas: float = 0.0, seed: Optional[int] = None) -> XrayAcquisition:
        """Simulate the radiograph of part at part_pose (world) in the fixture.

        Args:
            part: the part's phantom.
            part_pose: its 4x4 world pose.
            kv: tube voltage (kV); 0 = the station's default.
            mas: tube current-time product (mAs); 0 = the station's default.
            seed: noise seed; None = derived from the part seed and an acquisition counter.

        Raises:
            XrayStationError: the part is not in the fixture, or bad kV/mAs.
        """
        ok, why, _ = self.in_fixture(part_pose)
        if not ok:
            raise XrayStationError(f'part {part.part_id} is not in the fixture ({why})')
        for name, value in (('tube_kv', kv), ('tube_mas', mas)):
            if not math.isfinite(value) or value < 0:
                raise XrayStationError(f'{name} must be >= 0 (0 = default), got {value}')
        config = replace(self.config, kv=float(kv) if kv > 0 else self.config.kv,
                         mas=float(mas) if mas > 0 else self.config.mas)
        pose = self.pose_for_simulator(part_pose)
        if seed is None:
            seed = (int(part.seed) * 7919 + self.count) % (2 ** 31)
        self.count += 1
        try:
            radiograph = simulate_radiograph(part, config, pose=pose, seed=int(seed))
        except ValueError as exc:
            raise XrayStationError(f'X-ray simulation failed: {exc}') from exc
        return XrayAcquisition(radiograph, part.part_id, part.family, pose,
                               [d.to_dict() for d in part.defects],
                               truth_verdict(radiograph, part.family))


def acquire_from_simulation(sim, station: XrayStation, part_id: str = '', kv: float = 0.0,
                            mas: float = 0.0) -> XrayAcquisition:
    """Radiograph of whatever rests in the simulated fixture (sim = simulation.Simulation).

    The part poses are read under the simulation's lock; the (slow) X-ray simulation runs
    outside it, so physics keeps stepping meanwhile.

    Raises:
        XrayStationError: the fixture is empty, holds another part than part_id, or the
            settings are bad.
    """
    poses, held, speeds = sim.part_states()
    found = station.find_part(poses, held, speeds)
    if found is None:
        near = [pid for pid, pose in poses.items()
                if station.in_fixture(pose)[2] < station.xy_tolerance]
        detail = ''
        if near:
            pid = near[0]
            why = 'held by a gripper' if pid in held else (
                station.in_fixture(poses[pid])[1] or 'still moving')
            detail = f' (part {pid} is near the seat but {why})'
        raise XrayStationError(f'fixture is empty{detail}')
    if part_id and part_id != found:
        raise XrayStationError(f"the fixture holds part '{found}', not '{part_id}'")
    acquisition = station.acquire(sim.part(found).casting, poses[found], kv, mas)
    sim.set_expected_verdict(found, acquisition.expected_verdict)
    return acquisition


# the station's detector and tube defaults (the mujoco_sim node's xray_* parameters); the
# xray_inspection node's reference model assumes the same (xray/part_models.py)
STATION_DETECTOR_PX = 1024
STATION_PITCH_MM = 0.2
STATION_KV = 110.0
STATION_MAS = 2.0


def station_from_cell(cell, detector_px: int = STATION_DETECTOR_PX,
                      pixel_pitch_mm: float = STATION_PITCH_MM, kv: float = STATION_KV,
                      mas: float = STATION_MAS, **tolerances) -> XrayStation:
    """An XrayStation with the fixture and distances of a CellGeometry."""
    cab = cell.xray_cabinet
    config = XraySimConfig(detector_px=int(detector_px), pixel_pitch_mm=float(pixel_pitch_mm),
                           kv=float(kv), mas=float(mas))
    return XrayStation(cab.fixture.pose.matrix(), cab.source_to_object_mm,
                       cab.source_to_detector_mm, config, **tolerances)


__all__: Sequence[str] = ('STATION_DETECTOR_PX', 'STATION_KV', 'STATION_MAS', 'STATION_PITCH_MM',
                          'XrayAcquisition', 'XrayStation', 'XrayStationError',
                          'acquire_from_simulation', 'fixture_relative', 'station_from_cell')
