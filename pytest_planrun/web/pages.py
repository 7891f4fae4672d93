"""The HTML pages. Everything from the ledger, plans and logs passes through ``escape``; the
script and styles are static files (the Content-Security-Policy allows no inline ones).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from .graph import Dag, render_svg


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def fmt_time(iso: str | None) -> str:
    """A ledger time to the second, as the page's script shows it too."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return iso


def fmt_vars(variables: object) -> str:
    if not isinstance(variables, Mapping) or not variables:
        return ""
    return " ".join(f"{k}={v}" for k, v in variables.items())


def run_url(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def _page(title: str, token: str, body: str, data: Mapping[str, str]) -> str:
    attrs = "".join(f' data-{k}="{escape(v)}"' for k, v in data.items())
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="planrun-token" content="{escape(token)}">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/static/app.css"><script defer src="/static/app.js"></script>'
        f"</head><body{attrs}>{body}</body></html>"
    )


def _run_row(run: Mapping[str, Any]) -> str:
    run_id = str(run["run_id"])
    return (
        f'<tr data-run="{escape(run_id)}"><td><a href="{escape(run_url(run_id))}">{escape(run_id)}</a></td>'
        f"<td>{escape(str(run['plan_id'] or ''))}<div class=sub>{escape(str(run['plan_path'] or ''))}</div></td>"
        f"<td class=vars>{escape(fmt_vars(run['variables']))}</td>"
        f'<td><span class="badge state-{escape(str(run["state"]))}">{escape(str(run["state"]))}</span></td>'
        f"<td>{escape(fmt_time(run['started_at'] or run['created_at']))}</td>"
        f"<td class=num>{escape(fmt_duration(run['duration']))}</td></tr>"
    )


def runs_page(runs: list[dict[str, Any]], token: str, ledger: str) -> str:
    rows = "".join(_run_row(r) for r in runs) or "<tr><td colspan=6 class=empty>no runs yet</td></tr>"
    body = (
        f"<header><h1>planrun runs</h1><div class=sub>{escape(ledger)}</div></header><main>"
        "<table class=runs><thead><tr><th>run</th><th>plan</th><th>variables</th><th>state</th><th>started</th>"
        f"<th>duration</th></tr></thead><tbody id=runs>{rows}</tbody></table></main>"
    )
    return _page("planrun runs", token, body, {"page": "runs"})


def cancel_form(action: str, token: str, label: str) -> str:
    return (
        f'<form method=post action="{escape(action)}" class=cancel><input type=hidden name=token'
        f' value="{escape(token)}"><button type=submit>{escape(label)}</button></form>'
    )


def run_page(snapshot: Mapping[str, Any], dag: Dag, token: str) -> str:
    run = snapshot["run"]
    run_id = str(run["run_id"])
    states = {s["step_id"]: s["state"] for s in snapshot["steps"]}
    cancel = cancel_form(run_url(run_id) + "/cancel", token, "Cancel run") if snapshot["live"] else ""
    note = f"<p class=note>{escape(dag.note)}</p>" if dag.note else ""
    body = (
        f'<header><a href="/">runs</a><h1>run {escape(run_id)}</h1>'
        f'<span id=run-state class="badge state-{escape(str(run["state"]))}">{escape(str(run["state"]))}</span>'
        f"<span id=run-duration class=sub>{escape(fmt_duration(run['duration']))}</span>"
        f"<div id=run-cancel>{cancel}</div></header><main>"
        f"<dl class=facts><dt>plan</dt><dd>{escape(str(run['plan_id'] or ''))} — {escape(str(run['plan_path'] or ''))}"
        f"</dd><dt>variables</dt><dd class=vars>{escape(fmt_vars(run['variables']))}</dd>"
        f"<dt>started</dt><dd>{escape(fmt_time(run['started_at']))}</dd>"
        f"<dt>message</dt><dd id=run-message>{escape(str(run['error_message'] or ''))}</dd></dl>"
        f"<p id=flash role=status></p>{note}<div class=graph>{render_svg(dag, states)}</div>"
        "<table class=steps><thead><tr><th>step</th><th>state</th><th>attempts</th><th>duration</th>"
        "<th>reason</th><th></th></tr></thead><tbody id=steps></tbody></table>"
        "<h2>events</h2><ol id=events></ol></main>"
    )
    return _page(f"planrun run {run_id}", token, body, {"page": "run", "run": run_id})
