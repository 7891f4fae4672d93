"""Hooks planrun offers to plugins and ``conftest.py`` files, added in ``pytest_addhooks``.

Both are called on the controller only (the one process of a serial run, xdist's controller
otherwise), so an implementation sees every step of the run whatever worker ran it.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..plan import ResolvedStep
    from ..run.records import AttemptRecord, StepResult


@pytest.hookspec(firstresult=True)
def pytest_planrun_retry_delay(config: pytest.Config, step: ResolvedStep, record: AttemptRecord) -> float | None:
    """Return the seconds to wait before the next attempt of ``step``, or None for the delay the
    step's policy gives (``retry_delay_sec``, ``retry_backoff``, ``retry_max_delay_sec``, ``retry_jitter``).

    Called after a failed attempt that will be retried (never after the last one, nor for a failure
    ``retry_on`` does not list, nor once the run is aborting). Stops at the first non-None result; a
    negative result counts as 0.

    :param config: The pytest config of the run.
    :param step: The step, variables substituted.
    :param record: The attempt that failed: exit code, timed out, duration, log paths.
    """


def pytest_planrun_step_finished(config: pytest.Config, result: StepResult) -> None:
    """Called once per step when its outcome is final: succeeded, failed (allowed or not), skipped
    or cancelled — in the order the outcomes are decided, in serial and xdist runs alike.

    :param config: The pytest config of the run.
    :param result: The outcome, its reason and every attempt the step made.
    """
