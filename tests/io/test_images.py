"""Tests for mstool.io.images: reading, normalising, writing and listing image files."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from mstool.errors import (
    DataError,
    DTypeError,
    FileMissingError,
    FileReadError,
    LayoutError,
    MstoolWarning,
    ParameterError,
    ShapeError,
)
from mstool.io import (
    IMAGE_SUFFIXES,
    find_images,
    image_size,
    load_image,
    normalize_image,
    read_image,
    read_mask,
    write_image,
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _chop(path: Path, keep: float = 0.6) -> Path:
    """Copy of ``path`` with only the first part of its bytes, as a broken download leaves it."""
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".png", ".TIF", ".PNG"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_round_trip(tmp_path, suffix, dtype):
    image = _rng().integers(0, np.iinfo(dtype).max, (12, 9), endpoint=True).astype(dtype)
    write_image(tmp_path / f"a{suffix}", image)
    back = read_image(tmp_path / f"a{suffix}")
    assert back.dtype == dtype and back.shape == (12, 9)
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgb_round_trip_keeps_channel_order(tmp_path, suffix, dtype):
    image = _rng().integers(0, 200, (8, 10, 3)).astype(dtype)
    image[0, 0] = (200, 0, 0)  # pure red must stay in channel 0 (OpenCV stores BGR)
    write_image(tmp_path / f"rgb{suffix}", image)
    back = read_image(tmp_path / f"rgb{suffix}")
    assert back.shape == (8, 10, 3) and back.dtype == dtype
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_jpeg_round_trip_is_approximate(tmp_path, suffix):
    yy, xx = np.mgrid[0:32, 0:32]
    image = np.stack([xx * 8, yy * 8, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    write_image(tmp_path / f"a{suffix}", image)
    back = read_image(tmp_path / f"a{suffix}")
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image).mean() < 3
    # top-right corner is strong red, no green: fails if OpenCV's BGR order leaked through
    assert back[:4, -4:, 0].mean() > 200 and back[:4, -4:, 1].mean() < 60


def test_gray_jpeg(tmp_path):
    image = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    write_image(tmp_path / "g.jpg", image)
    back = read_image(tmp_path / "g.jpg")
    assert back.shape == (16, 32)
    assert np.abs(back.astype(int) - image).max() < 12


def test_float32_tiff_round_trip(tmp_path):
    image = _rng().normal(size=(7, 5)).astype(np.float32)
    write_image(tmp_path / "f.tif", image)
    back = read_image(tmp_path / "f.tif")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, image)


def test_write_float64_stores_float32(tmp_path):
    write_image(tmp_path / "f.tif", np.full((3, 3), 0.5))
    assert read_image(tmp_path / "f.tif").dtype == np.float32


@pytest.mark.parametrize(("tensor", "expected"), [
    (torch.arange(12, dtype=torch.uint8).reshape(3, 4), (3, 4)),
    (torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4), (3, 4)),
    (torch.arange(36, dtype=torch.uint8).reshape(3, 3, 4), (3, 4, 3)),
])
def test_write_tensor(tmp_path, tensor, expected):
    write_image(tmp_path / "t.png", tensor)
    back = read_image(tmp_path / "t.png")
    assert back.shape == expected
    chw = tensor.reshape(-1, *tensor.shape[-2:]).numpy()
    np.testing.assert_array_equal(back.reshape(*expected[:2], -1), chw.transpose(1, 2, 0))


def test_write_is_atomic_and_creates_folder(tmp_path):
    target = tmp_path / "sub" / "dir" / "a.png"
    write_image(target, np.zeros((4, 4), np.uint8))
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]
    with pytest.raises(ParameterError, match=r"b\.png: float32 images can only be written as \.tif/\.tiff; got \.png"):
        write_image(tmp_path / "sub" / "dir" / "b.png", np.zeros((4, 4), np.float32))
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]


# --------------------------------------------------------------------------- layouts read


def test_rgba_png_drops_alpha(tmp_path):
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 2] = 200  # red in OpenCV's BGRA order
    bgra[..., 3] = 17
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    back = read_image(tmp_path / "a.png")
    assert back.shape == (4, 5, 3)
    assert (back[..., 0] == 200).all() and (back[..., 1:] == 0).all()


def test_gray_alpha_png_reads_gray(tmp_path):
    la = np.stack([np.arange(20, dtype=np.uint8).reshape(4, 5), np.full((4, 5), 255, np.uint8)], axis=-1)
    Image.fromarray(la).save(tmp_path / "la.png")
    with Image.open(tmp_path / "la.png") as im:
        assert im.mode == "LA"
    back = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(back, la[..., 0])


def test_palette_png_image_gives_colours(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8))
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    im.save(tmp_path / "p.png")
    back = read_image(tmp_path / "p.png")
    assert back.shape == (2, 2, 3)
    assert back[0, 1].tolist() == [255, 0, 0] and back[1, 0].tolist() == [0, 0, 255]


def test_planar_tiff_becomes_channels_last(tmp_path):
    planar = _rng().integers(0, 255, (3, 6, 7)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    back = read_image(tmp_path / "p.tif")
    assert back.shape == (6, 7, 3)
    np.testing.assert_array_equal(back, planar.transpose(1, 2, 0))


def test_rgba_tiff_drops_alpha(tmp_path):
    rgba = _rng().integers(0, 255, (6, 7, 4)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), rgba[..., :3])


def test_two_channel_tiff_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((6, 7, 2), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(DataError, match=r"two\.tif.*shape \(6, 7, 2\)"):
        read_image(tmp_path / "two.tif")


def test_lzw_tiff_reads_without_imagecodecs(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(image).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif"), image)


def test_other_dtypes_become_float32(tmp_path):
    image = np.array([[-5, 0], [7, 300]], np.int16)
    tifffile.imwrite(tmp_path / "s.tif", image)
    back = read_image(tmp_path / "s.tif")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, image)


# --------------------------------------------------------------------------- multi-page TIFF


def test_multipage_tiff_needs_a_page(tmp_path):
    stack = np.stack([np.full((6, 7), i, np.uint8) for i in range(5)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(DataError, match=r"stack\.tif: a TIFF stack of 5 pages.*read one with --page K, Python with "
                                        r"page=K, K in 0\.\.4\)"):
        read_image(tmp_path / "stack.tif")
    assert (read_image(tmp_path / "stack.tif", page=3) == 3).all()
    assert (read_image(tmp_path / "stack.tif", page=0) == 0).all()


@pytest.mark.parametrize("page", [5, -1])
def test_page_out_of_range(tmp_path, page):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 6, 7), np.uint8), photometric="minisblack")
    with pytest.raises(ParameterError, match=r"`page` \(--page\) must be in \[0, 4\] for .*stack\.tif"):
        read_image(tmp_path / "stack.tif", page=page)


def test_page_on_single_page_files(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
    assert read_image(tmp_path / "a.png", page=0).shape == (4, 4)
    assert read_image(tmp_path / "a.tif", page=0).shape == (4, 4)
    with pytest.raises(ParameterError, match=r"a\.png"):
        read_image(tmp_path / "a.png", page=1)
    with pytest.raises(ParameterError, match=r"`page` must be an integer"):
        read_image(tmp_path / "a.tif", page="0")


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(FileMissingError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")


def test_unknown_suffix(tmp_path):
    (tmp_path / "a.bmp").write_bytes(b"BM")
    with pytest.raises(FileReadError, match=r"a\.bmp: unsupported file type '\.bmp'; supported: \.tif, "):
        read_image(tmp_path / "a.bmp")


def test_folder_is_not_an_image(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(FileReadError, match=r"x\.png: is a folder"):
        read_image(tmp_path / "x.png")


@pytest.mark.parametrize(("suffix", "dtype"), [(".png", np.uint8), (".png", np.uint16), (".tif", np.uint16),
                                               (".jpg", np.uint8)])
def test_truncated_file(tmp_path, suffix, dtype):
    image = _rng().integers(0, 255, (48, 48, 3)).astype(dtype)
    write_image(tmp_path / f"a{suffix}", image)
    cut = _chop(tmp_path / f"a{suffix}")
    with pytest.raises(FileReadError, match=rf"cut_a\{suffix}"):
        read_image(cut)


def test_truncated_uncompressed_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", _rng().integers(0, 9, (64, 64)).astype(np.uint16))
    with pytest.raises(FileReadError, match=r"cut_raw\.tif: cannot read image"):
        read_image(_chop(tmp_path / "raw.tif"))


def test_a_tiff_header_pointing_nowhere_is_one_clear_error(tmp_path, capsys):
    # a TIFF signature and garbage: tifffile finds no page and logs why; the error says it, and nothing else prints
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"garbage" * 10)
    for read in (read_image, read_mask, image_size):
        with pytest.raises(FileReadError, match=r"bad\.tif: cannot read image: a TIFF file without a readable page "
                                                r"\(invalid offset to first page \d+\)"):
            read(tmp_path / "bad.tif")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["text.png", "text.tif", "text.jpg", "empty.png", "empty.tiff"])
def test_not_an_image(tmp_path, name):
    (tmp_path / name).write_bytes(b"" if name.startswith("empty") else b"hello, this is not an image\n" * 4)
    with pytest.raises(FileReadError, match=name.replace(".", r"\.")):
        read_image(tmp_path / name)


# --------------------------------------------------------------------------- normalize_image


def test_normalize_uint8_and_uint16_agree():
    content = _rng().integers(0, 256, (16, 16))
    a = normalize_image(content.astype(np.uint8))
    b = normalize_image((content * 257).astype(np.uint16))
    assert a.dtype == torch.float32 and a.shape == (1, 16, 16)
    torch.testing.assert_close(a, b)


def test_normalize_is_z_score_per_channel():
    image = _rng().integers(0, 60000, (9, 11, 3)).astype(np.uint16)
    image[..., 2] //= 100  # channels on very different scales
    x = normalize_image(image)
    assert x.shape == (3, 9, 11)
    torch.testing.assert_close(x.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(1, 2), correction=0), torch.ones(3), atol=1e-5, rtol=0)


def test_normalize_hand_computed():
    x = normalize_image(np.array([[1.0, 3.0]], np.float32))  # mean 2, population std 1
    torch.testing.assert_close(x, torch.tensor([[[-1.0, 1.0]]]))


def test_normalize_float_scale_invariant():
    image = _rng().normal(size=(8, 8)).astype(np.float32)
    torch.testing.assert_close(normalize_image(image), normalize_image(10 * image + 3), atol=1e-5, rtol=0)


def test_normalize_bool():
    x = normalize_image(np.array([[True, False], [False, True]]))
    torch.testing.assert_close(x, torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]]))


def test_constant_image_warns_and_gives_zeros():
    with pytest.warns(MstoolWarning, match=r"scan7 is constant \(every pixel 42\)"):
        x = normalize_image(np.full((4, 5), 42, np.uint8), name="scan7")
    assert x.shape == (1, 4, 5) and (x == 0).all()


def test_constant_channel_warns_and_is_zero():
    image = _rng().integers(0, 255, (6, 6, 3)).astype(np.uint8)
    image[..., 2] = 0
    with pytest.warns(MstoolWarning, match=r"channel 2 is constant"):
        x = normalize_image(image)
    assert (x[2] == 0).all() and x[0].abs().sum() > 0


def test_channels_conversion():
    gray = _rng().integers(0, 255, (6, 6)).astype(np.uint8)
    rgb_gray = np.repeat(gray[..., None], 3, axis=-1)
    three = normalize_image(gray, channels=3)
    assert three.shape == (3, 6, 6)
    torch.testing.assert_close(three, normalize_image(rgb_gray))
    # luminance of an R = G = B image is that gray
    torch.testing.assert_close(normalize_image(rgb_gray, channels=1), normalize_image(gray),
                               atol=1e-5, rtol=0)
    rgb = _rng().integers(0, 255, (6, 6, 3)).astype(np.uint8)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    torch.testing.assert_close(normalize_image(rgb, channels=1), normalize_image(luma.astype(np.float32)),
                               atol=1e-5, rtol=0)
    assert normalize_image(gray, channels=1).shape == (1, 6, 6)
    assert normalize_image(rgb, channels=3).shape == (3, 6, 6)


@pytest.mark.parametrize("channels", [0, 2, 4, True, "rgb"])
def test_normalize_bad_channels(channels):
    with pytest.raises(ParameterError, match="`channels` must be 1, 3 or None"):
        normalize_image(np.zeros((4, 4), np.uint8), channels=channels)


@pytest.mark.parametrize("image", [np.zeros((4, 4, 2)), np.zeros((2, 4, 4, 3)), np.zeros(4), np.zeros((0, 4))])
def test_normalize_bad_shape(image):
    with pytest.raises(ShapeError, match="`image` must"):
        normalize_image(image)


def test_normalize_refuses_a_tensor():
    with pytest.raises(DTypeError, match=r"`image` must be a numpy array \(H, W\) or \(H, W, 3\); got Tensor"):
        normalize_image(torch.zeros(4, 4))


def test_normalize_non_finite():
    with pytest.raises(DataError, match=r"scan\.tif: image contains NaN"):
        normalize_image(np.array([[0.0, np.nan]], np.float32), name="scan.tif")


def test_load_image_is_read_then_normalize(tmp_path):
    image = _rng().integers(0, 4000, (10, 12)).astype(np.uint16)
    write_image(tmp_path / "a.tif", image)
    torch.testing.assert_close(load_image(tmp_path / "a.tif"), normalize_image(image))
    assert load_image(tmp_path / "a.tif", channels=3).shape == (3, 10, 12)


def test_load_image_warning_names_file(tmp_path):
    write_image(tmp_path / "flat.png", np.full((4, 4), 9, np.uint8))
    with pytest.warns(MstoolWarning, match=r"flat\.png is constant") as record:
        load_image(tmp_path / "flat.png")
    assert record[0].filename == __file__  # stacklevel points at the caller


# --------------------------------------------------------------------------- write_image errors


@pytest.mark.parametrize(("name", "image", "match"), [
    ("a.png", np.zeros((4, 4), np.float32), r"a\.png: float32 images can only be written as \.tif"),
    ("a.jpg", np.zeros((4, 4), np.uint16), r"a\.jpg: JPEG holds 8-bit images only"),
    ("a.tif", np.zeros((4, 4), np.int32), r"a\.tif: cannot write int32 images"),
    ("a.png", np.zeros((4, 4), bool), r"a\.png: cannot write bool images"),
    ("a.bmp", np.zeros((4, 4), np.uint8), r"a\.bmp: cannot write '\.bmp' images; supported"),
])
def test_write_image_bad_combination(tmp_path, name, image, match):
    with pytest.raises(ParameterError, match=match):
        write_image(tmp_path / name, image)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("image", [np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3), np.uint8),
                                   torch.zeros(2, 4, 4, dtype=torch.uint8)])
def test_write_image_bad_shape(tmp_path, image):
    with pytest.raises(ShapeError, match="`image`"):
        write_image(tmp_path / "a.png", image)


def test_write_image_refuses_a_list(tmp_path):
    with pytest.raises(DTypeError, match="`image` must be a numpy array or torch tensor; got list"):
        write_image(tmp_path / "a.png", [[0, 1]])


# --------------------------------------------------------------------------- find_images


def test_image_suffixes():
    assert IMAGE_SUFFIXES == (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def test_find_images_sorted_and_filtered(tmp_path):
    for name in ["c.jpeg", "a.TIF", "b.png", "b_mask.png", ".hidden.png", "notes.txt", "d.JPG", "e.tiff"]:
        (tmp_path / name).touch()
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "sub.png" / "z.png").touch()
    names = [p.name for p in find_images(tmp_path)]
    assert names == ["a.TIF", "b.png", "b_mask.png", "c.jpeg", "d.JPG", "e.tiff"]
    names = [p.name for p in find_images(str(tmp_path), exclude_suffix="_mask")]
    assert names == ["a.TIF", "b.png", "c.jpeg", "d.JPG", "e.tiff"]
    assert all(isinstance(p, Path) and p.parent == tmp_path for p in find_images(tmp_path))


def test_find_images_empty_folder(tmp_path):
    (tmp_path / "readme.txt").touch()
    with pytest.raises(LayoutError, match=r"no images \(\.tif, \.tiff, \.png, \.jpg, \.jpeg\) found"):
        find_images(tmp_path)
    (tmp_path / "a_mask.png").touch()
    with pytest.raises(LayoutError, match=r"found \(leaving out \*_mask files\)"):
        find_images(tmp_path, exclude_suffix="_mask")


def test_find_images_missing_folder(tmp_path):
    with pytest.raises(FileMissingError, match=r"gone: folder not found"):
        find_images(tmp_path / "gone")
    (tmp_path / "f.png").touch()
    with pytest.raises(LayoutError, match=r"f\.png: expected a folder"):
        find_images(tmp_path / "f.png")


# --------------------------------------------------------------------------- real data


def test_real_dsb_image(dsb_dir):
    image = read_image(dsb_dir / "image.tif")
    assert image.shape == (512, 512) and image.dtype == np.uint16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = load_image(dsb_dir / "image.tif")
    assert x.shape == (1, 512, 512) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4
    assert abs(x.std(correction=0).item() - 1) < 1e-4
