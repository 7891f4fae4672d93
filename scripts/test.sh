#!/usr/bin/env bash
# Installs pytest-planrun with its test extra into .venv and runs the checks: ruff, mypy --strict, that no
# test kills processes by name, the tests (in parallel under pytest-xdist; extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# The install is editable: only a change of pyproject.toml (dependencies, entry points) needs a new one.
# A fresh clone has no stamp, so it installs everything.
stamp=.venv/planrun-installed-pyproject.toml
if ! cmp -s pyproject.toml "$stamp"; then
    .venv/bin/python -m pip install -q -e ".[test]"
    cp pyproject.toml "$stamp"
fi
.venv/bin/python -m ruff check pytest_planrun tests $(ls -d bench 2>/dev/null)
.venv/bin/python -m mypy
# A test kills and checks only the processes it started (by pid, or by its run's PLANRUN_RUN_ID): never
# by name, which hits every matching process on the machine, other users' and other runs' included.
# (pgrep is refused whatever its options: with -f or without, it finds processes by name.)
if grep -rnwE 'pkill|killall|pgrep' tests; then
    echo "error: tests/ must not find or kill processes by name (pkill, killall, pgrep)" >&2
    exit 1
fi
# Three workers for two cores: the runs under test spend part of their time waiting (steps that sleep,
# time out or wait for a file), and a third test fills that; worksteal evens out the long end-to-end tests.
.venv/bin/python -m pytest -n "${PLANRUN_TEST_WORKERS:-3}" --dist worksteal "$@"
