"""Files that steps hand to their consumers (``provides`` objects): their paths, checked and resolved.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .model import ProvidedFile
from .problems import Problem
from .validate import step_label
from .variables import find_references, substitute

_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:[/\\]")  # C:/x or C:\x; "a:b" is a file name on POSIX
_ONE_PROVIDER = "a resource that is a file has one provider; give the other a different name"
_STAYS_INSIDE = "a provided file's path is relative to the step's cwd"


@dataclass(frozen=True, slots=True)
class ProvidedPath:
    """A file a step provides: the resource ``name`` and its ``path``, relative POSIX, normalized,
    variables substituted."""

    name: str
    path: str


def normalize_path(text: str) -> str:
    """``./dist//app.tgz`` -> ``dist/app.tgz``; the text must have passed `path_problem`."""
    return str(PurePosixPath(text))


def path_problem(text: str) -> tuple[str, str | None] | None:
    """What is wrong with ``text`` as a provided file's path (message, hint), or None."""
    shown = json.dumps(text, ensure_ascii=False)
    if text.startswith(("/", "\\")) or _WINDOWS_ABSOLUTE.match(text):
        return f"must be a relative path, got {shown}", _STAYS_INSIDE
    if "\\" in text:
        # a plan may be run on workers of another system, where '\' is no separator
        return f"must separate directories with '/', got {shown}", None
    parts = PurePosixPath(text).parts
    if ".." in parts:
        return f"must not contain a '..' component, got {shown}", _STAYS_INSIDE
    if not parts:
        return f"must name a file, got {shown}", None
    return None


def file_problems(raw_steps: list[Any], values: Mapping[str, str], file: str) -> list[Problem]:
    """Bad paths (after substitution), two file-provides of one path, and a name provided as a file
    that is provided more than once (a consumer would not know which file it gets).

    Works on the raw steps, type-guarded, so these are reported beside the model's own problems. A
    path using a variable without a value is skipped: the undefined variable is reported instead.
    """
    problems: list[Problem] = []
    entries = list(_entries(raw_steps))
    file_names = {name for _, _, name, is_file, _ in entries if is_file}
    first_name: dict[str, str] = {}  # name -> the step that provides it first
    first_path: dict[str, str] = {}  # normalized path -> the step that provides it first
    for label, position, name, is_file, path in entries:
        field = f"provides[{position}]"
        if name in file_names:
            if name in first_name:
                by = "this step" if first_name[name] == label else _named(first_name[name])
                field_name = f"{field}.name" if is_file else field
                message = f"'{name}' is also provided by {by}"
                problems.append(Problem(file, label, field_name, message, _ONE_PROVIDER))
            else:
                first_name[name] = label
        if not path or any(ref not in values for ref in find_references(path)):
            continue
        resolved = substitute(path, values)
        found = path_problem(resolved)
        if found is not None:
            message, hint = found
            if resolved != path:
                message += f" (from {json.dumps(path, ensure_ascii=False)})"
            problems.append(Problem(file, label, f"{field}.path", message, hint))
            continue
        normalized = normalize_path(resolved)
        if normalized in first_path:
            by = "this step" if first_path[normalized] == label else _named(first_path[normalized])
            message = f"'{normalized}' is also provided by {by}"
            problems.append(Problem(file, label, f"{field}.path", message, "each provided file has its own path"))
        else:
            first_path[normalized] = label
    return problems


def _named(label: str) -> str:
    return label if label.startswith("steps[") else f"step '{label}'"


def _entries(raw_steps: list[Any]) -> Iterator[tuple[str, int, str, bool, str | None]]:
    """``(step label, position, name, is a file, its path)`` for each ``provides`` entry with a name;
    the path is None where it is missing or not a string (the model reports that)."""
    for index, raw in enumerate(raw_steps):
        provides = raw.get("provides") if isinstance(raw, dict) else None
        if not isinstance(provides, list):
            continue
        label = step_label(raw_steps, index)
        for position, entry in enumerate(provides):
            if isinstance(entry, str):
                yield label, position, entry, False, None
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                path = entry.get("path")
                yield label, position, entry["name"], True, path if isinstance(path, str) else None


def provided_files(provides: list[str | ProvidedFile], values: Mapping[str, str]) -> tuple[ProvidedPath, ...]:
    """The file entries of a valid step's ``provides``, resolved."""
    return tuple(
        ProvidedPath(entry.name, normalize_path(substitute(entry.path, values)))
        for entry in provides
        if not isinstance(entry, str)
    )
