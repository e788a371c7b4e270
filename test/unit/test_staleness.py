"""The camera gate publishes synced sets, and applies the stale policy (black / hold / stop) per tick."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dreamzero_ros.core.embodiment import load_embodiment
from dreamzero_ros.core.staleness import CameraGate

EMB = load_embodiment("franka_droid")  # cameras exterior_1, exterior_2, wrist; timeout 0.5 s, slop 0.05 s


def gate(policy: str) -> CameraGate:
    return CameraGate(EMB.cameras, dataclasses.replace(EMB.stitch, stale_policy=policy))


def img(value: int) -> np.ndarray:
    return np.full((180, 320, 3), value, dtype=np.uint8)


def feed(g: CameraGate, t: float, cams=("exterior_1", "exterior_2", "wrist"), value: int = 10) -> None:
    for i, cam in enumerate(cams):
        g.push(cam, t + 0.005 * i, img(value + i), now=t + 0.01)


def test_fresh_cameras_publish_the_synced_set_once_with_the_newest_stamp():
    g = gate("black")
    feed(g, 1.0)
    d = g.tick(1.05)
    assert d.publish and d.reason == "" and d.stale == ()
    assert d.stamp == pytest.approx(1.01)
    assert [int(d.views[c][0, 0, 0]) for c in ("exterior_1", "exterior_2", "wrist")] == [10, 11, 12]
    again = g.tick(1.1)  # nothing new since
    assert not again.publish and again.reason == "waiting for a synced set"


def start_without_wrist(g: CameraGate) -> None:
    """Two cameras deliver from t=1.0; the wrist never does; the exteriors keep coming at 1.55."""
    feed(g, 1.0, cams=("exterior_1", "exterior_2"))
    feed(g, 1.55, cams=("exterior_1", "exterior_2"))


def test_a_camera_that_has_not_delivered_yet_gets_a_start_up_grace_of_one_stale_timeout():
    g = gate("black")
    feed(g, 1.0, cams=("exterior_1", "exterior_2"))
    d = g.tick(1.05)  # 0.04 s after the first image: the wrist may just be a frame behind
    assert d.stale == () and not d.publish and d.reason == "waiting for a synced set"
    assert g.stale(1.4) == ()
    feed(g, 1.55, cams=("exterior_1", "exterior_2"))
    assert g.stale(1.6) == ("wrist",)  # 0.59 s since the first image: the grace is over


def test_a_never_seen_camera_is_stale_and_black_policy_blacks_it_out():
    g = gate("black")
    start_without_wrist(g)
    d = g.tick(1.6)
    assert d.stale == ("wrist",)
    assert d.publish and "policy black" in d.reason
    assert d.views["wrist"].shape == (180, 320, 3) and d.views["wrist"].max() == 0
    assert d.views["exterior_1"][0, 0, 0] == 10


def test_a_camera_goes_stale_after_the_timeout_and_recovers_when_frames_return():
    g = gate("black")
    feed(g, 1.0)
    assert g.tick(1.05).publish
    feed(g, 1.2, cams=("exterior_1", "exterior_2"))  # wrist stops after its 1.0 frame (arrived 1.01)
    assert g.stale(1.5) == ()  # 0.49 s since the wrist's last arrival
    d = g.tick(1.52)
    assert d.stale == ("wrist",) and d.publish and d.views["wrist"].max() == 0
    feed(g, 1.6)
    d = g.tick(1.65)
    assert d.stale == () and d.reason == "" and d.views["wrist"][0, 0, 0] == 12


def test_hold_policy_repeats_the_stale_cameras_last_frame():
    g = gate("hold")
    feed(g, 1.0)
    g.tick(1.05)
    feed(g, 1.4, cams=("exterior_1", "exterior_2"), value=50)
    d = g.tick(1.6)
    assert d.stale == ("wrist",) and d.publish
    assert d.views["wrist"][0, 0, 0] == 12 and d.views["exterior_1"][0, 0, 0] == 50


def test_hold_policy_publishes_nothing_while_a_camera_never_delivered():
    g = gate("hold")
    start_without_wrist(g)
    d = g.tick(1.6)
    assert not d.publish and "['wrist'] never delivered" in d.reason


def test_stop_policy_publishes_nothing_while_any_camera_is_stale():
    g = gate("stop")
    start_without_wrist(g)
    d = g.tick(1.6)
    assert not d.publish and d.stale == ("wrist",) and "policy stop" in d.reason


def test_nothing_is_published_when_every_camera_is_stale_whatever_the_policy():
    for policy in ("black", "hold", "stop"):
        g = gate(policy)
        feed(g, 1.0)
        d = g.tick(5.0)
        assert not d.publish and d.stale == ("exterior_1", "exterior_2", "wrist")
        assert d.reason.startswith("all cameras stale")


def test_published_stamps_strictly_increase_under_the_stale_policy():
    g = gate("black")
    start_without_wrist(g)
    assert g.tick(1.6).publish
    d = g.tick(1.65)  # no newer frames from the fresh cameras
    assert not d.publish and d.stale == ("wrist",)


def test_an_unknown_camera_is_rejected_by_name():
    with pytest.raises(KeyError, match="unknown camera 'thermal'"):
        gate("black").push("thermal", 0.0, img(0), 0.0)
