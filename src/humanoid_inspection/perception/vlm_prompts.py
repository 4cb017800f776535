"""Prompt templates for the Qwen2.5-VL-family backend (MiMo-Embodied, MiMo-VL, RoboBrain 2.0).

The wording of the pointing and box prompts follows the formats these models were evaluated
with (MiMo-Embodied's Where2Place / RoboAfford / RoboRefIt prompts), so their answers come out
as the JSON the parser (vlm_parsing) expects. Thinking: MiMo models think by default
(<think>...</think> before the answer); appending ' /no_think' to the user text turns it off,
and the parser strips a thinking block in any case.
"""

from typing import Dict, List

SYSTEM_PROMPT = 'You are a helpful assistant.'
NO_THINK = ' /no_think'
IMAGE_PLACEHOLDER = '<|vision_start|><|image_pad|><|vision_end|>'

DETECT_TEMPLATE = (
    'Locate every {parts} on the table. Output a JSON in the format '
    '[{{"bbox_2d": [x1, y1, x2, y2], "label": "<part type>"}}, ...].')
POINT_TEMPLATE = (
    'Based on the description: "{description}", locate points matching the description. '
    'Output a JSON in the format [{{"points": [...], "label": "{description}"}}, ...].')
GRASP_DESCRIPTION = 'the place where a parallel gripper should grasp the {part}'


def detection_prompt(parts: str = 'die-cast metal part (casting)') -> str:
    """User text asking for boxes of all parts in view."""
    return DETECT_TEMPLATE.format(parts=parts)


def grasp_point_prompt(part: str) -> str:
    """User text asking for affordance points where to grasp the named part."""
    return POINT_TEMPLATE.format(description=GRASP_DESCRIPTION.format(part=part))


def question_prompt(question: str) -> str:
    """User text of a free-form question about the scene (stripped, must not be empty).

    Raises:
        ValueError: empty question.
    """
    question = (question or '').strip()
    if not question:
        raise ValueError('the question is empty')
    return question


def with_thinking(user_text: str, thinking: bool) -> str:
    """Append ' /no_think' unless thinking is wanted (idempotent)."""
    text = user_text.replace(NO_THINK, '').rstrip()
    return text if thinking else text + NO_THINK


def build_messages(user_text: str) -> List[Dict]:
    """Chat messages: the system prompt and one user turn holding the image and the text."""
    return [{'role': 'system', 'content': SYSTEM_PROMPT},
            {'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': user_text}]}]


def chatml(messages: List[Dict]) -> str:
    """Render messages in Qwen ChatML with the generation prompt (used when a checkpoint has
    no chat template of its own)."""
    parts = []
    for msg in messages:
        content = msg['content']
        if not isinstance(content, str):
            content = ''.join(IMAGE_PLACEHOLDER if c['type'] == 'image' else c['text']
                              for c in content)
        parts.append(f"<|im_start|>{msg['role']}\n{content}<|im_end|>\n")
    return ''.join(parts) + '<|im_start|>assistant\n'
