"""Packaged plans by name, plans outside the rootdir, and the user's repository as rootdir."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from planhelpers import plan_doc, step

from pytest_planrun.plan.packaged import PlanNotFound, find_plan, packaged_plans

SAFE_MERGE_STEPS = ["preflight", "fetch", "trial_merge", "test_merged", "merge", "push", "cleanup"]


@pytest.fixture
def user_repo(pytester: pytest.Pytester) -> Path:
    """pytester's directory as a user's repository with its own pytest configuration."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naddopts = "-p no:cacheprovider"\nmarkers = ["mine: x"]\n')
    return pytester.path


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A plan file in a directory outside the user's repository."""

    def write(name: str) -> Path:
        path = tmp_path_factory.mktemp("elsewhere") / name
        path.write_text(json.dumps(plan_doc([step("a", "true"), step("b", "true", depends_on=["a"])])))
        return path

    return write


def test_the_shipped_plans_are_found_by_name() -> None:
    shipped = packaged_plans()
    assert "safe-merge" in shipped and shipped["safe-merge"].name == "safe_merge.json"
    for spelling in ("safe-merge", "safe_merge", "safe_merge.json"):
        assert find_plan(spelling, Path("/nonexistent")) == (shipped["safe-merge"], "safe_merge.json")


def test_a_file_wins_over_a_packaged_name(tmp_path: Path) -> None:
    (tmp_path / "safe_merge.json").write_text("{}")
    assert find_plan("safe_merge.json", tmp_path) == (tmp_path / "safe_merge.json", "safe_merge.json")


@pytest.mark.parametrize("given", ["safe-mrege", "plans/safe-merge.json"])
def test_an_unknown_name_lists_the_packaged_plans(given: str, tmp_path: Path) -> None:
    with pytest.raises(PlanNotFound) as error:
        find_plan(given, tmp_path)
    assert "plan file not found" in str(error.value)
    assert "packaged plans: safe-merge; did you mean safe-merge?" in str(error.value)


@pytest.mark.parametrize("spelling", ["safe-merge", "safe_merge"])
def test_a_packaged_plan_runs_by_name_with_the_users_rootdir_and_config(
    pytester: pytest.Pytester, user_repo: Path, spelling: str
) -> None:
    result = pytester.runpytest_subprocess("--plan", spelling, "--var", "BRANCH=feature", "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()
    assert [line for line in result.stdout.lines if "::" in line] == [
        f"safe_merge.json::{step_id}" for step_id in SAFE_MERGE_STEPS
    ]
    header = pytester.runpytest_subprocess("--plan", spelling, "--var", "BRANCH=feature", "--collect-only")
    header.stdout.fnmatch_lines(["planrun: safe_merge.json *", f"rootdir: {user_repo}", "configfile: pyproject.toml"])
    # a plain directory: the package holding the plans is not collected as a Python package
    assert not [line for line in header.stdout.lines if "<Package" in line]


def test_an_unknown_plan_name_is_a_usage_error(pytester: pytest.Pytester, user_repo: Path) -> None:
    result = pytester.runpytest_subprocess("--plan", "safe-mrege", "--var", "BRANCH=feature")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: safe-mrege: plan file not found, nor a packaged plan of that name (packaged plans: safe-merge; "
            "did you mean safe-merge?)"
        ]
    )
    assert result.stdout.str() == ""  # nothing ran


def test_a_plan_outside_the_rootdir_keeps_readable_node_ids(
    pytester: pytest.Pytester, user_repo: Path, elsewhere: Callable[[str], Path], mode: list[str]
) -> None:
    plan = elsewhere("outside.json")
    result = pytester.runpytest_subprocess(f"--plan={plan}", *mode, "-rA")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"rootdir: {user_repo}", "PASSED outside.json::a", "PASSED outside.json::b"])
    if not mode:  # the progress line names the plan, not '.'
        result.stdout.fnmatch_lines(["outside.json .. *"])


def test_a_separate_plan_path_that_moves_the_rootdir_is_refused(
    pytester: pytest.Pytester, user_repo: Path, elsewhere: Callable[[str], Path]
) -> None:
    plan = elsewhere("outside.json")
    # the other directory has a pytest configuration, as the plugin's own checkout has
    (plan.parent / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-x"\n')
    result = pytester.runpytest_subprocess("--plan", str(plan))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --plan {plan}: pytest took this plan path for a test path *"])
    result.stderr.fnmatch_lines(
        [
            f"*({plan.parent}, configuration {plan.parent / 'pyproject.toml'}, instead of "
            f"{user_repo}, configuration {user_repo / 'pyproject.toml'})*write --plan={plan}*"
        ]
    )
    assert not (user_repo / ".ledger").exists()  # nothing ran


def test_a_separate_plan_path_inside_the_repository_is_fine(
    pytester: pytest.Pytester, user_repo: Path, write_plan: Callable[..., Path]
) -> None:
    (pytester.path / "plans").mkdir()
    write_plan([step("a", "true")], name="plans/inside.json")
    result = pytester.runpytest_subprocess("--plan", "plans/inside.json", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {user_repo}", "plans/inside.json::a PASSED*"])


def test_a_plan_in_a_subdirectory_with_its_own_config_is_refused(
    pytester: pytest.Pytester, user_repo: Path, write_plan: Callable[..., Path]
) -> None:
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "pytest.ini").write_text("[pytest]\naddopts = -x\n")
    write_plan([step("a", "true")], name="sub/x.json")
    result = pytester.runpytest_subprocess("--plan", "sub/x.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*write --plan=sub/x.json*"])
    pytester.runpytest_subprocess("--plan=sub/x.json").assert_outcomes(passed=1)
