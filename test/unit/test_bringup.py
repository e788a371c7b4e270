"""The node plan: one source of truth for the launch file and the process runner."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from dreamzero_ros.apps.cli import build_parser
from dreamzero_ros.bringup.plan import (
    BringupOptions,
    launch_arguments,
    node_plan,
    options_from_args,
    params_file,
    process_argv,
)
from dreamzero_ros.bringup.processes import ManagedProcess, ProcessGroup
from dreamzero_ros.core.embodiment import ConfigError

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "dreamzero.launch.py"
SETUP = Path(__file__).resolve().parents[2] / "setup.py"


def test_the_default_plan_runs_sim_stitcher_inference_and_executor_in_order():
    plan = node_plan(BringupOptions(sim=True))
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
    for spec in node_plan(BringupOptions(record="/tmp/r.mcap", sim=True)):
        assert scripts[spec.executable] == f"{spec.module}:main"
        assert importlib.util.find_spec(spec.module) is not None, spec.module


def test_the_runner_passes_the_plan_parameters_through_a_ros_params_file(tmp_path):
    plan = node_plan(BringupOptions(backend="scripted", instruction="wave"))
    path = params_file(plan, tmp_path)
    data = yaml.safe_load(path.read_text())
    for spec in plan:
        assert data["/" + spec.name]["ros__parameters"] == spec.parameters
        argv = process_argv(spec, path)
        assert argv[:3] == [sys.executable, "-m", spec.module]
        assert argv[argv.index("-r") + 1] == f"__node:={spec.name}"
        assert argv[argv.index("--params-file") + 1] == str(path)


def test_the_launch_file_builds_its_nodes_from_the_same_plan():
    """Without launch_ros (pip installs) we check the launch file's code: every Node comes from
    node_plan and carries the spec's executable, name, parameters and remappings."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "dreamzero_ros.bringup.plan" for alias in node.names}
    assert {"node_plan", "BringupOptions"} <= imported
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    assert len(calls) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords["executable"] == "spec.executable"
    assert keywords["name"] == "spec.name"
    assert keywords["parameters"] == "[spec.parameters, *spec.params_files]"
    assert keywords["namespace"] == "spec.namespace"
    assert keywords["remappings"] == "list(spec.remappings)"
    comprehension = next(n for n in ast.walk(tree) if isinstance(n, ast.ListComp))
    assert ast.unparse(comprehension.generators[0].iter) == "node_plan(options)"
    # The launch arguments are generated from BringupOptions, not declared a second time.
    assignment = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                      and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    assert ast.unparse(assignment) == "launch_arguments()"


def test_launch_arguments_cover_every_option_and_parse_back_to_the_same_options():
    arguments = launch_arguments()
    assert list(arguments) == [f.name for f in dataclasses.fields(BringupOptions)]
    assert arguments["sim"][0] == "false" and arguments["backend"][0] == "local"
    assert "local | remote | scripted | expert" in arguments["backend"][1]
    defaults = BringupOptions.from_strings({name: default for name, (default, _) in arguments.items()})
    assert defaults == BringupOptions()
    chosen = BringupOptions.from_strings({"embodiment": "yam", "backend": "remote", "server": "ws://gpu:8000",
                                          "sim": "True", "dry_run": "on", "predicted_video": "0"})
    assert chosen == BringupOptions(embodiment="yam", backend="remote", server="ws://gpu:8000", sim=True,
                                    dry_run=True, predicted_video=False)
    with pytest.raises(ValueError, match="sim: expected true or false, got 'maybe'"):
        BringupOptions.from_strings({"sim": "maybe"})
    with pytest.raises(ValueError, match=r"unknown bringup option\(s\) \['simulator'\]"):
        BringupOptions.from_strings({"simulator": "true"})


def test_the_cli_flags_are_the_bringup_options():
    parser = build_parser()
    args = parser.parse_args(["bringup", "--embodiment", "yam", "--backend", "scripted", "--sim", "--dry-run",
                              "--record", "/tmp/r.mcap", "--predicted-video", "--instruction", "wave"])
    assert options_from_args(args) == BringupOptions(embodiment="yam", backend="scripted", sim=True, dry_run=True,
                                                     record="/tmp/r.mcap", predicted_video=True, instruction="wave")
    assert options_from_args(parser.parse_args(["bringup"])) == BringupOptions()
    demo = parser.parse_args(["demo", "--no-sim"])
    assert demo.sim is False and demo.instruction and demo.record is True  # demo: its own defaults, --no-record
    with pytest.raises(SystemExit):
        parser.parse_args(["bringup", "--backend", "magic"])


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
    with pytest.raises(ValueError, match="allow_random_weights"):  # the defaults: random weights, no sim
        module._nodes(context)
    context.launch_configurations["allow_random_weights"] = "true"
    nodes = module._nodes(context)
    expected = node_plan(BringupOptions(sim=False, allow_random_weights=True))
    assert [n.node_executable for n in nodes] == [s.executable for s in expected]


def test_a_robot_profile_reaches_every_node_with_the_embodiment_it_names():
    plan = {n.name: n for n in node_plan(BringupOptions(robot="yam_i2rt", sim=False, record="/tmp/y.mcap",
                                                              allow_random_weights=True))}
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
    plan = node_plan(BringupOptions(embodiment="agibot_g1", backend="scripted"))
    assert all(n.parameters["robot"] == "" and n.parameters["embodiment"] == "agibot_g1" for n in plan)


def test_an_unknown_robot_profile_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown robot profile 'r2d2'; known: \[.*'fr3_franka_ros2'"):
        node_plan(BringupOptions(robot="r2d2"))


def test_the_launch_file_and_the_cli_take_a_robot_profile():
    assert "robot" in launch_arguments()
    assert BringupOptions.from_strings({"robot": "yam_i2rt"}).robot == "yam_i2rt"
    args = build_parser().parse_args(["bringup", "--robot", "fr3_franka_ros2"])
    assert options_from_args(args).robot == "fr3_franka_ros2"


def argv_pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[k + 1] for k, word in enumerate(argv) if word == flag]


def test_a_namespace_puts_every_node_in_it_and_moves_the_robots_topics_with_it(tmp_path):
    plan = node_plan(BringupOptions(backend="scripted", sim=True, namespace="robot1"))
    path = params_file(plan, tmp_path)
    data = yaml.safe_load(path.read_text())
    for spec in plan:
        assert spec.namespace == "/robot1"
        rules = argv_pairs(process_argv(spec, path), "-r")
        assert "__ns:=/robot1" in rules
        # franka_droid's own wiring (config/franka_droid.yaml), absolute there, resolved under the namespace.
        for topic in ("/joint_states", "/forward_position_controller/commands", "/camera/wrist/image_raw"):
            assert f"{topic}:={topic[1:]}" in rules, rules
        assert data[f"/robot1/{spec.name}"]["ros__parameters"] == spec.parameters
    global_topics = node_plan(BringupOptions(backend="scripted", sim=True, namespace="/robot1",
                                             robot_topics_global=True))
    assert all(argv_pairs(process_argv(s, path), "-r") == [f"__node:={s.name}", "__ns:=/robot1"] for s in global_topics)
    root = node_plan(BringupOptions(backend="scripted", sim=True))
    assert all(argv_pairs(process_argv(s, path), "-r") == [f"__node:={s.name}"] for s in root)


def test_a_malformed_namespace_is_refused_naming_the_option():
    for bad in ("1robot", "/robot 1", "/robot-1"):
        with pytest.raises(ValueError, match=f"namespace: expected a ROS namespace like /robot1.*got '{bad}'"):
            BringupOptions(namespace=bad)
    assert BringupOptions(namespace="/fleet/robot_1/").namespace == "/fleet/robot_1"
    assert BringupOptions(namespace="/").namespace == "/"


def test_use_sim_time_puts_every_node_on_sim_time_and_makes_the_simulator_the_clock():
    plan = {n.name: n for n in node_plan(BringupOptions(backend="scripted", sim=True, use_sim_time=True))}
    assert plan["sim_robot"].parameters["use_sim_clock"] is True
    assert "use_sim_time" not in plan["sim_robot"].parameters
    for name in ("camera_stitcher", "inference", "action_executor"):
        assert plan[name].parameters["use_sim_time"] is True
    wall = node_plan(BringupOptions(backend="scripted", sim=True))
    assert not any("use_sim_time" in n.parameters or "use_sim_clock" in n.parameters for n in wall)


def test_the_operators_params_file_is_passed_after_the_plans_so_its_values_win(tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("/**:\n  ros__parameters:\n    status_rate: 5.0\n")
    plan = node_plan(BringupOptions(backend="scripted", sim=True, params_file=str(overrides)))
    path = params_file(plan, tmp_path)
    for spec in plan:
        assert argv_pairs(process_argv(spec, path), "--params-file") == [str(path), str(overrides.resolve())]
    with pytest.raises(ValueError, match="params_file: no such file '/nonexistent/p.yaml'"):
        BringupOptions(params_file="/nonexistent/p.yaml")
    args = build_parser().parse_args(["bringup", "--params-file", str(overrides), "--namespace", "/r2",
                                      "--use-sim-time", "--robot-topics-global"])
    assert options_from_args(args) == BringupOptions(params_file=str(overrides), namespace="/r2", use_sim_time=True,
                                                     robot_topics_global=True)


def test_random_weights_on_a_real_robot_are_refused_unless_explicitly_allowed():
    with pytest.raises(ValueError, match="allow_random_weights: refusing to drive a real robot"):
        node_plan(BringupOptions())  # local backend, no checkpoint, no simulator
    with pytest.raises(ValueError, match="allow_random_weights"):
        node_plan(BringupOptions(robot="fr3_franka_ros2"))
    for fine in (BringupOptions(sim=True), BringupOptions(dry_run=True), BringupOptions(checkpoint="/ckpt"),
                 BringupOptions(backend="remote", server="ws://gpu:8000"), BringupOptions(backend="scripted"),
                 BringupOptions(allow_random_weights=True)):
        assert [n.name for n in node_plan(fine)][-1] == "action_executor"
    args = build_parser().parse_args(["bringup", "--allow-random-weights"])
    assert options_from_args(args).allow_random_weights is True
    assert launch_arguments()["allow_random_weights"][0] == "false"


def test_the_operator_commands_take_the_namespace_of_the_bringup_they_address():
    parser = build_parser()
    assert parser.parse_args(["arm", "--namespace", "/robot1"]).namespace == "/robot1"
    assert parser.parse_args(["instruct", "-n", "robot2", "wave"]).namespace == "robot2"
    assert parser.parse_args(["estop"]).namespace == ""


def test_every_dreamzero_name_is_relative_and_only_diagnostics_and_clock_are_global():
    from dreamzero_ros.ros import names

    constants = {k: v for k, v in vars(names).items() if k.endswith(("_TOPIC", "_SERVICE"))}
    assert {k for k, v in constants.items() if v.startswith("/")} == {"DIAGNOSTICS_TOPIC", "CLOCK_TOPIC"}
    assert (names.DIAGNOSTICS_TOPIC, names.CLOCK_TOPIC) == ("/diagnostics", "/clock")
    assert names.resolve(names.ARM_SERVICE, "/robot1") == "/robot1/dreamzero/arm"
    assert names.resolve(names.CHUNK_TOPIC) == "/dreamzero/action_chunk"
    assert names.resolve(names.DIAGNOSTICS_TOPIC, "/robot1") == "/diagnostics"


def test_the_exit_report_names_each_process_that_did_not_exit_0_with_its_last_output():
    group = ProcessGroup()
    group.start(ManagedProcess("fine", [sys.executable, "-c", "print('all good')"], echo=False))
    group.start(ManagedProcess("broken", [sys.executable, "-c", "print('first'); print('last words'); raise SystemExit(3)"],
                               echo=False))
    for p in group.processes:
        p.wait(10)
    codes = group.stop_all()
    assert codes == {"broken": 3, "fine": 0}
    report = group.exit_report(codes, lines=1)
    assert report == "broken exited 3:\nlast words"
    assert group.exit_report({"fine": 0}) == "every process exited 0"


def test_stopping_a_group_interrupts_each_process_once_then_escalates_only_if_it_stays():
    # A process that counts SIGINTs and takes 4 s to clean up, as a node can: stopped after the other one (3 s
    # to SIGTERM), a second SIGINT would land in its clean-up. One that ignores SIGINT is escalated to SIGTERM.
    counting = ("import signal, sys, time\n"
                "n = []\n"
                "signal.signal(signal.SIGINT, lambda *_: n.append(1))\n"
                "print('ready', flush=True)\n"
                "while not n: time.sleep(0.01)\n"
                "time.sleep(4.0)\n"
                "print(f'interrupted {len(n)} times', flush=True)\n")
    deaf = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    group = ProcessGroup()
    for name, code in (("counting", counting), ("deaf", deaf)):
        process = group.start(ManagedProcess(name, [sys.executable, "-c", code], echo=False))
        assert process.wait_for_line(lambda s: s == "ready", 10), process.output()
    codes = group.stop_all(timeout=3.0)
    assert codes == {"deaf": -15, "counting": 0}, codes
    assert group.processes[0].output().splitlines()[-1] == "interrupted 1 times"
