"""``planrun demo``: the safe-merge gate against a throwaway origin and clone, to see it work.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def prepare(root: Path) -> Path:
    """A bare origin whose ``feature`` branch adds a tested module, and a clone of ``main``."""
    origin, author, clone = root / "origin.git", root / "author", root / "clone"
    _git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(root, "clone", "-q", str(origin), str(author))
    for repo in (author,):
        _git(repo, "config", "user.email", "demo@example.invalid")
        _git(repo, "config", "user.name", "planrun demo")
    (author / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (author / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n")
    _git(author, "add", ".")
    _git(author, "commit", "-q", "-m", "calc with a test")
    _git(author, "push", "-q", "origin", "HEAD:main")
    _git(author, "checkout", "-q", "-b", "feature")
    (author / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n")
    (author / "test_mul.py").write_text("from calc import mul\n\n\ndef test_mul():\n    assert mul(3, 4) == 12\n")
    _git(author, "add", ".")
    _git(author, "commit", "-q", "-m", "mul")
    _git(author, "push", "-q", "origin", "feature")
    _git(root, "clone", "-q", str(origin), str(clone))
    _git(clone, "config", "user.email", "demo@example.invalid")
    _git(clone, "config", "user.name", "planrun demo")
    return clone


def main(keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="planrun-demo-"))
    clone = prepare(root)
    print(f"planrun demo: origin {root / 'origin.git'}, clone {clone}; merging origin/feature into main", flush=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--plan",
        "safe-merge",  # the packaged plan, by name
        "--var",
        "BRANCH=feature",
        "-v",
        "-p",
        "no:cacheprovider",
        "--var",
        f"TEST_COMMAND={sys.executable} -m pytest -q -p no:cacheprovider",
    ]
    print("$ " + shlex.join(command), flush=True)  # pasteable: values with spaces are quoted
    code = subprocess.run(command, cwd=clone).returncode
    runs = shlex.join(["planrun", "runs", "--ledger", str(clone / ".ledger" / "framework.db")])
    print(f"planrun demo: the clone and its ledger stay in {root} ({runs})")
    return code
