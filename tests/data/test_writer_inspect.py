import json

import numpy as np
import pytest

from mstool.data import SegmentationDataset, check_dataset, split_counts, write_synthetic_dataset
from mstool.errors import OutputExistsError, ParameterError

from .helpers import make_paper


@pytest.mark.parametrize("n, expected", [(3, (1, 1, 1)), (5, (3, 1, 1)), (10, (6, 2, 2)), (64, (38, 13, 13))])
def test_split_counts(n, expected):
    assert split_counts(n) == expected and sum(split_counts(n)) == n


def test_split_counts_rejects_bad_fractions():
    with pytest.raises(ParameterError, match="three non-negative fractions"):
        split_counts(10, (0.5, -0.1, 0.6))


@pytest.mark.parametrize("kind", ["er", "shapes"])
def test_written_synthetic_dataset_loads_and_checks(tmp_path, kind):
    root = write_synthetic_dataset(tmp_path / kind, kind, n=5, size=48, seed=3)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["kind"] == kind and meta["seed"] == 3 and meta["split"] == {"train": 3, "val": 1, "test": 1}
    ds = SegmentationDataset(root, "train")
    assert len(ds) == 3 and ds[0]["image"].shape == (1, 48, 48)
    report = check_dataset(root)
    assert report.ok, report.problems
    assert [s.images for s in report.splits] == [3, 1, 1]
    assert report.splits[0].dtypes == {"uint16": 3}
    assert 0 < report.splits[0].foreground < 0.9
    if kind == "shapes":
        assert len(report.splits[0].class_pixels) >= 3
        # palette PNGs are read back as class indices
        assert max(int(ds[i]["mask"].max()) for i in range(len(ds))) >= 2


def test_same_seed_same_files(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", "mito", n=3, size=32, seed=1)
    b = write_synthetic_dataset(tmp_path / "b", "mito", n=3, size=32, seed=1)
    for rel in ("train/images/mito_0000.tif", "test/labels/mito_0002.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_writer_refuses_to_overwrite_and_keeps_old_data(tmp_path):
    root = write_synthetic_dataset(tmp_path / "d", "nuc", n=3, size=32, seed=0)
    before = (root / "train" / "images" / "nuc_0000.tif").read_bytes()
    with pytest.raises(OutputExistsError, match="not empty"):
        write_synthetic_dataset(root, "nuc", n=3, size=32, seed=9)
    assert (root / "train" / "images" / "nuc_0000.tif").read_bytes() == before
    with pytest.raises(ParameterError, match=r"`n` must be an integer >= 3 \(so that train, val and test .*; got 2"):
        write_synthetic_dataset(tmp_path / "e", "nuc", n=2)
    assert not (tmp_path / "e").exists()
    write_synthetic_dataset(root, "nuc", n=4, size=32, seed=9, overwrite=True)
    assert json.loads((root / "dataset.json").read_text())["n"] == 4


def test_check_collects_every_problem(tmp_path):
    make_paper(tmp_path)
    (tmp_path / "train" / "labels" / "a.png").unlink()
    bad = tmp_path / "val" / "images" / "b.tif"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    import tifffile

    tifffile.imwrite(tmp_path / "test" / "labels" / "a.png.tif", np.zeros((16, 16), np.float32) + 0.5)
    (tmp_path / "test" / "labels" / "a.png").unlink()
    (tmp_path / "test" / "labels" / "a.png.tif").rename(tmp_path / "test" / "labels" / "a.tif")
    report = check_dataset(tmp_path)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "a.tif: no matching mask" in text
    assert "b.tif" in text
    assert "test/labels/a.tif" in text
    assert len(report.problems) == 3
    assert report.as_dict()["ok"] is False


def test_tiled_dataset_from_one_large_image(tmp_path):
    import tifffile

    from mstool.data import write_tiled_dataset
    from mstool.io import read_image, read_mask

    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (96, 130)).astype(np.uint16)
    mask = np.zeros((96, 130), np.uint16)
    mask[10:40, 10:50] = 7  # an instance id: foreground
    tifffile.imwrite(tmp_path / "big.tif", image)
    tifffile.imwrite(tmp_path / "big_mask.tif", mask)
    root = write_tiled_dataset(tmp_path / "big.tif", tmp_path / "big_mask.tif", tmp_path / "tiles", tile=32)
    assert check_dataset(root).ok
    names = sorted(p.name for p in root.glob("*/images/*.tif"))
    assert len(names) == 12  # 3 x 4 tiles; the 2-pixel border is left out
    assert len(list(root.glob("test/images/*.tif"))) == 2 and len(list(root.glob("val/images/*.tif"))) == 2
    first = next(root.glob("*/images/tile_00.tif"))
    assert np.array_equal(read_image(first), image[:32, :32])
    assert read_mask(first.parent.parent / "labels" / "tile_00.png")[10:, 10:].max() == 1
    assert json.loads((root / "tiles.json").read_text())["tiles"] == 12
    turned = write_tiled_dataset(tmp_path / "big.tif", tmp_path / "big_mask.tif", tmp_path / "inv", tile=32,
                                 invert=True)
    got = read_image(next(turned.glob("*/images/tile_00.tif")))
    assert np.array_equal(got, (image.min() + image.max() - image)[:32, :32])
    with pytest.raises(ParameterError, match="choose a smaller `tile`"):
        write_tiled_dataset(tmp_path / "big.tif", tmp_path / "big_mask.tif", tmp_path / "x", tile=64)
