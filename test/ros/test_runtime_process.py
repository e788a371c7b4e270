"""run_node as a real process: a shutdown that lands inside a callback is a clean stop, a bug is not.

CI once saw camera_stitcher exit 1 on SIGINT: rclpy's signal thread shut the context down while the
node was publishing, and the publish raised InvalidHandle before the KeyboardInterrupt arrived.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PEER = Path(__file__).with_name("runtime_peer.py")


def run_peer(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PEER), mode], capture_output=True, text=True, timeout=60)


def test_a_shutdown_inside_a_callback_exits_0_and_says_so():
    done = run_peer("shutdown")
    assert done.returncode == 0, done.stderr
    assert "stopped during a callback" in done.stderr


def test_a_bug_in_a_callback_still_exits_non_zero_with_its_traceback():
    done = run_peer("bug")
    assert done.returncode == 1, done.stderr
    assert "RuntimeError: runtime_peer: a bug in a callback" in done.stderr
