"""Plans shipped inside the package, run by name: ``--plan safe-merge`` from any repository.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

PLANS_DIR = Path(__file__).resolve().parent.parent / "plans"
PYTHON_ENV = "PLANRUN_PYTHON"  # the interpreter shipped plans run planrun's own helpers with


def offer_python() -> bool:
    """Set ``PLANRUN_PYTHON`` to the interpreter planrun runs on, unless the user chose one (the
    plugin and the ``planrun`` command alike). True when it was set here."""
    if PYTHON_ENV in os.environ:
        return False
    os.environ[PYTHON_ENV] = sys.executable
    return True


def plan_name(file: Path) -> str:
    """A packaged plan's name: its file name without ``.json``, ``-`` for ``_`` (``safe-merge``)."""
    return file.stem.replace("_", "-")


def packaged_plans() -> dict[str, Path]:
    """Every shipped plan by name, sorted."""
    return {plan_name(p): p for p in sorted(PLANS_DIR.glob("*.json"))}


def _normalised(text: str) -> str:
    return text.removesuffix(".json").replace("_", "-").lower()


class PlanNotFound(LookupError):
    """A ``--plan`` that is neither a file nor a packaged plan's name."""


def find_plan(given: str, base: Path) -> tuple[Path, str]:
    """The plan file ``given`` names, and how messages and node ids show it.

    A file (relative to ``base``) wins; else a bare name (``safe-merge``, ``safe_merge``,
    ``safe_merge.json``) names a packaged plan, shown by its file name. Raises PlanNotFound, whose
    message lists the packaged names (with a did-you-mean), for anything else.
    """
    path = Path(os.path.abspath(base / os.path.expanduser(given)))  # as pytest spells its arguments
    if path.exists() or os.sep in given or "/" in given:
        if path.exists():
            return path, given
        raise PlanNotFound(f"{given}: plan file not found{_listing(given)}")
    shipped = packaged_plans()
    wanted = _normalised(given)
    for name, file in shipped.items():
        if name == wanted:
            return file, file.name
    raise PlanNotFound(f"{given}: plan file not found, nor a packaged plan of that name{_listing(given)}")


def _listing(given: str) -> str:
    names = list(packaged_plans())
    if not names:
        return ""
    close = difflib.get_close_matches(_normalised(Path(given).name), names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f" (packaged plans: {', '.join(names)}{hint})"
