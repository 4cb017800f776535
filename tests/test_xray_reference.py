"""The part model's reference radiograph: the noise-free render, pose registration, the
reference residual and the '+reference' detector (xray/reference.py,
xray/detector_reference.py, xray-eval's acquisition errors)."""

import copy
import json

import numpy as np
import pytest
import torch

from humanoid_inspection import cli
from humanoid_inspection.xray.candidates import compute_front_end
from humanoid_inspection.xray.detector import make_detector
from humanoid_inspection.xray.detector_cnn import SURE_SCORE, CnnDetector
from humanoid_inspection.xray.detector_reference import TRUST_CORRELATION, ReferenceDetector
from humanoid_inspection.xray.metrics import iou_matrix
from humanoid_inspection.xray.phantoms import generate_part, scaled_part
from humanoid_inspection.xray.reference import (
    PartReference, ReferenceParams, estimate_pose, front_end_with_reference,
    level_correction, pose_from_motion)
from humanoid_inspection.xray.simulator import (
    XraySimConfig, pose_yaw, resting_pose, simulate_radiograph)


def fixture_pose(dx_mm: float, dy_mm: float, angle_deg: float) -> np.ndarray:
    return resting_pose(dx_mm, dy_mm, np.radians(angle_deg))


def angle_deg(pose: np.ndarray) -> float:
    return float(np.degrees(pose_yaw(pose)))


def test_noise_free_radiograph_is_the_mean_of_the_noisy_ones():
    config = XraySimConfig.for_size(128)
    part = generate_part('bracket', 5, defect_probability=0.0)
    clean = [simulate_radiograph(part, config, seed=s, noise=False).image for s in (1, 2)]
    assert np.array_equal(clean[0], clean[1])           # no random draw at all
    noisy = simulate_radiograph(part, config, seed=1).image.astype(np.float64)
    difference = noisy - clean[0]
    assert difference.std() > 5.0                        # the noisy one does carry noise
    assert abs(difference.mean()) < 0.05 * difference.std()


@pytest.mark.parametrize('reference_scale, true_scale', [(1.0, 1.0), (1.001, 0.997)])
def test_pose_from_motion_inverts_the_projection_of_a_fixture_offset(reference_scale,
                                                                     true_scale):
    reference_pose, true_pose = fixture_pose(0.3, -0.2, 0.4), fixture_pose(-1.1, 0.7, -1.3)
    centre, m = np.array([255.5, 255.5]), 0.154
    # reference pixel v of the model point seen at acquired pixel u:
    # v = c + k Rw (u - c) + (t0 - k Rw t) / m, Rw = R0 R^T, k = s0 / s
    k = reference_scale / true_scale
    a = k * reference_pose[:2, :2] @ true_pose[:2, :2].T
    b = centre + (reference_pose[:2, 3] - a @ true_pose[:2, 3]) / m - a @ centre
    found, scale = pose_from_motion(reference_pose, np.hstack([a, b[:, None]]), centre, m,
                                    reference_scale)
    np.testing.assert_allclose(found, true_pose, atol=1e-9)
    assert scale == pytest.approx(true_scale, abs=1e-12)


def test_scaled_part_scales_the_geometry_and_carries_the_defects_along():
    part = generate_part('hub', 4, defect_probability=1.0)
    bigger = scaled_part(part, 1.01)
    assert bigger.height_mm == pytest.approx(1.01 * part.height_mm)
    assert bigger.radius_xy == pytest.approx(1.01 * part.radius_xy)
    for before, after in zip(part.defects, bigger.defects):
        np.testing.assert_allclose(after.center_mm, 1.01 * before.center_mm)
        assert after.size_mm == before.size_mm
        assert bigger.contains(after.center_mm[None])[0] == part.contains(
            before.center_mm[None])[0]
    assert part.height_mm != bigger.height_mm             # the original is left as it was
    with pytest.raises(ValueError, match='scale must lie in 0.9..1.1'):
        scaled_part(part, 1.5)


@pytest.mark.parametrize('family', ['housing', 'bracket', 'hub'])
def test_registration_finds_the_pose_of_a_part_offset_in_the_fixture(family):
    config = XraySimConfig.for_size(512)
    part = generate_part(family, 3, defect_probability=0.0)
    true_pose = fixture_pose(0.8, -0.5, 0.7)
    rad = simulate_radiograph(part, config, pose=true_pose, seed=1)
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    estimate = estimate_pose(fe, PartReference(part, config))
    # from the fixture's origin to within 10 um and 0.05 deg (the working pixel is 154 um)
    assert np.max(np.abs(estimate.pose[:2, 3] - true_pose[:2, 3])) < 0.01
    assert abs(angle_deg(estimate.pose) - 0.7) < 0.05
    assert estimate.correlation > 0.99 and estimate.renders == ReferenceParams().rounds == 5
    assert estimate.scale == pytest.approx(1.0, abs=2e-4)
    assert estimate.log_reference.shape == fe.S.shape


@pytest.mark.parametrize('family, scale', [('housing', 1.0025), ('hub', 0.9975)])
def test_registration_finds_how_much_the_casting_shrank(family, scale):
    config = XraySimConfig.for_size(512)
    model = generate_part(family, 3, defect_probability=0.0)
    true_pose = fixture_pose(0.5, 0.4, -0.6)
    rad = simulate_radiograph(scaled_part(model, scale), config, pose=true_pose, seed=2)
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    estimate = estimate_pose(fe, PartReference(model, config))
    assert estimate.scale == pytest.approx(scale, abs=2e-4)
    assert np.max(np.abs(estimate.pose[:2, 3] - true_pose[:2, 3])) < 0.02
    # taken at the model's size, the part's edges stay in the residual
    params = ReferenceParams(estimate_scale=False)
    fixed = estimate_pose(fe, PartReference(model, config), params=params)
    assert fixed.scale == 1.0
    edges_left = [np.percentile(np.abs(front_end_with_reference(fe, e.log_reference).z), 99.9)
                  for e in (estimate, fixed)]
    assert edges_left[0] < 3.0 and edges_left[1] > 2.0 * edges_left[0]


@pytest.mark.parametrize('family', ['housing', 'bracket'])
def test_the_parts_structure_cancels_against_the_registered_reference(family):
    config = XraySimConfig.for_size(512)
    part = generate_part(family, 3, defect_probability=0.0)
    rad = simulate_radiograph(part, config, pose=fixture_pose(0.8, -0.5, 0.7), seed=1)
    fe = compute_front_end(rad.image, rad.pixel_pitch_mm / rad.magnification)
    estimate = estimate_pose(fe, PartReference(part, config))
    with_reference = front_end_with_reference(fe, estimate.log_reference)
    # a sound part: the image-only background leaves its walls and holes in z (> 100 noise
    # units), the reference leaves noise
    assert np.abs(fe.z).max() > 100.0
    assert np.abs(with_reference.z).max() < 5.0
    np.testing.assert_allclose(with_reference.S - with_reference.B,
                               with_reference.residual(), atol=1e-6)


def test_level_correction_removes_a_smooth_function_of_the_level():
    rng = np.random.default_rng(0)
    level = rng.uniform(7.0, 11.0, (300, 300)).astype(np.float32)
    drift = 0.02 * (level - 9.0) ** 2 - 0.01 * level            # a spectrum/gain mismatch
    residual = (drift + rng.normal(0.0, 0.003, level.shape)).astype(np.float32)
    corrected = residual - level_correction(level, residual, 32)
    assert np.abs(residual).mean() > 0.05
    assert abs(float(np.median(corrected))) < 0.002
    assert np.abs(corrected).mean() < 0.004                      # noise is what is left


def test_reference_detector_finds_a_defect_and_reports_the_pose():
    config = XraySimConfig.for_size(512)
    found_any = False
    for seed in range(20):
        part = generate_part('housing', seed, defect_probability=1.0,
                             defect_kinds=('inclusion',), max_defects=1)
        rad = simulate_radiograph(part, config, pose=fixture_pose(-0.6, 0.9, -0.5), seed=seed)
        truth = [t for t in rad.truth if t.size_mm >= 1.5 and t.detectability > 30]
        if not truth:
            continue
        detector = ReferenceDetector(make_detector('cnn'), PartReference(part, config))
        assert detector.name == 'cnn+reference'
        found = detector.detect(rad.image, rad.pixel_pitch_mm, rad.magnification)
        boxes = np.array([d.box_xyxy for d in found if d.confidence >= 0.5]).reshape(-1, 4)
        iou = iou_matrix(boxes, np.array([truth[0].box_xyxy]))
        assert iou.size and iou.max() >= 0.5, (seed, boxes, truth[0].box_xyxy)
        assert abs(angle_deg(detector.last_estimate.pose) + 0.5) < 0.05
        assert detector.last_fallback is None
        found_any = True
        break
    assert found_any


def test_a_sure_residual_is_reported_when_the_network_calls_it_background():
    """Against a registered model, a candidate at |z| >= sure_z is a defect whatever the
    network says: a network made to call everything background still reports it."""
    config = XraySimConfig.for_size(512)
    deaf = copy.deepcopy(make_detector('cnn').model)
    with torch.no_grad():
        deaf.cls.weight.zero_()
        deaf.cls.bias.copy_(torch.tensor([30.0] + [-30.0] * (deaf.cls.bias.numel() - 1)))
    base = CnnDetector(model=deaf)
    for seed in range(20):
        part = generate_part('housing', seed, defect_probability=1.0,
                             defect_kinds=('inclusion',), max_defects=1)
        rad = simulate_radiograph(part, config, pose=fixture_pose(0.4, -0.7, 0.6), seed=seed)
        truth = [t for t in rad.truth if t.size_mm >= 1.5 and t.detectability > 30]
        if truth:
            break
    assert truth
    reference = PartReference(part, config)
    unsure = ReferenceDetector(base, reference, sure_z=None)
    assert unsure.detect(rad.image, rad.pixel_pitch_mm, rad.magnification) == []
    sure = ReferenceDetector(base, reference)
    found = sure.detect(rad.image, rad.pixel_pitch_mm, rad.magnification)
    assert sure.last_fallback is None and found
    assert all(d.confidence >= SURE_SCORE for d in found), [d.confidence for d in found]
    iou = iou_matrix(np.array([d.box_xyxy for d in found]), np.array([truth[0].box_xyxy]))
    assert iou.max() >= 0.5, ([d.box_xyxy for d in found], truth[0].box_xyxy)
    # what the image-only front end finds stays the network's call
    assert base.detect(rad.image, rad.pixel_pitch_mm, rad.magnification) == []
    with pytest.raises(ValueError, match='sure_z must exceed the candidate threshold'):
        ReferenceDetector(base, reference, sure_z=1.0)


def test_reference_detector_refuses_what_it_cannot_compare():
    config = XraySimConfig.for_size(256)
    part = generate_part('bracket', 2, defect_probability=0.0)
    cnn = make_detector('cnn')
    detector = ReferenceDetector(cnn, PartReference(part, config))
    other = simulate_radiograph(part, XraySimConfig.for_size(192), seed=1)
    with pytest.raises(ValueError, match='the radiograph is 192x192 px, the reference 256x256'):
        detector.detect(other.image, other.pixel_pitch_mm, other.magnification)
    # a radiograph of another part: the registration refuses it; the detector falls back to
    # the image-only front end and says why, or (fallback=False) raises
    hub = simulate_radiograph(generate_part('hub', 9, defect_probability=0.0), config, seed=1)
    plain = cnn.detect(hub.image, hub.pixel_pitch_mm, hub.magnification)
    found = detector.detect(hub.image, hub.pixel_pitch_mm, hub.magnification)
    assert 'wrong part' in detector.last_fallback and detector.last_front_end is None
    assert [d.box_xyxy for d in found] == [d.box_xyxy for d in plain]
    strict = ReferenceDetector(cnn, PartReference(part, config), fallback=False)
    with pytest.raises(ValueError, match='wrong part'):
        strict.detect(hub.image, hub.pixel_pitch_mm, hub.magnification)
    # a housing turned 180 deg in the fixture registers the wrong way round at ECC
    # correlation 0.992: not trusted (it was at 0.99: 37 false alarms at 1024 px)
    housing = generate_part('housing', 7002, defect_probability=0.0)
    turned = simulate_radiograph(housing, config, pose=fixture_pose(0.0, 0.0, 180.0), seed=1)
    upside = ReferenceDetector(cnn, PartReference(housing, config))
    upside.detect(turned.image, turned.pixel_pitch_mm, turned.magnification)
    assert 0.99 < upside.last_estimate.correlation < TRUST_CORRELATION
    assert 'trusted from 0.995' in upside.last_fallback and upside.last_front_end is None
    with pytest.raises(ValueError, match='trust_correlation must lie in'):
        ReferenceDetector(cnn, PartReference(part, config), trust_correlation=0.5)
    with pytest.raises(ValueError, match="cannot run on a reference: it has no front end"):
        ReferenceDetector(make_detector('classical'), PartReference(part, config))
    with pytest.raises(ValueError, match='CastingPart'):
        PartReference('bracket.step', config)
    with pytest.raises(ValueError, match='rounds must lie in 1..6'):
        ReferenceDetector(cnn, PartReference(part, config), params=ReferenceParams(rounds=0))
    with pytest.raises(ValueError, match='min_correlation'):
        ReferenceParams(min_correlation=1.5).validate()


def test_eval_with_acquisition_errors_and_the_reference_detector(tmp_path, capsys):
    out = tmp_path / 'eval'
    assert cli.main(['xray-eval', '--images', '2', '--size', '512', '--detectors',
                     'cnn,cnn+reference', '--pose-error-mm', '1', '--pose-error-deg', '1',
                     '--kv-error', '0.02', '--scale-error', '0.003', '--out', str(out),
                     '--quiet']) == 0
    plain, referenced = json.loads((out / 'metrics.json').read_text())['results']
    assert plain['detector'] == 'cnn' and 'pose_estimate' not in plain
    pose = referenced['pose_estimate']
    assert referenced['detector'] == 'cnn+reference' and pose['n'] == 2
    assert pose['max_error_mm'] < 0.02 and pose['max_error_deg'] < 0.05
    assert pose['max_scale_error'] < 3e-4 and referenced['reference_fallbacks'] == []
    assert 'pose found by registration' in capsys.readouterr().out
    # the second part has defects: its residuals with and without the model, as a picture
    assert (out / referenced['residual_figure']).stat().st_size > 10000
    assert referenced['residual_figure'] in (out / 'report.html').read_text()
    # the parts really were moved: the same seeds at the fixture's origin give other boxes
    from humanoid_inspection.xray.evaluate_cli import AcquisitionErrors, synthetic_items
    moved = list(synthetic_items(2, 100000, 256,
                                 errors=AcquisitionErrors(1.0, 1.0, 0.02, 0.003)))
    still = list(synthetic_items(2, 100000, 256))
    assert all(not np.array_equal(a['pose'], b['pose']) for a, b in zip(moved, still))
    assert all(0.997 <= a['scale'] <= 1.003 and a['scale'] != 1.0 for a in moved)
    assert all(np.array_equal(b['pose'], np.eye(4)) and b['scale'] == 1.0 for b in still)


def test_eval_refuses_bad_acquisition_errors_and_reference_on_real_images(tmp_path, capsys):
    assert cli.main(['xray-eval', '--images', '1', '--pose-error-mm', '-1', '--quiet',
                     '--out', str(tmp_path / 'a')]) == 2
    assert 'acquisition errors must lie in' in capsys.readouterr().err
    from humanoid_inspection.xray.evaluate_cli import item_detector
    with pytest.raises(ValueError, match='synthetic data only'):
        item_detector('cnn+reference', {'name': 'C0001/x.png', 'image': np.zeros((64, 64))})
    assert item_detector('cnn', {}) == 'cnn'
    # --reference-weights / --reference-min-peak: 'cnn+reference' only, existing weights
    assert cli.main(['xray-eval', '--images', '1', '--detectors', 'cnn', '--quiet',
                     '--reference-min-peak', '3', '--out', str(tmp_path / 'b')]) == 2
    assert "apply to 'cnn+reference' only, not to 'cnn'" in capsys.readouterr().err
    assert cli.main(['xray-eval', '--images', '1', '--detectors', 'cnn+reference', '--quiet',
                     '--reference-weights', str(tmp_path / 'none.pt'),
                     '--out', str(tmp_path / 'c')]) == 2
    assert 'none.pt' in capsys.readouterr().err


def test_cnn_reference_runs_the_reference_trained_network_and_falls_back_to_the_image_only():
    """'cnn+reference' judges residuals against the model with the PatchNet trained on them
    (REFERENCE_WEIGHTS, candidates from REFERENCE_MIN_PEAK); a radiograph the reference is
    not used for goes to the image-only 'cnn', never to the reference-trained network."""
    from humanoid_inspection.xray.detector_reference import (
        REFERENCE_MIN_PEAK, REFERENCE_WEIGHTS, reference_base)
    from humanoid_inspection.xray.evaluate_cli import item_detector, reference_base_detector
    from humanoid_inspection.xray.pipeline import get_detector
    base = reference_base('cnn')
    assert reference_base('default') is base and reference_base('cnn') is base
    assert base.params.peak_threshold == REFERENCE_MIN_PEAK
    assert base.model.meta['reference'] == {'mm': 1.0, 'deg': 1.0, 'kv': 0.02, 'scale': 0.003}
    cnn = get_detector('cnn')
    assert cnn.params.peak_threshold == 3.5 and 'reference' not in cnn.model.meta
    assert reference_base('classical') is get_detector('classical')
    config = XraySimConfig.for_size(256)
    part = generate_part('bracket', 2, defect_probability=0.0)
    item = {'part_model': part, 'config': config}
    detector = item_detector('cnn+reference', item)
    assert detector.base is base and detector.image_only is cnn
    hub = simulate_radiograph(generate_part('hub', 9, defect_probability=1.0), config, seed=1)
    found = detector.detect(hub.image, hub.pixel_pitch_mm, hub.magnification)
    assert 'wrong part' in detector.last_fallback
    plain = cnn.detect(hub.image, hub.pixel_pitch_mm, hub.magnification)
    assert plain and [(d.box_xyxy, d.confidence) for d in found] == \
        [(d.box_xyxy, d.confidence) for d in plain]
    # xray-eval's options build another base: the image-only weights at their own threshold
    other = reference_base_detector('cnn+reference', weights=str(
        REFERENCE_WEIGHTS.parent / 'adr_patchnet.pt'))
    assert other.params.peak_threshold == 3.5 and 'reference' not in other.model.meta
    assert reference_base_detector('cnn+reference') is None
    assert reference_base_detector('cnn+reference', min_peak=3.0).params.peak_threshold == 3.0
