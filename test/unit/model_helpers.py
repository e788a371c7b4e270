"""Shared pieces of the model tests: one torch thread, tiny models and seeded inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dreamzero_ros.model.config import WamConfig, tiny_config  # noqa: E402
from dreamzero_ros.model.transformer import WamTransformer  # noqa: E402
from dreamzero_ros.model.wam import WorldActionModel  # noqa: E402

FRAME_SIZE = (352, 640)
ACTION_DIM = 8
STATE_DIM = 8


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """2 shared cores: one torch thread keeps the suite from starving its neighbours."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(**overrides) -> WorldActionModel:
    kwargs = dict(action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=24, frame_size=FRAME_SIZE, seed=0)
    kwargs.update(overrides)
    return WorldActionModel.from_preset("tiny", **kwargs)


def frames(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *FRAME_SIZE, 3), dtype=np.uint8)


def state(value: float = 0.0) -> np.ndarray:
    return np.full(STATE_DIM, value, dtype=np.float32)


def tiny_transformer(seed: int = 0, **overrides) -> tuple[WamConfig, WamTransformer]:
    config = tiny_config(**overrides)
    torch.manual_seed(seed)
    return config, WamTransformer.from_wam_config(config).eval()


def chunk_inputs(config: WamConfig, count: int, batch: int, seed: int, last_timestep: float = 700.0) -> dict:
    """Seeded first frame, contexts and `count` chunks; past chunks clean (t = 0), the last one noisy."""
    gen = torch.Generator().manual_seed(seed)
    h, w = config.latent_size
    channels = config.in_channels
    chunks = []
    for index in range(count):
        t = torch.full((batch,), 0.0 if index < count - 1 else last_timestep)
        chunks.append({
            "video": torch.randn(batch, channels, config.latent_frames_per_chunk, h, w, generator=gen),
            "video_timestep": t,
            "actions": torch.randn(batch, config.horizon, config.max_action_dim, generator=gen),
            "action_timestep": t,
            "state": torch.randn(batch, config.max_state_dim, generator=gen),
        })  # fmt: skip
    return {
        "first": torch.randn(batch, channels, 1, h, w, generator=gen),
        "text": torch.randn(batch, config.text_len, config.text_dim, generator=gen),
        "image": torch.randn(batch, config.image_tokens, config.image_dim, generator=gen),
        "chunks": chunks,
    }
