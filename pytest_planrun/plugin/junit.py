"""JUnit XML for plan steps: one ``<testcase>`` per step with its outcome, reason, attempts and logs.

pytest's ``--junitxml`` writer makes a testcase per protocol run, so a retried step would appear once
per attempt, each with a Python-style report. Once pytest has written the file, this plugin replaces
the steps' testcases with one per step (see ``junit_case``), sets the suite's counts and wall time and
adds the run's properties. It reads and rewrites the finished file only: no pytest internals.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
import os
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from ..run.observer import ResultsObserver
from ..run.records import StepResult
from ..run.step import display_command
from .junit_case import Family, StepCase, testcase
from .junit_text import clean

if TYPE_CHECKING:
    from .controller import PlanController

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (classname, name) of a testcase


def pytest_key(nodeid: str, prefix: str | None) -> Key:
    """The (classname, name) pytest's junitxml gives a node id (``mangle_test_address``, pytest 9.2)."""
    path, *names = nodeid.split("::")
    parts = [re.sub(r"\.py$", "", path.replace("/", ".")), *names]
    classname = ".".join(parts[:-1])
    return (f"{prefix}.{classname}" if prefix else classname), parts[-1]


class JUnitEnricher(ResultsObserver):
    """A ``RunObserver`` and a pytest plugin on the controller, active only with ``--junitxml``."""

    def __init__(self, path: Path, family: Family, prefix: str | None, controller: PlanController) -> None:
        super().__init__()
        self.path = path
        self.family = family
        self.prefix = prefix
        self.controller = controller
        self.started = time.monotonic()  # the session's start: the suite's time is the run's wall time

    @classmethod
    def create(cls, config: pytest.Config, controller: PlanController) -> JUnitEnricher | None:
        xmlpath = getattr(config.option, "xmlpath", None)  # absent with -p no:junitxml
        if not xmlpath or hasattr(config, "workerinput"):  # pytest writes the file on the controller only
            return None
        path = Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(xmlpath)))))
        family = cast(Family, config.getini("junit_family"))
        return cls(path, family, getattr(config.option, "junitprefix", None), controller)

    # -- rewriting the report -------------------------------------------------------------------

    def pytest_unconfigure(self) -> None:
        # Every pytest_sessionfinish has run: junitxml's wrote the file, ours reported the last
        # verdicts of an interrupted run.
        if self.run is None:
            return
        try:
            tree = ET.parse(self.path)
        except (OSError, ET.ParseError) as error:  # removed or replaced by another plugin: leave it
            log.warning("planrun: JUnit file %s not enriched: %s", self.path, error)
            return
        suite = tree.getroot().find("testsuite")
        if suite is None:
            return
        self._rewrite(suite)
        temporary = self.path.with_name(self.path.name + ".planrun")
        temporary.write_text(
            '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(tree.getroot(), encoding="unicode"),
            encoding="utf-8",
        )
        os.replace(temporary, self.path)

    def _rewrite(self, suite: ET.Element) -> None:
        controller = self.controller
        keys = {pytest_key(place.nodeid, self.prefix): step_id for step_id, place in controller.places.items()}
        written: dict[str, ET.Element] = {}  # pytest's last testcase of each step
        children: list[ET.Element] = []
        insert_at: int | None = None
        for child in suite:
            step_id = keys.get((child.get("classname", ""), child.get("name", ""))) if child.tag == "testcase" else None
            if step_id is None:
                children.append(child)
                continue
            written[step_id] = child
            if insert_at is None:
                insert_at = len(children)
        ordered = [*self.results, *(s for s in controller.places if s not in self.results)]
        cases = [
            self._case(self.results[s]) if s in self.results else written[s]
            for s in ordered
            if s in self.results or s in written
        ]
        if insert_at is None:
            insert_at = len(children)
        children[insert_at:insert_at] = cases
        for child in list(suite):
            suite.remove(child)
        suite.extend(children)
        self._properties(suite)
        self._summary(suite, cases)

    def _case(self, result: StepResult) -> ET.Element:
        controller = self.controller
        step = controller.steps[result.step_id]
        plan = controller.plan_of(result.step_id)
        place = controller.places.get(result.step_id)
        line = (place.location[1] or 0) if place else 0
        classname = plan.plan.plan_id
        case = StepCase(
            classname=f"{self.prefix}.{classname}" if self.prefix else classname,
            step_id=result.step_id,
            name=step.step.name,
            command=display_command(step, plan.masker),
            tags=tuple(step.tags),
            file=self._file_of(result.step_id),
            line=line + 1,  # step_lines() counts from 0; every consumer counts from 1
            secrets=controller.context.masker.secrets,
        )
        return testcase(case, result, self.family)

    def _properties(self, suite: ET.Element) -> None:
        assert self.run is not None
        properties = suite.find("properties")
        if properties is None:
            properties = ET.Element("properties")
            suite.insert(0, properties)
        run = self.run
        ours = [("plan_id", run.plan_id), ("plan_path", run.plan_path), ("run_id", run.run_id)]
        if self.state is not None:
            ours.append(("run_state", self.state))
        ours += [(f"var.{name}", value) for name, value in sorted(run.variables.items())]  # masked already
        secrets = self.controller.context.masker.secrets
        for index, (name, value) in enumerate(ours):
            properties.insert(index, ET.Element("property", name=name, value=clean(value, secrets)))

    def _summary(self, suite: ET.Element, steps: list[ET.Element]) -> None:
        cases = suite.findall("testcase")
        for attribute, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            suite.set(attribute, str(sum(1 for c in cases if c.find(tag) is not None)))
        suite.set("tests", str(len(cases)))
        suite.set("time", f"{time.monotonic() - self.started:.3f}")
        if self.family == "xunit2" and steps and len(cases) == len(steps) and len(self.controller.plans) == 1:
            # xunit2 has no testcase file: action-junit-report falls back on the suite's, which
            # can name the plan only when every testcase is one of its steps
            suite.set("file", self._file_of(next(iter(self.controller.places))))

    def _file_of(self, step_id: str) -> str:
        """The plan file as pytest spells it in node ids (relative to the rootdir)."""
        place = self.controller.places.get(step_id)
        return (place.nodeid.rpartition("::")[0] if place else "") or self.controller.plan_of(step_id).display_path
