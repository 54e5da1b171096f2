"""Training, checkpoints and resume, prediction and evaluation of segmentation networks.

Legend: N batch · C channels · K classes · H, W pixels.

- :class:`TrainConfig` and :data:`PRESETS` (``quick``, ``paper``): every training setting, validated;
- :func:`train`: one network on clean labels made noisy by a label spec (offline or online), with atomic
  checkpoints every few epochs and bitwise-exact resume on the CPU; :func:`load_model` reads its ``model.pt``;
- :func:`predict`: probability maps, whole or in blended overlapping tiles;
- :func:`evaluate`: the ``val`` / ``oracle`` / ``fixed`` protocols with polarity (binary) or mIoU
  (multi-class), and the linear feature probe (:func:`fit_probe`).

Under ``torchrun`` one training runs across processes and GPUs (:mod:`mstool.engine.distributed`).

Datasets reach these functions as tensors (:func:`mstool.data.prepare_splits`); the folders a run reads and writes
are :mod:`mstool.runs`'s.

Example:
    >>> cfg = TrainConfig.from_preset("paper")
    >>> cfg.optimizer, cfg.lr, cfg.epochs, cfg.crop, cfg.model_options
    ('sgd', 0.05, 100, 256, {'base': 64, 'depth': 4})
"""

from ._config import NOISE_MODES, OPTIMIZERS, PRESETS, SCHEDULES, TrainConfig
from ._evaluate import EvalResult, LinearProbe, evaluate, fit_probe
from ._predict import predict
from ._trainer import CHECKPOINT_NAME, CURVES_NAME, MODEL_NAME, TrainResult, convergence, load_model, train

__all__ = [
    "TrainConfig",
    "PRESETS",
    "OPTIMIZERS",
    "SCHEDULES",
    "NOISE_MODES",
    "train",
    "convergence",
    "TrainResult",
    "load_model",
    "CHECKPOINT_NAME",
    "MODEL_NAME",
    "CURVES_NAME",
    "predict",
    "evaluate",
    "EvalResult",
    "fit_probe",
    "LinearProbe",
]
