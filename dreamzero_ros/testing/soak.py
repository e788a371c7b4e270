"""Soak runs: the whole closed loop in the simulator for minutes, measured window by window.

Shared by benchmarks/bench_soak.py (10 min) and test/ros/test_soak_process.py (the 60 s CI
version). `run_soak` starts the bringup plan (sim_robot, camera_stitcher, inference, action_executor;
no recorder) as processes, sets the instruction and arms through the operator's services, records
what an observer on the same machine sees, samples the RSS of every node process, then stops the
plan and checks that no pid is left. The statistics below it are pure functions of those records.

The observer is a RosProbe (its own rclpy Context, spun on its own thread) in the calling process.
While the loop runs the calling thread only sleeps and samples RSS every few seconds (~1 ms of
psutil work), so the probe's thread has the GIL to itself and receive times are not disturbed by
the measuring process; a separate observer process would cost the same CPU on the same 2 cores and
need IPC to hand its records back. Observer records are small tuples, not messages, so 10 minutes
of 30 Hz traffic stays a few MB.

Clocks: every time here is `time.monotonic()` in the observer (s) unless named `*_stamp`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT

ROS_NODES = ("sim_robot", "camera_stitcher", "inference", "action_executor")


@dataclass(frozen=True, slots=True)
class SoakOptions:
    """What one soak run does. Times in s."""

    embodiment: str = DEFAULT_EMBODIMENT
    backend: str = "scripted"
    duration: float = 600.0  # measured, after the warm-up
    warmup: float = 10.0  # from the first action chunk: lazy allocations, the arm settles
    window: float = 60.0  # statistics per window of this length
    rss_interval: float = 5.0  # between RSS samples
    instruction: str = "wave"
    startup_timeout: float = 90.0  # services up, first joint state, first chunk (imports on 2 cores)
    stop_timeout: float = 10.0  # per process: SIGINT grace before SIGTERM

    def __post_init__(self) -> None:
        for name in ("duration", "warmup", "window", "rss_interval", "startup_timeout", "stop_timeout"):
            value = getattr(self, name)
            if not value >= (0.0 if name == "warmup" else 1e-3):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class StatusSample:
    """One PolicyStatus as the observer saw it (the counters that matter for a soak)."""

    t: float
    node: str
    state: str
    holds: int
    control_rate: float
    chunks_produced: int
    chunks_dropped: int
    chunks_rejected: int
    stale_inputs: int


@dataclass
class SoakRecords:
    """What the observer received: receive times (s), chunk ids, send stamps where the message has one."""

    commands: list[float] = field(default_factory=list)
    command_stamps: list[float] = field(default_factory=list)  # header stamps (JointState/JointTrajectory)
    chunks: list[tuple[float, int]] = field(default_factory=list)
    joint_states: list[float] = field(default_factory=list)
    statuses: list[StatusSample] = field(default_factory=list)
    executor_published: list[tuple[float, int]] = field(default_factory=list)  # /diagnostics "published"


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """RSS (bytes, process + its children) and CPU time (s, user + system) of every node at t."""

    t: float
    rss: dict[str, int]
    cpu: dict[str, float]
    loadavg: tuple[float, float, float]


@dataclass
class SoakRun:
    """Everything one run produced; `t0`..`t1` is the measured span (after the warm-up)."""

    options: SoakOptions
    rate_hz: float
    interface: str
    records: SoakRecords
    samples: list[ProcessSample]
    pids: dict[str, int]
    t_first_chunk: float
    t0: float
    t1: float
    exit_codes: dict[str, int | None]
    pids_left: list[int]
    died: str = ""  # "<name> exited <code>" when a node died during the run
    logs: list[str] = field(default_factory=list)


class SoakError(RuntimeError):
    """The loop never got going (no service, no joint state, not armed, no chunk); carries the log tail."""


# -- the run ---------------------------------------------------------------------------------------


def run_soak(
    options: SoakOptions,
    *,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SoakRun:
    """Start the plan in the current ROS domain (`env` or os.environ), run it, stop it, return the records.

    The caller chooses the domain: set os.environ (ROS_DOMAIN_ID, discovery range, DDS profile)
    before calling, because the observer's rclpy Context reads the process environment.
    """
    import psutil
    from diagnostic_msgs.msg import DiagnosticArray
    from dreamzero_msgs.msg import ActionChunk, PolicyStatus
    from dreamzero_msgs.srv import SetInstruction
    from sensor_msgs.msg import JointState
    from std_srvs.srv import SetBool

    from dreamzero_ros.bringup.plan import BringupOptions, node_plan, start_plan
    from dreamzero_ros.core.embodiment import load_embodiment
    from dreamzero_ros.ros import qos
    from dreamzero_ros.ros.names import (
        ARM_SERVICE,
        CHUNK_TOPIC,
        DIAGNOSTICS_TOPIC,
        SET_INSTRUCTION_SERVICE,
        STATUS_TOPIC,
    )
    from dreamzero_ros.testing.probes import RosProbe, wait_until

    say = progress or (lambda _line: None)
    cfg = load_embodiment(options.embodiment)
    plan = node_plan(BringupOptions(embodiment=options.embodiment, backend=options.backend, sim=True))
    records = SoakRecords()
    logs: list[str] = []
    log_lock = threading.Lock()

    def sink(line: str) -> None:
        with log_lock:
            logs.append(line)
            if len(logs) > 20_000:
                del logs[:10_000]

    def tail(n: int = 60) -> str:
        with log_lock:
            return "\n".join(logs[-n:])

    probe = RosProbe("soak_observer")
    group = None
    samples: list[ProcessSample] = []
    pids: dict[str, int] = {}
    seen_pids: set[int] = set()
    died = ""
    try:
        node = probe.node
        stamped = cfg.command.interface in ("joint_state", "joint_trajectory")

        def on_command(msg: Any) -> None:
            now = time.monotonic()
            records.commands.append(now)
            if stamped:
                records.command_stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

        def on_status(msg: PolicyStatus) -> None:
            records.statuses.append(StatusSample(
                time.monotonic(), msg.node, msg.state, int(msg.holds), float(msg.control_rate),
                int(msg.chunks_produced), int(msg.chunks_dropped), int(msg.chunks_rejected), int(msg.stale_inputs)))

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for st in msg.status:
                if st.name == "dreamzero: action_executor":
                    values = {kv.key: kv.value for kv in st.values}
                    if "published" in values:
                        records.executor_published.append((time.monotonic(), int(values["published"])))

        node.create_subscription(command_type(cfg.command.interface), cfg.command.topic, on_command, qos.COMMANDS)
        node.create_subscription(ActionChunk, CHUNK_TOPIC,
                                 lambda m: records.chunks.append((time.monotonic(), int(m.chunk_id))), qos.COMMANDS)
        node.create_subscription(JointState, cfg.command.joint_states_topic,
                                 lambda _m: records.joint_states.append(time.monotonic()), qos.JOINT_STATES)
        node.create_subscription(PolicyStatus, STATUS_TOPIC, on_status, qos.STATUS)
        node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, on_diagnostics, qos.STATUS)

        group = start_plan(plan, env=env if env is not None else dict(os.environ), sink=sink, workdir=workdir)
        pids = {p.name: p.pid for p in group.processes}
        say(f"started {', '.join(f'{n}={pid}' for n, pid in pids.items())}")
        deadline = options.startup_timeout
        resp = probe.call(SetInstruction, SET_INSTRUCTION_SERVICE, SetInstruction.Request(instruction=options.instruction),
                          timeout=deadline)
        if not resp.success:
            raise SoakError(f"set_instruction refused: {resp.message}\n{tail()}")
        if not wait_until(lambda: len(records.joint_states) > 0, deadline):
            raise SoakError(f"no joint state on {cfg.command.joint_states_topic} after {deadline} s\n{tail()}")
        # The executor refuses to arm until it has a joint state of its own: retry like an operator.
        if not wait_until(lambda: probe.call(SetBool, ARM_SERVICE, SetBool.Request(data=True), timeout=deadline).success,
                          deadline, interval=0.2):
            raise SoakError(f"the executor never armed\n{tail()}")
        if not wait_until(lambda: len(records.chunks) > 0, deadline):
            raise SoakError(f"no action chunk after {deadline} s\n{tail()}")
        t_first_chunk = time.monotonic()
        say(f"armed; first chunk; warm-up {options.warmup:g} s then {options.duration:g} s measured")

        procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        t0 = t_first_chunk + options.warmup
        t1 = t0 + options.duration
        next_sample = t0  # the first sample is the "start" RSS: after the warm-up
        next_report = t0 + options.window
        while True:
            now = time.monotonic()
            dead = group.first_required_exit()
            if dead is not None:
                died = f"{dead.name} exited {dead.returncode}"
                say(f"{died}; stopping")
                break
            if now >= next_sample and now >= t0:
                samples.append(sample_processes(procs, seen_pids))
                next_sample += options.rss_interval
                if now >= t1:
                    break
            if now >= next_report:
                say(f"{now - t0:.0f}/{options.duration:g} s: {len(records.commands)} commands, "
                    f"{len(records.chunks)} chunks, load {os.getloadavg()[0]:.2f}")
                next_report += options.window
            if now >= t1:
                next_sample = now  # always end on a sample taken at t1
                continue
            time.sleep(max(0.0, min(next_sample, next_report, t1) - time.monotonic()))
        t1 = min(t1, time.monotonic())
    finally:
        exit_codes = group.stop_all(timeout=options.stop_timeout) if group is not None else {}
        probe.close()
    pids_left = [pid for pid in sorted(set(pids.values()) | seen_pids) if _alive(pid)]
    return SoakRun(options=options, rate_hz=float(cfg.control.rate_hz), interface=cfg.command.interface,
                   records=records, samples=samples, pids=pids, t_first_chunk=t_first_chunk, t0=t0, t1=t1,
                   exit_codes=exit_codes, pids_left=pids_left, died=died, logs=list(logs))


def command_type(interface: str) -> Any:
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    return {"forward_position": Float64MultiArray, "joint_trajectory": JointTrajectory,
            "joint_state": JointState}[interface]


def sample_processes(procs: dict[str, Any], seen_pids: set[int]) -> ProcessSample:
    """RSS and CPU time of each node process including its children (a node that spawned a helper)."""
    import psutil

    rss: dict[str, int] = {}
    cpu: dict[str, float] = {}
    for name, proc in procs.items():
        try:
            members = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        total_rss, total_cpu = 0, 0.0
        for member in members:
            try:
                with member.oneshot():
                    total_rss += member.memory_info().rss
                    times = member.cpu_times()
                    total_cpu += times.user + times.system
                seen_pids.add(member.pid)
            except psutil.NoSuchProcess:
                pass
        rss[name], cpu[name] = total_rss, total_cpu
    return ProcessSample(time.monotonic(), rss, cpu, os.getloadavg())


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- statistics (pure) ------------------------------------------------------------------------------


def windows(t0: float, t1: float, window: float) -> list[tuple[float, float]]:
    """[t0, t1) cut into consecutive windows of `window` s; the last one may be shorter (kept if >= 1 s)."""
    edges: list[tuple[float, float]] = []
    a = t0
    while a < t1 - 1e-9:
        b = min(a + window, t1)
        if b - a >= 1.0 or not edges:
            edges.append((a, b))
        a = b
    return edges


def rate_stats(times: Sequence[float], a: float, b: float, rate_hz: float) -> dict[str, float | int]:
    """Messages received in [a, b) against the `rate_hz` expected there.

    rate_hz_mean is periods / time they span (1 / mean period), with each period counted in the
    window where it ends; period_* are in ms; lost = expected - received (negative when the
    window's phase lets one more in); late = periods longer than 1.5 nominal periods.
    """
    t = np.asarray(times, dtype=float)
    inside = (t >= a) & (t < b)
    received = int(inside.sum())
    idx = np.flatnonzero(inside)
    idx = idx[idx > 0]  # a period needs the message before it (which may lie in the previous window)
    periods = t[idx] - t[idx - 1]
    expected = (b - a) * rate_hz
    row: dict[str, float | int] = {"received": received, "expected": round(expected, 1),
                                   "lost": round(expected - received, 1)}
    if len(periods):
        row.update({
            "rate_hz_mean": float(len(periods) / periods.sum()),
            "period_p50_ms": float(np.percentile(periods, 50) * 1e3),
            "period_p99_ms": float(np.percentile(periods, 99) * 1e3),
            "period_max_ms": float(periods.max() * 1e3),
            "late": int(np.count_nonzero(periods > 1.5 / rate_hz)),
        })
    else:
        row.update({"rate_hz_mean": math.nan, "period_p50_ms": math.nan, "period_p99_ms": math.nan,
                    "period_max_ms": math.nan, "late": 0})
    return row


def chunk_id_gaps(ids: Sequence[int]) -> dict[str, int]:
    """Missing chunk ids between consecutive received ones, plus repeats / out-of-order arrivals."""
    missing = repeated = 0
    for prev, cur in zip(ids, ids[1:], strict=False):
        if cur > prev + 1:
            missing += cur - prev - 1
        elif cur <= prev:
            repeated += 1
    return {"chunks": len(ids), "chunk_ids_missing": missing, "chunk_ids_repeated": repeated}


def last_before(samples: Sequence[StatusSample], node: str, t: float) -> StatusSample | None:
    """The newest status of `node` received at or before t."""
    found = None
    for s in samples:
        if s.t > t:
            break
        if s.node == node:
            found = s
    return found


def window_table(run: SoakRun) -> list[dict[str, Any]]:
    """One row per window: command rate and periods, loss, chunk-id gaps, executor holds, load."""
    rows = []
    rec = run.records
    for k, (a, b) in enumerate(windows(run.t0, run.t1, run.options.window)):
        row: dict[str, Any] = {"window": k, "start_s": round(a - run.t0, 1), "length_s": round(b - a, 1)}
        row.update(rate_stats(rec.commands, a, b, run.rate_hz))
        if rec.command_stamps:
            # Send side (the executor's clock in each header): separates the timer's own jitter from transport
            # and observer delays. Stamps are paired with receive times one-to-one, in order.
            inside = [s for t, s in zip(rec.commands, rec.command_stamps, strict=False) if a <= t < b]
            periods = np.diff(inside)
            if len(periods):
                row["send_p99_ms"] = float(np.percentile(periods, 99) * 1e3)
        row.update(chunk_id_gaps([cid for t, cid in rec.chunks if a <= t < b]))
        row["joint_state_hz"] = rate_stats(rec.joint_states, a, b, run.rate_hz)["rate_hz_mean"]
        first, last = last_before(rec.statuses, "action_executor", a), last_before(rec.statuses, "action_executor", b)
        row["holds"] = (last.holds - first.holds) if first and last else None
        reported = [s.control_rate for s in rec.statuses if s.node == "action_executor" and a <= s.t < b]
        row["executor_rate_hz"] = float(np.mean(reported)) if reported else math.nan
        inf_a, inf_b = last_before(rec.statuses, "inference", a), last_before(rec.statuses, "inference", b)
        row["stale_inputs"] = (inf_b.stale_inputs - inf_a.stale_inputs) if inf_a and inf_b else None
        loads = [s.loadavg[0] for s in run.samples if a <= s.t <= b]
        row["load1"] = float(np.mean(loads)) if loads else math.nan
        rows.append(row)
    return rows


def overall(run: SoakRun) -> dict[str, Any]:
    """The measured span as one window, plus chunk gaps over the whole run and transport loss."""
    rec = run.records
    row: dict[str, Any] = {"measured_s": round(run.t1 - run.t0, 2), "rate_hz_target": run.rate_hz}
    row.update(rate_stats(rec.commands, run.t0, run.t1, run.rate_hz))
    row["loss_fraction"] = row["lost"] / row["expected"] if row["expected"] else math.nan
    row["rate_error"] = (row["rate_hz_mean"] - run.rate_hz) / run.rate_hz
    row.update(chunk_id_gaps([cid for t, cid in rec.chunks if t >= run.t0 and t < run.t1]))
    row["chunk_ids_missing_whole_run"] = chunk_id_gaps([cid for _, cid in rec.chunks])["chunk_ids_missing"]
    first, last = (last_before(rec.statuses, "action_executor", t) for t in (run.t0, run.t1))
    row["holds_start"] = first.holds if first else None
    row["holds_end"] = last.holds if last else None
    row["holds"] = (last.holds - first.holds) if first and last else None
    # Transport loss: the executor's own publish counter (diagnostics) against what arrived in between.
    pub = [(t, n) for t, n in rec.executor_published if run.t0 <= t <= run.t1]
    if len(pub) >= 2:
        (ta, na), (tb, nb) = pub[0], pub[-1]
        arrived = sum(1 for t in rec.commands if ta < t <= tb)
        row["executor_published"] = nb - na
        row["transport_lost"] = (nb - na) - arrived  # +-1 or 2: a command in flight at either diagnostics
    loads = [s.loadavg for s in run.samples]
    if loads:
        row["load1_mean"] = float(np.mean([x[0] for x in loads]))
        row["load1_max"] = float(np.max([x[0] for x in loads]))
    return row


def process_table(run: SoakRun) -> list[dict[str, Any]]:
    """Per node: RSS (MB) at the first sample after the warm-up and at the end, growth %, CPU share (cores)."""
    rows = []
    if not run.samples:
        return rows
    first, last = run.samples[0], run.samples[-1]
    span = last.t - first.t
    for name in run.pids:
        if name not in first.rss or name not in last.rss:
            rows.append({"process": name, "pid": run.pids[name], "rss_start_mb": math.nan, "rss_end_mb": math.nan,
                         "rss_max_mb": math.nan, "growth_pct": math.nan, "cpu_cores": math.nan,
                         "exit_code": run.exit_codes.get(name)})
            continue
        peak = max(s.rss.get(name, 0) for s in run.samples)
        start, end = first.rss[name], last.rss[name]
        rows.append({
            "process": name, "pid": run.pids[name],
            "rss_start_mb": start / 2**20, "rss_end_mb": end / 2**20, "rss_max_mb": peak / 2**20,
            "growth_pct": 100.0 * (end - start) / start if start else math.nan,
            "cpu_cores": (last.cpu[name] - first.cpu[name]) / span if span > 0 else math.nan,
            "exit_code": run.exit_codes.get(name),
        })
    return rows


def rss_series(run: SoakRun) -> dict[str, list[tuple[float, float]]]:
    """Per node: (s since t0, RSS MB) for every sample (for plots and leak slopes)."""
    series: dict[str, list[tuple[float, float]]] = {name: [] for name in run.pids}
    for s in run.samples:
        for name, value in s.rss.items():
            series[name].append((round(s.t - run.t0, 2), round(value / 2**20, 2)))
    return series
