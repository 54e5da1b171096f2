"""Training settings: the :class:`TrainConfig` dataclass and the ``quick`` and ``paper`` presets.

Every field is checked when a config is made (and again by :func:`dataclasses.replace`), so a bad value fails
before any data is read, with a message that names the field.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .. import names
from .._check import check_in, check_int
from ..errors import ParameterError, SpecError
from ..labels import parse_spec
from ..losses import LOSSES
from ..models import MODELS, model_options

__all__ = ["TrainConfig", "PRESETS", "OPTIMIZERS", "SCHEDULES", "NOISE_MODES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
"""Optimizer names: SGD with (Nesterov-free) momentum, Adam, AdamW (decoupled weight decay)."""

SCHEDULES = ("step", "cosine", "none")
"""Learning-rate schedules, stepped once per epoch: ``step`` multiplies by ``gamma`` every ``step_size``
epochs, ``cosine`` anneals to 0 over ``epochs``, ``none`` keeps ``lr``."""

NOISE_MODES = names.NOISE_MODES
"""``offline``: one noisy draw per image, made once before training; ``online``: a fresh draw every epoch."""

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "model": "unet",
        "model_options": {"base": 16, "depth": 3},
        "loss": "auto",
        "optimizer": "adam",
        "lr": 3e-3,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "schedule": "cosine",
        "step_size": 20,
        "gamma": 0.1,
        "epochs": 300,
        "batch_size": 8,
        "crop": 64,
        "reference_size": 128,
        "val_every": 10,
    },
    "paper": {
        "model": "unet",
        "model_options": {"base": 64, "depth": 4},
        "loss": "auto",
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 1e-3,
        "schedule": "step",
        "step_size": 20,
        "gamma": 0.1,
        "epochs": 100,
        "batch_size": 32,
        "crop": 256,
        "reference_size": 256,
    },
}
"""Named starting points for :meth:`TrainConfig.from_preset`.

- ``quick``: a small U-Net (base 16, depth 3), Adam (lr 3e-3) with a cosine schedule, 300 epochs of random
  64 x 64 crops, batch 8, the validation curve every 10 epochs; on the default ``synth:er`` suite data (14
  training images of 128 x 128) a cell trains in about a minute on 2 CPU cores. Noisy labels need many steps
  (seed 0, validation Dice): at 100 epochs a 10% sample scored 0.90 against clean's 0.93 and labels flipped 45%
  both ways 0.80; at 300 epochs 0.92, 0.89 and clean 0.95; the budget is counted for images of 128 x 128
  (``reference_size``): each larger image gives proportionally more crops per epoch;
- ``paper``: the setting of Luo et al.: U-Net base 64 depth 4, 256 x 256 crops, SGD lr 0.05 momentum 0.9
  weight decay 1e-3, the rate x0.1 every 20 epochs, 100 epochs, batch 32, BCE loss (``loss="auto"`` picks BCE
  for binary data and cross-entropy for multi-class data); the budget is counted for images of 256 x 256.
"""


@dataclass
class TrainConfig:
    """Every setting of one training run.

    The field defaults are the ``paper`` preset's, except ``crop`` (``None``: whole images) and
    ``model_options`` (empty: the model's own defaults, which for ``unet`` are the paper's base 64 depth 4).
    Optional fields (``crop``, ``grad_clip``, ``tile``) are off when ``None``; :meth:`from_dict` reads a
    missing key as the field's default, so a TOML writer (TOML has no null) may simply leave ``None`` out
    (``to_dict(drop_none=True)``).

    Attributes:
        model: a name of :data:`mstool.models.MODELS`.
        model_options: options of that model (see :func:`mstool.models.model_options`).
        loss: ``auto`` (BCE for binary data, the paper's; cross-entropy for multi-class) or a name of
            :data:`mstool.losses.LOSSES`.
        optimizer: one of :data:`OPTIMIZERS`.
        lr: initial learning rate, ``> 0``.
        momentum: SGD momentum (and Adam's ``beta1``), in [0, 1).
        weight_decay: L2 penalty (AdamW: decoupled decay), ``>= 0``.
        schedule: one of :data:`SCHEDULES`, stepped once per epoch.
        step_size: epochs between ``step`` decays, ``>= 1``.
        gamma: factor of a ``step`` decay, in (0, 1].
        epochs: number of epochs, ``>= 1``.
        batch_size: images per step, ``>= 1`` (a training set smaller than that is one batch).
        crop: side of the square random crop, or ``None`` for whole images.
        reference_size: with ``crop``, the image side the budget is counted for: every epoch each image gives
            ``max(1, round(H * W / reference_size**2))`` crops, so an image 4 times the reference area is seen 4
            times as often and large images are not under-trained (``None``: one crop per image and epoch).
        flip: random horizontal and vertical flips.
        label_spec: the label-noise spec applied to the clean training labels (``clean``, ``sample:0.1``,
            ``flip:0.9,0.9``; see :func:`mstool.labels._spec.parse_spec`).
        noise_mode: one of :data:`NOISE_MODES`.
        amp: mixed precision (used on CUDA only).
        channels_last: channels-last memory format (used on CUDA only).
        grad_clip: clip the gradient's global L2 norm to this value, or ``None``.
        checkpoint_every: write the resume checkpoint every this many epochs (and always at the end).
        val_every: compute the learning curve's validation score every this many epochs (and always at the end);
            the other epochs record ``None``. Validation only draws the curve; it chooses nothing.
        num_thresholds: thresholds swept by the evaluation protocols.
        probe: fit the linear feature probe at evaluation.
        tile: tile side for predicting validation and test images, or ``None`` for whole images.
        seed: seed of every random draw of the run (initialisation, data order, crops, flips, noise).

    Example:
        >>> cfg = TrainConfig.from_preset("quick", epochs=2)
        >>> cfg.epochs, cfg.model_options
        (2, {'base': 16, 'depth': 3})
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> TrainConfig(lr=-1)
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: `lr` must be a number > 0; got -1
    """

    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    loss: str = "auto"
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-3
    schedule: str = "step"
    step_size: int = 20
    gamma: float = 0.1
    epochs: int = 100
    batch_size: int = 32
    crop: int | None = None
    reference_size: int | None = None
    flip: bool = True
    label_spec: str = "clean"
    noise_mode: str = "offline"
    amp: bool = True
    channels_last: bool = True
    grad_clip: float | None = None
    checkpoint_every: int = 1
    val_every: int = 1
    num_thresholds: int = 50
    probe: bool = True
    tile: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """A preset of :data:`PRESETS` with some fields replaced.

        ``model_options`` overrides are merged into the preset's; when ``model`` is overridden with another
        network, the preset's ``model_options`` (which belong to its own network) are dropped.

        Raises:
            ParameterError: an unknown preset or field, or an invalid value.
        """
        check_in(name, "preset", list(PRESETS))
        _check_keys(overrides, "override")
        values = copy.deepcopy(PRESETS[name])
        if "model" in overrides and overrides["model"] != values["model"]:
            values["model_options"] = {}
        options = {**values.get("model_options", {}), **dict(overrides.pop("model_options", None) or {})}
        values.update(overrides, model_options=options)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Read a config written by :meth:`to_dict` (from JSON or TOML); missing keys take the defaults.

        Raises:
            ParameterError: ``values`` is not a dict, has an unknown key, or holds an invalid value.
        """
        if not isinstance(values, dict):
            raise ParameterError(f"a training config must be a dict of fields; got {type(values).__name__}")
        _check_keys(values, "config")
        return cls(**copy.deepcopy(values))

    def to_dict(self, *, drop_none: bool = False) -> dict[str, Any]:
        """Every field as plain Python values (dicts, strings, numbers, booleans, ``None``).

        Args:
            drop_none: leave out fields that are ``None`` (TOML cannot store them; :meth:`from_dict` reads a
                missing optional field back as ``None``).
        """
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None} if drop_none else out

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated like a new config)."""
        _check_keys(changes, "field")
        return dataclasses.replace(self, **changes)

    def resolved_loss(self, num_classes: int) -> str:
        """The loss name used for data of ``num_classes`` classes (``auto``: ``bce`` for 2, ``ce`` above)."""
        if self.loss != "auto":
            return self.loss
        return "bce" if num_classes == 2 else "ce"


# ------------------------------------------------------------------------------------------------- checks
_OPTIONAL = ("crop", "reference_size", "grad_clip", "tile")


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _check_keys(values: dict[str, Any], what: str) -> None:
    names = _field_names()
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ParameterError(f"unknown training {what} {unknown[0]!r}; the fields are: {', '.join(names)}")


def _int(cfg: TrainConfig, name: str, low: int) -> None:
    # stored back as a Python int: a numpy integer would not survive the config's JSON
    setattr(cfg, name, check_int(getattr(cfg, name), name, low=low))


def _float(cfg: TrainConfig, name: str, low: float, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = True) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        if math.isinf(high):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ParameterError(f"`{name}` must be a number {bound}; got {value!r}")
    setattr(cfg, name, float(value))


def _bool(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        raise ParameterError(f"`{name}` must be true or false; got {value!r}")


def _str(cfg: TrainConfig, name: str, allowed: list[str]) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, str):
        raise ParameterError(f"`{name}` must be one of {', '.join(allowed)}; got {value!r}")
    check_in(value, name, allowed)


def _validate(cfg: TrainConfig) -> None:
    _str(cfg, "model", MODELS.names())
    if not isinstance(cfg.model_options, dict):
        raise ParameterError(f"`model_options` must be a dict; got {type(cfg.model_options).__name__}")
    allowed = model_options(cfg.model)
    unknown = sorted(set(cfg.model_options) - set(allowed))
    if unknown:
        raise ParameterError(f"`model_options` of model {cfg.model!r} has no option {unknown[0]!r}; "
                             f"its options are: {', '.join(allowed)}")
    _str(cfg, "loss", ["auto", *LOSSES.names()])
    _str(cfg, "optimizer", list(OPTIMIZERS))
    _float(cfg, "lr", 0, low_open=True)
    _float(cfg, "momentum", 0, 1)
    _float(cfg, "weight_decay", 0)
    _str(cfg, "schedule", list(SCHEDULES))
    _int(cfg, "step_size", 1)
    _float(cfg, "gamma", 0, 1, low_open=True, high_open=False)
    _int(cfg, "epochs", 1)
    _int(cfg, "batch_size", 1)
    if cfg.crop is not None:
        _int(cfg, "crop", 1)
    if cfg.reference_size is not None:
        _int(cfg, "reference_size", 1)
    _bool(cfg, "flip")
    if not isinstance(cfg.label_spec, str):
        raise ParameterError(f"`label_spec` must be a label-noise spec string such as 'sample:0.1'; "
                             f"got {cfg.label_spec!r}")
    try:
        cfg.label_spec = str(parse_spec(cfg.label_spec))
    except SpecError as err:
        raise SpecError(f"`label_spec`: {err}") from None
    _str(cfg, "noise_mode", list(NOISE_MODES))
    _bool(cfg, "amp")
    _bool(cfg, "channels_last")
    if cfg.grad_clip is not None:
        _float(cfg, "grad_clip", 0, low_open=True)
    _int(cfg, "checkpoint_every", 1)
    _int(cfg, "val_every", 1)
    _int(cfg, "num_thresholds", 1)
    _bool(cfg, "probe")
    if cfg.tile is not None:
        _int(cfg, "tile", 16)
    _int(cfg, "seed", 0)
