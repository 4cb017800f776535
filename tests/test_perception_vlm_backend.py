"""The VLM backend's real loading path on a tiny random Qwen2.5-VL checkpoint built offline."""

import json
import shutil

import numpy as np
import pytest

from humanoid_inspection.perception.synthetic_scene import (
    default_camera_pose, demo_parts, render_scene)
from humanoid_inspection.perception.tiny_vlm import build_tiny_checkpoint
from humanoid_inspection.perception.vlm_backend import (
    CheckpointError, VlmBackend, VlmConfig, check_checkpoint)
from humanoid_inspection.perception.vlm_parsing import ParseFailure, VlmParseError


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp('tiny_qwen25vl'))


@pytest.fixture(scope='module')
def backend(tiny_checkpoint):
    return VlmBackend(VlmConfig(model_path=str(tiny_checkpoint), max_new_tokens=16,
                                min_pixels=56 * 56, max_pixels=112 * 112))


@pytest.fixture(scope='module')
def frame():
    return render_scene(demo_parts(), default_camera_pose())


def test_checkpoint_has_the_real_layout(tiny_checkpoint):
    config = check_checkpoint(str(tiny_checkpoint))
    assert config['model_type'] == 'qwen2_5_vl'


def test_prepare_builds_qwen_inputs(backend, frame):
    prepared = backend.prepare(frame.color, 'Where is the housing?')
    t = prepared.tensors
    grid = t['image_grid_thw'][0].tolist()
    assert grid[0] == 1
    # one <|image_pad|> per merged 2x2 patch group
    n_pad = int((t['input_ids'] == backend.image_token_id).sum())
    assert n_pad == grid[0] * grid[1] * grid[2] // 4
    assert int(t['mm_token_type_ids'].sum()) == n_pad
    assert t['pixel_values'].shape[0] == grid[0] * grid[1] * grid[2]
    # resized size = grid * patch and within max_pixels, multiples of 28
    w, h = prepared.resized_size
    assert (w, h) == (grid[2] * 14, grid[1] * 14)
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 112 * 112
    assert prepared.prompt.startswith('<|im_start|>system\nYou are a helpful assistant.')
    assert 'Where is the housing? /no_think<|im_end|>' in prepared.prompt
    assert prepared.prompt.endswith('<|im_start|>assistant\n')


def test_full_round_random_output_is_rejected_not_crashing(backend, frame):
    """prompt -> generate -> parse: a random model's answer must come out as malformed."""
    result = backend.detect(frame.color, frame.depth, frame.intrinsics)
    assert result.detections == []
    assert result.diagnostic.startswith('VLM answer rejected: ')
    assert 'malformed' in result.diagnostic or 'missing' in result.diagnostic
    with pytest.raises(VlmParseError) as err:
        backend.point(frame.color, 'housing')
    assert err.value.kind in (ParseFailure.MALFORMED, ParseFailure.MISSING)


def test_ask_returns_text(backend, frame):
    answer = backend.ask(frame.color, 'How many castings are on the table?')
    assert isinstance(answer, str) and answer


def test_detect_bad_input_gives_diagnostic(backend, frame):
    result = backend.detect(frame.color, frame.depth, None)
    assert result.detections == [] and 'camera_info' in result.diagnostic


def test_thinking_mode_leaves_prompt_without_no_think(tiny_checkpoint, frame):
    b = VlmBackend(VlmConfig(model_path=str(tiny_checkpoint), thinking=True, max_new_tokens=4))
    assert '/no_think' not in b.prepare(frame.color, 'hi').prompt


def test_checkpoint_without_chat_template_uses_builtin_chatml(tmp_path, frame):
    path = build_tiny_checkpoint(tmp_path / 'no_template', chat_template=False)
    b = VlmBackend(VlmConfig(model_path=str(path), max_new_tokens=4))
    prompt = b.prepare(frame.color, 'hi').prompt
    assert '<|vision_start|><|image_pad|><|vision_end|>hi /no_think' in prompt


def test_missing_checkpoint_names_path(tmp_path):
    missing = tmp_path / 'MiMo-Embodied-7B'
    with pytest.raises(CheckpointError, match='MiMo-Embodied-7B.*does not exist.*qwen2_5_vl'):
        VlmBackend(VlmConfig(model_path=str(missing)))
    with pytest.raises(CheckpointError, match='no model path'):
        VlmBackend(VlmConfig(model_path=''))


def test_incompatible_checkpoint_is_refused(tmp_path, tiny_checkpoint):
    bad = tmp_path / 'llama'
    shutil.copytree(tiny_checkpoint, bad)
    cfg = json.loads((bad / 'config.json').read_text())
    cfg['model_type'] = 'llama'
    (bad / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model_type 'llama'"):
        VlmBackend(VlmConfig(model_path=str(bad)))


@pytest.mark.parametrize('remove,match', [
    ('model.safetensors', 'no weights'),
    ('tokenizer.json', 'no tokenizer'),
    ('preprocessor_config.json', 'no preprocessor_config'),
    ('config.json', 'no config.json'),
])
def test_incomplete_checkpoint_is_refused(tmp_path, tiny_checkpoint, remove, match):
    bad = tmp_path / 'partial'
    shutil.copytree(tiny_checkpoint, bad)
    (bad / remove).unlink()
    with pytest.raises(CheckpointError, match=match):
        VlmBackend(VlmConfig(model_path=str(bad)))


def test_corrupt_weights_are_a_checkpoint_error(tmp_path, tiny_checkpoint):
    bad = tmp_path / 'corrupt'
    shutil.copytree(tiny_checkpoint, bad)
    (bad / 'model.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(CheckpointError, match='corrupt'):
        VlmBackend(VlmConfig(model_path=str(bad)))


def test_cuda_request_without_cuda_is_refused(tiny_checkpoint):
    import torch
    if torch.cuda.is_available():
        pytest.skip('CUDA present')
    with pytest.raises(ValueError, match='CUDA is not available'):
        VlmBackend(VlmConfig(model_path=str(tiny_checkpoint), device='cuda'))


def test_bad_image_is_refused(backend):
    with pytest.raises(ValueError, match='HxWx3 uint8'):
        backend.prepare(np.zeros((10, 10), dtype=np.uint8), 'x')
