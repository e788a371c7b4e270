"""Shared helpers for benchmarks/bench_*.py: timing, p50/p95/max summaries, tables, JSON with run metadata.

Generic on purpose (every benchmark imports it). Typical use from a script run as
`python benchmarks/bench_<thing>.py`:

    from _common import default_output, print_table, summarize, time_calls, write_json

    samples = time_calls(lambda: work(), repeat=args.repeat, warmup=args.warmup)  # s, warm-up excluded
    row = {"case": "3x480x640", **summarize([s * 1e3 for s in samples])}       # ms
    print_table([row], title="stitch (ms)")
    write_json(args.out or default_output("stitch"), {"results": [row]})       # adds "meta"
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def time_calls(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of `repeat` calls of fn(), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    data = sorted(float(x) for x in samples)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """{n, mean, min, p50, p95, max} of samples, in the samples' unit (NaN stats for no samples)."""
    data = [float(x) for x in samples]
    return {
        "n": len(data),
        "mean": sum(data) / len(data) if data else math.nan,
        "min": min(data) if data else math.nan,
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "max": max(data) if data else math.nan,
    }


def print_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    """Print rows as an aligned text table; columns default to the keys of the first row, in order."""
    if not rows:
        print(f"{title}: (no rows)" if title else "(no rows)")
        return
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    if title:
        print(title)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _git_sha() -> dict[str, Any]:
    """{"sha": str | None, "dirty": bool | None}; None where git or a first commit is missing."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0 or not sha.stdout.strip():
            return {"sha": None, "dirty": None}  # not a repository, or no commit yet
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata() -> dict[str, Any]:
    """Device, versions and git state for a result file; imports torch only if it is installed."""
    meta: dict[str, Any] = {
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": {
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
        },
        "python": sys.version.split()[0],
        "git": _git_sha(),
        "argv": sys.argv,
    }
    try:
        import numpy

        meta["numpy"] = numpy.__version__
    except ImportError:
        meta["numpy"] = None
    try:
        import torch

        meta["torch"] = torch.__version__
        meta["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            meta["device"]["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        meta["torch"] = None
    return meta


def default_output(name: str) -> Path:
    """benchmarks/results/<name>.json"""
    return RESULTS_DIR / f"{name}.json"


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write payload (plus "meta": run_metadata() unless given) as indented JSON; creates the folder."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = dict(payload)
    data.setdefault("meta", run_metadata())
    out.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return out


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and paths as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
