"""The Starlette application: pages, JSON, server-sent events and the two cancel endpoints.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..ledger import queries
from . import pages
from .broadcast import CLOSED, Broadcaster, RunSource, RunsSource, Source
from .cancel import cancel
from .graph import Dag
from .snapshot import list_runs, run_dag, run_snapshot

STATIC = Path(__file__).parent / "static"
KEEPALIVE_SEC = 15.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SecurityHeaders:
    """No inline script or style may run, the page cannot be framed, and nothing is sniffed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


class HostGuard:
    """Requests must name this server: a page of another site that rebinds its domain to 127.0.0.1
    must not reach it, so on loopback only loopback names pass. (Starlette's TrustedHostMiddleware
    cuts ``[::1]:8765`` at its first colon.)"""

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app = app
        self.any = host in ("0.0.0.0", "::", "")
        self.allowed = {*LOOPBACK, host.strip("[]").lower()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any:
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            try:
                name = urlsplit("//" + header).hostname or ""
            except ValueError:
                name = ""
            if name not in self.allowed:
                await PlainTextResponse("invalid host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _same_origin(request: Request) -> bool:
    """Browsers send Origin with every POST; when it is there it must name this server."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and parts.scheme == request.url.scheme


def create_app(ledger: Path, host: str = "127.0.0.1", token: str | None = None, interval: float = 0.25) -> Starlette:
    """The web view of ``ledger``. ``token`` (random by default) must accompany every cancel POST."""
    token = token or secrets.token_urlsafe(32)
    broadcaster = Broadcaster(interval)

    async def runs_page(request: Request) -> Response:
        runs = await anyio.to_thread.run_sync(list_runs, ledger)
        return HTMLResponse(pages.runs_page(runs, token, str(ledger)))

    async def runs_json(request: Request) -> Response:
        return JSONResponse({"runs": await anyio.to_thread.run_sync(list_runs, ledger)})

    def _load(run_id: str) -> tuple[dict[str, Any], Dag]:
        _, dag = run_dag(ledger, run_id)
        return run_snapshot(ledger, run_id, dag), dag

    async def run_page(request: Request) -> Response:
        snapshot, dag = await anyio.to_thread.run_sync(_load, request.path_params["run_id"])
        return HTMLResponse(pages.run_page(snapshot, dag, token))

    async def run_json(request: Request) -> Response:
        snapshot, _ = await anyio.to_thread.run_sync(_load, request.path_params["run_id"])
        return JSONResponse(snapshot)

    async def stream(key: str, make_source: Callable[[], Source]) -> Response:
        async def events() -> AsyncIterator[str]:
            async with broadcaster.subscribe(key, make_source) as queue:
                while True:
                    try:
                        payload = await asyncio.wait_for(queue.get(), KEEPALIVE_SEC)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"  # lets a proxy or the browser see the connection is alive
                        continue
                    if payload == CLOSED:
                        return
                    yield f"data: {payload}\n\n"

        headers = {"x-accel-buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        # an unknown run is a 404 here, not an error inside a stream already begun
        await anyio.to_thread.run_sync(queries.get_run_status, ledger, run_id)
        return await stream(f"run:{run_id}", lambda: RunSource(ledger, run_id))

    async def runs_events(request: Request) -> Response:
        return await stream("runs", lambda: RunsSource(ledger))

    async def cancel_endpoint(request: Request) -> Response:
        body = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        given = request.headers.get("x-planrun-token") or (body.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()) or not _same_origin(request):
            return PlainTextResponse("forbidden: missing or wrong token, or another origin", status_code=403)
        run_id, step_id = request.path_params["run_id"], request.path_params.get("step_id")
        code, message = await anyio.to_thread.run_sync(cancel, ledger, run_id, step_id)
        status = {0: 202, 2: 404}.get(code, 409)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": code == 0, "message": message}, status_code=status)
        if code != 0:
            return PlainTextResponse(message, status_code=status)
        return RedirectResponse(pages.run_url(run_id), status_code=303)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask; a 404 would be a console error on every page

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc.args[0] if exc.args else exc), status_code=404)

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/favicon.ico", no_icon),
            Route("/api/runs", runs_json),
            Route("/events", runs_events),
            Route("/runs/{run_id}", run_page),
            Route("/api/runs/{run_id}", run_json),
            Route("/runs/{run_id}/events", run_events),
            Route("/runs/{run_id}/cancel", cancel_endpoint, methods=["POST"]),
            Route("/runs/{run_id}/steps/{step_id}/cancel", cancel_endpoint, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(HostGuard, host=host), Middleware(SecurityHeaders)],
        exception_handlers={LookupError: not_found, FileNotFoundError: not_found},
    )
    app.state.broadcaster = broadcaster
    app.state.token = token
    return app
