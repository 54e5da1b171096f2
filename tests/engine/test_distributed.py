"""One training across two CPU processes (gloo), started by torchrun as a user would: the loss goes down, only the
first process writes, a killed run resumes, and the model loads in a single-process `mstool evaluate`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mstool.engine.distributed import rank_and_world, same_everywhere, shard
from mstool.errors import ParameterError
from mstool.runs import run_config, train_run


def test_shard_in_one_process_is_plain_batches():
    assert rank_and_world() == (0, 1)
    assert [b.tolist() for b in shard(torch.arange(7), 3)] == [[0, 1, 2], [3, 4, 5], [6]]


def _agree(rank, folder, values):
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        answers = [same_everywhere(v) for v in values[rank]]
        (folder / f"rank{rank}").write_text(json.dumps(answers))
    finally:
        torch.distributed.destroy_process_group()


def test_same_everywhere_gives_every_process_one_answer(tmp_path):
    """Resumed ranks compare their checkpoint epochs with it: every rank must get the same answer, so that they stop
    together instead of one waiting in a collective the others never join."""
    assert same_everywhere(7)  # one process
    values = [[3, 3, 0], [3, 5, 0]]
    torch.multiprocessing.spawn(_agree, args=(tmp_path, values), nprocs=2, join=True)
    answers = [json.loads((tmp_path / f"rank{r}").read_text()) for r in (0, 1)]
    assert answers == [[True, False, True], [True, False, True]]


def test_ddp_outside_torchrun_says_how_to_start_it(tmp_path):
    with pytest.raises(ParameterError, match="runs under torchrun: torchrun --nproc-per-node N -m mstool.cli"):
        train_run("synth:er", tmp_path / "run", run_config("quick", {"epochs": 1}), ddp=True)


class _Run:
    """A torchrun job writing to files: a pipe nobody reads while the test waits would fill and stall it."""

    def __init__(self, out, extra, epochs):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m",
               "mstool.cli", "train", "--ddp", "--data", "synth:er", "--labels", "clean", "--epochs", str(epochs),
               "--batch-size", "2", "--crop", "32", "--set", "val_every=1", "--set", "model_options.base=8",
               "-o", str(out), *extra]
        self.logs = [out.parent / f"{out.name}.{stream}.{time.monotonic_ns()}" for stream in ("out", "err")]
        with open(self.logs[0], "w") as stdout, open(self.logs[1], "w") as stderr:
            self.process = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, text=True,
                                            start_new_session=True)
        self.pid = self.process.pid

    def poll(self):
        return self.process.poll()

    def kill(self):
        """SIGKILL the launcher and its workers, as a crash would. torchrun starts each worker in a session of its
        own, so killing the launcher's process group leaves them running: an orphaned run then went on writing
        the folder that the resumed run was reading."""
        table = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
        children: dict[int, list[int]] = {}
        for line in table.splitlines():
            pid, ppid = map(int, line.split())
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the listing and the kill
                pass
        self.process.wait(timeout=60)

    def wait(self, timeout):
        return self.process.wait(timeout=timeout)

    def communicate(self, timeout):
        self.process.wait(timeout=timeout)
        self.returncode = self.process.returncode
        return tuple(path.read_text() for path in self.logs)


def _torchrun(out, *extra, epochs=6):
    return _Run(out, extra, epochs)


def _curves(path):
    lines = path.read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


def test_two_processes_train_one_network_and_the_model_evaluates_alone(tmp_path):
    out = tmp_path / "run"
    done = _torchrun(out)
    stdout, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr[-2000:]
    record = json.loads((out / "train.json").read_text())
    assert record["processes"] == 2 and record["effective_batch_size"] == 4
    losses = [float(r["train_loss"]) for r in _curves(out / "curves.csv")]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert stdout.count("trained unet") == 1  # one process reports
    ev = subprocess.run([sys.executable, "-m", "mstool.cli", "evaluate", "--checkpoint", str(out / "model.pt"),
                         "--no-probe"], capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert json.loads((out / "evaluation.json").read_text())["val/dice"] > 0.5


def test_a_killed_distributed_run_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    first = _torchrun(out, "--set", "checkpoint_every=2", epochs=40)
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        assert first.poll() is None, first.communicate(timeout=1)[1][-2000:]  # it ended before its first checkpoint
        time.sleep(0.05)
    first.kill()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 2 <= saved["epoch"] < 40
    again = _torchrun(out, "--set", "checkpoint_every=2", epochs=40)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-2000:]
    rows = _curves(out / "curves.csv")
    assert len(rows) == 40
    for before, after in zip(saved["history"], rows):  # the epochs before the kill are the checkpoint's own
        assert float(after["seconds"]) == pytest.approx(before["seconds"], rel=1e-9)


def test_two_processes_train_on_data_read_item_by_item(tmp_path):
    out = tmp_path / "run"
    done = _torchrun(out, "--lazy", epochs=3)
    _, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr[-2000:]
    record = json.loads((out / "train.json").read_text())
    assert record["lazy"] is True and record["processes"] == 2 and record["effective_batch_size"] == 4
    losses = [float(r["train_loss"]) for r in _curves(out / "curves.csv")]
    assert len(losses) == 3 and losses[-1] < losses[0]
