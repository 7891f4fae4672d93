"""What-if against reality: the forecast for the compat safe-merge plan with three steps assumed
failed matches a real run of a copy of the plan in which exactly those steps fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from planhelpers import COMPAT, ledger_of

from pytest_planrun.run.records import ALLOWED_FAILURE

# an allowed failure (critical: false, continue), a critical step with one retry that aborts the run,
# and a step after it that the abort cancels before its assumption can apply
FAILING = ("git_merge", "guarded_push", "emit_success_event")
ASSUME = [arg for step_id in FAILING for arg in ("--assume", f"{step_id}=failed")]
PYTEST_ASSUME = ["--planrun-assume" if arg == "--assume" else arg for arg in ASSUME]  # pytest's spelling


def real_copy(path: Path) -> None:
    """The compat plan with every command replaced: ``false`` for the failing steps, ``true`` else
    (its real tools are not here), still given the branch; everything else, retries and delays included, as it is."""
    plan: dict[str, Any] = json.loads((COMPAT / "safe_merge.json").read_text())
    for step in plan["steps"]:
        step["command"], step["args"] = ("false" if step["id"] in FAILING else "true"), ["${BRANCH}"]
    path.write_text(json.dumps(plan, indent=2))


def forecast(pytester: pytest.Pytester) -> dict[str, Any]:
    (pytester.path / "safe_merge.json").write_text((COMPAT / "safe_merge.json").read_text())
    result = pytester.run(
        sys.executable,
        "-m",
        "pytest_planrun.cli",
        "what-if",
        "safe_merge.json",
        "--var",
        "BRANCH=feature",
        *ASSUME,
        "--json",
    )
    assert result.ret == 0, result.stderr.str()
    document: dict[str, Any] = json.loads(result.stdout.str())
    return document


def test_the_forecast_matches_a_run_where_those_steps_fail(pytester: pytest.Pytester, mode: list[str]) -> None:
    predicted = forecast(pytester)
    real_copy(pytester.path / "real.json")
    run = pytester.runpytest_subprocess(
        "--plan", "real.json", "--var", "BRANCH=feature", "-p", "no:cacheprovider", *mode
    )
    run.assert_outcomes(failed=1, xfailed=1, passed=8, skipped=1)
    attempts, events = ledger_of(pytester.path)
    real: dict[str, dict[str, Any]] = {}
    for row in sorted(attempts, key=lambda a: a["attempt"]):
        entry = real.setdefault(row["step_id"], {"attempts": 0, "delays": []})
        entry["attempts"] += 1 if row["attempt"] else 0
        entry |= {"outcome": row["outcome"], "reason": row["reason"]}
        if row["retry_delay_sec"] is not None:
            entry["delays"].append(row["retry_delay_sec"])
    expected = {
        s["step_id"]: {
            "attempts": s["attempts"],
            "delays": s["retry_delays"],
            "outcome": s["outcome"],
            "reason": ALLOWED_FAILURE if s["allowed_failure"] else s["reason"],
        }
        for s in predicted["steps"]
    }
    assert real == expected
    # and the forecast is not trivial: each kind of fate is in it
    assert expected["git_merge"]["reason"] == ALLOWED_FAILURE
    assert expected["guarded_push"] == {"attempts": 2, "delays": [10.0], "outcome": "failed", "reason": None}
    assert expected["emit_success_event"]["reason"] == "cancelled: 'guarded_push' failed (abort)"
    (finished,) = [e["data"] for e in events if e["event_type"] in ("run_completed", "run_canceled")]
    assert (finished["state"], finished["message"]) == (predicted["state"], predicted["reason"])


def test_collect_only_shows_the_same_forecast(pytester: pytest.Pytester) -> None:
    (pytester.path / "safe_merge.json").write_text((COMPAT / "safe_merge.json").read_text())
    table = pytester.run(
        sys.executable, "-m", "pytest_planrun.cli", "what-if", "safe_merge.json", "--var", "BRANCH=feature", *ASSUME
    )
    assert table.ret == 0
    result = pytester.runpytest_subprocess(
        "--plan",
        "safe_merge.json",
        "--var",
        "BRANCH=feature",
        *PYTEST_ASSUME,
        "--collect-only",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == 0
    given = ", ".join(f"{step_id}=failed" for step_id in FAILING)
    result.stdout.fnmatch_lines([f"planrun what-if, assuming {given}:", *(f"  {line}" for line in table.outlines)])
    assert not (pytester.path / ".ledger").exists()  # nothing ran, nothing recorded


def test_an_unknown_step_is_a_usage_error_with_a_suggestion(pytester: pytest.Pytester) -> None:
    (pytester.path / "safe_merge.json").write_text((COMPAT / "safe_merge.json").read_text())
    result = pytester.runpytest_subprocess(
        "--plan", "safe_merge.json", "--var", "BRANCH=x", "--planrun-assume", "git_fetc=failed", "--collect-only"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --assume git_fetc=failed: no step 'git_fetc' in the plan (did you mean 'git_fetch'?)"]
    )
    cli = pytester.run(
        sys.executable,
        "-m",
        "pytest_planrun.cli",
        "what-if",
        "safe_merge.json",
        "--var",
        "BRANCH=x",
        "--assume",
        "git_fetc=failed",
    )
    assert cli.ret == 2
    cli.stderr.fnmatch_lines(
        ["planrun: --assume git_fetc=failed: no step 'git_fetc' in the plan (did you mean 'git_fetch'?)"]
    )
