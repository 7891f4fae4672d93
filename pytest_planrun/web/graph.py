"""A run's DAG drawn as SVG on the server: layered layout from the plan's topological levels.

Drawn here rather than by a JavaScript library: a plan's graph is small and static while a run
lives (only states change, which the page does by class), so a layered layout is a few lines,
ships no third-party code, works offline and escapes its text with the rest of the page.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from ..plan.packaged import PLANS_DIR

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 44, 70, 18, 12
LABEL_CHARS = 24


@dataclass(frozen=True, slots=True)
class Node:
    step_id: str
    name: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dag:
    nodes: tuple[Node, ...]
    note: str | None = None  # why edges may be missing or stale


def levels(nodes: Sequence[Node]) -> dict[str, int]:
    """Each step's level: 0 for a step with no dependency, else one more than its deepest one."""
    known = {n.step_id: n for n in nodes}
    level: dict[str, int] = {}
    for start in nodes:  # iterative depth-first: plans may be deep; a cycle cannot occur in a run
        stack = [start.step_id]
        while stack:
            current = stack[-1]
            if current in level:
                stack.pop()
                continue
            pending = [d for d in known[current].depends_on if d in known and d not in level and d not in stack]
            if pending:
                stack.extend(pending)
                continue
            deps = [level[d] for d in known[current].depends_on if d in level]
            level[current] = 1 + max(deps) if deps else 0
            stack.pop()
    return level


def positions(nodes: Sequence[Node]) -> dict[str, tuple[int, int]]:
    """(column, row) per step: column = level; rows ordered by the mean row of each step's
    dependencies (one barycentre sweep, which removes most crossings of small plans)."""
    level = levels(nodes)
    columns: dict[int, list[Node]] = {}
    for node in nodes:
        columns.setdefault(level[node.step_id], []).append(node)
    row: dict[str, int] = {}
    for col in sorted(columns):
        members = columns[col]

        def weight(node: Node, index: int) -> float:
            rows = [row[d] for d in node.depends_on if d in row]
            return sum(rows) / len(rows) if rows else float(index)

        ordered = sorted(enumerate(members), key=lambda pair: (weight(pair[1], pair[0]), pair[0]))
        for r, (_, node) in enumerate(ordered):
            row[node.step_id] = r
    return {n.step_id: (level[n.step_id], row[n.step_id]) for n in nodes}


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def edge_path(source: tuple[int, int], target: tuple[int, int], upwards: bool) -> str:
    """From the right of ``source``'s box to the left of ``target``'s (top-left corners given).

    An edge that skips columns runs along the gap between two rows of boxes, so it never crosses
    the boxes of the columns it skips."""
    (x1, y1), (x2, y2) = source, target
    sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
    if ex - sx <= GAP_X:  # next column: one curve
        mid = (sx + ex) // 2
        return f"M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}"
    gap = y1 - GAP_Y // 2 if upwards else y1 + NODE_H + GAP_Y // 2
    q = GAP_X // 4
    return (
        f"M{sx},{sy} C{sx + q},{sy} {sx + q},{gap} {sx + 2 * q},{gap}"
        f" L{ex - 2 * q},{gap} C{ex - q},{gap} {ex - q},{ey} {ex},{ey}"
    )


def render_svg(dag: Dag, states: Mapping[str, str]) -> str:
    """The graph as an ``<svg>`` element; each node is a ``<g class="node state-X" data-step=ID>``."""
    place = positions(dag.nodes)
    width = PAD * 2 + (max((c for c, _ in place.values()), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + (max((r for _, r in place.values()), default=0) + 1) * (NODE_H + GAP_Y) - GAP_Y

    def corner(step_id: str) -> tuple[int, int]:
        col, r = place[step_id]
        return PAD + col * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y)

    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="step graph">'
    ]
    for node in dag.nodes:
        x2, y2 = corner(node.step_id)
        for dep in node.depends_on:
            if dep not in place:
                continue
            parts.append(
                f'<path class="edge" data-from="{escape(dep)}" data-to="{escape(node.step_id)}"'
                f' d="{edge_path(corner(dep), (x2, y2), place[dep][1] > place[node.step_id][1])}"/>'
            )
    for node in dag.nodes:
        x, y = corner(node.step_id)
        state = states.get(node.step_id, "pending")
        title = node.name if node.name == node.step_id else f"{node.name} ({node.step_id})"
        parts.append(
            f'<g class="node state-{escape(state)}" data-step="{escape(node.step_id)}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 18}" class="name">{escape(_label(node.name))}</text>'
            f'<text x="{x + 10}" y="{y + 35}" class="status">{escape(state)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _steps_of(path: Path) -> list[Node]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    nodes = []
    for item in raw.get("steps", []) if isinstance(raw, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            deps = tuple(d for d in item.get("depends_on", []) if isinstance(d, str))
            name = item.get("name")
            nodes.append(Node(item["id"], name if isinstance(name, str) else item["id"], deps))
    return nodes


def _candidates(plan_path: str, run_dir: str | None) -> Iterable[Path]:
    given = Path(plan_path)
    if given.is_absolute():
        yield given
        return
    if run_dir:  # plan paths are recorded as given, relative to where pytest ran: an ancestor of run_dir
        for base in Path(run_dir).parents:
            yield base / given
    yield Path.cwd() / given
    if given.parent == Path("."):  # a plan run by name (``--plan safe-merge``) is shown by its file name
        yield PLANS_DIR / given


def load_dag(run: Mapping[str, object], step_ids: Sequence[str], names: Mapping[str, str]) -> Dag:
    """The run's steps with their dependencies, read from its plan files where they still are.

    The ledger records the steps of a run but not its edges, so they are read again from the plan
    (raw JSON: variables do not change a plan's shape). Steps the plan no longer has keep their node.
    """
    plan_paths = [p for p in str(run.get("plan_path") or "").split(", ") if p]
    hashes = str(run.get("plan_hash") or "").split("+")
    found: dict[str, Node] = {}
    notes = []
    for index, plan_path in enumerate(plan_paths):
        expected = hashes[index] if len(hashes) == len(plan_paths) else None
        files = [p for p in _candidates(plan_path, str(run.get("run_dir") or "")) if p.is_file()]
        match = next((p for p in files if hashlib.sha256(p.read_bytes()).hexdigest() == expected), None)
        chosen = match or (files[0] if files else None)
        if chosen is None:
            notes.append(f"plan {plan_path} not found: dependencies not shown")
            continue
        if match is None:
            notes.append(f"plan {plan_path} changed since this run: its current dependencies are shown")
        try:
            for node in _steps_of(chosen):
                found.setdefault(node.step_id, node)
        except (OSError, ValueError) as error:
            notes.append(f"plan {plan_path} unreadable: {error}")
    ids = list(step_ids) or list(found)
    nodes = tuple(
        Node(s, names.get(s) or (found[s].name if s in found else s), found[s].depends_on if s in found else ())
        for s in ids
    )
    return Dag(nodes, "; ".join(notes) or None)
