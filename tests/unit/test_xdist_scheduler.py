"""The DAG scheduler without processes: fake workers record what they were sent (as xdist's MockNode)."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import execnet
import pytest
from filelock import FileLock, Timeout

from pytest_planrun.plan import Masker, load_plan
from pytest_planrun.plugin.controller import PlanController, place_for
from pytest_planrun.plugin.xdist_scheduler import DagScheduling
from pytest_planrun.run.locks import lock_path
from pytest_planrun.run.step import RunContext, display_command


class MockGateway:
    def __init__(self, gid: str) -> None:
        self.id = gid
        self.spec = execnet.XSpec("popen")  # a local worker: no side channel


class MockNode:
    """A worker that records commands instead of running them."""

    def __init__(self, gid: str) -> None:
        self.gateway = MockGateway(gid)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def sendcommand(self, name: str, **kwargs: Any) -> None:
        self.sent.append((name, kwargs))

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.append(("runtests", {"indices": indices}))

    @property
    def steps(self) -> list[str]:
        return [kw["step_id"] for name, kw in self.sent if name == "planrun_run"]


class FakeDSession:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.shouldstop: str | bool = False


class FakeConfig:
    def __init__(self, dsession: FakeDSession) -> None:
        self.pluginmanager = self
        self._dsession = dsession
        self.reports: list[pytest.TestReport] = []
        self.hook = self
        self.on_report: Any = None

    def getplugin(self, name: str) -> Any:
        return self._dsession if name == "dsession" else None

    def pytest_runtest_logstart(self, **kwargs: Any) -> None:
        pass

    def pytest_runtest_logfinish(self, **kwargs: Any) -> None:
        pass

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)
        if self.on_report is not None:  # as the controller's plugin passes every report on
            self.on_report(report)

    def pytest_planrun_step_finished(self, **kwargs: Any) -> None:
        pass

    def pytest_planrun_retry_delay(self, **kwargs: Any) -> float | None:
        return None


def make_scheduler(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    cap: int,
    per_worker: int = 1,
    labels: dict[str, frozenset[str]] | None = None,
) -> tuple[DagScheduling, PlanController]:
    import json

    path = tmp_path / "plan.json"
    doc = {"plan_id": "P", "version": "1", "globals": {"max_concurrency": cap}, "steps": steps}
    path.write_text(json.dumps(doc))
    plan = load_plan(path, {})
    dsession = FakeDSession()
    config: Any = FakeConfig(dsession)
    context = RunContext("r1", tmp_path / "run", tmp_path, Masker(()))
    controller = PlanController(config, [plan], context, [])
    config.on_report = controller.on_report

    def places(nodeids: list[str]) -> dict[str, Any]:
        return {
            n.rpartition("::")[2]: place_for(
                n, plan.step(n.rpartition("::")[2]), 0, display_command(plan.step(n.rpartition("::")[2]), plan.masker)
            )
            for n in nodeids
        }

    return DagScheduling(config, controller, places, cap, per_worker, labels), controller


def call_report(step_id: str, attempt: int, state: str) -> pytest.TestReport:
    record = {
        "step_id": step_id,
        "attempt": attempt,
        "state": state,
        "exit_code": 0 if state == "succeeded" else 1,
        "timed_out": False,
        "started_at": 0.0,
        "ended_at": 0.0,
        "duration": 0.0,
        "command": "x",
        "stdout_path": "",
        "stderr_path": "",
        "error": None,
        "worker": "gw0",
    }
    report = pytest.TestReport(
        f"plan.json::{step_id}",
        ("plan.json", 0, step_id),
        {},
        "passed" if state == "succeeded" else "failed",
        None,
        "call",
    )
    report.planrun = {"step_id": step_id, "attempt": attempt, "record": record, "will_retry": False}  # type: ignore[attr-defined]
    return report


def test_a_step_is_sent_only_after_its_dependency_completes(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [{"id": "a", "command": "true"}, {"id": "b", "command": "true", "depends_on": ["a"]}]
    sched, controller = make_scheduler(tmp_path, steps, cap=2)
    gw0, gw1 = MockNode("gw0"), MockNode("gw1")
    for node in (gw0, gw1):
        sched.add_node(node)
        sched.add_node_collection(node, ["plan.json::a", "plan.json::b"])
    assert sched.collection_is_completed
    sched.schedule()
    assert gw0.steps + gw1.steps == ["a"]  # b waits although a worker is idle
    controller.on_report(call_report("a", 1, "succeeded"))
    sched.mark_test_complete(gw0, 0)
    assert gw0.steps + gw1.steps == ["a", "b"]
    assert not sched.tests_finished
    controller.on_report(call_report("b", 1, "succeeded"))
    holder = gw1 if gw1.steps == ["b"] else gw0
    sched.mark_test_complete(holder, 1)
    assert sched.tests_finished


def test_independent_steps_go_to_every_idle_worker_up_to_the_cap(tmp_path: Path) -> None:
    steps = [{"id": f"s{i}", "command": "true"} for i in range(5)]
    sched, controller = make_scheduler(tmp_path, steps, cap=2)
    nodes = [MockNode(f"gw{i}") for i in range(3)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, [f"plan.json::s{i}" for i in range(5)])
    sched.schedule()
    assert sum(len(n.steps) for n in nodes) == 2  # the plan's cap, though three workers are idle


def test_abort_sends_a_cancel_to_the_worker_running_a_step(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"id": "bad", "command": "false"},
        {"id": "slow", "command": "sleep"},
        {"id": "c", "command": "true", "depends_on": ["slow"]},
    ]
    sched, controller = make_scheduler(tmp_path, steps, cap=2)
    gw0, gw1 = MockNode("gw0"), MockNode("gw1")
    for node in (gw0, gw1):
        sched.add_node(node)
        sched.add_node_collection(node, ["plan.json::bad", "plan.json::slow", "plan.json::c"])
    sched.schedule()
    running_bad = gw0 if gw0.steps == ["bad"] else gw1
    other = gw1 if running_bad is gw0 else gw0
    controller.on_report(call_report("bad", 1, "failed"))
    sched.mark_test_complete(running_bad, 0)
    assert ("planrun_cancel", {"step_id": "slow", "reason": "cancelled: 'bad' failed (abort)"}) in other.sent
    config: Any = controller.config
    assert [r.nodeid for r in config.reports if r.when == "setup"] == ["plan.json::c"]


def test_a_removed_worker_returns_the_step_it_was_running(tmp_path: Path) -> None:
    sched, controller = make_scheduler(tmp_path, [{"id": "a", "command": "true"}], cap=2)
    gw0 = MockNode("gw0")
    sched.add_node(gw0)
    sched.add_node_collection(gw0, ["plan.json::a"])
    sched.schedule()
    assert sched.remove_node(gw0) == "plan.json::a"


def test_each_worker_takes_up_to_its_slots_spread_evenly(tmp_path: Path) -> None:
    steps = [{"id": f"s{i}", "command": "true"} for i in range(6)]
    sched, controller = make_scheduler(tmp_path, steps, cap=4, per_worker=3)
    gw0, gw1 = MockNode("gw0"), MockNode("gw1")
    for node in (gw0, gw1):
        sched.add_node(node)
        sched.add_node_collection(node, [f"plan.json::s{i}" for i in range(6)])
    sched.schedule()
    assert (len(gw0.steps), len(gw1.steps)) == (2, 2)  # the cap, spread over both workers
    done = gw0.steps[0]
    controller.on_report(call_report(done, 1, "succeeded"))
    sched.mark_test_complete(gw0, int(done[1:]))
    assert (len(gw0.steps), len(gw1.steps)) == (3, 2)  # the freed slot is refilled on gw0


def wake(controller: PlanController) -> None:
    """Run what was posted to the controller's loop (as xdist's loop would, on its next turn)."""
    config: Any = controller.config
    dsession = config._dsession
    while not dsession.queue.empty():
        name, kwargs = dsession.queue.get()
        getattr(dsession, f"worker_{name}")(**kwargs)


def start_nodes(sched: DagScheduling, nodeids: list[str], *names: str) -> list[MockNode]:
    nodes = [MockNode(name) for name in names]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, nodeids)
    sched.schedule()
    return nodes


def test_pinned_steps_go_to_the_workers_with_their_labels_and_wait_for_them(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"id": "gpu1", "command": "true", "runs_on": "gpu"},
        {"id": "gpu2", "command": "true", "runs_on": ["gpu"]},
        {"id": "any", "command": "true"},
    ]
    labels = {"gw1": frozenset({"gpu", "linux"})}
    sched, controller = make_scheduler(tmp_path, steps, cap=3, labels=labels)
    gw0, gw1 = start_nodes(sched, [f"plan.json::{s['id']}" for s in steps], "gw0", "gw1")
    assert (gw0.steps, gw1.steps) == ([], ["gpu1"])  # gpu2 waits for the one gpu worker ...
    wake(controller)
    assert (gw0.steps, gw1.steps) == (["any"], ["gpu1"])  # ... and the idle worker takes the next step
    controller.on_report(call_report("gpu1", 1, "succeeded"))
    sched.mark_test_complete(gw1, 0)
    assert gw1.steps == ["gpu1", "gpu2"]


def test_a_pinned_step_whose_workers_are_all_lost_fails_instead_of_waiting(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"id": "first", "command": "true"},
        {"id": "gpu", "command": "true", "runs_on": "gpu", "depends_on": ["first"]},
    ]
    sched, controller = make_scheduler(tmp_path, steps, cap=2, labels={"gw1": frozenset({"gpu"})})
    gw0, gw1 = start_nodes(sched, ["plan.json::first", "plan.json::gpu"], "gw0", "gw1")
    assert (gw0.steps, gw1.steps) == (["first"], [])  # ties go to the first worker
    assert sched.remove_node(gw1) is None  # the gpu worker is lost while the first step runs
    controller.on_report(call_report("first", 1, "succeeded"))
    sched.mark_test_complete(gw0, 0)
    config: Any = controller.config
    (failed,) = [r for r in config.reports if r.when == "call" and r.nodeid == "plan.json::gpu"]
    assert failed.outcome == "failed"
    assert "no worker left that can run it: runs_on ['gpu'] (workers up: gw0)" in str(failed.longrepr)
    wake(controller)
    assert controller.final is not None and controller.final.state == "failed"
    assert sched.tests_finished


def test_the_controller_holds_a_steps_locks_while_it_runs(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"id": "a", "command": "true", "locks": ["push"]},
        {"id": "b", "command": "true"},
    ]
    sched, controller = make_scheduler(tmp_path, steps, cap=2)
    gw0, gw1 = start_nodes(sched, ["plan.json::a", "plan.json::b"], "gw0", "gw1")
    config: Any = controller.config
    dsession = config._dsession
    assert "b" in gw0.steps + gw1.steps  # a is sent once a thread of the controller holds its lock

    def sent_a() -> list[dict[str, Any]]:
        return [kw for node in (gw0, gw1) for n, kw in node.sent if n == "planrun_run" and kw["step_id"] == "a"]

    while not sent_a():  # once the lock is taken, the loop is woken
        name, kwargs = dsession.queue.get(timeout=30)
        getattr(dsession, f"worker_{name}")(**kwargs)
    (sent,) = sent_a()
    assert sent["held"] == {"waited_for": None, "waited": pytest.approx(sent["held"]["waited"])}
    lock = FileLock(str(lock_path("push")))
    with pytest.raises(Timeout):  # held by the controller while the step runs
        lock.acquire(timeout=0.1)
    holder = gw0 if "a" in gw0.steps else gw1
    controller.on_report(call_report("a", 1, "succeeded"))
    sched.mark_test_complete(holder, 0)
    lock.acquire(timeout=10)  # released once its report is in
    lock.release()


def test_a_step_waiting_for_its_locks_keeps_the_worker_it_will_need(tmp_path: Path) -> None:
    # one worker up: the next step must not take it while the first waits for its lock
    steps: list[dict[str, Any]] = [
        {"id": "a", "command": "true", "locks": ["push"]},
        {"id": "b", "command": "true"},
    ]
    sched, controller = make_scheduler(tmp_path, steps, cap=2)
    (gw0,) = start_nodes(sched, ["plan.json::a", "plan.json::b"], "gw0")
    config: Any = controller.config
    dsession = config._dsession
    while not gw0.steps:  # once the lock is taken, the loop is woken
        name, kwargs = dsession.queue.get(timeout=30)
        getattr(dsession, f"worker_{name}")(**kwargs)
    wake(controller)
    assert gw0.steps == ["a"]
