import json
import shutil

import numpy as np
import pytest
import torch

from mstool.compare import SuiteConfig, load_run_config, prepare_data, run_suite, write_results
from mstool.data import write_synthetic_dataset
from mstool.errors import FileReadError, LayoutError, OutputError, ParameterError

from ..data.helpers import make_cellpose
from ..pictures import assert_picture_has_content

TINY = {"epochs": 1, "model_options": {"base": 4, "depth": 2}, "crop": 32, "batch_size": 4, "probe": False}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("suite") / "run"
    cfg = SuiteConfig(data="synth:er", labels=["clean", "flip:0.9,0.9"], seeds=[0], synth_n=6, synth_size=48,
                      train={**TINY, "probe": True})
    rows = run_suite(cfg, run)
    return run, cfg, rows


def test_suite_rows_hold_settings_label_stats_and_metrics(tiny_run):
    run, cfg, rows = tiny_run
    assert [r["cell"] for r in rows] == ["clean__unet__seed0", "flip-0.9_0.9__unet__seed0"]
    clean, flipped = rows
    assert clean["label/taxonomy"] == "CL" and clean["label/rank"] == 2
    assert flipped["label/det"] < 0 and flipped["allow_inversion"] is True
    for key in ("val/dice", "oracle/dice", "fixed/dice", "val/auc", "val/dice_img_mean", "probe/dice",
                "label/mutual_information", "label/similarity_pearson_h4", "label/expected_score",
                "label/expected_low", "label/expected_one_draw", "mstool_version", "device", "seed"):
        assert key in clean, key
    assert clean["settings"]["epochs"] == 1 and clean["settings"]["label_spec"] == "clean"
    # the threshold the labels' NTM implies: 0.5 for clean labels, and for symmetrically swapped ones 0.5 on 1 - probs
    assert (clean["labels/threshold"], clean["labels/polarity"]) == (0.5, 1)
    assert flipped["labels/polarity"] == -1 and flipped["labels/threshold"] == pytest.approx(0.5, abs=0.03)
    assert 0 <= flipped["labels/dice"] <= 1 and 0 <= flipped["labels/iou"] <= flipped["labels/dice"]
    assert (run / "config.toml").exists() and (run / "log.txt").read_text().count("done in") == 2
    cell = run / "cells" / "clean__unet__seed0"
    # a finished cell keeps what evaluation needs (model.pt), not its resume checkpoint
    assert (cell / "model.pt").exists() and (cell / "metrics.json").exists() and not (cell / "checkpoint.pt").exists()


def test_results_report_and_resume(tiny_run):
    run, cfg, _ = tiny_run
    summary = write_results(run)
    assert summary["rows"] == 2
    for name in ("results.csv", "results.json", "summary.md", "report.html", "plots/noise_level.png",
                 "plots/similarity.png", "plots/learning_curves.png", "plots/examples.png"):
        assert (run / name).exists(), name
    for picture in sorted((run / "plots").glob("*.png")):
        assert_picture_has_content(picture)
    md = (run / "summary.md").read_text()
    assert "| clean | unet | CL |" in md and "flip:0.9,0.9" in md and "Dice (labels' thr.)" in md
    html = (run / "report.html").read_text()
    assert "plots/examples.png" in html
    # two cells cannot be ranked: the report says so rather than printing rho = nan
    assert "too few cells (2)" in md and "nan (" not in md and "= nan" not in md and "too few cells (2)" in html
    cells = json.loads((run / "results.json").read_text())["cells"]
    assert len(cells) == 2
    stamp = (run / "cells" / "clean__unet__seed0" / "metrics.json").stat().st_mtime_ns
    rows = run_suite(cfg, run)  # nothing left to do: finished cells are skipped
    assert len(rows) == 2
    assert (run / "cells" / "clean__unet__seed0" / "metrics.json").stat().st_mtime_ns == stamp


def test_suite_refuses_a_folder_with_other_settings_but_grows_with_new_specs(tiny_run, tmp_path):
    run, cfg, _ = tiny_run
    other = SuiteConfig.from_dict({**cfg.to_dict(), "train": {**cfg.train, "epochs": 2}})
    with pytest.raises(ParameterError, match=r"other settings \(train: .* in the folder, .* now\)"):
        run_suite(other, run)
    with pytest.raises(ParameterError, match="unknown cell"):
        run_suite(cfg, run, cells=["nope"])
    # unsupervised rows alone train nothing: other training settings do not matter, and the folder keeps its own
    shutil.copytree(run, tmp_path / "copy")
    rows_only = SuiteConfig.from_dict({**cfg.to_dict(), "labels": [], "train": {"epochs": 7}, "preset": "paper",
                                       "unsupervised": ["otsu"]})
    rows = run_suite(rows_only, tmp_path / "copy")
    assert sorted(r["cell"] for r in rows) == sorted([*(r["cell"] for r in run_suite(cfg, run)), "unsup-otsu__seed0"])
    assert load_run_config(tmp_path / "copy").train == cfg.train


def test_interrupted_cell_resumes_to_the_same_result(tmp_path):
    cfg = SuiteConfig(data="synth:nuc", labels=["sample:0.5"], seeds=[3], synth_n=5, synth_size=48,
                      train={**TINY, "epochs": 3})
    full = run_suite(cfg, tmp_path / "full")[0]

    class Stop(Exception):
        pass

    def stop_after_first_epoch(event):
        if event.get("event") == "epoch" and event["epoch"] == 1:
            raise Stop("stopped at the end of epoch 1")

    with pytest.raises(Stop, match="stopped at the end of epoch 1"):
        run_suite(cfg, tmp_path / "cut", progress=stop_after_first_epoch)
    assert not (tmp_path / "cut" / "cells" / "sample-0.5__unet__seed3" / "metrics.json").exists()
    assert (tmp_path / "cut" / "cells" / "sample-0.5__unet__seed3" / "checkpoint.pt").exists()
    resumed = run_suite(cfg, tmp_path / "cut", keep_checkpoints=True)[0]
    for key in ("val/dice", "oracle/dice", "fixed/dice", "final_train_loss"):
        assert resumed[key] == full[key], key
    log = [line.split(" ", 2)[2] for line in (tmp_path / "cut" / "log.txt").read_text().splitlines()]
    cell_lines = [line for line in log if line.startswith("cell ")]
    assert cell_lines[0] == "cell sample-0.5__unet__seed3: start on cpu"
    assert cell_lines[1] == "cell sample-0.5__unet__seed3: resumed from epoch 1 of 3 on cpu"
    assert cell_lines[2].startswith("cell sample-0.5__unet__seed3: done in")
    assert (tmp_path / "cut" / "cells" / "sample-0.5__unet__seed3" / "checkpoint.pt").exists()  # kept when asked


def test_suite_checks_everything_before_writing(tmp_path):
    root = write_synthetic_dataset(tmp_path / "d", "nuc", n=5, size=32, seed=0)
    (root / "test" / "labels" / "nuc_0004.png").write_bytes(b"broken")
    cfg = SuiteConfig(data=str(root), labels=["clean"], seeds=[0], train=TINY)
    with pytest.raises(FileReadError, match="nuc_0004.png"):
        run_suite(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    for out in (root, root / "runs", tmp_path):  # is, lies inside, contains the dataset
        with pytest.raises(OutputError, match="the input"):
            run_suite(cfg, out)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an mstool compare run folder"):
        run_suite(SuiteConfig(data="synth:er", labels=["clean"], seeds=[0], train=TINY), tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["a.txt"]


def test_prepare_data_fallbacks(tmp_path):
    root = write_synthetic_dataset(tmp_path / "d", "nuc", n=6, size=32, seed=0)
    import shutil

    shutil.rmtree(root / "val")
    data = prepare_data(SuiteConfig(data=str(root)), tmp_path / "run")
    assert len(data.val_images) == 1 and len(data.train_images) == 3 and "no val split" in data.notes[0]
    make_cellpose(tmp_path / "cp", names=tuple(f"c{i}" for i in range(5)))
    data = prepare_data(SuiteConfig(data=str(tmp_path / "cp")), tmp_path / "run2")
    assert (len(data.train_images), len(data.val_images), len(data.test_images)) == (3, 1, 1)
    assert "divided 60/20/20" in data.notes[0]
    make_cellpose(tmp_path / "one", names=("x",))
    with pytest.raises(LayoutError, match="cannot hold out"):
        prepare_data(SuiteConfig(data=str(tmp_path / "one")), tmp_path / "run3")


def test_examples_file_holds_test_images_and_a_training_label(tiny_run):
    run, _, _ = tiny_run
    with np.load(run / "cells" / "flip-0.9_0.9__unet__seed0" / "examples.npz", allow_pickle=False) as z:
        assert z["probs"].shape[1:] == (1, 48, 48) and z["images"].shape[1:] == (48, 48)
        assert z["train_label"].shape == (1, 48, 48)
        assert torch.from_numpy(z["labels"].astype(np.int64)).max() <= 1


def test_a_synthetic_suite_can_be_turned_over(tmp_path):
    cfg = SuiteConfig(data="synth:nuc", labels=["clean"], seeds=[0], synth_n=5, synth_size=32, synth_invert=True,
                      train=TINY)
    data = prepare_data(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "data" / "dataset.json").read_text())["invert"] is True
    fg = data.test_labels == 1
    assert data.test_images[:, 0][fg].mean() < data.test_images[:, 0][~fg].mean()  # dark nuclei
    assert "turned over" in data.notes[0]


def test_rank_agreement_ranks_cells_and_names_what_it_cannot_rank():
    from mstool.compare import rank_agreement

    rows = [{"spec": s, "label/expected_score": x, "val/dice": y}
            for s, x, y in (("a", 1.0, 0.95), ("b", 0.9, 0.90), ("c", 0.8, 0.70), ("d", 0.1, 0.40))]
    a = rank_agreement(rows, "val/dice", "label/expected_score")
    assert (a["n"], a["rho"], a["tau"], a["note"]) == (4, pytest.approx(1.0), pytest.approx(1.0), "")
    rows[0]["val/dice"] = 0.5  # one swap to the bottom
    assert rank_agreement(rows, "val/dice", "label/expected_score")["rho"] == pytest.approx(0.4)
    assert rank_agreement(rows[:2], "val/dice", "label/expected_score")["note"] == "too few cells (2)"
    same = [dict(r, **{"label/expected_score": 1.0}) for r in rows]
    assert rank_agreement(same, "val/dice", "label/expected_score")["note"] == "no spread to rank"
    missing = [dict(r, **{"label/expected_score": None}) for r in rows]
    assert rank_agreement(missing, "val/dice", "label/expected_score")["n"] == 0


def test_not_converged_cells_are_named_with_advice():
    from mstool.compare._report import not_converged

    rows = [{"cell": "flip-0.45_0.45__unet__seed0", "spec": "flip:0.45,0.45", "epochs": 300,
             "curve/converged": False, "curve/gain": 0.031},
            {"cell": "clean__unet__seed0", "spec": "clean", "epochs": 300, "curve/converged": True,
             "curve/gain": 0.001},
            {"cell": "old__unet__seed0", "spec": "clean", "epochs": 300}]
    lines = not_converged(rows)
    assert len(lines) == 1
    assert lines[0].startswith("flip-0.45_0.45__unet__seed0: the validation curve gained +0.031 in the second half")
    assert "not converged: noisy labels need more steps; try --epochs 600" in lines[0]
    short = {"cell": "clean__unet__seed1", "spec": "clean", "epochs": 3, "curve/converged": None, "curve/gain": None}
    lines = not_converged([rows[1], short])
    assert lines == ["1 cell(s) (clean__unet__seed1) were validated fewer than 4 times, so whether they converged "
                     "was not judged: train more epochs or validate more often (--set val_every=N)"]
