"""Shared front end of the defect detectors: background, noise-normalised residual, candidates.

Both detectors (the rule-based 'classical' one and the learned 'cnn' one) start here:

1. working resolution: the radiograph is area-averaged by an integer factor so that one working
   pixel is about `target_mm_per_px` (0.15 mm) in the object plane (a 2048x2048 radiograph at
   0.1 mm pitch and magnification 1.3 is processed at 1024x1024; a 1024x1024 one at 0.2 mm
   is not reduced). This is what keeps a 2048x2048 radiograph within the latency budget;
2. L = log I (Beer-Lambert: a void or an inclusion adds an offset to L whatever the wall
   thickness), Gaussian smoothing (sigma 1 working px) -> S;
3. background B: grey-level opening then closing of S (alternating filter) with a SMALL square
   (`background_mm`, 1.7 mm: 11 working px). A flat structuring element keeps every straight
   step edge of the part exactly (the level sets of a ramp are half-planes), and every designed
   feature wider than the square (walls, holes, ribs, bosses); it removes what is smaller: the
   defects. The earlier 6 mm square absorbed holes, ribs and the gaps next to walls, so the
   residual was full of part structure and defects next to walls were lost
   (docs/xray_inspection.md, diagnosis);
4. residual R = S - B normalised by the quantum noise: the noise of log I falls like
   I^-1/2, so R x exp((B - 9) / 2) has a uniform noise level, estimated robustly (MAD) from the
   high-pass L - S over the part (the open beam excluded). z = normalised residual: > 0 bright
   (voids), < 0 dark (inclusions);
5. candidates: local maxima of |z| (5x5 neighbourhood) above `peak_threshold`.

No ROS imports.
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from humanoid_inspection.xray.detector import (
    CancelCheck, check_cancel, mm_per_px, validate_radiograph)


@dataclass(frozen=True)
class FrontEndParams:
    """Settings of the front end (units in the names).

    Attributes:
        target_mm_per_px: working pixel size in the object plane; the image is reduced by the
            integer factor closest to target / (pitch / magnification) (at least 1).
        smooth_sigma_px: Gaussian smoothing of log I (working pixels).
        background_mm: side of the opening/closing square in the object plane.
        peak_threshold: a candidate's |z| must exceed this (noise units of the high-pass).
        nms_px: candidates are local maxima of |z| in this square.
        max_candidates: at most this many candidates (largest |z| first).
        context_factor: the context channel is S reduced by this factor.
        reconstruct_steps: 0, or the number of 3x3 geodesic steps by which the opening and
            the closing are rebuilt under/over S (opening/closing by reconstruction, limited):
            the rims of holes and the corners of walls that the square cut off come back, so
            they leave no residual slivers (costs 4 x steps cheap passes).
        blob_sigma_px: 0, or the scale (working pixels) of the blob candidates added to the
            maxima of |z| (blob_candidates): a pore on the flank of a stronger neighbour, or
            between two, has no |z| maximum of its own but a maximum of the Laplacian of
            Gaussian. Set by the checkpoint of the network trained with them.
    """

    target_mm_per_px: float = 0.15
    smooth_sigma_px: float = 1.0
    background_mm: float = 1.7
    peak_threshold: float = 2.5
    nms_px: int = 5
    max_candidates: int = 1500
    context_factor: int = 4
    reconstruct_steps: int = 0
    blob_sigma_px: float = 0.0


@dataclass
class FrontEnd:
    """Maps of one radiograph at working resolution.

    Attributes:
        L: log-intensity (float32, working pixels).
        S: smoothed L.
        B: background (opening/closing of S).
        z: normalised residual (S - B) x exp((B - 9) / 2) / noise.
        noise: the noise unit (MAD of the weighted high-pass).
        factor: integer reduction factor of the working image.
        scale_xy: (sx, sy) full-resolution pixels per working pixel.
        full_shape: (H, W) of the radiograph.
        mm_per_px: object-plane size of a working pixel (mm).
        context: S reduced by FrontEndParams.context_factor (float32).
        weight: exp((B - 9) / 2), the quantum-noise weighting of the residuals (float32).
    """

    L: np.ndarray
    S: np.ndarray
    B: np.ndarray
    z: np.ndarray
    noise: float
    factor: int
    scale_xy: Tuple[float, float]
    full_shape: Tuple[int, int]
    mm_per_px: float
    context: np.ndarray
    weight: np.ndarray

    def residual(self) -> np.ndarray:
        """S - B (log units)."""
        return self.S - self.B


def working_factor(mm_per_px_full: float, target_mm_per_px: float) -> int:
    """Integer reduction factor so that a working pixel is about target_mm_per_px."""
    return max(1, int(round(target_mm_per_px / mm_per_px_full)))


def to_working(image: np.ndarray, factor: int) -> np.ndarray:
    """Area-average a 2-D radiograph by `factor` (keeps at least 16 px a side); float32."""
    h, w = image.shape
    if factor > 1:
        size = (max(16, w // factor), max(16, h // factor))
        src = image if image.dtype in (np.uint8, np.uint16, np.float32) else \
            image.astype(np.float32)
        image = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
    return image.astype(np.float32, copy=False)


def log_and_smoothed(work: np.ndarray, sigma_px: float) -> Tuple[np.ndarray, np.ndarray]:
    """L = log of a working image (values below 1 count as 1) and L smoothed by a Gaussian
    of `sigma_px`: the front end's L and S, and what a reference image is compared in."""
    log_img = cv2.log(np.maximum(work, 1.0))
    return log_img, cv2.GaussianBlur(log_img, (0, 0), sigma_px)


def quantum_weight(background: np.ndarray) -> np.ndarray:
    """exp((B - 9) / 2): the residuals' quantum-noise weighting at the log level B (noise in
    log units falls as I^-1/2), float32."""
    return cv2.exp(0.5 * (background - 9.0))


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 == 1 else n + 1


CV_THREADS = 1


@contextmanager
def cv_threads(n: int = CV_THREADS):
    """Run OpenCV on `n` threads inside the block (restored afterwards).

    One by default: on the shared 2-core machine the 2-thread OpenCV passes waited for each
    other whenever another process held a core (the 2048² pipeline: 45-82 ms median with two
    threads, 40-41 ms with one, measured back to back).
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(max(1, int(n)))
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def compute_front_end(image: np.ndarray, mm_per_px_full: float,
                      params: FrontEndParams = FrontEndParams(),
                      should_cancel: CancelCheck = None) -> FrontEnd:
    """Working image, background and normalised residual (see _front_end), OpenCV on
    CV_THREADS threads."""
    with cv_threads():
        return _front_end(image, mm_per_px_full, params, should_cancel)


def radiograph_front_end(image, pixel_pitch_mm: float, magnification: float,
                         params: FrontEndParams = FrontEndParams(),
                         should_cancel: CancelCheck = None) -> Tuple[FrontEnd, float]:
    """The front end of a radiograph as a detector receives it: the image validated (not
    copied), its object-plane pixel size, then compute_front_end.

    Returns:
        (FrontEnd, object-plane size of one radiograph pixel in mm).

    Raises:
        ValueError: bad image or geometry. InspectionCancelled: cancelled.
    """
    image = validate_radiograph(image, copy=False)
    mmpp = mm_per_px(pixel_pitch_mm, magnification)
    return compute_front_end(image, mmpp, params, should_cancel), mmpp


def _front_end(image: np.ndarray, mm_per_px_full: float, params: FrontEndParams,
               should_cancel: CancelCheck) -> FrontEnd:
    """Working image, background and normalised residual of a validated 2-D radiograph.

    Args:
        image: 2-D uint8/uint16/float32 radiograph (finite), transmission polarity.
        mm_per_px_full: object-plane size of one radiograph pixel (mm).
        params: FrontEndParams.
        should_cancel: polled between the stages.

    Returns:
        FrontEnd.
    """
    full_shape = image.shape[:2]
    factor = working_factor(mm_per_px_full, params.target_mm_per_px)
    work = to_working(image, factor)
    h, w = work.shape
    scale = (full_shape[1] / w, full_shape[0] / h)
    mmpp = mm_per_px_full * 0.5 * (scale[0] + scale[1])
    log_img, smooth = log_and_smoothed(work, params.smooth_sigma_px)
    check_cancel(should_cancel)
    side = _odd(params.background_mm / mmpp)
    kernel = np.ones((side, side), np.uint8)
    opened = cv2.morphologyEx(smooth, cv2.MORPH_OPEN, kernel)
    step = np.ones((3, 3), np.uint8)
    for _ in range(params.reconstruct_steps):
        opened = cv2.min(cv2.dilate(opened, step), smooth)
    background = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel)
    for _ in range(params.reconstruct_steps):
        background = cv2.max(cv2.erode(background, step), opened)
    check_cancel(should_cancel)
    weight = quantum_weight(background)
    high = (log_img - smooth) * weight
    stride = sample_stride(background.shape)
    level = background[::stride, ::stride]
    sample = high[::stride, ::stride]
    part = level < open_beam_level(background) - 0.1       # leave the open beam out
    if np.count_nonzero(part) > 1000:
        sample = sample[part]
    noise = 1.4826 * float(np.median(np.abs(sample)))
    if not noise > 0:
        noise = float(np.std(sample)) or 1e-6
    z = (smooth - background) * weight * np.float32(1.0 / noise)
    cf = max(1, int(params.context_factor))
    context = cv2.resize(smooth, (max(1, w // cf), max(1, h // cf)),
                         interpolation=cv2.INTER_AREA)
    return FrontEnd(log_img, smooth, background, z, noise, factor, scale, tuple(full_shape),
                    mmpp, context, weight)


def sample_stride(shape) -> int:
    """Grid step that samples an image of this shape at about 250 000 points."""
    h, w = shape[:2]
    return max(1, int(math.sqrt(h * w / 250000.0)))


def open_beam_level(background: np.ndarray) -> float:
    """The open beam's level in a background map (log units): its 99th percentile, sampled
    on the sample_stride grid. Material lies below it."""
    stride = sample_stride(background.shape)
    return float(np.percentile(background[::stride, ::stride], 99))


def find_candidates(z: np.ndarray, threshold: float, nms_px: int = 5,
                    max_candidates: Optional[int] = None):
    """Local maxima of |z| above threshold.

    Returns:
        (xs, ys, values): int arrays of working-pixel columns and rows and the signed z there,
        by decreasing |z| (at most max_candidates).
    """
    mag = np.abs(z)
    peak = cv2.dilate(mag, np.ones((nms_px, nms_px), np.uint8))
    ys, xs = np.nonzero((mag >= peak) & (mag > threshold))
    values = z[ys, xs]
    order = np.argsort(-np.abs(values), kind='stable')
    if max_candidates is not None:
        order = order[:max_candidates]
    return xs[order], ys[order], values[order]


BLOB_MIN_RESPONSE = 1.0     # a blob candidate's scale-normalised LoG (noise units) ...
BLOB_MIN_SEPARATION_PX = 2  # ... and its distance (Chebyshev) to every |z| maximum must exceed


def blob_response(z: np.ndarray, sigma_px: float) -> np.ndarray:
    """Scale-normalised negative Laplacian of Gaussian of z (float32, noise units): positive
    at the centre of a bright blob of about sigma_px x sqrt(2) radius, negative at a dark one.
    Unlike z it peaks at each of two touching pores and at a pore on a stronger one's flank."""
    smooth = cv2.GaussianBlur(z.astype(np.float32, copy=False), (0, 0), float(sigma_px))
    return -cv2.Laplacian(smooth, cv2.CV_32F, ksize=3) * float(sigma_px) ** 2


def blob_candidates(z: np.ndarray, response: np.ndarray, threshold: float, xs, ys,
                    max_candidates: Optional[int] = None):
    """Local maxima (3x3) of sign x response above BLOB_MIN_RESPONSE where sign x z exceeds
    threshold too (bright and dark blobs), farther than BLOB_MIN_SEPARATION_PX from every
    candidate (xs, ys) already found.

    Returns:
        (xs, ys): int arrays of working-pixel columns and rows, by decreasing |z| (at most
        max_candidates).
    """
    kernel = np.ones((3, 3), np.uint8)
    found_x, found_y = [], []
    for sign in (1.0, -1.0):
        signed = sign * response
        peak = cv2.dilate(signed, kernel)
        by, bx = np.nonzero((signed >= peak) & (signed > BLOB_MIN_RESPONSE) &
                            (sign * z > threshold))
        found_x.append(bx)
        found_y.append(by)
    bx, by = np.concatenate(found_x), np.concatenate(found_y)
    if len(bx) and len(xs):
        xs, ys = np.asarray(xs), np.asarray(ys)
        gap = np.full(len(bx), np.iinfo(np.int64).max)
        for start in range(0, len(xs), 256):        # bounded memory on noisy radiographs
            cx, cy = xs[start:start + 256], ys[start:start + 256]
            d = np.maximum(np.abs(bx[:, None] - cx[None, :]), np.abs(by[:, None] - cy[None, :]))
            gap = np.minimum(gap, d.min(1))
        keep = gap > BLOB_MIN_SEPARATION_PX
        bx, by = bx[keep], by[keep]
    order = np.argsort(-np.abs(z[by, bx]), kind='stable')
    if max_candidates is not None:
        order = order[:max_candidates]
    return bx[order].astype(np.int64), by[order].astype(np.int64)


def detector_candidates(z: np.ndarray, params: FrontEndParams):
    """The candidates the learned detectors judge (the same at training and at inspection):
    the maxima of |z| (find_candidates) followed, when params.blob_sigma_px > 0, by the blob
    candidates (blob_candidates).

    Returns:
        (xs, ys, response): int arrays of working-pixel columns and rows, and the blob
        response map (None when the blob candidates are off).
    """
    xs, ys, _ = find_candidates(z, params.peak_threshold, params.nms_px, params.max_candidates)
    if not params.blob_sigma_px > 0:
        return xs, ys, None
    response = blob_response(z, params.blob_sigma_px)
    bx, by = blob_candidates(z, response, params.peak_threshold, xs, ys,
                             params.max_candidates)
    return (np.concatenate([xs, bx]).astype(np.int64),
            np.concatenate([ys, by]).astype(np.int64), response)


def flood_region(z: np.ndarray, x: int, y: int, sign: float, fraction: float = 0.4,
                 floor: float = 2.0, window: int = 48):
    """The connected region around (x, y) where sign * z > max(floor, fraction * peak).

    Returns:
        (x0, y0, mask): top-left corner (working pixels) and bool mask of its bounding box.
    """
    h, w = z.shape
    x0, y0 = max(0, x - window), max(0, y - window)
    x1, y1 = min(w, x + window + 1), min(h, y + window + 1)
    local = sign * z[y0:y1, x0:x1]
    thr = max(floor, fraction * float(local[y - y0, x - x0]))
    above = (local > thr).astype(np.uint8)
    above[y - y0, x - x0] = 1
    _, labels = cv2.connectedComponents(above, connectivity=8)
    region = labels == labels[y - y0, x - x0]
    ys, xs = np.nonzero(region)
    by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return x0 + int(bx0), y0 + int(by0), region[by0:by1, bx0:bx1]


PATCH_PX = 19               # side of the patches the learned detector sees (odd: centred)
PATCH_CHANNELS = 4
PATCH_VERSION = 2           # bumped whenever extract_patches changes (training caches)


def extract_patches(fe: FrontEnd, xs: np.ndarray, ys: np.ndarray,
                    context_factor: int = 4) -> np.ndarray:
    """Network input patches (N, 4, PATCH_PX, PATCH_PX) centred on the candidates.

    Channels: polarity x z / 5 (clipped to +-4; polarity = sign of z at the candidate, so a
    dark inclusion looks like a bright void here), (S - S at the centre) x 10 (clipped to +-4:
    the part's edges, holes and walls around the candidate), the same from the context image
    reduced by `context_factor` (a field 4x wider), and the polarity as a constant plane.
    """
    n = len(xs)
    half = PATCH_PX // 2
    offs = np.arange(-half, half + 1)
    out = np.empty((n, PATCH_CHANNELS, PATCH_PX, PATCH_PX), np.float32)
    if n == 0:
        return out
    zpad = np.pad(fe.z, half, mode='edge')
    spad = np.pad(fe.S, half, mode='edge')
    rows = (ys[:, None] + offs[None, :] + half)[:, :, None]
    cols = (xs[:, None] + offs[None, :] + half)[:, None, :]
    polarity = np.where(fe.z[ys, xs] < 0, -1.0, 1.0).astype(np.float32)[:, None, None]
    out[:, 0] = np.clip(zpad[rows, cols] * polarity * 0.2, -4.0, 4.0)
    out[:, 3] = polarity
    s_patch = spad[rows, cols]
    centre = fe.S[ys, xs][:, None, None]
    out[:, 1] = np.clip((s_patch - centre) * 10.0, -4.0, 4.0)
    cpad = np.pad(fe.context, half, mode='edge')
    ch, cw = fe.context.shape
    cy = np.clip(ys // context_factor, 0, ch - 1)
    cx = np.clip(xs // context_factor, 0, cw - 1)
    crow = (cy[:, None] + offs[None, :] + half)[:, :, None]
    ccol = (cx[:, None] + offs[None, :] + half)[:, None, :]
    out[:, 2] = np.clip((cpad[crow, ccol] - centre) * 10.0, -4.0, 4.0)
    return out
