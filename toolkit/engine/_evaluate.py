"""Evaluation of a trained network: the threshold protocols with polarity, mIoU, and the linear feature probe.

Legend: N batch · C channels · K classes · F feature channels · P probe pixels · H, W pixels.

Binary networks are scored by :func:`mstool.metrics.evaluate_binary` (``val``: threshold and polarity chosen
on the validation set; ``oracle``: the best threshold on the test set, the paper's protocol; ``fixed``: 0.5),
multi-class networks by :func:`mstool.metrics.multiclass_report` (arg-max classes).

Polarity. Labels that swap the classes (a flip with ``f + b > 1``: the noise transition matrix of the training
labels against the clean ones has a negative determinant) teach a network the inverted map. Inversion is
allowed only for such a network, by default read from the ``label_stats`` that :func:`~mstool.engine.train`
stores with the model, and polarity -1 is then chosen on the validation set, never on the test set.

Feature quality (the paper's feature-extraction experiment): the network is frozen and a logistic probe, one
1x1 convolution on ``model.features(x)`` (bilinearly upsampled to the image size when
``model.feature_stride > 1``), is fitted on the CLEAN training labels; its test Dice measures what the
features hold, whatever labels the network was trained on.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import IGNORE_INDEX
from .._check import check_int, check_labels, check_range, check_shape
from ..device import resolve_device
from ..errors import DataError, MstoolWarning, ParameterError, ShapeError
from ..metrics import evaluate_binary, multiclass_report
from ._predict import predict
from ._trainer import TrainResult, load_model

__all__ = ["EvalResult", "LinearProbe", "evaluate", "fit_probe"]


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: one flat JSON-friendly dict (see :func:`evaluate`).
        test_probs: ``(N, 1, H, W)`` foreground probabilities or ``(N, K, H, W)`` softmax of the test images,
            on the device of ``test_images`` (for example panels and score-map files); of a test Dataset, the
            first 8 maps of the first item's size, on the CPU.
        protocols: the binary :class:`~mstool.metrics.ProtocolResult` (``as_rows()`` gives a table), or None
            for multi-class data.
        probe_probs: the probe's test maps, or None when no probe was fitted (or the test set is a Dataset).
    """

    metrics: dict[str, Any]
    test_probs: torch.Tensor = field(repr=False)
    protocols: Any = field(default=None, repr=False)
    probe_probs: torch.Tensor | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------- evaluate
def evaluate(
    model_or_path: nn.Module | TrainResult | str | os.PathLike,
    test_images: torch.Tensor | torch.utils.data.Dataset,
    test_labels: torch.Tensor | None = None,
    *,
    val_images: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    train_images: torch.Tensor | None = None,
    train_labels: torch.Tensor | None = None,
    allow_inversion: bool | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    num_thresholds: int = 50,
    probe: bool = True,
    probe_steps: int = 100,
    probe_pixels: int = 2**18,
    batch_size: int = 8,
    tile: int | None = None,
    overlap: int | None = None,
    generator: torch.Generator | None = None,
) -> EvalResult:
    """Score a network on a test set (threshold and polarity from the validation set) and probe its features.

    Args:
        model_or_path: a network, the :class:`~mstool.engine.TrainResult` of :func:`~mstool.engine.train`, or
            a ``model.pt`` / ``checkpoint.pt`` it wrote.
        test_images: ``(N, C, H, W)`` float images, ``N >= 1``; or a Dataset of ``{"image": (C, H, W), "mask":
            (H, W)}`` items (:class:`mstool.data.SegmentationDataset`), read item by item for data larger than
            memory: the other sets are then Datasets too, every ``*_labels`` is None, binary thresholds sit on
            the edges of 1024 bins (:class:`mstool.metrics.ScoreHistogram`), the probe is fitted on 64 training
            items drawn at random, ``test_probs`` keeps the first 8 test maps and ``probe_probs`` is None.
        test_labels: ``(N, H, W)`` int clean labels, classes ``0..K-1``, 255 ignored (None with a Dataset).
        val_images: ``(M, C, H', W')`` validation images (for the ``val`` protocol and the polarity), or None.
        val_labels: ``(M, H', W')`` clean validation labels, given together with ``val_images``.
        train_images: ``(L, C, H'', W'')`` images the probe is fitted on (the training images), or None.
        train_labels: ``(L, H'', W'')`` their CLEAN labels, given together with ``train_images``.
        allow_inversion: let the ``val`` protocol choose polarity -1 (binary only). ``None`` allows it exactly
            when the model's training labels invert the classes (``label_stats["inverts"]`` of a model file or
            TrainResult; a plain network: not allowed).
        num_classes: ``K``; ``None`` reads it from the model file (or a network's ``num_classes``: 1 output
            channel means ``K = 2``).
        device: where the network runs; ``None``: a network's own device, the CPU for a file. A network given
            with another ``device`` is moved there.
        num_thresholds: thresholds swept by the protocols.
        probe: fit the linear feature probe (needs ``train_images`` and ``train_labels``; otherwise
            ``probe/absent`` says why it did not run).
        probe_steps: L-BFGS iterations of the probe.
        probe_pixels: at most this many labelled training pixels, drawn at random, fit the probe.
        batch_size: images (or tiles) per forward pass.
        tile: predict in ``tile x tile`` windows (see :func:`~mstool.engine.predict`), or whole images.
        overlap: overlap of the windows (``None``: a quarter of ``tile``).
        generator: CPU generator for the probe's pixel draw (``None``: a fresh one).

    Returns:
        An :class:`EvalResult`. ``metrics`` holds ``num_classes``, ``n_test``, ``n_val``, ``allow_inversion``,
        ``inversion_source`` (``"argument"``, ``"training labels"`` or ``"default"``), ``label_ntm_det``
        (None when unknown); for binary data the protocol entries of
        :meth:`~mstool.metrics.ProtocolResult.as_dict` (``val/dice``, ``val/polarity``, ``oracle/dice``,
        ``fixed/dice`` ...; ``val/absent`` without a validation set); for multi-class data ``argmax/miou``,
        ``argmax/iou_c0`` ... (:func:`~mstool.metrics.multiclass_report`); and the probe's ``probe/dice``,
        ``probe/iou``, ``probe/auc``, ``probe/threshold``, ``probe/protocol`` (``val`` with a validation
        set, else ``fixed``), ``probe/pixels`` (binary) or ``probe/miou``, ``probe/mdice``,
        ``probe/pixel_accuracy`` (multi-class), or ``probe/absent``.

    Raises:
        ShapeError, ParameterError: inputs of the wrong shape or values; sets given without their labels.
        FileMissingError, FileReadError: a model file that is missing or unreadable.

    Example:
        >>> net = nn.Conv2d(1, 1, 1)  # a stand-in network: logit = image
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1.0), net.bias.zero_()
        >>> images = torch.tensor([[-2.0, -1.0], [1.0, 2.0]]).view(1, 1, 2, 2)
        >>> labels = torch.tensor([[[0, 0], [1, 1]]])
        >>> result = evaluate(net, images, labels, val_images=images, val_labels=labels, probe=False)
        >>> result.metrics["val/dice"], result.metrics["val/polarity"], result.metrics["probe/absent"]
        (1.0, 1, 'probe=False')
    """
    model, meta = _resolve_model(model_or_path, device)
    num_classes = _resolve_classes(model, meta, num_classes)
    lazy = isinstance(test_images, torch.utils.data.Dataset)
    if lazy:
        _check_items(test_labels, val_images, val_labels, train_images, train_labels)
    else:
        _check_class_count(test_labels, num_classes)
        _check_sets(test_images, test_labels, val_images, val_labels, train_images, train_labels, num_classes)
    allow_inversion, source, det = _inversion(meta, allow_inversion)
    binary = num_classes == 2
    metrics: dict[str, Any] = {
        "num_classes": num_classes,
        "n_test": len(test_images),
        "n_val": 0 if val_images is None else len(val_images),
        "allow_inversion": allow_inversion and binary,
        "inversion_source": source,
        "label_ntm_det": None if det is None else float(det),
    }
    if lazy:
        from ._lazy_eval import evaluate_items  # it builds on this module's probe and model helpers

        return evaluate_items(model, metrics, test_images, val_images, train_images, allow_inversion=allow_inversion,
                              num_thresholds=num_thresholds, probe=probe, probe_steps=probe_steps,
                              probe_pixels=probe_pixels, batch_size=batch_size, tile=tile, overlap=overlap,
                              generator=generator)
    run = {"batch_size": batch_size, "tile": tile, "overlap": overlap}
    test_probs = predict(model, test_images, **run)
    val_probs = None if val_images is None else predict(model, val_images, **run).to(test_probs.device)
    protocols = None
    if binary:
        protocols = _binary(test_probs, test_labels, val_probs, val_labels, num_thresholds, allow_inversion)
        metrics.update(protocols.as_dict())
    else:
        report = _multiclass(test_probs, test_labels, num_classes)
        metrics.update({f"argmax/{k}": v for k, v in report.items()})

    probe_probs = None
    absent = probe_absent(model, probe, train_images)
    if absent:
        metrics["probe/absent"] = absent
    else:
        linear = fit_probe(model, train_images, train_labels, num_classes=num_classes, steps=probe_steps,
                           max_pixels=probe_pixels, batch_size=batch_size, generator=generator)
        probe_probs = predict(linear, test_images, **run)
        probe_val = None if val_images is None else predict(linear, val_images, **run).to(probe_probs.device)
        scored = _multiclass(probe_probs, test_labels, num_classes) if not binary else \
            _binary(probe_probs, test_labels, probe_val, val_labels, num_thresholds, False)
        metrics.update(probe_metrics(scored, num_classes, linear.pixels))
    return EvalResult(metrics=metrics, test_probs=test_probs, protocols=protocols, probe_probs=probe_probs)


# ------------------------------------------------------------------------------------------------ probe
class LinearProbe(nn.Module):
    """A frozen network's features through one 1x1 convolution (a logistic probe).

    Attributes:
        model: the frozen network (its ``features`` method is used).
        conv: the ``1 x 1`` convolution, ``F -> 1`` (binary) or ``F -> K`` channels.
        pixels: how many training pixels it was fitted on.

    Shapes:
        ``forward``: ``(N, C, H, W)`` -> logits ``(N, 1 or K, H, W)``.
    """

    def __init__(self, model: nn.Module, conv: nn.Conv2d, *, pixels: int = 0):
        super().__init__()
        self.model = model
        self.conv = conv
        self.pixels = pixels
        self.in_channels = getattr(model, "in_channels", None)
        self.num_classes = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_features(self.model, x))


def fit_probe(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int = 2,
    steps: int = 100,
    max_pixels: int = 2**18,
    weight_decay: float = 1e-4,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
) -> LinearProbe:
    """Fit a logistic 1x1-convolution probe on a frozen network's features.

    The features of the labelled pixels (at most ``max_pixels`` of them, drawn uniformly at random) are pooled
    into one ``(P, F)`` matrix, standardised, and a logistic regression (binary: one sigmoid output; else a
    softmax over ``K``) with an L2 penalty ``weight_decay * |w|^2`` is fitted by full-batch L-BFGS from zero
    weights, so the fit is deterministic given the pixels. The standardisation is folded into the returned
    convolution. The network is put in eval mode and is not changed.

    Args:
        model: a network with ``features(x)`` ``(N, F, H / s, W / s)`` (``s = model.feature_stride``).
        images: ``(N, C, H, W)`` float images.
        labels: ``(N, H, W)`` int CLEAN labels, classes ``0..K-1``, 255 ignored.
        num_classes: ``K >= 2``.
        steps: L-BFGS iterations, ``>= 1``.
        max_pixels: the most labelled pixels used, ``>= 1``.
        weight_decay: the L2 penalty, ``>= 0``.
        batch_size: images per feature pass.
        generator: CPU generator for the pixel draw (used only when there are more than ``max_pixels``).

    Returns:
        A :class:`LinearProbe` on the network's device, in eval mode.

    Raises:
        ShapeError: mismatched or malformed inputs.
        ParameterError: a bad setting or label value.
        DataError: no labelled pixel.

    Example:
        >>> from mstool.models import build_model
        >>> net = build_model("unet", options={"base": 4, "depth": 2}, generator=torch.Generator().manual_seed(0))
        >>> images = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
        >>> labels = (images[:, 0] > 0).long()
        >>> probe = fit_probe(net, images, labels, steps=20)
        >>> probe(images).shape, probe.pixels
        (torch.Size([2, 1, 16, 16]), 512)
    """
    _check_set("train", images, labels, num_classes, names=("images", "labels"))
    steps, max_pixels, batch_size = (check_int(steps, "steps", low=1), check_int(max_pixels, "max_pixels", low=1),
                                      check_int(batch_size, "batch_size", low=1))
    check_range(weight_decay, "weight_decay", 0)
    dev = _model_device(model)
    x_all, y_all = _probe_pixels(model, images, labels, max_pixels, batch_size, generator, dev)
    return fit_linear_probe(model, x_all, y_all, num_classes=num_classes, steps=steps, weight_decay=weight_decay)


def fit_linear_probe(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, *, num_classes: int, steps: int,
                     weight_decay: float) -> LinearProbe:
    """The logistic fit of :func:`fit_probe` on features ``(P, F)`` and labels ``(P,)`` already drawn."""
    dev = x_all.device
    mean, std = x_all.mean(dim=0), x_all.std(dim=0, unbiased=False).clamp_min(1e-6)
    z = (x_all - mean) / std
    out = 1 if num_classes == 2 else num_classes
    w = torch.zeros(out, z.shape[1], device=dev, requires_grad=True)
    b = torch.zeros(out, device=dev, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = z @ w.T + b
        if out == 1:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], y_all.float())
        else:
            loss = F.cross_entropy(logits, y_all)
        loss = loss + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    conv = nn.Conv2d(z.shape[1], out, 1).to(dev)
    with torch.no_grad():
        scale = w.detach() / std
        conv.weight.copy_(scale[:, :, None, None])
        conv.bias.copy_(b.detach() - scale @ mean)
    conv.requires_grad_(False)
    return LinearProbe(model, conv, pixels=int(y_all.numel())).eval()


# ---------------------------------------------------------------------------------------------- helpers
def _resolve_model(model_or_path: nn.Module | TrainResult | str | os.PathLike,
                   device: str | torch.device | None) -> tuple[nn.Module, dict[str, Any]]:
    meta: dict[str, Any] = {}
    model = model_or_path
    if isinstance(model_or_path, TrainResult):
        model = model_or_path.model
        meta = {"num_classes": model_or_path.num_classes, "label_stats": model_or_path.label_stats}
    if isinstance(model, nn.Module):
        if device is not None:
            model.to(resolve_device(device))
        return model, meta
    if isinstance(model_or_path, str | os.PathLike):
        return load_model(Path(model_or_path), device="cpu" if device is None else device)
    raise ParameterError("`model_or_path` must be a network, a TrainResult or a model file; "
                         f"got {type(model_or_path).__name__}")


def _resolve_classes(model: nn.Module, meta: dict[str, Any], num_classes: int | None) -> int:
    known = meta.get("num_classes")
    if known is None:
        out = getattr(model, "num_classes", None)
        if out is None and isinstance(model, nn.Conv2d):
            out = model.out_channels
        known = None if out is None else (2 if out == 1 else int(out))
    if num_classes is None:
        if known is None:
            raise ParameterError("`num_classes` must be given: the network does not say how many classes it has")
        return known
    num_classes = check_int(num_classes, "num_classes", low=2, note="2 for binary data")
    if known is not None and known != num_classes:
        raise ParameterError(f"`num_classes` is {num_classes} but the network was made for {known} classes")
    return num_classes


def _check_set(split: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
               names: tuple[str, str] | None = None) -> None:
    image_name, label_name = names or (f"{split}_images", f"{split}_labels")
    check_shape(images, image_name, "N C H W", dtype="float")
    check_labels(labels, label_name, num_classes=num_classes)
    if labels.shape != (images.shape[0], *images.shape[-2:]):
        raise ShapeError(f"`{label_name}` must be (N, H, W) = ({images.shape[0]}, {images.shape[2]}, "
                         f"{images.shape[3]}) to match `{image_name}`; got ({', '.join(map(str, labels.shape))})")
    if images.shape[0] == 0:
        raise ShapeError(f"`{image_name}` must hold at least one image; got an empty batch")


def _check_class_count(test_labels: torch.Tensor | None, num_classes: int) -> None:
    """The network and the test labels must speak of the same classes: more classes in the labels is an error
    (a binary network scored on VOC masks), a binary set scored by a multi-class network a warning."""
    if not isinstance(test_labels, torch.Tensor) or not test_labels.numel() or test_labels.is_floating_point():
        return  # _check_sets says what is wrong with it
    valid = test_labels[test_labels != IGNORE_INDEX]
    if not valid.numel():
        return
    hi = int(valid.max())
    if hi >= num_classes:
        raise DataError(f"the network predicts {num_classes} classes (0..{num_classes - 1}) but the test labels hold "
                        f"class {hi}: evaluate it on data with the classes it was trained on")
    if num_classes > 2 and hi <= 1:
        warnings.warn(f"the network predicts {num_classes} classes but the test labels hold 0 and 1 only: is this "
                      "the data it was trained for?", MstoolWarning, stacklevel=3)


def _check_sets(test_images: torch.Tensor, test_labels: torch.Tensor, val_images: torch.Tensor | None,
                val_labels: torch.Tensor | None, train_images: torch.Tensor | None, train_labels: torch.Tensor | None,
                num_classes: int) -> None:
    if test_labels is None:
        raise ParameterError("`test_labels` must be given with test image tensors (only a Dataset carries its own)")
    _check_set("test", test_images, test_labels, num_classes)
    if (val_images is None) != (val_labels is None):
        raise ParameterError("`val_images` and `val_labels` must be given together")
    if (train_images is None) != (train_labels is None):
        raise ParameterError("`train_images` and `train_labels` must be given together")
    if val_images is not None:
        _check_set("val", val_images, val_labels, num_classes)
    if train_images is not None:
        _check_set("train", train_images, train_labels, num_classes)


def _check_items(test_labels: Any, val_images: Any, val_labels: Any, train_images: Any, train_labels: Any) -> None:
    """A test Dataset carries its own masks, and so must the other sets."""
    for name, value in (("test_labels", test_labels), ("val_labels", val_labels), ("train_labels", train_labels)):
        if value is not None:
            raise ParameterError(f"`{name}` must be None when the test images are a Dataset: its items carry their "
                                 f"masks; got a {type(value).__name__}")
    for name, value in (("val_images", val_images), ("train_images", train_images)):
        if value is not None and not isinstance(value, torch.utils.data.Dataset):
            raise ParameterError(f"`{name}` must be a Dataset (or None) when the test images are one; got a "
                                 f"{type(value).__name__}")


def _inversion(meta: dict[str, Any], allow_inversion: bool | None) -> tuple[bool, str, float | None]:
    """Whether polarity -1 may be chosen, where that was decided, and the training labels' NTM determinant."""
    stats = meta.get("label_stats") or {}
    if allow_inversion is None:
        return bool(stats.get("inverts", False)), "training labels" if "inverts" in stats else "default", \
            stats.get("ntm_det")
    return bool(allow_inversion), "argument", stats.get("ntm_det")


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model.features(x)`` at the image size (bilinear upsampling when the stride is above 1)."""
    f = model.features(x)
    if f.shape[-2:] != x.shape[-2:]:
        f = F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return f.float()


def _probe_pixels(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, max_pixels: int, batch_size: int,
                  generator: torch.Generator | None, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(P, F)`` and labels ``(P,)`` of up to ``max_pixels`` random labelled pixels."""
    flat = labels.reshape(-1).cpu()
    chosen = torch.nonzero(flat != 255).flatten()
    if chosen.numel() == 0:
        raise DataError("`labels` must hold at least one labelled pixel to fit the probe on; every pixel is 255")
    if chosen.numel() > max_pixels:
        pick = torch.randperm(chosen.numel(), generator=generator)[:max_pixels]
        chosen = chosen[pick.sort().values]
    per_image = labels.shape[-2] * labels.shape[-1]
    was_training = model.training
    model.eval()
    feats = []
    try:
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                stop = min(start + batch_size, images.shape[0])
                lo, hi = start * per_image, stop * per_image
                local = chosen[(chosen >= lo) & (chosen < hi)] - lo
                if local.numel() == 0:
                    continue
                f = _features(model, images[start:stop].to(dev))
                f = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
                feats.append(f[local.to(dev)])
    finally:
        model.train(was_training)
    return torch.cat(feats).clone(), flat[chosen].to(dev)


def _binary(test_probs: torch.Tensor, test_labels: torch.Tensor, val_probs: torch.Tensor | None,
            val_labels: torch.Tensor | None, num_thresholds: int, allow_inversion: bool) -> Any:
    labels = test_labels.to(test_probs.device)
    vl = None if val_labels is None else val_labels.to(test_probs.device)
    return evaluate_binary(test_probs, labels, val_probs=val_probs, val_labels=vl, num_thresholds=num_thresholds,
                           allow_inversion=allow_inversion)


def _multiclass(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    return multiclass_report(probs, labels.to(probs.device), num_classes)


def probe_absent(model: nn.Module, probe: bool, train: Any) -> str | None:
    """Why the feature probe cannot run, or None when it can."""
    if not probe:
        return "probe=False"
    if train is None:
        return "no training images and clean labels were given to fit the probe on"
    if not hasattr(model, "features"):
        return f"the network ({type(model).__name__}) has no features() method"
    return None


def probe_metrics(result: Any, num_classes: int, pixels: int) -> dict[str, Any]:
    """The ``probe/*`` entries from the probe's :class:`~mstool.metrics.ProtocolResult` (binary; its ``val``
    protocol when it ran, else ``fixed``) or its multi-class report."""
    if num_classes != 2:
        return {"probe/miou": result["miou"], "probe/mdice": result["mdice"],
                "probe/pixel_accuracy": result["pixel_accuracy"], "probe/pixels": pixels}
    name = "val" if "val" in result.entries else "fixed"
    entry = result.entries[name].metrics
    return {"probe/dice": entry["dice"], "probe/iou": entry["iou"], "probe/auc": entry["auc"],
            "probe/threshold": entry["threshold"], "probe/protocol": name, "probe/pixels": pixels}
