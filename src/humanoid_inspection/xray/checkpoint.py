"""The weight files of the learned X-ray detectors: float16 on disk, float32 in memory.

Shared by detector_cnn (PatchNet), detector_seg (SegNet) and detector_unet (TinyUNet): each
writes
{'config', 'state_dict', 'meta', 'classes', ...} with torch.save and reads it back through
read_checkpoint, which checks what every such file must hold; the model module then checks
its own keys (classes, patch size, ...).
"""

from pathlib import Path
from typing import Callable, Dict, Tuple

import torch


def half_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state with floating-point tensors in float16 (keeps the file small)."""
    return {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def float_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A saved state with floating-point tensors back in float32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def read_checkpoint(path: Path, model_name: str, train_command: str) -> Tuple[Path, dict]:
    """Load a detector checkpoint (CPU, weights only) and check its common structure.

    Args:
        path: the file.
        model_name: model class name for the messages (e.g. 'PatchNet').
        train_command: the command that makes such a file (named when it is missing).

    Returns:
        (path, checkpoint dict with at least 'config' and 'state_dict').

    Raises:
        FileNotFoundError: no file. ValueError: unreadable, or not a checkpoint of this kind.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'CNN weights not found: {path} (train them with '
                                f'`{train_command}`)')
    try:
        ckpt = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ValueError(f'{path}: not a readable torch checkpoint ({exc})') from exc
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt or 'config' not in ckpt:
        raise ValueError(f'{path}: not a {model_name} checkpoint (missing config/state_dict)')
    return path, ckpt


def load_weights(model: torch.nn.Module, saved: dict, path) -> torch.nn.Module:
    """Put a saved state (saved['state_dict'], floating-point tensors stored in float16)
    into `model` and return it.

    Raises:
        ValueError: naming the file and the model when the state does not fit it.
    """
    try:
        model.load_state_dict(float_state_dict(saved['state_dict']))
    except (RuntimeError, KeyError) as exc:
        raise ValueError(f'{path}: weights do not fit a {type(model).__name__} ({exc})') \
            from exc
    return model


def write_weights(path, save: Callable[[Path], None], meta: dict) -> dict:
    """Write a trained model with save(path) (its folder made first) and return the training
    summary `meta` with the file's path and size added (after the save: the file holds meta
    without them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path)
    meta['weights'] = str(path)
    meta['weights_bytes'] = path.stat().st_size
    return meta
