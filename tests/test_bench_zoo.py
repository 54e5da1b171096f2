"""Smoke test of benchmarks/bench_zoo.py at a tiny size: it runs, races both dtypes and states the verdicts.

The figures themselves are not checked: timing belongs in the benchmark's own run, not in the test suite.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_zoo.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_zoo", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_zoo_runs_at_a_tiny_size(capsys):
    bench = _load()
    argv = ["--n", "2", "--size", "24", "--ref-n", "1", "--rounds", "1", "--repeat", "1", "--threads", "1"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "uint8 labels" in out and "int64 labels" in out
    assert out.count("target: sample and shift >= 100x") == 2
    for spec in bench.SPECS.values():
        assert f"\n{spec} " in out, spec


def test_bench_zoo_rejects_an_unknown_dtype(capsys):
    # argparse's parser.error exits with status 2; str(SystemExit(2)) is "2"
    with pytest.raises(SystemExit, match="^2$"):
        _load().main(["--dtypes", "float32"])
    err = capsys.readouterr().err
    assert "--dtypes: expected uint8, int16, int32 or int64, comma-separated; got 'float32'" in err


def test_references_follow_the_zoo_semantics():
    import random

    import numpy as np

    bench = _load()
    mask = bench.blob_masks(1, 32, 0)[0].numpy()
    kept = bench.naive_sample(mask, 0.1, random.Random(0))
    assert kept.sum() == int(np.ceil(0.1 * mask.sum())) and not (kept & (1 - mask)).any()
    moved = bench.naive_shift(mask, 1, random.Random(0))
    assert 0 < moved.sum() <= mask.sum()
