"""MuJoCo simulated robots built from urdf/ (the default when no robot is attached).

Importing this package chooses MuJoCo's headless OpenGL backend: MUJOCO_GL defaults to `egl` (Mesa's
llvmpipe serves EGL without a GPU; Debian packages libegl1 + libgl1-mesa-dri). mujoco reads MUJOCO_GL
once, when it is first imported, so import `dreamzero_ros.sim` (or set MUJOCO_GL) before `import mujoco`.
A MUJOCO_GL the user set (egl, osmesa, glfw) is respected.
"""

from __future__ import annotations

import os
import sys
import warnings

if "MUJOCO_GL" not in os.environ:
    if "mujoco" in sys.modules and not os.environ.get("DISPLAY"):
        warnings.warn(
            "mujoco was imported before dreamzero_ros.sim with MUJOCO_GL unset and no DISPLAY: offscreen "
            "rendering will try GLFW and fail; set MUJOCO_GL=egl before importing mujoco",
            RuntimeWarning,
            stacklevel=2,
        )
    os.environ["MUJOCO_GL"] = "egl"
