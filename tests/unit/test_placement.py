"""Placement: which workers' labels fit a step's runs_on, and the problem for a step none fits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_planrun.core.placement import fits, is_label, placement_problems, unplaceable

LABELS = ["linux", "gpu", "arm", "mac"]


@pytest.mark.parametrize(
    ("required", "labels", "expected"),
    [
        ((), frozenset(), True),
        ((), frozenset({"linux"}), True),
        (("gpu",), frozenset({"gpu"}), True),
        (("gpu",), frozenset({"linux"}), False),
        (("gpu", "linux"), frozenset({"linux", "gpu", "arm"}), True),
        (("gpu", "linux"), frozenset({"linux"}), False),
        (("gpu", "gpu"), frozenset({"gpu"}), True),
    ],
)
def test_fits_needs_every_label(required: tuple[str, ...], labels: frozenset[str], expected: bool) -> None:
    assert fits(required, labels) is expected


def test_unplaceable_lists_the_steps_no_worker_fits_in_their_order() -> None:
    required = {"build": (), "gpu_test": ("gpu",), "arm_gpu": ("arm", "gpu"), "lint": ("linux",)}
    workers = {"gw0": frozenset({"linux"}), "gw1": frozenset({"arm"})}
    assert unplaceable(required, workers) == {"gpu_test": ("gpu",), "arm_gpu": ("arm", "gpu")}


def test_without_workers_no_step_fits() -> None:
    assert unplaceable({"a": (), "b": ["x"]}, {}) == {"a": (), "b": ("x",)}
    assert placement_problems({"b": ["x"]}, {}) == ["step 'b': runs_on ['x'] matches no worker (workers: none)"]


def test_problem_suggests_labelling_a_bare_worker() -> None:
    workers = {"gw0": frozenset({"linux"}), "gw1": frozenset()}
    assert placement_problems({"build": [], "gpu_test": ["gpu"]}, workers) == [
        "step 'gpu_test': runs_on ['gpu'] matches no worker (workers: gw0=linux, gw1=(no labels)); "
        "label a worker with --planrun-worker-label gw1=gpu"
    ]


def test_problem_suggests_the_worker_missing_fewest_labels_keeping_its_own() -> None:
    workers = {"gw0": frozenset({"arm"}), "gw1": frozenset({"linux", "mac"}), "gw2": frozenset()}
    assert placement_problems({"t": ["linux", "gpu"]}, workers) == [
        "step 't': runs_on ['linux', 'gpu'] matches no worker (workers: gw0=arm, gw1=linux,mac, gw2=(no labels)); "
        "label a worker with --planrun-worker-label gw1=linux,mac,gpu"
    ]


def test_no_problem_when_every_step_fits() -> None:
    assert placement_problems({"a": ["gpu"], "b": []}, {"gw0": frozenset({"gpu"})}) == []


@pytest.mark.parametrize(("text", "expected"), [("gpu", True), ("x86_64.v-2", True), ("", False), ("a b", False)])
def test_is_label(text: str, expected: bool) -> None:
    assert is_label(text) is expected


label_sets = st.frozensets(st.sampled_from(LABELS))
required_labels = st.lists(st.sampled_from(LABELS), max_size=3)


@given(required_labels, label_sets, label_sets)
def test_fits_is_monotone_in_labels(required: list[str], labels: frozenset[str], more: frozenset[str]) -> None:
    if fits(required, labels):
        assert fits(required, labels | more)
    if not fits(required, labels | more):
        assert not fits(required, labels)


@given(
    st.dictionaries(st.sampled_from([f"s{i}" for i in range(8)]), required_labels),
    st.dictionaries(st.sampled_from([f"gw{i}" for i in range(4)]), label_sets),
)
def test_unplaceable_agrees_with_fits(required: dict[str, list[str]], workers: dict[str, frozenset[str]]) -> None:
    found = unplaceable(required, workers)
    for step_id, labels in required.items():
        placeable = any(fits(labels, carried) for carried in workers.values())
        assert (step_id in found) is not placeable
        if not placeable:
            assert found[step_id] == tuple(labels)
    problems = placement_problems(required, workers)
    assert [line.split("'")[1] for line in problems] == list(found)
    # the suggested labels make the suggested worker fit
    for line, needed in zip(problems, found.values(), strict=True):
        if workers:
            worker, suggested = line.rsplit(" ", 1)[1].split("=", 1)
            assert fits(needed, frozenset(suggested.split(",")))
            assert workers[worker] <= frozenset(suggested.split(","))  # the worker keeps its own labels
