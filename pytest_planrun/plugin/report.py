"""The terminal's view of a run: waiting steps as they happen, and a summary of retries and verdicts.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..core.state import Ended, Outcome, Verdict
from ..run.observer import ResultsObserver
from ..run.records import ALLOWED_FAILURE, AttemptRecord
from .items import add_retry_reason

if TYPE_CHECKING:
    from .controller import PlanController


Location = tuple[str, int | None, str]


def verdict_longrepr(location: Location, reason: str) -> tuple[str, int, str]:
    """A skip's report body, as ``pytest.skip`` makes it (the terminal's skip summary reads it)."""
    path, line, _ = location
    return path, (line or 0) + 1, f"Skipped: {reason}"


def label_attempt(report: pytest.TestReport, ended: Ended, record: AttemptRecord, location: Location) -> None:
    """Make an attempt's report say the core's verdict on it: the label its worker gave was only
    the verdict foreseen at dispatch, and an abort or interrupt since may have changed it."""
    if ended.verdict is Verdict.SUCCEEDED:
        return
    if ended.retry_reason is not None and isinstance(report.longrepr, str):
        report.longrepr = add_retry_reason(report.longrepr, ended.retry_reason)
    if hasattr(report, "wasxfail"):
        del report.wasxfail
    if ended.verdict is Verdict.RETRY:
        report.outcome = "rerun"  # type: ignore[assignment]  # rerunfailures' category
    elif ended.verdict is Verdict.FAILED:
        report.outcome = "failed"
    elif ended.verdict is Verdict.ALLOWED_FAILURE:
        report.outcome = "skipped"
        report.wasxfail = f"{ALLOWED_FAILURE}: {record.headline()}"
    else:
        report.outcome = "skipped"
        report.longrepr = verdict_longrepr(location, ended.reason or "cancelled")


def provisional_label(report: pytest.TestReport, if_failed: Verdict, record: AttemptRecord) -> None:
    """Where the attempt ran (a worker, or the serial loop before the controller hears of it), a
    failure is labelled with the verdict the core foresaw at its start, so that pytest's own
    bookkeeping there (``-x`` on a worker) does not count a retried or allowed failure; the
    controller's ``label_attempt`` has the last word."""
    if if_failed is Verdict.RETRY:
        report.outcome = "rerun"  # type: ignore[assignment]
    elif if_failed is Verdict.ALLOWED_FAILURE:
        report.outcome = "skipped"
        report.wasxfail = f"{ALLOWED_FAILURE}: {record.headline()}"


def assumed_lines(assumed: dict[str, tuple[str, ...]]) -> list[str]:
    """The header lines naming deselected dependencies taken as succeeded, one per selected step."""
    return [
        f"planrun: step '{step_id}' runs as if {', '.join(repr(d) for d in deps)} succeeded (deselected)"
        for step_id, deps in assumed.items()
    ]


class TerminalSummary(ResultsObserver):
    """A ``RunObserver`` that remembers what the terminal summary needs, and says which step waits."""

    def __init__(self, config: pytest.Config) -> None:
        super().__init__()
        self.config = config
        self.controller: PlanController | None = None

    def _line(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.config.get_verbosity() >= 0:
            reporter.write_line(text)

    def step_waiting(self, step_id: str, reason: str, now: float) -> None:
        self._line(f"planrun: step '{step_id}' is {reason}")

    def write(self, reporter: Any) -> None:
        if self.run is None:
            return
        results = self.results.values()
        flaky = [r for r in results if r.outcome is Outcome.SUCCEEDED and len(r.attempts) > 1]
        allowed = [r for r in results if r.allowed_failure]
        if flaky:
            reporter.write_sep("=", "planrun: passed after retries", yellow=True)
            for result in flaky:
                failures = ", ".join(
                    f"#{r.attempt} {r.error or 'failed'}" for r in result.attempts if r.state != "succeeded"
                )
                reporter.write_line(f"FLAKY {result.step_id}: passed on attempt {len(result.attempts)} ({failures})")
        if allowed:
            reporter.write_sep("=", "planrun: allowed failures (critical: false)", yellow=True)
            for result in allowed:
                last = result.attempts[-1] if result.attempts else None
                reporter.write_line(f"ALLOWED {result.step_id}: {last.error if last else result.reason}")
        run = self.run
        state = self.state or "canceled"
        text = f"planrun: run {run.run_id} {state}" + (f" ({self.message})" if self.message else "")
        reporter.write_line(text + f"; logs in {run.run_dir}")
