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


def _copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (staged, then renamed: a reader never sees half a file); its sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    with source.open("rb") as read, staged.open("wb") as write:
        for block in blocks(read):
            digest.update(block)
            write.write(block)
    os.replace(staged, target)
    return digest.hexdigest()


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
