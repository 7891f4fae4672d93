"""Which workers may run which steps: a step's ``runs_on`` labels against each worker's labels.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# A label in a plan's ``runs_on`` and in ``--planrun-worker-label``; also a worker name there. No ','
# (it separates labels) and no '=' (it ends the worker name), so both read back unambiguously.
LABEL_PATTERN = r"^[A-Za-z0-9_.-]+$"
_LABEL = re.compile(LABEL_PATTERN)

SERIAL_WORKER = "main"  # the one worker of a run without xdist, as the ledger records it


def is_label(text: str) -> bool:
    """Whether ``text`` is a valid label (or worker name): letters, digits, ``_``, ``.``, ``-``."""
    return _LABEL.match(text) is not None


def fits(required: Sequence[str], labels: frozenset[str]) -> bool:
    """Whether a worker carrying ``labels`` may run a step that needs ``required`` (all of them);
    a step that needs nothing fits every worker."""
    return all(label in labels for label in required)


def unplaceable(
    required: Mapping[str, Sequence[str]], workers: Mapping[str, frozenset[str]]
) -> dict[str, tuple[str, ...]]:
    """Each step (id -> its required labels) that no worker in ``workers`` (name -> labels) fits,
    with its labels, in the order of ``required``. With no workers at all, no step fits."""
    return {
        step_id: tuple(labels)
        for step_id, labels in required.items()
        if not any(fits(labels, carried) for carried in workers.values())
    }


def placement_problems(required: Mapping[str, Sequence[str]], workers: Mapping[str, frozenset[str]]) -> list[str]:
    """One line per step that no worker fits, naming its labels, the workers' labels and the
    ``--planrun-worker-label`` value that would let the closest worker run it."""
    shown = ", ".join(f"{name}={shown_labels(carried)}" for name, carried in workers.items()) or "none"
    lines = []
    for step_id, labels in unplaceable(required, workers).items():
        line = f"step {step_id!r}: runs_on {list(labels)} matches no worker (workers: {shown})"
        if workers:
            name, carried = _closest(labels, workers)
            missing = [label for label in dict.fromkeys(labels) if label not in carried]
            line += f"; label a worker with --planrun-worker-label {name}={','.join([*sorted(carried), *missing])}"
        lines.append(line)
    return lines


def shown_labels(carried: frozenset[str]) -> str:
    """A worker's labels as messages show them: ``gpu,linux``, or ``(no labels)``."""
    return ",".join(sorted(carried)) if carried else "(no labels)"


def _closest(labels: Sequence[str], workers: Mapping[str, frozenset[str]]) -> tuple[str, frozenset[str]]:
    """The worker missing the fewest of ``labels``; on a tie the one carrying fewest others (a bare
    worker is the least surprising to label), then the first given."""
    return min(
        workers.items(),
        key=lambda item: (sum(label not in item[1] for label in set(labels)), len(item[1] - set(labels))),
    )
