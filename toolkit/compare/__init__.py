"""The supervised noisy-label comparison suite: the paper's experiment as one command, with a report.

Train the same network on clean, sampled, flipped, perturbed and random labels, evaluate each honestly (threshold
and polarity chosen on validation), and compare: ``results.csv``, ``results.json``, ``summary.md``, plots and
``report.html`` in the run folder. Each cell (label spec x model x seed) is an independent, resumable job.
"""

from ._report import headline_metric, summarize, write_results
from ._runner import SuiteData, cell_done, load_run_config, prepare_data, run_cell, run_suite, spec_family
from ._suite import (
    DEFAULT_LABELS,
    Cell,
    SuiteConfig,
    cell_id,
    default_noise_mode,
    parse_list,
    plan_cells,
    read_config_file,
    write_toml,
)

__all__ = [
    "SuiteConfig", "Cell", "DEFAULT_LABELS", "default_noise_mode", "plan_cells", "cell_id", "parse_list",
    "read_config_file", "write_toml",
    "write_results", "summarize", "headline_metric",
    "SuiteData", "prepare_data", "run_cell", "run_suite", "cell_done", "load_run_config", "spec_family",
]
