"""CI-native output beside JUnit: GitHub's job summary and annotations, GitLab's log sections."""

from __future__ import annotations

import pytest
from planhelpers import sh

from conftest import RunPlan

SECRET = "s3cr3t-value-42"
CI_VARIABLES = ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITLAB_CI")


@pytest.fixture(autouse=True)
def outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which CI it is in; none leaks in from the machine running the suite."""
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def steps() -> list[dict[str, object]]:
    return [
        sh("ok", "echo fine", name="Says fine"),
        sh("flaky", "[ -e once ] || { touch once; exit 1; }", retries=1),
        sh(
            "broken",
            "echo 'token=${TOKEN}'; printf '\\033[31mbad | thing\\033[0m\\n' >&2; exit 2",
            name="Breaks",
            on_failure="continue",  # no abort: the other steps end as they would alone
        ),
    ]


def run(run_plan: RunPlan, *args: str) -> pytest.RunResult:
    variables = {"TOKEN": {"default": SECRET, "secret": True}}
    return run_plan(steps(), *args, plan_fields={"variables": variables})


def test_github_job_summary(
    run_plan: RunPlan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: list[str]
) -> None:
    summary = pytester.path / "summary.md"
    summary.write_text("earlier step's summary\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run(run_plan, *mode).assert_outcomes(passed=2, failed=1)
    text = summary.read_text()
    assert text.startswith("earlier step's summary\n### planrun: plan PLAN-TEST, run ")  # appended
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `ok` | Says fine | succeeded | " + rows[0].split(" | ")[3] + " | 1 |  |",
        "| `flaky` |  | succeeded after retries | " + rows[1].split(" | ")[3] + " | 2 |  |",
        "| `broken` | Breaks | failed | " + rows[2].split(" | ")[3] + " | 1 | exit code 2 |",
    ]
    assert all(row.split(" | ")[3].endswith(" s") for row in rows)
    details = text[text.index("<details>") :]
    assert "<summary>broken: exit code 2</summary>" in details and "bad | thing" in details
    assert "token=***" in details and SECRET not in text and "\x1b" not in text


@pytest.mark.with_report_plugins
def test_github_annotations_point_at_the_step_line(
    run_plan: RunPlan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # pytest-github-actions-annotate-failures is active
    result = run(run_plan)
    lines = (pytester.path / "plan.json").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if '"id": "broken"' in text)
    (annotation,) = [a for a in result.stderr.lines if a.startswith("::error file=plan.json") and "broken" in a]
    assert annotation.startswith(f"::error file=plan.json,line={line}::step broken:")
    assert "step 'broken' failed: exit code 2" in annotation and "bad | thing" in annotation
    assert "\x1b" not in annotation and SECRET not in annotation


def test_gitlab_sections_fold_each_steps_output(
    run_plan: RunPlan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: list[str]
) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")
    result = run(run_plan, *mode)
    out = result.stdout.str()
    starts = [line for line in result.stdout.lines if "section_start:" in line]
    assert [s.split(":")[2].split("\r")[0] for s in starts] == [
        "planrun_ok[collapsed=true]",
        "planrun_flaky[collapsed=true]",
        "planrun_broken",
    ]
    broken = out[out.index("section_start:", out.index("planrun_flaky")) :]
    broken = broken[: broken.index("section_end:")]
    assert "step 'broken' (Breaks): failed, exit code 2" in broken and "bad | thing" in broken
    assert out.count("section_end:") == 3 and SECRET not in out


def test_nothing_of_it_outside_those_ci(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run(run_plan)
    assert "section_start" not in result.stdout.str() and "::error" not in result.stderr.str()
    assert not list(pytester.path.glob("*.md"))
