"""run_node as a real process: a shutdown that lands inside a callback is a clean stop, a bug is not.

CI once saw camera_stitcher exit 1 on SIGINT: rclpy's signal thread shut the context down while the
node was publishing, and the publish raised InvalidHandle before the KeyboardInterrupt arrived. CI also once
saw inference killed (-9) with nothing said: a clean-up that hangs now prints its threads at the SIGTERM. And
CI saw action_executor killed (-9) with nothing said after SIGINT or SIGTERM: a node that a stop signal does not
bring out of spin is now ended by run_node's stop watchdog, which says where every thread was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dreamzero_ros.bringup.processes import ManagedProcess

PEER = Path(__file__).with_name("runtime_peer.py")


def run_peer(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PEER), mode], capture_output=True, text=True, timeout=60)


def test_a_shutdown_inside_a_callback_exits_0_and_says_so():
    done = run_peer("shutdown")
    assert done.returncode == 0, done.stderr
    assert "stopped during a callback" in done.stderr


def test_an_error_that_surfaces_just_before_the_shutdown_completes_is_still_a_clean_stop():
    done = run_peer("late_shutdown")
    assert done.returncode == 0, done.stderr
    assert "stopped during a callback: RuntimeError" in done.stderr


def test_a_bug_in_a_callback_still_exits_non_zero_with_its_traceback():
    done = run_peer("bug")
    assert done.returncode == 1, done.stderr
    assert "RuntimeError: runtime_peer: a bug in a callback" in done.stderr


def stop_ticking_peer(mode: str, timeout: float) -> tuple[int | None, str]:
    """Start the peer in `mode`, stop it (ProcessGroup's way: SIGINT, `timeout` s, SIGTERM, 2 s, SIGKILL) once it
    ticks; its exit code and output."""
    peer = ManagedProcess("runtime_peer", [sys.executable, str(PEER), mode], env=dict(os.environ), echo=False)
    peer.start()
    try:
        assert peer.wait_for_line(lambda s: "runtime_peer ticking" in s, 30), peer.output()
    finally:
        code = peer.stop(timeout=timeout)
    return code, peer.output()


def test_a_clean_up_that_hangs_prints_where_it_is_when_the_runner_escalates_to_sigterm():
    code, out = stop_ticking_peer("hang", timeout=1.0)  # SIGINT, 1 s, SIGTERM, 2 s, SIGKILL
    assert code == -9, out
    assert "Current thread" in out and 'runtime_peer.py", line' in out and " in close" in out, out


def test_a_middleware_teardown_that_never_returns_is_left_behind_and_the_node_exits_0_saying_so():
    code, out = stop_ticking_peer("stuck_teardown", timeout=5.0)  # 5 s before SIGTERM: it must be gone before that
    assert code == 0, out
    assert "teardown did not finish within 2 s; exiting without it" in out


def test_a_sigterm_during_the_middleware_teardown_exits_0_at_once_saying_where_it_was():
    # CI saw a node dump its threads at the SIGTERM (stuck in destroy_node) and still be killed (-9). Once the
    # node's own clean-up is done, the SIGTERM now ends it at once, before the 2 s bound.
    code, out = stop_ticking_peer("stuck_teardown", timeout=0.5)  # SIGTERM at 0.5 s, inside the 2 s bound
    assert code == 0, out
    assert "SIGTERM during the middleware's node teardown; exiting without it" in out
    assert " in destroy_node" in out and "within 2 s" not in out, out


def test_a_node_stuck_in_spin_is_ended_by_the_watchdog_before_the_runner_escalates_saying_where_it_was():
    code, out = stop_ticking_peer("stuck_spin", timeout=5.0)  # SIGTERM would come at 5 s; the watchdog acts at 2.5
    assert code == 0, out
    assert "not out of spin 2.5 s after the stop signal" in out, out
    assert " in tick" in out, out  # the dump names the callback that never returned
    assert "runtime_peer closed" in out, out  # the node's own clean-up still ran
    assert "SIGTERM" not in out, out

