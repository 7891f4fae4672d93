"""``planrun graph PLAN``: the plan's DAG as Mermaid (the default) or DOT, and its failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli.helpers import Planrun, write_plan
from planhelpers import step


@pytest.fixture(autouse=True)
def diamond(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_plan(
        Path("plan.json"),
        [
            step("build", "true", name="Build it"),
            step("unit", "true", depends_on=["build"]),
            step("lint", "true", depends_on=["build"]),
            step("ship", "echo", "${TARGET}", depends_on=["unit", "lint"]),
        ],
        plan_fields={"variables": {"TARGET": "prod"}},
    )


MERMAID = [
    "graph TD",
    '  s0["Build it"]',
    '  s1["unit"]',
    "  s0 --> s1",
    '  s2["lint"]',
    "  s0 --> s2",
    '  s3["ship"]',
    "  s1 --> s3",
    "  s2 --> s3",
]
DOT = [
    "digraph plan {",
    '  "build" [label="Build it"];',
    '  "unit" [label="unit"];',
    '  "build" -> "unit";',
    '  "lint" [label="lint"];',
    '  "build" -> "lint";',
    '  "ship" [label="ship"];',
    '  "unit" -> "ship";',
    '  "lint" -> "ship";',
    "}",
]


def test_mermaid_is_the_default(planrun: Planrun) -> None:
    result = planrun("graph", "plan.json")
    assert (result.code, result.err) == (0, "")
    assert result.lines == MERMAID
    assert planrun("graph", "plan.json", "--format", "mermaid").lines == MERMAID


def test_dot(planrun: Planrun) -> None:
    result = planrun("graph", "plan.json", "--format", "dot")
    assert (result.code, result.err) == (0, "")
    assert result.lines == DOT


def test_quotes_in_names_keep_the_graph_well_formed(planrun: Planrun) -> None:
    write_plan(Path("quoted.json"), [step("a", "true", name='say "hi" \\o/')])
    dot = planrun("graph", "quoted.json", "--format", "dot")
    assert dot.lines[1] == '  "a" [label="say \\"hi\\" \\\\o/"];'
    mermaid = planrun("graph", "quoted.json")
    assert mermaid.lines[1] == '  s0["say #quot;hi#quot; \\o/"]'


def test_a_bad_plan_is_exit_1_with_every_problem(planrun: Planrun) -> None:
    write_plan(Path("bad.json"), [step("a", "true", depends_on=["b"]), step("b", "true", depends_on=["a"], retries=-1)])
    result = planrun("graph", "bad.json")
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines() == [
        "ERROR: bad.json: step 'b', field 'retries': must be greater than or equal to 0, got -1",
        "ERROR: bad.json: steps: cycle a -> b -> a",
    ]
    missing = planrun("graph", "nope.json", "--format", "dot")
    assert (missing.code, missing.out) == (1, "")
    assert missing.err == (
        "ERROR: nope.json: plan file not found, nor a packaged plan of that name (packaged plans: safe-merge)\n"
    )


def test_variables(planrun: Planrun) -> None:
    write_plan(Path("needs.json"), [step("a", "echo", "${WHO}")])
    drawn = planrun("graph", "needs.json")  # a value is not needed to draw: a note says it is missing
    assert (drawn.code, drawn.lines) == (0, ["graph TD", '  s0["a"]'])
    assert drawn.err.startswith("note: needs.json: undefined variable 'WHO'")
    strict = planrun("graph", "needs.json", "--strict")
    assert (strict.code, strict.out) == (1, "") and strict.err.startswith("ERROR: needs.json: undefined variable")
    assert planrun("graph", "needs.json", "--var", "WHO=me").lines == ["graph TD", '  s0["a"]']


def test_bad_arguments_are_exit_2(planrun: Planrun) -> None:
    for argv in (["plan.json", "--format", "svg"], [], ["plan.json", "other.json"]):
        result = planrun("graph", *argv)
        assert result.code == 2, argv
        assert "usage: planrun" in result.err and result.out == ""
