"""Does a model read its instruction and its scene? The conditioning probe `dreamzero train` logs at each save.

This module owns one diagnostic. On samples that start an episode (the robot at rest: before any motion hints at
the target, only the instruction and the scene say where to go), the action loss of the first chunk (no context):

* with each sample's own instruction and scene;
* with a sibling instruction, one that differs from its own in exactly one word (the same task naming another
  object: "touch the red cube" vs "touch the green cube");
* with another task's instruction naming the same object ("push the red cube forward" for "touch the red cube"),
  where the dataset has one: the verb is all that changes what to do;
* with another scene (the first frame and CLIP tokens of the next episode start that shows a different one; the
  episodes of one seed in a `--every-colour` dataset share theirs) and the sample's own instruction and actions;
* with the negative prompt.

A model that follows instructions has a clearly higher loss with the sibling than with its own instruction, and
with another task's (if its tasks start differently); one that looks where the objects are, with another scene.
A ratio of 1.0 means the model ignores that input, however low its training loss. The draws (noise level and
noise) are fixed, so the losses differ only by what is swapped.

On the training set's starts a model can score by memorising them; `dreamzero train --validation` also runs the
probe on a held-out set's starts (other seeds), where only what it learnt to read counts. Its own loss there is the
open-loop error of the first chunk on unseen scenes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dreamzero_ros.training.objective import FlowMatchingLoss, ObjectiveConfig, make_batch


@dataclass(frozen=True)
class ConditioningProbe:
    """Action velocity MSE of the first chunk on `samples` episode starts, per input given (see the module).
    sibling: None when no instruction has a sibling; other_task: None when some start's instruction has no other
    task naming its object; other_scene: None when every episode start shows one scene."""

    own: float
    sibling: float | None
    other_scene: float | None
    negative: float
    samples: int
    other_task: float | None = None

    def ratio(self, value: float | None) -> float | None:
        """value / own: 1.0 = the swapped input is ignored; higher = the model reads it."""
        if value is None:
            return None
        return value / self.own if self.own > 0 else float("inf")

    def as_row(self, prefix: str = "probe_") -> dict[str, float]:
        """The losses as `losses.json` fields: <prefix>own, <prefix>negative, and sibling / other_task / other_scene
        if measured."""
        row = {f"{prefix}own": self.own, f"{prefix}negative": self.negative}
        if self.sibling is not None:
            row[f"{prefix}sibling"] = self.sibling
        if self.other_task is not None:
            row[f"{prefix}other_task"] = self.other_task
        if self.other_scene is not None:
            row[f"{prefix}other_scene"] = self.other_scene
        return row

    def summary(self, starts: str = "episode starts") -> str:
        """One line; `starts` says whose starts they were (e.g. "held-out episode starts")."""
        parts = [f"x{self.ratio(v):.3f} with {what}" for v, what in
                 ((self.sibling, "a sibling instruction"), (self.other_task, "another task's instruction"),
                  (self.other_scene, "another episode's scene"),
                  (self.negative, "the negative prompt")) if v is not None]  # fmt: skip
        return f"probe on {self.samples} {starts}: action MSE {self.own:.4f}; " + ", ".join(parts)


def _one_word_apart(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _next_task(order: list[int], i: int, accept: Callable[[int], bool]) -> int | None:
    """The first task after `i` in `order` (cyclically, `i` itself excluded) that `accept`s, or None."""
    n = order.index(i)
    return next((j for j in (order[(n + m) % len(order)] for m in range(1, len(order))) if accept(j)), None)


def sibling_tasks(tasks: dict[int, str]) -> dict[int, int]:
    """{task index: the next task (cyclically, in index order) whose text differs from it in exactly one word}.
    Tasks without such a sibling are left out."""
    words = {i: text.split() for i, text in tasks.items()}
    order = sorted(tasks)
    found = {i: _next_task(order, i, lambda j, i=i: _one_word_apart(words[i], words[j])) for i in order}
    return {i: j for i, j in found.items() if j is not None}


def other_task_instructions(tasks: dict[int, str]) -> dict[int, int]:
    """{task index: the next task (cyclically, in index order) that names the same object in other words}. A task's
    object is the word in which it differs from its `sibling_tasks` one ("red" in "touch the red cube"); "push the
    red cube forward" is then another task's instruction for it. Tasks without a sibling, or without such another
    task, are left out."""
    words = {i: text.split() for i, text in tasks.items()}
    order = sorted(tasks)
    out = {}
    for i, sibling in sibling_tasks(tasks).items():
        obj = next(a for a, b in zip(words[i], words[sibling], strict=True) if a != b)
        j = _next_task(order, i, lambda j, i=i, obj=obj: obj in words[j] and not _one_word_apart(words[i], words[j]))
        if j is not None:
            out[i] = j
    return out


#: mean |difference| of two first-frame latents (normalised) above which they show different scenes. Measured on
#: `--every-colour` data: one scene encoded in two episodes' videos differs by ~0.002 (compression), two seeds'
#: scenes by 0.11-0.15.
SAME_SCENE_TOLERANCE = 0.02


def scene_partners(firsts: list[torch.Tensor]) -> list[int | None]:
    """For each episode start (its first-frame latent), the index of the next one, cyclically, that shows another
    scene (`SAME_SCENE_TOLERANCE`): the scene it borrows. None where every start shows the same scene."""
    out: list[int | None] = []
    for n, first in enumerate(firsts):
        others = ((n + m) % len(firsts) for m in range(1, len(firsts)))
        out.append(next((j for j in others if float((firsts[j] - first).abs().mean()) > SAME_SCENE_TOLERANCE), None))
    return out


@torch.no_grad()
def conditioning_probe(objective: FlowMatchingLoss, data: Any, objective_config: ObjectiveConfig,
                       device: torch.device, count: int = 64, seed: int = 1234) -> ConditioningProbe | None:  # fmt: skip
    """The probe (module docstring) on the first `count` samples of `data` (a `TrainingSet`) that start at step 0;
    None when there are none. Text dropout is off for it. A sample's other scene is its `scene_partners` one."""
    samples = [s for s in data.samples if s.start == 0][:count]
    if not samples:
        return None
    siblings = sibling_tasks(data.meta.tasks)
    with_siblings = all(s.task in siblings for s in samples)
    other_tasks = other_task_instructions(data.meta.tasks)
    with_other_tasks = all(s.task in other_tasks for s in samples)
    partners = scene_partners([s.first for s in samples])
    with_scenes = all(p is not None for p in partners)
    others = []
    for sample, partner in zip(samples, partners, strict=True):
        other = samples[partner] if partner is not None else sample
        swapped = copy.copy(sample)
        swapped.first, swapped.y, swapped.image = other.first, other.y, other.image
        others.append(swapped)
    config = ObjectiveConfig(objective_config.action_weight, objective_config.decoupled_video_noise, 0.0)
    model_config = objective.model_config
    was_training = objective.training
    objective.eval()

    def loss(group: list[Any], first: int, text: torch.Tensor | None = None) -> float:
        batch = make_batch(data, group, list(range(first, first + len(group))), k=1, seed=seed, step=0,
                           config=config, max_action_dim=model_config.max_action_dim,
                           max_state_dim=model_config.max_state_dim).to(device)  # fmt: skip
        if text is not None:
            batch.text = text.to(device)
        return float(objective(batch)[2]) * len(group)

    totals = {"own": 0.0, "sibling": 0.0, "other_task": 0.0, "other_scene": 0.0, "negative": 0.0}
    try:
        for n in range(0, len(samples), 16):
            group = samples[n : n + 16]
            totals["own"] += loss(group, n)
            totals["negative"] += loss(group, n, torch.stack([data.negative_text] * len(group)))
            if with_scenes:
                totals["other_scene"] += loss(others[n : n + 16], n)
            if with_siblings:
                totals["sibling"] += loss(group, n, torch.stack([data.texts[siblings[s.task]] for s in group]))
            if with_other_tasks:
                totals["other_task"] += loss(group, n, torch.stack([data.texts[other_tasks[s.task]] for s in group]))
    finally:
        objective.train(was_training)
    count = len(samples)
    return ConditioningProbe(
        own=totals["own"] / count,
        sibling=totals["sibling"] / count if with_siblings else None,
        other_scene=totals["other_scene"] / count if with_scenes else None,
        negative=totals["negative"] / count,
        samples=count,
        other_task=totals["other_task"] / count if with_other_tasks else None,
    )
