"""Strict parser from a VLM's text answer to boxes/points in ORIGINAL-image pixels (no ROS).

Coordinate conventions (CoordinateFrame.convention), all mapped to pixels of the original
image of size (W, H):
- 'resized_pixels'  (Qwen2.5-VL, MiMo-VL, MiMo-Embodied, RoboBrain 2.0): absolute integer
  pixels of the RESIZED model input (Qwen smart_resize, sides multiples of 28);
  x_orig = x * W / W_resized, with W_resized = grid_w * patch_size from image_grid_thw.
- 'normalized_1000' (Qwen2-VL, Gemini Robotics-ER): 0..1000 of the image side.
- 'normalized_1'    (RoboPoint): 0..1.
- 'percent'         (Molmo): 0..100.
CoordinateFrame.order is 'xy' (default) or 'yx' (Gemini's [y, x] points and
[ymin, xmin, ymax, xmax] boxes).

Accepted text formats: JSON (bare, or inside a ```json fence) as the model family writes it:
boxes [{"bbox_2d": [x1, y1, x2, y2], "label": ...}] (also "bbox", "box_2d", "caption"),
points [{"point_2d": [x, y]}], [{"points": [[x, y], ...], "label": ...}], [{"point": [..]}]
or bare [[x, y], ...]; bracket formats: RoboPoint tuples [(x, y), ...], plain [x1, y1, x2, y2]
lists; Molmo <point x=".." y=".."> / <points x1=.. y1=.. ...> tags.

Nothing is guessed: an empty answer is MISSING; an answer without coordinates, or whose
structure or numbers are wrong (truncated JSON included) is MALFORMED; a coordinate outside
the convention's range is OUT_OF_IMAGE, a thinking block that never closes is UNFINISHED_THINKING; each raises VlmParseError with the
reason. An explicit empty JSON list ([]) is a valid "nothing found".
"""

import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional, Sequence, Tuple

CONVENTIONS = {'resized_pixels': None, 'normalized_1000': 1000.0, 'normalized_1': 1.0,
               'percent': 100.0}
_CONTROL_TOKENS = ('<|im_end|>', '<|endoftext|>', '<|im_start|>')
_NUM = r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
_FENCE = re.compile(r'```(?:json|JSON)?\s*\n?(.*?)```', re.S)
_TUPLE = re.compile(rf'\(\s*({_NUM})\s*,\s*({_NUM})\s*\)')
_QUAD = re.compile(rf'\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]')
_MOLMO_POINT = re.compile(rf'<point\s+x\s*=\s*"({_NUM})"\s+y\s*=\s*"({_NUM})"[^>]*>', re.I)
_MOLMO_POINTS = re.compile(r'<points\s+([^>]*)>', re.I)
_MOLMO_ATTR = re.compile(rf'([xy])(\d+)\s*=\s*"({_NUM})"', re.I)


class ParseFailure(str, Enum):
    """Why an answer was rejected."""

    MISSING = 'missing'
    MALFORMED = 'malformed'
    OUT_OF_IMAGE = 'out_of_image'
    UNFINISHED_THINKING = 'unfinished_thinking'


class VlmParseError(ValueError):
    """The model's answer cannot be turned into coordinates; .kind and .reason say why."""

    def __init__(self, kind: ParseFailure, reason: str):
        """Keep the failure kind and the human-readable reason."""
        super().__init__(f'{kind.value}: {reason}')
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class CoordinateFrame:
    """How the model's numbers relate to the original image.

    Attributes:
        original_size: (W, H) of the original image (pixels).
        resized_size: (W, H) of the model input, required for 'resized_pixels'.
        convention: one of CONVENTIONS.
        order: 'xy' or 'yx'.
    """

    original_size: Tuple[int, int]
    resized_size: Optional[Tuple[int, int]] = None
    convention: str = 'resized_pixels'
    order: str = 'xy'

    def __post_init__(self):
        """Reject unknown conventions and a missing resized size."""
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown coordinate convention '{self.convention}' "
                             f"(known: {', '.join(CONVENTIONS)})")
        if self.order not in ('xy', 'yx'):
            raise ValueError(f"coordinate order must be 'xy' or 'yx', got '{self.order}'")
        if self.convention == 'resized_pixels' and not self.resized_size:
            raise ValueError("convention 'resized_pixels' needs resized_size (model input size)")

    def extent(self) -> Tuple[float, float]:
        """Largest valid (x, y) value in the model's convention."""
        scale = CONVENTIONS[self.convention]
        if scale is None:
            return float(self.resized_size[0]), float(self.resized_size[1])
        return scale, scale

    def to_original(self, x: float, y: float, what: str) -> Tuple[float, float]:
        """Map one (x, y) (already in x, y order) to original pixels, checking the range.

        Raises:
            VlmParseError: OUT_OF_IMAGE when outside [0, extent].
        """
        ex, ey = self.extent()
        if not (0.0 <= x <= ex and 0.0 <= y <= ey):
            raise VlmParseError(
                ParseFailure.OUT_OF_IMAGE,
                f'{what} ({x:g}, {y:g}) lies outside the {self.convention} range '
                f'[0, {ex:g}] x [0, {ey:g}]')
        w, h = self.original_size
        return x * w / ex, y * h / ey


@dataclass(frozen=True)
class ParsedBox:
    """A box (x1, y1, x2, y2) in original-image pixels and its label."""

    box_xyxy: Tuple[float, float, float, float]
    label: str = ''


@dataclass(frozen=True)
class ParsedPoint:
    """A point (x, y) in original-image pixels and its label."""

    xy: Tuple[float, float]
    label: str = ''


def strip_thinking(text: Optional[str]) -> str:
    """Return the answer after the last </think>, without chat control tokens.

    Raises:
        VlmParseError: MISSING for None/empty text, UNFINISHED_THINKING when <think> opens
            and never closes (max_new_tokens too small?).
    """
    if text is None or not text.strip():
        raise VlmParseError(ParseFailure.MISSING, 'the model returned no text')
    for token in _CONTROL_TOKENS:
        text = text.replace(token, '')
    if '</think>' in text:
        text = text.rsplit('</think>', 1)[1]
    elif '<think>' in text:
        raise VlmParseError(ParseFailure.UNFINISHED_THINKING,
                            'thinking block never closed (<think> without </think>); '
                            'raise max_new_tokens or use /no_think')
    return text.strip()


def _answer(text: Optional[str]) -> str:
    answer = strip_thinking(text)
    if not answer:
        raise VlmParseError(ParseFailure.MISSING, 'the answer after the thinking block is empty')
    return answer


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise VlmParseError(ParseFailure.MALFORMED, f'{what} holds {value!r}, not a number')
    return float(value)


def _load_json(answer: str) -> Tuple[bool, Any]:
    """(found, data): JSON from a fence or the first [ or { of the answer."""
    fence = _FENCE.search(answer)
    if fence:
        body = fence.group(1).strip()
        try:
            return True, json.loads(body)
        except json.JSONDecodeError as exc:
            if '{' not in body and (_TUPLE.search(body) or _QUAD.search(body)):
                return False, body
            raise VlmParseError(ParseFailure.MALFORMED,
                                f'invalid JSON in the ```json block: {exc}') from exc
    starts = [i for i in (answer.find('['), answer.find('{')) if i >= 0]
    if not starts:
        return False, answer
    start = min(starts)
    try:
        data, _ = json.JSONDecoder().raw_decode(answer[start:])
        return True, data
    except json.JSONDecodeError as exc:
        if '{' not in answer and (_TUPLE.search(answer) or _QUAD.search(answer)):
            return False, answer  # bracket formats (RoboPoint tuples, bare quads)
        raise VlmParseError(ParseFailure.MALFORMED, f'invalid JSON: {exc}') from exc


def _items(data: Any) -> List[Any]:
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise VlmParseError(ParseFailure.MALFORMED,
                        f'expected a JSON list or object, got {type(data).__name__}')


def _label(item: Any) -> str:
    if isinstance(item, dict):
        for key in ('label', 'caption', 'name', 'description'):
            if isinstance(item.get(key), str):
                return item[key]
    return ''


def _box(values: Sequence[Any], frame: CoordinateFrame, label: str) -> ParsedBox:
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise VlmParseError(ParseFailure.MALFORMED,
                            f'a box needs 4 numbers [x1, y1, x2, y2], got {values!r}')
    a, b, c, d = (_number(v, 'box') for v in values)
    x1, y1, x2, y2 = (b, a, d, c) if frame.order == 'yx' else (a, b, c, d)
    if x2 <= x1 or y2 <= y1:
        raise VlmParseError(ParseFailure.MALFORMED,
                            f'box {list(values)} is empty or reversed (needs x2 > x1, y2 > y1)')
    p1 = frame.to_original(x1, y1, 'box corner')
    p2 = frame.to_original(x2, y2, 'box corner')
    return ParsedBox((p1[0], p1[1], p2[0], p2[1]), label)


def _point(values: Sequence[Any], frame: CoordinateFrame, label: str) -> ParsedPoint:
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        raise VlmParseError(ParseFailure.MALFORMED, f'a point needs 2 numbers, got {values!r}')
    a, b = (_number(v, 'point') for v in values)
    x, y = (b, a) if frame.order == 'yx' else (a, b)
    return ParsedPoint(frame.to_original(x, y, 'point'), label)


def parse_boxes(text: Optional[str], frame: CoordinateFrame) -> List[ParsedBox]:
    """Parse a detection answer into boxes in original-image pixels.

    Args:
        text: the model's decoded output (thinking included or not).
        frame: the coordinate convention and image sizes.

    Returns:
        The boxes, in the order the model gave them ([] for an explicit empty list).

    Raises:
        VlmParseError: MISSING / MALFORMED / OUT_OF_IMAGE / UNFINISHED_THINKING.
    """
    answer = _answer(text)
    found, data = _load_json(answer)
    if not found:
        quads = _QUAD.findall(data)
        if not quads:
            raise VlmParseError(ParseFailure.MALFORMED, f'no box in the answer {answer[:80]!r}')
        return [_box([float(v) for v in q], frame, '') for q in quads]
    if isinstance(data, list) and len(data) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        data = [data]  # a single bare [x1, y1, x2, y2]
    boxes = []
    for item in _items(data):
        if isinstance(item, dict):
            key = next((k for k in ('bbox_2d', 'bbox', 'box_2d', 'box') if k in item), None)
            if key is None:
                raise VlmParseError(ParseFailure.MALFORMED,
                                    f'object without a bbox_2d/bbox/box_2d key: {item!r}')
            boxes.append(_box(item[key], frame, _label(item)))
        else:
            boxes.append(_box(item, frame, ''))
    return boxes


def _points_of(item: Any, frame: CoordinateFrame) -> List[ParsedPoint]:
    label = _label(item)
    if isinstance(item, dict):
        key = next((k for k in ('point_2d', 'points', 'point') if k in item), None)
        if key is None:
            raise VlmParseError(ParseFailure.MALFORMED,
                                f'object without a point_2d/points/point key: {item!r}')
        value = item[key]
        if isinstance(value, list) and value and all(isinstance(v, (list, tuple))
                                                     for v in value):
            return [_point(v, frame, label) for v in value]
        if isinstance(value, list) and not value:
            return []
        return [_point(value, frame, label)]
    return [_point(item, frame, label)]


def parse_points(text: Optional[str], frame: CoordinateFrame) -> List[ParsedPoint]:
    """Parse a pointing answer into points in original-image pixels.

    Args:
        text: the model's decoded output.
        frame: the coordinate convention and image sizes.

    Returns:
        The points ([] for an explicit empty list).

    Raises:
        VlmParseError: MISSING / MALFORMED / OUT_OF_IMAGE / UNFINISHED_THINKING.
    """
    answer = _answer(text)
    molmo = _MOLMO_POINT.findall(answer)
    multi = _MOLMO_POINTS.findall(answer)
    if molmo or multi:
        pts = [_point((float(x), float(y)), frame, '') for x, y in molmo]
        for attrs in multi:
            coords = {}
            for axis, idx, val in _MOLMO_ATTR.findall(attrs):
                coords.setdefault(int(idx), {})[axis.lower()] = float(val)
            for idx in sorted(coords):
                if set(coords[idx]) != {'x', 'y'}:
                    raise VlmParseError(ParseFailure.MALFORMED,
                                        f'<points> entry {idx} lacks x or y: {attrs!r}')
                pts.append(_point((coords[idx]['x'], coords[idx]['y']), frame, ''))
        return pts
    found, data = _load_json(answer)
    if not found:
        tuples = _TUPLE.findall(data)
        if not tuples:
            raise VlmParseError(ParseFailure.MALFORMED,
                                f'no point in the answer {answer[:80]!r}')
        return [_point((float(x), float(y)), frame, '') for x, y in tuples]
    if isinstance(data, list) and len(data) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        data = [data]  # a single bare [x, y]
    points = []
    for item in _items(data):
        points.extend(_points_of(item, frame))
    return points
