"""Step output made readable for JUnit, and the testcase names pytest's junitxml gives step node ids."""

from __future__ import annotations

import pytest
from _pytest.junitxml import mangle_test_address  # only to notice when pytest changes its names

from pytest_planrun.plugin.junit import pytest_key
from pytest_planrun.plugin.junit_text import clean, readable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[1;38;5;196mbold\x1b[m text", "bold text"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
        ("10%\r50%\rdone\nnext\r\n", "done\nnext\n"),
        ("tab\tstays\n", "tab\tstays\n"),
        ("non-char \ufffe", "non-char \\ufffe"),
    ],
)
def test_readable_removes_ansi_and_spells_control_characters(raw: str, shown: str) -> None:
    assert readable(raw) == shown


def test_a_secret_split_by_a_colour_code_is_still_masked() -> None:
    assert clean("token=s3c\x1b[0mret!", ("s3cret",)) == "token=***!"


@pytest.mark.parametrize("nodeid", ["plan.json::build", "plans/gate.json::test", "a/b.py::c", "::outside"])
@pytest.mark.parametrize("prefix", [None, "ci"])
def test_step_testcases_are_found_by_the_names_pytest_gives_them(nodeid: str, prefix: str | None) -> None:
    names = mangle_test_address(nodeid)
    classname = ".".join(names[:-1])
    assert pytest_key(nodeid, prefix) == ((f"{prefix}.{classname}" if prefix else classname), names[-1])
