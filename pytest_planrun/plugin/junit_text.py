"""Step output as dashboards can show it: readable text, bounded, secrets masked, XML-safe.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import re
from pathlib import Path

from ..run.process import tail

# CSI (colours, cursor moves), OSC (titles, links; ended by BEL or ESC \) and two-byte ESC sequences
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# XML 1.0 cannot carry most C0 characters; DEL, C1 and the two non-characters read as noise anyway
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def readable(text: str) -> str:
    """``text`` without ANSI sequences, each line as a terminal leaves it after ``\\r`` overwrites,
    and other control characters spelled ``\\xNN`` (never ``?``)."""
    text = ANSI.sub("", text).replace("\r\n", "\n")
    if "\r" in text:  # a progress bar: keep what the terminal showed last
        text = "\n".join(_last_segment(line) for line in text.split("\n"))
    return CONTROL.sub(_escape, text)


def _last_segment(line: str) -> str:
    segments = [s for s in line.split("\r") if s]
    return segments[-1] if segments else ""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def clean(text: str, secrets: tuple[str, ...]) -> str:
    """Readable and masked; masked again after cleaning, since removing an ANSI sequence can join
    the two halves of a secret."""
    return mask(readable(mask(text, secrets)), secrets)


def log_tail(path: str, limit: int, secrets: tuple[str, ...]) -> str:
    """The readable end of a log (at most ``limit`` bytes of it), or "" if there is none."""
    if not path:
        return ""
    return clean(tail(Path(path), max_bytes=limit, secrets=secrets), secrets).strip("\n")


def last_lines(path: str, count: int, secrets: tuple[str, ...]) -> str:
    """The last ``count`` non-empty-tailed lines of a log, readable and masked."""
    return "\n".join(log_tail(path, 16384, secrets).splitlines()[-count:])
