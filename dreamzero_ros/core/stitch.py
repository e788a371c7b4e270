"""Per-view preprocessing and tiling of camera images into DreamZero's stitched frame.

Owns the pixel pipeline from decoded camera images (RGB uint8) to the one 352x640 uint8 RGB frame
the model sees, matching the reference release exactly (shared/design/DREAMZERO_FACTS.md, Inputs):

1. resize each image to its camera's `source_size` (the resolution the training data stored) if
   it differs: letterboxed by default (aspect kept, black bars, as the reference client does),
   or stretched where the camera's config says `aspect: stretch`; see `resize_to_source`;
2. centre crop: ch = int(H * s), cw = int(W * s), top = int(round((H - ch) / 2)), left likewise
   (Python round, half to even), with s = stitch.crop_scale (0.95);
3. resize to stitch.view_size (176x320) on float32 in [0, 1] with torch's bilinear,
   align_corners=False, antialias=True, then back to uint8 by truncation: clamp to [0, 1],
   (x * 255) cast, no rounding;
4. tile by layout: "droid" = top row the wrist view (cameras[2]) widened to 176x640 by repeating
   each pixel column twice, bottom row cameras[0] | cameras[1]; "grid_2x2" = cameras[0] top-left,
   cameras[1] bottom-left, cameras[2] top-right, black bottom-right.

Also the stitched frame's header.frame_id convention (`stitched_frame_id`, `stale_views_of`):
it names the views the stitcher filled by its stale policy.

Threads: torch.set_num_threads is process-global, so this module never sets it. The stitcher node
calls torch.set_num_threads(1) at start-up so the resize does not compete with the executor and
the DDS threads on a small machine (one 3 x 480x640 frame takes a few ms on one core; see
benchmarks/bench_stitch.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

from dreamzero_ros.core.embodiment import ASPECTS, CameraConfig, EmbodimentConfig, StitchConfig
from dreamzero_ros.core.image import letterbox


class StitchError(ValueError):
    """Views cannot be stitched (missing/unknown camera, wrong shape or dtype); the message names it."""


def crop_box(height: int, width: int, scale: float = 0.95) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of the release's centre crop of a height x width image.

    ch = int(H * scale), cw = int(W * scale); top = int(round((H - ch) / 2)), left likewise, with
    Python's round (half to even): 180x320 -> 171x304 at (4, 8); 480x640 -> 456x608 at (12, 16).
    """
    ch, cw = int(height * scale), int(width * scale)
    return int(round((height - ch) / 2)), int(round((width - cw) / 2)), ch, cw


def resize_to_source(image: np.ndarray, size: tuple[int, int], aspect: str = "letterbox") -> np.ndarray:
    """`image` [h, w, 3] uint8 brought to size = (H, W); returned unchanged when it already is.

    aspect (the camera's `aspect` config field):
      "letterbox" (default): the reference client's resize_with_pad (core.image.letterbox): aspect
        kept, PIL bilinear, black bars, e.g. a 4:3 camera on DROID's 180x320 views. For a camera
        of the view's own aspect it is a plain PIL bilinear resize, as the reference client sends.
      "stretch": squash to size with cv2.INTER_AREA when shrinking (an anti-aliased area average)
        and cv2.INTER_LINEAR when enlarging.
    """
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    if aspect == "letterbox":
        return letterbox(image, size)
    if aspect != "stretch":
        raise StitchError(f"aspect: expected one of {list(ASPECTS)}, got {aspect!r}")
    shrinking = h >= size[0] and w >= size[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size[1], size[0]), interpolation=interpolation)


def crop_and_resize(
    images: Sequence[np.ndarray], view_size: tuple[int, int], crop_scale: float = 0.95
) -> list[np.ndarray]:
    """Steps 2-3 for a batch of uint8 [H, W, 3] images: centre crop, torch resize to view_size, truncate.

    Images of equal size go through one batched interpolate call. Returns uint8 [h, w, 3] arrays
    with (h, w) = view_size, in input order.
    """
    out: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape[:2], []).append(i)
    for (h, w), indices in groups.items():
        top, left, ch, cw = crop_box(h, w, crop_scale)
        crops = np.stack([images[i][top : top + ch, left : left + cw] for i in indices])  # [N, ch, cw, 3]
        # Make [N, 3, ch, cw] contiguous while still uint8 (cheap), then convert: torch's antialiased
        # kernels are much slower on a channels-last float view when enlarging (180x320 input), and
        # the output is bit-identical either way.
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
        y = torch.nn.functional.interpolate(
            x, size=tuple(view_size), mode="bilinear", align_corners=False, antialias=True
        )
        # Truncation, not rounding, as the release does ((x * 255) cast to uint8); clamp first so a
        # filter overshoot can never wrap around.
        views = y.clamp_(0.0, 1.0).mul_(255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        for k, i in enumerate(indices):
            out[i] = views[k]
    return out  # type: ignore[return-value]


def tile(views: Sequence[np.ndarray], layout: str) -> np.ndarray:
    """Tile three preprocessed views [h, w, 3] uint8 (in the embodiment's camera order) into [2h, 2w, 3].

    "droid": top row = views[2] (wrist) with each pixel column repeated twice; bottom row
    views[0] | views[1]. "grid_2x2": views[0] top-left, views[1] bottom-left, views[2] top-right,
    bottom-right black.
    """
    if len(views) != 3:
        raise StitchError(f"layout {layout!r} tiles exactly 3 views, got {len(views)}")
    h, w = views[0].shape[:2]
    for i, v in enumerate(views):
        if v.shape != (h, w, 3) or v.dtype != np.uint8:
            raise StitchError(f"view {i}: expected uint8 {(h, w, 3)} like view 0, got {v.dtype} {v.shape}")
    frame = np.zeros((2 * h, 2 * w, 3), dtype=np.uint8)
    if layout == "droid":
        frame[:h] = np.repeat(views[2], 2, axis=1)
        frame[h:, :w] = views[0]
        frame[h:, w:] = views[1]
    elif layout == "grid_2x2":
        frame[:h, :w] = views[0]
        frame[h:, :w] = views[1]
        frame[:h, w:] = views[2]
    else:
        raise StitchError(f"unknown layout {layout!r}; expected 'droid' or 'grid_2x2'")
    return frame


def prepare_views(views: Mapping[str, np.ndarray], embodiment: EmbodimentConfig) -> list[np.ndarray]:
    """Steps 1-3 for every camera of the embodiment: uint8 [h, w, 3] views in camera order.

    views: {camera name: RGB uint8 [H, W, 3]} with exactly the embodiment's camera names.
    """
    names = embodiment.camera_names
    missing = [n for n in names if n not in views]
    if missing:
        raise StitchError(f"{embodiment.name}: missing view(s) {missing}; expected cameras {list(names)}")
    unknown = [n for n in views if n not in names]
    if unknown:
        raise StitchError(f"{embodiment.name}: unknown view(s) {unknown}; expected cameras {list(names)}")
    sources = []
    for cam in embodiment.cameras:
        img = views[cam.name]
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise StitchError(f"{embodiment.name}: view {cam.name!r}: expected RGB uint8 [H, W, 3], got {got}")
        sources.append(resize_to_source(img, cam.source_size, cam.aspect))
    return crop_and_resize(sources, embodiment.stitch.view_size, embodiment.stitch.crop_scale)


def stitch_views(views: Mapping[str, np.ndarray], embodiment: EmbodimentConfig) -> np.ndarray:
    """The stitched model frame, uint8 RGB [2 * view_h, 2 * view_w, 3] (352x640 for all shipped configs).

    views: {camera name: RGB uint8 [H, W, 3]} for exactly the embodiment's cameras, any size (each is
    resized to its camera's source_size first). Raises StitchError naming a missing or unknown
    camera or a malformed image.
    """
    return tile(prepare_views(views, embodiment), embodiment.stitch.layout)


def black_view(camera: CameraConfig) -> np.ndarray:
    """An all-black RGB uint8 image at the camera's source_size: the stand-in for a stale view.

    It passes through crop and resize unchanged (zeros stay zeros), so it can be handed to
    stitch_views like any camera image.
    """
    return np.zeros((*camera.source_size, 3), dtype=np.uint8)


def black_frame(stitch: StitchConfig) -> np.ndarray:
    """An all-black stitched frame [2h, 2w, 3] uint8."""
    return np.zeros((*stitch.frame_size, 3), dtype=np.uint8)


STITCHED_FRAME_ID = "dreamzero_stitched"
_STALE_MARK = ";stale="


def stitched_frame_id(stale_views: tuple[str, ...] | list[str] = ()) -> str:
    """header.frame_id of a stitched frame: names the views the stitcher filled by its stale policy.

    Carried in the frame's own header so a consumer learns it atomically with the pixels (a
    separate status topic could arrive before or after the frame it describes).
    """
    return STITCHED_FRAME_ID + (_STALE_MARK + ",".join(stale_views) if stale_views else "")


def stale_views_of(frame_id: str) -> tuple[str, ...]:
    """The stale views a stitched frame's header.frame_id names (() for a fully fresh frame)."""
    _, mark, names = frame_id.partition(_STALE_MARK)
    return tuple(n for n in names.split(",") if n) if mark else ()
