"""Classical ADR: background estimation + difference image + adaptive threshold + blob rules.

What the field has used for decades on casting radiographs (measured figures and its known
weakness on parts with small designed features: docs/xray_inspection.md):

1. log-intensity L = log(I) (Beer-Lambert: a void or an inclusion adds a roughly constant
   offset to L whatever the wall thickness), lightly smoothed (Gaussian, sigma ~1 px) -> S;
2. background: grey-level opening then closing (alternating filter) of S with a square larger
   than the largest defect expected, on a down-sampled copy when that square would be large.
   Opening/closing keep the part's own step edges and remove anything smaller than the square;
3. difference images S - background (voids) and background - S (inclusions), divided by a noise
   map (RMS of L - S over a window: Poisson noise varies with the thickness, and the map also
   rises on part edges, which suppresses edge residues), then robustly re-scaled to unit noise;
4. hysteresis threshold (seed at k_seed sigma, grow to k_grow sigma), connected components;
5. per blob: area, box, equivalent size, elongation and minor axis (second moments), solidity
   (convex hull), contrast (I_bg - I)/I_bg, peak SNR, and the background gradient under it
   (part-edge suppression: a blob lying along a strong background edge needs a higher SNR);
6. rules -> class: dark = inclusion; bright and thin/elongated = crack; bright and irregular
   (low solidity) or large = shrinkage; bright and round = gas porosity. Nearby round pores are
   merged into one gas-porosity cluster when `cluster_gap_mm` > 0.

Confidence grows with the peak SNR. No ROS imports.
"""

import math
from dataclasses import dataclass, replace
from typing import List, Optional

import cv2
import numpy as np

from humanoid_inspection.xray.detector import (
    CancelCheck, DetectedDefect, check_cancel, mm_per_px, sort_by_confidence,
    validate_radiograph)


@dataclass(frozen=True)
class ClassicalParams:
    """Tuning of the classical detector (units in the names).

    Attributes:
        smooth_sigma_px: Gaussian pre-smoothing of log-intensity.
        max_defect_mm: side of the opening/closing square in the object plane; indications
            larger than this are partly absorbed into the background.
        max_work_se_px: largest square actually used; beyond it the background is computed on
            a down-sampled copy.
        noise_window_px: window of the local noise RMS.
        k_seed: a blob must reach this SNR (noise sigmas) somewhere.
        k_grow: blob pixels are those above this SNR connected to a seed.
        min_area_px: smaller blobs are dropped.
        edge_snr_gain: extra SNR required per unit of (background gradient x blob width /
            blob residual); 0 disables the part-edge suppression.
        crack_elongation: major/minor axis ratio above which a thin bright blob is a crack.
        crack_max_width_mm: and its minor axis is below this.
        shrinkage_solidity: bright blobs less solid than this are shrinkage.
        shrinkage_min_mm: bright blobs larger than this are shrinkage.
        cluster_gap_mm: round pores closer than this merge into one porosity cluster (0 = off).
        max_blobs: at most this many candidates are analysed (strongest first).
        detect_dark: also look for dark (inclusion) indications.
        border_elongation: elongated blobs touching the image border are dropped.
        sharp_base, sharp_gain: a blob whose steepest boundary slope x radius / height exceeds
            sharp_base + sharp_gain * sqrt(radius_px) is a designed feature (hole, wall), not a
            defect.
    """

    smooth_sigma_px: float = 1.0
    max_defect_mm: float = 6.0
    max_work_se_px: int = 31
    noise_window_px: int = 31
    k_seed: float = 6.0
    k_grow: float = 3.0
    min_area_px: int = 5
    edge_snr_gain: float = 3.0
    crack_elongation: float = 4.0
    crack_max_width_mm: float = 0.8
    shrinkage_solidity: float = 0.72
    shrinkage_min_mm: float = 4.0
    cluster_gap_mm: float = 0.0
    max_blobs: int = 400
    sharp_base: float = 1.5
    border_elongation: float = 3.0
    sharp_gain: float = 1.0
    detect_dark: bool = True


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 == 1 else n + 1


def _resize(img: np.ndarray, shape) -> np.ndarray:
    h, w = shape
    if img.shape == (h, w):
        return img
    interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def _robust_scale(z: np.ndarray, stride: int) -> tuple:
    """Median and MAD-sigma of z sampled on a grid."""
    sample = z[::stride, ::stride].ravel()
    med = float(np.median(sample))
    mad = float(np.median(np.abs(sample - med))) * 1.4826
    return med, max(mad, 1e-6)


class ClassicalDetector:
    """Background subtraction + hysteresis threshold + blob-feature rules."""

    name = 'classical'

    def __init__(self, params: Optional[ClassicalParams] = None, **overrides):
        """Args: params (default ClassicalParams()), overrides: fields of ClassicalParams."""
        base = params or ClassicalParams()
        self.params = replace(base, **overrides) if overrides else base

    # ------------------------------------------------------------------ maps
    def snr_maps(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
                 should_cancel: CancelCheck = None) -> dict:
        """Intermediate maps: 'S' (smoothed log), 'bg_bright', 'bg_dark', 'z_bright', 'z_dark',
        'grad' (background gradient, log units per px). Raises ValueError on bad input."""
        p = self.params
        img = validate_radiograph(image)
        mmpp = mm_per_px(pixel_pitch_mm, magnification)
        h, w = img.shape
        log_img = cv2.log(np.maximum(img, 1.0))
        smooth = cv2.GaussianBlur(log_img, (0, 0), p.smooth_sigma_px)
        check_cancel(should_cancel)

        se_px = max(3.0, p.max_defect_mm / mmpp)
        factor = max(1, int(math.ceil(se_px / p.max_work_se_px)))
        small_shape = (max(8, h // factor), max(8, w // factor))
        small = _resize(smooth, small_shape)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (_odd(se_px / factor),) * 2)
        # alternating filter: the opening removes bright indications, the closing then the
        # dark ones; one background for both polarities (a bright void then cannot make its
        # dark neighbourhood look like a narrow dark indication, and the other way round)
        background = cv2.morphologyEx(cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel),
                                      cv2.MORPH_CLOSE, kernel)
        bg_bright = background
        bg_dark = background if p.detect_dark else None
        check_cancel(should_cancel)

        # local noise RMS of the high-pass part, on the coarse grid
        hp2 = _resize((log_img - smooth) ** 2, small_shape)
        win = _odd(p.noise_window_px / factor)
        noise = np.sqrt(cv2.blur(hp2, (win, win)))
        floor = 0.25 * float(np.median(noise[noise > 0])) if np.any(noise > 0) else 1e-6
        noise = np.maximum(noise, max(floor, 1e-6))
        noise_full = _resize(noise, (h, w))
        bg_bright_full = _resize(bg_bright, (h, w))
        z_bright = (smooth - bg_bright_full) / noise_full
        out = {'S': smooth, 'L': log_img, 'bg_bright': bg_bright_full, 'mm_per_px': mmpp}
        stride = max(1, int(math.sqrt(h * w / 250000.0)))
        med, sig = _robust_scale(z_bright, stride)
        out['z_bright'] = (z_bright - med) / sig
        if bg_dark is not None:
            bg_dark_full = _resize(bg_dark, (h, w))
            z_dark = (bg_dark_full - smooth) / noise_full
            med, sig = _robust_scale(z_dark, stride)
            out['z_dark'] = (z_dark - med) / sig
            out['bg_dark'] = bg_dark_full
        # background gradient (edges of the part), on the coarse grid
        gx = cv2.Sobel(bg_bright, cv2.CV_32F, 1, 0, ksize=3) / (8.0 * factor)
        gy = cv2.Sobel(bg_bright, cv2.CV_32F, 0, 1, ksize=3) / (8.0 * factor)
        out['grad'] = _resize(np.sqrt(gx * gx + gy * gy), (h, w))
        check_cancel(should_cancel)
        return out

    # ------------------------------------------------------------------ detect
    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None) -> List[DetectedDefect]:
        """Find defects in a radiograph.

        Args:
            image: 2-D uint8/uint16/float radiograph, transmission polarity.
            pixel_pitch_mm: detector pixel pitch (mm).
            magnification: source-detector / source-object distance.
            should_cancel: optional callable polled between stages.

        Returns:
            DetectedDefect list, highest confidence first.

        Raises:
            ValueError: bad image or geometry. InspectionCancelled: cancelled.
        """
        maps = self.snr_maps(image, pixel_pitch_mm, magnification, should_cancel)
        defects = self._blobs(maps, maps['z_bright'], maps['bg_bright'], bright=True)
        if 'z_dark' in maps:
            check_cancel(should_cancel)
            defects += self._blobs(maps, maps['z_dark'], maps['bg_dark'], bright=False)
        if self.params.cluster_gap_mm > 0:
            defects = merge_porosity_clusters(defects, self.params.cluster_gap_mm,
                                              maps['mm_per_px'])
        return sort_by_confidence(defects)

    def _blobs(self, maps: dict, z: np.ndarray, bg: np.ndarray, bright: bool
               ) -> List[DetectedDefect]:
        p = self.params
        grow = (z > p.k_grow).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grow, connectivity=8)
        if n <= 1:
            return []
        seed_labels = labels[z > p.k_seed]
        keep = np.unique(seed_labels)
        keep = keep[keep > 0]
        keep = keep[stats[keep, cv2.CC_STAT_AREA] >= p.min_area_px]
        if keep.size > p.max_blobs:
            keep = keep[np.argsort(-stats[keep, cv2.CC_STAT_AREA])[:p.max_blobs]]
        mmpp = maps['mm_per_px']
        out = []
        for lab in keep:
            x, y, bw, bh, area = (int(v) for v in stats[lab])
            sl = (slice(y, y + bh), slice(x, x + bw))
            mask = labels[sl] == lab
            d = self._describe(maps, sl, z[sl], bg[sl], mask, bright, mmpp)
            touches = x == 0 or y == 0 or x + bw == z.shape[1] or y + bh == z.shape[0]
            if d is not None and touches and d.features['elongation'] >= p.border_elongation:
                continue            # a strip along the image border: part outline, collimator
            if d is None:
                continue
            d.box_xyxy = (x, y, x + bw, y + bh)
            out.append(d)
        return out

    def _describe(self, maps, box, z, bg, mask, bright, mmpp) -> Optional[DetectedDefect]:
        p = self.params
        zs = z[mask]
        peak = float(zs.max())
        area = int(mask.sum())
        ys, xs = np.nonzero(mask)
        # second moments -> axes
        cx, cy = xs.mean(), ys.mean()
        cxx = ((xs - cx) ** 2).mean() + 1.0 / 12
        cyy = ((ys - cy) ** 2).mean() + 1.0 / 12
        cxy = ((xs - cx) * (ys - cy)).mean()
        tr, det = cxx + cyy, cxx * cyy - cxy * cxy
        disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
        lam1, lam2 = tr / 2 + disc, max(tr / 2 - disc, 1e-6)
        major_px, minor_px = 4 * math.sqrt(lam1), 4 * math.sqrt(lam2)
        elongation = math.sqrt(lam1 / lam2)
        # solidity and Feret diameter from the convex hull
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        pts = np.vstack([c.reshape(-1, 2) for c in contours]).astype(np.float32)
        hull = cv2.convexHull(pts)
        hull_area = max(float(cv2.contourArea(hull)), 1.0)
        solidity = min(1.0, area / (hull_area + 0.5 * len(hull) + 1.0))
        hp = hull.reshape(-1, 2)
        if len(hp) > 1:
            diff = hp[:, None, :] - hp[None, :, :]
            feret_px = float(np.sqrt((diff ** 2).sum(-1)).max()) + 1.0
        else:
            feret_px = 1.0
        feret_px = max(feret_px, major_px * 0.9)
        # contrast in the message convention (I_bg - I) / I_bg
        s_vals = maps['S'][box][mask]
        bg_vals = bg[mask]
        delta = float(np.mean(s_vals - bg_vals)) if bright else float(np.mean(bg_vals - s_vals))
        contrast = -(math.exp(delta) - 1.0) if bright else 1.0 - math.exp(-delta)
        # designed features (holes, thin walls, the part outline) are bounded by sharp steps
        # as high as the whole indication; a void's projected profile is a rounded dome whose
        # steepest slope x radius / height grows only like sqrt(radius / blur).
        crop = maps['S'][box]
        gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        slope = float(np.sqrt(gx * gx + gy * gy)[ring].max())
        radius_px = 0.5 * max(minor_px, 1.0)
        peak_delta = float(np.max(np.abs(s_vals - bg_vals)))
        sharpness = slope * radius_px / max(peak_delta, 1e-6)
        if sharpness > p.sharp_base + p.sharp_gain * math.sqrt(radius_px):
            return None
        # part-edge suppression: residual explained by the background slope across the blob
        grad = float(np.mean(maps['grad'][box][mask]))
        edge_ratio = grad * max(minor_px, 1.0) / max(abs(delta), 1e-6)
        needed = p.k_seed + p.edge_snr_gain * max(0.0, edge_ratio - 1.0)
        if peak < needed:
            return None
        size_mm = feret_px * mmpp
        minor_mm = minor_px * mmpp
        if not bright:
            kind = 'inclusion'
        elif elongation >= p.crack_elongation and minor_mm <= p.crack_max_width_mm:
            kind = 'crack'
        elif solidity < p.shrinkage_solidity or size_mm > p.shrinkage_min_mm:
            kind = 'shrinkage'
        else:
            kind = 'gas_porosity'
        confidence = 1.0 / (1.0 + math.exp(-(peak - needed) / 3.0 - 0.5))
        return DetectedDefect(
            kind=kind, confidence=float(min(0.999, confidence)), box_xyxy=(0, 0, 0, 0),
            mask=mask, size_mm=size_mm, area_mm2=area * mmpp * mmpp, contrast=contrast,
            features={'snr_peak': peak, 'elongation': elongation, 'solidity': solidity,
                      'minor_mm': minor_mm, 'edge_ratio': edge_ratio, 'area_px': area,
                      'sharpness': sharpness,
                      'bright': bool(bright)})


def merge_porosity_clusters(defects: List[DetectedDefect], gap_mm: float, mmpp: float
                            ) -> List[DetectedDefect]:
    """Merge gas-porosity blobs whose boxes are closer than gap_mm into one cluster defect."""
    pores = [d for d in defects if d.kind == 'gas_porosity']
    others = [d for d in defects if d.kind != 'gas_porosity']
    if len(pores) < 2:
        return defects
    gap = gap_mm / mmpp
    parent = list(range(len(pores)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(pores)):
        a = pores[i].box_xyxy
        for j in range(i + 1, len(pores)):
            b = pores[j].box_xyxy
            dx = max(b[0] - a[2], a[0] - b[2], 0)
            dy = max(b[1] - a[3], a[1] - b[3], 0)
            if math.hypot(dx, dy) <= gap:
                parent[find(i)] = find(j)
    groups = {}
    for i in range(len(pores)):
        groups.setdefault(find(i), []).append(pores[i])
    merged = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        x0 = min(m.box_xyxy[0] for m in members)
        y0 = min(m.box_xyxy[1] for m in members)
        x1 = max(m.box_xyxy[2] for m in members)
        y1 = max(m.box_xyxy[3] for m in members)
        mask = np.zeros((y1 - y0, x1 - x0), bool)
        for m in members:
            mx0, my0, mx1, my1 = m.box_xyxy
            mask[my0 - y0:my1 - y0, mx0 - x0:mx1 - x0] |= m.mask
        area = sum(m.area_mm2 for m in members)
        merged.append(DetectedDefect(
            kind='gas_porosity', confidence=max(m.confidence for m in members),
            box_xyxy=(x0, y0, x1, y1), mask=mask,
            size_mm=math.hypot(x1 - x0, y1 - y0) * mmpp, area_mm2=area,
            contrast=float(np.average([m.contrast for m in members],
                                      weights=[m.area_mm2 for m in members])),
            features={'pores': len(members),
                      'snr_peak': max(m.features.get('snr_peak', 0) for m in members)}))
    return merged + others
