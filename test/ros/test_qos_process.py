"""ros/qos.subscribe_latched_and_volatile over real DDS: two rclpy contexts, one publishing, one hearing."""

from __future__ import annotations

import pytest
from std_msgs.msg import String

from dreamzero_ros.ros import qos
from dreamzero_ros.testing.probes import RosProbe, wait_until

TOPIC = "qos_test/value"


@pytest.fixture
def listener():
    p = RosProbe("qos_listener")
    yield p
    p.close()


def test_a_value_topic_is_heard_once_per_sample_ends_on_the_newest_and_hears_plain_publishers(probe, listener):
    latched = probe.publisher(String, TOPIC, qos.LATCHED)
    latched.publish(String(data="before"))  # published before anyone listens: only the latched reader gets it
    heard: list[str] = []
    qos.subscribe_latched_and_volatile(listener.node, String, TOPIC, lambda m: heard.append(m.data))
    assert wait_until(lambda: heard == ["before"], 10), heard
    assert wait_until(lambda: latched.get_subscription_count() == 2, 10)  # it matches both subscriptions

    burst = [f"latched {k}" for k in range(5)]
    for text in burst:  # faster than the executor takes them: the two queues interleave
        latched.publish(String(data=text))
    assert wait_until(lambda: heard[-1:] == [burst[-1]], 10), heard
    assert len(heard) == len(set(heard)), f"a sample was heard twice: {heard}"
    assert [t for t in heard if t in burst] == sorted(t for t in heard if t in burst), f"out of order: {heard}"

    plain = probe.publisher(String, TOPIC, 10, wait_for_subscribers=1)  # volatile: matches one subscription
    plain.publish(String(data="plain"))
    assert wait_until(lambda: heard[-1:] == ["plain"], 10), heard
    assert heard.count("plain") == 1
