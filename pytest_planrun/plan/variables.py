"""Plan variables: `${NAME}` references, where their values come from, and masking secret values.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping

from .model import VariableSpec

# `$${NAME}` is an escaped, literal `${NAME}`; a `${` not followed by a valid name and `}` is left alone,
# so shell syntax such as `${HOME:-/tmp}` passes through untouched.
_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")

MASK = "***"


def split_var(text: str) -> tuple[str, str]:
    """``--var NAME=VALUE`` -> (NAME, VALUE); the value is kept verbatim (quotes, ``=``, ``${``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--var expects NAME=VALUE, got {text!r}")
    return name, value


def find_references(text: str) -> list[str]:
    """Names referenced as ``${NAME}`` in ``text``, in order of first use (escaped ones excluded)."""
    names: list[str] = []
    for match in _REFERENCE.finditer(text):
        if not match.group(1) and match.group(2) not in names:
            names.append(match.group(2))
    return names


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` by its value and each ``$${NAME}`` by a literal ``${NAME}``.

    Values are inserted verbatim and never rescanned. Raises KeyError for a name missing from
    ``values``; `load_plan` reports every undefined reference before substituting anything.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        return values[match.group(2)]

    return _REFERENCE.sub(replace, text)


def resolve_variables(
    declared: Mapping[str, str | VariableSpec],
    cli_vars: Mapping[str, str],
    environ: Mapping[str, str],
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Give each variable its value and list the values to mask.

    The first source that has a value wins: ``cli_vars`` (``--var``), the environment variable the
    declaration names, its default. A ``--var`` the plan does not declare still counts, because
    plans written before ``variables`` existed rely on it. Declared variables with no value are
    left out; the caller reports the ones that are used.
    """
    values = dict(cli_vars)
    secrets: list[str] = []
    for name, spec in declared.items():
        if isinstance(spec, str):
            values.setdefault(name, spec)
            continue
        if name not in values:
            if spec.env is not None and spec.env in environ:
                values[name] = environ[spec.env]
            elif spec.default is not None:
                values[name] = spec.default
        if spec.secret and values.get(name):
            secrets.append(values[name])
    return values, tuple(secrets)


def unknown_given(given: Iterable[str], known: Collection[str]) -> list[str]:
    """One message per ``--var`` name that no plan of the run declares or uses: a typo
    (``--var BRANH=x``) is a usage error, not a value silently ignored."""
    messages = []
    for name in given:
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        if close:
            hint = f"did you mean {close[0]}?"
        elif known:
            hint = "the plans' variables are " + ", ".join(sorted(known))
        else:
            hint = "the plans have no variables"
        messages.append(f"--var {name}: no plan in this run declares or uses a variable {name} ({hint})")
    return messages


class Masker:
    """Replaces every secret value in a text by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole rather than in part.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=lambda s: (-len(s), s)))
        self._pattern = re.compile("|".join(map(re.escape, self._secrets))) if self._secrets else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values masked, longest first."""
        return self._secrets

    def mask(self, text: str) -> str:
        """Return ``text`` with each occurrence of a secret replaced by ``***``."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __repr__(self) -> str:
        return f"Masker(<{len(self._secrets)} secrets>)"
