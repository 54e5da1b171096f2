"""The results of a tiny suite, pinned: a refactor that changes what a seed gives fails here.

``pinned_tiny_suite.json`` holds every numeric field of every row (timings and thread counts left out) of the suite
below, run on one CPU thread, once per kind of CPU it was pinned on: the first with mstool 0.1.0 before the runs
layer was split out of the suite (commit 1720011). A trained network's float path follows the CPU's kernels, so the
trained rows are pinned per CPU (an AMD EPYC trained them up to 15 pixels and one oracle threshold away from the
first CPU), while the untrained rows must give the same numbers everywhere.

On a CPU with a pin every row must give its numbers to 1e-6. A pin made before a field existed (a field added later,
such as ``labels/dice``, which older pins lack) is checked on the fields it has, so a suite run on another kind of
CPU than the one that pinned a new field still passes; re-pin that CPU with ``--add`` when you are on it. On a CPU
without a pin the untrained rows are still checked against the pins, and the trained rows pass if they equal one
pin; otherwise the test is skipped, naming the CPU: check that the differences are float-level, then add its pin
with ``python tests/compare/test_pinned.py --add``. Regenerate the pins only for an intended change of results, and
say so in the commit: ``python tests/compare/test_pinned.py`` prints this CPU's rows to stdout.
"""

import json
import math
import platform
import sys
from pathlib import Path

import pytest
import torch

from mstool.compare import SuiteConfig, run_suite

PINNED = Path(__file__).with_name("pinned_tiny_suite.json")


def _suite() -> SuiteConfig:
    return SuiteConfig(data="synth:er", labels=["clean", "sample:0.5", "flip:0.2,0.2"], seeds=[0], synth_n=6,
                       synth_size=32, train={"epochs": 2, "val_every": 1, "crop": 32, "batch_size": 2},
                       unsupervised=["otsu", "kmeans"])


def _numbers(run_dir: Path) -> dict[str, dict[str, float]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums in another order would change the trained networks
    try:
        rows = run_suite(_suite(), run_dir)
    finally:
        torch.set_num_threads(threads)
    return {row["cell"]: {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                          and "seconds" not in k and k != "threads"} for row in rows}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`) and torch's vector capability."""
    model = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


def _differences(got: dict, pinned: dict, cells: list[str]) -> list[tuple]:
    return [(cell, key, value, got[cell][key]) for cell in cells for key, value in pinned[cell].items()
            if not math.isclose(got[cell][key], value, rel_tol=0, abs_tol=1e-6)]


def test_tiny_suite_gives_the_pinned_results(tmp_path):
    pins = json.loads(PINNED.read_text())
    got = _numbers(tmp_path / "run")
    trained = sorted(cell for cell in got if not cell.startswith("unsup-"))
    untrained = sorted(set(got) - set(trained))
    for pinned in pins.values():
        assert sorted(got) == sorted(pinned)
        for cell in got:
            # a pin made before a field was added lacks it; every field it has must still come out
            assert set(pinned[cell]) <= set(got[cell]), (cell, sorted(set(pinned[cell]) - set(got[cell])))
        differ = _differences(got, pinned, untrained)
        assert not differ, differ[:5]
    name = cpu_name()
    if name in pins:
        differ = _differences(got, pins[name], trained)
        assert not differ, differ[:5]
    elif not any(not _differences(got, pinned, trained) for pinned in pins.values()):
        pytest.skip(f"the trained rows have no pin for this CPU ({name}) and match none of the {len(pins)} "
                    "pinned; the untrained rows matched. Add one: python tests/compare/test_pinned.py --add")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = _numbers(Path(tmp) / "run")
    if "--add" in sys.argv:
        pins = json.loads(PINNED.read_text())
        pins[cpu_name()] = rows
        PINNED.write_text(json.dumps(pins, indent=0, sort_keys=True) + "\n")
        print(f"pinned for {cpu_name()}")
    else:
        json.dump(rows, sys.stdout, indent=0, sort_keys=True)
