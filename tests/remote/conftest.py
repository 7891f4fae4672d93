"""Fixtures for runs on remote xdist workers: socket-server workers shared by the folder's tests, and the
check that no process of a test's runs outlives it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from planhelpers import kill_run_processes
from remotehelpers import WorkerPool, Workers, isolation_available, processes_left

from pytest_planrun.ledger import queries


@pytest.fixture(scope="session")
def worker_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    """Workers kept for the whole session (a socket server serves one pytest run after another), each
    hiding this process's temporary folders (every pytester project, the lock folder) when isolated.

    ``PLANRUN_TEST_ISOLATION=0`` starts them without their own mount namespace (debugging)."""
    base = Path(tempfile.mkdtemp(prefix="planrun-remote-workers-"))  # outside the hidden basetemp
    isolate = os.environ.get("PLANRUN_TEST_ISOLATION") != "0" and isolation_available(base)
    pool = WorkerPool(base, [tmp_path_factory.getbasetemp()], isolate)
    yield pool
    pool.close()


@pytest.fixture
def remote_workers(worker_pool: WorkerPool) -> Workers:
    """``remote_workers(n)``: ``n`` live workers with empty directories (the first is gw0 in ``tx_args``)."""
    return worker_pool.get


@pytest.fixture(autouse=True)
def no_process_outlives_its_run(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the test, no process of any run recorded in its project's ledger may be alive (steps on a
    killed worker included); any found are killed, and the test errors."""
    if "pytester" not in request.fixturenames:
        yield
        return
    db = request.getfixturevalue("pytester").path / ".ledger" / "framework.db"
    yield
    if not db.exists():
        return
    runs = queries.list_runs(db, limit=100)
    left = {run["run_id"]: found for run in runs if (found := processes_left(run["run_id"]))}
    for run_id in left:
        kill_run_processes(run_id)
    assert not left, f"processes outlived their run: {left}"
