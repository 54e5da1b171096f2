import json
import os

import numpy as np
import pytest

from mstool.data import DataSource, synthesize
from mstool.device import make_generator
from mstool.engine import load_model, predict
from mstool.errors import FileMissingError, MstoolWarning, OutputError, ParameterError
from mstool.io import normalize_image, read_image, read_mask, read_score_map, write_image
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


def test_masks_are_the_networks_probabilities_at_the_fallback_threshold(trained, tmp_path):
    run, new = trained
    with pytest.warns(MstoolWarning, match="no evaluation.json beside .*model.pt: threshold 0.5"):
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
    assert saved["threshold"] == 0.5 and saved["polarity"] == 1 and saved["threshold_source"] == "fixed 0.5"
    assert saved["checkpoint"] == str(run / "model.pt") and saved["network"] == "unet"
    assert saved["images"]["n2"]["size"] == [48, 40] and saved["images"]["n2"]["tile"] is None
    assert len(saved["warnings"]) == 1 and "mstool evaluate --checkpoint" in saved["warnings"][0]
    # the output reads back as masks for `mstool score`
    assert score_masks(tmp_path / "out", tmp_path / "out" / "masks").mean_dice == 1.0


def test_the_val_threshold_and_polarity_of_a_newer_evaluation_json_win(trained, tmp_path):
    run, new = trained
    record = run / "evaluation.json"
    record.write_text(json.dumps({"val/threshold": 0.3, "val/polarity": -1}))
    try:
        saved = predict_folder(new, tmp_path / "out", checkpoint=run / "model.pt", overlays=False)
        assert saved["threshold"] == 0.3 and saved["polarity"] == -1 and saved["warnings"] == []
        assert "val protocol" in saved["threshold_source"]
        probs = _probs(run / "model.pt", new / "n0.tif")
        np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / "n0.png"),
                                      (1 - probs[0] >= 0.3).numpy().astype(np.uint8))
        # one older than the model may belong to another network: not used, and said so
        stamp = (run / "model.pt").stat().st_mtime
        os.utime(record, (stamp - 60, stamp - 60))
        with pytest.warns(MstoolWarning, match="evaluation.json is older than model.pt"):
            saved = predict_folder(new, tmp_path / "old", checkpoint=run, overlays=False)
        assert saved["threshold"] == 0.5 and saved["polarity"] == 1
        # a given threshold wins over both
        saved = predict_folder(new, tmp_path / "given", checkpoint=run, threshold=0.7, overlays=False)
        assert saved["threshold"] == 0.7 and saved["threshold_source"] == "given"
        assert read_mask(tmp_path / "given" / "masks" / "n0.png").sum() == int((probs[0] >= 0.7).sum())
    finally:
        record.unlink()


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
    with pytest.raises(ParameterError, match="`threshold` must lie strictly between 0 and 1; got 1.0"):
        predict_folder(new, tmp_path / "a", checkpoint=run, threshold=1.0)
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
    with pytest.warns(MstoolWarning, match="skipped .*broken.png"):
        saved = predict_folder(folder, tmp_path / "out", checkpoint=run, threshold=0.5)
    assert list(saved["images"]) == ["a"] and len(saved["problems"]) == 1
    (folder / "a.tif").unlink()
    with pytest.raises(ParameterError, match="no image could be read"), pytest.warns(MstoolWarning):
        predict_folder(folder, tmp_path / "none", checkpoint=run, threshold=0.5)
    assert not (tmp_path / "none").exists()

