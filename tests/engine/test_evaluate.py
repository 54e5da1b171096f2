"""Tests of mstool.engine._evaluate: protocols, polarity, the feature probe and loading splits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from mstool.data import load_split_tensors, write_synthetic_dataset
from mstool.engine import evaluate, fit_probe, train
from mstool.errors import DataError, ParameterError, ShapeError
from mstool.io import write_image, write_mask
from mstool.models import build_model
from tests.engine import one_thread, tiny_config, tiny_data  # noqa: F401 (one_thread is a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Identity(nn.Module):
    """A stand-in network whose foreground logit is ``sign * image``, with features = the image."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.in_channels, self.num_classes, self.feature_channels, self.feature_stride = 1, 1, 1, 1
        self.scale = nn.Parameter(torch.tensor(sign))

    def features(self, x):
        return x

    def forward(self, x):
        return self.scale * x


def _ramp_data(n: int = 2, size: int = 8):
    """Images rising left to right; the right half is foreground."""
    images = torch.linspace(-1, 1, size).expand(n, 1, size, size).contiguous()
    labels = (images[:, 0] > 0).long()
    return images, labels


# -------------------------------------------------------------------------------------------- protocols
def test_protocols_on_hand_made_maps():
    images, labels = _ramp_data()
    result = evaluate(_Identity(), images, labels, val_images=images, val_labels=labels, probe=False)
    m = result.metrics
    assert m["val/dice"] == 1.0 and m["oracle/dice"] == 1.0 and m["fixed/dice"] == 1.0
    assert m["val/threshold_source"] == "validation" and m["oracle/uses_test_labels"] is True
    assert (m["n_test"], m["n_val"], m["num_classes"]) == (2, 2, 2)
    assert m["allow_inversion"] is False and m["inversion_source"] == "default" and m["label_ntm_det"] is None
    assert result.test_probs.shape == (2, 1, 8, 8)
    assert [row["protocol"] for row in result.protocols.as_rows()] == ["val", "oracle", "fixed"]
    json.dumps(m)  # JSON-friendly


def test_without_validation_the_val_protocol_is_absent():
    images, labels = _ramp_data()
    m = evaluate(_Identity(), images, labels, probe=False).metrics
    assert "val/absent" in m and m["oracle/dice"] == 1.0


def test_inverted_map_needs_inversion_chosen_on_validation():
    images, labels = _ramp_data()
    inverted = _Identity(-1.0)
    kept = evaluate(inverted, images, labels, val_images=images, val_labels=labels, probe=False).metrics
    assert kept["val/polarity"] == 1 and kept["val/dice"] < 1
    allowed = evaluate(inverted, images, labels, val_images=images, val_labels=labels, allow_inversion=True,
                       probe=False).metrics
    assert allowed["val/polarity"] == -1 and allowed["val/dice"] == 1.0
    assert allowed["val/polarity_source"] == "validation" and allowed["inversion_source"] == "argument"
    # the polarity comes from validation: a validation set that is not inverted keeps +1 on the test set
    flipped_val = evaluate(inverted, images, labels, val_images=images, val_labels=1 - labels,
                           allow_inversion=True, probe=False).metrics
    assert flipped_val["val/polarity"] == 1 and flipped_val["val/dice"] < 1


def test_inversion_follows_the_training_labels(tmp_path):
    images, labels = tiny_data(n=6, size=48)
    cfg = tiny_config(epochs=6, lr=1e-2, batch_size=3, crop=None, label_spec="flip:0.9,0.9")
    result = train(cfg, images, labels, out_dir=tmp_path)
    assert result.label_stats["inverts"]
    for source in (result.model_path, result):
        m = evaluate(source, images, labels, val_images=images, val_labels=labels, probe=False).metrics
        assert m["allow_inversion"] is True and m["inversion_source"] == "training labels"
        assert m["label_ntm_det"] < 0
        assert m["val/polarity"] == -1  # the network learned the inverted map
    clean = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path / "clean")
    m = evaluate(clean.model_path, images, labels, val_images=images, val_labels=labels, probe=False).metrics
    assert m["allow_inversion"] is False and m["inversion_source"] == "training labels"


def test_multiclass_evaluation():
    images, _ = tiny_data(n=2, size=32)
    labels = torch.bucketize(images[:, 0], torch.tensor([-0.5, 0.5]))
    net = build_model("unet", num_classes=3, options={"base": 4, "depth": 2},
                      generator=torch.Generator().manual_seed(0))
    result = evaluate(net, images, labels, val_images=images, val_labels=labels, train_images=images,
                      train_labels=labels, probe_steps=20)
    m = result.metrics
    assert m["num_classes"] == 3 and m["allow_inversion"] is False and result.protocols is None
    assert 0 <= m["argmax/miou"] <= 1 and "argmax/iou_c2" in m
    assert 0 <= m["probe/miou"] <= 1 and result.probe_probs.shape == (2, 3, 32, 32)


def test_a_network_and_test_labels_of_other_classes_are_named():
    from mstool.errors import MstoolWarning

    images, _ = tiny_data(n=2, size=32)
    three = torch.bucketize(images[:, 0], torch.tensor([-0.5, 0.5]))
    binary = build_model("unet", num_classes=2, options={"base": 4, "depth": 1},
                         generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"predicts 2 classes \(0..1\) but the test labels hold class 2"):
        evaluate(binary, images, three, probe=False)
    multi = build_model("unet", num_classes=3, options={"base": 4, "depth": 1},
                        generator=torch.Generator().manual_seed(0))
    with pytest.warns(MstoolWarning, match="predicts 3 classes but the test labels hold 0 and 1 only"):
        evaluate(multi, images, (three > 0).long(), probe=False)


# ------------------------------------------------------------------------------------------------ probe
def test_probe_reads_the_features():
    images, labels = _ramp_data(n=3, size=16)
    m = evaluate(_Identity(-1.0), images, labels, val_images=images, val_labels=labels, train_images=images,
                 train_labels=labels).metrics
    assert m["probe/dice"] == 1.0 and m["probe/protocol"] == "val" and m["probe/pixels"] == 3 * 256
    no_val = evaluate(_Identity(), images, labels, train_images=images, train_labels=labels).metrics
    assert no_val["probe/protocol"] == "fixed" and no_val["probe/dice"] == 1.0


def test_probe_absent_reasons():
    images, labels = _ramp_data()
    assert "no training images" in evaluate(_Identity(), images, labels).metrics["probe/absent"]
    plain = nn.Conv2d(1, 1, 1)
    m = evaluate(plain, images, labels, train_images=images, train_labels=labels).metrics
    assert "has no features() method" in m["probe/absent"]


def test_fit_probe_on_a_unet_is_seeded():
    images, labels = tiny_data(n=2, size=32)
    net = build_model("unet", options={"base": 4, "depth": 2}, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = fit_probe(net, images, labels, steps=30, max_pixels=500, generator=torch.Generator().manual_seed(3))
    b = fit_probe(net, images, labels, steps=30, max_pixels=500, generator=torch.Generator().manual_seed(3))
    assert a.pixels == 500 and torch.equal(a.conv.weight, b.conv.weight)
    assert not any(p.requires_grad for p in a.conv.parameters())
    assert not net.training  # the probe holds the network in eval mode ...
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # ... and leaves it unchanged


def test_fit_probe_upsamples_strided_features():
    images, labels = tiny_data(n=2, size=32)
    net = build_model("deeplabv3plus", options={"width": 8}, generator=torch.Generator().manual_seed(0))
    assert net.feature_stride > 1
    probe = fit_probe(net, images, labels, steps=10)
    assert probe(images).shape == (2, 1, 32, 32)


def test_fit_probe_errors():
    images, labels = _ramp_data()
    with pytest.raises(DataError, match="at least one labelled pixel"):
        fit_probe(_Identity(), images, torch.full_like(labels, 255))
    with pytest.raises(ParameterError, match="`steps` must be an integer >= 1"):
        fit_probe(_Identity(), images, labels, steps=0)
    with pytest.raises(ParameterError, match=r"`weight_decay` must be in \[0, inf\]; got -1"):
        fit_probe(_Identity(), images, labels, weight_decay=-1)
    with pytest.raises(ShapeError, match=r"`labels` must be \(N, H, W\)"):
        fit_probe(_Identity(), images, labels[:, :4])


# ------------------------------------------------------------------------------------------------ errors
def test_evaluate_errors():
    images, labels = _ramp_data()
    with pytest.raises(ParameterError, match="`val_images` and `val_labels` must be given together"):
        evaluate(_Identity(), images, labels, val_images=images)
    with pytest.raises(ParameterError, match="`train_images` and `train_labels` must be given together"):
        evaluate(_Identity(), images, labels, train_labels=labels)
    with pytest.raises(ParameterError, match="network was made for 2 classes"):
        evaluate(_Identity(), images, labels, num_classes=3)
    with pytest.raises(ParameterError, match="`model_or_path` must be a network"):
        evaluate(3, images, labels)
    with pytest.raises(ShapeError, match="at least one image"):
        evaluate(_Identity(), images[:0], labels[:0])
    with pytest.raises(DataError, match=r"predicts 2 classes \(0..1\) but the test labels hold class 2"):
        evaluate(_Identity(), images, labels + 1)


def test_evaluate_on_device(device):
    images, labels = _ramp_data()
    result = evaluate(_Identity(), images, labels, val_images=images, val_labels=labels, train_images=images,
                      train_labels=labels, device=device)
    assert result.metrics["val/dice"] == 1.0 and result.metrics["probe/dice"] == 1.0
    assert result.test_probs.device == images.device


# ------------------------------------------------------------------------------------------ load split
def test_load_split_tensors(tmp_path):
    root = write_synthetic_dataset(tmp_path / "er", "er", n=5, size=32, seed=0)
    images, labels, names = load_split_tensors(root, "train")
    assert images.shape[1:] == (1, 32, 32) and labels.shape == (images.shape[0], 32, 32)
    assert labels.dtype == torch.int64 and len(names) == images.shape[0]
    assert images.mean().abs() < 1e-4  # z-scored per image


def _write_pair(root, split, name, h, w):
    image = (np.arange(h * w, dtype=np.uint16).reshape(h, w) * 7) % 4096
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2, :] = 1
    write_image(root / split / "images" / f"{name}.tif", image)
    write_mask(root / split / "labels" / f"{name}.png", mask)


def test_load_split_tensors_with_mixed_sizes(tmp_path):
    _write_pair(tmp_path, "test", "a", 20, 30)
    _write_pair(tmp_path, "test", "b", 24, 26)
    with pytest.raises(DataError, match="images of 2 sizes .*fit='center'"):
        load_split_tensors(tmp_path, "test")
    images, labels, names = load_split_tensors(tmp_path, "test", fit="center")
    assert images.shape == (2, 1, 20, 26) and labels.shape == (2, 20, 26) and names == ["a", "b"]
    assert labels[1].sum() == 26 and labels[1, 10].all()  # the 24-high mask's middle row, cropped 2 rows off
    with pytest.raises(ParameterError, match="`fit` must be one of center"):
        load_split_tensors(tmp_path, "test", fit="pad")


def test_nan_metrics_stay_json_friendly():
    images, labels = _ramp_data()
    empty = torch.zeros_like(labels)
    with pytest.warns(Warning):
        m = evaluate(_Identity(), images, empty, probe=False).metrics
    assert math.isnan(m["oracle/dice"]) or m["oracle/dice"] == 0
    json.dumps(m)
