"""The one place planrun reaches into pytest-xdist's internals, behind a version check at start-up.

xdist offers no public way to wake its controller loop, to send a worker a command of our own or
to run an item the moment it arrives; each use below names the upstream code it mirrors (xdist
3.6–3.8). Outside the tested versions a plan run stops with one usage error instead of misbehaving;
``-p no:xdist`` runs the plan serially, through public APIs only.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..remote.messages import FILE, SIDE_CHANNEL

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

# The ranges pyproject.toml declares (a unit test keeps them equal): [lowest, first untested).
TESTED = {
    "pytest": ((8, 3), (10,)),
    "pytest-xdist": ((3, 6), (3, 9)),
}

RUN_STEP = "planrun_run"  # controller -> worker: run this step's attempt now
CANCEL_STEP = "planrun_cancel"  # controller -> worker: stop this step's attempt
WAKE = "planrun_wake"  # anything -> the controller loop: the core has new actions


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def version_problems(versions: dict[str, str]) -> list[str]:
    """What is wrong with the installed ``versions`` ({distribution: version}) for a plan run with xdist."""
    problems = []
    for name, version in versions.items():
        lowest, untested = TESTED[name]
        if not lowest <= _release(version) < untested:
            wanted = f">={'.'.join(map(str, lowest))},<{'.'.join(map(str, untested))}"
            problems.append(
                f"pytest-planrun runs plans with pytest-xdist only under {name}{wanted}, found {name} {version}: "
                f"install a version in that range, or run the plan without xdist (-p no:xdist)"
            )
    return problems


def check_versions(config: pytest.Config) -> None:
    """Refuse a plan run whose pytest or xdist is outside the tested range (a usage error, exit 4)."""
    import xdist

    problems = version_problems({"pytest": pytest.__version__, "pytest-xdist": xdist.__version__})
    if problems:
        raise pytest.UsageError(*problems)


# -- the controller's side ---------------------------------------------------------------------


class ControllerLoop:
    """Wakes xdist's controller loop from any thread (a retry timer, a cancel request)."""

    def __init__(self, config: pytest.Config, on_wake: Callable[[], None]) -> None:
        self._dsession: Any = config.pluginmanager.getplugin("dsession")
        if self._dsession is not None:
            # xdist 3.8 dsession.py ``loop_once`` hands each ("name", kwargs) event of its queue to
            # ``worker_<name>``: our own event goes through that same queue, so the scheduler is
            # only ever called on the loop's thread.
            setattr(self._dsession, f"worker_{WAKE}", on_wake)

    def wake(self) -> None:
        if self._dsession is not None:
            self._dsession.queue.put((WAKE, {}))


def loop_poster(config: pytest.Config, name: str, handler: Callable[[], None]) -> Callable[[], None] | None:
    """A function that, from any thread, has ``handler`` called on xdist's controller loop (as
    ``ControllerLoop.wake`` does for the scheduler); None outside an xdist run."""
    dsession: Any = config.pluginmanager.getplugin("dsession")
    if dsession is None:
        return None
    setattr(dsession, f"worker_{name}", handler)
    return lambda: dsession.queue.put((name, {}))


def worker_count(config: pytest.Config) -> int:
    """How many workers xdist starts: xdist 3.8 plugin.py turns ``-n`` into ``numprocesses`` and one
    ``--tx`` spec per worker."""
    option = config.option
    return max(1, int(getattr(option, "numprocesses", None) or len(getattr(option, "tx", None) or ()) or 1))


def stop_requested(config: pytest.Config) -> str | None:
    """Why xdist's controller loop is stopping (``-x``, a worker's KeyboardInterrupt), or None:
    xdist 3.8 dsession.py keeps it in ``DSession.shouldstop``, not in the session."""
    dsession = config.pluginmanager.getplugin("dsession")
    return str(getattr(dsession, "shouldstop", None) or "") or None


def report_node(report: pytest.TestReport) -> WorkerController | None:
    """The worker a report came from: xdist 3.8 dsession.py ``worker_testreport`` sets ``rep.node``
    on the controller (None: a report of this process)."""
    return getattr(report, "node", None)


def worker_id(report: pytest.TestReport) -> str:
    """The id of the worker a report came from ("gw0"), or "?"."""
    node = report_node(report)
    return str(node.gateway.id) if node is not None else "?"


def report_crashed(config: pytest.Config, nodeid: str, node: WorkerController) -> None:
    """Report ``nodeid`` as crashed with its worker, as xdist 3.8 dsession.py ``handle_crashitem``
    does for the one item ``remove_node`` returns; a worker running several steps loses them all."""
    dsession = config.pluginmanager.getplugin("dsession")
    if dsession is not None:
        dsession.handle_crashitem(nodeid, node)


def send_step(node: WorkerController, index: int, step_id: str, attempt: int, if_failed: str, **extra: Any) -> None:
    """Ask ``node`` to run one attempt now (handled by ``WorkerChannel`` on the worker); ``extra``:
    plain data the worker's loop reads (locks the controller holds, files to place)."""
    node.sendcommand(RUN_STEP, index=index, step_id=step_id, attempt=attempt, if_failed=if_failed, **extra)


def is_remote(node: WorkerController) -> bool:
    """Whether ``node`` may not share this machine's files: anything but a plain ``popen`` worker
    (xdist itself treats ``popen//chdir=`` as remote, rsyncing to it)."""
    spec = node.gateway.spec
    return not (spec.popen and not spec.chdir and not getattr(spec, "via", None))


def open_side_channel(node: WorkerController, on_message: Callable[[object], None]) -> None:
    """Open a channel of our own on ``node``'s gateway, with ``on_message`` called (on execnet's
    receiver thread) for what the worker sends on it, and hand it to the worker. xdist's channel
    would refuse events it does not know (workermanage.py ``process_from_remote``); a second
    ``remote_exec`` is not allowed on xdist's ``main_thread_only`` gateways, but a channel may travel
    inside a message."""
    channel = node.gateway.newchannel()
    channel.setcallback(on_message)
    node.sendcommand(SIDE_CHANNEL, channel=channel)


def send_file_piece(node: WorkerController, path: str, data: bytes, end: bool) -> None:
    node.sendcommand(FILE, path=path, data=data, end=end)


def spec_key(node: WorkerController) -> int:
    """What a worker and the replacement xdist starts for it share: xdist 3.8 dsession.py
    ``_clone_node`` gives the dead worker's spec object a new id and starts the new one with it."""
    return id(node.gateway.spec)


def starting_nodes(config: pytest.Config) -> list[WorkerController]:
    """Workers xdist has started that have not reported ready yet (replacements among them)."""
    dsession: Any = config.pluginmanager.getplugin("dsession")
    return list(getattr(dsession, "_active_nodes", ())) if dsession is not None else []


def survive_lost_hosts(config: pytest.Config, on_lost: Callable[[WorkerController, str], None]) -> None:
    """When a worker dies xdist starts a replacement with the same spec (dsession.py
    ``worker_errordown`` -> ``_clone_node``). For a remote worker that is no help: a host that is gone
    refuses the connection (an exception that would end the whole run with an internal error), and
    a socket server whose worker crashed is still busy with the dead session, so the connection
    waits forever and the run hangs. A remote worker is therefore not replaced: ``on_lost(node,
    why)`` is told and the run goes on with the workers it has; a local one is replaced as before
    (``on_lost`` is told when that fails)."""
    dsession: Any = config.pluginmanager.getplugin("dsession")
    if dsession is None or not hasattr(dsession, "_clone_node"):
        return
    clone = dsession._clone_node

    def clone_or_go_on(node: WorkerController) -> WorkerController | None:
        if is_remote(node):
            on_lost(node, "a remote worker is not replaced")
            return None
        try:
            return clone(node)
        except Exception as error:
            on_lost(node, f"{type(error).__name__}: {error}")
            return None

    dsession._clone_node = clone_or_go_on


def ship_options_whole(config: pytest.Config, takes_value: Callable[[str], bool]) -> None:
    """Write each ``--option VALUE`` of ours as ``--option=VALUE`` in the arguments xdist sends remote
    workers. xdist 3.8 workermanage.py ``make_reltoroot`` rewrites every argument naming an existing
    path relative to its rsync roots and raises for one outside them, so ``--plan plans/x.json``
    stopped every remote worker at its start; ``--plan=plans/x.json`` names no file, passes as is
    (the worker gets the plan itself from the controller)."""
    args = list(config.invocation_params.args)
    joined: list[str] = []
    skip = False
    for arg, following in zip(args, [*args[1:], None], strict=True):
        if skip:
            skip = False
        elif takes_value(arg) and following is not None and not following.startswith("-"):
            joined.append(f"{arg}={following}")
            skip = True
        else:
            joined.append(arg)
    if joined != args:
        config.invocation_params = dataclasses.replace(config.invocation_params, args=tuple(joined))


def worker_ids(config: pytest.Config) -> list[str] | None:
    """The ids xdist gives its first workers (gw0, gw1, ...), None when not known yet (``-n auto``)."""
    option = config.option
    count = getattr(option, "numprocesses", None)
    if isinstance(count, int) and count > 0:
        return [f"gw{i}" for i in range(count)]
    if getattr(option, "tx", None):
        from xdist import workermanage

        # xdist 3.6 calls it parse_spec_config; --tx 2*popen counts twice
        parse = getattr(workermanage, "parse_tx_spec_config", None) or workermanage.parse_spec_config
        return [f"gw{i}" for i in range(len(parse(config)))]
    return None


def send_cancel(node: WorkerController, step_id: str, reason: str) -> None:
    node.sendcommand(CANCEL_STEP, step_id=step_id, reason=reason)


# -- a worker's side ------------------------------------------------------------------------------

_INTERACTOR_NEEDS = ("channel", "handle_command", "sendevent")


class WorkerChannel:
    """A worker's end of the channel, taken over from xdist's ``WorkerInteractor``.

    xdist 3.8 remote.py runs an item only once the *next* index has arrived, so a lone ready step
    would wait for another to be sent; a DAG scheduler sends one step at a time. We receive the
    commands ourselves and pass on the ones we do not handle.
    """

    def __init__(self, config: pytest.Config) -> None:
        # By class name: a worker runs remote.py as a module execnet sent it, not ``xdist.remote``,
        # so ``isinstance`` against the importable class would not match; the interactor registers
        # itself without a name (remote.py ``WorkerInteractor.__init__``).
        found = [
            p
            for p in config.pluginmanager.get_plugins()
            if type(p).__name__ == "WorkerInteractor" and all(hasattr(p, a) for a in _INTERACTOR_NEEDS)
        ]
        if len(found) != 1:
            raise RuntimeError(f"expected one xdist WorkerInteractor on this worker, found {len(found)}")
        self._interactor: Any = found[0]

    def take_over(
        self,
        on_run: Callable[[dict[str, Any]], None],
        on_cancel: Callable[[str, str], None],
        on_plain: Callable[[int], None],
        on_end: Callable[[], None],
        on_other: dict[str, Callable[[dict[str, Any]], None]] | None = None,
    ) -> None:
        """Receive the controller's commands; the callbacks run on execnet's receiver thread."""
        interactor = self._interactor
        end = object()

        def handle(command: Any) -> None:
            if command is end:
                on_end()
                return
            name, kwargs = command
            if name == RUN_STEP:
                on_run(dict(kwargs))
            elif name == CANCEL_STEP:
                on_cancel(kwargs["step_id"], kwargs["reason"])
            elif name == "runtests":  # xdist's command for ordinary tests given beside the plan
                for index in kwargs["indices"]:
                    on_plain(index)
            elif name == "shutdown":
                on_end()
            elif on_other and name in on_other:
                on_other[name](dict(kwargs))
            else:
                interactor.handle_command(command)

        # mirrors remote.py ``pytest_runtestloop``: channel.setcallback(handle_command, endmarker=...)
        interactor.channel.setcallback(handle, endmarker=end)

    def run(self, index: int, run_item: Callable[[], None]) -> None:
        """Run the item at ``index`` as remote.py ``run_one_test`` does: xdist's report hook tags
        reports with ``item_index``, and the controller waits for ``runtest_protocol_complete``."""
        self._interactor.item_index = index
        start = time.perf_counter()
        run_item()
        self._interactor.sendevent("runtest_protocol_complete", item_index=index, duration=time.perf_counter() - start)
