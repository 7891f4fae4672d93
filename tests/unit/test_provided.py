"""Files steps hand to each other: kept with a checksum after the producer, checked and placed
before the consumer (run/provided.py), and carried between machines by the worker link and the
controller's inbox (remote/)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pytest_planrun.remote.inbox import Inbox
from pytest_planrun.remote.link import WorkerLink
from pytest_planrun.remote.messages import CHUNK
from pytest_planrun.run.provided import ProvidedFile, ProvideFailed, collect, deliver, kept_path
from pytest_planrun.run.records import AttemptRecord


def test_collect_keeps_a_copy_with_its_checksum(tmp_path: Path) -> None:
    cwd, run_dir = tmp_path / "work", tmp_path / "run"
    (cwd / "dist").mkdir(parents=True)
    (cwd / "dist" / "app.tgz").write_bytes(b"payload")
    (kept,) = collect([("app", "dist/app.tgz")], cwd, run_dir, limit_bytes=100)
    assert kept == ProvidedFile("app", "dist/app.tgz", 7, hashlib.sha256(b"payload").hexdigest())
    assert kept_path(run_dir, "dist/app.tgz").read_bytes() == b"payload"
    assert not list(kept_path(run_dir, "dist/app.tgz").parent.glob(".*.part"))  # nothing half-written left


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda cwd: None, "file dist/app.tgz not found in"),
        (lambda cwd: (cwd / "dist" / "app.tgz").mkdir(), "is not a regular file"),
        (lambda cwd: (cwd / "dist" / "app.tgz").write_bytes(b"x" * 101), "101 bytes, above the limit of 100 bytes"),
    ],
    ids=["missing", "a folder", "too large"],
)
def test_collect_refuses_what_it_cannot_hand_on(tmp_path: Path, make: object, message: str) -> None:
    cwd = tmp_path / "work"
    (cwd / "dist").mkdir(parents=True)
    make(cwd)  # type: ignore[operator]
    with pytest.raises(ProvideFailed, match=message) as raised:
        collect([("app", "dist/app.tgz")], cwd, tmp_path / "run", limit_bytes=100)
    assert str(raised.value).startswith("provides 'app': ")


def test_deliver_places_the_file_in_the_consumers_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    producer, consumer = tmp_path / "producer", tmp_path / "consumer"
    (producer / "dist").mkdir(parents=True)
    (producer / "dist" / "app.tgz").write_bytes(b"payload")
    files = collect([("app", "dist/app.tgz")], producer, run_dir, limit_bytes=100)
    deliver(files, consumer, run_dir)
    assert (consumer / "dist" / "app.tgz").read_bytes() == b"payload"
    # in the producer's own folder the file is already there and stays untouched
    before = (producer / "dist" / "app.tgz").stat().st_ino
    deliver(files, producer, run_dir)
    assert (producer / "dist" / "app.tgz").stat().st_ino == before


def test_deliver_refuses_a_damaged_or_missing_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "app.tgz").write_bytes(b"payload")
    (file,) = collect([("app", "dist/app.tgz")], tmp_path, run_dir, limit_bytes=100)
    kept_path(run_dir, "dist/app.tgz").write_bytes(b"paylOad")
    with pytest.raises(ProvideFailed, match=r"consumes 'app': file dist/app.tgz arrived damaged \(sha256 "):
        deliver([file], tmp_path / "consumer", run_dir)
    assert not (tmp_path / "consumer" / "dist" / "app.tgz").exists()
    kept_path(run_dir, "dist/app.tgz").unlink()
    with pytest.raises(ProvideFailed, match="was not delivered"):
        deliver([file], tmp_path / "consumer", run_dir)


class Wire:
    """A side channel that hands each message straight to the controller's inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.sizes: list[int] = []

    def send(self, message: tuple[object, ...]) -> None:
        for part in message:
            if isinstance(part, bytes):
                self.sizes.append(len(part))
        self.inbox.receive(message)


def test_output_and_files_reach_the_controllers_run_dir_in_bounded_pieces(tmp_path: Path) -> None:
    worker_run, controller_run = tmp_path / "worker", tmp_path / "controller"
    inbox = Inbox(controller_run, "gw0")
    wire = Wire(inbox)
    link = WorkerLink(worker_run)
    link.attach(wire)
    out = bytes(range(256)) * 1000  # 256 kB: more than one piece
    forward = link.forwarder("build", 2)
    forward("stdout", out[:1000])
    # the controller's copy grows as output comes, before the attempt ends
    assert (controller_run / "steps" / "build" / "attempt-2.stdout.log").read_bytes() == out[:1000]
    forward("stdout", out[1000:])
    forward("stderr", b"warning\n")
    big = b"z" * (3 * CHUNK + 5)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "app.bin").write_bytes(big)
    provided = collect([("app", "dist/app.bin")], tmp_path, worker_run, limit_bytes=len(big))
    record = AttemptRecord("build", 2, "succeeded", 0, False, 0.0, 0.0, 0.0, "make", "", "", provided=provided)
    link.attempt_done(record)
    assert (controller_run / "steps" / "build" / "attempt-2.stdout.log").read_bytes() == out
    assert (controller_run / "steps" / "build" / "attempt-2.stderr.log").read_bytes() == b"warning\n"
    assert kept_path(controller_run, "dist/app.bin").read_bytes() == big
    assert inbox.received == {"dist/app.bin": provided[0].sha256}
    assert max(wire.sizes) <= CHUNK


def test_a_worker_receives_a_consumers_file_whole(tmp_path: Path) -> None:
    link = WorkerLink(tmp_path / "run")
    link.receive_file("dist/app.bin", b"abc", False)
    assert not kept_path(tmp_path / "run", "dist/app.bin").exists()  # not before its last piece
    link.receive_file("dist/app.bin", b"def", True)
    assert kept_path(tmp_path / "run", "dist/app.bin").read_bytes() == b"abcdef"


def test_a_bad_message_does_not_stop_the_inbox(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox = Inbox(tmp_path, "gw3")
    inbox.receive(("nonsense",))
    inbox.receive(("out", "a", 1, "stdout", b"still here"))
    assert (tmp_path / "steps" / "a" / "attempt-1.stdout.log").read_bytes() == b"still here"
    assert "bad message from worker gw3" in caplog.text
    inbox.close()
