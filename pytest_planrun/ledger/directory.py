"""The ledger's directory ignores itself, as pytest's cache directory does: a run never shows in
``git status``.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_LEDGER = ".ledger/framework.db"  # relative to where pytest or planrun is started
GITIGNORE = "# Created by pytest-planrun automatically.\n*\n"


def make_ledger_dir(path: Path) -> None:
    """Create ``path`` with a ``.gitignore`` holding ``*`` if it does not exist yet.

    A directory that exists is left as it is (a user may keep a ledger in a tracked folder). The
    directory appears whole, ``.gitignore`` included, or not at all: it is made beside the target and
    renamed into place, so concurrent runs never see it without its ``.gitignore``.
    """
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".planrun-ledger-", dir=path.parent))
    try:
        (staging / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        os.rename(staging, path)
    except OSError:
        if not path.is_dir():  # not a lost race with another run: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
