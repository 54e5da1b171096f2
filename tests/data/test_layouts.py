import pytest

from mstool.data import discover_layout, layout_names
from mstool.errors import FileMissingError, LayoutError

from .helpers import make_cellpose, make_paper, make_voc, tiny_pair


def test_layout_registry_names():
    assert layout_names() == ["paper", "voc", "cellpose", "cityscapes"]


def test_paper_layout_pairs_by_name_across_suffixes(tmp_path):
    make_paper(tmp_path)
    layout = discover_layout(tmp_path)
    assert layout.kind == "paper" and layout.splits == ("train", "val", "test")
    samples = layout.samples("val")
    assert [s.name for s in samples] == ["a", "b"]
    assert samples[0].image.suffix == ".tif" and samples[0].mask.suffix == ".png"


def test_paper_layout_reports_unpaired_files(tmp_path):
    make_paper(tmp_path, splits=("train",))
    (tmp_path / "train" / "labels" / "b.png").unlink()
    layout = discover_layout(tmp_path, "paper")
    with pytest.raises(LayoutError, match=r"b\.tif: no matching mask for this image"):
        layout.samples("train")
    samples, problems = layout.scan("train")
    # the unpaired image is still listed (unlabelled) for readers of images alone
    assert [(s.name, s.mask is None) for s in samples] == [("a", False), ("b", True)] and len(problems) == 1


def test_paper_layout_mask_without_image_and_empty_folder(tmp_path):
    make_paper(tmp_path, splits=("train", "val"))
    (tmp_path / "train" / "images" / "a.tif").unlink()
    for p in (tmp_path / "val" / "images").iterdir():
        p.unlink()
    layout = discover_layout(tmp_path)
    _, problems = layout.scan("train")
    assert any("a.png: mask has no matching image" in p for p in problems)
    _, problems = layout.scan("val")
    assert any("no images" in p for p in problems)


def test_paper_layout_unlabelled_split(tmp_path):
    image, _ = tiny_pair()
    from mstool.io import write_image

    write_image(tmp_path / "test" / "images" / "x.tif", image)
    samples = discover_layout(tmp_path).samples("test")
    assert samples[0].mask is None


def test_missing_split_is_named(tmp_path):
    make_paper(tmp_path, splits=("train",))
    with pytest.raises(LayoutError, match="split 'val' not found .* it has: train"):
        discover_layout(tmp_path).samples("val")


@pytest.mark.parametrize("suffix", ["_masks", "_seg"])
def test_cellpose_flat_folder(tmp_path, suffix):
    make_cellpose(tmp_path, suffix=suffix)
    layout = discover_layout(tmp_path, mask_suffix=suffix)
    assert layout.kind == "cellpose" and layout.splits == ("all",)
    samples = layout.samples("all")
    assert [s.name for s in samples] == ["c1", "c2"]
    assert samples[1].mask.name == f"c2{suffix}.tif"


def test_cellpose_split_folders(tmp_path):
    make_cellpose(tmp_path / "train")
    make_cellpose(tmp_path / "test", names=("t1",))
    layout = discover_layout(tmp_path, "cellpose")
    assert layout.splits == ("train", "test")
    assert [s.name for s in layout.samples("test")] == ["t1"]


def test_voc_layout_and_devkit_nesting(tmp_path):
    make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    for root in (tmp_path / "VOCdevkit" / "VOC2012", tmp_path / "VOCdevkit", tmp_path):  # as the tar unpacks
        layout = discover_layout(root)
        assert layout.kind == "voc" and layout.mask_mode == "multiclass"
        assert layout.splits == ("train", "val")
        assert [s.name for s in layout.samples("train")] == ["2007_000001", "2007_000002"]


def test_voc_list_names_missing_image(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("nope\n")
    with pytest.raises(LayoutError, match="lists 'nope'"):
        discover_layout(tmp_path).samples("val")


def test_discovery_errors(tmp_path):
    with pytest.raises(FileMissingError, match="does not exist"):
        discover_layout(tmp_path / "missing")
    with pytest.raises(LayoutError, match="no dataset layout found.*paper: ROOT/"):
        discover_layout(tmp_path)
    make_cellpose(tmp_path)
    with pytest.raises(LayoutError, match="does not follow the voc layout"):
        discover_layout(tmp_path, "voc")
    from mstool.errors import ParameterError

    with pytest.raises(ParameterError, match="unknown dataset layout 'coco'"):
        discover_layout(tmp_path, "coco")
