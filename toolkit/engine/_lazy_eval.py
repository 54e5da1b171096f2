"""Evaluation on datasets read item by item: test, validation and probe sets of a folder too large to hold.

Legend: N batch · C channels · K classes · F feature channels · P probe pixels · H, W pixels.

:func:`mstool.engine.evaluate` takes this path when its test images are a Dataset of ``{"image", "mask"}``
items (:class:`mstool.data.SegmentationDataset`). Each set is read once, in batches of consecutive items of one
size (a folder of mixed sizes is fine), and counted as it is predicted: binary maps into
:class:`mstool.metrics.ScoreHistogram` s, multi-class predictions into per-image confusion matrices, so memory
holds a batch, the model and about 8 kB of counts per image. What differs from the tensor path, and why:

- binary thresholds sit on the histogram's bin edges (moved down by less than 1/1024 from the tensor path's grid;
  :mod:`mstool.metrics` says what that changes);
- the feature probe is fitted on :data:`PROBE_ITEMS` training items drawn at random, an equal share of
  ``probe_pixels`` from each, instead of pixels drawn from the whole split (which would mean reading it all);
- the result's ``test_probs`` holds the maps of the first ``keep`` test items of the first item's size, and
  ``probe_probs`` is None.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import DataError, ShapeError
from ..metrics import ScoreHistogram, confusion_matrix, evaluate_binary_histograms, multiclass_report_from_confusion
from ._evaluate import (
    EvalResult,
    LinearProbe,
    _model_device,
    _probe_pixels,
    fit_linear_probe,
    probe_absent,
    probe_metrics,
)
from ._lazy import _item, batches
from ._predict import predict

__all__: list[str] = []

PROBE_ITEMS = 64
"""Training items a lazy evaluation draws to fit the feature probe on."""


class _Counts:
    """One network's maps of one set, counted batch by batch."""

    def __init__(self, num_classes: int, size: int) -> None:
        self.num_classes = num_classes
        self.histogram = ScoreHistogram(capacity=max(1, size)) if num_classes == 2 else None
        self.confusion: list[torch.Tensor] = []

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        if self.histogram is not None:
            self.histogram.update(probs, labels)
        else:
            self.confusion.append(confusion_matrix(probs, labels, self.num_classes, reduction="none").cpu())

    def report(self) -> dict[str, Any]:
        return multiclass_report_from_confusion(torch.cat(self.confusion))


def evaluate_items(
    model: nn.Module,
    metrics: dict[str, Any],
    test: torch.utils.data.Dataset,
    val: torch.utils.data.Dataset | None,
    train: torch.utils.data.Dataset | None,
    *,
    allow_inversion: bool,
    num_thresholds: int,
    probe: bool,
    probe_steps: int,
    probe_pixels: int,
    batch_size: int,
    tile: int | None,
    overlap: int | None,
    generator: torch.Generator | None,
    keep: int = 8,
) -> EvalResult:
    """:func:`mstool.engine.evaluate` on Datasets, ``metrics`` holding the entries it has already filled."""
    if len(test) == 0:
        raise ShapeError("`test_images` must hold at least one item; got an empty Dataset")
    k = metrics["num_classes"]
    absent = probe_absent(model, probe, train)
    linear = None if absent else fit_probe_items(model, train, num_classes=k, steps=probe_steps,
                                                 max_pixels=probe_pixels, generator=generator)
    nets = {"model": model, **({"probe": linear} if linear is not None else {})}
    run = {"batch_size": batch_size, "tile": tile, "overlap": overlap}
    kept: list[torch.Tensor] = []
    test_counts = _count(nets, test, k, run, kept, keep)
    val_counts = None if val is None else _count(nets, val, k, run)
    protocols = None
    if k == 2:
        protocols = _protocols("model", test_counts, val_counts, num_thresholds, allow_inversion)
        metrics.update(protocols.as_dict())
    else:
        metrics.update({f"argmax/{key}": v for key, v in test_counts["model"].report().items()})
    if absent:
        metrics["probe/absent"] = absent
    else:
        scored = test_counts["probe"].report() if k != 2 else \
            _protocols("probe", test_counts, val_counts, num_thresholds, False)
        metrics.update(probe_metrics(scored, k, linear.pixels))
    return EvalResult(metrics=metrics, test_probs=torch.cat(kept), protocols=protocols, probe_probs=None)


def _protocols(name: str, test: dict[str, _Counts], val: dict[str, _Counts] | None, num_thresholds: int,
               allow_inversion: bool) -> Any:
    return evaluate_binary_histograms(test[name].histogram, val=None if val is None else val[name].histogram,
                                      num_thresholds=num_thresholds, allow_inversion=allow_inversion)


def _count(nets: dict[str, nn.Module], dataset: torch.utils.data.Dataset, num_classes: int, run: dict[str, Any],
           kept: list[torch.Tensor] | None = None, keep: int = 0) -> dict[str, _Counts]:
    """Each network's maps of ``dataset`` counted; the model's first ``keep`` maps (of one size) put in ``kept``."""
    counts = {name: _Counts(num_classes, len(dataset)) for name in nets}
    dev = _model_device(nets["model"])
    for images, masks in batches(dataset, run["batch_size"]):
        images, masks = images.to(dev, torch.float32), masks.to(dev, torch.long)
        for name, net in nets.items():
            probs = predict(net, images, **run)
            counts[name].update(probs, masks)
            room = keep - sum(p.shape[0] for p in kept or [])
            if name == "model" and kept is not None and room > 0 and (not kept or probs.shape[1:] == kept[0].shape[1:]):
                kept.append(probs[:room].cpu())
    return counts


def fit_probe_items(model: nn.Module, dataset: torch.utils.data.Dataset, *, num_classes: int, steps: int,
                    max_pixels: int, items: int = PROBE_ITEMS, weight_decay: float = 1e-4,
                    generator: torch.Generator | None = None) -> LinearProbe:
    """:func:`mstool.engine.fit_probe` on ``items`` training items drawn at random, up to
    ``ceil(max_pixels / items)`` labelled pixels drawn from each.

    Raises:
        DataError: the drawn items hold no labelled pixel.
    """
    dev = _model_device(model)
    chosen = torch.randperm(len(dataset), generator=generator)[:items].sort().values.tolist()
    share = -(-max_pixels // max(1, len(chosen)))
    feats, labels = [], []
    for i in chosen:
        image, mask = _item(dataset, i)
        if bool((mask != 255).any()):
            x, y = _probe_pixels(model, image[None].float(), mask[None], share, 1, generator, dev)
            feats.append(x)
            labels.append(y.long())
    if not feats:
        raise DataError(f"the {len(chosen)} training item(s) drawn to fit the probe on hold no labelled pixel")
    return fit_linear_probe(model, torch.cat(feats), torch.cat(labels), num_classes=num_classes, steps=steps,
                            weight_decay=weight_decay)
