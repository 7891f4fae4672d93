"""Validation messages: every kind of plan problem, each naming file, step and field, all at once."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_planrun.core.graph import find_cycle, transitive_dependencies
from pytest_planrun.plan import PlanError, Problem, check_steps, load_plan

FILE = "plans/gate.json"

Problems = Callable[..., list[str]]


def step(step_id: str, command: str = "true", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "command": command, **fields}


def plan(*steps: Any, **top: Any) -> dict[str, Any]:
    return {"plan_id": "P", "version": "1", "globals": {}, "steps": list(steps), **top}


@pytest.fixture
def problems(tmp_path: Path) -> Problems:
    """Write a plan (a dict, or text as it is) and return the problems loading it reports."""

    def load(data: dict[str, Any] | str, **kwargs: Any) -> list[str]:
        path = tmp_path / "gate.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        with pytest.raises(PlanError) as excinfo:
            load_plan(path, display_path=FILE, **kwargs)
        found = excinfo.value.problems
        # the earlier API's wording of the first problem that has one, then every problem
        first = [p.summary for p in found if p.summary is not None][:1]
        assert str(excinfo.value) == "\n".join([*first, *map(str, found)])
        return [str(problem) for problem in excinfo.value.problems]

    return load


def test_valid_plan_has_no_problems(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(plan(step("build"), step("test", depends_on=["build"]))))
    assert [s.id for s in load_plan(path).steps] == ["build", "test"]


# --- file and JSON ---------------------------------------------------------------------------------


def test_invalid_json_names_line_and_column(problems: Problems) -> None:
    text = '{\n  "plan_id": "p",\n  "version": "1"\n  "globals": {}\n}\n'
    assert problems(text) == [f"{FILE}: invalid JSON at line 4, column 3: Expecting ',' delimiter"]


def test_top_level_must_be_an_object(problems: Problems) -> None:
    assert problems("[1, 2]") == [f"{FILE}: the plan must be a JSON object, got a list"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"nope\.json: plan file not found"):
        load_plan(tmp_path / "nope.json", display_path="nope.json")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b'{"plan_id": "\xff"}')
    with pytest.raises(PlanError, match="not UTF-8 text: invalid byte at offset 13"):
        load_plan(path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(plan(step("a"))).encode())
    assert load_plan(path).step("a").command == "true"


def test_key_given_twice(problems: Problems) -> None:
    text = json.dumps(plan(step("a", retries=1))).replace('"retries": 1', '"retries": 1, "retries": 2')
    assert problems(text) == [
        f"{FILE}: step 'a', field 'retries': given more than once; JSON keeps only the last value"
    ]


# --- model: fields and types -----------------------------------------------------------------------


def test_misspelled_step_field_suggests_the_right_one(problems: Problems) -> None:
    assert problems(plan(step("build"), step("test", dependson=["build"]))) == [
        f"{FILE}: step 'test', field 'dependson': unknown field (did you mean 'depends_on'?)"
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (plan(step("a"), max_concurency=2), "field 'max_concurency': unknown field"),
        (plan(step("a"), globals={"max_concurency": 2}),
         "field 'globals.max_concurency': unknown field (did you mean 'max_concurrency'?)"),
        (plan(step("a", ui_hints={"wieght": 1})),
         "step 'a', field 'ui_hints.wieght': unknown field (did you mean 'weight'?)"),
        (plan(step("a"), variables={"X": {"defualt": "1"}}),
         "field 'variables.X.defualt': unknown field (did you mean 'default'?)"),
        (plan(step("a", zzz=1)), "step 'a', field 'zzz': unknown field"),
    ],
    ids=["plan", "globals", "ui_hints", "variable", "no-suggestion"],
)  # fmt: skip
def test_unknown_fields(problems: Problems, data: dict[str, Any], expected: str) -> None:
    assert problems(data) == [f"{FILE}: {expected}"]


def test_no_suggestion_when_nothing_is_close(problems: Problems) -> None:
    (line,) = problems(plan(step("a", zzz=1)))
    assert "did you mean" not in line


def test_missing_required_fields(problems: Problems) -> None:
    assert problems({"plan_id": "P", "steps": [{"id": "a"}]}) == [
        f"{FILE}: field 'version': required field is missing",
        f"{FILE}: field 'globals': required field is missing",
        f"{FILE}: step 'a', field 'command': required field is missing",
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"timeout_sec": "5"}, "field 'timeout_sec': must be a number, got \"5\""),
        ({"retries": "1"}, "field 'retries': must be an integer, got \"1\""),
        ({"retries": True}, "field 'retries': must be an integer, got true"),
        ({"shell": "yes"}, "field 'shell': must be true or false, got \"yes\""),
        ({"args": "-x -y"}, "field 'args': must be a list, got \"-x -y\""),
        ({"args": ["ok", 5]}, "field 'args[1]': must be a string, got 5"),
        ({"env": {"A": 1}}, "field 'env.A': must be a string, got 1"),
        ({"on_failure": "explode"},
         "field 'on_failure': must be 'abort', 'skip_dependents' or 'continue', got \"explode\""),
        ({"timeout_sec": -5}, "field 'timeout_sec': must be greater than 0, got -5"),
        ({"retries": -1}, "field 'retries': must be greater than or equal to 0, got -1"),
        ({"no_output_timeout_sec": 0}, "field 'no_output_timeout_sec': must be greater than 0, got 0"),
        ({"no_output_timeout_sec": "9"}, "field 'no_output_timeout_sec': must be a number, got \"9\""),
        ({"retry_delay_sec": -0.5}, "field 'retry_delay_sec': must be greater than or equal to 0, got -0.5"),
        ({"command": ""}, "field 'command': must not be empty"),
    ],
)  # fmt: skip
def test_wrong_types_and_values_name_the_value(problems: Problems, fields: dict[str, Any], expected: str) -> None:
    assert problems(plan(step("a", **fields))) == [f"{FILE}: step 'a', {expected}"]


def test_negative_plan_level_numbers(problems: Problems) -> None:
    globals_ = {
        "max_concurrency": 0,
        "default_timeout_sec": 0,
        "default_retries": -2,
        "default_no_output_timeout_sec": -1,
    }
    assert problems(plan(step("a"), globals=globals_)) == [
        f"{FILE}: field 'globals.max_concurrency': must be greater than or equal to 1, got 0",
        f"{FILE}: field 'globals.default_timeout_sec': must be greater than 0, got 0",
        f"{FILE}: field 'globals.default_retries': must be greater than or equal to 0, got -2",
        f"{FILE}: field 'globals.default_no_output_timeout_sec': must be greater than 0, got -1",
    ]


def test_steps_must_not_be_empty(problems: Problems) -> None:
    assert problems(plan()) == [f"{FILE}: steps: must not be empty"]


def test_steps_without_usable_id_are_named_by_position(problems: Problems) -> None:
    assert problems(plan(step("a"), {"command": "x"}, 5, step("", "y"))) == [
        f"{FILE}: steps[1], field 'id': required field is missing",
        f"{FILE}: steps[2]: must be an object, got 5",
        f"{FILE}: steps[3], field 'id': invalid step id '': use letters, digits, '_', '.', '-' and single ':' inside",
    ]


@pytest.mark.parametrize("step_id", ["a::b", "a b", ":a", "a["])
def test_step_id_must_fit_a_node_id(problems: Problems, step_id: str) -> None:
    (line,) = problems(plan(step(step_id)))
    assert line.startswith(f"{FILE}: step '{step_id}', field 'id': invalid step id '{step_id}'")


def test_invalid_names_in_mappings(problems: Problems) -> None:
    assert problems(plan(step("a"), globals={"env": {"A=B": "x"}}, variables={"1X": "v"})) == [
        f"{FILE}: field 'globals.env': invalid environment variable name 'A=B'; a name cannot be empty or contain '='",
        f"{FILE}: field 'variables': invalid variable name '1X'; "
        "use letters, digits and '_', not starting with a digit",
    ]


def test_malformed_variable_declaration(problems: Problems) -> None:
    (line,) = problems(plan(step("a"), variables={"N": 5}))
    assert line == (
        f"{FILE}: field 'variables.N': expected a string (the default value) or an object with "
        "'default', 'env', 'secret', 'description', got 5"
    )


# --- across steps ----------------------------------------------------------------------------------


def test_duplicate_ids(problems: Problems) -> None:
    assert problems(plan(step("build"), step("test"), step("build"))) == [
        f"{FILE}: step 'build', field 'id': duplicate step id 'build' (steps[0], steps[2]); step ids must be unique"
    ]


def test_unknown_dependency_suggests_the_closest_step(problems: Problems) -> None:
    assert problems(plan(step("build"), step("test", depends_on=["buidl", "zzz"]))) == [
        f"{FILE}: step 'test', field 'depends_on': unknown step 'buidl' (did you mean 'build'?)",
        f"{FILE}: step 'test', field 'depends_on': unknown step 'zzz'",
    ]


def test_self_dependency(problems: Problems) -> None:
    assert problems(plan(step("a", depends_on=["a"]))) == [
        f"{FILE}: step 'a', field 'depends_on': step depends on itself"
    ]


def test_cycle_is_reported_with_its_path(problems: Problems) -> None:
    steps = [step("build", depends_on=["package"]), step("package", depends_on=["build"]), step("x")]
    assert problems(plan(*steps)) == [f"{FILE}: steps: cycle build -> package -> build"]


def test_each_separate_cycle_is_reported(problems: Problems) -> None:
    steps = [
        step("a", depends_on=["b"]),
        step("b", depends_on=["c"]),
        step("c", depends_on=["a"]),
        step("x", depends_on=["y", "a"]),
        step("y", depends_on=["x"]),
    ]
    assert problems(plan(*steps)) == [
        f"{FILE}: steps: cycle a -> b -> c -> a",
        f"{FILE}: steps: cycle x -> y -> x",
    ]


def test_consumed_resource_provided_upstream_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    steps = [
        step("a", provides=["wheel"]),
        step("b", depends_on=["a"]),
        step("c", depends_on=["b"], consumes=["wheel"]),
    ]
    path.write_text(json.dumps(plan(*steps)))
    assert load_plan(path).step("c").consumes == ("wheel",)


def test_consumed_resource_from_a_step_not_upstream(problems: Problems) -> None:
    steps = [step("a", provides=["wheel"]), step("b", provides=["wheel"]), step("c", consumes=["wheel"])]
    assert problems(plan(*steps)) == [
        f"{FILE}: step 'c', field 'consumes': consumes 'wheel', provided by 'a', 'b', "
        "which are not upstream; add one of them to depends_on, directly or through another step"
    ]


def test_consumed_resource_downstream_is_not_upstream(problems: Problems) -> None:
    steps = [step("c", consumes=["wheel"]), step("a", depends_on=["c"], provides=["wheel"])]
    assert problems(plan(*steps)) == [
        f"{FILE}: step 'c', field 'consumes': consumes 'wheel', provided by 'a', which is not upstream; "
        "add it to depends_on, directly or through another step"
    ]


def test_consumed_resource_nobody_provides(problems: Problems) -> None:
    steps = [step("a", provides=["artifact"]), step("b", depends_on=["a"], consumes=["artefact", "zzz"])]
    assert problems(plan(*steps)) == [
        f"{FILE}: step 'b', field 'consumes': consumes 'artefact', which no step provides (did you mean 'artifact'?)",
        f"{FILE}: step 'b', field 'consumes': consumes 'zzz', which no step provides",
    ]


def test_consuming_what_only_the_step_itself_provides(problems: Problems) -> None:
    assert problems(plan(step("a", provides=["x"], consumes=["x"]))) == [
        f"{FILE}: step 'a', field 'consumes': consumes 'x', which only this step provides"
    ]


def test_conditions_are_parsed_with_the_plan_and_lock_names_are_free(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(plan(step("a", condition="always()", locks=["any name/at all"]))))
    loaded = load_plan(path)
    assert loaded.step("a").condition == "always()"
    assert loaded.step("a").locks == ("any name/at all",)
    path.write_text(json.dumps(plan(step("a", condition="((( nonsense"))))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "step 'a', field 'condition': the expression ends too early at column 13" in str(info.value)


# --- runs_on and provided files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runs_on", "expected"),
    [
        ("a b", "field 'runs_on': invalid label 'a b': use letters, digits, '_', '.' and '-'"),
        ("", "field 'runs_on': a label must not be empty"),
        (["gpu", "x,y"], "field 'runs_on[1]': invalid label 'x,y': use letters, digits, '_', '.' and '-'"),
        (["gpu", 3], "field 'runs_on[1]': must be a string, got 3"),
        (5, "field 'runs_on': must be a label or a list of labels, got 5"),
        ({"label": "gpu"}, 'field \'runs_on\': must be a label or a list of labels, got {"label": "gpu"}'),
    ],
)
def test_bad_runs_on(problems: Problems, runs_on: Any, expected: str) -> None:
    assert problems(plan(step("gpu_test", runs_on=runs_on))) == [f"{FILE}: step 'gpu_test', {expected}"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "app"}, "field 'provides[1].path': required field is missing"),
        ({"path": "dist/app.tgz"}, "field 'provides[1].name': required field is missing"),
        ({"name": "app", "path": ""}, "field 'provides[1].path': must not be empty"),
        ({"name": "app", "path": "a", "pth": "b"}, "field 'provides[1].pth': unknown field (did you mean 'path'?)"),
        (4, "field 'provides[1]': must be a resource name or an object with 'name' and 'path', got 4"),
        ({"name": "app", "path": 4}, "field 'provides[1].path': must be a string, got 4"),
    ],
)
def test_malformed_provided_file(problems: Problems, entry: Any, expected: str) -> None:
    assert problems(plan(step("build", provides=["log", entry]))) == [f"{FILE}: step 'build', {expected}"]


INSIDE = "a provided file's path is relative to the step's cwd"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/tmp/app.tgz", f'must be a relative path, got "/tmp/app.tgz"; {INSIDE}'),
        ("C:/dist/app.tgz", f'must be a relative path, got "C:/dist/app.tgz"; {INSIDE}'),
        ("dist/../../app.tgz", f"must not contain a '..' component, got \"dist/../../app.tgz\"; {INSIDE}"),
        ("dist\\app.tgz", "must separate directories with '/', got \"dist\\\\app.tgz\""),
        ("./", 'must name a file, got "./"'),
    ],
)
def test_bad_provided_path(problems: Problems, path: str, expected: str) -> None:
    found = problems(plan(step("build", provides=[{"name": "app", "path": path}])))
    assert found == [f"{FILE}: step 'build', field 'provides[0].path': {expected}"]


def test_provided_path_is_checked_after_substitution(problems: Problems) -> None:
    data = plan(step("build", provides=[{"name": "app", "path": "${OUT}/app.tgz"}]), variables={"OUT": "/srv"})
    assert problems(data) == [
        f"{FILE}: step 'build', field 'provides[0].path': must be a relative path, got \"/srv/app.tgz\" "
        f'(from "${{OUT}}/app.tgz"); {INSIDE}'
    ]
    assert problems(data, cli_vars={"OUT": ".."}) == [
        f"{FILE}: step 'build', field 'provides[0].path': must not contain a '..' component, "
        f'got "../app.tgz" (from "${{OUT}}/app.tgz"); {INSIDE}'
    ]


def test_undefined_variable_in_a_provided_path(problems: Problems) -> None:
    assert problems(plan(step("build", provides=[{"name": "app", "path": "${OUT}/app.tgz"}]))) == [
        f"{FILE}: undefined variable 'OUT' (used in step 'build' field 'provides[0].path'); "
        'pass --var OUT=VALUE or declare it under "variables"'
    ]


def test_two_files_with_one_path(problems: Problems) -> None:
    steps = [
        step("a", provides=[{"name": "app", "path": "dist/app.tgz"}]),
        step("b", provides=[{"name": "app2", "path": "./dist//app.tgz"}, {"name": "app3", "path": "dist/app.tgz"}]),
    ]
    assert problems(plan(*steps)) == [
        f"{FILE}: step 'b', field 'provides[0].path': 'dist/app.tgz' is also provided by step 'a'; "
        "each provided file has its own path",
        f"{FILE}: step 'b', field 'provides[1].path': 'dist/app.tgz' is also provided by step 'a'; "
        "each provided file has its own path",
    ]


ONE_PROVIDER = "a resource that is a file has one provider; give the other a different name"


def test_a_file_resource_has_one_provider(problems: Problems) -> None:
    steps = [
        step("a", provides=["app", {"name": "lib", "path": "lib.so"}]),
        step("b", provides=[{"name": "app", "path": "app.tgz"}, "lib"]),
        step("c", provides=["lib"]),
    ]
    assert problems(plan(*steps)) == [
        f"{FILE}: step 'b', field 'provides[0].name': 'app' is also provided by step 'a'; {ONE_PROVIDER}",
        f"{FILE}: step 'b', field 'provides[1]': 'lib' is also provided by step 'a'; {ONE_PROVIDER}",
        f"{FILE}: step 'c', field 'provides[0]': 'lib' is also provided by step 'a'; {ONE_PROVIDER}",
    ]
    twice = step("a", provides=[{"name": "app", "path": "a.tgz"}, {"name": "app", "path": "b.tgz"}])
    assert problems(plan(twice)) == [
        f"{FILE}: step 'a', field 'provides[1].name': 'app' is also provided by this step; {ONE_PROVIDER}"
    ]


def test_plain_names_may_still_have_several_providers(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    steps = [step("a", provides=["report"]), step("b", provides=["report"]), step("c", depends_on=["a", "b"])]
    path.write_text(json.dumps(plan(*steps, step("d", depends_on=["c"], consumes=["report"]))))
    assert load_plan(path).step("d").consumes == ("report",)


def test_consumes_sees_a_provided_file_by_its_name(problems: Problems, tmp_path: Path) -> None:
    build = step("build", provides=[{"name": "app", "path": "dist/app.tgz"}])
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(plan(build, step("deploy", depends_on=["build"], consumes=["app"]))))
    assert load_plan(path).step("deploy").consumes == ("app",)
    assert problems(plan(build, step("deploy", consumes=["app", "ap"]))) == [
        f"{FILE}: step 'deploy', field 'consumes': consumes 'app', provided by 'build', which is not upstream; "
        "add it to depends_on, directly or through another step",
        f"{FILE}: step 'deploy', field 'consumes': consumes 'ap', which no step provides (did you mean 'app'?)",
    ]


# --- all at once -----------------------------------------------------------------------------------


def test_every_problem_is_reported_together(problems: Problems) -> None:
    steps = [
        step("build", timeout_sec="5", args=["${BRANCH}"]),
        step("test", depends_on=["buidl", "package"], consumes=["wheel"]),
        step("package", depends_on=["test"], retries=-1),
        step("build", dependson=[]),
        7,
    ]
    assert problems(plan(*steps)) == [
        f"{FILE}: step 'build', field 'timeout_sec': must be a number, got \"5\"",
        f"{FILE}: step 'package', field 'retries': must be greater than or equal to 0, got -1",
        f"{FILE}: step 'build', field 'dependson': unknown field (did you mean 'depends_on'?)",
        f"{FILE}: steps[4]: must be an object, got 7",
        f"{FILE}: step 'build', field 'id': duplicate step id 'build' (steps[0], steps[3]); step ids must be unique",
        f"{FILE}: step 'test', field 'depends_on': unknown step 'buidl' (did you mean 'build'?)",
        f"{FILE}: steps: cycle test -> package -> test",
        f"{FILE}: step 'test', field 'consumes': consumes 'wheel', which no step provides",
        f"{FILE}: undefined variable 'BRANCH' (used in step 'build' field 'args[0]'); "
        'pass --var BRANCH=VALUE or declare it under "variables"',
    ]


def test_cross_step_checks_survive_broken_steps() -> None:
    raw: list[Any] = [
        None,
        {"id": 5, "depends_on": "x"},
        {"id": "a", "depends_on": [1, None, "b"], "consumes": "r", "provides": {}},
        {"id": "b", "depends_on": [["a"]], "consumes": [3]},
    ]
    assert [str(p) for p in check_steps(raw, FILE)] == []


# --- Problem and PlanError -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (Problem(FILE, "test", "depends_on", "unknown step 'buidl'", "did you mean 'build'?"),
         f"{FILE}: step 'test', field 'depends_on': unknown step 'buidl' (did you mean 'build'?)"),
        (Problem(FILE, None, "globals.max_concurrency", "must be an integer"),
         f"{FILE}: field 'globals.max_concurrency': must be an integer"),
        (Problem(FILE, None, "steps", "cycle build -> package -> build"),
         f"{FILE}: steps: cycle build -> package -> build"),
        (Problem(FILE, "steps[3]", None, "must be an object"), f"{FILE}: steps[3]: must be an object"),
        (Problem(FILE, "a", None, "broken"), f"{FILE}: step 'a': broken"),
        (Problem(FILE, None, None, "undefined variable 'X'", "pass --var X=VALUE"),
         f"{FILE}: undefined variable 'X'; pass --var X=VALUE"),
    ],
)  # fmt: skip
def test_problem_text(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_plan_error_lists_problems_and_pickles() -> None:
    error = PlanError([Problem(FILE, "a", "id", "one"), Problem(FILE, None, None, "two")])
    assert str(error) == f"{FILE}: step 'a', field 'id': one\n{FILE}: two"
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems and str(copy) == str(error)


# --- property: cycles in random graphs -------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 20) -> dict[str, list[str]]:
    ids = [f"s{i}" for i in range(draw(st.integers(1, max_steps)))]
    return {s: draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else [] for i, s in enumerate(ids)}


def raw_steps(deps: dict[str, list[str]]) -> list[Any]:
    return [{"id": s, "command": "true", "depends_on": needs} for s, needs in deps.items()]


def cycles(problems: list[Problem]) -> list[list[str]]:
    return [p.message.removeprefix("cycle ").split(" -> ") for p in problems if p.message.startswith("cycle ")]


@given(dags())
def test_acyclic_graphs_have_no_problem(deps: dict[str, list[str]]) -> None:
    assert check_steps(raw_steps(deps), FILE) == []


@given(dags(), st.data())
def test_one_back_edge_gives_exactly_its_cycle(deps: dict[str, list[str]], data: st.DataObject) -> None:
    edges = sorted((early, late) for late in deps for early in transitive_dependencies(deps, late))
    if not edges:
        return  # nothing upstream of anything: no back edge can close a cycle
    early, late = data.draw(st.sampled_from(edges))
    deps[early] = [*deps[early], late]  # `early` now also needs `late`, which already needs `early`
    (problem,) = check_steps(raw_steps(deps), FILE)
    (path,) = cycles([problem])
    assert problem.field == "steps" and problem.step is None
    assert path[0] == path[-1] and len(set(path)) == len(path) - 1
    assert all(need in deps[node] for node, need in zip(path, path[1:], strict=False))
    assert (early, late) in zip(path, path[1:], strict=False)  # every cycle goes through the one back edge
    assert find_cycle(deps) is not None


def test_retry_policy_fields(problems: Problems) -> None:
    bad: dict[str, Any] = {
        "retry_backoff": 0.5,
        "retry_max_delay_sec": -1,
        "retry_jitter": "yes",
        "retry_on": ["failur", 0, "2"],
    }
    globals_ = {"default_retry_on": "failure", "default_retry_backoff": True}
    assert problems(plan(step("fetch", **bad), globals=globals_)) == [
        f"{FILE}: field 'globals.default_retry_backoff': must be a number, got true",
        f"{FILE}: field 'globals.default_retry_on': must be a list, got \"failure\"",
        f"{FILE}: step 'fetch', field 'retry_backoff': must be greater than or equal to 1, got 0.5",
        f"{FILE}: step 'fetch', field 'retry_max_delay_sec': must be greater than or equal to 0, got -1",
        f"{FILE}: step 'fetch', field 'retry_jitter': must be true or false, got \"yes\"",
        f"{FILE}: step 'fetch', field 'retry_on[0]': must be 'failure', 'timeout', 'no_output' or an exit code, "
        "got \"failur\" (did you mean 'failure'?)",
        f"{FILE}: step 'fetch', field 'retry_on[1]': an exit code must be from 1 to 255, got 0",
        f"{FILE}: step 'fetch', field 'retry_on[2]': must be 'failure', 'timeout', 'no_output' or an exit code, "
        'got "2"',
    ]


def test_retry_policy_defaults_come_from_globals(tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    globals_ = {"default_retry_backoff": 2, "default_retry_max_delay_sec": 30, "default_retry_on": [1, "timeout"]}
    steps = [step("a"), step("b", retry_backoff=1, retry_on=["no_output"], retry_jitter=True, retry_max_delay_sec=5)]
    path.write_text(json.dumps(plan(*steps, globals=globals_)))
    a, b = load_plan(path).steps
    assert (a.retry_backoff, a.retry_max_delay_sec, a.retry_jitter, a.retry_on) == (2, 30, False, (1, "timeout"))
    assert (b.retry_backoff, b.retry_max_delay_sec, b.retry_jitter, b.retry_on) == (1, 5, True, ("no_output",))
    path.write_text(json.dumps(plan(step("c"))))
    (c,) = load_plan(path).steps
    assert (c.retry_backoff, c.retry_max_delay_sec, c.retry_jitter, c.retry_on) == (
        1,
        None,
        False,
        ("failure", "timeout"),
    )
