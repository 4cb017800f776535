"""Box refinement of the learned detector: a second small CNN that redraws each box.

Why: on the validation radiographs (part seeds 50000..50089) most of the AP50 the 'cnn'
detector lost on defects it found was localisation: pores and inclusions are 3-8 px wide, and
a box one pixel short on two sides has IoU < 0.5 with the truth (a 5x5 pore boxed 4x3: IoU
0.48). Such a near miss counts twice (a miss and a high-scoring false alarm). PatchNet's box
head sees the candidate through two 2x poolings, and the flooded region depends on a threshold
of the smoothed residual, so both are about one pixel off on small defects; on larger ones
(shrinkage sponges, cracks) the region follows the residual's threshold, not the defect's
extent.

`BoxRefiner` looks at a REFINE_PX x REFINE_PX crop centred on the candidate a detection came
from, at a scale s (1, 2 or 4: the working image area-averaged by s) chosen so that the
detection's box is at most REFINE_MAX_BOX_PX scaled pixels, with no pooling before its second
convolution, and outputs the four sides of the defect's box relative to the crop's centre
pixel (scaled pixels, floats). Channels: polarity x z / 5 (absolute signal, clipped),
polarity x z / its peak near the centre (the shape of the profile whatever its strength),
(S - S at the centre) x 10 (part structure), polarity, log2(s) / 2. Boxes larger than
REFINE_MAX_BOX_PX x the largest scale keep their box.

Training samples (train_cli): every front-end candidate on a visible defect (the crops the
refiner sees at inspection) and every visible defect seen from its own box centre (jittered by
up to MAX_JITTER_PX at training), at the scale(s) its box calls for, with the 8
flips/transposes. No ROS imports.
"""

import cv2
import numpy as np
import torch
from torch import nn

REFINE_PX = 21              # side of the refiner's input crop (scaled pixels, odd)
RAW_CROP_PX = 31            # stored training crops: room for +-5 px of centre jitter
REFINE_MAX_BOX_PX = 17      # a box is refined at the smallest scale where it is this small
REFINE_SCALES = (1, 2, 4)   # working image area-averaged by these factors
REFINE_CHANNELS = 5
MAX_JITTER_PX = 2           # training centre jitter (the detector's centre error is ~1 px)
# training samples: a defect is used at scale s when its box is at most
# REFINE_MAX_BOX_PX x s x SAMPLE_SCALE_SLACK and (for s > 1) more than
# REFINE_MAX_BOX_PX x s / 2 / SAMPLE_SCALE_SLACK working pixels. At inspection the scale
# comes from the detection's box before refinement, which is off by up to ~1.6x for
# shrinkage and cracks (20 % of them were refined at another scale than their true box
# calls for), so each scale is taught boxes 1.6x larger and smaller than its own range
# (was +2 / -4 px: validation AP50 0.579 -> 0.590, recall >= 1 mm at <= 0.2 false alarms
# per image 0.730 -> 0.743, 360 radiographs, same networks otherwise)
SAMPLE_SCALE_SLACK = 1.6
REFINE_VERSION = 4          # bumped whenever the samples change (training caches)


def scale_of(box_px: float, scales=REFINE_SCALES, max_box_px: float = REFINE_MAX_BOX_PX) -> int:
    """The smallest scale at which a box of this largest side (working px) fits; 0: none."""
    for s in scales:
        if box_px <= max_box_px * s:
            return int(s)
    return 0


def sample_scales(box_px: float) -> list:
    """The scales at which a training defect (largest box side, working px) is used."""
    return [s for s in REFINE_SCALES
            if box_px <= REFINE_MAX_BOX_PX * s * SAMPLE_SCALE_SLACK
            and (s == 1 or box_px > REFINE_MAX_BOX_PX * s / 2 / SAMPLE_SCALE_SLACK)]


class ScaledMaps:
    """z and S of a FrontEnd area-averaged by each scale, computed when first asked for."""

    def __init__(self, fe):
        """Args: the FrontEnd."""
        self.fe = fe
        self._maps = {1: (fe.z, fe.S)}

    def get(self, s: int):
        """(z, S) at scale s (float32 arrays)."""
        if s not in self._maps:
            h, w = self.fe.z.shape
            size = (max(1, w // s), max(1, h // s))
            self._maps[s] = tuple(cv2.resize(a[:size[1] * s, :size[0] * s], size,
                                             interpolation=cv2.INTER_AREA)
                                  for a in (self.fe.z, self.fe.S))
        return self._maps[s]


def raw_crops(z: np.ndarray, S: np.ndarray, cxs, cys, size: int = RAW_CROP_PX) -> np.ndarray:
    """z and S crops (N, 2, size, size) float32 centred on pixels (cxs, cys) of these maps."""
    half = size // 2
    offs = np.arange(-half, half + 1)
    cxs, cys = np.asarray(cxs, int), np.asarray(cys, int)
    out = np.empty((len(cxs), 2, size, size), np.float32)
    if len(cxs) == 0:
        return out
    h, w = z.shape
    rows = np.clip(cys[:, None] + offs[None, :], 0, h - 1)[:, :, None]
    cols = np.clip(cxs[:, None] + offs[None, :], 0, w - 1)[:, None, :]
    out[:, 0] = z[rows, cols]
    out[:, 1] = S[rows, cols]
    return out


def refiner_inputs(raw: np.ndarray, polarity: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Network inputs (N, REFINE_CHANNELS, REFINE_PX, REFINE_PX) from centred z/S crops.

    Args:
        raw: (N, 2, P, P) z and S crops centred on the crop centre (P >= REFINE_PX, odd).
        polarity: (N,) +1 for bright (void) detections, -1 for dark (inclusions).
        scale: (N,) the scale of each crop.
    """
    n, _, p, _ = raw.shape
    a = (p - REFINE_PX) // 2
    win = raw[:, :, a:a + REFINE_PX, a:a + REFINE_PX].astype(np.float32)
    pol = np.asarray(polarity, np.float32).reshape(-1, 1, 1)
    z = win[:, 0] * pol
    c = REFINE_PX // 2
    peak = np.maximum(z[:, c - 2:c + 3, c - 2:c + 3].reshape(n, -1).max(1), 1.0)
    out = np.empty((n, REFINE_CHANNELS, REFINE_PX, REFINE_PX), np.float32)
    out[:, 0] = np.clip(z * 0.2, -4.0, 4.0)
    out[:, 1] = np.clip(z / peak[:, None, None], -1.0, 1.5)
    out[:, 2] = np.clip((win[:, 1] - win[:, 1, c:c + 1, c:c + 1]) * 10.0, -4.0, 4.0)
    out[:, 3] = pol
    out[:, 4] = 0.5 * np.log2(np.asarray(scale, np.float32)).reshape(-1, 1, 1)
    return out


class BoxRefiner(nn.Module):
    """conv 3x3 (w) -> conv 3x3 (2w) -> max-pool -> conv 3x3 (2w) -> max-pool -> fc (4w) -> 4
    box sides (left, top, right, bottom) relative to the crop's centre pixel centre."""

    def __init__(self, in_channels: int = REFINE_CHANNELS, width: int = 16):
        """Args: input channels, width of the first layer."""
        super().__init__()
        w = width
        self.config = {'in_channels': in_channels, 'width': width}
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side = REFINE_PX // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * side * side, 4 * w),
                                  nn.ReLU(inplace=True), nn.Linear(4 * w, 4))

    def forward(self, x):
        """(N, C, REFINE_PX, REFINE_PX) -> sides (N, 4): x0, y0, x1, y1 minus the centre."""
        return self.head(self.features(x))


def dihedral_sides(x: np.ndarray, sides: np.ndarray, k: int):
    """Apply one of the 8 flips/transposes to crops (N, C, P, P) and their side targets."""
    if k & 4:            # transpose: x <-> y
        x = x.transpose(0, 1, 3, 2)
        sides = sides[:, [1, 0, 3, 2]]
    if k & 1:            # mirror left-right: x -> -x
        x = x[:, :, :, ::-1]
        sides = -sides[:, [2, 1, 0, 3]] * np.array([1, -1, 1, -1], np.float32)
    if k & 2:            # mirror up-down: y -> -y
        x = x[:, :, ::-1, :]
        sides = -sides[:, [0, 3, 2, 1]] * np.array([-1, 1, -1, 1], np.float32)
    return np.ascontiguousarray(x), np.ascontiguousarray(sides)


def _samples(maps: ScaledMaps, centres, boxes, polarity):
    """Crops, polarity, sides and scale of the boxes (working px) seen from the centres
    (working px) at every scale sample_scales gives them."""
    crops, pols, sides, scales = [], [], [], []
    for s in REFINE_SCALES:
        idx = [i for i, b in enumerate(boxes)
               if s in sample_scales(max(b[2] - b[0], b[3] - b[1]))]
        if not idx:
            continue
        z, S = maps.get(s)
        cx = np.array([centres[i][0] for i in idx], int) // s
        cy = np.array([centres[i][1] for i in idx], int) // s
        c = np.stack([cx, cy, cx, cy], 1).astype(np.float32) + 0.5
        crops.append(raw_crops(z, S, cx, cy).astype(np.float16))
        pols.append(np.asarray(polarity, np.float32)[idx])
        sides.append((np.asarray(boxes, np.float32)[idx] / s - c).astype(np.float32))
        scales.append(np.full(len(idx), s, np.float32))
    if not crops:
        return (np.zeros((0, 2, RAW_CROP_PX, RAW_CROP_PX), np.float16), np.zeros(0, np.float32),
                np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    return (np.concatenate(crops), np.concatenate(pols), np.concatenate(sides),
            np.concatenate(scales))


def truth_samples(fe, truth, visible_contrast: float, maps: ScaledMaps = None):
    """Training samples of the refiner centred on the visible defects' own box centres.

    Args:
        fe: FrontEnd of the radiograph.
        truth: list of DefectTruth (radiograph pixels).
        visible_contrast: defects fainter than this are left out.
        maps: ScaledMaps of fe (made when None).

    Returns:
        (raw crops float16 (N, 2, RAW_CROP_PX, RAW_CROP_PX) centred on the pixel holding each
        box's centre, polarity float32 (N,), sides float32 (N, 4): the box minus that pixel's
        centre, scale float32 (N,); crops and sides in scaled pixels).
    """
    maps = maps or ScaledMaps(fe)
    sx, sy = fe.scale_xy
    centres, boxes, pol = [], [], []
    for t in truth:
        if abs(t.contrast) < visible_contrast:
            continue
        x0, y0, x1, y1 = t.box_xyxy
        b = [x0 / sx, y0 / sy, x1 / sx, y1 / sy]
        centres.append((int(np.floor(0.5 * (b[0] + b[2]))), int(np.floor(0.5 * (b[1] + b[3])))))
        boxes.append(b)
        pol.append(1.0 if t.contrast > 0 else -1.0)
    return _samples(maps, centres, boxes, pol)


def candidate_samples(fe, xs, ys, labels, log_dist, box_log_offset: float,
                      maps: ScaledMaps = None):
    """Training samples of the refiner centred on the front end's candidates on defects.

    At inspection the refiner's crop is centred on the candidate a detection came from, so
    these are exactly the crops it will see (truth_samples adds the defects' own centres).

    Args:
        fe: FrontEnd. xs, ys: candidate working pixels. labels: their class (> 0: on a
        defect). log_dist: PatchNet's box targets (log distances to the four sides, with
        box_log_offset added). maps: ScaledMaps of fe (made when None).

    Returns:
        Like truth_samples.
    """
    maps = maps or ScaledMaps(fe)
    d = np.exp(np.asarray(log_dist, np.float32).reshape(-1, 4)) - box_log_offset
    keep = np.asarray(labels) > 0
    xs, ys, d = np.asarray(xs)[keep], np.asarray(ys)[keep], d[keep]
    pol = np.where(fe.z[ys, xs] < 0, -1.0, 1.0).astype(np.float32)
    cx, cy = xs + 0.5, ys + 0.5
    boxes = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)
    return _samples(maps, list(zip(xs, ys)), boxes, pol)


def jittered_inputs(raw: np.ndarray, polarity: np.ndarray, sides: np.ndarray,
                    scale: np.ndarray, rng: np.random.Generator,
                    max_jitter: int = MAX_JITTER_PX):
    """Inputs and targets seen from crop centres moved by up to max_jitter px (each axis)."""
    n, _, p, _ = raw.shape
    a = (p - REFINE_PX) // 2
    dx = rng.integers(-max_jitter, max_jitter + 1, n)
    dy = rng.integers(-max_jitter, max_jitter + 1, n)
    sub = np.empty((n, 2, REFINE_PX, REFINE_PX), np.float32)
    for i in range(n):
        sub[i] = raw[i, :, a + dy[i]:a + dy[i] + REFINE_PX, a + dx[i]:a + dx[i] + REFINE_PX]
    shift = np.stack([dx, dy, dx, dy], 1).astype(np.float32)
    return refiner_inputs(sub, polarity, scale), sides - shift


def undo_dihedral_sides(sides: np.ndarray, k: int) -> np.ndarray:
    """Sides predicted on crops transformed by dihedral_sides(., ., k), in the original
    crop's frame (the inverse of its side mapping: the three flips undone in reverse order)."""
    dummy = np.zeros((len(sides), 1, 1, 1), np.float32)
    for op in (2, 1, 4):
        if k & op:
            _, sides = dihedral_sides(dummy, sides, op)
    return sides


def predict_sides(model: nn.Module, x: np.ndarray, transforms: int = 1) -> np.ndarray:
    """Box sides (N, 4) of refiner inputs x (N, C, REFINE_PX, REFINE_PX), averaged over the
    first `transforms` of the 8 flips/transposes (test-time augmentation: the network was
    trained under all 8, and averaging its answers steadies the box by a fraction of a
    pixel). One forward pass over the N x transforms crops, channels-last (NHWC: half the
    time of NCHW for these crops on this CPU, 30 -> 15 ms for 36 crops at width 32, the
    same sides)."""
    transforms = int(min(max(transforms, 1), 8))
    dummy = np.zeros((len(x), 4), np.float32)
    batch = np.concatenate([dihedral_sides(x, dummy, k)[0] for k in range(transforms)])
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(torch.from_numpy(batch).contiguous(
            memory_format=torch.channels_last)).numpy()
    n = len(x)
    return np.mean([undo_dihedral_sides(out[k * n:(k + 1) * n], k)
                    for k in range(transforms)], 0)


def refine(model: BoxRefiner, fe, boxes: np.ndarray, polarity: np.ndarray, centres=None,
           maps: ScaledMaps = None, transforms: int = 1) -> np.ndarray:
    """Refined working-pixel boxes (N, 4) float.

    Each box is redrawn by the refiner at the smallest scale where it is at most
    REFINE_MAX_BOX_PX (scale_of), from a crop centred on its centre (N, 2) working pixels
    (x, y: the candidates the detections came from; default the boxes' centres); larger
    boxes and degenerate predictions keep the box they had. One forward pass, over the crops
    under `transforms` of the 8 flips/transposes (predict_sides; 1: the crops as they are).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    if len(boxes) == 0:
        return boxes
    if centres is None:
        centres = np.floor(0.5 * (boxes[:, :2] + boxes[:, 2:])).astype(int)
    centres = np.asarray(centres, int).reshape(-1, 2)
    polarity = np.asarray(polarity, np.float32).reshape(-1)
    maps = maps or ScaledMaps(fe)
    scales = np.array([scale_of(max(b[2] - b[0], b[3] - b[1])) for b in boxes])
    idx_all, x_all, c_all = [], [], []
    for s in REFINE_SCALES:
        idx = np.nonzero(scales == s)[0]
        if len(idx) == 0:
            continue
        z, S = maps.get(s)
        cx, cy = centres[idx, 0] // s, centres[idx, 1] // s
        x_all.append(refiner_inputs(raw_crops(z, S, cx, cy, REFINE_PX), polarity[idx],
                                    np.full(len(idx), s)))
        c_all.append(np.stack([cx, cy, cx, cy], 1).astype(np.float32) + 0.5)
        idx_all.append(idx)
    if not idx_all:
        return boxes
    idx = np.concatenate(idx_all)
    sides = predict_sides(model, np.concatenate(x_all), transforms)
    new = (np.concatenate(c_all) + sides) * scales[idx, None].astype(np.float32)
    ok = (new[:, 2] > new[:, 0] + 0.5) & (new[:, 3] > new[:, 1] + 0.5)
    boxes[idx[ok]] = new[ok]
    return boxes
