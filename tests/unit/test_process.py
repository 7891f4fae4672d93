"""The process runner directly: exit codes, verbatim arguments, masking across chunks, cancel, timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psutil

from pytest_planrun.run.process import AttemptSpec, CancelToken, Watch, run_attempt, sweep_orphans, tail


def spec(tmp_path: Path, *argv: str, **fields: object) -> AttemptSpec:
    values: dict[str, object] = dict(
        argv=argv,
        shell=False,
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=30.0,
        stdout_path=tmp_path / "out.log",
        stderr_path=tmp_path / "err.log",
    )
    values.update(fields)
    return AttemptSpec(**values)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_exit_code_and_output_files(tmp_path: Path) -> None:
    outcome = run_attempt(spec(tmp_path, "sh", "-c", "echo out; echo err >&2; exit 3"))
    assert (outcome.exit_code, outcome.error, outcome.timed_out) == (3, "exit code 3", False)
    assert (tmp_path / "out.log").read_text() == "out\n" and (tmp_path / "err.log").read_text() == "err\n"


def test_an_awkward_argument_arrives_verbatim(tmp_path: Path) -> None:
    tricky = 'it\'s "quoted" \\ ${X} ; $(rm -rf /) *'
    code = "import sys; open('arg', 'w').write(sys.argv[1])"
    assert run_attempt(spec(tmp_path, sys.executable, "-c", code, tricky)).exit_code == 0
    assert (tmp_path / "arg").read_text() == tricky


def test_missing_executable_and_cwd_are_errors_not_exceptions(tmp_path: Path) -> None:
    assert run_attempt(spec(tmp_path, "no-such-tool-xyz")).error == "executable not found: 'no-such-tool-xyz'"
    outcome = run_attempt(spec(tmp_path, "true", cwd=tmp_path / "missing"))
    assert outcome.exit_code is None and outcome.error is not None and "cwd does not exist" in outcome.error


def test_a_secret_split_across_two_chunks_is_masked(tmp_path: Path) -> None:
    secret = "TOPSECRET-0123456789"
    # the secret starts 5 bytes before the 64 KiB boundary of the drain's reads
    code = f"import sys; sys.stdout.write('x' * (65536 - 5) + {secret!r} + '\\n' + {secret!r})"
    outcome = run_attempt(spec(tmp_path, sys.executable, "-c", code, secrets=(secret,)))
    assert outcome.exit_code == 0
    text = (tmp_path / "out.log").read_text()
    assert secret not in text and text.endswith("***\n***")


def test_cancel_from_another_thread_kills_the_tree_at_once(tmp_path: Path) -> None:
    token = CancelToken()
    ready = tmp_path / "ready"
    os.mkfifo(ready)

    def cancel_once_running() -> None:
        with ready.open() as fifo:  # opens when the step opens it to write: its child is started by then
            fifo.read()
        token.cancel("cancelled: 'lint' failed (abort)")

    canceller = threading.Thread(target=cancel_once_running, daemon=True)
    canceller.start()
    script = "sleep 60 & echo $! > child; echo started > ready; wait"
    outcome = run_attempt(spec(tmp_path, "sh", "-c", script, timeout=30.0), token)
    canceller.join(timeout=30)
    # the cancel ended it, not the deadline nor the 60 s child
    assert outcome.cancelled == "cancelled: 'lint' failed (abort)" and not outcome.timed_out
    assert outcome.exit_code is not None and outcome.exit_code < 0  # killed by a signal
    assert gone(int((tmp_path / "child").read_text()))


def test_cancel_before_start_spawns_nothing(tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel("cancelled: interrupted")
    outcome = run_attempt(spec(tmp_path, "touch", "ran"), token)
    assert outcome.pid is None and outcome.cancelled == "cancelled: interrupted"
    assert not (tmp_path / "ran").exists()


def test_timeout_kills_a_child_in_its_own_session(tmp_path: Path) -> None:
    code = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '60'], start_new_session=True); "
        "open('escaped', 'w').write(str(p.pid)); time.sleep(60)"
    )
    # the deadline must pass after the child started (not a race with the interpreter's start-up)
    outcome = run_attempt(spec(tmp_path, sys.executable, "-c", code, timeout=3.0, kill_grace=0.5))
    assert outcome.timed_out and outcome.error == "timed out after 3 s"
    assert gone(int((tmp_path / "escaped").read_text()))


def test_tail_is_bounded_and_says_where_the_rest_is(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    text = tail(log, max_bytes=1000)
    assert len(text) < 1200 and text.endswith("line 99999\n") and str(log) in text.splitlines()[0]
    assert tail(tmp_path / "missing.log") == ""


def test_sweep_finds_processes_by_their_run_marker(tmp_path: Path) -> None:
    run_id = f"sweep-test-{uuid.uuid4().hex}"  # unique: a sweep kills whatever carries this id
    env = {**os.environ, "PLANRUN_RUN_ID": run_id, "PLANRUN_STEP_ID": "s"}
    child = subprocess.Popen(["sleep", "60"], env=env)
    try:
        assert child.pid in sweep_orphans(run_id, "s")
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_silence_kills_the_tree_and_says_so(tmp_path: Path) -> None:
    script = "echo once; sleep 300 & echo $! > child.pid; wait"
    outcome = run_attempt(spec(tmp_path, "sh", "-c", script), watch=Watch(silence=0.5))
    assert (outcome.timed_out, outcome.silent, outcome.error) == (True, True, "no output for 0.5s")
    assert gone(int((tmp_path / "child.pid").read_text()))
    assert (tmp_path / "out.log").read_text() == "once\n"


def test_output_on_either_stream_keeps_a_step_alive(tmp_path: Path) -> None:
    # alternates stdout and stderr every 0.1 s, for four times the allowed silence
    script = "i=0; while [ $i -lt 20 ]; do echo o; sleep 0.05; echo e >&2; sleep 0.05; i=$((i+1)); done"
    outcome = run_attempt(spec(tmp_path, "sh", "-c", script), watch=Watch(silence=0.5))
    assert (outcome.exit_code, outcome.timed_out, outcome.silent) == (0, False, False)
    assert (tmp_path / "out.log").read_text() == "o\n" * 20 and (tmp_path / "err.log").read_text() == "e\n" * 20


def test_masking_still_holds_when_output_is_timed(tmp_path: Path) -> None:
    secret = "TOPSECRET-0123456789"
    code = f"import sys; sys.stdout.write('x' * (65536 - 5) + {secret!r} + '\\n' + {secret!r})"
    outcome = run_attempt(spec(tmp_path, sys.executable, "-c", code, secrets=(secret,)), watch=Watch(silence=30))
    assert outcome.exit_code == 0
    text = (tmp_path / "out.log").read_text()
    assert secret not in text and text.endswith("***\n***")


def test_beats_come_while_the_process_runs(tmp_path: Path) -> None:
    beats: list[int] = []
    # the step ends once it has been beaten for three times: a file per beat tells it
    script = "while [ ! -e beat-3 ]; do sleep 0.02; done"

    def beat() -> None:
        beats.append(len(beats) + 1)
        (tmp_path / f"beat-{len(beats)}").touch()

    outcome = run_attempt(spec(tmp_path, "sh", "-c", script), watch=Watch(beat_every=0.1, on_beat=beat))
    assert outcome.exit_code == 0 and beats[:3] == [1, 2, 3]
