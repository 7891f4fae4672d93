"""Fixtures for the ``planrun`` command's tests: call it as the console script does, a ledger to read."""

from __future__ import annotations

import sys

import pytest
from cli.helpers import FLAKY, Ledger, Planrun, Result, record, write_plan
from planhelpers import sh, step

from pytest_planrun.cli import main


@pytest.fixture
def planrun(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Planrun:
    """``planrun(*argv)``: the exit code and output the console script would give."""
    monkeypatch.setenv("PLANRUN_PYTHON", sys.executable)  # what main() sets, undone after the test

    def run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse, and messages given to SystemExit, as the interpreter shows them
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
                code = 1
            else:
                code = 0 if stop.code is None else stop.code
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    root = tmp_path_factory.mktemp("ledger")
    db = root / "framework.db"
    good = [sh("hello", "echo hello"), step("bye", "true", depends_on=["hello"])]
    write_plan(root / "good.json", good, plan_fields={"plan_id": "PLAN-GOOD"})
    bad = [
        sh("flaky", FLAKY, retries=1),
        sh("allowed", "exit 3", critical=False),
        step("after_allowed", "true", depends_on=["allowed"]),
        sh("fatal", "echo broken >&2; exit 2", depends_on=["flaky"]),
        step("never", "true", depends_on=["fatal"]),
    ]
    write_plan(root / "bad.json", bad, plan_fields={"plan_id": "PLAN-BAD"})
    return Ledger(
        db,
        record(root, root / "good.json", db, "run-good", 0),
        record(root, root / "bad.json", db, "run-bad", 1),
        record(root, root / "good.json", db, "run-again", 0),
    )
