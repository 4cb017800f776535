"""Previous learned ADR, selectable as 'unet': a tiny U-Net labelling every pixel background /
gas_porosity / shrinkage / crack / inclusion, trained on the simulator's radiographs
(xray/train_unet.py, `humanoid-inspection xray-train --model unet`). The default learned
detector is now 'cnn' (detector_cnn.py); this one stays for comparison (bench_xray_adr.py).

Input: two channels made from the log-intensity L = log(I) (Beer-Lambert makes defects an
additive offset in L): the image-normalised L and a high-pass L - blur(L). Large radiographs
are processed in overlapping tiles (the overlap covers the receptive field) so memory stays
bounded and cancellation is checked between tiles. Connected components of the defect
probability map become DetectedDefect: small components are re-segmented at full resolution
on the local log-intensity residual (the network's masks are on a 4-px grid), class = the most
probable kind over the mask, confidence = the mean defect probability of the component.
No ROS imports.
"""

from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from torch import nn

from humanoid_inspection.xray.checkpoint import (
    half_state_dict, load_weights, read_checkpoint)
from humanoid_inspection.xray.detector import (
    DEFECT_KINDS, CancelCheck, DetectedDefect, check_cancel, mm_per_px, sort_by_confidence,
    validate_radiograph)

CLASSES = ('background',) + DEFECT_KINDS
MODEL_DIR = Path(__file__).resolve().parent / 'models'
DEFAULT_WEIGHTS = MODEL_DIR / 'adr_unet.pt'
HIGHPASS_SIGMA_PX = 4.0
HIGHPASS_GAIN = 20.0


def preprocess(image: np.ndarray) -> np.ndarray:
    """(2, H, W) float32 network input from a validated float32 radiograph."""
    log_img = cv2.log(np.maximum(image, 1.0))
    sample = log_img[::4, ::4]
    centre = float(np.median(sample))
    spread = float(np.percentile(sample, 95) - np.percentile(sample, 5))
    norm = (log_img - centre) / max(spread, 0.05)
    high = (log_img - cv2.GaussianBlur(log_img, (0, 0), HIGHPASS_SIGMA_PX)) * HIGHPASS_GAIN
    return np.stack([norm, np.clip(high, -10, 10)]).astype(np.float32)


def _block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """Three-level U-Net (widths w, 2w, 4w) working at 1/`fold` resolution.

    The input is folded space-to-depth (fold x fold pixel blocks become channels, nothing is
    thrown away) and the output unfolded the same way (pixel shuffle), so the convolutions run
    on fold^2 fewer positions while the labels stay per pixel. Widths are multiples of 8: the
    CPU convolution kernels (oneDNN) are several times faster for them.
    """

    def __init__(self, in_channels: int = 2, n_classes: int = len(CLASSES), width: int = 16,
                 fold: int = 4):
        """Args: input channels, output classes, width of the first level, fold factor."""
        super().__init__()
        w = width
        self.config = {'in_channels': in_channels, 'n_classes': n_classes, 'width': width,
                       'fold': fold}
        self.fold = fold
        self.unfold_in = nn.PixelUnshuffle(fold)
        self.enc1 = _block(in_channels * fold * fold, w)
        self.enc2 = _block(w, 2 * w)
        self.enc3 = _block(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)
        self.head = nn.Conv2d(w, n_classes * fold * fold, 1)
        self.fold_out = nn.PixelShuffle(fold)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 4 * self.fold

    def forward(self, x):
        """(N, C, H, W), H and W multiples of `multiple` -> (N, classes, H, W) logits."""
        e1 = self.enc1(self.unfold_in(x))
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.fold_out(self.head(d1))


def save_model(model: TinyUNet, path, meta: Optional[dict] = None) -> None:
    """Save weights (float16 to keep the file small) + config + training metadata."""
    state = half_state_dict(model)
    torch.save({'config': model.config, 'state_dict': state, 'meta': meta or {},
                'classes': CLASSES}, str(path))


def load_model(path=None) -> TinyUNet:
    """Load a TinyUNet saved by save_model (default: the committed weights).

    Raises:
        FileNotFoundError: no file. ValueError: not a TinyUNet checkpoint of these classes.
    """
    path, ckpt = read_checkpoint(path if path is not None else DEFAULT_WEIGHTS, 'TinyUNet',
                                 'humanoid-inspection xray-train --model unet')
    if tuple(ckpt.get('classes', ())) != CLASSES:
        raise ValueError(f'{path}: classes {ckpt.get("classes")} differ from {CLASSES}')
    model = load_weights(TinyUNet(**ckpt['config']), ckpt, path)
    model.meta = ckpt.get('meta', {})
    model.eval()
    return model


def predict_probabilities(model: TinyUNet, inputs: np.ndarray, tile: int = 1024,
                          overlap: int = 64, should_cancel: CancelCheck = None) -> np.ndarray:
    """Per-pixel class probabilities (classes, H, W) of a (C, H, W) input, tile by tile."""
    _, h, w = inputs.shape
    probs = np.zeros((len(CLASSES), h, w), np.float32)
    step = tile - 2 * overlap
    with torch.inference_mode():
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                check_cancel(should_cancel)
                ty0, tx0 = max(0, y0 - overlap), max(0, x0 - overlap)
                ty1, tx1 = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
                patch = inputs[:, ty0:ty1, tx0:tx1]
                ph, pw = patch.shape[1:]
                pad_h, pad_w = (-ph) % model.multiple, (-pw) % model.multiple
                if pad_h or pad_w:
                    patch = np.pad(patch, ((0, 0), (0, pad_h), (0, pad_w)), mode='edge')
                out = torch.softmax(model(torch.from_numpy(patch)[None]), 1)[0].numpy()
                cy1, cx1 = min(h, y0 + step), min(w, x0 + step)
                probs[:, y0:cy1, x0:cx1] = out[:, y0 - ty0:cy1 - ty0, x0 - tx0:cx1 - tx0]
    return probs


class UnetDetector:
    """TinyUNet segmentation + connected components."""

    name = 'unet'

    def __init__(self, weights=None, threshold: float = 0.5, min_area_px: int = 3,
                 tile: int = 1024, model: Optional[TinyUNet] = None):
        """Args: weights path (default committed), defect-probability threshold, smallest
        blob, tile side; or an already built model."""
        self.model = model if model is not None else load_model(weights)
        self.model.eval()
        self.threshold = float(threshold)
        self.min_area_px = int(min_area_px)
        self.tile = int(tile)

    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None) -> List[DetectedDefect]:
        """Find defects (same contract as ClassicalDetector.detect)."""
        img = validate_radiograph(image)
        mmpp = mm_per_px(pixel_pitch_mm, magnification)
        inputs = preprocess(img)
        check_cancel(should_cancel)
        probs = predict_probabilities(self.model, inputs, self.tile, 64, should_cancel)
        return defects_from_probabilities(probs, img, mmpp, self.threshold, self.min_area_px)


REFINE_MAX_SIDE_PX = 64     # larger components keep the network's own mask
REFINE_MARGIN_PX = 12       # window around a component for the local residual and noise
REFINE_GROW_PX = 3          # a refined blob may extend this far beyond the component
REFINE_PEAK_FRACTION = 0.3  # refined mask: residual above this share of the peak ...
REFINE_NOISE_SIGMAS = 4.0   # ... and above this many local noise sigmas


def refine_component(log_img: np.ndarray, comp: np.ndarray, x: int, y: int) -> list:
    """Full-resolution masks of the defects inside one network component.

    The network works on 4x4 pixel blocks, so its masks are blocky (boxes on a 4-px grid)
    and neighbouring pores of a cluster merge into one component. Inside a window around the
    component the local residual r = L - blur(L, 4 px) (sign = the polarity of the strongest
    residual in the component) is thresholded at max(REFINE_NOISE_SIGMAS x its noise MAD in
    the window outside the component, REFINE_PEAK_FRACTION x its peak); each connected blob
    that touches the component becomes one defect.

    Args:
        log_img: log-intensity image. comp: bool mask of the component in its box whose
            top-left corner is (x, y).

    Returns:
        list of (x0, y0, bool mask) in image pixels; empty when nothing stands out (the
        caller then keeps the network's mask).
    """
    h, w = log_img.shape
    bh, bw = comp.shape
    m = REFINE_MARGIN_PX
    y0, y1, x0, x1 = max(0, y - m), min(h, y + bh + m), max(0, x - m), min(w, x + bw + m)
    win = log_img[y0:y1, x0:x1]
    resid = cv2.GaussianBlur(win - cv2.GaussianBlur(win, (0, 0), HIGHPASS_SIGMA_PX), (0, 0), 0.7)
    cm = np.zeros(win.shape, np.uint8)
    cm[y - y0:y - y0 + bh, x - x0:x - x0 + bw] = comp
    k = 2 * REFINE_GROW_PX + 1
    grown = cv2.dilate(cm, np.ones((k, k), np.uint8)) > 0
    ring = resid[~grown]
    if ring.size < 20:
        return []
    sigma = 1.4826 * float(np.median(np.abs(ring - np.median(ring))))
    inside = resid[cm > 0]
    polarity = 1.0 if inside.max() >= -inside.min() else -1.0
    r = polarity * resid
    peak = float(r[cm > 0].max())
    thr = max(REFINE_NOISE_SIGMAS * sigma, REFINE_PEAK_FRACTION * peak)
    if peak <= thr * 1.0001 and peak <= REFINE_NOISE_SIGMAS * sigma:
        return []
    sub = ((r > thr) & grown).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
    out = []
    for j in range(1, n):
        sx, sy, sw, sh, area = (int(v) for v in stats[j])
        blob = lab[sy:sy + sh, sx:sx + sw] == j
        if area < 2 or not cm[sy:sy + sh, sx:sx + sw][blob].any():
            continue
        out.append((x0 + sx, y0 + sy, blob))
    return out


def defects_from_probabilities(probs: np.ndarray, image: np.ndarray, mmpp: float,
                               threshold: float = 0.5, min_area_px: int = 3,
                               refine: bool = True) -> List[DetectedDefect]:
    """Connected components of (1 - p_background) > threshold -> DetectedDefect list.

    Components up to REFINE_MAX_SIDE_PX are re-segmented at full resolution
    (refine_component); confidence = mean defect probability over the network component
    (the peak saturates and ties, which made the AP ranking meaningless); class = the most
    probable kind over the defect's mask.
    """
    defect_p = 1.0 - probs[0]
    fg = (defect_p > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    log_img = cv2.log(np.maximum(image, 1.0)) if refine else None
    out = []
    for lab in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[lab])
        if area < min_area_px:
            continue
        comp = labels[y:y + bh, x:x + bw] == lab
        conf = float(defect_p[y:y + bh, x:x + bw][comp].mean())
        parts = []
        if refine and max(bw, bh) <= REFINE_MAX_SIDE_PX:
            parts = refine_component(log_img, comp, x, y)
        if not parts:
            parts = [(x, y, comp)]
        for px, py, mask in parts:
            out.append(_make_defect(probs, image, mmpp, px, py, mask, conf))
    return sort_by_confidence(out)


def _make_defect(probs, image, mmpp, x, y, mask, conf) -> DetectedDefect:
    """DetectedDefect of one mask whose box has its top-left corner at (x, y)."""
    h, w = image.shape
    bh, bw = mask.shape
    area = int(mask.sum())
    sl = (slice(y, y + bh), slice(x, x + bw))
    class_p = probs[1:, sl[0], sl[1]][:, mask].mean(1)
    kind = DEFECT_KINDS[int(np.argmax(class_p))]
    # contrast against the ring around the box
    m = max(3, int(0.5 * max(bw, bh)))
    ry0, ry1, rx0, rx1 = max(0, y - m), min(h, y + bh + m), max(0, x - m), min(w, x + bw + m)
    ring = image[ry0:ry1, rx0:rx1].copy()
    ring[y - ry0:y - ry0 + bh, x - rx0:x - rx0 + bw][mask] = np.nan
    bg = float(np.nanmedian(ring)) if np.isfinite(ring).any() else float(image[sl].mean())
    inside = float(image[sl][mask].mean())
    contrast = (bg - inside) / bg if bg > 0 else 0.0
    pts = np.argwhere(mask)
    if len(pts) > 1:
        hull = cv2.convexHull(pts[:, ::-1].astype(np.float32)).reshape(-1, 2)
        diff = hull[:, None, :] - hull[None, :, :]
        feret = float(np.sqrt((diff ** 2).sum(-1)).max()) + 1.0
    else:
        feret = 1.0
    return DetectedDefect(
        kind=kind, confidence=conf, box_xyxy=(x, y, x + bw, y + bh), mask=mask,
        size_mm=feret * mmpp, area_mm2=area * mmpp * mmpp, contrast=contrast,
        features={'class_probability': float(class_p.max() / max(class_p.sum(), 1e-6)),
                  'area_px': area})


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
