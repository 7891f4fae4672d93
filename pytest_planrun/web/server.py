"""Running the web view with uvicorn on a socket bound here, so ``--port 0`` can say its port."""

from __future__ import annotations

import socket
from pathlib import Path

import uvicorn

from .app import create_app


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(ledger: Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted; open event streams are given a second to close on shutdown."""
    sock = bind(host, port)
    app = create_app(ledger, host=host)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    actual = sock.getsockname()[1]
    display = f"[{host}]" if ":" in host else host
    print(f"planrun serve: http://{display}:{actual}/ (ledger {ledger}); Ctrl-C to stop", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
