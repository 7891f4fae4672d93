"""What is wrong with a plan: one `Problem` per finding, all raised together as a `PlanError`.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding in a plan file, naming where it is and, when we can tell, what to do.

    ``step`` is a step id, or ``steps[3]`` for a step without a usable id. A ``field`` of
    ``"steps"`` without a step means the steps as a whole (a dependency cycle, for example).
    ``summary`` is the wording of the earlier orchestrator's error for this kind of problem
    (``Missing required field: X``), which its callers match on; None where it had none.
    """

    file: str
    step: str | None
    field: str | None
    message: str
    hint: str | None = None
    summary: str | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.step is not None:
            # Index labels are not ids, so they are not quoted like one.
            where.append(self.step if self.step.startswith("steps[") else f"step '{self.step}'")
        if self.field is not None:
            field = self.field if self.field == "steps" and self.step is None else f"field '{self.field}'"
            if self.step is not None:
                where[-1] += f", {field}"
            else:
                where.append(field)
        text = ": ".join([*where, self.message])
        if self.hint:
            # A question ("did you mean 'build'?") reads as an aside; an instruction follows the fact.
            text += f" ({self.hint})" if self.hint.endswith("?") else f"; {self.hint}"
        return text


class PlanError(ValueError):
    """A plan cannot be used; ``problems`` lists every problem found.

    ``str()`` gives one problem per line, after a first line in the earlier orchestrator's wording
    when a problem has one (``Circular dependency detected: a → b → a``): its callers catch
    ``ValueError`` and match the start of the text.
    """

    problems: tuple[Problem, ...]

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        lines = [str(problem) for problem in self.problems]
        summary = next((p.summary for p in self.problems if p.summary is not None), None)
        # Not super(): in PlanJSONDecodeError the next class is JSONDecodeError, which wants other arguments.
        ValueError.__init__(self, "\n".join([summary, *lines] if summary is not None else lines))

    def __reduce__(self) -> tuple[type[PlanError], tuple[Any, ...]]:
        # Exceptions unpickle as cls(*args), and args holds the joined message, not the problems.
        return (PlanError, (self.problems,))


class PlanJSONDecodeError(PlanError, json.JSONDecodeError):
    """A plan file that is not JSON: a ``json.JSONDecodeError`` (``lineno``, ``colno``) for callers of
    the earlier API, a ``PlanError`` for the loader's callers."""

    def __init__(self, file: str, error: json.JSONDecodeError) -> None:
        json.JSONDecodeError.__init__(self, error.msg, error.doc, error.pos)
        message = f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        # json's own text first: "Expecting ',' delimiter: line 4 column 3 (char 40)"
        PlanError.__init__(self, [Problem(file, None, None, message, summary=str(error))])
        self.file = file

    def __reduce__(self) -> tuple[type[PlanError], tuple[Any, ...]]:
        return (PlanJSONDecodeError, (self.file, json.JSONDecodeError(self.msg, self.doc, self.pos)))


class PlanNotFoundError(PlanError):
    """A plan file that does not exist. ``Plan.from_file`` turns it into the ``FileNotFoundError``
    the earlier API raised; the loader's callers get it as a problem like any other."""

    def __init__(self, file: str, path: str) -> None:
        PlanError.__init__(self, [Problem(file, None, None, "plan file not found")])
        self.path = path

    def __reduce__(self) -> tuple[type[PlanError], tuple[Any, ...]]:
        return (PlanNotFoundError, (self.problems[0].file, self.path))
