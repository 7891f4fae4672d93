"""Cross-run step locks taken by the controller of an xdist run, before it sends a step to a worker.

Only the controller sees every start, and only its machine is sure to be the same for every step:
a worker on another host taking a file lock in its own folder would exclude nothing. Each step's
locks are waited for on a thread of their own (the controller's loop never blocks), held while the
step runs wherever it runs, and released when its attempt is reported (or its worker is lost).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..core.state import Start
from ..run.locks import LockCancelled, LockTimeout, holding
from ..run.process import CancelToken
from ..run.step import HeldLocks


class LockGrant:
    """One start's locks: being waited for, then held (``error`` None) or given up (``error`` set)."""

    def __init__(self, start: Start, names: Sequence[str]) -> None:
        self.start = start
        self.names = tuple(names)
        self.token = CancelToken()
        self.waited_for: str | None = None
        self.waited = 0.0
        self.error: LockTimeout | LockCancelled | None = None
        self._release = threading.Event()

    @property
    def held(self) -> HeldLocks:
        return HeldLocks(self.waited_for, self.waited)

    def release(self) -> None:
        """Let the locks go (or stop waiting for them); safe to call more than once."""
        self.token.cancel("released")
        self._release.set()


class LockBroker:
    """Hands out ``LockGrant``s; ``on_ready`` is called (from the grant's thread) when one is decided."""

    def __init__(self, on_ready: Callable[[], None]) -> None:
        self._on_ready = on_ready
        self._decided: deque[LockGrant] = deque()
        self._grants: list[LockGrant] = []

    def request(self, start: Start, names: Sequence[str], timeout: float | None) -> LockGrant:
        grant = LockGrant(start, names)
        deadline = None if timeout is None else time.monotonic() + timeout
        thread = threading.Thread(
            target=self._hold, args=(grant, deadline), name=f"planrun-locks-{start.step_id}", daemon=True
        )
        self._grants.append(grant)
        thread.start()
        return grant

    def _hold(self, grant: LockGrant, deadline: float | None) -> None:
        # acquired and released on this one thread: a file lock belongs to the thread that took it
        begun = time.monotonic()
        waited: list[str] = []
        try:
            with holding(grant.names, deadline=deadline, token=grant.token, on_wait=waited.append):
                grant.waited, grant.waited_for = time.monotonic() - begun, (waited[0] if waited else None)
                self._decide(grant)
                grant._release.wait()
        except (LockTimeout, LockCancelled) as stopped:
            grant.waited, grant.waited_for = time.monotonic() - begun, (waited[0] if waited else None)
            grant.error = stopped
            self._decide(grant)

    def _decide(self, grant: LockGrant) -> None:
        self._decided.append(grant)
        self._on_ready()

    def take_decided(self) -> list[LockGrant]:
        decided = []
        while self._decided:
            decided.append(self._decided.popleft())
        return decided

    def release_all(self) -> None:
        for grant in self._grants:
            grant.release()
        self._grants.clear()
