"""Learned ADR ('cnn', the default): classical candidates + a small CNN that judges each one.

1. The shared front end (candidates.py): working resolution ~0.15 mm, log-intensity, small
   opening/closing background, noise-normalised residual z, local maxima of |z| = candidates
   (a few hundred per radiograph, most of them part structure).
2. `PatchNet` (torch, ~40 k parameters) looks at a 19x19 working-pixel patch around every
   candidate (three channels: z, the local log-intensity and a 4x wider context) and outputs
   the class (background / gas_porosity / shrinkage / crack / inclusion) and the defect's box
   as distances from the candidate to its four sides (log units). It is trained on the
   simulator's radiographs by `humanoid-inspection xray-train` (train_cli.py).
3. Detections: candidates with defect probability (1 - p_background) >= `min_score`, boxes
   mapped back to radiograph pixels, greedy non-maximum suppression (IoU > `nms_iou`, several
   candidates of one crack give one box); mask = pixels of the box whose residual has the
   defect's polarity; contrast from the residual; size = Feret diameter of the mask.

Cost: a few OpenCV passes at working resolution + one batched forward pass over the patches
(about 1 MFLOP each). No ROS imports.
"""

import math
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from torch import nn

from humanoid_inspection.xray.candidates import (
    PATCH_CHANNELS, PATCH_PX, FrontEnd, FrontEndParams, compute_front_end, extract_patches,
    find_candidates, flood_region)
from humanoid_inspection.xray.detector import (
    DEFECT_KINDS, CancelCheck, DetectedDefect, check_cancel, mm_per_px, sort_by_confidence,
    validate_radiograph)

CLASSES = ('background',) + DEFECT_KINDS
MODEL_DIR = Path(__file__).resolve().parent / 'models'
DEFAULT_WEIGHTS = MODEL_DIR / 'adr_patchnet.pt'
BOX_LOG_OFFSET = 0.25        # box distances d (working px) are predicted as log(d + offset)
# region of a detection: pixels around the candidate above max(floor, fraction x its peak) in
# noise units (candidates.flood_region); cracks are long and faint along their ends
FLOOD_SETTINGS = {'crack': (0.15, 1.5), 'default': (0.35, 2.5)}
FLOOD_WINDOW_PX = 64


class PatchNet(nn.Module):
    """Candidate classifier + box regressor on PATCH_PX x PATCH_PX patches.

    conv 3x3 (w) -> max-pool -> conv 3x3 (2w) -> max-pool -> conv 3x3 (2w) -> fc (4w) ->
    class logits (len(CLASSES)) and 4 box log-distances (left, top, right, bottom).
    """

    def __init__(self, in_channels: int = PATCH_CHANNELS, width: int = 16,
                 n_classes: int = len(CLASSES)):
        """Args: input channels, width of the first layer, number of classes."""
        super().__init__()
        w = width
        self.config = {'in_channels': in_channels, 'width': width, 'n_classes': n_classes}
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True))
        side = PATCH_PX // 4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * side * side, 4 * w),
                                nn.ReLU(inplace=True))
        self.cls = nn.Linear(4 * w, n_classes)
        self.box = nn.Linear(4 * w, 4)

    def forward(self, x):
        """(N, C, PATCH_PX, PATCH_PX) -> (class logits (N, classes), box (N, 4))."""
        h = self.fc(self.features(x))
        return self.cls(h), self.box(h)


def save_model(model: PatchNet, path, meta: Optional[dict] = None,
               front_end: Optional[FrontEndParams] = None) -> None:
    """Save weights (float16), config, the front-end settings and training metadata."""
    state = {k: (v.half() if v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    fe = (front_end or FrontEndParams()).__dict__
    torch.save({'config': model.config, 'state_dict': state, 'meta': meta or {},
                'classes': CLASSES, 'front_end': dict(fe), 'patch_px': PATCH_PX}, str(path))


def load_model(path=None) -> PatchNet:
    """Load a PatchNet saved by save_model (default: the committed weights).

    The model gets `.meta` (training metadata) and `.front_end` (FrontEndParams).

    Raises:
        FileNotFoundError: no file. ValueError: not a PatchNet checkpoint of these classes.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f'CNN weights not found: {path} (train them with '
                                '`humanoid-inspection xray-train`)')
    try:
        ckpt = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ValueError(f'{path}: not a readable torch checkpoint ({exc})') from exc
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt or 'config' not in ckpt:
        raise ValueError(f'{path}: not a PatchNet checkpoint (missing config/state_dict)')
    if tuple(ckpt.get('classes', ())) != CLASSES or ckpt.get('patch_px') != PATCH_PX:
        raise ValueError(f'{path}: classes/patch size differ from {CLASSES} / {PATCH_PX} px')
    model = PatchNet(**ckpt['config'])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in ckpt['state_dict'].items()})
    except RuntimeError as exc:
        raise ValueError(f'{path}: weights do not fit a PatchNet ({exc})') from exc
    model.meta = ckpt.get('meta', {})
    model.front_end = FrontEndParams(**ckpt.get('front_end', {}))
    model.eval()
    return model


def predict(model: PatchNet, patches: np.ndarray, batch: int = 2048):
    """(probabilities (N, classes), box log-distances (N, 4)) of a patch array."""
    probs = np.zeros((len(patches), len(CLASSES)), np.float32)
    boxes = np.zeros((len(patches), 4), np.float32)
    with torch.inference_mode():
        for i in range(0, len(patches), batch):
            logits, box = model(torch.from_numpy(patches[i:i + batch]))
            probs[i:i + batch] = torch.softmax(logits, 1).numpy()
            boxes[i:i + batch] = box.numpy()
    return probs, boxes


def boxes_from_distances(xs, ys, log_dist) -> np.ndarray:
    """Working-pixel boxes (N, 4) x0, y0, x1, y1 (float) from predicted log-distances."""
    d = np.exp(log_dist) - BOX_LOG_OFFSET
    cx, cy = xs + 0.5, ys + 0.5
    return np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (by decreasing score)."""
    order = np.argsort(-scores, kind='stable')
    keep = []
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        ix = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        iy = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = ix * iy
        overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.array(keep, int)


class CnnDetector:
    """Front-end candidates judged and boxed by PatchNet."""

    name = 'cnn'

    def __init__(self, weights=None, min_score: float = 0.05, nms_iou: float = 0.3,
                 max_detections: int = 100, model: Optional[PatchNet] = None):
        """Args: weights path (default committed), lowest defect probability reported,
        NMS overlap, most detections per radiograph; or an already built model."""
        self.model = model if model is not None else load_model(weights)
        self.model.eval()
        self.params = getattr(self.model, 'front_end', FrontEndParams())
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)

    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None) -> List[DetectedDefect]:
        """Find defects (same contract as ClassicalDetector.detect).

        Raises:
            ValueError: bad image or geometry. InspectionCancelled: cancelled.
        """
        img = validate_radiograph(image, copy=False)
        mmpp = mm_per_px(pixel_pitch_mm, magnification)
        fe = compute_front_end(img, mmpp, self.params, should_cancel)
        xs, ys, _ = find_candidates(fe.z, self.params.peak_threshold, self.params.nms_px,
                                    self.params.max_candidates)
        check_cancel(should_cancel)
        if len(xs) == 0:
            return []
        probs, log_dist = predict(self.model, extract_patches(fe, xs, ys,
                                                              self.params.context_factor))
        check_cancel(should_cancel)
        return self._detections(fe, xs, ys, probs, log_dist, mmpp)

    def _detections(self, fe: FrontEnd, xs, ys, probs, log_dist, mmpp_full):
        score = 1.0 - probs[:, 0]
        order = np.argsort(-score, kind='stable')
        order = order[score[order] >= self.min_score]
        taken = {1.0: np.zeros(fe.z.shape, bool), -1.0: np.zeros(fe.z.shape, bool)}
        out = []
        for i in order:
            if len(out) >= self.max_detections:
                break
            x, y = int(xs[i]), int(ys[i])
            kind_p = probs[i, 1:]
            kind = DEFECT_KINDS[int(np.argmax(kind_p))]
            sign = 1.0 if fe.z[y, x] > 0 else -1.0
            if taken[sign][y, x]:
                continue                  # another candidate of a defect already reported
            fraction, floor = FLOOD_SETTINGS.get(kind, FLOOD_SETTINGS['default'])
            x0, y0, mask = flood_region(fe.z, x, y, sign, fraction, floor, FLOOD_WINDOW_PX)
            taken[sign][y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] |= mask
            out.append(defect_from_region(
                fe, x0, y0, mask, sign, kind, float(score[i]), mmpp_full,
                {'class_probability': float(kind_p.max() / max(kind_p.sum(), 1e-6)),
                 'z_peak': float(abs(fe.z[y, x]))}))
        return sort_by_confidence(out)


def defect_from_region(fe: FrontEnd, x0: int, y0: int, mask: np.ndarray, sign: float,
                       kind: str, confidence: float, mmpp_full: float,
                       features: dict) -> DetectedDefect:
    """DetectedDefect of a working-pixel region (top-left (x0, y0), bool mask of its box).

    The box and mask are mapped back to radiograph pixels; contrast = (I_bg - I) / I_bg from
    the mean residual over the region (voids < 0); size = Feret diameter of the region (mm).
    """
    bh, bw = mask.shape
    delta = float(np.mean((fe.S - fe.B)[y0:y0 + bh, x0:x0 + bw][mask]))
    contrast = 1.0 - math.exp(delta)       # (I_bg - I) / I_bg with I = I_bg exp(delta)
    sx, sy = fe.scale_xy
    h, w = fe.full_shape
    fx0, fy0 = int(math.floor(x0 * sx)), int(math.floor(y0 * sy))
    fx1 = int(min(w, max(fx0 + 1, math.ceil((x0 + bw) * sx))))
    fy1 = int(min(h, max(fy0 + 1, math.ceil((y0 + bh) * sy))))
    if fe.factor > 1 or (fx1 - fx0, fy1 - fy0) != (bw, bh):
        cols = np.clip(((np.arange(fx0, fx1) + 0.5) / sx).astype(int) - x0, 0, bw - 1)
        rows = np.clip(((np.arange(fy0, fy1) + 0.5) / sy).astype(int) - y0, 0, bh - 1)
        full_mask = mask[rows[:, None], cols[None, :]]
    else:
        full_mask = mask
    ys, xs = np.nonzero(mask)
    pts = np.column_stack([xs, ys]).astype(np.float32)
    if len(pts) > 2:
        hull = cv2.convexHull(pts).reshape(-1, 2)
        diff = hull[:, None, :] - hull[None, :, :]
        feret = float(np.sqrt((diff ** 2).sum(-1)).max()) + 1.0
    else:
        feret = float(max(bw, bh))
    area = int(full_mask.sum())
    return DetectedDefect(kind=kind, confidence=float(min(max(confidence, 0.0), 1.0)),
                          box_xyxy=(fx0, fy0, fx1, fy1), mask=full_mask,
                          size_mm=feret * fe.mm_per_px, area_mm2=area * mmpp_full * mmpp_full,
                          contrast=contrast, features=dict(features, area_px=area))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
