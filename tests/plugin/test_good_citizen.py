"""planrun leaves pytest as it found it, and refuses xdist versions it was not tested with."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
import xdist
from planhelpers import plan_doc, step

from pytest_planrun.plugin.xdist_seam import TESTED, version_problems

ROOT = Path(__file__).parents[2]


def write_plan(pytester: pytest.Pytester, *steps: dict[str, object]) -> None:
    (pytester.path / "plan.json").write_text(json.dumps(plan_doc(list(steps))))


def test_an_in_process_run_leaves_the_sigterm_handler_as_it_found_it(pytester: pytest.Pytester) -> None:
    write_plan(pytester, step("a", "true"))
    before = signal.getsignal(signal.SIGTERM)
    assert before == signal.SIG_DFL  # else planrun keeps the handler it finds, and this shows nothing
    result = pytester.runpytest_inprocess("--plan", "plan.json", "-p", "no:cacheprovider", "--planrun-no-ledger")
    result.assert_outcomes(passed=1)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_handler_someone_else_installed_is_kept(pytester: pytest.Pytester) -> None:
    write_plan(pytester, step("a", "true"))

    def theirs(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        result = pytester.runpytest_inprocess("--plan", "plan.json", "-p", "no:cacheprovider", "--planrun-no-ledger")
        result.assert_outcomes(passed=1)
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_in_process_run_unregisters_its_plugins(pytester: pytest.Pytester) -> None:
    write_plan(pytester, step("a", "true"))
    configs: list[pytest.Config] = []

    class Spy:
        def pytest_configure(self, config: pytest.Config) -> None:
            configs.append(config)

    pytester.inline_run("--plan", "plan.json", "-p", "no:cacheprovider", "--planrun-no-ledger", plugins=[Spy()])
    (config,) = configs
    assert not [name for name, _ in config.pluginmanager.list_name_plugin() if name.startswith("planrun-")]


def test_tested_versions_are_the_declared_ones() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, (lowest, untested) in TESTED.items():
        declared = re.findall(rf'^\s*"{re.escape(name)}([<>=][^"]*)",', pyproject, re.MULTILINE)
        assert declared == [f">={'.'.join(map(str, lowest))},<{'.'.join(map(str, untested))}"]


def test_versions_outside_the_tested_range_are_named_with_what_to_do() -> None:
    assert version_problems({"pytest": "9.2.0", "pytest-xdist": "3.8.0"}) == []
    assert version_problems({"pytest": "8.3.0", "pytest-xdist": "3.6.1"}) == []
    (problem,) = version_problems({"pytest": "9.2.0", "pytest-xdist": "3.9.0"})
    assert "pytest-xdist>=3.6,<3.9" in problem and "found pytest-xdist 3.9.0" in problem
    assert "-p no:xdist" in problem
    assert len(version_problems({"pytest": "10.0.0rc1", "pytest-xdist": "3.5.0"})) == 2


def test_a_plan_run_with_an_untested_xdist_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_plan(pytester, step("a", "true"))
    monkeypatch.setattr(xdist, "__version__", "3.9.0")
    result = pytester.runpytest_inprocess("--plan", "plan.json", "-p", "no:cacheprovider", "--planrun-no-ledger")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: pytest-planrun runs plans with pytest-xdist only under pytest-xdist>=3.6,<3.9*"]
    )
    # without xdist the same plan runs, serially
    result = pytester.runpytest_inprocess(
        "--plan", "plan.json", "-p", "no:cacheprovider", "--planrun-no-ledger", "-p", "no:xdist"
    )
    result.assert_outcomes(passed=1)


def test_an_untested_xdist_does_not_matter_without_a_plan(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_x(): pass")
    monkeypatch.setattr(xdist, "__version__", "3.9.0")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_project_may_define_resume_and_ledger_itself(pytester: pytest.Pytester) -> None:
    # the plugin is loaded in every session: its options must leave these common names to the project
    pytester.makeconftest(
        """
        import pytest

        def pytest_addoption(parser):
            parser.addoption("--resume", action="store_true")
            parser.addoption("--ledger", default="theirs")

        @pytest.fixture
        def theirs(request):
            return request.config.getoption("resume"), request.config.getoption("ledger")
        """
    )
    pytester.makepyfile(test_theirs="def test_options(theirs): assert theirs == (True, 'mine.txt')")
    write_plan(pytester, step("a", "true"), step("b", "test", "-f", "fixed", depends_on=["a"]))
    project = ("-p", "no:cacheprovider", "--resume", "--ledger", "mine.txt")
    pytester.runpytest_subprocess(*project).assert_outcomes(passed=1)  # no plan: only the project's test

    first = pytester.runpytest_subprocess(*project, "--plan", "plan.json", "test_theirs.py", "--planrun-ledger=r.db")
    first.assert_outcomes(passed=2, failed=1)
    assert (pytester.path / "r.db").is_file() and not (pytester.path / ".ledger" / "framework.db").exists()
    assert not (pytester.path / "mine.txt").exists()
    (pytester.path / "fixed").touch()
    again = pytester.runpytest_subprocess(
        *project, "--plan", "plan.json", "test_theirs.py", "--planrun-ledger=r.db", "--planrun-resume", "-rs"
    )
    again.assert_outcomes(passed=2, skipped=1)  # the project's test, b; a succeeded in the first run
    again.stdout.fnmatch_lines(["SKIPPED [[]1[]] plan.json:*: succeeded in run *"])


HEAVY = ("pydantic", "lark", "psutil", "filelock", "sqlite3", "pytest_planrun.plan", "pytest_planrun.run.process")
REPORT_MODULES = f"""
import sys

def pytest_sessionfinish(session):
    loaded = [m for m in {HEAVY!r} if m in sys.modules]
    print("\\nheavy modules:", ",".join(loaded) or "-")
"""


def heavy_modules(result: pytest.RunResult) -> set[str]:
    (line,) = [line for line in result.outlines if line.startswith("heavy modules:")]
    return set(line.split(":", 1)[1].strip().split(",")) - {"-"}


def test_importing_the_entry_point_loads_no_heavy_module(pytester: pytest.Pytester) -> None:
    code = f"import sys, pytest_planrun.plugin.hooks; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = pytester.run(sys.executable, "-c", code)
    assert result.ret == 0
    assert result.outlines[-1] == "[]"


def test_the_public_api_is_there_on_first_use(pytester: pytest.Pytester) -> None:
    code = "import pytest_planrun as p; print(*(getattr(p, name).__name__ for name in p.__all__))"
    result = pytester.run(sys.executable, "-c", code)
    assert result.outlines[-1] == "Orchestrator Outcome Plan PlanError"


def test_a_session_without_a_plan_loads_no_more_than_one_without_planrun(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(REPORT_MODULES)
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\ndef test_c(): pass")
    without = heavy_modules(pytester.runpytest_subprocess("-s", "--collect-only", "-p", "no:planrun"))
    with_planrun = heavy_modules(pytester.runpytest_subprocess("-s", "--collect-only"))
    assert with_planrun - without == set()
    # the same probe sees them when a plan runs: it can tell
    write_plan(pytester, step("a", "true"))
    planned = heavy_modules(
        pytester.runpytest_subprocess("-s", "--plan", "plan.json", "--planrun-no-ledger", "-p", "no:xdist")
    )
    assert {"pydantic", "psutil", "pytest_planrun.plan"} <= planned - without
