"""Densities: hand-computed windows, border and ignore handling, Lemma 1 for samples and flips."""

from __future__ import annotations

import math

import pytest
import torch

from mstool.errors import DTypeError, ParameterError, ShapeError
from mstool.metastructure import class_onehot, density, foreground_density, normalized_density

IGN = 255


# ---------------------------------------------------------------- helpers (plain torch, no label zoo)

def sample_exact(labels: torch.Tensor, keep: float, g: torch.Generator, unlabeled: int = IGN) -> torch.Tensor:
    """Keep exactly round(keep * H * W) random pixels per image; the rest become `unlabeled`."""
    n = labels.shape[0]
    keys = torch.rand(n, labels[0].numel(), generator=g)
    rank = keys.argsort(dim=1).argsort(dim=1).view_as(labels)
    return torch.where(rank < round(keep * labels[0].numel()), labels, torch.full_like(labels, unlabeled))


def flip_exact(labels: torch.Tensor, f: float, b: float, g: torch.Generator) -> torch.Tensor:
    """Flip exactly round(f * #fg) foreground and round(b * #bg) background pixels per image."""
    flat = labels.flatten(1)
    out = flat.clone()
    for cls, frac in ((1, f), (0, b)):
        member = flat == cls
        keys = torch.where(member, torch.rand(flat.shape, generator=g), torch.full(flat.shape, 2.0))
        rank = keys.argsort(dim=1).argsort(dim=1)
        count = (member.sum(1, keepdim=True) * frac).round()
        out = torch.where(member & (rank < count), 1 - cls, out)
    return out.view_as(labels)


def reference_density(label: torch.Tensor, cls: int, r: int, *, weights=None, normalize_ignored=True):
    """Brute-force window density of one (H, W) label, for checking the separable implementation."""
    h, w = label.shape
    grid = label.tolist()
    out = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            num = den = 0.0
            for y in range(max(0, i - r), min(h, i + r + 1)):
                for x in range(max(0, j - r), min(w, j + r + 1)):
                    wt = 1.0 if weights is None else weights[abs(y - i)] * weights[abs(x - j)]
                    labelled = grid[y][x] != IGN
                    if labelled or not normalize_ignored:
                        den += wt
                    if labelled and grid[y][x] == cls:
                        num += wt
            out[i, j] = num / den if den > 0 else 0.0
    return out


@pytest.fixture
def corner() -> torch.Tensor:
    """8 x 8: a 2 x 2 foreground block in the top-left corner and one ignored pixel at (1, 2)."""
    lab = torch.zeros(1, 8, 8, dtype=torch.long)
    lab[0, :2, :2] = 1
    lab[0, 1, 2] = IGN
    return lab


# ---------------------------------------------------------------- hand-computed answers

def test_box_h1_hand_computed_border_and_ignored(corner):
    d = density(corner, bandwidth=1)
    assert d.shape == (1, 2, 8, 8) and d.dtype == torch.float32
    fg = d[0, 1]
    # (0, 0): the window is clipped to the 2 x 2 corner, all foreground.
    assert fg[0, 0] == 1.0
    # (0, 2): rows 0-1, cols 1-3 = 6 pixels, one ignored -> 5 labelled, 2 of them foreground.
    assert fg[0, 2] == pytest.approx(2 / 5)
    assert d[0, 0, 0, 2] == pytest.approx(3 / 5)
    # (1, 1): full 3 x 3 window, 1 ignored -> 8 labelled, 4 foreground.
    assert fg[1, 1] == pytest.approx(4 / 8)
    # (2, 2): rows 1-3, cols 1-3; ignored (1, 2) left out -> 8 labelled, only (1, 1) is foreground.
    assert fg[2, 2] == pytest.approx(1 / 8)
    # (1, 2) is itself ignored but still gets a density from its window: 9 - 1 labelled, fg (0,1), (1,1).
    assert fg[1, 2] == pytest.approx(2 / 8)
    assert fg[4, 4] == 0.0 and d[0, 0, 4, 4] == 1.0


def test_box_h1_ignored_counted_in_denominator(corner):
    d = density(corner, bandwidth=1, normalize_ignored=False)
    assert d[0, 1, 0, 2] == pytest.approx(2 / 6)
    assert d[0, 0, 0, 2] == pytest.approx(3 / 6)
    # Classes no longer sum to 1 where a window holds an ignored pixel.
    assert d[0, :, 0, 2].sum() == pytest.approx(5 / 6)
    assert d[0, :, 5, 5].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("normalize_ignored", [True, False])
def test_box_matches_brute_force(corner, normalize_ignored):
    for r in (1, 2, 3):
        d = density(corner, bandwidth=r, normalize_ignored=normalize_ignored)
        for cls in (0, 1):
            ref = reference_density(corner[0], cls, r, normalize_ignored=normalize_ignored)
            torch.testing.assert_close(d[0, cls].double(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.5])
def test_gaussian_matches_brute_force(corner, sigma):
    r = math.ceil(3 * sigma)
    weights = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(r + 1)]
    d = density(corner, kernel="gaussian", bandwidth=sigma)
    ref = reference_density(corner[0], 1, r, weights=weights)
    torch.testing.assert_close(d[0, 1].double(), ref, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- invariants

@pytest.mark.parametrize("kernel,h", [("box", 1), ("box", 4), ("gaussian", 1.5), ("gaussian", 3)])
def test_class_channels_sum_to_one(gen, kernel, h):
    labels = torch.randint(0, 4, (2, 32, 32), generator=gen)
    d = density(labels, kernel=kernel, bandwidth=h)
    assert d.shape == (2, 4, 32, 32)
    torch.testing.assert_close(d.sum(1), torch.ones(2, 32, 32), atol=1e-5, rtol=0)
    assert d.min() >= 0 and d.max() <= 1


@pytest.mark.parametrize("kernel,h", [("box", 0), ("box", 2), ("box", 40), ("gaussian", 0.5),
                                      ("gaussian", 2.5), ("gaussian", 30)])
def test_constant_label_has_density_one_everywhere(kernel, h):
    labels = torch.ones(1, 16, 24, dtype=torch.long)
    d = density(labels, 2, kernel=kernel, bandwidth=h)
    assert torch.equal(d[:, 1], torch.ones(1, 16, 24))
    assert torch.equal(d[:, 0], torch.zeros(1, 16, 24))


def test_box_and_gaussian_agree_on_constant_label():
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    torch.testing.assert_close(density(labels, kernel="box", bandwidth=3),
                               density(labels, kernel="gaussian", bandwidth=3))


def test_bandwidth_zero_is_onehot(gen):
    labels = torch.randint(0, 3, (2, 8, 8), generator=gen)
    labels[0, 0, 0] = IGN
    for kernel in ("box", "gaussian"):
        torch.testing.assert_close(density(labels, 3, kernel=kernel, bandwidth=0), class_onehot(labels, 3))


def test_window_without_labelled_pixels_is_zero():
    labels = torch.full((1, 8, 8), IGN, dtype=torch.long)
    labels[0, 0, 0] = 1
    d = density(labels, 2, bandwidth=1)
    assert d[0, 1, 0, 0] == 1.0 and d[0, 1, 1, 1] == 1.0
    assert torch.equal(d[0, :, 5, 5], torch.zeros(2))
    assert torch.equal(density(torch.full((1, 8, 8), IGN), 2, bandwidth=2), torch.zeros(1, 2, 8, 8))


def test_batch_split_invariance(gen):
    labels = torch.randint(0, 2, (3, 16, 16), generator=gen)
    whole = density(labels, bandwidth=2)
    parts = torch.cat([density(labels[:1], 2, bandwidth=2), density(labels[1:], 2, bandwidth=2)])
    assert torch.equal(whole, parts)


def test_empty_batch():
    d = density(torch.zeros(0, 8, 8, dtype=torch.long))
    assert d.shape == (0, 2, 8, 8) and d.dtype == torch.float32
    d = density(torch.zeros(0, 8, 8, dtype=torch.long), 3, kernel="gaussian", bandwidth=1)
    assert d.shape == (0, 3, 8, 8)


def test_num_classes_inferred_at_least_two():
    assert density(torch.zeros(1, 4, 4, dtype=torch.long)).shape[1] == 2
    assert density(torch.tensor([[[0, 3]]])).shape[1] == 4
    assert class_onehot(torch.tensor([[[0, 3, IGN]]])).shape == (1, 4, 1, 3)


# ---------------------------------------------------------------- Lemma 1: samples and flips

@pytest.mark.parametrize("unlabeled", [IGN, 0])
def test_lemma1_sampled_density_is_keep_times_clean(gen, unlabeled):
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 10:30, 8:40] = 1
    labels[:, 40:60, 30:56] = 1
    keep = 0.1
    sparse = sample_exact(labels, keep, gen, unlabeled)
    errors = []
    for h in (2, 8):
        clean = foreground_density(labels, bandwidth=h)
        noisy = foreground_density(sparse, bandwidth=h, normalize_ignored=False)
        errors.append(float((noisy - keep * clean).abs().mean()))
    assert errors[1] < errors[0] / 2
    assert errors[1] < 0.02
    # The overall scale is exactly `keep` (exact counts), up to the border weighting.
    assert float(foreground_density(sparse, bandwidth=0, normalize_ignored=False).mean()) == pytest.approx(
        keep * float(labels.float().mean()), abs=2e-3)


def _inside_outside(labels, noisy, h):
    """Mean foreground density deep inside objects and far outside them."""
    d = foreground_density(noisy, bandwidth=h)
    clean = foreground_density(labels, bandwidth=h)
    return float(d[clean == 1].mean()), float(d[clean == 0].mean())


@pytest.mark.parametrize("f,b", [(0.2, 0.1), (0.45, 0.3), (0.7, 0.4)])
def test_lemma1_flips_give_one_minus_f_inside_and_b_outside(gen, f, b):
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 4:36, 4:36] = 1
    noisy = flip_exact(labels, f, b, gen)
    inside, outside = _inside_outside(labels, noisy, h=4)
    assert inside == pytest.approx(1 - f, abs=0.03)
    assert outside == pytest.approx(b, abs=0.03)
    # The foreground/background contrast inverts exactly when 1 - f < b.
    assert (inside > outside) == (1 - f > b)


# ---------------------------------------------------------------- foreground and normalised densities

def test_foreground_density_is_channel_one(corner):
    for kernel, h in (("box", 2), ("gaussian", 1.2)):
        full = density(corner, 2, kernel=kernel, bandwidth=h, normalize_ignored=False)
        fg = foreground_density(corner, kernel=kernel, bandwidth=h, normalize_ignored=False)
        assert fg.shape == (1, 1, 8, 8)
        assert torch.equal(fg, full[:, 1:2])


def test_foreground_density_needs_binary_labels():
    with pytest.raises(ParameterError, match="class indices in 0..1"):
        foreground_density(torch.tensor([[[0, 2]]]))


def test_normalized_density_sums_to_one_and_keeps_zero_channels(gen):
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[0, 4:8, 4:8] = 1
    p = normalized_density(density(labels, bandwidth=2))
    torch.testing.assert_close(p.sum((-2, -1)), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(p[1, 1], torch.zeros(16, 16))
    assert normalized_density(torch.zeros(0, 2, 4, 4)).shape == (0, 2, 4, 4)
    with pytest.raises(DTypeError, match="floating-point"):
        normalized_density(torch.zeros(1, 2, 4, 4, dtype=torch.long))


def test_class_onehot_zeroes_ignored_pixels():
    oh = class_onehot(torch.tensor([[[0, 1, IGN, 2]]]), 3)
    assert oh.dtype == torch.float32
    assert oh[0, :, 0].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    # Without an ignore index 255 is just a large class.
    assert class_onehot(torch.tensor([[[0, 255]]]), ignore_index=None).shape[1] == 256


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs,match", [
    ({"kernel": "tophat"}, "`kernel` must be one of box, gaussian; got 'tophat'"),
    ({"bandwidth": -1}, r"`bandwidth` must be in \[0, inf\); got -1"),
    ({"bandwidth": math.inf}, r"`bandwidth` must be in \[0, inf\)"),
    ({"bandwidth": 2.5}, "whole number of pixels for the box kernel"),
    ({"num_classes": 0}, "`num_classes` must be an integer >= 1; got 0"),
    ({"num_classes": 2, "ignore_index": 1}, "`ignore_index` 1 is also a class index"),
    ({"num_classes": 1}, "class indices in 0..0"),
])
def test_density_parameter_errors(corner, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        density(corner, **kwargs)


def test_density_shape_errors():
    with pytest.raises(ShapeError, match=r"`labels` must be \(N, H, W\); got \(8, 8\)"):
        density(torch.zeros(8, 8, dtype=torch.long))
    with pytest.raises(DTypeError, match="integer tensor"):
        density(torch.zeros(1, 8, 8))
    with pytest.raises(ParameterError, match=">= 0"):
        density(torch.tensor([[[0, -1]]]))


# ---------------------------------------------------------------- device

@pytest.mark.parametrize("kernel,h", [("box", 3), ("gaussian", 2.0)])
def test_density_on_device_matches_cpu(device, gen, kernel, h):
    labels = torch.randint(0, 3, (2, 32, 32), generator=gen)
    labels[:, :4] = IGN
    cpu = density(labels, kernel=kernel, bandwidth=h)
    on = density(labels.to(device), kernel=kernel, bandwidth=h)
    assert on.device.type == device.type and on.dtype == torch.float32
    torch.testing.assert_close(on.cpu(), cpu, atol=1e-5, rtol=0)
