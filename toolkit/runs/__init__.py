"""Runs: every job that reads and writes a folder, one library call per ``mstool`` command.

Legend: N batch · C channels · K classes · H, W pixels.

- :func:`train_run` / :func:`evaluate_run`: a training run folder (``mstool train``, ``mstool evaluate``);
- :func:`segment_folder`: unsupervised masks of a folder of images (``mstool segment``);
- :func:`predict_folder`: a trained network's masks of a folder of images (``mstool predict``);
- :func:`make_label_set`, :func:`analyze_label_sets`, :func:`audit_label_sets`: label sets on disk
  (``mstool labels make|analyze|audit``);
- :func:`estimate_prior_from_labels`, :func:`estimate_prior_from_images`, :func:`show_prior`: density priors on
  disk (``mstool prior estimate|show``);
- :func:`score_masks`: predicted masks against ground truth, per image and pooled (``mstool score``);
- :func:`train_cell`, :func:`segment_cell`: one cell of a comparison in its folder (:mod:`mstool.compare` plans
  the cells and reports on them);
- :func:`write_json`, :func:`write_text`, :func:`write_examples`, :func:`json_value`, :func:`log_line`,
  :func:`versions`: what every run writes.

Outputs appear whole or not at all (a folder is built beside its target and renamed; a file is written to a
temporary name and renamed), and an output that overlaps an input, or a folder mstool did not write, is refused
before any work.

Example:
    >>> cfg = run_config("quick", {"epochs": 1, "val_every": 1})
    >>> run = train_run(run_source("synth:er", synth_n=4, synth_size=32), "run", cfg)
    >>> ev = evaluate_run(run.out / "model.pt", probe=False)
    >>> ev.path.name, 0.0 <= ev.metrics["val/dice"] <= 1.0
    ('evaluation.json', True)
"""

from ._cells import LABELS_PRIOR, labels_prior_spec, segment_cell, train_cell
from ._labelsets import VERDICTS, LabelAudit, LabelSetReport, analyze_label_sets, audit_label_sets, make_label_set
from ._predict import AUTO_TILE, predict_folder
from ._priors import PICTURE_SUFFIXES, estimate_prior_from_images, estimate_prior_from_labels, show_prior
from ._records import json_value, log_line, versions, write_examples, write_json, write_text
from ._score import MASK_NAME_SUFFIXES, MaskScore, ScoreReport, score_masks
from ._segment import segment_folder
from ._train import (
    EVALUATION_RECORD,
    SYNTH_DEFAULTS,
    TRAIN_RECORD,
    EvalRun,
    TrainRun,
    evaluate_run,
    recorded_source,
    run_config,
    run_source,
    train_run,
)

__all__ = [
    "train_run", "evaluate_run", "run_config", "run_source", "recorded_source", "TrainRun", "EvalRun",
    "TRAIN_RECORD", "EVALUATION_RECORD", "SYNTH_DEFAULTS",
    "segment_folder",
    "predict_folder", "AUTO_TILE",
    "make_label_set", "analyze_label_sets", "LabelSetReport", "audit_label_sets", "LabelAudit", "VERDICTS",
    "estimate_prior_from_labels", "estimate_prior_from_images", "show_prior", "PICTURE_SUFFIXES",
    "score_masks", "ScoreReport", "MaskScore", "MASK_NAME_SUFFIXES",
    "train_cell", "segment_cell", "LABELS_PRIOR", "labels_prior_spec",
    "write_json", "write_text", "write_examples", "json_value", "log_line", "versions",
]
