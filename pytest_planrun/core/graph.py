"""The step graph: dependents, cycles with their path, and remaining-path lengths (all iterative).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def dependents_of(deps: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Invert ``deps`` (step -> its dependencies) into step -> steps that depend on it."""
    result: dict[str, list[str]] = {step: [] for step in deps}
    for step, needs in deps.items():
        for need in needs:
            if need in result:
                result[need].append(step)
    return result


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one cycle as a path ``[a, b, a]``, or None when the graph is acyclic.

    Dependencies naming unknown steps are ignored (validation reports them separately).
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for root in deps:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack: list[Iterable[str]] = [iter(deps[root])]
        colour[root] = grey
        while stack:
            advanced = False
            for need in stack[-1]:
                state = colour.get(need)
                if state is None or state == black:
                    continue
                if state == grey:
                    return path[path.index(need) :] + [need]
                colour[need] = grey
                path.append(need)
                stack.append(iter(deps[need]))
                advanced = True
                break
            if not advanced:
                colour[path.pop()] = black
                stack.pop()
    return None


def topological_order(deps: Mapping[str, Sequence[str]], priority: Mapping[str, float] | None = None) -> list[str]:
    """Order steps so each comes after its dependencies; among ready steps, highest priority first,
    then declaration order. Raises ValueError on a cycle."""
    import heapq

    index = {step: i for i, step in enumerate(deps)}
    waiting = {step: sum(1 for need in needs if need in deps) for step, needs in deps.items()}
    users = dependents_of(deps)
    prio = priority or {}
    heap = [(-prio.get(step, 0.0), index[step], step) for step, count in waiting.items() if count == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, _, step = heapq.heappop(heap)
        order.append(step)
        for user in users[step]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(heap, (-prio.get(user, 0.0), index[user], user))
    if len(order) != len(deps):
        raise ValueError("the step graph has a cycle")
    return order


def remaining_path(deps: Mapping[str, Sequence[str]], cost: Mapping[str, float]) -> dict[str, float]:
    """For each step, the longest sum of ``cost`` from the step itself to the end of the plan."""
    order = topological_order(deps)
    users = dependents_of(deps)
    longest: dict[str, float] = {}
    for step in reversed(order):
        longest[step] = cost.get(step, 1.0) + max((longest[u] for u in users[step]), default=0.0)
    return longest


def transitive_dependents(deps: Mapping[str, Sequence[str]], roots: Iterable[str]) -> set[str]:
    """Every step that depends, directly or not, on one of ``roots`` (roots excluded)."""
    users = dependents_of(deps)
    seen: set[str] = set()
    todo = [u for r in roots for u in users.get(r, [])]
    while todo:
        step = todo.pop()
        if step not in seen:
            seen.add(step)
            todo.extend(users[step])
    return seen


def transitive_dependencies(deps: Mapping[str, Sequence[str]], step: str) -> set[str]:
    """Every step that ``step`` depends on, directly or not."""
    seen: set[str] = set()
    todo = list(deps.get(step, ()))
    while todo:
        need = todo.pop()
        if need not in seen and need in deps:
            seen.add(need)
            todo.extend(deps[need])
    return seen


def assumed_succeeded(deps: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Dependencies that are not steps of ``deps`` (deselected with ``-k``, ``-m`` or a node id),
    per step that has any: the run takes them as succeeded."""
    assumed = {step: tuple(d for d in ds if d not in deps) for step, ds in deps.items()}
    return {step: missing for step, missing in assumed.items() if missing}
