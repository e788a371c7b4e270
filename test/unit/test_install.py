"""The install paths: how bootstrap finds CPython 3.11, and what the robot requirements allow.

The interpreter tests run scripts/find_python.sh for real with a PATH built for the case (only the
shell tools it needs plus the interpreters under test) and with downloads made impossible
(pip with no index, uv offline), so they check the route and the message without fetching anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FIND_PYTHON = ROOT / "scripts" / "find_python.sh"
TOOLS = ["bash", "dirname", "cat", "rm", "env", "uname", "mkdir", "ls", "readlink", "sed", "grep", "ldd"]

# What the message must offer when no 3.11 can be had (the issue: "says clearly what to do").
ALTERNATIVES = ["DZ_PYTHON=/path/to/python3.11", "ppa:deadsnakes/ppa", "pyenv install 3.11", "UV_PYTHON_INSTALL_MIRROR"]


def _interpreter(version: str) -> str | None:
    """A real CPython of `version` ("3.12") on this machine, or None."""
    found = shutil.which(f"python{version}")
    candidates = [found] if found else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    for cand in candidates:
        # The interpreter binary itself, not a pyenv shim (a script that needs pyenv on PATH).
        out = subprocess.run([cand, "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys._base_executable)"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split()[0] == version:
            return out.stdout.split(maxsplit=1)[1].strip()
    return None


def _other_python() -> str:
    for version in ("3.12", "3.13", "3.10"):
        found = _interpreter(version)
        if found:
            return found
    pytest.skip("no CPython other than 3.11 on this machine to stand for Ubuntu 24.04's python3")


def _uv() -> str:
    venv_uv = Path(sys.executable).parent / "uv"
    found = str(venv_uv) if venv_uv.exists() else shutil.which("uv")
    if not found:
        pytest.skip("uv is not installed in this venv (requirements-dev.txt lists it)")
    return found


def _run(tmp_path: Path, links: dict[str, str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run find_python.sh with PATH = a folder holding only the shell tools and `links`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    for name, target in links.items():
        (bindir / name).symlink_to(target)
    home = tmp_path / "home"
    home.mkdir()
    full_env = {
        "PATH": str(bindir),
        "HOME": str(home),
        "DZ_TOOLS": str(tmp_path / "tools"),
        # Nothing may download: pip without any index or config, uv offline with an empty store.
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv-python"),
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        **env,
    }
    return subprocess.run([shutil.which("bash") or "/bin/bash", str(FIND_PYTHON)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_python311_on_path_is_used_as_is(tmp_path):
    py311 = _interpreter("3.11")
    if py311 is None:
        pytest.skip("no CPython 3.11 on this machine")
    res = _run(tmp_path, {"python3.11": py311})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "bin" / "python3.11")
    assert "uv" not in res.stderr
    assert not (tmp_path / "tools").exists()


def test_dz_python_that_is_not_311_is_refused_naming_it_and_its_version(tmp_path):
    other = _other_python()
    version = subprocess.run([other, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    res = _run(tmp_path, {}, DZ_PYTHON=other)
    assert res.returncode == 2
    assert f"DZ_PYTHON={other} is Python {version}, expected 3.11" in res.stderr
    assert res.stdout == ""


def test_without_python311_or_uv_it_installs_uv_from_pypi_and_when_that_fails_says_what_to_do(tmp_path):
    # Ubuntu 24.04: python3 is 3.12, no python3.11, no uv; PyPI unreachable (pip has no index).
    res = _run(tmp_path, {"python3": _other_python()})
    assert res.returncode == 2
    assert res.stdout == ""
    assert "no python3.11 on PATH; getting CPython 3.11 through uv" in res.stderr
    assert f"installing uv from PyPI into {tmp_path / 'tools' / 'uv'}" in res.stderr
    assert "'pip install uv' failed" in res.stderr
    assert "uv (which could download one) could not be installed" in res.stderr
    for alternative in ALTERNATIVES:
        assert alternative in res.stderr
    assert not (tmp_path / "tools" / "uv").exists(), "a half-made tool venv must not be left behind"


def test_without_python311_but_with_uv_it_runs_uv_python_install_and_when_that_cannot_download_says_what_to_do(
        tmp_path):
    uv = _uv()
    res = _run(tmp_path, {"python3": _other_python(), "uv": uv})
    assert res.returncode == 2
    assert res.stdout == ""
    assert f"running: {tmp_path / 'bin' / 'uv'} python install 3.11" in res.stderr
    assert "'uv python install 3.11' could not download one" in res.stderr
    assert "python-build-standalone" in res.stderr
    for alternative in ALTERNATIVES:
        assert alternative in res.stderr
    assert "installing uv from PyPI" not in res.stderr


def test_with_no_python3_at_all_the_message_still_lists_the_alternatives(tmp_path):
    res = _run(tmp_path, {})
    assert res.returncode == 2
    assert "no python3 on PATH to install uv with" in res.stderr
    for alternative in ALTERNATIVES:
        assert alternative in res.stderr


# Robot requirements: apt ROS ships numpy 1.21.5 (Humble, Ubuntu 22.04) and 1.26.4 (Jazzy/Kilted,
# Ubuntu 24.04); the apt message packages are built against them and must keep importing.
APT_NUMPY = ["1.21.5", "1.26.4"]


def _requirements(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def test_robot_requirements_leave_what_apt_provides_to_apt():
    reqs = {r.name.lower(): r for r in _requirements(ROOT / "requirements-robot.txt")}
    for numpy_version in APT_NUMPY:
        if "numpy" in reqs:
            assert reqs["numpy"].specifier.contains(numpy_version), f"numpy {numpy_version} excluded"
    # These come from apt through package.xml (rosdep); a pip copy would shadow the apt build.
    for apt_provided in ("numpy", "scipy", "pyyaml", "opencv-python", "opencv-python-headless", "msgpack",
                         "matplotlib", "psutil"):
        assert apt_provided not in reqs, f"requirements-robot.txt installs {apt_provided}, which rosdep provides"
    assert not any(name.startswith("ros-") for name in reqs), "ROS itself comes from apt on a robot"
    assert str(reqs["torch"].specifier) == "==2.13.0"
    # diffusers 0.42 needs Python >= 3.11; Humble's is 3.10, so the model stays out of the robot file.
    assert "diffusers" not in reqs


def test_every_python3_dependency_in_package_xml_has_its_pip_counterpart_in_the_repo_venv():
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "package.xml").getroot()
    keys = {e.text for tag in ("exec_depend", "depend") for e in root.findall(tag)}
    # rosdep key -> the pip distribution the repo venv installs instead (requirements-dev.txt).
    pip_of = {"python3-numpy": "numpy", "python3-scipy": "scipy", "python3-yaml": "pyyaml",
              "python3-opencv": "opencv-python-headless", "python3-msgpack": "msgpack",
              "python3-matplotlib": "matplotlib", "python3-psutil": "psutil"}
    python_keys = {k for k in keys if k.startswith("python3-") and k != "python3-pytest"}
    assert python_keys <= set(pip_of), f"no pip counterpart known for {python_keys - set(pip_of)}"
    dev = {r.name.lower() for r in _requirements(ROOT / "requirements-dev.txt")}
    for key in python_keys - {"python3-numpy"}:  # numpy arrives with the ROS wheels and OpenCV
        assert pip_of[key] in dev, f"{key}: {pip_of[key]} missing from requirements-dev.txt"


def test_the_jazzy_and_kilted_venvs_ask_for_the_same_ros_packages_of_their_distribution():
    kilted = {r.name for r in _requirements(ROOT / "requirements.txt") if r.name.startswith("ros-")}
    jazzy = {r.name for r in _requirements(ROOT / "requirements-jazzy.txt") if r.name.startswith("ros-")}
    assert all(name.startswith("ros-jazzy-") for name in jazzy)
    # Kilted's ament_cmake_ros_core is Jazzy's ament_cmake_ros, which also finds gmock/gtest/pytest
    # and python_cmake_module at configure time (all split out after Jazzy).
    jazzy_only = {"ros-ament-cmake-ros", "ros-ament-cmake-gmock", "ros-ament-cmake-gtest", "ros-ament-cmake-pytest",
                  "ros-python-cmake-module"}
    as_kilted = {name.replace("ros-jazzy-", "ros-") for name in jazzy}
    assert jazzy_only <= as_kilted
    assert as_kilted - jazzy_only == kilted - {"ros-ament-cmake-ros-core"}


def test_the_fast_dds_profile_is_given_under_the_variable_this_venvs_fast_dds_reads():
    # Kilted's Fast DDS 3 reads FASTDDS_DEFAULT_PROFILES_FILE, Jazzy's Fast DDS 2.14 only
    # FASTRTPS_DEFAULT_PROFILES_FILE; without the profile camera-sized images stall (PIP_ROS.md).
    import re

    from dreamzero_ros.bringup.ros_env import fastdds_profile_path, ros_environment

    libs = sorted(Path(sys.prefix, "lib").glob("libfast*.so*"))
    if not libs:
        pytest.skip(f"no Fast DDS library under {sys.prefix}/lib (ROS from apt)")
    reader = {m.decode(): lib.name for lib in libs
              for m in re.findall(rb"FAST(?:DDS|RTPS)_DEFAULT_PROFILES_FILE", lib.read_bytes())}
    assert reader, f"{[lib.name for lib in libs]} name no profile variable"
    env = ros_environment(7, base={})
    for name, lib in reader.items():
        assert env.get(name) == str(fastdds_profile_path()), f"{name} (read by {lib}) not set"
    # Kilted's rmw warns in every node's log when the old name is set too.
    for name in {"FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"} - set(reader):
        assert name not in env, f"{name} set, but this Fast DDS reads {sorted(reader)}"
