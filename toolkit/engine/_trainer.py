"""The training loop, its checkpoints and resume, and loading a trained model.

Size: the loop, the checkpoint format and resume stay in one module (over 600 lines) because a checkpoint must
record exactly the state the loop keeps; split apart, the two drift and resume stops being bitwise exact.

Legend: N batch · C channels · K classes · H, W pixels.

One call of :func:`train` trains one network on one set of (noisy) labels and leaves in ``out_dir``:

- ``checkpoint.pt``: everything needed to go on after a crash or ``kill -9`` (model, optimizer, schedule,
  mixed-precision scaler, epoch, the states of the data and noise generators, the noisy labels of an offline
  run and the history), written atomically every ``checkpoint_every`` epochs and at the end;
- ``model.pt``: the final weights with the settings needed to rebuild the network (:func:`load_model`);
- ``curves.csv``: one row per epoch: ``epoch, train_loss, val_dice`` (binary) or ``val_miou`` (multi-class),
  ``lr, seconds``.

Both ``.pt`` files hold only tensors and plain Python values, so ``torch.load(path, weights_only=True)`` reads
them. A run resumed from its checkpoint on the CPU ends with the same weights, bit for bit, as a run that was
never interrupted: every random draw comes from generators whose states are saved at epoch boundaries.

Randomness. ``config.seed`` seeds one CPU generator, from which three seeds are drawn in a fixed order: the
noise stream (the offline draw, or the online draws), the initialisation, and the data stream (epoch order,
crops, flips, and the seed of torch's global generator inside an epoch, for layers such as dropout). The
noise stream comes first and does not depend on the network, so two networks trained with one seed and one
spec see the same noisy labels. The caller's global random state is left untouched.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import IGNORE_INDEX
from .._check import check_int, check_labels, check_shape
from .._fs import atomic_path
from .._types import Progress
from .._version import __version__
from ..data import random_crop_flip
from ..device import MixedPrecision, make_generator, resolve_device, spawn_seed
from ..errors import (
    DataError,
    FileMissingError,
    FileReadError,
    MstoolWarning,
    OutputError,
    ParameterError,
    ShapeError,
)
from ..labels import apply_spec, noise_transition_matrix, ntm_det, parse_spec
from ..losses import make_loss
from ..metrics import binary_scores, confusion_at_thresholds, multiclass_report
from ..models import build_model
from ._config import TrainConfig
from ._predict import predict
from .distributed import all_sum, barrier, is_main, rank_and_world, same_everywhere, shard, wrap

__all__ = ["TrainResult", "train", "load_model", "convergence", "CHECKPOINT_NAME", "MODEL_NAME", "CURVES_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
CURVES_NAME = "curves.csv"
_CHECKPOINT_FORMAT = "mstool-checkpoint"
_MODEL_FORMAT = "mstool-model"
_FORMAT_VERSION = 1
_RESUME_FREE = ("checkpoint_every", "val_every", "num_thresholds", "probe", "tile")
"""Config fields that may change between a checkpoint and its resumption (they do not affect training)."""



@dataclass
class TrainResult:
    """What :func:`train` made.

    Attributes:
        model: the trained network, on the training device, in eval mode.
        history: one dict per epoch: ``epoch``, ``train_loss``, ``val_dice`` (binary) or ``val_miou``
            (multi-class; ``None`` without a validation set), ``lr`` (the rate used in that epoch), ``seconds``.
        config: the settings.
        num_classes: ``K`` of the data (2 for binary).
        label_stats: the training labels against the clean ones (the offline draw, or the first online
            draw): ``ntm`` (``K x K`` list, rows = clean class), ``ntm_det``, ``inverts`` (binary and
            ``ntm_det < 0``: the labels swap the classes, so evaluation may allow polarity -1),
            ``labelled_fraction`` and ``changed_fraction`` (of the pixels labelled in both).
        noisy_labels: ``(N, H, W)`` the training labels of the offline draw (the first draw when online), CPU.
        model_path, checkpoint_path, curves_path: the files written.
        start_epoch: the epoch the run resumed from (0 for a fresh run).
        epochs_run: epochs trained by this call.
        seconds: wall time of this call.
    """

    model: nn.Module = field(repr=False)
    history: list[dict[str, Any]]
    config: TrainConfig
    num_classes: int
    label_stats: dict[str, Any]
    noisy_labels: torch.Tensor = field(repr=False)
    model_path: Path
    checkpoint_path: Path
    curves_path: Path
    start_epoch: int
    epochs_run: int
    seconds: float


# ------------------------------------------------------------------------------------------------ train
def train(
    config: TrainConfig | dict[str, Any],
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    out_dir: str | Path,
    val_images: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    num_classes: int = 2,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    resume: bool = True,
    reference_labels: torch.Tensor | None = None,
) -> TrainResult:
    """Train a network on clean labels made noisy by ``config.label_spec``; checkpoint, resume, save.

    The clean training labels are made noisy with :func:`mstool.labels._spec.apply_spec`: once before training
    (``noise_mode="offline"``: one fixed noisy label per image, stored in the checkpoint) or at the start of
    every epoch (``"online"``, the paper's online flipping; a spec that draws nothing is applied once either
    way). Each step takes a batch of the (device-resident) images and their labels, crops and flips the batch
    on the device (:func:`mstool.data.random_crop_flip`), and takes one optimizer step (mixed precision and
    channels-last on CUDA when ``config.amp`` / ``config.channels_last``; gradient-norm clipping with
    ``config.grad_clip``). After each epoch the schedule steps and, with a validation set, every
    ``config.val_every`` epochs the validation Dice at threshold 0.5 (binary) or the mIoU (multi-class) is
    recorded.

    With ``resume`` and a ``checkpoint.pt`` in ``out_dir``, training goes on from it; the checkpoint must come
    from the same settings (up to ``checkpoint_every``, ``val_every``, ``num_thresholds``, ``probe`` and
    ``tile``) and the same data. A finished checkpoint returns at once (rewriting ``model.pt`` and ``curves.csv``).

    Args:
        config: a :class:`TrainConfig` (or its ``to_dict()``).
        train_images: ``(N, C, H, W)`` float images, ``N >= 1``, z-scored as :class:`~mstool.data.SegmentationDataset`
            gives them.
        train_labels: ``(N, H, W)`` int CLEAN labels, classes ``0..K-1``, 255 ignored.
        out_dir: folder for ``checkpoint.pt``, ``model.pt`` and ``curves.csv`` (created if missing).
        val_images: ``(M, C, H', W')`` validation images, or None.
        val_labels: ``(M, H', W')`` validation labels (given together with ``val_images``).
        num_classes: ``K >= 2``; 2 trains one sigmoid channel, ``K > 2`` trains ``K`` softmax channels.
        device: where to train (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``).
        progress: called with an event dict: ``{"event": "start", "epochs", "start_epoch", "steps_per_epoch",
            "device"}``, ``{"event": "step", "epoch", "step", "steps"}`` after each step, ``{"event": "epoch",
            **history row, "epochs", "checkpoint": path or None}`` after each epoch (and after its checkpoint),
            ``{"event": "end", "epoch", "seconds", "model_path"}``. An exception raised by the callback stops
            training; the last checkpoint stays, and a later call resumes from it.
        resume: go on from ``out_dir/checkpoint.pt`` when it exists (``False``: start again and overwrite).
        reference_labels: ``(N, H, W)`` labels of the same images that ``label_stats`` measure the training labels
            against (the NTM, and so whether polarity -1 may be chosen): the clean labels when ``train_labels``
            are someone's noisy labels. Default: ``train_labels`` themselves, before the label spec.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ShapeError: images or labels (or reference labels) of the wrong shape, or an empty training set.
        ParameterError: a bad config field, ``num_classes`` or label values; a checkpoint from other
            settings or data; a diverged run (non-finite loss).
        DataError: non-finite images.
        FileReadError: a checkpoint that cannot be read.

    Warns:
        MstoolWarning: ``config.crop`` is larger than the images (they are used whole).

    Example:
        >>> from mstool.data import synthesize
        >>> from mstool.io import normalize_image
        >>> data = synthesize("er", 4, 32, generator=torch.Generator().manual_seed(0))
        >>> images = torch.stack([normalize_image(im[0].numpy()) for im in data.images])
        >>> cfg = TrainConfig.from_preset("quick", model_options={"base": 4, "depth": 2}, epochs=2, batch_size=2,
        ...                               crop=None)
        >>> result = train(cfg, images, data.labels, out_dir="run")
        >>> [row["epoch"] for row in result.history], result.model_path.name
        ([1, 2], 'model.pt')

    References:
        Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep
        Neural Networks", arXiv 2205.00160 (training on sampled, flipped, perturbed and random labels).
    """
    started = time.perf_counter()
    config = _as_config(config)
    lazy = isinstance(train_images, torch.utils.data.Dataset)
    if lazy and (train_labels is not None or val_labels is not None or reference_labels is not None
                 or not (val_images is None or isinstance(val_images, torch.utils.data.Dataset))):
        raise ParameterError("a Dataset of training items carries its own masks: pass train_labels=None and the "
                             "validation items as a Dataset in val_images (val_labels=None)")
    num_classes = (check_int(num_classes, "num_classes", low=2, note="2 for binary data") if lazy else
                   _check_data(train_images, train_labels, val_images, val_labels, num_classes))
    dev = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    ckpt_path, model_path, curves_path = out / CHECKPOINT_NAME, out / MODEL_NAME, out / CURVES_NAME
    # under torchrun every process trains; only the first writes files and reports progress
    main, world = is_main(), rank_and_world()[1]
    emit = progress if progress is not None and main else (lambda event: None)

    if lazy:
        from ._lazy import LazyRun  # LazyRun subclasses _Run: a real cycle

        run = LazyRun(config, train_images, val_images, num_classes, dev)
    else:
        if reference_labels is not None and reference_labels.shape != train_labels.shape:
            raise ShapeError(f"`reference_labels` must have the shape of `train_labels`, "
                             f"{tuple(train_labels.shape)}; got {tuple(reference_labels.shape)}")
        run = _Run(config, train_images, train_labels, val_images, val_labels, num_classes, dev,
                   reference=reference_labels)
    start_epoch = 0
    if resume and ckpt_path.exists():
        start_epoch = run.load(ckpt_path)
    else:
        run.draw_offline_labels()
    if not same_everywhere(start_epoch):  # ranks that train different epochs would wait on each other forever
        raise OutputError(f"{ckpt_path}: the {world} processes resumed from different epochs, so the checkpoint "
                          f"changed while they read it: is another run writing into {out}? Stop it, or use "
                          "another output folder")
    steps = math.ceil(run.n / min(config.batch_size, run.n) / world)
    emit({"event": "start", "epochs": config.epochs, "start_epoch": start_epoch, "steps_per_epoch": steps,
          "device": str(dev), "processes": world})

    for epoch in range(start_epoch + 1, config.epochs + 1):
        row = run.epoch(epoch, emit)
        saved = None
        if (epoch % config.checkpoint_every == 0 or epoch == config.epochs) and main:
            run.save(ckpt_path, epoch)
            _write_curves(curves_path, run.history, run.val_key)
            saved = str(ckpt_path)
        emit({"event": "epoch", **row, "epochs": config.epochs, "checkpoint": saved})

    if main:
        run.save_model(model_path)
        _write_curves(curves_path, run.history, run.val_key)
    barrier()  # no process returns before the model file exists
    seconds = time.perf_counter() - started
    emit({"event": "end", "epoch": config.epochs, "seconds": seconds, "model_path": str(model_path)})
    run.model.eval()
    return TrainResult(
        model=run.model, history=[dict(r) for r in run.history], config=config, num_classes=num_classes,
        label_stats=dict(run.label_stats), noisy_labels=run.first_labels.to("cpu", torch.long), model_path=model_path,
        checkpoint_path=ckpt_path, curves_path=curves_path, start_epoch=start_epoch,
        epochs_run=config.epochs - start_epoch, seconds=seconds,
    )


def convergence(history: list[dict[str, Any]], *, tol: float = 0.01) -> dict[str, Any]:
    """Was the validation curve still rising when training stopped?

    The curve is the protocol's score on validation (``val_dice_best``: Dice at the best threshold, binary) or
    ``val_miou``. Training counts as not converged when the last validated score beats the best score of the
    first half of the run by ``tol`` or more: the second half still gained a point of Dice. The second half,
    not the last quarter: a schedule that anneals the rate (the quick preset's cosine) flattens the end of any
    run, also one that a longer schedule would carry further (labels flipped 45% both ways on built-in ER gain
    0.005 in the last quarter of 300 epochs, 0.016 in the second half, and reach 0.917 after 900 epochs).

    Args:
        history: the per-epoch rows of :attr:`TrainResult.history`.
        tol: the gain that counts as still rising.

    Returns:
        ``{"converged": bool | None, "gain": float | None, "curve": key}``: ``None`` with fewer than four validated
        epochs (nothing to judge).

    Example:
        >>> rows = [{"epoch": e, "val_dice_best": v} for e, v in enumerate([0.5, 0.7, 0.8, 0.85, 0.9], 1)]
        >>> convergence(rows)
        {'converged': False, 'gain': 0.1, 'curve': 'val_dice_best'}
    """
    key = "val_dice_best" if any(r.get("val_dice_best") is not None for r in history) else "val_miou"
    points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
    if len(points) < 4:
        return {"converged": None, "gain": None, "curve": key}
    cut = points[0][0] + 0.5 * (points[-1][0] - points[0][0])
    early = [v for e, v in points if e <= cut]
    gain = round(points[-1][1] - max(early), 6)
    return {"converged": gain < tol, "gain": gain, "curve": key}


# ------------------------------------------------------------------------------------------------ the run
class _Run:
    """The state of one training run: network, optimizer, schedule, generators, labels and history."""

    def __init__(self, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor,
                 val_images: torch.Tensor | None, val_labels: torch.Tensor | None, num_classes: int,
                 dev: torch.device, reference: torch.Tensor | None = None) -> None:
        self._setup(config, num_classes, dev, images.shape[1], images.shape[0])
        self.fingerprint = _fingerprint(images, labels, val_images, val_labels)
        self.images = images.to(dev, torch.float32)
        # Training labels are held as bytes where the classes fit (8 times less device memory than int64, and
        # the label zoo redraws online noise several times faster); each step's batch is widened for the loss.
        self.clean = labels.to(dev, self.label_dtype)
        self.val_images = None if val_images is None else val_images.to(dev, torch.float32)
        self.val_labels = None if val_labels is None else val_labels.to(dev, torch.long)
        self._setup_data(images.shape[-2:])
        self.targets = self.clean
        self.first_labels = self.clean
        # what label_stats measure the training labels against
        self.reference = self.clean if reference is None else reference.to(dev, self.label_dtype)

    def _setup(self, config: TrainConfig, num_classes: int, dev: torch.device, in_channels: int, n: int) -> None:
        """The network, loss, optimizer, schedule and generators: everything but the data."""
        self.config, self.num_classes, self.dev = config, num_classes, dev
        self.n, self.in_channels = n, in_channels
        self.out_channels = _out_channels(num_classes)
        master = make_generator(config.seed)
        self.noise_seed, init_seed, data_seed = (spawn_seed(master) for _ in range(3))
        self.g_noise, self.g_data = make_generator(self.noise_seed), make_generator(data_seed)

        self.model = _build(config.model, config.model_options, self.in_channels, self.out_channels,
                            make_generator(init_seed)).to(dev)
        self.channels_last = config.channels_last and dev.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = wrap(self.model, dev)  # what the steps call: the model, or its DDP wrapper
        self.loss_name = config.resolved_loss(num_classes)
        self.loss_fn = make_loss(self.loss_name, self.out_channels)
        self.optimizer = _optimizer(config, self.model)
        self.scheduler = _scheduler(config, self.optimizer)
        self.precision = MixedPrecision(dev, "auto" if config.amp else "fp32")
        self.scaler = self.precision.scaler  # checkpointed with the run
        self.label_dtype = torch.uint8 if num_classes <= IGNORE_INDEX else torch.long
        self.val_key = "val_dice" if num_classes == 2 else "val_miou"
        self.label_stats: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    def _setup_data(self, size: torch.Size | tuple[int, int]) -> None:
        """Crop, crops per image and the noise mode, from the images' size and the label spec."""
        self.crop = _crop_size(self.config.crop, size)
        self.repeats = _repeats(self.config, size)
        spec = parse_spec(self.config.label_spec)
        self.noisy = str(spec) != "clean"
        self.online = self.config.noise_mode == "online" and spec.stochastic

    # ------------------------------------------------------------------------------------- labels
    def _draw(self) -> torch.Tensor:
        if not self.noisy:
            return self.clean
        return apply_spec(self.clean, self.config.label_spec, generator=self.g_noise, num_classes=self.num_classes)

    def _set_first(self, labels: torch.Tensor) -> None:
        self.first_labels = labels
        self.label_stats = _label_stats(self.reference, labels, self.num_classes)

    def draw_offline_labels(self) -> None:
        """The one draw of an offline run (or of a spec that draws nothing); online runs draw per epoch."""
        if not self.online:
            self.targets = self._draw()
            self._set_first(self.targets)

    # ------------------------------------------------------------------------------------- one epoch
    def epoch(self, epoch: int, emit: Progress) -> dict[str, Any]:
        started = time.perf_counter()
        if self.online:
            self.targets = self._draw()
            if epoch == 1:
                self._set_first(self.targets)
        cfg = self.config
        seen = self.n * self.repeats
        batch = min(cfg.batch_size, seen)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.model.train()
        order = torch.cat([torch.randperm(self.n, generator=self.g_data) for _ in range(self.repeats)]).to(self.dev)
        batches = shard(order, batch)  # all of them in one process; this process's share under torchrun
        loss_sum = torch.zeros((), device=self.dev, dtype=torch.float64)
        count = torch.zeros((), device=self.dev, dtype=torch.float64)
        with _forked_rng(self.dev, spawn_seed(self.g_data)):
            for step, (index, (x, y)) in enumerate(self._steps(batches)):
                loss = self._step(x, y)
                loss_sum += loss.detach().double() * index.numel()
                count += index.numel()
                emit({"event": "step", "epoch": epoch, "step": step + 1, "steps": len(batches)})
        self.scheduler.step()
        train_loss = float(all_sum(loss_sum)) / float(all_sum(count))
        if not math.isfinite(train_loss):
            raise ParameterError(f"training diverged: the train loss is {train_loss} in epoch {epoch}; "
                                 "lower `lr` or set `grad_clip`")
        validate = epoch % cfg.val_every == 0 or epoch == cfg.epochs
        scores = self._validate() if validate else {}
        row = {"epoch": epoch, "train_loss": train_loss, self.val_key: scores.get(self.val_key),
               "lr": lr, "seconds": time.perf_counter() - started}
        if self.num_classes == 2:
            row["val_dice_best"] = scores.get("val_dice_best")
        self.history.append(row)
        return row

    def _steps(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
        """Each step's index and its batch (:meth:`_batch`)."""
        return ((index, self._batch(index)) for index in batches)

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of one step, cropped and flipped on the device."""
        x, y = self.images.index_select(0, index), self.targets.index_select(0, index)
        if self.crop is not None or self.config.flip:
            x, y = random_crop_flip(x, y, self.crop, flip=self.config.flip, generator=self.g_data)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.long()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One forward, backward and optimizer step; returns the loss."""
        with self.precision.autocast():
            logits = self.net(x)
        loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss, self.optimizer)
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.precision.step(self.optimizer)
        return loss

    def _validate(self) -> dict[str, float]:
        """The learning curve's validation scores: binary Dice at threshold 0.5 (``val_dice``) and at the best of
        ``num_thresholds`` thresholds (``val_dice_best``: what the ``val`` protocol would pick, so a sparse label
        whose probabilities sit near its sampling rate is not read as collapsed), or mIoU (multi-class); empty
        without a validation set."""
        if self.val_images is None:
            return {}
        probs = predict(self.model, self.val_images, batch_size=self.config.batch_size, tile=self.config.tile)
        if self.num_classes == 2:
            thresholds = sorted({0.5, *torch.linspace(0, 1, self.config.num_thresholds + 2)[1:-1].tolist()})
            dice = binary_scores(confusion_at_thresholds(probs, self.val_labels, thresholds).sum(dim=0))["dice"]
            at_half = float(dice[thresholds.index(0.5)])
            if self.label_stats.get("inverts", False):
                inverted = confusion_at_thresholds(1 - probs, self.val_labels, thresholds).sum(dim=0)
                dice = torch.maximum(dice, binary_scores(inverted)["dice"])
            return {"val_dice": at_half, "val_dice_best": float(dice.max())}
        return {"val_miou": float(multiclass_report(probs, self.val_labels, self.num_classes)["miou"])}

    # ------------------------------------------------------------------------------------- saving
    def save(self, path: Path, epoch: int) -> None:
        """Write the resume checkpoint atomically."""
        state = {
            "format": _CHECKPOINT_FORMAT,
            "format_version": _FORMAT_VERSION,
            "mstool_version": __version__,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "generators": {"data": self.g_data.get_state(), "noise": self.g_noise.get_state()},
            "noisy_labels": None if self.online or self.targets is None else _compact(self.targets),
            "first_labels": _compact(self.first_labels),
            "label_stats": self.label_stats,
            "history": self.history,
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load(self, path: Path) -> int:
        """Restore everything from a checkpoint; returns its epoch."""
        ckpt = _read(path, map_location=self.dev)
        if ckpt.get("format") != _CHECKPOINT_FORMAT:
            raise FileReadError(f"{path}: not an mstool training checkpoint (format {ckpt.get('format')!r})")
        self._check_compatible(path, ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.g_data.set_state(ckpt["generators"]["data"].cpu())
        self.g_noise.set_state(ckpt["generators"]["noise"].cpu())
        self.first_labels = ckpt["first_labels"].to(self.dev, self.label_dtype)
        saved = ckpt["noisy_labels"]
        self.targets = self.clean if saved is None else saved.to(self.dev, self.label_dtype)
        self.label_stats = dict(ckpt["label_stats"])
        self.history = [dict(r) for r in ckpt["history"]]
        return int(ckpt["epoch"])

    def _check_compatible(self, path: Path, ckpt: dict[str, Any]) -> None:
        again = "; use another output folder (or resume=False in Python) to start again"
        now, then = self.config.to_dict(), dict(ckpt.get("config", {}))
        for key, value in now.items():
            if key not in _RESUME_FREE and then.get(key) != value:
                raise ParameterError(f"{path}: the checkpoint was made with `{key}` = {then.get(key)!r}, "
                                     f"not {value!r}{again}")
        if ckpt.get("num_classes") != self.num_classes:
            raise ParameterError(f"{path}: the checkpoint was made with `num_classes` = {ckpt.get('num_classes')}, "
                                 f"not {self.num_classes}{again}")
        if not _same_fingerprint(ckpt.get("fingerprint", {}), self.fingerprint):
            raise ParameterError(f"{path}: the checkpoint was made with other training or validation data "
                                 f"(shapes or content differ){again}")

    def save_model(self, path: Path) -> None:
        """Write the final weights and the settings that rebuild the network."""
        meta = _model_meta(self.config, self.in_channels, self.num_classes, self.loss_name, self.label_stats,
                           self.history)
        with atomic_path(path) as tmp:
            torch.save({**meta, "state_dict": _cpu_state(self.model)}, tmp)


# ------------------------------------------------------------------------------------------- load_model
def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained network from ``model.pt`` (or from a training ``checkpoint.pt``).

    The file is read with ``torch.load(..., weights_only=True)``: it holds only tensors and plain values.

    Args:
        path: a ``model.pt`` written by :func:`train`, or a ``checkpoint.pt`` (the weights of its epoch).
        device: where to put the network.

    Returns:
        ``(model, meta)``: the network in eval mode, and a dict with ``model`` (name), ``model_options``,
        ``in_channels``, ``num_classes`` (``K`` of the data), ``out_channels``, ``loss``, ``config`` (the
        :class:`TrainConfig` as a dict), ``label_stats`` (see :class:`TrainResult`), ``epochs``, ``history``,
        ``mstool_version``.

    Raises:
        FileMissingError: the file does not exist.
        FileReadError: the file is not a model or checkpoint written by mstool.

    Example:
        >>> from mstool.data import synthesize
        >>> data = synthesize("er", 2, 32, generator=torch.Generator().manual_seed(0))
        >>> cfg = TrainConfig.from_preset("quick", model_options={"base": 4, "depth": 2}, epochs=1, crop=None)
        >>> result = train(cfg, data.images / data.images.amax(), data.labels, out_dir="run-for-load")
        >>> model, meta = load_model(result.model_path)
        >>> meta["model"], meta["num_classes"], meta["epochs"]
        ('unet', 2, 1)
    """
    path = Path(path)
    if not path.is_file():
        raise FileMissingError(f"{path}: model file does not exist")
    blob = _read(path, map_location="cpu")
    kind = blob.get("format")
    if kind == _MODEL_FORMAT:
        meta = {k: v for k, v in blob.items() if k != "state_dict"}
        state = blob["state_dict"]
    elif kind == _CHECKPOINT_FORMAT:
        try:
            config = TrainConfig.from_dict(blob["config"])
        except ParameterError as err:
            raise FileReadError(f"{path}: checkpoint holds an invalid config ({err})") from None
        num_classes = int(blob["num_classes"])
        meta = _model_meta(config, int(blob["in_channels"]), num_classes, config.resolved_loss(num_classes),
                           blob.get("label_stats", {}), blob.get("history", []))
        state = blob["model"]
    else:
        raise FileReadError(f"{path}: not an mstool model or checkpoint (format {kind!r})")
    try:
        model = _build(meta["model"], meta["model_options"], meta["in_channels"], meta["out_channels"],
                       make_generator(0))
        model.load_state_dict(state)
    except (KeyError, RuntimeError, ParameterError) as err:
        raise FileReadError(f"{path}: the weights do not fit the network they describe ({err})") from None
    return model.to(resolve_device(device)).eval(), meta


# ---------------------------------------------------------------------------------------------- helpers
def _as_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config.replace()  # validates again: fields may have been assigned after construction
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    raise ParameterError(f"`config` must be a TrainConfig or a dict of its fields; got {type(config).__name__}")


def _check_data(images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor | None,
                val_labels: torch.Tensor | None, num_classes: int) -> int:
    """Check the training data; return ``num_classes`` as a Python int (it is written to the run's files)."""
    num_classes = check_int(num_classes, "num_classes", low=2, note="2 for binary data")
    pairs = [("train", images, labels)]
    if (val_images is None) != (val_labels is None):
        raise ParameterError("`val_images` and `val_labels` must be given together; got only "
                             + ("`val_images`" if val_labels is None else "`val_labels`"))
    if val_images is not None:
        pairs.append(("val", val_images, val_labels))
    for split, x, y in pairs:
        check_shape(x, f"{split}_images", "N C H W", dtype="float")
        check_labels(y, f"{split}_labels", num_classes=num_classes)
        if y.shape != (x.shape[0], *x.shape[-2:]):
            raise ShapeError(f"`{split}_labels` must be (N, H, W) = ({x.shape[0]}, {x.shape[2]}, {x.shape[3]}) "
                             f"to match `{split}_images`; got ({', '.join(map(str, y.shape))})")
        if x.shape[0] == 0:
            raise ShapeError(f"`{split}_images` must hold at least one image; got an empty batch")
        if x.shape[1] != images.shape[1]:
            raise ShapeError(f"`{split}_images` must have {images.shape[1]} channel(s) like `train_images`; "
                             f"got {x.shape[1]}")
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"`{split}_images` must hold finite values; got NaN or infinite pixels")
    return num_classes


def _out_channels(num_classes: int) -> int:
    """Logit channels: one sigmoid channel for binary data, ``K`` softmax channels otherwise."""
    return 1 if num_classes == 2 else num_classes


def _build(name: str, options: dict[str, Any], in_channels: int, out_channels: int,
           generator: torch.Generator) -> nn.Module:
    """Build a network; torch's constructors draw their default init from the global generator, which is
    forked so that the caller's random state stays as it was."""
    with torch.random.fork_rng(devices=[]):
        return build_model(name, in_channels=in_channels, num_classes=out_channels, options=dict(options),
                           generator=generator)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)


def _repeats(config: TrainConfig, size: torch.Size) -> int:
    """Crops per image and epoch: the image's area in units of ``reference_size**2`` (at least 1)."""
    if config.crop is None or config.reference_size is None:
        return 1
    return max(1, round(size[-2] * size[-1] / config.reference_size ** 2))


def _crop_size(crop: int | None, size: torch.Size) -> tuple[int, int] | None:
    if crop is None:
        return None
    h, w = int(size[0]), int(size[1])
    if crop > h or crop > w:
        warnings.warn(f"`crop` {crop} is larger than the training images ({h} x {w}); cropping to "
                      f"{min(crop, h)} x {min(crop, w)}", MstoolWarning, stacklevel=3)
    return min(crop, h), min(crop, w)


@contextlib.contextmanager
def _forked_rng(dev: torch.device, seed: int) -> Iterator[None]:
    """Seed torch's global generators (CPU, and the training GPU) inside a fork that restores them."""
    index = (dev.index if dev.index is not None else torch.cuda.current_device()) if dev.type == "cuda" else None
    with torch.random.fork_rng(devices=[] if index is None else [index]):
        torch.default_generator.manual_seed(seed)
        if index is not None:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _label_stats(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int) -> dict[str, Any]:
    ntm = noise_transition_matrix(clean, noisy, num_classes)
    det = float(ntm_det(ntm))
    both = (clean != 255) & (noisy != 255)
    labelled = int(both.sum())
    return {
        "ntm": ntm.tolist(),
        "ntm_det": det,
        "inverts": bool(num_classes == 2 and det < 0),
        "labelled_fraction": float((noisy != 255).float().mean()) if noisy.numel() else math.nan,
        "changed_fraction": float(((clean != noisy) & both).sum()) / labelled if labelled else math.nan,
    }


def _fingerprint(images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor | None,
                 val_labels: torch.Tensor | None) -> dict[str, Any]:
    """Shapes and position-weighted sums of the data: a checkpoint resumes only on the data it was made with
    (the weights make a reordered or flipped set differ too)."""
    def weighted(t: torch.Tensor) -> float:
        flat = t.reshape(-1).double()
        w = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64).remainder_(1009).add_(1)
        return float((flat * w).sum())

    def one(x: torch.Tensor | None, y: torch.Tensor | None) -> list[Any] | None:
        if x is None or y is None:
            return None
        return [list(x.shape), float(x.double().sum()), weighted(x), int(y.long().sum()), weighted(y)]

    return {"train": one(images, labels), "val": one(val_images, val_labels)}


def _same_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for key in ("train", "val"):
        x, y = a.get(key), b.get(key)
        if (x is None) != (y is None):
            return False
        if x is None:
            continue
        if len(x) != len(y) or list(x[0]) != list(y[0]):
            return False
        if not all(math.isclose(float(u), float(v), rel_tol=1e-6, abs_tol=1e-6) for u, v in zip(x[1:], y[1:])):
            return False
    return True


def _compact(labels: torch.Tensor) -> torch.Tensor:
    """Labels as uint8 on the CPU (classes 0..254 and 255 = ignore fit), 8 times smaller than int64."""
    fits = labels.numel() == 0 or (int(labels.min()) >= 0 and int(labels.max()) <= 255)
    return labels.to("cpu", torch.uint8) if fits else labels.cpu()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def _model_meta(config: TrainConfig, in_channels: int, num_classes: int, loss: str, label_stats: dict[str, Any],
                history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": _MODEL_FORMAT,
        "format_version": _FORMAT_VERSION,
        "mstool_version": __version__,
        "model": config.model,
        "model_options": dict(config.model_options),
        "in_channels": in_channels,
        "num_classes": num_classes,
        "out_channels": _out_channels(num_classes),
        "loss": loss,
        "config": config.to_dict(),
        "label_stats": dict(label_stats),
        "epochs": len(history),
        "history": [dict(r) for r in history],
    }


def _read(path: Path, *, map_location: str | torch.device) -> dict[str, Any]:
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds (pickle, zip, runtime) for a damaged file
        raise FileReadError(f"{path}: cannot be read as an mstool model or checkpoint ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); delete it to start again") from None
    if not isinstance(blob, dict):
        raise FileReadError(f"{path}: not an mstool model or checkpoint (holds a {type(blob).__name__})")
    return blob


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files left by a process killed while writing (``atomic_path`` names them ``.NAME.*.tmp.pt``)."""
    for name in (CHECKPOINT_NAME, MODEL_NAME, CURVES_NAME):
        stem, suffix = name.rsplit(".", 1)
        for stale in out.glob(f".{stem}.*.tmp.{suffix}"):
            stale.unlink(missing_ok=True)


def _write_curves(path: Path, history: list[dict[str, Any]], val_key: str) -> None:
    columns = ["epoch", "train_loss", val_key] + (["val_dice_best"] if val_key == "val_dice" else []) + ["lr",
                                                                                                         "seconds"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in history:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
