"""``planrun serve``: a live web view of the ledger's runs; it reads the ledger and never writes it.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
