"""GPU milliseconds per chunk of the DreamZero 5B and 14B presets (random bf16 weights), by optimisation.

Only runs where CUDA exists; elsewhere it prints a "no CUDA" line and exits 0. For each preset it builds the DiT
directly on the GPU in bf16, fills the KV cache with the first frame and `--context - 1` chunks (t = 0 writes, as
observe() does), then times the solver of the next chunk (warm-up and compilation excluded):

  baseline      16 steps, conditional and unconditional branches as two sequential batch-1 forwards
  batched_cfg   16 steps, both branches as one batch of 2
  step_cache    batched CFG + the fixed 8-of-16 DiT step cache
  compile       step_cache + torch.compile of every DiT block
  cuda_graphs   step_cache + torch.compile(mode="reduce-overhead") (CUDA graphs)
  flash         batched CFG + Flash (1 step)

Encoders (umT5-XXL, CLIP, VAE) are not built: the text/image contexts are random tensors of the released shapes.
A case that fails (e.g. a compile error) is printed and recorded in the JSON with its error, and the rest go on.

    .venv/bin/python benchmarks/bench_model_gpu.py --presets dreamzero_5b dreamzero_14b --repeats 3
    .venv/bin/python benchmarks/bench_model_gpu.py --device cpu --presets tiny   # logic check without a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import REPO_ROOT, print_table, run_metadata, summarize, write_json

from dreamzero_ros.model.config import WamConfig, preset_config
from dreamzero_ros.model.kv_cache import KVCache
from dreamzero_ros.model.sampler import ChunkRequest, FlowSampler, SamplerSettings
from dreamzero_ros.model.transformer import Segment, SegmentKind, WamTransformer

CASES: dict[str, dict[str, Any]] = {
    "baseline": dict(cfg_batched=False, step_cache="none"),
    "batched_cfg": dict(cfg_batched=True, step_cache="none"),
    "step_cache": dict(cfg_batched=True, step_cache="fixed"),
    "compile": dict(cfg_batched=True, step_cache="fixed", compile_mode="default"),
    "cuda_graphs": dict(cfg_batched=True, step_cache="fixed", compile_mode="reduce-overhead"),
    "flash": dict(cfg_batched=True, flash=True),
}


def build_transformer(config: WamConfig, device: torch.device, dtype: torch.dtype) -> WamTransformer:
    """Random weights created directly in `dtype` on `device` (a float32 14B would not fit beside its copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            transformer = WamTransformer.from_wam_config(config)
    finally:
        torch.set_default_dtype(previous)
    return transformer.eval()


class Setup:
    """A transformer with its cache filled up to the chunk being generated, and that chunk's request."""

    def __init__(self, config: WamConfig, context: int, device: torch.device, dtype: torch.dtype) -> None:
        self.config, self.device, self.dtype = config, device, dtype
        self.transformer = build_transformer(config, device, dtype)
        self.cache = KVCache.for_config(config, device=device, dtype=dtype)
        gen = torch.Generator(device="cpu").manual_seed(0)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen).to(device, dtype)

        image = randn(1, config.image_tokens, config.image_dim) if config.image_dim else None
        with torch.no_grad():
            contexts = {b: self.transformer.embed_context(randn(1, config.text_len, config.text_dim), image)
                        for b in ("cond", "uncond")}  # fmt: skip
            batched = torch.cat([contexts["cond"], contexts["uncond"]])
            h, w = config.latent_size
            zero = torch.zeros(2, device=device)
            self.transformer.forward_chunk(randn(2, config.in_channels, 1, h, w), zero, batched, chunk=0,
                                           frame_offset=0, cache=self.cache)  # fmt: skip
            self.cache.commit((Segment(SegmentKind.FIRST, 0, config.tokens_per_latent_frame),))
            frames = config.latent_frames_per_chunk
            for chunk in range(1, context):
                # real frames are written video-only at t = 0, as the release does
                self.transformer.forward_chunk(
                    randn(2, config.in_channels, frames, h, w), zero, batched, chunk=chunk,
                    frame_offset=1 + (chunk - 1) * frames, cache=self.cache,
                )  # fmt: skip
                self.cache.commit((Segment(SegmentKind.VIDEO, chunk, config.tokens_per_latent_frame * frames),))
        y = None
        if config.conditioning == "i2v":
            y = randn(1, config.in_channels - config.latent_channels, frames, h, w)
        self.request = ChunkRequest(
            contexts=contexts, y=y, state=randn(1, config.max_state_dim), chunk=context,
            frame_offset=1 + (context - 1) * frames, latent_shape=(config.latent_channels, frames, h, w),
            horizon=config.horizon, action_dim=config.max_action_dim,
        )  # fmt: skip
        self.eager_blocks = self.transformer.blocks

    def use_blocks(self, compile_mode: str | None) -> None:
        self.transformer.blocks = self.eager_blocks
        if compile_mode is not None:
            compiled = [torch.compile(block, mode=compile_mode, dynamic=False) for block in self.eager_blocks]
            self.transformer.blocks = torch.nn.ModuleList(compiled)

    def time_case(self, knobs: dict[str, Any], repeats: int, warmup: int) -> tuple[list[float], int]:
        knobs = dict(knobs)
        self.use_blocks(knobs.pop("compile_mode", None))
        sampler = FlowSampler(SamplerSettings(**knobs))
        samples, forwards = [], 0
        try:
            for index in range(warmup + repeats):
                self._sync()
                start = time.perf_counter()
                result = sampler.sample(self.transformer, self.request, self.cache, torch.Generator().manual_seed(0))
                self._sync()
                if index >= warmup:
                    samples.append(time.perf_counter() - start)
                forwards = result.dit_forwards
        finally:
            self.use_blocks(None)
        return samples, forwards

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["dreamzero_5b", "dreamzero_14b"])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[352, 640], metavar=("H", "W"))
    parser.add_argument("--context", type=int, default=4, help="chunk generated (cache: first frame + context-1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "bench_model_gpu.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA: bench_model_gpu.py times the 5B/14B presets on a GPU; nothing to measure here (exit 0)")
        return 0
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    results: dict[str, Any] = {}
    for preset in args.presets:
        config = preset_config(preset, horizon=args.horizon, frame_size=tuple(args.frame_size))
        setup = Setup(config, args.context, device, dtype)
        rows: dict[str, dict[str, Any]] = {}
        for case in args.cases:
            try:
                samples, forwards = setup.time_case(CASES[case], args.repeats, args.warmup)
            except Exception as exc:  # noqa: BLE001 - one failing optimisation must not hide the others
                print(f"{preset} {case}: FAILED: {exc!r}")
                rows[case] = {"error": "".join(traceback.format_exception_only(exc)).strip()}
                continue
            rows[case] = {**summarize(samples), "dit_forwards": forwards}
        ok = {k: v for k, v in rows.items() if "error" not in v}
        if "baseline" in ok:
            for stats in ok.values():
                stats["speedup_vs_baseline"] = ok["baseline"]["p50_ms"] / stats["p50_ms"]
        results[preset] = {"cases": rows, "parameters": setup.transformer.num_parameters_total(),
                           "tokens_per_chunk": config.tokens_per_chunk, "cache_tokens": setup.cache.length,
                           "cache_bytes": setup.cache.nbytes}  # fmt: skip
        if ok:
            print_table(f"{preset}: ms per chunk ({dtype}, context {args.context}, {device})", ok)
        del setup
        if device.type == "cuda":
            torch.cuda.empty_cache()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_json(args.json, {"benchmark": "bench_model_gpu", "settings": settings, "run": run_metadata(str(device)),
                           "results": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
