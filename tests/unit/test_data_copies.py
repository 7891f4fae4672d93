"""The compat plans under tests/data are unchanged copies of the workspace's shared ones, when those exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from planhelpers import COMPAT

# The workspace keeps the plans of the earlier orchestrator in ../shared/compat beside the checkout; a
# plain clone elsewhere has no such folder, and the suite then runs on its copies alone.
SHARED_COMPAT = Path(__file__).parents[2] / ".." / "shared" / "compat"


def test_compat_copies_equal_the_shared_plans() -> None:
    if not SHARED_COMPAT.is_dir():
        pytest.skip(f"no shared compat plans beside this checkout ({SHARED_COMPAT.resolve()}): nothing to compare")
    shared = {p.name: p.read_bytes() for p in SHARED_COMPAT.glob("*.json")}
    copies = {p.name: p.read_bytes() for p in COMPAT.glob("*.json")}
    assert shared, f"{SHARED_COMPAT} holds no plan"
    assert sorted(copies) == sorted(shared)
    assert [name for name in shared if copies[name] != shared[name]] == []
