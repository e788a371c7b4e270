"""Camera image decoding and encoding between ROS message fields and RGB numpy arrays.

Owns the pixel-format half of cv_bridge (not available as a wheel): turning the plain fields of a
`sensor_msgs/Image` (encoding, height, width, step, data) or a `sensor_msgs/CompressedImage`
(format, data) into an RGB uint8 array [H, W, 3], and the reverse for publishing. No rclpy here:
the node copies the fields out of the message and calls these functions. Also `letterbox`, the
reference client's aspect-keeping resize to a view's training resolution.

Every rejected input raises `ImageDecodeError` (a ValueError) whose message names what was wrong,
what was expected and what was received.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

# encoding -> (channels, cv2 conversion to RGB or None when the data already is RGB)
_DECODERS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_DECODERS)
ENCODE_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8")
COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")


class ImageDecodeError(ValueError):
    """An image message cannot be turned into pixels; the message says what was wrong."""


def decode_image(encoding: str, height: int, width: int, step: int, data: Any) -> np.ndarray:
    """The pixels of a `sensor_msgs/Image` as RGB uint8 [height, width, 3].

    encoding: one of SUPPORTED_ENCODINGS (rgb8, bgr8, rgba8, bgra8, mono8; 8-bit, so the
        message's is_bigendian does not matter).
    step: bytes per row, >= width * channels; bytes past width * channels are row padding and
        are skipped.
    data: the message's data (bytes, bytearray, array.array('B'), memoryview or a uint8 array) of
        exactly step * height bytes.
    Returns a new C-contiguous array that does not alias `data` (the message buffer may be reused).
    """
    if encoding not in _DECODERS:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}; supported: {list(SUPPORTED_ENCODINGS)}")
    channels, conversion = _DECODERS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{encoding} image: height and width must be positive, got {height}x{width}")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageDecodeError(
            f"{encoding} image {height}x{width}: step must be >= width * {channels} = {row_bytes} bytes, got {step}"
        )
    buf = _as_bytes_array(data)
    if buf.size != step * height:
        raise ImageDecodeError(
            f"{encoding} image {height}x{width} step {step}: data must be step * height = {step * height} bytes, "
            f"got {buf.size}"
        )
    # A strided view that drops the row padding; the conversion below copies it out.
    pixels = buf.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if conversion is None:
        return np.array(pixels, dtype=np.uint8, order="C", copy=True)
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def decode_compressed(format: str, data: Any) -> np.ndarray:
    """The pixels of a `sensor_msgs/CompressedImage` (JPEG or PNG) as RGB uint8 [H, W, 3].

    format: the message's format string, e.g. "jpeg", "png" or image_transport's
        "rgb8; jpeg compressed bgr8". It must mention jpeg/jpg or png; compressedDepth is refused.
        The codec itself is detected from the data (cv2.imdecode), so a mislabelled but valid image
        still decodes.
    Grey-scale and alpha images are converted to 3-channel RGB.
    """
    fmt = format.lower()
    if "compresseddepth" in fmt or not any(name in fmt for name in ("jpeg", "jpg", "png")):
        raise ImageDecodeError(f"unsupported compressed format {format!r}; expected one mentioning jpeg or png")
    buf = _as_bytes_array(data)
    if buf.size == 0:
        raise ImageDecodeError(f"compressed image ({format!r}): data is empty")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # always 3-channel BGR, whatever the stored layout
    if bgr is None:
        raise ImageDecodeError(f"compressed image ({format!r}): {buf.size} bytes could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_problem(image: Any) -> str:
    """'' when `image` is an RGB uint8 [H, W, 3] array, else what it is instead (e.g. 'float32 (4, 5)', 'list')."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return ""
    return f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__


def encode_image(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[str, int, bytes]:
    """An RGB uint8 [H, W, 3] array as `sensor_msgs/Image` fields (encoding, step, data).

    encoding: "rgb8" (default, what the stitched frame is published as) or "bgr8".
    step is width * 3 (no padding); height and width are rgb.shape[:2].
    """
    if encoding not in ENCODE_ENCODINGS:
        raise ImageDecodeError(f"cannot encode to {encoding!r}; supported: {list(ENCODE_ENCODINGS)}")
    got = rgb_problem(rgb)
    if got:
        raise ImageDecodeError(f"encode_image expects a uint8 [H, W, 3] RGB array, got {got}")
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    return encoding, rgb.shape[1] * 3, np.ascontiguousarray(pixels).tobytes()


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [h, w, 3] -> [H, W, 3] with size = (H, W), aspect kept, black bars: the reference
    client's `resize_with_pad(image, H, W)` (openpi image_tools), which DreamZero's DROID client
    applies to every camera (180x320).

    ratio = max(w / W, h / H); the picture is resized with PIL bilinear to int(w / ratio) x
    int(h / ratio) and pasted at top = int((H - rh) / 2), left = int((W - rw) / 2), so an odd
    leftover row or column of black goes to the bottom or right. A 4:3 640x480 camera -> 180x320
    is a 240x180 picture between two 40-column bars. An image already at size is returned as is;
    one of the same aspect is only resized (PIL bilinear, which averages over the shrink factor).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageDecodeError(f"letterbox expects a uint8 [H, W, 3] RGB array, got {got}")
    h, w = image.shape[:2]
    out_h, out_w = int(size[0]), int(size[1])
    if (h, w) == (out_h, out_w):
        return image
    ratio = max(w / out_w, h / out_h)
    # max(1, ...): a degenerate sliver of an image still yields a row/column instead of a PIL error
    rh, rw = max(1, int(h / ratio)), max(1, int(w / ratio))
    resized = np.asarray(Image.fromarray(image).resize((rw, rh), resample=Image.BILINEAR))
    out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    top, left = max(0, int((out_h - rh) / 2)), max(0, int((out_w - rw) / 2))
    out[top : top + rh, left : left + rw] = resized
    return out

def encode_compressed(rgb: np.ndarray, format: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """An RGB uint8 [H, W, 3] array as `sensor_msgs/CompressedImage` fields (format, data).

    format: "jpeg" or "png"; the returned format string is image_transport's ("rgb8; jpeg compressed bgr8").
    """
    if format not in ("jpeg", "png"):
        raise ImageDecodeError(f"cannot compress to {format!r}; supported: ['jpeg', 'png']")
    encode_image(rgb)  # the same shape/dtype checks
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if format == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if format == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageDecodeError(f"cv2.imencode failed for a {rgb.shape} image as {format}")
    return f"rgb8; {format} compressed bgr8", buf.tobytes()


def _as_bytes_array(data: Any) -> np.ndarray:
    """A flat uint8 view of any buffer-like message payload (no copy where possible)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(f"image data must be uint8 bytes, got a {data.dtype} array")
        return data.reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:  # e.g. a list of ints (rclpy hands out array.array, but be forgiving)
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageDecodeError(f"image data must be bytes-like, got {type(data).__name__}") from exc
