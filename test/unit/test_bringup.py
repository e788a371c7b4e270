"""The node plan: one source of truth for the launch file and the process runner."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from dreamzero_ros.bringup import BringupOptions, node_plan, params_file, process_argv
from dreamzero_ros.core.embodiment import ConfigError

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "dreamzero.launch.py"
SETUP = Path(__file__).resolve().parents[2] / "setup.py"


def test_the_default_plan_runs_sim_stitcher_inference_and_executor_in_order():
    plan = node_plan(BringupOptions())
    assert [n.name for n in plan] == ["sim_robot", "camera_stitcher", "inference", "action_executor"]
    assert all(n.parameters["embodiment"] == "franka_droid" for n in plan)
    assert all(n.required for n in plan)


def test_options_reach_the_right_nodes():
    plan = {n.name: n for n in node_plan(BringupOptions(
        embodiment="yam", backend="remote", server="ws://gpu:8000", sim=False, dry_run=True, record="/tmp/x.mcap",
        instruction="fold the towel"))}
    assert "sim_robot" not in plan
    assert plan["inference"].parameters["backend"] == "remote"
    assert plan["inference"].parameters["server"] == "ws://gpu:8000"
    assert plan["inference"].parameters["instruction"] == "fold the towel"
    assert plan["action_executor"].parameters["dry_run"] is True
    assert plan["recorder"].parameters == {"output": "/tmp/x.mcap", "embodiment": "yam", "robot": ""}
    assert plan["recorder"].required is False


def test_bad_options_are_refused_with_the_option_named():
    with pytest.raises(ValueError, match="backend: expected one of"):
        BringupOptions(backend="magic")
    with pytest.raises(ValueError, match="server: the remote backend needs"):
        BringupOptions(backend="remote")
    with pytest.raises(ConfigError, match="unknown embodiment 'r2d2'"):
        node_plan(BringupOptions(embodiment="r2d2"))


def test_every_plan_node_is_a_console_script_and_an_importable_module():
    scripts = ast.literal_eval(SETUP.read_text().split("NODES = ", 1)[1].split("\n}\n", 1)[0] + "\n}")
    for spec in node_plan(BringupOptions(record="/tmp/r.mcap")):
        assert scripts[spec.executable] == f"{spec.module}:main"
        assert importlib.util.find_spec(spec.module) is not None, spec.module


def test_the_runner_passes_the_plan_parameters_through_a_ros_params_file(tmp_path):
    plan = node_plan(BringupOptions(backend="scripted", instruction="wave"))
    path = params_file(plan, tmp_path)
    data = yaml.safe_load(path.read_text())
    for spec in plan:
        assert data[spec.name]["ros__parameters"] == spec.parameters
        argv = process_argv(spec, path)
        assert argv[:3] == [sys.executable, "-m", spec.module]
        assert argv[argv.index("-r") + 1] == f"__node:={spec.name}"
        assert argv[argv.index("--params-file") + 1] == str(path)


def test_the_launch_file_builds_its_nodes_from_the_same_plan():
    """Without launch_ros (pip installs) we check the launch file's code: every Node comes from
    node_plan and carries the spec's executable, name, parameters and remappings."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "dreamzero_ros.bringup" for alias in node.names}
    assert {"node_plan", "BringupOptions"} <= imported
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    assert len(calls) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords["executable"] == "spec.executable"
    assert keywords["name"] == "spec.name"
    assert keywords["parameters"] == "[spec.parameters]"
    assert keywords["remappings"] == "list(spec.remappings)"
    comprehension = next(n for n in ast.walk(tree) if isinstance(n, ast.ListComp))
    assert ast.unparse(comprehension.generators[0].iter) == "node_plan(options)"
    # Every BringupOptions field is a launch argument.
    arguments = ast.literal_eval(next(n.value for n in tree.body if isinstance(n, ast.Assign)
                                      and getattr(n.targets[0], "id", "") == "ARGUMENTS"))
    assert set(BringupOptions.__dataclass_fields__) <= set(arguments)


def test_the_launch_description_builds_when_launch_ros_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros is only on full ROS installs")
    spec = importlib.util.spec_from_file_location("dreamzero_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from launch import LaunchContext

    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        entity.visit(context)
    nodes = module._nodes(context)
    assert [n.node_executable for n in nodes] == [s.executable for s in node_plan(BringupOptions(sim=False))]


def test_a_robot_profile_reaches_every_node_with_the_embodiment_it_names():
    plan = {n.name: n for n in node_plan(BringupOptions(robot="yam_i2rt", sim=False, record="/tmp/y.mcap"))}
    assert "sim_robot" not in plan
    for name in ("camera_stitcher", "inference", "action_executor"):
        assert plan[name].parameters["robot"] == "yam_i2rt"
        assert plan[name].parameters["embodiment"].endswith("config/yam.yaml")
        assert "use_sim_time" not in plan[name].parameters
    assert plan["recorder"].parameters["embodiment"].endswith("config/yam.yaml")
    assert plan["recorder"].parameters["robot"] == "yam_i2rt"


def test_a_profile_on_sim_time_puts_every_node_on_sim_time_and_the_simulator_on_its_own_clock():
    plan = {n.name: n for n in node_plan(BringupOptions(robot="agibot_g1_genie_sim", sim=True))}
    assert plan["sim_robot"].parameters["use_sim_clock"] is True
    assert "use_sim_time" not in plan["sim_robot"].parameters  # it is the clock
    for name in ("camera_stitcher", "inference", "action_executor"):
        assert plan[name].parameters["use_sim_time"] is True


def test_the_embodiment_option_alone_keeps_todays_wiring():
    plan = node_plan(BringupOptions(embodiment="agibot_g1"))
    assert all(n.parameters["robot"] == "" and n.parameters["embodiment"] == "agibot_g1" for n in plan)


def test_an_unknown_robot_profile_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown robot profile 'r2d2'; known: \[.*'fr3_franka_ros2'"):
        node_plan(BringupOptions(robot="r2d2"))


def test_the_launch_file_takes_a_robot_argument():
    tree = ast.parse(LAUNCH_FILE.read_text())
    text = LAUNCH_FILE.read_text()
    assert '"robot": (""' in text
    options = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BringupOptions"]
    assert {k.arg for k in options[0].keywords} >= {"embodiment", "robot"}
