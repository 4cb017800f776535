"""The VLM answer parser on realistic answers of the Qwen2.5-VL family and other conventions."""

from pathlib import Path

import pytest
import yaml

from humanoid_inspection.perception.vlm_parsing import (
    CoordinateFrame, ParseFailure, VlmParseError, parse_boxes, parse_points, strip_thinking)

FIXTURES = Path(__file__).parent / 'fixtures' / 'vlm_outputs'
SPEC = yaml.safe_load((FIXTURES / 'cases.yaml').read_text())


def _case_text(case):
    return (FIXTURES / case['text_file']).read_text() if 'text_file' in case else case['text']


def _frame(case):
    d = dict(SPEC['defaults'], **{k: case[k] for k in SPEC['defaults'] if k in case})
    return CoordinateFrame(tuple(d['original_size']), tuple(d['resized_size']),
                           d['convention'], d['order'])


@pytest.mark.parametrize('case', SPEC['cases'], ids=[c['name'] for c in SPEC['cases']])
def test_fixture_answer(case):
    parse = parse_boxes if case['task'] == 'boxes' else parse_points
    text, frame = _case_text(case), _frame(case)
    if 'expect_error' in case:
        with pytest.raises(VlmParseError) as err:
            parse(text, frame)
        assert err.value.kind == ParseFailure(case['expect_error'])
        assert err.value.reason  # a human-readable reason travels with the error
        return
    result = parse(text, frame)
    got = [r.box_xyxy if case['task'] == 'boxes' else r.xy for r in result]
    assert len(got) == len(case['expect'])
    for g, e in zip(got, case['expect']):
        assert g == pytest.approx(e, abs=0.01)
    if 'labels' in case:
        assert [r.label for r in result] == case['labels']


def test_resized_pixels_round_trip_matches_smart_resize():
    """A point at the far corner of the resized input maps to the far corner of the image."""
    frame = CoordinateFrame((640, 480), (644, 476))
    (p,) = parse_points('[{"point_2d": [644, 476]}]', frame)
    assert p.xy == pytest.approx((640.0, 480.0))


def test_strip_thinking_keeps_answer_after_last_think():
    assert strip_thinking('<think>a</think> x <think>b</think> answer<|im_end|>') == 'answer'
    assert strip_thinking('plain answer') == 'plain answer'


def test_frame_rejects_bad_configuration():
    with pytest.raises(ValueError, match='resized_size'):
        CoordinateFrame((640, 480), None, 'resized_pixels')
    with pytest.raises(ValueError, match='unknown coordinate convention'):
        CoordinateFrame((640, 480), (644, 476), 'auto')
    with pytest.raises(ValueError, match='order'):
        CoordinateFrame((640, 480), (644, 476), order='xz')


def test_none_is_missing():
    with pytest.raises(VlmParseError) as err:
        parse_boxes(None, CoordinateFrame((640, 480), (644, 476)))
    assert err.value.kind is ParseFailure.MISSING
