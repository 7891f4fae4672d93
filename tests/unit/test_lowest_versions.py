"""scripts/lowest-constraints.txt pins what pyproject.toml declares as lowest: scripts/test-envs.sh tests those."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).parents[2]


def declared() -> dict[str, SpecifierSet]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("\ndependencies = [", 1)[1].split("]", 1)[0]
    return {r.name: r.specifier for r in map(Requirement, re.findall(r'"([^"]+)"', block))}


def pinned() -> dict[str, Version]:
    lines = (ROOT / "scripts" / "lowest-constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name: Version(version) for name, version in pins}


def test_the_pins_are_the_declared_lower_bounds() -> None:
    ranges = declared()
    pins = pinned()
    assert set(pins) == {"pytest", "pytest-xdist", "pluggy", "pydantic", "execnet"}
    for name, version in pins.items():
        assert version in ranges[name], (name, version, ranges[name])
        (lower,) = [Version(s.version).release for s in ranges[name] if s.operator == ">="]
        # the bound's own release (pytest-xdist 3.6.1 for ">=3.6": 3.6.0 does not exist), not a later one
        assert version.release[: len(lower)] == lower, (name, version, lower)
