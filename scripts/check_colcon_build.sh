#!/usr/bin/env bash
# Run the README's robot build (colcon, both package paths) where ROS 2 comes from the PyPI wheels
# instead of apt, and check what it installs: the node executables and `dreamzero` import from the
# install space, share/ holds the configs, URDFs, launch file and the demo's checkpoint, ament_index finds the package.
#   scripts/check_colcon_build.sh [WORKDIR]     (default: a new temp dir; kept for inspection)
# Env: DZ_COLCON_VENV reuses a venv that already has the ROS wheels, colcon and the robot deps.
# What it cannot run here (no apt ROS index): rosdep install, and `ros2 launch` (no launch wheels).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/dz_colcon.XXXXXX)}"
VENV="${DZ_COLCON_VENV:-$WORK/venv}"
log() { echo "[check_colcon_build] $*" >&2; }
secs() { echo $(( $(date +%s) - $1 )); }

source "$ROOT/scripts/find_python.sh"
if [[ ! -x "$VENV/bin/colcon" ]]; then
  t=$(date +%s)
  PYTHON="$(dz_find_python)"
  log "venv $VENV: ROS 2 Kilted wheels + colcon + requirements-robot/model.txt + what rosdep would install"
  "$PYTHON" -m venv "$VENV"
  # requirements.txt minus requirements-dev.txt: the ROS runtime and the message build tools.
  grep -E '^ros-' "$ROOT/requirements.txt" >"$WORK/ros-wheels.txt"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$WORK/ros-wheels.txt" catkin_pkg \
    colcon-common-extensions -r "$ROOT/requirements-robot.txt" -r "$ROOT/requirements-model.txt" scipy pyyaml opencv-python-headless msgpack \
    matplotlib psutil
  log "venv ready in $(secs "$t") s"
fi
export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
"$VENV/bin/python" "$ROOT/scripts/fix_rosidl_cmake_paths.py" "$VENV"

mkdir -p "$WORK/dz_ws/src"
rm -rf "$WORK/dz_ws/src/dreamzero_ros" "$WORK/dz_ws/build" "$WORK/dz_ws/install" "$WORK/dz_ws/log"
git clone --quiet "$ROOT" "$WORK/dz_ws/src/dreamzero_ros"
cd "$WORK/dz_ws"
t=$(date +%s)
log "colcon build --base-paths src/dreamzero_ros src/dreamzero_ros/dreamzero_msgs"
colcon build --base-paths src/dreamzero_ros src/dreamzero_ros/dreamzero_msgs \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python3"
log "colcon build took $(secs "$t") s"

# The install space, as a robot shell sees it after `source install/setup.bash`.
set +u
# shellcheck disable=SC1091
source install/setup.bash
set -u
cd /
python3 - <<'EOF'
import importlib.metadata as md
from pathlib import Path

import dreamzero_ros
from ament_index_python.packages import get_package_share_directory
from dreamzero_ros.core.embodiment import available_embodiments, config_dir, load_embodiment, resolve_checkpoint

install = Path(dreamzero_ros.__file__).resolve()
assert "/install/dreamzero_ros/" in str(install), f"dreamzero_ros imported from {install}, not the install space"
share = Path(get_package_share_directory("dreamzero_ros"))
assert config_dir() == share / "config", (config_dir(), share)
assert (share / "launch" / "dreamzero.launch.py").is_file()
urdfs = sorted(p.name for p in (share / "urdf").glob("*.urdf"))
demo_checkpoint = resolve_checkpoint(load_embodiment("franka_droid").demo.checkpoint)
assert demo_checkpoint == share / "checkpoints" / "franka_droid_sim_small", demo_checkpoint
assert (demo_checkpoint / "model.safetensors").is_file()
eps = [ep for ep in md.entry_points(group="console_scripts") if ep.value.startswith("dreamzero_ros.")]
for ep in eps:
    ep.load()
    print(f"[check_colcon_build] entry point {ep.name} = {ep.value}: imports")
import dreamzero_msgs.msg  # noqa: E402,F401

print(f"[check_colcon_build] dreamzero_ros from {install.parent}")
print(f"[check_colcon_build] share: {share}; embodiments {available_embodiments()}; urdf {urdfs}; "
      f"demo checkpoint {demo_checkpoint}")
assert {ep.name for ep in eps} >= {"camera_stitcher", "action_executor", "inference", "sim_robot", "recorder",
                                   "dreamzero"}, sorted(ep.name for ep in eps)
EOF
for exe in "$WORK"/dz_ws/install/dreamzero_ros/lib/dreamzero_ros/*; do
  head -1 "$exe" | grep -qx '#!/usr/bin/env python3' || { log "error: $exe does not start the PATH python3"; exit 1; }
done
"$WORK/dz_ws/install/dreamzero_ros/lib/dreamzero_ros/dreamzero" --help >/dev/null
log "ok: $WORK/dz_ws/install (node executables start '#!/usr/bin/env python3'; 'dreamzero --help' runs)"
