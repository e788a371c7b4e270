"""Image message fields decode to exact RGB pixels, honour row padding, and reject malformed input;
letterboxing follows the reference client's resize_with_pad geometry."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from PIL import Image

from dreamzero_ros.core.image import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
    letterbox,
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


# --------------------------------------------------------------------------------------------
# letterbox: the reference client's resize_with_pad(img, H, W)
# --------------------------------------------------------------------------------------------

RED, BLUE, GREEN = (200, 30, 10), (10, 40, 220), (20, 180, 60)


def blocks(height: int, width: int, split: int, axis: int) -> np.ndarray:
    """Two constant colour blocks, RED before `split` and BLUE from it on, along `axis` (0 rows, 1 columns)."""
    img = np.empty((height, width, 3), np.uint8)
    img[...] = BLUE
    if axis == 1:
        img[:, :split] = RED
    else:
        img[:split] = RED
    return img


def test_a_4_3_camera_is_letterboxed_into_180x320_between_two_40_column_bars():
    # 640x480 -> 180x320: ratio = max(640/320, 480/180) = 8/3; picture 640*3/8 = 240 wide,
    # 480*3/8 = 180 high; bars (320 - 240) / 2 = 40 columns each side
    img = blocks(480, 640, 320, axis=1)  # left half red, right half blue
    out = letterbox(img, (180, 320))
    assert out.shape == (180, 320, 3) and out.dtype == np.uint8
    assert not out[:, :40].any() and not out[:, 280:].any()
    # the picture is 240 wide: red for its first 120 columns, blue for the rest; the bilinear
    # filter spans 8/3 source pixels per output pixel, so only columns next to the edge may blend
    assert (out[:, 40 : 40 + 118] == RED).all() and (out[:, 40 + 122 : 280] == BLUE).all()
    assert (out[:, 40] == RED).all() and (out[:, 279] == BLUE).all()  # no blend into the bars


def test_letterbox_inner_picture_is_pils_bilinear_resize_at_the_hand_computed_place():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = letterbox(img, (180, 320))
    inner = np.asarray(Image.fromarray(img).resize((240, 180), resample=Image.BILINEAR))
    np.testing.assert_array_equal(out[:, 40:280], inner)
    assert not out[:, :40].any() and not out[:, 280:].any()


def test_a_16_9_camera_on_a_480x640_view_gets_60_row_bars_top_and_bottom():
    # 1280x720 -> 480x640: ratio = max(1280/640, 720/480) = 2; picture 640x360; bars (480-360)/2 = 60
    img = blocks(720, 1280, 360, axis=0)  # top half red, bottom half blue
    out = letterbox(img, (480, 640))
    assert not out[:60].any() and not out[420:].any()
    assert (out[60 : 60 + 178] == RED).all() and (out[60 + 182 : 420] == BLUE).all()


def test_an_odd_leftover_goes_to_the_bottom_and_right_as_int_truncation_places_it():
    # 321x180 -> 180x320: ratio = 321/320; picture int(320.0) = 320 wide, int(180*320/321) = 179 high;
    # top pad int((180 - 179) / 2) = 0, so the one black row is the last
    img = np.empty((180, 321, 3), np.uint8)
    img[...] = GREEN
    out = letterbox(img, (180, 320))
    assert (out[:179] == GREEN).all() and not out[179].any()


def test_same_aspect_is_a_plain_bilinear_resize_and_the_target_size_is_returned_untouched():
    img = blocks(720, 1280, 640, axis=1)
    out = letterbox(img, (180, 320))
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(img).resize((320, 180), Image.BILINEAR)))
    assert (out[:, :158] == RED).all() and (out[:, 162:] == BLUE).all()  # no bars
    same = blocks(180, 320, 10, axis=1)
    assert letterbox(same, (180, 320)) is same


def test_letterbox_refuses_a_non_rgb_uint8_image():
    with pytest.raises(ImageDecodeError, match=r"letterbox expects a uint8 \[H, W, 3\] RGB array, got float32"):
        letterbox(np.zeros((4, 4, 3), np.float32), (2, 2))


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
