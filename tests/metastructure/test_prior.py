"""The density.npz prior: the Prior object, saving, loading, validation and estimation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mstool.errors import DataError, FileMissingError, FileReadError, ParameterError
from mstool.metastructure import FORMAT_VERSION, Prior, density, estimate_prior, load_prior, save_prior

BINARY = ("background", "foreground")


def make_prior(n: int = 3, size: int = 8, seed: int = 0) -> Prior:
    g = torch.Generator().manual_seed(seed)
    return Prior(torch.rand(n, 2, size, size, generator=g), tuple(f"img{i}" for i in range(n)), BINARY,
                 kernel="gaussian", bandwidth=2.5, source="labels:/data/rough (sample:0.1)")


def good_arrays(n: int = 2) -> dict[str, np.ndarray]:
    return {
        "density": np.full((n, 2, 4, 4), 0.5, dtype=np.float32),
        "names": np.array([f"im{i}" for i in range(n)]),
        "classes": np.array(BINARY),
        "kernel": np.array("box"),
        "bandwidth": np.array(3.0),
        "source": np.array("test"),
        "format_version": np.array(FORMAT_VERSION),
    }


def write(path, **changes) -> str:
    arrays = good_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return str(path)


# ---------------------------------------------------------------- round trip

def test_round_trip_is_bitwise(tmp_path):
    prior = make_prior()
    path = tmp_path / "density.npz"
    assert save_prior(path, prior) is None
    back = load_prior(path)
    assert torch.equal(back.density, prior.density) and back.density.dtype == torch.float32
    assert back.names == prior.names and back.classes == prior.classes
    assert (back.kernel, back.bandwidth, back.source) == ("gaussian", 2.5, prior.source)
    assert back.path == str(path)
    # Only the final file is left behind (the temporary one was renamed).
    assert [p.name for p in tmp_path.iterdir()] == ["density.npz"]


def test_file_layout_matches_the_documented_keys(tmp_path):
    save_prior(tmp_path / "p.npz", make_prior(2))
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert set(z.files) == {"density", "names", "classes", "kernel", "bandwidth", "source",
                                "format_version"}
        assert z["density"].dtype == np.float32 and z["density"].shape == (2, 2, 8, 8)
        assert z["names"].dtype.kind == "U" and z["names"].shape == (2,)
        assert z["kernel"].shape == () and z["kernel"].dtype.kind == "U"
        assert z["bandwidth"].shape == () and z["bandwidth"].dtype.kind == "f"
        assert int(z["format_version"]) == FORMAT_VERSION


def test_save_keeps_the_given_name_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "prior.bin"
    save_prior(path, make_prior(1, seed=1))
    save_prior(path, make_prior(2, seed=2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["prior.bin"]
    assert len(load_prior(path)) == 2


def test_round_trip_of_an_empty_prior(tmp_path):
    empty = Prior(torch.zeros(0, 2, 8, 8), (), BINARY)
    save_prior(tmp_path / "e.npz", empty)
    back = load_prior(tmp_path / "e.npz")
    assert back.density.shape == (0, 2, 8, 8) and back.names == ()
    assert back.match([]).density.shape == (0, 2, 8, 8)


def test_save_from_device(tmp_path, device):
    prior = make_prior().to(device)
    assert prior.density.device.type == device.type
    save_prior(tmp_path / "d.npz", prior)
    assert torch.equal(load_prior(tmp_path / "d.npz").density, prior.density.cpu())


def test_save_rejects_non_prior(tmp_path):
    with pytest.raises(ParameterError, match="`prior` must be a Prior; got Tensor"):
        save_prior(tmp_path / "x.npz", torch.zeros(1, 2, 4, 4))


# ---------------------------------------------------------------- bad files

def test_good_handwritten_file_loads(tmp_path):
    prior = load_prior(write(tmp_path / "ok.npz"))
    assert prior.names == ("im0", "im1") and prior.bandwidth == 3.0


@pytest.mark.parametrize("changes,match", [
    ({"names": None}, r"missing key names \(a prior holds: density, names, classes, kernel"),
    ({"kernel": None, "source": None}, "missing keys kernel, source"),
    ({"density": np.full((2, 2, 4, 4), 0.5)}, "'density' must be float32; got float64"),
    ({"density": np.zeros((2, 4, 4), np.float32)}, r"'density' must be \(N, C, H, W\); got \(2, 4, 4\)"),
    ({"density": np.full((2, 2, 4, 4), -0.5, np.float32)}, r"negative values \(minimum -0.5\)"),
    ({"density": np.full((2, 2, 4, 4), np.nan, np.float32)}, "holds 64 NaN or infinite values"),
    ({"density": np.full((2, 2, 4, 4), np.inf, np.float32)}, "NaN or infinite"),
    ({"names": np.array(["a", "b", "c"])}, "'names' has 3 entries but 'density' has 2 images"),
    ({"classes": np.array(["background"])}, "'classes' has 1 entries but 'density' has 2 classes"),
    ({"names": np.array([1, 2])}, "'names' must be a 1-d unicode array; got int64"),
    ({"names": np.array(["a", "a"])}, "'names' has duplicates: a"),
    ({"names": np.array(["a", ""])}, "'names' has an empty name at index 1"),
    ({"format_version": np.array(2)}, r"unknown format_version 2 \(this mstool reads 1\)"),
    ({"format_version": np.array("1")}, "'format_version' must be an integer"),
    ({"kernel": np.array("tophat")}, "'kernel' must be one of box, gaussian; got 'tophat'"),
    ({"kernel": np.array(["box"])}, r"'kernel' must be a unicode string \(0-d array\)"),
    ({"bandwidth": np.array(-1.0)}, "'bandwidth' must be a finite number >= 0; got -1.0"),
    ({"bandwidth": np.array("5")}, "'bandwidth' must be a number"),
])
def test_bad_files_raise_data_error_naming_the_file(tmp_path, changes, match):
    path = write(tmp_path / "bad.npz", **changes)
    with pytest.raises(DataError, match=match) as info:
        load_prior(path)
    assert str(info.value).startswith(f"prior {path}: ")


def test_pickled_object_array_is_refused(tmp_path):
    path = write(tmp_path / "obj.npz", names=np.array(["a", None], dtype=object))
    with pytest.raises(DataError, match="key 'names' holds pickled Python objects, which are never loaded"):
        load_prior(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", pickle.dumps({"density": 1})])
def test_not_an_npz_archive(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(FileReadError, match=f"prior {path}: not a readable .npz archive") as info:
        load_prior(path)
    assert "pickled" not in str(info.value)  # junk is junk, whatever np.load would guess


def test_single_npy_array_is_not_a_prior(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(FileReadError, match="a single .npy array, not an .npz archive"):
        load_prior(tmp_path / "d.npy")


def test_missing_file(tmp_path):
    with pytest.raises(FileMissingError, match="nope.npz: file not found"):
        load_prior(tmp_path / "nope.npz")


def test_extra_keys_are_ignored(tmp_path):
    assert len(load_prior(write(tmp_path / "extra.npz", notes=np.array("later version")))) == 2


# ---------------------------------------------------------------- the Prior object

def test_for_names_selects_and_reorders():
    prior = make_prior(3)
    sub = prior.for_names(["img2", "img0"])
    assert sub.names == ("img2", "img0")
    assert torch.equal(sub.density, prior.density[[2, 0]])
    # File names and paths find their stem.
    assert prior.for_names(["x/img1.tif"]).names == ("img1",)


def test_for_names_lists_missing_names():
    prior = make_prior(7)
    with pytest.raises(DataError, match=r"^prior: no entry for images a.tif, b.tif "
                                        r"\(prior has: img0, img1, img2, img3, img4, \.\.\. \(2 more\)\)$"):
        prior.for_names(["img1", "a.tif", "b.tif"])
    with pytest.raises(ParameterError, match="sequence of names, not one string"):
        prior.for_names("img1")


def test_match_checks_names_and_sizes(tmp_path):
    save_prior(tmp_path / "p.npz", make_prior(3, size=8))
    prior = load_prior(tmp_path / "p.npz")
    matched = prior.match(["img1.png", "img0.png"], sizes=[(8, 8), (8, 8)])
    assert matched.names == ("img1", "img0")
    with pytest.raises(DataError, match=rf"^prior {tmp_path / 'p.npz'}: no entry for images a.tif, b.tif "
                                        r"\(prior has: img0, img1, img2\)$"):
        prior.match(["img0.tif", "a.tif", "b.tif"])
    with pytest.raises(DataError, match=r"entry 'img1' is 8 x 8 but image img1.tif is 16 x 8 "
                                        r"\(and 1 more images differ\)"):
        prior.match(["img0.tif", "img1.tif", "img2.tif"], sizes=[(8, 8), (16, 8), (8, 4)])
    with pytest.raises(ParameterError, match="got 1 sizes for 2 names"):
        prior.match(["img0", "img1"], sizes=[(8, 8)])


def test_foreground_channel():
    prior = make_prior(2)
    fg = prior.foreground()
    assert fg.shape == (2, 1, 8, 8) and torch.equal(fg[:, 0], prior.density[:, 1])
    three = Prior(torch.zeros(1, 3, 4, 4), ("a",), ("background", "cell", "debris"))
    with pytest.raises(DataError, match=r"needs a binary prior \(2 classes\); this one has 3: background, "):
        three.foreground()


@pytest.mark.parametrize("kwargs,match", [
    ({"density": torch.zeros(1, 2, 4, 4, dtype=torch.float64)}, "must be float32; got torch.float64"),
    ({"density": torch.zeros(2, 4, 4)}, r"'density' must be an \(N, C, H, W\) tensor; got \(2, 4, 4\)"),
    ({"density": np.zeros((1, 2, 4, 4), np.float32)}, "got ndarray"),
    ({"names": ("a", "b")}, "'names' has 2 entries but 'density' has 1 images"),
    ({"names": "a"}, "'names' must be a sequence of strings; got str"),
    ({"names": (1,)}, "'names' must hold strings; got int 1"),
    ({"classes": ("bg", "bg")}, "'classes' has duplicates: bg"),
    ({"classes": ("bg", " ")}, "'classes' has an empty name at index 1"),
    ({"kernel": "tophat"}, "'kernel' must be one of box, gaussian"),
    ({"bandwidth": float("nan")}, "'bandwidth' must be a finite number >= 0"),
    ({"source": None}, "'source' must be a string; got NoneType"),
])
def test_prior_construction_errors(kwargs, match):
    args = {"density": torch.zeros(1, 2, 4, 4), "names": ("a",), "classes": BINARY}
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        Prior(**args)


def test_prior_repr_is_short():
    text = repr(make_prior(3))
    assert text.startswith("Prior(3 images of 8 x 8, classes=('background', 'foreground'), kernel='gaussian'")
    assert "tensor" not in text


# ---------------------------------------------------------------- estimate_prior

def test_estimate_prior_wraps_density(gen):
    labels = torch.randint(0, 2, (2, 16, 16), generator=gen)
    prior = estimate_prior(labels, ["a", "b"], bandwidth=3, source="labels:test")
    assert torch.equal(prior.density, density(labels, 2, bandwidth=3))
    assert prior.classes == BINARY and prior.names == ("a", "b")
    assert (prior.kernel, prior.bandwidth, prior.source) == ("box", 3.0, "labels:test")


def test_estimate_prior_multiclass_names_and_errors(gen):
    labels = torch.randint(0, 3, (1, 8, 8), generator=gen)
    assert estimate_prior(labels, ["a"]).classes == ("background", "class1", "class2")
    assert estimate_prior(labels, ["a"], class_names=["bg", "cell", "x"]).classes == ("bg", "cell", "x")
    with pytest.raises(ParameterError, match=r"`names` must hold one name per image \(1\); got 2 names"):
        estimate_prior(labels, ["a", "b"])
    with pytest.raises(ParameterError, match="`names` must hold one name per image"):
        estimate_prior(labels, "a")
    with pytest.raises(ParameterError, match=r"`class_names` must hold one name per class \(3\); got 2"):
        estimate_prior(labels, ["a"], class_names=BINARY)


def test_estimate_prior_empty_batch():
    prior = estimate_prior(torch.zeros(0, 8, 8, dtype=torch.long), [])
    assert prior.density.shape == (0, 2, 8, 8) and len(prior) == 0


def test_estimate_prior_on_device(device, gen):
    labels = torch.randint(0, 2, (2, 16, 16), generator=gen)
    prior = estimate_prior(labels.to(device), ["a", "b"], kernel="gaussian", bandwidth=1.5)
    assert prior.density.device.type == device.type
    torch.testing.assert_close(prior.density.cpu(), estimate_prior(labels, ["a", "b"], kernel="gaussian",
                                                                   bandwidth=1.5).density)


# ------------------------------------------------------------------------------------------------ calibration
def test_a_sampled_prior_means_what_the_full_one_means(gen):
    """Lemma 1: a 10% sample's density is a tenth of the clean one; with the clean fractions recorded,
    foreground() gives back a foreground probability of the right mass (and the full prior is unchanged)."""
    from mstool.labels import apply_spec

    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[0, 8:40, 8:40] = 1
    labels[1, 20:60, 4:30] = 1
    full = estimate_prior(labels, ["a", "b"], bandwidth=3)
    sparse = apply_spec(labels, "sample:0.1", generator=gen, num_classes=2)
    calibrated = estimate_prior(sparse, ["a", "b"], bandwidth=3, reference=labels)
    raw = estimate_prior(sparse, ["a", "b"], bandwidth=3)
    truth = labels.float().mean((1, 2))
    assert torch.allclose(calibrated.fractions[:, 1], truth)
    assert torch.allclose(calibrated.foreground().mean((1, 2, 3)), truth, atol=0.02)
    assert float(raw.foreground().mean()) < 0.2 * float(truth.mean())  # uncalibrated: a tenth of the mass
    assert torch.allclose(full.foreground(), full.foreground(calibrated=False), atol=0.02)
    assert float(calibrated.foreground().max()) <= 1.0


def test_fractions_round_trip_and_old_files_load_without_them(tmp_path):
    p = Prior(torch.rand(2, 2, 4, 4), ("a", "b"), ("background", "foreground"),
              fractions=torch.tensor([[0.7, 0.3], [0.9, 0.1]]))
    save_prior(tmp_path / "p.npz", p)
    q = load_prior(tmp_path / "p.npz")
    assert torch.equal(q.fractions, p.fractions) and torch.equal(q.for_names(["b"]).fractions, p.fractions[1:])
    save_prior(tmp_path / "old.npz", Prior(p.density, p.names, p.classes))
    assert load_prior(tmp_path / "old.npz").fractions is None
    with pytest.raises(DataError, match="'fractions' must be \\(N, C\\)"):
        Prior(p.density, p.names, p.classes, fractions=torch.zeros(3, 2))
    with pytest.raises(DataError, match="'fractions' must lie in \\[0, 1\\]"):
        Prior(p.density, p.names, p.classes, fractions=torch.full((2, 2), 1.5))


def test_a_density_too_sparse_for_its_fraction_still_means_it():
    """A few sampled skeleton pixels cover less of the image than the objects did: the calibrated map keeps
    their order and spreads the missing mass, so its mean is the recorded fraction."""
    d = torch.zeros(1, 2, 10, 10)
    d[0, 1, 0, :5] = 0.5  # 5% of the image carries density
    d[0, 0] = 1 - d[0, 1]
    p = Prior(d, ("a",), ("background", "foreground"), fractions=torch.tensor([[0.7, 0.3]]))
    fg = p.foreground()
    assert abs(float(fg.mean()) - 0.3) < 1e-4 and float(fg.max()) <= 1.0
    assert float(fg[0, 0, 0, :5].min()) > float(fg[0, 0, 5:, :].max())  # the dense pixels stay the densest


def test_a_partial_annotation_is_unknown_away_from_its_labels_and_calibrated_where_known():
    """One labelled region (``region:s``): the prior knows the pixels within a window of it, NaN elsewhere, and
    its calibrated mean over the known pixels is their foreground fraction, not diluted by the unknown rest."""
    labels = torch.full((1, 32, 32), 255, dtype=torch.long)
    labels[0, :12, :12] = 0
    labels[0, 2:6, 2:10] = 1  # 32 of 144 labelled pixels
    p = estimate_prior(labels, ["a"], num_classes=2, bandwidth=2)
    known = p.known()
    assert bool(known[0, 0, :14, :14].all())
    assert not bool(known[0, 0, 14:].any()) and not bool(known[0, 0, :, 14:].any())
    for calibrated in (True, False):
        fg = p.foreground(calibrated=calibrated)
        assert torch.equal(torch.isnan(fg), ~known)
    fg = p.foreground()
    assert abs(float(fg[known].mean()) - 32 / 144) < 1e-4
    assert float(fg[0, 0, 3, 5]) > 0.9 and float(fg[0, 0, 10, 10]) < 0.05
