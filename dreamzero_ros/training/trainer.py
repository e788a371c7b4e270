"""`dreamzero train`: the trainer loop, its checkpoints, and running as one process or under `torchrun` (DDP).

This module owns the run: building the model from a preset (seeded; the encoders stay frozen at that
initialisation, only the DiT trains), the training set and its cache, the sample order, the optimizer and learning
rate, DistributedDataParallel, the progress bar, the loss curves (`loss.png`, `losses.json`), the resumable
training state (`train_state.pt`: DiT weights, optimizer, step, RNG, loss history) and the final checkpoint in the
released layout (`<out>/checkpoint`, via `model.checkpoint.save_checkpoint`, with the dataset's statistics in
`experiment_cfg/metadata.json`), which the local backend and `dreamzero serve` load unchanged.

Order and sharding: global position p = step x batch + j (j < batch) is entry perm_e[p mod N] of the epoch's N
entries (every sample once; `oversample` repeats those whose instruction contains a given text) in epoch e = p // N,
perm_e a permutation seeded by (seed, e); rank r of W takes j in [r b, (r + 1) b) with b = batch / W.
Together with the per-sample draws of `objective.py` and DDP's gradient mean, a step under W ranks computes the
same update as one process with the whole batch (checked by test/unit/test_training.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dreamzero_ros.model.checkpoint import save_checkpoint
from dreamzero_ros.training.data import DatasetMeta, TrainingSet, check_held_out, fingerprint
from dreamzero_ros.training.objective import Batch, FlowMatchingLoss, ObjectiveConfig, make_batch, target_chunk
from dreamzero_ros.training.probe import ConditioningProbe, conditioning_probe

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
HELD_OUT_CACHE = "held_out.pt"
#: the held-out probe's episode starts at most (4 forward passes per 16 at each save)
HELD_OUT_PROBE_SAMPLES = 256
STATE_VERSION = 1
#: fields that must match when resuming (the rest, e.g. steps or save_every, may change)
RESUME_FIELDS = ("preset", "overrides", "seed", "batch", "chunks", "start_stride", "max_start", "execute_steps",
                 "oversample", "lr", "warmup", "decay_steps", "min_lr_ratio", "weight_decay", "grad_clip", "action_weight",
                 "decoupled_video_noise", "text_dropout", "init")  # fmt: skip


@dataclass
class TrainConfig:
    """Arguments of `dreamzero train` (see the CLI's help for each)."""

    dataset: str
    out: str
    preset: str = "sim_small"
    steps: int = 1000
    batch: int = 16
    lr: float = 5e-4
    warmup: int = 100
    decay_steps: int = 0  # cosine decay from lr to lr x min_lr_ratio at this step (0 = constant after warm-up)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    chunks: int | None = None  # chunks per sample; None = the preset's context_chunks (4)
    start_stride: int | None = None  # steps between sample starts; None = the video stride (3)
    max_start: int | None = None  # latest sample start in each episode (steps); None = anywhere
    execute_steps: int | None = None  # steps between a sample's chunks; None = the horizon (the release's recipe)
    oversample: dict[str, int] = field(default_factory=dict)  # instruction text -> times its samples come per epoch
    action_weight: float = 5.0
    decoupled_video_noise: bool = False
    text_dropout: float = 0.1
    save_every: int = 200
    resume: bool = False
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    cache: str | None = None  # prepared samples; default <out>/samples.pt
    init: str | None = None  # a released-layout checkpoint whose DiT weights start the run (post-training)
    validation: str | None = None  # a held-out dataset (other seeds) whose episode starts are probed at each save
    overrides: dict[str, Any] = field(default_factory=dict)  # WamConfig fields over the preset's (tests, sweeps)

    def validate(self) -> None:
        for name in ("steps", "batch", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup: expected >= 0, got {self.warmup}")
        if self.decay_steps < 0 or (self.decay_steps and self.decay_steps <= self.warmup):
            raise ValueError(f"decay_steps: expected 0 (no decay) or more than warmup={self.warmup}, "
                             f"got {self.decay_steps}")  # fmt: skip
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio: expected a value in [0, 1], got {self.min_lr_ratio}")
        for text, times in self.oversample.items():
            if not text.strip() or not isinstance(times, int) or isinstance(times, bool) or times < 1:
                raise ValueError(f"oversample {text!r}={times!r}: expected a non-empty instruction text and a whole "
                                 "number of times >= 1")
        self.objective().validate()

    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(self.action_weight, self.decoupled_video_noise, self.text_dropout)


@dataclass
class TrainResult:
    checkpoint: Path | None  # the released-layout folder (rank 0), None on other ranks
    steps: int
    losses: list[dict[str, float]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step run by this call
    samples: int = 0
    prepare_seconds: float = 0.0
    probe: ConditioningProbe | None = None  # the last save's conditioning probe (rank 0; None: no episode starts)
    held_out_probe: ConditioningProbe | None = None  # the same on --validation's episode starts (rank 0)

    @property
    def samples_per_second(self) -> float:
        """Global samples per second from the median step time of this call."""
        if not self.step_seconds:
            return math.nan
        return self.samples / float(np.median(self.step_seconds))


# ---- distributed ------------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.initialised:
            dist.barrier()


def _init_distributed(device: str) -> tuple[_Dist, torch.device]:
    """torchrun's environment (WORLD_SIZE > 1) -> a process group (nccl on CUDA, gloo on CPU); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if world <= 1:
        return _Dist(), dev
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, True), dev


# ---- the run ----------------------------------------------------------------------------------------------------


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over `warmup` steps, then constant, or with `decay_steps` a cosine from lr down to
    lr x min_lr_ratio at that step and constant after it. A function of the step only, so resuming is exact."""
    if config.warmup and step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if not config.decay_steps:
        return config.lr
    progress = min(1.0, (step - config.warmup) / (config.decay_steps - config.warmup))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Order:
    """Global sample order (see the module docstring)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, torch.Tensor] = {}

    def __call__(self, position: int) -> int:
        epoch, within = divmod(position, self.n)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 7919 + epoch))}  # fmt: skip
        return int(self._perms[epoch][within])


def epoch_entries(data: TrainingSet, oversample: dict[str, int]) -> list[int]:
    """The sample indices of one epoch: each sample once, or `times` times when its instruction contains `text`
    (the largest count when several texts match). ValueError naming a text that no instruction of the dataset
    contains (a typo would otherwise train unweighted without a word)."""
    tasks = data.meta.tasks
    for text in oversample:
        if not any(text in instruction for instruction in tasks.values()):
            raise ValueError(f"oversample {text!r}: no instruction of {data.meta.root} contains it (they are "
                             f"{sorted(set(tasks.values()))})")
    times = {task: max([n for text, n in oversample.items() if text in instruction], default=1)
             for task, instruction in tasks.items()}  # fmt: skip
    return [i for i, sample in enumerate(data.samples) for _ in range(times[sample.task])]


def parse_oversample(items: list[str]) -> dict[str, int]:
    """`--oversample TEXT=N` arguments -> {text: N}; ValueError naming a malformed one."""
    parsed: dict[str, int] = {}
    for item in items:
        text, sep, value = item.rpartition("=")
        try:
            times = int(value)
        except ValueError:
            times = 0
        if not sep or not text.strip() or times < 1:
            raise ValueError(f"--oversample {item!r}: expected TEXT=N with N a whole number >= 1, e.g. touch=2")
        parsed[text] = times
    return parsed


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--override FIELD=JSON` arguments -> WamConfig fields over the preset's; ValueError naming a malformed one."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--override {item!r}: expected FIELD=JSON, e.g. num_layers=6")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--override {item!r}: the value is not JSON ({exc})") from exc
    if "patch_size" in overrides:
        overrides["patch_size"] = tuple(overrides["patch_size"])
    return overrides


def build_model(config: TrainConfig, meta: DatasetMeta, device: torch.device) -> Any:
    """The preset's WorldActionModel sized for the dataset's embodiment, random weights seeded by config.seed."""
    from dreamzero_ros.model.wam import WorldActionModel

    emb = meta.embodiment
    return WorldActionModel.from_preset(
        config.preset, action_dim=emb.action_dim, state_dim=len(emb.state_joints), horizon=emb.control.horizon,
        frame_size=emb.stitch.frame_size, seed=config.seed, device=str(device), **config.overrides,
    )  # fmt: skip


def _batch_for(data: TrainingSet, entries: list[int], order: _Order, config: TrainConfig, model_config: Any,
               step: int, positions: range, chunks: int) -> Batch:  # fmt: skip
    k = target_chunk(config.seed, step, chunks)
    samples = [data.samples[entries[order(step * config.batch + j)]] for j in positions]
    return make_batch(data, samples, list(positions), k=k, seed=config.seed, step=step, config=config.objective(),
                      max_action_dim=model_config.max_action_dim, max_state_dim=model_config.max_state_dim)


def fixed_loss(objective: FlowMatchingLoss, data: TrainingSet, config: TrainConfig, count: int, device: torch.device,
               seed: int = 1234) -> float:  # fmt: skip
    """Mean loss over the first `count` samples and every target chunk k, with fixed draws (no gradient): a
    noise-free yardstick of training progress (the training loss itself moves with each step's draws)."""
    model_config = objective.model_config
    total, n = 0.0, 0
    chunks = len(data.samples[0].video)
    with torch.no_grad():
        for k in range(1, chunks + 1):
            samples = data.samples[:count]
            batch = make_batch(data, samples, list(range(len(samples))), k=k, seed=seed, step=0,
                               config=config.objective(), max_action_dim=model_config.max_action_dim,
                               max_state_dim=model_config.max_state_dim).to(device)  # fmt: skip
            loss, _, _ = objective(batch)
            total += float(loss)
            n += 1
    return total / n


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) training; see the module docstring. Returns the result on every rank."""
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    ctx, device = _init_distributed(config.device)
    try:
        return _train(config, ctx, device)
    finally:
        if ctx.initialised:
            dist.destroy_process_group()


def _train(config: TrainConfig, ctx: _Dist, device: torch.device) -> TrainResult:
    out = Path(config.out)
    if config.batch % ctx.world:
        raise ValueError(f"batch {config.batch} is not divisible by the {ctx.world} processes")
    meta = DatasetMeta.read(config.dataset)
    held_out_meta = DatasetMeta.read(config.validation) if config.validation else None
    if held_out_meta is not None:
        check_held_out(meta, held_out_meta)
    model = build_model(config, meta, device)
    chunks = config.chunks or model.config.context_chunks
    state_path = out / STATE_FILE
    saved = None
    if config.resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"{state_path}: no training state to resume from (run without --resume first)")
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        _check_resume(saved, config, chunks, state_path)
    elif ctx.main and state_path.exists():
        raise FileExistsError(f"{state_path}: the output folder holds a training run; pass --resume to continue "
                              "it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    # Prepared samples: rank 0 encodes (or reads the cache), the others read what it wrote.
    t0 = time.perf_counter()
    cache = Path(config.cache) if config.cache else out / "samples.pt"
    key = fingerprint(meta.root, config.preset, config.seed, chunks, model.config.to_dict(), config.start_stride,
                      config.max_start, config.execute_steps)
    bar = _bar(len(meta.episodes), "encoding episodes", config.progress and ctx.main)
    if ctx.main:
        data = TrainingSet(meta, model, chunks=chunks, start_stride=config.start_stride, max_start=config.max_start,
                           execute_steps=config.execute_steps, cache=cache, cache_key=key,
                           progress=lambda n, total: bar.update(1) if bar else None)  # fmt: skip
    ctx.barrier()
    if not ctx.main:
        data = TrainingSet(meta, model, chunks=chunks, start_stride=config.start_stride, max_start=config.max_start,
                           execute_steps=config.execute_steps, cache=cache, cache_key=key)
    if bar:
        bar.close()
    held_out = None
    if held_out_meta is not None and ctx.main:
        # Only the episode starts, normalised with the training set's statistics (the checkpoint's).
        held_key = fingerprint(held_out_meta.root, config.preset, config.seed, 1, model.config.to_dict(), None, 0)
        held_out = TrainingSet(held_out_meta, model, chunks=1, max_start=0, cache=out / HELD_OUT_CACHE,
                               cache_key=f"{held_key}:{key}", space=data.space)  # fmt: skip
    prepare_seconds = time.perf_counter() - t0

    transformer = model.transformer
    if config.init and saved is None:
        init_from_checkpoint(transformer, Path(config.init), frozen=frozen_encoders(model))
    transformer.train()
    for module in frozen_encoders(model).values():
        if module is not None:
            module.requires_grad_(False)
    objective = FlowMatchingLoss(transformer, config.objective(), model.config)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_step, losses = 0, []
    if saved is not None:
        transformer.load_state_dict(saved["transformer"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        start_step, losses = int(saved["step"]), list(saved["losses"])
    runner: torch.nn.Module = objective
    if ctx.initialised:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)

    entries = epoch_entries(data, config.oversample)
    order = _Order(len(entries), config.seed)
    local = config.batch // ctx.world
    positions = range(ctx.rank * local, (ctx.rank + 1) * local)
    result = TrainResult(None, start_step, losses, samples=config.batch, prepare_seconds=prepare_seconds)
    bar = _bar(config.steps, "training", config.progress and ctx.main, initial=start_step)
    for step in range(start_step, config.steps):
        t_step = time.perf_counter()
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = _batch_for(data, entries, order, config, model.config, step, positions, chunks).to(device)
        loss, video, action = runner(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(transformer.parameters(), config.grad_clip)
        optimizer.step()
        parts = torch.stack([loss.detach(), video, action]).float()
        if ctx.initialised:  # the logged loss is the global batch's mean
            dist.all_reduce(parts)
            parts /= ctx.world
        row = {"step": step + 1, "loss": float(parts[0]), "video": float(parts[1]), "action": float(parts[2]),
               "lr": lr}  # fmt: skip
        losses.append(row)
        result.step_seconds.append(time.perf_counter() - t_step)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", action=f"{row['action']:.4f}",
                            samples_s=f"{config.batch / result.step_seconds[-1]:.1f}")  # fmt: skip
        if ctx.main and ((step + 1) % config.save_every == 0 or step + 1 == config.steps):
            probe = conditioning_probe(objective, data, config.objective(), device)
            if probe is not None:
                row.update(probe.as_row())
                result.probe = probe
                log.info("step %d: %s", step + 1, probe.summary())
            if held_out is not None:
                held = conditioning_probe(objective, held_out, config.objective(), device,
                                          count=HELD_OUT_PROBE_SAMPLES)  # fmt: skip
                if held is not None:
                    row.update(held.as_row("held_out_probe_"))
                    result.held_out_probe = held
                    log.info("step %d: %s", step + 1, held.summary("held-out episode starts"))
            _save_state(state_path, config, chunks, step + 1, transformer, optimizer, losses)
            write_curves(out, losses)
    if bar:
        bar.close()
    result.steps = config.steps
    if ctx.main:
        transformer.eval()
        result.checkpoint = save_checkpoint(model, out / "checkpoint", metadata=meta.metadata,
                                            execute_steps=config.execute_steps)
        (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    ctx.barrier()
    return result


def frozen_encoders(model: Any) -> dict[str, torch.nn.Module | None]:
    """The model's encoders that training never changes, as `init_from_checkpoint` compares them."""
    return {"text_encoder": model.text_encoder, "image_encoder": model.image_encoder, "vae": model.vae}


def init_from_checkpoint(transformer: torch.nn.Module, folder: Path,
                         frozen: dict[str, torch.nn.Module | None] | None = None) -> None:  # fmt: skip
    """Copy a released-layout checkpoint's DiT weights into `transformer` (post-training from a trained model).
    Every weight must be there with the same shape: a checkpoint of another size or embodiment is refused, naming
    the first weights that differ.

    frozen: this run's frozen encoders by component name ("text_encoder", "image_encoder", "vae"). Each must equal
    the checkpoint's, or the DiT would go on training on inputs other than those it learnt from: their seeded
    weights differ with --seed, and the prepared samples hold their outputs."""
    from dreamzero_ros.model.checkpoint import CheckpointError
    from dreamzero_ros.model.config import ModelConfigError
    from dreamzero_ros.model.wam import WorldActionModel

    try:
        loaded = WorldActionModel.from_checkpoint(folder)
    except (CheckpointError, ModelConfigError) as exc:
        raise ValueError(f"--init {folder}: cannot load the checkpoint ({exc})") from exc
    for name, module in (frozen or {}).items():
        theirs = getattr(loaded, name)
        if (module is None) != (theirs is None) or module is not None and not _same_weights(module, theirs):
            raise ValueError(f"--init {folder}: its {name} differs from this run's (frozen encoders are seeded by "
                             "--seed: post-train with the seed that made the checkpoint)")
    source = loaded.transformer.state_dict()
    target = transformer.state_dict()
    missing = sorted(set(target) - set(source))
    shapes = sorted(k for k in set(target) & set(source) if source[k].shape != target[k].shape)
    if missing or shapes:
        detail = ", ".join([f"{k} missing" for k in missing[:3]]
                           + [f"{k}: {list(source[k].shape)} vs {list(target[k].shape)}" for k in shapes[:3]])  # fmt: skip
        raise ValueError(f"--init {folder}: its DiT does not fit the preset's ({detail})")
    transformer.load_state_dict({k: source[k] for k in target})
    log.info("DiT weights from %s", folder)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    mine, theirs = a.state_dict(), b.state_dict()
    return mine.keys() == theirs.keys() and all(
        torch.equal(mine[k].float().cpu(), theirs[k].float().cpu()) for k in mine)


def _check_resume(saved: dict[str, Any], config: TrainConfig, chunks: int, path: Path) -> None:
    if saved.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: training state version {saved.get('version')}, this trainer reads {STATE_VERSION}")
    mine = asdict(config) | {"chunks": chunks}
    defaults = asdict(TrainConfig(dataset="", out=""))  # a state saved before a field existed ran at its default
    for name in RESUME_FIELDS:
        theirs = saved["config"].get(name, defaults.get(name))
        if theirs != mine[name]:
            raise ValueError(f"{path}: cannot resume with {name}={mine[name]!r}: the run was started with "
                             f"{name}={theirs!r}")
    if int(saved["step"]) > config.steps:
        raise ValueError(f"{path}: the run is already at step {saved['step']}, past --steps {config.steps}")


def _save_state(path: Path, config: TrainConfig, chunks: int, step: int, transformer: torch.nn.Module,
                optimizer: torch.optim.Optimizer, losses: list[dict[str, float]]) -> None:  # fmt: skip
    """Atomically replace the training state (a crash mid-write leaves the previous one)."""
    state = {"version": STATE_VERSION, "step": step, "config": asdict(config) | {"chunks": chunks},
             "transformer": transformer.state_dict(), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state(), "losses": losses}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def write_curves(out: Path, losses: list[dict[str, float]]) -> Path:
    """losses.json and loss.png (total, video and action loss per step, with a moving average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "losses.json").write_text(json.dumps(losses) + "\n")
    steps = np.array([r["step"] for r in losses])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("loss", "video", "action"), strict=True):
        values = np.array([r[key] for r in losses])
        ax.plot(steps, values, lw=0.6, alpha=0.4, label="per step")
        window = max(1, len(values) // 50)
        if window > 1:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title({"loss": "total loss", "video": "video velocity MSE", "action": "action velocity MSE"}[key])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, initial=initial, unit="step" if desc == "training" else "episode",
                dynamic_ncols=True)  # fmt: skip
