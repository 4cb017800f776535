"""Box refiner of the learned detector: scales, crops, flips, training samples, refinement."""

import numpy as np
import pytest
import torch

from humanoid_inspection.xray.box_refiner import (
    RAW_CROP_PX, REFINE_CHANNELS, REFINE_MAX_BOX_PX, REFINE_PX, BoxRefiner, ScaledMaps,
    candidate_samples, dihedral_sides, jittered_inputs, predict_sides, refine, refiner_inputs,
    sample_scales, scale_of, truth_samples, undo_dihedral_sides)
from humanoid_inspection.xray.candidates import compute_front_end
from humanoid_inspection.xray.detector_cnn import (
    BOX_LOG_OFFSET, CnnDetector, PatchNet, load_model, save_model, separate_peak)
from test_xray_candidates import wall_plate_radiograph


def test_scale_of_and_sample_scales():
    assert scale_of(5) == 1 and scale_of(REFINE_MAX_BOX_PX) == 1
    assert scale_of(REFINE_MAX_BOX_PX + 1) == 2 and scale_of(60) == 4 and scale_of(200) == 0
    assert sample_scales(5) == [1]
    assert sample_scales(REFINE_MAX_BOX_PX + 1) == [1, 2]      # learnt at both near a bound
    assert sample_scales(40) == [2, 4]                  # 2.4 x the largest box of scale 1
    assert sample_scales(500) == []


@pytest.mark.parametrize('k', range(8))
def test_dihedral_moves_the_side_targets_with_the_crop(k):
    # a bright rectangle covering columns 7..12 and rows 5..10 of a 21 px crop, centre (10, 10)
    crop = np.zeros((1, 1, REFINE_PX, REFINE_PX), np.float32)
    crop[0, 0, 5:11, 7:13] = 1.0
    c = REFINE_PX // 2 + 0.5
    sides = np.array([[7 - c, 5 - c, 13 - c, 11 - c]], np.float32)
    x, s = dihedral_sides(crop, sides, k)
    rows, cols = np.nonzero(x[0, 0])
    expected = [cols.min() - c, rows.min() - c, cols.max() + 1 - c, rows.max() + 1 - c]
    np.testing.assert_allclose(s[0], expected)


@pytest.mark.parametrize('k', range(8))
def test_undo_dihedral_sides_inverts_the_side_mapping(k):
    sides = np.array([[-1.5, -2.5, 3.5, 0.5], [-4.0, -1.0, 2.0, 6.0]], np.float32)
    _, moved = dihedral_sides(np.zeros((2, 1, 3, 3), np.float32), sides, k)
    np.testing.assert_allclose(undo_dihedral_sides(moved, k), sides)


class BrightBox(torch.nn.Module):
    """A 'refiner' that answers the box of the pixels of channel 0 above 0.5 (sides relative
    to the crop's centre pixel centre): it follows every flip, as a perfect refiner would."""

    def forward(self, x):
        c = REFINE_PX // 2 + 0.5
        out = []
        for crop in x[:, 0].numpy():
            rows, cols = np.nonzero(crop > 0.5)
            out.append([cols.min() - c, rows.min() - c, cols.max() + 1 - c, rows.max() + 1 - c])
        return torch.tensor(out, dtype=torch.float32)


def test_predict_sides_averages_over_the_flips_in_the_crop_frame():
    x = np.zeros((2, REFINE_CHANNELS, REFINE_PX, REFINE_PX), np.float32)
    x[0, 0, 5:11, 7:13] = 1.0               # off-centre, not square: every flip moves it
    x[1, 0, 9:12, 4:10] = 1.0
    plain = predict_sides(BrightBox(), x, 1)
    c = REFINE_PX // 2 + 0.5
    np.testing.assert_allclose(plain[0], [7 - c, 5 - c, 13 - c, 11 - c])
    for transforms in (2, 4, 8):
        np.testing.assert_allclose(predict_sides(BrightBox(), x, transforms), plain, atol=1e-6)

    class Biased(torch.nn.Module):
        """Always answers the same sides, whatever the crop: the flips average them out."""

        def forward(self, x):
            return torch.tensor([[-1.0, -2.0, 3.0, 4.0]]).repeat(len(x), 1)

    # averaged over all 8 flips a constant answer becomes symmetric about the centre
    np.testing.assert_allclose(predict_sides(Biased(), x, 8)[0], [-2.5, -2.5, 2.5, 2.5])


def test_only_the_highest_scoring_detections_get_the_flipped_passes(monkeypatch):
    from humanoid_inspection.xray import detector_cnn
    rad = wall_plate_radiograph()
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)

    class Biased(torch.nn.Module):
        """Always answers the same sides: averaged over 8 flips they become symmetric."""

        def forward(self, x):
            return torch.tensor([[-1.0, -2.0, 3.0, 4.0]]).repeat(len(x), 1)

    found = [{'box': np.array([100, 100, 106, 106], np.float32), 'sign': 1.0,
              'centre': (103, 103), 'score': s} for s in (0.2, 0.9, 0.5)]
    monkeypatch.setattr(detector_cnn, 'REFINE_TTA_MAX', 1)
    out = detector_cnn.refine_small_boxes(Biased(), fe, found, transforms=8)
    c = 103.5
    np.testing.assert_allclose(out[1], [c - 2.5, c - 2.5, c + 2.5, c + 2.5])    # top score
    for i in (0, 2):                                                              # one pass
        np.testing.assert_allclose(out[i], [c - 1.0, c - 2.0, c + 3.0, c + 4.0])


def test_cnn_detector_rejects_a_bad_refine_transform_count():
    with pytest.raises(ValueError, match='refine_transforms'):
        CnnDetector(model=PatchNet(width=4), refine_transforms=0)
    with pytest.raises(ValueError, match='refine_transforms'):
        CnnDetector(model=PatchNet(width=4), refine_transforms=9)


def test_truth_and_candidate_samples_hold_the_pore_box():
    rad = wall_plate_radiograph()
    (truth,) = rad.truth
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    crops, pol, sides, scale = truth_samples(fe, rad.truth, 0.02)
    assert crops.shape == (1, 2, RAW_CROP_PX, RAW_CROP_PX) and crops.dtype == np.float16
    assert pol[0] == 1.0 and scale[0] == 1.0
    x0, y0, x1, y1 = truth.box_xyxy                          # factor 1: working = radiograph
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    np.testing.assert_allclose(sides[0], [x0 - cx - 0.5, y0 - cy - 0.5, x1 - cx - 0.5,
                                          y1 - cy - 0.5])
    # the crop's centre is on the pore: the strongest z of the crop lies near its middle
    z = crops[0, 0].astype(np.float32)
    r, c = np.unravel_index(np.argmax(z), z.shape)
    assert abs(r - RAW_CROP_PX // 2) <= 2 and abs(c - RAW_CROP_PX // 2) <= 2
    # a candidate on the pore, labelled with its box, gives the same box from its own centre
    d = np.array([[cx + 0.5 - x0, cy + 0.5 - y0, x1 - cx - 0.5, y1 - cy - 0.5]], np.float32)
    log_d = np.log(d + BOX_LOG_OFFSET)
    c2, p2, s2, sc2 = candidate_samples(fe, np.array([cx]), np.array([cy]), np.array([1]),
                                        log_d, BOX_LOG_OFFSET)
    np.testing.assert_allclose(s2, sides, atol=1e-5)
    np.testing.assert_array_equal(c2, crops)
    # background candidates give no sample
    assert len(candidate_samples(fe, np.array([cx]), np.array([cy]), np.array([0]), log_d,
                                 BOX_LOG_OFFSET)[0]) == 0


def test_jittered_inputs_move_the_targets_with_the_crop():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(6, 2, RAW_CROP_PX, RAW_CROP_PX)).astype(np.float32)
    sides = np.tile(np.array([[-2.5, -2.5, 2.5, 2.5]], np.float32), (6, 1))
    x, t = jittered_inputs(raw, np.ones(6), sides, np.ones(6), np.random.default_rng(1))
    assert x.shape == (6, REFINE_CHANNELS, REFINE_PX, REFINE_PX)
    # the jitter shifts both sides of an axis by the same amount: the size is unchanged
    np.testing.assert_allclose(t[:, 2] - t[:, 0], 5.0)
    np.testing.assert_allclose(t[:, 3] - t[:, 1], 5.0)
    assert np.all(np.abs(t[:, 0] + 2.5) <= 2) and np.all(np.abs(t[:, 1] + 2.5) <= 2)
    # without jitter the input is the centred window
    x0, t0 = jittered_inputs(raw, np.ones(6), sides, np.ones(6), rng, max_jitter=0)
    a = (RAW_CROP_PX - REFINE_PX) // 2
    np.testing.assert_allclose(x0, refiner_inputs(raw[:, :, a:a + REFINE_PX, a:a + REFINE_PX],
                                                  np.ones(6), np.ones(6)))
    np.testing.assert_allclose(t0, sides)


def test_refine_maps_sides_back_per_scale_and_keeps_large_boxes():
    rad = wall_plate_radiograph()
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)

    class Fixed(torch.nn.Module):
        """Answers the same sides for every crop."""

        def forward(self, x):
            return torch.tensor([[-1.5, -2.5, 1.5, 2.5]]).repeat(len(x), 1)

    boxes = np.array([[100, 100, 106, 106],        # scale 1
                      [100, 100, 130, 124],        # scale 2
                      [0, 0, 300, 300]], np.float32)   # too large: kept
    centres = np.array([[103, 103], [115, 111], [150, 150]])
    out = refine(Fixed(), fe, boxes, np.ones(3), centres, ScaledMaps(fe))
    np.testing.assert_allclose(out[0], [103.5 - 1.5, 103.5 - 2.5, 103.5 + 1.5, 103.5 + 2.5])
    c = np.array([115 // 2 + 0.5, 111 // 2 + 0.5])
    np.testing.assert_allclose(out[1], [2 * (c[0] - 1.5), 2 * (c[1] - 2.5), 2 * (c[0] + 1.5),
                                        2 * (c[1] + 2.5)])
    np.testing.assert_allclose(out[2], boxes[2])
    assert ScaledMaps(fe).get(2)[0].shape == (fe.z.shape[0] // 2, fe.z.shape[1] // 2)


def test_refiner_round_trip_through_the_checkpoint(tmp_path):
    model, refiner = PatchNet(width=8).eval(), BoxRefiner(width=8).eval()
    save_model(model, tmp_path / 'm.pt', {'note': 'test'}, refiner=refiner)
    loaded = load_model(tmp_path / 'm.pt')
    x = torch.randn(3, REFINE_CHANNELS, REFINE_PX, REFINE_PX)
    with torch.inference_mode():
        assert torch.allclose(refiner(x), loaded.box_refiner(x), atol=2e-2)  # float16 storage
    save_model(model, tmp_path / 'plain.pt')
    assert load_model(tmp_path / 'plain.pt').box_refiner is None
    ckpt = torch.load(tmp_path / 'm.pt', weights_only=True)
    ckpt['box_refiner']['state_dict'].pop('head.1.weight')
    torch.save(ckpt, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='BoxRefiner'):
        load_model(tmp_path / 'bad.pt')


def test_committed_weights_carry_a_refiner():
    assert isinstance(load_model().box_refiner, BoxRefiner)


def test_separate_peak_splits_two_touching_pores_not_one():
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float32)
    one = 50 * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 8.0)
    two = one + 45 * np.exp(-((xx - 26) ** 2 + (yy - 20) ** 2) / 8.0)
    assert separate_peak(two, 1.0, (26, 20), (20, 20), 3.0, 0.8)
    assert not separate_peak(one, 1.0, (23, 20), (20, 20), 3.0, 0.8)      # same pore's flank
    assert not separate_peak(two, 1.0, (26, 20), (20, 20), 3.0, 0.0)      # disabled
    assert not separate_peak(two, 1.0, (21, 20), (20, 20), 3.0, 0.8)      # too close


def test_predict_sides_channels_last_answers_what_the_plain_forward_pass_does():
    # predict_sides runs the refiner channels-last for speed; the sides must not change
    torch.manual_seed(3)
    model = BoxRefiner(width=8).eval()
    x = np.random.default_rng(3).normal(size=(5, REFINE_CHANNELS, REFINE_PX, REFINE_PX))
    x = x.astype(np.float32)
    with torch.inference_mode():
        plain = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(predict_sides(model, x, 1), plain, rtol=1e-5, atol=1e-5)
