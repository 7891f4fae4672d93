"""One step's ``<testcase>``: its outcome first, where dashboards that read the first child look.

What each consumer reads (checked against their parsers, see the README's JUnit section):
GitLab keeps the text of ``failure``/``error``/``skipped`` and, for a failure, ``system-out`` and
``system-err``, but nothing for a passed case; xunit-viewer 10 takes the first child that is not
``failure``/``error``/``skipped`` as the status when none of those is present; Jenkins and
action-junit-report find every element by its name.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..run.records import ALLOWED_FAILURE, AttemptRecord, StepResult
from .junit_text import clean, last_lines, log_tail

OUTPUT_BYTES = 65536  # of each log in system-out/err: a 100 MB log never makes a 100 MB report
ATTEMPT_OUTPUT_BYTES = 8192  # of each earlier attempt's logs
BODY_LINES = 20  # of each log in a failure or skipped body, the text GitLab and GitHub show

Family = Literal["xunit1", "xunit2", "legacy"]


@dataclass(frozen=True, slots=True)
class StepCase:
    """What a testcase says about a step besides its result."""

    classname: str  # the plan id: the history key is (suite, classname, step id)
    step_id: str
    name: str | None  # the step's display name, if the plan gives one
    command: str  # masked
    tags: tuple[str, ...]
    file: str  # the plan file as the node id spells it
    line: int  # 1-based line of the step's "id"
    secrets: tuple[str, ...]


def headline(result: StepResult) -> str:
    """One line a dashboard can show: "exit code 2 after 3 attempts", "timed out after 600 s"."""
    if not result.attempts:
        return result.reason or result.outcome
    return result.attempts[-1].headline()


def attempt_line(record: AttemptRecord) -> str:
    how = record.error or ("succeeded" if record.state == "succeeded" else f"exit code {record.exit_code}")
    line = f"attempt {record.attempt}: {how} ({record.duration:.2f} s, {record.worker})"
    return f"{line}; {record.retry_reason}" if record.retry_reason else line


def testcase(case: StepCase, result: StepResult, family: Family) -> ET.Element:
    """The testcase of a finished step. Children in this order: the outcome element (failure or
    skipped) with the readable story, Surefire's ``rerunFailure`` per earlier attempt of a failed
    step, ``system-out``/``system-err`` when not empty, then ``flakyFailure`` per failed attempt of
    a step that passed: after the output, so that readers taking the first child see a pass
    (junit-10.xsd allows any order; Surefire's own xsd would want them first)."""
    attrs = {
        "classname": case.classname,
        "name": case.step_id,
        "time": f"{sum(a.duration for a in result.attempts):.3f}",
    }
    if family != "xunit2":
        attrs |= {"file": case.file, "line": str(case.line)}  # 1-based, as annotations expect
    element = ET.Element("testcase", attrs)
    if family != "xunit2":
        element.append(_properties(case, result))
    last = result.attempts[-1] if result.attempts else None
    secrets = case.secrets
    if result.outcome == "failed" and not result.allowed_failure:
        failure = ET.SubElement(element, "failure", message=clean(headline(result), secrets), type="planrun.StepFailed")
        failure.text = _story(case, result, f" failed: {headline(result)}", location=True)
        element.extend(_attempt(tag="rerunFailure", record=a, secrets=secrets) for a in result.attempts[:-1])
    elif result.outcome != "succeeded":
        if result.allowed_failure:
            message, kind = f"{ALLOWED_FAILURE}: {headline(result)}", "pytest.xfail"
        else:
            message, kind = result.reason or result.outcome, "pytest.skip"
        skipped = ET.SubElement(element, "skipped", message=clean(message, secrets), type=kind)
        skipped.text = _story(case, result, f": {message}")  # GitLab shows this text only: the output goes in too
    stdout = log_tail(last.stdout_path, OUTPUT_BYTES, secrets) if last else ""
    if result.outcome == "succeeded":  # no outcome element: the story opens the output
        story = _story(case, result, f" {_passed(result)}")
        stdout = f"{story}\n--- stdout ---\n{stdout}" if stdout else story
    _section(element, "system-out", stdout)
    _section(element, "system-err", log_tail(last.stderr_path, OUTPUT_BYTES, secrets) if last else "")
    if result.outcome == "succeeded":
        element.extend(_attempt(tag="flakyFailure", record=a, secrets=secrets) for a in result.attempts[:-1])
    return element


def _passed(result: StepResult) -> str:
    count = len(result.attempts)
    if count > 1:
        return f"succeeded on attempt {count} (passed after {count - 1} failed)"
    return f"succeeded ({result.reason})" if result.reason else "succeeded"  # e.g. resumed from a run


def _story(case: StepCase, result: StepResult, what: str, *, location: bool = False) -> str:
    """What happened, for a reader of one text: the step and its name, the command, each attempt,
    the end of its output and where the full logs are. ``what`` follows the step's title."""
    secrets = case.secrets
    title = f"step '{case.step_id}'" + (f" ({case.name})" if case.name else "")
    lines = [clean(title + what, secrets)]
    if result.attempts:
        lines.append(clean(f"command: {result.attempts[-1].command}", secrets))
        lines += [clean(attempt_line(a), secrets) for a in result.attempts]
        last = result.attempts[-1]
        if result.outcome != "succeeded":
            for label, path in (("stderr", last.stderr_path), ("stdout", last.stdout_path)):
                text = last_lines(path, BODY_LINES, secrets)
                if text:
                    lines += [f"--- {label} (last lines) ---", text]
        if last.stdout_path:
            lines.append(f"logs: {Path(last.stdout_path).parent}")
    if case.tags and result.outcome == "succeeded":
        lines.append(clean(f"tags: {', '.join(case.tags)}", secrets))
    if location:
        # action-junit-report takes the last " <file>:<line>" of a failure's text when the testcase
        # has no line attribute (xunit2), so this line stays the last one
        lines.append(f"at {case.file}:{case.line}")
    return "\n".join(lines)


def _section(parent: ET.Element, tag: str, text: str) -> None:
    if text.strip():  # an empty section gives GitLab an empty "System Err:" heading
        ET.SubElement(parent, tag).text = text


def _attempt(*, tag: str, record: AttemptRecord, secrets: tuple[str, ...]) -> ET.Element:
    element = ET.Element(tag, message=clean(record.error or f"exit code {record.exit_code}", secrets))
    element.set("type", "planrun.AttemptFailed")
    ET.SubElement(element, "stackTrace").text = clean(f"{attempt_line(record)}\ncommand: {record.command}", secrets)
    _section(element, "system-out", log_tail(record.stdout_path, ATTEMPT_OUTPUT_BYTES, secrets))
    _section(element, "system-err", log_tail(record.stderr_path, ATTEMPT_OUTPUT_BYTES, secrets))
    return element


def _properties(case: StepCase, result: StepResult) -> ET.Element:
    """xunit1's testcase properties: the facts as name/value pairs, for tools that read them."""
    last = result.attempts[-1] if result.attempts else None
    properties = ET.Element("properties")
    for name, value in (
        ("step_id", case.step_id),
        ("name", case.name or ""),
        ("command", case.command),
        ("attempts", str(len(result.attempts))),
        ("exit_code", "" if last is None or last.exit_code is None else str(last.exit_code)),
        ("timed_out", str(bool(last and last.timed_out)).lower()),
        ("log_dir", str(Path(last.stdout_path).parent) if last and last.stdout_path else ""),
        ("tags", ",".join(case.tags)),
        ("flaky", str(result.outcome == "succeeded" and len(result.attempts) > 1).lower()),
    ):
        ET.SubElement(properties, "property", name=name, value=clean(value, case.secrets))
    return properties
