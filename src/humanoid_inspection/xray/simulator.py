"""Physics-based radiograph simulator for die-cast parts, with exact defect ground truth.

Geometry (fixture frame, mm): the beam is vertical. The focal spot is at (0, 0, SOD) above the
fixture seat plane z = 0 on which the part rests; the flat-panel detector lies in the plane
z = SOD - SDD under it, centred on the beam axis. Detector pixel (row r, col c) has its centre
at x = (c + 0.5 - cols / 2) * pitch, y = (r + 0.5 - rows / 2) * pitch. A point at height z
projects with magnification M(z) = SDD / (SOD - z).

Image formation, in order (see docs/xray_simulator.md):
1. alloy path length per pixel: the part's cross-section is rasterised slab by slab (each slab
   at its own magnification, so the cone beam is exact up to half a pixel) and summed; the
   path through a horizontal slab of thickness dz along an oblique ray is dz / cos(theta).
2. defects: exact ray/solid chords (supersampled) subtracted from the alloy path (voids) or
   moved to a second material (inclusions). The ground truth comes from these chords.
3. Beer-Lambert with the polychromatic spectrum and the scintillator response through a
   thickness look-up table (beam hardening included); inclusion pixels are summed bin by bin.
4. focal-spot blur (Gaussian, FWHM = focal spot * (M - 1)), scatter (Ohnesorge-type kernel:
   fraction * Gaussian-blurred P ln(P0 / P)), compound-Poisson quantum noise (Poisson photon
   counts, variance sum N E^2; the normal law of that variance above 1000 photons per pixel),
   scintillator blur (Gaussian core + glare), gain (flat-field corrected by default), dark
   offset, Gaussian read noise, rounding and clipping to uint16.

Ground truth per defect: box, mask, kind, size, contrast and the ideal observer's d' against
this radiograph's own noise (DefectTruth.detectability), the bound on what a detector can see.

Seeded: the same part, config, pose and seed give identical image bytes.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from humanoid_inspection.xray.phantoms import CastingPart
from humanoid_inspection.xray.physics import (AIR, TransmissionTable, linear_attenuation,
                                              scintillator_absorption)
from humanoid_inspection.xray.spectrum import DEFAULT_FILTRATION, tube_spectrum

UINT16_MAX = 65535
GAUSSIAN_QUANTA = 1000.0  # photons per pixel above which Poisson noise is drawn as normal
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel polygon vertices
_SCALE = float(1 << _SHIFT)
FILL_MARGIN_PX = 6  # pixels around a fill's vertices that its anti-aliasing may touch


@dataclass
class XraySimConfig:
    """Acquisition and detector settings (mm, kV, mAs, ADU).

    Attributes:
        kv: tube voltage (kV).
        mas: tube current-time product (mA s) per radiograph.
        anode_angle_deg: tungsten target angle.
        filtration: ((material, mm), ...) inherent window + added filter.
        spectrum_model: 'auto' (SpekPy, else Kramers), 'spekpy' or 'kramers'.
        energy_bin_kev: spectrum bin width.
        sod_mm: source (focal spot) to fixture seat plane distance.
        sdd_mm: source to detector distance (> sod_mm).
        pixel_pitch_mm: detector pixel pitch.
        detector_px: detector size in pixels, int (square) or (rows, cols), 16..4096.
        focal_spot_mm: focal spot size (FWHM, EN 12543-style).
        detector_blur_px: Gaussian sigma of the scintillator point-spread core (pixels).
        glare_fraction: fraction of the light in a wide glare halo (0..0.5).
        glare_sigma_mm: sigma of the glare halo (detector mm).
        scintillator_mm: CsI:Tl thickness.
        scatter_fraction: scatter amplitude c in S = c * G * (P ln(P0 / P)) (0..1).
        scatter_sigma_mm: width (sigma) of the scatter kernel at the detector (mm).
        read_noise_adu: electronic noise (ADU rms).
        dark_offset_adu: dark level (ADU).
        gain_adu_per_kev: fixed gain; None = auto-ranging: the open beam lands on
            target_open_adu whatever the exposure.
        target_open_adu: open-beam level of the auto-ranging gain.
        flat_field: divide out the cos^3 intensity fall-off (gain calibration) if True.
        slab_tolerance_px: largest cone-beam position error of the slab rasteriser (pixels).
        defect_supersampling: sub-samples per pixel side for defect chords and masks.
        mask_min_coverage: fraction of a pixel a defect must cover to be in its mask.
    """

    kv: float = 110.0
    mas: float = 2.0
    anode_angle_deg: float = 12.0
    filtration: tuple = DEFAULT_FILTRATION
    spectrum_model: str = 'auto'
    energy_bin_kev: float = 2.0
    sod_mm: float = 700.0
    sdd_mm: float = 900.0
    pixel_pitch_mm: float = 0.2
    detector_px: object = 1024
    focal_spot_mm: float = 0.4
    detector_blur_px: float = 0.6
    glare_fraction: float = 0.03
    glare_sigma_mm: float = 3.0
    scintillator_mm: float = 0.6
    scatter_fraction: float = 0.1
    scatter_sigma_mm: float = 20.0
    read_noise_adu: float = 4.0
    dark_offset_adu: float = 500.0
    gain_adu_per_kev: float = None
    target_open_adu: float = 50000.0
    flat_field: bool = True
    slab_tolerance_px: float = 0.5
    defect_supersampling: int = 4
    mask_min_coverage: float = 0.25

    @classmethod
    def for_size(cls, size_px: int, field_of_view_mm: float = 204.8, **overrides):
        """A config whose square detector of `size_px` covers `field_of_view_mm`."""
        return cls(detector_px=int(size_px), pixel_pitch_mm=field_of_view_mm / int(size_px),
                   **overrides)

    @property
    def shape(self) -> tuple:
        """(rows, cols) of the detector."""
        if isinstance(self.detector_px, (int, np.integer)):
            return int(self.detector_px), int(self.detector_px)
        rows, cols = self.detector_px
        return int(rows), int(cols)

    def magnification(self, height_mm: float = 0.0) -> float:
        """SDD / (SOD - z) for a point at height z above the seat plane."""
        return self.sdd_mm / (self.sod_mm - height_mm)

    def validate(self) -> None:
        """Check every setting.

        Raises:
            ValueError: naming the first bad setting and why.
        """
        positive = ('kv', 'mas', 'sod_mm', 'sdd_mm', 'pixel_pitch_mm', 'scintillator_mm',
                    'energy_bin_kev', 'target_open_adu', 'slab_tolerance_px',
                    'scatter_sigma_mm', 'glare_sigma_mm')
        for name in positive:
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f'XraySimConfig.{name} must be a finite number > 0, got '
                                 f'{value!r}')
        for name in ('focal_spot_mm', 'detector_blur_px', 'read_noise_adu', 'dark_offset_adu'):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f'XraySimConfig.{name} must be >= 0, got {value!r}')
        if self.sdd_mm <= self.sod_mm:
            raise ValueError(f'source-detector distance ({self.sdd_mm} mm) must exceed the '
                             f'source-object distance ({self.sod_mm} mm)')
        if not 0 <= self.scatter_fraction < 1 or not 0 <= self.glare_fraction <= 0.5:
            raise ValueError('scatter_fraction must lie in [0, 1) and glare_fraction in '
                             '[0, 0.5]')
        if not 0 < self.mask_min_coverage <= 1:
            raise ValueError('mask_min_coverage must lie in (0, 1]')
        if self.gain_adu_per_kev is not None and not self.gain_adu_per_kev > 0:
            raise ValueError(f'gain_adu_per_kev must be > 0 or None, got '
                             f'{self.gain_adu_per_kev}')
        try:
            rows, cols = self.shape
        except (TypeError, ValueError):
            raise ValueError(f'detector_px must be an int or (rows, cols), got '
                             f'{self.detector_px!r}') from None
        if not (16 <= rows <= 4096 and 16 <= cols <= 4096):
            raise ValueError(f'detector size {rows}x{cols} px outside 16..4096 px')
        if not 1 <= int(self.defect_supersampling) <= 8:
            raise ValueError('defect_supersampling must lie in 1..8')
        if self.dark_offset_adu >= UINT16_MAX:
            raise ValueError('dark_offset_adu must be below the 16-bit full scale')


@dataclass
class DefectTruth:
    """Ground truth of one defect as it appears in a radiograph.

    Attributes:
        kind: defect class ('gas_porosity', 'shrinkage', 'crack', 'inclusion').
        box_xyxy: (x0, y0, x1, y1) pixel box, x1/y1 exclusive (mask extent).
        mask: bool array (y1 - y0, x1 - x0) of the pixels the projected defect covers.
        size_mm: largest dimension of the 3D defect (mm).
        area_mm2: projected area in the plane of the defect (mask pixels / M^2).
        defect_id, cluster_id, subtype: from the part's DefectSpec.
        center_px: (x, y) projection of the defect centre.
        magnification: at the defect's depth.
        peak_chord_mm: longest path through the defect along a ray.
        contrast: largest relative change of the noise-free primary signal
            (> 0: brighter (void), < 0: darker (inclusion)).
        detectability: d' of the ideal observer for this defect at a known place on a known
            background (SKE/BKE): sqrt(sum over pixels of (signal change)^2 / noise
            variance), with the focal-blurred change of the primary signal and the quantum
            (compound Poisson) plus read noise of the same radiograph (defect_detectability).
            A bound on what any detector can see: the Rose criterion asks d' >= 5 for a
            defect to be told from noise where its place is not known in advance.
    """

    kind: str
    box_xyxy: tuple
    mask: np.ndarray
    size_mm: float
    area_mm2: float
    defect_id: int = 0
    cluster_id: int = None
    subtype: str = ''
    center_px: tuple = (0.0, 0.0)
    magnification: float = 1.0
    peak_chord_mm: float = 0.0
    contrast: float = 0.0
    detectability: float = float('nan')

    @property
    def bbox_xywh(self) -> list:
        """COCO box [x, y, width, height] (pixels)."""
        x0, y0, x1, y1 = self.box_xyxy
        return [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]

    def full_mask(self, shape) -> np.ndarray:
        """The mask pasted into a bool image of `shape` (rows, cols)."""
        full = np.zeros(shape, bool)
        x0, y0, x1, y1 = self.box_xyxy
        full[y0:y1, x0:x1] = self.mask
        return full

    def to_dict(self) -> dict:
        """JSON-friendly summary (mask excluded)."""
        return {'kind': self.kind, 'box_xyxy': [int(v) for v in self.box_xyxy],
                'size_mm': round(float(self.size_mm), 4),
                'area_mm2': round(float(self.area_mm2), 4), 'defect_id': self.defect_id,
                'cluster_id': self.cluster_id, 'subtype': self.subtype,
                'center_px': [round(float(v), 2) for v in self.center_px],
                'magnification': round(float(self.magnification), 5),
                'peak_chord_mm': round(float(self.peak_chord_mm), 4),
                'contrast': round(float(self.contrast), 5),
                'detectability': round(float(self.detectability), 3)}


@dataclass
class Radiograph:
    """A simulated radiograph with its ground truth.

    Attributes:
        image: uint16 (rows, cols) detector output (ADU), bright = less attenuation.
        pixel_pitch_mm: detector pixel pitch.
        magnification: SDD / (SOD - z) at the part's mid-height.
        truth: list of DefectTruth (defects whose projection falls on the detector).
        part_family, part_id: of the simulated part.
        seed: noise seed.
        pose: 4x4 part-to-fixture transform used.
        config: the XraySimConfig used.
        thickness_mm: float32 (rows, cols) alloy path length per pixel (after defects).
        part_mask: bool (rows, cols), True where the beam crossed the part.
        timings_s: seconds spent per stage.
    """

    image: np.ndarray
    pixel_pitch_mm: float
    magnification: float
    truth: list
    part_family: str
    part_id: str
    seed: int = 0
    pose: np.ndarray = None
    config: XraySimConfig = None
    thickness_mm: np.ndarray = None
    part_mask: np.ndarray = None
    timings_s: dict = field(default_factory=dict)

    @property
    def pixel_size_object_mm(self) -> float:
        """Pixel pitch referred to the part's mid-plane (mm)."""
        return self.pixel_pitch_mm / self.magnification


# ----------------------------------------------------------------------------- helpers

def resting_pose(dx_mm: float, dy_mm: float, yaw_rad: float, dz_mm: float = 0.0) -> np.ndarray:
    """The 4x4 part-to-fixture transform (simulate_radiograph's `pose`) of a part resting
    in the fixture: turned by yaw_rad about the vertical beam axis, shifted by (dx, dy, dz)
    mm."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = [dx_mm, dy_mm, dz_mm]
    return pose


def pose_yaw(pose: np.ndarray) -> float:
    """The turn (rad) about the vertical beam axis of a part-to-fixture transform."""
    return math.atan2(pose[1, 0], pose[0, 0])


def _check_pose(pose, config: XraySimConfig, part: CastingPart) -> np.ndarray:
    if pose is None:
        pose = np.eye(4)
    pose = np.asarray(pose, float)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError('pose must be a finite 4x4 homogeneous transform')
    if not np.allclose(pose[3], [0, 0, 0, 1]):
        raise ValueError('pose bottom row must be [0, 0, 0, 1]')
    rotation = pose[:3, :3]
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6) or \
            np.linalg.det(rotation) < 0:
        raise ValueError('pose rotation must be a proper rotation matrix')
    if abs(rotation[2, 2] - 1.0) > 1e-6:
        raise ValueError('only rotations about the vertical (beam) axis are supported: the '
                         'part must rest on its base in the fixture')
    bottom, top = pose[2, 3], pose[2, 3] + part.height_mm
    if top >= config.sod_mm - 1.0:
        raise ValueError(f'part top at {top:.1f} mm reaches the source (SOD {config.sod_mm} '
                         'mm)')
    if bottom <= config.sod_mm - config.sdd_mm:
        raise ValueError('part base lies at or below the detector plane')
    return pose


@lru_cache(maxsize=16)
def _table(kv, anode, filtration, bin_kev, model, scint_mm, material):
    spectrum = tube_spectrum(kv, anode, filtration, bin_kev, model)
    response = scintillator_absorption(spectrum.energies_kev, scint_mm)
    return TransmissionTable(spectrum.energies_kev, spectrum.fluence, response, material)


def transmission_table(config: XraySimConfig, material: str = 'AlSi9Cu3') -> TransmissionTable:
    """The (cached) alloy transmission table of a config, per mAs per cm^2 at 1 m."""
    return _table(float(config.kv), float(config.anode_angle_deg),
                  tuple((str(m), float(t)) for m, t in config.filtration),
                  float(config.energy_bin_kev), config.spectrum_model,
                  float(config.scintillator_mm), material)


def photons_scale(config: XraySimConfig) -> float:
    """Factor from table units (per mAs per cm^2 at 1 m) to one pixel of this exposure."""
    table = transmission_table(config)
    air = float(np.exp(-(linear_attenuation(AIR, [table.energies.mean()])[0] *
                         config.sdd_mm)))
    return config.mas * (1000.0 / config.sdd_mm) ** 2 * (config.pixel_pitch_mm / 10.0) ** 2 \
        * air


@lru_cache(maxsize=8)
def _detector_geometry(rows, cols, pitch, sdd):
    x = ((np.arange(cols) + 0.5 - cols / 2.0) * pitch).astype(np.float32)
    y = ((np.arange(rows) + 0.5 - rows / 2.0) * pitch).astype(np.float32)
    radius2 = x[None, :] ** 2 + y[:, None] ** 2
    cos_theta = (sdd / np.sqrt(sdd * sdd + radius2)).astype(np.float32)
    cos_theta.flags.writeable = False
    return x, y, cos_theta


def _gaussian(image: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px < 0.05:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)


def _wide_gaussian(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of large sigma through a down-sampled image (smooth terms only)."""
    factor = int(max(1, min(sigma_px / 3.0, 16)))
    if factor == 1:
        return _gaussian(image, sigma_px)
    rows, cols = image.shape
    small = cv2.resize(image, (max(1, cols // factor), max(1, rows // factor)),
                       interpolation=cv2.INTER_AREA)
    small = _gaussian(small, sigma_px / factor)
    return cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)


# ----------------------------------------------------------------------- part projection

def _pixel_window(polygons, shape):
    """Row and column slices of the pixels that anti-aliased fills of `polygons` (int32
    arrays of cv2 fixed-point vertices) can touch, clipped to `shape`. OpenCV's edge blending
    reaches up to three pixels past the last vertex (seen on a bracket's gusset);
    FILL_MARGIN_PX holds it."""
    points = np.concatenate(polygons).reshape(-1, 2) >> _SHIFT
    low, high = points.min(0), points.max(0)
    x0, y0 = int(low[0]) - FILL_MARGIN_PX, int(low[1]) - FILL_MARGIN_PX
    x1, y1 = int(high[0]) + FILL_MARGIN_PX + 1, int(high[1]) + FILL_MARGIN_PX + 1
    rows, cols = shape
    return (slice(min(max(y0, 0), rows), min(max(y1, 0), rows)),
            slice(min(max(x0, 0), cols), min(max(x1, 0), cols)))


def project_part_thickness(part: CastingPart, config: XraySimConfig,
                           pose: np.ndarray = None, windowed: bool = True) -> np.ndarray:
    """Alloy path length (mm) along each detector ray through the defect-free part.

    Args:
        part: the CastingPart.
        config: the XraySimConfig (validated).
        pose: 4x4 part-to-fixture transform (rotation about z + translation) or None.
        windowed: each slab's fill is added where its features were drawn (True), or the
            part's whole square is added every slab (False: the earlier way, the same
            result, kept as bench_xray_sim's baseline and the tests' check).

    Returns:
        float32 (rows, cols) path lengths in mm.
    """
    pose = _check_pose(pose, config, part)
    rows, cols = config.shape
    pitch, sod, sdd = config.pixel_pitch_mm, config.sod_mm, config.sdd_mm
    _, _, cos_theta = _detector_geometry(rows, cols, pitch, sdd)
    thickness = np.zeros((rows, cols), np.float32)
    rot2, shift = pose[:2, :2], pose[:2, 3]
    lift = pose[2, 3]
    reach = part.radius_xy + float(np.linalg.norm(shift))
    top_scale = sdd / (sod - lift - part.height_mm) / pitch
    centre = shift * top_scale + np.array([cols / 2.0 - 0.5, rows / 2.0 - 0.5])
    half = part.radius_xy * top_scale + 3
    c0, c1 = int(max(0, np.floor(centre[0] - half))), int(min(cols, np.ceil(centre[0] + half)))
    r0, r1 = int(max(0, np.floor(centre[1] - half))), int(min(rows, np.ceil(centre[1] + half)))
    if c1 <= c0 or r1 <= r0:
        return thickness
    canvas = np.zeros((r1 - r0, c1 - c0), np.uint8)
    counts = np.zeros((r1 - r0, c1 - c0), np.uint16)
    crop = thickness[r0:r1, c0:c1]
    offset = np.array([cols / 2.0 - 0.5 - c0, rows / 2.0 - 0.5 - r0])
    breaks = part.z_breaks()
    for a, b in zip(breaks[:-1], breaks[1:]):
        mid = 0.5 * (a + b)
        active = [f for f in part.features if f.z0 <= mid <= f.z1]
        positives = [f for f in active if f.positive]
        if not positives:
            continue
        negatives = [f for f in active if not f.positive]
        # largest slab so that a point `reach` off-axis moves < tolerance px across it
        z_far = sod - lift - b
        dz_max = config.slab_tolerance_px * pitch * z_far * z_far / (sdd * max(reach, 1.0))
        # lofted features (drafts, gussets, fillets): their edges move sideways with z; keep
        # that motion under the tolerance too, or sloped faces would show as steps
        slope_px = max([np.abs(t - c).max() / (f.z1 - f.z0) * top_scale
                        for f in active if f.top is not None
                        for c, t in zip(f.bottom, f.top)] + [1e-9])
        dz_max = min(dz_max, config.slab_tolerance_px / slope_px)
        slabs = max(1, int(np.ceil((b - a) / dz_max)))
        dz = (b - a) / slabs
        counts[:] = 0
        for k in range(slabs):
            z = a + (k + 0.5) * dz
            scale = sdd / (sod - lift - z) / pitch
            # one fill per feature: even-odd holds within a feature (rings), union across
            drawn = []
            for group, value in ((positives, 255), (negatives, 0)):
                for f in group:
                    polygons = [np.round(((contour @ rot2.T + shift) * scale + offset) *
                                         _SCALE).astype(np.int32)
                                for contour in f.contours_at(z)]
                    cv2.fillPoly(canvas, polygons, value, cv2.LINE_AA, shift=_SHIFT)
                    if value:
                        drawn += polygons
            # only the rectangle the positive features were drawn in is added and cleared
            # again: the features of most slabs (bosses, ribs, gussets) cover a few percent
            # of the part's square, and adding it whole was most of the projection's time
            if drawn and windowed:
                window = _pixel_window(drawn, canvas.shape)
                counts[window] += canvas[window]
                canvas[window] = 0
            elif drawn:
                cv2.add(counts, canvas, dst=counts, dtype=cv2.CV_16U)
                canvas[:] = 0
            if k % 250 == 249 or k == slabs - 1:  # flush before uint16 overflow
                crop += counts.astype(np.float32) * np.float32(dz / 255.0)
                counts[:] = 0
    thickness /= cos_theta
    return thickness


# ------------------------------------------------------------------------------ defects

def _defect_footprint(defect, pose, config):
    """Pixel bounding box (r0, r1, c0, c1), centre (x, y) px and magnification of a defect."""
    rows, cols = config.shape
    centre = pose[:3, :3] @ defect.center_mm + pose[:3, 3]
    magnification = config.sdd_mm / (config.sod_mm - centre[2])
    radius = defect.bounding_radius
    # a sphere's shadow on the detector: the nearest point magnifies most
    scale = config.sdd_mm / (config.sod_mm - centre[2] - radius) / config.pixel_pitch_mm
    cx = centre[0] * config.sdd_mm / (config.sod_mm - centre[2]) / config.pixel_pitch_mm + \
        cols / 2.0 - 0.5
    cy = centre[1] * config.sdd_mm / (config.sod_mm - centre[2]) / config.pixel_pitch_mm + \
        rows / 2.0 - 0.5
    extent = radius * scale * 1.05 + 2.0
    c0, c1 = int(max(0, np.floor(cx - extent))), int(min(cols, np.ceil(cx + extent) + 1))
    r0, r1 = int(max(0, np.floor(cy - extent))), int(min(rows, np.ceil(cy + extent) + 1))
    return (r0, r1, c0, c1), (cx, cy), magnification


def defect_chords(defect, pose, config, box):
    """Mean chord (mm) and covered fraction per pixel of a defect over a pixel box.

    Args:
        defect: DefectSpec (part frame).
        pose: 4x4 part-to-fixture transform.
        config: XraySimConfig.
        box: (r0, r1, c0, c1) pixel rows/cols.

    Returns:
        (mean_chord, coverage, peak_chord): float arrays (r1 - r0, c1 - c0) and a float.
    """
    rows, cols = config.shape
    r0, r1, c0, c1 = box
    ss = int(config.defect_supersampling)
    pitch = config.pixel_pitch_mm
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    xs = ((np.arange(c0, c1)[:, None] + 0.5 + sub[None, :]).ravel() - cols / 2.0) * pitch
    ys = ((np.arange(r0, r1)[:, None] + 0.5 + sub[None, :]).ravel() - rows / 2.0) * pitch
    gx, gy = np.meshgrid(xs, ys)
    source = np.array([0.0, 0.0, config.sod_mm])
    directions = np.column_stack([gx.ravel(), gy.ravel(),
                                  np.full(gx.size, -config.sdd_mm)])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    rotation, translation = pose[:3, :3], pose[:3, 3]
    origin = rotation.T @ (source - translation)
    chord = defect.chord_mm(origin, directions @ rotation).reshape(gx.shape)
    height, width = r1 - r0, c1 - c0
    blocks = chord.reshape(height, ss, width, ss)
    mean = blocks.mean(axis=(1, 3))
    coverage = (blocks > 0).mean(axis=(1, 3))
    return mean.astype(np.float32), coverage, float(chord.max())


# ---------------------------------------------------------------------------- simulator

def _check_inputs(part, config, seed):
    if not isinstance(part, CastingPart):
        raise ValueError(f'part must be a CastingPart, got {type(part).__name__}')
    if not isinstance(config, XraySimConfig):
        raise ValueError(f'config must be an XraySimConfig, got {type(config).__name__}')
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
    config.validate()


def simulate_radiograph(part: CastingPart, config: XraySimConfig = None, pose=None,
                        seed: int = 0, noise: bool = True) -> Radiograph:
    """Simulate the radiograph of a part and its defects' ground truth.

    Args:
        part: the CastingPart (phantoms.generate_part).
        config: XraySimConfig; None = defaults (1024 px, 0.2 mm pitch, 110 kV, 2 mAs).
        pose: 4x4 part-to-fixture transform: rotation about the vertical beam axis and a
            translation (x, y in the fixture plane, z lifts the part); None = identity.
        seed: noise seed (non-negative int).
        noise: False gives the expected image: the same blur, glare, flat-field and gain,
            no quantum or read noise (a part model's reference image, xray/reference.py).

    Returns:
        The Radiograph (uint16 image + truth).

    Raises:
        ValueError: for a bad part, config, pose or seed, with the reason.
    """
    config = XraySimConfig() if config is None else config
    _check_inputs(part, config, seed)
    pose = _check_pose(pose, config, part)
    timings = {}
    start = time.perf_counter()
    rows, cols = config.shape
    _, _, cos_theta = _detector_geometry(rows, cols, config.pixel_pitch_mm, config.sdd_mm)
    table = transmission_table(config, part.material)
    scale = photons_scale(config)
    timings['tables'] = time.perf_counter() - start

    tick = time.perf_counter()
    thickness = project_part_thickness(part, config, pose)
    part_mask = thickness > 0.01
    timings['projection'] = time.perf_counter() - tick

    tick = time.perf_counter()
    inclusions, pending = [], []
    for defect in part.defects:
        box, centre_px, magnification = _defect_footprint(defect, pose, config)
        r0, r1, c0, c1 = box
        if r1 <= r0 or c1 <= c0:
            continue
        mean, coverage, peak = defect_chords(defect, pose, config, box)
        if peak <= 0:
            continue
        before = thickness[r0:r1, c0:c1].copy()
        thickness[r0:r1, c0:c1] = np.maximum(before - mean, 0.0)
        if not defect.is_void:
            inclusions.append((box, mean, defect.material))
        pending.append((defect, box, centre_px, magnification, mean, coverage, peak, before))
    timings['defects'] = time.perf_counter() - tick

    tick = time.perf_counter()
    falloff = cos_theta ** 3
    # the photons' energies serve the noise and the defects' detectability only: the
    # expected image of a sound part (a reference render, xray/reference.py) needs the signal
    needs_energies = noise or bool(pending)
    primary, mean_energy, rms_energy = table.lookup(thickness, energies=needs_energies)
    primary *= np.float32(scale)
    for (r0, r1, c0, c1), chord, material in inclusions:
        signal, mean_e, rms_e = table.exact_signal({part.material: thickness[r0:r1, c0:c1],
                                                     material: chord})
        covered = chord > 0
        primary[r0:r1, c0:c1][covered] = (signal * scale)[covered]
        mean_energy[r0:r1, c0:c1][covered] = mean_e[covered]
        rms_energy[r0:r1, c0:c1][covered] = rms_e[covered]
    primary *= falloff
    timings['attenuation'] = time.perf_counter() - tick

    truth, changes = _ground_truth(pending, thickness, table, config, inclusions)

    tick = time.perf_counter()
    mid_height = pose[2, 3] + part.height_mm / 2.0
    magnification = config.magnification(mid_height)
    focal_sigma = config.focal_spot_mm * (magnification - 1.0) / 2.3548 / \
        config.pixel_pitch_mm
    primary = _gaussian(primary, focal_sigma)
    open_beam = np.float32(table.open_signal * scale) * falloff
    if config.scatter_fraction > 0:
        ratio = np.maximum(primary, 1e-6) / open_beam
        source_term = primary * -np.log(np.minimum(ratio, 1.0))
        scatter = _wide_gaussian(source_term, config.scatter_sigma_mm / config.pixel_pitch_mm)
        expected = primary + np.float32(config.scatter_fraction) * scatter
    else:
        expected = primary
    timings['blur_scatter'] = time.perf_counter() - tick

    tick = time.perf_counter()
    rng = np.random.default_rng([int(seed), 7])
    quanta = expected / mean_energy if needs_energies else None
    # compound Poisson: photon counts are Poisson, each photon deposits its own energy, so
    # the variance of the deposited energy is N <E^2>. Above GAUSSIAN_QUANTA photons the
    # Poisson law is replaced by the normal law of equal variance (indistinguishable there).
    if noise:
        deviation = rng.standard_normal(quanta.shape, dtype=np.float32)
        deviation *= np.sqrt(quanta)
        few = quanta < GAUSSIAN_QUANTA
        if few.any():
            low = quanta[few]
            deviation[few] = rng.poisson(low.astype(np.float64)).astype(np.float32) - low
        deviation *= rms_energy
        signal = expected + deviation
    else:
        signal = expected
    core = _gaussian(signal, config.detector_blur_px)
    if config.glare_fraction > 0:
        glare = _wide_gaussian(signal, config.glare_sigma_mm / config.pixel_pitch_mm)
        signal = (1.0 - config.glare_fraction) * core + config.glare_fraction * glare
    else:
        signal = core
    if config.flat_field:
        signal = signal / falloff
    gain = config.gain_adu_per_kev
    if gain is None:
        gain = (config.target_open_adu - config.dark_offset_adu) / (table.open_signal * scale)
    adu = signal * np.float32(gain) + np.float32(config.dark_offset_adu)
    read_noise = config.read_noise_adu / gain  # energy units (x falloff before flat-field)
    for t, change in zip(truth, changes):
        t.detectability = defect_detectability(change, scale, falloff, focal_sigma, quanta,
                                               rms_energy, read_noise)
    if noise and config.read_noise_adu > 0:
        adu += rng.standard_normal(adu.shape, dtype=np.float32) * \
            np.float32(config.read_noise_adu)
    image = np.clip(np.rint(adu), 0, UINT16_MAX).astype(np.uint16)
    timings['noise_detector'] = time.perf_counter() - tick
    timings['total'] = time.perf_counter() - start
    return Radiograph(image=image, pixel_pitch_mm=config.pixel_pitch_mm,
                      magnification=float(magnification), truth=truth,
                      part_family=part.family, part_id=part.part_id, seed=int(seed),
                      pose=pose, config=config, thickness_mm=thickness, part_mask=part_mask,
                      timings_s=timings)


def defect_detectability(change, photons_scale: float, falloff: np.ndarray,
                         focal_sigma_px: float, quanta: np.ndarray, rms_energy: np.ndarray,
                         read_noise: float) -> float:
    """Ideal-observer d' of one defect (SKE/BKE): sqrt(sum (delta s)^2 / variance).

    delta s is the defect's change of the primary signal (energy units), blurred by the focal
    spot (that blur comes before the quantum noise, so it costs detectability); the variance is
    the compound-Poisson N <E^2> of the radiograph with the defect plus the read noise. The
    scintillator blur is left out: it filters signal and quantum noise alike, which an ideal
    (prewhitening) observer undoes.

    Args:
        change: (r0, c0, delta) -- the box's top-left pixel and its change of the table
            signal (with defect - without), in the look-up table's units.
        photons_scale: factor from table units to energy (photons_scale(config)).
        falloff: full-image cos^3 intensity fall-off (energy = table x scale x falloff).
        focal_sigma_px: focal-spot blur (detector pixels).
        quanta: full-image expected photons per pixel.
        rms_energy: full-image rms photon energy per pixel.
        read_noise: read-noise rms in energy units after the flat-field (x falloff before).

    Returns:
        d' (>= 0).
    """
    r0, c0, delta = change
    pad = int(np.ceil(3.0 * focal_sigma_px))
    rows, cols = quanta.shape
    y0, x0 = max(0, r0 - pad), max(0, c0 - pad)
    y1, x1 = min(rows, r0 + delta.shape[0] + pad), min(cols, c0 + delta.shape[1] + pad)
    padded = np.zeros((y1 - y0, x1 - x0), np.float32)
    padded[r0 - y0:r0 - y0 + delta.shape[0], c0 - x0:c0 - x0 + delta.shape[1]] = delta
    box_falloff = falloff[y0:y1, x0:x1]
    ds = _gaussian(padded, focal_sigma_px) * (photons_scale * box_falloff)
    variance = quanta[y0:y1, x0:x1] * rms_energy[y0:y1, x0:x1] ** 2 + \
        (read_noise * box_falloff) ** 2
    return float(np.sqrt(np.sum(ds.astype(np.float64) ** 2 / np.maximum(variance, 1e-12))))


def _ground_truth(pending, thickness, table, config, inclusions):
    """DefectTruth for each defect from its chords (mask = covered pixels), and per defect
    its change of the noise-free table signal: (r0, c0, with defect - without)."""
    truth, changes = [], []
    for defect, box, centre_px, magnification, mean, coverage, peak, before in pending:
        r0, r1, c0, c1 = box
        mask = coverage >= config.mask_min_coverage
        if not mask.any():
            mask = coverage >= coverage.max() * 0.999
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = mask[y0:y1, x0:x1]
        pixel_object = config.pixel_pitch_mm / magnification
        if defect.is_void:
            with_defect = table.signal(np.maximum(before - mean, 0.0))
        else:
            with_defect = table.exact_signal({table.material.name: np.maximum(before - mean, 0.0),
                                              defect.material: mean})[0]
        without = table.signal(before)
        changes.append((r0, c0, (with_defect - without).astype(np.float32)))
        relative = (with_defect - without) / np.maximum(without, 1e-12)
        contrast = float(relative.flat[np.argmax(np.abs(relative))])
        truth.append(DefectTruth(
            kind=defect.kind, box_xyxy=(int(c0 + x0), int(r0 + y0), int(c0 + x1),
                                        int(r0 + y1)),
            mask=crop, size_mm=float(defect.size_mm),
            area_mm2=float(crop.sum() * pixel_object ** 2), defect_id=defect.defect_id,
            cluster_id=defect.cluster_id, subtype=defect.subtype,
            center_px=(float(centre_px[0]), float(centre_px[1])),
            magnification=float(magnification), peak_chord_mm=peak, contrast=contrast))
    return truth, changes


def config_to_dict(config: XraySimConfig) -> dict:
    """JSON-friendly dict of a config."""
    values = asdict(config)
    values['filtration'] = [list(item) for item in config.filtration]
    if not isinstance(config.detector_px, (int, np.integer)):
        values['detector_px'] = list(config.shape)
    return values
