"""8-bit previews of 16-bit radiographs with the ground-truth boxes drawn on them.

The display transform is the one a radiographer's viewer applies: log of the offset-corrected
signal (proportional to the material path), a window from the percentiles of the part's
pixels, an unsharp mask (edge enhancement) and CLAHE so thin and thick sections are both
readable.
"""

import cv2
import numpy as np

# BGR colours per defect kind (drawn on RGB images they appear as listed in the comment)
KIND_COLOURS_RGB = {
    'gas_porosity': (255, 64, 64),    # red
    'shrinkage': (255, 200, 0),       # amber
    'crack': (0, 200, 255),           # cyan
    'inclusion': (200, 80, 255),      # violet
}
KIND_LABELS = {'gas_porosity': 'pore', 'shrinkage': 'shrink', 'crack': 'crack',
               'inclusion': 'incl'}


def window_radiograph(image: np.ndarray, part_mask: np.ndarray = None,
                      dark_offset_adu: float = 0.0, clahe: bool = True,
                      enhance: float = 2.0) -> np.ndarray:
    """8-bit display image of a 16-bit radiograph.

    Args:
        image: uint16 (or float) radiograph, bright = less attenuation.
        part_mask: optional bool mask of the part, used to pick the window.
        dark_offset_adu: detector dark level subtracted before the log.
        clahe: apply contrast-limited adaptive histogram equalisation.
        enhance: unsharp-mask gain on the log image (0 = none).

    Returns:
        uint8 image of the same shape (dark = more material, as on film negatives inverted:
        the radiograph convention of bright voids is kept).

    Raises:
        ValueError: for an image that is not 2D.
    """
    data = np.asarray(image, np.float32)
    if data.ndim != 2:
        raise ValueError(f'expected a 2D radiograph, got shape {data.shape}')
    log = np.log(np.maximum(data - dark_offset_adu, 1.0))
    region = log[part_mask] if part_mask is not None and part_mask.any() else log.ravel()
    low, high = np.percentile(region, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    normalised = (log - low) / (high - low)
    if enhance > 0:
        # unsharp mask of the log image: the 'edge enhancement' of radiography viewers
        sigma = max(2.0, min(data.shape) / 150.0)
        normalised = normalised + enhance * (normalised - cv2.GaussianBlur(
            normalised, (0, 0), sigma))
    scaled = np.clip(normalised * 255.0, 0, 255).astype(np.uint8)
    if clahe:
        tiles = max(2, min(16, min(data.shape) // 64))
        scaled = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(tiles, tiles)).apply(scaled)
    return scaled


def draw_truth_overlay(image: np.ndarray, truth, part_mask: np.ndarray = None,
                       dark_offset_adu: float = 0.0, max_side: int = None,
                       labels: bool = True) -> np.ndarray:
    """RGB preview with a coloured box and label per ground-truth defect.

    Args:
        image: uint16 radiograph.
        truth: iterable of DefectTruth (or dicts with 'kind', 'box_xyxy', 'size_mm').
        part_mask: optional bool part mask for the window.
        dark_offset_adu: detector dark level.
        max_side: downscale so the longer side is at most this (None = keep).
        labels: write '<kind> <size> mm' next to each box.

    Returns:
        uint8 RGB image (rows, cols, 3).
    """
    grey = window_radiograph(image, part_mask, dark_offset_adu)
    scale = 1.0
    if max_side and max(grey.shape) > max_side:
        scale = max_side / max(grey.shape)
        grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    thickness = max(1, round(max(rgb.shape) / 700))
    font = max(0.35, max(rgb.shape) / 2000)
    for item in truth:
        get = item.get if isinstance(item, dict) else (lambda key, i=item: getattr(i, key))
        kind = get('kind')
        colour = KIND_COLOURS_RGB.get(kind, (0, 255, 0))
        x0, y0, x1, y1 = (np.asarray(get('box_xyxy'), float) * scale).tolist()
        pad = 2
        p0 = (int(np.floor(x0)) - pad, int(np.floor(y0)) - pad)
        p1 = (int(np.ceil(x1)) + pad, int(np.ceil(y1)) + pad)
        cv2.rectangle(rgb, p0, p1, colour, thickness, cv2.LINE_AA)
        if labels:
            text = f"{KIND_LABELS.get(kind, kind)} {float(get('size_mm')):.1f}mm"
            origin = (p0[0], max(10, p0[1] - 3))
            cv2.putText(rgb, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0),
                        thickness + 2, cv2.LINE_AA)
            cv2.putText(rgb, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font, colour, thickness,
                        cv2.LINE_AA)
    return rgb
