"""Running the web view with uvicorn on a socket bound here, so ``--port 0`` can say its port.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import FrameType

import uvicorn

from .app import create_app
from .broadcast import Broadcaster


class Server(uvicorn.Server):
    """uvicorn's server, which first ends the event streams when asked to stop."""

    def __init__(self, config: uvicorn.Config, broadcaster: Broadcaster) -> None:
        super().__init__(config)
        self.broadcaster = broadcaster

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.broadcaster.close_threadsafe()
        super().handle_exit(sig, frame)


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
    try:
        Server(config, app.state.broadcaster).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has stopped: that is the way out
        pass
