"""What is wrong with a plan: one `Problem` per finding, all raised together as a `PlanError`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding in a plan file, naming where it is and, when we can tell, what to do.

    ``step`` is a step id, or ``steps[3]`` for a step without a usable id. A ``field`` of
    ``"steps"`` without a step means the steps as a whole (a dependency cycle, for example).
    """

    file: str
    step: str | None
    field: str | None
    message: str
    hint: str | None = None

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


class PlanError(Exception):
    """A plan cannot be used; ``problems`` lists every problem found, ``str()`` gives one per line."""

    problems: tuple[Problem, ...]

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __reduce__(self) -> tuple[type[PlanError], tuple[tuple[Problem, ...]]]:
        # Exceptions unpickle as cls(*args), and args holds the joined message, not the problems.
        return (PlanError, (self.problems,))
