"""The server's endpoints through Starlette's test client, on the ledger of a finished run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from webhelpers import HOSTILE_NAME, HOSTILE_OUTPUT

from pytest_planrun.web import create_app


@pytest.fixture
def client(finished: tuple[Path, str]) -> TestClient:
    return TestClient(create_app(finished[0], token="t0ken"), base_url="http://127.0.0.1:8765")


def test_runs_list_shows_plan_variables_state_and_duration(client: TestClient, finished: tuple[Path, str]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    row = re.search(rf'<tr data-run="{finished[1]}">.*?</tr>', page.text)
    assert row, page.text
    assert "WEB&lt;b&gt;plan&lt;/b&gt;" in row.group() and "plan.json" in row.group()
    assert "WHO=&lt;i&gt;me&lt;/i&gt;" in row.group()
    assert 'class="badge state-failed"' in row.group()
    assert re.search(r"<td class=num>\d+\.\ds</td>", row.group())
    assert "<b>plan" not in page.text and "<i>me" not in page.text
    assert client.get("/api/runs").json()["runs"][0]["state"] == "failed"


def test_run_page_draws_the_dag_with_escaped_text(client: TestClient, finished: tuple[Path, str]) -> None:
    page = client.get(f"/runs/{finished[1]}")
    assert page.status_code == 200
    html = page.text
    states = {step: state for state, step in re.findall(r'<g class="node state-(\w+)" data-step="(\w+)">', html)}
    assert states == {
        "build": "succeeded",
        "lint": "succeeded",
        "flaky": "succeeded",
        "test": "failed",
        "package": "skipped",
    }
    edges = set(re.findall(r'data-from="(\w+)" data-to="(\w+)"', html))
    assert edges == {("build", "test"), ("flaky", "test"), ("test", "package"), ("lint", "package")}
    # package is two levels right of build: the layout follows the topological levels
    x = {s: int(v) for s, v in re.findall(r'data-step="(\w+)"><title>.*?</title><rect x="(\d+)"', html)}
    assert x["build"] == x["lint"] == x["flaky"] < x["test"] < x["package"]
    assert HOSTILE_NAME not in html and "&lt;script&gt;window.pwnedName=1&lt;/script&gt;" in html
    assert "<script>" not in html.replace('<script defer src="/static/app.js"></script>', "")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "Cancel run" not in html  # it has ended


def test_run_json_has_attempts_durations_reasons_and_log_tails(client: TestClient, finished: tuple[Path, str]) -> None:
    data = client.get(f"/api/runs/{finished[1]}").json()
    steps = {s["step_id"]: s for s in data["steps"]}
    assert data["live"] is False and data["run"]["state"] == "failed"
    flaky = steps["flaky"]
    assert [(a["attempt"], a["state"], a["exit_code"]) for a in flaky["attempts"]] == [
        (1, "failed", 3),
        (2, "succeeded", 0),
    ]
    assert flaky["duration"] == pytest.approx(sum(a["duration"] for a in flaky["attempts"]))
    assert flaky["log"]["stdout"] == "fine\n"
    assert steps["test"]["log"]["stdout"] == "tests failed\n" and steps["test"]["reason"]
    assert "dependency 'test' failed" in steps["package"]["reason"] and steps["package"]["attempts"] == []
    assert HOSTILE_OUTPUT in steps["build"]["log"]["stdout"]  # data, as written; the page sets it as text
    assert steps["build"]["name"] == HOSTILE_NAME
    assert [e["type"] for e in data["events"]][:2] == ["run_created", "run_started"]


def test_cancel_needs_a_post_with_the_token_from_this_origin(client: TestClient, finished: tuple[Path, str]) -> None:
    url = f"/runs/{finished[1]}/cancel"
    assert client.get(url).status_code == 405  # a link cannot cancel
    assert client.post(url).status_code == 403
    assert client.post(url, data={"token": "wrong"}).status_code == 403
    other = client.post(url, data={"token": "t0ken"}, headers={"origin": "http://evil.example"})
    assert other.status_code == 403
    ended = client.post(url, data={"token": "t0ken"}, headers={"origin": "http://127.0.0.1:8765"})
    assert ended.status_code == 409 and "nothing to cancel" in ended.text  # planrun cancel's own verdict
    step = client.post(
        f"/runs/{finished[1]}/steps/test/cancel", headers={"x-planrun-token": "t0ken", "accept": "application/json"}
    )
    assert step.status_code == 409 and step.json()["ok"] is False
    unknown = client.post("/runs/nope/cancel", data={"token": "t0ken"})
    assert unknown.status_code == 404 and "no run 'nope'" in unknown.text


def test_unknown_runs_and_foreign_hosts_are_refused(client: TestClient) -> None:
    assert client.get("/runs/nope").status_code == 404
    assert client.get("/runs/nope/events").status_code == 404
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert client.get("/", headers={"host": "127.0.0.1.evil.example:8765"}).status_code == 400
    for loopback in ("localhost:8765", "[::1]:8765", "127.0.0.1"):
        assert client.get("/", headers={"host": loopback}).status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_a_server_started_before_any_run_lists_none(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path / "framework.db"), base_url="http://127.0.0.1:8765")
    assert "no runs yet" in client.get("/").text
    assert client.get("/api/runs").json() == {"runs": []}
    assert not (tmp_path / "framework.db").exists()  # the view never creates a ledger
