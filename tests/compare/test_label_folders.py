"""Real noisy label folders in the comparison suite: `--labels "clean,mine=path/to/masks"`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mstool.cli.main import cli
from mstool.compare import SuiteConfig, prepare_data, run_suite
from mstool.data import write_synthetic_dataset
from mstool.errors import DataError, ParameterError
from mstool.io import write_mask
from mstool.runs import evaluate_run, make_label_set

from .test_runner import TINY


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    data = write_synthetic_dataset(root / "er", "er", n=6, size=48, seed=2)
    make_label_set(data, "flip:0.8,0.8", root / "inverted", seed=1)  # mirrors train/val/test: a real-looking folder
    return root, data


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_folder_of_masks_trains_beside_zoo_specs_and_is_audited(dataset, tmp_path):
    root, data = dataset
    cfg = SuiteConfig(data=str(data), labels=["clean", f"inv={root / 'inverted'}"], seeds=[0], train=TINY)
    rows = run_suite(cfg, tmp_path / "run")
    assert [r["cell"] for r in rows] == ["clean__unet__seed0", "inv__unet__seed0"]
    folder = rows[1]
    assert folder["label_folder"] == str((root / "inverted").resolve()) and folder["family"] == "inv"
    # the network trained on the folder's masks, so its labels carry the flips
    assert folder["label/det"] < 0 and folder["label/expected_polarity"] == -1
    assert folder["label/expected_score"] > 0.9 and folder["allow_inversion"] is True
    assert folder["settings"]["label_spec"] == "clean"  # handed over as they are, not noised again
    assert rows[0]["allow_inversion"] is False


def test_folder_entries_are_checked_before_any_work(dataset, tmp_path):
    root, data = dataset
    with pytest.raises(ParameterError, match="names a label spec"):
        SuiteConfig(data=str(data), labels=[f"sample={root / 'inverted'}"])
    with pytest.raises(ParameterError, match="not a folder"):
        SuiteConfig(data=str(data), labels=[f"mine={tmp_path / 'nowhere'}"])
    with pytest.raises(ParameterError, match="share the name"):
        SuiteConfig(data=str(data), labels=[f"a={root / 'inverted'}", f"a={data}"])


def test_missing_extra_and_wrongly_sized_masks_name_the_files(dataset, tmp_path):
    root, data = dataset
    missing = _copy(root / "inverted", tmp_path / "missing")
    gone = sorted((missing / "train" / "labels").glob("*.png"))[0]
    gone.unlink()
    with pytest.raises(DataError, match=f"no mask for training image.*{gone.stem}"):
        prepare_data(SuiteConfig(data=str(data), labels=[f"m={missing}"]), tmp_path / "r1")

    extra = _copy(root / "inverted", tmp_path / "extra")
    write_mask(extra / "stray_0001.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(DataError, match="named like no image.*stray_0001.png"):
        prepare_data(SuiteConfig(data=str(data), labels=[f"m={extra}"]), tmp_path / "r2")

    small = _copy(root / "inverted", tmp_path / "small")
    bad = sorted((small / "train" / "labels").glob("*.png"))[1]
    write_mask(bad, np.zeros((40, 48), np.uint8))
    with pytest.raises(DataError, match=f"{bad.name}: mask is 40 x 48 but training image .* is 48 x 48"):
        prepare_data(SuiteConfig(data=str(data), labels=[f"m={small}"]), tmp_path / "r3")


def test_cli_folder_label_errors_are_one_line_and_write_nothing(dataset, tmp_path):
    root, data = dataset
    missing = _copy(root / "inverted", tmp_path / "missing")
    sorted((missing / "train" / "labels").glob("*.png"))[0].unlink()
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["compare", "--data", str(data), "--labels", f"clean,mine={missing}",
                                 "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "no mask for training image" in r.stderr
    assert not out.exists()


def test_synthetic_data_is_checked_against_label_folders_before_the_run_folder_is_written(dataset, tmp_path):
    root, _ = dataset
    missing = _copy(root / "inverted", tmp_path / "missing")
    sorted((missing / "train" / "labels").glob("*.png"))[0].unlink()
    same = {"data": "synth:er", "synth_n": 6, "synth_size": 48, "synth_seed": 2, "seeds": [0], "train": TINY}
    out = tmp_path / "runs" / "er"  # in a folder that does not exist yet
    with pytest.raises(DataError, match="no mask for training image"):
        run_suite(SuiteConfig(labels=[f"mine={missing}"], **same), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missing"]  # no run folder, no scratch images
    # the folder the synthetic images match: generated aside, then moved into the run folder
    rows = run_suite(SuiteConfig(labels=["clean", f"inv={root / 'inverted'}"], **same), out)
    assert [r["cell"] for r in rows] == ["clean__unet__seed0", "inv__unet__seed0"]
    assert (out / "data" / "dataset.json").exists() and sorted(p.name for p in out.parent.iterdir()) == ["er"]
    # a cell's network evaluates again on the suite's data, found through the suite's config.toml
    again = evaluate_run(out / "cells" / "clean__unet__seed0" / "model.pt", probe=False)
    assert again.metrics["val/dice"] == pytest.approx(rows[0]["val/dice"], abs=1e-9)
    assert again.splits.root == out / "data"


def test_the_suite_records_its_dataset_folder_whatever_the_working_directory(dataset, tmp_path, monkeypatch):
    root, data = dataset
    monkeypatch.chdir(data.parent)
    cfg = SuiteConfig(data=data.name, labels=["clean"])
    assert cfg.data == str(data)  # config.toml then names the folder, not a path relative to some cwd
    elsewhere = tmp_path / "elsewhere"
    _copy(data, elsewhere / data.name)
    monkeypatch.chdir(elsewhere)
    # the same words typed in another folder are another dataset: a resume there is refused, not mixed in
    assert SuiteConfig(data=data.name, labels=["clean"]).data != cfg.data
    assert SuiteConfig.from_dict(cfg.to_dict()).data == str(data)
