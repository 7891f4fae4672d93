"""Live runs: the no-output timeout, heartbeats in the ledger and events, and the terminal line
saying what runs, in serial and xdist runs alike."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from planhelpers import alive, ledger_of, sh

from conftest import INNER_ADDOPTS, RunPlan


# A step whose script waits until the controller has written ``n`` heartbeats of it: heartbeats are
# what it waits for, so no sleep decides when it ends.
def until_heartbeats(n: int) -> str:
    count = 'n=$(grep -c \'"step_heartbeat"\' "$PLANRUN_RUN_DIR/events.jsonl" 2>/dev/null)'
    return f'{count}; while [ "${{n:-0}}" -lt {n} ]; do sleep 0.05; {count}; done'


def test_a_silent_step_is_killed_by_the_no_output_timeout_and_retried(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    script = "echo started; sleep 300 & echo $! > child.$PLANRUN_ATTEMPT.pid; wait"
    result = run_plan(
        [sh("quiet", script, timeout_sec=60, no_output_timeout_sec=1, retries=1)], "--junitxml=out.xml", *mode
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*step 'quiet' failed: no output for 1s after 2 attempts*", "*started*"])
    assert "timed out after" not in result.stdout.str()  # not the wall-clock timeout's words
    for attempt in (1, 2):
        pid = int((pytester.path / f"child.{attempt}.pid").read_text())
        assert not alive(pid), f"attempt {attempt}'s child {pid} survived the no-output timeout"
    attempts, events = ledger_of(pytester.path)
    assert [(a["attempt"], a["timed_out"], a["error_log"]) for a in attempts] == [
        (1, 1, "no output for 1s"),
        (2, 1, "no output for 1s"),
    ]
    timeouts = [e["data"] for e in events if e["event_type"] == "step_timeout"]
    assert [(t["attempt"], t["timeout_kind"], t["error"]) for t in timeouts] == [
        (1, "no_output", "no output for 1s"),
        (2, "no_output", "no output for 1s"),
    ]
    assert [e["data"]["next_attempt"] for e in events if e["event_type"] == "step_retry"] == [2]
    (failure,) = ET.parse(pytester.path / "out.xml").getroot().iter("failure")
    assert failure.get("message") == "no output for 1s after 2 attempts"


def test_the_wall_clock_timeout_keeps_its_own_kind(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [sh("slow", "while true; do echo tick; sleep 0.1; done", timeout_sec=1, no_output_timeout_sec=30)]
    )
    result.stdout.fnmatch_lines(["*step 'slow' failed: timed out after 1 s*"])
    _, events = ledger_of(pytester.path)
    assert [e["data"]["timeout_kind"] for e in events if e["event_type"] == "step_timeout"] == ["wall_clock"]


def test_a_step_printing_steadily_outlives_the_interval(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    # prints every 0.2 s, for several no-output intervals in all
    script = "i=0; while [ $i -lt 20 ]; do echo line $i; i=$((i+1)); sleep 0.2; done"
    result = run_plan([sh("steady", script, no_output_timeout_sec=1)], *mode)
    result.assert_outcomes(passed=1)
    attempts, _ = ledger_of(pytester.path)
    (attempt,) = attempts
    assert attempt["state"] == "succeeded" and attempt["timed_out"] == 0
    assert attempt["duration_sec"] > 2  # it did run past twice the interval


def test_the_plan_default_applies_and_a_step_can_override_it(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [
            sh("quiet", "echo once; sleep 300", on_failure="continue"),
            sh("patient", "sleep 2; echo done", no_output_timeout_sec=60),
        ],
        "-p",
        "no:xdist",
        default_no_output_timeout_sec=1,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*step 'quiet' failed: no output for 1s*"])


def test_heartbeats_reach_the_ledger_and_events_at_their_rate(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    # 300 lines of output, then a wait for three heartbeats: their count follows the clock, not the lines
    script = f"i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; {until_heartbeats(3)}"
    result = run_plan([sh("beating", script)], "--planrun-heartbeat", "0.2", *mode)
    result.assert_outcomes(passed=1)
    _, events = ledger_of(pytester.path)
    beats = [e["data"] for e in events if e["event_type"] == "step_heartbeat"]
    assert 3 <= len(beats) < 300
    size = sum(len(f"line {i}\n") for i in range(300))
    assert beats[-1]["step_id"] == "beating" and beats[-1]["attempt"] == 1
    assert beats[-1]["output_bytes"] == size
    assert beats[-1]["last_output_at"] is not None
    assert beats[-1]["worker"].startswith("gw") if mode else beats[-1]["worker"] == "main"
    lines = [line for line in (pytester.path / ".ledger").glob("runs/*/events.jsonl")][0].read_text().splitlines()
    assert sum('"step_heartbeat"' in line for line in lines) == len(beats)


def test_heartbeat_option_and_ini_key_are_checked(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nplanrun_heartbeat = 0\n")
    result = run_plan([sh("a", "true")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*planrun heartbeat*above 0*"])


def test_the_terminal_says_what_runs_when_nothing_ends(run_plan: RunPlan, mode: list[str]) -> None:
    steps = [sh("waiting", f"echo hello; {until_heartbeats(6)}")]
    result = run_plan(steps, "--planrun-heartbeat", "0.2", "--planrun-status-after", "0.5", *mode)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["planrun: running waiting (*s, last output *s ago)"])
    assert "\x1b[K" not in result.stdout.str()  # not a TTY: appended lines, not rewritten ones


def test_quiet_keeps_the_terminal_line_out(run_plan: RunPlan, mode: list[str]) -> None:
    steps = [sh("waiting", f"echo hello; {until_heartbeats(6)}")]
    result = run_plan(steps, "-q", "--planrun-heartbeat", "0.2", "--planrun-status-after", "0.5", *mode)
    result.assert_outcomes(passed=1)
    assert "planrun: running" not in result.stdout.str()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_tty_the_line_is_rewritten_in_place(
    pytester: pytest.Pytester, write_plan: object, mode: list[str]
) -> None:
    plan = write_plan([sh("waiting", f"echo hello; {until_heartbeats(6)}")])  # type: ignore[operator]
    primary, secondary = os.openpty()
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        *(mode or ["-p", "no:xdist"]),
        "--plan",
        str(plan),
    ]
    argv += ["--planrun-heartbeat", "0.2", "--planrun-status-after", "0.5"]
    env = {**os.environ, "PYTEST_ADDOPTS": INNER_ADDOPTS, "COLUMNS": "200"}
    proc = subprocess.Popen(
        argv, cwd=pytester.path, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=env
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert proc.wait() == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    drawn = text.count("\rplanrun: running waiting (")
    assert drawn >= 2, text  # one line, drawn again in place at each beat
    assert "\r\x1b[K" in text  # and wiped when the step ended


def test_several_steps_in_one_process_beat_and_show_what_runs(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    # max_concurrency 2 without -n: both steps run at once in this one pytest process (threads)
    steps = [sh("waiting", f"echo hello; {until_heartbeats(6)}"), sh("other", f"echo hi; {until_heartbeats(6)}")]
    result = run_plan(
        steps, "--planrun-heartbeat", "0.2", "--planrun-status-after", "0.5", "-p", "no:xdist", max_concurrency=2
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["planrun: running *waiting*"])
    _, events = ledger_of(pytester.path)
    beats = {e["data"]["step_id"] for e in events if e["event_type"] == "step_heartbeat"}
    assert beats == {"waiting", "other"}
    kinds = [e["event_type"] for e in events]
    assert kinds.count("step_started") == 2
    assert kinds.index("step_succeeded") > max(i for i, kind in enumerate(kinds) if kind == "step_started")  # overlap
