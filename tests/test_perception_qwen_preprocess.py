"""The numpy/OpenCV Qwen2-VL image preprocessing gives transformers' tensors exactly."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil, smart_resize as hf_smart_resize)

from humanoid_inspection.perception.qwen_preprocess import (
    QwenImagePreprocessor, QwenImageSettings, merged_token_count, preprocess_image,
    smart_resize)

MIN, MAX = 56 * 56, 28 * 28 * 1280


def _reference(processor, image, min_pixels=MIN, max_pixels=MAX):
    out = processor(images=[Image.fromarray(image)], return_tensors='np',
                    size={'shortest_edge': min_pixels, 'longest_edge': max_pixels})
    return out['pixel_values'], out['image_grid_thw']


@pytest.mark.parametrize('height, width, max_pixels', [
    (480, 640, MAX),            # the head camera: 644x476 input, 1564 patches
    (481, 643, MAX),            # not a multiple of 28
    (640, 360, MAX),            # portrait
    (20, 30, MAX),              # tiny: scaled up to min_pixels
    (7, 900, MAX),              # very wide and thin
    (700, 1000, 112 * 112),     # scaled down to a small max_pixels
])
def test_same_tensor_and_grid_as_transformers(height, width, max_pixels):
    processor = Qwen2VLImageProcessorPil()
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3),
                                                           dtype=np.uint8)
    ref_values, ref_grid = _reference(processor, image, MIN, max_pixels)
    pre = QwenImagePreprocessor(QwenImageSettings.from_processor(processor, MIN, max_pixels))
    values, grid = pre(image)
    assert grid.tolist() == ref_grid.tolist()
    assert values.shape == ref_values.shape and values.dtype == ref_values.dtype == np.float32
    np.testing.assert_allclose(values, ref_values, rtol=0, atol=1e-6)
    t, h, w = grid[0]
    assert values.shape == (t * h * w, 3 * 2 * 14 * 14)
    assert merged_token_count(grid[0]) == h * w // 4


def test_checkpoint_settings_are_followed():
    """A processor with other mean/std/rescale and merge size: still the same tensor."""
    processor = Qwen2VLImageProcessorPil(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3],
                                         rescale_factor=1 / 127.5, merge_size=2)
    image = np.random.default_rng(3).integers(0, 256, (333, 250, 3), dtype=np.uint8)
    ref_values, ref_grid = _reference(processor, image)
    values, grid = QwenImagePreprocessor(QwenImageSettings.from_processor(processor, MIN,
                                                                          MAX))(image)
    assert grid.tolist() == ref_grid.tolist()
    np.testing.assert_allclose(values, ref_values, rtol=0, atol=1e-6)


def test_grey_and_rgba_images_like_the_processor():
    processor = Qwen2VLImageProcessorPil()
    grey = np.random.default_rng(4).integers(0, 256, (100, 120), dtype=np.uint8)
    ref = processor(images=[Image.fromarray(grey).convert('RGB')], return_tensors='np')
    values, _ = preprocess_image(grey)
    np.testing.assert_allclose(values, ref['pixel_values'], rtol=0, atol=1e-6)
    rgba = np.dstack([np.dstack([grey] * 3), np.full_like(grey, 255)])
    np.testing.assert_allclose(preprocess_image(rgba)[0], values, rtol=0, atol=1e-6)


def test_smart_resize_matches_transformers():
    rng = np.random.default_rng(5)
    for h, w in rng.integers(1, 3000, (300, 2)):
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in ((MIN, MAX), (28 * 28, 112 * 112)):
            assert smart_resize(int(h), int(w), 28, lo, hi) == hf_smart_resize(
                int(h), int(w), 28, lo, hi)


def test_bad_input_is_refused():
    pre = QwenImagePreprocessor()
    with pytest.raises(ValueError, match='uint8'):
        pre(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match='uint8'):
        pre(np.zeros((0, 10, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match='channels'):
        pre(np.zeros((10, 10, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match='aspect ratio'):
        pre(np.zeros((1, 300, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match='resample'):
        QwenImagePreprocessor(resample='nearest')
    with pytest.raises(ValueError, match='min_pixels'):
        QwenImagePreprocessor(QwenImageSettings(min_pixels=1000, max_pixels=10))


def test_cv2_resample_is_close_but_not_the_default():
    image = np.random.default_rng(6).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    exact, grid = QwenImagePreprocessor()(image)
    fast, grid_fast = QwenImagePreprocessor(resample='cv2')(image)
    assert grid.tolist() == grid_fast.tolist()
    assert 0 < np.abs(fast - exact).mean() < 0.1


def test_backend_paths_give_the_same_inputs(tmp_path):
    from humanoid_inspection.perception.tiny_vlm import build_tiny_checkpoint
    from humanoid_inspection.perception.vlm_backend import VlmBackend, VlmConfig
    path = build_tiny_checkpoint(tmp_path / 'tiny')
    image = np.random.default_rng(7).integers(0, 256, (120, 170, 3), dtype=np.uint8)
    fast = VlmBackend(VlmConfig(model_path=str(path)))
    slow = VlmBackend(VlmConfig(model_path=str(path), image_preprocessing='transformers'))
    a, b = fast.prepare(image, 'where is the part?'), slow.prepare(image, 'where is the part?')
    assert a.resized_size == b.resized_size and a.prompt == b.prompt
    for key in b.tensors:
        assert a.tensors[key].dtype == b.tensors[key].dtype, key
        assert torch.equal(a.tensors[key], b.tensors[key]), key
    # the cached prompt tokens are copies: changing one input does not change the next
    a.tensors['input_ids'][0, 0] = -1
    assert fast.prepare(image, 'where is the part?').tensors['input_ids'][0, 0] != -1
    with pytest.raises(ValueError, match='image_preprocessing'):
        VlmBackend(VlmConfig(model_path=str(path), image_preprocessing='opencv'))


def test_single_thread_gives_the_same_tensor():
    image = np.random.default_rng(8).integers(0, 256, (300, 401, 3), dtype=np.uint8)
    threaded = QwenImagePreprocessor(threads=2)
    single = QwenImagePreprocessor(threads=1)
    np.testing.assert_array_equal(threaded(image)[0], single(image)[0])
    threaded.close()
    with pytest.raises(ValueError, match='threads'):
        QwenImagePreprocessor(threads=0)
