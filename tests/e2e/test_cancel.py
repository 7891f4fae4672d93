"""``planrun cancel``: one step of a live run, or the whole run, from another process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from planhelpers import alive, eventually, plan_doc, sh, step, stop

from pytest_planrun.cli import main as planrun
from pytest_planrun.ledger import queries


@pytest.fixture
def start_run(request: pytest.FixtureRequest) -> Callable[..., subprocess.Popen[str]]:
    """Start a run of ``steps`` in ``root``; a test that fails early leaves nothing running."""

    def start(root: Path, steps: list[dict[str, Any]], *args: str, max_concurrency: int) -> subprocess.Popen[str]:
        (root / "plan.json").write_text(json.dumps(plan_doc(steps, max_concurrency=max_concurrency)))
        command = [sys.executable, "-m", "pytest", "--plan", "plan.json", "-p", "no:cacheprovider", "-rs", *args]
        proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        request.addfinalizer(lambda: stop(proc))
        return proc

    return start


def live_run(db: Path) -> str:
    runs = eventually(lambda: db.exists() and queries.list_runs(db, state="running"), "the run to start")
    return str(runs[0]["run_id"])


@pytest.mark.parametrize(
    ("mode", "cap"), [([], 1), ([], 2), (["-n", "2"], 2)], ids=["serial", "in-process-concurrent", "xdist"]
)
def test_cancel_one_step_of_a_live_run(
    pytester: pytest.Pytester, start_run: Callable[..., subprocess.Popen[str]], mode: list[str], cap: int
) -> None:
    root = pytester.path
    proc = start_run(
        root,
        [
            sh("long", "echo $$ > long.pid; sleep 60"),
            step("after_long", "true", depends_on=["long"]),
            sh("slow", "while [ ! -f go ]; do sleep 0.05; done"),
            sh("later", "touch later.ran", depends_on=["slow"]),
        ],
        *mode,
        max_concurrency=cap,
    )
    db = root / ".ledger" / "framework.db"
    run_id = live_run(db)
    pid = int(eventually(lambda: (root / "long.pid").exists() and (root / "long.pid").read_text().strip(), "long"))
    assert planrun(["cancel", run_id, "long", "--ledger", str(db)]) == 0
    assert planrun(["cancel", run_id, "later", "--ledger", str(db)]) == 0  # not started yet
    eventually(lambda: not alive(pid), "the cancelled step's process to end", timeout=30)
    if cap > 1:  # both branches run at once: `later` is cancelled while `slow` still runs
        eventually(lambda: any(r["step_id"] == "later" for r in queries.get_run_steps(db, run_id)), "later's verdict")
    (root / "go").touch()
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, output  # a critical step was cancelled: the run did not do its job
    assert re.search(r"1 passed, 3 skipped", output), output
    assert "cancelled on request (planrun cancel)" in output
    assert "dependency 'long' was cancelled" in output
    assert not (root / "later.ran").exists()
    run = queries.get_run_status(db, run_id)
    assert run["state"] == "canceled" and run["error_message"] == "step 'long' was cancelled on request"
    outcomes = {r["step_id"]: r["outcome"] for r in queries.get_run_steps(db, run_id)}
    assert outcomes == {"long": "canceled", "after_long": "skipped", "slow": "succeeded", "later": "canceled"}
    assert not (Path(run["run_dir"]) / "control").exists()  # the channel closes with the run


def test_cancel_a_whole_run_and_what_cannot_be_cancelled(
    pytester: pytest.Pytester, start_run: Callable[..., subprocess.Popen[str]]
) -> None:
    root = pytester.path
    proc = start_run(root, [sh("long", "echo $$ > long.pid; sleep 60")], "-n", "2", max_concurrency=2)
    db = root / ".ledger" / "framework.db"
    run_id = live_run(db)
    pid = int(eventually(lambda: (root / "long.pid").exists() and (root / "long.pid").read_text().strip(), "long"))
    assert planrun(["cancel", run_id, "nope", "--ledger", str(db)]) == 2  # no such step
    assert planrun(["cancel", "no-such-run", "--ledger", str(db)]) == 2
    assert planrun(["cancel", run_id, "--ledger", str(db)]) == 0
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2, output
    assert not alive(pid)
    assert queries.get_run_status(db, run_id)["state"] == "canceled"
    assert planrun(["cancel", run_id, "--ledger", str(db)]) == 1  # it has ended
