"""The dense learned detector ('seg'): SegNet, instance decoding, labels, weights, training."""

import json

import cv2
import numpy as np
import pytest
import torch

from humanoid_inspection import cli
from humanoid_inspection.xray import detector_seg as seg
from humanoid_inspection.xray.candidates import compute_front_end
from humanoid_inspection.xray.detector import InspectionCancelled, make_detector
from humanoid_inspection.xray.detector_seg import (
    CLASSES, IN_CHANNELS, N_OUTPUTS, SegDetector, SegNet, decode_instances,
    load_model, predict_maps, save_model, seg_inputs, tile_spans)
from humanoid_inspection.xray.simulator import DefectTruth
from humanoid_inspection.xray.train_seg import (
    CROPS_ON_DEFECTS, CROPS_ON_PART, IGNORE, dihedral_batch, label_maps)
from test_xray_candidates import wall_plate_radiograph
from test_xray_detector import make_test_radiograph


def test_forward_keeps_the_pixel_grid():
    model = SegNet(width=8).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, IN_CHANNELS, 64, 32))
    assert out.shape == (2, N_OUTPUTS, 64, 32)


def test_fusing_batchnorm_changes_nothing():
    torch.manual_seed(0)
    model = SegNet(width=8)
    model.train()
    with torch.no_grad():            # give the BatchNorms statistics that are not 0/1
        for _ in range(3):
            model(torch.randn(4, IN_CHANNELS, 32, 32) * 2 + 1)
    model.eval()
    x = torch.randn(1, IN_CHANNELS, 48, 40)
    with torch.inference_mode():
        before = model(x)
        after = model.fuse()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before, after, atol=1e-4)


def test_save_load_round_trip_and_bad_files(tmp_path):
    model = SegNet(width=8).eval()
    path = tmp_path / 'm.pt'
    save_model(model, path, {'note': 'test'})
    loaded = load_model(path)
    x = torch.randn(1, IN_CHANNELS, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=3e-2)      # float16 storage
    assert loaded.meta == {'note': 'test'}
    ckpt = torch.load(str(path), weights_only=True)
    ckpt['classes'] = ('background', 'gas_porosity')
    torch.save(ckpt, str(tmp_path / 'other.pt'))
    with pytest.raises(ValueError, match='differ'):
        load_model(tmp_path / 'other.pt')
    with pytest.raises(FileNotFoundError, match='xray-train --model seg'):
        load_model(tmp_path / 'missing.pt')


def test_tiles_cover_every_pixel_once():
    assert tile_spans(100, 128, 16) == [(0, 100)]
    spans = tile_spans(1000, 256, 32)
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(b - a <= 256 - 64 for a, b in spans)


def test_tiled_prediction_equals_the_whole_image_prediction():
    torch.manual_seed(1)
    model = SegNet(width=8).fuse()
    inputs = np.random.default_rng(0).normal(size=(IN_CHANNELS, 96, 80)).astype(np.float32)
    whole = predict_maps(model, inputs, tile=512, bf16=False)
    tiled = predict_maps(model, inputs, tile=64, overlap=24, bf16=False)
    assert whole.shape == (N_OUTPUTS, 96, 80)
    assert np.allclose(whole.sum(0), 1.0, atol=1e-5)
    # the overlap covers most of the receptive field: the tiles agree closely
    assert np.abs(whole - tiled).max() < 0.05


def _maps(h=40, w=60):
    maps = np.zeros((N_OUTPUTS, h, w), np.float32)
    maps[0] = 1.0
    return maps


def _blob(maps, cx, cy, r, kind_index, p=0.95):
    yy, xx = np.mgrid[:maps.shape[1], :maps.shape[2]]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    maps[0][inside] = 1 - p
    maps[kind_index][inside] = p
    return inside


def test_touching_blobs_are_one_instance_and_specks_are_dropped():
    maps = _maps()
    _blob(maps, 20, 20, 4, 1)
    _blob(maps, 27, 20, 4, 1)               # touches the first
    maps[0, 35, 50] = 0.1                   # one pixel: below min_area_px
    (one,) = decode_instances(maps)
    assert (one['x0'], one['y0'], one['mask'].shape) == (16, 16, (9, 16))
    assert one['kind'] == 'gas_porosity' and one['mask'].sum() == (1 - maps[0] > 0.5).sum() - 1


def test_instance_kind_and_score():
    maps = _maps()
    _blob(maps, 10, 10, 3, CLASSES.index('inclusion'), p=0.9)
    _blob(maps, 40, 25, 3, CLASSES.index('crack'), p=0.6)
    found = sorted(decode_instances(maps), key=lambda f: -f['score'])
    assert [f['kind'] for f in found] == ['inclusion', 'crack']
    assert found[0]['score'] == pytest.approx(0.81) and found[1]['score'] == pytest.approx(0.36)
    assert decode_instances(_maps()) == []


def test_labels_follow_the_truth_masks_and_ignore_invisible_defects():
    rad = wall_plate_radiograph()
    (visible,) = rad.truth
    yy, xx = np.mgrid[:6, :6]
    hidden = DefectTruth('shrinkage', (100, 120, 106, 126), (xx - 2.5) ** 2 + (yy - 2.5) ** 2 < 9,
                         1.0, 0.8, contrast=0.001)
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    assert fe.factor == 1
    labels = label_maps(fe, [visible, hidden], visible_contrast=0.02)
    x0, y0, x1, y1 = visible.box_xyxy
    assert np.all(labels[y0:y1, x0:x1][visible.mask] == CLASSES.index('gas_porosity'))
    assert np.all(labels[120:126, 100:106][hidden.mask] == IGNORE)
    assert np.count_nonzero((labels > 0) & (labels != IGNORE)) == visible.mask.sum()
    assert np.count_nonzero(labels == IGNORE) == hidden.mask.sum()


@pytest.mark.parametrize('k', range(8))
def test_dihedral_moves_inputs_and_labels_together(k):
    x = np.zeros((1, IN_CHANNELS, 8, 8), np.float32)
    y = np.zeros((1, 8, 8), np.uint8)
    x[0, :, 1, 5] = 1.0
    y[0, 1, 5] = 3
    tx, ty = dihedral_batch([x, y], k)
    assert np.array_equal(np.argwhere(tx[0, 0] > 0), np.argwhere(ty[0] == 3))


def test_detect_contract_cancel_and_thread_settings(tmp_path):
    torch.manual_seed(2)
    save_model(SegNet(width=8).eval(), tmp_path / 'm.pt')
    det = make_detector('seg', weights=tmp_path / 'm.pt', min_score=0.0)
    assert isinstance(det, SegDetector)
    image, _ = make_test_radiograph((256, 256), seed=32, voids=[(100, 110, 10)])
    cv_before, torch_before = cv2.getNumThreads(), torch.get_num_threads()
    for d in det.detect(image, 0.1, 1.0):
        assert d.kind in CLASSES[1:] and 0 <= d.confidence <= 1 and d.size_mm > 0
        assert d.mask.shape == (d.box_xyxy[3] - d.box_xyxy[1], d.box_xyxy[2] - d.box_xyxy[0])
    assert (cv2.getNumThreads(), torch.get_num_threads()) == (cv_before, torch_before)
    with pytest.raises(InspectionCancelled):
        det.detect(image, 0.1, 1.0, should_cancel=lambda: True)
    with pytest.raises(ValueError, match='NaN'):
        det.detect(np.full((64, 64), np.nan, np.float32), 0.1, 1.0)
    with pytest.raises(ValueError, match='threshold'):
        SegDetector(model=SegNet(width=8), threshold=1.5)


def test_inputs_are_bounded_and_show_a_void_bright():
    image, truth = make_test_radiograph((128, 128), seed=5, voids=[(64, 64, 8)])
    fe = compute_front_end(image, 0.1)
    x = seg_inputs(fe)
    assert x.shape == (IN_CHANNELS, 128, 128) and np.abs(x).max() <= seg.INPUT_CLIP
    x0, y0, x1, y1 = truth[0][1]
    assert x[0, y0:y1, x0:x1].max() > 1.0 and x[1, y0:y1, x0:x1].max() > 1.0


def test_tiny_training_run_is_reproducible(tmp_path, capsys):
    args = ['xray-train', '--model', 'seg', '--images', '2', '--epochs', '1', '--batch', '4',
            '--width', '8', '--workers', '1', '--quiet']
    assert cli.main(args + ['--out', str(tmp_path / 'a.pt')]) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli.main(args + ['--out', str(tmp_path / 'b.pt'),
                            '--cache', str(tmp_path / 'c.npz')]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first['final_loss'] == second['final_loss']
    assert first['crops'] == 2 * (CROPS_ON_DEFECTS + CROPS_ON_PART)
    assert second['command'].startswith('humanoid-inspection xray-train --model seg')
    a = torch.load(str(tmp_path / 'a.pt'), weights_only=True)['state_dict']
    b = torch.load(str(tmp_path / 'b.pt'), weights_only=True)['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cli.main(['xray-train', '--model', 'seg', '--epochs', '0']) == 2
    assert '--epochs must be positive' in capsys.readouterr().err


def test_the_network_runs_on_the_material_window_on_the_whole_image_grid():
    rad = wall_plate_radiograph()
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    h, w = fe.z.shape
    y0, y1, x0, x1 = seg.material_window(fe, margin=16, align=8)
    assert y0 % 8 == 0 and x0 % 8 == 0
    # the window holds every pixel of the part and leaves open beam out
    material = fe.B < np.percentile(fe.B, 99) - seg.MATERIAL_LOG
    assert material[y0:y1, x0:x1].sum() == material.sum()
    assert (y1 - y0) * (x1 - x0) < h * w
    # on the grid, the window's answer equals the whole image's
    torch.manual_seed(4)
    model = SegNet(width=8).fuse()
    inputs = seg_inputs(fe)
    whole = predict_maps(model, inputs, bf16=False)
    part = predict_maps(model, inputs[:, y0:y1, x0:x1], bf16=False)
    inner = (slice(None), slice(40, -40), slice(40, -40))
    assert np.allclose(whole[:, y0:y1, x0:x1][inner], part[inner], atol=1e-4)


def test_committed_weights_are_small_and_record_their_command():
    assert seg.DEFAULT_WEIGHTS.is_file() and seg.DEFAULT_WEIGHTS.stat().st_size < 1e6
    model = load_model()
    assert model.meta['command'].startswith('humanoid-inspection xray-train --model seg')
    assert model.meta['images'] == 1000 and model.meta['epochs'] == 16
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert isinstance(make_detector('seg'), SegDetector)


def test_bfloat16_only_where_the_cpu_has_bf16_units(monkeypatch):
    # emulated bf16 (an AVX2-only CPU) ran the network ~6x slower than float32
    for probe in ('_is_amx_tile_supported', '_is_avx512_bf16_supported'):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert not seg.native_bf16()
    assert not seg.SegDetector().bf16
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: True, raising=False)
    assert seg.native_bf16()
    assert seg.SegDetector().bf16
    assert not seg.SegDetector(bf16=False).bf16        # an explicit choice stands

    used = []
    real_autocast = torch.autocast

    def recording_autocast(device, dtype=None, enabled=True, **kw):
        used.append(enabled)
        return real_autocast(device, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, 'autocast', recording_autocast)
    model = seg.SegNet(width=4).eval()
    inputs = np.zeros((model.config['in_channels'], 32, 32), np.float32)
    seg.predict_maps(model, inputs)
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False, raising=False)
    seg.predict_maps(model, inputs)
    assert used == [True, False]
