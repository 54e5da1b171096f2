import json

from click.testing import CliRunner

from mstool.cli.main import cli
from mstool.data import DataSource
from mstool.io import read_mask
from mstool.runs import run_config, train_run

TINY = {"epochs": 1, "val_every": 1, "crop": 32, "batch_size": 2, "model_options": {"base": 4, "depth": 1}}


def test_predict_writes_masks_that_score_reads(tmp_path):
    train_run(DataSource("synth:er", synth_n=5, synth_size=32), tmp_path / "run", run_config("quick", TINY))
    test = tmp_path / "run" / "data" / "test"
    runner = CliRunner()
    r = runner.invoke(cli, ["evaluate", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--no-probe", "-q"])
    assert r.exit_code == 0, r.output
    chosen = json.loads((tmp_path / "run" / "evaluation.json").read_text())["val/threshold"]
    r = runner.invoke(cli, ["predict", str(test / "images"), "--checkpoint", str(tmp_path / "run"),
                            "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1].startswith(f"predicted 1 image(s) with {tmp_path / 'run' / 'model.pt'} into "
                                                f"{tmp_path / 'out'}, threshold {chosen:.3g} "
                                                f"({tmp_path / 'run' / 'evaluation.json'} (the val protocol")
    assert "Warning" not in r.stderr
    r = runner.invoke(cli, ["predict", str(test / "images"), "--checkpoint", str(tmp_path / "run"),
                            "--threshold", "labels", "-o", str(tmp_path / "labels")])
    assert r.exit_code == 0, r.output
    assert "threshold 0.5 (halfway between the training labels' foreground rates" in r.stdout
    name = next((test / "images").iterdir()).stem
    assert read_mask(tmp_path / "out" / "masks" / f"{name}.png").shape == (32, 32)
    r = runner.invoke(cli, ["score", str(tmp_path / "out"), "--truth", str(test / "labels")])
    assert r.exit_code == 0 and "scored 1 image(s)" in r.stdout, r.output


def test_predict_bad_inputs_are_one_line(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.pt").write_bytes(b"not a model")
    runner = CliRunner()
    for args, message in (
        (["--checkpoint", str(tmp_path / "empty")], "no model.pt in this folder"),
        (["--checkpoint", str(tmp_path / "bad" / "model.pt")], "cannot be read as an mstool model"),
        (["--checkpoint", str(tmp_path / "missing.pt")], "does not exist"),
        (["--checkpoint", str(tmp_path / "bad"), "--threshold", "1.5"], "expected a number strictly between 0 and 1"),
        (["--checkpoint", str(tmp_path / "bad"), "--threshold", "half"], "expected auto, val, labels or a number"),
    ):
        r = runner.invoke(cli, ["predict", str(tmp_path / "imgs"), *args, "-o", str(tmp_path / "out")])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr, (args, r.output)
        assert not (tmp_path / "out").exists()


def test_train_on_your_own_labels_then_predict_new_images(tmp_path):
    from mstool.data import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", "er", n=6, size=32, seed=0)
    runner = CliRunner()
    r = runner.invoke(cli, ["labels", "make", "--clean", str(data), "--split", "train", "--spec", "region:0.25",
                            "-o", str(tmp_path / "drawn"), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["train", "--data", str(data), "--labels", f"drawn={tmp_path / 'drawn'}", "--epochs", "1",
                            "--set", "model_options.base=4", "--set", "model_options.depth=1", "-o",
                            str(tmp_path / "net")])
    assert r.exit_code == 0, r.output
    assert f"trained unet on drawn={tmp_path / 'drawn'} labels for 1 epochs" in r.stdout
    stats = json.loads((tmp_path / "net" / "train.json").read_text())["label_stats"]
    assert stats["labelled_fraction"] == 0.25
    r = runner.invoke(cli, ["predict", str(data / "test"), "--checkpoint", str(tmp_path / "net"), "-o",
                            str(tmp_path / "pred"), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["score", str(tmp_path / "pred"), "--truth", str(data / "test")])
    assert r.exit_code == 0 and "scored 1 image(s)" in r.stdout, r.output
