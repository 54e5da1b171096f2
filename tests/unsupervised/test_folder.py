import json

import numpy as np
import pytest

from mstool.data import synthesize
from mstool.device import make_generator
from mstool.errors import DataError, OutputExistsError, ParameterError
from mstool.io import read_mask, write_image
from mstool.metastructure import Prior, save_prior
from mstool.unsupervised import METHODS, build_method, segment_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    data = synthesize("nuc", 3, 48, generator=make_generator(0))
    for i in range(3):
        write_image(root / f"n{i}.tif", data.images[i, 0].numpy().astype(np.uint16))
    return root, data.labels


def test_registry_names():
    assert set(METHODS.names()) >= {"otsu", "multiotsu", "local", "kmeans", "gmm", "dfc", "igtt"}


def test_segment_folder_writes_masks_overlays_and_run_json(folder, tmp_path):
    root, labels = folder
    run = segment_folder(root, tmp_path / "out", method="otsu", scores=True)
    assert sorted(run["images"]) == ["n0", "n1", "n2"] and run["problems"] == []
    mask = read_mask(tmp_path / "out" / "masks" / "n1.png")
    assert mask.shape == (48, 48)
    dice = 2 * (mask * labels[1].numpy()).sum() / (mask.sum() + labels[1].numpy().sum())
    assert dice > 0.7
    assert (tmp_path / "out" / "scores" / "n1.tif").exists() and (tmp_path / "out" / "overlays" / "n1.png").exists()
    stored = json.loads((tmp_path / "out" / "run.json").read_text())
    assert stored["method"] == "otsu" and stored["mstool_version"]


def test_segment_folder_reports_a_corrupt_image_and_does_the_rest(folder, tmp_path):
    root, _ = folder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in root.iterdir():
        (mixed / p.name).write_bytes(p.read_bytes())
    (mixed / "bad.tif").write_bytes(b"II*\x00garbage")
    write_image(mixed / "big.tif", np.full((64, 80), 1000, np.uint16) + np.eye(64, 80, dtype=np.uint16) * 500)
    run = segment_folder(mixed, tmp_path / "out", method="otsu", overlays=False)
    assert sorted(run["images"]) == ["big", "n0", "n1", "n2"]
    assert len(run["problems"]) == 1 and "bad.tif" in run["problems"][0]
    assert run["images"]["big"]["size"] == [64, 80]


def test_segment_folder_constant_image_gives_empty_mask(tmp_path):
    write_image(tmp_path / "in" / "flat.tif", np.full((32, 32), 7, np.uint16))
    run = segment_folder(tmp_path / "in", tmp_path / "out", method="otsu", overlays=False)
    assert read_mask(tmp_path / "out" / "masks" / "flat.png").sum() == 0
    assert any("constant" in w for w in run["images"]["flat"]["warnings"])


def test_segment_folder_prior_must_match(folder, tmp_path):
    root, labels = folder
    import torch

    density = torch.rand(2, 2, 48, 48)
    save_prior(tmp_path / "p.npz", Prior(density, ("n0", "other"), ("background", "foreground")))
    with pytest.raises(DataError, match="n1"):
        segment_folder(root, tmp_path / "out", method="otsu", prior=tmp_path / "p.npz")
    assert not (tmp_path / "out").exists()


def test_segment_folder_errors(folder, tmp_path):
    root, _ = folder
    with pytest.raises(ParameterError, match="unknown unsupervised method"):
        segment_folder(root, tmp_path / "o1", method="watershed")
    with pytest.raises(ParameterError, match="bad option"):
        build_method("otsu", {"colour": 1})
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "keep").write_text("x")
    with pytest.raises(OutputExistsError):
        segment_folder(root, tmp_path / "o2", method="otsu")
