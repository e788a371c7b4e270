#!/usr/bin/env bash
# Find a CPython 3.11 interpreter for the repo venvs (the ROS 2 wheels on PyPI are cp311 only) and
# print its path on stdout; progress and errors go to stderr. Sourced by bootstrap.sh, or run alone.
# Order: $DZ_PYTHON; python3.11 or python3 on PATH; a uv-managed 3.11 (`uv python find`); otherwise
# `uv python install 3.11`, with uv itself taken from PATH or installed from PyPI into a small tool
# venv (.dz-tools/uv). When nothing works it exits 2 and prints what to do instead.

_dz_log() { echo "[bootstrap] $*" >&2; }

_dz_is_311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; }

_dz_no_python_help() {
  # $1: what failed, in words.
  cat >&2 <<EOF
[bootstrap] error: no CPython 3.11 found, and $1.
[bootstrap] dreamzero_ros needs CPython 3.11: the ROS 2 wheels on PyPI are built for cp311 only.
[bootstrap] Any one of these gives it one; then rerun the same ./dz command:
[bootstrap]   - an interpreter you already have:  DZ_PYTHON=/path/to/python3.11 ./dz ...
[bootstrap]   - Ubuntu (deadsnakes PPA):  sudo add-apt-repository ppa:deadsnakes/ppa && sudo apt install python3.11 python3.11-venv python3.11-dev
[bootstrap]   - pyenv:  pyenv install 3.11 && DZ_PYTHON="\$(pyenv root)/versions/\$(pyenv latest 3.11)/bin/python3.11" ./dz ...
[bootstrap]   - uv (its Python builds download from github.com/astral-sh/python-build-standalone): make that
[bootstrap]     reachable, or point UV_PYTHON_INSTALL_MIRROR at a mirror of it, and rerun; or run
[bootstrap]     'uv python install 3.11' yourself where it can download.
EOF
}

# Print the path of a uv executable, installing uv from PyPI into $DZ_TOOLS/uv if none is on PATH.
_dz_find_uv() {
  local tools="${DZ_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.dz-tools}"
  if command -v uv >/dev/null 2>&1; then command -v uv; return 0; fi
  if [[ -x "$tools/uv/bin/uv" ]]; then echo "$tools/uv/bin/uv"; return 0; fi
  local py
  py="$(command -v python3 || true)"
  if [[ -z "$py" ]]; then
    _dz_log "no python3 on PATH to install uv with"
    return 1
  fi
  _dz_log "installing uv from PyPI into $tools/uv (python3 -m venv + pip install uv)"
  if ! "$py" -m venv "$tools/uv" >&2; then
    _dz_log "'$py -m venv' failed (on Debian/Ubuntu: sudo apt install python3-venv)"
    rm -rf "$tools/uv"
    return 1
  fi
  if ! "$tools/uv/bin/python" -m pip install --quiet --disable-pip-version-check uv >&2; then
    _dz_log "'pip install uv' failed (is PyPI reachable?)"
    rm -rf "$tools/uv"
    return 1
  fi
  echo "$tools/uv/bin/uv"
}

dz_find_python() {
  local py cand uv
  if [[ -n "${DZ_PYTHON:-}" ]]; then
    py="$(command -v "$DZ_PYTHON" || true)"
    if [[ -z "$py" ]]; then
      _dz_log "error: DZ_PYTHON=$DZ_PYTHON is not an executable"
      return 2
    fi
    if ! _dz_is_311 "$py"; then
      _dz_log "error: DZ_PYTHON=$DZ_PYTHON is Python $("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo '?'), expected 3.11 (the ROS 2 wheels are cp311 only)"
      return 2
    fi
    echo "$py"
    return 0
  fi
  for cand in python3.11 python3; do
    py="$(command -v "$cand" || true)"
    if [[ -n "$py" ]] && _dz_is_311 "$py"; then
      echo "$py"
      return 0
    fi
  done
  _dz_log "no python3.11 on PATH; getting CPython 3.11 through uv"
  if ! uv="$(_dz_find_uv)"; then
    _dz_no_python_help "uv (which could download one) could not be installed"
    return 2
  fi
  if py="$("$uv" python find 3.11 2>/dev/null)" && _dz_is_311 "$py"; then
    echo "$py"
    return 0
  fi
  _dz_log "running: $uv python install 3.11"
  if ! "$uv" python install 3.11 >&2; then
    _dz_no_python_help "'uv python install 3.11' could not download one"
    return 2
  fi
  if py="$("$uv" python find 3.11 2>/dev/null)" && _dz_is_311 "$py"; then
    echo "$py"
    return 0
  fi
  _dz_no_python_help "uv installed a Python 3.11 but 'uv python find 3.11' does not return it"
  return 2
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  dz_find_python
fi
