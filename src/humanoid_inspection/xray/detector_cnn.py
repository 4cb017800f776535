"""Learned ADR ('cnn', the default): classical candidates + a small CNN that judges each one.

1. The shared front end (candidates.py): working resolution ~0.15 mm, log-intensity, small
   opening/closing background, noise-normalised residual z, local maxima of |z| = candidates
   (a few hundred per radiograph, most of them part structure or noise); those above
   MIN_PEAK noise units go on. A network trained with blob candidates (its checkpoint's
   FrontEndParams.blob_sigma_px > 0: the one against the part's model) also judges the
   maxima of the Laplacian of Gaussian of z (candidates.detector_candidates).
2. `PatchNet` (torch, 107 k parameters at width 24) looks at a 19x19 working-pixel patch
   around every candidate (four channels: polarity x z, the local log-intensity, the same
   4x wider, the polarity) and outputs the class (background / gas_porosity / shrinkage /
   crack / inclusion) and the defect's box as log-distances from the candidate to its four
   sides. It is trained on the simulator's radiographs by `humanoid-inspection xray-train`
   (train_cli.py).
3. Detections, strongest first: candidates with defect probability (1 - p_background) >=
   `min_score`; region = the residual flooded around the candidate (candidates.flood_region),
   clipped to the network's box grown by half; box = mean of the region's box and the
   network's (cracks: the region's, in-line pieces merged); a candidate inside an already
   reported region is skipped, unless the network calls it a pore and it is a separate peak
   (separate_peak: two touching pores of a cluster are two truth boxes; with blob
   candidates a pore or shrinkage that is a separate peak of z or of the blob response,
   CnnDetector._own_defect); mask = the region
   mapped back to radiograph pixels; contrast from the residual; size = Feret diameter of the
   region.
4. The box refiner stored in the same checkpoint (box_refiner.py) redraws every box from a
   crop centred on the detection's candidate, at the scale where the box is <= 17 px (boxes
   larger than 68 working px keep theirs), averaged over REFINE_TRANSFORMS flips/transposes
   of the crop; of two detections that end with nearly the same box (IoU > DUPLICATE_IOU,
   or > SAME_KIND_DUPLICATE_IOU when both are of one kind) the lower-scoring one is dropped.

Cost: a few OpenCV passes at working resolution + one batched forward pass over the patches
(about 1.5 MFLOP each). No ROS imports.
"""

import math
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from torch import nn

from humanoid_inspection.xray.box_refiner import REFINE_PX, BoxRefiner, ScaledMaps, refine
from humanoid_inspection.xray.candidates import (
    BLOB_MIN_RESPONSE, PATCH_CHANNELS, PATCH_PX, FrontEnd, FrontEndParams, cv_threads,
    detector_candidates, extract_patches, flood_region, radiograph_front_end)
from humanoid_inspection.xray.checkpoint import (
    half_state_dict, load_weights, read_checkpoint)
from humanoid_inspection.xray.detector import (
    DEFECT_KINDS, CancelCheck, DetectedDefect, check_cancel, mm_per_px, sort_by_confidence)

CLASSES = ('background',) + DEFECT_KINDS
MODEL_DIR = Path(__file__).resolve().parent / 'models'
DEFAULT_WEIGHTS = MODEL_DIR / 'adr_patchnet.pt'
BOX_LOG_OFFSET = 0.25        # box distances d (working px) are predicted as log(d + offset)
# region of a detection: pixels around the candidate above max(floor, fraction x its peak) in
# noise units (candidates.flood_region); cracks are long and faint along their ends
FLOOD_SETTINGS = {'crack': (0.15, 1.5), 'default': (0.35, 2.5)}
FLOOD_WINDOW_PX = 64
# kinds whose box is the region's own box; for the others the box is the mean of the region's
# box and the network's (on validation radiographs, seeds 50000..: IoU >= 0.5 for 84 % vs 81 %
# of the pores >= 1 mm, 96 % vs 80 % of the inclusions; cracks 78 % vs 67 %)
REGION_BOX_KINDS = ('crack',)
# candidates are found from |z| > 2.5 for training; at inspection only those above MIN_PEAK go
# through the network: 55 % fewer candidates (mostly noise), 9 % of the training set's defect
# candidates (defects often have several). On validation radiographs (seeds 50000..50089)
# 2.5 / 3 / 4 / 5 gave AP50 0.506 / 0.517 / 0.516 / 0.511 and 0.78 / 0.43 / 0.34 / 0.31 false
# alarms per image at 0.5: the faint candidates were mostly false alarms. With the box refiner
# (its boxes make more of the faint candidates true positives), on the same radiographs and on
# 90 more (seeds 50090..50179): 4 / 3.5 / 3 / 2.5 gave AP50 0.589 / 0.598 / 0.597 / 0.600 and
# 0.533 / 0.547 / 0.552 / 0.559, false alarms per image 0.34 / 0.36 / 0.41 / 0.58 and 0.32 /
# 0.36 / 0.40 / 0.52, recall >= 1 mm at <= 0.2 of them 0.754 / 0.763 / 0.763 / 0.754 and
# 0.702 / 0.702 / 0.702 / 0.694: 3.5 (3 and 2.5 add false alarms at the operating score).
MIN_PEAK = 3.5
# a candidate inside the region of a reported detection is reported too when its kind is one
# of SPLIT_KINDS, it lies at least SPLIT_MIN_PX from that detection's candidate and the signal
# between them dips below SPLIT_SADDLE x its own peak (separate_peak): touching pores
SPLIT_KINDS = ('gas_porosity',)
SPLIT_MIN_PX = 3.0
SPLIT_SADDLE = 0.8
# with blob candidates (FrontEndParams.blob_sigma_px > 0: the network trained with them) the
# split also applies where the blob response dips (candidates.blob_response), for these kinds
BLOB_SPLIT_KINDS = ('gas_porosity', 'shrinkage')
# the box refiner's answer is averaged over this many of the 8 flips/transposes of its crop
# (test-time augmentation). Validation radiographs (seeds 50000..50359), final networks:
# 1 / 4 / 8 transforms gave AP50 0.581 / 0.591 / 0.588 and AP50:95 0.358 / 0.381 / 0.388 (the
# previous weights: 1 / 8 gave 0.540 / 0.548 and 0.331 / 0.353); 4 costs half of 8
REFINE_TRANSFORMS = 4
# ... for the REFINE_TTA_MAX highest-scoring detections; the others get one pass (bounds the
# cost on images with many detections: real GDXray radiographs have ~80, where 4 passes of the
# refiner took 90 ms per image, one 21 ms; the synthetic radiographs have far fewer)
REFINE_TTA_MAX = 24
# after refinement two candidates of one defect can end with the same box: the lower-scoring
# of two detections whose boxes overlap by more than this IoU is dropped (a duplicate is a
# false alarm; validation: 0.378 -> 0.367 false alarms per image, AP50 0.590 -> 0.591)
DUPLICATE_IOU = 0.7
# ... and of two detections of the same kind, from this IoU: a shrinkage or crack found
# from two candidates whose regions do not touch ends as two boxes over one defect (IoU
# 0.57-0.77 with its truth and 0.58-0.70 with each other, more often with blob candidates).
# Validation (seeds 50000..50089): no change with the image-only network or the earlier
# reference one; with blob candidates 4 false alarms fewer at score 0.5 (nominal)
SAME_KIND_DUPLICATE_IOU = 0.5
# on the residual against a registered part model (detector_reference), candidates with
# |z| >= 8 were defects in 190 of 192 cases (validation, 90 radiographs with pose, kV and
# size errors), yet the network scored 4 of those true ones background (trained on the
# image-only residual, it learned to reject wall-flank and rim residuals): such a candidate
# is reported with at least this score
SURE_SCORE = 0.9
# kinds a candidate's polarity allows (transmission radiographs: less material is brighter):
# a void (pore, shrinkage, crack) can only be brighter than its surroundings, an inclusion
# (denser than the alloy) only darker. The network sees the polarity but still gives the
# other kinds some probability; that share is moved to background (polarity_consistent)
VOID_KINDS = ('gas_porosity', 'shrinkage', 'crack')
DARK_KINDS = ('inclusion',)
MERGE_GAP_PX = 12            # crack pieces closer than this (working px, ~1.8 mm) ...
MERGE_MAX_ANGLE_DEG = 30.0   # ... and in line (axes and joining line within this) are one


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
               front_end: Optional[FrontEndParams] = None,
               refiner: Optional[BoxRefiner] = None) -> None:
    """Save weights (float16), config, the front-end settings, training metadata and the
    optional box refiner (box_refiner.py) in one file."""
    state = half_state_dict(model)
    fe = (front_end or FrontEndParams()).__dict__
    ckpt = {'config': model.config, 'state_dict': state, 'meta': meta or {},
            'classes': CLASSES, 'front_end': dict(fe), 'patch_px': PATCH_PX}
    if refiner is not None:
        ckpt['box_refiner'] = {'config': refiner.config, 'state_dict': half_state_dict(refiner),
                               'refine_px': REFINE_PX}
    torch.save(ckpt, str(path))


def load_model(path=None) -> PatchNet:
    """Load a PatchNet saved by save_model (default: the committed weights).

    The model gets `.meta` (training metadata), `.front_end` (FrontEndParams) and
    `.box_refiner` (a BoxRefiner, or None when the file has none).

    Raises:
        FileNotFoundError: no file. ValueError: not a PatchNet checkpoint of these classes.
    """
    path, ckpt = read_checkpoint(path if path is not None else DEFAULT_WEIGHTS, 'PatchNet',
                                 'humanoid-inspection xray-train')
    if tuple(ckpt.get('classes', ())) != CLASSES or ckpt.get('patch_px') != PATCH_PX:
        raise ValueError(f'{path}: classes/patch size differ from {CLASSES} / {PATCH_PX} px')
    model = load_weights(PatchNet(**ckpt['config']), ckpt, path)
    model.meta = ckpt.get('meta', {})
    model.front_end = FrontEndParams(**ckpt.get('front_end', {}))
    model.box_refiner = None
    if 'box_refiner' in ckpt:
        saved = ckpt['box_refiner']
        if not isinstance(saved, dict) or saved.get('refine_px') != REFINE_PX:
            raise ValueError(f'{path}: box refiner missing its config or not of '
                             f'{REFINE_PX} px crops')
        model.box_refiner = load_weights(BoxRefiner(**saved['config']), saved, path).eval()
    model.eval()
    return model


PREDICT_THREADS = 1


def predict(model: PatchNet, patches: np.ndarray, batch: int = 4096,
            threads: int = PREDICT_THREADS):
    """(probabilities (N, classes), box log-distances (N, 4)) of a patch array.

    Runs channels-last (NHWC: about twice as fast as NCHW for these small patches on this
    CPU) on `threads` torch threads (restored afterwards). One thread by default: on the
    shared 2-core machine a 2-thread forward pass of 300 patches took 4-5 ms when the other
    core was free but ~100 ms whenever another process held it (the threads wait for each
    other), one thread 6-8 ms either way.
    """
    probs = np.zeros((len(patches), len(CLASSES)), np.float32)
    boxes = np.zeros((len(patches), 4), np.float32)
    model = model.to(memory_format=torch.channels_last)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        with torch.inference_mode():
            for i in range(0, len(patches), batch):
                x = torch.from_numpy(np.ascontiguousarray(patches[i:i + batch])).contiguous(
                    memory_format=torch.channels_last)
                logits, box = model(x)
                probs[i:i + batch] = torch.softmax(logits, 1).numpy()
                boxes[i:i + batch] = box.numpy()
    finally:
        torch.set_num_threads(previous)
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

    def __init__(self, weights=None, min_score: float = 0.05, max_detections: int = 100,
                 min_peak: float = MIN_PEAK, model: Optional[PatchNet] = None,
                 refine_boxes: bool = True, refine_transforms: int = REFINE_TRANSFORMS,
                 polarity_rule: bool = True):
        """Args: weights path (default committed), lowest defect probability reported,
        most detections per radiograph, lowest |z| of a candidate shown to the network;
        or an already built model; whether the checkpoint's box refiner (when it has one)
        redraws the boxes of small detections; over how many of the 8 flips/transposes of
        its crop the refiner's boxes are averaged (1 to 8); whether the kinds a candidate's
        polarity rules out count as background (polarity_consistent; measured for the
        image-only network, off for the reference-trained one: detector_reference)."""
        self.model = model if model is not None else load_model(weights)
        self.model.eval()
        self.refiner = getattr(self.model, 'box_refiner', None) if refine_boxes else None
        self.params = getattr(self.model, 'front_end', FrontEndParams())
        self.params = replace(self.params, peak_threshold=max(self.params.peak_threshold,
                                                              float(min_peak)))
        self.min_score = float(min_score)
        self.max_detections = int(max_detections)
        if not 1 <= int(refine_transforms) <= 8:
            raise ValueError(f'refine_transforms must lie in 1..8, got {refine_transforms}')
        self.refine_transforms = int(refine_transforms)
        self.polarity_rule = bool(polarity_rule)

    def detect(self, image: np.ndarray, pixel_pitch_mm: float, magnification: float,
               should_cancel: CancelCheck = None) -> List[DetectedDefect]:
        """Find defects (same contract as ClassicalDetector.detect).

        Raises:
            ValueError: bad image or geometry. InspectionCancelled: cancelled.
        """
        with cv_threads():
            return self._detect(image, pixel_pitch_mm, magnification, should_cancel)

    def _detect(self, image, pixel_pitch_mm, magnification, should_cancel):
        fe, mmpp = radiograph_front_end(image, pixel_pitch_mm, magnification, self.params,
                                        should_cancel)
        return self.detect_on_front_end(fe, mmpp, should_cancel)

    def detect_on_front_end(self, fe: FrontEnd, mmpp: float,
                            should_cancel: CancelCheck = None,
                            sure_z: Optional[float] = None) -> List[DetectedDefect]:
        """The detections of an already computed front end (its background, residual and
        working resolution must be those of self.params; run inside cv_threads()).

        sure_z: where the background is known rather than estimated (a registered part
        model: detector_reference), a candidate whose |z| reaches this is a defect whatever
        the network says: its score is raised to at least SURE_SCORE. None: the network
        decides alone (the image-only background leaves part structure in z).
        """
        xs, ys, blob = detector_candidates(fe.z, self.params)
        check_cancel(should_cancel)
        if len(xs) == 0:
            return []
        patches = extract_patches(fe, xs, ys, self.params.context_factor)
        probs, log_dist = predict(self.model, patches)
        check_cancel(should_cancel)
        return self._detections(fe, xs, ys, probs, log_dist, mmpp, sure_z, blob)

    def _detections(self, fe: FrontEnd, xs, ys, probs, log_dist, mmpp_full, sure_z=None,
                    blob=None):
        if self.polarity_rule:
            probs = polarity_consistent(probs, fe.z[ys, xs] > 0)
        score = 1.0 - probs[:, 0]
        if sure_z is not None:
            sure = np.abs(fe.z[ys, xs]) >= sure_z
            score = np.where(sure, np.maximum(score.astype(np.float64), SURE_SCORE), score)
        boxes = boxes_from_distances(xs, ys, log_dist)
        order = np.argsort(-score, kind='stable')
        order = order[score[order] >= self.min_score]
        # owner[sign][y, x]: 1 + index in `found` of the detection whose region holds (x, y)
        owner = {1.0: np.zeros(fe.z.shape, np.int32), -1.0: np.zeros(fe.z.shape, np.int32)}
        found = []
        for i in order:
            if len(found) >= self.max_detections:
                break
            x, y = int(xs[i]), int(ys[i])
            kind_p = probs[i, 1:]
            kind = DEFECT_KINDS[int(np.argmax(kind_p))]
            sign = 1.0 if fe.z[y, x] > 0 else -1.0
            held_by = int(owner[sign][y, x])
            if held_by and not self._own_defect(fe.z, blob, sign, (x, y),
                                                found[held_by - 1]['centre'], kind):
                continue                  # another candidate of a defect already reported
            fraction, floor = FLOOD_SETTINGS.get(kind, FLOOD_SETTINGS['default'])
            x0, y0, mask = flood_region(fe.z, x, y, sign, fraction, floor, FLOOD_WINDOW_PX)
            if kind not in REGION_BOX_KINDS:
                x0, y0, mask = clip_region(x0, y0, mask, boxes[i], x, y)
            view = owner[sign][y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            view[mask & (view == 0)] = len(found) + 1
            region_box = np.array([x0, y0, x0 + mask.shape[1], y0 + mask.shape[0]], float)
            if kind in REGION_BOX_KINDS:
                box = region_box
            else:     # mean of the region's box and the network's box (measured: better)
                box = 0.5 * (region_box + boxes[i])
            found.append({'x0': x0, 'y0': y0, 'mask': mask, 'box': box, 'sign': sign,
                          'kind': kind, 'score': float(score[i]), 'centre': (x, y),
                          'features': {'class_probability':
                                       float(kind_p.max() / max(kind_p.sum(), 1e-6)),
                                       'z_peak': float(abs(fe.z[y, x]))}})
        found = merge_touching(found, REGION_BOX_KINDS, MERGE_GAP_PX, MERGE_MAX_ANGLE_DEG)
        if self.refiner is not None and found:
            refined = refine_small_boxes(self.refiner, fe, found, self.refine_transforms)
            for f, box in zip(found, refined):
                f['box'] = box
            found = [found[i] for i in sorted(nms(
                refined, np.array([f['score'] for f in found]), DUPLICATE_IOU))]
            found = drop_same_kind_duplicates(found, SAME_KIND_DUPLICATE_IOU)
        return sort_by_confidence([
            defect_from_region(fe, f['x0'], f['y0'], f['mask'], f['box'], f['sign'], f['kind'],
                               f['score'], mmpp_full, f['features']) for f in found])

    @staticmethod
    def _own_defect(z, blob, sign: float, peak, other, kind: str) -> bool:
        """Whether a candidate inside the region of the detection of `other` is a defect of
        its own: a separate peak of z (touching pores), or, with blob candidates (blob: their
        response map), of the blob response (a pore on a stronger one's flank, or a
        shrinkage beside a pore: BLOB_SPLIT_KINDS)."""
        if blob is None:
            return kind in SPLIT_KINDS and separate_peak(z, sign, peak, other, SPLIT_MIN_PX,
                                                         SPLIT_SADDLE)
        if kind not in BLOB_SPLIT_KINDS:
            return False
        return (separate_peak(z, sign, peak, other, SPLIT_MIN_PX, SPLIT_SADDLE) or
                (float(sign * blob[peak[1], peak[0]]) > BLOB_MIN_RESPONSE and
                 separate_peak(blob, sign, peak, other, SPLIT_MIN_PX, SPLIT_SADDLE)))


def polarity_consistent(probs: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """Class probabilities (N, CLASSES) with the kinds a candidate's polarity rules out
    moved to background: a bright candidate (bright: (N,) bool, z > 0) cannot be an
    inclusion, a dark one cannot be a void (VOID_KINDS). The defect score 1 - p_background
    is then the probability of the kinds physics allows, and the kind reported is one of
    them.

    Measured (27 Nov, image-only 'cnn', ad-hoc collection over metrics.py): every true
    positive on the validation radiographs 50090..50179 had the polarity of its kind but
    one faint crack (contrast +0.012, score 0.25), while 35 of its 197 detections were of the
    wrong polarity, all of them false alarms (15 bright 'inclusions', 20 dark voids).
    """
    probs = np.array(probs, np.float32, copy=True)
    bright = np.asarray(bright, bool).reshape(-1)
    ruled_out = np.zeros(probs.shape, bool)
    ruled_out[np.ix_(bright, [CLASSES.index(k) for k in DARK_KINDS])] = True
    ruled_out[np.ix_(~bright, [CLASSES.index(k) for k in VOID_KINDS])] = True
    probs[:, 0] += np.where(ruled_out, probs, 0.0).sum(1)
    probs[ruled_out] = 0.0
    return probs


def drop_same_kind_duplicates(found: list, iou: float) -> list:
    """The detections (dicts with 'box', 'score', 'kind') without those whose box overlaps
    a higher-scoring detection of the same kind by more than `iou` (order kept)."""
    keep = np.ones(len(found), bool)
    kinds = np.array([f['kind'] for f in found])
    for kind in set(kinds):
        idx = np.nonzero(kinds == kind)[0]
        if len(idx) > 1:
            kept = nms(np.array([found[i]['box'] for i in idx], float),
                       np.array([found[i]['score'] for i in idx]), iou)
            keep[np.setdiff1d(idx, idx[kept])] = False
    return [f for f, k in zip(found, keep) if k]


def separate_peak(z: np.ndarray, sign: float, peak, other, min_gap_px: float,
                  saddle: float) -> bool:
    """Whether the candidate `peak` (x, y) is a defect of its own beside the detection of the
    candidate `other` whose region holds it: at least min_gap_px away, and sign x z dips
    below saddle x its own value on the straight line between them (two touching pores of
    a cluster: one truth box each)."""
    (x, y), (ox, oy) = peak, other
    dist = math.hypot(x - ox, y - oy)
    if saddle <= 0 or dist < min_gap_px:
        return False
    n = int(math.ceil(dist)) + 1
    cols = np.rint(np.linspace(x, ox, n)).astype(int)
    rows = np.rint(np.linspace(y, oy, n)).astype(int)
    return float((sign * z[rows, cols]).min()) < saddle * float(sign * z[y, x])


def refine_small_boxes(refiner: BoxRefiner, fe: FrontEnd, found: list,
                       transforms: int = 1) -> np.ndarray:
    """Boxes (N, 4) of the detections, those of small ones redrawn by the refiner (on one
    torch thread; averaged over `transforms` flips/transposes of the crop for the
    REFINE_TTA_MAX highest-scoring detections, one pass for the others)."""
    boxes = np.array([f['box'] for f in found], np.float32)
    polarity = np.array([f['sign'] for f in found], np.float32)
    centres = np.array([f['centre'] for f in found], int)
    top = np.argsort(-np.array([f['score'] for f in found]), kind='stable')[:REFINE_TTA_MAX]
    rest = np.setdiff1d(np.arange(len(found)), top)
    out = boxes.copy()
    maps = ScaledMaps(fe)
    previous = torch.get_num_threads()
    torch.set_num_threads(PREDICT_THREADS)
    try:
        for idx, n in ((top, transforms), (rest, 1)):
            if len(idx):
                out[idx] = refine(refiner, fe, boxes[idx], polarity[idx], centres[idx], maps,
                                  transforms=n)
        return out
    finally:
        torch.set_num_threads(previous)


def clip_region(x0: int, y0: int, mask: np.ndarray, box, x: int, y: int):
    """Keep the part of a region inside the network's box grown by half its size (>= 2 px).

    A flooded region can run into a neighbouring pore or along a faint wall; the network's
    box says how large the defect is. The candidate pixel (x, y) always stays.
    """
    bw, bh = box[2] - box[0], box[3] - box[1]
    gx, gy = max(2.0, 0.5 * bw), max(2.0, 0.5 * bh)
    cx0 = max(x0, min(x, int(math.floor(box[0] - gx))))
    cy0 = max(y0, min(y, int(math.floor(box[1] - gy))))
    cx1 = min(x0 + mask.shape[1], max(x + 1, int(math.ceil(box[2] + gx))))
    cy1 = min(y0 + mask.shape[0], max(y + 1, int(math.ceil(box[3] + gy))))
    sub = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    if not sub.any():
        return x0, y0, mask
    rows, cols = np.nonzero(sub)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return cx0 + int(c0), cy0 + int(r0), sub[r0:r1, c0:c1]


def _axis(mask: np.ndarray, x0: int, y0: int):
    """Centre (x, y) and unit major axis of a region (second moments)."""
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean(), ys.mean()
    cov = np.cov(np.stack([xs - cx, ys - cy])) if len(xs) > 1 else np.eye(2)
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    return np.array([x0 + cx, y0 + cy]), vecs[:, int(np.argmax(vals))]


def _in_line(fa: dict, fb: dict, max_angle_deg: float) -> bool:
    ca, ua = _axis(fa['mask'], fa['x0'], fa['y0'])
    cb, ub = _axis(fb['mask'], fb['x0'], fb['y0'])
    join = cb - ca
    norm = float(np.hypot(*join))
    cos_max = math.cos(math.radians(max_angle_deg))
    if norm < 1e-6:
        return True
    join /= norm
    return abs(ua @ join) >= cos_max and abs(ub @ join) >= cos_max


def merge_touching(found: list, kinds, gap: int, max_angle_deg: float = 90.0) -> list:
    """Merge detections of the given kinds whose boxes lie within `gap` px and that are in
    line (a crack's faint middle splits it into pieces); the merged one keeps the highest
    score."""
    while True:
        merged = False
        for a in range(len(found)):
            fa = found[a]
            if fa['kind'] not in kinds:
                continue
            for b in range(a + 1, len(found)):
                fb = found[b]
                if fb['kind'] != fa['kind'] or fb['sign'] != fa['sign']:
                    continue
                ba, bb = fa['box'], fb['box']
                if bb[0] > ba[2] + gap or ba[0] > bb[2] + gap or bb[1] > ba[3] + gap or \
                        ba[1] > bb[3] + gap or not _in_line(fa, fb, max_angle_deg):
                    continue
                x0, y0 = min(fa['x0'], fb['x0']), min(fa['y0'], fb['y0'])
                x1 = max(fa['x0'] + fa['mask'].shape[1], fb['x0'] + fb['mask'].shape[1])
                y1 = max(fa['y0'] + fa['mask'].shape[0], fb['y0'] + fb['mask'].shape[0])
                mask = np.zeros((y1 - y0, x1 - x0), bool)
                for f in (fa, fb):
                    h, w = f['mask'].shape
                    mask[f['y0'] - y0:f['y0'] - y0 + h, f['x0'] - x0:f['x0'] - x0 + w] |= \
                        f['mask']
                keep = fa if fa['score'] >= fb['score'] else fb
                found[a] = dict(keep, x0=x0, y0=y0, mask=mask,
                                box=np.array([min(ba[0], bb[0]), min(ba[1], bb[1]),
                                              max(ba[2], bb[2]), max(ba[3], bb[3])]))
                del found[b]
                merged = True
                break
            if merged:
                break
        if not merged:
            return found


def defect_from_region(fe: FrontEnd, x0: int, y0: int, mask: np.ndarray, box, sign: float,
                       kind: str, confidence: float, mmpp_full: float,
                       features: dict) -> DetectedDefect:
    """DetectedDefect of a working-pixel region (top-left (x0, y0), bool mask of its box).

    `box` (x0, y0, x1, y1, working pixels, float) is the reported box; it and the region are
    mapped back to radiograph pixels (the mask = the region's pixels inside the box);
    contrast = (I_bg - I) / I_bg from the mean residual over the region (voids < 0);
    size = Feret diameter of the region (mm).
    """
    bh, bw = mask.shape
    sl = (slice(y0, y0 + bh), slice(x0, x0 + bw))
    delta = float(np.mean((fe.S[sl] - fe.B[sl])[mask]))   # (S - B) of the box only
    contrast = 1.0 - math.exp(delta)       # (I_bg - I) / I_bg with I = I_bg exp(delta)
    sx, sy = fe.scale_xy
    h, w = fe.full_shape
    fx0 = int(np.clip(math.floor(box[0] * sx + 0.5), 0, w - 1))
    fy0 = int(np.clip(math.floor(box[1] * sy + 0.5), 0, h - 1))
    fx1 = int(np.clip(math.floor(box[2] * sx + 0.5), fx0 + 1, w))
    fy1 = int(np.clip(math.floor(box[3] * sy + 0.5), fy0 + 1, h))
    # region pixels (working grid) sampled at the radiograph pixels of the box
    cols = np.floor((np.arange(fx0, fx1) + 0.5) / sx).astype(int) - x0
    rows = np.floor((np.arange(fy0, fy1) + 0.5) / sy).astype(int) - y0
    inside_c = (cols >= 0) & (cols < bw)
    inside_r = (rows >= 0) & (rows < bh)
    full_mask = mask[np.clip(rows, 0, bh - 1)[:, None], np.clip(cols, 0, bw - 1)[None, :]] \
        & inside_r[:, None] & inside_c[None, :]
    if not full_mask.any():
        full_mask[(fy1 - fy0) // 2, (fx1 - fx0) // 2] = True
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
