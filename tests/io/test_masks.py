"""Tests for mstool.io.masks: mask modes, palettes, writing and the image/mask size check."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import mstool
from mstool.errors import (
    DataError,
    DTypeError,
    FileMissingError,
    FileReadError,
    MstoolWarning,
    ParameterError,
    ShapeError,
)
from mstool.io import MASK_MODES, check_pair, read_image, read_mask, voc_palette, write_mask
from mstool.io import masks as masks_module

BINARY = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0]])
LABELS = np.array([[0, 1, 2, 255], [3, 3, 0, 255], [20, 0, 1, 2]])


def _save_gray_png(path: Path, values: np.ndarray) -> Path:
    cv2.imwrite(str(path), values)
    return path


def _save_palette_png(path: Path, indices: np.ndarray, palette: np.ndarray | None = None) -> Path:
    im = Image.fromarray(indices.astype(np.uint8))
    im.putpalette((voc_palette() if palette is None else palette).tobytes())
    im.save(path)
    return path


# --------------------------------------------------------------------------- voc_palette


def test_voc_palette_known_colours():
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[7].tolist() == [128, 128, 128]
    assert pal[8].tolist() == [64, 0, 0]
    assert pal[15].tolist() == [192, 128, 128]  # person
    assert pal[20].tolist() == [0, 64, 128]  # tv/monitor
    assert pal[255].tolist() == [224, 224, 192]  # ignore / border
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_voc_palette_is_a_fresh_copy():
    pal = voc_palette()
    pal[:] = 7
    assert voc_palette()[1].tolist() == [128, 0, 0]


def test_ignore_value_matches_package():
    assert masks_module._IGNORE == mstool.IGNORE_INDEX


# --------------------------------------------------------------------------- binary masks


def test_mask_modes():
    assert MASK_MODES == ("auto", "binary", "instance", "multiclass", "cityscapes")


@pytest.mark.parametrize("mode", ["auto", "binary", "instance"])
@pytest.mark.parametrize("scale", [1, 255])
def test_binary_png(tmp_path, mode, scale):
    path = _save_gray_png(tmp_path / "m.png", (BINARY * scale).astype(np.uint8))
    out = read_mask(path, mode=mode)
    assert out.dtype == np.int64 and out.shape == BINARY.shape
    np.testing.assert_array_equal(out, BINARY)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, bool])
def test_binary_tiff_dtypes(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "m.tif", BINARY.astype(dtype))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), BINARY)


def test_0_255_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", (BINARY * 255).astype(np.uint16))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), BINARY)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif", mode="multiclass"), BINARY * 255)


def test_binary_with_ignore_keeps_255(tmp_path):
    sparse = np.where(BINARY == 1, 1, 255)
    sparse[0, 0] = 0
    path = _save_gray_png(tmp_path / "s.png", sparse.astype(np.uint8))
    for mode in ("auto", "binary", "multiclass"):
        np.testing.assert_array_equal(read_mask(path, mode=mode), sparse)
    np.testing.assert_array_equal(read_mask(path, mode="instance"), (sparse > 0).astype(int))


def test_empty_and_full_masks(tmp_path):
    zeros = _save_gray_png(tmp_path / "z.png", np.zeros((4, 4), np.uint8))
    assert (read_mask(zeros) == 0).all()
    full = _save_gray_png(tmp_path / "f.png", np.full((4, 4), 255, np.uint8))
    assert (read_mask(full) == 1).all()  # a {0, 255} mask that happens to be all foreground


# --------------------------------------------------------------------------- instance masks


def test_instance_labels(tmp_path):
    inst = np.array([[0, 1, 1, 0], [0, 2, 255, 0], [300, 300, 0, 4]], np.uint16)
    tifffile.imwrite(tmp_path / "i.tif", inst)
    fg = (inst > 0).astype(np.int64)
    np.testing.assert_array_equal(read_mask(tmp_path / "i.tif"), fg)  # auto: many values -> instances
    np.testing.assert_array_equal(read_mask(tmp_path / "i.tif", mode="instance"), fg)
    np.testing.assert_array_equal(read_mask(tmp_path / "i.tif", mode="multiclass"), inst)
    with pytest.raises(DataError, match=r"i.tif: mask values 0, 1, 2, 4, 255, 300 are not binary.*"
                                        r"--mask-mode instance.*--mask-mode multiclass"):
        read_mask(tmp_path / "i.tif", mode="binary")


def test_binary_mode_accepts_one_foreground_value(tmp_path):
    path = _save_gray_png(tmp_path / "b.png", np.array([[0, 128], [128, 0]], np.uint8))
    for mode in ("auto", "binary"):
        np.testing.assert_array_equal(read_mask(path, mode=mode), [[0, 1], [1, 0]])


def test_class_indices_read_as_binary_are_refused_or_warned(tmp_path):
    """0..7 class indices: binary mode refuses them; auto reads them as objects but says so, naming the file."""
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 8, (32, 32)).astype(np.uint8)
    path = _save_gray_png(tmp_path / "classes.png", classes)
    with pytest.raises(DataError, match=r"classes.png: mask values 0, 1, 2, 3, 4, 5, \.\.\. \(8 values\) are not "
                                        r"binary"):
        read_mask(path, mode="binary")
    with pytest.warns(MstoolWarning, match=r"classes.png: mask values .* read as object ids .*(8\d|9\d)% of the "
                                           r"mask.*--mask-mode multiclass"):
        fg = read_mask(path)
    np.testing.assert_array_equal(fg, classes > 0)
    np.testing.assert_array_equal(read_mask(path, mode="multiclass"), classes)


def test_a_wrong_foreground_value_beside_255_is_named_in_the_warning(tmp_path):
    """0/2/255 drawn as partial labels: read as object ids, 255 is foreground too, and the warning says so."""
    drawn = np.full((16, 16), 255, np.uint8)
    drawn[:4], drawn[8:12], drawn[2, 10] = 2, 0, 0
    path = _save_gray_png(tmp_path / "drawn.png", drawn)
    with pytest.warns(MstoolWarning, match="255 is an object here too: only a mask of 0, 1 and 255 keeps 255 as not "
                                           "labelled"):
        read_mask(path)


def test_instance_ids_read_without_warning(tmp_path, recwarn):
    """Object ids that each cover one region (the DSB masks' case) are read as foreground silently."""
    inst = np.zeros((16, 16), np.uint16)
    inst[1:4, 1:4], inst[6:9, 6:9], inst[10:15, 2:5] = 1, 2, 3
    tifffile.imwrite(tmp_path / "inst.tif", inst)
    np.testing.assert_array_equal(read_mask(tmp_path / "inst.tif"), inst > 0)
    assert not [w for w in recwarn if issubclass(w.category, MstoolWarning)]


def test_instance_mode_counts_255_as_foreground(tmp_path):
    path = _save_gray_png(tmp_path / "s.png", np.array([[0, 1], [255, 0]], np.uint8))
    np.testing.assert_array_equal(read_mask(path, mode="instance"), [[0, 1], [1, 0]])


# --------------------------------------------------------------------------- multi-class masks


def test_palette_png_with_ignore(tmp_path):
    path = _save_palette_png(tmp_path / "voc.png", LABELS)
    auto = read_mask(path)
    assert auto.dtype == np.int64
    np.testing.assert_array_equal(auto, LABELS)
    np.testing.assert_array_equal(read_mask(path, mode="multiclass"), LABELS)
    with pytest.raises(DataError, match="not binary"):  # classes are not silently merged into one foreground
        read_mask(path, mode="binary")
    np.testing.assert_array_equal(read_mask(path, mode="instance"), (LABELS > 0).astype(int))


def test_palette_png_with_any_palette_reads_indices(tmp_path):
    gray_palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)[::-1].copy()
    path = _save_palette_png(tmp_path / "p.png", LABELS, palette=gray_palette)
    np.testing.assert_array_equal(read_mask(path), LABELS)


def test_palette_png_binary_indices_in_auto_mode(tmp_path):
    path = _save_palette_png(tmp_path / "p.png", BINARY)
    np.testing.assert_array_equal(read_mask(path), BINARY)


def test_voc_coloured_rgb_png(tmp_path):
    rgb = voc_palette()[LABELS]
    cv2.imwrite(str(tmp_path / "voc_rgb.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_mask(tmp_path / "voc_rgb.png"), LABELS)
    np.testing.assert_array_equal(read_mask(tmp_path / "voc_rgb.png", mode="multiclass"), LABELS)


def test_equal_channel_rgb_mask_reads_as_gray(tmp_path):
    rgb = np.repeat((BINARY * 255).astype(np.uint8)[..., None], 3, axis=-1)
    cv2.imwrite(str(tmp_path / "white.png"), rgb)
    np.testing.assert_array_equal(read_mask(tmp_path / "white.png"), BINARY)


def test_rgb_mask_outside_palette(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (10, 200, 30)
    cv2.imwrite(str(tmp_path / "colour.png"), rgb)
    with pytest.raises(DataError, match=r"colour\.png: RGB mask with colours outside the PASCAL VOC palette"):
        read_mask(tmp_path / "colour.png")


def test_gray_index_mask_needs_multiclass(tmp_path):
    path = _save_gray_png(tmp_path / "g.png", np.array([[0, 1], [2, 3]], np.uint8))
    np.testing.assert_array_equal(read_mask(path), [[0, 1], [1, 1]])
    np.testing.assert_array_equal(read_mask(path, mode="multiclass"), [[0, 1], [2, 3]])


# --------------------------------------------------------------------------- bad masks


def test_float_mask_with_integer_values_is_fine(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", BINARY.astype(np.float32))
    np.testing.assert_array_equal(read_mask(tmp_path / "f.tif"), BINARY)


@pytest.mark.parametrize("bad", [0.5, np.nan, np.inf])
def test_float_mask_with_fractions(tmp_path, bad):
    values = BINARY.astype(np.float32)
    values[1, 1] = bad
    tifffile.imwrite(tmp_path / "prob.tif", values)
    with pytest.raises(DataError, match=r"prob\.tif: mask has non-integer values"):
        read_mask(tmp_path / "prob.tif")


def test_negative_mask(tmp_path):
    tifffile.imwrite(tmp_path / "neg.tif", np.array([[0, -1], [2, 1]], np.int16))
    with pytest.raises(DataError, match=r"neg\.tif: mask has negative values \(minimum -1\)"):
        read_mask(tmp_path / "neg.tif", mode="multiclass")


def test_multipage_mask(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([BINARY, 1 - BINARY]).astype(np.uint8),
                     photometric="minisblack")
    with pytest.raises(DataError, match=r"stack\.tif: a TIFF stack of 2 pages.*--page K"):
        read_mask(tmp_path / "stack.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "stack.tif", page=1), 1 - BINARY)


def test_bad_mode(tmp_path):
    path = _save_gray_png(tmp_path / "m.png", BINARY.astype(np.uint8))
    with pytest.raises(ParameterError, match="`mode` must be one of auto, binary, instance, multiclass"):
        read_mask(path, mode="semantic")


def test_missing_and_broken_mask(tmp_path):
    with pytest.raises(FileMissingError, match=r"none\.png"):
        read_mask(tmp_path / "none.png")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(FileReadError, match=r"junk\.tif"):
        read_mask(tmp_path / "junk.tif")
    path = _save_palette_png(tmp_path / "p.png", np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[:-60])
    with pytest.raises(FileReadError, match=r"cut\.png"):
        read_mask(cut)


# --------------------------------------------------------------------------- write_mask


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_binary_round_trip(tmp_path, suffix, as_tensor):
    mask = torch.from_numpy(BINARY) if as_tensor else BINARY
    write_mask(tmp_path / f"m{suffix}", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / f"m{suffix}"), BINARY)


def test_binary_png_is_viewable_gray(tmp_path):
    write_mask(tmp_path / "m.png", BINARY.astype(bool))
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), BINARY * 255)


def test_index_mask_round_trip_png(tmp_path):
    write_mask(tmp_path / "voc.png", LABELS)
    with Image.open(tmp_path / "voc.png") as im:
        assert im.mode == "P"
        assert np.array_equal(np.array(im.getpalette(), np.uint8).reshape(-1, 3)[:256], voc_palette())
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png"), LABELS)
    # the same file viewed as colours is the VOC rendering
    np.testing.assert_array_equal(read_image(tmp_path / "voc.png"), voc_palette()[LABELS])


def test_sparse_binary_round_trip_png(tmp_path):
    sparse = np.array([[0, 1, 255], [255, 255, 1]])
    write_mask(tmp_path / "s.png", sparse)
    np.testing.assert_array_equal(read_mask(tmp_path / "s.png"), sparse)


def test_tiff_stores_raw_values(tmp_path):
    write_mask(tmp_path / "l8.tif", LABELS)
    raw8 = tifffile.imread(tmp_path / "l8.tif")
    assert raw8.dtype == np.uint8
    np.testing.assert_array_equal(raw8, LABELS)
    np.testing.assert_array_equal(read_mask(tmp_path / "l8.tif", mode="multiclass"), LABELS)
    for factor, dtype in [(200, np.uint16), (300, np.uint32)]:
        big = LABELS * factor
        write_mask(tmp_path / f"l{factor}.tif", big)
        assert tifffile.imread(tmp_path / f"l{factor}.tif").dtype == dtype
        np.testing.assert_array_equal(read_mask(tmp_path / f"l{factor}.tif", mode="multiclass"), big)
    write_mask(tmp_path / "b.tif", BINARY)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), BINARY)


@pytest.mark.parametrize(("name", "mask", "error", "match"), [
    ("m.png", np.array([[0, 256]]), ParameterError, r"m\.png: PNG masks hold values up to 255; got .* 256"),
    ("m.png", np.array([[0, -1]]), ParameterError, r"`mask` values must be >= 0; got a minimum of -1"),
    ("m.png", np.array([[0.0, 1.0]]), ParameterError, r"`mask` must hold integer labels; got float64"),
    ("m.jpg", np.array([[0, 1]]), ParameterError, r"m\.jpg: masks are written as \.png, \.tif or \.tiff"),
    ("m.png", np.zeros((1, 2, 2), int), ShapeError, r"`mask` must be \(H, W\); got \(1, 2, 2\)"),
    ("m.png", [[0, 1]], DTypeError, r"`mask` must be a numpy array or torch tensor \(H, W\); got list"),
])
def test_write_mask_errors(tmp_path, name, mask, error, match):
    with pytest.raises(error, match=match):
        write_mask(tmp_path / name, mask)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- check_pair


def test_check_pair():
    check_pair(np.zeros((256, 256)), np.zeros((256, 256)), "img.png", "img_mask.png")
    check_pair(np.zeros((256, 256, 3)), np.zeros((256, 256)), "img.png", "img_mask.png")
    check_pair(torch.zeros(3, 256, 256), torch.zeros(256, 256), "img.png", "img_mask.png")
    expected = r"^masks/a\.png: mask is 300 x 200 but its image imgs/a\.png is 256 x 256"
    with pytest.raises(DataError, match=expected):
        check_pair(np.zeros((256, 256)), np.zeros((300, 200)), "imgs/a.png", "masks/a.png")
    with pytest.raises(DataError, match="mask is 4 x 5"):
        check_pair(torch.zeros(1, 5, 4), np.zeros((4, 5)), "a.tif", "b.tif")


# --------------------------------------------------------------------------- real data


def test_real_dsb_mask(dsb_dir):
    raw = tifffile.imread(dsb_dir / "mask.tif")
    mask = read_mask(dsb_dir / "mask.tif")
    assert mask.shape == (512, 512) and mask.dtype == np.int64
    assert set(np.unique(mask).tolist()) == {0, 1}
    np.testing.assert_array_equal(mask, raw > 0)
    assert 0.05 < mask.mean() < 0.6
    np.testing.assert_array_equal(read_mask(dsb_dir / "mask.tif", mode="multiclass"), raw)
    check_pair(read_image(dsb_dir / "image.tif"), mask, dsb_dir / "image.tif", dsb_dir / "mask.tif")
