"""JUnit XML for plan steps: one ``<testcase>`` per step with its outcome, reason, attempts and logs.

pytest's ``--junitxml`` writer (``_pytest/junitxml.py``) makes a testcase per protocol run, so a retried
step would appear once per attempt, each with a Python-style report. Just before it writes the file,
this enricher keeps one testcase per step and rewrites it the way Maven Surefire reports retries
(``flakyFailure`` / ``rerunFailure``), which junit-10.xsd accepts and JVM dashboards show.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.junitxml import LogXML, mangle_test_address, xml_key

from ..run.observer import RunInfo
from ..run.process import tail
from ..run.records import ALLOWED_FAILURE, AttemptRecord, StepResult

if TYPE_CHECKING:
    from .controller import PlanController

OUTPUT_BYTES = 65536  # of each log in the file: a 100 MB log never makes a 100 MB report
ATTEMPT_OUTPUT_BYTES = 8192  # of each earlier attempt's logs


def headline(result: StepResult) -> str:
    """One line a dashboard can show: "exit code 2 after 3 attempts", "timed out after 600 s"."""
    if not result.attempts:
        return result.reason or result.outcome
    last = result.attempts[-1]
    what = last.error or f"exit code {last.exit_code}"
    return f"{what} after {len(result.attempts)} attempts" if len(result.attempts) > 1 else what


def attempt_line(record: AttemptRecord) -> str:
    how = record.error or ("succeeded" if record.state == "succeeded" else f"exit code {record.exit_code}")
    return f"attempt {record.attempt}: {how} ({record.duration:.2f} s, {record.worker})"


class JUnitEnricher:
    """A ``RunObserver`` and a pytest plugin on the controller, active only with ``--junitxml``."""

    def __init__(self, xml: LogXML, controller: PlanController) -> None:
        self.xml = xml
        self.controller = controller
        self.results: dict[str, StepResult] = {}

    @classmethod
    def create(cls, config: pytest.Config, controller: PlanController) -> JUnitEnricher | None:
        xml = config.stash.get(xml_key, None)
        return cls(xml, controller) if xml is not None else None

    # -- RunObserver ----------------------------------------------------------------------------

    def run_started(self, run: RunInfo, now: float) -> None:
        self.xml.add_global_property("plan_id", run.plan_id)
        self.xml.add_global_property("plan_path", run.plan_path)
        self.xml.add_global_property("run_id", run.run_id)
        for name, value in sorted(run.variables.items()):
            self.xml.add_global_property(f"var.{name}", value)

    def attempt_started(self, step_id: str, attempt: int, worker: str, now: float) -> None:
        pass

    def attempt_ended(self, record: AttemptRecord, will_retry: bool) -> None:
        pass

    def step_waiting(self, step_id: str, reason: str, now: float) -> None:
        pass

    def step_finished(self, result: StepResult, now: float) -> None:
        self.results[result.step_id] = result

    def run_finished(self, state: str, exit_code: int, message: str | None, now: float) -> None:
        pass

    # -- rewriting the report -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)  # before LogXML.pytest_sessionfinish writes the file
    def pytest_sessionfinish(self) -> None:
        # pytest finalizes a testcase when its teardown is reported (its reporter keeps only the
        # XML), so steps are recognised by the classname/name pytest derived from their node id.
        step_of = {}
        for step_id, place in self.controller.places.items():
            names = mangle_test_address(place.nodeid)
            classname = ".".join(names[:-1])
            if self.xml.prefix:
                classname = f"{self.xml.prefix}.{classname}"
            step_of[(classname, names[-1])] = step_id
        written = [(reporter, reporter.to_xml()) for reporter in self.xml.node_reporters_ordered]
        last = {}
        for index, (_, element) in enumerate(written):
            key = (element.get("classname"), element.get("name"))
            if key in step_of:
                last[key] = index  # one testcase per step: the last protocol run's
        kept: list[Any] = []
        for index, (reporter, element) in enumerate(written):
            key = (element.get("classname"), element.get("name"))
            if key not in step_of:
                kept.append(reporter)
            elif last[key] == index:
                result = self.results.get(step_of[key])
                kept.append(_Written(self._rewrite(element, result)) if result is not None else reporter)
        self.xml.node_reporters_ordered[:] = kept
        self._recount([r.to_xml() for r in kept])

    def _rewrite(self, original: ET.Element, result: StepResult) -> ET.Element:
        step = self.controller.steps[result.step_id]
        attrs = dict(original.attrib)
        attrs["classname"] = self.controller.plan_of(result.step_id).plan.plan_id  # groups a plan's steps
        attrs["name"] = result.step_id
        attrs["time"] = f"{sum(a.duration for a in result.attempts):.3f}"
        testcase = ET.Element("testcase", attrs)
        secrets = self.controller.context.masker.secrets
        last = result.attempts[-1] if result.attempts else None
        if self.xml.family == "xunit1":
            properties = ET.SubElement(testcase, "properties")
            for name, value in (
                ("step_id", result.step_id),
                ("command", self._command(result)),
                ("attempts", str(len(result.attempts))),
                ("exit_code", "" if last is None or last.exit_code is None else str(last.exit_code)),
                ("timed_out", str(bool(last and last.timed_out)).lower()),
                ("log_dir", str(Path(last.stdout_path).parent) if last and last.stdout_path else ""),
                ("tags", ",".join(step.tags)),
                ("flaky", str(result.outcome == "succeeded" and len(result.attempts) > 1).lower()),
            ):
                ET.SubElement(properties, "property", name=name, value=value)
        if result.outcome == "failed" and not result.allowed_failure:
            failure = ET.SubElement(testcase, "failure", message=headline(result), type="planrun.StepFailed")
            failure.text = self._body(result, step.id, secrets)
            testcase.extend(self._attempt_element("rerunFailure", a, secrets) for a in result.attempts[:-1])
        elif result.outcome == "succeeded":
            testcase.extend(self._attempt_element("flakyFailure", a, secrets) for a in result.attempts[:-1])
        else:
            if result.allowed_failure:
                message = f"{ALLOWED_FAILURE}: {headline(result)}"
            else:
                message = result.reason or result.outcome
            skipped = ET.SubElement(testcase, "skipped", message=message, type="pytest.skip")
            skipped.text = message
        out = ET.SubElement(testcase, "system-out")
        out.text = self._facts(result, step.tags) + (
            self._tail(last.stdout_path, OUTPUT_BYTES, secrets) if last else ""
        )
        if last is not None:
            err = ET.SubElement(testcase, "system-err")
            err.text = self._tail(last.stderr_path, OUTPUT_BYTES, secrets)
        return testcase

    def _command(self, result: StepResult) -> str:
        if result.attempts:
            return result.attempts[-1].command
        from ..run.step import display_command

        return display_command(self.controller.steps[result.step_id], self.controller.context.masker)

    def _facts(self, result: StepResult, tags: tuple[str, ...]) -> str:
        lines = [
            f"step: {result.step_id}",
            f"command: {self._command(result)}",
            f"outcome: {result.outcome}" + (f" ({result.reason})" if result.reason else ""),
            f"attempts: {len(result.attempts)}",
            *(f"  {attempt_line(a)}" for a in result.attempts),
        ]
        if tags:
            lines.append(f"tags: {', '.join(tags)}")
        if result.attempts:
            lines.append(f"logs: {Path(result.attempts[-1].stdout_path).parent}")
        return "\n".join(lines) + "\n--- output ---\n"

    def _body(self, result: StepResult, step_id: str, secrets: tuple[str, ...]) -> str:
        last = result.attempts[-1]
        lines = [f"step '{step_id}' failed: {headline(result)}", f"command: {last.command}"]
        lines += [attempt_line(a) for a in result.attempts]
        lines += ["--- stderr (end) ---", self._tail(last.stderr_path, 4096, secrets)]
        lines += ["--- stdout (end) ---", self._tail(last.stdout_path, 4096, secrets)]
        return "\n".join(lines)

    def _attempt_element(self, tag: str, record: AttemptRecord, secrets: tuple[str, ...]) -> ET.Element:
        element = ET.Element(tag, message=record.error or f"exit code {record.exit_code}", type="planrun.AttemptFailed")
        trace = ET.SubElement(element, "stackTrace")
        trace.text = f"{attempt_line(record)}\ncommand: {record.command}"
        out = ET.SubElement(element, "system-out")
        out.text = self._tail(record.stdout_path, ATTEMPT_OUTPUT_BYTES, secrets)
        err = ET.SubElement(element, "system-err")
        err.text = self._tail(record.stderr_path, ATTEMPT_OUTPUT_BYTES, secrets)
        return element

    @staticmethod
    def _tail(path: str, limit: int, secrets: tuple[str, ...]) -> str:
        if not path:
            return ""
        text = tail(Path(path), max_bytes=limit, secrets=secrets)
        # XML 1.0 cannot carry most control characters; a binary log must not break the report
        return "".join(c if c in "\t\n\r" or ord(c) >= 32 else "?" for c in text)

    def _recount(self, testcases: list[ET.Element]) -> None:
        stats = self.xml.stats
        for key in stats:
            stats[key] = 0
        double = 0
        for testcase in testcases:
            tags = {child.tag for child in testcase}
            if "failure" in tags:
                stats["failure"] += 1
            if "error" in tags:
                stats["error"] += 1
                double += "failure" in tags
            if "skipped" in tags:
                stats["skipped"] += 1
            if not tags & {"failure", "error", "skipped"}:
                stats["passed"] += 1
        self.xml.cnt_double_fail_tests = double


class _Written:
    """Stands in for pytest's finalized testcase reporter: it only has its XML left."""

    def __init__(self, element: ET.Element) -> None:
        self._element = element

    def to_xml(self) -> ET.Element:
        return self._element
