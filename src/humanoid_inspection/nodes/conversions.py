"""sensor_msgs/Image <-> numpy conversions with strict validation (no cv_bridge here).

Every malformed image raises ImageConversionError with a reason that a node can log and return
to its caller: unsupported encoding, a step that does not match width x channels, a buffer that
is shorter (truncated) or longer than height x step, or big-endian data.
"""

import numpy as np
from sensor_msgs.msg import Image

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    'mono8': (np.uint8, 1),
    'mono16': (np.uint16, 1),
    '8UC1': (np.uint8, 1),
    '16UC1': (np.uint16, 1),
    '32FC1': (np.float32, 1),
    'rgb8': (np.uint8, 3),
    'bgr8': (np.uint8, 3),
    'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4),
}


class ImageConversionError(ValueError):
    """The Image message cannot be turned into an array; str(err) says why."""


def image_to_numpy(msg: Image, allowed=None) -> np.ndarray:
    """Return the pixels of msg as an (H, W) or (H, W, C) array (a copy).

    Args:
        msg: the sensor_msgs/Image.
        allowed: encodings accepted by the caller (default: all in ENCODINGS).

    Raises:
        ImageConversionError: unsupported encoding, bad step/size, truncated buffer.
    """
    allowed = tuple(allowed) if allowed is not None else tuple(ENCODINGS)
    if msg.encoding not in allowed:
        raise ImageConversionError(
            f"unsupported encoding '{msg.encoding}' (accepted: {', '.join(allowed)})")
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(f"encoding '{msg.encoding}' has no converter")
    dtype, channels = ENCODINGS[msg.encoding]
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f'empty image ({w}x{h})')
    if msg.is_bigendian and np.dtype(dtype).itemsize > 1:
        raise ImageConversionError('big-endian images are not supported')
    row_bytes = w * channels * np.dtype(dtype).itemsize
    step = int(msg.step) if msg.step else row_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f'step {step} is smaller than width x channels x bytes = {row_bytes}')
    expected = step * h
    got = len(msg.data)
    if got < expected:
        raise ImageConversionError(
            f'truncated buffer: {got} bytes, expected {expected} ({w}x{h}, step {step})')
    if got > expected:
        raise ImageConversionError(
            f'buffer too long: {got} bytes, expected {expected} ({w}x{h}, step {step})')
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(h, step)[:, :row_bytes]
    arr = np.ascontiguousarray(buf).view(dtype)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return arr.reshape(shape).copy()


def numpy_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """Build a sensor_msgs/Image from an array whose dtype and channels match encoding."""
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding '{encoding}'")
    dtype, channels = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr)
    if arr.dtype != np.dtype(dtype):
        raise ImageConversionError(f'{encoding} needs dtype {np.dtype(dtype)}, got {arr.dtype}')
    if (arr.ndim == 2 and channels != 1) or (arr.ndim == 3 and arr.shape[2] != channels) \
            or arr.ndim not in (2, 3):
        raise ImageConversionError(f'{encoding} needs {channels} channel(s), got {arr.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
    msg.data = arr.tobytes()
    return msg
