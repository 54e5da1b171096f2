"""The Ray executor, for real: a local Ray instance (2 CPUs) runs tiny sweeps whose results must equal the local
executor's, a worker killed mid-cell is retried, and a cell that fails is recorded while the others go on."""

import json
import os
import signal
import sys
import threading
import time

import pytest
import torch

from mstool.compare import SuiteConfig, run_suite, write_results
from mstool.errors import ParameterError

ray = pytest.importorskip("ray", reason="the Ray executor is an optional extra: pip install 'mstool[ray]'")

TINY = {"epochs": 1, "val_every": 1, "crop": 32, "batch_size": 2, "model_options": {"base": 4, "depth": 1}}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _suite(**train) -> SuiteConfig:
    return SuiteConfig(data="synth:er", labels=["clean", "sample:0.5"], seeds=[0], synth_n=6, synth_size=32,
                       train={**TINY, **train})


def _numbers(rows):
    return {row["cell"]: {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                          and "seconds" not in k} for row in rows}


def test_ray_sweep_gives_the_local_results(tmp_path, local_ray):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray worker with 1 CPU trains on 1 thread
    try:
        local = run_suite(_suite(), tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    remote = run_suite(_suite(), tmp_path / "ray", executor="ray", cpus_per_cell=1)
    assert [r["cell"] for r in remote] == [r["cell"] for r in local]
    a, b = _numbers(local), _numbers(remote)
    for cell in a:
        assert sorted(a[cell]) == sorted(b[cell]), cell
        differ = {k: (a[cell][k], b[cell][k]) for k in a[cell] if abs(a[cell][k] - b[cell][k]) > 1e-6}
        assert not differ, f"{cell}: {differ}"
    # the same results files, and a re-run skips every finished cell
    write_results(tmp_path / "ray")
    assert (tmp_path / "ray" / "report.html").is_file()
    events = []
    run_suite(_suite(), tmp_path / "ray", executor="ray", progress=events.append)
    assert {e["status"] for e in events} == {"skip"}


def test_a_killed_worker_is_retried_and_the_cell_resumes(tmp_path, local_ray):
    run_dir = tmp_path / "run"
    cell = "clean__unet__seed0"
    attempts = run_dir / "cells" / cell / "attempts.txt"
    done = {}

    def sweep():
        done["rows"] = run_suite(_suite(epochs=40), run_dir, executor="ray", max_retries=2)

    thread = threading.Thread(target=sweep)
    thread.start()
    deadline = time.time() + 120
    while not attempts.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert attempts.exists(), "the cell never started"
    pid = int(attempts.read_text().split()[0].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert len(attempts.read_text().split()) == 2  # killed once, run again
    assert cell in [r["cell"] for r in done["rows"]] and len(done["rows"]) == 2
    assert "attempt 2 in process" in (run_dir / "log.txt").read_text()
    assert not (run_dir / "cells" / cell / "failed.json").exists()


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path, local_ray):
    # unsupervised methods need binary data: on the multi-class shapes kind that cell's job raises
    config = SuiteConfig(data="synth:shapes", labels=["clean"], seeds=[0], synth_n=6, synth_size=32, train=TINY,
                         unsupervised=["otsu"])
    rows = run_suite(config, tmp_path / "run", executor="ray")
    assert [r["cell"] for r in rows] == ["clean__unet__seed0"]
    failed = json.loads((tmp_path / "run" / "cells" / "unsup-otsu__seed0" / "failed.json").read_text())
    assert "DataError: unsupervised rows need binary data" in failed["error"]
    summary = write_results(tmp_path / "run")
    assert summary["failed"] == ["unsup-otsu__seed0"]
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "unsup-otsu__seed0: DataError" in md
    assert "**mIoU**: the mean over classes" in md and "**val** (the headline)" not in md  # multi-class protocols


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ParameterError, match=r"--executor ray needs Ray, which is not installed: pip install"):
        run_suite(_suite(), tmp_path / "run", executor="ray")
    assert not (tmp_path / "run").exists()


def test_cli_without_ray_is_one_line_and_exit_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mstool.cli.main import cli

    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(cli, ["compare", "--data", "synth:er", "--labels", "clean", "--executor", "ray",
                                 "-o", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "--executor ray needs Ray, which is not installed: pip install 'mstool[ray]'" in r.stderr
    assert not (tmp_path / "run").exists()
