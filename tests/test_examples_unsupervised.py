"""End-to-end runs of the examples that chain mstool's commands (unsupervised, partial annotation, predict) at
their tiniest settings (most of the time is the start-up of the `mstool` commands they chain)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mstool.data import synthesize
from mstool.io import write_image, write_mask

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_IGTT = ["--set", "rounds=1", "--set", "steps=2", "--set", "model_options.base=4",
             "--set", "model_options.depth=2"]

pytestmark = pytest.mark.slow


def run_example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def table_row(stdout: str, label: str) -> list[float]:
    """The numbers of the table row that starts with `label`."""
    rows = [line for line in stdout.splitlines() if line.startswith(label + " ")]
    assert len(rows) == 1, stdout
    return [float(v) for v in re.findall(r"\d+\.\d{3}", rows[0][len(label):])]


def test_segment_without_labels_on_own_folder(tmp_path):
    # a user's folder (saves the `mstool data synth` start-up; the rough-label example runs that path), with masks
    # named NAME_mask.png to check that the suffix is dropped when matching
    data = synthesize("er", 3, 32, generator=torch.Generator().manual_seed(0))
    names = [f"cell{i}" for i in range(3)]
    for name, image, labels in zip(names, data.images, data.labels):
        write_image(tmp_path / "images" / f"{name}.tif", image[0])
        write_mask(tmp_path / "truth" / f"{name}_mask.png", labels)
    out = tmp_path / "out"
    stdout = run_example("segment_without_labels.py", "--images", str(tmp_path / "images"), "--truth",
                         str(tmp_path / "truth"), "--out", str(out), "--threads", "1", "--no-overlays", *TINY_IGTT,
                         cwd=tmp_path)
    assert (out / "prior.npz").is_file() and not (out / "data").exists()
    for method in ("otsu", "igtt", "igtt_prior"):
        assert sorted(p.stem for p in (out / method / "masks").glob("*.png")) == names
    assert json.loads((out / "igtt_prior" / "run.json").read_text())["prior"] == str(out / "prior.npz")
    assert json.loads((out / "igtt" / "run.json").read_text())["options"]["rounds"] == 1
    assert re.search(r"^method\s+Dice", stdout, re.MULTILINE), stdout
    for method in ("otsu", "igtt", "igtt_prior"):
        pooled, per_image = table_row(stdout, method)
        assert 0 <= pooled <= 1 and 0 <= per_image <= 1
    # every image was matched to its mask, and a global threshold finds most of the network on these images
    assert re.search(r"^otsu\s+\S+\s+\S+\s+3\s", stdout, re.MULTILINE), stdout
    assert table_row(stdout, "otsu")[0] > 0.6


def test_segment_with_rough_labels(tmp_path):
    out = tmp_path / "out"
    stdout = run_example("segment_with_rough_labels.py", "--out", str(out), "--n", "4", "--labelled", "2",
                         "--size", "32", "--threads", "1", "--no-overlays", *TINY_IGTT, cwd=tmp_path)
    labelled = sorted(p.stem for p in (out / "data" / "labelled" / "images").iterdir())
    rest = sorted(p.stem for p in (out / "data" / "rest" / "images").iterdir())
    assert len(labelled) == 2 and len(rest) == 2 and not set(labelled) & set(rest)
    assert sorted(p.stem for p in (out / "data" / "labelled" / "rough").glob("*.png")) == labelled
    assert (out / "prior.npz").is_file() and (out / "igtt_prior" / "model.pt").is_file()
    for folder, names in (("igtt_prior", labelled), ("rest_igtt", rest), ("otsu", sorted(labelled + rest))):
        assert sorted(p.stem for p in (out / folder / "masks").glob("*.png")) == names
    run = json.loads((out / "rest_igtt" / "run.json").read_text())
    assert run["checkpoint"] == str(out / "igtt_prior" / "model.pt")
    assert re.search(r"^Dice\s+labelled \(2\)\s+others \(2\)", stdout, re.MULTILINE), stdout
    rough = table_row(stdout, "rough labels (dilate:1+sample:0.3)")
    # 30% of a 1-pixel dilation of the truth: well below a clean label's 1
    assert len(rough) == 1 and 0.1 < rough[0] < 0.8


def test_segment_with_a_region_annotation_scores_the_region_only(tmp_path):
    out = tmp_path / "out"
    stdout = run_example("segment_with_rough_labels.py", "--out", str(out), "--n", "4", "--labelled", "2",
                         "--size", "32", "--threads", "1", "--no-overlays", "--spec", "region:0.25", *TINY_IGTT,
                         cwd=tmp_path)
    # the drawn quarter is exact: a Dice of 1 where it was drawn (the 255 rest is not scored as foreground)
    assert table_row(stdout, "rough labels (region:0.25)") == [1.0]
    for label in ("otsu", "igtt + rough-label prior"):
        values = table_row(stdout, label)
        assert len(values) == 2 and all(0 <= v <= 1 for v in values)


def test_heldout_em_writes_a_membrane_dataset_in_the_paper_layout(tmp_path):
    from mstool.data import check_dataset
    from mstool.io import read_image, read_mask

    out = tmp_path / "d"
    run_example("heldout_em.py", "--out", str(out), "--n", "4", "--size", "96", "--seed", "3", cwd=tmp_path)
    report = check_dataset(out)
    assert report.layout == "paper" and report.ok, report
    assert [s.images for s in report.splits] == [2, 1, 1]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n"] == 4 and meta["seed"] == 3 and meta["invert"] is False
    image = read_image(out / "train" / "images" / "heldout_em_0000.tif")
    mask = read_mask(out / "train" / "labels" / "heldout_em_0000.png") > 0
    assert image.dtype == np.uint8 and image.shape == (96, 96)
    assert 0.05 < mask.mean() < 0.4
    # membranes are the dark class, but not the only dark pixels (nuclear envelopes, mitochondria, vesicle rims)
    pixels = image.astype(float)
    assert pixels[mask].mean() < pixels[~mask].mean() - 40
    assert (pixels[~mask] < np.median(pixels[mask])).sum() > 0.02 * (~mask).sum()

    inverted = tmp_path / "inv"
    run_example("heldout_em.py", "--out", str(inverted), "--n", "4", "--size", "96", "--seed", "3", "--invert",
                cwd=tmp_path)
    flipped = read_image(inverted / "train" / "images" / "heldout_em_0000.tif")
    assert np.array_equal(flipped, 255 - image)

    tubules = tmp_path / "er"
    run_example("heldout_em.py", "--out", str(tubules), "--n", "3", "--size", "96", "--kind", "er", cwd=tmp_path)
    assert json.loads((tubules / "dataset.json").read_text())["classes"] == ["background", "er"]
    image = read_image(tubules / "train" / "images" / "heldout_er_0000.tif").astype(float)
    mask = read_mask(tubules / "train" / "labels" / "heldout_er_0000.png") > 0
    assert 0.05 < mask.mean() < 0.4 and image[mask].mean() < image[~mask].mean() - 40

    proc = subprocess.run([sys.executable, str(EXAMPLES / "heldout_em.py"), "--out", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and f"--out {out}: output folder exists and is not empty" in proc.stderr
    assert check_dataset(out).ok and json.loads((out / "dataset.json").read_text())["n"] == 4  # untouched
    run_example("heldout_em.py", "--out", str(out), "--n", "3", "--size", "64", "--overwrite", cwd=tmp_path)
    assert json.loads((out / "dataset.json").read_text())["n"] == 3


def test_unsupervised_table_writes_the_heldout_sets_once(tmp_path, monkeypatch):
    from mstool.io import read_image

    monkeypatch.syspath_prepend(str(EXAMPLES))
    from unsupervised_table import data_for

    assert data_for("em-inv", tmp_path, tmp_path / "none.tif", tmp_path / "none.tif") == ("synth:em", True)
    data, invert = data_for("heldout-em", tmp_path, tmp_path / "none.tif", tmp_path / "none.tif")
    turned, _ = data_for("heldout-em-inv", tmp_path, tmp_path / "none.tif", tmp_path / "none.tif")
    assert data == str(tmp_path / "data-heldout-em") and turned == data + "-inv" and invert is False
    name = "test/images/heldout_em_0023.tif"
    image = read_image(tmp_path / "data-heldout-em" / name)
    assert np.array_equal(read_image(tmp_path / "data-heldout-em-inv" / name), 255 - image)
    stamp = (tmp_path / "data-heldout-em" / "dataset.json").stat().st_mtime_ns
    data_for("heldout-em", tmp_path, tmp_path / "none.tif", tmp_path / "none.tif")  # kept, not drawn again
    assert (tmp_path / "data-heldout-em" / "dataset.json").stat().st_mtime_ns == stamp
    assert data_for(data, tmp_path / "elsewhere", tmp_path / "none.tif", tmp_path / "none.tif") == (data, False)


def test_partial_annotation_trains_on_the_annotated_images_or_applies_to_the_test_ones(tmp_path):
    from mstool.compare import SuiteConfig, run_suite

    run = tmp_path / "run"
    run_suite(SuiteConfig(data="synth:er", labels=[], seeds=[0], synth_n=10, synth_size=48,
                          unsupervised=["otsu"], train={"epochs": 1}), run)
    stdout = run_example("partial_annotation.py", str(run), "--seeds", "0,1", "--epochs", "2", cwd=tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["spec"] == "region:0.25" and result["on"] == "test" and len(result["dice"]) == 2
    assert all(0 <= d <= 1 for d in result["dice"]) and result["mean"] == pytest.approx(np.mean(result["dice"]))
    assert "seed 1: Dice where not annotated" in stdout
    stdout = run_example("partial_annotation.py", str(run), "--seeds", "0", "--on", "train", "--method", "igtt",
                         "--rounds", "2", cwd=tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["method"] == "igtt" and 0.3 < result["dice"][0] <= 1  # ER tubules from a quarter of 6 images
    assert "seed 0: Dice on the test images" in stdout


def test_train_predict_scores_each_threshold_rule(tmp_path):
    from mstool.data import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", "er", n=8, size=48, seed=0)
    stdout = run_example("train_predict.py", str(data), "--out", str(tmp_path / "a"), "--seeds", "0", "--epochs",
                         "2", cwd=tmp_path)
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line.startswith("  ")}
    assert set(rows) == {"0.5", "labels", "val"} and "(--annotate region:0.25)" in stdout
    assert rows["labels"][-1] == "0.500)"  # an exact annotation: the identity matrix, so halfway is 0.5
    assert (tmp_path / "a" / "seed0" / "mine" / "val" / "labels").is_dir()
    stdout = run_example("train_predict.py", str(data), "--out", str(tmp_path / "b"), "--labels", "sample:0.1",
                         "--seeds", "0", "--epochs", "2", cwd=tmp_path)
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line.startswith("  ")}
    assert float(rows["labels"][-1].rstrip(")")) < 0.1  # a 10% sample: about 0.05
    assert all(0 <= float(row[1]) <= 1 for row in rows.values())


@pytest.mark.parametrize(("script", "args"), [
    ("demo.py", ["--clean", "--steps", "1"]),
    ("segment_without_labels.py", []),
    ("segment_with_rough_labels.py", []),
    ("train_predict.py", ["data"]),
])
def test_examples_that_clear_their_folders_never_touch_a_users_files(tmp_path, script, args):
    (tmp_path / "mine" / "data" / "images").mkdir(parents=True)
    (tmp_path / "mine" / "data" / "images" / "notes.txt").write_text("precious")
    (tmp_path / "data").mkdir()
    for out in ("mine", "."):  # a folder the examples did not write; the working folder itself
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--out", out], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Error: " in proc.stderr, proc.stderr
        assert (tmp_path / "mine" / "data" / "images" / "notes.txt").read_text() == "precious"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "mine"]


def test_an_example_reopens_and_cleans_only_its_own_folder(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    try:
        from _outputs import example_folder
    finally:
        sys.path.remove(str(EXAMPLES))
    out = example_folder(tmp_path / "run")
    (out / "result.txt").write_text("1")
    assert example_folder(tmp_path / "run") == out and (out / "result.txt").exists()  # its own: reopened
    example_folder(tmp_path / "run", clean=True)
    assert not (out / "result.txt").exists() and (out / ".mstool").is_file()  # cleaned and marked again
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("keep")
    with pytest.raises(SystemExit, match="^2$"):
        example_folder(tmp_path / "other", clean=True)
    assert "--clean removes only a folder an mstool example wrote" in capsys.readouterr().err
    assert (tmp_path / "other" / "x").read_text() == "keep"
