#!/usr/bin/env bash
# Create or refresh a repo venv with everything dreamzero_ros needs: ROS 2 wheels of one
# distribution, torch (CPU pin), the other dependencies, dreamzero_msgs built into the venv and
# dreamzero_ros installed in editable mode. DZ_DISTRO picks the ROS 2 distribution: kilted (default,
# .venv, requirements.txt) or jazzy (.venv-jazzy, requirements-jazzy.txt); DZ_VENV overrides the
# venv path. Idempotent: a stamp of the inputs makes a second run with nothing changed return in
# well under a second. The interpreter comes from scripts/find_python.sh (DZ_PYTHON, python3.11,
# or one obtained through uv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DISTRO="${DZ_DISTRO:-kilted}"
case "$DISTRO" in
  kilted) REQ="requirements.txt"; DEFAULT_VENV="$ROOT/.venv" ;;
  jazzy) REQ="requirements-jazzy.txt"; DEFAULT_VENV="$ROOT/.venv-jazzy" ;;
  *) echo "[bootstrap] error: DZ_DISTRO=$DISTRO; expected kilted or jazzy" >&2; exit 2 ;;
esac
VENV="${DZ_VENV:-$DEFAULT_VENV}"
STAMP="$VENV/.dreamzero-stamp"

inputs_hash() {
  (cd "$ROOT" && { echo "$DISTRO"; cat "$REQ" requirements-dev.txt requirements-robot.txt requirements-model.txt setup.py setup.cfg package.xml \
     scripts/bootstrap.sh scripts/find_python.sh scripts/fix_rosidl_cmake_paths.py \
     dreamzero_msgs/package.xml dreamzero_msgs/CMakeLists.txt dreamzero_msgs/msg/* dreamzero_msgs/srv/* \
     test/interfaces/control_msgs/package.xml test/interfaces/control_msgs/CMakeLists.txt \
     test/interfaces/control_msgs/msg/* test/interfaces/control_msgs/action/*; } \
     | sha256sum | cut -d' ' -f1)
}

want="$(inputs_hash)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  exit 0
fi

log() { echo "[bootstrap] $*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  # shellcheck source=find_python.sh
  source "$ROOT/scripts/find_python.sh"
  PYTHON="$(dz_find_python)" || exit 2
  log "creating venv at $VENV with $PYTHON (ROS 2 $DISTRO)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "[bootstrap] error: $VENV is not a Python 3.11 venv; delete it and rerun." >&2
  exit 2
fi

# Headless MuJoCo rendering goes through EGL on Mesa's software rasteriser (llvmpipe).
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing EGL/Mesa for headless rendering (libegl1 libegl-mesa0 libgl1-mesa-dri)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
  else
    log "warning: libEGL/Mesa not found; the simulator cannot render (install libegl1 libegl-mesa0 libgl1-mesa-dri)"
  fi
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null 2>&1 || { echo "[bootstrap] error: $tool is required to build dreamzero_msgs" >&2; exit 2; }
done

log "installing Python dependencies ($REQ)"
"$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$REQ"

# The message wheels' exported CMake files carry include paths of the machine that built them;
# point them at this interpreter's headers and numpy (see ../shared/design/PIP_ROS.md).
log "fixing exported CMake include paths of the ROS message wheels"
"$PY" "$ROOT/scripts/fix_rosidl_cmake_paths.py" "$VENV"

export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
build_interfaces() {  # <source dir>: an ament_cmake interface package, built and installed into the venv
  local name build
  name="$(basename "$1")"
  build="$ROOT/build/$(basename "$VENV")/$name"
  log "building $name into the venv"
  mkdir -p "$build"
  cmake -S "$1" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$VENV/bin/python3" -DCMAKE_BUILD_TYPE=Release >"$build/../$name-configure.log" 2>&1 \
    || { cat "$build/../$name-configure.log" >&2; exit 1; }
  cmake --build "$build" -j"$(nproc)" >"$build/../$name-build.log" 2>&1 \
    || { tail -50 "$build/../$name-build.log" >&2; exit 1; }
  cmake --install "$build" >/dev/null
}
build_interfaces "$ROOT/dreamzero_msgs"
# control_msgs has no PyPI wheel: the tests' stand-in of its GripperCommand subset (robots use apt's package).
build_interfaces "$ROOT/test/interfaces/control_msgs"

log "installing dreamzero_ros (editable)"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"

"$PY" -c 'import rclpy, dreamzero_msgs.msg, control_msgs.action, dreamzero_ros' \
  || { echo "[bootstrap] error: the venv does not import rclpy/dreamzero_msgs/control_msgs/dreamzero_ros" >&2; exit 1; }
echo "$want" >"$STAMP"
log "venv ready: $VENV"
