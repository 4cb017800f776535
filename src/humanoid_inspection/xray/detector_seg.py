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
p(defect) > threshold. Touching pores of a cluster come out as one instance (the truth boxes
them one by one); splitting pore components at the separate peaks of the residual z, the
rule the 'cnn' detector uses, was measured and lowered AP50 (docs/xray_inspection.md).
Confidence = the component's highest defect probability times the mean over its pixels
(instance_score); class = the kind with the highest summed probability over the mask.

Inference runs the network on the part's window only (material_window: the open beam around
a part holds no defect), aligned to the network's 8-pixel grid, in bfloat16 (autocast) where
the CPU has bf16 units (AMX or AVX-512 BF16: native_bf16) and in float32 elsewhere, on
INFERENCE_THREADS torch threads, over overlapping tiles of at most TILE_PX working pixels.
No ROS imports.
"""

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
from torch import nn

from humanoid_inspection.xray.candidates import (
    FrontEnd, FrontEndParams, cv_threads, open_beam_level, radiograph_front_end)
from humanoid_inspection.xray.checkpoint import (
    half_state_dict, load_weights, read_checkpoint)
from humanoid_inspection.xray.detector import (
    DEFECT_KINDS, CancelCheck, check_cancel, mm_per_px, sort_by_confidence)
from humanoid_inspection.xray.detector_cnn import defect_from_region

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
INPUT_GAIN = 0.2           # residuals in noise units x this
MATERIAL_LOG = 0.02        # material: log level this far below the open beam's
TILE_PX = 1024              # network tiles (working pixels), overlapping by TILE_OVERLAP_PX
TILE_OVERLAP_PX = 48        # > the network's receptive field radius
INFERENCE_THREADS = 2


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


def material_window(fe: FrontEnd, margin: int = TILE_OVERLAP_PX, align: int = 8):
    """(y0, y1, x0, x1) working pixels of the part plus `margin`: the rows and columns that
    hold material (background level below the open beam's, its 99th percentile, by more than
    MATERIAL_LOG); the whole image when nothing is open beam. Defects lie in the material, so
    the open beam around a part (half of a radiograph on average here) is not run through the
    network. y0 and x0 are multiples of `align` (SegNet.multiple): the network's folds and
    poolings then fall on the same grid as on the whole image, and so do its answers (off
    the grid, validation AP50 was 0.479 instead of 0.509)."""
    h, w = fe.B.shape
    material = fe.B < open_beam_level(fe.B) - MATERIAL_LOG
    rows = np.nonzero(material.any(1))[0]
    cols = np.nonzero(material.any(0))[0]
    if not len(rows):
        return 0, h, 0, w
    y0, x0 = max(0, int(rows[0]) - margin), max(0, int(cols[0]) - margin)
    return (y0 - y0 % align, min(h, int(rows[-1]) + 1 + margin),
            x0 - x0 % align, min(w, int(cols[-1]) + 1 + margin))


def seg_inputs(fe: FrontEnd) -> np.ndarray:
    """The network input (IN_CHANNELS, h, w) float32 of one front end (see the module doc)."""
    S, z = fe.S, fe.z
    weight = cv2.multiply(fe.weight, 1.0 / fe.noise * INPUT_GAIN)   # the front end's weighting
    side = max(3, int(round(COARSE_BACKGROUND_MM / fe.mm_per_px)) | 1)
    kernel = np.ones((side, side), np.uint8)
    coarse_bg = cv2.morphologyEx(cv2.morphologyEx(S, cv2.MORPH_OPEN, kernel),
                                 cv2.MORPH_CLOSE, kernel)
    out = np.empty((IN_CHANNELS,) + S.shape, np.float32)
    cv2.multiply(z, INPUT_GAIN, dst=out[0])
    cv2.multiply(cv2.subtract(S, coarse_bg), weight, dst=out[1])
    cv2.multiply(cv2.subtract(S, _blur_reduced(S, COARSE_SIGMA_MM / fe.mm_per_px)), weight,
                 dst=out[2])
    cv2.multiply(cv2.subtract(S, _blur_reduced(S, STRUCTURE_SIGMA_MM / fe.mm_per_px)), 10.0,
                 dst=out[3])
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
    model = load_weights(SegNet(**ckpt['config']), ckpt, path)
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


def native_bf16() -> bool:
    """Whether this CPU has the bfloat16 units oneDNN runs bf16 convolutions on (AMX or
    AVX-512 BF16). Without them bf16 is emulated: on an AVX2-only CPU (this project's 2-core
    machine since 27 Nov) the seg network took ~950 ms per 1024² radiograph in bf16 against
    ~150 ms in float32 (the whole detector), while on a CPU with them bf16 was the faster
    (the network alone on a whole 1024² image: ~25 vs ~75 ms)."""
    cpu = getattr(torch, 'cpu', None)
    for name in ('_is_amx_tile_supported', '_is_avx512_bf16_supported'):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except (RuntimeError, AttributeError):
            continue
    return False


def predict_maps(model: SegNet, inputs: np.ndarray, should_cancel: CancelCheck = None,
                 tile: int = TILE_PX, overlap: int = TILE_OVERLAP_PX,
                 bf16: Optional[bool] = None) -> np.ndarray:
    """Class probabilities (N_OUTPUTS, h, w) float32 (softmax over CLASSES) of a (C, h, w)
    input.

    Tiles of at most `tile` pixels overlapping by `overlap`; cancellation checked between.
    bf16: run in bfloat16 autocast; None: where the CPU has bf16 units (native_bf16).
    """
    if bf16 is None:
        bf16 = native_bf16()
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


def decode_instances(maps: np.ndarray, threshold: float = 0.5, min_area_px: int = 2):
    """Instances of a (N_OUTPUTS, h, w) probability map: list of dicts x0, y0, mask (bool,
    its box), score, kind, class_probability (working pixels).

    The connected components (8-connected) of p(defect) > threshold of at least min_area_px
    pixels; kind = the defect class with the highest summed probability over the mask;
    score = instance_score of the defect probabilities of its pixels.
    """
    defect_p = 1.0 - maps[0]
    fg = (defect_p > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    found = []
    for lab in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[lab])
        if area < min_area_px:
            continue
        mask = labels[y:y + bh, x:x + bw] == lab
        class_p = maps[1:, y:y + bh, x:x + bw][:, mask].sum(1)
        found.append({'x0': x, 'y0': y, 'mask': mask,
                      'score': instance_score(defect_p[y:y + bh, x:x + bw][mask]),
                      'kind': DEFECT_KINDS[int(np.argmax(class_p))],
                      'class_probability': float(class_p.max() / max(class_p.sum(), 1e-6))})
    return found


class SegDetector:
    """SegNet segmentation + connected components."""

    name = 'seg'

    def __init__(self, weights=None, threshold: float = 0.6, min_score: float = 0.05,
                 max_detections: int = 100, model: Optional[SegNet] = None,
                 bf16: Optional[bool] = None):
        """Args: weights path (default committed), defect-probability threshold of the mask,
        lowest confidence reported, most detections per radiograph; or an already built
        model; whether the network runs in bfloat16 (None: where the CPU has bf16 units,
        native_bf16; emulated bf16 is ~6x slower than float32)."""
        self.model = model if model is not None else load_model(weights)
        self.model.eval()
        self.params = getattr(self.model, 'front_end', FrontEndParams())
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f'threshold must lie in (0, 1), got {threshold}')
        self.threshold = float(threshold)
        self.min_score = float(min_score)
        self.max_detections = int(max_detections)
        self.bf16 = native_bf16() if bf16 is None else bool(bf16)

    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None):
        """Find defects (same contract as ClassicalDetector.detect).

        Raises:
            ValueError: bad image or geometry. InspectionCancelled: cancelled.
        """
        fe, mmpp = radiograph_front_end(image, pixel_pitch_mm, magnification, self.params,
                                        should_cancel)
        return self.detect_on_front_end(fe, mmpp, should_cancel)

    def detect_on_front_end(self, fe: FrontEnd, mmpp: float,
                            should_cancel: CancelCheck = None) -> list:
        """The detections of an already computed front end (its background, residual and
        working resolution must be those of self.params)."""
        with cv_threads():
            prepared = self.prepare(fe)
        return self.detect_prepared(fe, mmpp, prepared, should_cancel)

    def prepare(self, fe: FrontEnd):
        """(window, inputs): the part's window and the network input of the whole image
        (the blurs then see what training saw). OpenCV and numpy only, no torch: it may run
        on a thread beside another detector's network (the ensemble does)."""
        return material_window(fe, align=self.model.multiple), seg_inputs(fe)

    def detect_prepared(self, fe: FrontEnd, mmpp: float, prepared,
                        should_cancel: CancelCheck = None) -> list:
        """The detections from prepare()'s window and inputs."""
        (y0, y1, x0, x1), inputs = prepared
        check_cancel(should_cancel)
        maps = predict_maps(self.model, inputs[:, y0:y1, x0:x1], should_cancel,
                            bf16=self.bf16)
        check_cancel(should_cancel)
        with cv_threads():
            return self._defects(fe, maps, mmpp, y0, x0)

    def _defects(self, fe: FrontEnd, maps: np.ndarray, mmpp_full: float, y0: int = 0,
                 x0: int = 0) -> list:
        """Detections of the probability maps of the window whose top-left working pixel is
        (x0, y0)."""
        found = [f for f in decode_instances(maps, self.threshold)
                 if f['score'] >= self.min_score]
        found.sort(key=lambda f: -f['score'])
        out = []
        for f in found[:self.max_detections]:
            f['x0'] += x0
            f['y0'] += y0
            mh, mw = f['mask'].shape
            sl = (slice(f['y0'], f['y0'] + mh), slice(f['x0'], f['x0'] + mw))
            box = np.array([f['x0'], f['y0'], f['x0'] + mw, f['y0'] + mh], float)
            z = fe.z[sl][f['mask']]
            sign = -1.0 if f['kind'] == 'inclusion' else 1.0
            features = {'class_probability': f['class_probability'],
                        'z_peak': float(np.max(np.abs(z)))}
            out.append(defect_from_region(fe, f['x0'], f['y0'], f['mask'], box, sign,
                                          f['kind'], f['score'], mmpp_full, features))
        return sort_by_confidence(out)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
