"""JUnit XML from real runs: one testcase per step, reasons, Surefire retry elements, valid schema."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema
from planhelpers import sh, step

from conftest import RunPlan

SHARED = Path(__file__).resolve().parents[3] / "shared"
FLAKY = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "try $n" >&2; [ "$n" -ge 3 ]'
SECRET = "s3cr3t-value-42"


@pytest.fixture(scope="session")
def junit_schema(tmp_path_factory: pytest.TempPathFactory) -> xmlschema.XMLSchema:
    cache = tmp_path_factory.getbasetemp().parent / "junit-schema"
    path = subprocess.run(
        ["bash", str(SHARED / "junit" / "get-schema"), str(cache)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return xmlschema.XMLSchema(path)


def every_outcome() -> list[dict[str, Any]]:
    return [
        sh("ok", "echo token=${TOKEN}"),
        sh("flaky", FLAKY, retries=2),
        sh("rerun_fail", "echo broken >&2; exit 2", retries=1, on_failure="skip_dependents"),
        step("skipped", "true", depends_on=["rerun_fail"]),
        sh("hang", "sleep 30", timeout_sec=1, on_failure="continue"),
        sh("allowed", "exit 3", critical=False, on_failure="continue"),
        sh("loud", "head -c 2000000 /dev/zero | tr '\\0' x"),
        sh("fatal", "exit 4", depends_on=["ok", "flaky", "hang", "loud", "allowed"]),
        step("cancelled", "true", depends_on=["fatal"]),
    ]


def run_with_junit(run_plan: RunPlan, *args: str) -> pytest.RunResult:
    return run_plan(
        every_outcome(),
        "--junitxml=out.xml",
        *args,
        plan_fields={"variables": {"TOKEN": {"default": SECRET, "secret": True}}},
    )


def cases_in(path: Path) -> dict[str, ET.Element]:
    cases = ET.parse(path).getroot().iter("testcase")
    return {case.attrib["name"]: case for case in cases}


def test_every_step_is_one_testcase_with_its_reason(
    run_plan: RunPlan, pytester: pytest.Pytester, mode: list[str], junit_schema: xmlschema.XMLSchema
) -> None:
    run_with_junit(run_plan, *mode)
    out = pytester.path / "out.xml"
    junit_schema.validate(str(out))
    cases = cases_in(out)
    assert sorted(cases) == sorted(s["id"] for s in every_outcome())
    assert {c.attrib["classname"] for c in cases.values()} == {"PLAN-TEST"}
    assert [c.tag for c in cases["ok"]] == ["system-out", "system-err"]
    flaky = cases["flaky"]
    assert [c.tag for c in flaky].count("flakyFailure") == 2
    assert flaky.find("flakyFailure").attrib["message"] == "exit code 1"  # type: ignore[union-attr]
    rerun = cases["rerun_fail"]
    assert rerun[0].tag == "failure" and rerun[0].attrib["message"] == "exit code 2 after 2 attempts"
    assert [c.tag for c in rerun].count("rerunFailure") == 1
    assert "broken" in (rerun[0].text or "") and "Traceback" not in (rerun[0].text or "")
    assert cases["skipped"].find("skipped").attrib["message"] == "dependency 'rerun_fail' failed"  # type: ignore[union-attr]
    assert cases["hang"].find("failure").attrib["message"] == "timed out after 1 s"  # type: ignore[union-attr]
    allowed = cases["allowed"].find("skipped")
    assert allowed is not None and allowed.attrib["message"] == "allowed failure (critical: false): exit code 3"
    assert cases["cancelled"].find("skipped").attrib["message"] == "cancelled: 'fatal' failed (abort)"  # type: ignore[union-attr]
    text = out.read_text()
    assert SECRET not in text and "token=***" in text
    assert out.stat().st_size < 400_000  # 2 MB of output, bounded to the last 64 KiB
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None and suite.attrib["tests"] == "9" and suite.attrib["failures"] == "3"
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["plan_id"] == "PLAN-TEST" and props["var.TOKEN"] == "***" and props["run_id"]


def test_junitparser_reads_both_families(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    run_with_junit(run_plan, "-o", "junit_family=xunit1")
    xml = junitparser.JUnitXml.fromfile(str(pytester.path / "out.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert len(cases) == 9
    elements = cases_in(pytester.path / "out.xml")  # junitparser 5 has no testcase properties: read them here

    def props(name: str) -> dict[str, str]:
        return {p.attrib["name"]: p.attrib["value"] for p in elements[name].iter("property")}

    assert (
        props("flaky")["step_id"] == "flaky" and props("flaky")["attempts"] == "3" and props("flaky")["flaky"] == "true"
    )
    assert props("flaky")["command"].startswith("sh -c")
    assert props("hang")["timed_out"] == "true" and props("hang")["exit_code"] == "-15"
    assert cases["rerun_fail"].result[0].message == "exit code 2 after 2 attempts"
    run_with_junit(run_plan)  # xunit2, the default
    xml = junitparser.JUnitXml.fromfile(str(pytester.path / "out.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert cases["skipped"].result[0].message == "dependency 'rerun_fail' failed"
    assert "step: ok" in (cases["ok"].system_out or "")


def test_html_report_and_short_summary_show_the_same_reasons(run_plan: RunPlan, pytester: pytest.Pytester) -> None:
    result = run_with_junit(run_plan, "--html=report.html", "--self-contained-html", "-rA")
    result.stdout.fnmatch_lines(["*dependency 'rerun_fail' failed*", "*cancelled: 'fatal' failed (abort)*"])
    html = (pytester.path / "report.html").read_text()
    assert "dependency &amp;#x27;rerun_fail&amp;#x27; failed" in html  # in pytest-html's escaped JSON
