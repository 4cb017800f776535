"""A part's reference radiograph from its model, registered to the acquired radiograph.

Simulation-aided ADR: where the inspected part's model is known (its CAD; in this project
the defect-free CastingPart of the part), the expected radiograph of the sound part is
rendered with the acquisition's settings and compared with the acquired one. The part's
structure (walls, holes, ribs, thickness steps) then cancels, instead of being estimated
from the image alone by the front end's opening/closing (candidates.py): faint defects on
structure, and defects wider than the front end's background square, stay in the residual.

All of it works at the front end's working resolution, on S (log-intensity, smoothed):

1. pose and scale: the part lies in the fixture at an unknown offset (x, y, rotation about
   the beam axis) from the pose it is expected at, and the casting shrank a few tenths of a
   percent more or less than its model. The reference is rendered at the current estimate,
   ECC (cv2.findTransformECC, Euclidean) registers it to S, from the second registration on
   followed by a similarity fit (shift, rotation, scale: refine_similarity) that gives the
   scale, and the image motion is turned back into
   a fixture pose and a part scale: a shift of the part by d mm moves its image by
   d M / pitch pixels (M: magnification at the part's mid-height), a rotation about the beam
   axis rotates the image about the principal point, a larger part gives a larger image. The
   cone beam magnifies the part's top more than its base, so a 2-D motion is not exact;
   rendering again at the new estimate and registering again removes what is left (`rounds`
   renders in all).
2. level: acquired and reference log-intensities differ by a smooth function of the
   attenuation when the spectrum or gain drifted (kV, filtration): the median residual in
   quantile bins of the reference level is interpolated and removed.
3. residual: z = (S - reference) / sigma, with sigma^2 = the quantum noise of S (the front
   end's model: noise / exp((level - 9) / 2)) + (|grad reference| x registration_sigma_px)^2.
   A hundredth of a pixel of pose error, or a casting that deviates from its model, leaves a
   residual at every steep edge of the part; the second term makes it count for less there.

No ROS imports.
"""

import time
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import cv2
import numpy as np

from humanoid_inspection.xray.candidates import (
    FrontEnd, FrontEndParams, log_and_smoothed, quantum_weight, to_working)
from humanoid_inspection.xray.detector import CancelCheck, check_cancel
from humanoid_inspection.xray.phantoms import CastingPart, scaled_part
from humanoid_inspection.xray.simulator import (
    XraySimConfig, pose_yaw, resting_pose, simulate_radiograph)


MIN_REGISTRATION_SIDE_PX = 64     # pyramid levels whose image would be smaller are skipped


@dataclass(frozen=True)
class ReferenceParams:
    """Settings of the registration and of the reference residual.

    Attributes:
        rounds: renders of the reference (the first at the initial pose); every render but
            the last is followed by a registration and a pose update. 1 = no registration.
        pyramid: reduction factors of the first registration, coarse to fine (large initial
            offsets); later ones run at `refine_reduction` only.
        refine_reduction: reduction factor of the later registrations.
        ecc_iterations, ecc_epsilon: ECC stopping rule of each level.
        min_correlation: a registration whose ECC correlation is lower is refused (wrong
            part, part missing, a radiograph of something else).
        estimate_scale: find the casting's scale relative to its model (a similarity fit
            after the ECC from the second registration on); False: the part is taken at its
            model's size.
        max_scale_error: a scale further from 1 than this is refused (wrong part).
        registration_sigma_px: pose and shape error, in working pixels, that the residual
            tolerates at the part's edges (the gradient term of sigma).
        level_bins: quantile bins of the level correction.
    """

    # 5 renders: on a radiograph of the cell (housing-007002, 2.5 deg, 2.4 mm off) the 4th
    # still moved the scale by 16 ppm, and what it left along a wall was reported as three
    # cracks (a good part REJECTed); the 5th removes it. On validation (90 strayed / 90
    # nominal / 60 at +-10 mm and deg) AP50 and recall are unchanged, false alarms at score
    # 0.5 25 -> 23 / 11 -> 12 / 9 -> 8, one REVIEW more right; 3 instead of 4 doubled them
    # (docs/xray_inspection.md, "Ninth round", "Tenth round")
    rounds: int = 5
    pyramid: Tuple[int, ...] = (8, 2, 1)
    refine_reduction: int = 2
    ecc_iterations: int = 60
    ecc_epsilon: float = 1e-6
    min_correlation: float = 0.9
    estimate_scale: bool = True
    max_scale_error: float = 0.03
    registration_sigma_px: float = 0.05
    level_bins: int = 32

    def validate(self) -> None:
        """Raises ValueError for settings that cannot work."""
        if not 1 <= int(self.rounds) <= 6:
            raise ValueError(f'rounds must lie in 1..6, got {self.rounds}')
        if not self.pyramid or any(int(f) < 1 for f in self.pyramid) or \
                int(self.refine_reduction) < 1:
            raise ValueError('pyramid and refine_reduction need reduction factors >= 1')
        if not 0.0 < self.min_correlation < 1.0:
            raise ValueError('min_correlation must lie in (0, 1)')
        if not 0.0 < self.max_scale_error < 0.1:
            raise ValueError('max_scale_error must lie in (0, 0.1)')
        if not self.registration_sigma_px >= 0.0:
            raise ValueError('registration_sigma_px must be >= 0')
        if int(self.level_bins) < 2:
            raise ValueError('level_bins must be at least 2')


@dataclass
class PoseEstimate:
    """The part's pose found by registration, and the reference rendered at it.

    Attributes:
        pose: 4x4 part-to-fixture transform (the simulator's pose convention).
        scale: the casting's size relative to its model (1: as modelled).
        correlation: ECC correlation of the last registration (1 = identical images);
            NaN when rounds = 1 (no registration).
        renders: how many references were rendered.
        log_reference: the last reference, as S (working resolution, float32).
        seconds: time spent (renders and registrations).
    """

    pose: np.ndarray
    scale: float
    correlation: float
    renders: int
    log_reference: np.ndarray
    seconds: float


class PartReference:
    """Renders the expected radiograph of a part's sound model with given settings.

    Args:
        part: the part's model (a CastingPart; its defects, if any, are left out).
        config: the acquisition's XraySimConfig (detector size, geometry, kV, filters...).
        front_end: the FrontEndParams of the detector it is compared in (the smoothing);
            None = the defaults.
    """

    def __init__(self, part, config, front_end: Optional[FrontEndParams] = None):
        if not isinstance(part, CastingPart):
            raise ValueError(f'part must be a CastingPart, got {type(part).__name__}')
        if not isinstance(config, XraySimConfig):
            raise ValueError(f'config must be an XraySimConfig, got {type(config).__name__}')
        config.validate()
        self.model = replace(part, defects=[])
        self.config = config
        self.front_end = front_end if front_end is not None else FrontEndParams()

    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, cols) of the radiographs it can be compared with."""
        return self.config.shape

    def render(self, pose: np.ndarray, factor: int, scale: float = 1.0) -> np.ndarray:
        """S of the sound part's expected radiograph at `pose`, the part `scale` times its
        model's size, reduced by `factor`."""
        model = self.model if scale == 1.0 else scaled_part(self.model, scale)
        image = simulate_radiograph(model, self.config, pose=pose, noise=False).image
        return log_and_smoothed(to_working(image, factor), self.front_end.smooth_sigma_px)[1]

    def mid_height_magnification(self, pose: np.ndarray, scale: float = 1.0) -> float:
        """Magnification at the part's mid-height in the fixture."""
        return self.config.magnification(float(pose[2, 3]) +
                                          scale * self.model.height_mm / 2.0)


def _gradient(image: np.ndarray):
    """(d/dx, d/dy) of an image per pixel (Sobel / 8), float32."""
    return (cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3) * np.float32(0.125),
            cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3) * np.float32(0.125))


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    h, w = image.shape
    return cv2.resize(image, (max(8, w // factor), max(8, h // factor)),
                      interpolation=cv2.INTER_AREA)


def refine_similarity(acquired: np.ndarray, reference: np.ndarray, warp: np.ndarray,
                      iterations: int = 6, stride: int = 2) -> np.ndarray:
    """Gauss-Newton steps from `warp` (2x3) to the similarity motion (shift, rotation and
    scale about the image centre) that best maps `reference` onto `acquired`, with a linear
    grey-level map (gain and offset: a spectrum or gain drift) fitted alongside. Four
    geometric degrees of freedom, not the affine six: on a part with few straight edges
    (a wheel) an affine fit slides into shear.

    Returns:
        The refined 2x3 motion (float64), reference(W [x, y, 1]) ~ acquired(x, y).
    """
    h, w = acquired.shape
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    ys, xs = np.mgrid[0:h:stride, 0:w:stride].astype(np.float32)
    u, v = xs - centre[0], ys - centre[1]
    target = acquired[::stride, ::stride].ravel().astype(np.float64)
    motion = np.vstack([np.asarray(warp, float), [0.0, 0.0, 1.0]])
    for _ in range(int(iterations)):
        moved = cv2.warpAffine(reference, motion[:2].astype(np.float32), (w, h),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        gx, gy = (g[::stride, ::stride] for g in _gradient(moved))
        sample = moved[::stride, ::stride]
        # d moved / d(tx, ty, angle, log-scale) of u -> u + delta(u), and gain/offset
        jacobian = np.stack([gx, gy, u * gy - v * gx, u * gx + v * gy, sample,
                             np.ones_like(sample)], axis=-1).reshape(-1, 6).astype(np.float64)
        step = np.linalg.lstsq(jacobian, target - sample.ravel(), rcond=None)[0]
        tx, ty, angle, log_scale = step[:4]
        k = np.exp(log_scale)
        c, s_ = k * np.cos(angle), k * np.sin(angle)
        rotation = np.array([[c, -s_], [s_, c]])
        delta = np.eye(3)
        delta[:2, :2] = rotation
        delta[:2, 2] = centre + np.array([tx, ty]) - rotation @ centre
        motion = motion @ delta
        if abs(tx) + abs(ty) < 1e-4 and abs(angle) + abs(log_scale) < 1e-7:
            break
    return motion[:2]


def register(acquired: np.ndarray, reference: np.ndarray, levels, params: ReferenceParams,
             check_correlation: bool = True, similarity: bool = False):
    """The image motion W (2x3) with reference(W [x, y, 1]) ~ acquired(x, y): Euclidean
    (ECC), then (similarity) refined to a similarity at the finest level
    (refine_similarity).

    Returns:
        (W as float64, ECC correlation of the finest level).

    Raises:
        ValueError: ECC did not converge, or (check_correlation) the correlation is below
            params.min_correlation.
    """
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(params.ecc_iterations),
                float(params.ecc_epsilon))
    warp = np.eye(2, 3, dtype=np.float32)
    correlation = float('nan')
    side = min(acquired.shape)
    levels = [int(f) for f in levels if side // int(f) >= MIN_REGISTRATION_SIDE_PX] or \
        [min(int(f) for f in levels)]           # too coarse a level cannot lock on
    for factor in levels:
        scaled = warp.copy()
        scaled[:, 2] /= factor
        small_acquired, small_reference = _reduce(acquired, factor), _reduce(reference, factor)
        try:
            correlation, scaled = cv2.findTransformECC(
                small_acquired, small_reference, scaled, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
            if similarity and factor == levels[-1]:
                scaled = refine_similarity(small_acquired, small_reference,
                                           scaled).astype(np.float32)
        except cv2.error as exc:
            raise ValueError('the reference could not be registered to the radiograph (ECC '
                             f'did not converge at reduction {factor}): is it the same '
                             f'part? ({str(exc).strip().splitlines()[-1]})') from None
        warp = scaled.copy()
        warp[:, 2] *= factor
    if check_correlation and not correlation >= params.min_correlation:
        raise ValueError(f'the reference matches the radiograph poorly (ECC correlation '
                         f'{correlation:.3f} < {params.min_correlation}): wrong part or a part '
                         'outside the field?')
    return warp.astype(np.float64), float(correlation)


def pose_from_motion(pose: np.ndarray, warp: np.ndarray, centre_px, mm_per_px: float,
                     scale: float = 1.0):
    """The fixture pose and part scale whose image is the reference's (rendered at `pose`
    and `scale`) moved by `warp`.

    With u an acquired pixel, v = A u + b the matching reference pixel, c the principal point
    and u - c = (R s X + t) / mm_per_px for a model point X: A = k Rw with Rw = R0 R^T and
    k = s0 / s, and t = Rw^T (t0 - mm_per_px (A c + b - c)) / k. A Euclidean warp has k = 1;
    of an affine one the similarity part is kept (its shear is noise).

    Args:
        pose: 4x4 pose the reference was rendered at.
        warp: 2x3 motion from register().
        centre_px: (x, y) principal point in the registered images' pixels.
        mm_per_px: object-plane size of one of those pixels at the part's mid-height.
        scale: the part scale the reference was rendered at.

    Returns:
        (4x4 pose, scale).
    """
    a, b = np.asarray(warp, float)[:, :2], np.asarray(warp, float)[:, 2]
    centre = np.asarray(centre_px, float)
    # nearest similarity [[p, -q], [q, p]] to A: k = |(p, q)|, Rw = rotation by atan2(q, p)
    p, q = 0.5 * (a[0, 0] + a[1, 1]), 0.5 * (a[1, 0] - a[0, 1])
    k = float(np.hypot(p, q))
    rw = np.array([[p, -q], [q, p]]) / k
    rotation = rw.T @ pose[:2, :2]
    translation = rw.T @ (pose[:2, 3] - mm_per_px * (k * rw @ centre + b - centre)) / k
    return (resting_pose(translation[0], translation[1], pose_yaw(rotation), pose[2, 3]),
            float(scale) / k)


def check_same_size(fe: FrontEnd, reference: PartReference) -> None:
    """Raises ValueError when the radiograph of `fe` is not the size `reference` renders."""
    if tuple(fe.full_shape) != tuple(reference.shape):
        raise ValueError(f'the radiograph is {fe.full_shape[0]}x{fe.full_shape[1]} px, the '
                         f'reference {reference.shape[0]}x{reference.shape[1]}')


def estimate_pose(fe: FrontEnd, reference: PartReference, initial_pose: Optional[np.ndarray]
                  = None, params: ReferenceParams = ReferenceParams(),
                  should_cancel: CancelCheck = None) -> PoseEstimate:
    """Find the part's pose in the radiograph of `fe` by rendering and registering.

    Raises:
        ValueError: the radiograph's size is not the reference's, or the registration failed.
        InspectionCancelled: cancelled (polled between renders).
    """
    params.validate()
    check_same_size(fe, reference)
    start = time.perf_counter()
    pose = np.eye(4) if initial_pose is None else np.array(initial_pose, float)
    sx, sy = fe.scale_xy
    rows, cols = reference.shape
    centre = (cols / (2.0 * sx) - 0.5, rows / (2.0 * sy) - 0.5)
    pitch_px = reference.config.pixel_pitch_mm * 0.5 * (sx + sy)
    correlation, scale = float('nan'), 1.0
    for k in range(int(params.rounds)):
        check_cancel(should_cancel)
        log_reference = reference.render(pose, fe.factor, scale)
        if k == params.rounds - 1:
            break
        levels = params.pyramid if k == 0 else (int(params.refine_reduction),)
        # the scale once the pose is near (the first round is Euclidean only); only the last
        # registration, from a render near the pose, must match closely
        warp, correlation = register(fe.S, log_reference, levels, params,
                                     check_correlation=k == params.rounds - 2,
                                     similarity=params.estimate_scale and k > 0)
        pose, found_scale = pose_from_motion(
            pose, warp, centre, pitch_px / reference.mid_height_magnification(pose, scale),
            scale)
        if params.estimate_scale and k > 0:    # a Euclidean motion leaves it where it was
            scale = found_scale
        if abs(scale - 1.0) > params.max_scale_error:
            raise ValueError(f'the radiograph shows the part {scale:.4f} times its model\'s '
                             f'size (at most 1 +- {params.max_scale_error} is taken): wrong '
                             'part or wrong geometry?')
    return PoseEstimate(pose, scale, correlation, int(params.rounds), log_reference,
                        time.perf_counter() - start)


def level_correction(level: np.ndarray, residual: np.ndarray, bins: int) -> np.ndarray:
    """The smooth part of `residual` as a function of `level`: medians in quantile bins of
    the level, interpolated (float32, the shape of `level`)."""
    step = max(1, int(np.sqrt(level.size / 250000.0)))
    sample_level = level[::step, ::step].ravel()
    sample_residual = residual[::step, ::step].ravel()
    edges = np.quantile(sample_level, np.linspace(0.0, 1.0, int(bins) + 1))
    index = np.clip(np.searchsorted(edges, sample_level, side='right') - 1, 0, int(bins) - 1)
    centres, medians = [], []
    for b in range(int(bins)):
        sel = index == b
        if np.count_nonzero(sel) >= 20:
            centres.append(float(np.median(sample_level[sel])))
            medians.append(float(np.median(sample_residual[sel])))
    if not centres:
        return np.zeros_like(level, dtype=np.float32)
    order = np.argsort(centres)
    return np.interp(level, np.asarray(centres)[order],
                     np.asarray(medians)[order]).astype(np.float32)


def front_end_with_reference(fe: FrontEnd, log_reference: np.ndarray,
                             params: ReferenceParams = ReferenceParams()) -> FrontEnd:
    """The front end with the registered reference as its background: B = the reference
    after the level correction, z = (S - B) / sigma (module docstring, step 3), weight the
    quantum-noise weighting at B. S, L and the context stay those of the radiograph."""
    if log_reference.shape != fe.S.shape:
        raise ValueError(f'reference {log_reference.shape} and front end {fe.S.shape} differ '
                         'in size')
    residual = fe.S - log_reference
    background = (log_reference + level_correction(log_reference, residual,
                                                    params.level_bins)).astype(np.float32)
    weight = quantum_weight(background)
    gx, gy = _gradient(background)
    quantum = np.float32(fe.noise) / weight
    edge = np.float32(params.registration_sigma_px) ** 2 * (gx * gx + gy * gy)
    z = (fe.S - background) / np.sqrt(quantum * quantum + edge)
    return replace(fe, B=background, z=z.astype(np.float32), weight=weight)
