#!/usr/bin/env bash
# Installs pytest-planrun with its test extra into .venv and runs the checks: ruff, mypy --strict, the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m ruff check pytest_planrun tests $(ls -d bench 2>/dev/null)
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
