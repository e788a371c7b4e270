"""The `dreamzero` command: demo, bringup, serve, the dataset commands (generate, export), train, eval, aim and the
operator commands.

Subcommands import what they need lazily, so `dreamzero status` does not load torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dreamzero_ros.bringup.plan import add_cli_arguments, options_from_args
from dreamzero_ros.core.embodiment import DEFAULT_EMBODIMENT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamzero", description="DreamZero World Action Model on ROS 2 robots.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="closed-loop demo on the built-in MuJoCo simulator")
    # The demo reads its own recording in the root namespace.
    add_cli_arguments(demo, skip=("record", "predicted_video", "namespace", "robot_topics_global"),
                      defaults={"sim": True, "instruction": "pick up the red cube and put it in the bowl",
                                "checkpoint": None})  # fmt: skip
    demo.add_argument("--task", default=None, choices=["reach", "push", "push_forward", "lift", "none"],
                      help="simulated task whose seeded episodes the demo runs, or none (the plain scene and "
                           "--instruction for --duration s); default: the embodiment YAML's demo.task (reach for "
                           "franka_droid), none without one. The checkpoint defaults to its demo.checkpoint "
                           "(shipped in checkpoints/), the tiny random weights without one")
    demo.add_argument("--episodes", type=int, default=3, help="episodes of the task (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=1_000_000,
                      help="seed of the first episode (default: %(default)s, outside the training seeds)")
    demo.add_argument("--duration", type=float, default=60.0,
                      help="seconds of closed loop with --task none (default: %(default)s)")
    demo.add_argument("--output", default="out/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--no-record", dest="record", action="store_false", help="skip the MCAP recording")

    bringup = sub.add_parser("bringup", help="start the node plan as processes (where ros2 launch is missing)")
    add_cli_arguments(bringup)
    bringup.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    bringup.add_argument("--network", action="store_true",
                         help="allow DDS discovery beyond localhost (nodes on several machines)")

    serve = sub.add_parser("serve", help="websocket policy server (runs on the GPU box)")
    from dreamzero_ros.backends import server

    server.add_arguments(serve)

    generate = sub.add_parser("generate", help="scripted-expert demonstrations of the simulated tasks -> LeRobot dataset")
    generate.add_argument("--out", required=True, help="dataset folder to write")
    generate.add_argument("--embodiment", default=DEFAULT_EMBODIMENT, help="embodiment name or YAML path (default: %(default)s)")
    generate.add_argument("--tasks", nargs="+", default=["reach", "push", "lift"], help="tasks (default: %(default)s)")
    generate.add_argument("--episodes", type=int, default=10, help="episodes per task (default: %(default)s)")
    generate.add_argument("--seed", type=int, default=0, help="first episode seed (default: %(default)s)")
    generate.add_argument("--noise", type=float, default=0.0,
                          help="rad of Gaussian noise on the executed arm targets (perturbed demonstrations; "
                               "the recorded actions stay the expert's) (default: %(default)s)")
    generate.add_argument("--drift", type=float, default=0.0,
                          help="m: std of a slowly varying (0.4 s) horizontal offset of the expert's executed hand "
                               "path, full at the approach height and none at the cubes' top: demonstrations of "
                               "taking an off-target hand back over the cube; the recorded actions stay the "
                               "expert's (default: %(default)s)")
    named = generate.add_mutually_exclusive_group()
    named.add_argument("--every-colour", action="store_true",
                       help="per seed, one episode naming each cube colour in turn: the same scene and start "
                            "pose, only the instruction differs (3x the episodes)")
    named.add_argument("--colour", action="append", default=None, metavar="red|green|blue",
                       help="name this cube in every episode, in a placement valid whichever is named (repeat it: one "
                            "episode per seed and colour given)")
    generate.add_argument("--shared-scenes", action="store_true",
                          help="per seed, every task's episodes in one scene and start pose (placed so that each "
                               "task's rules hold): only the instruction tells the tasks apart")
    generate.add_argument("--workers", type=int, default=1,
                          help="processes simulating and rendering episodes, each with its own simulator; the "
                               "dataset is the same as with one (default: %(default)s)")
    generate.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")

    export = sub.add_parser("export", help="MCAP recording of a run (sim or real robot) -> LeRobot dataset")
    export.add_argument("--mcap", required=True, help="recording to export, e.g. out/demo/recording.mcap")
    export.add_argument("--out", required=True, help="dataset folder to write")
    export.add_argument("--embodiment", default=DEFAULT_EMBODIMENT, help="embodiment name or YAML path (default: %(default)s)")
    export.add_argument("--instruction", default=None,
                        help="one instruction for the whole recording (default: split at each recorded instruction)")
    export.add_argument("--fps", type=float, default=None, help="rows per second (default: the control rate)")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")

    train = sub.add_parser(
        "train", help="train a World Action Model on a LeRobot dataset (one process, or under torchrun with DDP)",
        description="Flow matching of video latents and actions with teacher forcing, as the release trains; "
                    "writes <out>/checkpoint in the released layout (load it with --checkpoint). Multi-process: "
                    "torchrun --nproc_per_node N -m dreamzero_ros.apps.cli train ... (gloo on CPU, nccl on GPU).")
    train.add_argument("--dataset", required=True, help="LeRobot dataset folder (from `dreamzero generate` or `export`)")
    train.add_argument("--out", required=True, help="run folder: train_state.pt, loss.png, losses.json, checkpoint/")
    train.add_argument("--preset", default="sim_small", help="model preset (default: %(default)s)")
    train.add_argument("--steps", type=int, default=1000, help="optimizer steps in total (default: %(default)s)")
    train.add_argument("--batch", type=int, default=16, help="global batch, split over processes (default: %(default)s)")
    train.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (default: %(default)s)")
    train.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default: %(default)s)")
    train.add_argument("--decay-steps", type=int, default=0,
                       help="cosine decay of the learning rate to --min-lr-ratio x lr at this step (default: 0, none)")
    train.add_argument("--min-lr-ratio", type=float, default=0.1,
                       help="the learning rate at --decay-steps over --lr (default: %(default)s)")
    train.add_argument("--init", default=None, metavar="CHECKPOINT",
                       help="start from this checkpoint's DiT weights (post-training; same preset, embodiment and --seed: the seed draws the frozen encoders)")
    train.add_argument("--seed", type=int, default=0, help="weights, sample order and noise (default: %(default)s)")
    train.add_argument("--chunks", type=int, default=None,
                       help="chunks per sample, i.e. up to chunks-1 clean context chunks (default: the preset's 4)")
    train.add_argument("--start-stride", type=int, default=None,
                       help="control steps between sample starts (default: the video stride, 3); coarser = fewer "
                            "samples, faster preparation")
    train.add_argument("--max-start", type=int, default=None,
                       help="latest sample start in each episode, in control steps (default: anywhere); e.g. 9 "
                            "keeps the samples that begin with the robot at rest, where only the instruction "
                            "says which way to go")
    train.add_argument("--execute-steps", type=int, default=None,
                       help="control steps between a sample's chunks (default: the horizon, the release's recipe); "
                            "12 of 24 trains on the cadence inference runs at, where the next chunk is asked for "
                            "after about 0.8 s of a 1.6 s chunk and its 4 newest frames go into the KV cache")
    train.add_argument("--oversample", action="append", default=[], metavar="TEXT=N",
                       help="show the samples whose instruction contains TEXT N times per epoch, e.g. touch=2 to "
                            "weight one task of a mixed dataset (repeatable; the largest N wins)")
    train.add_argument("--validation", metavar="DATASET", default=None,
                       help="a held-out dataset (from other seeds; one sharing a scene with --dataset is refused): "
                            "at each save the conditioning probe also runs on its episode starts "
                            "(held_out_probe_* in losses.json)")
    train.add_argument("--action-weight", type=float, default=5.0,
                       help="weight of the action loss against the video loss (default: %(default)s)")
    train.add_argument("--decoupled-video-noise", action="store_true",
                       help="DreamZero-Flash: video t = 1 - Beta(7,1), actions t ~ U(0,1)")
    train.add_argument("--text-dropout", type=float, default=0.1,
                       help="probability of the negative prompt instead of the instruction (for guidance) "
                            "(default: %(default)s)")
    train.add_argument("--save-every", type=int, default=200,
                       help="steps between training states and loss curves (default: %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its train_state.pt")
    train.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    train.add_argument("--cache", default=None, help="prepared-samples file (default: <out>/samples.pt)")
    train.add_argument("--override", action="append", default=[], metavar="FIELD=JSON",
                       help="a WamConfig field over the preset's, e.g. --override num_layers=6 (repeatable)")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    evaluate = sub.add_parser("eval", help="seeded episodes of the simulated tasks in closed loop through the nodes: "
                                           "success rate, time to success, holds, a video per episode")
    from dreamzero_ros.apps import evaluate as evaluate_app

    evaluate_app.add_arguments(evaluate)

    aim = sub.add_parser("aim", help="open loop, no ROS: where a policy's first chunk aims the hand on seeded "
                                     "episodes, against the scripted expert (bias, lag, gain)")
    from dreamzero_ros.apps import aim as aim_app

    aim_app.add_arguments(aim)

    # Every operator command addresses one bringup: the one in --namespace (as given to bringup/launch).
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--namespace", "-n", default="",
                        help="namespace of the bringup to address, e.g. /robot1 (default: the root namespace)")
    instruct = sub.add_parser("instruct", help="send a language instruction", parents=[target])
    instruct.add_argument("text")
    status = sub.add_parser("status", help="show live PolicyStatus", parents=[target])
    status.add_argument("--once", action="store_true", help="print one status per node and exit")
    status.add_argument("--duration", type=float, default=2.0, help="listen this long with --once")
    home = sub.add_parser("home", help="move the disarmed robot slowly to the embodiment's start pose and wait",
                          parents=[target])
    home.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    sub.add_parser("arm", help="arm the executor (it commands the robot from now on); home first", parents=[target])
    sub.add_parser("disarm", help="disarm the executor (it holds and stops commanding)", parents=[target])
    sub.add_parser("estop", help="latching e-stop: hold now; only `dreamzero reset` then `arm` resumes",
                   parents=[target])
    sub.add_parser("reset", help="clear the e-stop latch (stays disarmed) and reset the episode", parents=[target])
    return parser


def _operator(args: argparse.Namespace) -> int:
    from dreamzero_ros.apps.operator_commands import Operator, OperatorError, format_status

    try:
        with Operator(namespace=args.namespace) as op:
            if args.command == "instruct":
                print(op.instruct(args.text))
            elif args.command == "home":
                print(op.home(args.timeout))
            elif args.command in ("arm", "disarm"):
                print(op.arm(args.command == "arm"))
            elif args.command == "estop":
                print(op.estop())
            elif args.command == "reset":
                print("\n".join(op.reset()))
            elif args.command == "status":
                if args.once:
                    latest = op.statuses(args.duration)
                    if not latest:
                        print("no status received (is the bringup running in this ROS domain, and in "
                              f"namespace {args.namespace or '/'}?)", file=sys.stderr)
                        return 1
                    for msg in latest.values():
                        print(format_status(msg))
                else:
                    op.statuses(float("inf"), on_status=lambda m: print(format_status(m), flush=True))
    except (OperatorError, ValueError) as exc:  # ValueError: a malformed --namespace
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from dreamzero_ros.core.embodiment import load_embodiment

    try:
        emb = load_embodiment(args.embodiment)
        if args.command == "generate":
            from dreamzero_ros.datasets.generate import generate
            from dreamzero_ros.sim.tasks import COLOURS

            report = generate(args.out, emb, args.tasks, args.episodes, first_seed=args.seed,
                              action_noise=args.noise, drift=args.drift, colours=list(COLOURS) if args.every_colour else args.colour,
                              shared_scenes=args.shared_scenes,
                              overwrite=args.overwrite, workers=args.workers,
                              progress=lambda line: print(line, flush=True))
            for task, n in report.written.items():
                print(f"{task}: {n} episodes written, expert failed on {report.failures(task)}")
            print(f"{report.frames} frames in {report.seconds:.1f} s -> {args.out}")
        else:
            from dreamzero_ros.datasets.export import export_mcap

            report = export_mcap(args.mcap, args.out, emb, instruction=args.instruction, fps=args.fps,
                                 overwrite=args.overwrite)
            for ep in report.episodes:
                print(f"episode at {ep['start_s']:.2f} s: {ep['steps']} steps, '{ep['instruction']}'")
            for why in report.skipped:
                print(f"skipped: {why}")
            for note in report.notes:
                print(f"note: {note}")
            print(f"{len(report.episodes)} episodes -> {args.out}")
    except (KeyError, ValueError) as exc:  # ConfigError and DatasetError are ValueErrors naming what was wrong
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    from dreamzero_ros.training.data import TrainingDataError
    from dreamzero_ros.training.trainer import TrainConfig, parse_overrides, parse_oversample, train

    fields = ("dataset", "out", "preset", "steps", "batch", "lr", "warmup", "decay_steps", "min_lr_ratio", "init",
              "seed", "chunks", "start_stride", "max_start", "execute_steps", "validation",
              "action_weight", "decoupled_video_noise", "text_dropout", "save_every", "resume", "device", "threads",
              "cache", "progress")
    try:
        result = train(TrainConfig(**{name: getattr(args, name) for name in fields},
                                   overrides=parse_overrides(args.override),
                                   oversample=parse_oversample(args.oversample)))
    except (TrainingDataError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.checkpoint is not None:
        last = result.losses[-1] if result.losses else {}
        # A resumed run already at --steps runs no step: it only writes the checkpoint, and has no rate.
        rate = f", {result.samples_per_second:.2f} samples/s" if result.step_seconds else ""
        print(f"{result.steps} steps, last loss {last.get('loss', float('nan')):.4f} (action "
              f"{last.get('action', float('nan')):.4f}){rate}")
        if result.probe is not None:
            print(result.probe.summary())
        if result.held_out_probe is not None:
            print(result.held_out_probe.summary("held-out episode starts"))
        print(f"checkpoint -> {result.checkpoint} (loss curves: {args.out}/loss.png)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from dreamzero_ros.apps.demo import run_demo

        return run_demo(args)
    if args.command == "bringup":
        from dreamzero_ros.bringup.plan import node_plan, run_plan

        try:
            plan = node_plan(options_from_args(args))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return run_plan(plan, localhost_only=not args.network, duration=args.duration)
    if args.command in ("generate", "export"):
        return _dataset(args)
    if args.command == "train":
        return _train(args)
    if args.command == "aim":
        from dreamzero_ros.apps import aim as aim_app

        return aim_app.main(args)
    if args.command == "eval":
        from dreamzero_ros.apps import evaluate

        return evaluate.main(args)
    if args.command == "serve":
        from dreamzero_ros.backends import server

        return server.run(args)
    return _operator(args)


if __name__ == "__main__":
    sys.exit(main())
