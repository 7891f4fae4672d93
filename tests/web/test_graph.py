"""The server-side DAG: levels, rows, SVG, and where a run's edges are read from."""

from __future__ import annotations

import hashlib
import json
import re
from itertools import pairwise
from pathlib import Path

from pytest_planrun.plan.packaged import PLANS_DIR
from pytest_planrun.web.graph import Dag, Node, levels, load_dag, positions, render_svg


def diamond() -> list[Node]:
    return [
        Node("a", "a", ()),
        Node("b", "b", ("a",)),
        Node("c", "c", ("a",)),
        Node("d", "d", ("b", "c")),
        Node("e", "e", ("a", "d")),
    ]


def test_a_step_sits_one_level_after_its_deepest_dependency() -> None:
    assert levels(diamond()) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}


def test_a_deep_chain_needs_no_recursion() -> None:
    chain = [Node(f"s{i}", f"s{i}", (f"s{i - 1}",) if i else ()) for i in range(5000)]
    assert levels(chain)["s4999"] == 4999


def test_rows_follow_the_dependencies_rows() -> None:
    nodes = [
        Node("x", "x", ()),
        Node("y", "y", ()),
        Node("from_y", "from_y", ("y",)),
        Node("from_x", "from_x", ("x",)),
    ]
    place = positions(nodes)
    assert place["x"] == (0, 0) and place["y"] == (0, 1)
    assert place["from_x"] == (1, 0) and place["from_y"] == (1, 1)  # declared the other way round


def test_svg_has_a_node_per_step_and_an_edge_per_dependency_all_escaped() -> None:
    nodes = [Node("a", '<a href="x">&', ()), Node("b", "b", ("a",))]
    svg = render_svg(Dag(tuple(nodes)), {"a": "succeeded", "b": "running"})
    assert re.findall(r'class="node state-(\w+)" data-step="(\w+)"', svg) == [("succeeded", "a"), ("running", "b")]
    assert svg.count('class="edge"') == 1
    assert "<a href" not in svg and "&lt;a href=&quot;x&quot;&gt;&amp;" in svg


def write(path: Path, steps: list[dict[str, object]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"plan_id": "P", "steps": steps}))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_edges_come_from_the_plan_file_found_above_the_run_directory(tmp_path: Path) -> None:
    digest = write(tmp_path / "plans" / "p.json", [{"id": "a"}, {"id": "b", "depends_on": ["a"], "name": "B"}])
    run = {"plan_path": "plans/p.json", "plan_hash": digest, "run_dir": str(tmp_path / ".ledger" / "runs" / "r1")}
    dag = load_dag(run, ["a", "b"], {})
    assert dag.nodes == (Node("a", "a", ()), Node("b", "B", ("a",))) and dag.note is None


def test_a_changed_or_missing_plan_is_said_so(tmp_path: Path) -> None:
    write(tmp_path / "p.json", [{"id": "a"}, {"id": "b", "depends_on": ["a"]}])
    run = {"plan_path": str(tmp_path / "p.json"), "plan_hash": "0" * 64, "run_dir": None}
    changed = load_dag(run, ["a", "b"], {})
    assert changed.nodes[1].depends_on == ("a",) and "changed since this run" in str(changed.note)
    gone = load_dag({**run, "plan_path": str(tmp_path / "gone.json")}, ["a", "b"], {"a": "A"})
    assert gone.nodes == (Node("a", "A", ()), Node("b", "b", ())) and "not found" in str(gone.note)


def test_an_edge_that_skips_a_column_runs_between_rows_not_through_boxes() -> None:
    nodes = [Node("a", "a", ()), Node("b", "b", ()), Node("c", "c", ("a",)), Node("d", "d", ("c", "b"))]
    svg = render_svg(Dag(tuple(nodes)), {})
    path = re.search(r'data-from="b" data-to="d" d="([^"]+)"', svg)
    assert path
    c_box = re.search(r'data-step="c"><title>c</title><rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', svg)
    assert c_box
    cx, cy, cw, ch = map(int, c_box.groups())
    # the path crosses c's column on one horizontal segment, which lies outside c's box
    points = [tuple(map(int, p.split(","))) for p in re.findall(r"-?\d+,-?\d+", path.group(1))]
    spans = [(p, q) for p, q in pairwise(points) if p[1] == q[1] and p[0] <= cx and q[0] >= cx + cw]
    assert len(spans) == 1 and not cy <= spans[0][0][1] <= cy + ch


def test_a_packaged_plan_run_by_name_is_found(tmp_path: Path) -> None:
    file = PLANS_DIR / "safe_merge.json"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    steps = json.loads(file.read_text())["steps"]
    run = {"plan_path": "safe_merge.json", "plan_hash": digest, "run_dir": str(tmp_path / "runs" / "r1")}
    dag = load_dag(run, [s["id"] for s in steps], {})
    assert dag.note is None
    assert [n.depends_on for n in dag.nodes] == [tuple(s.get("depends_on", ())) for s in steps]
    assert any(n.depends_on for n in dag.nodes)
