"""What the camera stitcher publishes each tick: time-synced views, or the stale-camera policy.

Owns per-view last-arrival tracking and the stale policy (stitch.stale_policy), combined with the
approximate time sync so the stitcher node has one small pure object to drive:

    gate = CameraGate.from_embodiment(embodiment)
    # image callback (any camera):  gate.push(camera_name, stamp_s, rgb_image, now_s)
    # publish timer at video fps:   d = gate.tick(now_s)
    #                               if d.publish: publish(stitch_views(d.views, embodiment), stamp=d.stamp)
    #                               diagnostics: d.stale (camera names), d.reason

A camera is stale when its last image ARRIVED (receive time, `now` of push) more than
stitch.stale_timeout seconds ago, or never arrived. Arrival time, not the header stamp, because a
camera whose driver stamps badly is still alive if frames keep coming.

Per tick:
- no camera stale: publish the newest synced set (one frame per camera within sync_slop) if one
  came in since the last publish; otherwise publish nothing (reason "waiting for a synced set").
- some stale, policy "black": fresh cameras' newest frames, black images for the stale ones.
- some stale, policy "hold": fresh cameras' newest frames, the stale ones' last frame (nothing is
  published while a stale camera has never delivered a frame).
- some stale, policy "stop": publish nothing.
- all cameras stale: publish nothing, whatever the policy (there is nothing real to show).
A published stamp is the newest stamp among the real frames used, and published stamps strictly
increase (a tick that would repeat or go back in time publishes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dreamzero_ros.core.embodiment import STALE_POLICIES, CameraConfig, EmbodimentConfig, StitchConfig
from dreamzero_ros.core.stitch import black_view
from dreamzero_ros.core.timesync import ApproximateTimeSync


@dataclass(frozen=True, slots=True)
class StaleDecision:
    """The outcome of one publish tick.

    publish: whether to stitch and publish now.
    views: {camera name: RGB uint8 image} to hand to stitch_views when publish, else None.
    stamp: s, the stamp to publish the stitched frame with (newest real frame used), else None.
    stale: names of the cameras stale at this tick (for diagnostics), in camera order.
    reason: "" for a normal synced publish; otherwise why the tick deviated (stale cameras, waiting).
    """

    publish: bool
    views: dict[str, np.ndarray] | None
    stamp: float | None
    stale: tuple[str, ...]
    reason: str


class CameraGate:
    """Time sync + staleness for the stitcher node; pure, every method takes `now` in seconds."""

    def __init__(self, cameras: Sequence[CameraConfig], stitch: StitchConfig) -> None:
        if stitch.stale_policy not in STALE_POLICIES:
            raise ValueError(f"stale_policy must be one of {list(STALE_POLICIES)}, got {stitch.stale_policy!r}")
        self.cameras = tuple(cameras)
        self.names = tuple(c.name for c in self.cameras)
        self.stale_timeout = stitch.stale_timeout
        self.policy = stitch.stale_policy
        self.sync: ApproximateTimeSync[np.ndarray] = ApproximateTimeSync(
            self.names, stitch.sync_slop, stitch.sync_queue_size
        )
        self._arrival: dict[str, float] = {}  # camera -> receive time (s) of its newest image
        self._arrival_first: dict[str, float] = {}  # camera -> receive time (s) of its first image
        self._latest: dict[str, tuple[float, np.ndarray]] = {}  # camera -> (stamp, image), newest
        self._synced: dict[str, tuple[float, np.ndarray]] | None = None  # newest synced set, unpublished
        self._last_published = float("-inf")
        self.published = 0
        self.stale_ticks = 0  # ticks at which at least one camera was stale

    @classmethod
    def from_embodiment(cls, embodiment: EmbodimentConfig) -> CameraGate:
        return cls(embodiment.cameras, embodiment.stitch)

    def push(self, name: str, stamp: float, image: np.ndarray, now: float) -> None:
        """An image from camera `name` with header stamp `stamp` (s) was received at `now` (s)."""
        if name not in self.names:
            raise KeyError(f"CameraGate: unknown camera {name!r}; cameras are {list(self.names)}")
        self._arrival[name] = now
        self._arrival_first.setdefault(name, now)
        previous = self._latest.get(name)
        if previous is None or stamp >= previous[0]:
            self._latest[name] = (stamp, image)
        synced = self.sync.push(name, stamp, image)
        if synced is not None:
            self._synced = synced

    def stale(self, now: float) -> tuple[str, ...]:
        """Cameras whose newest image arrived more than stale_timeout s before `now`, or that never
        delivered although another camera started more than stale_timeout s ago (a start-up grace:
        cameras come up a few frames apart, and a black view then is not a real observation)."""
        if not self._arrival:
            return self.names
        started = min(self._arrival_first.values())
        return tuple(
            n for n in self.names
            if (now - self._arrival[n] > self.stale_timeout if n in self._arrival else now - started > self.stale_timeout)
        )

    def tick(self, now: float) -> StaleDecision:
        """Decide what to publish at `now` (s); see the module docstring for the rules."""
        stale = self.stale(now)
        if stale:
            self.stale_ticks += 1
        if not stale:
            if self._synced is None:
                return StaleDecision(False, None, None, stale, "waiting for a synced set")
            frames = self._synced
            reason = ""
        elif len(stale) == len(self.names):
            return StaleDecision(False, None, None, stale, f"all cameras stale: {list(stale)}")
        elif self.policy == "stop":
            return StaleDecision(False, None, None, stale, f"stale cameras {list(stale)}, policy stop")
        else:
            frames = {n: self._latest[n] for n in self.names if n not in stale}
            if self.policy == "hold":
                never = [n for n in stale if n not in self._latest]
                if never:
                    return StaleDecision(
                        False, None, None, stale, f"stale cameras {never} never delivered a frame to hold"
                    )
            reason = f"stale cameras {list(stale)}, policy {self.policy}"
        stamp = max(s for s, _ in frames.values())
        if stamp <= self._last_published:
            return StaleDecision(False, None, None, stale, reason or "no frames newer than the last published")
        views: dict[str, np.ndarray] = {}
        for cam in self.cameras:
            if cam.name in frames:
                views[cam.name] = frames[cam.name][1]
            elif self.policy == "hold":
                views[cam.name] = self._latest[cam.name][1]
            else:
                views[cam.name] = black_view(cam)
        self._last_published = stamp
        self._synced = None
        self.published += 1
        return StaleDecision(True, views, stamp, stale, reason)
