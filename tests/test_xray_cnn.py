"""The learned detector ('cnn'): PatchNet shapes, committed weights, labels, boxes, training."""

import json

import cv2
import numpy as np
import pytest
import torch

from humanoid_inspection import cli
from humanoid_inspection.xray.candidates import (
    PATCH_CHANNELS, PATCH_PX, FrontEndParams, detector_candidates)
from humanoid_inspection.xray.detector import (
    DEFAULT_DETECTOR, InspectionCancelled, make_detector)
from humanoid_inspection.xray.detector_cnn import (
    BOX_LOG_OFFSET, CLASSES, DEFAULT_WEIGHTS, CnnDetector, PatchNet, boxes_from_distances,
    load_model, nms, polarity_consistent, save_model)
from humanoid_inspection.xray.train_cli import IGNORE, dihedral, simulate_training_set
from test_xray_candidates import pore_on_a_flank, wall_plate_radiograph
from test_xray_detector import make_test_radiograph


def test_forward_shapes():
    model = PatchNet(width=8).eval()
    with torch.inference_mode():
        logits, box = model(torch.zeros(5, PATCH_CHANNELS, PATCH_PX, PATCH_PX))
    assert logits.shape == (5, len(CLASSES)) and box.shape == (5, 4)


def test_committed_weights_load_are_small_and_are_the_default():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 5e6
    model = load_model()
    assert model.meta['command'].startswith('humanoid-inspection xray-train')
    assert isinstance(make_detector('cnn'), CnnDetector)
    assert DEFAULT_DETECTOR == 'cnn'


def test_finds_the_pore_next_to_a_wall():
    rad = wall_plate_radiograph()
    (truth,) = rad.truth
    defects = CnnDetector(min_score=0.5).detect(rad.image, rad.pixel_pitch_mm,
                                                rad.magnification)
    # the pore is the most confident indication (the detector makes ~0.8 false alarms per
    # radiograph at 0.5 on validation sets: allow one)
    assert 1 <= len(defects) <= 2, [d.to_dict() for d in defects]
    d = defects[0]
    ix = min(d.box_xyxy[2], truth.box_xyxy[2]) - max(d.box_xyxy[0], truth.box_xyxy[0])
    iy = min(d.box_xyxy[3], truth.box_xyxy[3]) - max(d.box_xyxy[1], truth.box_xyxy[1])
    assert ix > 0 and iy > 0 and d.contrast < 0 and 0.5 <= d.confidence <= 1
    assert d.mask.shape == (d.box_xyxy[3] - d.box_xyxy[1], d.box_xyxy[2] - d.box_xyxy[0])
    assert 0.5 < d.size_mm < 3.0


def test_detect_contract_cancel_and_bad_input():
    image, _ = make_test_radiograph((256, 256), seed=32, voids=[(100, 110, 10)])
    det = CnnDetector()
    for d in det.detect(image, 0.1, 1.0):
        assert d.kind in CLASSES[1:] and 0 < d.confidence <= 1 and d.size_mm > 0
    assert det.detect(np.full((64, 64), 1000, np.uint16), 0.1, 1.0) == []
    with pytest.raises(InspectionCancelled):
        det.detect(image, 0.1, 1.0, should_cancel=lambda: True)
    with pytest.raises(ValueError, match='NaN'):
        det.detect(np.full((64, 64), np.nan, np.float32), 0.1, 1.0)


def test_detections_that_end_with_the_same_box_are_reported_once(monkeypatch):
    from humanoid_inspection.xray import detector_cnn
    image, _ = make_test_radiograph((256, 256), seed=34, voids=[(70, 70, 8), (180, 170, 8)])
    det = CnnDetector(min_score=0.05)
    found = det.detect(image, 0.1, 1.0)
    assert len(found) >= 2                 # two pores far apart: two detections

    def same_box(refiner, fe, found, transforms=1):
        """A refiner that draws every detection's box on the first one's."""
        return np.repeat(np.array([found[0]['box']], np.float32), len(found), 0)

    monkeypatch.setattr(detector_cnn, 'refine_small_boxes', same_box)
    (only,) = det.detect(image, 0.1, 1.0)
    assert only.confidence == pytest.approx(max(d.confidence for d in found))


def test_polarity_moves_the_kinds_physics_rules_out_to_background():
    #                  background gas  shrink crack inclusion
    probs = np.array([[0.1, 0.2, 0.1, 0.0, 0.6],       # bright: cannot be an inclusion
                      [0.1, 0.2, 0.1, 0.0, 0.6],       # dark: can only be one
                      [0.5, 0.0, 0.0, 0.0, 0.5]], np.float32)
    before = probs.copy()
    out = polarity_consistent(probs, np.array([True, False, True]))
    np.testing.assert_allclose(out, [[0.7, 0.2, 0.1, 0.0, 0.0],
                                     [0.4, 0.0, 0.0, 0.0, 0.6],
                                     [1.0, 0.0, 0.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(probs, before)          # the caller's array is left alone


def test_a_bright_indication_is_never_reported_as_an_inclusion(monkeypatch):
    from humanoid_inspection.xray import detector_cnn
    image, _ = make_test_radiograph((256, 256), seed=35, voids=[(70, 180, 8)],
                                    inclusions=[(190, 60, 6)])
    det = CnnDetector(min_score=0.05)
    real_predict = detector_cnn.predict

    def says_inclusion(model, patches, **kw):
        """The real network's boxes, but 'inclusion' at 0.8 (and a pore at 0.2) for every
        candidate, bright or dark."""
        probs, boxes = real_predict(model, patches, **kw)
        probs[:] = [0.0, 0.2, 0.0, 0.0, 0.8]
        return probs, boxes

    monkeypatch.setattr(detector_cnn, 'predict', says_inclusion)
    found = det.detect(image, 0.1, 1.0)
    bright = [d for d in found if d.contrast < 0]
    dark = [d for d in found if d.contrast > 0]
    assert bright and dark
    # the void's candidates keep only the pore's share; the inclusion's keep theirs
    assert all(d.kind == 'gas_porosity' and d.confidence == pytest.approx(0.2) for d in bright)
    assert all(d.kind == 'inclusion' and d.confidence == pytest.approx(0.8) for d in dark)


def test_two_boxes_of_one_kind_over_one_defect_are_reported_once():
    from humanoid_inspection.xray.detector_cnn import drop_same_kind_duplicates

    def det(kind, score, box):
        return {'kind': kind, 'score': score, 'box': np.array(box, float)}
    # a shrinkage found twice (IoU 0.58 between the boxes: below the kind-blind 0.7)
    big, piece = det('shrinkage', 1.0, (675, 466, 697, 492)), det('shrinkage', 0.9,
                                                                   (674, 467, 701, 501))
    pore = det('gas_porosity', 0.95, (675, 466, 697, 492))     # same box, another kind
    far = det('shrinkage', 0.8, (10, 10, 20, 20))
    kept = drop_same_kind_duplicates([piece, pore, big, far], 0.5)
    assert kept == [pore, big, far]
    # two touching pores of a cluster (IoU 1/3) both stay
    a, b = det('gas_porosity', 0.9, (0, 0, 4, 4)), det('gas_porosity', 0.8, (2, 0, 6, 4))
    assert drop_same_kind_duplicates([a, b], 0.5) == [a, b]
    assert drop_same_kind_duplicates([], 0.5) == []


def test_boxes_from_distances_and_nms():
    log_d = np.log(np.array([[2.0, 3.0, 4.0, 5.0]]) + BOX_LOG_OFFSET)
    box = boxes_from_distances(np.array([10]), np.array([20]), log_d)
    np.testing.assert_allclose(box, [[8.5, 17.5, 14.5, 25.5]], atol=1e-6)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
    assert list(nms(boxes, np.array([0.5, 0.9, 0.8]), 0.3)) == [1, 2]


@pytest.mark.parametrize('k', range(8))
def test_dihedral_moves_the_box_targets_with_the_patch(k):
    # a bright rectangle covering columns 7..12 and rows 5..10 of a 19 px patch, centre (9, 9)
    patch = np.zeros((1, 1, PATCH_PX, PATCH_PX), np.float32)
    patch[0, 0, 5:11, 7:13] = 1.0
    box = np.array([[9.5 - 7, 9.5 - 5, 13 - 9.5, 11 - 9.5]], np.float32)
    x, b = dihedral(patch, box, k)
    rows, cols = np.nonzero(x[0, 0])
    expected = [9.5 - cols.min(), 9.5 - rows.min(), cols.max() + 1 - 9.5, rows.max() + 1 - 9.5]
    np.testing.assert_allclose(b[0], expected)


def test_save_load_round_trip(tmp_path):
    model = PatchNet(width=8).eval()
    path = tmp_path / 'm.pt'
    save_model(model, path, {'note': 'test'})
    loaded = load_model(path)
    x = torch.randn(3, PATCH_CHANNELS, PATCH_PX, PATCH_PX)
    with torch.inference_mode():
        assert torch.allclose(model(x)[0], loaded(x)[0], atol=2e-2)   # float16 storage
    assert loaded.meta == {'note': 'test'}


def test_blob_candidates_travel_with_the_checkpoint_and_split_a_pore_off_a_flank(tmp_path):
    """A network trained with blob candidates (xray-train --blob-sigma) stores their scale in
    its checkpoint, so inspection proposes the same candidates; a pore on a stronger one's
    flank is then a detection of its own (the blob response dips between the two), which the
    |z| saddle alone does not give."""
    path = tmp_path / 'blob.pt'
    save_model(PatchNet(width=8).eval(), path, {}, FrontEndParams(blob_sigma_px=1.5))
    assert CnnDetector(weights=path).params.blob_sigma_px == 1.5
    assert CnnDetector().params.blob_sigma_px == 0.0          # the committed image-only one
    z = pore_on_a_flank()
    xs, ys, response = detector_candidates(z, FrontEndParams(blob_sigma_px=1.5))
    flank, strong = (int(xs[1]), int(ys[1])), (int(xs[0]), int(ys[0]))
    own = CnnDetector._own_defect
    assert not own(z, None, 1.0, flank, strong, 'gas_porosity')
    assert own(z, response, 1.0, flank, strong, 'gas_porosity')
    assert own(z, response, 1.0, flank, strong, 'shrinkage')
    assert not own(z, response, 1.0, flank, strong, 'crack')


def test_training_labels_ignore_invisible_defects(monkeypatch):
    from humanoid_inspection.xray import metrics
    data = simulate_training_set(2, 0, 1024, 1.0, progress=False)
    patches, labels, boxes = data.patches, data.labels, data.boxes
    assert patches.shape[1:] == (PATCH_CHANNELS, PATCH_PX, PATCH_PX)
    # the refiner's samples: one set per visible defect and per candidate on one
    n = len(data.refine_sides)
    assert n > 0 and data.refine_crops.shape[0] == n and data.refine_scale.shape == (n,)
    assert set(np.unique(data.refine_scale)) <= {1.0, 2.0, 4.0}
    assert set(np.unique(labels)) <= set(range(len(CLASSES))) | {IGNORE}
    positive = labels > 0
    assert positive.any() and np.all(np.isfinite(boxes[positive]))
    assert np.all(np.exp(boxes[positive]) - BOX_LOG_OFFSET > 0)
    # with a visibility bound above every contrast, no candidate is labelled a defect
    monkeypatch.setattr(metrics, 'VISIBLE_CONTRAST', 10.0)
    hidden_set = simulate_training_set(2, 0, 1024, 1.0, progress=False)
    hidden = hidden_set.labels
    assert not (hidden > 0).any() and len(hidden_set.refine_sides) == 0
    assert np.array_equal(hidden == IGNORE, (labels == IGNORE) | positive)


def test_tiny_training_run_is_reproducible(tmp_path, capsys):
    args = ['xray-train', '--images', '1', '--size', '1024', '--epochs', '1', '--batch', '32',
            '--refine-width', '8', '--refine-epochs', '2', '--quiet']
    cache = str(tmp_path / 'cache.npz')
    assert cli.main(args + ['--width', '8', '--out', str(tmp_path / 'a.pt')]) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli.main(args + ['--width', '8', '--out', str(tmp_path / 'b.pt'),
                            '--cache', cache]) == 0
    second = json.loads(capsys.readouterr().out)
    # the refiner does not depend on PatchNet's options (torch is re-seeded before it)
    assert cli.main(args + ['--width', '4', '--out', str(tmp_path / 'c.pt'),
                            '--cache', cache]) == 0
    third = json.loads(capsys.readouterr().out)
    assert third['refine_final_loss'] == first['refine_final_loss']
    c = load_model(tmp_path / 'c.pt')
    assert first['final_loss'] == second['final_loss']
    assert first['refine_final_loss'] == second['refine_final_loss']
    a, b = load_model(tmp_path / 'a.pt'), load_model(tmp_path / 'b.pt')
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    for other in (b, c):
        for (ka, va), (kb, vb) in zip(a.box_refiner.state_dict().items(),
                                      other.box_refiner.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


def test_train_cli_refuses_bad_arguments(capsys):
    assert cli.main(['xray-train', '--epochs', '0']) == 2
    assert '--epochs must be positive' in capsys.readouterr().err
    assert cli.main(['xray-train', '--negatives', '1.5']) == 2
    assert '--negatives' in capsys.readouterr().err
    assert cli.main(['xray-train', '--refine-epochs', '-1']) == 2
    assert '--refine-epochs' in capsys.readouterr().err
    assert cli.main(['xray-train', '--refine-width', '0']) == 2
    assert '--refine-width must be positive' in capsys.readouterr().err
    assert cli.main(['xray-train', '--pose-error-mm', '1']) == 2
    assert 'apply to --reference only' in capsys.readouterr().err
    assert cli.main(['xray-train', '--reference', '--kv-error', '-0.1']) == 2
    assert 'acquisition errors must lie' in capsys.readouterr().err
    assert cli.main(['xray-train', '--workers', '0']) == 2
    assert '--workers must be positive' in capsys.readouterr().err
    assert cli.main(['xray-train', '--blob-sigma', '-1']) == 2
    assert '--blob-sigma must not be negative' in capsys.readouterr().err


def test_worker_processes_make_the_same_training_set():
    """Each radiograph is seeded on its own: two worker processes give the set one makes,
    in the same order (so the same weights)."""
    one = simulate_training_set(3, 0, 384, 1.0, progress=False, negative_fraction=0.5)
    two = simulate_training_set(3, 0, 384, 1.0, progress=False, negative_fraction=0.5,
                                workers=2)
    for name in one._fields:
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    with pytest.raises(ValueError, match='workers must be >= 1'):
        simulate_training_set(1, 0, 384, 1.0, progress=False, workers=0)


def test_training_against_the_reference_learns_from_residuals_without_part_structure():
    """--reference: the candidates come from the residual against each part's registered
    model, so the part's edges no longer give background candidates; the defects' do stay."""
    from humanoid_inspection.xray.acquisition_errors import AcquisitionErrors
    image_only = simulate_training_set(2, 0, 512, 1.0, progress=False)
    referenced = simulate_training_set(2, 0, 512, 1.0, progress=False,
                                       reference_errors=AcquisitionErrors(1.0, 1.0, 0.02,
                                                                          0.003))
    background = [int(np.count_nonzero(s.labels == 0)) for s in (image_only, referenced)]
    assert background[1] < 0.5 * background[0], background
    assert np.count_nonzero(referenced.labels > 0) > 0
    assert len(referenced.refine_sides) > 0
    # with blob candidates (xray-train --blob-sigma) the set holds the |z| maxima's patches
    # and more
    blobs = simulate_training_set(2, 0, 512, 1.0, FrontEndParams(blob_sigma_px=1.5),
                                  progress=False, reference_errors=AcquisitionErrors(
                                      1.0, 1.0, 0.02, 0.003))
    assert len(blobs.labels) > len(referenced.labels)
    assert np.count_nonzero(blobs.labels > 0) >= np.count_nonzero(referenced.labels > 0)


def test_detection_leaves_the_thread_settings_as_they_were():
    image, _ = make_test_radiograph((128, 128), seed=33, voids=[(60, 60, 6)])
    cv_before, torch_before = cv2.getNumThreads(), torch.get_num_threads()
    CnnDetector().detect(image, 0.1, 1.0)
    make_detector('classical').detect(image, 0.1, 1.0)
    assert (cv2.getNumThreads(), torch.get_num_threads()) == (cv_before, torch_before)
