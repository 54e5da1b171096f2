import json

import numpy as np
import pytest

from mstool.data import synthesize
from mstool.device import make_generator
from mstool.errors import (
    DataError,
    FileMissingError,
    LayoutError,
    MstoolWarning,
    OutputError,
    OutputExistsError,
    ParameterError,
)
from mstool.io import read_mask, write_image
from mstool.metastructure import Prior, save_prior
from mstool.runs import segment_folder
from mstool.unsupervised import METHODS, build_method

from ..pictures import assert_picture_has_content


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
    assert (tmp_path / "out" / "scores" / "n1.tif").exists()
    assert_picture_has_content(tmp_path / "out" / "overlays" / "n1.png")
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
    with pytest.raises(ParameterError, match="has no option 'colour'; its options are"):
        build_method("otsu", {"colour": 1})
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "keep").write_text("x")
    with pytest.raises(OutputError, match="not written by mstool"):
        segment_folder(root, tmp_path / "o2", method="otsu", overwrite=True)
    segment_folder(root, tmp_path / "o3", method="otsu")
    with pytest.raises(OutputExistsError, match=r"output folder exists and is not empty \(pass --overwrite"):
        segment_folder(root, tmp_path / "o3", method="otsu")
    for out in (root, root / "sub", root.parent):  # is, lies inside, contains the images
        with pytest.raises(OutputError, match="the input"):
            segment_folder(root, out, method="otsu", overwrite=True)


TINY_IGTT = {"rounds": 2, "steps": 1, "model_options": {"base": 4, "depth": 1}, "crop": 16, "batch_size": 2,
             "thresholds": 5}


def test_segment_folder_forwards_the_method_rounds_in_order(folder, tmp_path):
    root, _ = folder
    events = []
    segment_folder(root, tmp_path / "igtt", method="igtt", options=TINY_IGTT, overlays=False, progress=events.append)
    assert [e["event"] for e in events] == ["start", "group", "round", "round", "image", "image", "image"]
    assert events[0] == {"event": "start", "images": 3, "groups": 1}
    assert [e["round"] for e in events if e["event"] == "round"] == [1, 2]
    assert all(e["size"] == [48, 48] and e["rounds"] == 2 for e in events if e["event"] == "round")
    events.clear()
    segment_folder(root, tmp_path / "dfc", method="dfc", options={"channels": 8, "iterations": 2, "min_labels": 1},
                   overlays=False, progress=events.append)
    rounds = [(e["index"], e["round"]) for e in events if e["event"] == "round"]
    assert rounds == [(i, r) for i in range(3) for r in (1, 2)]
    assert [e["event"] for e in events][-3:] == ["image"] * 3


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    for name, size, seed in (("a0", 32, 0), ("a1", 32, 1), ("b0", 40, 2)):
        data = synthesize("nuc", 1, size, generator=make_generator(seed))
        write_image(root / f"{name}.tif", data.images[0, 0].numpy().astype(np.uint16))
    return root


def test_igtt_saves_one_checkpoint_per_size_and_reuses_them(two_sizes, tmp_path):
    run = segment_folder(two_sizes, tmp_path / "trained", method="igtt", options=TINY_IGTT, overlays=False)
    out = tmp_path / "trained"
    assert run["checkpoints"] == {"32x32": "model-32x32.pt", "40x40": "model-40x40.pt"}
    assert (out / "model-32x32.pt").is_file() and (out / "model-40x40.pt").is_file()
    assert not (out / "model.pt").exists()
    assert run["images"]["b0"]["checkpoint"] == "model-40x40.pt"
    assert json.loads((out / "run.json").read_text())["checkpoints"] == run["checkpoints"]
    # the folder as --checkpoint: each size gets its own network, which reproduces the trained run's masks
    again = segment_folder(two_sizes, tmp_path / "again", method="igtt", checkpoint=out, overlays=False)
    assert again["images"]["a0"]["checkpoint"] == str(out / "model-32x32.pt")
    assert again["images"]["b0"]["checkpoint"] == str(out / "model-40x40.pt") and again["checkpoints"] == {}
    for name in ("a0", "a1", "b0"):
        assert np.array_equal(read_mask(tmp_path / "again" / "masks" / f"{name}.png"),
                              read_mask(out / "masks" / f"{name}.png"))
    # one file serves every size
    one = segment_folder(two_sizes, tmp_path / "one", method="igtt", checkpoint=out / "model-32x32.pt",
                         overlays=False)
    assert {v["checkpoint"] for v in one["images"].values()} == {str(out / "model-32x32.pt")}


def test_single_size_saves_model_pt_and_folder_checkpoint_errors(folder, two_sizes, tmp_path):
    root, _ = folder
    run = segment_folder(root, tmp_path / "single", method="igtt", options=TINY_IGTT, overlays=False)
    assert run["checkpoints"] == {"48x48": "model.pt"} and (tmp_path / "single" / "model.pt").is_file()
    # model.pt of a folder serves any size
    other = segment_folder(two_sizes, tmp_path / "other", method="igtt", checkpoint=tmp_path / "single",
                           overlays=False)
    assert {v["checkpoint"] for v in other["images"].values()} == {str(tmp_path / "single" / "model.pt")}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileMissingError, match=r"model-32x32\.pt or model\.pt"):
        segment_folder(two_sizes, tmp_path / "o", method="igtt", checkpoint=tmp_path / "empty")
    with pytest.raises(ParameterError, match="no trained state"):
        segment_folder(two_sizes, tmp_path / "o", method="otsu", checkpoint=tmp_path / "single")
    assert not (tmp_path / "o").exists()


def test_large_overlay_is_drawn_small(tmp_path, monkeypatch):
    import mstool.runs._segment as segment_module
    from mstool.runs._segment import overlay_panel

    drawn = []
    monkeypatch.setattr(segment_module, "plot_label_panel", lambda path, columns, **kw: drawn.extend(columns))
    overlay_panel(tmp_path / "o.png", np.zeros((2100, 40), np.uint16), np.zeros((2100, 40), np.int64),
                  np.zeros((2100, 40), np.float32), "big")
    assert [array.shape for _, array, _ in drawn] == [(700, 14)] * 3  # every third pixel: at most 1024 a side


def test_scribbles_reach_each_size_group_by_name(two_sizes, tmp_path, monkeypatch):
    import torch

    from mstool.io import write_mask
    from mstool.unsupervised import IGTT

    drawn = {"a1": np.full((32, 32), 255, dtype=np.uint8), "b0": np.full((40, 40), 255, dtype=np.uint8)}
    drawn["a1"][:8, :8] = 1
    drawn["b0"][30:, 30:] = 0
    for name, mask in drawn.items():
        write_mask(tmp_path / "scribbles" / f"{name}.png", mask)
    seen = {}
    segment = IGTT.segment

    def spy(self, images, **kwargs):
        seen[tuple(images.shape[-2:])] = kwargs["scribbles"].clone()
        return segment(self, images, **kwargs)

    monkeypatch.setattr(IGTT, "segment", spy)
    with pytest.warns(MstoolWarning, match="no mask for 1 of 3 images"):
        run = segment_folder(two_sizes, tmp_path / "out", method="igtt", options=TINY_IGTT, overlays=False,
                             scribbles=tmp_path / "scribbles")
    # a0 has none (all unlabelled), a1 its own, and b0, alone in its size group, its own
    assert torch.equal(seen[(32, 32)][0], torch.full((32, 32), 255))
    assert np.array_equal(seen[(32, 32)][1], drawn["a1"])
    assert np.array_equal(seen[(40, 40)][0], drawn["b0"])
    assert {name: v["scribbled"] for name, v in run["images"].items()} == {"a0": 0, "a1": 64, "b0": 100}


def test_one_scribble_file_pairs_by_name_or_with_the_only_image(folder, tmp_path):
    from mstool.io import write_mask

    root, labels = folder
    mask = np.full((48, 48), 255, dtype=np.uint8)
    mask[:12] = labels[1, :12].numpy()
    write_mask(tmp_path / "n1.png", mask)
    with pytest.warns(MstoolWarning, match="no mask for 2 of 3 images"):
        run = segment_folder(root, tmp_path / "named", method="dfc", options={"iterations": 1}, overlays=False,
                             scribbles=tmp_path / "n1.png")
    assert {name: v["scribbled"] for name, v in run["images"].items()} == {"n0": 0, "n1": 12 * 48, "n2": 0}
    write_mask(tmp_path / "drawn.png", mask)
    one = segment_folder(root / "n2.tif", tmp_path / "one", method="dfc", options={"iterations": 1},
                         overlays=False, scribbles=tmp_path / "drawn.png")
    assert one["images"]["n2"]["scribbled"] == 12 * 48 and one["warnings"] == []
    with pytest.raises(LayoutError, match="no scribble mask is named like an image"):
        segment_folder(root, tmp_path / "none", method="dfc", scribbles=tmp_path / "drawn.png")
