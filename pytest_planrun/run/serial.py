"""The serial driver: carries out the core's actions one step at a time, in this process.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..core.state import Action, Start


class Drivable(Protocol):
    """What the serial driver needs of the controller (``plugin.controller.PlanController``)."""

    @property
    def final(self) -> object | None: ...

    def take_actions(self) -> list[Action]: ...

    def claim(self, start: Start, worker: str) -> bool: ...

    def next_wake(self) -> float | None: ...

    def wake(self) -> None: ...


def drive_serially(
    controller: Drivable,
    run_step: Callable[[Start], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run the plan to its end: start what the core says, feed it outcomes (through the reports
    ``run_step`` produces), and sleep only until the next retry is due — never a polling loop.

    Cancels need nothing here: one step runs at a time, and it has ended by the time actions are
    taken; a start that a cancel overtook is withdrawn by the controller (``claim`` says no).
    """
    starts: deque[Start] = deque()

    def take() -> None:
        starts.extend(a for a in controller.take_actions() if isinstance(a, Start))

    take()
    while True:
        while starts:
            start = starts.popleft()
            if controller.claim(start, "main"):
                run_step(start)
            take()
        if controller.final is not None:
            return
        due = controller.next_wake()
        if due is None:
            raise RuntimeError("the run is not finished but nothing is running or waiting")
        sleep(max(0.0, due - clock()))
        controller.wake()
        take()
