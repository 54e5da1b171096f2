import json
import shutil

import numpy as np
import pytest
import torch

from mstool.data import collect_images, collect_masks, find_counterparts, stack_labels, write_synthetic_dataset
from mstool.errors import DataError, LayoutError, OutputError, OutputExistsError, SpecError
from mstool.io import read_mask, write_mask
from mstool.metastructure import load_prior, save_prior
from mstool.runs import analyze_label_sets, estimate_prior_from_labels, make_label_set, show_prior

from ..data.helpers import make_cellpose
from ..pictures import assert_picture_has_content


@pytest.fixture(scope="module")
def er_root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("er") / "er", "er", n=5, size=64, seed=0)


def test_collect_masks_layout_and_plain_folder(er_root, tmp_path):
    entries, mode = collect_masks(er_root)
    assert mode == "auto" and len(entries) == 5
    assert str(entries[0].rel) == "train/labels/er_0000.png" and entries[0].split == "train"
    assert len(collect_masks(er_root, splits=("val",))[0]) == 1
    for e in entries[:2]:
        write_mask(tmp_path / "plain" / f"{e.name}.tif", read_mask(e.path))
    plain, _ = collect_masks(tmp_path / "plain")
    assert [e.rel.name for e in plain] == ["er_0000.tif", "er_0001.tif"] and plain[0].split == ""


def test_one_split_of_a_paper_dataset_reads_as_its_images_or_its_masks(er_root, tmp_path):
    """`data/test` is what a user points at first: its images/ and labels/, not "no images found"."""
    test = er_root / "test"
    images = collect_images(test)
    masks, _ = collect_masks(test)
    assert [e.path for e in images] == sorted((test / "images").iterdir())
    assert [e.path for e in masks] == sorted((test / "labels").iterdir())
    assert [e.name for e in images] == [e.name for e in masks] and images[0].split == ""
    # a folder with images of its own stays a plain folder, whatever subfolders it has
    shutil.copytree(test, tmp_path / "mixed")
    shutil.copy(images[0].path, tmp_path / "mixed" / "own.tif")
    assert [e.name for e in collect_images(tmp_path / "mixed")] == ["own"]


def test_collect_masks_names_drop_cellpose_suffix(tmp_path):
    make_cellpose(tmp_path)
    entries, _ = collect_masks(tmp_path)
    assert [e.name for e in entries] == ["c1", "c2"]


def test_stack_labels_pads_with_ignore(tmp_path):
    write_mask(tmp_path / "a.png", np.ones((4, 6), np.uint8))
    write_mask(tmp_path / "b.png", np.zeros((5, 3), np.uint8))
    labels, sizes = stack_labels([read_mask(tmp_path / "a.png"), read_mask(tmp_path / "b.png")])
    assert labels.shape == (2, 5, 6) and sizes == [(4, 6), (5, 3)]
    assert int(labels[0, 4, 0]) == 255 and int(labels[1, 0, 5]) == 255 and int(labels[0, 0, 0]) == 1


def test_make_label_set_mirrors_and_is_seeded(er_root, tmp_path):
    meta = make_label_set(er_root, "sample:0.1", tmp_path / "a", seed=3)
    assert meta["masks"] == 5 and meta["spec"] == "sample:0.1"
    assert json.loads((tmp_path / "a" / "noise.json").read_text())["seed"] == 3
    clean = read_mask(er_root / "train" / "labels" / "er_0001.png")
    noisy = read_mask(tmp_path / "a" / "train" / "labels" / "er_0001.png")
    assert int(noisy.sum()) == int(np.ceil(0.1 * clean.sum()))  # exact count per image
    assert not (noisy > clean).any()
    make_label_set(er_root, "sample:0.1", tmp_path / "b", seed=3)
    make_label_set(er_root, "sample:0.1", tmp_path / "c", seed=4)
    rel = "val/labels/er_0003.png"
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert not np.array_equal(read_mask(tmp_path / "a" / rel), read_mask(tmp_path / "c" / rel))


def test_make_label_set_sparse_ignore_roundtrip(er_root, tmp_path):
    make_label_set(er_root, "sample:0.2,ignore", tmp_path / "s", splits=("train",))
    noisy = read_mask(tmp_path / "s" / "train" / "labels" / "er_0000.png")
    clean = read_mask(er_root / "train" / "labels" / "er_0000.png")
    # partial labels: a fraction of every class (background too) stays labelled, the rest becomes ignore (255)
    assert set(np.unique(noisy).tolist()) == {0, 1, 255}
    assert int((noisy == 1).sum()) == int(np.ceil(0.2 * (clean == 1).sum()))
    assert int((noisy == 0).sum()) == int(np.ceil(0.2 * (clean == 0).sum()))
    assert (clean[noisy != 255] == noisy[noisy != 255]).all()


def test_make_label_set_errors_leave_nothing(er_root, tmp_path):
    with pytest.raises(SpecError, match="flip"):
        make_label_set(er_root, "flip:1.5,0", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "keep").write_text("1")
    for overwrite in (False, True):  # a folder mstool did not write is never replaced
        with pytest.raises(OutputError, match="not written by mstool"):
            make_label_set(er_root, "clean", tmp_path / "y", overwrite=overwrite)
    assert [p.name for p in (tmp_path / "y").iterdir()] == ["keep"]
    make_label_set(er_root, "clean", tmp_path / "z")
    with pytest.raises(OutputExistsError, match=r"output folder exists and is not empty \(pass --overwrite"):
        make_label_set(er_root, "clean", tmp_path / "z")
    for out in (er_root, er_root / "train", er_root.parent):  # is, lies inside, contains the clean labels
        with pytest.raises(OutputError, match="the input"):
            make_label_set(er_root, "clean", out, overwrite=True)


def test_analyze_label_sets_orders_the_taxonomy(er_root, tmp_path):
    for spec in ("clean", "sample:0.1", "dilate:2", "random:0.3"):
        make_label_set(er_root, spec, tmp_path / spec.replace(":", "_"))
    reports = analyze_label_sets(er_root, [tmp_path / s for s in ("clean", "sample_0.1", "dilate_2", "random_0.3")])
    assert [r.info["taxonomy"] for r in reports] == ["CL", "RCL", "PCL", "RL"]
    assert reports[0].similarity["pearson_h2"] == pytest.approx(1.0)
    assert reports[3].info["rank"] == 1
    assert reports[1].info["ntm"][1][1] == pytest.approx(0.1, abs=0.01)
    row = reports[1].as_dict()
    assert {"name", "taxonomy", "rank", "det", "mutual_information", "similarity_pearson_h8"} <= set(row)


def test_analyze_label_sets_missing_counterpart(er_root, tmp_path):
    make_label_set(er_root, "clean", tmp_path / "n")
    (tmp_path / "n" / "test" / "labels" / "er_0004.png").unlink()
    # named by what is missing (test/labels/er_0004, any suffix), not by a .png path that was never there
    with pytest.raises(LayoutError, match=r"no mask named like the clean mask\(s\) test/labels/er_0004 \(any"):
        analyze_label_sets(er_root, [tmp_path / "n"])
    with pytest.raises(LayoutError, match="no mask"):
        find_counterparts(collect_masks(er_root)[0], tmp_path / "n")


def test_estimate_prior_with_ems_roundtrip_and_show(er_root, tmp_path):
    prior = estimate_prior_from_labels(er_root, splits=("train",), ems="skeleton+shift:1+sample:0.1", bandwidth=4)
    assert prior.density.shape == (3, 2, 64, 64) and prior.names == ("er_0000", "er_0001", "er_0002")
    assert prior.classes == ("background", "foreground") and "ems:skeleton+shift:1+sample:0.1" in prior.source
    save_prior(tmp_path / "p.npz", prior)
    again = load_prior(tmp_path / "p.npz")
    assert torch.equal(again.density, prior.density)
    drawn = show_prior(tmp_path / "p.npz", tmp_path / "p.png", images=er_root, labels=er_root, max_rows=2)
    assert drawn == ["er_0000", "er_0001"]
    assert_picture_has_content(tmp_path / "p.png")
    with pytest.raises(DataError, match="no entry for images nope"):
        show_prior(tmp_path / "p.npz", tmp_path / "q.png", images=er_root, names=["er_0000", "nope"])
    with pytest.raises(LayoutError, match="no image named er_0002"):
        show_prior(tmp_path / "p.npz", tmp_path / "q.png", images=er_root / "val" / "images", names=["er_0002"])
    assert not (tmp_path / "q.png").exists()


def test_estimate_prior_rejects_mixed_sizes_and_duplicate_names(tmp_path, er_root):
    write_mask(tmp_path / "m" / "a.png", np.ones((8, 8), np.uint8))
    write_mask(tmp_path / "m" / "b.png", np.ones((9, 8), np.uint8))
    with pytest.raises(DataError, match="one size; found 8 x 8, 9 x 8"):
        estimate_prior_from_labels(tmp_path / "m")
    dup = write_synthetic_dataset(tmp_path / "dup", "nuc", n=3, size=32, seed=0)
    (dup / "val" / "labels" / "nuc_0001.png").rename(dup / "val" / "labels" / "nuc_0000.png")
    (dup / "val" / "images" / "nuc_0001.tif").rename(dup / "val" / "images" / "nuc_0000.tif")
    with pytest.raises(LayoutError, match="also names"):
        estimate_prior_from_labels(dup)


def test_audit_reads_the_noisy_masks_as_mask_mode_says(tmp_path):
    from mstool.runs import audit_label_sets

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for i in range(2):
            (tmp_path / "d" / split / "images").mkdir(parents=True, exist_ok=True)
            write_mask(tmp_path / "d" / split / "images" / f"{split}{i}.png", rng.integers(0, 255, (48, 48)))
            mask = np.zeros((48, 48), np.uint8)
            mask[5:20, 5:20], mask[5:20, 30:45], mask[25:45, 10:40], mask[:, :2] = 1, 1, 2, 255  # gray classes,
            # one of them in two pieces and an ignore band: read as `auto` they are object ids, all foreground
            write_mask(tmp_path / "d" / split / "labels" / f"{split}{i}.tif", mask)  # gray, not a palette
    copy = shutil.copytree(tmp_path / "d", tmp_path / "copy")
    audit = audit_label_sets(tmp_path / "d", [copy], mask_mode="multiclass")[0]
    assert audit.taxonomy == "CL" and audit.expected.score > 0.99  # an identical copy is clean labels


def test_audit_pictures_of_sets_with_one_folder_name_do_not_overwrite_each_other(tmp_path):
    from mstool.runs._labelsets import _picture_names

    assert _picture_names([str(tmp_path / "s"), str(tmp_path / "d")]) == ["s", "d"]
    assert _picture_names([str(tmp_path / "a" / "set"), str(tmp_path / "b" / "set")]) == ["a_set", "b_set"]
    assert _picture_names([str(tmp_path / "x y"), str(tmp_path / "x y")]) == ["x_y", "x_y-2"]


def test_a_flat_folder_of_masks_pairs_with_a_datasets_split_folders_and_back(er_root, tmp_path):
    from mstool.runs import audit_label_sets

    make_label_set(er_root, "dilate:1", tmp_path / "copy", seed=0)
    (tmp_path / "flat").mkdir()
    for p in sorted((tmp_path / "copy").rglob("*.png")):
        shutil.copy(p, tmp_path / "flat" / p.name)
    mirrored = audit_label_sets(er_root, [tmp_path / "copy"], bootstrap=0)[0]
    flat = audit_label_sets(er_root, [tmp_path / "flat"], bootstrap=0)[0]
    assert flat.used == mirrored.used == 5 and flat.expected.score == pytest.approx(mirrored.expected.score)
    # two expert masks in a plain folder against the noisy copy's split folders
    (tmp_path / "few").mkdir()
    for p in sorted((er_root / "train" / "labels").glob("*.png"))[:2]:
        shutil.copy(p, tmp_path / "few" / p.name)
    assert audit_label_sets(tmp_path / "few", [tmp_path / "copy"], bootstrap=0)[0].used == 2
    # a name found twice under a folder pairs with neither
    entries, _ = collect_masks(tmp_path / "few")
    first = entries[0].rel.name
    for sub in ("a", "b"):
        (tmp_path / "twice" / sub).mkdir(parents=True)
        shutil.copy(tmp_path / "few" / first, tmp_path / "twice" / sub / first)
    assert find_counterparts(entries, tmp_path / "twice", allow_missing=True) == [None, None]
