"""Classical ADR: background estimation + noise-normalised residual + hysteresis + blob rules.

What the field has used for decades on casting radiographs, on the shared front end
(candidates.py: working resolution ~0.15 mm, log-intensity, small opening/closing background
that keeps the part's walls, holes and ribs, residual normalised by the quantum noise):

1. seeds: local maxima of |z| above `k_seed` noise units (strongest first);
2. region of a seed: the connected pixels around it above max(`k_grow`, `grow_fraction` x its
   peak) with its polarity (hysteresis; neighbouring pores of a cluster stay apart); a seed
   inside an earlier region is skipped;
3. blob features: area, second-moment axes and elongation, solidity (convex hull), Feret
   diameter, log-amplitude, peak SNR and the step of the background next to the blob;
4. rules: a residual stronger than `max_void_log` (a through hole, a boss edge) or a blob
   sitting on a background step larger than `edge_step_ratio` x its own amplitude (a sliver
   left at a curved rim or a corner) is part structure, not a defect, and so are an elongated
   strip along the image border, an elongated dark blob (a rib narrower than the square) and
   anything larger than `max_area_mm2`; dark -> inclusion;
   bright, elongated and thin -> crack; bright and irregular (low solidity) or large ->
   shrinkage; otherwise gas porosity.

Confidence grows smoothly with the peak SNR (no saturation, so the ranking stays meaningful).
No ROS imports.
"""

import math
from dataclasses import dataclass, replace
from typing import List, Optional

import cv2
import numpy as np

from humanoid_inspection.xray.candidates import (
    FrontEnd, FrontEndParams, cv_threads, find_candidates, flood_region, radiograph_front_end)
from humanoid_inspection.xray.detector import (
    CancelCheck, DetectedDefect, check_cancel, mm_per_px, sort_by_confidence)


@dataclass(frozen=True)
class ClassicalParams:
    """Tuning of the classical detector (units in the names).

    Attributes:
        front_end: FrontEndParams (working resolution, background square, ...).
        k_seed: a blob must reach this SNR (noise units) at its peak.
        k_grow: blob pixels are above this SNR ...
        grow_fraction: ... and above this share of the blob's peak SNR.
        min_area_px: smaller blobs (working pixels) are dropped.
        max_void_log: bright residuals larger than this (log units) are designed features
            (holes, boss and wall edges): a void of a few mm in a wall removes a few per cent
            of the path.
        max_inclusion_log: the same for dark residuals (an iron-rich or steel inclusion of a
            few mm can reach ~0.8).
        edge_step_ratio: blobs on a background step larger than this x their amplitude are
            slivers of part edges.
        crack_elongation: major/minor axis ratio above which a thin bright blob is a crack.
        crack_max_width_mm: and its minor axis is below this.
        shrinkage_solidity: bright blobs less solid than this are shrinkage.
        shrinkage_min_mm: bright blobs larger than this are shrinkage.
        border_elongation: blobs touching the image border at least this elongated are the
            part outline or the collimator edge.
        inclusion_max_elongation: dark blobs more elongated than this are ribs or walls
            narrower than the background square (inclusions are lumpy).
        max_area_mm2: larger blobs are part structure (the largest simulated defect, an 8 mm
            shrinkage sponge, covers less).
        max_blobs: at most this many seeds are examined (strongest first).
        snr_scale: confidence = 1 - exp(-(peak - k_seed) / snr_scale) (0.05 at the seed level).
        detect_dark: also look for dark (inclusion) indications.
    """

    front_end: FrontEndParams = FrontEndParams(reconstruct_steps=4)
    k_seed: float = 6.0
    k_grow: float = 2.5
    grow_fraction: float = 0.35
    min_area_px: int = 3
    max_void_log: float = 0.6
    max_inclusion_log: float = 1.5
    edge_step_ratio: float = 0.35
    crack_elongation: float = 4.0
    crack_max_width_mm: float = 0.8
    shrinkage_solidity: float = 0.72
    shrinkage_min_mm: float = 4.0
    border_elongation: float = 3.0
    inclusion_max_elongation: float = 3.0
    max_area_mm2: float = 25.0
    max_blobs: int = 400
    snr_scale: float = 10.0
    detect_dark: bool = True


class ClassicalDetector:
    """Background subtraction + hysteresis threshold + blob-feature rules."""

    name = 'classical'

    def __init__(self, params: Optional[ClassicalParams] = None, **overrides):
        """Args: params (default ClassicalParams()), overrides: fields of ClassicalParams."""
        base = params or ClassicalParams()
        self.params = replace(base, **overrides) if overrides else base

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
        with cv_threads():
            return self._detect(image, pixel_pitch_mm, magnification, should_cancel)

    def _detect(self, image, pixel_pitch_mm, magnification, should_cancel):
        p = self.params
        fe, mmpp = radiograph_front_end(image, pixel_pitch_mm, magnification, p.front_end,
                                        should_cancel)
        xs, ys, zs = find_candidates(fe.z, p.k_seed, p.front_end.nms_px, p.max_blobs)
        check_cancel(should_cancel)
        taken = {1.0: np.zeros(fe.z.shape, bool), -1.0: np.zeros(fe.z.shape, bool)}
        step = cv2.morphologyEx(fe.B, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        out = []
        for x, y, zv in zip(xs.tolist(), ys.tolist(), zs.tolist()):
            sign = 1.0 if zv > 0 else -1.0
            if sign < 0 and not p.detect_dark:
                continue
            if taken[sign][y, x]:
                continue
            x0, y0, mask = flood_region(fe.z, x, y, sign, p.grow_fraction, p.k_grow)
            taken[sign][y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] |= mask
            d = self._describe(fe, step, x0, y0, mask, sign, abs(zv), mmpp)
            if d is not None:
                out.append(d)
        return sort_by_confidence(out)

    def _describe(self, fe: FrontEnd, step, x0, y0, mask, sign, peak, mmpp_full
                  ) -> Optional[DetectedDefect]:
        p = self.params
        area = int(mask.sum())
        if area < p.min_area_px:
            return None
        bh, bw = mask.shape
        sl = (slice(y0, y0 + bh), slice(x0, x0 + bw))
        resid = (fe.S[sl] - fe.B[sl])[mask] * sign
        amplitude = float(resid.max())
        if amplitude > (p.max_void_log if sign > 0 else p.max_inclusion_log):
            return None                       # a hole / boss edge: far too strong for a defect
        # background step right next to the blob (curved rims and corners leave slivers)
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        edge = float(step[sl][ring].max())
        if edge > p.edge_step_ratio * amplitude:
            return None
        ys, xs = np.nonzero(mask)
        cx, cy = xs.mean(), ys.mean()
        cxx = ((xs - cx) ** 2).mean() + 1.0 / 12
        cyy = ((ys - cy) ** 2).mean() + 1.0 / 12
        cxy = ((xs - cx) * (ys - cy)).mean()
        tr, det = cxx + cyy, cxx * cyy - cxy * cxy
        disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
        lam1, lam2 = tr / 2 + disc, max(tr / 2 - disc, 1e-6)
        minor_px = 4 * math.sqrt(lam2)
        elongation = math.sqrt(lam1 / lam2)
        h, w = fe.z.shape
        if (x0 == 0 or y0 == 0 or x0 + bw == w or y0 + bh == h) and \
                elongation >= p.border_elongation:
            return None                       # a strip along the image border
        if sign < 0 and elongation > p.inclusion_max_elongation:
            return None                       # a thin rib or wall seen from above
        if area * fe.mm_per_px ** 2 > p.max_area_mm2:
            return None
        pts = np.column_stack([xs, ys]).astype(np.float32)
        hull = cv2.convexHull(pts).reshape(-1, 2)
        hull_area = float(cv2.contourArea(hull)) if len(hull) > 2 else 0.0
        solidity = min(1.0, area / (hull_area + 0.5 * len(hull) + 1.0))
        if len(hull) > 1:
            diff = hull[:, None, :] - hull[None, :, :]
            feret_px = float(np.sqrt((diff ** 2).sum(-1)).max()) + 1.0
        else:
            feret_px = 1.0
        wmm = fe.mm_per_px
        size_mm = feret_px * wmm
        minor_mm = minor_px * wmm
        if sign < 0:
            kind = 'inclusion'
        elif elongation >= p.crack_elongation and minor_mm <= p.crack_max_width_mm:
            kind = 'crack'
        elif solidity < p.shrinkage_solidity or size_mm > p.shrinkage_min_mm:
            kind = 'shrinkage'
        else:
            kind = 'gas_porosity'
        delta = float(resid.mean()) * sign
        contrast = 1.0 - math.exp(delta)      # (I_bg - I) / I_bg, I = I_bg exp(delta): voids < 0
        confidence = 1.0 - 0.95 * math.exp(-(peak - p.k_seed) / p.snr_scale)
        # back to radiograph pixels
        sx, sy = fe.scale_xy
        fx0, fy0 = int(math.floor(x0 * sx)), int(math.floor(y0 * sy))
        fx1 = int(min(fe.full_shape[1], math.ceil((x0 + bw) * sx)))
        fy1 = int(min(fe.full_shape[0], math.ceil((y0 + bh) * sy)))
        if fe.factor > 1:
            cols = np.clip(((np.arange(fx0, fx1) + 0.5) / sx).astype(int) - x0, 0, bw - 1)
            rows = np.clip(((np.arange(fy0, fy1) + 0.5) / sy).astype(int) - y0, 0, bh - 1)
            full_mask = mask[rows[:, None], cols[None, :]]
        else:
            full_mask = mask
        full_area = int(full_mask.sum())
        return DetectedDefect(
            kind=kind, confidence=float(min(0.999, max(0.0, confidence))),
            box_xyxy=(fx0, fy0, fx1, fy1), mask=full_mask, size_mm=size_mm,
            area_mm2=full_area * mmpp_full * mmpp_full, contrast=contrast,
            features={'snr_peak': peak, 'amplitude_log': amplitude, 'elongation': elongation,
                      'solidity': solidity, 'minor_mm': minor_mm, 'edge_step_log': edge,
                      'area_px': full_area, 'bright': bool(sign > 0)})
