"""prepare_splits: which split trains, validates and tests when a dataset does not hold all three with masks."""

from __future__ import annotations

import shutil

import pytest

from mstool.data import prepare_splits
from mstool.errors import LayoutError

from .helpers import make_paper, make_voc

NAMES = ("a", "b", "c", "d", "e")


def test_all_three_labelled_splits_are_used_as_they_are(tmp_path):
    splits = prepare_splits(str(make_paper(tmp_path / "d", NAMES)), tmp_path / "w")
    assert (len(splits.train_images), len(splits.val_images), len(splits.test_images)) == (5, 5, 5)
    assert splits.notes == []


def test_train_and_val_only_keep_val_as_the_test_set(tmp_path):
    root = make_paper(tmp_path / "d", NAMES, splits=("train", "val"))
    splits = prepare_splits(str(root), tmp_path / "w")
    # val is not thrown back into a 60/20/20 cut of train: it is the test set, validation comes out of train
    assert len(splits.test_images) == 5 and len(splits.train_images) + len(splits.val_images) == 5
    assert any("the val split is the test set" in note for note in splits.notes)


def test_an_unlabelled_test_split_is_left_out_and_named(tmp_path):
    root = make_paper(tmp_path / "d", NAMES)
    shutil.rmtree(root / "test" / "labels")  # test images to segment, without masks: by design, not a mistake
    splits = prepare_splits(str(root), tmp_path / "w")
    assert len(splits.test_images) == 5 and "a" in splits.test_names
    assert splits.notes[0] == "split(s) test hold no masks and are not used"
    voc = make_voc(tmp_path / "voc")
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("2007_000009\n")
    shutil.copy(voc / "JPEGImages" / "2007_000001.jpg", voc / "JPEGImages" / "2007_000009.jpg")
    assert prepare_splits(str(voc), tmp_path / "w2").test_names == ["2007_000003"]  # VOC's val, as documented


def test_missing_masks_in_a_labelled_split_still_fail(tmp_path):
    root = make_paper(tmp_path / "d", NAMES)
    (root / "test" / "labels" / "a.png").unlink()
    with pytest.raises(LayoutError, match="a.tif: no matching mask"):
        prepare_splits(str(root), tmp_path / "w")


def test_no_split_with_masks_is_a_clear_error(tmp_path):
    root = make_paper(tmp_path / "d", NAMES)
    for split in ("train", "val", "test"):
        shutil.rmtree(root / split / "labels")
    with pytest.raises(LayoutError, match="no split holds masks"):
        prepare_splits(str(root), tmp_path / "w")


def test_a_label_folder_with_cellpose_mask_names_pairs_with_the_images(tmp_path):
    from mstool.data import read_label_folder
    from mstool.io import write_mask

    from .helpers import tiny_pair

    for name in ("a", "b"):  # what `mstool labels make` writes for a cellpose dataset: name_masks.png
        write_mask(tmp_path / "crowd" / f"{name}_masks.png", tiny_pair()[1])
    masks = read_label_folder(tmp_path / "crowd", ["a", "b"], (16, 16))
    assert masks.shape == (2, 16, 16) and int(masks.sum()) == 2 * int(tiny_pair()[1].sum())


def test_reading_lazily_needs_a_labelled_split_and_says_what_to_do(tmp_path):
    from mstool.data import lazy_split

    voc = make_voc(tmp_path / "voc")
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("2007_000009\n")
    shutil.copy(voc / "JPEGImages" / "2007_000001.jpg", voc / "JPEGImages" / "2007_000009.jpg")
    assert len(lazy_split(str(voc), tmp_path / "w", "val")) == 1
    with pytest.raises(LayoutError, match=r"needs a labelled test split; it has train, val .*mstool evaluate --eager"):
        lazy_split(str(voc), tmp_path / "w", "test")


def test_a_cityscapes_folder_tests_on_val(tmp_path):
    from .test_cityscapes import make_cityscapes

    root = make_cityscapes(tmp_path / "cs", per_city=(2, 1, 1))
    splits = prepare_splits(str(root), tmp_path / "w")
    assert splits.test_names == ["frankfurt_000000_000000", "lindau_000000_000000"]  # val: the test masks are blank
    assert len(splits.train_images) + len(splits.val_images) == 4 and splits.notes[0].startswith("split(s) test")
    assert int(splits.test_labels[splits.test_labels != 255].max()) == 13  # car, a train id, not labelId 26
