"""Unsupervised rows of the comparison suite: methods of :mod:`mstool.unsupervised` evaluated beside the
supervised cells, with the same test images and metrics, so one report holds the paper's table (supervised U-Net |
iGTT with EMS | without EMS | DFC | adaptive threshold | Otsu).

Legend: N batch · H, W pixels.

A method entry is ``NAME[:ITEM,ITEM...]``: ``NAME`` a method of :data:`mstool.unsupervised.METHODS`, each ``ITEM``
either ``key=value`` (a constructor option, ``-`` read as ``_``: ``prior-weight=2``; a dotted key sets one entry
of a dict option: ``model-options.base=32``) or a bare flag set to true (``no-ems``). The item ``prior=METHOD`` is
not an option: it bootstraps a density prior from ``METHOD``'s masks of the same test images (no labels anywhere)
and passes it to the method, as ``mstool prior estimate --images --from METHOD`` followed by ``mstool segment
--prior`` would; ``prior=otsu+local+dfc`` makes it the consensus of several methods
(:func:`mstool.unsupervised.bootstrap_prior`). The prior's methods look at the side the entry's ``foreground``
says (``auto`` when it says nothing).

What an unsupervised row measures: the method segments the test images without any label (it sees only them, the
paper's transductive setting). The headline, ``mask``, is the method's own label-free mask; ``oracle`` thresholds
its score map at the best threshold on the test labels (the paper's protocol; optimistic). Methods with random
draws (k-means, GMM, DFC, iGTT) run once per seed; Otsu, multi-Otsu and the local threshold are deterministic and
run once.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fs import atomic_path
from ..device import make_generator, resolve_device
from ..errors import DataError, MstoolWarning, ParameterError
from ._runner import _json_value, cell_record, write_cell_metrics

__all__ = ["MethodSpec", "parse_method_spec", "split_method_list", "DETERMINISTIC_METHODS", "run_unsupervised_cell",
           "UNSUPERVISED_PREFIX"]

DETERMINISTIC_METHODS = ("otsu", "multiotsu", "local")
"""Methods without random draws: one cell each, whatever the seeds."""

UNSUPERVISED_PREFIX = "unsup-"
"""Cell ids of unsupervised rows start with this (``unsup-igtt-no-ems__seed0``)."""

# A pixel-level window: DFC turns the prior into pseudo-scribbles pixel by pixel, and a wide window marks the
# background beside dense tubules as foreground (synth:er, 5 test images, seed 0: DFC 0.695 without a prior, 0.661
# with a bandwidth-5 prior, 0.768 with bandwidth 1); for iGTT the difference stayed within its seed spread.
_BOOTSTRAP_BANDWIDTH = 1


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A parsed method entry: registry ``name``, constructor ``options`` and the ``prior`` bootstrap method."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    prior: str | None = None

    @property
    def deterministic(self) -> bool:
        return self.name in DETERMINISTIC_METHODS and all(
            m in DETERMINISTIC_METHODS for m in ([] if self.prior is None else self.prior.split("+")))

    def __str__(self) -> str:
        items = [] if self.prior is None else [f"prior={self.prior}"]
        for key, value in self.options:
            key = key.replace("_", "-")
            items.append(key if value is True else f"{key}={_format(value)}")
        return self.name + (":" + ",".join(items) if items else "")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_method_spec(text: str) -> MethodSpec:
    """Parse ``NAME[:ITEM,...]`` and check the name, the options (by building the method) and the prior method.

    Raises:
        ParameterError: an unknown method, an unknown or bad option, an item without a key, a bad prior method.

    Example:
        >>> str(parse_method_spec("igtt:no-ems")), str(parse_method_spec(" igtt : prior=otsu , rounds=4 "))
        ('igtt:no-ems', 'igtt:prior=otsu,rounds=4')
        >>> parse_method_spec("dfc:prior=local").prior
        'local'
    """
    from ..unsupervised import METHODS, build_method, parse_bootstrap

    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"an unsupervised method entry must be NAME[:OPTIONS]; got {text!r}")
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in METHODS.names():
        raise ParameterError(f"unknown unsupervised method {name!r} in {text!r}; known: {', '.join(METHODS.names())}")
    options: dict[str, Any] = {}
    flags: list[str] = []
    prior = None
    for item in (p.strip() for p in rest.split(",") if rest.strip()):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not key:
            raise ParameterError(f"empty option in unsupervised method entry {text!r}")
        if key == "prior":
            try:
                prior = "+".join(parse_bootstrap(value.strip()))
            except ParameterError as exc:
                raise ParameterError(f"`prior={value.strip()}` in {text!r}: {exc}") from None
            continue
        options[key] = _parse_value(value.strip()) if eq else True
        if not eq:
            flags.append(item)
    try:
        build_method(name, _nest(options))  # a bad option fails now, naming the method, not when the cell runs
    except ParameterError as exc:
        if not flags:
            raise
        raise ParameterError(f"{exc} (if {', '.join(map(repr, flags))} was meant as a method: known methods are "
                             f"{', '.join(METHODS.names())})") from None
    return MethodSpec(name, tuple(sorted(options.items())), prior)


def _nest(options: dict[str, Any]) -> dict[str, Any]:
    """``{"model_options.base": 4}`` -> ``{"model_options": {"base": 4}}``."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        head, dot, tail = key.partition(".")
        if not dot:
            out[key] = value
            continue
        sub = out.setdefault(head, {})
        if not isinstance(sub, dict):
            raise ParameterError(f"option {head!r} is given both as a value and as {key!r}")
        sub[tail] = value
    return out


def split_method_list(values: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split repeated and comma-separated method entries: a piece that starts with a method name (alone or
    followed by ``:``) starts the next entry, any other piece is an option of the current one.

    Example:
        >>> split_method_list("otsu,local,igtt:no-ems,rounds=4,igtt:prior=otsu,dfc")
        ['otsu', 'local', 'igtt:no-ems,rounds=4', 'igtt:prior=otsu', 'dfc']
    """
    from ..unsupervised import METHODS

    names = set(METHODS.names())
    out: list[str] = []
    for value in [values] if isinstance(values, str) else list(values):
        for piece in (p.strip() for p in value.split(",")):
            if not piece:
                continue
            if piece.partition(":")[0].strip() in names or not out:
                out.append(piece)
            else:
                out[-1] += ("," if ":" in out[-1] else ":") + piece
    return out


def _accepts(function: Any, name: str) -> bool:
    return name in inspect.signature(function).parameters


def run_unsupervised_cell(config, cell, run_dir: str | Path, data, *, device: str | torch.device = "cpu",
                          progress=None, examples: int = 3) -> dict[str, Any]:
    """Segment the test images of ``data`` with the cell's method, evaluate, write ``cells/<id>/metrics.json``.

    Binary data only: the methods' cluster-to-class rules are label-free and binary (a multi-class suite has no
    label-free way to name the clusters). A multi-class method (``multiotsu``) is read as binary by the same kind
    of rule: its brightest class is the foreground.

    Raises:
        DataError: a multi-class suite.
    """
    from ..metrics import binary_report, evaluate_binary
    from ..unsupervised import bootstrap_prior, build_method

    if data.num_classes != 2:
        raise DataError(f"unsupervised rows need binary data; this suite has {data.num_classes} classes")
    run_dir = Path(run_dir)
    cell_dir = run_dir / "cells" / cell.id
    cell_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    spec = parse_method_spec(cell.spec)
    images, labels = data.test_images.to(dev), data.test_labels.to(dev)
    g = make_generator(cell.seed)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MstoolWarning)
        prior = None
        if spec.prior is not None:
            side = dict(spec.options).get("foreground", "auto")
            prior = bootstrap_prior(images, data.test_names, spec.prior, foreground=side,
                                    bandwidth=_BOOTSTRAP_BANDWIDTH, generator=g).foreground()
        method = build_method(spec.name, _nest(dict(spec.options)), device=dev)
        kwargs: dict[str, Any] = {}
        if _accepts(method.segment, "labels"):
            kwargs["labels"] = labels  # logged per round, never used for a choice
        if progress is not None and _accepts(method.segment, "progress"):
            kwargs["progress"] = progress
        result = method.segment(images, prior=prior, generator=g, **kwargs)
    seconds = time.perf_counter() - started
    masks, scores = result.masks.to(dev), result.scores.float().to(dev)
    if scores.shape[1] > 1:  # a multi-class method (multi-Otsu): its brightest class is the foreground, label-free
        masks, scores = (masks == scores.shape[1] - 1).long(), scores[:, -1:].contiguous()
    mask_report = binary_report(masks[:, None].float(), labels, threshold=0.5)
    protocols = evaluate_binary(scores, labels, num_thresholds=config.base_train_config().num_thresholds)
    oracle = {k: v for k, v in protocols.as_dict().items() if k.startswith("oracle/")}
    k = min(examples, images.shape[0])
    with atomic_path(cell_dir / "examples.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, probs=scores[:k].cpu().numpy().astype(np.float16),
                                masks=masks[:k].cpu().numpy().astype(np.uint8),
                                images=data.test_images[:k, 0].float().cpu().numpy().astype(np.float16),
                                labels=data.test_labels[:k].cpu().numpy().astype(np.uint8),
                                names=np.array(data.test_names[:k]))
    info = {key: value for key, value in result.info.items() if key != "settings"}
    row: dict[str, Any] = {
        **cell_record(config, cell, dev),
        "family": "unsupervised",
        "level": None,
        "prior": spec.prior,
        "options": _nest(dict(spec.options)),
        "seconds": round(seconds, 3),
        "seconds_per_image": round(seconds / max(1, images.shape[0]), 3),
        "num_classes": 2,
        "n_images": int(images.shape[0]),
        **{f"mask/{key}": _json_value(value) for key, value in mask_report.items()},
        **{key: _json_value(value) for key, value in oracle.items()},
        "auc": _json_value(protocols.as_dict().get("oracle/auc")),
        "method_info": json.loads(json.dumps(info, default=str)),
        "warnings": [str(w.message) for w in caught],
    }
    return write_cell_metrics(cell_dir, row)

