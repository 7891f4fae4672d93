"""The pytest11 entry point, loaded by every pytest start: options, and the plan hooks on demand.

pytest imports this module in every session of every user with planrun installed, most of them
without ``--plan``; so it imports only what declares the options. The hooks that run a plan, and
with them pydantic, lark, psutil, filelock and sqlite3, are registered (``plan_hooks``) only when
a plan is given.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .options import Settings, settings_key, undo_key
from .options import pytest_addoption as pytest_addoption  # noqa: F401  (a hook)

PLAN_HOOKS = "planrun-plans"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    settings = Settings.from_config(config)
    config.stash[settings_key] = settings
    if not settings.plans:
        return
    from . import plan_hooks

    plan_hooks.prepare(config, settings)
    # registered before pytest_configure, which pytest calls for every plugin registered by then
    config.pluginmanager.register(plan_hooks, PLAN_HOOKS)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave pytest as ``pytest_cmdline_main`` found it: our plugins gone, the SIGTERM handler and
    the environment restored (pytester runs many sessions in one process)."""
    plan_hooks = config.pluginmanager.get_plugin(PLAN_HOOKS)
    if plan_hooks is not None:
        for name in plan_hooks.PLUGIN_NAMES:
            plugin = config.pluginmanager.get_plugin(name)
            if plugin is not None:
                config.pluginmanager.unregister(plugin, name)
        config.pluginmanager.unregister(plan_hooks, PLAN_HOOKS)
    undos: list[Callable[[], object]] = config.stash.get(undo_key, [])
    for undo in reversed(undos):
        undo()
    config.stash[undo_key] = []
