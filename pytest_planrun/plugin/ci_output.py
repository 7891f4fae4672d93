"""CI-native output beside JUnit: a GitHub Actions job summary and GitLab job-log sections.

Each appears only where its CI runs, detected from the variables that CI sets (``GITHUB_ACTIONS``
with ``GITHUB_STEP_SUMMARY``; ``GITLAB_CI``). Everything in it is masked and made readable as in JUnit.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.state import RunState
from ..run.observer import ResultsObserver, RunInfo
from ..run.records import StepResult
from .junit_case import headline
from .junit_text import clean, last_lines

TAIL_LINES = 30  # of each log in a folded GitHub tail or a GitLab section


def outcome_words(result: StepResult) -> str:
    if result.allowed_failure:
        return "allowed failure"
    if result.outcome == "succeeded" and len(result.attempts) > 1:
        return "succeeded after retries"
    return result.outcome


class CiOutput(ResultsObserver):
    """A ``RunObserver`` and a pytest plugin on the controller, registered only under a known CI."""

    def __init__(self, environ: Mapping[str, str], secrets: tuple[str, ...]) -> None:
        summary = environ.get("GITHUB_STEP_SUMMARY", "")
        self.github_summary = Path(summary) if environ.get("GITHUB_ACTIONS") == "true" and summary else None
        self.gitlab = environ.get("GITLAB_CI") == "true"
        self.secrets = secrets
        super().__init__()
        self.names: dict[str, str] = {}
        self.order: dict[str, int] = {}  # the plans' declaration order: rows do not depend on timing

    @classmethod
    def create(cls, environ: Mapping[str, str], secrets: tuple[str, ...]) -> CiOutput | None:
        output = cls(environ, secrets)
        return output if output.github_summary is not None or output.gitlab else None

    # -- RunObserver ----------------------------------------------------------------------------

    def run_started(self, run: RunInfo, now: float) -> None:
        super().run_started(run, now)
        self.names = {s.step_id: s.name for s in run.steps if s.name}
        self.order = {s.step_id: position for position, s in enumerate(run.steps)}

    def run_finished(self, state: RunState, exit_code: int, message: str | None, now: float) -> None:
        super().run_finished(state, exit_code, message, now)
        if self.github_summary is not None and self.run is not None:
            with self.github_summary.open("a", encoding="utf-8") as summary:
                summary.write(self.markdown(state, message))

    def finished(self) -> list[StepResult]:
        return sorted(self.results.values(), key=lambda r: self.order.get(r.step_id, len(self.order)))

    # -- GitHub ---------------------------------------------------------------------------------

    def markdown(self, state: str, message: str | None) -> str:
        """The job summary: one table row per step, the failed steps' log tails folded."""
        assert self.run is not None
        run = self.run
        title = f"planrun: plan {run.plan_id}, run {run.run_id} {state}" + (f" ({message})" if message else "")
        lines = [f"### {_cell(clean(title, self.secrets))}", ""]
        lines += ["| step | name | outcome | duration | attempts | reason |", "|---|---|---|---|---|---|"]
        for result in self.finished():
            reason = headline(result) if result.outcome == "failed" else (result.reason or "")
            cells = [
                f"`{result.step_id}`",
                self.names.get(result.step_id, ""),
                outcome_words(result),
                f"{sum(a.duration for a in result.attempts):.2f} s",
                str(len(result.attempts)),
                reason,
            ]
            lines.append("| " + " | ".join(_cell(clean(c, self.secrets)) for c in cells) + " |")
        lines.append("")
        for result in self.finished():
            if result.outcome != "failed" or not result.attempts:
                continue
            last = result.attempts[-1]
            tail = "\n".join(
                text
                for label, path in (("stderr", last.stderr_path), ("stdout", last.stdout_path))
                if (text := _labelled(label, last_lines(path, TAIL_LINES, self.secrets)))
            )
            summary = clean(f"{result.step_id}: {headline(result)}", self.secrets)
            fence = "`" * max([3, *(len(m) + 1 for m in re.findall(r"`{3,}", tail))])  # longer than any inside
            lines += ["<details>", f"<summary>{_html(summary)}</summary>", ""]
            lines += [f"{fence}text", tail, fence] if tail else ["(no output)"]
            lines += ["</details>"]
        return "\n".join(lines) + "\n\n"

    # -- GitLab ---------------------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.gitlab:
            return
        for result in self.finished():
            if not result.attempts:
                continue
            last = result.attempts[-1]
            name = "planrun_" + re.sub(r"[^A-Za-z0-9_.-]", "_", result.step_id)
            collapsed = "[collapsed=true]" if result.outcome == "succeeded" else ""
            name_part = f" ({self.names[result.step_id]})" if result.step_id in self.names else ""
            why = headline(result) if result.outcome == "failed" else result.reason
            what = outcome_words(result) + (f", {why}" if why else "")
            header = clean(f"step '{result.step_id}'{name_part}: {what}", self.secrets)
            start, end = int(result.attempts[0].started_at), int(last.ended_at or time.time())
            terminalreporter.write_line(f"\x1b[0Ksection_start:{start}:{name}{collapsed}\r\x1b[0K{header}")
            for label, path in (("stdout", last.stdout_path), ("stderr", last.stderr_path)):
                text = _labelled(label, last_lines(path, TAIL_LINES, self.secrets))
                if text:
                    terminalreporter.write_line(text)
            terminalreporter.write_line(f"\x1b[0Ksection_end:{end}:{name}\r\x1b[0K")


def _labelled(label: str, text: str) -> str:
    return f"--- {label} (last lines) ---\n{text}" if text else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
