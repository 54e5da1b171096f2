"""Tests for mstool.io.maps: float32 TIFF and .npz score maps."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from mstool.errors import DataError, DTypeError, FileMissingError, FileReadError, ParameterError, ShapeError
from mstool.io import MAP_SUFFIXES, read_score_map, write_score_map


def _probs(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random(shape).astype(np.float32)


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".npz", ".TIF", ".NPZ"])
@pytest.mark.parametrize("shape", [(6, 5), (1, 6, 5), (3, 6, 5), (2, 6, 3), (4, 6, 4)])
def test_round_trip_exact(tmp_path, suffix, shape):
    probs = _probs(*shape)
    write_score_map(tmp_path / f"p{suffix}", probs)
    back = read_score_map(tmp_path / f"p{suffix}")
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_array_equal(back, probs)


@pytest.mark.parametrize("suffix", [".tif", ".npz"])
def test_tensor_and_float64_input(tmp_path, suffix):
    probs = torch.softmax(torch.randn(3, 4, 4, dtype=torch.float64), dim=0)
    write_score_map(tmp_path / f"p{suffix}", probs)
    back = read_score_map(tmp_path / f"p{suffix}")
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, probs.numpy(), rtol=1e-6)


def test_tiff_map_is_a_float32_tiff(tmp_path):
    write_score_map(tmp_path / "p.tif", _probs(2, 4, 4))
    raw = tifffile.imread(tmp_path / "p.tif")
    assert raw.dtype == np.float32 and raw.shape == (2, 4, 4)


def test_npz_key(tmp_path):
    write_score_map(tmp_path / "p.npz", _probs(4, 4))
    with np.load(tmp_path / "p.npz") as data:
        assert data.files == ["probs"]


def test_write_is_atomic(tmp_path):
    write_score_map(tmp_path / "out" / "p.npz", _probs(4, 4))
    write_score_map(tmp_path / "out" / "p.npz", _probs(2, 4, 4))  # overwrite in place
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p.npz"]
    assert read_score_map(tmp_path / "out" / "p.npz").shape == (2, 4, 4)


def test_map_suffixes():
    assert MAP_SUFFIXES == (".tif", ".tiff", ".npz")


# --------------------------------------------------------------------------- write errors


@pytest.mark.parametrize(("name", "probs", "error", "match"), [
    ("p.tif", np.zeros((4, 4), np.uint8), ParameterError, r"`probs` must be a float array; got uint8"),
    ("p.npz", torch.zeros(4, 4, dtype=torch.long), ParameterError, r"must be a float array; got int64"),
    ("p.tif", np.zeros((1, 1, 4, 4), np.float32), ShapeError, r"`probs` must be \(H, W\) or \(C, H, W\)"),
    ("p.tif", np.zeros(4, np.float32), ShapeError, r"got \(4,\)"),
    ("p.png", np.zeros((4, 4), np.float32), ParameterError, r"p\.png: score maps are \.tif, \.tiff or \.npz"),
    ("p.npz", [[0.5]], DTypeError, r"`probs` must be a numpy array or torch tensor; got list"),
])
def test_write_errors(tmp_path, name, probs, error, match):
    with pytest.raises(error, match=match):
        write_score_map(tmp_path / name, probs)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- read errors


def test_read_missing(tmp_path):
    with pytest.raises(FileMissingError, match=r"gone\.npz: file not found"):
        read_score_map(tmp_path / "gone.npz")


def test_read_unknown_suffix(tmp_path):
    (tmp_path / "p.png").write_bytes(b"x")
    with pytest.raises(FileReadError, match=r"p\.png: score maps are \.tif, \.tiff or \.npz"):
        read_score_map(tmp_path / "p.png")


def test_npz_without_probs(tmp_path):
    np.savez(tmp_path / "other.npz", scores=_probs(4, 4), extra=np.zeros(2))
    with pytest.raises(DataError, match=r"other\.npz: no 'probs' array in the \.npz file \(keys: scores, "):
        read_score_map(tmp_path / "other.npz")


def test_npz_not_float(tmp_path):
    np.savez(tmp_path / "ints.npz", probs=np.zeros((4, 4), np.int64))
    with pytest.raises(DataError, match=r"ints\.npz: score map must hold floats .*; got int64"):
        read_score_map(tmp_path / "ints.npz")


def test_npz_bad_shape(tmp_path):
    np.savez(tmp_path / "4d.npz", probs=np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(DataError, match=r"4d\.npz: score map must be \(H, W\) or \(C, H, W\); got shape"):
        read_score_map(tmp_path / "4d.npz")


def test_npy_named_npz(tmp_path):
    with open(tmp_path / "single.npz", "wb") as f:
        np.save(f, _probs(4, 4))
    with pytest.raises(DataError, match=r"single\.npz: not an \.npz archive"):
        read_score_map(tmp_path / "single.npz")


def test_tiff_not_float(tmp_path):
    tifffile.imwrite(tmp_path / "u8.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"u8\.tif: score map must hold floats"):
        read_score_map(tmp_path / "u8.tif")


def test_npz_with_pickled_object_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", probs=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FileReadError, match=r"obj\.npz: cannot read score map"):
        read_score_map(tmp_path / "obj.npz")


@pytest.mark.parametrize("suffix", [".tif", ".npz"])
def test_truncated_map(tmp_path, suffix):
    write_score_map(tmp_path / f"p{suffix}", _probs(2, 32, 32))
    data = (tmp_path / f"p{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileReadError, match=rf"cut\{suffix}: cannot read score map"):
        read_score_map(tmp_path / f"cut{suffix}")


@pytest.mark.parametrize("suffix", [".tif", ".npz"])
def test_not_a_map_file(tmp_path, suffix):
    (tmp_path / f"junk{suffix}").write_text("hello")
    with pytest.raises(FileReadError, match=rf"junk\{suffix}"):
        read_score_map(tmp_path / f"junk{suffix}")
