"""CPU latency of the WorldActionModel (tiny preset by default, random weights, one torch thread).

Measures, warm-up excluded:
- generate() per chunk WITH the KV cache at 1..4 chunks of context vs WITHOUT it (every DiT evaluation re-runs
  the whole context [first frame][real video 1..k-1][video k][actions k][state k] with the explicit inference
  mask); "context=k" = generating chunk k of an episode, i.e. the first frame + k-1 executed chunks before it;
- 16 solver steps vs the fixed 8-of-16 DiT step cache vs the adaptive cache vs Flash (1 step);
- the closed-loop figure: observe(real frames) + generate() with the preset's default sampler settings, the
  observe split into writes (a 9-frame clip re-encoded from scratch + a video-only DiT forward) and episode
  starts (the 33-frame y clip + CLIP + the first frame's forward), for 8 and for 4 received frames;
- what the VAE costs per write: the 9-frame clip from scratch (the release) vs 8 frames continuing a causal
  stream (what this suite did before).
Prints a p50/p95/max table and writes JSON with the device, torch/diffusers versions and the git sha.

    .venv/bin/python benchmarks/bench_model.py --repeats 10 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamzero_ros.model.transformer import ChunkOutput
from dreamzero_ros.model.wam import WorldActionModel

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---- shared helpers (bench_model_gpu.py imports these) ---------------------------------------------------------


def summarize(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}  # fmt: skip


def git_sha() -> str | None:
    """HEAD's sha, or None where git is missing or the repository has no commit yet."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=5)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def run_metadata(device: str) -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    info: dict[str, Any] = {
        "device": device, "python": platform.python_version(), "platform": platform.platform(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "git_sha": git_sha(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {p: version(p) for p in ("torch", "diffusers", "transformers", "numpy")},
    }  # fmt: skip
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    width = max(len(name) for name in rows) + 2
    print(f"{'case':<{width}}{'n':>4}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name, stats in rows.items():
        print(f"{name:<{width}}{stats['n']:>4}{stats['p50_ms']:>10.1f}{stats['p95_ms']:>10.1f}{stats['max_ms']:>10.1f}")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {path}")


# ---- the no-cache baseline --------------------------------------------------------------------------------------


class FullContextTransformer:
    """Adapter with forward_chunk's signature that ignores the KV cache and re-runs the whole context with the
    explicit inference mask (what every DiT evaluation costs without a cache)."""

    def __init__(self, model: WorldActionModel, history: list[torch.Tensor], first: torch.Tensor):
        self.model, self.history, self.first = model, history, first

    def forward_chunk(self, video, video_timestep, context, *, actions, action_timestep, state, **_) -> ChunkOutput:
        batch = video.shape[0]
        past = [v.expand(batch, *v.shape[1:]) for v in self.history]
        current = {"video": video, "video_timestep": video_timestep, "actions": actions,
                   "action_timestep": action_timestep, "state": state}  # fmt: skip
        first = self.first.expand(batch, *self.first.shape[1:])
        return self.model.transformer.forward_inference_masked(first, past, current, context)


def no_cache_generate(model: WorldActionModel, history: list[torch.Tensor], first: torch.Tensor, seed: int) -> None:
    from dreamzero_ros.model.sampler import ChunkRequest

    h, w = model.config.latent_size
    chunk = model.chunks_in_context + 1
    request = ChunkRequest(
        contexts=model._contexts, y=model._chunk_y(chunk), state=model._chunk_state, chunk=chunk,
        frame_offset=model._frame_offset(chunk),
        latent_shape=(model.config.latent_channels, model.config.latent_frames_per_chunk, h, w),
        horizon=model.horizon, action_dim=model.config.max_action_dim,
    )  # fmt: skip
    model.sampler.sample(FullContextTransformer(model, history, first), request, model.cache,
                         torch.Generator().manual_seed(seed))  # fmt: skip


# ---- measurements -----------------------------------------------------------------------------------------------


def timed(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def build(args: argparse.Namespace, **overrides: Any) -> WorldActionModel:
    return WorldActionModel.from_preset(args.preset, action_dim=8, state_dim=8, horizon=args.horizon,
                                        frame_size=tuple(args.frame_size), seed=0, **overrides)  # fmt: skip


def frames(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def random_chunk_video(model: WorldActionModel) -> torch.Tensor:
    """A past chunk's real-video input (latent ++ y); the no-cache cost depends on shapes, not values."""
    config = model.config
    h, w = config.latent_size
    return torch.randn(1, config.in_channels, config.latent_frames_per_chunk, h, w)


def context_scaling(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """generate() with and without the KV cache at 1..4 chunks of context (16 steps, no step cache)."""
    model = build(args, step_cache="none")
    model.set_instruction("pick up the cup and put it in the sink")
    state = np.zeros(8, np.float32)
    size = tuple(args.frame_size)
    model.observe(frames(1, size, 0), state)
    h, w = model.config.latent_size
    first = torch.randn(1, model.config.in_channels, 1, h, w)
    history: list[torch.Tensor] = []
    rows: dict[str, dict[str, float]] = {}
    for chunk in range(1, model.config.context_chunks + 1):
        rows[f"cache    context={chunk}"] = summarize(timed(lambda: model.generate(seed=1), args.repeats,
                                                             args.warmup))  # fmt: skip
        if args.no_cache_repeats > 0:
            rows[f"no cache context={chunk}"] = summarize(
                timed(lambda: no_cache_generate(model, history, first, 1), args.no_cache_repeats, 1)
            )
        if chunk < model.config.context_chunks:
            model.generate(seed=chunk)
            model.observe(frames(model.frames_per_chunk, size, chunk), state)
            history.append(random_chunk_video(model))
    return rows


def step_caching(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """generate() at 1 chunk of context: 16 steps vs fixed 8-of-16 vs adaptive vs Flash."""
    rows: dict[str, dict[str, float]] = {}
    cases = {"16 steps": dict(step_cache="none"), "fixed 8-of-16": dict(step_cache="fixed"),
             "adaptive": dict(step_cache="adaptive"), "flash (1 step)": dict(flash=True)}  # fmt: skip
    model = build(args)
    model.set_instruction("pick up the cup and put it in the sink")
    model.observe(frames(1, tuple(args.frame_size), 0), np.zeros(8, np.float32))
    forwards: dict[str, int] = {}
    for name, knobs in cases.items():
        model.step_cache, model.flash = knobs.get("step_cache", "none"), knobs.get("flash", False)
        rows[name] = summarize(timed(lambda: model.generate(seed=1), args.repeats, args.warmup))
        forwards[name] = model.generate(seed=1).dit_forwards
    for name, count in forwards.items():
        rows[name]["dit_forwards"] = count
    return rows


def closed_loop(args: argparse.Namespace, received: int) -> dict[str, dict[str, float]]:
    """observe(`received` frames) + generate() per chunk with the preset's defaults, over several 4-chunk episodes
    (every 5th observe starts a new episode)."""
    model = build(args)
    model.set_instruction("pick up the cup and put it in the sink")
    size = tuple(args.frame_size)
    state = np.zeros(8, np.float32)
    model.observe(frames(1, size, 0), state)
    write_s, start_s, generate_s, total_s = [], [], [], []
    for step in range(args.warmup + args.loop_chunks):
        executed = frames(received, size, step)
        start = time.perf_counter()
        model.generate()
        middle = time.perf_counter()
        model.observe(executed, state)
        end = time.perf_counter()
        if step >= args.warmup:
            generate_s.append(middle - start)
            (start_s if model.chunks_in_context == 0 else write_s).append(end - middle)
            total_s.append(end - start)
    return {"observe: write chunk": summarize(write_s), "observe: new episode": summarize(start_s),
            "generate": summarize(generate_s), "observe + generate": summarize(total_s)}  # fmt: skip


def vae_write_cost(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The VAE part of observe(), the cases interleaved repeat by repeat so a busy machine weighs on each alike:
    a write's 9-frame clip from scratch (the release) vs 8 frames continuing a causal stream (the earlier design);
    the y clip at an episode start (lazy: first frame + the 8 zero frames of chunk 1) vs all 33 frames at once, and
    the 8 zero frames a later chunk adds."""
    from dreamzero_ros.model.encoders import ConditionStream

    model = build(args)
    vae = model.vae
    size = tuple(args.frame_size)
    clip = model.real_clip(frames(model.frames_per_chunk, size, 1))
    first = frames(1, size, 0)
    total = model.config.condition_frames
    samples: dict[str, list[float]] = {name: [] for name in (
        "write: 9-frame clip from scratch", "write: 8 frames continuing a stream (before)",
        "start: y lazily (1 + 8 frames)", "start: y at once (33 frames)", "later chunk: y's next 8 zero frames")}

    def started_stream() -> ConditionStream:
        stream = ConditionStream(vae, first[0], total)
        stream.latents(3)
        return stream

    def streamed(pixels: torch.Tensor, cache: list) -> None:
        for i in range(0, pixels.shape[2], 4):
            vae._encode_pixels(pixels[:, :, i : i + 4], cache)

    with torch.no_grad():
        for _ in range(args.repeats):
            tick = time.perf_counter()
            vae.encode_clip(clip)
            samples["write: 9-frame clip from scratch"].append(time.perf_counter() - tick)
            cache = vae.new_feature_cache()
            vae._encode_pixels(vae.frames_to_input(first), cache)
            tick = time.perf_counter()
            streamed(vae.frames_to_input(clip[1:]), cache)
            samples["write: 8 frames continuing a stream (before)"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            stream = started_stream()
            samples["start: y lazily (1 + 8 frames)"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            stream.latents(5)
            samples["later chunk: y's next 8 zero frames"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            vae.encode_condition(first[0], total)
            samples["start: y at once (33 frames)"].append(time.perf_counter() - tick)
    return {name: summarize(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[352, 640], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo runs on 1)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-cache-repeats", type=int, default=3, help="0 skips the slow no-cache baseline")
    parser.add_argument("--loop-chunks", type=int, default=16, help="chunks timed in the closed-loop case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "bench_model.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = {"context": context_scaling(args), "step_caching": step_caching(args),
               "closed_loop_8_frames": closed_loop(args, 8), "closed_loop_4_frames": closed_loop(args, 4),
               "vae_write": vae_write_cost(args)}  # fmt: skip
    print_table(f"generate() per chunk vs context, 16 steps ({args.preset}, {args.threads} thread(s))",
                results["context"])  # fmt: skip
    print_table("generate() per chunk by DiT step caching (context = 1 chunk)", results["step_caching"])
    print_table("closed loop per chunk, preset defaults, 8 frames received", results["closed_loop_8_frames"])
    print_table("closed loop per chunk, preset defaults, 4 frames received", results["closed_loop_4_frames"])
    print_table("VAE part of observe()", results["vae_write"])
    settings = {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()}
    write_json(args.json, {"benchmark": "bench_model", "settings": settings, "run": run_metadata("cpu"),
                           "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
