"""VLM perception backend: a local Qwen2.5-VL-family checkpoint through transformers.

MiMo-Embodied, MiMo-VL and RoboBrain 2.0 are of model_type 'qwen2_5_vl' and load with
Qwen2_5_VLForConditionalGeneration + the checkpoint's tokenizer and image processor. Nothing is
ever downloaded (local_files_only=True): a missing or incompatible checkpoint raises
CheckpointError naming the path and what was expected.

Inputs are assembled the way Qwen2_5_VLProcessor does for one image (ChatML text, the image
placeholder expanded to grid_t*grid_h*grid_w/merge^2 <|image_pad|> tokens, mm_token_type_ids
for the multimodal rotary positions). The backend uses AutoProcessor when it can be built and
otherwise the checkpoint's AutoTokenizer + AutoImageProcessor (transformers' processor class
also builds a video processor, which needs torchvision; this project does not install it);
both give the same tensors. The model's coordinates are mapped back to the original image with
the resized input size from image_grid_thw (see vlm_parsing).

Image preprocessing (`image_preprocessing`): 'numpy' (default) runs perception/qwen_preprocess.py
with the checkpoint image processor's settings -- the same pixel_values and image_grid_thw as
transformers' processor (tested equal), ~3x faster; 'transformers' calls the checkpoint's image
processor. The tokenised prompt is cached per (prompt text, image token count): the robot asks
the same question of every frame.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from humanoid_inspection.perception import vlm_prompts
from humanoid_inspection.perception.qwen_preprocess import (
    QwenImagePreprocessor, QwenImageSettings)
from humanoid_inspection.perception.rgbd import (
    InvalidFrameError, backproject_pixels, validate_frame)
from humanoid_inspection.perception.types import (
    CameraIntrinsics, ObjectDetection, PerceptionResult)
from humanoid_inspection.perception.vlm_parsing import (
    CoordinateFrame, ParsedPoint, ParseFailure, VlmParseError, parse_boxes, parse_points,
    strip_thinking)

SUPPORTED_MODEL_TYPES = ('qwen2_5_vl',)
EXPECTED = ('a local Qwen2.5-VL-family checkpoint folder (model_type qwen2_5_vl: MiMo-Embodied, '
            'MiMo-VL, RoboBrain 2.0, Qwen2.5-VL) with config.json, *.safetensors weights, '
            'tokenizer files and preprocessor_config.json')
DTYPES = ('auto', 'bfloat16', 'float16', 'float32')
IMAGE_PREPROCESSING = ('numpy', 'transformers')


class CheckpointError(RuntimeError):
    """The model checkpoint is missing or not of a supported kind; the message says which."""


@dataclass
class VlmConfig:
    """Parameters of the VLM backend.

    Attributes:
        model_path: folder of the checkpoint (never a hub id: nothing is downloaded).
        device: 'cpu', 'cuda' or 'cuda:N'.
        dtype: 'auto' (bfloat16 on CUDA, float32 on CPU), 'bfloat16', 'float16', 'float32'.
        max_new_tokens: generation budget (thinking included when thinking is on).
        min_pixels, max_pixels: limits of the resized model input (Qwen smart_resize).
        thinking: False appends ' /no_think' to every prompt.
        coordinate_convention, coordinate_order: how the model writes coordinates
            (vlm_parsing.CONVENTIONS; 'resized_pixels' for the Qwen2.5-VL family).
        parts_description: how the detection prompt names the parts.
        image_preprocessing: 'numpy' (perception/qwen_preprocess.py, the default) or
            'transformers' (the checkpoint's image processor); same tensors.
    """

    model_path: str = ''
    device: str = 'cpu'
    dtype: str = 'auto'
    max_new_tokens: int = 256
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    thinking: bool = False
    coordinate_convention: str = 'resized_pixels'
    coordinate_order: str = 'xy'
    parts_description: str = 'die-cast metal part (casting)'
    image_preprocessing: str = 'numpy'


@dataclass
class PreparedInput:
    """Model inputs for one image + prompt, and the resized input size (W, H)."""

    tensors: dict
    resized_size: Tuple[int, int]
    original_size: Tuple[int, int]
    prompt: str


def check_checkpoint(path: str) -> dict:
    """Check that path holds a supported checkpoint; return its config.json content.

    Raises:
        CheckpointError: naming the path and what is missing or unsupported.
    """
    if not path:
        raise CheckpointError(f'no model path given; expected {EXPECTED}')
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder '{path}' does not exist; expected {EXPECTED}")
    cfg_file = root / 'config.json'
    try:
        config = json.loads(cfg_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"'{path}' has no config.json; expected {EXPECTED}") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"'{cfg_file}' is not readable JSON ({exc})") from exc
    model_type = config.get('model_type')
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            f"'{path}' holds model_type {model_type!r}, which this backend cannot load; "
            f'expected {EXPECTED}')
    if not (list(root.glob('*.safetensors')) or list(root.glob('pytorch_model*.bin'))):
        raise CheckpointError(f"'{path}' has no weights (*.safetensors); expected {EXPECTED}")
    if not ((root / 'tokenizer.json').is_file()
            or ((root / 'vocab.json').is_file() and (root / 'merges.txt').is_file())):
        raise CheckpointError(f"'{path}' has no tokenizer (tokenizer.json or vocab.json + "
                              f'merges.txt); expected {EXPECTED}')
    if not (root / 'preprocessor_config.json').is_file():
        raise CheckpointError(f"'{path}' has no preprocessor_config.json (image processor); "
                              f'expected {EXPECTED}')
    return config


def _torch_dtype(name: str, device: str):
    import torch
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got '{name}'")
    if name == 'auto':
        return torch.bfloat16 if device.startswith('cuda') else torch.float32
    return getattr(torch, name)


def load_processor_parts(path: str):
    """(tokenizer, image_processor, chat_template, source) of a checkpoint, offline.

    Uses AutoProcessor when it can be built, else AutoTokenizer + AutoImageProcessor.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        tokenizer, image_processor = processor.tokenizer, processor.image_processor
        template = getattr(processor, 'chat_template', None) or tokenizer.chat_template
        return tokenizer, image_processor, template, 'AutoProcessor'
    except ImportError:  # the processor's video sub-processor needs torchvision
        pass
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    return (tokenizer, image_processor, getattr(tokenizer, 'chat_template', None),
            'AutoTokenizer+AutoImageProcessor')


class VlmBackend:
    """Detection, grasp pointing and scene questions with a Qwen2.5-VL-family model."""

    name = 'vlm'

    def __init__(self, config: VlmConfig):
        """Load the checkpoint named by config.model_path (offline).

        Raises:
            CheckpointError: missing/incompatible checkpoint, or loading failed.
            ValueError: bad device, dtype or image_preprocessing.
        """
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration
        self.config = config
        if config.image_preprocessing not in IMAGE_PREPROCESSING:
            raise ValueError(f'image_preprocessing must be one of {IMAGE_PREPROCESSING}, got '
                             f'{config.image_preprocessing!r}')
        model_config = check_checkpoint(config.model_path)
        if config.device.startswith('cuda') and not torch.cuda.is_available():
            raise ValueError(f"device '{config.device}' requested but CUDA is not available")
        dtype = _torch_dtype(config.dtype, config.device)
        try:
            self.tokenizer, self.image_processor, self.chat_template, self.processor_source = \
                load_processor_parts(config.model_path)
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                config.model_path, local_files_only=True, dtype=dtype).to(config.device).eval()
        except Exception as exc:  # safetensors/tokenizers/transformers each raise their own
            raise CheckpointError(
                f"loading '{config.model_path}' failed: {exc}; expected {EXPECTED}") from exc
        self.image_token = '<|image_pad|>'
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        if self.image_token_id != model_config.get('image_token_id', self.image_token_id):
            raise CheckpointError(
                f"'{config.model_path}': tokenizer id of {self.image_token} "
                f"({self.image_token_id}) differs from config image_token_id "
                f"({model_config.get('image_token_id')})")
        self._stop_strings = [t for t in ('<|im_end|>', '<|endoftext|>', self.tokenizer.pad_token)
                              if t]
        self._setup_preprocessing()

    def _setup_preprocessing(self) -> None:
        """The numpy image preprocessor (checkpoint settings) and the prompt-token cache.

        Raises:
            ValueError: unknown config.image_preprocessing.
        """
        if self.config.image_preprocessing not in IMAGE_PREPROCESSING:
            raise ValueError(f'image_preprocessing must be one of {IMAGE_PREPROCESSING}, got '
                             f'{self.config.image_preprocessing!r}')
        self.preprocessor = QwenImagePreprocessor(QwenImageSettings.from_processor(
            self.image_processor, self.config.min_pixels, self.config.max_pixels))
        self._token_cache = {}

    @classmethod
    def from_components(cls, config: VlmConfig, model, tokenizer, image_processor,
                        chat_template: Optional[str] = None) -> 'VlmBackend':
        """A backend around an already built model (benchmarks: a randomly initialised model
        of the real size built directly on the GPU); no checkpoint is read."""
        self = cls.__new__(cls)
        self.config = config
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.chat_template, self.processor_source = chat_template, 'components'
        self.image_token = '<|image_pad|>'
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self._stop_strings = [t for t in ('<|im_end|>', '<|endoftext|>', tokenizer.pad_token) if t]
        self._setup_preprocessing()
        return self

    # -- prompt -> tensors -> text ------------------------------------------------------------
    def render_prompt(self, user_text: str) -> str:
        """The full chat text (system + user turn with the image + generation prompt)."""
        messages = vlm_prompts.build_messages(
            vlm_prompts.with_thinking(user_text, self.config.thinking))
        if self.chat_template:
            text = self.tokenizer.apply_chat_template(
                messages, chat_template=self.chat_template, tokenize=False,
                add_generation_prompt=True)
            if text.count(self.image_token) == 1:
                return text
        return vlm_prompts.chatml(messages)

    def prepare(self, image_rgb: np.ndarray, user_text: str) -> PreparedInput:
        """Preprocess one RGB image and a user text into model inputs."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f'image must be HxWx3 uint8 RGB, got {image_rgb.shape} '
                             f'{image_rgb.dtype}')
        prompt = self.render_prompt(user_text)
        vision = self.preprocess_image(image_rgb)
        grid = vision['image_grid_thw'][0]
        merge = self.preprocessor.settings.merge_size
        patch = self.preprocessor.settings.patch_size
        n_tokens = int(grid.prod()) // (merge * merge)
        ids = self._tokens(prompt, n_tokens)
        tensors = {'input_ids': ids['input_ids'], 'attention_mask': ids['attention_mask'],
                   'mm_token_type_ids': ids['mm_token_type_ids'],
                   'pixel_values': vision['pixel_values'],
                   'image_grid_thw': vision['image_grid_thw']}
        resized = (int(grid[2]) * patch, int(grid[1]) * patch)
        return PreparedInput(tensors, resized, (image_rgb.shape[1], image_rgb.shape[0]), prompt)

    def preprocess_image(self, image_rgb: np.ndarray) -> dict:
        """{'pixel_values', 'image_grid_thw'} torch tensors of one RGB image (config's path)."""
        import torch
        if self.config.image_preprocessing == 'transformers':
            from PIL import Image
            return self.image_processor(
                images=[Image.fromarray(image_rgb)], return_tensors='pt',
                size={'shortest_edge': self.config.min_pixels,
                      'longest_edge': self.config.max_pixels})
        pixel_values, grid = self.preprocessor(image_rgb)
        return {'pixel_values': torch.from_numpy(pixel_values),
                'image_grid_thw': torch.from_numpy(grid)}

    def _tokens(self, prompt: str, n_tokens: int) -> dict:
        """input_ids / attention_mask / mm_token_type_ids of the expanded prompt (cached)."""
        import torch
        key = (prompt, n_tokens)
        hit = self._token_cache.get(key)
        if hit is None:
            text = prompt.replace(self.image_token, self.image_token * n_tokens, 1)
            ids = self.tokenizer(text, return_tensors='pt', add_special_tokens=False)
            hit = {'input_ids': ids['input_ids'], 'attention_mask': ids['attention_mask'],
                   'mm_token_type_ids': (ids['input_ids'] == self.image_token_id).to(torch.int)}
            if len(self._token_cache) >= 64:
                self._token_cache.pop(next(iter(self._token_cache)))
            self._token_cache[key] = hit
        return {k: v.clone() for k, v in hit.items()}

    def generate(self, prepared: PreparedInput) -> str:
        """Greedy generation; return the decoded new text (thinking kept, pad/eos removed)."""
        import torch
        dev = self.model.device
        tensors = {k: v.to(dev) for k, v in prepared.tensors.items()}
        tensors['pixel_values'] = tensors['pixel_values'].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**tensors, max_new_tokens=self.config.max_new_tokens,
                                      do_sample=False)
        new = out[0, prepared.tensors['input_ids'].shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        for token in self._stop_strings:
            text = text.replace(token, '')
        return text

    def coordinate_frame(self, prepared: PreparedInput) -> CoordinateFrame:
        """How to map this input's coordinates back to the original image."""
        return CoordinateFrame(prepared.original_size, prepared.resized_size,
                               self.config.coordinate_convention, self.config.coordinate_order)

    # -- tasks --------------------------------------------------------------------------------
    def ask(self, image_rgb: np.ndarray, question: str) -> str:
        """Answer a free-form question about the image (thinking stripped).

        Raises:
            ValueError: empty question. VlmParseError: empty/unfinished answer.
        """
        prepared = self.prepare(image_rgb, vlm_prompts.question_prompt(question))
        answer = strip_thinking(self.generate(prepared))
        if not answer:
            raise VlmParseError(ParseFailure.MISSING, 'the answer is empty')
        return answer

    def point(self, image_rgb: np.ndarray, part: str) -> Tuple[List[ParsedPoint], str]:
        """Affordance points where to grasp the named part, in original pixels, + raw text.

        Raises:
            VlmParseError: the answer holds no valid point.
        """
        prepared = self.prepare(image_rgb, vlm_prompts.grasp_point_prompt(part))
        raw = self.generate(prepared)
        return parse_points(raw, self.coordinate_frame(prepared)), raw

    def detect(self, color: Optional[np.ndarray], depth: Optional[np.ndarray],
               intrinsics: Optional[CameraIntrinsics]) -> PerceptionResult:
        """Boxes of the parts from the model; 3D from the median depth in each box's centre.

        Returns:
            A PerceptionResult; a malformed/out-of-image answer gives no detections and the
            parser's reason in .diagnostic (never a guessed box).
        """
        t0 = time.perf_counter()
        try:
            color, depth_m = validate_frame(color, depth, intrinsics)
        except InvalidFrameError as exc:
            return PerceptionResult(diagnostic=str(exc))
        prepared = self.prepare(color, vlm_prompts.detection_prompt(
            self.config.parts_description))
        t1 = time.perf_counter()
        raw = self.generate(prepared)
        t2 = time.perf_counter()
        timings = {'preprocess_ms': (t1 - t0) * 1e3, 'generate_ms': (t2 - t1) * 1e3}
        try:
            boxes = parse_boxes(raw, self.coordinate_frame(prepared))
        except VlmParseError as exc:
            return PerceptionResult(diagnostic=f'VLM answer rejected: {exc}',
                                    timings_ms=timings)
        detections = []
        for i, box in enumerate(boxes):
            det = ObjectDetection(id=f'obj_{i}', class_id=box.label or 'die_cast_part',
                                  score=1.0, backend=self.name, box_xyxy=box.box_xyxy)
            box_3d(det, depth_m, intrinsics)
            detections.append(det)
        timings['total_ms'] = (time.perf_counter() - t0) * 1e3
        return PerceptionResult(detections, '' if detections else
                                'empty scene: the model reported no part', timings)


def box_3d(det: ObjectDetection, depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> None:
    """Fill det's 3D fields from the median depth of the central half of its box.

    The oriented box is camera-aligned, its x/y extents the box back-projected at that
    depth, its z extent unknown (set to the smaller of the two). Leaves det without 3D when
    no valid depth lies in the box centre.
    """
    x1, y1, x2, y2 = det.box_xyxy
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
    r0, r1 = int(max(0, cy - hh)), int(min(depth_m.shape[0], cy + hh + 1))
    c0, c1 = int(max(0, cx - hw)), int(min(depth_m.shape[1], cx + hw + 1))
    win = depth_m[r0:r1, c0:c1]
    win = win[~np.isnan(win)]
    if win.size == 0:
        return
    z = float(np.median(win))
    det.centroid_m = backproject_pixels(np.array([cx]), np.array([cy]), np.array([z]),
                                        intrinsics)[0]
    sx, sy = (x2 - x1) * z / intrinsics.fx, (y2 - y1) * z / intrinsics.fy
    det.obb_rotation = np.eye(3)
    det.obb_extent_m = np.array([sx, sy, min(sx, sy)])
