"""Radiograph simulator: geometry, defect contrast and truth, noise, 16-bit output, errors."""

from dataclasses import replace

import numpy as np
import pytest

from humanoid_inspection.xray.defects import (DEFECT_KINDS, SIZE_RANGES_MM, DefectSpec,
                                              Ellipsoid)
from humanoid_inspection.xray.phantoms import (PART_FAMILIES, CastingPart, Feature,
                                               generate_part, rounded_rect)
from humanoid_inspection.xray.simulator import (UINT16_MAX, XraySimConfig,
                                                project_part_thickness, simulate_radiograph)

PLATE_MM = 10.0


def plate(defects=(), size=80.0):
    """A flat AlSi9Cu3 plate, size x size x 10 mm, centred on the beam axis."""
    feature = Feature('plate', [rounded_rect(0, 0, size, size, 2.0)], 0.0, PLATE_MM)
    return CastingPart('plate', 'plate-0', 0, [feature], defects=list(defects))


def sphere(kind, centre, diameter, material=None):
    shape = Ellipsoid(np.asarray(centre, float), np.full(3, diameter / 2.0))
    return DefectSpec(kind, np.asarray(centre, float), diameter, [shape], material)


def small_config(**overrides):
    values = {'detector_px': 512, 'pixel_pitch_mm': 0.4}
    values.update(overrides)
    return XraySimConfig(**values)


def yaw_pose(degrees, shift=(0.0, 0.0, 0.0)):
    angle = np.radians(degrees)
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    pose[:3, 3] = shift
    return pose


def test_plate_thickness_is_the_oblique_path_length():
    config = small_config()
    thickness = project_part_thickness(plate(size=150), config)
    rows, cols = config.shape
    centre = thickness[rows // 2 - 2:rows // 2 + 2, cols // 2 - 2:cols // 2 + 2]
    assert np.allclose(centre, PLATE_MM, rtol=2e-3)
    # off-axis rays cross the plate obliquely: t / cos(theta)
    pitch = config.pixel_pitch_mm
    row, col = rows // 2 + 200, cols // 2 + 200
    x = (col + 0.5 - cols / 2) * pitch
    y = (row + 0.5 - rows / 2) * pitch
    expected = PLATE_MM * np.sqrt(config.sdd_mm ** 2 + x ** 2 + y ** 2) / config.sdd_mm
    assert expected > PLATE_MM * 1.005
    assert thickness[row, col] == pytest.approx(expected, rel=1e-3)
    # the plate's shadow is magnified: 150 mm at M(z) between SDD/SOD and SDD/(SOD - 10)
    width_px = np.count_nonzero(thickness[rows // 2] > PLATE_MM / 2)
    low = 150 * config.magnification(0) / pitch
    high = 150 * config.magnification(PLATE_MM) / pitch
    assert low - 1 <= width_px <= high + 1


def test_void_is_brighter_and_inclusion_darker_where_the_truth_says():
    void = sphere('shrinkage', (-15.0, 0.0, 5.0), 3.0)
    inclusion = sphere('inclusion', (15.0, 0.0, 5.0), 3.0, material='steel')
    inclusion.defect_id = 1
    config = small_config(read_noise_adu=0.0)
    clean = simulate_radiograph(plate(), config, seed=3).image.astype(float)
    image = simulate_radiograph(plate([void, inclusion]), config, seed=3)
    diff = image.image.astype(float) - clean
    by_kind = {t.kind: t for t in image.truth}
    assert set(by_kind) == {'shrinkage', 'inclusion'}
    for kind, sign in (('shrinkage', 1), ('inclusion', -1)):
        truth = by_kind[kind]
        x0, y0, x1, y1 = truth.box_xyxy
        inside = diff[y0:y1, x0:x1][truth.mask]
        assert sign * inside.mean() > 20 * diff[:100, :100].std() + 1
        assert np.sign(truth.contrast) == sign
        # the box is centred on the projection of the defect centre
        magnification = config.magnification(5.0)
        expected_x = (-15.0 if kind == 'shrinkage' else 15.0) * magnification / \
            config.pixel_pitch_mm + 256 - 0.5
        assert (x0 + x1 - 1) / 2 == pytest.approx(expected_x, abs=1.0)
        assert (y0 + y1 - 1) / 2 == pytest.approx(255.5, abs=1.0)
        # projected size: 3 mm * M / pitch, area = pi r^2 in the defect plane
        assert x1 - x0 == pytest.approx(3.0 * magnification / config.pixel_pitch_mm, abs=2)
        assert truth.area_mm2 == pytest.approx(np.pi * 1.5 ** 2, rel=0.25)
        assert truth.size_mm == 3.0


@pytest.mark.parametrize('family', PART_FAMILIES)
def test_ground_truth_boxes_hold_the_defect_contrast(family):
    part = generate_part(family, 11, defect_probability=1.0)
    assert part.defects, 'defect_probability=1 must give defects'
    config = small_config(read_noise_adu=0.0)
    image = simulate_radiograph(part, config, seed=5)
    clean_part = CastingPart(part.family, part.part_id, part.seed, part.features)
    clean = simulate_radiograph(clean_part, config, seed=5)
    diff = np.abs(image.image.astype(float) - clean.image.astype(float))
    inside = np.zeros(diff.shape, bool)
    for truth in image.truth:
        x0, y0, x1, y1 = truth.box_xyxy
        inside[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = True
        assert truth.kind in DEFECT_KINDS
        assert truth.mask.shape == (y1 - y0, x1 - x0) and truth.mask.any()
        assert truth.area_mm2 > 0
    signal = diff - np.median(diff)
    signal[signal < 0] = 0
    # almost all of the change the defects make lies in their (slightly grown) boxes
    assert signal[inside].sum() > 0.8 * signal.sum()


def test_same_seed_gives_identical_bytes_and_another_seed_differs():
    part = generate_part('housing', 4, defect_probability=1.0)
    config = small_config()
    first = simulate_radiograph(part, config, seed=9)
    again = simulate_radiograph(generate_part('housing', 4, defect_probability=1.0), config,
                                seed=9)
    assert first.image.tobytes() == again.image.tobytes()
    assert [t.to_dict() for t in first.truth] == [t.to_dict() for t in again.truth]
    other = simulate_radiograph(part, config, seed=10)
    assert other.image.tobytes() != first.image.tobytes()


def _snr(mas):
    config = small_config(mas=mas, read_noise_adu=0.0, glare_fraction=0.0,
                          scatter_fraction=0.0)
    image = simulate_radiograph(plate(size=150), config, seed=1).image.astype(float)
    roi = image[206:306, 206:306] - config.dark_offset_adu
    return roi.mean() / roi.std()


def test_quantum_noise_snr_grows_with_the_square_root_of_mas():
    ratio = _snr(4.0) / _snr(1.0)
    assert ratio == pytest.approx(2.0, rel=0.12)


def test_output_is_16_bit_with_saturation_clipping():
    part = plate([sphere('gas_porosity', (0, 0, 5), 2.0)])
    image = simulate_radiograph(part, small_config(), seed=0).image
    assert image.dtype == np.uint16 and image.shape == (512, 512)
    assert 0 < image.min() < image.max() < UINT16_MAX
    saturated = simulate_radiograph(part, small_config(gain_adu_per_kev=1.0), seed=0).image
    assert saturated.dtype == np.uint16
    assert saturated[0, 0] == UINT16_MAX  # open beam clips at full scale, no wrap-around


def test_rotation_about_the_beam_rotates_the_projection_and_truth():
    part = generate_part('bracket', 2, defect_probability=1.0)
    config = small_config()
    straight = simulate_radiograph(part, config, seed=1)
    turned = simulate_radiograph(part, config, pose=yaw_pose(90), seed=1)
    # +90 deg about z maps (x, y) to (-y, x): image rows/cols rotate the same way
    expected = np.rot90(straight.thickness_mm, k=-1)
    assert np.mean(np.abs(turned.thickness_mm - expected)) < 0.02
    for before, after in zip(straight.truth, turned.truth):
        cx, cy = before.center_px
        assert after.center_px[0] == pytest.approx(511 - cy, abs=0.05)
        assert after.center_px[1] == pytest.approx(cx, abs=0.05)


def test_translation_shifts_the_image_by_the_magnified_offset():
    config = small_config()
    part = plate(size=40)
    centred = project_part_thickness(part, config)
    shifted = project_part_thickness(part, config, yaw_pose(0, (16.0, 0.0, 0.0)))
    columns = np.nonzero(centred[256] > 5)[0]
    moved = np.nonzero(shifted[256] > 5)[0]
    expected = 16.0 * config.magnification(PLATE_MM / 2) / config.pixel_pitch_mm
    assert moved.mean() - columns.mean() == pytest.approx(expected, abs=1.0)


def test_generated_defects_lie_inside_material_with_realistic_sizes():
    for family in PART_FAMILIES:
        for seed in range(4):
            part = generate_part(family, seed, defect_probability=1.0)
            assert generate_part(family, seed, defect_probability=1.0).summary() == \
                part.summary()
            for defect in part.defects:
                assert part.contains(defect.surface_points()).all(), (family, seed)
                low, high = SIZE_RANGES_MM[defect.kind]
                assert low * 0.99 <= defect.size_mm <= high * 1.05, defect.to_dict()
    none = generate_part('hub', 1, defect_probability=0.0)
    assert none.defects == []


@pytest.mark.parametrize('overrides, message', [
    ({'sod_mm': -100.0}, 'sod_mm'),
    ({'sdd_mm': 500.0, 'sod_mm': 700.0}, 'must exceed the source-object distance'),
    ({'pixel_pitch_mm': 0.0}, 'pixel_pitch_mm'),
    ({'detector_px': 8}, 'detector size'),
    ({'mas': float('nan')}, 'mas'),
    ({'focal_spot_mm': -0.1}, 'focal_spot_mm'),
])
def test_bad_config_raises_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        simulate_radiograph(plate(), small_config(**overrides))


def test_bad_part_pose_and_seed_raise():
    with pytest.raises(ValueError, match='unknown part family'):
        generate_part('gearbox', 0)
    with pytest.raises(ValueError, match='seed'):
        generate_part('hub', -1)
    with pytest.raises(ValueError, match='defect kinds'):
        generate_part('hub', 0, defect_kinds=('blowhole',))
    tilted = np.eye(4)
    tilted[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]
    with pytest.raises(ValueError, match='vertical'):
        simulate_radiograph(plate(), small_config(), pose=tilted)
    with pytest.raises(ValueError, match='source'):
        simulate_radiograph(plate(), small_config(), pose=yaw_pose(0, (0, 0, 695.0)))
    with pytest.raises(ValueError, match='CastingPart'):
        simulate_radiograph('housing', small_config())
    with pytest.raises(ValueError, match='seed'):
        simulate_radiograph(plate(), small_config(), seed=-3)


def _plate_radiograph(defects, seed, mas=2.0):
    """96-px radiographs of the plate with no blur or scatter: the noise is white."""
    config = XraySimConfig(detector_px=96, pixel_pitch_mm=0.2, mas=mas, detector_blur_px=0.0,
                           glare_fraction=0.0, scatter_fraction=0.0, focal_spot_mm=0.0)
    return simulate_radiograph(plate(defects, size=150), config, seed=seed)


def test_detectability_is_the_snr_of_the_ideal_observer():
    void = sphere('gas_porosity', (0.0, 0.0, 5.0), 1.0)
    truth = _plate_radiograph([void], 0).truth[0]
    # the ideal observer's statistic t = sum(delta * x / variance) on 80 noise draws with and
    # 80 without the pore; delta from nearly noise-free (10^4 x the dose) radiographs
    delta = (_plate_radiograph([void], 0, 2e4).image.astype(float)
             - _plate_radiograph([], 0, 2e4).image.astype(float))
    x0, y0, x1, y1 = truth.box_xyxy
    roi = (slice(y0 - 2, y1 + 2), slice(x0 - 2, x1 + 2))
    without = np.array([_plate_radiograph([], s).image[roi] for s in range(1, 81)], float)
    with_pore = np.array([_plate_radiograph([void], s).image[roi] for s in range(81, 161)],
                         float)
    weights = delta[roi] / without.var(axis=0).mean()
    t_without = (without * weights).sum(axis=(1, 2))
    t_with = (with_pore * weights).sum(axis=(1, 2))
    measured = (t_with.mean() - t_without.mean()) / t_without.std(ddof=1)
    assert truth.detectability == pytest.approx(measured, rel=0.1)
    assert truth.to_dict()['detectability'] == pytest.approx(truth.detectability, abs=1e-3)


def test_detectability_grows_with_the_dose_and_the_void():
    small = sphere('gas_porosity', (0.0, 0.0, 5.0), 0.6)
    large = sphere('gas_porosity', (0.0, 0.0, 5.0), 1.2)
    d_small = _plate_radiograph([small], 0).truth[0].detectability
    d_small_4x = _plate_radiograph([small], 0, mas=8.0).truth[0].detectability
    d_large = _plate_radiograph([large], 0).truth[0].detectability
    # quantum-limited: d' grows like the square root of the dose (the read noise is small)
    assert d_small_4x / d_small == pytest.approx(2.0, rel=0.03)
    assert d_large > 2.0 * d_small > 0.0


@pytest.mark.parametrize('family', PART_FAMILIES)
def test_windowed_projection_adds_exactly_what_the_whole_square_did(family):
    # each slab is added only where its features were drawn (plus the fill's anti-aliased
    # edge): the sum must be bit for bit the one of adding the part's whole square, also for
    # the bracket's gussets and bosses, whose slabs cover a few percent of it, and off-centre
    part = generate_part(family, 11, defect_probability=0.0)
    config = XraySimConfig.for_size(512)
    pose = yaw_pose(23.0, shift=(6.0, -4.0, 0.0))
    windowed = project_part_thickness(part, config, pose)
    whole = project_part_thickness(part, config, pose, windowed=False)
    assert windowed.max() > 5.0
    np.testing.assert_array_equal(windowed, whole)


def test_expected_image_of_a_sound_part_needs_only_the_signal(monkeypatch):
    # without noise and defects the photon energies are not looked up; the image must be
    # the one the full look-up gives: it is the reference a part is registered to
    from humanoid_inspection.xray.physics import TransmissionTable
    from humanoid_inspection.xray.simulator import transmission_table
    config = small_config()
    table = transmission_table(config)
    thickness = np.linspace(0.0, 120.0, 4096, dtype=np.float32).reshape(64, 64)
    signal, mean_energy, rms_energy = table.lookup(thickness, energies=False)
    assert mean_energy is None and rms_energy is None
    np.testing.assert_array_equal(signal, table.lookup(thickness)[0])
    assert signal.dtype == np.float32
    part = generate_part('hub', 4)
    sound = replace(part, defects=[])
    fast = simulate_radiograph(sound, config, noise=False).image
    full_lookup = TransmissionTable.lookup
    monkeypatch.setattr(TransmissionTable, 'lookup',
                        lambda self, t, energies=True: full_lookup(self, t))
    np.testing.assert_array_equal(fast, simulate_radiograph(sound, config, noise=False).image)
    # with defects the energies still serve their detectability
    flawed = simulate_radiograph(part, config, noise=False)
    assert flawed.truth and all(np.isfinite(t.detectability) and t.detectability > 0
                                for t in flawed.truth)
