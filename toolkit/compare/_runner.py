"""Running a comparison suite: prepare the data once, run each cell as an independent job, skip finished cells.

Legend: N batch · C channels · K classes · H, W pixels.

A run folder holds ``config.toml`` (every suite setting), ``log.txt``, ``data/`` (a ``synth:`` dataset),
``cells/<spec>__<model>__seed<k>/`` (``checkpoint.pt``, ``model.pt``, ``curves.csv``, ``examples.npz`` and, last,
``metrics.json``: a cell is finished when its ``metrics.json`` exists), and the results written by
:func:`mstool.compare.write_results`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fs import atomic_path, check_run_dir, open_run_dir
from .._version import __version__
from ..data import find_masks_by_stem
from ..device import make_generator, resolve_device
from ..engine import CHECKPOINT_NAME
from ..errors import DataError, LayoutError, ParameterError
from ..io import read_mask
from ._suite import Cell, SuiteConfig, label_folder, read_config_file, write_toml

__all__ = ["SuiteData", "prepare_data", "run_cell", "run_suite", "cell_done", "load_run_config", "spec_family"]

Progress = Callable[[dict[str, Any]], None]


@dataclass
class SuiteData:
    """The tensors every cell trains and evaluates on, and how they were obtained (``notes``)."""

    root: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    test_names: list[str]
    num_classes: int
    notes: list[str] = field(default_factory=list)
    train_names: list[str] = field(default_factory=list)
    other_names: list[str] = field(default_factory=list)
    label_folders: dict[str, torch.Tensor] = field(default_factory=dict)

    def training_labels(self, spec: str) -> torch.Tensor:
        """The labels a cell of ``spec`` trains on: a folder's masks, or the clean ones (the zoo adds the noise)."""
        folder = label_folder(spec)
        return self.train_labels if folder is None else self.label_folders[folder[0]]


def _log(run_dir: Path, message: str) -> None:
    with open(run_dir / "log.txt", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def prepare_data(config: SuiteConfig, run_dir: str | Path) -> SuiteData:
    """Load (or, for ``synth:KIND``, first generate into ``run_dir/data``) the train, val and test sets.

    Fallbacks, recorded in ``notes`` and in the report:

    - no ``val`` split: a share ``config.val_fraction`` of the training images (at least one) is held out as
      validation, drawn with ``config.synth_seed``; thresholds and polarity are still never chosen on test;
    - a single split (a flat cellpose folder ``all``, or only ``train``): it is divided 60/20/20 into train, val
      and test the same way;
    - VOC, whose test masks are not public: ``val`` is the test set and validation is held out of ``train``.
    """
    from ..data import discover_layout, write_synthetic_dataset
    from ..engine import load_split_tensors

    run_dir = Path(run_dir)
    notes: list[str] = []
    if config.is_synthetic:
        root = run_dir / "data"
        if not (root / "dataset.json").exists():
            write_synthetic_dataset(root, config.data.split(":", 1)[1], config.synth_n, config.synth_size,
                                    seed=config.synth_seed, invert=config.synth_invert, overwrite=True)
        notes.append(f"built-in synthetic data {config.data}{' turned over' if config.synth_invert else ''}: "
                     f"{config.synth_n} images of {config.synth_size} px, seed {config.synth_seed}, split 60/20/20")
    else:
        root = Path(config.data)
    layout = discover_layout(root, config.layout)
    splits = set(layout.splits)

    def load(split: str):
        images, labels, names = load_split_tensors(layout, split, fit=config.fit, mask_mode=config.mask_mode)
        return images, labels, names

    g = make_generator(config.synth_seed)
    if {"train", "val", "test"} <= splits:
        train, val, test = load("train"), load("val"), load("test")
    elif layout.kind == "voc" and {"train", "val"} <= splits:
        test = load("val")
        train, val = _hold_out(load("train"), config.val_fraction, g)
        notes.append("VOC: the val split is the test set; validation is held out of train "
                     f"({config.val_fraction:.0%})")
    elif {"train", "test"} <= splits:
        train, val = _hold_out(load("train"), config.val_fraction, g)
        test = load("test")
        notes.append(f"no val split: {config.val_fraction:.0%} of train held out as validation (seed "
                     f"{config.synth_seed})")
    elif len(splits) >= 1:
        only = "all" if "all" in splits else ("train" if "train" in splits else sorted(splits)[0])
        rest, test = _hold_out(load(only), 0.2, g)
        train, val = _hold_out(rest, 0.25, g)
        notes.append(f"one split ({only!r}): divided 60/20/20 into train/val/test (seed {config.synth_seed})")
    else:  # pragma: no cover - discover_layout never returns a layout without splits
        raise LayoutError(f"{root}: no split found")
    folders = {}
    for entry in config.labels:
        folder = label_folder(entry)
        if folder is not None:
            folders[folder[0]] = _read_label_folder(folder[1], train[2], train[1], val[2] + test[2], config)
    labels = torch.cat([t[1].flatten() for t in (train, val, test)] + [t.flatten() for t in folders.values()])
    valid = labels[labels != 255]
    num_classes = max(int(valid.max()) + 1 if valid.numel() else 2, 2)
    return SuiteData(root, train[0], train[1], val[0], val[1], test[0], test[1], test[2], num_classes, notes,
                     train_names=list(train[2]), other_names=list(val[2]) + list(test[2]), label_folders=folders)


def _read_label_folder(path: str, names: list[str], clean: torch.Tensor, others: list[str],
                       config: SuiteConfig) -> torch.Tensor:
    """The masks of a real noisy label folder for the training images, ``(N, H, W)`` int64 like ``clean``.

    Masks are found by file stem anywhere under ``path``; a mask of a validation or test image is allowed and
    left unused. With ``fit="center"`` a larger mask is cropped about its centre as its image was.

    Raises:
        DataError: missing masks, masks named like no image of the dataset, two masks for one image, or a mask of
            the wrong size; the message names the files.
    """
    found = find_masks_by_stem(path)
    twice = sorted(stem for stem, files in found.items() if len(files) > 1)
    if twice:
        raise DataError(f"{path}: two masks for image {twice[0]!r}: {', '.join(map(str, found[twice[0]][:2]))}")
    missing = [n for n in names if n not in found]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"{path}: no mask for training image(s) {', '.join(missing[:3])}{more}")
    known = set(names) | set(others)
    extra = sorted(stem for stem in found if stem not in known)
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise DataError(f"{path}: mask(s) named like no image of the dataset: "
                        f"{', '.join(str(found[s][0].name) for s in extra[:3])}{more}")
    h, w = clean.shape[-2:]
    masks = []
    for name in names:
        file = found[name][0]
        mask = torch.from_numpy(read_mask(file, mode=config.mask_mode or "auto").astype(np.int64))
        mh, mw = mask.shape
        if (mh, mw) != (h, w) and not (config.fit == "center" and mh >= h and mw >= w):
            raise DataError(f"{file}: mask is {mh} x {mw} but training image {name!r} is {h} x {w}")
        top, left = (mh - h) // 2, (mw - w) // 2
        masks.append(mask[top:top + h, left:left + w])
    return torch.stack(masks)


def _hold_out(split: tuple, fraction: float, generator: torch.Generator) -> tuple[tuple, tuple]:
    images, labels, names = split
    n = images.shape[0]
    if n < 2:
        raise LayoutError(f"cannot hold out a validation or test set from {n} image(s); add images or splits")
    k = min(max(1, round(n * fraction)), n - 1)
    perm = torch.randperm(n, generator=generator)
    keep, held = perm[k:].sort().values, perm[:k].sort().values
    pick = lambda idx: (images[idx], labels[idx], [names[i] for i in idx.tolist()])  # noqa: E731
    return pick(keep), pick(held)


def spec_family(spec: str) -> tuple[str, float | None]:
    """The family (first operation) of a label spec and its noise level (first argument), for plots.

    Example:
        >>> spec_family("flip:0.45,0.45"), spec_family("clean"), spec_family("skeleton+shift:1+sample:0.1")
        (('flip', 0.45), ('clean', 0.0), ('skeleton+shift:1+sample:0.1', None))
    """
    from ..labels import parse_spec

    folder = label_folder(spec)
    if folder is not None:
        return folder[0], None
    parsed = parse_spec(spec)
    if len(parsed.steps) > 1:
        return str(parsed), None
    step = parsed.steps[0]
    if step.name == "clean":
        return "clean", 0.0
    numbers = [a for a in step.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return step.name, (float(numbers[0]) if numbers else None)


def cell_done(run_dir: str | Path, cell: Cell) -> bool:
    return (Path(run_dir) / "cells" / cell.id / "metrics.json").exists()


def run_cell(
    config: SuiteConfig,
    cell: Cell,
    run_dir: str | Path,
    data: SuiteData,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """Train and evaluate one cell; write ``cells/<id>/metrics.json`` last and return its row.

    A killed cell resumes from its last checkpoint on the next call. The row holds the cell's settings, the
    statistics of its actual training labels against the clean ones (NTM, rank, det, mutual information,
    boundary fraction, meta-structure similarity, taxonomy), the learning curve's summary and every metric of
    :func:`mstool.engine.evaluate`.
    """
    from ..engine import convergence, evaluate, train
    from ..labels import label_info, taxonomy_of
    from ..metastructure import expected_similarity, meta_similarity

    run_dir = Path(run_dir)
    cell_dir = run_dir / "cells" / cell.id
    dev = resolve_device(device)
    cfg = config.train_config(cell)
    started = time.perf_counter()
    folder = label_folder(cell.spec)
    result = train(cfg, data.train_images, data.training_labels(cell.spec), out_dir=cell_dir,
                   val_images=data.val_images, val_labels=data.val_labels, num_classes=data.num_classes, device=dev,
                   progress=progress)
    clean, noisy = data.train_labels, result.noisy_labels
    expected = expected_similarity(clean.to(dev), noisy.to(dev), data.num_classes,
                                   generator=make_generator(cell.seed))
    info = label_info(clean.to(dev), noisy.to(dev), data.num_classes, expected_score=expected.score,
                      expected_signal=expected.signal).as_dict()
    similarity = meta_similarity(clean.to(dev), noisy.to(dev), data.num_classes, bandwidths=(2, 4, 8)).mean()
    ev = evaluate(result.model, data.test_images, data.test_labels, val_images=data.val_images,
                  val_labels=data.val_labels, train_images=data.train_images, train_labels=clean,
                  allow_inversion=_inverts(result.label_stats, info, folder is not None), num_classes=data.num_classes,
                  device=dev, num_thresholds=cfg.num_thresholds, probe=cfg.probe, tile=cfg.tile,
                  generator=make_generator(cell.seed))
    family, level = spec_family(cell.spec)
    k = min(examples, data.test_images.shape[0])
    with atomic_path(cell_dir / "examples.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, probs=ev.test_probs[:k].float().cpu().numpy().astype(np.float16),
                                images=data.test_images[:k, 0].float().cpu().numpy().astype(np.float16),
                                labels=data.test_labels[:k].cpu().numpy().astype(np.uint8),
                                names=np.array(data.test_names[:k]),
                                train_label=noisy[:1].cpu().numpy().astype(np.uint8))
    best = max((r.get("val_dice") or r.get("val_miou") or -1.0) for r in result.history)
    row: dict[str, Any] = {
        **cell_record(config, cell, dev),
        "family": family,
        "level": level,
        "taxonomy_spec": None if folder else taxonomy_of(cell.spec),
        "label_folder": folder[1] if folder else None,
        "epochs": cfg.epochs,
        "train_seconds": round(result.seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "final_train_loss": result.history[-1]["train_loss"],
        "best_val_curve": best,
        **{f"curve/{key}": value for key, value in convergence(result.history).items()},
        **{f"label/{key}": value for key, value in info.items()},
        **{f"label/similarity_{key}": (None if not math.isfinite(v) else v) for key, v in similarity.items()},
        **{f"label/expected_{key}": v for key, v in expected.as_dict().items()},
        **{key: _json_value(v) for key, v in ev.metrics.items()},
        "settings": cfg.to_dict(),
    }
    return write_cell_metrics(cell_dir, row)


def _inverts(label_stats: dict[str, Any], info: dict[str, Any], is_folder: bool) -> bool:
    """Whether evaluation may choose the inverted polarity: the trainer's word for zoo labels; for a folder of
    masks (trained as given) the measured binary NTM determinant."""
    if is_folder:
        return info.get("det") is not None and info["det"] < 0
    return bool(label_stats.get("inverts", False))


def cell_record(config: SuiteConfig, cell: Cell, device: torch.device) -> dict[str, Any]:
    """The fields every result row starts with: which cell, of which suite, run where, by which versions."""
    return {"cell": cell.id, "kind": cell.kind, "spec": cell.spec, "model": cell.model, "seed": cell.seed,
            "data": config.data, "preset": config.preset, "device": str(device), "threads": torch.get_num_threads(),
            "mstool_version": __version__, "torch_version": torch.__version__}


def write_cell_metrics(cell_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    """Write ``cell_dir/metrics.json`` atomically (it marks the cell finished, so it comes last); return ``row``."""
    with atomic_path(cell_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(row, indent=1, default=_json_value) + "\n")
    return row


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


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
    with atomic_path(run_dir / "config.toml") as tmp:
        tmp.write_text(f"# mstool {__version__} comparison suite\n" + write_toml(config.to_dict()))
    emit = progress if progress is not None else (lambda event: None)
    logged = False
    for index, cell in enumerate(todo, 1):
        if cell_done(run_dir, cell):
            emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "skip"})
            continue
        if data is None:
            data = prepare_data(config, run_dir)
        if not logged:
            _log(run_dir, f"data {data.root}: train {len(data.train_images)}, val {len(data.val_images)}, "
                          f"test {len(data.test_images)}, {data.num_classes} classes; " + "; ".join(data.notes))
            with atomic_path(run_dir / "data_notes.json") as tmp:
                tmp.write_text(json.dumps(data.notes) + "\n")
            logged = True
        emit({"event": "cell", "cell": cell.id, "index": index, "total": len(todo), "status": "start"})
        forward = _logging_progress(run_dir, cell, device, emit if progress is not None else None)
        if cell.kind == "unsupervised":
            from ._unsupervised import run_unsupervised_cell

            _log(run_dir, f"cell {cell.id}: start on {device}")
            row = run_unsupervised_cell(config, cell, run_dir, data, device=device, progress=forward)
            _log(run_dir, f"cell {cell.id}: done in {row['seconds']:.1f} s, mask/dice {row.get('mask/dice')}")
        else:
            row = run_cell(config, cell, run_dir, data, device=device, progress=forward)
            if not keep_checkpoints:
                (run_dir / "cells" / cell.id / CHECKPOINT_NAME).unlink(missing_ok=True)
            _log(run_dir, f"cell {cell.id}: done in {row['seconds']:.1f} s, val/dice {row.get('val/dice')}")
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
            _log(run_dir, f"cell {cell.id}: " + (f"resumed from epoch {start} of {total} on {device}" if start else
                                                  f"start on {device}"))
        if emit is not None:
            emit({**event, "cell": cell.id})

    return forward
