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
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pytest

from ..core.placement import fits
from ..core.state import Cancel, Start, Wait
from ..remote.inbox import Inbox
from ..remote.messages import file_pieces
from ..run.locks import LockTimeout
from ..run.provided import ProvidedFile, kept_path
from .controller import PlanController
from .lock_broker import LockBroker, LockGrant
from .report import assumed_lines
from .xdist_seam import (
    ControllerLoop,
    is_remote,
    open_side_channel,
    report_crashed,
    send_cancel,
    send_file_piece,
    send_step,
    spec_key,
    starting_nodes,
    survive_lost_hosts,
)

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

log = logging.getLogger(__name__)


class DagScheduling:
    """Up to ``per_worker`` steps on each worker at a time (a worker supervises their processes on
    threads); dependencies, retries, skips and cancels decided by the core."""

    def __init__(
        self,
        config: pytest.Config,
        controller: PlanController,
        build_places: Any,
        cap: int,
        per_worker: int = 1,
        worker_labels: dict[str, frozenset[str]] | None = None,
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
        self._worker_labels = worker_labels or {}
        self._labels: dict[int, frozenset[str]] = {}  # spec_key(node) -> labels (a replacement keeps them)
        self._inboxes: dict[WorkerController, Inbox] = {}  # remote workers' logs and files
        self._has_files: dict[int, set[tuple[str, str]]] = {}  # spec_key -> (path, sha256) it holds
        self._broker = LockBroker(self._post_wake)
        self._locking: dict[str, LockGrant] = {}  # step id -> its locks, being waited for
        self._granted: dict[str, LockGrant] = {}  # step id -> its locks, held while it runs
        self._gone: set[WorkerController] = set()  # lost and not replaced
        survive_lost_hosts(config, self._restart_failed)

    # -- xdist's Scheduling protocol -------------------------------------------------------------

    @property
    def nodes(self) -> list[WorkerController]:
        return list(self._nodes)

    @property
    def collection_is_completed(self) -> bool:
        # The run begins with the workers that are up; the others join as they come (starting eight
        # takes seconds on two cores, and the critical path need not wait for them).
        if self._started:  # (also once every worker is lost: the run still ends)
            return True
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
        self._labels.setdefault(spec_key(node), self._worker_labels.get(str(node.gateway.id), frozenset()))
        if is_remote(node):
            inbox = self._inboxes[node] = Inbox(self.controller.context.run_dir, str(node.gateway.id))
            self._has_files[spec_key(node)] = set()  # a replacement starts with an empty folder
            open_side_channel(node, inbox.receive)

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
        step_id = self._running.get(node, {}).pop(item_index, None)
        if step_id is not None:
            self._attempt_over(node, step_id)
        self._dispatch()

    def call_reported(self, node: WorkerController, nodeid: str) -> None:
        """A step's call phase ended on ``node``: its process is gone, so the worker is free for the
        next step now — its teardown and the completion notice would only add a round trip."""
        running = self._running.get(node, {})
        index = self._index.get(nodeid)
        if index is None or running.get(index) is None:
            return
        step_id = running.pop(index)
        assert step_id is not None
        self._released.setdefault(node, []).append(index)
        self._attempt_over(node, step_id)
        self._dispatch()

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError("planrun's scheduler does not take tests back from workers")

    def remove_pending_tests_from_node(self, node: WorkerController, indices: Sequence[int]) -> None:
        raise NotImplementedError("planrun's scheduler never queues tests on a worker")

    def remove_node(self, node: WorkerController) -> str | None:
        """A worker went away; return a node id it was running (xdist reports it as crashed) after
        reporting the others it ran at the same time as crashed too."""
        if node not in self._nodes:
            raise KeyError(node)  # lost before it was ready: xdist expects this
        self._nodes.remove(node)
        inbox = self._inboxes.pop(node, None)
        if inbox is not None:
            inbox.close()
        self._collections.pop(node, None)
        self._released.pop(node, None)
        if node in self._ready:
            self._ready.remove(node)
        running = self._running.pop(node, {})
        for step_id in running.values():
            if step_id is not None:
                self._drop_locks(step_id)
        lost = [self._nodeids[index] for index in running]
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
        """Steps the core may have started: the plan's cap, or the workers' slots if fewer, plus the
        pinned starts waiting for a busy worker their ``runs_on`` fits: idle workers take other steps
        meanwhile, and what runs never exceeds the cap or the slots."""
        # Not counted: an unpinned start, which waits only when every worker is busy (more starts would
        # merely queue), and a start waiting for its locks — it keeps its slot as it did when workers
        # waited for locks, else a step started meanwhile takes the worker it will need once it has them.
        pinned = sum(1 for start in self._starts if self._required(start.step_id))
        return max(1, min(self._cap, len(self._nodes) * self._per_worker + pinned))

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
                step = self.controller.steps[action.step_id]
                if step.locks:  # taken here, whatever machine runs the step (lock_broker.py)
                    self._locking[action.step_id] = self._broker.request(action, step.locks, step.timeout_sec or None)
                else:
                    self._starts.append(action)
            elif isinstance(action, Cancel):
                self._cancel_running(action)
            elif isinstance(action, Wait):
                delay = max(0.0, action.until - time.monotonic())
                timer = threading.Timer(delay, self._post_wake)
                timer.daemon = True
                timer.start()
                self._timers.append(timer)
        self._take_locks()
        stopping = self.controller.stop_reason() is not None
        waiting: deque[Start] = deque()
        while self._starts:
            start = self._starts.popleft()
            if not self.controller.is_handed(start):
                self._drop_locks(start.step_id)  # a cancel overtook it: it never runs
                continue
            node = self._least_busy(start.step_id)
            if node is not None:
                self._send(node, start)
            elif self._fits_nowhere(start.step_id):
                self._no_worker(start)
            else:
                waiting.append(start)  # its workers are busy; the starts behind it may go elsewhere
        self._starts = waiting
        if self._started and self.controller.core is not None and self.controller.core.slots != self._slots():
            self.controller.set_slots(self._slots())  # its new starts come on the next turn of the loop
        while self._plain and not stopping and (node := self._least_busy(None)) is not None:
            index = self._plain.popleft()
            self._running.setdefault(node, {})[index] = None
            node.send_runtest_some([index])

    def _send(self, node: WorkerController, start: Start) -> None:
        if not self.controller.claim(start, node.gateway.id):
            self._drop_locks(start.step_id)
            return
        index = self._index[self.controller.places[start.step_id].nodeid]
        self._running.setdefault(node, {})[index] = start.step_id
        deliveries = self.controller.deliveries_for(start.step_id)
        if is_remote(node):
            self._send_files(node, deliveries)
        grant = self._granted.get(start.step_id)
        send_step(
            node,
            index,
            start.step_id,
            start.attempt,
            start.if_failed.value,
            held=None if grant is None else asdict(grant.held),
            deliveries=[asdict(file) for file in deliveries],
        )

    def _send_files(self, node: WorkerController, files: tuple[ProvidedFile, ...]) -> None:
        """Send a remote worker the files its step consumes, each once (the worker keeps them)."""
        has = self._has_files.setdefault(spec_key(node), set())
        for file in files:
            if (file.path, file.sha256) in has:
                continue
            kept = kept_path(self.controller.context.run_dir, file.path)
            try:
                for data, end in file_pieces(kept):
                    send_file_piece(node, file.path, data, end)
            except OSError as error:  # the step then fails, saying the file was not delivered
                log.warning("planrun: cannot send %s to %s: %s", kept, node.gateway.id, error)
                continue
            has.add((file.path, file.sha256))

    def _attempt_over(self, node: WorkerController, step_id: str) -> None:
        """A step's attempt on ``node`` ended: its locks go, and the worker holds what it provided."""
        self._drop_locks(step_id)
        record = self.controller.last_record(step_id)
        if record is not None and record.provided:
            self._has_files.setdefault(spec_key(node), set()).update((f.path, f.sha256) for f in record.provided)

    # -- locks ------------------------------------------------------------------------------------

    def _take_locks(self) -> None:
        for step_id, grant in list(self._locking.items()):
            if not self.controller.is_handed(grant.start):  # cancelled while waiting
                del self._locking[step_id]
                grant.release()
        for grant in self._broker.take_decided():
            step_id = grant.start.step_id
            if self._locking.get(step_id) is not grant:
                grant.release()
                continue
            del self._locking[step_id]
            if grant.error is None:
                self._granted[step_id] = grant
                self._starts.append(grant.start)
                continue
            timed_out = isinstance(grant.error, LockTimeout)
            timeout = self.controller.steps[step_id].timeout_sec
            error = (
                f"timed out after {timeout:g} s waiting for lock '{grant.error}'"
                if timed_out
                else f"cancelled: {grant.error}"
            )
            record = self.controller.unsent_record(
                grant.start,
                "controller",
                error,
                timed_out=timed_out,
                timeout_kind="wall_clock" if timed_out else None,
                waited_for_lock=grant.waited_for,
                lock_wait=grant.waited,
            )
            self.controller.report_unsent(grant.start, record)

    def _drop_locks(self, step_id: str) -> None:
        grant = self._granted.pop(step_id, None)
        if grant is not None:
            grant.release()

    # -- placement --------------------------------------------------------------------------------

    def _required(self, step_id: str | None) -> tuple[str, ...]:
        return () if step_id is None else tuple(self.controller.steps[step_id].runs_on)

    def _node_labels(self, node: WorkerController) -> frozenset[str]:
        known = self._labels.get(spec_key(node))
        return known if known is not None else self._worker_labels.get(str(node.gateway.id), frozenset())

    def _fits_nowhere(self, step_id: str) -> bool:
        """No worker that is up or starting (a replacement among them) can run the step."""
        required = self._required(step_id)
        return not any(fits(required, self._node_labels(node)) for node in self._live_nodes())

    def _live_nodes(self) -> set[WorkerController]:
        """Workers that are up or starting, a replacement among them."""
        return {*self._nodes, *starting_nodes(self.config)} - self._gone

    def _no_worker(self, start: Start) -> None:
        required = self._required(start.step_id)
        workers = ", ".join(sorted(str(n.gateway.id) for n in self._nodes)) or "none"
        error = f"no worker left that can run it: runs_on {list(required)} (workers up: {workers})"
        self._drop_locks(start.step_id)
        self.controller.report_unsent(start, self.controller.unsent_record(start, "controller", error))

    def _restart_failed(self, node: WorkerController, why: str) -> None:
        """A lost worker is not replaced (see ``survive_lost_hosts``): go on without it. Called on
        xdist's loop inside its handling of the loss, which ends the loop once no worker is left:
        what can no longer run is decided now, not on a later turn of the loop."""
        self._gone.add(node)
        terminal = self.config.pluginmanager.getplugin("terminalreporter")
        if terminal is not None:
            terminal.write_line(f"[{node.gateway.id}] lost and not replaced: {why}")
        if self._started and not self._live_nodes():
            self.controller.interrupt("cancelled: every worker was lost")
        self._dispatch()

    def _least_busy(self, step_id: str | None) -> WorkerController | None:
        """The worker with the most free slots (spreading steps over workers first) that may run
        ``step_id`` (None: an ordinary test), or None."""
        required = self._required(step_id)
        best, free = None, 0
        for node in self._ready:
            left = self._per_worker - len(self._running.get(node, {}))
            if left > free and fits(required, self._node_labels(node)):
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
        self._broker.release_all()
        for inbox in self._inboxes.values():
            inbox.close()
