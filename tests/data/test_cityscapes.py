"""The Cityscapes layout and the ``cityscapes`` mask mode, on tiny fake Cityscapes folders (32 x 64, two cities)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from mstool.cli.main import cli
from mstool.data import SegmentationDataset, check_dataset, discover_layout
from mstool.errors import DataError, LayoutError
from mstool.io import CITYSCAPES_CLASSES, read_mask, write_image

# labelId -> train id of the 19 evaluation classes, copied by hand from cityscapesScripts' helpers/labels.py
TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
            27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau"), "test": ("berlin", "bonn")}


def _label_ids(seed: int) -> np.ndarray:
    """A 32 x 64 labelIds mask: road (7) below, car (26), sky (23), unlabeled (0) and parking (9) above."""
    mask = np.full((32, 64), 7, np.uint8)
    mask[:16] = 23
    mask[10:20, 5 + seed: 20 + seed] = 26
    mask[0, :] = 0
    mask[-1, :8] = 9
    return mask


def _gray_png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)  # 8-bit gray, as the Cityscapes masks are stored


def make_cityscapes(root: Path, *, per_city=(1, 1, 1), train_ids: bool = False) -> Path:
    """``root/leftImg8bit`` and ``root/gtFine`` with ``per_city`` frames per city of train/val/test."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val", "test"), per_city):
        for city in CITIES[split]:
            for frame in range(count):
                name = f"{city}_000000_{frame:06d}"
                write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png",
                            rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
                ids = np.zeros((32, 64), np.uint8) if split == "test" else _label_ids(frame)  # test masks are blank
                gt = root / "gtFine" / split / city
                _gray_png(gt / f"{name}_gtFine_labelIds.png", ids)
                _gray_png(gt / f"{name}_gtFine_color.png", ids)  # other gtFine files are not masks
                if train_ids:
                    _gray_png(gt / f"{name}_gtFine_labelTrainIds.png", _to_train_ids(ids))
    return root


def _to_train_ids(ids: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: TRAIN_ID.get(int(v), 255))(ids)


@pytest.mark.parametrize("layout", ["auto", "cityscapes"])
def test_discovered_automatically_or_by_name(tmp_path, layout):
    found = discover_layout(make_cityscapes(tmp_path, per_city=(2, 1, 1)), layout)
    assert found.kind == "cityscapes" and found.splits == ("train", "val", "test")
    assert found.mask_mode == "cityscapes" and found.root == tmp_path
    assert [s.name for s in found.samples("train")] == [
        "aachen_000000_000000", "aachen_000000_000001", "bochum_000000_000000", "bochum_000000_000001"]


def test_image_and_mask_are_paired_by_name(tmp_path):
    make_cityscapes(tmp_path)
    sample = discover_layout(tmp_path).samples("val")[1]
    assert sample.name == "lindau_000000_000000"
    assert sample.image == tmp_path / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000000_leftImg8bit.png"
    assert sample.mask == tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000000_gtFine_labelIds.png"


def test_unpaired_files_are_problems(tmp_path):
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine" / "train" / "aachen" / "aachen_000000_000000_gtFine_labelIds.png").unlink()
    (tmp_path / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000000_leftImg8bit.png").unlink()
    found = discover_layout(tmp_path)
    with pytest.raises(LayoutError, match=r"aachen_000000_000000_leftImg8bit\.png: no matching mask"):
        found.samples("train")
    _, problems = found.scan("val")
    assert problems == [f"{tmp_path / 'gtFine/val/lindau/lindau_000000_000000_gtFine_labelIds.png'}: mask has no "
                        "matching image"]


def test_label_ids_map_to_the_19_train_ids(tmp_path):
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    _gray_png(tmp_path / "m.png", ids)
    out = read_mask(tmp_path / "m.png", mode="cityscapes")
    expected = np.array([TRAIN_ID.get(v, 255) for v in range(256)]).reshape(16, 16)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int64 and out[0, 7] == 0 and out[1, 10] == 13 and out[0, 0] == 255 and out[2, 2] == 255
    assert sorted(set(out.ravel().tolist())) == [*range(19), 255] and len(CITYSCAPES_CLASSES) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[13] == "car" and CITYSCAPES_CLASSES[18] == "bicycle"


def test_license_plate_minus_one_is_ignore(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.array([[-1, 7], [26, 34]], np.int16))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif", mode="cityscapes"), [[255, 0], [13, 255]])
    with pytest.raises(DataError, match="mask has negative values"):
        read_mask(tmp_path / "m.tif", mode="multiclass")


def test_dataset_reads_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    item = SegmentationDataset(tmp_path, "train", channels=3)[0]
    assert item["image"].shape == (3, 32, 64)
    np.testing.assert_array_equal(item["mask"].numpy(), _to_train_ids(_label_ids(0)))


def test_label_train_ids_are_preferred_when_every_mask_has_one(tmp_path):
    make_cityscapes(tmp_path, train_ids=True)
    found = discover_layout(tmp_path)
    assert found.mask_mode == "multiclass"
    sample = found.samples("train")[0]
    assert sample.mask.name == "aachen_000000_000000_gtFine_labelTrainIds.png"
    np.testing.assert_array_equal(SegmentationDataset(found, "train")[0]["mask"].numpy(), _to_train_ids(_label_ids(0)))
    # one labelTrainIds file missing: every mask is read from labelIds, never a mix of the two
    (tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000000_gtFine_labelTrainIds.png").unlink()
    found = discover_layout(tmp_path)
    assert found.mask_mode == "cityscapes" and found.samples("train")[0].mask.name.endswith("_labelIds.png")


def test_test_split_is_unlabelled(tmp_path):
    make_cityscapes(tmp_path, train_ids=True)
    samples = discover_layout(tmp_path).samples("test")
    assert [(s.name, s.mask) for s in samples] == [("berlin_000000_000000", None), ("bonn_000000_000000", None)]


@pytest.mark.parametrize("layout", ["auto", "cityscapes"])
def test_missing_gtfine_is_named(tmp_path, layout):
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine").rename(tmp_path / "elsewhere")
    with pytest.raises(LayoutError, match=r"found leftImg8bit/ but no gtFine/ \(unpack gtFine_trainvaltest\.zip"):
        discover_layout(tmp_path, layout)


def test_missing_leftimg8bit_is_named(tmp_path):
    make_cityscapes(tmp_path)
    (tmp_path / "leftImg8bit").rename(tmp_path / "elsewhere")
    with pytest.raises(LayoutError, match="found gtFine/ but no leftImg8bit/"):
        discover_layout(tmp_path)


def test_missing_split_folder_of_gtfine_is_one_problem(tmp_path):
    make_cityscapes(tmp_path)
    shutil.rmtree(tmp_path / "gtFine" / "val")
    samples, problems = discover_layout(tmp_path).scan("val")
    assert [s.mask for s in samples] == [None, None]
    assert problems == [f"{tmp_path / 'gtFine' / 'val'}: folder missing, so the val images have no masks"]


def test_folders_unpacked_under_the_zip_names(tmp_path):
    make_cityscapes(tmp_path / "tmp")
    for name in ("leftImg8bit", "gtFine"):
        (tmp_path / f"{name}_trainvaltest").mkdir()
        (tmp_path / "tmp" / name).rename(tmp_path / f"{name}_trainvaltest" / name)
    found = discover_layout(tmp_path)
    assert found.kind == "cityscapes" and found.root == tmp_path
    assert found.samples("val")[0].mask.parts[-5:-3] == ("gtFine_trainvaltest", "gtFine")


def test_check_reports_the_train_ids(tmp_path):
    make_cityscapes(tmp_path / "cs")
    report = check_dataset(tmp_path / "cs")
    assert report.ok and report.layout == "cityscapes"
    assert [(s.split, s.images, s.labelled) for s in report.splits] == [("train", 2, 2), ("val", 2, 2), ("test", 2, 0)]
    assert sorted(report.splits[0].class_pixels) == [0, 10, 13, 255]
    r = CliRunner().invoke(cli, ["data", "check", str(tmp_path / "cs"), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "cityscapes layout" in r.output and "no problems found" in r.output
    assert "mask values 0, 10, 13, 255" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["splits"][2]["labelled"] == 0
