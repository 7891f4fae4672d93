"""JUnit XML from real runs, read the way its consumers read it.

First-child readers (xunit-viewer) must see each step's real outcome, GitLab's texts (failure,
skipped, system-out/err) must carry what a reader needs, and the file must stay valid junit-10.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema
from planhelpers import sh, step

from conftest import RunPlan
from pytest_planrun.ledger import queries

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "junit-10.xsd"
FLAKY = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "try $n" >&2; [ "$n" -ge 3 ]'
SECRET = "s3cr3t-value-42"
# cancels itself through the control channel while it runs, after writing some output
SELF_CANCEL = (
    'echo partial-out; printf "\\033[1mwarned\\033[0m\\n" >&2; "$PLANRUN_PYTHON" -c "import sys; '
    "from pytest_planrun.cli import main; sys.exit(main(['cancel', '$PLANRUN_RUN_ID', '$PLANRUN_STEP_ID']))\"; "
    "sleep 30"
)
# what each step's testcase must say first: passed, failed or skipped
EXPECTED = {
    "ok": "passed",
    "flaky": "passed",
    "selfcancel": "skipped",
    "rerun_fail": "failed",
    "skipped": "skipped",
    "hang": "failed",
    "allowed": "skipped",
    "loud": "passed",
    "fatal": "failed",
    "cancelled": "skipped",
}


@pytest.fixture(scope="session")
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA))


def every_outcome() -> list[dict[str, Any]]:
    return [
        sh("ok", "echo token=${TOKEN}", name="Prints the token"),
        sh("flaky", FLAKY, retries=2, name="Passes on the third try"),
        sh("selfcancel", SELF_CANCEL, on_failure="continue", name="Cancelled while running", ui_hints={"weight": 100}),
        sh(
            "rerun_fail",
            "printf '\\033[31mred\\033[0m broken\\001\\n' >&2; exit 2",
            retries=1,
            on_failure="skip_dependents",
            name="Fails with output",
            # first in line, so both attempts end long before 'fatal' (after a 1 s timeout) aborts the run
            ui_hints={"weight": 100},
        ),
        step("skipped", "true", depends_on=["rerun_fail"]),
        sh("hang", "sleep 30", timeout_sec=1, on_failure="continue"),
        sh(
            "allowed",
            "echo allowed-out; echo allowed-err >&2; exit 3",
            critical=False,
            on_failure="continue",
            name="Allowed to fail",
        ),
        sh("loud", "head -c 2000000 /dev/zero | tr '\\0' x"),
        sh("fatal", "exit 4", depends_on=["ok", "flaky", "hang", "loud", "allowed"]),
        step("cancelled", "true", depends_on=["fatal"]),
    ]


def run_with_junit(run_plan: RunPlan, *args: str) -> pytest.RunResult:
    return run_plan(
        every_outcome(),
        "--junitxml=out.xml",
        *args,
        plan_fields={"variables": {"TOKEN": {"default": SECRET, "secret": True}, "BRANCH": {"default": "feature"}}},
    )


def cases_in(path: Path) -> dict[str, ET.Element]:
    cases = ET.parse(path).getroot().iter("testcase")
    return {case.attrib["name"]: case for case in cases}


def first_child_status(case: ET.Element) -> str | None:
    """The status a reader that takes a testcase's first child sees (xunit-viewer 10 does, after
    failure/error/skipped; properties are read apart); None: a status it has no card for."""
    children = [c.tag for c in case if c.tag != "properties"]
    first = children[0] if children else "system-out"
    return {"failure": "failed", "error": "error", "skipped": "skipped", "system-out": "passed"}.get(first)


def texts(case: ET.Element) -> str:
    return "\n".join(e.text or "" for e in case.iter())


def assert_no_empty_sections(case: ET.Element) -> None:
    __tracebackhide__ = True
    for element in case.iter():
        if element.tag in ("system-out", "system-err", "stackTrace"):
            assert (element.text or "").strip(), f"{case.get('name')}: empty <{element.tag}>"
        heading = re.search(r"^--- [^\n]* ---$(?=\n---|\n*\Z|\nlogs:)", element.text or "", re.M)
        assert heading is None, f"{case.get('name')}: heading with nothing under it: {heading.group()!r}"


def ledger_span(root: Path) -> float:
    """Seconds from the first attempt's start to the last attempt's end, as the ledger has them."""
    db = root / ".ledger" / "framework.db"
    (run,) = queries.list_runs(db)
    attempts = [a for a in queries.get_run_steps(db, run["run_id"]) if a["started_at"] and a["ended_at"]]
    start = min(datetime.fromisoformat(a["started_at"]) for a in attempts)
    end = max(datetime.fromisoformat(a["ended_at"]) for a in attempts)
    return (end - start).total_seconds()


def step_line(plan: Path, step_id: str) -> int:
    """1-based line of the step's "id" in the plan file."""
    lines = plan.read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if f'"id": "{step_id}"' in text)


def test_every_step_shows_its_outcome_to_every_reader(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str], junit_schema: xmlschema.XMLSchema
) -> None:
    began = time.time()
    run_with_junit(run_plan, *mode)
    wall = time.time() - began
    out = pytester.path / "out.xml"
    junit_schema.validate(str(out))
    cases = cases_in(out)
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None

    # 1. first-child readers see every step, with its real status
    assert {name: first_child_status(case) for name, case in cases.items()} == EXPECTED
    assert {c.attrib["classname"] for c in cases.values()} == {"PLAN-TEST"}  # history key: plan id, step id
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("10", "3", "4")

    # 2. a step that passed after retries: Surefire's flakyFailure per failed attempt (Jenkins,
    # action-junit-report), after the output, and the attempts in the text readers show
    flaky = cases["flaky"]
    tags = [c.tag for c in flaky]
    assert tags == ["system-out", "system-err", "flakyFailure", "flakyFailure"]
    assert [f.get("message") for f in flaky.iter("flakyFailure")] == ["exit code 1", "exit code 1"]
    flaky_out = flaky.findtext("system-out") or ""
    assert flaky_out.startswith("step 'flaky' (Passes on the third try) succeeded on attempt 3")
    assert "attempt 1: exit code 1" in flaky_out and "attempt 3: succeeded" in flaky_out
    rerun = cases["rerun_fail"]
    assert [c.tag for c in rerun] == ["failure", "rerunFailure", "system-err"]
    assert rerun[0].get("message") == "exit code 2 after 2 attempts"

    # 3. allowed failures and steps cancelled mid-run keep their output in the text GitLab shows
    allowed = cases["allowed"].find("skipped")
    assert allowed is not None and allowed.get("message") == "allowed failure (critical: false): exit code 3"
    assert "allowed-err" in (allowed.text or "") and "allowed-out" in (allowed.text or "")
    cancelled = cases["selfcancel"].find("skipped")
    assert cancelled is not None and (cancelled.get("message") or "").startswith("cancel")
    assert "partial-out" in (cancelled.text or "") and "warned" in (cancelled.text or "")
    assert cases["skipped"].find("skipped").get("message") == "dependency 'rerun_fail' failed"  # type: ignore[union-attr]
    assert cases["cancelled"].find("skipped").get("message") == "cancelled: 'fatal' failed (abort)"  # type: ignore[union-attr]

    # 4. control characters and ANSI colours: readable, never '?'
    text = out.read_text()
    assert "\x1b" not in text and "?[31m" not in text and "&#27;" not in text
    assert "red broken\\x01" in (rerun[0].text or "") and "red broken\\x01" in (rerun.findtext("system-err") or "")

    # 5. no empty sections or headings
    for case in cases.values():
        assert_no_empty_sections(case)
    assert cases["fatal"].find("system-err") is None and "--- stderr" not in texts(cases["fatal"])

    # 6. the step's display name, where each reader looks first
    assert (rerun[0].text or "").startswith("step 'rerun_fail' (Fails with output) failed: exit code 2")
    assert (allowed.text or "").startswith("step 'allowed' (Allowed to fail): allowed failure")
    assert (cases["ok"].findtext("system-out") or "").startswith("step 'ok' (Prints the token) succeeded")

    # 7. xunit2: the suite names the plan file; a failure's text ends at the step's 1-based line,
    # which action-junit-report finds with its " <file>...:<line>" rule when there is no line attribute
    assert suite.get("file") == "plan.json"
    for name in ("rerun_fail", "hang", "fatal"):
        found = re.findall(r" [^ ]*plan\.json.*?:(\d+)", cases[name].findtext("failure") or "")
        assert found and int(found[-1]) == step_line(pytester.path / "plan.json", name)

    # 8. the suite's time is the run's wall time
    assert ledger_span(pytester.path) <= float(suite.attrib["time"]) <= wall

    # the run's variables, secrets masked (P8)
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["var.TOKEN"] == "***" and props["var.BRANCH"] == "feature"
    assert props["plan_id"] == "PLAN-TEST" and props["run_id"] and props["run_state"] == "failed"
    assert SECRET not in text and "token=***" in text
    assert out.stat().st_size < 400_000  # 2 MB of output, bounded to the last 64 KiB


def test_xunit1_locations_properties_and_junitparser(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str]
) -> None:
    run_with_junit(run_plan, "-o", "junit_family=xunit1", *mode)
    out = pytester.path / "out.xml"
    cases = cases_in(out)
    plan = pytester.path / "plan.json"
    for name, case in cases.items():  # 1-based, where action-junit-report puts its annotation
        assert (case.get("file"), case.get("line")) == ("plan.json", str(step_line(plan, name)))
    assert {name: first_child_status(case) for name, case in cases.items()} == EXPECTED

    def props(name: str) -> dict[str, str]:
        return {p.attrib["name"]: p.attrib["value"] for p in cases[name].iter("property")}

    flaky = props("flaky")
    assert (flaky["step_id"], flaky["name"], flaky["attempts"], flaky["flaky"]) == (
        "flaky",
        "Passes on the third try",
        "3",
        "true",
    )
    assert props("hang")["timed_out"] == "true" and props("hang")["exit_code"] == "-15"
    parsed = {case.name: case for suite in junitparser.JUnitXml.fromfile(str(out)) for case in suite}
    assert len(parsed) == 10
    assert parsed["rerun_fail"].result[0].message == "exit code 2 after 2 attempts"
    assert parsed["skipped"].result[0].message == "dependency 'rerun_fail' failed"
    assert parsed["flaky"].is_passed and "attempt 3: succeeded" in (parsed["flaky"].system_out or "")


def test_plain_tests_beside_a_plan_keep_their_testcases(
    run_plan: RunPlan, pytester: pytest.Pytester, junit_schema: xmlschema.XMLSchema
) -> None:
    pytester.makepyfile(test_plain="def test_passes():\n    pass\n\ndef test_fails():\n    assert False\n")
    result = run_plan([sh("a", "echo \x1b[32mgreen\x1b[0m", name="Says green")], "test_plain.py", "--junitxml=out.xml")
    result.assert_outcomes(passed=2, failed=1)
    out = pytester.path / "out.xml"
    junit_schema.validate(str(out))
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "1")
    assert suite.get("file") is None  # the plan is not the file of every testcase
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert set(cases) == {("test_plain", "test_passes"), ("test_plain", "test_fails"), ("PLAN-TEST", "a")}
    assert cases[("PLAN-TEST", "a")].findtext("system-out", "").endswith("--- stdout ---\ngreen")


@pytest.mark.with_report_plugins
def test_html_report_and_short_summary_show_the_same_reasons(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_with_junit(run_plan, "--html=report.html", "--self-contained-html", "-rA")
    result.stdout.fnmatch_lines(["*dependency 'rerun_fail' failed*", "*cancelled: 'fatal' failed (abort)*"])
    html = (pytester.path / "report.html").read_text()
    assert "dependency &amp;#x27;rerun_fail&amp;#x27; failed" in html  # in pytest-html's escaped JSON
