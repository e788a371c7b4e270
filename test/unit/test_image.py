"""Image message fields decode to exact RGB pixels, honour row padding, and reject malformed input."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from dreamzero_ros.core.image import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
)

H, W = 5, 7


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)


def padded(pixels: np.ndarray, pad: int) -> tuple[int, bytes]:
    """(step, data) of [H, W, C] pixels with `pad` junk bytes (value 77) after every row."""
    rows = pixels.reshape(pixels.shape[0], -1)
    junk = np.full((rows.shape[0], pad), 77, dtype=np.uint8)
    return rows.shape[1] + pad, np.hstack([rows, junk]).tobytes()


def as_encoding(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(raw pixels in `encoding`, the RGB the decoder must return), built by hand."""
    alpha = np.full(rgb.shape[:2] + (1,), 200, dtype=np.uint8)
    if encoding == "rgb8":
        return rgb, rgb
    if encoding == "bgr8":
        return rgb[:, :, ::-1], rgb
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2), rgb
    if encoding == "bgra8":
        return np.concatenate([rgb[:, :, ::-1], alpha], axis=2), rgb
    gray = rgb[:, :, :1]
    return gray, np.concatenate([gray, gray, gray], axis=2)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 5])
def test_every_encoding_decodes_to_the_exact_rgb_pixels_skipping_row_padding(rgb, encoding, pad):
    raw, expected = as_encoding(rgb, encoding)
    step, data = padded(raw, pad)
    out = decode_image(encoding, H, W, step, data)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "container", [bytes, bytearray, lambda b: array.array("B", b), lambda b: np.frombuffer(b, np.uint8)]
)
def test_decode_accepts_the_buffer_types_rclpy_and_numpy_hand_out(rgb, container):
    step, data = padded(rgb, 0)
    np.testing.assert_array_equal(decode_image("rgb8", H, W, step, container(data)), rgb)


def test_decoded_image_does_not_alias_the_message_buffer(rgb):
    step, data = padded(rgb, 0)
    buf = bytearray(data)
    out = decode_image("rgb8", H, W, step, buf)
    buf[:] = bytes(len(buf))  # the middleware reuses the buffer
    np.testing.assert_array_equal(out, rgb)


def test_a_step_shorter_than_a_row_is_rejected_naming_the_step(rgb):
    with pytest.raises(ImageDecodeError, match=r"step must be >= width \* 3 = 21 bytes, got 20"):
        decode_image("rgb8", H, W, 20, bytes(20 * H))


def test_data_of_the_wrong_size_is_rejected_naming_both_sizes(rgb):
    step, data = padded(rgb, 0)
    with pytest.raises(ImageDecodeError, match=r"data must be step \* height = 105 bytes, got 104"):
        decode_image("rgb8", H, W, step, data[:-1])


def test_an_unsupported_encoding_is_rejected_listing_the_supported_ones():
    with pytest.raises(ImageDecodeError, match=r"unsupported encoding '16UC1'; supported: \['rgb8'"):
        decode_image("16UC1", H, W, W * 2, bytes(W * 2 * H))


def test_zero_sized_images_are_rejected():
    with pytest.raises(ImageDecodeError, match="height and width must be positive"):
        decode_image("rgb8", 0, W, W * 3, b"")


def test_image_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)


def test_png_compressed_image_decodes_losslessly_to_rgb(rgb):
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1].copy())  # OpenCV writes BGR
    assert ok
    np.testing.assert_array_equal(decode_compressed("png", png.tobytes()), rgb)


def test_image_transport_jpeg_format_strings_decode_close_to_the_source():
    smooth = np.zeros((32, 48, 3), dtype=np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :]
    smooth[..., 2] = 180
    ok, jpg = cv2.imencode(".jpg", smooth[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = decode_compressed("rgb8; jpeg compressed bgr8", jpg.tobytes())
    assert out.shape == (32, 48, 3)
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 3  # lossy, but channels not swapped


def test_a_grey_png_becomes_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    ok, png = cv2.imencode(".png", gray)
    assert ok
    out = decode_compressed("png", png.tobytes())
    np.testing.assert_array_equal(out, np.stack([gray] * 3, axis=2))


def test_undecodable_compressed_data_is_rejected():
    with pytest.raises(ImageDecodeError, match=r"13 bytes could not be decoded"):
        decode_compressed("jpeg", b"not a jpeg!!!")


def test_empty_compressed_data_is_rejected():
    with pytest.raises(ImageDecodeError, match="data is empty"):
        decode_compressed("png", b"")


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "tiff", ""])
def test_compressed_formats_other_than_jpeg_and_png_are_rejected(fmt):
    with pytest.raises(ImageDecodeError, match="unsupported compressed format"):
        decode_compressed(fmt, b"\x89PNG")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_encode_then_decode_returns_the_same_pixels(rgb, encoding):
    enc, step, data = encode_image(rgb, encoding)
    assert (enc, step, len(data)) == (encoding, W * 3, H * W * 3)
    np.testing.assert_array_equal(decode_image(enc, H, W, step, data), rgb)


def test_encode_rejects_anything_but_uint8_rgb():
    with pytest.raises(ImageDecodeError, match=r"uint8 \[H, W, 3\] RGB array, got float32 \(2, 2, 3\)"):
        encode_image(np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ImageDecodeError, match="cannot encode to 'mono8'"):
        encode_image(np.zeros((2, 2, 3), dtype=np.uint8), "mono8")


def test_the_stitched_frame_id_round_trips_the_stale_views():
    from dreamzero_ros.core.stitch import STITCHED_FRAME_ID, stale_views_of, stitched_frame_id

    assert stitched_frame_id() == STITCHED_FRAME_ID and stale_views_of(STITCHED_FRAME_ID) == ()
    assert stale_views_of(stitched_frame_id(("wrist", "exterior_1"))) == ("wrist", "exterior_1")
    assert stale_views_of("some_other_frame") == ()


def test_a_compressed_png_round_trips_exactly_and_a_jpeg_closely_with_image_transports_format_string():
    rgb = np.zeros((48, 64, 3), np.uint8)  # smooth gradients: what JPEG keeps well
    rgb[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    rgb[..., 2] = np.arange(48, dtype=np.uint8)[:, None] * 5
    fmt, data = encode_compressed(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed(fmt, data), rgb)
    fmt, data = encode_compressed(rgb, "jpeg", quality=95)
    assert fmt == "rgb8; jpeg compressed bgr8"
    assert np.abs(decode_compressed(fmt, data).astype(int) - rgb).mean() < 6
    with pytest.raises(ValueError, match="cannot compress to 'webp'"):
        encode_compressed(rgb, "webp")
