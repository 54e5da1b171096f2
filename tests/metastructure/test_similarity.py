"""Meta-structure similarity: Pearson correlation and total variation of densities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mstool.errors import DTypeError, ParameterError, ShapeError
from mstool.metastructure import MetaSimilarity, density, density_similarity, meta_similarity

IGN = 255


def sample_exact(labels: torch.Tensor, keep: float, g: torch.Generator) -> torch.Tensor:
    """Keep exactly round(keep * H * W) random pixels per image; the rest are ignored."""
    keys = torch.rand(labels.shape[0], labels[0].numel(), generator=g)
    rank = keys.argsort(dim=1).argsort(dim=1).view_as(labels)
    return torch.where(rank < round(keep * labels[0].numel()), labels, torch.full_like(labels, IGN))


def dilate(labels: torch.Tensor, r: int) -> torch.Tensor:
    return F.max_pool2d(labels[:, None].float(), 2 * r + 1, stride=1, padding=r)[:, 0].long()


def blobs(n: int = 2) -> torch.Tensor:
    labels = torch.zeros(n, 64, 64, dtype=torch.long)
    labels[:, 10:30, 8:40] = 1
    labels[:, 40:60, 30:56] = 1
    return labels


def blob_and_thin_lines(n: int = 2) -> torch.Tensor:
    """A block on the left and 1-pixel lines, some of them 2 pixels apart, on the right and bottom."""
    labels = torch.zeros(n, 64, 64, dtype=torch.long)
    labels[:, 8:40, 6:30] = 1
    for col in (36, 38, 40, 48, 56, 60):
        labels[:, :, col] = 1
    for row in (48, 52, 56):
        labels[:, row, :32] = 1
    return labels


# ---------------------------------------------------------------- meta_similarity

def test_identical_labels_correlate_perfectly():
    labels = blob_and_thin_lines()
    s = meta_similarity(labels, labels)
    assert isinstance(s, MetaSimilarity)
    assert s.pearson.shape == s.tv.shape == (2, 3)
    assert s.bandwidths == (2.0, 4.0, 8.0)
    torch.testing.assert_close(s.pearson, torch.ones(2, 3))
    torch.testing.assert_close(s.tv, torch.zeros(2, 3))
    means = s.mean()
    assert set(means) == {"pearson_h2", "tv_h2", "pearson_h4", "tv_h4", "pearson_h8", "tv_h8"}
    assert means["pearson_h8"] == pytest.approx(1.0) and means["tv_h2"] == pytest.approx(0.0)


def test_sampled_label_keeps_meta_structure(gen):
    labels = blobs()
    sparse = sample_exact(labels, 0.1, gen)
    s = meta_similarity(labels, sparse, bandwidths=(2, 8))
    assert (s.pearson[:, 1] > 0.9).all()
    # A wider window averages the sampling noise away (Lemma 1).
    assert (s.pearson[:, 1] > s.pearson[:, 0]).all()
    assert (s.tv[:, 1] < s.tv[:, 0]).all()


def test_dilation_of_thin_structures_moves_meta_structure_more_than_sampling(gen):
    labels = blob_and_thin_lines()
    sampled = meta_similarity(labels, sample_exact(labels, 0.1, gen), bandwidths=(8,))
    dilated = meta_similarity(labels, dilate(labels, 3), bandwidths=(8,))
    assert (dilated.pearson < sampled.pearson - 0.3).all()
    assert (dilated.tv > sampled.tv + 0.05).all()


def test_independent_random_labels_do_not_correlate(gen):
    a = (torch.rand(4, 64, 64, generator=gen) < 0.5).long()
    b = (torch.rand(4, 64, 64, generator=gen) < 0.5).long()
    s = meta_similarity(a, b, bandwidths=(1, 2))
    assert s.pearson.abs().mean() < 0.1
    assert s.pearson.abs().max() < 0.2


def test_classes_all_includes_background():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[:, 4:8, 4:8] = 1
    other = torch.zeros(1, 16, 16, dtype=torch.long)
    other[:, 8:12, 8:12] = 1
    fg = meta_similarity(labels, other, bandwidths=(2,))
    both = meta_similarity(labels, other, bandwidths=(2,), classes="all")
    # For two classes the densities are complements, so the correlations agree; the TV differs.
    torch.testing.assert_close(fg.pearson, both.pearson)
    assert both.tv.item() < fg.tv.item()


def test_multiclass_foreground_leaves_background_out(gen):
    a = torch.randint(0, 3, (2, 16, 16), generator=gen)
    s = meta_similarity(a, a, bandwidths=(1,))
    torch.testing.assert_close(s.pearson, torch.ones(2, 1))


def test_absent_class_is_nan_and_left_out_of_means():
    empty = torch.zeros(2, 16, 16, dtype=torch.long)
    some = empty.clone()
    some[1, 2:6, 2:6] = 1
    s = meta_similarity(empty, some, bandwidths=(2,))
    # Image 0: foreground absent from both -> NaN; image 1: absent from one -> pearson NaN, tv 1.
    assert math.isnan(s.pearson[0, 0]) and math.isnan(s.tv[0, 0])
    assert math.isnan(s.pearson[1, 0]) and s.tv[1, 0] == 1.0
    assert s.mean()["tv_h2"] == 1.0
    assert math.isnan(s.mean()["pearson_h2"])


def test_empty_batch():
    z = torch.zeros(0, 8, 8, dtype=torch.long)
    s = meta_similarity(z, z, bandwidths=(1, 2))
    assert s.pearson.shape == (0, 2) and s.tv.shape == (0, 2)
    assert all(math.isnan(v) for v in s.mean().values())


def test_batch_split_invariance(gen):
    a = torch.randint(0, 2, (3, 16, 16), generator=gen)
    b = torch.randint(0, 2, (3, 16, 16), generator=gen)
    whole = meta_similarity(a, b, bandwidths=(1, 3))
    parts = [meta_similarity(a[i:i + 1], b[i:i + 1], bandwidths=(1, 3)) for i in range(3)]
    assert torch.equal(whole.pearson, torch.cat([p.pearson for p in parts]))
    assert torch.equal(whole.tv, torch.cat([p.tv for p in parts]))


def test_gaussian_kernel_and_fractional_bandwidths(gen):
    labels = blobs(1)
    s = meta_similarity(labels, sample_exact(labels, 0.3, gen), kernel="gaussian", bandwidths=(1.5, 4.5))
    assert s.bandwidths == (1.5, 4.5)
    assert set(s.mean()) == {"pearson_h1.5", "tv_h1.5", "pearson_h4.5", "tv_h4.5"}
    assert s.pearson[0, 1] > s.pearson[0, 0] > 0.5


@pytest.mark.parametrize("kwargs,err,match", [
    ({"classes": "some"}, ParameterError, "`classes` must be one of foreground, all; got 'some'"),
    ({"bandwidths": ()}, ParameterError, "`bandwidths` must be a non-empty sequence"),
    ({"bandwidths": 4}, ParameterError, "`bandwidths` must be a non-empty sequence"),
    ({"bandwidths": (2, 2.5)}, ParameterError, "whole number of pixels"),
    ({"num_classes": 1, "ignore_index": None}, ParameterError, "class indices in 0..0"),
])
def test_meta_similarity_errors(kwargs, err, match):
    labels = blobs(1)
    with pytest.raises(err, match=match):
        meta_similarity(labels, labels, **kwargs)


def test_meta_similarity_shape_errors():
    with pytest.raises(ShapeError, match=r"one shape; got \(1, 8, 8\) and \(1, 8, 9\)"):
        meta_similarity(torch.zeros(1, 8, 8, dtype=torch.long), torch.zeros(1, 8, 9, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"`b_labels` must be \(N, H, W\); got \(8, 8\)"):
        meta_similarity(torch.zeros(1, 8, 8, dtype=torch.long), torch.zeros(8, 8, dtype=torch.long))
    with pytest.raises(DTypeError, match="`a_labels` must be an integer tensor"):
        meta_similarity(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ParameterError, match="'foreground' needs num_classes >= 2"):
        z = torch.zeros(1, 8, 8, dtype=torch.long)
        meta_similarity(z, z, 1)


# ---------------------------------------------------------------- density_similarity

def test_density_similarity_is_scale_free_and_hand_checked():
    a = torch.tensor([[[[0.0, 1.0, 2.0, 3.0]]]])
    r, tv = density_similarity(a, 0.25 * a)
    assert r.shape == tv.shape == (1, 1)
    assert r.item() == pytest.approx(1.0) and tv.item() == pytest.approx(0.0, abs=1e-7)
    r, tv = density_similarity(a, a.flip(-1))
    assert r.item() == pytest.approx(-1.0)
    # p = (0, 1, 2, 3) / 6, q = (3, 2, 1, 0) / 6: 0.5 * (3 + 1 + 1 + 3) / 6.
    assert tv.item() == pytest.approx(4 / 6)


def test_density_similarity_constant_and_empty_channels():
    a = torch.tensor([[[[0.0, 1.0]], [[0.5, 0.5]], [[0.0, 0.0]]]])
    b = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])
    r, tv = density_similarity(a, b)
    assert r[0, 0].item() == pytest.approx(-1.0) and tv[0, 0].item() == pytest.approx(1.0)
    assert math.isnan(r[0, 1]) and tv[0, 1] == 1.0
    assert math.isnan(r[0, 2]) and math.isnan(tv[0, 2])


def test_density_similarity_errors():
    with pytest.raises(ShapeError, match="`da` and `db` must have one shape"):
        density_similarity(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ShapeError, match=r"`db` must be \(N, C, H, W\)"):
        density_similarity(torch.zeros(1, 2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(DTypeError, match="floating-point"):
        density_similarity(torch.zeros(1, 2, 4, 4, dtype=torch.long), torch.zeros(1, 2, 4, 4))


def test_meta_similarity_uses_density(gen):
    a = torch.randint(0, 2, (2, 16, 16), generator=gen)
    b = torch.randint(0, 2, (2, 16, 16), generator=gen)
    r, tv = density_similarity(density(a, 2, bandwidth=2)[:, 1:], density(b, 2, bandwidth=2)[:, 1:])
    s = meta_similarity(a, b, bandwidths=(2,))
    torch.testing.assert_close(s.pearson[:, 0], r[:, 0])
    torch.testing.assert_close(s.tv[:, 0], tv[:, 0])


# ---------------------------------------------------------------- device

def test_meta_similarity_on_device_matches_cpu(device, gen):
    a = blob_and_thin_lines()
    b = sample_exact(a, 0.2, gen)
    cpu = meta_similarity(a, b)
    on = meta_similarity(a.to(device), b.to(device))
    assert on.pearson.device.type == device.type
    torch.testing.assert_close(on.pearson.cpu(), cpu.pearson, atol=1e-4, rtol=0)
    torch.testing.assert_close(on.tv.cpu(), cpu.tv, atol=1e-4, rtol=0)
