"""Operator commands over real DDS when nothing answers: the command fails and names what it could not reach."""

from __future__ import annotations

import time

import pytest

from dreamzero_ros.apps.operator_commands import Operator, OperatorError


def test_an_e_stop_that_no_executor_hears_fails_naming_its_topic_instead_of_reporting_it_sent() -> None:
    start = time.monotonic()
    with Operator(timeout=1.0, namespace="/nobody_here") as op, \
            pytest.raises(OperatorError, match=r"/nobody_here/dreamzero/estop, but no executor subscribes"):
        op.estop()
    assert time.monotonic() - start < 10.0  # the timeout bounds the wait
