"""Two robots in one ROS graph under two namespaces run side by side without crosstalk.

Two node plans (built-in simulator, scripted backend) run in the same ROS domain under /robot1 and
/robot2, configured by one operator parameters file: per-node keys give each robot its own initial
instruction (over the plan's empty one), a wildcard key lowers both simulators' camera rate. Each
robot's chunks carry only its own instruction; arming and e-stopping one leaves the other as it was;
the armed robot's commands reach only its own simulator, and nothing lands on the root names.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from dreamzero_msgs.msg import ActionChunk, PolicyStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

from dreamzero_ros.apps.operator_commands import Operator
from dreamzero_ros.bringup.plan import BringupOptions, node_plan, start_plan
from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.ros import qos
from dreamzero_ros.ros.names import ARM_SERVICE, CHUNK_TOPIC, STATUS_TOPIC
from dreamzero_ros.testing.probes import RosProbe, wait_until

pytestmark = pytest.mark.slow

DROID = load_embodiment("franka_droid")
INSTRUCTIONS = {"/robot1": "wave", "/robot2": "point at the bowl"}
PARAMS = """\
/**/sim_robot:
  ros__parameters:
    camera_rate: 5.0
/robot1/inference:
  ros__parameters:
    instruction: wave
/robot2/inference:
  ros__parameters:
    instruction: point at the bowl
"""
# The embodiment's own wiring (config/franka_droid.yaml), as each robot's graph names it.
COMMANDS = "forward_position_controller/commands"
JOINT_STATES = "joint_states"


def executor(statuses: list) -> PolicyStatus | None:
    return next((s for _, s in reversed(list(statuses)) if s.node == "action_executor"), None)


def test_two_namespaced_robots_in_one_graph_keep_their_instructions_commands_arming_and_e_stop_apart(tmp_path):
    params = tmp_path / "two_robots.yaml"
    params.write_text(PARAMS)
    logs: dict[str, list[str]] = {ns: [] for ns in INSTRUCTIONS}
    groups, probes = [], {}
    root = RosProbe("two_robots_root_probe")
    try:
        for ns in INSTRUCTIONS:
            plan = node_plan(BringupOptions(embodiment=DROID.name, backend="scripted", sim=True, namespace=ns,
                                            params_file=str(params)))
            workdir = tmp_path / ns.strip("/")
            workdir.mkdir()
            groups.append(start_plan(plan, env=dict(os.environ), sink=logs[ns].append, workdir=workdir))
        seen = {}
        for ns in INSTRUCTIONS:  # each probe lives in its robot's namespace: the relative names resolve there
            probe = probes[ns] = RosProbe("two_robots_probe", namespace=ns)
            seen[ns] = {
                "chunks": probe.collect(ActionChunk, CHUNK_TOPIC, qos.COMMANDS),
                "statuses": probe.collect(PolicyStatus, STATUS_TOPIC, qos.STATUS),
                "commands": probe.collect(Float64MultiArray, COMMANDS, qos.COMMANDS),
                "joints": probe.collect(JointState, JOINT_STATES, qos.JOINT_STATES),
            }
        leaked = {name: root.collect(t, name, q) for name, t, q in (
            ("/dreamzero/action_chunk", ActionChunk, qos.COMMANDS), ("/dreamzero/status", PolicyStatus, qos.STATUS),
            ("/forward_position_controller/commands", Float64MultiArray, qos.COMMANDS),
            ("/joint_states", JointState, qos.JOINT_STATES))}

        def tail(ns: str) -> str:
            return "\n".join(logs[ns][-60:])

        for ns in INSTRUCTIONS:
            assert wait_until(lambda ns=ns: len(seen[ns]["chunks"]) >= 2, 120), f"{ns}: no chunks\n{tail(ns)}"
            assert any("camera_rate=5Hz" in line for line in logs[ns]), f"{ns}: wildcard params not applied\n{tail(ns)}"
        # The graph holds each robot's names under its namespace (the names in ros/names.py are relative).
        topics = {name for name, _ in root.node.get_topic_names_and_types()}
        assert {"/robot1/dreamzero/action_chunk", "/robot2/dreamzero/action_chunk", "/robot1/joint_states",
                "/robot2/joint_states", "/robot1/camera/wrist/image_raw"} <= topics, sorted(topics)

        # Arm robot1 only; robot2 stays disarmed and sends nothing.
        armed = wait_until(lambda: probes["/robot1"].call(SetBool, ARM_SERVICE, SetBool.Request(data=True),
                                                          timeout=30).success, 30, interval=0.2)
        assert armed, tail("/robot1")
        start2 = np.array(seen["/robot2"]["joints"][-1][1].position)
        assert wait_until(lambda: len(seen["/robot1"]["commands"]) >= 30, 30), tail("/robot1")
        time.sleep(1.0)
        status1, status2 = executor(seen["/robot1"]["statuses"]), executor(seen["/robot2"]["statuses"])
        assert status1.armed and not status2.armed, (status1, status2)
        assert not seen["/robot2"]["commands"], "robot1's commands reached robot2's simulator"
        moved2 = np.abs(np.array(seen["/robot2"]["joints"][-1][1].position) - start2).max()
        assert moved2 < 0.01, f"disarmed robot2 moved by {moved2:.4f} rad"

        # Each robot's model got its own instruction; a chunk never crossed over.
        for ns, text in INSTRUCTIONS.items():
            assert {c.instruction for _, c in seen[ns]["chunks"]} == {text}, ns

        # The e-stop of robot2 leaves armed robot1 commanding.
        estop_at = time.monotonic()
        with Operator(namespace="/robot2") as op:
            assert "acknowledged on /robot2/dreamzero/estop" in op.estop()  # it returns once the executor has it
        assert wait_until(lambda: executor(seen["/robot2"]["statuses"]).estopped, 10), tail("/robot2")
        before = len(seen["/robot1"]["commands"])
        time.sleep(1.0)
        status1 = executor(seen["/robot1"]["statuses"])
        assert status1.armed and not status1.estopped, status1
        assert len(seen["/robot1"]["commands"]) - before >= 0.5 * DROID.control.rate_hz, "robot1 stopped commanding"
        # robot2's only commands are its e-stop hold: where robot2 itself stands, in the model's joint order.
        by_name = dict(zip(seen["/robot2"]["joints"][-1][1].name, seen["/robot2"]["joints"][-1][1].position, strict=True))
        here = np.array([by_name[j] for j in DROID.action_joints])
        for t, cmd in list(seen["/robot2"]["commands"]):
            assert t > estop_at and np.allclose(cmd.data, here, atol=0.01), (t - estop_at, list(cmd.data), here)
        assert {name: len(got) for name, got in leaked.items()} == dict.fromkeys(leaked, 0)
        for group in groups:
            dead = group.first_required_exit()
            assert dead is None, f"{dead.name} exited {dead.returncode}:\n{dead.output()[-2000:]}"
    finally:
        for group in groups:
            group.stop_all()
        for probe in probes.values():
            probe.close()
        root.close()
