"""`dreamzero train`: samples from a LeRobot dataset, the loss going down, exact resume, the trained checkpoint in
the local backend, clear errors on bad datasets, and DDP (2 gloo processes) equal to one process.

The dataset is written with the project's LeRobotWriter (2 short episodes, smooth synthetic frames). The model is
the real `tiny` preset with a coarse patch (1, 11, 10) (2 video tokens per latent frame) so a step takes
milliseconds; the encoders' outputs are prepared once per module (a shared sample cache). Expected normalised
actions are computed here by hand from the parquet arrays and the q01/q99 in the dataset's JSON files.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.datasets.lerobot import LeRobotWriter, read_parquet
from dreamzero_ros.training.data import DatasetMeta, TrainingDataError, TrainingSet, check_held_out, fingerprint
from dreamzero_ros.training.objective import FlowMatchingLoss
from dreamzero_ros.training.probe import conditioning_probe, other_task_instructions, scene_partners, sibling_tasks
from dreamzero_ros.training.trainer import (
    STATE_FILE,
    TrainConfig,
    build_model,
    epoch_entries,
    fixed_loss,
    init_from_checkpoint,
    learning_rate,
    parse_overrides,
    parse_oversample,
    train,
)

EMB = load_embodiment("franka_droid")
H, W, T = 180, 320, 30
PATCH = (1, 11, 10)
REPO = Path(__file__).resolve().parents[2]


def _frames(n: int, phase: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    out = np.empty((n, H, W, 3), np.uint8)
    for t in range(n):
        out[t, ..., 0] = (x * 255 // W + 4 * t + phase) % 256
        out[t, ..., 1] = (y * 255 // H + phase) % 256
        out[t, ..., 2] = 90
    return out


def _write_dataset(root: Path, rng_seed: int, origins: tuple = (None, None), phase: int = 0) -> Path:
    """Two episodes, "touch the red cube" and "touch the blue cube", each with `origins[episode]`."""
    rng = np.random.default_rng(rng_seed)
    with LeRobotWriter(root, EMB) as writer:
        for episode, text in enumerate(("touch the red cube", "touch the blue cube")):
            states = np.cumsum(rng.normal(0, 0.03, size=(T, 8)), axis=0)
            states[:, 7] = np.linspace(0.04, 0.0, T)  # the finger closes: gripper 0 -> 1 in model units
            actions = np.roll(states, -2, axis=0) + rng.normal(0, 0.005, size=(T, 8))
            actions[:, 7] = 0.0 if episode else 0.04
            frames = {cam: _frames(T, 50 * k + 90 * episode + phase) for k, cam in enumerate(EMB.camera_names)}
            writer.add_episode(states, actions, frames, text, success=True, origin=origins[episode])
    return root


def _origin(seed: int) -> dict:
    return {"sim_task": "reach", "seed": seed, "colour": "red"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("train") / "ds", 3)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Other seeds' episodes (other draws, so other statistics, and other frames)."""
    return _write_dataset(tmp_path_factory.mktemp("held_out") / "ds", 8, (_origin(11), _origin(12)), phase=30)


@pytest.fixture(scope="module")
def base(dataset, tmp_path_factory) -> TrainConfig:
    """A fast config; its prepared samples are cached once for the module."""
    cache = tmp_path_factory.mktemp("cache") / "samples.pt"
    return TrainConfig(dataset=str(dataset), out="unused", preset="tiny", overrides={"patch_size": PATCH}, steps=4,
                       batch=4, lr=3e-3, warmup=0, chunks=2, save_every=2, progress=False, cache=str(cache))


@pytest.fixture(scope="module")
def prepared(base) -> tuple:
    meta = DatasetMeta.read(base.dataset)
    model = build_model(base, meta, torch.device("cpu"))
    key = fingerprint(meta.root, base.preset, base.seed, base.chunks, model.config.to_dict())
    return meta, model, TrainingSet(meta, model, chunks=base.chunks, cache=Path(base.cache), cache_key=key)


def _normalised_by_hand(dataset: Path, stats_from: Path, episode: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """The first chunk's actions and state of `dataset`'s episode from `start`, relative and q99-normalised with
    the statistics in `stats_from`'s JSON files."""
    rel = json.loads((stats_from / "meta/relative_stats_dreamzero.json").read_text())["joint_position"]
    stats = json.loads((stats_from / "meta/stats.json").read_text())
    q01_a = np.array(rel["q01"] + stats["action"]["q01"][7:])
    q99_a = np.array(rel["q99"] + stats["action"]["q99"][7:])
    q01_s, q99_s = np.array(stats["observation.state"]["q01"]), np.array(stats["observation.state"]["q99"])
    table = read_parquet(dataset / f"data/chunk-000/episode_{episode:06d}.parquet")
    states, actions = np.stack(table["observation.state"]), np.stack(table["action"])
    state = states[start]
    want = actions[[min(start + h, T - 1) for h in range(24)]].astype(np.float64)
    want[:, :7] -= state[:7]  # joints relative to the chunk's start state, the gripper absolute
    return (np.clip(2 * (want - q01_a) / (q99_a - q01_a) - 1, -1, 1),
            np.clip(2 * (state - q01_s) / (q99_s - q01_s) - 1, -1, 1))  # fmt: skip


def test_samples_hold_the_relative_q99_normalised_actions_and_states_of_the_parquet_rows(dataset, prepared):
    meta, _, data = prepared
    # starts every 3 steps while a whole chunk is real: 0, 3, 6 (T - 24 = 6) per episode
    assert [(s.episode, s.start) for s in data.samples] == [(e, i) for e in (0, 1) for i in (0, 3, 6)]
    rel = json.loads((dataset / "meta/relative_stats_dreamzero.json").read_text())["joint_position"]
    stats = json.loads((dataset / "meta/stats.json").read_text())
    sample = data.samples[4]  # episode 1, start 3
    for k in range(2):  # chunk 2 starts at step 27: past the end (30) the last row repeats
        want, want_state = _normalised_by_hand(dataset, dataset, 1, 3 + 24 * k)
        np.testing.assert_allclose(sample.actions[k].numpy(), want, atol=1e-5)
        np.testing.assert_allclose(sample.state[k].numpy(), want_state, atol=1e-5)
    # the checkpoint metadata carries exactly those statistics, under the dataset's embodiment tag
    entry = meta.metadata["oxe_droid"]["statistics"]
    assert entry["action"]["joint_position"]["q99"] == pytest.approx(rel["q99"])
    assert entry["action"]["gripper_position"]["q01"] == pytest.approx(stats["action"]["q01"][7:])
    # latents: first frame + y of 1 + 2 x 4 latent frames, 2 latent frames per chunk, CLIP tokens of the tiny preset
    assert tuple(sample.y.shape) == (4, 9, 11, 20) and tuple(sample.video[1].shape) == (4, 2, 11, 20)
    assert tuple(sample.image.shape) == (5, 16)


def test_a_few_steps_lower_the_loss_and_the_checkpoint_runs_in_the_local_backend(base, prepared, tmp_path):
    from dreamzero_ros.backends.base import Observation
    from dreamzero_ros.backends.local import LocalBackend
    from dreamzero_ros.model.wam import WorldActionModel

    _, model, data = prepared
    config = replace(base, out=str(tmp_path / "run"), steps=40, save_every=20)
    before = fixed_loss(FlowMatchingLoss(model.transformer, config.objective(), model.config), data, config, 6,
                        torch.device("cpu"))  # fmt: skip
    result = train(config)
    loaded = WorldActionModel.from_checkpoint(result.checkpoint)
    after = fixed_loss(FlowMatchingLoss(loaded.transformer, config.objective(), loaded.config), data, config, 6,
                       torch.device("cpu"))  # fmt: skip
    assert after < 0.7 * before, (before, after)
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []
    assert (tmp_path / "run/loss.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "run/losses.json").read_text())
    assert [r["step"] for r in rows] == list(range(1, 41))
    # the conditioning probe ran at each save (steps 20 and 40) on the 2 episode starts, whose instructions are
    # siblings ("touch the red cube" / "touch the blue cube")
    assert [r["step"] for r in rows if "probe_sibling" in r and "probe_other_scene" in r] == [20, 40]
    assert result.probe is not None and result.probe.samples == 2
    assert rows[-1]["probe_own"] == result.probe.own

    backend = LocalBackend(EMB, checkpoint=result.checkpoint)
    assert not backend.space.identity
    backend.set_instruction("touch the red cube")
    frame = np.full((1, 352, 640, 3), 120, np.uint8)
    state = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8, 0.02])
    for _ in range(2):
        chunk = backend.infer(Observation(0.0, frame, state))
        assert chunk.positions.shape == (24, 8) and np.all(np.isfinite(chunk.positions))
        frame = np.repeat(frame, 4, axis=0)


def test_a_held_out_set_is_normalised_with_the_training_statistics_and_probed_at_each_save(base, dataset, held_out,
                                                                                         tmp_path):  # fmt: skip
    result = train(replace(base, out=str(tmp_path / "run"), steps=4, save_every=2, validation=str(held_out)))
    rows = json.loads((tmp_path / "run/losses.json").read_text())
    probed = [r["step"] for r in rows if {"held_out_probe_own", "held_out_probe_sibling",
                                          "held_out_probe_other_scene", "held_out_probe_negative"} <= r.keys()]
    assert probed == [2, 4]
    probe = result.held_out_probe
    assert probe is not None and probe.samples == 2  # the start of each held-out episode
    assert rows[-1]["held_out_probe_own"] == probe.own and probe.own != rows[-1]["probe_own"]
    assert np.isfinite([probe.own, probe.sibling, probe.other_scene, probe.negative]).all()

    # the held-out starts are normalised with the training set's statistics (the checkpoint's), not their own
    own_stats = json.loads((held_out / "meta/stats.json").read_text())["action"]["q99"]
    assert own_stats != json.loads((dataset / "meta/stats.json").read_text())["action"]["q99"]
    cached = torch.load(tmp_path / "run/held_out.pt", weights_only=False)["samples"]
    assert [(s.episode, s.start) for s in cached] == [(0, 0), (1, 0)]
    for sample in cached:
        actions, state = _normalised_by_hand(held_out, dataset, sample.episode, 0)
        np.testing.assert_allclose(sample.actions[0].numpy(), actions, atol=1e-5)
        np.testing.assert_allclose(sample.state[0].numpy(), state, atol=1e-5)
    assert probe.summary("held-out episode starts").startswith(f"probe on 2 held-out episode starts: action MSE "
                                                               f"{probe.own:.4f}; x{probe.sibling / probe.own:.3f}")


def test_a_held_out_set_that_shares_a_scene_or_another_robot_is_refused_by_name(dataset, held_out, tmp_path, capsys):
    from dreamzero_ros.apps.cli import main

    clash = _write_dataset(tmp_path / "clash", 5, (_origin(12), _origin(13)))
    with pytest.raises(TrainingDataError, match=r"1 of its scenes are also in the training set .*\(reach seed 12\)"):
        check_held_out(DatasetMeta.read(clash), DatasetMeta.read(held_out))
    assert main(["train", "--dataset", str(clash), "--validation", str(held_out), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2  # fmt: skip
    assert "reach seed 12" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # another colour named in a held-out seed is the same scene; another task's seed is another scene
    other = DatasetMeta.read(held_out)
    other.episodes = [dict(e, colour="blue") for e in other.episodes]
    with pytest.raises(TrainingDataError, match=r"reach seed 12"):
        check_held_out(DatasetMeta.read(clash), other)
    other.episodes = [dict(e, sim_task="lift") for e in other.episodes]
    check_held_out(DatasetMeta.read(clash), other)
    # a training set without origins (exported recordings) has no scenes to compare
    check_held_out(DatasetMeta.read(dataset), DatasetMeta.read(held_out))
    with pytest.raises(TrainingDataError, match=r"held-out episodes of yam, the training set .* is franka_droid"):
        check_held_out(DatasetMeta.read(dataset), replace(DatasetMeta.read(held_out),
                                                         embodiment=load_embodiment("yam")))  # fmt: skip


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(base, tmp_path):
    straight = train(replace(base, out=str(tmp_path / "straight"), steps=4))
    train(replace(base, out=str(tmp_path / "split"), steps=2))
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(replace(base, out=str(tmp_path / "split"), steps=4))
    with pytest.raises(ValueError, match="cannot resume with lr=0.1"):
        train(replace(base, out=str(tmp_path / "split"), steps=4, resume=True, lr=0.1))
    resumed = train(replace(base, out=str(tmp_path / "split"), steps=4, resume=True))
    assert len(resumed.step_seconds) == 2  # only steps 3 and 4 ran
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in straight.losses]
    a = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=False)
    b = torch.load(tmp_path / "split" / STATE_FILE, weights_only=False)
    assert a["step"] == b["step"] == 4
    for name, tensor in a["transformer"].items():
        assert torch.equal(tensor, b["transformer"][name]), name


def test_oversample_repeats_the_samples_of_instructions_containing_the_text_and_names_one_that_none_contains(
        base, prepared, tmp_path):  # fmt: skip
    _, _, data = prepared
    # The fixture's 2 episodes of 30 steps each give samples starting at steps 0, 3, 6 (the last start is 30 - 24):
    # episode 0 says "touch the red cube", episode 1 "touch the blue cube".
    assert [s.episode for s in data.samples] == [0, 0, 0, 1, 1, 1]
    assert epoch_entries(data, {}) == [0, 1, 2, 3, 4, 5]
    assert epoch_entries(data, {"red": 3}) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 5]
    assert epoch_entries(data, {"cube": 2, "blue": 3}) == [0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]
    with pytest.raises(ValueError, match="oversample 'green': no instruction .* contains it .*touch the blue cube"):
        epoch_entries(data, {"green": 2})
    assert parse_oversample(["touch=2", "a=b=3"]) == {"touch": 2, "a=b": 3}
    for bad in ("touch", "touch=0", "=2", "touch=x", " =2"):
        with pytest.raises(ValueError, match=f"--oversample '{bad}': expected TEXT=N"):
            parse_oversample([bad])
    with pytest.raises(ValueError, match="oversample 'red'=0"):
        replace(base, oversample={"red": 0}).validate()
    train(replace(base, out=str(tmp_path / "run"), steps=2, oversample={"red": 2}))
    with pytest.raises(ValueError, match=r"cannot resume with oversample=\{'red': 3\}"):
        train(replace(base, out=str(tmp_path / "run"), steps=4, resume=True, oversample={"red": 3}))
    assert train(replace(base, out=str(tmp_path / "run"), steps=3, resume=True, oversample={"red": 2})).steps == 3
    # A state saved before the field existed ran at its default, none: it resumes without one.
    train(replace(base, out=str(tmp_path / "old"), steps=2))
    state = torch.load(tmp_path / "old" / STATE_FILE, weights_only=False)
    del state["config"]["oversample"]
    torch.save(state, tmp_path / "old" / STATE_FILE)
    assert train(replace(base, out=str(tmp_path / "old"), steps=3, resume=True)).steps == 3


def test_a_run_at_a_cadence_records_it_in_the_checkpoint_and_one_at_the_releases_spacing_records_none(base, tmp_path):
    cadenced = train(replace(base, out=str(tmp_path / "e12"), steps=1, execute_steps=12,
                             cache=str(tmp_path / "e12.pt")))  # fmt: skip
    section = json.loads((cadenced.checkpoint / "config.json").read_text())["dreamzero_ros"]
    assert section["execute_steps"] == 12
    plain = train(replace(base, out=str(tmp_path / "plain"), steps=1))
    assert "execute_steps" not in json.loads((plain.checkpoint / "config.json").read_text())["dreamzero_ros"]


def test_max_start_keeps_the_samples_that_begin_in_the_first_steps_and_has_its_own_cache_key(prepared):
    meta, model, data = prepared
    early = TrainingSet(meta, model, chunks=2, max_start=4)
    # starts every 3 steps up to step 4: 0 and 3 of each episode's 0, 3, 6
    assert [(s.episode, s.start) for s in early.samples] == [(e, i) for e in (0, 1) for i in (0, 3)]
    full = {(s.episode, s.start): s for s in data.samples}
    for sample in early.samples:
        assert torch.equal(sample.actions, full[(sample.episode, sample.start)].actions)
    config = model.config.to_dict()
    assert fingerprint(meta.root, "tiny", 0, 2, config, None, 4) != fingerprint(meta.root, "tiny", 0, 2, config)
    assert fingerprint(meta.root, "tiny", 0, 2, config, None, None) == fingerprint(meta.root, "tiny", 0, 2, config)


def test_execute_steps_start_each_chunk_that_many_steps_after_the_last_and_write_its_four_newest_frames(dataset,
                                                                                                        prepared):
    from dreamzero_ros.training.data import _stitched

    meta, model, _ = prepared
    data = TrainingSet(meta, model, chunks=2, execute_steps=12)
    assert [(s.episode, s.start) for s in data.samples] == [(e, i) for e in (0, 1) for i in (0, 3, 6)]
    sample = data.samples[4]  # episode 1, start 3: chunk 2 starts 12 steps later, at 15, not 27
    for k in range(2):
        want, want_state = _normalised_by_hand(dataset, dataset, 1, 3 + 12 * k)
        np.testing.assert_allclose(sample.actions[k].numpy(), want, atol=1e-5)
        np.testing.assert_allclose(sample.state[k].numpy(), want_state, atol=1e-5)
    # chunk 1's video: what inference writes after 12 steps, the 4 frames at the video stride (steps 6, 9, 12, 15)
    # each twice, the first prepended, encoded from scratch, the last 2 latents kept
    frames = _stitched(meta, 1, [6, 9, 12, 15])
    clip = np.stack([frames[6]] + [frames[f] for f in (6, 6, 9, 9, 12, 12, 15, 15)])
    want_video = model.vae.encode_pixels(model.vae.frames_to_input(clip))[0, :, -2:].float()
    torch.testing.assert_close(sample.video[0], want_video, atol=1e-5, rtol=1e-5)
    config = model.config.to_dict()
    assert fingerprint(meta.root, "tiny", 0, 2, config, None, None, 12) != fingerprint(meta.root, "tiny", 0, 2, config)
    for bad in (9, 6, 0, 36):  # not 4 or 8 frames at the stride of 3, or past the 24-step horizon
        with pytest.raises(TrainingDataError, match=rf"execute steps: expected a multiple of 12 steps up to the "
                                                     rf"horizon 24 .*got {bad}"):
            TrainingSet(meta, model, chunks=2, execute_steps=bad)


def test_bad_datasets_are_refused_naming_the_file(dataset, prepared, tmp_path, capsys):
    from dreamzero_ros.apps.cli import main

    meta, model, _ = prepared
    with pytest.raises(TrainingDataError, match=r"chunks per sample: expected 1..4, got 5"):
        TrainingSet(meta, model, chunks=5)
    with pytest.raises(TrainingDataError, match=r"start stride: expected >= 1 step, got 0"):
        TrainingSet(meta, model, chunks=2, start_stride=0)
    with pytest.raises(TrainingDataError, match=r"max start: expected >= 0 steps, got -1"):
        TrainingSet(meta, model, chunks=2, max_start=-1)

    broken = tmp_path / "ds"
    shutil.copytree(dataset / "meta", broken / "meta")
    (broken / "meta/stats.json").unlink()
    with pytest.raises(TrainingDataError, match=r"meta/stats.json: missing"):
        DatasetMeta.read(broken)
    assert main(["train", "--dataset", str(broken), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "stats.json: missing" in capsys.readouterr().err

    shutil.copy(dataset / "meta/stats.json", broken / "meta/stats.json")
    info = json.loads((broken / "meta/info.json").read_text())
    info["features"]["action"]["shape"] = [14]  # another robot's actions under the franka_droid name
    (broken / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(TrainingDataError, match=r"features.action.shape: expected \[8\] for franka_droid, got \[14\]"):
        DatasetMeta.read(broken)

    with pytest.raises(TrainingDataError, match=r"dataset folder not found"):
        DatasetMeta.read(tmp_path / "nowhere")
    (tmp_path / "empty/meta").mkdir(parents=True)
    with pytest.raises(TrainingDataError, match=r"info.json: missing"):
        DatasetMeta.read(tmp_path / "empty")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_equal_one_process_with_the_whole_batch(base, prepared, tmp_path):
    steps = 3
    single = replace(base, out=str(tmp_path / "one"), steps=steps, save_every=steps)
    train(single)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "dreamzero_ros.apps.cli", "train", "--dataset", base.dataset,
           "--out", str(tmp_path / "two"), "--preset", "tiny", "--override", f"patch_size={list(PATCH)}",
           "--steps", str(steps), "--batch", str(base.batch), "--lr", str(base.lr), "--warmup", "0", "--chunks", "2",
           "--save-every", str(steps), "--cache", base.cache, "--device", "cpu", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = torch.load(tmp_path / "one" / STATE_FILE, weights_only=False)
    two = torch.load(tmp_path / "two" / STATE_FILE, weights_only=False)
    assert one["step"] == two["step"] == steps
    initial = prepared[1].transformer.state_dict()
    moved = 0
    # Float tolerance: the gradient mean is summed in another order (gloo all-reduce); Adam divides each element's
    # step by its own gradient scale, so rounding in near-zero gradients shows up as a small fraction of lr.
    atol = base.lr / 30
    for name, tensor in one["transformer"].items():
        torch.testing.assert_close(two["transformer"][name], tensor, atol=atol, rtol=1e-4, msg=name)
        moved += float((tensor - initial[name]).abs().max()) > 10 * atol
    assert moved > 0.9 * len(initial)  # the steps moved (nearly) every tensor well past the tolerance
    np.testing.assert_allclose([r["loss"] for r in two["losses"]], [r["loss"] for r in one["losses"]], rtol=1e-5)


def test_the_sim_small_preset_has_the_token_budget_its_comment_gives_and_sees_the_instruction():
    from dreamzero_ros.model.config import preset_config

    config = preset_config("sim_small")
    # 352x640 / 8 (pixel_downsample) / 4 (pixel-unshuffle blocks) = 11x20 latents of 3 x 4 x 4 = 48 channels;
    # patch (1, 1, 4) -> 11 x 5 tokens
    assert config.latent_encoder == "pixel_unshuffle" and config.latent_channels == 48
    assert config.latent_size == (11, 20) and config.tokens_per_latent_frame == 55
    assert config.tokens_per_chunk == 2 * 55 + 24 + 1
    prompt = EMB.format_prompt("push the green cube onto the yellow pad")
    end = prompt.index("push the green cube onto the yellow pad") + len("push the green cube onto the yellow pad")
    assert end < config.text_len  # the byte tokenizer's window (+ eos) holds the whole instruction


def test_the_learning_rate_warms_up_then_follows_a_cosine_to_its_floor():
    config = TrainConfig(dataset="d", out="o", lr=1e-3, warmup=10, decay_steps=110, min_lr_ratio=0.1)
    # by hand: warm-up (step + 1) / 10 x lr; then 1e-4 + 9e-4 x (1 + cos(pi x (step - 10) / 100)) / 2
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 10) == pytest.approx(1e-3)
    assert learning_rate(config, 60) == pytest.approx(5.5e-4)
    assert learning_rate(config, 35) == pytest.approx(1e-4 + 9e-4 * (1 + np.cos(np.pi / 4)) / 2)
    assert learning_rate(config, 110) == pytest.approx(1e-4) and learning_rate(config, 500) == pytest.approx(1e-4)
    assert learning_rate(replace(config, decay_steps=0), 500) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="decay_steps: expected 0 .no decay. or more than warmup=10, got 5"):
        replace(config, decay_steps=5).validate()


def test_init_starts_from_a_trained_checkpoints_dit_and_refuses_one_of_another_size(base, prepared, tmp_path):
    trained = train(replace(base, out=str(tmp_path / "first"), steps=2, save_every=2))
    _, model, _ = prepared
    fresh = build_model(base, DatasetMeta.read(base.dataset), torch.device("cpu")).transformer
    init_from_checkpoint(fresh, trained.checkpoint)
    saved = torch.load(tmp_path / "first" / STATE_FILE, weights_only=False)["transformer"]
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    other = build_model(replace(base, overrides={"patch_size": (1, 1, 1)}), DatasetMeta.read(base.dataset),
                        torch.device("cpu")).transformer  # fmt: skip
    # tiny: dim 32, in channels 2 x 4 latent + 4 mask = 12; patch (1, 11, 10) there, (1, 1, 1) here
    with pytest.raises(ValueError, match=r"patch_embedding.weight: \[32, 12, 1, 11, 10\] vs \[32, 12, 1, 1, 1\]"):
        init_from_checkpoint(other, trained.checkpoint)
    with pytest.raises(ValueError, match="--init .*nowhere: cannot load the checkpoint"):
        init_from_checkpoint(other, tmp_path / "nowhere")
    post = train(replace(base, out=str(tmp_path / "post"), steps=1, save_every=1, init=str(trained.checkpoint)))
    assert post.losses[0]["loss"] < trained.losses[0]["loss"]  # it starts where the first run left off
    # another --seed draws other frozen encoders: the DiT would train on text and images it never saw
    seeded = build_model(replace(base, seed=1), DatasetMeta.read(base.dataset), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"--init .*: its text_encoder differs from this run's .*--seed"):
        init_from_checkpoint(seeded.transformer, trained.checkpoint,
                             frozen={"text_encoder": seeded.text_encoder, "image_encoder": seeded.image_encoder})
    same = build_model(base, DatasetMeta.read(base.dataset), torch.device("cpu"))
    init_from_checkpoint(same.transformer, trained.checkpoint, frozen={
        "text_encoder": same.text_encoder, "image_encoder": same.image_encoder, "vae": same.vae})


def test_overrides_are_json_values_by_field_and_a_malformed_one_is_named():
    assert parse_overrides(["num_layers=6", "patch_size=[1, 1, 4]", "negative_prompt=\"blur\""]) == {
        "num_layers": 6, "patch_size": (1, 1, 4), "negative_prompt": "blur"}
    with pytest.raises(ValueError, match="--override 'num_layers': expected FIELD=JSON"):
        parse_overrides(["num_layers"])
    with pytest.raises(ValueError, match="--override 'dim=wide': the value is not JSON"):
        parse_overrides(["dim=wide"])


def test_siblings_are_the_instructions_that_differ_in_exactly_one_word():
    tasks = {0: "touch the blue cube", 1: "touch the red cube", 2: "pick up the red cube", 3: "pick up the green cube",
             4: "touch the cube", 5: "lift the red block"}
    assert sibling_tasks(tasks) == {0: 1, 1: 0, 2: 3, 3: 2}
    assert sibling_tasks({0: "a red", 1: "a green", 2: "a blue"}) == {0: 1, 1: 2, 2: 0}  # the next one, cyclically
    assert sibling_tasks({0: "touch the red cube"}) == {}


def test_another_tasks_instruction_names_the_same_object_with_other_words():
    tasks = {0: "touch the red cube", 1: "touch the green cube", 2: "push the red cube forward",
             3: "push the green cube forward", 4: "lift the blue cube", 5: "push the blue cube forward"}
    # 4 has no sibling (no other "lift"), so no object to name: left out; 5's object is "blue" (its sibling is 2)
    assert other_task_instructions(tasks) == {0: 2, 1: 3, 2: 0, 3: 1, 5: 4}
    # the same verb naming another object is a sibling, not another task
    assert other_task_instructions({0: "touch the red cube", 1: "touch the green cube"}) == {}


def test_each_episode_start_borrows_the_next_different_scene_so_the_colours_of_one_seed_never_swap_among_themselves():
    a, b, c = torch.zeros(2, 1, 3, 4), torch.ones(2, 1, 3, 4), torch.full((2, 1, 3, 4), 2.0)
    # each episode's video is compressed on its own, so one scene comes back a little different each time
    a2, a3 = a + 0.005, a - 0.01
    # an every-colour dataset: one seed's three episodes share a scene
    assert scene_partners([a, a2, a3, b, b, b, c]) == [3, 3, 3, 6, 6, 6, 0]
    assert scene_partners([a, b]) == [1, 0]
    assert scene_partners([a, a2]) == [None, None]
    assert scene_partners([a]) == [None]
    # a difference over the tolerance is another scene
    assert scene_partners([a, a + 0.05]) == [1, 0]


def test_the_conditioning_probe_sees_no_difference_where_an_input_cannot_reach_the_dit(base, prepared):
    meta, model, data = prepared
    cpu = torch.device("cpu")
    probe = conditioning_probe(FlowMatchingLoss(model.transformer, base.objective(), model.config), data,
                               base.objective(), cpu)  # fmt: skip
    assert probe is not None and probe.samples == 2  # one episode start per episode, both with a sibling
    # the tiny preset's 16-byte text window ends before the colour word (byte 38 of the DROID template): deaf to it
    assert probe.own == probe.sibling and probe.negative != probe.own
    # random weights see the first frame through self-attention: the other episode's scene changes the loss
    assert probe.other_scene is not None and probe.other_scene != probe.own
    # every start showing one scene: no other scene to swap in
    same = [replace(s, first=data.samples[0].first, y=data.samples[0].y, image=data.samples[0].image)
            for s in data.samples]
    view = SimpleNamespace(meta=meta, samples=same, texts=data.texts, negative_text=data.negative_text)
    twins = conditioning_probe(FlowMatchingLoss(model.transformer, base.objective(), model.config), view,
                               base.objective(), cpu)  # fmt: skip
    assert twins.other_scene is None and "another" not in twins.summary()

    # a 96-byte window (sim_small's) reaches the colour: through the cross-attention a sibling changes the loss
    wide = build_model(replace(base, overrides={"patch_size": PATCH, "text_len": 96}), meta, cpu)

    def encode(text: str) -> torch.Tensor:
        return wide.text_encoder.encode(text).float().cpu()[0]

    # each task gets another task naming its cube: "touch the red cube" -> "push the red cube forward"
    tasks = {**meta.tasks, **{100 + i: "push " + t.split(" ", 1)[1] + " forward" for i, t in meta.tasks.items()}}
    view = SimpleNamespace(meta=SimpleNamespace(tasks=tasks), samples=data.samples,
                           negative_text=encode(wide.config.negative_prompt),
                           texts={i: encode(EMB.format_prompt(t)) for i, t in tasks.items()})
    objective = FlowMatchingLoss(wide.transformer, base.objective(), wide.config)
    heard = conditioning_probe(objective, view, base.objective(), cpu)
    assert heard.own != heard.sibling and heard.own != heard.negative
    assert heard.other_task is not None and heard.other_task not in (heard.own, heard.sibling)
    assert "probe_other_task" in heard.as_row() and "another task's instruction" in heard.summary()
    assert objective.training  # the probe leaves the module as it found it
    # a DiT whose text projection outputs zeros for any text: the three text variants agree to the bit
    with torch.no_grad():
        wide.transformer.condition_embedder.text_embedder.linear_2.weight.zero_()
        wide.transformer.condition_embedder.text_embedder.linear_2.bias.zero_()
    deaf = conditioning_probe(objective, view, base.objective(), cpu)
    assert deaf.own == deaf.sibling == deaf.other_task == deaf.negative and deaf.ratio(deaf.sibling) == 1.0
    assert "x1.000 with a sibling instruction" in deaf.summary()
