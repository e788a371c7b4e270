"""The scripted expert for the simulated tasks, a hold-still baseline, and the episode rollout that runs them.

The expert plans tool-centre-point waypoints from the episode (above the cube, down around it, along the push
lane, up with the cube) and follows them at a bounded Cartesian speed. Each control step it solves inverse kinematics
with damped least squares on MuJoCo's Jacobian of the tool centre point (`mujoco.mj_jac`, position and hand
orientation, pointing down as at home) on a scratch `MjData`, starting from its own previous command, so its
joint targets are a smooth, kinematically consistent path independent of how closely the servos track them.

`rollout` steps a `SimRobot` at the embodiment's control rate: observe (state, optionally camera frames), ask
the policy for joint targets, apply them, advance physics one control period, check the task's predicate.
Without cameras an episode is physics only (~0.2 s of CPU for 6 s of simulated time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mujoco
import numpy as np

from dreamzero_ros.sim.robot import SimRobot
from dreamzero_ros.sim.tasks import CUBE_HALF, Episode, is_success, push_path, rig_for

# A policy maps the robot (its current state) to joint targets for embodiment.action_joints (rad | m).
Policy = Callable[[SimRobot], np.ndarray]

CRUISE_SPEED = 0.25  # m/s of the tool centre point between waypoints
PUSH_SPEED = 0.12  # m/s while pushing: slow enough that the cube slides without tipping
PUSH_GRIP = 0.012  # m per finger: fingers 2.4 cm apart make a 5.6 cm paddle that cannot swallow the cube
YAW_RATE = 1.5  # rad/s of hand turn
HOVER = 0.12  # m above a cube's top for the approach
IK_DAMPING = 0.05
IK_ITERATIONS = 4
DRIFT_TIME = 0.4  # s: correlation time of the executed path's drift (see ScriptedExpert)


@dataclass(frozen=True, slots=True)
class Waypoint:
    xyz: tuple[float, float, float]
    gripper_open: bool
    speed: float = CRUISE_SPEED  # m/s on the way here
    dwell: float = 0.0  # s to wait once here (e.g. for the gripper to close)
    yaw: float = 0.0  # rad: hand turned about world z from its home orientation
    grip: float | None = None  # gripper joint target; None: open or closed by gripper_open


def plan(episode: Episode, table_top: float) -> list[Waypoint]:
    """Tool-centre-point waypoints that solve `episode`."""
    x, y = episode.objects[episode.target]
    top = table_top + 2 * CUBE_HALF
    centre = table_top + CUBE_HALF
    above = (x, y, top + HOVER)
    # Reach and lift share their approach: the open hand comes down over the cube until the fingertips straddle
    # it. Reaching that deep (tool centre point ~0.5 cm from the cube's centre, not ~4 cm at the top face) leaves
    # a learned policy's few centimetres of error inside the 5 cm touch; fingers that land on the top face
    # instead still end ~4 cm from the centre.
    grasp = (x, y, centre - 0.005)
    if episode.task == "reach":
        return [Waypoint(above, True), Waypoint(grasp, True, 0.15, 0.5)]
    if episode.task == "lift":
        return [
            Waypoint(above, True), Waypoint(grasp, True, 0.15, 0.2), Waypoint(grasp, False, dwell=0.6),
            Waypoint((x, y, top + 0.15), False, 0.15, 0.5),
        ]
    if episode.task in ("push", "push_forward"):
        cube = np.array([x, y])
        end, d = push_path(episode.task, cube, np.array(episode.pad))
        low = table_top + 0.025  # fingertips ~2 cm above the table, below the cube's centre
        behind = cube - d * (CUBE_HALF + 0.045)
        goal = end - d * (CUBE_HALF + 0.012)
        after = end - d * (CUBE_HALF + 0.05)
        # Fingers side by side across the push direction (the hand's x along it; either sign: the hand is
        # symmetric, so the smaller turn), a little apart: a wide paddle keeps the cube from spinning off.
        yaw = float(np.arctan2(d[1], d[0]))
        yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2
        return [
            Waypoint((*behind, top + HOVER), False, yaw=yaw, grip=PUSH_GRIP),
            Waypoint((*behind, low), False, 0.15, yaw=yaw, grip=PUSH_GRIP),
            Waypoint((*goal, low), False, PUSH_SPEED, 0.3, yaw=yaw, grip=PUSH_GRIP),
            Waypoint((*after, low), False, PUSH_SPEED, yaw=yaw, grip=PUSH_GRIP),
            Waypoint((*after, top + HOVER), False, 0.15, 0.5, yaw=yaw, grip=PUSH_GRIP),
        ]
    raise ValueError(f"no expert plan for task {episode.task!r}")


class ScriptedExpert:
    """Jacobian-IK expert for one episode; call it once per control step with the robot.

    drift (m): DART-style perturbed demonstrations in Cartesian space. The path the robot EXECUTES
    (`executed_action`) is the expert's tool-centre-point path plus a horizontal offset, each component a
    Gauss-Markov process from zero (std `drift`, correlation time `DRIFT_TIME`) scaled by how high the expert's
    point is above the cubes' top face (full at `HOVER`, none at the top face and below). The action the expert
    RETURNS stays its clean target, so the data shows a hand that is off over the cube being taken back to it
    before it comes down, and never a hand dragged sideways through a cube. 0: no drift.
    """

    def __init__(self, robot: SimRobot, episode: Episode, *, drift: float = 0.0, drift_seed: int = 0) -> None:
        if not drift >= 0.0:
            raise ValueError(f"drift must be a non-negative distance in m, got {drift!r}")
        emb = robot.embodiment
        self.rig = rig_for(emb)
        self.model = robot.model
        self.scratch = mujoco.MjData(self.model)
        self.dt = emb.control.dt
        m = self.model
        self.hand = m.body(self.rig.hand_body).id
        self.arm_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.rig.arm_joints])
        self.arm_dof = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.rig.arm_joints])
        self.lower, self.upper, _ = emb.limits_arrays(self.rig.arm_joints)
        self.action_joints = emb.action_joints
        q = robot.joint_positions()
        self.q_cmd = np.array([q[j] for j in self.rig.arm_joints])
        home = robot.home
        self.q_home = np.array([home[j] for j in self.rig.arm_joints])
        self.R_home = self._fk(self.q_home)[1]  # hand pointing down
        self.point = self._fk(self.q_cmd)[0]  # commanded tool centre point
        self.waypoints = plan(episode, robot.layout.table_top)
        self.index = 0
        self.dwell_left = self.waypoints[0].dwell
        self.gripper_open = True
        self.grip: float | None = None
        self.yaw = 0.0  # rad about world z, relative to the hand's home orientation
        self.drift = drift
        self.cube_top = robot.layout.table_top + 2 * CUBE_HALF
        self._drift_rng = np.random.default_rng(drift_seed)
        self._offset = np.zeros(2)  # m, the drift before the height scaling
        self.q_executed = self.q_cmd.copy()

    def _fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.scratch
        d.qpos[self.arm_qpos] = q
        mujoco.mj_kinematics(self.model, d)
        R = d.xmat[self.hand].reshape(3, 3).copy()
        return d.xpos[self.hand] + R[:, 2] * self.rig.tcp_offset, R

    def _ik(self, target: np.ndarray, start: np.ndarray) -> np.ndarray:
        q = start.copy()
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        for _ in range(IK_ITERATIONS):
            p, R = self._fk(q)
            mujoco.mj_comPos(self.model, self.scratch)
            mujoco.mj_jac(self.model, self.scratch, jacp, jacr, p, self.hand)
            c, s_ = np.cos(self.yaw), np.sin(self.yaw)
            R_goal = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]]) @ self.R_home
            rot_err = 0.5 * sum(np.cross(R[:, i], R_goal[:, i]) for i in range(3))
            err = np.concatenate([target - p, rot_err])
            J = np.vstack([jacp[:, self.arm_dof], jacr[:, self.arm_dof]])
            JJt = J @ J.T + IK_DAMPING**2 * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, err)
            # Drift toward home in the null space keeps the elbow where the demonstrations expect it.
            null = np.eye(len(q)) - np.linalg.pinv(J) @ J
            dq += null @ (0.05 * (self.q_home - q))
            q = np.clip(q + dq, self.lower, self.upper)
        return q

    @property
    def done(self) -> bool:
        """All waypoints reached and their dwell times spent."""
        return self.index >= len(self.waypoints)

    def __call__(self, robot: SimRobot) -> np.ndarray:
        if not self.done:
            wp = self.waypoints[self.index]
            self.gripper_open = wp.gripper_open
            self.grip = wp.grip
            goal = np.array(wp.xyz)
            step = goal - self.point
            dist = float(np.linalg.norm(step))
            reach = wp.speed * self.dt
            self.point = goal if dist <= reach else self.point + step * (reach / dist)
            turn = wp.yaw - self.yaw
            max_turn = YAW_RATE * self.dt
            self.yaw = wp.yaw if abs(turn) <= max_turn else self.yaw + np.sign(turn) * max_turn
            if dist <= reach and self.yaw == wp.yaw:
                self.dwell_left -= self.dt
                if self.dwell_left <= 0:
                    self.index += 1
                    if not self.done:
                        self.dwell_left = self.waypoints[self.index].dwell
            self.q_cmd = self._ik(self.point, self.q_cmd)
        self.q_executed = self._drifted() if self.drift > 0 else self.q_cmd
        return self._targets(self.q_cmd)

    def executed_action(self) -> np.ndarray:
        """The targets to execute for the step the last call returned: its action plus the drift (see class)."""
        return self._targets(self.q_executed)

    def _drifted(self) -> np.ndarray:
        keep = np.exp(-self.dt / DRIFT_TIME)
        self._offset = keep * self._offset + np.sqrt(1 - keep**2) * self.drift * self._drift_rng.normal(size=2)
        height = float(np.clip((self.point[2] - self.cube_top) / HOVER, 0.0, 1.0))
        return self._ik(self.point + np.array([*(height * self._offset), 0.0]), self.q_executed)

    def _targets(self, q: np.ndarray) -> np.ndarray:
        if self.grip is not None:
            grip = self.grip
        else:
            grip = self.rig.gripper_open if self.gripper_open else self.rig.gripper_closed
        targets = dict(zip(self.rig.arm_joints, q.tolist(), strict=True))
        targets[self.rig.gripper_joint] = grip
        return np.array([targets[j] for j in self.action_joints])


def hold_still(robot: SimRobot) -> np.ndarray:
    """Baseline policy: command the current targets (the arm stays where it started)."""
    targets = robot.targets()
    return np.array([targets[j] for j in robot.embodiment.action_joints])


@dataclass
class Rollout:
    """One episode as recorded at the control rate (joint units: rad | m, the simulator's)."""

    episode: Episode
    dt: float  # s per control step
    states: np.ndarray  # [T, S] embodiment.state_joints, observed before acting
    actions: np.ndarray  # [T, A] embodiment.action_joints, the targets commanded at that step
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> [T, H, W, 3] uint8
    success: bool = False
    success_step: int | None = None  # first control step after which the predicate held

    @property
    def time_to_success(self) -> float | None:
        """s of simulated time from the start until the predicate first held (None: never)."""
        return None if self.success_step is None else (self.success_step + 1) * self.dt


def rollout(
    robot: SimRobot,
    episode: Episode,
    policy: Policy,
    *,
    cameras: Sequence[str] = (),
    settle: float = 0.5,
    stop_on_success: bool = True,
    action_noise: float = 0.0,
    noise_seed: int = 0,
    executed: Callable[[], np.ndarray] | None = None,
) -> Rollout:
    """Run `policy` on `robot` (already reset to `episode`) for up to episode.max_duration s.

    cameras: render these views every control step into Rollout.frames (none: physics only). After the
    predicate first holds the episode runs `settle` s more (the data shows the outcome), then stops if
    `stop_on_success`. action_noise: std (rad | m) of Gaussian noise added to the EXECUTED targets of every
    non-effector joint, while Rollout.actions keeps the policy's clean targets (DART-style perturbed
    demonstrations: states off the nominal path, labelled with the targets that lead back to it).
    executed: called after the policy each step, the targets to apply instead of the recorded action (e.g. a
    drifting `ScriptedExpert.executed_action`; action_noise goes on top).
    """
    emb = robot.embodiment
    dt = emb.control.dt
    rng = np.random.default_rng(noise_seed)
    noisy = np.array([emb.effector(j) is None for j in emb.action_joints], dtype=np.float64)
    steps = int(round(episode.max_duration / dt))
    settle_steps = int(round(settle / dt))
    states, actions = [], []
    frames: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    success_step: int | None = None
    for k in range(steps):
        q = robot.joint_positions()
        states.append([q[j] for j in emb.state_joints])
        if cameras:
            _, images = robot.render_all(cameras)
            for c in cameras:
                frames[c].append(images[c])
        action = np.asarray(policy(robot), dtype=np.float64)
        actions.append(action)
        if executed is not None:
            action = np.asarray(executed(), dtype=np.float64)
        if action_noise > 0:
            action = action + rng.normal(0.0, action_noise, size=action.shape) * noisy
        robot.set_targets(emb.action_joints, action)
        robot.step(dt)
        if success_step is None and is_success(robot, episode):
            success_step = k
        if stop_on_success and success_step is not None and k - success_step >= settle_steps:
            break
    return Rollout(
        episode=episode,
        dt=dt,
        states=np.asarray(states, dtype=np.float64),
        actions=np.asarray(actions, dtype=np.float64),
        frames={c: np.stack(v) for c, v in frames.items() if v},
        success=success_step is not None,
        success_step=success_step,
    )
