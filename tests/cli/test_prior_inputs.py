"""What `mstool prior estimate|show` accept: a `labels make` copy as --labels, one image file as --images, and
images or masks of another size than the prior refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

from mstool.cli.main import cli
from mstool.data import write_synthetic_dataset
from mstool.errors import DataError, LayoutError
from mstool.io import write_mask
from mstool.metastructure import Prior, load_prior, save_prior
from mstool.runs import estimate_prior_from_images, estimate_prior_from_labels, show_prior

from ..pictures import assert_picture_has_content


def _refused(r, *texts: str) -> None:
    """Exit status 2 and one ``Error:`` line on stderr naming every text."""
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output
    for text in texts:
        assert text in r.stderr, (text, r.stderr)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    """``ds``: a paper-layout dataset with train, val and test; ``rough``: its copy from `labels make`."""
    root = tmp_path_factory.mktemp("prior_inputs")
    ds = write_synthetic_dataset(root / "ds", "er", n=5, size=32, seed=0)
    r = CliRunner().invoke(cli, ["labels", "make", "--clean", str(ds), "--spec", "dilate:1+sample:0.3",
                                 "-o", str(root / "rough"), "-q"])
    assert r.exit_code == 0, r.output
    return root


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*/labels/*.png"))


def test_estimate_and_show_read_a_labels_make_copy_with_every_split(sets, tmp_path):
    rough = sets / "rough"
    runner = CliRunner()
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(rough), "-o", str(tmp_path / "all.npz")])
    assert r.exit_code == 0, r.output
    every = load_prior(tmp_path / "all.npz")
    assert sorted(every.names) == _stems(rough) == _stems(sets / "ds") and len(every.names) == 5
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(rough), "--split", "train",
                            "-o", str(tmp_path / "train.npz")])
    assert r.exit_code == 0, r.output
    train = load_prior(tmp_path / "train.npz")
    # the same masks as the copy's train mask folder given directly, which always worked
    direct = estimate_prior_from_labels(rough / "train" / "labels")
    assert train.names == direct.names
    torch.testing.assert_close(train.density, direct.density)
    r = runner.invoke(cli, ["prior", "show", str(tmp_path / "all.npz"), "--images", str(sets / "ds"),
                            "--labels", str(rough), "--rows", "5", "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert_picture_has_content(tmp_path / "p.png")


def test_a_labels_make_copy_refuses_a_missing_split_and_an_unfound_clean_set(sets, tmp_path, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(sets / "rough"), "--split", "holdout",
                            "-o", str(tmp_path / "p.npz")])
    _refused(r, "rough", "holdout", "train, val, test")
    # noise.json records the clean set's absolute path: the copy is found from anywhere, until the set moves
    shutil.copytree(sets / "ds", tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(cli, ["labels", "make", "--clean", "ds", "--spec", "sample:0.5", "-o", "rough", "-q"])
    assert r.exit_code == 0, r.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = runner.invoke(cli, ["prior", "estimate", "--labels", "../rough", "-o", "p.npz"])
    assert r.exit_code == 0, r.output
    (tmp_path / "ds").rename(tmp_path / "ds-moved")
    r = runner.invoke(cli, ["prior", "estimate", "--labels", "../rough", "-o", "q.npz"])
    _refused(r, f"../rough: a noisy copy of {tmp_path / 'ds'}", "../rough/train/labels")
    assert not (tmp_path / "elsewhere" / "q.npz").exists()
    r = runner.invoke(cli, ["prior", "estimate", "--labels", "../rough/train/labels", "-o", "q.npz"])
    assert r.exit_code == 0, r.output
    train = sorted(p.stem for p in (tmp_path / "rough" / "train" / "labels").glob("*.png"))
    assert list(load_prior(tmp_path / "elsewhere" / "q.npz").names) == train


def test_a_labels_make_copy_of_some_splits_is_read_as_it_was_made(sets, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["labels", "make", "--clean", str(sets / "ds"), "--split", "test", "--spec", "sample:0.5",
                            "-o", str(tmp_path / "rough"), "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "rough" / "noise.json").read_text())["splits"] == ["test"]
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(tmp_path / "rough"), "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.output
    test = sorted(p.stem for p in (tmp_path / "rough" / "test" / "labels").glob("*.png"))
    assert sorted(load_prior(tmp_path / "p.npz").names) == test


def test_a_labels_make_copy_is_checked_against_its_images_and_its_record(sets, tmp_path):
    rough = shutil.copytree(sets / "rough", tmp_path / "rough")
    mask = sorted((rough / "val" / "labels").glob("*.png"))[0]
    write_mask(mask, np.zeros((24, 32), np.uint8))
    r = CliRunner().invoke(cli, ["prior", "estimate", "--labels", str(rough), "-o", str(tmp_path / "p.npz")])
    _refused(r, str(mask), "24 x 32", "32 x 32")
    assert not (tmp_path / "p.npz").exists()
    (rough / "noise.json").write_text("{not json")
    r = CliRunner().invoke(cli, ["prior", "estimate", "--labels", str(rough), "-o", str(tmp_path / "p.npz")])
    _refused(r, str(rough / "noise.json"), "labels make")
    with pytest.raises(DataError, match="not a noise.json written by"):
        estimate_prior_from_labels(rough)
    (rough / "noise.json").unlink()
    with pytest.raises(LayoutError, match="no images"):
        estimate_prior_from_labels(rough)


@pytest.fixture
def mismatch(tmp_path) -> Path:
    """A 100 x 120 prior with entry ``a``, a 512 x 512 image ``a`` and masks ``a`` of 100 x 120 and of 64 x 64."""
    (tmp_path / "imgs").mkdir()
    tifffile.imwrite(tmp_path / "imgs" / "a.tif", np.zeros((512, 512), np.uint8))
    for name, size in (("fits", (100, 120)), ("small", (64, 64))):
        write_mask(tmp_path / name / "a.png", np.zeros(size, np.uint8))
    save_prior(tmp_path / "P.npz", Prior(torch.rand(1, 2, 100, 120), ("a",), ("background", "foreground")))
    return tmp_path


def test_show_refuses_an_image_of_another_size_than_the_prior(mismatch):
    out = mismatch / "out.png"
    r = CliRunner().invoke(cli, ["prior", "show", str(mismatch / "P.npz"), "--images", str(mismatch / "imgs"),
                                 "--labels", str(mismatch / "fits"), "-o", str(out)])
    _refused(r, str(mismatch / "imgs" / "a.tif"), "100 x 120", "512 x 512")
    assert not out.exists() and sorted(p.name for p in mismatch.iterdir()) == ["P.npz", "fits", "imgs", "small"]
    with pytest.raises(DataError, match=r"entry 'a' is 100 x 120 but image .*a\.tif is 512 x 512"):
        show_prior(mismatch / "P.npz", out, images=mismatch / "imgs")


def test_show_refuses_a_mask_of_another_size_than_its_image_or_entry(mismatch):
    out = mismatch / "out.png"
    small = mismatch / "small" / "a.png"
    r = CliRunner().invoke(cli, ["prior", "show", str(mismatch / "P.npz"), "--labels", str(mismatch / "small"),
                                 "-o", str(out)])
    _refused(r, str(small), "64 x 64", "100 x 120", str(mismatch / "P.npz"))
    assert not out.exists()
    tifffile.imwrite(mismatch / "imgs" / "a.tif", np.zeros((100, 120), np.uint8))
    with pytest.raises(DataError, match=r"a\.png: mask is 64 x 64 but its image .*a\.tif is 100 x 120"):
        show_prior(mismatch / "P.npz", out, images=mismatch / "imgs", labels=mismatch / "small")
    assert not out.exists()
    assert show_prior(mismatch / "P.npz", out, images=mismatch / "imgs", labels=mismatch / "fits") == ["a"]
    assert_picture_has_content(out)


def test_estimate_and_show_take_one_image_file(sets, tmp_path):
    image = sorted((sets / "ds" / "train" / "images").glob("*.tif"))[0]
    runner = CliRunner()
    r = runner.invoke(cli, ["prior", "estimate", "--images", str(image), "-o", str(tmp_path / "one.npz")])
    assert r.exit_code == 0, r.output
    one = load_prior(tmp_path / "one.npz")
    (tmp_path / "folder").mkdir()
    shutil.copy(image, tmp_path / "folder" / image.name)
    folder = estimate_prior_from_images(tmp_path / "folder")
    assert one.names == folder.names == (image.stem,) and one.density.shape == (1, 2, 32, 32)
    torch.testing.assert_close(one.density, folder.density)
    r = runner.invoke(cli, ["prior", "show", str(tmp_path / "one.npz"), "--images", str(image),
                            "-o", str(tmp_path / "one.png")])
    assert r.exit_code == 0, r.output
    assert_picture_has_content(tmp_path / "one.png")
    r = runner.invoke(cli, ["prior", "estimate", "--images", str(image), "--split", "train",
                            "-o", str(tmp_path / "x.npz")])
    _refused(r, str(image), "no splits")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    r = runner.invoke(cli, ["prior", "estimate", "--images", str(notes), "-o", str(tmp_path / "x.npz")])
    _refused(r, str(notes), "not an image file")
    assert not (tmp_path / "x.npz").exists()
