import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mstool.data import DataSource
from mstool.errors import FileMissingError, OutputError, ParameterError, SpecError
from mstool.runs import evaluate_run, recorded_source, run_config, run_source, train_run

TINY = {"epochs": 1, "val_every": 1, "crop": 32, "batch_size": 2, "model_options": {"base": 4, "depth": 1}}


def test_run_config_takes_the_spec_noise_mode_unless_overridden():
    assert run_config("quick", labels="flip:0.2,0.2").noise_mode == "online"
    assert run_config("quick", labels="sample:0.1").noise_mode == "offline"
    assert run_config("quick", {"noise_mode": "offline"}, labels="flip:0.2,0.2").noise_mode == "offline"
    assert run_config("paper", model="hrnet").model == "hrnet"
    with pytest.raises(ParameterError, match="`seed` is set per run"):
        run_config("quick", {"seed": 3})
    with pytest.raises(SpecError, match="unknown label spec 'blur'"):
        run_config("quick", labels="blur:2")


def test_run_source_sizes_synthetic_data_by_preset():
    assert (run_source("synth:er", "paper").synth_n, run_source("synth:er", "paper").synth_size) == (64, 256)
    assert run_source("synth:er", "quick", synth_n=5).synth_n == 5
    with pytest.raises(ParameterError, match="synthetic kind"):
        run_source("synth:bogus")
    with pytest.raises(ParameterError, match="`synth_n` must be an integer >= 3; got 2"):
        DataSource("synth:er", synth_n=2)


def test_train_run_then_evaluate_run_read_the_same_split(tmp_path):
    source = DataSource("synth:er", synth_n=5, synth_size=32, seed=4)
    run = train_run(source, tmp_path / "run", run_config("quick", TINY, labels="sample:0.5"))
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["config"]["label_spec"] == "sample:0.5" and record["synth_seed"] == 4
    assert recorded_source(tmp_path / "run").data == str(tmp_path / "run" / "data")
    ev = evaluate_run(tmp_path / "run" / "model.pt", probe=False)
    assert ev.path == tmp_path / "run" / "evaluation.json"
    assert json.loads(ev.path.read_text())["val/dice"] == pytest.approx(ev.metrics["val/dice"])
    # half the foreground kept: the labels' NTM puts the threshold near 0.25, chosen by no label
    assert ev.metrics["labels/threshold"] == pytest.approx(0.25, abs=0.05) and ev.metrics["labels/polarity"] == 1
    assert 0 <= ev.metrics["labels/dice"] <= 1
    assert ev.splits.test_names == run.splits.test_names  # the same split, read back from train.json
    # an explicit output that exists is refused without overwrite, and nothing is lost
    (tmp_path / "mine.json").write_text("{}")
    with pytest.raises(OutputError, match="exists"):
        evaluate_run(tmp_path / "run" / "model.pt", out=tmp_path / "mine.json", probe=False)
    assert (tmp_path / "mine.json").read_text() == "{}"


def test_a_run_records_its_dataset_whatever_the_working_directory(tmp_path, monkeypatch):
    from mstool.data import write_synthetic_dataset

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_synthetic_dataset(tmp_path / "a" / "data", "er", 5, 32, seed=1)
    write_synthetic_dataset(tmp_path / "b" / "data", "nuc", 5, 32, seed=2)  # a decoy of the same relative name
    monkeypatch.chdir(tmp_path / "a")
    train_run(DataSource("data"), "run", run_config("quick", TINY))
    assert json.loads((tmp_path / "a" / "run" / "train.json").read_text())["data"] == str(tmp_path / "a" / "data")
    monkeypatch.chdir(tmp_path / "b")
    ev = evaluate_run(tmp_path / "a" / "run" / "model.pt", probe=False)
    assert ev.metrics["data"] == str(tmp_path / "a" / "data")  # not b/data, which the cwd would have given
    assert json.loads(ev.path.read_text())["data"] == str(tmp_path / "a" / "data")
    assert ev.splits.test_names[0].startswith("er_")


def test_a_moved_run_folder_still_finds_its_synthetic_data(tmp_path):
    train_run(DataSource("synth:er", synth_n=4, synth_size=32), tmp_path / "run", run_config("quick", TINY))
    (tmp_path / "run").rename(tmp_path / "moved")
    assert recorded_source(tmp_path / "moved").data == str(tmp_path / "moved" / "data")
    moved = evaluate_run(tmp_path / "moved" / "model.pt", probe=False)
    assert moved.metrics["data"] == str(tmp_path / "moved" / "data")


def test_evaluate_run_needs_a_record_or_data(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(FileMissingError, match="no train.json beside the checkpoint"):
        evaluate_run(tmp_path / "model.pt")
    with pytest.raises(FileMissingError, match="checkpoint does not exist"):
        evaluate_run(tmp_path / "nothing.pt")


def test_train_run_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an mstool train run folder"):
        train_run(DataSource("synth:er", synth_n=4, synth_size=32), tmp_path / "out", run_config("quick", TINY))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]


def test_train_evaluate_example_runs(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "train_evaluate.py"
    done = subprocess.run([sys.executable, str(example), "--epochs", "1", "--n", "4", "--size", "32", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test Dice" in done.stdout and (tmp_path / "run" / "evaluation.json").is_file()


def test_train_run_on_a_folder_of_own_labels(tmp_path):
    """Your own partial labels of the training images: trained on as they are (255 left out of the loss), while
    validation keeps the dataset's labels."""
    from mstool.data import write_synthetic_dataset
    from mstool.engine import load_model
    from mstool.runs import make_label_set

    data = write_synthetic_dataset(tmp_path / "data", "er", n=6, size=32, seed=0)
    make_label_set(data, "region:0.25", tmp_path / "drawn", splits=("train",))
    run = train_run(DataSource(str(data)), tmp_path / "run", run_config("quick", TINY), labels_from=tmp_path / "drawn")
    stats = load_model(tmp_path / "run" / "model.pt")[1]["label_stats"]
    assert stats["labelled_fraction"] == pytest.approx(0.25, abs=0.05)  # a quarter of each image drawn
    assert torch.equal(run.result.noisy_labels.cpu(), run.splits.label_folders["own"].cpu())
    assert json.loads((tmp_path / "run" / "train.json").read_text())["labels_from"] == str(tmp_path / "drawn")
    # measured against the dataset's training labels: a 10% sample with the rest called background shows as such
    make_label_set(data, "sample:0.1", tmp_path / "sampled", splits=("train",))
    train_run(DataSource(str(data)), tmp_path / "run2", run_config("quick", TINY), labels_from=tmp_path / "sampled")
    ntm = load_model(tmp_path / "run2" / "model.pt")[1]["label_stats"]["ntm"]
    assert ntm[0] == [1.0, 0.0] and ntm[1][1] == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ParameterError, match="a label folder is trained on as it is; label spec 'sample:0.5'"):
        train_run(DataSource(str(data)), tmp_path / "other", run_config("quick", TINY, labels="sample:0.5"),
                  labels_from=tmp_path / "drawn")
    with pytest.raises(OutputError, match="inside the input"):
        train_run(DataSource(str(data)), tmp_path / "drawn" / "run", run_config("quick", TINY),
                  labels_from=tmp_path / "drawn")
    assert not (tmp_path / "other").exists()
