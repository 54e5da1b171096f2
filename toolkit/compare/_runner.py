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

from .._fs import check_run_dir, open_run_dir
from .._types import Progress
from .._version import __version__
from ..data import Splits, prepare_splits
from ..engine import CHECKPOINT_NAME
from ..errors import ParameterError
from ..runs import log_line, segment_cell, train_cell, versions, write_json, write_text
from ._methods import nest_options, parse_method_spec
from ._suite import Cell, LabelEntry, SuiteConfig, read_config_file, write_toml

__all__ = ["prepare_data", "training_labels", "run_cell", "run_unsupervised_cell", "run_suite", "cell_done",
           "load_run_config", "spec_family", "cell_record"]


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
                            prior=spec.prior, seed=cell.seed, device=device, progress=progress, examples=examples,
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


def _check_same_suite(run_dir: Path, config: SuiteConfig) -> None:
    stored = load_run_config(run_dir).to_dict()
    given = config.to_dict()
    fixed = ("data", "preset", "train", "layout", "synth_n", "synth_size", "synth_seed", "synth_invert",
             "val_fraction", "fit", "mask_mode")
    differ = [k for k in fixed if stored.get(k) != given.get(k)]
    if differ:
        raise ParameterError(
            f"{run_dir}: the run folder holds a suite with other settings ({', '.join(differ)} differ); "
            "choose another output folder (labels, models and seeds may be added to a run)"
        )


def run_suite(
    config: SuiteConfig,
    run_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    cells: list[str] | None = None,
    progress: Progress | None = None,
    keep_checkpoints: bool = False,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of a suite (or only the cells named in ``cells``), then return all finished rows.

    Re-running into the same folder skips finished cells and resumes interrupted ones; a folder holding a suite
    with other data or training settings is refused (adding label specs, models, seeds or unsupervised methods is
    allowed: the stored ``config.toml`` grows to the union). Unsupervised cells run after the supervised ones
    (:func:`mstool.compare.run_unsupervised_cell`). Everything that can be checked (the run folder, the cells
    asked for, a dataset folder's masks) is checked before anything is written.

    Args:
        config: the suite.
        run_dir: the run folder: new, empty, or an mstool comparison run folder; never inside or around the data.
        device: where cells train.
        cells: cell ids to run (for cluster engines that run one cell per job); ``None`` runs all.
        progress: called with ``{"event": "cell", "cell", "index", "total", "status": "skip"|"start"|"done"}``
            and with every training event of :func:`mstool.engine.train` or round event of an unsupervised method
            (with ``"cell"`` added).
        keep_checkpoints: keep each finished cell's training checkpoint (``checkpoint.pt``, only needed to resume
            an unfinished cell); by default it is removed once the cell's ``metrics.json`` is written.

    Returns:
        The rows of every finished cell of the (merged) suite.

    Raises:
        OutputError: ``run_dir`` overlaps the dataset folder, or holds files that are not a comparison run.
    """
    run_dir = Path(run_dir)
    inputs = [] if config.is_synthetic else [config.data]
    check_run_dir(run_dir, kind="compare", inputs=inputs)
    if (run_dir / "config.toml").exists():
        _check_same_suite(run_dir, config)
        stored = load_run_config(run_dir)
        config = SuiteConfig.from_dict({
            **config.to_dict(),
            "labels": list(dict.fromkeys(stored.labels + config.labels)),
            "models": list(dict.fromkeys(stored.models + config.models)),
            "seeds": list(dict.fromkeys(stored.seeds + config.seeds)),
            "unsupervised": list(dict.fromkeys(stored.unsupervised + config.unsupervised)),
        })
    plan = config.cells()
    if cells is not None:
        known = {c.id: c for c in plan}
        unknown = [c for c in cells if c not in known]
        if unknown:
            raise ParameterError(f"unknown cell(s) {', '.join(unknown)}; this suite has: "
                                 f"{', '.join(list(known)[:6])}{' ...' if len(known) > 6 else ''}")
        todo = [known[c] for c in cells]
    else:
        todo = plan
    data = None
    if not config.is_synthetic and not all(cell_done(run_dir, cell) for cell in todo):
        data = prepare_data(config, run_dir)  # a bad dataset fails here, before the run folder is touched
    open_run_dir(run_dir, kind="compare", inputs=inputs)
    write_text(run_dir / "config.toml", f"# mstool {__version__} comparison suite\n" + write_toml(config.to_dict()))
    emit = progress if progress is not None else (lambda event: None)
    logged = False
    for index, cell in enumerate(todo, 1):
        if cell_done(run_dir, cell):
            emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "skip"})
            continue
        if data is None:
            data = prepare_data(config, run_dir)
        if not logged:
            log_line(run_dir, f"data {data.root}: train {len(data.train_images)}, val {len(data.val_images)}, "
                          f"test {len(data.test_images)}, {data.num_classes} classes; " + "; ".join(data.notes))
            write_json(run_dir / "data_notes.json", data.notes, indent=None)
            logged = True
        emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "start"})
        forward = _logging_progress(run_dir, cell, device, emit if progress is not None else None)
        if cell.kind == "unsupervised":
            log_line(run_dir, f"cell {cell.id}: start on {device}")
            row = run_unsupervised_cell(config, cell, run_dir, data, device=device, progress=forward)
            log_line(run_dir, f"cell {cell.id}: done in {row['seconds']:.1f} s, mask/dice {row.get('mask/dice')}")
        else:
            row = run_cell(config, cell, run_dir, data, device=device, progress=forward)
            if not keep_checkpoints:
                (run_dir / "cells" / cell.id / CHECKPOINT_NAME).unlink(missing_ok=True)
            log_line(run_dir, f"cell {cell.id}: done in {row['seconds']:.1f} s, val/dice {row.get('val/dice')}")
        emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "done"})
    rows = []
    for cell in plan:
        path = run_dir / "cells" / cell.id / "metrics.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
    return rows


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
