"""The supervised noisy-label comparison suite: the paper's experiment as one command, with a report.

Train the same network on clean, sampled, flipped, perturbed and random labels, evaluate each honestly (threshold
and polarity chosen on validation), and compare: ``results.csv``, ``results.json``, ``summary.md``, plots and
``report.html`` in the run folder. Each cell (label spec x model x seed) is an independent, resumable job.
Unsupervised methods (``unsupervised=["otsu", "igtt", "igtt:no-ems", "igtt:prior=otsu"]``) run as cells of their
own on the same test images, and the report sets them beside the supervised rows.
"""

from ._loop import RAY_INSTALL, run_suite
from ._methods import MethodSpec, parse_method_spec, split_method_list
from ._report import gap_closed, run_and_report, summarize, summarize_unsupervised, write_results
from ._rows import PREDICTORS, headline_metric, is_unsupervised, rank_agreement
from ._runner import (
    cell_done,
    finished_rows,
    load_run_config,
    prepare_data,
    run_cell,
    run_one,
    run_unsupervised_cell,
    spec_family,
    training_labels,
)
from ._suite import (
    DEFAULT_LABELS,
    Cell,
    LabelEntry,
    SuiteConfig,
    cell_id,
    parse_list,
    plan_cells,
    read_config_file,
    write_toml,
)

__all__ = [
    "SuiteConfig", "Cell", "LabelEntry", "DEFAULT_LABELS", "plan_cells", "cell_id", "parse_list", "read_config_file",
    "write_toml", "write_results", "summarize", "summarize_unsupervised", "gap_closed", "headline_metric",
    "is_unsupervised", "PREDICTORS", "rank_agreement", "MethodSpec", "parse_method_spec", "split_method_list",
    "run_unsupervised_cell", "run_and_report", "prepare_data", "training_labels", "run_cell", "run_suite",
    "RAY_INSTALL", "run_one", "finished_rows", "cell_done", "load_run_config", "spec_family",
]
