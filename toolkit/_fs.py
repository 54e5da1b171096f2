"""Atomic file and folder writes: a killed process leaves the old file or nothing, never half a file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputExistsError

__all__ = ["atomic_path", "atomic_dir", "prepare_output_dir"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary name keeps the suffix, so writers that choose a format by suffix still work.
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp makes the file private (0600); give it the mode a plain open() would have
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``.

    An existing non-empty ``path`` is an error unless ``overwrite``; then it is replaced only after the
    new content is complete, so a failed run never destroys earlier results.
    """
    path = Path(path)
    prepare_output_dir(path, overwrite=overwrite, create=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private (0700)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def prepare_output_dir(path: str | os.PathLike, *, overwrite: bool = False, create: bool = True) -> Path:
    """Check that ``path`` may be written: it must not be a file, nor a non-empty folder unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path}: output must be a folder but a file of that name exists")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(f"{path}: output folder exists and is not empty (pass --overwrite to replace it)")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
