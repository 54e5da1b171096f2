"""Training and evaluation on a dataset read item by item: the same network as the tensor path with clean
labels, noisy labels drawn per item and the same on every read, resume, nothing but a batch held, and the
evaluation's protocols within a histogram bin of the tensor path's."""

import json
import shutil

import pytest
import torch

from mstool.data import SegmentationDataset, load_split_tensors, write_synthetic_dataset
from mstool.engine import TrainConfig, evaluate, train
from mstool.errors import DataError, ParameterError, ShapeError

TINY = dict(model_options={"base": 4, "depth": 2}, epochs=3, crop=32, batch_size=2, val_every=1,
            checkpoint_every=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("lazy") / "er", "er", n=8, size=48, seed=0)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_clean_labels_train_the_same_network_lazily(root, tmp_path):
    cfg = TrainConfig.from_preset("quick", **TINY)
    images, labels, _ = load_split_tensors(root, "train")
    val_images, val_labels, _ = load_split_tensors(root, "val")
    eager = train(cfg, images, labels, out_dir=tmp_path / "eager", val_images=val_images, val_labels=val_labels)
    lazy = train(cfg, SegmentationDataset(root, "train"), None, out_dir=tmp_path / "lazy",
                 val_images=SegmentationDataset(root, "val"))
    assert torch.equal(_weights(eager.model), _weights(lazy.model))
    assert [r["val_dice"] for r in eager.history] == [r["val_dice"] for r in lazy.history]
    assert [r["train_loss"] for r in eager.history] == [r["train_loss"] for r in lazy.history]


def test_noisy_labels_are_drawn_per_item_and_a_run_resumes(root, tmp_path):
    cfg = TrainConfig.from_preset("quick", **TINY, label_spec="sample:0.3", noise_mode="offline")
    ds, val = SegmentationDataset(root, "train"), SegmentationDataset(root, "val")
    whole = train(cfg, ds, None, out_dir=tmp_path / "whole", val_images=val)
    assert whole.label_stats["changed_fraction"] > 0 and whole.noisy_labels.shape[0] == len(ds)

    class Stop(Exception):
        pass

    def stop_at_2(event):
        if event.get("event") == "epoch" and event["epoch"] == 2:
            raise Stop("stopped after epoch 2")

    with pytest.raises(Stop, match="stopped after epoch 2"):
        train(cfg, ds, None, out_dir=tmp_path / "cut", val_images=val, progress=stop_at_2)
    resumed = train(cfg, ds, None, out_dir=tmp_path / "cut", val_images=val)
    assert resumed.start_epoch == 2
    assert torch.equal(_weights(whole.model), _weights(resumed.model))


def test_a_lazy_run_takes_its_labels_from_the_items(root, tmp_path):
    images, labels, _ = load_split_tensors(root, "val")
    with pytest.raises(ParameterError, match="a Dataset of training items carries its own masks"):
        train(TrainConfig.from_preset("quick", **TINY), SegmentationDataset(root, "train"), None,
              out_dir=tmp_path / "x", val_images=images, val_labels=labels)


def test_a_lazy_dataset_must_hold_labelled_items(tmp_path):
    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.zeros(1, 32, 32), "mask": None}

    with pytest.raises(DataError, match="must be a dict with an image and a mask"):
        train(TrainConfig.from_preset("quick", **TINY), Images(), None, out_dir=tmp_path / "x")


def test_mstool_train_lazy_then_evaluate(tmp_path):
    from click.testing import CliRunner

    from mstool.cli.main import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--lazy", "--data", "synth:er", "--epochs", "2", "--batch-size", "2",
                            "--crop", "32", "--set", "model_options.base=4", "--set", "val_every=1", "-q",
                            "-o", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["lazy"] is True and record["label_stats"]["ntm_det"] == 1.0
    r = runner.invoke(cli, ["evaluate", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--no-probe"])
    assert r.exit_code == 0 and "val     Dice" in r.output and "labels  Dice" in r.output
    lazily = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert lazily["lazy"] is True and lazily["val/threshold"] * 1024 == round(lazily["val/threshold"] * 1024)
    # the labels' threshold scores the same histograms: clean labels give 0.5, a bin edge
    assert (lazily["labels/threshold"], lazily["labels/polarity"]) == (0.5, 1)
    r = runner.invoke(cli, ["evaluate", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--no-probe",
                            "--eager"])
    assert r.exit_code == 0, r.output
    whole = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert "lazy" not in whole and whole["val/dice"] == pytest.approx(lazily["val/dice"], abs=5e-3)
    assert whole["labels/dice"] == pytest.approx(lazily["labels/dice"], abs=5e-3)


def test_lazy_needs_train_and_val_splits(tmp_path):
    from mstool.data import lazy_splits
    from mstool.errors import LayoutError

    root = write_synthetic_dataset(tmp_path / "d", "er", n=6, size=32, seed=0)
    shutil.rmtree(root / "val")
    with pytest.raises(LayoutError, match="needs a labelled val split; it has train"):
        lazy_splits(str(root), tmp_path / "run")


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    cfg = TrainConfig.from_preset("quick", **TINY)
    return train(cfg, SegmentationDataset(root, "train"), None, out_dir=tmp_path_factory.mktemp("trained"),
                 val_images=SegmentationDataset(root, "val"))


def test_lazy_evaluation_matches_the_tensor_path_within_a_bin(root, trained):
    sets = {s: load_split_tensors(root, s)[:2] for s in ("train", "val", "test")}
    eager = evaluate(trained.model, *sets["test"], val_images=sets["val"][0], val_labels=sets["val"][1],
                     train_images=sets["train"][0], train_labels=sets["train"][1],
                     generator=torch.Generator().manual_seed(0)).metrics
    ds = {s: SegmentationDataset(root, s) for s in ("train", "val", "test")}
    lazy = evaluate(trained.model, ds["test"], val_images=ds["val"], train_images=ds["train"],
                    generator=torch.Generator().manual_seed(0))
    assert set(lazy.metrics) == set(eager)
    for key in ("val/dice", "oracle/dice", "fixed/dice", "val/auc", "probe/dice"):
        assert lazy.metrics[key] == pytest.approx(eager[key], abs=5e-3), key
    assert lazy.metrics["fixed/tp"] == eager["fixed/tp"] and lazy.metrics["n_test"] == len(ds["test"])
    assert lazy.test_probs.shape == (len(ds["test"]), 1, 48, 48) and lazy.probe_probs is None


class Mixed(torch.utils.data.Dataset):
    """A split whose odd items are cut to ``side`` x ``side``."""

    def __init__(self, root, split, side=40):
        self.base, self.side = SegmentationDataset(root, split), side

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        side = 48 if i % 2 == 0 else self.side
        return {"image": item["image"][:, :side, :side], "mask": item["mask"][:side, :side]}


def test_lazy_training_cuts_other_sizes_to_the_crop(root, tmp_path):
    cfg = TrainConfig.from_preset("quick", **TINY)
    result = train(cfg, Mixed(root, "train"), None, out_dir=tmp_path / "a", val_images=Mixed(root, "val"))
    assert len(result.history) == 3 and result.history[-1]["val_dice"] is not None
    with pytest.raises(ShapeError, match=r"item \d+ of the training dataset is 24 x 24, not 48 x 48 like the first; "
                                         r"a lazy run over mixed sizes needs items of at least the crop, 32 x 32"):
        train(cfg, Mixed(root, "train", side=24), None, out_dir=tmp_path / "b")
    with pytest.raises(ShapeError, match="needs a crop"):
        train(TrainConfig.from_preset("quick", **{**TINY, "crop": None}), Mixed(root, "train"), None,
              out_dir=tmp_path / "c")


def test_lazy_evaluation_reads_mixed_sizes(root, trained):
    result = evaluate(trained.model, Mixed(root, "test"), probe=False)
    assert result.metrics["n_test"] == len(Mixed(root, "test")) and 0 < result.metrics["oracle/dice"] <= 1
    assert result.test_probs.shape[-2:] == (48, 48) and result.test_probs.shape[0] == 1


def test_lazy_evaluation_refuses_tensor_labels(root, trained):
    images, labels, _ = load_split_tensors(root, "val")
    with pytest.raises(ParameterError, match="`test_labels` must be None when the test images are a Dataset"):
        evaluate(trained.model, SegmentationDataset(root, "test"), labels)
    with pytest.raises(ParameterError, match="`val_images` must be a Dataset"):
        evaluate(trained.model, SegmentationDataset(root, "test"), val_images=images)
    with pytest.raises(ParameterError, match="`test_labels` must be given with test image tensors"):
        evaluate(trained.model, images)
    with pytest.raises(ShapeError, match="`test_images` must hold at least one item; got an empty Dataset"):
        evaluate(trained.model, torch.utils.data.Subset(SegmentationDataset(root, "test"), []))


def test_items_are_read_ahead_in_order_and_no_further_than_asked():
    import threading
    import time

    from mstool.engine._lazy import read_items

    class Slow(torch.utils.data.Dataset):
        def __init__(self):
            self.read, self.lock = [], threading.Lock()

        def __len__(self):
            return 20

        def __getitem__(self, i):
            time.sleep(0.002 * (i % 3))  # later items often finish first
            with self.lock:
                self.read.append(i)
            return {"image": torch.full((1, 2, 2), float(i)), "mask": torch.zeros(2, 2, dtype=torch.long)}

    ds = Slow()
    items = read_items(ds, range(20), ahead=4)
    first = next(items)
    time.sleep(0.05)
    assert first[0][0, 0, 0] == 0 and len(ds.read) <= 5  # the first, and at most 4 ahead of it
    assert [int(image[0, 0, 0]) for image, _ in items] == list(range(1, 20))


def test_lazy_evaluation_on_the_accelerator_equals_the_cpu(root, trained, accel):
    import copy

    ds = {s: SegmentationDataset(root, s) for s in ("train", "val", "test")}
    runs = [evaluate(copy.deepcopy(trained.model), ds["test"], val_images=ds["val"], train_images=ds["train"],
                     device=dev, generator=torch.Generator().manual_seed(0)).metrics for dev in ("cpu", accel)]
    for key in ("val/dice", "oracle/dice", "fixed/dice", "probe/dice"):
        assert runs[1][key] == pytest.approx(runs[0][key], abs=5e-3), key
