"""`dreamzero bringup` runs the node plan as processes and never leaves one behind."""

from __future__ import annotations

import os
import re
import signal
import sys

import psutil
import pytest

from dreamzero_ros.bringup.processes import ManagedProcess

NODES = ("camera_stitcher", "inference", "action_executor")


def start_bringup(*extra: str) -> ManagedProcess:
    argv = [sys.executable, "-m", "dreamzero_ros.apps.cli", "bringup", "--backend", "scripted", "--instruction", "wave",
            *extra]
    return ManagedProcess("bringup", argv, env=dict(os.environ), echo=False).start()


def started_pids(proc: ManagedProcess) -> dict[str, int]:
    for name in NODES:
        assert proc.wait_for_line(lambda s, n=name: f"started {n} pid=" in s, 30), proc.output()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"started (\w+) pid=(\d+)", proc.output())}


def wait_ready(proc: ManagedProcess) -> None:
    for marker in ("inference ready", "executor ready", "stitching cameras="):
        assert proc.wait_for_line(lambda s, m=marker: m in s, 60), proc.output()


def assert_all_gone(pids: dict[str, int]) -> None:
    alive = {n: p for n, p in pids.items() if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"}
    assert not alive, f"orphaned node processes: {alive}"


@pytest.fixture
def bringup_procs():
    procs: list[ManagedProcess] = []
    yield procs
    for p in procs:
        p.stop()


def test_bringup_streams_prefixed_logs_and_stops_every_node_on_ctrl_c(bringup_procs):
    proc = start_bringup()
    bringup_procs.append(proc)
    pids = started_pids(proc)
    assert set(pids) == set(NODES)
    wait_ready(proc)
    assert any(line.startswith("[inference] ") for line in proc.lines)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, proc.output()
    assert_all_gone(pids)


def test_bringup_stops_everything_when_a_required_node_dies(bringup_procs):
    proc = start_bringup()
    bringup_procs.append(proc)
    pids = started_pids(proc)
    wait_ready(proc)
    os.kill(pids["action_executor"], signal.SIGKILL)
    assert proc.wait(30) == 1, proc.output()
    assert "required node action_executor exited" in proc.output()
    assert_all_gone(pids)


def test_bringup_refuses_a_bad_embodiment_before_starting_anything(bringup_procs):
    proc = start_bringup("--embodiment", "r2d2")
    bringup_procs.append(proc)
    assert proc.wait(30) == 2
    assert "unknown embodiment 'r2d2'" in proc.output()
    assert "started" not in proc.output()


def test_bringup_refuses_random_weights_on_a_real_robot_before_starting_anything(bringup_procs):
    argv = [sys.executable, "-m", "dreamzero_ros.apps.cli", "bringup"]  # local backend, no checkpoint, no sim
    proc = ManagedProcess("bringup", argv, env=dict(os.environ), echo=False).start()
    bringup_procs.append(proc)
    assert proc.wait(30) == 2
    assert "allow_random_weights: refusing to drive a real robot" in proc.output()
    assert "--allow-random-weights" in proc.output()
    assert "started" not in proc.output()
