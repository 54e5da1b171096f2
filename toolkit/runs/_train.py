"""A training run in a folder (``mstool train``) and its evaluation (``mstool evaluate``), as library calls.

A training run folder holds ``checkpoint.pt`` (resume), ``model.pt``, ``curves.csv``, ``train.json`` (where the
data came from and how it was split, the training settings, the label statistics) and, for ``synth:`` data, the
generated dataset in ``data/``. :func:`evaluate_run` reads ``train.json`` back, so a run is evaluated on the
very test images and validation split it was trained beside.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._check import check_int
from .._fs import check_output_file, check_run_dir, is_mstool_folder, open_run_dir
from .._types import Progress
from ..data import DataSource, Splits, lazy_split, lazy_splits, prepare_splits
from ..device import make_generator, resolve_device
from ..engine import EvalResult, TrainConfig, TrainResult, evaluate, load_model, train
from ..engine.distributed import barrier, init_from_env, is_main, launched, rank_and_world
from ..errors import FileMissingError, ParameterError
from ..labels import LabelSpec, parse_spec
from ..metastructure import expected_threshold
from ..metrics import ProtocolResult
from ._records import write_json

__all__ = ["TrainRun", "EvalRun", "train_run", "evaluate_run", "run_config", "run_source", "recorded_source",
           "TRAIN_RECORD", "EVALUATION_RECORD", "SYNTH_DEFAULTS"]

TRAIN_RECORD = "train.json"
"""The record a training run folder keeps beside its model."""

EVALUATION_RECORD = "evaluation.json"
"""What :func:`evaluate_run` writes beside the model by default; ``mstool predict`` takes its ``val`` threshold."""

SYNTH_DEFAULTS = {"quick": (24, 128), "paper": (64, 256)}
"""Size of a ``synth:`` dataset per training preset: (images, side in pixels)."""


def run_source(data: str | os.PathLike, preset: str = "quick", **options: Any) -> DataSource:
    """The :class:`~mstool.data.DataSource` of a run with ``preset``: a ``synth:`` dataset takes the preset's size
    (:data:`SYNTH_DEFAULTS`) unless ``synth_n`` or ``synth_size`` say otherwise (``None`` keeps the default).

    Example:
        >>> src = run_source("synth:mito", "paper", synth_n=None)
        >>> src.synth_n, src.synth_size
        (64, 256)
    """
    n, size = SYNTH_DEFAULTS.get(preset, SYNTH_DEFAULTS["quick"])
    if options.get("synth_n") is None:
        options["synth_n"] = n
    if options.get("synth_size") is None:
        options["synth_size"] = size
    return DataSource(str(data), **options)


def run_config(preset: str = "quick", overrides: dict[str, Any] | None = None, *, labels: str | LabelSpec = "clean",
               model: str | None = None, seed: int = 0) -> TrainConfig:
    """The :class:`~mstool.engine.TrainConfig` of one training run: a preset, its overrides, the label spec, the
    network and the seed. Without a ``noise_mode`` override the spec's own default applies
    (:attr:`mstool.labels.LabelSpec.noise_mode`: flips drawn online, the rest offline).

    Raises:
        ParameterError: ``overrides`` sets ``label_spec``, ``seed`` or ``model`` (arguments of their own here), or
            holds a bad setting.
        SpecError: a bad label spec.

    Example:
        >>> cfg = run_config("quick", {"epochs": 2}, labels="flip:0.2,0.2", seed=3)
        >>> cfg.epochs, cfg.noise_mode, cfg.seed, cfg.label_spec
        (2, 'online', 3, 'flip:0.2,0.2')
    """
    values = dict(overrides or {})
    for key in ("label_spec", "seed", "model"):
        if key in values:
            raise ParameterError(f"training override `{key}` is set per run; use --labels, --seed(s) or --model "
                                 "instead")
    spec = labels if isinstance(labels, LabelSpec) else parse_spec(labels)
    values.setdefault("noise_mode", spec.noise_mode)
    if model is not None and model != TrainConfig.from_preset(preset).model:
        values["model"] = model
    return TrainConfig.from_preset(preset, **values, label_spec=str(spec), seed=seed)


@dataclass
class TrainRun:
    """What :func:`train_run` made: the run folder, the trained network and history, the data and the record."""

    out: Path
    result: TrainResult
    splits: Splits | None
    record: dict[str, Any]


@dataclass
class EvalRun:
    """What :func:`evaluate_run` measured, where it wrote it, and the data it read (None when read lazily)."""

    path: Path
    metrics: dict[str, Any]
    result: EvalResult
    splits: Splits | None


def train_run(
    source: DataSource | str,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    ddp: bool = False,
    lazy: bool = False,
    labels_from: str | os.PathLike | None = None,
) -> TrainRun:
    """Train a network on a dataset's labels, turned noisy by ``config.label_spec``, into the run folder ``out``.

    The library call behind ``mstool train``. A killed run resumes from its checkpoint when called again with
    the same ``out``. A dataset folder is read, and a bad one refused, before ``out`` is made; ``synth:`` data is
    generated into ``out/data``. Validation: the dataset's val split, or (documented fallback) a share of train
    held out (:func:`mstool.data.prepare_splits`).

    Args:
        source: the data (a dataset folder, ``synth:KIND``, or a :class:`~mstool.data.DataSource`).
        out: the run folder: new, empty, or an earlier mstool training run to resume.
        config: the training settings (default: the ``quick`` preset on clean labels, :func:`run_config`).
        device: where to train (with ``ddp`` on CUDA: each process takes the GPU of its local rank).
        progress: training events of :func:`mstool.engine.train` (sent by the first process only).
        ddp: train one network across the processes ``torchrun`` started, with DistributedDataParallel
            (:mod:`mstool.engine`'s distributed notes: the effective batch is ``batch_size x processes``, the
            learning rate is not scaled); implied when this process was started by ``torchrun``. Only the first
            process writes files.
        lazy: read the train and val splits item by item (:func:`mstool.data.lazy_splits`, for data larger than
            memory; the dataset needs both splits); ``splits`` of the result is then ``None``.
        labels_from: train on this folder's masks instead of the dataset's training labels: your own noisy or
            partial labels of the training images, found by file stem anywhere under it
            (:func:`mstool.data.read_label_folder`; 255 marks a pixel left out). Validation and test keep the
            dataset's labels, ``config.label_spec`` must be ``clean``, and the label statistics (the NTM) measure
            the folder against the dataset's training labels.

    Raises:
        OutputError: ``out`` holds files mstool did not write for a training run, or overlaps the data.
        ParameterError: ``ddp`` outside ``torchrun``; ``labels_from`` with ``lazy`` or with a label spec.
        DataError: ``labels_from`` misses a training image's mask, has one of the wrong size or names no image.

    Example:
        >>> cfg = run_config("quick", {"epochs": 1, "val_every": 1}, labels="sample:0.5")
        >>> run = train_run(DataSource("synth:er", synth_n=4, synth_size=32), "run", cfg)
        >>> run.record["config"]["label_spec"], (run.out / "model.pt").is_file()
        ('sample:0.5', True)
    """
    src = source if isinstance(source, DataSource) else DataSource(source)
    cfg = config if config is not None else run_config()
    dev = init_from_env(str(device)) if ddp or launched() else resolve_device(device)
    inputs = ([] if src.is_synthetic else [src.data]) + ([] if labels_from is None else [labels_from])
    folders = None
    if labels_from is not None:
        if lazy:
            raise ParameterError("a label folder is read whole; train on it without --lazy")
        if cfg.label_spec != "clean":
            raise ParameterError(f"a label folder is trained on as it is; label spec {cfg.label_spec!r} would "
                                 "change it (leave the spec out)")
        folders = {_OWN: str(Path(labels_from).resolve())}
    out = check_run_dir(out, kind="train", inputs=inputs)
    if lazy:
        return _train_lazily(src, out, cfg, inputs, dev, progress)

    def read() -> Splits:
        return prepare_splits(src, out, label_folders=folders)

    splits = None
    if is_main():  # a dataset folder is read (a bad one refused) before the run folder is made
        splits = None if src.is_synthetic else read()
        open_run_dir(out, kind="train", inputs=inputs)
        splits = splits or read()
    barrier()  # the other processes read the synth: data the first one wrote
    splits = splits or read()
    # a label folder is measured against the dataset's own training labels, so its NTM is known
    labels, reference = ((splits.train_labels, None) if folders is None else
                         (splits.label_folders[_OWN], splits.train_labels))
    result = train(cfg, splits.train_images, labels, out_dir=out, val_images=splits.val_images,
                   val_labels=splits.val_labels, num_classes=splits.num_classes, device=dev, progress=progress,
                   reference_labels=reference)
    return _finish(out, src, cfg, result, splits, splits.root, splits.notes,
                   labels_from=None if folders is None else folders[_OWN])


_OWN = "own"  # the key of a run's own label folder among the splits' label folders


def _finish(out: Path, src: DataSource, cfg: TrainConfig, result: TrainResult, splits: Splits | None, root: Path,
            notes: list[str], labels_from: str | None = None) -> TrainRun:
    """Write ``train.json`` (the first process only) and return the run."""
    # a synth: dataset is recorded by the folder it was written to, so evaluation reads the same images
    processes = rank_and_world()[1]
    record = {"data": str(Path(root).resolve()), "layout": src.layout, "fit": src.fit,
              "val_fraction": src.val_fraction, "synth_seed": src.seed, "mask_mode": src.mask_mode,
              "mask_suffix": src.mask_suffix, "notes": notes,
              **({} if labels_from is None else {"labels_from": labels_from}),
              **({"lazy": True} if splits is None else {}),
              "config": cfg.to_dict(drop_none=True), "label_stats": result.label_stats,
              **({"processes": processes, "effective_batch_size": cfg.batch_size * processes}
                 if processes > 1 else {})}
    if is_main():
        write_json(out / TRAIN_RECORD, record, indent=2)
    barrier()
    return TrainRun(out, result, splits, record)


def _train_lazily(src: DataSource, out: Path, cfg: TrainConfig, inputs: list, dev: torch.device,
                  progress: Progress | None) -> TrainRun:
    """:func:`train_run` on splits read item by item."""
    if not src.is_synthetic:
        lazy_splits(src, out)  # a bad dataset fails before the run folder is made
    if is_main():
        open_run_dir(out, kind="train", inputs=inputs)
        train_set, val_set, k = lazy_splits(src, out)
    barrier()
    if not is_main():
        train_set, val_set, k = lazy_splits(src, out)
    result = train(cfg, train_set, None, out_dir=out, val_images=val_set, num_classes=k, device=dev,
                   progress=progress)
    return _finish(out, src, cfg, result, None, train_set.layout.root, [])


def recorded_source(run_dir: str | os.PathLike, data: str | os.PathLike | None = None, *,
                    mask_mode: str | None = None) -> DataSource:
    """The :class:`~mstool.data.DataSource` a training run in ``run_dir`` was trained on, read from its
    ``train.json`` (``data`` replaces the dataset folder, ``mask_mode`` the way masks are read).

    Raises:
        FileMissingError: no ``train.json`` and no ``data``.
    """
    recorded = _record(run_dir)
    root = data if data is not None else recorded.get("data")
    if root is None:
        raise FileMissingError(f"{run_dir}: no {TRAIN_RECORD} beside the checkpoint; name the dataset with --data")
    inside = Path(run_dir) / "data"
    if data is None and not Path(root).exists() and (inside / "dataset.json").is_file():
        root = inside  # a synth: dataset written into a run folder that has since moved
    return DataSource(str(root), layout=recorded.get("layout", "auto"), fit=recorded.get("fit"),
                      val_fraction=recorded.get("val_fraction", 0.2), seed=recorded.get("synth_seed", 0),
                      mask_mode=mask_mode or recorded.get("mask_mode"),
                      mask_suffix=recorded.get("mask_suffix", "_masks"))


def _record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``train.json`` of a training run folder; for a cell of a comparison (``SUITE/cells/ID``, which has
    none) the data settings of the suite's ``config.toml``; else ``{}``."""
    path = Path(run_dir) / TRAIN_RECORD
    if path.is_file():
        return json.loads(path.read_text())
    suite = Path(run_dir).parent.parent
    if Path(run_dir).parent.name != "cells" or not (suite / "config.toml").is_file():
        return {}
    config = tomllib.loads((suite / "config.toml").read_text())
    record = {key: config[key] for key in ("data", "layout", "fit", "val_fraction", "synth_seed", "mask_mode",
                                           "mask_suffix")
              if key in config}
    if str(record.get("data", "")).startswith("synth:"):  # generated into the suite's folder
        record["data"] = str(suite / "data")
    return record


def evaluate_run(
    checkpoint: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    probe: bool = True,
    tile: int | None = None,
    mask_mode: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    lazy: bool | None = None,
) -> EvalRun:
    """Evaluate a trained network on the test split of the data it was trained beside, and write the metrics.

    The library call behind ``mstool evaluate``: the val, oracle and fixed threshold protocols with polarity
    (binary) or mIoU (multi-class), per-image and pooled metrics, and the feature probe
    (:func:`mstool.engine.evaluate`); the split is the one recorded in ``train.json`` beside the checkpoint.
    A binary network also gets ``labels/dice``, ``labels/iou``, ``labels/threshold`` and ``labels/polarity``:
    the test scores at the threshold its training labels' NTM implies
    (:func:`mstool.metastructure.expected_threshold`; ``lazy``: the nearest of the histograms' bin edges).

    Args:
        checkpoint: ``model.pt`` (or ``checkpoint.pt``) written by :func:`train_run`.
        data: the dataset folder, replacing the one recorded in ``train.json``.
        out: the metrics file (``.json``); default ``evaluation.json`` beside the checkpoint, which is replaced
            when mstool wrote that folder.
        probe: fit the linear feature probe.
        tile: predict in tiles of this side.
        mask_mode: how masks are read (default: as recorded).
        seed: seed of the probe's draws.
        device: where to evaluate.
        overwrite: replace an existing ``out``.
        lazy: read the train, val and test splits item by item (:func:`mstool.engine.evaluate` on Datasets:
            thresholds on the edges of 1024 bins, the probe fitted on 64 training items); ``None`` does so when
            the run was trained lazily. ``splits`` of the result is then ``None``.

    Raises:
        FileMissingError: no ``train.json`` beside the checkpoint and no ``data``.
        OutputExistsError: ``out`` exists and ``overwrite`` is not set.
        LayoutError: ``lazy`` on a dataset without train, val and test splits.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise FileMissingError(f"{ckpt}: checkpoint does not exist")
    tile = None if tile is None else check_int(tile, "tile", low=16)
    source = recorded_source(ckpt.parent, data, mask_mode=mask_mode)
    target = Path(out) if out is not None else ckpt.parent / EVALUATION_RECORD
    # the default file lives in the training run's own folder, which evaluation may refresh
    own = out is None and is_mstool_folder(ckpt.parent)
    check_output_file(target, overwrite=overwrite or own, inputs=[checkpoint, source.data], suffixes=(".json",))
    settings = {"device": resolve_device(device), "probe": probe, "tile": tile, "generator": make_generator(seed)}
    lazy = bool(_record(ckpt.parent).get("lazy")) if lazy is None else lazy
    if lazy:
        train_set, val_set, test_set = (lazy_split(source, ckpt.parent, name) for name in ("train", "val", "test"))
        result = evaluate(ckpt, test_set, val_images=val_set, train_images=train_set, **settings)
        splits, metrics = None, {**result.metrics, "lazy": True, "data_notes": []}
    else:
        splits = prepare_splits(source, ckpt.parent)
        result = evaluate(ckpt, splits.test_images, splits.test_labels, val_images=splits.val_images,
                          val_labels=splits.val_labels, train_images=splits.train_images,
                          train_labels=splits.train_labels, **settings)
        metrics = {**result.metrics, "data_notes": splits.notes}
    stats = load_model(ckpt)[1].get("label_stats") or {}
    if result.protocols is not None and "ntm" in stats:
        metrics.update(labels_threshold_metrics(stats, result.protocols))
    metrics = {"data": source.data, **metrics}  # which folder was scored, for a reader of the file alone
    write_json(target, metrics)
    return EvalRun(target, metrics, result, splits)


def labels_threshold_metrics(stats: dict[str, Any], protocols: ProtocolResult) -> dict[str, Any]:
    """Test Dice and IoU at the threshold the training labels' NTM implies, which no label of the test or
    validation images chose (:func:`mstool.metastructure.expected_threshold`, as ``mstool predict --threshold
    labels`` applies it), on the test set the protocols scored (tensors, or a lazy run's histograms, whose
    threshold is then the nearest bin edge)."""
    threshold, polarity = expected_threshold(stats["ntm"])
    report = protocols.report_at(threshold, polarity)
    return {"labels/threshold": report["threshold"], "labels/polarity": polarity, "labels/dice": report["dice"],
            "labels/iou": report["iou"]}
