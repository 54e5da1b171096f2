import json

import numpy as np
from click.testing import CliRunner

from mstool.cli.main import cli
from mstool.io import read_image

TINY = ["--epochs", "1", "--crop", "32", "--batch-size", "4", "--set", "model_options.base=4",
        "--set", "model_options.depth=2", "--set", "probe=false"]


def test_train_then_evaluate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "x"
    r = runner.invoke(cli, ["train", "--data", "synth:mito", "--labels", "sample:0.5", "-o", str(out), *TINY])
    assert r.exit_code == 0, r.output
    assert "trained unet on sample:0.5 labels" in r.output
    assert (out / "model.pt").exists() and (out / "train.json").exists() and (out / "data" / "dataset.json").exists()
    r = runner.invoke(cli, ["evaluate", "--checkpoint", str(out / "model.pt"), "--no-probe"])
    assert r.exit_code == 0, r.output
    assert "val " in r.output and "oracle" in r.output and "fixed" in r.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert {"val/dice", "oracle/dice", "fixed/dice"} <= set(metrics)


def test_compare_end_to_end_with_two_specs(tmp_path):
    out = tmp_path / "run"
    args = ["compare", "--data", "synth:er", "--labels", "clean,flip:0.2,0.2", "--seeds", "0", "--synth-n", "5",
            "--synth-size", "32", "-o", str(out), *TINY]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "2 of 2 cells finished" in r.stdout
    assert (out / "report.html").exists() and (out / "results.csv").read_text().count("\n") == 3
    r = CliRunner().invoke(cli, [*args[:-8], "--list-cells"])
    assert r.output.split() == ["clean__unet__seed0", "flip-0.2_0.2__unet__seed0"]
    r = CliRunner().invoke(cli, ["compare", "-o", str(out), "--report-only", "--data", "synth:er",
                                 "--labels", "clean,flip:0.2,0.2", "--seeds", "0"])
    assert r.exit_code == 0 and "2 finished cells" in r.output


def test_compare_unsupervised_only(tmp_path):
    out = tmp_path / "run"
    args = ["compare", "--data", "synth:er", "--labels", "none", "--unsupervised", "otsu,local",
            "--unsupervised", "kmeans", "--seeds", "0,1", "--synth-n", "5", "--synth-size", "32", "-o", str(out), "-q"]
    r = CliRunner().invoke(cli, [*args[:-3], "--list-cells"])  # listing writes nothing: no -o needed
    assert r.exit_code == 0 and r.output.split() == ["unsup-otsu__seed0", "unsup-local__seed0",
                                                     "unsup-kmeans__seed0", "unsup-kmeans__seed1"]
    r = CliRunner().invoke(cli, args[:-3])
    assert r.exit_code == 2 and "Missing option '-o' / '--out'" in r.stderr and not out.exists()
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    md = (out / "summary.md").read_text()
    assert "| kmeans | none |" in md and "No supervised" not in md and "**val**" not in md
    again = ["compare", "--data", "synth:er", "--labels", "none", "--unsupervised", "otsu", "--seeds", "0,1",
             "--synth-n", "5", "--synth-size", "32", "-o", str(out)]
    r = CliRunner().invoke(cli, again)  # the run folder's whole suite is counted, not only this call's cell
    assert r.exit_code == 0 and "4 of 4 cells finished" in r.output, r.output


def test_compare_bad_inputs_are_one_line(tmp_path):
    runner = CliRunner()
    for extra, text in ((["--model", "vgg"], "unknown model 'vgg'"), (["--labels", "blur:1"], "unknown label spec"),
                        (["--unsupervised", "otsu,snake"], "'snake' was meant as a method: known methods are otsu"),
                        (["--unsupervised", "snake"], "unknown unsupervised method 'snake'"),
                        (["--labels", "none"], "at least one label spec"),
                        (["--data", str(tmp_path / "missing")], "does not exist")):
        r = runner.invoke(cli, ["compare", "-o", str(tmp_path / "run"), "-q", *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert text in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_compare_synth_seed_draws_other_images(tmp_path):
    """--synth-seed makes another draw of the kind (recorded in config.toml), so a method can be judged on images
    it was not tuned on; the default draw is seed 0."""
    base = ["compare", "--data", "synth:nuc", "--labels", "none", "--unsupervised", "otsu", "--seeds", "0",
            "--synth-n", "3", "--synth-size", "32", "-q"]
    runs = {}
    for seed in (None, 0, 5):
        out = tmp_path / f"run-{seed}"
        r = CliRunner().invoke(cli, [*base, "-o", str(out), *([] if seed is None else ["--synth-seed", str(seed)])])
        assert r.exit_code == 0, r.output
        assert f"synth_seed = {0 if seed is None else seed}" in (out / "config.toml").read_text()
        images = sorted((out / "data" / "test" / "images").iterdir())
        runs[seed] = np.stack([read_image(p) for p in images])
    assert np.array_equal(runs[None], runs[0]) and not np.array_equal(runs[0], runs[5])
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "bad"), "--synth-seed", "-1"])
    assert r.exit_code == 2 and "--synth-seed" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_train_config_file_gives_the_data_settings_and_refuses_what_train_does_not_read(tmp_path):
    from mstool.data import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "er", "er", n=6, size=32, seed=0)
    (data / "val" / "images").rename(data / "val" / "pictures")  # no val split: held out of train, 40% of it
    runner = CliRunner()
    (tmp_path / "run.toml").write_text('val_fraction = 0.4\nlayout = "paper"\n[train]\nepochs = 1\n')
    r = runner.invoke(cli, ["train", "--data", str(data), "--config", str(tmp_path / "run.toml"), "-o",
                            str(tmp_path / "x"), *TINY[2:]])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "x" / "train.json").read_text())
    assert record["val_fraction"] == 0.4 and record["layout"] == "paper" and record["config"]["epochs"] == 1
    assert "data: no val split: 40% of train held out" in r.output  # the notes are printed, not only recorded
    for text, message in (("bogus = 1\n", "unknown suite setting(s) bogus"),
                          ("seeds = [0, 1]\n", "'seeds' is a `mstool compare` setting")):
        (tmp_path / "bad.toml").write_text(text)
        r = runner.invoke(cli, ["train", "--data", str(data), "--config", str(tmp_path / "bad.toml"), "-o",
                                str(tmp_path / "y")])
        assert r.exit_code == 2 and message in r.output and not (tmp_path / "y").exists()


def test_train_and_evaluate_a_cellpose_folder_with_another_mask_suffix(tmp_path):
    from ..data.helpers import make_cellpose

    root = make_cellpose(tmp_path / "cp", names=("c1", "c2", "c3", "c4", "c5"), suffix="_mask")
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--data", str(root), "-o", str(tmp_path / "x"), *TINY])
    assert r.exit_code == 2 and "no dataset layout found" in r.stderr  # `_masks` is the default suffix
    r = runner.invoke(cli, ["train", "--data", str(root), "--mask-suffix", "_mask", "-o", str(tmp_path / "x"), *TINY])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "x" / "train.json").read_text())["mask_suffix"] == "_mask"
    r = runner.invoke(cli, ["evaluate", "--checkpoint", str(tmp_path / "x" / "model.pt"), "--no-probe"])
    assert r.exit_code == 0, r.output  # the suffix is read back from train.json
    r = runner.invoke(cli, ["compare", "--data", str(root), "--mask-suffix", "_mask", "--labels", "clean", "--seeds",
                            "0", "-o", str(tmp_path / "c"), *TINY])
    assert r.exit_code == 0, r.output
