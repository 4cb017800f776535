"""xray/confirm.py: the image-only screen, and the part's model only where it does not
ACCEPT (real detectors on radiographs of the cell's station; no ROS)."""

import numpy as np
import pytest

from humanoid_inspection.xray.confirm import SCREEN_STAGE, inspect_confirmed


def _case(part_id):
    from humanoid_inspection.cell_geometry import load_cell
    from humanoid_inspection.sim.xray_station import station_from_cell
    from humanoid_inspection.xray.detector_reference import reference_base
    from humanoid_inspection.xray.part_models import part_model, reference_detector
    from humanoid_inspection.xray.pipeline import get_detector
    from humanoid_inspection.xray.simulator import resting_pose, simulate_radiograph
    config = station_from_cell(load_cell()).config
    rad = simulate_radiograph(part_model(part_id), config, seed=3,
                              pose=resting_pose(3.0, -2.0, np.radians(6.0)))
    calls = []

    def confirmer():
        calls.append(part_id)
        return reference_detector(part_id, reference_base('cnn'), config,
                                  image_only=get_detector('cnn'))
    return rad, confirmer, calls


def test_a_false_reject_of_the_screen_is_overruled_against_the_model():
    rad, confirmer, calls = _case('housing-007002')        # a sound housing
    progress = []
    final, screened = inspect_confirmed(rad.image, rad.pixel_pitch_mm, rad.magnification,
                                        'housing', 'cnn', confirmer,
                                        progress=lambda s, f: progress.append(f))
    assert calls == ['housing-007002']
    assert screened.verdict == 'REJECT' and screened.detector == 'cnn'
    assert final.verdict == 'ACCEPT' and final.detector == 'cnn+reference'
    assert list(final.stage_times_s)[:2] == ['validate', SCREEN_STAGE]
    assert final.stage_times_s[SCREEN_STAGE] == pytest.approx(
        screened.stage_times_s['detect'] + screened.stage_times_s['grade'])
    assert final.total_time_s > screened.total_time_s
    assert progress == sorted(progress) and 0.5 < progress[-1] <= 1.0


def test_an_accept_of_the_screen_stands_without_the_model():
    rad, confirmer, calls = _case('housing-007005')
    final, screened = inspect_confirmed(rad.image, rad.pixel_pitch_mm, rad.magnification,
                                        'housing', 'cnn', confirmer)
    assert final.verdict == 'ACCEPT' and screened is None and calls == []
    assert SCREEN_STAGE not in final.stage_times_s


def test_no_model_keeps_the_screens_verdict():
    rad, _, _ = _case('housing-007002')
    final, screened = inspect_confirmed(rad.image, rad.pixel_pitch_mm, rad.magnification,
                                        'housing', 'cnn', lambda: None)
    assert final.verdict == 'REJECT' and final.detector == 'cnn' and screened is None


def test_bad_input_is_refused_before_any_model_is_built():
    calls = []
    with pytest.raises(ValueError):
        inspect_confirmed(np.full((64, 64), np.nan, np.float32), 0.2, 1.3, 'housing', 'cnn',
                          lambda: calls.append(1))
    assert calls == []
