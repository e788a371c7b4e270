"""Policy backends: one PolicyBackend interface, local / remote / scripted / expert implementations.

`make_backend(kind, embodiment, **opts)` builds one by name; each implementation module is
imported only when asked for, so the scripted, expert and remote backends never import torch (and only the
expert imports the simulator, for its inverse kinematics).
"""

from __future__ import annotations

from typing import Any

from dreamzero_ros.backends.base import BackendError, ChunkResult, Observation, PolicyBackend
from dreamzero_ros.core.embodiment import EmbodimentConfig

__all__ = ["BACKEND_KINDS", "BackendError", "ChunkResult", "Observation", "PolicyBackend", "make_backend"]

BACKEND_KINDS = ("local", "remote", "scripted", "expert")

#: options the inference node passes to every kind; a kind that does not use one ignores it
_COMMON = ("checkpoint", "server", "token", "seed", "decode_video")
#: options each kind accepts (its constructor's keyword arguments)
_ACCEPTED = {
    "local": ("model", "checkpoint", "preset", "seed", "device", "dtype", "decode_video", "metadata_key"),
    "remote": ("server", "token", "connect_timeout", "request_timeout", "max_message_size", "ping_interval",
               "ping_timeout", "backoff_initial", "backoff_max", "connect_now"),
    "scripted": ("amplitude", "period", "margin", "velocity_fraction", "home", "extras_amplitude", "delay"),
    "expert": (),
}


def make_backend(kind: str, embodiment: EmbodimentConfig, **opts: Any) -> PolicyBackend:
    """A backend of `kind` ("local" | "remote" | "scripted" | "expert") for `embodiment`.

    opts: the kind's constructor keywords. The node's common options (checkpoint, server, token,
    seed, decode_video) are accepted by every kind and dropped where unused; any other unknown
    option raises TypeError. "remote" needs server=<ws://host:port>.
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f"backend: expected one of {list(BACKEND_KINDS)}, got {kind!r}")
    accepted = _ACCEPTED[kind]
    unknown = sorted(k for k in opts if k not in accepted and k not in _COMMON)
    if unknown:
        allowed = sorted(set(accepted) | set(_COMMON))
        raise TypeError(f"backend {kind!r}: unknown options {unknown}; accepted: {allowed}")
    kwargs = {k: v for k, v in opts.items() if k in accepted}
    if kind == "local":
        from dreamzero_ros.backends.local import LocalBackend

        return LocalBackend(embodiment, **kwargs)
    if kind == "remote":
        from dreamzero_ros.backends.remote import RemoteBackend

        server = kwargs.pop("server", None)
        if not server:
            raise ValueError("backend 'remote': server: expected a URL like ws://127.0.0.1:8000, got none")
        return RemoteBackend(embodiment, server, **kwargs)
    if kind == "expert":
        from dreamzero_ros.backends.expert import ExpertBackend

        return ExpertBackend(embodiment)
    from dreamzero_ros.backends.scripted import ScriptedBackend

    return ScriptedBackend(embodiment, **kwargs)
