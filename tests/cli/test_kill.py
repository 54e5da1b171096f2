"""A run killed with SIGKILL leaves its output absent or complete (never half written) and its inputs unchanged;
the next run clears the killed run's hidden leftovers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mstool.data import write_synthetic_dataset

pytestmark = pytest.mark.slow


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _kill_when_writing(args: list[str], out: Path, ready) -> int:
    """Start ``mstool ARGS``, wait until its hidden temporary output holds what ``ready`` looks for, SIGKILL it;
    return its exit status (negative: killed)."""
    proc = subprocess.Popen([sys.executable, "-m", "mstool.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if any(ready(tmp) for tmp in out.parent.glob(f".{out.name}.*.tmp")):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
    return proc.wait()


def _complete_segmentation(out: Path, names: list[str]) -> bool:
    run = json.loads((out / "run.json").read_text())
    return sorted(run["images"]) == names and sorted(p.stem for p in (out / "masks").iterdir()) == names


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("kill") / "ds", "nuc", n=40, size=64, seed=0)


def test_killed_segment_leaves_nothing_or_everything(dataset, tmp_path):
    images = dataset / "train" / "images"
    names = sorted(p.stem for p in images.iterdir())
    before = _checksums(dataset)
    out = tmp_path / "seg"
    args = ["segment", str(images), "-o", str(out), "-q"]  # overlays make the writing loop long enough to hit
    code = _kill_when_writing(args, out, lambda tmp: any((tmp / "masks").glob("*.png")))
    assert code == -signal.SIGKILL
    assert not out.exists()  # killed while masks were being written: no output at all
    assert list(tmp_path.glob(".seg.*.tmp"))  # ... only a hidden leftover, which the next run clears
    subprocess.run([sys.executable, "-m", "mstool.cli", *args], check=True, capture_output=True)
    assert _complete_segmentation(out, names)
    assert not list(tmp_path.glob(".seg.*"))
    finished = _checksums(out)
    # killed while replacing a finished output: the old one stays whole until the new one is complete
    code = _kill_when_writing([*args, "--overwrite", "--method", "kmeans"], out,
                              lambda tmp: any((tmp / "masks").glob("*.png")))
    assert code == -signal.SIGKILL
    assert _checksums(out) == finished
    assert _checksums(dataset) == before


def test_killed_labels_make_leaves_nothing_or_everything(dataset, tmp_path):
    before = _checksums(dataset)
    out = tmp_path / "noisy"
    args = ["labels", "make", "--clean", str(dataset), "--spec", "skeleton+shift:1+sample:0.5", "-o", str(out),
            "-q"]
    code = _kill_when_writing(args, out, lambda tmp: True)  # the folder appears just before the noise is drawn
    assert code == -signal.SIGKILL
    if out.exists():  # finished before the kill: then it is complete
        assert len(list(out.rglob("*.png"))) == 40 and (out / "noise.json").exists()
    else:
        subprocess.run([sys.executable, "-m", "mstool.cli", *args], check=True, capture_output=True)
    masks = sorted(out.rglob("*.png"))
    assert len(masks) == 40 and json.loads((out / "noise.json").read_text())["masks"] == 40
    assert not list(tmp_path.glob(".noisy.*"))
    assert _checksums(dataset) == before
