"""The previous learned detector (TinyUNet, 'unet'): shapes, weights, tiling, tiny training."""

import json

import numpy as np
import pytest
import torch

from humanoid_inspection import cli
from humanoid_inspection.xray.detector import InspectionCancelled, make_detector
from humanoid_inspection.xray.detector_unet import (
    CLASSES, DEFAULT_WEIGHTS, UnetDetector, TinyUNet, load_model, predict_probabilities,
    preprocess, save_model)
from test_xray_detector import make_test_radiograph


def test_forward_keeps_the_pixel_grid():
    model = TinyUNet(width=8).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, 2, 64, 96))
    assert out.shape == (2, len(CLASSES), 64, 96)


def test_committed_weights_load_and_are_small():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 5e6
    model = load_model()
    assert model.meta['command'].startswith('humanoid-inspection xray-train')
    assert isinstance(make_detector('unet'), UnetDetector)


def test_tiling_matches_a_single_pass():
    image, _ = make_test_radiograph((200, 260), seed=31, voids=[(100, 100, 8)])
    inputs = preprocess(image.astype(np.float32))
    model = load_model()
    whole = predict_probabilities(model, inputs, tile=1024, overlap=64)
    tiled = predict_probabilities(model, inputs, tile=128, overlap=32)
    assert whole.shape == (len(CLASSES), 200, 260)
    np.testing.assert_allclose(whole.sum(0), 1.0, atol=1e-4)
    # away from the tile seams the answers agree closely
    assert np.abs(whole - tiled).mean() < 0.02


def test_detect_returns_defects_in_mm_and_can_be_cancelled():
    image, _ = make_test_radiograph((256, 256), seed=32, voids=[(100, 110, 10)])
    det = UnetDetector()
    defects = det.detect(image, 0.1, 1.0)
    for d in defects:
        assert d.kind in CLASSES[1:] and 0 < d.confidence <= 1 and d.size_mm > 0
    with pytest.raises(InspectionCancelled):
        det.detect(image, 0.1, 1.0, should_cancel=lambda: True)
    with pytest.raises(ValueError, match='NaN'):
        det.detect(np.full((64, 64), np.nan, np.float32), 0.1, 1.0)


def test_save_load_round_trip(tmp_path):
    model = TinyUNet(width=8).eval()
    path = tmp_path / 'm.pt'
    save_model(model, path, {'note': 'test'})
    loaded = load_model(path)
    x = torch.randn(1, 2, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=2e-2)   # weights stored as float16
    assert loaded.meta == {'note': 'test'}


def test_tiny_training_run_is_reproducible(tmp_path, capsys):
    args = ['xray-train', '--model', 'unet', '--images', '2', '--size', '256', '--steps', '3',
            '--batch', '2', '--crop', '64', '--width', '8', '--quiet']
    assert cli.main(args + ['--out', str(tmp_path / 'a.pt')]) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli.main(args + ['--out', str(tmp_path / 'b.pt')]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first['final_loss'] == second['final_loss']
    a, b = load_model(tmp_path / 'a.pt'), load_model(tmp_path / 'b.pt')
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_train_cli_refuses_bad_arguments(capsys):
    assert cli.main(['xray-train', '--model', 'unet', '--steps', '0']) == 2
    assert '--steps must be positive' in capsys.readouterr().err
    assert cli.main(['xray-train', '--model', 'unet', '--crop', '50']) == 2
    assert 'multiple of 16' in capsys.readouterr().err


def test_training_labels_ignore_invisible_defects(monkeypatch):
    from humanoid_inspection.xray import metrics
    from humanoid_inspection.xray.train_unet import IGNORE_LABEL, simulate_training_set
    visible = simulate_training_set(2, 0, 256, 1.0, progress=False)
    assert any(len(c) for _, _, c in visible)
    for _, labels, centres in visible:
        assert set(np.unique(labels)) <= set(range(len(CLASSES))) | {IGNORE_LABEL}
        for r, c in centres:
            assert 0 <= r < 256 and 0 <= c < 256
    # with a visibility bound above every contrast, all defect pixels are ignored
    monkeypatch.setattr(metrics, 'VISIBLE_CONTRAST', 10.0)
    hidden = simulate_training_set(2, 0, 256, 1.0, progress=False)
    for (_, vis_labels, _), (_, labels, centres) in zip(visible, hidden):
        assert len(centres) == 0
        assert np.array_equal(labels == IGNORE_LABEL, vis_labels > 0)
