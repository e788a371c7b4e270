"""Can a DiT find a cube, and the cube its instruction names? Minutes of training instead of hours of closed loop.

On an every-colour dataset (`dreamzero generate --every-colour`: per seed, one episode naming each cube in turn,
same scene and start), each episode start keeps its real first frame, state and instruction, but its action
target becomes a table position, the same for all rows of the chunk: the cube of one fixed colour
(`--target red`: seeing), or the cube the instruction names (`--target named`: seeing and binding the word). The
DiT trains on the objective `dreamzero train` uses; every `--eval-every` steps it is judged on held-out seeds by
the R^2 of its one-step prediction at t = 1 (noise in, noise - velocity out: the conditional mean), with each
start's own scene and with another seed's, and by how often the target cube is the one nearest to the prediction.
R^2 1 = exact, 0 = the mean position; answering the centroid of the three cubes scores ~1/3 on `named`. docs/learning_loop_design.md ("Fourth look") has the figures.

    .venv/bin/python scripts/grounding_check.py --dataset DS --target named --steps 1500 \
        --init checkpoints/franka_droid_sim_small [--override num_layers=8] [--save STATE.pt] [--json OUT.json]

Cube positions come from the task's seeded draw (`sim.tasks.sample_episode`) of the seed and colour each episode
has in meta/episodes.jsonl (`dreamzero generate` writes them). A checkpoint given to --init must have been trained
with this run's --seed (its frozen encoders are this seed's draw), as `dreamzero train --init` requires.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dreamzero_ros.sim.tasks import COLOURS, WORKSPACE_X, WORKSPACE_Y, cube_name, sample_episode
from dreamzero_ros.training.data import DatasetMeta, TrainingSet, fingerprint
from dreamzero_ros.training.objective import FlowMatchingLoss, ObjectiveConfig, make_batch
from dreamzero_ros.training.trainer import (
    TrainConfig,
    build_model,
    frozen_encoders,
    init_from_checkpoint,
    parse_overrides,
)

# targets are table positions scaled to [-1, 1] over the workspace where the cubes are drawn
WORKSPACE_CENTRE = tuple((lo + hi) / 2 for lo, hi in (WORKSPACE_X, WORKSPACE_Y))
WORKSPACE_HALF = tuple((hi - lo) / 2 for lo, hi in (WORKSPACE_X, WORKSPACE_Y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="an every-colour dataset from dreamzero generate")
    parser.add_argument("--target", default="named", choices=[*COLOURS, "named"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--held-seeds", type=int, default=30, help="the last N seeds are held out")
    parser.add_argument("--init", default=None, help="a checkpoint's DiT (or --save's file) to start from")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=JSON")
    parser.add_argument("--cache", default=None, help="prepared episode starts (default: <dataset>_grounding.pt beside the dataset)")
    parser.add_argument("--save", default=None, help="write the DiT's state_dict here at the end")
    parser.add_argument("--json", default=None, help="write the R^2 curve here")
    args = parser.parse_args()

    config = TrainConfig(dataset=args.dataset, out="unused", overrides=parse_overrides(args.override),
                         text_dropout=0.0)  # fmt: skip
    meta = DatasetMeta.read(args.dataset)
    model = build_model(config, meta, torch.device("cpu"))
    if args.init and args.init.endswith(".pt"):
        model.transformer.load_state_dict(torch.load(args.init))
    elif args.init:
        init_from_checkpoint(model.transformer, Path(args.init), frozen=frozen_encoders(model))
    cache = Path(args.cache or Path(args.dataset).resolve().parent / f"{Path(args.dataset).name}_grounding.pt")
    key = fingerprint(meta.root, config.preset, config.seed, 1, model.config.to_dict(), None, 0)
    data = TrainingSet(meta, model, chunks=1, max_start=0, cache=cache, cache_key=key)

    colours = list(COLOURS)
    horizon, action_dim = data.samples[0].actions.shape[1:]
    seeds, cubes = {}, {}  # id(sample) -> its seed, and every cube's scaled position [3, 2]
    origins = {int(e["episode_index"]): e for e in meta.episodes}
    for sample in data.samples:
        origin = origins.get(sample.episode, {})
        if not {"sim_task", "seed", "colour"} <= origin.keys():
            raise SystemExit(f"episode {sample.episode}: meta/episodes.jsonl names no sim_task, seed and colour (regenerate the "
                             "dataset with dreamzero generate --every-colour)")
        seed, colour = int(origin["seed"]), str(origin["colour"])
        episode = sample_episode(meta.embodiment, str(origin["sim_task"]), seed, colour)
        scaled = {c: [(episode.objects[cube_name(c)][i] - WORKSPACE_CENTRE[i]) / WORKSPACE_HALF[i] for i in (0, 1)]
                  for c in colours}  # fmt: skip
        target = torch.zeros(1, horizon, action_dim)
        target[0, :, :2] = torch.tensor(scaled[colour if args.target == "named" else args.target])
        sample.actions = target
        seeds[id(sample)] = seed
        cubes[id(sample)] = torch.tensor([scaled[c] for c in colours])
    last = max(seeds.values())
    train = [s for s in data.samples if seeds[id(s)] <= last - args.held_seeds]
    held = [s for s in data.samples if seeds[id(s)] > last - args.held_seeds]
    print(f"target {args.target}: {len(train)} training / {len(held)} held-out episode starts", flush=True)

    objective_config = ObjectiveConfig(action_weight=10.0, text_dropout=0.0)
    objective = FlowMatchingLoss(model.transformer, objective_config, model.config)
    optimizer = torch.optim.AdamW(model.transformer.parameters(), lr=args.lr, weight_decay=0.0)
    mc = model.config

    def batch_of(samples: list, step: int):
        return make_batch(data, samples, list(range(len(samples))), k=1, seed=1, step=step, config=objective_config,
                          max_action_dim=mc.max_action_dim, max_state_dim=mc.max_state_dim)  # fmt: skip

    @torch.no_grad()
    def r2() -> tuple[float, float, float]:
        """Held-out R^2 of the t = 1 prediction of the position, with the own scenes and with others'; and how often
        the target cube is the one nearest to the prediction (chance: 1/3)."""
        objective.eval()
        noise = torch.Generator().manual_seed(7)
        z = mc.latent_channels
        truth, own, other = [], [], []
        for n in range(0, len(held), 16):
            group = held[n : n + 16]
            shifted = group[len(group) // 2 :] + group[: len(group) // 2]  # other seeds: three starts per seed
            for scenes, out in ((group, own), (shifted, other)):
                batch = batch_of(group, 0)
                scene = batch if scenes is group else batch_of(scenes, 0)
                chunk = batch.chunks[0]
                batch.first = scene.first
                chunk["video"][:, z + 4 :] = scene.chunks[0]["video"][:, z + 4 :]  # y: the first frame's latents
                chunk["video"][:, :z] = torch.randn(chunk["video"][:, :z].shape, generator=noise)
                chunk["actions"] = torch.randn(chunk["actions"].shape, generator=noise)
                chunk["video_timestep"].fill_(1000.0)
                chunk["action_timestep"].fill_(1000.0)
                context = model.transformer.embed_context(batch.text, batch.image)
                velocity = model.transformer.forward_full(batch.first, batch.chunks, context,
                                                          embodiment_id=objective.embodiment_id)[-1].actions  # fmt: skip
                out.append((chunk["actions"] - velocity.float())[..., :2].mean(1))
            truth.append(torch.stack([s.actions[0, 0, :2] for s in group]))
        objective.train()
        t, predicted = torch.cat(truth), torch.cat(own)
        total = float(((t - t.mean(0)) ** 2).sum())
        scenes = torch.stack([cubes[id(s)] for s in held])  # [N, 3, 2]
        nearest = (scenes - predicted[:, None]).norm(dim=-1).argmin(1)
        target = (scenes - t[:, None]).norm(dim=-1).argmin(1)  # the target is one of the cubes
        return (*(1.0 - float(((torch.cat(p) - t) ** 2).sum()) / total for p in (own, other)),
                float((nearest == target).float().mean()))

    rng = np.random.default_rng(0)
    own, _, chosen = r2()
    curve = [{"step": 0, "r2_own_scene": own, "nearest_is_target": chosen}]
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        picked = rng.choice(len(train), args.batch, replace=False)
        loss, _, action = objective(batch_of([train[i] for i in picked], step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.transformer.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            own, other, chosen = r2()
            curve.append({"step": step, "action_loss": float(action), "r2_own_scene": own, "r2_other_scene": other,
                          "nearest_is_target": chosen})  # fmt: skip
            print(f"step {step} ({time.perf_counter() - t0:.0f} s): action loss {float(action):.4f}; held-out R^2 "
                  f"{own:.3f} with the own scene, {other:.3f} with another seed's; the target cube is the nearest to "
                  f"{100 * chosen:.0f} % of the predictions (chance 33 %)", flush=True)
    if args.save:
        torch.save(model.transformer.state_dict(), args.save)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "curve": curve}, indent=2) + "\n")


if __name__ == "__main__":
    main()
