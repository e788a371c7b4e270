"""What a closed-loop evaluation is judged by: per-episode results, their summary and the printed table.

Pure (no ROS, no simulator): `dreamzero eval` (apps/evaluate.py) fills `EpisodeResult`s from what it watched on
the graph and this module turns them into the numbers it reports: success k/N with the 95% Wilson score interval,
time to success p50/p95 over the successful episodes, executor holds and rejected/dropped chunks, and the chunk
latency (observation stamp -> chunk ready, as the inference node measures it) p50/p95 over every chunk of the
episodes, the tool's closest approach to the named cube and to the others (`closest_approach`), and for push the
named cube's distance to the pad at the start and the end (`cube_to_pad`: a push that fails may still have gone
the pad's way), and for every task how far the named cube moved on the table (`named_cube_track`: push_forward's
progress; a reach should leave it where it was; a failed reach or lift that moved it `KNOCKED` or more counts as
knocked: the hand hit the cube instead of touching or grasping it). `wilson_interval` is also the interval
`benchmarks/bench_expert.py` quotes. With --predicted-video: PSNR of the model's predicted frames vs the real frames
of the times they stand for, beside the baseline of repeating the chunk's last real frame (`psnr`,
`pair_predictions`, `summarize_psnr`).

Seeds: evaluation episodes start at `EVAL_FIRST_SEED`; `dreamzero generate` starts at 0, so the two are disjoint
as long as no dataset holds a million episodes per task (`check_eval_seeds` refuses the overlap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: first episode seed of an evaluation; generation (`dreamzero generate --seed`, default 0) stays below it
EVAL_FIRST_SEED = 1_000_000
#: z of a two-sided 95% normal interval
Z95 = 1.959963984540054
#: m the named cube must end nearer the pad than it started for a push episode to count as pushed closer
PUSHED_CLOSER = 0.05
#: m the named cube must have slid on the table for a failed episode to count as knocked (tasks that do not move it)
KNOCKED = 0.02
#: tasks whose goal is to slide the named cube: a moved cube is progress there, not a knock
SLIDING_TASKS = ("push", "push_forward")


def closest_approach(best: tuple[float, float], state: dict[str, Any], until: float) -> tuple[float, float]:
    """`best` (the tool's closest approach to the named object, to the nearest other; m) with one /sim/task state.

    A state stamped after `until` (the episode's time limit, where success stops counting) or without the tool's
    position leaves it as it was: a tool that comes close only after the limit did not come close in time.
    """
    if "tcp" not in state or float(state["stamp"]) > until:
        return best
    tcp, objects = np.asarray(state["tcp"], dtype=float), state["objects"]
    target = float(np.linalg.norm(tcp - np.asarray(objects[state["target"]], dtype=float)))
    other = min((float(np.linalg.norm(tcp - np.asarray(p, dtype=float))) for name, p in objects.items()
                 if name != state["target"]), default=math.inf)  # fmt: skip
    return min(best[0], target), min(best[1], other)


def cube_to_pad(state: dict[str, Any]) -> float | None:
    """A push episode's progress in one /sim/task state: the named cube's distance to the pad's centre on the
    table (m, horizontal, as the push predicate measures it); None for the other tasks or without positions."""
    if state.get("task") != "push" or "pad" not in state or "objects" not in state:
        return None
    cube, pad = state["objects"][state["target"]], state["pad"]
    return float(math.hypot(cube[0] - pad[0], cube[1] - pad[1]))


def push_progress(progress: tuple[float | None, float | None], state: dict[str, Any],
                  until: float) -> tuple[float | None, float | None]:
    """`progress` (the named cube's distance to the pad at the episode's first and latest state; m, None before
    any) with one /sim/task state; as `closest_approach`, a state after `until` or without positions leaves it."""
    distance = cube_to_pad(state)
    if distance is None or float(state["stamp"]) > until:
        return progress
    return (distance if progress[0] is None else progress[0]), distance


def named_cube_track(track: tuple[tuple[float, float] | None, tuple[float, float] | None], state: dict[str, Any],
                     until: float) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """`track` (the named cube's table position (x, y) at the episode's first and latest state; None before any)
    with one /sim/task state; as `closest_approach`, a state after `until` or without positions leaves it."""
    if "objects" not in state or float(state["stamp"]) > until:
        return track
    x, y = state["objects"][state["target"]][:2]
    here = (float(x), float(y))
    return (here if track[0] is None else track[0]), here


def track_length(track: tuple[tuple[float, float] | None, tuple[float, float] | None]) -> float | None:
    """m from the first position of a `named_cube_track` to its latest (None without positions)."""
    first, last = track
    return None if first is None or last is None else float(math.hypot(last[0] - first[0], last[1] - first[1]))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (lo, hi) of a binomial proportion successes / n; (nan, nan) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n, which is where a
    policy's success rate (and a hold-still baseline's) usually sits.
    """
    if not (isinstance(successes, (int, np.integer)) and isinstance(n, (int, np.integer))):
        raise TypeError(f"wilson_interval: expected integer counts, got {successes!r} of {n!r}")
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval: expected 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def check_eval_seeds(first_seed: int, episodes: int, *, allow_overlap: bool = False) -> None:
    """Refuse evaluation seeds that a generated dataset may have trained on (below EVAL_FIRST_SEED).

    Raises ValueError naming the range, unless `allow_overlap` (then the caller warns).
    """
    if not isinstance(first_seed, int) or first_seed < 0:
        raise ValueError(f"first seed: expected a non-negative integer, got {first_seed!r}")
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected a positive integer, got {episodes!r}")
    if first_seed < EVAL_FIRST_SEED and not allow_overlap:
        raise ValueError(
            f"first seed {first_seed}: evaluation seeds start at {EVAL_FIRST_SEED:,} so they are disjoint from the "
            f"seeds `dreamzero generate` trains on (0 and up); seeds {first_seed}..{first_seed + episodes - 1} may be "
            "training episodes (pass --allow-seed-overlap to evaluate on them anyway)")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation) or None when there are no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


@dataclass
class EpisodeResult:
    """One evaluated episode as the harness saw it.

    time_to_success: s from arming (the policy's first chunk of the episode was in) to the first /sim/task
        message whose predicate held; None when it never held within the episode's max duration.
    holds, chunks_rejected, chunks_dropped: executor counters gained during the episode (PolicyStatus).
    chunk_latencies: s, ActionChunk.inference_latency of the episode's chunks, from the first (which the harness
        waits for before arming) to the end; empty for hold-still, which executes none.
    psnr_predicted, psnr_baseline: with --predicted-video, per pair of `pair_predictions` inside the episode's
        closed loop: PSNR of the predicted frame vs the real frame of its time, and of the chunk's conditioning
        frame vs that same real frame (the repeat-the-last-frame baseline).
    """

    task: str
    seed: int
    instruction: str
    success: bool
    time_to_success: float | None
    duration: float  # s the episode ran (to success, or its max duration)
    holds: int = 0
    chunks_rejected: int = 0
    chunks_dropped: int = 0
    chunk_latencies: list[float] = field(default_factory=list)
    video: str | None = None
    psnr_predicted: list[float] = field(default_factory=list)  # dB, per predicted frame (--predicted-video)
    psnr_baseline: list[float] = field(default_factory=list)  # dB, its chunk's last real frame vs the same real frame
    closest_target: float | None = None  # m, the tool's closest approach to the named object within the time limit
    closest_other: float | None = None  # m, ... to the nearest of the other objects
    to_pad_start: float | None = None  # m, push: the named cube's distance to the pad when the episode started
    to_pad_end: float | None = None  # m, ... at its end (success, or the time limit)
    cube_moved: float | None = None  # m the named cube moved on the table from the start to the end

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["chunks"] = len(self.chunk_latencies)
        return out

    def line(self) -> str:
        """The episode in one line, as `dreamzero eval` and the demo print it when it ends."""
        outcome = f"success in {self.time_to_success:.2f} s" if self.success and self.time_to_success is not None \
            else "failure"
        near = "-" if self.closest_target is None else f"{100 * self.closest_target:.1f}"
        other = "-" if self.closest_other is None else f"{100 * self.closest_other:.1f}"
        pad = "" if self.to_pad_start is None or self.to_pad_end is None else \
            f"cube to pad {100 * self.to_pad_start:.1f} -> {100 * self.to_pad_end:.1f} cm, "
        moved = "" if self.cube_moved is None else f"cube moved {100 * self.cube_moved:.1f} cm, "
        return (f"seed {self.seed} '{self.instruction}': {outcome} (closest {near} cm named / {other} cm other, "
                f"{pad}{moved}holds {self.holds}, chunks {len(self.chunk_latencies)})")


def summarize_task(policy: str, task: str, episodes: Sequence[EpisodeResult],
                   predicted_video: bool = False) -> dict[str, Any]:
    """The summary of one policy on one task (JSON-serialisable; None where a figure has no data); with
    `predicted_video` also the PSNR figures of `summarize_psnr` over every pair of every episode."""
    if any(e.task != task for e in episodes):
        raise ValueError(f"summarize_task({task!r}): episodes of tasks {sorted({e.task for e in episodes})}")
    n = len(episodes)
    k = sum(1 for e in episodes if e.success)
    lo, hi = wilson_interval(k, n)
    tts = [e.time_to_success for e in episodes if e.success and e.time_to_success is not None]
    latencies = [x for e in episodes for x in e.chunk_latencies]
    return {
        "policy": policy, "task": task, "episodes": n, "successes": k,
        "success_rate": k / n if n else None,
        "ci95": [None if math.isnan(lo) else lo, None if math.isnan(hi) else hi],
        "time_to_success_p50_s": percentile(tts, 50), "time_to_success_p95_s": percentile(tts, 95),
        "holds": sum(e.holds for e in episodes), "chunks_rejected": sum(e.chunks_rejected for e in episodes),
        "chunks_dropped": sum(e.chunks_dropped for e in episodes),
        "chunks": len(latencies),
        "chunk_latency_p50_s": percentile(latencies, 50), "chunk_latency_p95_s": percentile(latencies, 95),
        "closest_target_p50_m": percentile([e.closest_target for e in episodes if e.closest_target is not None], 50),
        "closest_other_p50_m": percentile([e.closest_other for e in episodes if e.closest_other is not None], 50),
        # episodes whose tool came nearer to another object than to the named one: the instruction not followed
        "nearer_other": sum(1 for e in episodes if e.closest_target is not None and e.closest_other is not None
                            and e.closest_other < e.closest_target),
        "to_pad_start_p50_m": percentile([e.to_pad_start for e in episodes if e.to_pad_start is not None], 50),
        "to_pad_end_p50_m": percentile([e.to_pad_end for e in episodes if e.to_pad_end is not None], 50),
        # push episodes that brought the named cube at least PUSHED_CLOSER nearer the pad: pushes that went its way
        "pushed_closer": sum(1 for e in episodes if e.to_pad_start is not None and e.to_pad_end is not None
                             and e.to_pad_start - e.to_pad_end >= PUSHED_CLOSER),
        "cube_moved_p50_m": percentile([e.cube_moved for e in episodes if e.cube_moved is not None], 50),
        # failed episodes that slid the named cube where the task should not: the hand arrived off and hit it
        "knocked": None if task in SLIDING_TASKS else sum(
            1 for e in episodes if not e.success and e.cube_moved is not None and e.cube_moved >= KNOCKED),
        "seeds": [e.seed for e in episodes],
        "failed_seeds": [e.seed for e in episodes if not e.success],
    } | (summarize_psnr([x for e in episodes for x in e.psnr_predicted],
                        [x for e in episodes for x in e.psnr_baseline]) if predicted_video else {})


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


TABLE_HEADER = ("policy", "task", "success", "95% CI", "tts p50/p95 s", "closest p50 cm named/other", "nearer other",
                "holds", "rejected", "latency p50/p95 ms", "cube to pad p50 cm start/end", "pushed closer",
                "cube moved p50 cm", "knocked")


def table_rows(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row of TABLE_HEADER's columns per summary (summarize_task's dicts)."""
    rows = []
    for s in summaries:
        lo, hi = s["ci95"]
        ci = "-" if lo is None else f"{100 * lo:.0f}-{100 * hi:.0f}%"
        rows.append((
            s["policy"], s["task"], f"{s['successes']}/{s['episodes']}", ci,
            f"{_fmt(s['time_to_success_p50_s'])}/{_fmt(s['time_to_success_p95_s'])}",
            f"{_fmt(s.get('closest_target_p50_m'), 100, 1)}/{_fmt(s.get('closest_other_p50_m'), 100, 1)}",
            str(s.get("nearer_other", 0)),
            str(s["holds"]), str(s["chunks_rejected"]),
            f"{_fmt(s['chunk_latency_p50_s'], 1000, 0)}/{_fmt(s['chunk_latency_p95_s'], 1000, 0)}",
            f"{_fmt(s.get('to_pad_start_p50_m'), 100, 1)}/{_fmt(s.get('to_pad_end_p50_m'), 100, 1)}",
            "-" if s.get("to_pad_start_p50_m") is None else str(s.get("pushed_closer", 0)),
            _fmt(s.get("cube_moved_p50_m"), 100, 1),
            "-" if s.get("knocked") is None else str(s["knocked"]),
        ))
    return rows


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The evaluation table as aligned plain text (also valid as the body of a Markdown table: '|'-separated)."""
    return aligned_table(TABLE_HEADER, table_rows(summaries))


def aligned_table(header: tuple[str, ...], body: Sequence[tuple[str, ...]]) -> str:
    """`header` and `body` as aligned '|'-separated plain text (also the body of a Markdown table)."""
    rows = [header, *body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Predicted video vs the real future (--predicted-video)
# --------------------------------------------------------------------------------------------

#: PSNR of identical frames (their MSE is 0): a finite cap, so means over pairs stay finite
PSNR_MAX_DB = 100.0
#: ns: how far a stamp may be from the one it should equal (the node computes predicted stamps in float seconds)
STAMP_TOLERANCE_NS = 1_000_000


def psnr(prediction: np.ndarray, target: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images of one shape: 10 log10(peak^2 / MSE), capped at
    PSNR_MAX_DB for identical images."""
    a, b = np.asarray(prediction), np.asarray(target)
    if a.shape != b.shape:
        raise ValueError(f"psnr: images of different shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("psnr: empty images")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_MAX_DB
    return min(PSNR_MAX_DB, 10.0 * math.log10(peak * peak / mse))


@dataclass(frozen=True, slots=True)
class PredictionPair:
    """One predicted frame with the real frames it is judged against (indices into the caller's sequences).

    predicted: the predicted frame; chunk: the chunk it came from; step: it stands for the chunk's observation
    stamp + step / fps (1-based, as the inference node stamps it); real: the real frame nearest that time;
    baseline: the real frame at the chunk's observation stamp (the last one the chunk was conditioned on).
    """

    predicted: int
    chunk: int
    step: int
    real: int
    baseline: int


def pair_predictions(chunks: Sequence[tuple[int, int]], predicted: Sequence[tuple[int, int]],
                     real_stamps: Sequence[int], fps: float, max_steps: int) -> list[PredictionPair]:
    """Pair each predicted frame with the real frame of the time it predicts and the chunk's conditioning frame.

    chunks: (receive ns, observation stamp ns) of each ActionChunk; predicted: (receive ns, stamp ns) of each
    predicted frame, stamped observation stamp + k / fps for k = 1..max_steps (nodes/inference_node.py);
    real_stamps: stamps (ns) of the real (stitched) frames. A predicted frame's chunk is, of those whose stamp
    it follows by a whole number 1..max_steps of frame periods, the one received nearest to it (a chunk's frames
    are published right after it). Its real frame is the one nearest its stamp within half a period; its
    baseline the one at the chunk's stamp. Frames lacking any of the three are left out.
    """
    if fps <= 0 or max_steps < 1:
        raise ValueError(f"pair_predictions: expected fps > 0 and max_steps >= 1, got {fps} and {max_steps}")
    period = 1e9 / fps
    order = np.argsort(np.asarray(real_stamps, dtype=np.int64), kind="stable")
    sorted_real = np.asarray(real_stamps, dtype=np.int64)[order]

    def nearest(stamp: int, tolerance: float) -> int | None:
        if not len(sorted_real):
            return None
        i = int(np.searchsorted(sorted_real, stamp))
        best = min((j for j in (i - 1, i) if 0 <= j < len(sorted_real)), key=lambda j: abs(sorted_real[j] - stamp))
        return int(order[best]) if abs(int(sorted_real[best]) - stamp) <= tolerance else None

    pairs = []
    for p, (received, stamp) in enumerate(predicted):
        candidates = []
        for c, (chunk_received, chunk_stamp) in enumerate(chunks):
            steps = (stamp - chunk_stamp) / period
            k = round(steps)
            if 1 <= k <= max_steps and abs(stamp - chunk_stamp - k * period) <= STAMP_TOLERANCE_NS:
                candidates.append((abs(received - chunk_received), c, k))
        if not candidates:
            continue
        _, c, k = min(candidates)
        real = nearest(stamp, period / 2)
        baseline = nearest(chunks[c][1], STAMP_TOLERANCE_NS)
        if real is not None and baseline is not None:
            pairs.append(PredictionPair(predicted=p, chunk=c, step=k, real=real, baseline=baseline))
    return pairs


def summarize_psnr(predicted_db: Sequence[float], baseline_db: Sequence[float]) -> dict[str, Any]:
    """Mean and median PSNR (dB) of predicted vs real frames and of the repeat-the-last-real-frame baseline."""
    return {
        "psnr_pairs": len(predicted_db),
        "psnr_predicted_mean_db": float(np.mean(predicted_db)) if len(predicted_db) else None,
        "psnr_predicted_median_db": percentile(predicted_db, 50),
        "psnr_baseline_mean_db": float(np.mean(baseline_db)) if len(baseline_db) else None,
        "psnr_baseline_median_db": percentile(baseline_db, 50),
    }


PSNR_HEADER = ("policy", "task", "pairs", "PSNR predicted mean/median dB", "PSNR last frame mean/median dB")


def format_psnr_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The predicted-video table (summaries with `psnr_pairs`, i.e. of a --predicted-video run), aligned as
    format_table's."""
    rows = [(s["policy"], s["task"], str(s["psnr_pairs"]),
             f"{_fmt(s['psnr_predicted_mean_db'], digits=1)}/{_fmt(s['psnr_predicted_median_db'], digits=1)}",
             f"{_fmt(s['psnr_baseline_mean_db'], digits=1)}/{_fmt(s['psnr_baseline_median_db'], digits=1)}")
            for s in summaries if "psnr_pairs" in s]
    return aligned_table(PSNR_HEADER, rows)
