"""xray/part_models.py: part id -> model, the station's acquisition, the reference cache."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from humanoid_inspection.xray.part_models import (
    ReferenceCache, acquisition_config, parse_part_id, part_model, reference_detector,
    station_acquisition)
from humanoid_inspection.xray.phantoms import PART_FAMILIES, generate_part

CONFIG = Path(__file__).resolve().parents[1] / 'config'


@pytest.mark.parametrize('family', PART_FAMILIES)
def test_the_id_of_a_generated_part_names_its_sound_model(family):
    for seed in (7004, 1234567):
        cast = generate_part(family, seed, defect_probability=1.0)
        assert parse_part_id(cast.part_id) == (family, seed)
        model = part_model(cast.part_id)
        assert model.part_id == cast.part_id and model.defects == [] and cast.defects
        # the geometry is the cell's part's whatever defect probability the cell used
        assert repr(model.features) == repr(cast.features)
        assert repr(model.params) == repr(cast.params)


@pytest.mark.parametrize('part_id, why', [
    ('P-001', "is not '<family>-<seed>'"),
    ('', "is not '<family>-<seed>'"),
    ('housing', "is not '<family>-<seed>'"),
    ('housing-', "is not '<family>-<seed>'"),
    ('housing-00004a', "is not '<family>-<seed>'"),
    (' housing-000042', "is not '<family>-<seed>'"),
    ('housing-000042 ', "is not '<family>-<seed>'"),
    ('housing-+00042', "is not '<family>-<seed>'"),
    ('Housing-000042', "is not '<family>-<seed>'"),
    ('engine-000042', "unknown part family 'engine'; known: housing, bracket, hub"),
    ('housing-42', "the seed is written '000042' in part ids"),
    ('housing-0000042', "the seed is written '000042' in part ids"),
    ('hub-01234567', "the seed is written '1234567' in part ids"),
])
def test_an_id_that_names_no_model_is_refused_with_the_reason(part_id, why):
    with pytest.raises(ValueError, match='part id') as err:
        part_model(part_id)
    assert why in str(err.value)


def test_a_non_string_id_is_refused():
    with pytest.raises(ValueError, match='must be a string, got int'):
        parse_part_id(42)


def test_station_acquisition_is_the_mujoco_sim_stations_config():
    """The xray_inspection node's reference settings (config/xray_inspection.yaml, 0 = the
    station's) give the config the mujoco_sim node's station takes its radiographs with."""
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.sim.xray_station import station_from_cell
    sim = yaml.safe_load((CONFIG / 'mujoco_sim.yaml').read_text())['mujoco_sim'][
        'ros__parameters']
    node = yaml.safe_load((CONFIG / 'xray_inspection.yaml').read_text())['xray_inspection'][
        'ros__parameters']
    cell = load_cell()
    station = station_from_cell(cell, sim['xray_detector_px'], sim['xray_pixel_pitch_mm'],
                                sim['xray_kv'], sim['xray_mas'])
    size = sim['xray_detector_px']
    ours = station_acquisition((size, size), sim['xray_pixel_pitch_mm'],
                               node['source_to_object_mm'], node['source_to_detector_mm'],
                               node['tube_kv'], node['tube_mas'])
    assert ours == station.config
    assert (ours.sod_mm, ours.sdd_mm) == (cell.xray_cabinet.source_to_object_mm,
                                          cell.xray_cabinet.source_to_detector_mm)
    # settings given are used as given; a rectangular detector keeps its shape
    other = station_acquisition((200, 300), 0.3, 650.0, 950.0, 90.0, 4.0, cell=cell)
    assert (other.shape, other.sod_mm, other.sdd_mm, other.kv, other.mas) == \
        ((200, 300), 650.0, 950.0, 90.0, 4.0)


@pytest.mark.parametrize('kwargs, why', [
    ({'sod_mm': -1.0}, 'sod_mm must be >= 0'),
    ({'kv': float('nan')}, 'kv must be >= 0'),
    ({'sod_mm': 900.0, 'sdd_mm': 700.0}, 'must exceed the source-object distance'),
])
def test_bad_station_settings_are_refused(kwargs, why):
    with pytest.raises(ValueError, match=why):
        station_acquisition((64, 64), 0.2, **kwargs)


def test_bad_acquisition_shapes_are_refused():
    with pytest.raises(ValueError, match=r'shape must be \(rows, cols\)'):
        acquisition_config((64, 64, 3), 0.2, 400.0, 520.0, 110.0, 2.0)
    with pytest.raises(ValueError, match='detector size 8x8 px outside'):
        acquisition_config((8, 8), 0.2, 400.0, 520.0, 110.0, 2.0)


def test_the_cache_builds_a_reference_once_per_part_and_acquisition():
    from humanoid_inspection.xray.candidates import FrontEndParams
    cache = ReferenceCache(size=2)
    config = acquisition_config((64, 64), 3.2, 400.0, 520.0, 110.0, 2.0)
    first = cache.get('hub-000003', config)
    assert cache.get('hub-000003', acquisition_config((64, 64), 3.2, 400.0, 520.0, 110.0,
                                                      2.0)) is first
    assert cache.builds == 1 and first.model.defects == [] and first.shape == (64, 64)
    other_kv = cache.get('hub-000003', acquisition_config((64, 64), 3.2, 400.0, 520.0, 100.0,
                                                          2.0))
    assert other_kv is not first and other_kv.config.kv == 100.0 and cache.builds == 2
    cache.get('hub-000003', config, FrontEndParams(smooth_sigma_px=1.5))
    assert cache.builds == 3 and len(cache) == 2              # the oldest went
    assert cache.get('hub-000003', config) is not first and cache.builds == 4
    with pytest.raises(ValueError, match="unknown part family 'gear'"):
        cache.get('gear-000001', config)
    with pytest.raises(ValueError, match='must be an XraySimConfig'):
        cache.get('hub-000003', {'kv': 110})
    with pytest.raises(ValueError, match='cache size must be >= 1'):
        ReferenceCache(0)


def test_reference_detector_registers_the_part_its_id_names():
    """A radiograph of a hub off the fixture's origin with a 2.7 mm inclusion: the detector
    built from the id alone finds the pose and the inclusion; a detector without a front end
    is refused."""
    from humanoid_inspection.xray.detector_reference import reference_base
    from humanoid_inspection.xray.metrics import iou_matrix
    from humanoid_inspection.xray.pipeline import get_detector
    from humanoid_inspection.xray.simulator import pose_yaw, resting_pose, simulate_radiograph
    cast = generate_part('hub', 100003, defect_probability=1.0)
    config = station_acquisition((256, 256), 0.8)
    pose = resting_pose(3.0, -2.0, np.radians(6.0))
    rad = simulate_radiograph(cast, config, pose=pose, seed=3)
    (truth,) = rad.truth
    detector = reference_detector(cast.part_id, reference_base('cnn'), config,
                                  image_only=get_detector('cnn'))
    found = detector.detect(rad.image, rad.pixel_pitch_mm, rad.magnification)
    assert detector.name == 'cnn+reference' and detector.last_fallback is None
    est = detector.last_estimate
    assert est.correlation > 0.99
    assert np.hypot(*(est.pose[:2, 3] - pose[:2, 3])) < 0.05          # mm
    assert abs(np.degrees(pose_yaw(est.pose)) - 6.0) < 0.05
    (sure,) = [d for d in found if d.confidence >= 0.5]
    assert sure.kind == 'inclusion'
    assert iou_matrix(np.array([sure.box_xyxy], float),
                      np.array([truth.box_xyxy], float))[0, 0] >= 0.5
    with pytest.raises(ValueError, match="'classical' cannot run on a reference"):
        reference_detector(cast.part_id, get_detector('classical'), config)
