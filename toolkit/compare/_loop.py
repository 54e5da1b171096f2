"""The loop over a suite's cells, on this machine or on a Ray cluster: every cell is one job that writes into its
own folder, so the executors differ only in where the jobs run.

- ``local``: one cell after another in this process;
- ``ray``: one Ray task per cell (``ray.remote`` with the cell's CPU and GPU request; a fractional GPU lets several
  small cells share a card). The driver checks and plans everything, prepares the data once, and collects the
  rows; a worker that dies mid-cell is retried (``max_retries`` times) and resumes from the cell's checkpoint; a
  cell whose job raises is recorded in ``cells/<id>/failed.json`` and the others go on. Cells write into the run
  folder, so on a cluster it must lie on a file system every node sees.

Either way the results are read back from the cells' ``metrics.json`` in the plan's order, so the two executors'
outputs differ only in timings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

from .. import names
from .._check import check_in, check_int, check_range
from .._fs import check_run_dir, open_run_dir
from .._types import Progress
from .._version import __version__
from ..errors import ParameterError
from ..runs import log_line, write_json, write_text
from ._runner import FAILED_NAME, cell_done, finished_rows, load_run_config, prepare_data, run_one
from ._suite import Cell, SuiteConfig, write_toml

__all__ = ["run_suite", "RAY_INSTALL"]

RAY_INSTALL = "pip install 'mstool[ray]'"
"""How to install the optional Ray executor."""


def run_suite(
    config: SuiteConfig,
    run_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    cells: list[str] | None = None,
    progress: Progress | None = None,
    keep_checkpoints: bool = False,
    executor: str = "local",
    address: str | None = None,
    cpus_per_cell: float = 1,
    gpus_per_cell: float = 0,
    max_retries: int = 2,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of a suite (or only the cells named in ``cells``), then return all finished rows.

    Re-running into the same folder skips finished cells and resumes interrupted ones; a folder holding a suite
    with other data or training settings is refused (adding label specs, models, seeds or unsupervised methods is
    allowed: the stored ``config.toml`` grows to the union). Unsupervised cells run after the supervised ones
    (:func:`mstool.compare.run_unsupervised_cell`). Everything that can be checked (the run folder, the cells
    asked for, a dataset folder's masks, the executor) is checked before anything is written.

    Args:
        config: the suite.
        run_dir: the run folder: new, empty, or an mstool comparison run folder; never inside or around the data.
        device: where cells train (``local``; Ray cells use a GPU when ``gpus_per_cell`` > 0, else the CPU).
        cells: cell ids to run (for cluster engines that run one cell per job); ``None`` runs all.
        progress: called with ``{"event": "cell", "cell", "index", "total", "status": "skip"|"start"|"done"|
            "failed"}`` and, with the local executor, with every training event of :func:`mstool.engine.train` or
            round event of an unsupervised method (with ``"cell"`` added).
        keep_checkpoints: keep each finished cell's training checkpoint (``checkpoint.pt``, only needed to resume
            an unfinished cell); by default it is removed once the cell's ``metrics.json`` is written.
        executor: ``local`` or ``ray`` (:data:`mstool.names.EXECUTORS`).
        address: the Ray cluster to join (``auto``, ``ray://host:10001``); ``None`` joins the Ray instance this
            process already started, or starts a local one.
        cpus_per_cell, gpus_per_cell: each Ray task's resource request; a worker trains with
            ``int(cpus_per_cell)`` threads (at least 1).
        max_retries: how many times Ray reruns a cell whose worker died.

    Returns:
        The rows of every finished cell of the (merged) suite, in the plan's order.

    Raises:
        OutputError: ``run_dir`` overlaps the dataset folder, or holds files that are not a comparison run.
        ParameterError: an unknown cell or executor, bad resources, or ``ray`` without Ray installed.
    """
    run_dir = Path(run_dir)
    check_in(executor, "executor", names.EXECUTORS)
    if executor == "ray":
        _ray_module()  # refuse now, before the run folder is touched
        check_range(cpus_per_cell, "cpus_per_cell", 0, low_open=True)
        check_range(gpus_per_cell, "gpus_per_cell", 0)
        max_retries = check_int(max_retries, "max_retries", low=0)
    config, todo, data = _prepare(config, run_dir, cells)
    emit = progress if progress is not None else (lambda event: None)
    if executor == "ray":
        _run_on_ray(config, run_dir, todo, data, emit, keep_checkpoints=keep_checkpoints, address=address,
                    cpus=cpus_per_cell, gpus=gpus_per_cell, max_retries=max_retries)
    else:
        _run_here(config, run_dir, todo, data, emit, device=device, keep_checkpoints=keep_checkpoints,
                  forward=progress is not None)
    return finished_rows(config, run_dir)


def _prepare(config: SuiteConfig, run_dir: Path, cells: list[str] | None) -> tuple[SuiteConfig, list[Cell], Any]:
    """Check the run folder, merge the suite with the one it holds, choose the cells, read a dataset folder (a
    bad one fails here, before the run folder is touched), then open the folder and write ``config.toml``."""
    inputs = [] if config.is_synthetic else [config.data]
    check_run_dir(run_dir, kind="compare", inputs=inputs)
    if (run_dir / "config.toml").exists():
        _check_same_suite(run_dir, config)
        stored = load_run_config(run_dir)
        given = config.to_dict()
        if not config.labels:  # a suite that trains nothing leaves the folder's training settings as they are
            kept = stored.to_dict()
            given = {k: v for k, v in given.items() if k not in _TRAINING} | {k: kept[k] for k in _TRAINING
                                                                              if k in kept}
        config = SuiteConfig.from_dict({
            **given,
            "labels": list(dict.fromkeys(stored.labels + config.labels)),
            "models": list(dict.fromkeys(stored.models + config.models)),
            "seeds": list(dict.fromkeys(stored.seeds + config.seeds)),
            "unsupervised": list(dict.fromkeys(stored.unsupervised + config.unsupervised)),
        })
    plan = config.cells()
    todo = plan
    if cells is not None:
        known = {c.id: c for c in plan}
        unknown = [c for c in cells if c not in known]
        if unknown:
            raise ParameterError(f"unknown cell(s) {', '.join(unknown)}; this suite has: "
                                 f"{', '.join(list(known)[:6])}{' ...' if len(known) > 6 else ''}")
        todo = [known[c] for c in cells]
    data, scratch = None, None
    pending = not all(cell_done(run_dir, cell) for cell in todo)
    if pending and config.is_synthetic and config.label_folders and not (run_dir / "data").exists():
        # label folders are checked against the generated images' names: generate them aside first, so that a
        # mismatch leaves no run folder behind
        scratch = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}-data-", dir=_existing_parent(run_dir)))
        try:
            data = prepare_data(config, scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    elif pending and (not config.is_synthetic or config.label_folders):
        data = prepare_data(config, run_dir)
    open_run_dir(run_dir, kind="compare", inputs=inputs)
    if scratch is not None:
        shutil.move(scratch / "data", run_dir / "data")
        shutil.rmtree(scratch, ignore_errors=True)
        data = dataclasses.replace(data, root=run_dir / "data")
    write_text(run_dir / "config.toml", f"# mstool {__version__} comparison suite\n" + write_toml(config.to_dict()))
    return config, todo, data


def _existing_parent(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (the run folder may be nested in new folders)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


_TRAINING = ("preset", "train")
"""Suite settings that only the trained cells read: a suite of unsupervised rows alone may differ in them."""


def _check_same_suite(run_dir: Path, config: SuiteConfig) -> None:
    stored = load_run_config(run_dir).to_dict()
    given = config.to_dict()
    fixed = ("data", *_TRAINING, "layout", "synth_n", "synth_size", "synth_seed", "synth_invert",
             "val_fraction", "fit", "mask_mode", "mask_suffix")
    differ = [k for k in fixed if stored.get(k) != given.get(k) and (config.labels or k not in _TRAINING)]
    if differ:
        shown = "; ".join(f"{k}: {stored.get(k)!r} in the folder, {given.get(k)!r} now" for k in differ)
        raise ParameterError(
            f"{run_dir}: the run folder holds a suite with other settings ({shown}); choose another output "
            "folder (labels, models, seeds and unsupervised entries may be added to a run)"
        )


def _data_once(config: SuiteConfig, run_dir: Path, data: Any) -> Any:
    """The suite's data, read (a ``synth:`` dataset generated) once, and logged with the notes on how."""
    data = data if data is not None else prepare_data(config, run_dir)
    log_line(run_dir, f"data {data.root}: train {len(data.train_images)}, val {len(data.val_images)}, "
                      f"test {len(data.test_images)}, {data.num_classes} classes; " + "; ".join(data.notes))
    write_json(run_dir / "data_notes.json", data.notes, indent=None)
    return data


def _run_here(config: SuiteConfig, run_dir: Path, todo: list[Cell], data: Any, emit: Progress, *,
              device: str | torch.device, keep_checkpoints: bool, forward: bool) -> None:
    """The local executor: one cell after another in this process."""
    prepared = False
    for index, cell in enumerate(todo, 1):
        event = {"event": "cell", "cell": cell.id, "index": index, "total": len(todo)}
        if cell_done(run_dir, cell):
            emit({**event, "status": "skip"})
            continue
        if not prepared:
            data, prepared = _data_once(config, run_dir, data), True
        emit({**event, "status": "start"})
        run_one(config, cell, run_dir, data, device=device, progress=emit if forward else None,
                keep_checkpoints=keep_checkpoints)
        emit({**event, "status": "done"})


# -------------------------------------------------------------------------------------------------- Ray
def _ray_module():
    try:
        import ray  # optional: only the ray executor needs it
    except ImportError:
        raise ParameterError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _run_on_ray(config: SuiteConfig, run_dir: Path, todo: list[Cell], data: Any, emit: Progress, *,
                keep_checkpoints: bool, address: str | None, cpus: float, gpus: float, max_retries: int) -> None:
    """The Ray executor: every unfinished cell is one task; the driver waits for them in any order."""
    ray = _ray_module()
    pending = [(index, cell) for index, cell in enumerate(todo, 1) if not cell_done(run_dir, cell)]
    for index, cell in enumerate(todo, 1):
        if cell_done(run_dir, cell):
            emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "skip"})
    if not pending:
        return
    _data_once(config, run_dir, data)  # the driver writes a synth: dataset once; workers only read it
    if not ray.is_initialized():
        # WARNING: Ray's INFO start-up lines repeat what mstool's own progress says, and `-q` must silence them
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=max_retries, retry_exceptions=False)(_cell_task)
    device = "cuda" if gpus > 0 else "cpu"
    threads = max(1, int(cpus))
    refs = {}
    for index, cell in pending:
        refs[task.remote(config.to_dict(), cell.id, str(run_dir), device, threads, keep_checkpoints)] = (index, cell)
        emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "start"})
    try:
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            index, cell = refs[ready[0]]
            status = "done"
            try:
                ray.get(ready[0])
            except Exception as exc:  # the cell's own error, or its worker died more than max_retries times
                status = "failed"
                _record_failure(run_dir, cell, exc)
            emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": status})
    except KeyboardInterrupt:  # stop every task; a re-run resumes from the cells' checkpoints
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise


def _record_failure(run_dir: Path, cell: Cell, exc: BaseException) -> None:
    cause = getattr(exc, "cause", None) or exc
    message = f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
    write_json(run_dir / "cells" / cell.id / FAILED_NAME, {"cell": cell.id, "error": message,
                                                             "attempts": _attempts(run_dir, cell)})
    log_line(run_dir, f"cell {cell.id}: failed ({message})")


def _attempts(run_dir: Path, cell: Cell) -> int:
    path = run_dir / "cells" / cell.id / "attempts.txt"
    return len(path.read_text().split()) if path.exists() else 0


def _cell_task(config: dict[str, Any], cell_id: str, run_dir: str, device: str, threads: int,
               keep_checkpoints: bool) -> dict[str, Any]:
    """One cell in a Ray worker: the suite is rebuilt from its settings and the data read from the run folder."""
    torch.set_num_threads(threads)  # as many threads as CPUs were asked for, so results match a local run's
    suite = SuiteConfig.from_dict(config)
    cell = next(c for c in suite.cells() if c.id == cell_id)
    folder = Path(run_dir) / "cells" / cell_id
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempts.txt", "a") as fh:  # one line per attempt: who ran it, for the log and the test
        fh.write(f"{socket.gethostname()}:{os.getpid()}\n")
    log_line(run_dir, f"cell {cell_id}: attempt {_attempts(Path(run_dir), cell)} in process {os.getpid()} on "
                      f"{socket.gethostname()}")
    return run_one(suite, cell, run_dir, prepare_data(suite, run_dir), device=device,
                   keep_checkpoints=keep_checkpoints)
