"""Stitching matches DreamZero's input pipeline pixel for pixel: crop box, resize, truncation, layouts.

Expected frames are built here by hand (literal crop boxes from the facts, one direct torch call,
numpy slicing for the tiles), independently of dreamzero_ros.core.stitch.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dreamzero_ros.core.embodiment import ConfigError, config_dir, load_embodiment
from dreamzero_ros.core.stitch import StitchError, black_view, crop_box, tile
from dreamzero_ros.model.stitching import crop_and_resize, stitch_views

VIEW_H, VIEW_W = 176, 320
# (H, W) -> (top, left, ch, cw), from DREAMZERO_FACTS.md
CROP_FACTS = {(180, 320): (4, 8, 171, 304), (480, 640): (12, 16, 456, 608)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def reference_view(image: np.ndarray) -> np.ndarray:
    """The release's per-view step written out: literal crop, float [0,1] antialiased bilinear, truncate."""
    top, left, ch, cw = CROP_FACTS[image.shape[:2]]
    crop = image[top : top + ch, left : left + cw]
    x = torch.tensor(crop, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    y = torch.nn.functional.interpolate(x, size=(VIEW_H, VIEW_W), mode="bilinear", align_corners=False, antialias=True)
    return (y.clamp(0, 1) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def pattern(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A distinct view: random texture plus a per-view gradient so views never coincide."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 200, (*size, 3), dtype=np.uint8)
    img[..., seed % 3] += np.uint8(40 + seed)
    return img


@pytest.mark.parametrize(("size", "box"), list(CROP_FACTS.items()))
def test_crop_box_matches_the_release_facts(size, box):
    assert crop_box(*size, 0.95) == box


def test_crop_box_rounds_half_to_even_like_python():
    # W = 100: cw = 95, (100 - 95) / 2 = 2.5 -> 2 (half-up would give 3); W = 10: cw = 9, 0.5 -> 0.
    assert crop_box(110, 100, 0.95) == (3, 2, 104, 95)
    assert crop_box(30, 10, 0.95) == (1, 0, 28, 9)


@pytest.mark.parametrize(("size", "box"), list(CROP_FACTS.items()))
def test_the_crop_keeps_exactly_the_box_and_nothing_outside_it(size, box):
    top, left, ch, cw = box
    # Everything outside the box is white: a crop that reaches one pixel too far leaks non-zero values.
    inside_black = np.full((*size, 3), 255, dtype=np.uint8)
    inside_black[top : top + ch, left : left + cw] = 0
    assert crop_and_resize([inside_black], (VIEW_H, VIEW_W))[0].max() == 0
    # Only the box's outermost ring is white: a crop one pixel too small on any side loses that side.
    ring = np.zeros((*size, 3), dtype=np.uint8)
    ring[top, left : left + cw] = ring[top + ch - 1, left : left + cw] = 255
    ring[top : top + ch, left] = ring[top : top + ch, left + cw - 1] = 255
    view = crop_and_resize([ring], (VIEW_H, VIEW_W))[0]
    assert view[0].min() > 0 and view[-1].min() > 0 and view[:, 0].min() > 0 and view[:, -1].min() > 0


@pytest.mark.parametrize("size", list(CROP_FACTS))
def test_each_view_equals_the_release_resize_with_truncation_not_rounding(size):
    image = pattern(7, size)
    view = crop_and_resize([image], (VIEW_H, VIEW_W))[0]
    np.testing.assert_array_equal(view, reference_view(image))
    # And the difference matters: rounding would give other values for part of the pixels.
    top, left, ch, cw = CROP_FACTS[size]
    x = torch.tensor(image[top : top + ch, left : left + cw], dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    y = torch.nn.functional.interpolate(x, size=(VIEW_H, VIEW_W), mode="bilinear", align_corners=False, antialias=True)
    rounded = torch.round(y.clamp(0, 1) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert (rounded != view).mean() > 0.1


@pytest.mark.parametrize("name", ["franka_droid", "agibot_g1", "yam"])
def test_stitched_frame_is_pixel_exact_against_a_hand_built_layout(name):
    emb = load_embodiment(name)
    cams = emb.cameras
    images = {c.name: pattern(i, c.source_size) for i, c in enumerate(cams)}
    v0, v1, v2 = (reference_view(images[c.name]) for c in cams)
    expected = np.zeros((2 * VIEW_H, 2 * VIEW_W, 3), dtype=np.uint8)
    if emb.stitch.layout == "droid":
        # cameras are (exterior_1, exterior_2, wrist); wrist on top, each column twice
        assert [c.name for c in cams] == ["exterior_1", "exterior_2", "wrist"]
        expected[:VIEW_H, 0::2] = v2
        expected[:VIEW_H, 1::2] = v2
        expected[VIEW_H:, :VIEW_W] = v0
        expected[VIEW_H:, VIEW_W:] = v1
    else:
        assert emb.stitch.layout == "grid_2x2"
        expected[:VIEW_H, :VIEW_W] = v0
        expected[VIEW_H:, :VIEW_W] = v1
        expected[:VIEW_H, VIEW_W:] = v2  # bottom-right stays black
    frame = stitch_views(images, emb)
    assert frame.shape == (352, 640, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, expected)


def test_images_not_at_source_size_are_resized_to_it_first():
    emb = load_embodiment("franka_droid")  # source 180x320
    big = {c.name: pattern(10 + i, (720, 1280)) for i, c in enumerate(emb.cameras)}
    # same aspect: the reference client's resize_with_pad is a plain PIL bilinear resize here
    small = {k: np.asarray(Image.fromarray(v).resize((320, 180), Image.BILINEAR)) for k, v in big.items()}
    np.testing.assert_array_equal(stitch_views(big, emb), stitch_views(small, emb))


def hand_letterbox(image: np.ndarray, top: int, left: int, inner: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A black size canvas with `image` resized (PIL bilinear) to inner = (h, w) pasted at (top, left)."""
    out = np.zeros((*size, 3), np.uint8)
    h, w = inner
    out[top : top + h, left : left + w] = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    return out


# (embodiment, camera size, (top, left), inner (h, w)), bar geometry from resize_with_pad's formula:
# ratio = max(w / W, h / H), inner = int(h / ratio) x int(w / ratio), top/left = int(leftover / 2)
LETTERBOX_CASES = [
    ("franka_droid", (480, 640), (0, 40), (180, 240)),  # 4:3 on 180x320: 40-column bars
    ("agibot_g1", (720, 1280), (60, 0), (360, 640)),  # 16:9 on 480x640: 60-row bars
    ("yam", (720, 1280), (60, 0), (360, 640)),
]


@pytest.mark.parametrize(("name", "camera", "offset", "inner"), LETTERBOX_CASES, ids=[c[0] for c in LETTERBOX_CASES])
def test_a_camera_of_another_aspect_is_letterboxed_by_default_for_every_embodiment(name, camera, offset, inner):
    emb = load_embodiment(name)
    assert all(c.aspect == "letterbox" for c in emb.cameras)
    images = {c.name: pattern(20 + i, camera) for i, c in enumerate(emb.cameras)}
    sources = {c.name: hand_letterbox(images[c.name], *offset, inner, c.source_size) for c in emb.cameras}
    np.testing.assert_array_equal(stitch_views(images, emb), stitch_views(sources, emb))


def test_a_letterboxed_4_3_droid_view_keeps_its_black_bars_through_crop_and_resize():
    emb = load_embodiment("franka_droid")
    images = {c.name: np.full((480, 640, 3), 200, np.uint8) for c in emb.cameras}
    frame = stitch_views(images, emb)
    # source 180x320: bars are columns [0, 40) and [280, 320); the crop starts at column 8 and keeps
    # 304 columns, so bars of 32 columns remain each side, scaled by 320/304 to ~33.7 in the view:
    # the outer 33 columns of exterior 1 (bottom-left tile) are black, the centre is not
    ext1 = frame[176:, :320]
    assert not ext1[:, :33].any() and not ext1[:, -33:].any()
    assert (ext1[:, 40:280] == 200).all()


def test_aspect_stretch_squashes_the_camera_to_the_view_as_configured(tmp_path):
    data = yaml.safe_load((config_dir() / "franka_droid.yaml").read_text())
    for cam in data["cameras"]:
        cam["aspect"] = "stretch"
    path = tmp_path / "stretched.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    emb = load_embodiment(path)
    assert all(c.aspect == "stretch" for c in emb.cameras)
    images = {c.name: pattern(30 + i, (480, 640)) for i, c in enumerate(emb.cameras)}
    squashed = {k: cv2.resize(v, (320, 180), interpolation=cv2.INTER_AREA) for k, v in images.items()}
    np.testing.assert_array_equal(stitch_views(images, emb), stitch_views(squashed, emb))


def test_an_unknown_aspect_is_refused_naming_the_camera_field(tmp_path):
    data = yaml.safe_load((config_dir() / "yam.yaml").read_text())
    data["cameras"][1]["aspect"] = "crop"
    path = tmp_path / "bad_aspect.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match=r"cameras\[1\]\.aspect: .*expected one of \['letterbox', 'stretch'\], got 'crop'"):
        load_embodiment(path)


def test_a_black_view_stays_black_in_its_tile():
    emb = load_embodiment("yam")
    images = {c.name: pattern(i, c.source_size) for i, c in enumerate(emb.cameras)}
    images["left"] = black_view(emb.camera("left"))
    frame = stitch_views(images, emb)
    assert frame[VIEW_H:, :].max() == 0  # bottom-left (view 1) and bottom-right both black
    assert frame[:VIEW_H].max() > 0


def test_a_missing_view_is_named_in_the_error():
    emb = load_embodiment("agibot_g1")
    images = {c.name: pattern(i, c.source_size) for i, c in enumerate(emb.cameras) if c.name != "hand_left"}
    with pytest.raises(StitchError, match=r"missing view\(s\) \['hand_left'\]"):
        stitch_views(images, emb)


def test_an_unknown_view_is_named_in_the_error():
    emb = load_embodiment("agibot_g1")
    images = {c.name: pattern(i, c.source_size) for i, c in enumerate(emb.cameras)}
    images["wrist"] = images["top_head"]
    with pytest.raises(StitchError, match=r"unknown view\(s\) \['wrist'\]"):
        stitch_views(images, emb)


def test_a_non_rgb_uint8_view_is_rejected_naming_the_camera():
    emb = load_embodiment("yam")
    images = {c.name: pattern(i, c.source_size) for i, c in enumerate(emb.cameras)}
    images["top"] = images["top"].astype(np.float32)
    with pytest.raises(StitchError, match=r"view 'top': expected RGB uint8 \[H, W, 3\], got float32"):
        stitch_views(images, emb)


def test_tile_rejects_an_unknown_layout_and_mismatched_views():
    views = [np.zeros((4, 6, 3), np.uint8)] * 3
    with pytest.raises(StitchError, match="unknown layout 'triptych'"):
        tile(views, "triptych")
    with pytest.raises(StitchError, match=r"view 2: expected uint8 \(4, 6, 3\)"):
        tile([*views[:2], np.zeros((4, 5, 3), np.uint8)], "droid")
