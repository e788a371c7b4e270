"""The pure (torch-free) steps of DreamZero's stitched frame: source resize, crop box, tiling.

The pixel pipeline from decoded camera images (RGB uint8) to the one 352x640 uint8 RGB frame the
model sees, matching the reference release exactly (shared/design/DREAMZERO_FACTS.md, Inputs):

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

Step 3 is torch's antialiased bilinear resize, which only torch reproduces bit-exactly, so it and the
whole pipeline (`stitch_views`) live in `dreamzero_ros.model.stitching`; this module keeps the pure
steps, so that processes which only need a crop box, a black view or the frame-id convention (the
executor, the recorder, the simulator) never load torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dreamzero_ros.core.embodiment import ASPECTS, CameraConfig
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


def black_view(camera: CameraConfig) -> np.ndarray:
    """An all-black RGB uint8 image at the camera's source_size: the stand-in for a stale view.

    It passes through crop and resize unchanged (zeros stay zeros), so it can be handed to
    stitch_views like any camera image.
    """
    return np.zeros((*camera.source_size, 3), dtype=np.uint8)


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
