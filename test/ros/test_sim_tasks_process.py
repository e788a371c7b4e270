"""sim_robot with a task: /sim/reset starts the next seeded episode (arm at its start pose), the reply names the
task, seed and instruction, and /sim/task and /diagnostics report the episode and whether its predicate holds.
Real node, real DDS."""

from __future__ import annotations

import json
import re

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import SIM_RESET_SERVICE, SIM_TASK_TOPIC
from dreamzero_ros.sim.tasks import CUBE_HALF, sample_episode
from dreamzero_ros.testing.probes import wait_until

MODULE = "dreamzero_ros.nodes.sim_robot_node"
EMB = load_embodiment("franka_droid")
TOPIC, RESET = "/sim_task_test/joint_states", "/sim_task_test/reset"


def _diagnostic(diagnostics, key: str) -> str | None:
    for _, msg in reversed(list(diagnostics)):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == "dreamzero: sim_robot" and "task" in values:
                return values.get(key)
    return None


def test_a_reset_starts_the_next_seeded_episode_of_the_task_with_the_arm_at_its_start(launcher, probe):
    process = launcher.start(
        "sim_robot", MODULE, {"embodiment": EMB.name, "camera_rate": 0.0, "task": "push", "seed": 5},
        extra_args=["--ros-args", "-r", f"{EMB.command.joint_states_topic}:={TOPIC}",
                    "-r", f"{SIM_RESET_SERVICE}:={RESET}"])
    states = probe.collect(JointState, TOPIC, qos.JOINT_STATES)
    diagnostics = probe.collect(DiagnosticArray, "/diagnostics", qos.STATUS)
    task_states = probe.collect(String, SIM_TASK_TOPIC, qos.LATCHED)
    assert wait_until(lambda: len(states) > 3, 60), process.output()

    seeds = []
    for _ in range(2):
        reply = probe.call(Trigger, RESET, Trigger.Request(), timeout=15)
        assert reply.success, reply.message
        match = re.search(r"task=push seed=(\d+) instruction='([^']+)'", reply.message)
        assert match, reply.message
        seed = int(match.group(1))
        episode = sample_episode(EMB, "push", seed)
        assert match.group(2) == episode.instruction
        seeds.append(seed)
    assert seeds[0] >= 5 and seeds[1] > seeds[0], f"seeds {seeds}: each reset moves on to a new episode"

    n = len(states)
    assert wait_until(lambda: len(states) > n + 3, 10)
    msg = states[-1][1]
    q = dict(zip(msg.name, msg.position, strict=True))
    for joint in EMB.state_joints:
        assert abs(q[joint] - episode.start[joint]) < 0.02, f"{joint}: {q[joint]} vs start {episode.start[joint]}"
    assert wait_until(lambda: _diagnostic(diagnostics, "seed") == str(seeds[-1]), 10), process.output()
    assert _diagnostic(diagnostics, "task_success") == "False", "the cube starts away from the pad"
    assert np.isfinite(list(q.values())).all()

    assert wait_until(lambda: task_states and json.loads(task_states[-1][1].data)["seed"] == seeds[-1], 10)
    state = json.loads(task_states[-1][1].data)
    assert (state["task"], state["instruction"], state["success"]) == ("push", episode.instruction, False)
    # every reset served moves one seed on from `seed` 5 (the scene starts in seed 5, its first reset gives it)
    assert state["resets"] == seeds[-1] - 5 + 1, state["resets"]
    assert state["pad"] == list(episode.pad)
    for name, (x, y) in episode.objects.items():
        assert np.allclose(state["objects"][name], [x, y, CUBE_HALF], atol=0.005), (name, state["objects"][name])
