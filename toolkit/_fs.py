"""Safe outputs: atomic writes, outputs that never touch an input, and ``--overwrite`` that replaces only what
mstool wrote.

Every folder mstool writes carries a small marker file (:data:`MARKER`). A non-empty folder without it was not
written by mstool and is never replaced, whatever ``overwrite`` says; an output that is, contains or lies inside an
input is refused before any work. Writes go to a hidden temporary path beside the target and become the target in
one rename, so a failed or killed run leaves the old output or nothing, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._version import __version__
from .errors import OutputError, OutputExistsError

__all__ = ["MARKER", "atomic_path", "atomic_dir", "check_output_dir", "check_output_file", "check_disjoint",
           "check_run_dir", "open_run_dir", "is_mstool_folder"]

MARKER = ".mstool"
"""Name of the marker file in every folder mstool writes (JSON: who wrote it, which kind of output)."""

# Manifests that folders written before the marker existed carry; they count as the marker.
_LEGACY_MANIFESTS = ("run.json", "noise.json", "dataset.json")

PathLike = str | os.PathLike
Inputs = Iterable[PathLike | None]


def _absolute(path: PathLike) -> Path:
    """The absolute path with symbolic links resolved (also for paths that do not exist yet)."""
    return Path(path).expanduser().resolve()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_disjoint(out: PathLike, inputs: Inputs) -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs`` (``None`` entries are skipped), or that
    is or contains the current folder.

    Raises:
        OutputError: naming the output and the input it overlaps.
    """
    target = _absolute(out)
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        where = "the current folder" if target == cwd else "a folder above the current one"
        raise OutputError(f"{out}: the output is {where}; name a new folder for it")
    for given in inputs:
        if given is None:
            continue
        source = _absolute(given)
        if target == source:
            raise OutputError(f"{out}: the output is the input {given}; choose another output")
        if target in source.parents:
            raise OutputError(f"{out}: the output folder contains the input {given}; choose an output outside it")
        if source in target.parents:
            raise OutputError(f"{out}: the output lies inside the input {given}; choose an output outside it")


def is_mstool_folder(path: PathLike, kind: str | None = None) -> bool:
    """Whether ``path`` is a folder written by mstool (of output ``kind``, when given).

    The mark is the :data:`MARKER` file; folders written before it existed are recognised by their manifest
    (``run.json``, ``noise.json`` or ``dataset.json`` naming an mstool version, a comparison suite's
    ``config.toml``, a training run's ``train.json`` beside ``model.pt``) when ``kind`` is ``None`` or matches.
    """
    path = Path(path)
    try:
        info = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        info = None
    if isinstance(info, dict) and info.get("written_by") == "mstool":
        return kind is None or info.get("kind") == kind
    if kind in (None, "compare"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if (path / "config.toml").read_text()[:80].startswith("# mstool "):
                return True
    if kind in (None, "train") and (path / "train.json").is_file() and (path / "model.pt").is_file():
        return True
    if kind in (None, "segment", "labels", "synth"):
        for name in _LEGACY_MANIFESTS:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if "mstool_version" in json.loads((path / name).read_text()):
                    return True
    return False


def _write_marker(folder: Path, kind: str) -> None:
    (folder / MARKER).write_text(json.dumps({"written_by": "mstool", "kind": kind,
                                             "mstool_version": __version__}) + "\n")


def check_output_dir(path: PathLike, *, overwrite: bool = False, inputs: Inputs = ()) -> Path:
    """Check, before any work, that a folder output may be written at ``path``.

    Allowed: a new folder, an empty one, or (with ``overwrite``) a folder mstool wrote. Refused: a file of that
    name, a non-empty folder without ``overwrite``, a non-empty folder that mstool did not write (even with
    ``overwrite``), and an output that overlaps an input (:func:`check_disjoint`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the output overlaps an input, or holds files mstool did not write.
        OutputExistsError: a file of that name, or a non-empty mstool folder without ``overwrite``.
    """
    check_disjoint(path, inputs)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path}: output must be a folder but a file of that name exists")
    if path.is_dir() and any(path.iterdir()):
        if not is_mstool_folder(path):
            raise OutputError(f"{path}: the folder is not empty and was not written by mstool, so it is never "
                              "replaced (--overwrite replaces only mstool's own outputs); choose a new folder")
        if not overwrite:
            raise OutputExistsError(f"{path}: output folder exists and is not empty (pass --overwrite to "
                                    "replace it)")
    return path


def check_output_file(path: PathLike, *, overwrite: bool = False, inputs: Inputs = (),
                      suffixes: tuple[str, ...] | None = None) -> Path:
    """Check, before any work, that a file output may be written at ``path``.

    Args:
        path: the file to write.
        overwrite: whether an existing file may be replaced.
        inputs: paths the output must not be, contain or lie inside.
        suffixes: allowed suffixes (lower case, with the dot); ``None`` allows any.

    Raises:
        OutputError: a wrong suffix, or an output that overlaps an input.
        OutputExistsError: a folder of that name, or an existing file without ``overwrite``.
    """
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        allowed = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise OutputError(f"{path}: the output must be a {allowed} file; got {path.suffix or 'no suffix'!r}")
    check_disjoint(path, inputs)
    if path.is_dir():
        raise OutputExistsError(f"{path}: output must be a file but a folder of that name exists")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: file exists (pass --overwrite to replace it)")
    return path


def check_run_dir(path: PathLike, *, kind: str, inputs: Inputs = ()) -> Path:
    """Check, before any work, that ``path`` may hold a resumable run of ``kind``: a new or empty folder, or one
    that mstool wrote for the same kind of run (:func:`open_run_dir` without creating anything).

    Raises:
        OutputError: the folder holds files that mstool did not write for a run of this kind, or overlaps an
            input.
        OutputExistsError: a file of that name.
    """
    check_disjoint(path, inputs)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path}: output must be a folder but a file of that name exists")
    if path.is_dir() and any(path.iterdir()) and not is_mstool_folder(path, kind):
        raise OutputError(f"{path}: the folder is not empty and is not an mstool {kind} run folder, so nothing is "
                          "written there; choose a new folder")
    return path


def open_run_dir(path: PathLike, *, kind: str, inputs: Inputs = ()) -> Path:
    """Open a resumable run folder (training, comparison suite): a new or empty folder is created and marked; a
    folder mstool wrote for the same ``kind`` of run is reopened to resume.

    Raises:
        as :func:`check_run_dir`, and OutputError when the folder cannot be written.
    """
    path = check_run_dir(path, kind=kind, inputs=inputs)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not (path / MARKER).exists():
            _write_marker(path, kind)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the run folder ({exc.strerror or exc})") from None
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary name keeps the suffix, so writers that choose a format by suffix still work.
    On an exception the temporary file is removed and ``path`` is left as it was.

    Raises:
        OutputError: the folder of ``path`` cannot be written (the message names ``path``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
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


def _owner_tag() -> str:
    """Host and process of a temporary folder: leftovers of dead processes of this host can be cleared."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _clear_leftovers(path: Path) -> None:
    """Remove hidden temporary folders that a killed run of this host left beside ``path``."""
    host = _owner_tag().rsplit("-", 1)[0]
    for leftover in path.parent.glob(f"{glob.escape(f'.{path.name}.{host}-')}*"):
        pid = leftover.name[len(f".{path.name}.{host}-"):].split(".", 1)[0]
        if not pid.isdigit() or not leftover.name.endswith((".tmp", ".old")) or _alive(int(pid)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


@contextlib.contextmanager
def atomic_dir(path: PathLike, *, overwrite: bool = False, inputs: Inputs = (),
               kind: str = "output") -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``, marked as mstool's.

    The checks of :func:`check_output_dir` come first, so a refused output costs no work. An existing folder is
    replaced only once the new content is complete, so a failed or killed run never destroys earlier results.

    Args:
        path: the output folder.
        overwrite: replace a non-empty folder that mstool wrote.
        inputs: paths the output must not be, contain or lie inside.
        kind: the kind of output recorded in the marker (``segment``, ``labels``, ``synth`` ...).

    Raises:
        OutputError, OutputExistsError: as :func:`check_output_dir`; also a folder that cannot be written.
    """
    check_output_dir(path, overwrite=overwrite, inputs=inputs)
    given, path = Path(path), _absolute(path)
    made = _missing_parents(path)
    done = False
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _clear_leftovers(path)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=".tmp", dir=path.parent))
        except OSError as exc:
            raise OutputError(f"{given}: cannot write the output folder here ({exc.strerror or exc})") from None
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private (0700)
        try:
            yield tmp
            _write_marker(tmp, kind)
            if path.exists():
                old = path.with_name(f".{path.name}.{_owner_tag()}.old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
            done = True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if not done:  # a failed run leaves no empty folders behind either
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing
