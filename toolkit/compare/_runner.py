"""Running a comparison suite: prepare the data once, run each cell as an independent job, skip finished cells.

Legend: N batch · C channels · K classes · H, W pixels.

A run folder holds ``config.toml`` (every suite setting), ``log.txt``, ``data/`` (a ``synth:`` dataset),
``cells/<spec>__<model>__seed<k>/`` (``checkpoint.pt``, ``model.pt``, ``curves.csv``, ``examples.npz`` and, last,
``metrics.json``: a cell is finished when its ``metrics.json`` exists), and the results written by
:func:`mstool.compare.write_results`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .._types import Progress
from ..data import Splits, prepare_splits
from ..engine import CHECKPOINT_NAME
from ..runs import log_line, segment_cell, train_cell, versions, write_json
from ._methods import nest_options, parse_method_spec
from ._suite import Cell, LabelEntry, SuiteConfig, read_config_file

__all__ = ["prepare_data", "training_labels", "run_cell", "run_unsupervised_cell", "run_one", "cell_done",
           "load_run_config", "spec_family", "cell_record", "finished_rows", "FAILED_NAME"]

FAILED_NAME = "failed.json"
"""What a cell's folder holds when its job failed: the error, for the report (removed once the cell finishes)."""


def prepare_data(config: SuiteConfig, run_dir: str | Path) -> Splits:
    """The suite's data (:func:`mstool.data.prepare_splits` of :attr:`SuiteConfig.source`, with its label
    folders); a ``synth:`` dataset is generated into ``run_dir/data`` once."""
    return prepare_splits(config.source, run_dir, label_folders=config.label_folders)


def training_labels(data: Splits, entry: LabelEntry | str) -> torch.Tensor:
    """The labels a cell trains on: a folder's masks, or the clean ones (the zoo adds the noise)."""
    entry = LabelEntry.parse(entry)
    return data.train_labels if entry.folder is None else data.label_folders[entry.folder[0]]


def spec_family(spec: str) -> tuple[str, float | None]:
    """The family (first operation) of a labels entry and its noise level (first argument), for plots
    (:attr:`LabelEntry.family`).

    Example:
        >>> spec_family("flip:0.45,0.45"), spec_family("clean"), spec_family("skeleton+shift:1+sample:0.1")
        (('flip', 0.45), ('clean', 0.0), ('skeleton+shift:1+sample:0.1', None))
    """
    return LabelEntry.parse(spec).family


def cell_done(run_dir: str | Path, cell: Cell) -> bool:
    return (Path(run_dir) / "cells" / cell.id / "metrics.json").exists()


def finished_rows(config: SuiteConfig, run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of every finished cell of ``config``, in the plan's order (whichever executor ran them)."""
    paths = [Path(run_dir) / "cells" / cell.id / "metrics.json" for cell in config.cells()]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def run_one(config: SuiteConfig, cell: Cell, run_dir: str | Path, data: Splits, *, device: str | torch.device,
            progress: Progress | None = None, keep_checkpoints: bool = False) -> dict[str, Any]:
    """Run one cell of either kind as a job: log its start and end, write its ``metrics.json``, drop the training
    checkpoint of a finished cell (unless kept) and any record of an earlier failure; return its row."""
    run_dir = Path(run_dir)
    forward = _logging_progress(run_dir, cell, device, progress)
    if cell.kind == "unsupervised":
        log_line(run_dir, f"cell {cell.id}: start on {device}")
        row = run_unsupervised_cell(config, cell, run_dir, data, device=device, progress=forward)
        log_line(run_dir, f"cell {cell.id}: done in {row['seconds']:.1f} s, mask/dice {row.get('mask/dice')}")
    else:
        row = run_cell(config, cell, run_dir, data, device=device, progress=forward)
        if not keep_checkpoints:
            (run_dir / "cells" / cell.id / CHECKPOINT_NAME).unlink(missing_ok=True)
        log_line(run_dir, f"cell {cell.id}: done in {row['seconds']:.1f} s, val/dice {row.get('val/dice')}")
    (run_dir / "cells" / cell.id / FAILED_NAME).unlink(missing_ok=True)
    return row


def _logging_progress(run_dir: Path, cell: Cell, device: str | torch.device,
                      emit: Progress | None) -> Progress:
    """Forward a cell's events (with ``"cell"`` added), logging the start of its training: fresh, or resumed from
    the epoch of its checkpoint."""

    def forward(event: dict[str, Any]) -> None:
        if event.get("event") == "start":
            start, total = event.get("start_epoch", 0), event.get("epochs")
            log_line(run_dir, f"cell {cell.id}: " + (f"resumed from epoch {start} of {total} on {device}" if start else
                                                  f"start on {device}"))
        if emit is not None:
            emit({**event, "cell": cell.id})

    return forward


def run_cell(
    config: SuiteConfig,
    cell: Cell,
    run_dir: str | Path,
    data: Splits,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """Train and evaluate one supervised cell (:func:`mstool.runs.train_cell`); write ``cells/<id>/metrics.json``
    last and return its row: the cell's identity, then everything measured."""
    entry = cell.entry
    family, level = entry.family
    identity = {**cell_record(config, cell, device), "family": family, "level": level,
                "taxonomy_spec": entry.taxonomy, "label_folder": entry.folder[1] if entry.folder else None}
    measured = train_cell(Path(run_dir) / "cells" / cell.id, config.train_config(cell), data,
                          training_labels(data, entry), from_folder=entry.folder is not None, device=device,
                          progress=progress, examples=examples)
    return write_json(Path(run_dir) / "cells" / cell.id / "metrics.json", {**identity, **measured})


def run_unsupervised_cell(
    config: SuiteConfig,
    cell: Cell,
    run_dir: str | Path,
    data: Splits,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """Segment the test images with the cell's method entry and evaluate (:func:`mstool.runs.segment_cell`);
    write ``cells/<id>/metrics.json`` last and return its row.

    Raises:
        DataError: a multi-class suite (the methods' cluster-to-class rules are label-free and binary).
    """
    spec = parse_method_spec(cell.spec)
    measured = segment_cell(Path(run_dir) / "cells" / cell.id, data, spec.name, nest_options(dict(spec.options)),
                            prior=spec.prior, scribbles=spec.scribbles, seed=cell.seed, device=device,
                            progress=progress, examples=examples,
                            num_thresholds=config.base_train_config().num_thresholds)
    row = {**cell_record(config, cell, device), "family": "unsupervised", "level": None, **measured}
    return write_json(Path(run_dir) / "cells" / cell.id / "metrics.json", row)


def cell_record(config: SuiteConfig, cell: Cell, device: str | torch.device) -> dict[str, Any]:
    """The fields every result row starts with: which cell, of which suite, run where, by which versions."""
    made = versions(device)
    return {"cell": cell.id, "kind": cell.kind, "spec": cell.spec, "model": cell.model, "seed": cell.seed,
            "data": config.data, "preset": config.preset, "device": made["device"], "threads": made["threads"],
            "mstool_version": made["mstool_version"], "torch_version": made["torch_version"]}


def load_run_config(run_dir: str | Path) -> SuiteConfig:
    """The suite stored in ``run_dir/config.toml``."""
    path = Path(run_dir) / "config.toml"
    return SuiteConfig.from_dict(read_config_file(path))
