"""What a closed-loop evaluation is judged by: per-episode results, their summary and the printed table.

Pure (no ROS, no simulator): `dreamzero eval` (apps/evaluate.py) fills `EpisodeResult`s from what it watched on
the graph and this module turns them into the numbers it reports: success k/N with the 95% Wilson score interval,
time to success p50/p95 over the successful episodes, executor holds and rejected/dropped chunks, and the chunk
latency (observation stamp -> chunk ready, as the inference node measures it) p50/p95 over every chunk of the
episodes. `wilson_interval` is also the interval `benchmarks/bench_expert.py` quotes.

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

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["chunks"] = len(self.chunk_latencies)
        return out


def summarize_task(policy: str, task: str, episodes: Sequence[EpisodeResult]) -> dict[str, Any]:
    """The summary of one policy on one task (JSON-serialisable; None where a figure has no data)."""
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
        "seeds": [e.seed for e in episodes],
        "failed_seeds": [e.seed for e in episodes if not e.success],
    }


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


TABLE_HEADER = ("policy", "task", "success", "95% CI", "tts p50/p95 s", "holds", "rejected", "latency p50/p95 ms")


def table_rows(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row of TABLE_HEADER's columns per summary (summarize_task's dicts)."""
    rows = []
    for s in summaries:
        lo, hi = s["ci95"]
        ci = "-" if lo is None else f"{100 * lo:.0f}-{100 * hi:.0f}%"
        rows.append((
            s["policy"], s["task"], f"{s['successes']}/{s['episodes']}", ci,
            f"{_fmt(s['time_to_success_p50_s'])}/{_fmt(s['time_to_success_p95_s'])}",
            str(s["holds"]), str(s["chunks_rejected"]),
            f"{_fmt(s['chunk_latency_p50_s'], 1000, 0)}/{_fmt(s['chunk_latency_p95_s'], 1000, 0)}",
        ))
    return rows


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The evaluation table as aligned plain text (also valid as the body of a Markdown table: '|'-separated)."""
    rows = [TABLE_HEADER, *table_rows(summaries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
