"""The control channel and the cancel-request mailbox, without pytest sessions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pytest_planrun.run.control import CancelRequests, ControlChannel, send_cancel
from pytest_planrun.run.process import CancelToken


def test_a_request_reaches_the_listener_and_the_channel_closes(tmp_path: Path) -> None:
    received: list[str] = []
    arrived = threading.Event()

    def on_cancel(step_id: str) -> None:
        received.append(step_id)
        arrived.set()

    channel = ControlChannel(tmp_path, on_cancel)
    assert channel.open()
    send_cancel(tmp_path, "build")
    assert arrived.wait(10)
    channel.close()
    assert received == ["build"]
    assert not (tmp_path / "control").exists()
    with pytest.raises(ConnectionError):
        send_cancel(tmp_path, "build")  # nobody listens any more


def test_a_fifo_nobody_reads_refuses_the_request(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "control")  # left behind by a controller that died
    with pytest.raises(ConnectionError):
        send_cancel(tmp_path, "build")


def test_requests_stop_local_attempts_before_and_while_they_run() -> None:
    requests = CancelRequests("cancelled on request")
    running = CancelToken()
    requests.track("a", running)
    requests.post("a")
    assert running.reason == "cancelled on request"
    requests.post("b")  # before b starts: its token is cancelled when it is tracked
    later = CancelToken()
    requests.track("b", later)
    assert later.reason == "cancelled on request"
    assert requests.drain() == ["a", "b"] and requests.drain() == []
    requests.track("a", None)
