import json

import numpy as np
import pytest
from click.testing import CliRunner

from mstool.cli.main import cli
from mstool.io import write_mask


def square(shape=(8, 8), cols=slice(2, 6)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int64)
    mask[2:6, cols] = 1
    return mask


@pytest.fixture
def folders(tmp_path):
    """A segment output (masks/a.png, masks/b.png, run.json) and truth named a_mask.png, b_mask.png."""
    out = tmp_path / "seg"
    write_mask(out / "masks" / "a.png", square())
    write_mask(out / "masks" / "b.png", square())
    (out / "run.json").write_text(json.dumps({"mstool_version": "0.1.0"}))
    write_mask(tmp_path / "truth" / "a_mask.png", square(cols=slice(4, 8)))  # Dice 0.5
    write_mask(tmp_path / "truth" / "b_mask.png", square())  # Dice 1
    return out, tmp_path / "truth"


def test_score_prints_an_aligned_table(folders):
    out, truth = folders
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["image", "Dice", "IoU", "precision", "recall", "predicted", "true"]
    assert lines[1].split() == ["a", "0.500", "0.333", "0.500", "0.500", "16", "16"]
    assert lines[2].split() == ["b", "1.000", "1.000", "1.000", "1.000", "16", "16"]
    # pooled: tp 24, fp 8, fn 8
    assert lines[3].split() == ["pooled", "0.750", "0.600", "0.750", "0.750", "32", "32"]
    assert len({len(line) for line in lines[:4]}) == 1
    assert lines[4] == "mean Dice of 2 image(s): 0.750"
    assert lines[5] == f"scored 2 image(s) of {out} against {truth}" and len(lines) == 6
    assert r.stderr == ""


def test_quiet_silences_the_closing_line_and_warnings(folders):
    out, truth = folders
    write_mask(out / "masks" / "c.png", square())
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth)])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [f"Warning: {out}: 1 mask(s) without truth in {truth} are not scored: c.png"]
    assert r.stdout.splitlines()[-1].endswith("1 unpaired mask(s) left out")
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth), "-q"])
    assert r.exit_code == 0 and r.stderr == ""
    assert r.stdout.splitlines()[-1] == "mean Dice of 2 image(s): 0.750"


def test_json_is_written_and_not_overwritten(folders, tmp_path):
    out, truth = folders
    path = tmp_path / "score.json"
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth), "--json", str(path)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1].endswith(f"; wrote {path}")
    stored = json.loads(path.read_text())
    assert [(s["name"], s["dice"]) for s in stored["images"]] == [("a", 0.5), ("b", 1.0)]
    assert stored["pooled"]["dice"] == 0.75 and stored["mean_dice"] == 0.75
    assert stored["images"][0]["truth"] == str(truth / "a_mask.png")
    before = path.read_text()
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth), "--json", str(path)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [f"Error: {path}: file exists (pass --overwrite to replace it)"]
    assert path.read_text() == before
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth), "--json", str(path), "--overwrite"])
    assert r.exit_code == 0, r.output


def test_errors_are_one_line(folders):
    out, truth = folders
    write_mask(truth / "b_mask.png", square((8, 9)))
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [f"Error: {out / 'masks' / 'b.png'}: mask is 8 x 8 but its truth "
                                     f"{truth / 'b_mask.png'} is 8 x 9 (height x width)"]
    write_mask(truth.parent / "other" / "x.png", square())
    r = CliRunner().invoke(cli, ["score", str(out), "--truth", str(truth.parent / "other")])
    assert r.exit_code == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"Error: {out}: no mask shares an image name with the truth in {truth.parent / 'other'}")
    assert "(2 masks: a, b; 1 truth masks: x)" in r.stderr


def test_dsb_sample_scores_the_readme_otsu_dice(dsb_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", str(dsb_dir / "image.tif"), "--method", "otsu", "-o", str(tmp_path / "otsu"),
                            "-q", "--no-overlays"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["score", str(tmp_path / "otsu"), "--truth", str(dsb_dir / "mask.tif"), "-q"])
    assert r.exit_code == 0, r.output
    pooled = r.stdout.splitlines()[2].split()
    assert pooled[:2] == ["pooled", "0.835"]  # README's Otsu figure on the whole image; the truth is instance ids
