"""Files steps hand to each other (``provides`` entries with a ``path``): checked, kept, delivered.

After a producer's command succeeds, on the machine that ran it, each declared file must be a
regular file within the size limit; a copy is kept at ``<run dir>/provided/<path>`` with its
sha256. Before a consumer's command starts, on the machine that runs it, the kept copy (brought
there by the controller when the two machines differ) is checked against that sha256 and placed at
the same path relative to the consumer's working directory.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PROVIDED_DIR = "provided"
DEFAULT_LIMIT_MB = 100.0
BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class ProvidedFile:
    """A file a step provided: its resource name, path (relative, POSIX), size and sha256."""

    name: str
    path: str
    size: int
    sha256: str


class ProvideFailed(Exception):
    """A declared file is missing, too large, or arrived damaged: the attempt fails with this message."""


def kept_path(run_dir: Path, path: str) -> Path:
    return run_dir / PROVIDED_DIR / path


def blocks(handle: BinaryIO, size: int = BLOCK) -> Iterator[bytes]:
    while block := handle.read(size):
        yield block


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in blocks(handle):
            digest.update(block)
    return digest.hexdigest()


class Arriving:
    """A file written in pieces beside its target and renamed into place once whole, so that a reader
    never sees half a file; its sha256 is taken on the way."""

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self._staged = target.with_name(f".{target.name}.{os.getpid()}.part")
        self._handle = self._staged.open("wb")
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self._digest.update(data)

    def finish(self) -> str:
        """Put the file in place; its sha256."""
        self._handle.close()
        os.replace(self._staged, self.target)
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._handle.close()
        self._staged.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (see ``Arriving``); its sha256."""
    arriving = Arriving(target)
    try:
        with source.open("rb") as read:
            for block in blocks(read):
                arriving.write(block)
    except BaseException:
        arriving.abandon()
        raise
    return arriving.finish()


def collect(
    declared: Iterable[tuple[str, str]], cwd: Path, run_dir: Path, limit_bytes: int
) -> tuple[ProvidedFile, ...]:
    """Check and keep each ``(name, path)`` the step declared, relative to its ``cwd``."""
    kept: list[ProvidedFile] = []
    for name, path in declared:
        source = cwd / path
        if not source.exists():
            raise ProvideFailed(f"provides '{name}': file {path} not found in {cwd} after the command succeeded")
        if not source.is_file():
            raise ProvideFailed(f"provides '{name}': {path} is not a regular file (provide an archive of a folder)")
        size = source.stat().st_size
        if size > limit_bytes:
            raise ProvideFailed(
                f"provides '{name}': {path} is {size} bytes, above the limit of {limit_bytes} bytes "
                "(--planrun-max-provided-mb)"
            )
        sha256 = _copy(source, kept_path(run_dir, path))
        kept.append(ProvidedFile(name, path, size, sha256))
    return tuple(kept)


def deliver(files: Iterable[ProvidedFile], cwd: Path, run_dir: Path) -> None:
    """Check each file's kept copy and place it at its path relative to ``cwd``."""
    for file in files:
        kept = kept_path(run_dir, file.path)
        if not kept.is_file():
            raise ProvideFailed(f"consumes '{file.name}': file {file.path} was not delivered to this worker")
        found = sha256_of(kept)
        if found != file.sha256:
            raise ProvideFailed(
                f"consumes '{file.name}': file {file.path} arrived damaged (sha256 {found}, expected {file.sha256})"
            )
        target = cwd / file.path
        if target.is_file() and (target.samefile(kept) or sha256_of(target) == file.sha256):
            continue  # the producer ran in this folder on this machine: the file is already there
        _copy(kept, target)
