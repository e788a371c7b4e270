"""dreamzero_msgs built into the venv works across processes: a chunk and a service over DDS."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dreamzero_ros.bringup.processes import ManagedProcess

PEER = str(Path(__file__).with_name("msg_peer.py"))


def test_two_processes_exchange_an_action_chunk_and_call_set_instruction():
    talker = ManagedProcess("talker", [sys.executable, PEER, "talker"], env=dict(os.environ), echo=False).start()
    listener = None
    try:
        assert talker.wait_for_line(lambda s: "talker ready" in s, 30), talker.output()
        listener = ManagedProcess("listener", [sys.executable, PEER, "listener"], env=dict(os.environ), echo=False)
        listener.start()
        assert listener.wait(60) == 0, listener.output()
        result = json.loads(listener.output().strip().splitlines()[-1])
    finally:
        talker.stop()
        if listener:
            listener.stop()
    assert result["success"] is True
    assert result["message"] == "instruction set to 'pick up the cup'"
    assert result["instruction"] == "pick up the cup"
    assert result["stamp"] == [1234, 500_000_000]
    assert result["chunk_id"] == 7
    assert result["joint_names"] == ["j1", "j2"]
    assert result["horizon"] == 3 and abs(result["dt"] - 1 / 15) < 1e-12
    assert result["positions"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert result["extra"] == [["base_velocity", ["linear_x", "angular_z"], 6]]
    assert result["latency"] == 0.25
