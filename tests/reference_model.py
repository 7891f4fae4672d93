"""A reference model of a run's verdicts, written from SPEC §4 alone, to check the scheduling core against.

It covers dependencies, ``on_failure``, ``critical`` and retries, for steps without a condition or a
lock, in a run nobody interrupts. Steps run one at a time; which one runs next is the only choice a
scheduler makes that changes verdicts (under abort, whatever has not run by then is cancelled), so
the caller passes the order it saw steps end in. It imports nothing from ``pytest_planrun``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Policy = Literal["abort", "skip_dependents", "continue"]

# How the reason of a skipped or cancelled step names the failed step (the same text in pytest, JUnit
# and the ledger): the model says which names are right, these patterns find the name in a reason.
REASONS = {
    "skipped": re.compile(r"dependency '(.+)' failed"),
    "canceled": re.compile(r"cancelled: '(.+)' failed \(abort\)"),
}


@dataclass(frozen=True)
class ModelStep:
    id: str
    depends_on: tuple[str, ...] = ()
    on_failure: Policy = "abort"
    critical: bool = True
    retries: int = 0
    failures: int = 0  # attempts that fail before one passes: the step fails if that is more than its retries


@dataclass(frozen=True)
class Verdict:
    outcome: str  # succeeded | failed | skipped | canceled
    names: frozenset[str] = frozenset()  # the failed steps its reason may name (skipped, canceled)
    attempts: int = 0


def run(steps: Sequence[ModelStep], ended_order: Sequence[str] = ()) -> tuple[dict[str, Verdict], str]:
    """Each step's verdict and the run's state (``succeeded`` | ``failed``)."""
    by_id = {s.id: s for s in steps}
    rank = {step_id: i for i, step_id in enumerate(ended_order)}
    verdicts: dict[str, Verdict] = {}
    aborted_by = None

    def lets_dependents_run(dep: str) -> bool:  # succeeded, or failed under `continue`
        verdict = verdicts[dep]
        return verdict.outcome == "succeeded" or (verdict.outcome == "failed" and by_id[dep].on_failure == "continue")

    def blamed(dep: str) -> frozenset[str]:
        return frozenset({dep}) if verdicts[dep].outcome == "failed" else verdicts[dep].names

    while len(verdicts) < len(steps):
        undecided = [s for s in steps if s.id not in verdicts]
        if aborted_by is not None:  # abort: nothing new starts; the rest is cancelled, naming the failed step
            verdicts.update((s.id, Verdict("canceled", frozenset({aborted_by}))) for s in undecided)
            break
        ready = [s for s in undecided if all(d in verdicts for d in s.depends_on)]
        blocked = [s for s in ready if not all(lets_dependents_run(d) for d in s.depends_on)]
        for s in blocked:  # skipped the moment its dependencies ended, naming a failure behind it
            names = frozenset(n for d in s.depends_on if not lets_dependents_run(d) for n in blamed(d))
            verdicts[s.id] = Verdict("skipped", names)
        if blocked:
            continue
        step = min(ready, key=lambda s: rank.get(s.id, len(rank)))
        attempts = min(step.failures, step.retries) + 1  # retries: extra attempts after a failure
        if step.failures < attempts:
            verdicts[step.id] = Verdict("succeeded", attempts=attempts)
        else:
            verdicts[step.id] = Verdict("failed", attempts=attempts)
            # critical: false turns abort into skip_dependents
            if step.on_failure == "abort" and step.critical:
                aborted_by = step.id
    failed = any(v.outcome == "failed" and by_id[s].critical for s, v in verdicts.items())
    return verdicts, "failed" if failed else "succeeded"
