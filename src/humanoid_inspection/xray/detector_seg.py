"""Dense learned ADR, selectable as 'seg': a small U-Net that labels every working pixel of the
radiograph (background / gas_porosity / shrinkage / crack / inclusion), trained on the
simulator's exact masks (xray/train_seg.py,
`humanoid-inspection xray-train --model seg`).

Why a dense detector: the 'cnn' detector only judges the front end's candidates (local maxima
of the noise-normalised residual), so a defect without a candidate can never be found (about
one in ten of the defects >= 1 mm: faint shrinkage wider than the background square in thick
sections, pores beside a stronger neighbour), and its boxes are drawn around a thresholded
region. Here every pixel is judged, and the box is the box of the predicted mask, which is how
the ground-truth box is defined (the pixels the projected defect covers).

Input (seg_inputs), at the front end's working resolution (~0.15 mm a pixel, candidates.py),
four channels clipped to +-4: the front end's normalised residual z / 5 (what stands out of
the 1.7 mm background); the same against a COARSE_BACKGROUND_MM background (opening and
closing: straight edges stay exact, so shrinkage wider than 1.7 mm beside a wall shows, and so
do ribs narrower than the square, which the network tells apart by shape); the same noise
weighting applied to a Gaussian high-pass of the log image (sigma COARSE_SIGMA_MM) / 5; and
the part's structure (S - blur(S), sigma STRUCTURE_SIGMA_MM) x 10 (walls, holes, ribs).

Output: per pixel 5 class logits. Instances (decode_instances): the connected components of
p(defect) > threshold; a pore component holding two or more separate peaks of the front end's
residual z (touching pores of a cluster, which the truth boxes one by one) is split between
them, each pixel to its nearest peak (the rule the 'cnn' detector uses, separate_peak).
Confidence = the component's highest defect probability times the mean over its pixels
(instance_score); class = the kind with the highest summed probability over the mask.

Inference runs the network in bfloat16 (autocast; oneDNN uses the CPU's AMX/AVX-512 bf16
units where present) on INFERENCE_THREADS torch threads, over overlapping tiles of at most
TILE_PX working pixels. No ROS imports.
"""

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
from torch import nn

from humanoid_inspection.xray.candidates import (
    FrontEnd, FrontEndParams, compute_front_end, cv_threads)
from humanoid_inspection.xray.checkpoint import (
    float_state_dict, half_state_dict, read_checkpoint)
from humanoid_inspection.xray.detector import (
    DEFECT_KINDS, CancelCheck, check_cancel, mm_per_px, sort_by_confidence,
    validate_radiograph)
from humanoid_inspection.xray.detector_cnn import defect_from_region, separate_peak

CLASSES = ('background',) + DEFECT_KINDS
N_OUTPUTS = len(CLASSES)
IN_CHANNELS = 4
MODEL_DIR = Path(__file__).resolve().parent / 'models'
DEFAULT_WEIGHTS = MODEL_DIR / 'adr_seg.pt'
TRAIN_COMMAND = 'humanoid-inspection xray-train --model seg'

COARSE_BACKGROUND_MM = 4.0  # coarse background square: defects wider than the front end's
COARSE_SIGMA_MM = 1.5       # coarse high-pass (Gaussian)
STRUCTURE_SIGMA_MM = 3.0    # the part's own structure around a pixel
INPUT_CLIP = 4.0
TILE_PX = 1024              # network tiles (working pixels), overlapping by TILE_OVERLAP_PX
TILE_OVERLAP_PX = 48        # > the network's receptive field radius
INFERENCE_THREADS = 2
SPLIT_PEAK = 3.5            # a pore's own peak: |z| at least this (the candidates' floor),
SPLIT_MIN_PX = 3.0          # this far from a stronger one, with |z| dipping below
SPLIT_SADDLE = 0.8          # this share of it between them (detector_cnn's values)
SPLIT_MAX_AREA_PX = 4096    # only components this small with at most SPLIT_MAX_PEAKS peaks
SPLIT_MAX_PEAKS = 12        # are split (touching pores; a huge blob is not a pore cluster)
SPLIT_KINDS = ('gas_porosity',)   # only pores come in touching clusters


def _blur_reduced(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with a large sigma, computed on a reduced copy and brought back (the
    result is smooth, so the reduction loses nothing that matters and saves most of the
    cost of a long kernel)."""
    h, w = image.shape
    f = max(1, int(sigma_px // 3))
    if f == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma_px)
    small = cv2.resize(image, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def seg_inputs(fe: FrontEnd) -> np.ndarray:
    """The network input (IN_CHANNELS, h, w) float32 of one front end (see the module doc)."""
    weight = cv2.exp(0.5 * (fe.B - 9.0)) * np.float32(1.0 / fe.noise)
    side = max(3, int(round(COARSE_BACKGROUND_MM / fe.mm_per_px)) | 1)
    kernel = np.ones((side, side), np.uint8)
    coarse_bg = cv2.morphologyEx(cv2.morphologyEx(fe.S, cv2.MORPH_OPEN, kernel),
                                 cv2.MORPH_CLOSE, kernel)
    highpass = fe.S - _blur_reduced(fe.S, COARSE_SIGMA_MM / fe.mm_per_px)
    structure = fe.S - _blur_reduced(fe.S, STRUCTURE_SIGMA_MM / fe.mm_per_px)
    out = np.empty((IN_CHANNELS,) + fe.z.shape, np.float32)
    np.multiply(fe.z, 0.2, out=out[0])
    np.multiply((fe.S - coarse_bg) * weight, 0.2, out=out[1])
    np.multiply(highpass * weight, 0.2, out=out[2])
    np.multiply(structure, 10.0, out=out[3])
    np.clip(out, -INPUT_CLIP, INPUT_CLIP, out=out)
    return out


def _conv(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """Three-level U-Net (widths w, 2w, 4w) on 2x2-folded input, output per working pixel.

    The input is folded space-to-depth (2x2 pixel blocks become channels: nothing is thrown
    away, the convolutions run on a quarter of the positions) and the output unfolded the
    same way, so masks stay per pixel. Widths are multiples of 8 (oneDNN's fast
    kernels). BatchNorm is folded into the convolutions after training (fuse()).
    """

    def __init__(self, in_channels: int = IN_CHANNELS, width: int = 16, fold: int = 2):
        """Args: input channels, width of the first level, fold factor."""
        super().__init__()
        w = width
        self.config = {'in_channels': in_channels, 'width': width, 'fold': fold}
        self.fold = fold
        self.unfold_in = nn.PixelUnshuffle(fold)
        self.enc1 = nn.Sequential(*_conv(in_channels * fold * fold, w))
        self.enc2 = nn.Sequential(*_conv(w, 2 * w), *_conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(*_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w))
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = nn.Sequential(*_conv(4 * w, 2 * w))
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = nn.Sequential(*_conv(2 * w, w))
        self.head = nn.Conv2d(w, N_OUTPUTS * fold * fold, 1)
        self.fold_out = nn.PixelShuffle(fold)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 4 * self.fold

    def forward(self, x):
        """(N, C, H, W), H and W multiples of `multiple` -> (N, N_OUTPUTS, H, W) logits."""
        e1 = self.enc1(self.unfold_in(x))
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.fold_out(self.head(d1))

    def fuse(self) -> 'SegNet':
        """Fold every BatchNorm into the convolution before it (eval mode; same outputs)."""
        self.eval()
        for seq in (self.enc1, self.enc2, self.enc3, self.dec2, self.dec1):
            layers = list(seq)
            fused = []
            i = 0
            while i < len(layers):
                if (isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers)
                        and isinstance(layers[i + 1], nn.BatchNorm2d)):
                    fused.append(torch.nn.utils.fusion.fuse_conv_bn_eval(layers[i],
                                                                         layers[i + 1]))
                    i += 2
                else:
                    fused.append(layers[i])
                    i += 1
            seq._modules.clear()
            for k, layer in enumerate(fused):
                seq.add_module(str(k), layer)
        return self


def save_model(model: SegNet, path, meta: Optional[dict] = None,
               front_end: FrontEndParams = FrontEndParams()) -> None:
    """Save weights (float16) + config + the front-end settings + training metadata."""
    torch.save({'config': model.config, 'state_dict': half_state_dict(model),
                'meta': meta or {}, 'classes': CLASSES, 'n_outputs': N_OUTPUTS,
                'front_end': dict(front_end.__dict__)}, str(path))


def load_model(path=None) -> SegNet:
    """Load a SegNet saved by save_model (default: the committed weights), BatchNorm fused.

    Raises:
        FileNotFoundError: no file. ValueError: not a SegNet checkpoint of these classes.
    """
    path, ckpt = read_checkpoint(path if path is not None else DEFAULT_WEIGHTS, 'SegNet',
                                 TRAIN_COMMAND)
    if tuple(ckpt.get('classes', ())) != CLASSES or ckpt.get('n_outputs') != N_OUTPUTS:
        raise ValueError(f'{path}: classes {ckpt.get("classes")} / outputs '
                         f'{ckpt.get("n_outputs")} differ from {CLASSES} / {N_OUTPUTS}')
    model = SegNet(**ckpt['config'])
    try:
        model.load_state_dict(float_state_dict(ckpt['state_dict']))
    except RuntimeError as exc:
        raise ValueError(f'{path}: weights do not fit SegNet{ckpt["config"]} ({exc})') from exc
    model.meta = ckpt.get('meta', {})
    model.front_end = FrontEndParams(**ckpt.get('front_end', {}))
    return model.fuse()


def tile_spans(n: int, tile: int, overlap: int):
    """The (start, stop) spans that tile 0..n: one span when n fits a tile, else spans of at
    most tile - 2 x overlap (each is run with `overlap` more context on both sides)."""
    if n <= tile:
        return [(0, n)]
    step = max(1, tile - 2 * overlap)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def predict_maps(model: SegNet, inputs: np.ndarray, should_cancel: CancelCheck = None,
                 tile: int = TILE_PX, overlap: int = TILE_OVERLAP_PX,
                 bf16: bool = True) -> np.ndarray:
    """Class probabilities (N_OUTPUTS, h, w) float32 (softmax over CLASSES) of a (C, h, w)
    input.

    Tiles of at most `tile` pixels overlapping by `overlap`; cancellation checked between.
    """
    _, h, w = inputs.shape
    out = np.empty((N_OUTPUTS, h, w), np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(INFERENCE_THREADS)
    try:
        with torch.inference_mode(), torch.autocast('cpu', torch.bfloat16, enabled=bf16):
            for y0, y1 in tile_spans(h, tile, overlap):
                for x0, x1 in tile_spans(w, tile, overlap):
                    check_cancel(should_cancel)
                    ty0, tx0 = max(0, y0 - overlap), max(0, x0 - overlap)
                    ty1, tx1 = min(h, y1 + overlap), min(w, x1 + overlap)
                    patch = inputs[:, ty0:ty1, tx0:tx1]
                    ph, pw = patch.shape[1:]
                    pad_h, pad_w = (-ph) % model.multiple, (-pw) % model.multiple
                    if pad_h or pad_w:
                        patch = np.pad(patch, ((0, 0), (0, pad_h), (0, pad_w)), mode='edge')
                    x = torch.from_numpy(np.ascontiguousarray(patch))[None].contiguous(
                        memory_format=torch.channels_last)
                    logits = model(x)[0].float()
                    maps = torch.softmax(logits, 0).numpy()
                    out[:, y0:y1, x0:x1] = maps[:, y0 - ty0:y1 - ty0, x0 - tx0:x1 - tx0]
    finally:
        torch.set_num_threads(previous)
    return out


def instance_score(defect_p: np.ndarray) -> float:
    """Confidence of one instance from the defect probabilities of its pixels: the highest
    times the mean (a faint or ragged blob ranks below a solid one of the same peak)."""
    return float(defect_p.max() * defect_p.mean())


def component_peaks(z: np.ndarray, comp: np.ndarray) -> list:
    """The separate peaks of |z| inside one component: (row, col) in its box.

    Local maxima (3x3) of |z| at or above SPLIT_PEAK, strongest first; one is kept when it
    lies at least SPLIT_MIN_PX from every peak kept before and is a defect of its own beside
    it (detector_cnn.separate_peak: |z| dips below SPLIT_SADDLE x its value between them).
    """
    mag = np.where(comp, np.abs(z), 0.0).astype(np.float32)
    local = cv2.dilate(mag, np.ones((3, 3), np.uint8))
    rows, cols = np.nonzero((mag >= local) & (mag >= SPLIT_PEAK))
    order = np.argsort(-mag[rows, cols], kind='stable')
    peaks = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if all(separate_peak(mag, 1.0, (c, r), (pc, pr), SPLIT_MIN_PX, SPLIT_SADDLE)
               for pr, pc in peaks):
            peaks.append((r, c))
            if len(peaks) > SPLIT_MAX_PEAKS:
                break
    return peaks


def decode_instances(maps: np.ndarray, z: np.ndarray, threshold: float = 0.5,
                     min_area_px: int = 2):
    """Instances of a (N_OUTPUTS, h, w) probability map: list of dicts x0, y0, mask (bool,
    its box), score, kind, class_probability (working pixels); z: the front end's residual.

    Components of p(defect) > threshold; a component of a SPLIT_KINDS kind with two or more
    separate peaks of |z| (component_peaks; at most SPLIT_MAX_PEAKS, SPLIT_MAX_AREA_PX) is
    split, each pixel going to its nearest peak;
    pieces under min_area_px pixels are dropped.
    """
    defect_p = 1.0 - maps[0]
    fg = defect_p > threshold
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return []
    found = []
    for lab in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[lab])
        if area < min_area_px:
            continue
        comp = labels[y:y + bh, x:x + bw] == lab
        comp_kind = int(np.argmax(maps[1:, y:y + bh, x:x + bw][:, comp].sum(1)))
        peaks = component_peaks(z[y:y + bh, x:x + bw], comp) \
            if area <= SPLIT_MAX_AREA_PX and DEFECT_KINDS[comp_kind] in SPLIT_KINDS else []
        if 2 <= len(peaks) <= SPLIT_MAX_PEAKS:
            rr, cc = np.nonzero(comp)
            pr = np.array([p[0] for p in peaks], float)
            pc = np.array([p[1] for p in peaks], float)
            nearest = np.argmin((rr[:, None] - pr) ** 2 + (cc[:, None] - pc) ** 2, axis=1)
            pieces = []
            for k in range(len(peaks)):
                sel = nearest == k
                if sel.sum() < min_area_px:
                    continue
                r0, r1 = rr[sel].min(), rr[sel].max() + 1
                c0, c1 = cc[sel].min(), cc[sel].max() + 1
                mask = np.zeros((r1 - r0, c1 - c0), bool)
                mask[rr[sel] - r0, cc[sel] - c0] = True
                pieces.append((x + int(c0), y + int(r0), mask))
        else:
            pieces = [(x, y, comp)]
        for px, py, mask in pieces:
            mh, mw = mask.shape
            sl = (slice(py, py + mh), slice(px, px + mw))
            class_p = maps[1:, sl[0], sl[1]][:, mask].sum(1)
            found.append({'x0': px, 'y0': py, 'mask': mask,
                          'score': instance_score(defect_p[sl][mask]),
                          'kind': DEFECT_KINDS[int(np.argmax(class_p))],
                          'class_probability': float(class_p.max() / max(class_p.sum(), 1e-6))})
    return found


class SegDetector:
    """SegNet segmentation + connected components (touching pores split)."""

    name = 'seg'

    def __init__(self, weights=None, threshold: float = 0.5, min_score: float = 0.05,
                 max_detections: int = 100, model: Optional[SegNet] = None,
                 bf16: bool = True):
        """Args: weights path (default committed), defect-probability threshold of the mask,
        lowest confidence reported, most detections per radiograph; or an already built
        model; whether the network runs in bfloat16."""
        self.model = model if model is not None else load_model(weights)
        self.model.eval()
        self.params = getattr(self.model, 'front_end', FrontEndParams())
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f'threshold must lie in (0, 1), got {threshold}')
        self.threshold = float(threshold)
        self.min_score = float(min_score)
        self.max_detections = int(max_detections)
        self.bf16 = bool(bf16)

    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None):
        """Find defects (same contract as ClassicalDetector.detect).

        Raises:
            ValueError: bad image or geometry. InspectionCancelled: cancelled.
        """
        img = validate_radiograph(image, copy=False)
        mmpp = mm_per_px(pixel_pitch_mm, magnification)
        with cv_threads():
            fe = compute_front_end(img, mmpp, self.params, should_cancel)
            inputs = seg_inputs(fe)
        check_cancel(should_cancel)
        maps = predict_maps(self.model, inputs, should_cancel, bf16=self.bf16)
        check_cancel(should_cancel)
        with cv_threads():
            return self._defects(fe, maps, mmpp)

    def _defects(self, fe: FrontEnd, maps: np.ndarray, mmpp_full: float) -> list:
        found = [f for f in decode_instances(maps, fe.z, self.threshold)
                 if f['score'] >= self.min_score]
        found.sort(key=lambda f: -f['score'])
        out = []
        for f in found[:self.max_detections]:
            mh, mw = f['mask'].shape
            box = np.array([f['x0'], f['y0'], f['x0'] + mw, f['y0'] + mh], float)
            resid = (fe.S - fe.B)[f['y0']:f['y0'] + mh, f['x0']:f['x0'] + mw][f['mask']]
            sign = 1.0 if f['kind'] != 'inclusion' and float(np.mean(resid)) >= 0 else -1.0
            features = {'class_probability': f['class_probability'],
                        'z_peak': float(np.max(np.abs(
                            fe.z[f['y0']:f['y0'] + mh, f['x0']:f['x0'] + mw][f['mask']])))}
            out.append(defect_from_region(fe, f['x0'], f['y0'], f['mask'], box, sign,
                                          f['kind'], f['score'], mmpp_full, features))
        return sort_by_confidence(out)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
