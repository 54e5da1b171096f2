import json
import os

import numpy as np
import pytest

from mstool.data import DataSource, synthesize
from mstool.device import make_generator
from mstool.engine import load_model, predict
from mstool.errors import FileMissingError, FileReadError, MstoolWarning, OutputError, ParameterError
from mstool.io import normalize_image, read_image, read_mask, read_score_map, write_image
from mstool.metastructure import expected_threshold
from mstool.runs import predict_folder, run_config, score_masks, train_run

TINY = {"epochs": 2, "val_every": 1, "crop": 32, "batch_size": 2, "model_options": {"base": 4, "depth": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny binary network (synth:er) and a folder of three new images of two sizes."""
    root = tmp_path_factory.mktemp("predict")
    train_run(DataSource("synth:er", synth_n=5, synth_size=32, seed=1), root / "run", run_config("quick", TINY))
    data = synthesize("er", 3, 40, generator=make_generator(7))
    for i in range(3):
        image = data.images[i, 0].numpy()
        image = image if i < 2 else np.pad(image, ((0, 8), (0, 0)), mode="reflect")  # 48 x 40
        write_image(root / "new" / f"n{i}.tif", image.astype(np.float32))
    return root / "run", root / "new"


def _probs(model_file, image_file, tile=None):
    net, meta = load_model(model_file)
    x = normalize_image(read_image(image_file), channels=meta["in_channels"])[None]
    return predict(net, x, tile=tile)[0]


def test_masks_are_the_networks_probabilities_at_the_threshold_of_its_labels(trained, tmp_path):
    run, new = trained
    record = predict_folder(new, tmp_path / "out", checkpoint=run, scores=True)
    for i in range(3):
        probs = _probs(run / "model.pt", new / f"n{i}.tif")
        mask = read_mask(tmp_path / "out" / "masks" / f"n{i}.png")
        np.testing.assert_array_equal(mask, (probs[0] >= 0.5).numpy().astype(mask.dtype))
        np.testing.assert_allclose(read_score_map(tmp_path / "out" / "scores" / f"n{i}.tif"), probs[0].numpy(),
                                   atol=1e-6)
        assert (tmp_path / "out" / "overlays" / f"n{i}.png").is_file()
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved == json.loads(json.dumps(record))
    # clean labels: the identity matrix, so halfway is 0.5
    assert saved["threshold"] == 0.5 and saved["polarity"] == 1 and saved["warnings"] == []
    assert saved["threshold_source"].startswith("halfway between the training labels' foreground rates")
    assert saved["checkpoint"] == str(run / "model.pt") and saved["network"] == "unet"
    assert saved["label_spec"] == "clean" and saved["epochs"] == 2
    assert saved["images"]["n2"]["size"] == [48, 40] and saved["images"]["n2"]["tile"] is None
    # the output reads back as masks for `mstool score`
    assert score_masks(tmp_path / "out", tmp_path / "out" / "masks").mean_dice == 1.0


@pytest.mark.parametrize(("spec", "polarity"), [("sample:0.1", 1), ("flip:0.8,0.7", -1)])
def test_sparse_or_swapped_labels_move_the_threshold_and_polarity(trained, tmp_path, spec, polarity):
    _, new = trained
    train_run(DataSource("synth:er", synth_n=5, synth_size=32, seed=1), tmp_path / "run",
              run_config("quick", TINY, labels=spec))
    ntm = load_model(tmp_path / "run" / "model.pt")[1]["label_stats"]["ntm"]
    saved = predict_folder(new, tmp_path / "out", checkpoint=tmp_path / "run", overlays=False)
    assert (saved["threshold"], saved["polarity"]) == expected_threshold(ntm) and saved["polarity"] == polarity
    # a 10% sample: about 0.05; flip:0.8,0.7 swaps the classes: 1 - (0.7 + 0.2) / 2 = 0.55 on 1 - probs
    assert saved["threshold"] == pytest.approx(0.05 if spec.startswith("sample") else 0.55, abs=0.03)
    probs = _probs(tmp_path / "run" / "model.pt", new / "n0.tif")[0]
    probs = probs if polarity == 1 else 1 - probs
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / "n0.png"),
                                  (probs >= saved["threshold"]).numpy().astype(np.uint8))


def test_labels_that_ignore_the_truth_are_warned_about(tmp_path):
    train_run(DataSource("synth:er", synth_n=5, synth_size=32, seed=1), tmp_path / "run",
              run_config("quick", TINY, labels="random:0.3"))
    images = tmp_path / "run" / "data" / "test" / "images"
    with pytest.warns(MstoolWarning, match="its training labels barely depend on the true classes"):
        saved = predict_folder(images, tmp_path / "out", checkpoint=tmp_path / "run", overlays=False)
    assert len(saved["warnings"]) == 1


def test_val_and_auto_take_the_threshold_and_polarity_of_a_newer_evaluation_json(trained, tmp_path):
    run, new = trained
    record = run / "evaluation.json"
    with pytest.raises(FileMissingError, match="evaluation.json: no such file.*mstool evaluate --checkpoint"):
        predict_folder(new, tmp_path / "none", checkpoint=run, threshold="val")
    record.write_text(json.dumps({"val/threshold": 0.3, "val/polarity": -1}))
    try:
        saved = predict_folder(new, tmp_path / "out", checkpoint=run / "model.pt", threshold="val", overlays=False)
        assert saved["threshold"] == 0.3 and saved["polarity"] == -1 and saved["warnings"] == []
        assert "val protocol" in saved["threshold_source"]
        probs = _probs(run / "model.pt", new / "n0.tif")
        np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / "n0.png"),
                                      (1 - probs[0] >= 0.3).numpy().astype(np.uint8))
        # auto takes it too, and labels does not
        assert predict_folder(new, tmp_path / "auto", checkpoint=run, overlays=False)["threshold"] == 0.3
        assert predict_folder(new, tmp_path / "labels", checkpoint=run, threshold="labels",
                              overlays=False)["threshold"] == 0.5
        # a given number wins over everything
        saved = predict_folder(new, tmp_path / "given", checkpoint=run, threshold=0.7, overlays=False)
        assert saved["threshold"] == 0.7 and saved["threshold_source"] == "given"
        assert read_mask(tmp_path / "given" / "masks" / "n0.png").sum() == int((probs[0] >= 0.7).sum())
        # one older than the model may belong to another network
        stamp = (run / "model.pt").stat().st_mtime
        os.utime(record, (stamp - 60, stamp - 60))
        with pytest.raises(ParameterError, match="evaluation.json is older than model.pt"):
            predict_folder(new, tmp_path / "old", checkpoint=run, threshold="val")
        with pytest.warns(MstoolWarning, match="older than model.pt.*; the threshold comes from the training labels"):
            saved = predict_folder(new, tmp_path / "stale", checkpoint=run, overlays=False)
        assert saved["threshold"] == 0.5 and "halfway" in saved["threshold_source"] and len(saved["warnings"]) == 1
        record.write_text(json.dumps({"val/absent": "no validation set"}))
        with pytest.raises(ParameterError, match=r"holds no val threshold \(no validation set\)"):
            predict_folder(new, tmp_path / "absent", checkpoint=run, threshold="val")
    finally:
        record.unlink()
    assert not any((tmp_path / name).exists() for name in ("none", "old", "absent"))


def test_large_images_are_predicted_in_tiles(trained, tmp_path):
    run, new = trained
    saved = predict_folder(new / "n2.tif", tmp_path / "out", checkpoint=run, tile=24, threshold=0.5,
                           overlays=False)
    assert saved["images"]["n2"]["tile"] == 24
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / "n2.png"),
                                  (_probs(run / "model.pt", new / "n2.tif", tile=24)[0] >= 0.5).numpy())


def test_a_multi_class_network_gives_its_arg_max_and_refuses_a_threshold(tmp_path):
    train_run(DataSource("synth:shapes", synth_n=5, synth_size=32), tmp_path / "run", run_config("quick", TINY))
    images = tmp_path / "run" / "data" / "test" / "images"
    with pytest.raises(ParameterError, match="a threshold applies to binary networks; .* has 5 classes"):
        predict_folder(images, tmp_path / "t", checkpoint=tmp_path / "run", threshold=0.5)
    assert not (tmp_path / "t").exists()
    saved = predict_folder(images, tmp_path / "out", checkpoint=tmp_path / "run", scores=True)
    assert saved["threshold"] is None and saved["threshold_source"] == "arg-max of the classes"
    name = next(iter(saved["images"]))
    probs = _probs(tmp_path / "run" / "model.pt", images / f"{name}.tif")
    assert probs.shape[0] == 5
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / f"{name}.png"), probs.argmax(0).numpy())
    assert read_score_map(tmp_path / "out" / "scores" / f"{name}.tif").shape == tuple(probs.shape)


def test_bad_inputs_fail_before_any_output(trained, tmp_path):
    run, new = trained
    with pytest.raises(ParameterError, match="`threshold` must be auto, val, labels or a number strictly between 0 "
                                             "and 1; got 1.0"):
        predict_folder(new, tmp_path / "a", checkpoint=run, threshold=1.0)
    with pytest.raises(ParameterError, match="`threshold` must be auto, val, labels or a number .*; got 'half'"):
        predict_folder(new, tmp_path / "a", checkpoint=run, threshold="half")
    with pytest.raises(FileMissingError, match="no model.pt in this folder"):
        predict_folder(new, tmp_path / "b", checkpoint=tmp_path)
    with pytest.raises(FileMissingError, match="model file does not exist"):
        predict_folder(new, tmp_path / "c", checkpoint=tmp_path / "none.pt")
    with pytest.raises(OutputError, match="inside the input"):
        predict_folder(new, new / "out", checkpoint=run)
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and not (new / "out").exists()


def test_an_unreadable_image_is_skipped_and_recorded(trained, tmp_path):
    run, new = trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.tif").write_bytes((new / "n0.tif").read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "b.tif").write_bytes((new / "n1.tif").read_bytes())
    events = []
    with pytest.warns(MstoolWarning, match="skipped .*broken.png"):
        saved = predict_folder(folder, tmp_path / "out", checkpoint=run, progress=events.append)
    assert list(saved["images"]) == ["a", "b"] and len(saved["problems"]) == 1
    assert saved["warnings"] == [f"skipped {saved['problems'][0]}"]
    assert [e.get("name") for e in events] == [None, "a", "b", None]  # start, then every image, done or skipped
    (folder / "a.tif").unlink()
    (folder / "b.tif").unlink()
    with pytest.raises(ParameterError, match="no image could be read .*broken.png: not a readable .png image"):
        predict_folder(folder, tmp_path / "none", checkpoint=run)
    assert not (tmp_path / "none").exists()



def test_each_kind_of_network_points_to_the_command_that_applies_it(trained, tmp_path):
    from mstool.runs import segment_folder

    run, new = trained
    tiny = {"rounds": 1, "steps": 1, "model_options": {"base": 4, "depth": 1}, "crop": 16, "batch_size": 2}
    segment_folder(new / "n0.tif", tmp_path / "igtt", method="igtt", options=tiny, overlays=False)
    with pytest.raises(FileReadError, match="an iGTT network, which `mstool segment IMAGES --method igtt"):
        predict_folder(new, tmp_path / "a", checkpoint=tmp_path / "igtt")
    with pytest.raises(FileReadError, match="a network that `mstool train` trained, which `mstool predict IMAGES"):
        segment_folder(new, tmp_path / "b", method="igtt", checkpoint=run / "model.pt")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
