"""Worker labels for runs_on: --planrun-worker-label and ini planrun_worker_labels, and their errors."""

from __future__ import annotations

import pytest
from planhelpers import step

from conftest import RunPlan
from pytest_planrun.plugin.options import Settings

INI = """
[pytest]
planrun_worker_labels =
    gw0=linux
    gw1=linux, arm
    gw1=big
"""


def labels(pytester: pytest.Pytester, *args: str) -> dict[str, frozenset[str]]:
    """The worker labels the settings resolve for a session with ``args``."""
    return Settings.from_config(pytester.parseconfig(*args)).worker_labels


def test_no_labels_by_default(pytester: pytest.Pytester) -> None:
    assert labels(pytester) == {}


def test_option_gives_labels_and_adds_up_per_worker(pytester: pytest.Pytester) -> None:
    found = labels(
        pytester,
        *("--planrun-worker-label", "gw0=linux,gpu"),
        *("--planrun-worker-label", "gw1=arm"),
        *("--planrun-worker-label", "gw0=big"),
        *("--planrun-worker-label", "main="),
    )
    assert found == {"gw0": frozenset({"linux", "gpu", "big"}), "gw1": frozenset({"arm"}), "main": frozenset()}


def test_ini_key_and_the_option_replacing_a_workers_labels(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    assert labels(pytester) == {"gw0": frozenset({"linux"}), "gw1": frozenset({"linux", "arm", "big"})}
    found = labels(pytester, "--planrun-worker-label", "gw1=gpu")
    assert found == {"gw0": frozenset({"linux"}), "gw1": frozenset({"gpu"})}


def test_a_run_shows_the_labels_in_its_header(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = run_plan([step("a", "true")], "--planrun-worker-label", "gw0=a,b")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["planrun: worker labels gw0=a,b, gw1=arm,big,linux"])


@pytest.mark.parametrize("value", ["gw0", "=gpu", "gw0=gpu,", "gw0=a b", "gw 0=gpu"])
def test_a_malformed_option_is_a_usage_error(run_plan: RunPlan, value: str) -> None:
    result = run_plan([step("a", "true")], "--planrun-worker-label", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --planrun-worker-label expects WORKER=LABEL[[],LABEL...[]] *, got '{value}'"])
    assert result.stdout.str() == ""  # nothing ran


def test_a_malformed_ini_line_is_a_usage_error(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nplanrun_worker_labels =\n    gw0=linux\n    gw1:gpu\n")
    result = run_plan([step("a", "true")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ini planrun_worker_labels expects WORKER=LABEL[[],LABEL...[]] *, got 'gw1:gpu'"]
    )
