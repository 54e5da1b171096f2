import json
import math

import numpy as np
import pytest
import tifffile

from mstool import IGNORE_INDEX
from mstool.data import write_synthetic_dataset
from mstool.errors import DataError, LayoutError, MstoolWarning, OutputError, OutputExistsError
from mstool.io import write_mask
from mstool.runs import score_masks


def square(shape=(8, 8), rows=slice(2, 6), cols=slice(2, 6)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int64)
    mask[rows, cols] = 1
    return mask


@pytest.fixture
def pair(tmp_path):
    """a: a 4 x 4 square against the same square shifted 2 columns (8 of 16 pixels shared); b: 6 x 10, exact."""
    write_mask(tmp_path / "pred" / "a.png", square())
    write_mask(tmp_path / "truth" / "a.png", square(cols=slice(4, 8)))
    write_mask(tmp_path / "pred" / "b.png", square((6, 10), slice(1, 3), slice(2, 5)))
    write_mask(tmp_path / "truth" / "b.png", square((6, 10), slice(1, 3), slice(2, 5)))
    return tmp_path / "pred", tmp_path / "truth"


def test_hand_computed_scores_per_image_and_pooled(pair):
    report = score_masks(*pair)
    a, b = report.images
    assert (a.name, a.tp, a.fp, a.fn, a.tn, a.predicted, a.true) == ("a", 8, 8, 8, 40, 16, 16)
    assert (a.dice, a.precision, a.recall) == (0.5, 0.5, 0.5) and a.iou == pytest.approx(1 / 3)
    assert (b.name, b.dice, b.iou, b.tp, b.tn) == ("b", 1.0, 1.0, 6, 54)
    p = report.pooled
    # counts summed over images of two sizes: tp 14, fp 8, fn 8
    assert (p.tp, p.fp, p.fn, p.tn, p.predicted, p.true) == (14, 8, 8, 94, 22, 22)
    assert p.dice == pytest.approx(28 / 44) and p.iou == pytest.approx(14 / 30)
    assert report.mean_dice == 0.75 and report.mean_dice_n == 2
    assert report.unpaired_masks == () and report.unpaired_truth == ()


def test_instance_truth_counts_objects_and_255_is_ignored(tmp_path):
    truth = np.zeros((8, 8), dtype=np.uint16)
    truth[0:2, 0:2], truth[4:6, 4:6], truth[6:8, 0:2] = 1, 2, 3  # three objects, 12 pixels
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    pred = np.zeros((8, 8), dtype=np.int64)
    pred[0:2, 0:2] = pred[4:6, 4:6] = 1  # objects 1 and 2
    pred[0, 7] = 1  # one false positive ...
    pred[7, 7] = IGNORE_INDEX  # ... and an ignored pixel on the prediction's side
    write_mask(tmp_path / "pred.png", pred)
    s = score_masks(tmp_path / "pred.png", tmp_path / "truth.tif").images[0]
    assert (s.tp, s.fp, s.fn, s.tn) == (8, 1, 4, 50)
    assert s.dice == pytest.approx(16 / 21) and s.recall == pytest.approx(8 / 12)


def test_a_file_named_pairs_with_the_only_mask_whatever_the_names(tmp_path):
    write_mask(tmp_path / "out" / "image.png", square())
    write_mask(tmp_path / "mask.png", square())
    report = score_masks(tmp_path / "out", tmp_path / "mask.png")
    assert [(s.name, s.truth.name, s.dice) for s in report.images] == [("image", "mask.png", 1.0)]


def test_segment_output_folder_is_read_through_its_masks(tmp_path):
    out = tmp_path / "seg"
    write_mask(out / "masks" / "a.png", square())
    write_mask(out / "overlays" / "b.png", square())  # not a mask: only masks/ is read
    (out / "run.json").write_text(json.dumps({"mstool_version": "0.1.0", "images": {"a": {}}}))
    write_mask(tmp_path / "truth" / "a.png", square(cols=slice(4, 8)))
    report = score_masks(out, tmp_path / "truth")
    assert [(s.name, s.mask, s.dice) for s in report.images] == [("a", out / "masks" / "a.png", 0.5)]


def test_mask_suffixes_are_dropped_on_both_sides(tmp_path):
    write_mask(tmp_path / "pred" / "c1.png", square())
    write_mask(tmp_path / "pred" / "c2_mask.png", square())
    write_mask(tmp_path / "truth" / "c1_masks.png", square())
    write_mask(tmp_path / "truth" / "c2_masks.tif", square())
    report = score_masks(tmp_path / "pred", tmp_path / "truth")
    assert [(s.name, s.truth.name) for s in report.images] == [("c1", "c1_masks.png"), ("c2", "c2_masks.tif")]


def test_dataset_folder_truth(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", "er", n=3, size=32, seed=0)
    with pytest.warns(MstoolWarning, match=r"ds: 2 truth mask\(s\) without a predicted mask"):
        report = score_masks(ds / "test" / "labels", ds)  # the test split's labels against the whole dataset
    assert len(report.images) == 1 and report.pooled.dice == 1.0
    assert len(report.unpaired_truth) == 2


def test_unpaired_masks_warn_and_are_left_out(pair):
    pred, truth = pair
    write_mask(pred / "extra.png", square())
    write_mask(truth / "lonely.png", square())
    with pytest.warns(MstoolWarning, match=r"1 mask\(s\) without truth .* not scored: extra.png"):
        with pytest.warns(MstoolWarning, match=r"1 truth mask\(s\) without a predicted mask .*: lonely.png"):
            report = score_masks(pred, truth)
    assert [s.name for s in report.images] == ["a", "b"]
    assert report.unpaired_masks == (pred / "extra.png",) and report.unpaired_truth == (truth / "lonely.png",)


def test_no_pair_is_an_error_that_counts_both_sides(tmp_path):
    write_mask(tmp_path / "pred" / "a.png", square())
    write_mask(tmp_path / "pred" / "b.png", square())
    write_mask(tmp_path / "truth" / "x.png", square())
    with pytest.raises(LayoutError, match=r"pred: no mask shares an image name .*\(2 masks: a, b; 1 truth masks: x\)"):
        score_masks(tmp_path / "pred", tmp_path / "truth")


def test_size_mismatch_names_both_files_and_sizes(pair):
    pred, truth = pair
    write_mask(truth / "b.png", square((6, 12)))
    with pytest.raises(DataError, match=r"pred/b.png: mask is 6 x 10 but its truth .*truth/b.png is 6 x 12"):
        score_masks(pred, truth)


def test_class_index_truth_is_refused(pair):
    pred, truth = pair
    classes = square()
    classes[0, :] = 2  # a palette mask: class indices
    write_mask(truth / "a.png", classes)
    with pytest.raises(DataError, match=r"truth/a.png: truth mask holds class indices 0, 1, 2 \(3 classes\); scoring"):
        score_masks(pred, truth)


def test_two_masks_with_one_name_are_refused(pair):
    pred, truth = pair
    write_mask(pred / "a_mask.tif", square())
    with pytest.raises(LayoutError, match=r"image name 'a' also names .*a.png"):
        score_masks(pred, truth)


def test_empty_masks_score_nan_and_leave_the_mean(pair):
    pred, truth = pair
    write_mask(pred / "e.png", np.zeros((4, 4), dtype=np.int64))
    write_mask(truth / "e.png", np.zeros((4, 4), dtype=np.int64))
    report = score_masks(pred, truth)
    empty = report.images[-1]
    assert math.isnan(empty.dice) and math.isnan(empty.precision) and empty.tn == 16
    assert report.mean_dice == 0.75 and report.mean_dice_n == 2
    only = score_masks(pred / "e.png", truth / "e.png")
    assert math.isnan(only.mean_dice) and only.mean_dice_n == 0 and math.isnan(only.pooled.dice)


def test_json_content_and_no_overwrite(pair, tmp_path):
    path = tmp_path / "s.json"
    report = score_masks(*pair, json_path=path)
    stored = json.loads(path.read_text())
    assert stored == report.as_dict()
    assert stored["images"][0]["dice"] == 0.5 and stored["pooled"]["tp"] == 14 and stored["mean_dice"] == 0.75
    assert stored["images"][0]["mask"] == str(pair[0] / "a.png")
    with pytest.raises(OutputExistsError, match=r"s.json: file exists \(pass --overwrite"):
        score_masks(*pair, json_path=path)
    score_masks(*pair, json_path=path, overwrite=True)
    with pytest.raises(OutputError, match=r"lies inside the input"):
        score_masks(*pair, json_path=pair[1] / "s.json", overwrite=True)
    assert not (pair[1] / "s.json").exists()


def test_nan_is_null_in_json(tmp_path):
    write_mask(tmp_path / "p.png", np.zeros((4, 4), dtype=np.int64))
    write_mask(tmp_path / "t.png", np.zeros((4, 4), dtype=np.int64))
    score_masks(tmp_path / "p.png", tmp_path / "t.png", json_path=tmp_path / "s.json")
    stored = json.loads((tmp_path / "s.json").read_text())
    assert stored["mean_dice"] is None and stored["pooled"]["dice"] is None and stored["mean_dice_n"] == 0
