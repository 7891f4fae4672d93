#!/usr/bin/env bash
# The tests that need an environment of their own, run after scripts/test.sh (which makes .venv), each in
# a venv beside .venv, made again only when pyproject.toml, the constraints or this script change:
#   lowest      pytest, pytest-xdist, pluggy, pydantic and execnet at the lowest versions pyproject.toml
#               declares (scripts/lowest-constraints.txt): the parallel, JUnit, scheduling and policy
#               tests, the xdist seam's and the remote workers', so that the declared range is a tested range;
#   neighbours  the newest pytest-timeout, pytest-rerunfailures and pytest-randomly, which change every
#               session of an environment they are installed in (so not .venv): the tests of plan runs
#               beside them, which skip elsewhere.
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "error: no .venv: run scripts/test.sh first" >&2; exit 2; }

# The test extra's requirements for the named packages, with the ranges pyproject.toml gives them.
test_extra() {
    .venv/bin/python - "$@" <<'EOF'
import sys
import tomllib

from packaging.requirements import Requirement

with open("pyproject.toml", "rb") as file:
    extra = tomllib.load(file)["project"]["optional-dependencies"]["test"]
print("\n".join(r for r in extra if Requirement(r).name in sys.argv[1:]))
EOF
}

# make_env NAME PIP-ARGUMENT...: .venv-NAME with planrun installed editable, and the arguments' packages.
make_env() {
    local dir=".venv-$1"
    shift
    local want
    want="$(cat pyproject.toml scripts/lowest-constraints.txt "$0"; echo "$@")"
    if [ -x "$dir/bin/python" ] && [ "$want" = "$(cat "$dir/planrun-installed" 2>/dev/null)" ]; then
        return
    fi
    rm -rf "$dir"
    # without a pip of its own (bootstrapping one costs more than the rest): .venv's pip installs into it
    .venv/bin/python -m venv --without-pip "$dir"
    .venv/bin/python -m pip --python "$dir/bin/python" install -q -e . "$@"
    printf '%s' "$want" >"$dir/planrun-installed"
}

mapfile -t junit_tools < <(test_extra junitparser xmlschema pytest-html)
start=$SECONDS
# One after the other: each editable install rewrites pytest_planrun.egg-info in the source tree.
make_env lowest -c scripts/lowest-constraints.txt "${junit_tools[@]}"
make_env neighbours pytest-timeout pytest-rerunfailures pytest-randomly
echo "test-envs: environments ready in $((SECONDS - start)) s"

workers=(-n "${PLANRUN_TEST_WORKERS:-3}" --dist worksteal)
start=$SECONDS
.venv-lowest/bin/python -m pytest "${workers[@]}" tests/unit/test_lowest_versions.py tests/plugin/test_parallel.py \
    tests/plugin/test_junit.py tests/unit/test_xdist_scheduler.py tests/plugin/test_policies.py \
    tests/plugin/test_good_citizen.py tests/remote "$@"
echo "test-envs: lowest versions tested in $((SECONDS - start)) s"
start=$SECONDS
# (not test_collection.py: pytest-randomly may list independent steps in another valid order than it expects)
PLANRUN_NEIGHBOURS=1 .venv-neighbours/bin/python -m pytest "${workers[@]}" tests/plugin/test_neighbours.py \
    tests/plugin/test_good_citizen.py tests/e2e/test_verdict_labels.py "$@"
echo "test-envs: neighbours tested in $((SECONDS - start)) s"
