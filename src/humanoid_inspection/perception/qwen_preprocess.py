"""Qwen2-VL / Qwen2.5-VL image preprocessing in numpy/OpenCV, equal to transformers' (no ROS).

transformers' Qwen2VLImageProcessor (the PIL backend used here: torchvision is not installed)
takes ~11 ms for one 640x480 frame, almost all of it in generic conversions and float64
arithmetic around three simple steps. This module does the same steps directly:

1. smart_resize: the size closest to the image's, both sides multiples of
   factor = patch_size * merge_size (28), the area within [min_pixels, max_pixels]
   (the same formula as transformers' `smart_resize`, copied so nothing changes silently).
2. Resize with PIL's BICUBIC filter on the uint8 image (exactly what the processor does; OpenCV's
   bicubic is not antialiased and differs by ~0.003 on average after normalisation, so it is
   only used with `resample='cv2'`, which is not the default). PIL filters 8-bit images channel
   by channel with the same integer kernel, so each channel is resized on its own (as an 'L'
   image) and the three channels run in parallel (`threads`).
3. Rescale and normalise: the processor computes float32(u * rescale_factor in float64), then
   (x - mean) / std in float32, for u in 0..255. That is a function of (u, channel) only, so it
   is a 256-entry lookup table per channel, built with the same operations (bit-exact), and
   applied with cv2.LUT.
4. Patchify: each resized uint8 channel is reordered (cheap, 1 byte per value) into the layout
   (grid_h/merge, grid_w/merge, merge, merge, patch, patch); the lookup writes it into its
   channel of the output (grid_h*grid_w, C*temporal_patch*patch*patch) float32 array, the frame
   repeated temporal_patch_size times (a still image); image_grid_thw = [[1, grid_h, grid_w]].

`preprocess_image()` returns the same `pixel_values` and `image_grid_thw` as
`processor(images=[PIL image], size={'shortest_edge': min_pixels, 'longest_edge': max_pixels})`
(tests/test_perception_qwen_preprocess.py compares them for several sizes).
"""

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import cv2
import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 14 * 14 * 4 * 1280) -> Tuple[int, int]:
    """(height, width) multiples of factor, area within [min_pixels, max_pixels], same aspect.

    Raises:
        ValueError: an aspect ratio over 200 or a non-positive size.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    if max(height, width) / min(height, width) > 200:
        raise ValueError('absolute aspect ratio must be smaller than 200, got '
                         f'{max(height, width) / min(height, width)}')
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class QwenImageSettings:
    """The image processor's settings (preprocessor_config.json of the checkpoint)."""

    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    rescale_factor: float = 1.0 / 255.0
    image_mean: Tuple[float, float, float] = OPENAI_CLIP_MEAN
    image_std: Tuple[float, float, float] = OPENAI_CLIP_STD
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_processor(cls, processor, min_pixels: int = None,
                       max_pixels: int = None) -> 'QwenImageSettings':
        """Settings of a transformers Qwen2VL image processor (size limits overridable)."""
        size = getattr(processor, 'size', None) or {}
        get = size.get if isinstance(size, dict) else (lambda k, d=None: getattr(size, k, d))
        lo = min_pixels if min_pixels is not None else (
            get('shortest_edge') or getattr(processor, 'min_pixels', None) or cls.min_pixels)
        hi = max_pixels if max_pixels is not None else (
            get('longest_edge') or getattr(processor, 'max_pixels', None) or cls.max_pixels)

        def triple(v, default):
            v = default if v is None else v
            return tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v] * 3))

        return cls(int(lo), int(hi), int(getattr(processor, 'patch_size', 14)),
                   int(getattr(processor, 'temporal_patch_size', 2)),
                   int(getattr(processor, 'merge_size', 2)),
                   float(getattr(processor, 'rescale_factor', 1.0 / 255.0)),
                   triple(getattr(processor, 'image_mean', None), OPENAI_CLIP_MEAN),
                   triple(getattr(processor, 'image_std', None), OPENAI_CLIP_STD),
                   bool(getattr(processor, 'do_rescale', True)),
                   bool(getattr(processor, 'do_normalize', True)))


def normalisation_lut(settings: QwenImageSettings) -> np.ndarray:
    """(1, 256, 3) float32: the processor's rescale + normalise of value u in channel c.

    Built with the processor's own operations and dtypes (float64 rescale, float32 cast,
    float32 (x - mean) / std), so the lookup is bit-exact.
    """
    u = np.arange(256, dtype=np.uint8)[:, None].repeat(3, axis=1)     # (256, C)
    x = u.astype(np.float32)
    if settings.do_rescale:
        x = (u.astype(np.float64) * settings.rescale_factor).astype(np.float32)
    if settings.do_normalize:
        x = (x - np.array(settings.image_mean, dtype=np.float32)) / \
            np.array(settings.image_std, dtype=np.float32)
    return np.ascontiguousarray(x.astype(np.float32)[None])


class QwenImagePreprocessor:
    """Callable: uint8 RGB image -> (pixel_values (N, C*T*P*P) float32, grid_thw (1, 3) int64).

    The three colour channels are independent all the way (PIL resizes an 8-bit image channel
    by channel with the same fixed-point kernel, so resizing each channel as an 'L' image gives
    the same bytes): each channel is resized, reordered into patches, looked up and written into
    its slice of the output. With threads > 1 the resizes of channels 1 and 2 (the costly part,
    ~1.6 ms each for 640x480) run on threads - 1 workers while the calling thread does channel 0
    (PIL releases the GIL), which shortens the wall time on a multi-core CPU (2 threads: ~4.5 ms
    instead of ~6 ms for 640x480 on the project's 2-core machine).
    """

    def __init__(self, settings: QwenImageSettings = QwenImageSettings(),
                 resample: str = 'pil', threads: int = 2):
        """Set up the lookup tables (and the thread pool).

        Args:
            settings: the processor's settings.
            resample: 'pil' (BICUBIC, identical to transformers) or 'cv2' (INTER_CUBIC,
                faster, not identical: ~0.003 mean absolute difference).
            threads: threads working on one image, the caller included (1 = all in the calling
                thread).

        Raises:
            ValueError: unknown resample, threads < 1 or inconsistent settings.
        """
        if resample not in ('pil', 'cv2'):
            raise ValueError(f"resample must be 'pil' or 'cv2', got {resample!r}")
        if settings.min_pixels <= 0 or settings.max_pixels < settings.min_pixels:
            raise ValueError(f'need 0 < min_pixels <= max_pixels, got {settings.min_pixels}, '
                             f'{settings.max_pixels}')
        if int(threads) < 1:
            raise ValueError(f'threads must be >= 1, got {threads}')
        self.settings = settings
        self.resample = resample
        self.lut = normalisation_lut(settings)
        self._lut_c = [np.ascontiguousarray(self.lut[:, :, c]) for c in range(3)]
        self._pool = None
        if int(threads) > 1:
            from concurrent.futures import ThreadPoolExecutor
            # the calling thread works too: threads - 1 workers
            self._pool = ThreadPoolExecutor(int(threads) - 1,
                                            thread_name_prefix='qwen_preprocess')

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """(resized height, resized width) for an input size."""
        s = self.settings
        return smart_resize(height, width, s.patch_size * s.merge_size, s.min_pixels,
                            s.max_pixels)

    def resize(self, image: np.ndarray, size_hw: Tuple[int, int] = None) -> np.ndarray:
        """The resized uint8 image or channel plane (H', W'[, 3])."""
        rh, rw = size_hw or self.output_size(*image.shape[:2])
        if (rh, rw) == image.shape[:2]:
            return image
        if self.resample == 'cv2':
            return cv2.resize(image, (rw, rh), interpolation=cv2.INTER_CUBIC)
        from PIL import Image
        return np.asarray(Image.fromarray(image).resize((rw, rh), Image.BICUBIC))

    def _patchify_channel(self, resized: np.ndarray, c: int, out: np.ndarray) -> None:
        s = self.settings
        p, m = s.patch_size, s.merge_size
        gh, gw = resized.shape[0] // p, resized.shape[1] // p
        # (H, W) -> (gh/m, m, p, gw/m, m, p) -> (gh/m, gw/m, m, m, p, p): the merge ordering
        blocks = resized.reshape(gh // m, m, p, gw // m, m, p).transpose(0, 3, 1, 4, 2, 5)
        blocks = np.ascontiguousarray(blocks).reshape(gh * gw, p * p)
        values = cv2.LUT(blocks, self._lut_c[c])
        out[:, c, :, :] = values[:, None, :]   # the still frame repeated temporal_patch times

    def __call__(self, image_rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Preprocess one image.

        Args:
            image_rgb: (H, W, 3) uint8 RGB (a (H, W) or (H, W, 1) grey image is expanded to RGB
                like the processor's convert_rgb; RGBA drops alpha).

        Returns:
            (pixel_values float32 (grid_h*grid_w, 3*T*P*P), image_grid_thw int64 (1, 3)).

        Raises:
            ValueError: not a uint8 image with 1, 3 or 4 channels, or an empty one.
        """
        img = np.asarray(image_rgb)
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or img.size == 0:
            raise ValueError(f'image must be a non-empty uint8 HxW(x3) array, got {img.shape} '
                             f'{img.dtype}')
        if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
            raise ValueError(f'image must have 1, 3 or 4 channels, got {img.shape[2]}')
        s = self.settings
        rh, rw = self.output_size(img.shape[0], img.shape[1])
        p, t = s.patch_size, s.temporal_patch_size
        gh, gw = rh // p, rw // p
        out = np.empty((gh * gw, 3, t, p * p), dtype=np.float32)
        grey = img.ndim == 2 or img.shape[2] == 1
        planes = [np.ascontiguousarray(img if img.ndim == 2 else img[:, :, 0 if grey else c])
                  for c in range(3)]
        if self._pool is None:
            for c in range(3):
                self._patchify_channel(self.resize(planes[c], (rh, rw)), c, out)
        else:
            # channels 1 and 2 resize on the pool (in turn with one worker) while this thread
            # resizes and writes channel 0, then writes 1 and 2 as they come
            jobs = [self._pool.submit(self.resize, planes[c], (rh, rw)) for c in (1, 2)]
            self._patchify_channel(self.resize(planes[0], (rh, rw)), 0, out)
            for c, job in zip((1, 2), jobs):
                self._patchify_channel(job.result(), c, out)
        grid = np.array([[1, gh, gw]], dtype=np.int64)
        return out.reshape(gh * gw, 3 * t * p * p), grid

    def close(self) -> None:
        """Stop the worker threads (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def preprocess_image(image_rgb: np.ndarray, min_pixels: int = 56 * 56,
                     max_pixels: int = 28 * 28 * 1280, **settings) -> Tuple[np.ndarray,
                                                                             np.ndarray]:
    """One-off convenience: QwenImagePreprocessor(QwenImageSettings(...))(image_rgb)."""
    return QwenImagePreprocessor(QwenImageSettings(min_pixels, max_pixels, **settings))(
        image_rgb)


def merged_token_count(grid_thw: Sequence[int], merge_size: int = 2) -> int:
    """Number of <|image_pad|> tokens of an image: t * h * w / merge_size**2."""
    t, h, w = (int(v) for v in grid_thw)
    return t * h * w // (merge_size * merge_size)
