"""Hooks that exist only with pytest-xdist, registered only when it is installed (``-p no:xdist`` works).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from ..remote.messages import REMOTE
from ..remote.shipped import PLANS, ship
from .items import runtime_key
from .options import takes_value
from .xdist_seam import is_remote, ship_options_whole

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController


class XdistHooks:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: WorkerController) -> None:
        """Workers share the controller's run id and run directory; a remote worker, which may not
        have the plan files nor the environment their variables come from, gets the plans as loaded."""
        runtime = self.config.stash.get(runtime_key, None)
        if runtime is not None:
            node.workerinput["planrun_run_id"] = runtime.context.run_id
            node.workerinput["planrun_run_dir"] = str(runtime.context.run_dir)
            if is_remote(node):
                node.workerinput[REMOTE] = True
                node.workerinput[PLANS] = ship(list(runtime.plans.values()), self.config.rootpath)

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: Sequence[Any]) -> None:
        if any(not (spec.popen and not spec.chdir) for spec in specs):  # some worker is remote
            ship_options_whole(config, takes_value)

    @pytest.hookimpl(tryfirst=True)  # xdist's own implementation is trylast; ours decides for plans
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        plugin = config.pluginmanager.get_plugin("planrun-controller")
        if plugin is None:
            return None
        from .options import settings_key
        from .session import make_places
        from .xdist_scheduler import DagScheduling
        from .xdist_seam import worker_count

        controller = plugin.controller
        cap = max(p.plan.globals.max_concurrency for p in controller.plans)
        # -n says how many pytest processes, max_concurrency how many steps at once: each worker
        # takes its share of the cap unless --planrun-slots-per-worker says otherwise
        per_worker = config.stash[settings_key].slots_per_worker or -(-cap // worker_count(config))
        scheduler = DagScheduling(
            config,
            controller,
            lambda nodeids: make_places(config, controller, nodeids),
            cap,
            per_worker,
            config.stash[settings_key].worker_labels,
        )
        plugin.scheduler = scheduler
        return scheduler
