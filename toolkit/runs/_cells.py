"""One cell of a comparison: a training run evaluated on the test images, or an unsupervised method's masks of
them, measured and written into the cell's folder. :mod:`mstool.compare` plans the cells and reports on them.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import IGNORE_INDEX
from .._types import Progress
from ..data import Splits
from ..device import make_generator, resolve_device
from ..engine import TrainConfig, convergence, evaluate, train
from ..errors import DataError, MstoolWarning, ParameterError
from ..labels import apply_spec, label_info
from ..metastructure import estimate_prior, expected_similarity, meta_similarity
from ..metrics import binary_report, evaluate_binary
from ..unsupervised import bootstrap_prior, build_method, check_takes_scribbles
from ._records import json_value, write_examples
from ._train import labels_threshold_metrics

__all__ = ["train_cell", "segment_cell", "LABELS_PRIOR", "labels_prior_spec"]

LABELS_PRIOR = "labels"
"""A cell prior written ``labels:SPEC`` is made from the test labels after the label spec (:func:`segment_cell`)."""


def labels_prior_spec(prior: str | None) -> str | None:
    """The label spec of a cell prior written ``labels:SPEC``; ``None`` for no prior or a bootstrapped one.

    Example:
        >>> labels_prior_spec("labels:dilate:1+sample:0.3"), labels_prior_spec("otsu+local")
        ('dilate:1+sample:0.3', None)
    """
    kind, colon, spec = (prior or "").partition(":")
    return spec if kind == LABELS_PRIOR and colon else None


def train_cell(
    cell_dir: str | os.PathLike,
    config: TrainConfig,
    splits: Splits,
    labels: torch.Tensor,
    *,
    from_folder: bool = False,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """Train on ``labels`` in ``cell_dir``, evaluate on the test images, write ``examples.npz``; return what was
    measured (a cell's row less its identity).

    A killed cell resumes from its checkpoint. The row holds the statistics of the actual training labels against
    the clean ones (NTM, rank, det, mutual information, boundary fraction, meta-structure similarity, expected-
    density score, taxonomy), the learning curve's summary and every metric of :func:`mstool.engine.evaluate`.

    Args:
        cell_dir: the cell's folder.
        config: training settings (label spec, seed ...).
        splits: the data.
        labels: ``(N, H, W)`` the labels to train on: ``splits.train_labels`` (the spec adds the noise) or a
            folder's masks (``from_folder``: trained as given, polarity judged from their measured NTM).
        device: where to train.
        progress: training events of :func:`mstool.engine.train`.
        examples: how many test predictions ``examples.npz`` keeps.
    """
    cell_dir = Path(cell_dir)
    dev = resolve_device(device)
    started = time.perf_counter()
    result = train(config, splits.train_images, labels, out_dir=cell_dir, val_images=splits.val_images,
                   val_labels=splits.val_labels, num_classes=splits.num_classes, device=dev, progress=progress,
                   reference_labels=splits.train_labels if from_folder else None)
    k = splits.num_classes
    clean, noisy = splits.train_labels.to(dev), result.noisy_labels.to(dev)
    expected = expected_similarity(clean, noisy, k, generator=make_generator(config.seed))
    info = label_info(clean, noisy, k, expected_score=expected.score, expected_signal=expected.signal).as_dict()
    similarity = meta_similarity(clean, noisy, k, bandwidths=(2, 4, 8)).mean()
    # a folder of masks is trained as given, so its NTM measured here says whether it swaps the classes (the
    # label_stats of a cell resumed from a checkpoint older than reference_labels would not)
    inverts = (info.get("det") is not None and info["det"] < 0) if from_folder else \
        bool(result.label_stats.get("inverts", False))
    ev = evaluate(result.model, splits.test_images, splits.test_labels, val_images=splits.val_images,
                  val_labels=splits.val_labels, train_images=splits.train_images, train_labels=splits.train_labels,
                  allow_inversion=inverts, num_classes=k, device=dev, num_thresholds=config.num_thresholds,
                  probe=config.probe, tile=config.tile, generator=make_generator(config.seed))
    n = min(examples, splits.test_images.shape[0])
    at_labels = labels_threshold_metrics(result.label_stats, ev.protocols) if k == 2 else {}
    write_examples(cell_dir / "examples.npz", probs=ev.test_probs[:n], images=splits.test_images[:n, 0],
                   labels=splits.test_labels[:n], names=splits.test_names[:n], train_label=result.noisy_labels[:1])
    best = max((r.get("val_dice") or r.get("val_miou") or -1.0) for r in result.history)
    return {
        "epochs": config.epochs,
        "train_seconds": round(result.seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "final_train_loss": result.history[-1]["train_loss"],
        "best_val_curve": best,
        **{f"curve/{key}": value for key, value in convergence(result.history).items()},
        **{f"label/{key}": value for key, value in info.items()},
        **{f"label/similarity_{key}": (None if not math.isfinite(v) else v) for key, v in similarity.items()},
        **{f"label/expected_{key}": v for key, v in expected.as_dict().items()},
        **{key: json_value(v) for key, v in ev.metrics.items()},
        **at_labels,
        "settings": config.to_dict(),
    }


def segment_cell(
    cell_dir: str | os.PathLike,
    splits: Splits,
    method: str,
    options: dict[str, Any] | None = None,
    *,
    prior: str | None = None,
    scribbles: str | None = None,
    seed: int = 0,
    num_thresholds: int = 101,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """Segment the test images of ``splits`` without labels, evaluate, write ``examples.npz``; return what was
    measured.

    The method sees only the test images (the paper's transductive setting). ``mask/*`` scores its own
    label-free mask; ``oracle/*`` thresholds its score map at the best threshold on the test labels (the paper's
    protocol; optimistic). A multi-class method (``multiotsu``) is read as binary by a label-free rule: its
    brightest class is the foreground.

    Args:
        cell_dir: the cell's folder.
        splits: the data; binary only (the methods' cluster-to-class rules are label-free and binary).
        method, options: an unsupervised method of :data:`mstool.unsupervised.METHODS` and its options.
        prior: methods (``otsu`` or ``otsu+local+dfc``) whose masks of the same test images bootstrap a density
            prior (:func:`mstool.unsupervised.bootstrap_prior` at its default bandwidth),
            looking at the side ``options["foreground"]`` says (``auto`` when it says nothing); or
            ``labels:SPEC``: rough labels of the test images, simulated by applying the label spec ``SPEC`` to
            their exact labels (``labels:dilate:1+sample:0.3``, a brush too wide that covers 30% of the
            objects), made into the prior that ``mstool prior estimate --labels`` makes of a folder of them (box
            window 5, calibrated to their own foreground share). This is the one row where a method sees labels,
            and only their density.
        scribbles: ``labels:SPEC``: a partial annotation of the test images (``labels:region:0.25``, a quarter of
            each image drawn exactly), simulated as for ``prior``, given to a method that takes scribbles (iGTT,
            DFC) as ``scribbles=``. With the same ``labels:SPEC`` as ``prior``, both are one draw: the prior of the
            annotation the method is given. The masks are then scored only where the annotation drew nothing
            (``scored`` says so, ``drawn_fraction`` how much was drawn), so that no row is credited with the
            user's own labels. Every row given an annotation with unlabelled pixels (as scribbles or only as a
            prior) also scores its mask there alone (``undrawn/dice``, ``undrawn/iou``), so that the two compare.
        seed: seed of every draw.
        num_thresholds: thresholds of the oracle protocol.
        device: where the method runs.
        progress: the method's round events.
        examples: how many test masks ``examples.npz`` keeps.

    Raises:
        DataError: multi-class data.
        ParameterError: ``scribbles`` that are not ``labels:SPEC``, or for a method that takes none.
    """
    if splits.num_classes != 2:
        raise DataError(f"unsupervised rows need binary data; this suite has {splits.num_classes} classes")
    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    options = dict(options or {})
    images, labels = splits.test_images.to(dev), splits.test_labels.to(dev)
    g = make_generator(seed)
    started = time.perf_counter()
    if scribbles is not None:
        check_takes_scribbles(method)
        if labels_prior_spec(scribbles) is None:
            raise ParameterError(f"`scribbles` is `{LABELS_PRIOR}:SPEC` (a partial annotation of the test labels); "
                                 f"got {scribbles!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MstoolWarning)
        segmenter = build_method(method, options, device=dev)
        density, drawn, rough = None, None, None
        if scribbles is not None:
            drawn = apply_spec(labels, labels_prior_spec(scribbles), generator=g, num_classes=2)
        if labels_prior_spec(prior) is not None:
            rough = drawn if prior == scribbles else apply_spec(labels, labels_prior_spec(prior), generator=g,
                                                                num_classes=2)
            density = estimate_prior(rough, splits.test_names, num_classes=2, source=prior).foreground()
        elif prior is not None:
            density = bootstrap_prior(images, splits.test_names, prior, foreground=options.get("foreground", "auto"),
                                      generator=g).foreground()
        extra = {} if drawn is None else {"scribbles": drawn}
        # labels are logged per round by the methods that log, never used for a choice
        result = segmenter.segment(images, prior=density, generator=g, labels=labels, progress=progress, **extra)
    seconds = time.perf_counter() - started
    masks, scores = result.masks.to(dev), result.scores.float().to(dev)
    if scores.shape[1] > 1:  # a multi-class method (multi-Otsu): its brightest class is the foreground, label-free
        masks, scores = (masks == scores.shape[1] - 1).long(), scores[:, -1:].contiguous()
    # the pixels the user drew are theirs, not the method's: score only the rest
    scored = labels if drawn is None else torch.where(drawn != IGNORE_INDEX, IGNORE_INDEX, labels)
    mask_report = binary_report(masks[:, None].float(), scored, threshold=0.5)
    protocols = evaluate_binary(scores, scored, num_thresholds=num_thresholds).as_dict()
    # the same score for every row given some annotation, scribbles or only its prior, so the two compare
    annotation = drawn if drawn is not None else rough
    undrawn = {}
    if annotation is not None and bool((annotation == IGNORE_INDEX).any()):
        left = torch.where(annotation != IGNORE_INDEX, IGNORE_INDEX, labels)
        undrawn = binary_report(masks[:, None].float(), left, threshold=0.5)
    n = min(examples, images.shape[0])
    write_examples(cell_dir / "examples.npz", probs=scores[:n], images=splits.test_images[:n, 0],
                   labels=splits.test_labels[:n], names=splits.test_names[:n], masks=masks[:n])
    info = {key: value for key, value in result.info.items() if key != "settings"}
    return {
        "prior": prior,
        "scribbles": scribbles,
        "scored": "all pixels" if drawn is None else "pixels without scribbles",
        "drawn_fraction": None if drawn is None else float((drawn != IGNORE_INDEX).float().mean()),
        "options": options,
        "seconds": round(seconds, 3),
        "seconds_per_image": round(seconds / max(1, images.shape[0]), 3),
        "num_classes": 2,
        "n_images": int(images.shape[0]),
        **{f"mask/{key}": json_value(value) for key, value in mask_report.items()},
        **{f"undrawn/{key}": json_value(undrawn[key]) for key in ("dice", "iou") if key in undrawn},
        **{key: json_value(value) for key, value in protocols.items() if key.startswith("oracle/")},
        "auc": json_value(protocols.get("oracle/auc")),
        "method_info": json.loads(json.dumps(info, default=str)),
        "warnings": [str(w.message) for w in caught],
    }

