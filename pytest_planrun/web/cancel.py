"""Cancel buttons do exactly what ``planrun cancel RUN [STEP]`` does: they call its command.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import argparse
import io
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

_LOCK = threading.Lock()


def cancel(ledger: Path, run_id: str, step_id: str | None) -> tuple[int, str]:
    """``planrun cancel``'s exit code and what it printed.

    The command prints its verdict; it is captured by swapping ``sys.stdout``/``sys.stderr`` under a
    lock. Nothing else in the server prints (uvicorn's log handlers keep the streams they were given).
    """
    from ..cli import cmd_cancel  # the CLI imports this package lazily too: no import cycle at start

    args = argparse.Namespace(run=run_id, step=step_id, ledger=str(ledger))
    captured = io.StringIO()
    with _LOCK, redirect_stdout(captured), redirect_stderr(captured):
        try:
            code = cmd_cancel(args)
        except (FileNotFoundError, LookupError) as error:  # as cli.main reports them
            print(f"planrun: {error.args[0] if error.args else error}")
            code = 2
    return code, captured.getvalue().strip()
