"""The plans a remote worker runs, shipped in its ``workerinput``: it need not have the files, and
it resolves no variable itself (its environment is not the controller's).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..plan import LoadedPlan

PLANS = "planrun_plans"


@dataclass(frozen=True, slots=True)
class ShippedPlan:
    """A plan as the controller loaded it: its text, its variables' values and its node id."""

    file_name: str
    text: str
    display_path: str
    nodeid: str  # the plan file's node id on the controller: every worker must collect the same ids
    variables: dict[str, str]


def plan_nodeid(path: Path, rootpath: Path) -> str:
    """The node id pytest gives a plan file: its path from the rootdir, or, outside it, its file
    name (see ``plan_hooks.pytest_collect_file``)."""
    try:
        return path.relative_to(rootpath).as_posix()
    except ValueError:
        return path.name


def ship(plans: list[LoadedPlan], rootpath: Path) -> list[dict[str, Any]]:
    return [
        asdict(
            ShippedPlan(
                file_name=plan.path.name,
                text=plan.path.read_text(encoding="utf-8"),
                display_path=plan.display_path,
                nodeid=plan_nodeid(plan.path, rootpath),
                variables=dict(plan.variables),
            )
        )
        for plan in plans
    ]


def unpack(shipped: list[dict[str, Any]], into: Path) -> list[tuple[Path, ShippedPlan]]:
    """Write the shipped plans into ``into`` (one folder each: two plans may share a file name)."""
    written = []
    for number, data in enumerate(shipped):
        plan = ShippedPlan(**data)
        path = into / f"plan-{number}" / plan.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan.text, encoding="utf-8")
        written.append((path, plan))
    return written
