"""Collection and selection: node ids, markers from tags, -k/-m, --collect-only order, usage errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from planhelpers import COMPAT, plan_doc, sh, stamped, stamps, step

from conftest import RunPlan


def test_compat_simple_plan_runs_with_four_passed(pytester: pytest.Pytester, mode: list[str]) -> None:
    plan = pytester.path / "test_simple.json"
    plan.write_text((COMPAT / "test_simple.json").read_text())
    result = pytester.runpytest_subprocess("--plan", "test_simple.json", *mode)
    result.assert_outcomes(passed=4)
    assert result.ret == 0


def test_compat_safe_merge_plan_loads_and_fails_cleanly_without_its_tools(pytester: pytest.Pytester) -> None:
    (pytester.path / "safe_merge.json").write_text((COMPAT / "safe_merge.json").read_text())
    result = pytester.runpytest_subprocess("--plan", "safe_merge.json", "--var", "BRANCH=feature", "-rs")
    # pwsh does not exist here: the first step fails with its name, the rest is cancelled (abort).
    result.assert_outcomes(failed=1, skipped=10)
    result.stdout.fnmatch_lines(["*pwsh*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_node_ids_markers_and_collect_only_order(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [
            step("deploy", "true", depends_on=["build"], tags=["phase:2"]),
            step("build", "true", tags=["phase:1", "gate:build"]),
            step("docs", "true", depends_on=["build"], tags=["phase:2"]),
        ],
        "--collect-only",
        "-q",
        "--strict-markers",
    )
    assert result.ret == 0
    lines = [line for line in result.stdout.lines if "::" in line]
    assert lines == ["plan.json::build", "plan.json::deploy", "plan.json::docs"]
    assert not (pytester.path / ".ledger").exists()  # nothing ran: no run recorded, no run directory


def test_marker_selection_runs_exactly_the_selected_steps(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [
            stamped("build", tags=["phase:1"]),
            stamped("test", depends_on=["build"], tags=["phase:2"]),
            stamped("lint", tags=["phase:2"]),
        ],
        "-m",
        "phase_2",
        "--strict-markers",
    )
    result.assert_outcomes(passed=2, deselected=1)
    assert sorted(stamps(pytester.path)) == ["lint", "test"]
    result.stdout.fnmatch_lines(["*step 'test' runs as if 'build' succeeded (deselected)*"])


def test_keyword_selection_matches_ids_and_names(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_plan(
        [stamped("alpha", name="Compile sources"), stamped("beta", name="Write docs")],
        "-k",
        "Compile or beta",
    )
    result.assert_outcomes(passed=2)
    result = run_plan([stamped("alpha", name="Compile sources"), stamped("beta", name="Write docs")], "-k", "Compile")
    result.assert_outcomes(passed=1, deselected=1)


def test_plan_only_collects_its_steps_unless_paths_are_given(
    pytester: pytest.Pytester, write_plan: Callable[..., Path]
) -> None:
    pytester.makepyfile(test_other="def test_x(): pass")
    write_plan([step("a", "true")])
    result = pytester.runpytest_subprocess("--plan", "plan.json")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--plan", "plan.json", "test_other.py")
    result.assert_outcomes(passed=2)


def test_broken_plan_is_a_usage_error_listing_every_problem(pytester: pytest.Pytester) -> None:
    doc = {
        "plan_id": "P",
        "version": "1",
        "globals": {"max_concurrency": 1},
        "steps": [
            {"id": "build", "command": "touch", "args": ["ran"], "timeout_sec": -1},
            {"id": "test", "command": "true", "depends_on": ["buidl"], "dependson": []},
            {"id": "a", "command": "true", "depends_on": ["b"]},
            {"id": "b", "command": "true", "depends_on": ["a"]},
            {"id": "a", "command": "echo", "args": ["${UNDEFINED}"]},
        ],
    }
    (pytester.path / "bad.json").write_text(json.dumps(doc, indent=2))
    result = pytester.runpytest_subprocess("--plan", "bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Traceback" not in err
    for expected in (
        "bad.json: step 'build', field 'timeout_sec'",
        "did you mean 'build'?",
        "did you mean 'depends_on'?",
        "cycle a -> b -> a",
        "UNDEFINED",
        "duplicate",
    ):
        assert expected in err, expected
    assert not (pytester.path / "ran").exists()


def test_invalid_json_names_line_and_column(pytester: pytest.Pytester) -> None:
    (pytester.path / "bad.json").write_text('{\n  "plan_id": "P",\n  "version": "1"\n  "steps": []\n}\n')
    result = pytester.runpytest_subprocess("--plan", "bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad.json*line 4, column 3*"])


def test_bad_var_option_is_a_usage_error(run_plan: RunPlan) -> None:
    result = run_plan([step("a", "true")], "--var", "NOEQUALS")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--var expects NAME=VALUE*"])


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_plan_given_with_dot_dot_runs_inside_and_outside_the_rootdir(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, mode: list[str]
) -> None:
    steps = [step("one", "true"), step("two", "true", depends_on=["one"])]
    pytester.makeini("[pytest]\n")  # the rootdir is the test's directory
    (pytester.path / "plans").mkdir()
    (pytester.path / "plans" / "inside.json").write_text(json.dumps(plan_doc(steps)))
    outside = tmp_path_factory.mktemp("elsewhere") / "outside.json"
    outside.write_text(json.dumps(plan_doc(steps)))
    relative = Path("..") / outside.parent.name / outside.name
    assert (pytester.path / relative).exists()
    for given in ("plans/../plans/inside.json", f"../{pytester.path.name}/plans/inside.json", str(relative)):
        result = pytester.runpytest_subprocess(f"--plan={given}", "-p", "no:cacheprovider", *mode)
        result.assert_outcomes(passed=2)


def test_a_step_node_id_runs_that_step_alone(run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]) -> None:
    steps = [sh("build", "touch built"), sh("test", "touch tested", depends_on=["build"])]
    result = run_plan(steps, "plan.json::test", *mode)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["planrun: step 'test' runs as if 'build' succeeded (deselected)"])
    assert (pytester.path / "tested").exists() and not (pytester.path / "built").exists()


def test_the_same_plan_named_twice_runs_once(run_plan: RunPlan) -> None:
    result = run_plan([step("only", "true")], "--plan", "./plan.json")
    result.assert_outcomes(passed=1)
