#!/usr/bin/env bash
# The reach curriculum, one command: from the base checkpoint (checkpoints/franka_droid_sim_small, or --from DIR),
# the stages docs/learning_loop_design.md ("Sixth look") measured, each post-training (--init) the one before:
#   1. red only       generate --colour red, 150 seeds from 7000; --chunks 1 --max-start 0, lr 5e-4, 1,000 steps
#   2. every colour   generate --every-colour, 100 seeds from 8000; --chunks 1 --max-start 0, lr 5e-4, 5,400 steps
#   3. two chunks     the same set; --chunks 2 --max-start 0, lr 3e-4 cosine to 3e-5 at 1,500, 1,500 steps
#   4. 300 seeds      generate --every-colour, 300 seeds from 8000; --chunks 2 --max-start 0, lr 3e-4 cosine to
#                     3e-5 at 2,000, 2,000 steps
# and with --push, after the last of those, push through its own curriculum (reach kept in the data so that it is
# not forgotten), on one set: generate --tasks reach push --every-colour, 100 seeds from 9000 (300 reach and ~280
# push episodes: the noise spoils a few pushes; 25 min):
#   5. push starts    --chunks 1 --max-start 0, lr 4e-4 cosine to 4e-5 at 3,000, 3,000 steps (the approach only:
#                     which cube, and where behind it the pad puts the hand; 25 min)
#   6. push chunks    --chunks 3 --max-start 0 (a push lasts 3 chunks), lr 3e-4 cosine to 3e-5 at 1,500, 1,500
#                     steps (23 min)
#   Measured (docs/learning_loop_design.md, "Tenth look"): push 1/30 and reach 23/45, so none of this ships.
# and with --forward instead, the same two stages on push_forward ("push the red cube forward": slide it 8 cm away
# from the robot, approached from the robot's side as reach is): generate --tasks reach push_forward
# --every-colour, 100 seeds from 9100 (600 episodes, 13 min), then
#   5. forward starts --chunks 1 --max-start 0, lr 4e-4 cosine to 4e-5 at 2,000, 2,000 steps (15 min)
#   6. forward chunks --chunks 3 --max-start 0, lr 3e-4 cosine to 3e-5 at 1,500, 1,500 steps (20 min)
# and on a second set whose reach and push_forward episodes of one seed share their scene (--shared-scenes, 100
# seeds from 9200: only the verb tells the tasks apart; 600 episodes, 22 min beside evaluations):
#   7. shared scenes  --chunks 3 --max-start 0, lr 3e-4 cosine to 3e-5 at 1,500, 1,500 steps (20 min)
#   Measured ("Eleventh look"): push_forward 15/30 and reach 15/45, so this does not ship either.
# and with --joint instead of all of the above, reach and push_forward from the base checkpoint together, each
# stage on shared scenes (--shared-scenes: only the verb tells the tasks apart), as stages 1-3 are for reach alone
# (every second task post-trained onto the reach checkpoint cost reach its precision):
#   j1. red only      generate --tasks reach push_forward --colour red --shared-scenes, 150 seeds from 7200 (300
#                     episodes, 10 min); --chunks 1 --max-start 0, lr 5e-4, 1,500 steps
#   j2. every colour  the --forward section's shared set (600 episodes, seeds 9200-9299); --chunks 1 --max-start 0,
#                     lr 5e-4, 7,000 steps (two tasks halve each one's share: the colour binds from ~3,400 steps,
#                     where reach alone bound it from ~1,800)
#   j3. chunks        the same set; --chunks 3 --max-start 0, lr 3e-4 cosine to 3e-5 at 1,500, 1,500 steps
#   Measured ("Twelfth look"; 90 min with the generation): reach 19/45 and push_forward 6/30: not shipped.
# and with --cadence instead, after the reach stages (--through 3 as for the shipped reach checkpoint, or --reach
# CHECKPOINT), one stage on that shared set at the cadence inference runs at (--reach with the shipped reach
# checkpoint, then --scenes, made checkpoints/franka_droid_sim_small_reach_push_forward):
#   5. cadence        the --forward section's shared set (600 episodes, seeds 9200-9299, 15 min); --chunks 4
#                     --max-start 0 --execute-steps 12 (each chunk starts 12 steps after the one before and writes the
#                     4 frames seen in them, as inference writes a chunk's 4 newest frames after ~0.8 s of it), lr
#                     3e-4 cosine to 3e-5 at 1,800, 1,800 steps (21 min with preparing)
#   Measured ("Thirteenth look"): push_forward 43/75, reach 35/75 (shipped until session 17).
# and with --scenes (after --cadence), 200 more shared scenes and two stages on them, from the cadence stage:
#   generate --tasks reach push_forward --every-colour --shared-scenes, 200 seeds from 9300 (1,200 episodes, 21 min)
#   6. more scenes    --chunks 4 --max-start 0 --execute-steps 12 --oversample touch=2 (reach's samples twice per
#                     epoch), lr 2e-4 cosine to 2e-5 at 1,800, 1,800 steps (19 min with preparing)
#   7. longer         the same samples, lr 2e-4 cosine to 2e-5 at 3,000, 3,000 steps (~35 min)
#   Measured ("Sixteenth look"): reach 87/135, push_forward 97/135: shipped as
#   checkpoints/franka_droid_sim_small_reach_push_forward, which the demo runs.
# --reach CHECKPOINT starts --push, --forward or --cadence from that reach checkpoint (e.g. the shipped
# checkpoints/franka_droid_sim_small_reach) instead of training stages 1-4 first.
# All with batch 16 and action weight 10; every dataset with --noise 0.015. Resumable: a dataset whose meta is
# complete and a stage whose checkpoint exists are kept; an interrupted training stage resumes from its
# train_state.pt, an interrupted generation starts again. On these 2 cores stages 1-3 took 75 min (14 min generating,
# 61-69 min training; they made checkpoints/franka_droid_sim_small_reach) and stage 4 adds about an hour; a GPU
# (the trainer's --device auto) shortens the training. The reach demonstrations are the scripted expert's
# (sim/expert.py), so a change to its reach changes what every stage learns.
#
# Usage: scripts/reach_curriculum.sh OUT [--through 1|2|3|4] [--push | --forward | --joint | --cadence [--scenes]]
#                                      [--reach CHECKPOINT] [--from CHECKPOINT] [--eval EPISODES]
#   OUT/data/<set>      the generated datasets
#   OUT/<stage>/        each stage's run folder (losses.json, loss.png, checkpoint/)
#   OUT/eval/           with --eval N: N episodes per task trained (seeds from 1,000,000), last checkpoint
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '/^# Usage:/,/^#   OUT\/eval/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 && "$1" != -* ]] || usage
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
shift
THROUGH=4
FROM="$ROOT/checkpoints/franka_droid_sim_small"
EVAL=0
PUSH=0
FORWARD=0
JOINT=0
CADENCE=0
SCENES=0
REACH=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --through) THROUGH="$2"; shift 2 ;;
    --from) FROM="$2"; shift 2 ;;
    --push) PUSH=1; shift ;;
    --forward) FORWARD=1; shift ;;
    --joint) JOINT=1; shift ;;
    --cadence) CADENCE=1; shift ;;
    --scenes) SCENES=1; shift ;;
    --reach) REACH="$2"; shift 2 ;;
    --eval) EVAL="$2"; shift 2 ;;
    *) echo "reach_curriculum: unknown option $1" >&2; usage ;;
  esac
done
[[ "$THROUGH" =~ ^[1-4]$ ]] || { echo "reach_curriculum: --through must be 1, 2, 3 or 4, got '$THROUGH'" >&2; exit 2; }
[[ -f "$FROM/experiment_cfg/metadata.json" ]] || { echo "reach_curriculum: --from $FROM is not a checkpoint" >&2; exit 2; }
[[ $((PUSH + FORWARD + JOINT + CADENCE)) -le 1 ]] || {
  echo "reach_curriculum: --push, --forward, --joint and --cadence are alternatives" >&2; exit 2; }
[[ "$SCENES" -eq 0 || "$CADENCE" -eq 1 ]] || { echo "reach_curriculum: --scenes continues --cadence" >&2; exit 2; }
[[ "$JOINT" -eq 0 || -z "$REACH" ]] || { echo "reach_curriculum: --joint starts from --from, not --reach" >&2; exit 2; }
if [[ -n "$REACH" ]]; then
  [[ "$PUSH" -eq 1 || "$FORWARD" -eq 1 || "$CADENCE" -eq 1 ]] || {
    echo "reach_curriculum: --reach needs --push, --forward or --cadence" >&2; exit 2; }
  [[ -f "$REACH/experiment_cfg/metadata.json" ]] || { echo "reach_curriculum: --reach $REACH is not a checkpoint" >&2; exit 2; }
  REACH="$(cd "$REACH" && pwd)"
fi

dz() { "$ROOT/dz" "$@"; }
say() { echo "[reach_curriculum $(date +%T)] $*"; }

# dataset NAME GENERATE_ARGS...: generate OUT/data/NAME unless its meta is complete (embodiment.json is written last)
dataset() {
  local name="$1"; shift
  local dir="$OUT/data/$name"
  if [[ -f "$dir/meta/embodiment.json" ]]; then say "dataset $name: kept ($dir)"; return; fi
  say "dataset $name: generating"
  dz generate --out "$dir" --noise 0.015 --overwrite "$@"
}

# stage NAME INIT DATASET TRAIN_ARGS...: post-train INIT on DATASET into OUT/NAME unless its checkpoint exists
stage() {
  local name="$1" init="$2" data="$3"; shift 3
  local run="$OUT/$name"
  if [[ -f "$run/checkpoint/experiment_cfg/metadata.json" ]]; then say "stage $name: kept ($run/checkpoint)"; return; fi
  local resume=()
  if [[ -f "$run/train_state.pt" ]]; then resume=(--resume); say "stage $name: resuming"; else say "stage $name: training"; fi
  dz train --dataset "$OUT/data/$data" --out "$run" --init "$init" --batch 16 --action-weight 10 --no-progress \
    "${resume[@]}" "$@"
}

SHARED=(--tasks reach push_forward --every-colour --shared-scenes --episodes 100 --seed 9200)
if [[ "$JOINT" -eq 1 ]]; then
  dataset joint_red --tasks reach push_forward --colour red --shared-scenes --episodes 150 --seed 7200
  stage j1_red "$FROM" joint_red --chunks 1 --max-start 0 --lr 5e-4 --steps 1500
  dataset shared "${SHARED[@]}"
  stage j2_every_colour "$OUT/j1_red/checkpoint" shared --chunks 1 --max-start 0 --lr 5e-4 --steps 7000
  stage j3_chunks "$OUT/j2_every_colour/checkpoint" shared --chunks 3 --max-start 0 --lr 3e-4 --decay-steps 1500 \
    --steps 1500
  LAST="$OUT/j3_chunks/checkpoint"
elif [[ -n "$REACH" ]]; then
  LAST="$REACH"
  say "reach stages: skipped, from $LAST"
else
  dataset red --tasks reach --colour red --episodes 150 --seed 7000
  stage 1_red "$FROM" red --chunks 1 --max-start 0 --lr 5e-4 --steps 1000
  LAST="$OUT/1_red/checkpoint"
  if [[ "$THROUGH" -ge 2 ]]; then
    dataset every100 --tasks reach --every-colour --episodes 100 --seed 8000
    stage 2_every_colour "$LAST" every100 --chunks 1 --max-start 0 --lr 5e-4 --steps 5400
    LAST="$OUT/2_every_colour/checkpoint"
  fi
  if [[ "$THROUGH" -ge 3 ]]; then
    stage 3_two_chunks "$LAST" every100 --chunks 2 --max-start 0 --lr 3e-4 --decay-steps 1500 --steps 1500
    LAST="$OUT/3_two_chunks/checkpoint"
  fi
  if [[ "$THROUGH" -ge 4 ]]; then
    dataset every300 --tasks reach --every-colour --episodes 300 --seed 8000
    stage 4_300_seeds "$LAST" every300 --chunks 2 --max-start 0 --lr 3e-4 --decay-steps 2000 --steps 2000
    LAST="$OUT/4_300_seeds/checkpoint"
  fi
fi
TASKS=(reach)
[[ "$JOINT" -eq 0 ]] || TASKS=(reach push_forward)
if [[ "$PUSH" -eq 1 ]]; then
  dataset reachpush --tasks reach push --every-colour --episodes 100 --seed 9000
  stage 5_push_starts "$LAST" reachpush --chunks 1 --max-start 0 --lr 4e-4 --decay-steps 3000 --steps 3000
  stage 6_push_chunks "$OUT/5_push_starts/checkpoint" reachpush --chunks 3 --max-start 0 --lr 3e-4 --decay-steps 1500 \
    --steps 1500
  LAST="$OUT/6_push_chunks/checkpoint"
  TASKS=(reach push)
fi
if [[ "$FORWARD" -eq 1 ]]; then
  dataset reachfwd --tasks reach push_forward --every-colour --episodes 100 --seed 9100
  stage 5_forward_starts "$LAST" reachfwd --chunks 1 --max-start 0 --lr 4e-4 --decay-steps 2000 --steps 2000
  stage 6_forward_chunks "$OUT/5_forward_starts/checkpoint" reachfwd --chunks 3 --max-start 0 --lr 3e-4 \
    --decay-steps 1500 --steps 1500
  dataset shared "${SHARED[@]}"
  stage 7_shared_scenes "$OUT/6_forward_chunks/checkpoint" shared --chunks 3 --max-start 0 --lr 3e-4 \
    --decay-steps 1500 --steps 1500
  LAST="$OUT/7_shared_scenes/checkpoint"
  TASKS=(reach push_forward)
fi
if [[ "$CADENCE" -eq 1 ]]; then
  dataset shared "${SHARED[@]}"
  stage 5_cadence "$LAST" shared --chunks 4 --max-start 0 --execute-steps 12 --lr 3e-4 --decay-steps 1800 --steps 1800
  LAST="$OUT/5_cadence/checkpoint"
  TASKS=(reach push_forward)
  if [[ "$SCENES" -eq 1 ]]; then
    dataset shared2 --tasks reach push_forward --every-colour --shared-scenes --episodes 200 --seed 9300
    stage 6_more_scenes "$LAST" shared2 --chunks 4 --max-start 0 --execute-steps 12 --oversample touch=2 --lr 2e-4 \
      --decay-steps 1800 --steps 1800 --save-every 600
    # the same samples: the stage 6 run's prepared file
    stage 7_longer "$OUT/6_more_scenes/checkpoint" shared2 --chunks 4 --max-start 0 --execute-steps 12 \
      --oversample touch=2 --lr 2e-4 --decay-steps 3000 --steps 3000 --save-every 1000 \
      --cache "$OUT/6_more_scenes/samples.pt"
    LAST="$OUT/7_longer/checkpoint"
  fi
fi
say "last checkpoint: $LAST"
if [[ "$EVAL" -gt 0 ]]; then
  dz eval --task "${TASKS[@]}" --episodes "$EVAL" --checkpoint "$LAST" --out "$OUT/eval" --no-video
fi
