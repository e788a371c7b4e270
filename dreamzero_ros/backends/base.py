"""The PolicyBackend interface and the data it exchanges with the inference node.

A backend turns an observation (stitched frames, per-camera views, joint state, instruction)
into an action chunk in ABSOLUTE joint targets, SI units, with joint names. Un-normalisation,
relative-to-absolute conversion and effector mapping happen exactly once: inside the local
backend; for the remote one the client converts SI <-> model units once on its side of the wire
and the server works in model units only (`PolicyBackend.infer_model_units`).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field

import numpy as np

from dreamzero_ros.core.action_space import ActionSpace
from dreamzero_ros.core.embodiment import EmbodimentConfig


class BackendError(RuntimeError):
    """A backend could not produce a chunk (connection lost, server error, bad reply)."""


@dataclass(slots=True)
class Observation:
    """What the policy sees at one request.

    stamp: observation time in seconds (ROS time of the newest frame).
    frames: [T, H, W, 3] uint8 stitched frames, oldest first, framed as the release frames a call: the
        newest frame on an episode's first request (T = 1, which starts an episode), the newest 4
        afterwards (front-padded with the oldest when fewer were seen). These are REAL observations:
        the model writes them into its KV cache in place of its own predictions.
    state: [S] float64 joint positions in the embodiment's state_joints order, SI units.
    views: optional per-camera frames {camera name: [T, h, w, 3] uint8 at the camera's source_size},
        needed by the remote protocol (the server stitches them itself).
    """

    stamp: float
    frames: np.ndarray
    state: np.ndarray
    views: dict[str, np.ndarray] | None = None


@dataclass(slots=True)
class ChunkResult:
    """An action chunk ready to publish.

    positions: [horizon, J] float64 absolute joint targets (rad, m) in `joint_names` order;
        row k is the target for time stamp + (k + 1) * dt.
    extras: {group name: [horizon, C] float64}, e.g. AgiBot's base velocity.
    latency: seconds spent inside infer().
    predicted_frames: optional [T, H, W, 3] uint8 decoded future video (the model's visual plan).
    """

    joint_names: tuple[str, ...]
    positions: np.ndarray
    dt: float
    latency: float
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    predicted_frames: np.ndarray | None = None


@dataclass(slots=True)
class ModelChunk:
    """An action chunk in the model's units, as a policy server sends it.

    actions: [horizon, A] float absolute targets in MODEL units (effectors mapped, relative groups
        made absolute), action_joints order then the extra groups.
    latency: seconds spent producing it.
    predicted_frames: optional [T, H, W, 3] uint8 decoded future video.
    """

    actions: np.ndarray
    latency: float
    predicted_frames: np.ndarray | None = None


class PolicyBackend(abc.ABC):
    """One interface for the local model, a remote server and the scripted test generator."""

    #: short name reported in PolicyStatus.backend
    name: str = "base"
    #: the embodiment the backend serves (every implementation sets it)
    embodiment: EmbodimentConfig
    #: whether the inference node should hand it the simulator's episode (`set_sim_task`): only the scripted
    #: expert, which acts on privileged object positions where a model has only the images
    uses_sim_task: bool = False
    #: control steps between the observations of consecutive chunks the policy was trained at (its checkpoint's
    #: `execute_steps`); the inference node keeps that cadence where latency allows. None: not known
    execute_steps: int | None = None

    @abc.abstractmethod
    def reset(self) -> None:
        """Start a new episode: clear the model's context (KV cache, frame buffers)."""

    @abc.abstractmethod
    def set_instruction(self, instruction: str) -> None:
        """Set the language instruction (raw, untemplated); a change resets the episode."""

    @abc.abstractmethod
    def infer(self, observation: Observation) -> ChunkResult:
        """Produce the next chunk for `observation`; raises BackendError on failure."""

    def infer_model_units(self, frames: np.ndarray, state_model: np.ndarray,
                          views: dict[str, np.ndarray] | None = None) -> ModelChunk:
        """The next chunk for a policy server, which receives the state and returns the actions in model
        units. frames: [T, H, W, 3] uint8 stitched; state_model: [S] model units.

        This default serves backends that work in SI (the scripted test tool) by converting at this
        boundary; the local backend overrides it and never leaves model units.
        """
        units = ActionSpace(self.embodiment, None, warn_if_identity=False)
        result = self.infer(Observation(stamp=time.time(), frames=frames, state=units.state_from_model(state_model),
                                        views=views))
        return ModelChunk(units.si_to_model_actions(result.positions, result.extras), result.latency,
                          result.predicted_frames)

    def checked_state(self, observation: Observation) -> np.ndarray:
        """The observation's joint state [S] (state_joints order, SI) as float64; BackendError naming the backend
        when its shape does not match the embodiment."""
        state = np.asarray(observation.state, dtype=np.float64)
        if state.shape != (len(self.embodiment.state_joints),):
            raise BackendError(f"{self.name}: state: expected shape [{len(self.embodiment.state_joints)}], "
                               f"got {list(state.shape)}")  # fmt: skip
        return state

    def set_sim_task(self, task: dict) -> None:  # noqa: B027 - optional hook
        """The simulator's latest episode state, the /sim/task JSON decoded (task, seed, instruction, success,
        objects, pad; see nodes/sim_robot_node.py). Called only when `uses_sim_task`."""

    @property
    def connected(self) -> bool:
        """Whether the backend can serve a request now (a remote one may be reconnecting)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sockets, threads, GPU memory)."""
