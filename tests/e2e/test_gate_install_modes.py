"""The gate tests the merged code whatever the project's install mode: a branch that breaks the tests
only through the code they import is refused, a good one is merged and pushed.

The editable installs go into one virtualenv for the module, made without pip (``--without-pip``)
and seeing this environment's site-packages (pytest, planrun, setuptools, pip) through a ``.pth``:
``--system-site-packages`` would not do when this environment is itself a virtualenv. The gate runs
under that virtualenv's python, as a user's does."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
from gatehelpers import Snapshot, clone, gate, git, make_origin, push_branch

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1"
"""
ADD = "def add(a, b):\n    return a + b\n"
MUL = "\n\ndef mul(a, b):\n    return a * b\n"
BROKEN_ADD = "def add(a, b):\n    return a - b\n"

CI_RUN = """\
#!/usr/bin/env bash
# The project's own test entry point: its virtualenv (untracked, in the checkout), then its tests.
set -eo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider tests
"""


@dataclass(frozen=True)
class Mode:
    """How a project is laid out, installed and tested."""

    module: str  # where calc.py lives, as a path without .py
    files: dict[str, str]
    editable: bool  # installed with pip install -e into the virtualenv
    venv_python: bool  # the gate runs under the virtualenv's python
    console_pytest: bool  # TEST_COMMAND is the virtualenv's `pytest` script (cwd not on sys.path)

    def main_files(self) -> dict[str, str]:
        name = self.module.replace("/", ".").removeprefix("src.")
        test = f"from {name} import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
        return {**self.files, f"{self.module}.py": ADD, "tests/test_calc.py": test}

    def good(self) -> dict[str, str | None]:
        name = self.module.replace("/", ".").removeprefix("src.")
        test = f"from {name} import mul\n\n\ndef test_mul():\n    assert mul(3, 4) == 12\n"
        return {f"{self.module}.py": ADD + MUL, "tests/test_mul.py": test}

    def bad(self) -> dict[str, str | None]:
        return {f"{self.module}.py": BROKEN_ADD}  # the tests stay as they are


IGNORE = "__pycache__/\n*.egg-info/\nbuild/\n"
SRC_LAYOUT = '\n[tool.setuptools.packages.find]\nwhere = ["src"]\n'
MODES = {
    "src-layout-editable": Mode(
        "src/srcpkg/calc",
        {
            ".gitignore": IGNORE,
            "pyproject.toml": PYPROJECT.format(name="gate-srcpkg") + SRC_LAYOUT,
            "src/srcpkg/__init__.py": "",
        },
        editable=True,
        venv_python=True,
        console_pytest=False,
    ),
    "flat-layout-editable": Mode(
        "flatpkg/calc",
        {
            ".gitignore": IGNORE,
            "pyproject.toml": PYPROJECT.format(name="gate-flatpkg") + '\n[tool.setuptools]\npackages = ["flatpkg"]\n',
            "flatpkg/__init__.py": "",
        },
        editable=True,
        venv_python=True,
        console_pytest=True,
    ),
    "uninstalled-imports-from-root": Mode(
        "calc",
        {".gitignore": IGNORE, "conftest.py": "# the repository root goes on sys.path (pytest's rootdir conftest)\n"},
        editable=False,
        venv_python=False,
        console_pytest=False,
    ),
    "own-ci-run": Mode(
        "src/cipkg/calc",
        {
            ".gitignore": IGNORE + ".venv\n",
            ".ci/run": CI_RUN,
            "pyproject.toml": PYPROJECT.format(name="gate-cipkg") + SRC_LAYOUT,
            "src/cipkg/__init__.py": "",
        },
        editable=True,
        venv_python=False,  # the gate runs with planrun's python; .ci/run picks the project's own
        console_pytest=False,
    ),
}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail("the editable installs need setuptools >= 70.1: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    # addsitedir, not a bare path: the .pth files there (this checkout's own editable install) count too
    (site / "_planrun_tests.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in ours))
    # a console script as pip writes them: the script's folder, not the current one, leads sys.path
    script = root / "bin" / "pytest"
    script.write_text(f"#!{python}\nimport sys\nfrom pytest import console_main\nsys.exit(console_main())\n")
    script.chmod(0o755)
    return root


def install_editable(venv: Path, project: Path) -> None:
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "-e", str(project)],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_the_gate_tests_the_merged_code(mode: str, tmp_path: Path, venv: Path) -> None:
    spec = MODES[mode]
    origin = make_origin(tmp_path, spec.main_files())
    good = push_branch(origin, "good", spec.good())
    push_branch(origin, "bad", spec.bad())
    repo = clone(origin, "dev")
    if spec.editable:
        install_editable(venv, repo)
    if mode == "own-ci-run":
        (repo / ".venv").symlink_to(venv)
    python = str(venv / "bin" / "python") if spec.venv_python else sys.executable
    test_command = f"{venv / 'bin' / 'pytest'} -q -p no:cacheprovider" if spec.console_pytest else None

    before = Snapshot.take(origin, repo)
    refused = gate(tmp_path, repo, "bad", python=python, test_command=test_command)
    assert refused.returncode == 1, refused.output
    assert "the tests failed on the merged tree" in refused.output
    assert "1 failed" in refused.log("test_merged")
    assert Snapshot.take(origin, repo) == before  # origin and the checkout untouched

    passed = gate(tmp_path, repo, "good", python=python, test_command=test_command)
    assert passed.returncode == 0, passed.output
    merge = git(origin, "rev-parse", "main")
    message = f"Merge origin/good into main\n\nPlanrun-Run-Id: {passed.run_id}"
    assert git(origin, "log", "-1", "--format=%B", merge) == message
    assert git(origin, "rev-list", "--parents", "--max-count=1", merge).split()[1:] == [before.head, good]
    tests = passed.log("test_merged")
    assert f"testing merge commit {merge}" in tests and "2 passed" in tests
    if mode == "own-ci-run":
        assert "$ bash .ci/run" in tests
    assert (git(repo, "rev-parse", "HEAD"), git(repo, "symbolic-ref", "HEAD")) == (merge, "refs/heads/main")
