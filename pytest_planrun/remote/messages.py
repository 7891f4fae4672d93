"""What travels between the controller and a remote worker besides xdist's own messages.

Worker -> controller, on the side channel the controller opens on the worker's gateway:
``("out", step_id, attempt, stream, data)`` a piece of output, masked as logged;
``("file", path, data, end)`` a piece of a file a step provided;
``("logs_end", step_id, attempt)`` the attempt's output is complete (its report follows).
Controller -> worker, as commands on xdist's channel (before the step that needs them):
``SIDE_CHANNEL`` the side channel itself; ``FILE`` a piece of a file for a consumer.

execnet delivers one gateway's messages in the order they were sent, whatever their channel: a
step's output and files reach the controller before its report does.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..run.provided import blocks

CHUNK = 65536  # bytes per message: bounded memory on both ends, and output shows as it comes

SIDE_CHANNEL = "planrun_side_channel"
FILE = "planrun_file"
REMOTE = "planrun_remote"  # workerinput key: this worker does not share the controller's disk


def pieces(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def file_pieces(path: Path) -> Iterator[tuple[bytes, bool]]:
    """A file as ``(data, end)`` messages: its blocks, then an empty last one that says it is whole."""
    with path.open("rb") as handle:
        for block in blocks(handle, CHUNK):
            yield block, False
    yield b"", True
