"""Rewrite build-machine include paths in the ROS message wheels' exported CMake files.

The `ros-*` wheels were built on a manylinux image; their `*__rosidl_generator_pyExport.cmake`
files name `/opt/python/cp311-cp311/include/python3.11` and that interpreter's numpy include dir.
CMake refuses a target whose INTERFACE_INCLUDE_DIRECTORIES do not exist, so a package that
depends on these messages (dreamzero_msgs) cannot configure until they point at this venv.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy


def fix(prefix: Path) -> int:
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for path in prefix.glob("share/*/cmake/*Export.cmake"):
        text = path.read_text()
        new = re.sub(r"/opt/python/cp311-cp311/include/python3\.11", py_include, text)
        new = re.sub(r"/[^;\"\s]*/site-packages/numpy/(?:_core|core)/include", np_include, new)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    n = fix(Path(sys.argv[1]))
    print(f"[bootstrap] rewrote include paths in {n} exported CMake file(s)", file=sys.stderr)
