"""Where a radiograph saw no X-rays: the dark surround of an image intensifier's circular
field, a collimator's shadow along the border.

No discontinuity of the part can be seen there, and the edge between the exposed field and
its unexposed surround is the strongest structure in such an image: a background estimate
made for the part's walls leaves a residual along it that the detectors take for defects. On
the real GDXray radiographs (docs/xray_inspection.md, "Real radiographs"), 45 % of the cnn's
false alarms lay within 10 px of the dark surround of the intensifier's field, against 3 of
its 78 true positives.

The unexposed region is what lies below DARK_FRACTION of the image's bright level (its 99.9th
percentile), in components that touch the image border and cover at least MIN_AREA_FRACTION
of it: no X-rays, or too few to inspect with. Computed on a grid of every k-th pixel,
smoothed 3x3 against the noise (k keeps the grid near GRID_PX a side).

Only where asked (inspect_radiograph's mask_unexposed: `xray-eval --dataset gdxray`,
`inspect --mask-unexposed`), because darkness alone does not tell the unexposed from thick
metal: the thickest walls of the simulated parts reach 3-6 % of the bright level. They are
left alone there only because they lie inside the field, surrounded by open beam; a large
casting that runs past the detector's edge would have its thick sections there taken for an
unexposed surround, and the defects in them dropped.

No ROS imports.
"""

from typing import List, Tuple

import cv2
import numpy as np

# of the bright level; on GDXray the intensifier's surround lies at 5-7 % of it, and 0.08 /
# 0.1 / 0.12 masked 450 / 488 / 488 of the 631 images, leaving the cnn 3.50 / 3.34 / 3.23 false
# alarms per image (4.84 without), recall 0.113 (0.118), AP50 0.028-0.029 (0.015)
DARK_FRACTION = 0.1
MIN_AREA_FRACTION = 0.005   # of the image: smaller dark patches at the border are not a field
EDGE_MARGIN_PX = 10         # radiograph pixels: the field edge's blur and its residual
GRID_PX = 256


def unexposed_mask(image: np.ndarray) -> Tuple[np.ndarray, int]:
    """(bool mask of the unexposed region on the grid image[::k, ::k], k).

    Args:
        image: a validated 2-D radiograph (transmission polarity: dark = no X-rays).
    """
    img = np.asarray(image)
    h, w = img.shape[:2]
    k = max(1, min(h, w) // GRID_PX)
    grid = cv2.blur(img[::k, ::k].astype(np.float32), (3, 3))
    flat = grid.ravel()
    rank = int(0.999 * (flat.size - 1))
    bright = float(np.partition(flat, rank)[rank])      # the 99.9th percentile
    if not bright > 0:
        return np.zeros(grid.shape, bool), k
    dark = (grid <= DARK_FRACTION * bright).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    gh, gw = dark.shape
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    border = (x == 0) | (y == 0) | (x + bw == gw) | (y + bh == gh)
    keep = np.concatenate([[False], border & (area >= MIN_AREA_FRACTION * gh * gw)])
    return keep[labels], k


def drop_unexposed(defects: List, image: np.ndarray, margin_px: int = EDGE_MARGIN_PX) -> List:
    """The defects whose box, grown by `margin_px`, stays clear of the unexposed region of
    `image` (all of them where it has none), in their order."""
    mask, k = unexposed_mask(image)
    if not defects or not mask.any():
        return list(defects)
    radius = int(np.ceil(margin_px / k))
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8))
    gh, gw = grown.shape
    kept = []
    for d in defects:
        x0, y0, x1, y1 = (int(v) for v in d.box_xyxy)
        gx0, gy0 = min(gw - 1, max(0, x0 // k)), min(gh - 1, max(0, y0 // k))
        gx1, gy1 = max(gx0 + 1, -(-x1 // k)), max(gy0 + 1, -(-y1 // k))
        if not grown[gy0:gy1, gx0:gx1].any():
            kept.append(d)
    return kept
