"""The DAG-aware xdist scheduler: sends each step to an idle worker the moment the core starts it.

It satisfies xdist's ``Scheduling`` protocol (xdist 3.6–3.8 ``scheduler/protocol.py``); every
decision comes from the run's ``PlanController`` (and so from the same core as serial runs).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from ..core.state import Cancel, Start, Wait
from .controller import PlanController
from .report import assumed_lines
from .xdist_seam import ControllerLoop, report_crashed, send_cancel, send_step

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

log = logging.getLogger(__name__)


class DagScheduling:
    """Up to ``per_worker`` steps on each worker at a time (a worker supervises their processes on
    threads); dependencies, retries, skips and cancels decided by the core."""

    def __init__(
        self, config: pytest.Config, controller: PlanController, build_places: Any, cap: int, per_worker: int = 1
    ) -> None:
        self.config = config
        self.controller = controller
        self._build_places = build_places
        self._cap = cap  # the plan's max_concurrency
        self._per_worker = per_worker
        self._nodes: list[WorkerController] = []
        self._collections: dict[WorkerController, list[str]] = {}
        self._ready: list[WorkerController] = []  # workers taking part in the run
        # what each worker runs: item index -> step id (None: an ordinary test)
        self._running: dict[WorkerController, dict[int, str | None]] = {}
        # Items whose call phase has reported: the worker takes its next step while it tears them down.
        self._released: dict[WorkerController, list[int]] = {}
        self._starts: deque[Start] = deque()
        self._plain: deque[int] = deque()  # indices of ordinary tests given beside the plan
        self._index: dict[str, int] = {}
        self._nodeids: list[str] = []  # the collection, kept when the workers that sent it are gone
        self._started = False
        self._timers: list[threading.Timer] = []
        # a timer (retry delay) or a cancel request wakes the scheduler on xdist's loop thread
        self._loop = ControllerLoop(config, self._on_wake)
        controller.on_new_actions = self._post_wake
        self._wake_posted = False
        self._lock = threading.Lock()

    # -- xdist's Scheduling protocol -------------------------------------------------------------

    @property
    def nodes(self) -> list[WorkerController]:
        return list(self._nodes)

    @property
    def collection_is_completed(self) -> bool:
        # The run begins with the workers that are up; the others join as they come (starting eight
        # takes seconds on two cores, and the critical path need not wait for them).
        return bool(self._nodes) and all(node in self._collections for node in self._nodes)

    @property
    def tests_finished(self) -> bool:
        if not self.collection_is_completed or not self._started:
            return False
        core_done = self.controller.core is None or self.controller.final is not None
        return core_done and not any(self._running.values()) and not self._plain and not self._starts

    @property
    def has_pending(self) -> bool:
        return not self.tests_finished

    def add_node(self, node: WorkerController) -> None:
        self._nodes.append(node)

    def add_node_collection(self, node: WorkerController, collection: Sequence[str]) -> None:
        existing = next(iter(self._collections.values()), None)
        if existing is not None and list(collection) != existing:
            raise pytest.UsageError(
                f"worker {node.gateway.id} collected different items than the others; "
                "planrun needs the same plan on every worker"
            )
        self._collections[node] = list(collection)
        if self._started:  # a worker that replaces a crashed one
            self._ready.append(node)
            self.controller.set_slots(self._slots())
            self._dispatch()

    def mark_test_complete(self, node: WorkerController, item_index: int, duration: float = 0) -> None:
        released = self._released.get(node)
        if released and item_index in released:
            released.remove(item_index)
            return
        self._running.get(node, {}).pop(item_index, None)
        self._dispatch()

    def call_reported(self, node: WorkerController, nodeid: str) -> None:
        """A step's call phase ended on ``node``: its process is gone, so the worker is free for the
        next step now — its teardown and the completion notice would only add a round trip."""
        running = self._running.get(node, {})
        index = self._index.get(nodeid)
        if index is None or running.get(index) is None:
            return
        del running[index]
        self._released.setdefault(node, []).append(index)
        self._dispatch()

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError("planrun's scheduler does not take tests back from workers")

    def remove_pending_tests_from_node(self, node: WorkerController, indices: Sequence[int]) -> None:
        raise NotImplementedError("planrun's scheduler never queues tests on a worker")

    def remove_node(self, node: WorkerController) -> str | None:
        """A worker went away; return a node id it was running (xdist reports it as crashed) after
        reporting the others it ran at the same time as crashed too."""
        self._nodes.remove(node)
        self._collections.pop(node, None)
        self._released.pop(node, None)
        if node in self._ready:
            self._ready.remove(node)
        lost = [self._nodeids[index] for index in self._running.pop(node, {})]
        if self._started and self._nodes:
            self.controller.set_slots(self._slots())
        for nodeid in lost[1:]:
            report_crashed(self.config, nodeid, node)
        return lost[0] if lost else None

    def schedule(self) -> None:
        """Collection is complete on every worker: begin the run."""
        if self._started:
            self._dispatch()
            return
        self._started = True
        collection = self._nodeids = next(iter(self._collections.values()))
        self._index = {nodeid: i for i, nodeid in enumerate(collection)}
        places = self._build_places(collection)
        step_nodeids = {place.nodeid for place in places.values()}
        self._plain.extend(i for i, nodeid in enumerate(collection) if nodeid not in step_nodeids)
        self._ready.extend(self._nodes)
        if places:
            self.controller.build(places, slots=self._slots())
            # what a serial run's header says after collection; the controller of an xdist run
            # does not collect, so it is said here, once the selection is known
            terminal = self.config.pluginmanager.getplugin("terminalreporter")
            if terminal is not None:
                for line in assumed_lines(self.controller.assumed):
                    terminal.write_line(line)
        self._dispatch()

    # -- internals ------------------------------------------------------------------------------

    def _slots(self) -> int:
        return max(1, min(self._cap, len(self._nodes) * self._per_worker))

    def _post_wake(self) -> None:
        with self._lock:
            if self._wake_posted:
                return
            self._wake_posted = True
        self._loop.wake()

    def _on_wake(self) -> None:
        with self._lock:
            self._wake_posted = False
        self.controller.wake()
        self._dispatch()

    def _dispatch(self) -> None:
        for action in self.controller.take_actions():
            if isinstance(action, Start):
                self._starts.append(action)
            elif isinstance(action, Cancel):
                self._cancel_running(action)
            elif isinstance(action, Wait):
                delay = max(0.0, action.until - time.monotonic())
                timer = threading.Timer(delay, self._post_wake)
                timer.daemon = True
                timer.start()
                self._timers.append(timer)
        stopping = self.controller.stop_reason() is not None
        while (self._starts or (self._plain and not stopping)) and (node := self._least_busy()) is not None:
            if self._starts:
                start = self._starts.popleft()
                if not self.controller.claim(start, node.gateway.id):
                    continue  # a cancel overtook it: it never runs
                index = self._index[self.controller.places[start.step_id].nodeid]
                self._running.setdefault(node, {})[index] = start.step_id
                send_step(node, index, start.step_id, start.attempt, start.if_failed.value)
            else:
                index = self._plain.popleft()
                self._running.setdefault(node, {})[index] = None
                node.send_runtest_some([index])

    def _least_busy(self) -> WorkerController | None:
        """The worker with the most free slots (spreading steps over workers first), or None."""
        best, free = None, 0
        for node in self._ready:
            left = self._per_worker - len(self._running.get(node, {}))
            if left > free:
                best, free = node, left
        return best

    def _cancel_running(self, action: Cancel) -> None:
        for node, running in self._running.items():
            if action.step_id in running.values():
                send_cancel(node, action.step_id, action.reason)
                return

    def shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
