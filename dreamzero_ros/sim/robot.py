"""A simulated robot: MuJoCo physics + offscreen cameras behind a small, locked, joint-name API.

`SimRobot` owns one `MjModel`/`MjData` pair built by `scene.build_scene`, the position targets of the
embodiment's joints, an optional kinematic mobile base, and one offscreen renderer per camera.
It knows nothing about ROS: a node converts messages and calls `set_targets`, `step`, `render`.

Rendering is headless through MUJOCO_GL (default `egl`, set by `dreamzero_ros.sim` before mujoco is imported;
Mesa's llvmpipe serves EGL where there is no GPU). State methods take one lock, so a control timer and a
camera timer may call in from different threads; rendering holds that lock only to snapshot the scenes and
draws under its own lock, so physics is not held up by the cameras. The GL context is bound for each render
and released after it, because EGL lets only one thread hold a context at a time.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence

import mujoco  # dreamzero_ros.sim (imported first, as our parent package) chose the headless GL backend
import numpy as np

from dreamzero_ros.core.embodiment import EmbodimentConfig
from dreamzero_ros.sim.scene import SceneInfo, SceneLayout, build_scene, home_pose

BASE_VELOCITY_COMPONENTS = ("linear_x", "angular_z")


class SimRobot:
    """MuJoCo simulation of an embodiment, addressed by the embodiment's joint and camera names.

    Args:
        embodiment: the validated embodiment config; its URDF, joints, limits and cameras build the scene.
        render_size: camera name -> (H, W) pixels to render at; default each camera's `source_size`.
        layout: the scene's objects, markers and home pose; default the embodiment's demo scene.
    """

    def __init__(
        self,
        embodiment: EmbodimentConfig,
        *,
        render_size: dict[str, tuple[int, int]] | None = None,
        layout: SceneLayout | None = None,
    ) -> None:
        self._embodiment = embodiment
        self._render_size = self._resolve_render_size(embodiment, render_size)
        self._scene: SceneInfo = build_scene(embodiment, self._render_size, layout)
        self._model = self._scene.model
        self._data = mujoco.MjData(self._model)
        self._lock = threading.RLock()

        m = self._model
        self._joint_names = self._scene.joint_names
        self._index = {name: i for i, name in enumerate(self._joint_names)}
        jids = [m.joint(name).id for name in self._joint_names]
        self._qpos_adr = np.array([m.jnt_qposadr[j] for j in jids], dtype=np.intp)
        self._dof_adr = np.array([m.jnt_dofadr[j] for j in jids], dtype=np.intp)
        self._act_ids = np.array([m.actuator(name).id for name in self._joint_names], dtype=np.intp)
        # Targets are clamped to the CONFIG limits (the software limits), which lie inside the URDF's.
        self._lower, self._upper, _ = embodiment.limits_arrays(self._joint_names)
        self._mimics = self._joint_mimics()

        root = m.body(self._scene.root_body)
        self._mocap_id = int(m.body_mocapid[root.id]) if self._scene.layout.base_mocap else -1
        self._base_limits = self._base_velocity_limits()
        self._base_cmd = (0.0, 0.0)
        self._base_pose = np.zeros(3)  # x (m), y (m), yaw (rad) of the root in the world
        self._base_origin = m.body_pos[root.id].copy()

        # One renderer per camera: its scene holds that camera's snapshot between update_scene and render.
        self._renderers: dict[str, mujoco.Renderer] = {}
        self._gl_lock = threading.Lock()  # renderers and GL contexts; never taken while holding _lock
        self._clock = 0.0
        self.reset()

    # ----------------------------------------------------------------------------------------
    # Introspection
    # ----------------------------------------------------------------------------------------

    @property
    def embodiment(self) -> EmbodimentConfig:
        return self._embodiment

    @property
    def joint_names(self) -> tuple[str, ...]:
        """The embodiment's state joints, then any action joints not in the state."""
        return self._joint_names

    @property
    def camera_names(self) -> tuple[str, ...]:
        return self._embodiment.camera_names

    @property
    def render_size(self) -> dict[str, tuple[int, int]]:
        """camera name -> (H, W) of `render(camera)`."""
        return dict(self._render_size)

    @property
    def model(self) -> mujoco.MjModel:
        """The compiled model (read it; changing it under a running robot is the caller's risk)."""
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        return self._data

    @property
    def layout(self) -> SceneLayout:
        """The scene layout this robot was built from (objects, markers, table)."""
        return self._scene.layout

    @property
    def lock(self) -> threading.RLock:
        """The state lock: hold it to read several quantities of `data` at one instant."""
        return self._lock

    @property
    def has_mobile_base(self) -> bool:
        return self._mocap_id >= 0

    @property
    def time(self) -> float:
        """Simulated time since the last reset, s."""
        return float(self._data.time)

    @property
    def home(self) -> dict[str, float]:
        """The home pose `reset()` goes to: joint -> position (rad | m), inside the config limits."""
        return home_pose(self._embodiment, self._scene.layout)

    # ----------------------------------------------------------------------------------------
    # Control
    # ----------------------------------------------------------------------------------------

    def reset(self, q: dict[str, float] | None = None) -> None:
        """Back to time 0: objects at their start, joints at home (overridden by `q`), targets = positions.

        Raises ValueError for an unknown joint or a position outside the config limits.
        """
        pose = self.home
        for name, value in (q or {}).items():
            i = self._require_joint(name)
            value = float(value)
            if not (self._lower[i] - 1e-9 <= value <= self._upper[i] + 1e-9):
                raise ValueError(
                    f"reset: joint {name!r} position {value} is outside its limits [{self._lower[i]}, {self._upper[i]}]"
                )
            pose[name] = value
        with self._lock:
            m, d = self._model, self._data
            mujoco.mj_resetData(m, d)
            values = np.array([pose[n] for n in self._joint_names])
            d.qpos[self._qpos_adr] = values
            for follower, leader, offset, gain in self._mimics:
                d.qpos[follower] = offset + gain * d.qpos[leader]
            d.ctrl[self._act_ids] = values
            self._clock = 0.0  # requested simulated time: sum of step() dt since reset
            self._base_cmd = (0.0, 0.0)
            self._base_pose[:] = 0.0
            self._apply_base_pose()
            mujoco.mj_forward(m, d)

    def place(self, positions: dict[str, Sequence[float]]) -> None:
        """Move free objects (x, y, z; upright, at rest) and mocap markers (x, y, z) by body name.

        Raises ValueError for a body that is neither a free object nor a mocap body, or a non-finite position.
        """
        m = self._model
        with self._lock:
            for name, xyz in positions.items():
                pos = np.asarray(xyz, dtype=np.float64).reshape(-1)
                if pos.size != 3 or not np.all(np.isfinite(pos)):
                    raise ValueError(f"place: {name!r}: expected a finite (x, y, z), got {list(pos)}")
                try:
                    body = m.body(name)
                except KeyError:
                    raise ValueError(f"place: no body named {name!r} in the scene") from None
                mocap = int(m.body_mocapid[body.id])
                if mocap >= 0:
                    self._data.mocap_pos[mocap] = pos
                    continue
                joint = int(m.body_jntadr[body.id])
                if joint < 0 or m.jnt_type[joint] != mujoco.mjtJoint.mjJNT_FREE:
                    raise ValueError(f"place: body {name!r} is neither a free object nor a mocap body")
                adr, dof = int(m.jnt_qposadr[joint]), int(m.jnt_dofadr[joint])
                self._data.qpos[adr:adr + 7] = (*pos, 1.0, 0.0, 0.0, 0.0)
                self._data.qvel[dof:dof + 6] = 0.0
            mujoco.mj_forward(m, self._data)

    def body_position(self, name: str) -> np.ndarray:
        """(x, y, z) m of a body's origin in the world frame."""
        with self._lock:
            return self._data.body(name).xpos.copy()

    def set_targets(self, names: Sequence[str], positions: np.ndarray | Sequence[float]) -> None:
        """Position-actuator targets for `names` (rad | m), clamped to the config joint limits.

        Raises ValueError for an unknown joint, a length mismatch or a non-finite position.
        """
        values = np.asarray(positions, dtype=np.float64).reshape(-1)
        if len(names) != values.size:
            raise ValueError(f"set_targets: {len(names)} joint names but {values.size} positions")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"set_targets: non-finite positions {values.tolist()}")
        idx = np.array([self._require_joint(n) for n in names], dtype=np.intp)
        clamped = np.clip(values, self._lower[idx], self._upper[idx])
        with self._lock:
            self._data.ctrl[self._act_ids[idx]] = clamped

    def targets(self) -> dict[str, float]:
        """Current position targets, joint -> rad | m."""
        with self._lock:
            ctrl = self._data.ctrl[self._act_ids].copy()
        return dict(zip(self._joint_names, ctrl.tolist(), strict=True))

    def set_base_velocity(self, linear_x: float, angular_z: float) -> None:
        """Mobile-base command (m/s forward, rad/s yaw), clamped to the config's base_velocity limits.

        The base moves kinematically (no wheel dynamics) while `step` runs. Raises ValueError on a robot
        without a mobile base.
        """
        if not self.has_mobile_base:
            raise ValueError(f"{self._embodiment.name}: set_base_velocity: this robot has no mobile base")
        if not (math.isfinite(linear_x) and math.isfinite(angular_z)):
            raise ValueError(f"set_base_velocity: non-finite command ({linear_x}, {angular_z})")
        (vlo, vhi), (wlo, whi) = self._base_limits
        with self._lock:
            self._base_cmd = (min(max(linear_x, vlo), vhi), min(max(angular_z, wlo), whi))

    def base_pose(self) -> tuple[float, float, float]:
        """(x m, y m, yaw rad) of the mobile base relative to where it started."""
        with self._lock:
            return tuple(float(v) for v in self._base_pose)  # type: ignore[return-value]

    def step(self, dt: float) -> None:
        """Advance physics by dt seconds in whole physics steps (`model.opt.timestep`).

        The rounding remainder carries over to the next call, so simulated time stays within half a physics
        step of the sum of all dt since reset (30 x 1/30 s is 1 s, not 30 x 17 x 2 ms).
        """
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"step: dt must be a positive number of seconds, got {dt}")
        with self._lock:
            self._clock += dt
            timestep = self._model.opt.timestep
            n = int(round((self._clock - self._data.time) / timestep))
            if n <= 0:
                return
            if self.has_mobile_base and self._base_cmd != (0.0, 0.0):
                self._integrate_base(n * timestep)
            mujoco.mj_step(self._model, self._data, nstep=n)

    # ----------------------------------------------------------------------------------------
    # State and images
    # ----------------------------------------------------------------------------------------

    def joint_positions(self) -> dict[str, float]:
        """joint -> position (rad | m)."""
        with self._lock:
            q = self._data.qpos[self._qpos_adr].copy()
        return dict(zip(self._joint_names, q.tolist(), strict=True))

    def joint_velocities(self) -> dict[str, float]:
        """joint -> velocity (rad/s | m/s)."""
        with self._lock:
            v = self._data.qvel[self._dof_adr].copy()
        return dict(zip(self._joint_names, v.tolist(), strict=True))

    def render(self, camera: str) -> np.ndarray:
        """[H, W, 3] uint8 RGB image from the embodiment camera `camera` at its render size."""
        return self.render_all((camera,))[1][camera]

    def render_all(self, cameras: Sequence[str] | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """(simulated time s, camera -> [H, W, 3] uint8 RGB) for `cameras` (default all), all at one instant.

        The state lock is held only while the scenes are copied out of MjData (well under a millisecond);
        the drawing itself runs under a separate GL lock, so physics keeps stepping while cameras render.
        """
        names = tuple(self.camera_names if cameras is None else cameras)
        for camera in names:
            if camera not in self._render_size:
                raise ValueError(f"render: unknown camera {camera!r}; cameras are {list(self.camera_names)}")
        with self._gl_lock:
            renderers = [self._renderer(camera) for camera in names]
            with self._lock:
                sim_time = self.time
                for camera, renderer in zip(names, renderers, strict=True):
                    renderer.update_scene(self._data, camera=camera)
            images = {}
            try:
                for camera, renderer in zip(names, renderers, strict=True):
                    images[camera] = renderer.render().copy()
            finally:
                _release_gl_context()
        return sim_time, images

    def gl_info(self) -> dict[str, str]:
        """GL vendor, renderer and version of the cameras' context (e.g. renderer 'llvmpipe' = CPU rendering)."""
        from OpenGL import GL  # PyOpenGL comes with mujoco's EGL and OSMesa backends

        with self._gl_lock:
            renderer = self._renderer(self.camera_names[0])
            renderer._gl_context.make_current()  # mujoco exposes no public way to bind it outside render()
            try:
                return {key: GL.glGetString(name).decode() for key, name in
                        (("vendor", GL.GL_VENDOR), ("renderer", GL.GL_RENDERER), ("version", GL.GL_VERSION))}
            finally:
                _release_gl_context()

    def close(self) -> None:
        """Free the GL contexts (also done at garbage collection)."""
        with self._gl_lock:
            for renderer in self._renderers.values():
                renderer.close()
            self._renderers.clear()

    def __enter__(self) -> SimRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _resolve_render_size(
        embodiment: EmbodimentConfig, render_size: dict[str, tuple[int, int]] | None
    ) -> dict[str, tuple[int, int]]:
        sizes = {c.name: tuple(c.source_size) for c in embodiment.cameras}
        for name, size in (render_size or {}).items():
            if name not in sizes:
                raise ValueError(f"render_size: unknown camera {name!r}; cameras are {list(sizes)}")
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise ValueError(f"render_size[{name!r}]: expected (H, W) positive integers, got {size!r}")
            sizes[name] = (int(size[0]), int(size[1]))
        return sizes  # type: ignore[return-value]

    def _require_joint(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(
                f"{self._embodiment.name}: unknown joint {name!r}; joints are {list(self._joint_names)}"
            ) from None

    def _joint_mimics(self) -> list[tuple[int, int, float, float]]:
        """(follower qpos adr, leader qpos adr, offset, gain) for URDF <mimic> joints (joint equalities)."""
        m = self._model
        out = []
        for e in range(m.neq):
            if m.eq_type[e] != mujoco.mjtEq.mjEQ_JOINT or m.eq_obj2id[e] < 0:
                continue
            follower, leader = m.jnt_qposadr[m.eq_obj1id[e]], m.jnt_qposadr[m.eq_obj2id[e]]
            out.append((int(follower), int(leader), float(m.eq_data[e][0]), float(m.eq_data[e][1])))
        return out

    def _base_velocity_limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        for group in self._embodiment.extra_actions:
            if tuple(group.components) == BASE_VELOCITY_COMPONENTS:
                return group.limits[0], group.limits[1]
        return (-math.inf, math.inf), (-math.inf, math.inf)

    def _integrate_base(self, dt: float) -> None:
        v, w = self._base_cmd
        x, y, yaw = self._base_pose
        mid = yaw + 0.5 * w * dt  # midpoint heading: exact enough for arcs over one control period
        self._base_pose[:] = (x + v * math.cos(mid) * dt, y + v * math.sin(mid) * dt, yaw + w * dt)
        self._apply_base_pose()

    def _apply_base_pose(self) -> None:
        if self._mocap_id < 0:
            return
        x, y, yaw = self._base_pose
        self._data.mocap_pos[self._mocap_id] = self._base_origin + np.array([x, y, 0.0])
        self._data.mocap_quat[self._mocap_id] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))

    def _renderer(self, camera: str) -> mujoco.Renderer:
        renderer = self._renderers.get(camera)
        if renderer is None:
            renderer = self._renderers[camera] = self._make_renderer(*self._render_size[camera])
        return renderer

    def _make_renderer(self, height: int, width: int) -> mujoco.Renderer:
        backend = getattr(mujoco, "GLContext", None)  # the GL backend class mujoco chose at import
        if getattr(backend, "__module__", "").startswith("mujoco.glfw") and not os.environ.get("DISPLAY"):
            # GLFW without a display fails deep inside GL (sometimes fatally): say what to do instead.
            raise RuntimeError(
                "mujoco chose its GLFW backend (it was imported before dreamzero_ros.sim with MUJOCO_GL unset) and "
                "there is no DISPLAY: set MUJOCO_GL=egl (or osmesa) before mujoco is first imported"
            )
        try:
            renderer = mujoco.Renderer(self._model, height, width)
            _release_gl_context()  # creation leaves the context bound to this thread
        except Exception as exc:  # GL backends fail with many exception types (ImportError, FatalError, ...)
            raise RuntimeError(
                f"cannot create a {width}x{height} MuJoCo renderer (MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')!r}): set MUJOCO_GL=egl (Debian: libegl1 "
                "libgl1-mesa-dri) or MUJOCO_GL=osmesa (libosmesa6) before mujoco is first imported"
            ) from exc
        # Belt and braces: the model already has no shadow-casting lights or reflective materials.
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        return renderer


def _release_gl_context() -> None:
    """Unbind the calling thread's EGL context, so the next render may run on any thread.

    EGL binds a context to one thread at a time: without this, a render from a second thread (a ROS executor
    hands timer callbacks to whichever worker is free) fails with EGL_BAD_ACCESS. OSMesa rebinds freely and
    GLFW needs a display (and its own UI thread) anyway.
    """
    if os.environ.get("MUJOCO_GL") != "egl":
        return
    from mujoco import egl  # only on the EGL backend: importing it loads libEGL

    egl.EGL.eglMakeCurrent(egl.EGL_DISPLAY, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_CONTEXT)
