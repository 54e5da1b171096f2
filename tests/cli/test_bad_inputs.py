"""The bad-input corpus: every command, given input it cannot use, says so in one line and touches nothing.

Each case runs in a fresh copy of one workspace (datasets, images, priors, a user's own folder, a finished mstool
output) and asserts: exit status 2, at most one line on stderr that starts with ``Error:`` and names the file or
option at fault, no traceback, and the whole workspace unchanged afterwards (no output folder, no temporary leftover,
every input byte for byte as it was).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from mstool.cli.main import _COMMANDS, cli
from mstool.data import DataSource, write_synthetic_dataset
from mstool.io import write_mask
from mstool.metastructure import Prior, save_prior
from mstool.runs import estimate_prior_from_images, run_config, train_run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("corpus") / "w"
    ds = write_synthetic_dataset(w / "data" / "ds", "er", n=5, size=32, seed=0)
    rng = np.random.default_rng(0)
    cls = w / "data" / "cls"  # class indices 0..7 where a binary mask is expected
    for split in ("train", "val", "test"):
        shutil.copytree(ds / split / "images", cls / split / "images")
        for image in (cls / split / "images").iterdir():
            (cls / split / "labels").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 8, (32, 32)).astype(np.uint8)).save(cls / split / "labels" /
                                                                               f"{image.stem}.png")
    mm = w / "data" / "mm"  # a mask of another size than its image
    (mm / "train" / "images").mkdir(parents=True)
    tifffile.imwrite(mm / "train" / "images" / "a.tif", rng.integers(0, 999, (32, 48)).astype(np.uint16))
    write_mask(mm / "train" / "labels" / "a.png", rng.integers(0, 2, (64, 64)))
    shutil.copytree(ds / "test" / "images", w / "imgs")
    (w / "stack").mkdir()
    tifffile.imwrite(w / "stack" / "s.tif", rng.integers(0, 999, (5, 32, 32)).astype(np.uint16),
                     photometric="minisblack")
    (w / "priors").mkdir()
    save_prior(w / "priors" / "prior.npz", estimate_prior_from_images(w / "imgs"))
    prior = estimate_prior_from_images(w / "imgs")
    save_prior(w / "priors" / "other.npz", Prior(prior.density, tuple(f"x{i}" for i in range(len(prior.names))),
                                                 prior.classes))
    (w / "priors" / "junk.npz").write_text("hello, not an archive")
    (w / "files").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(w / "files" / "existing.png")
    (w / "files" / "existing.json").write_text("{}\n")
    (w / "files" / "bad.pt").write_bytes(b"not a model")
    (w / "files" / "broken.tif").write_text("hello, not a TIFF")
    (w / "notes").mkdir()
    (w / "notes" / "notes.txt").write_text("a user's own folder\n")
    r = CliRunner().invoke(cli, ["segment", str(w / "imgs"), "-o", str(w / "done"), "-q", "--no-overlays"])
    assert r.exit_code == 0, r.output
    tiny = {"epochs": 1, "crop": 32, "batch_size": 2, "model_options": {"base": 4, "depth": 1}}
    train_run(DataSource(str(ds)), w / "model", run_config("quick", tiny))
    return w


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones included), with each file's checksum."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
    return out


@dataclass
class Case:
    args: list[str]
    names: str  # the file or option the error line must name
    patch: str | None = None  # a monkeypatch to apply, by name (see _apply)
    id: str = field(default="")


def _overlap(command: list[str], given: str, out_option: str = "-o", extra=("--overwrite",)) -> list[Case]:
    """An output equal to an input, inside it and above it (the input lies in a sub-folder of the workspace)."""
    parent = str(Path(given).parent)
    cases = [Case([*command, out_option, given, *extra], given)]
    if not Path(given).suffix:  # a folder: an output may also lie inside it
        cases.append(Case([*command, out_option, f"{given}/out", *extra], f"{given}/out"))
    cases.append(Case([*command, out_option, parent, *extra], parent))
    return cases


CASES: list[Case] = [
    # ------------------------------------------------------------------------------------------------ data
    Case(["data", "synth", "--n", "2", "out"], "--n"),
    Case(["data", "synth", "--kind", "blobs", "out"], "--kind"),
    Case(["data", "synth", "--n", "3", "--size", "32", "--overwrite", "notes"], "notes"),
    Case(["data", "synth", "--n", "3", "--size", "32", "done"], "done"),
    Case(["data", "synth", "--n", "3", "--size", "32", "files/existing.json"], "files/existing.json"),
    Case(["data", "check", "nowhere"], "nowhere"),
    Case(["data", "check", "data/ds", "--json", "data/ds/report.json"], "data/ds/report.json"),
    Case(["data", "check", "data/ds", "--json", "files/existing.json"], "files/existing.json"),
    Case(["data", "check", "data/ds", "--json", "report.txt"], "report.txt"),
    Case(["data", "check", "data/ds", "--layout", "voc"], "data/ds"),
    # ---------------------------------------------------------------------------------------------- labels
    Case(["labels", "make", "--clean", "data/ds", "--spec", "flip:1.5", "-o", "out"], "--spec"),
    Case(["labels", "make", "--clean", "data/ds", "--spec", "bogus", "-o", "out"], "--spec"),
    *_overlap(["labels", "make", "--clean", "data/ds", "--spec", "sample:0.1"], "data/ds"),
    Case(["labels", "make", "--clean", "data/ds", "--spec", "clean", "-o", ".", "--overwrite"], "."),
    Case(["labels", "make", "--clean", "data/cls", "--mask-mode", "binary", "--spec", "clean", "-o", "out"],
         "data/cls/train/labels/er_0000.png"),
    Case(["labels", "make", "--clean", "nowhere", "--spec", "clean", "-o", "out"], "--clean"),
    Case(["labels", "make", "--clean", "data/ds", "--spec", "clean", "-o", "notes", "--overwrite"], "notes"),
    Case(["labels", "make", "--clean", "data/ds", "--spec", "clean", "-o", "done"], "done"),
    Case(["labels", "make", "--clean", "data/ds", "--spec", "clean", "-o", "out", "-q", "--seed", "-1"], "--seed"),
    Case(["labels", "analyze", "--clean", "data/ds", "--noisy", "imgs"], "imgs"),
    Case(["labels", "analyze", "--clean", "data/mm", "--noisy", "data/mm"], "data/mm/train/labels/a.png"),
    Case(["labels", "analyze", "--clean", "data/ds", "--noisy", "data/ds", "--json", "files/existing.json"],
         "files/existing.json"),
    *_overlap(["labels", "analyze", "--clean", "data/ds", "--noisy", "done"], "data/ds/a.json", "--json"),
    # ----------------------------------------------------------------------------------------------- prior
    Case(["prior", "estimate", "-o", "p.npz"], "--labels"),
    Case(["prior", "estimate", "--labels", "data/ds", "--ems", "bogus", "-o", "p.npz"], "--ems"),
    Case(["prior", "estimate", "--labels", "data/ds", "--images", "imgs", "-o", "p.npz"], "--labels"),
    Case(["prior", "estimate", "--labels", "data/mm", "-o", "p.npz"], "data/mm/train/labels/a.png"),
    Case(["prior", "estimate", "--labels", "data/ds", "-o", "files/existing.png"], "files/existing.png"),
    Case(["prior", "estimate", "--labels", "data/ds", "-o", "priors/prior.npz"], "priors/prior.npz"),
    Case(["prior", "estimate", "--images", "stack", "-o", "p.npz"], "stack/s.tif"),
    Case(["prior", "estimate", "--images", "imgs", "--from", "watershed", "-o", "p.npz"], "--from"),
    Case(["prior", "estimate", "--images", "imgs", "--from", "otsu,otsu", "-o", "p.npz"], "--from"),
    Case(["prior", "estimate", "--images", "imgs", "--ems", "blur:1", "-o", "p.npz"], "blur"),
    Case(["prior", "estimate", "--labels", "data/ds", "--split", "holdout", "-o", "p.npz"], "holdout"),
    Case(["prior", "estimate", "--labels", "data/ds", "--foreground", "dark", "-o", "p.npz"], "--foreground"),
    *_overlap(["prior", "estimate", "--labels", "data/ds"], "data/ds/p.npz"),
    Case(["prior", "show", "priors/junk.npz", "-o", "p.png"], "priors/junk.npz"),
    Case(["prior", "show", "priors/prior.npz", "-o", "files/existing.png"], "files/existing.png"),
    Case(["prior", "show", "priors/prior.npz", "-o", "p.txt"], "p.txt"),
    Case(["prior", "show", "priors/prior.npz", "--images", "imgs", "-o", "imgs/p.png"], "imgs/p.png"),
    Case(["prior", "show", "priors/prior.npz", "-o", "priors/prior.png", "--labels", "priors"], "priors/prior.png"),
    # --------------------------------------------------------------------------------------------- segment
    *_overlap(["segment", "imgs"], "imgs"),
    *_overlap(["segment", "imgs", "--prior", "priors/prior.npz"], "priors/prior.npz"),
    *_overlap(["segment", "imgs", "--checkpoint", "done", "--method", "otsu"], "done"),
    Case(["segment", "imgs", "-o", ".", "--overwrite"], "."),
    Case(["segment", "imgs", "-o", "notes", "--overwrite"], "notes"),
    Case(["segment", "imgs", "-o", "done"], "done"),
    Case(["segment", "imgs", "-o", "out", "--set", "bogus=1"], "bogus"),
    Case(["segment", "imgs", "-o", "out", "--prior", "priors/junk.npz"], "priors/junk.npz"),
    Case(["segment", "imgs", "-o", "out", "--prior", "priors/other.npz"], "priors/other.npz"),
    Case(["segment", "stack", "-o", "out"], "stack/s.tif"),
    Case(["segment", "stack", "-o", "out", "--page", "9"], "--page"),
    Case(["segment", "imgs", "-o", "out", "--method", "watershed"], "--method"),
    Case(["segment", "imgs", "-o", "out", "--method", "igtt", "--checkpoint", "files/bad.pt"], "files/bad.pt"),
    Case(["segment", "nowhere", "-o", "out"], "nowhere"),
    Case(["segment", "files/broken.tif", "-o", "out"], "files/broken.tif: cannot read image"),
    Case(["segment", "data/ds", "-o", "out", "--split", "holdout"], "holdout"),
    Case(["segment", "imgs", "-o", "rofs/seg"], "rofs/seg", patch="read-only"),
    Case(["segment", "imgs", "-o", "out", "--method", "multiotsu", "--foreground", "dark"], "foreground"),
    Case(["segment", "imgs", "-o", "out", "--foreground", "left"], "--foreground"),
    # ----------------------------------------------------------------------------------------------- train
    Case(["train", "--data", "nowhere", "-o", "run"], "nowhere"),
    Case(["train", "--data", "synth:blobs", "-o", "run"], "blobs"),
    Case(["train", "--data", "data/ds", "--labels", "blur:1", "-o", "run"], "blur"),
    Case(["train", "--data", "data/ds", "-o", "notes"], "notes"),
    Case(["train", "--data", "data/ds", "-o", "files/existing.json"], "files/existing.json"),
    *_overlap(["train", "--data", "data/ds"], "data/ds", extra=()),
    Case(["train", "--data", "data/cls", "--mask-mode", "binary", "-o", "run"], "data/cls/train/labels/er_0000.png"),
    Case(["train", "--data", "data/ds", "--set", "bogus=1", "-o", "run"], "bogus"),
    Case(["train", "--data", "data/ds", "--epochs", "0", "-o", "run"], "--epochs"),
    Case(["train", "--data", "data/ds", "--labels", "mine=nowhere", "-o", "run"], "nowhere"),
    Case(["train", "--data", "data/ds", "--labels", "mine=imgs", "-o", "run"], "imgs: no mask for training image"),
    Case(["train", "--data", "data/ds", "--labels", "mine=notes", "--lazy", "-o", "run"], "--labels"),
    Case(["train", "--data", "data/ds", "--labels", "mine=notes", "-o", "notes/run"], "notes/run"),
    # -------------------------------------------------------------------------------------------- evaluate
    Case(["evaluate", "--checkpoint", "files/bad.pt", "--data", "data/ds", "--json", "e.json"], "files/bad.pt"),
    Case(["evaluate", "--checkpoint", "files/bad.pt"], "files"),
    Case(["evaluate", "--checkpoint", "files/nothing.pt", "--data", "data/ds"], "--checkpoint"),
    Case(["evaluate", "--checkpoint", "files/bad.pt", "--data", "data/ds", "--json", "files/existing.json"],
         "files/existing.json"),
    Case(["evaluate", "--checkpoint", "files/bad.pt", "--data", "data/ds", "--json", "files/bad.pt", "--overwrite"],
         "files/bad.pt"),
    Case(["evaluate", "--checkpoint", "files/bad.pt", "--data", "data/ds", "--json", "data/ds/e.json"],
         "data/ds/e.json"),
    # --------------------------------------------------------------------------------------------- predict
    Case(["predict", "imgs", "--checkpoint", "files/bad.pt", "-o", "out"], "files/bad.pt"),
    Case(["predict", "imgs", "--checkpoint", "notes", "-o", "out"], "notes"),
    Case(["predict", "imgs", "--checkpoint", "files/nothing.pt", "-o", "out"], "--checkpoint"),
    *_overlap(["predict", "imgs", "--checkpoint", "model"], "imgs"),
    Case(["predict", "imgs", "--checkpoint", "model", "-o", "model"], "model"),
    Case(["predict", "imgs", "--checkpoint", "model", "-o", "notes", "--overwrite"], "notes"),
    Case(["predict", "imgs", "--checkpoint", "model", "-o", "done"], "done"),
    Case(["predict", "imgs", "--checkpoint", "model", "--threshold", "2", "-o", "out"], "--threshold"),
    Case(["predict", "imgs", "--checkpoint", "model", "--threshold", "val", "-o", "out"], "model/evaluation.json"),
    Case(["predict", "nowhere", "--checkpoint", "model", "-o", "out"], "nowhere"),
    Case(["predict", "data/ds", "--split", "holdout", "--checkpoint", "model", "-o", "out"], "holdout"),
    Case(["predict", "files/broken.tif", "--checkpoint", "model", "-o", "out"], "files/broken.tif"),
    Case(["predict", "stack", "--checkpoint", "model", "-o", "out", "--page", "9"], "stack/s.tif"),
    Case(["predict", "imgs", "--checkpoint", "model", "--tile", "8", "-o", "out"], "--tile"),
    # --------------------------------------------------------------------------------------------- compare
    Case(["compare", "--labels", "blur:1", "-o", "run"], "blur"),
    Case(["compare", "--model", "vgg", "-o", "run"], "vgg"),
    Case(["compare", "--seeds", "x", "-o", "run"], "--seeds"),
    *_overlap(["compare", "--data", "data/ds", "--labels", "clean"], "data/ds", extra=()),
    Case(["compare", "--data", "data/ds", "--labels", "clean", "-o", "notes"], "notes"),
    Case(["compare", "--data", "data/cls", "--mask-mode", "binary", "--labels", "clean", "-o", "run"],
         "data/cls/train/labels/er_0000.png"),
    Case(["compare", "--report-only", "-o", "notes"], "notes"),
    Case(["compare", "--data", "data/ds", "--labels", "clean", "--cell", "nope", "-o", "run"], "nope"),
    Case(["compare", "--data", "data/ds", "--labels", "none", "--unsupervised", "otsu:bogus=1", "-o", "run"],
         "bogus"),
    Case(["compare", "--data", "data/ds", "--labels", "none", "--unsupervised", "multiotsu:foreground=dark", "-o",
          "run"], "foreground"),
    Case(["compare", "--data", "data/ds", "--labels", "none", "--unsupervised", "igtt:prior=multiotsu", "-o", "run"],
         "prior=multiotsu"),
    Case(["compare", "--data", "data/ds", "--labels", "none", "--unsupervised", "igtt:prior=otsu+otsu", "-o", "run"],
         "prior=otsu+otsu"),
    # ----------------------------------------------------------------------------------------------- score
    Case(["score", "nowhere", "--truth", "data/ds"], "nowhere"),
    Case(["score", "done"], "--truth"),
    Case(["score", "done", "--truth", "data/ds", "--mask-mode", "bogus"], "--mask-mode"),
    Case(["score", "done", "--truth", "data/mm"], "done: no mask shares an image name"),
    Case(["score", "files/existing.png", "--truth", "data/ds/test/labels/er_0004.png"], "files/existing.png"),
    Case(["score", "files/broken.tif", "--truth", "files/existing.png"], "files/broken.tif"),
    Case(["score", "done", "--truth", "data/cls", "--mask-mode", "multiclass"], "data/cls/test/labels/"),
    Case(["score", "done", "--truth", "data/ds", "--json", "files/existing.json"], "files/existing.json"),
    Case(["score", "done", "--truth", "data/ds", "--json", "s.txt"], "s.txt"),
    *_overlap(["score", "done", "--truth", "data/ds"], "data/ds/s.json", "--json"),
]


def _apply(patch: str | None, monkeypatch) -> None:
    if patch == "read-only":  # as root every folder is writable; refuse the temporary folder as a read-only disk would
        import tempfile

        def refuse(*args, **kwargs):
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(tempfile, "mkdtemp", refuse)


def test_the_corpus_is_large_and_covers_every_command():
    commands = {c.args[0] for c in CASES}
    assert len(CASES) >= 40
    assert commands == set(_COMMANDS)


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c.args)[:70] for c in CASES])
def test_bad_input(case, workspace, tmp_path, monkeypatch):
    w = tmp_path / "w"
    shutil.copytree(workspace, w)
    monkeypatch.chdir(w)
    before = _snapshot(w)
    _apply(case.patch, monkeypatch)
    r = CliRunner().invoke(cli, case.args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception  # no exception escaped to a traceback
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert case.names in lines[0], f"the error does not name {case.names!r}: {lines[0]}"
    assert r.stdout == "", r.stdout
    assert _snapshot(w) == before  # nothing written, nothing removed, every input unchanged


def test_one_unreadable_image_is_named_once(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(workspace)
    r = CliRunner().invoke(cli, ["segment", "files/broken.tif", "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and r.stderr.count("broken.tif") == 1, r.stderr
