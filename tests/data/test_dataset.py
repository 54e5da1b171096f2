import numpy as np
import pytest
import torch

from mstool.data import RandomCropFlip, SegmentationDataset, discover_layout, random_crop_flip
from mstool.errors import DataError, LayoutError, ParameterError
from mstool.io import write_image, write_mask

from .helpers import make_cellpose, make_paper, make_voc, tiny_pair


def test_dataset_items_from_paper_layout(tmp_path):
    make_paper(tmp_path)
    ds = SegmentationDataset(tmp_path, "train")
    assert len(ds) == 2 and ds.names == ["a", "b"]
    item = ds[1]
    assert item["name"] == "b"
    assert item["image"].shape == (1, 16, 16) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.int64
    assert set(item["mask"].unique().tolist()) == {0, 1}
    assert abs(float(item["image"].mean())) < 1e-4  # z-scored per image
    # the bright pixels are the foreground ones (the mask matches its image)
    assert item["image"][0][item["mask"] == 1].mean() > item["image"][0][item["mask"] == 0].mean()


def test_dataset_works_with_dataloader_and_cache(tmp_path):
    make_paper(tmp_path)
    ds = SegmentationDataset(discover_layout(tmp_path), "val", cache=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 1, 16, 16) and batch["mask"].shape == (2, 16, 16)
    assert batch["name"] == ["a", "b"]
    assert ds[0] is ds[0]


def test_dataset_cellpose_and_voc(tmp_path):
    make_cellpose(tmp_path / "cp")
    assert set(SegmentationDataset(tmp_path / "cp", "all")[1]["mask"].unique().tolist()) == {0, 1}
    make_voc(tmp_path / "voc")
    item = SegmentationDataset(tmp_path / "voc", "train", channels=3)[0]
    assert item["image"].shape == (3, 16, 16)
    assert set(item["mask"].unique().tolist()) == {0, 1, 2, 255}


def test_dataset_size_mismatch_names_both_files(tmp_path):
    make_paper(tmp_path, splits=("train",))
    _, mask = tiny_pair(size=12)
    write_mask(tmp_path / "train" / "labels" / "a.png", mask)
    ds = SegmentationDataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"a\.png.*12 x 12.*a\.tif.*16 x 16"):
        ds[0]


def test_dataset_requires_masks(tmp_path):
    image, _ = tiny_pair()
    write_image(tmp_path / "test" / "images" / "x.tif", image)
    with pytest.raises(LayoutError, match="images without masks"):
        SegmentationDataset(tmp_path, "test")
    assert SegmentationDataset(tmp_path, "test", require_masks=False)[0]["mask"] is None


def _batch(n=3, size=12):
    labels = (torch.arange(n * size * size).reshape(n, size, size) % 5).long()
    images = labels.unsqueeze(1).float() * 10.0
    return images, labels


def test_random_crop_flip_keeps_images_and_masks_aligned(gen, device):
    images, labels = _batch()
    out_i, out_m = random_crop_flip(images.to(device), labels.to(device), 8, generator=gen)
    assert out_i.shape == (3, 1, 8, 8) and out_m.shape == (3, 8, 8) and out_m.dtype == torch.int64
    assert out_i.device == images.to(device).device
    assert torch.equal((out_i[:, 0] / 10).round().long(), out_m)


def test_random_crop_flip_is_seeded_and_leaves_global_rng_alone():
    images, labels = _batch()
    state = torch.random.get_rng_state()
    a = random_crop_flip(images, labels, (6, 9), generator=torch.Generator().manual_seed(1))
    b = random_crop_flip(images, labels, (6, 9), generator=torch.Generator().manual_seed(1))
    c = random_crop_flip(images, labels, (6, 9), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert torch.equal(state, torch.random.get_rng_state())


def test_random_crop_flip_keeps_ignore_and_module_matches_function():
    images, labels = _batch()
    labels[:, 0, :] = 255
    module = RandomCropFlip(12, flip=True)
    a = module(images, labels, torch.Generator().manual_seed(5))
    b = random_crop_flip(images, labels, 12, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[1], b[1])
    assert int((a[1] == 255).sum()) == 3 * 12  # a flipped or not, one full row stays ignored per image


def test_random_crop_flip_errors_and_empty_batch():
    images, labels = _batch()
    with pytest.raises(ParameterError, match="crop `size` must be between"):
        random_crop_flip(images, labels, 13)
    with pytest.raises(ParameterError, match="same N, H and W"):
        random_crop_flip(images, labels[:2], 8)
    empty_i, empty_m = random_crop_flip(images[:0], labels[:0], 8)
    assert empty_i.shape[0] == 0 and empty_m.shape[0] == 0


def test_real_dsb_sample_through_cellpose_layout(tmp_path, dsb_dir):
    import shutil

    shutil.copy(dsb_dir / "image.tif", tmp_path / "dsb.tif")
    shutil.copy(dsb_dir / "mask.tif", tmp_path / "dsb_masks.tif")
    item = SegmentationDataset(tmp_path, "all")[0]
    assert item["image"].shape == (1, 512, 512)
    fg = float(item["mask"].float().mean())
    assert 0.05 < fg < 0.6
    assert np.isclose(float(item["image"].std()), 1.0, atol=1e-3)
