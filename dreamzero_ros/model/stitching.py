"""The model-exact stitched frame: DreamZero's pixel pipeline with its one torch step.

`stitch_views` runs steps 1-4 of `dreamzero_ros.core.stitch` (source resize, centre crop, resize,
tiling); step 3 is torch's bilinear resize with antialias, which is what the release uses and only
torch reproduces bit-exactly (OpenCV's INTER_LINEAR on uint8 is off by up to 148 levels at 480x640).
Users: the camera_stitcher node and the policy server.

Threads: torch.set_num_threads is process-global, so this module never sets it. The stitcher node
calls torch.set_num_threads(1) at start-up so the resize does not compete with the DDS threads on a
small machine (one 3 x 480x640 frame takes a few ms on one core; see benchmarks/bench_stitch.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.core.stitch import StitchError, crop_box, resize_to_source, tile


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
