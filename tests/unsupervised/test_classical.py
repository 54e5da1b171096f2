"""Classical baselines: Otsu, minimum-error threshold, multi-Otsu, local threshold, k-means, Gaussian mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.filters import threshold_multiotsu, threshold_otsu

from mstool.data import synthesize
from mstool.errors import DataError, DTypeError, MstoolWarning, ParameterError, ShapeError
from mstool.io import normalize_image
from mstool.unsupervised._base import METHODS, Segmentation
from mstool.unsupervised._classical import (
    GaussianMixture,
    KMeans,
    LocalThreshold,
    MinimumError,
    MultiOtsu,
    Otsu,
    foreground_clusters,
    gmm,
    kmeans,
    local_threshold,
    minimum_error,
    minimum_error_thresholds,
    multiotsu,
    otsu,
    otsu_thresholds,
    pixel_features,
)

BINARY = ["otsu", "minerror", "local", "kmeans", "gmm"]
TWO_CLASS = {"otsu": {}, "minerror": {}, "local": {}, "kmeans": {}, "gmm": {}, "multiotsu": {"classes": 2}}


def zscore(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True, correction=0)).view_as(x)


def square_batch(n: int = 2, size: int = 48, seed: int = 0, level: float = 3.0):
    """Bright noisy squares on a dark background, z-scored; returns images (N,1,H,W) and the square mask (N,H,W)."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(n, size, size, dtype=torch.long)
    lo, hi = size // 3, 2 * size // 3
    truth[:, lo:hi, lo:hi] = 1
    x = level * truth[:, None].float() + 0.3 * torch.randn(n, 1, size, size, generator=g)
    return zscore(x), truth


def dice(masks: torch.Tensor, truth: torch.Tensor) -> float:
    inter = ((masks == 1) & (truth == 1)).sum().item()
    return 2 * inter / ((masks == 1).sum().item() + (truth == 1).sum().item())


def run(name: str, images: torch.Tensor, seed: int = 0, **options) -> Segmentation:
    return METHODS.get(name)(**options).segment(images, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ registry
def test_registry_names():
    for name, cls in [("otsu", Otsu), ("minerror", MinimumError), ("multiotsu", MultiOtsu),
                      ("local", LocalThreshold), ("kmeans", KMeans), ("gmm", GaussianMixture)]:
        assert METHODS.get(name) is cls


# ------------------------------------------------------------------------------------- separation, polarity
@pytest.mark.parametrize("name", BINARY)
def test_bright_square_is_found(name):
    images, truth = square_batch()
    seg = run(name, images)
    assert seg.masks.shape == truth.shape and seg.masks.dtype == torch.int64
    assert seg.scores.shape == (2, 1, 48, 48)
    assert float(seg.scores.min()) >= 0 and float(seg.scores.max()) <= 1
    assert dice(seg.masks, truth) > 0.9


@pytest.mark.parametrize("name", BINARY)
def test_dark_rule_finds_a_dark_square(name):
    images, truth = square_batch()
    assert dice(run(name, -images, foreground="dark").masks, truth) > 0.9
    # the bright rule on the inverted image finds the background; auto sees the dark object
    assert dice(run(name, -images, foreground="bright").masks, truth) < 0.1
    assert dice(run(name, -images).masks, truth) > 0.9


@pytest.mark.parametrize("name", ["otsu", "minerror", "local"])
def test_dark_on_inverted_equals_bright(name):
    images, _ = square_batch()
    bright, dark = run(name, images), run(name, -images, foreground="dark")
    assert torch.equal(bright.masks, dark.masks)
    assert torch.allclose(bright.scores, dark.scores)


def test_synthetic_nuclei_are_separated():
    data = synthesize("nuc", 2, 48, generator=torch.Generator().manual_seed(0))
    images = torch.stack([normalize_image(im[0].numpy()) for im in data.images])
    assert dice(otsu(images).masks, data.labels) > 0.7


# ---------------------------------------------------------------------------------------------- Otsu pieces
@pytest.mark.parametrize("classes", [2, 3, 4])
def test_otsu_thresholds_agree_with_scikit_image(classes):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 24, 24, generator=g) + 3 * (torch.rand(3, 24, 24, generator=g) > 0.6)
    x = x + 2 * (torch.rand(3, 24, 24, generator=g) > 0.8)
    t = otsu_thresholds(x, classes=classes)
    ref = [np.atleast_1d(threshold_otsu(a.numpy()) if classes == 2 else threshold_multiotsu(a.numpy(), classes=classes))
           for a in x]
    np.testing.assert_allclose(t.numpy(), np.stack(ref), atol=1e-5)


def test_otsu_thresholds_hand_computed_and_constant():
    assert otsu_thresholds(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), bins=2).tolist() == [[0.25]]
    assert otsu_thresholds(torch.full((1, 5), 2.0), classes=3).tolist() == [[2.0, 2.0]]


def test_otsu_scores_are_monotone_and_match_masks():
    images, _ = square_batch()
    seg = otsu(images)
    assert torch.equal(seg.masks.bool(), seg.scores[:, 0] >= 0.5)
    order = images[0, 0].flatten().argsort()
    assert bool((seg.scores[0, 0].flatten()[order].diff() >= 0).all())
    t = seg.info["threshold"]
    assert len(t) == 2 and seg.info["rule"] == "otsu"
    assert torch.equal(seg.masks[0].bool(), images[0, 0] > t[0])


def test_multiotsu_orders_classes_by_intensity():
    g = torch.Generator().manual_seed(0)
    levels = torch.arange(3).repeat_interleave(12 * 36 // 3).view(1, 12, 36)[:, :, :].clone()
    x = zscore(levels[:, None].float() * 4 + 0.3 * torch.randn(1, 1, 12, 36, generator=g))
    seg = multiotsu(x, classes=3)
    assert torch.equal(seg.masks, levels)
    assert seg.scores.shape == (1, 3, 12, 36)
    assert torch.equal(seg.scores.sum(1), torch.ones(1, 12, 36))
    assert torch.equal(seg.scores.argmax(1), seg.masks)
    t = seg.info["thresholds"][0]
    assert len(t) == 2 and t[0] < t[1]
    assert MultiOtsu(classes=3).segment(x).masks.equal(seg.masks)


def test_multiotsu_two_classes_equals_otsu():
    images, _ = square_batch()
    assert torch.equal(multiotsu(images, classes=2).masks, otsu(images).masks)


# ----------------------------------------------------------------------------------- local threshold details
def test_local_offset_and_window():
    images, truth = square_batch(size=64)
    loose = local_threshold(images, offset=-0.5)
    strict = local_threshold(images, offset=1.0)
    assert int(strict.masks.sum()) < int(loose.masks.sum())
    assert torch.equal(loose.masks.bool(), loose.scores[:, 0] >= 0.5)
    box = local_threshold(images, kind="mean", block_size=31)
    assert box.info["kind"] == "mean" and dice(box.masks, truth) > 0.8


def discs(radius: int, size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four bright noisy discs of ``radius`` on a dark background, z-scored, and their mask."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = [(size // 4, size // 4), (size // 4, 3 * size // 4), (3 * size // 4, size // 4),
               (3 * size // 4, 3 * size // 4)]
    truth = torch.zeros(size, size, dtype=torch.bool)
    for cy, cx in centres:
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    x = 2.0 * truth.float() + 0.5 * torch.randn(size, size, generator=g)
    return zscore(x[None, None]), truth[None].long()


def test_local_auto_window_follows_the_objects():
    thin = torch.zeros(1, 1, 64, 64)
    thin[..., 8:56:8, 4:60] = 1.0  # lines two pixels apart in width terms: a narrow window
    wide, truth = discs(radius=20)
    a, b = local_threshold(thin), local_threshold(wide)
    assert a.info["block_rule"] == b.info["block_rule"] == "auto"
    assert a.info["block_size"] < 51 < b.info["block_size"] <= 2 * 128 - 1
    assert b.info["block_size"] == 2 * round(10 * b.info["object_width"] / 2) + 1 or b.info["block_size"] == 255
    assert b.info["block_size"] % 2 == 1
    # a fixed 51-pixel window compares the middle of a 40-pixel disc with itself and loses it
    assert dice(b.masks, truth) > 0.9 > 0.8 > dice(local_threshold(wide, block_size=51).masks, truth)
    given = local_threshold(wide, block_size=31)
    assert given.info["block_rule"] == "given" and given.info["block_size"] == 31
    assert "object_width" not in given.info


def test_local_auto_window_is_capped_and_has_a_fallback():
    images, truth = square_batch(size=48)  # one wide square: its width alone would ask for a 1000-pixel window
    seg = local_threshold(images)
    assert seg.info["block_size"] == 95 and dice(seg.masks, truth) > 0.9
    with pytest.warns(MstoolWarning, match="constant"):
        flat = local_threshold(torch.zeros(2, 1, 16, 16))
    assert flat.info["block_size"] == 51 and flat.info["object_width"] == float("inf")
    assert LocalThreshold().block_size == "auto"


def test_local_handles_a_window_larger_than_the_image():
    images, truth = square_batch(size=16)
    assert dice(local_threshold(images, block_size=101, offset=1.0).masks, truth) > 0.9


# --------------------------------------------------------------------------------------- clustering details
def test_kmeans_three_clusters_use_otsu_of_cluster_means():
    g = torch.Generator().manual_seed(0)
    levels = torch.zeros(1, 16, 16)
    levels[:, :, 8:12] = 1.0
    levels[:, :, 12:] = 6.0
    x = zscore((levels + 0.1 * torch.randn(1, 16, 16, generator=g))[:, None])
    seg = kmeans(x, clusters=3, init="quantile")
    assert len(seg.info["foreground_clusters"][0]) == 1
    assert torch.equal(seg.masks[0], (levels[0] == 6).long())
    means = seg.info["cluster_means"][0]
    assert max(means) == means[seg.info["foreground_clusters"][0][0]]


def test_kmeans_scores_agree_with_masks():
    images, _ = square_batch()
    seg = kmeans(images, generator=torch.Generator().manual_seed(0))
    agree = (seg.masks.bool() == (seg.scores[:, 0] >= 0.5)).float().mean()
    assert float(agree) > 0.99
    assert 1 <= seg.info["iterations"] <= 30


def test_kmeans_features_change_the_features_used():
    images, truth = square_batch()
    seg = kmeans(images, smooth=1.0, position=0.5, init="quantile")
    assert dice(seg.masks, truth) > 0.9


def test_foreground_clusters_rule():
    means = torch.tensor([[0.0, 5.0, 0.2, 4.0], [0.0, 5.0, 0.2, 4.0]])
    sizes = torch.tensor([[10, 3, 10, 3], [10, 3, 0, 0]])
    assert foreground_clusters(means, sizes).tolist() == [[False, True, False, True], [False, True, False, False]]
    assert foreground_clusters(means, sizes, "dark").tolist() == [[True, False, True, False],
                                                                   [True, False, False, False]]
    # one non-empty cluster, or equal means: nothing to split
    assert not foreground_clusters(torch.tensor([[1.0, 9.0]]), torch.tensor([[5, 0]])).any()
    assert not foreground_clusters(torch.tensor([[1.0, 1.0]]), torch.tensor([[5, 5]])).any()


def test_pixel_features_columns():
    images = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    assert pixel_features(images).shape == (2, 24, 3)
    f = pixel_features(images, smooth=1.0, position=2.0)
    assert f.shape == (2, 24, 8)
    assert torch.equal(f[..., :3], images.flatten(2).transpose(1, 2))
    assert float(f[..., 3:6].std()) < float(f[..., :3].std())  # the smoothed channels
    assert float(f[..., 6:8].max()) == pytest.approx(2.0 * 5 / 6)  # coordinates: longer side spans `position`
    assert f[0, 7, 6:].tolist() == pytest.approx([2.0 * 1 / 6, 2.0 * 1 / 6])  # pixel 7 is (y=1, x=1)


# ---------------------------------------------------------------------------------- determinism, invariance
@pytest.mark.parametrize("name", ["kmeans", "gmm"])
def test_same_generator_same_result(name):
    images, _ = square_batch()
    a, b = run(name, images, seed=3), run(name, images, seed=3)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("name, options", [("otsu", {}), ("multiotsu", {}), ("local", {}),
                                           ("kmeans", {"init": "quantile"})])
def test_batched_equals_per_image(name, options):
    images, _ = square_batch(n=3)
    whole = run(name, images, **options)
    for i in range(3):
        one = run(name, images[i : i + 1], **options)
        assert torch.equal(one.masks[0], whole.masks[i])
        assert torch.allclose(one.scores[0], whole.scores[i], atol=1e-6)


@pytest.mark.parametrize("name", TWO_CLASS)
def test_runs_on_the_device(name, device):
    images, truth = square_batch()
    seg = run(name, images.to(device), **TWO_CLASS[name])
    assert seg.masks.device.type == device.type and seg.scores.device.type == device.type
    assert dice(seg.masks.cpu(), truth) > 0.9


# ---------------------------------------------------------------------------------------- degenerate input
@pytest.mark.parametrize("name", TWO_CLASS)
def test_constant_image_gives_empty_mask_and_warns(name):
    images, truth = square_batch()
    images[1] = 0.0
    with pytest.warns(MstoolWarning, match="image 1 is constant"):
        seg = run(name, images, **TWO_CLASS[name])
    assert int(seg.masks[1].sum()) == 0
    assert dice(seg.masks[:1], truth[:1]) > 0.9
    if name == "multiotsu":
        assert torch.equal(seg.scores[1, 0], torch.ones(48, 48))
    else:
        assert int(seg.scores[1].count_nonzero()) == 0


@pytest.mark.parametrize("name", TWO_CLASS)
def test_empty_batch(name):
    seg = run(name, torch.zeros(0, 1, 8, 8))
    assert seg.masks.shape == (0, 8, 8)
    assert seg.scores.shape[0] == 0 and seg.scores.shape[2:] == (8, 8)


# ----------------------------------------------------------------------------------------------------- prior
@pytest.mark.parametrize("name", ["otsu", "local"])
def test_prior_sets_the_foreground_fraction(name):
    images, truth = square_batch(size=40)
    prior = torch.zeros(2, 1, 40, 40)
    prior[0, :, :10] = 1.0  # expected fraction 0.25
    prior[1] = 0.6
    seg = METHODS.get(name)().segment(images, prior=prior)
    fraction = seg.masks.float().mean((1, 2))
    assert fraction.tolist() == pytest.approx([0.25, 0.6], abs=0.01)
    assert seg.info["rule"] == "prior_fraction" and seg.info["fraction"] == pytest.approx([0.25, 0.6])
    assert torch.equal(seg.masks.bool(), seg.scores[:, 0] >= 0.5)
    # the prior only moves the cut: the mask is still the brightest part
    inside = seg.masks[1][truth[1] == 1].float().mean()
    assert float(inside) > 0.95


def test_prior_fraction_extremes_and_clipping():
    images, _ = square_batch()
    full = otsu(images, prior=torch.ones(2, 1, 48, 48))
    assert bool(full.masks.all())
    empty = otsu(images, prior=torch.zeros(2, 1, 48, 48))
    assert not bool(empty.masks.any())
    with pytest.warns(MstoolWarning, match="above 1"):
        clipped = otsu(images, prior=torch.full((2, 1, 48, 48), 3.0))
    assert bool(clipped.masks.all())


def ramp_image(seed: int = 0):
    """A bright square A and a ramp C from background to foreground level: C's boundary is a matter of prior."""
    g = torch.Generator().manual_seed(seed)
    a = torch.zeros(40, 40, dtype=torch.bool)
    a[2:17, 2:17] = True
    c = torch.zeros(40, 40, dtype=torch.bool)
    c[24:34, 4:36] = True
    x = torch.zeros(1, 1, 40, 40)
    x[..., a] = 2.0
    x[0, 0, 24:34, 4:36] = torch.linspace(0, 2, 32)
    return zscore(x + 0.05 * torch.randn(x.shape, generator=g)), a, c


@pytest.mark.parametrize("name", ["kmeans", "gmm"])
def test_prior_odds_move_the_boundary_in_the_expected_direction(name):
    x, a, c = ramp_image()
    method = METHODS.get(name)()
    fractions = []
    for level in (0.1, 0.5, 0.9):
        prior = torch.full((1, 1, 40, 40), 0.1)
        prior[..., a] = 0.9
        prior[..., c] = level
        seg = method.segment(x, prior=prior, generator=torch.Generator().manual_seed(0))
        assert seg.info["rule"] == "prior_odds"
        assert torch.equal(seg.masks.bool(), seg.scores[:, 0] >= 0.5)
        assert float(seg.masks[0][a].float().mean()) > 0.95  # clear evidence is not overruled
        assert float(seg.masks[0][~(a | c)].float().mean()) < 0.05
        fractions.append(float(seg.masks[0][c].float().mean()))
    assert fractions[0] < fractions[1] < fractions[2]


def test_kmeans_uninformative_prior_changes_nothing():
    x, _, _ = ramp_image()
    plain = kmeans(x, generator=torch.Generator().manual_seed(0))
    flat = kmeans(x, prior=torch.full((1, 1, 40, 40), 0.5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.masks, flat.masks)  # two equal-weight clusters: odds 1:1 is what they assumed
    assert torch.allclose(plain.scores, flat.scores, atol=1e-5)


def test_prior_clip_bounds_the_prior():
    x, a, _ = ramp_image()
    zero = torch.zeros(1, 1, 40, 40)
    clipped = kmeans(x, prior=zero, generator=torch.Generator().manual_seed(0))
    assert float(clipped.masks[0][a].float().mean()) > 0.95  # a clipped prior of 0.01 does not erase A
    hard = kmeans(x, prior=zero, prior_clip=0.0, generator=torch.Generator().manual_seed(0))
    assert int(hard.masks.sum()) == 0  # an unclipped 0 forbids foreground


@pytest.mark.parametrize("name", ["otsu", "minerror", "local"])
def test_unknown_prior_pixels_are_left_out_of_the_fraction(name):
    images, _ = square_batch(size=40)
    half = torch.full((2, 1, 40, 40), float("nan"))
    half[..., :20] = 0.3  # known on the top half, where the expected fraction is 0.3
    method = METHODS.get(name)()
    seg = method.segment(images, prior=half)
    assert torch.equal(seg.masks, method.segment(images, prior=torch.full((2, 1, 40, 40), 0.3)).masks)
    assert seg.info["fraction"] == pytest.approx([0.3, 0.3])
    # an image the prior knows nothing of keeps the method's own rule, and its fraction is recorded as None
    half[1] = float("nan")
    mixed = method.segment(images, prior=half)
    assert torch.equal(mixed.masks[1], method.segment(images).masks[1])
    assert torch.equal(mixed.masks[0], seg.masks[0]) and mixed.info["fraction"][1] is None


@pytest.mark.parametrize("name", ["kmeans", "gmm"])
def test_unknown_prior_pixels_keep_the_clusterings_posterior(name):
    x, a, c = ramp_image()
    method = METHODS.get(name)()
    plain = method.segment(x, generator=torch.Generator().manual_seed(0))
    prior = torch.full((1, 1, 40, 40), float("nan"))
    prior[..., c] = 0.9  # known on the ramp only
    seg = method.segment(x, prior=prior, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(seg.scores[..., ~c], plain.scores[..., ~c], atol=1e-5)
    assert float(seg.masks[0][c].float().mean()) > float(plain.masks[0][c].float().mean())


def test_multiotsu_ignores_a_prior_with_a_warning():
    images, _ = square_batch()
    with pytest.warns(MstoolWarning, match="does not use a prior"):
        seg = MultiOtsu().segment(images, prior=torch.rand(2, 1, 48, 48))
    assert torch.equal(seg.masks, multiotsu(images).masks)


# ---------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, error, match", [
    (lambda: Otsu(foreground="middle"), ParameterError, "`foreground` must be one of auto, bright, dark"),
    (lambda: Otsu(bins=1), ParameterError, "`bins` must be an integer >= 2"),
    (lambda: MultiOtsu(classes=1), ParameterError, "`classes` must be an integer >= 2"),
    (lambda: otsu_thresholds(torch.zeros(1, 4), classes=5, bins=4), ParameterError, "`bins` must be an integer >= 5"),
    (lambda: LocalThreshold(block_size=10), ParameterError, "`block_size` must be odd"),
    (lambda: LocalThreshold(block_size=1), ParameterError, "`block_size` must be an integer >= 3"),
    (lambda: LocalThreshold(block_size="wide"), ParameterError, "`block_size` must be 'auto' or an odd integer"),
    (lambda: LocalThreshold(kind="median"), ParameterError, "`kind` must be one of gaussian, mean"),
    (lambda: KMeans(clusters=1), ParameterError, "`clusters` must be an integer >= 2"),
    (lambda: KMeans(init="random"), ParameterError, "`init` must be one of"),
    (lambda: KMeans(smooth=-1), ParameterError, "`smooth` must be in"),
    (lambda: KMeans(iterations=0), ParameterError, "`iterations` must be an integer >= 1"),
    (lambda: KMeans(prior_clip=0.5), ParameterError, r"`prior_clip` must be in \[0, 0.5\)"),
    (lambda: GaussianMixture(covariance="round"), ParameterError, "`covariance` must be one of"),
    (lambda: GaussianMixture(clusters=3, max_samples=2), ParameterError, "`max_samples` must be an integer >= 3"),
    (lambda: otsu(torch.zeros(8, 8)), ShapeError, "`images` must be"),
    (lambda: otsu(torch.zeros(1, 1, 8, 8), prior=torch.zeros(1, 1, 4, 4)), ShapeError, "must match"),
    (lambda: kmeans(torch.zeros(1, 1, 8, 8), prior=-torch.ones(1, 1, 8, 8)), DataError, "non-negative"),
    (lambda: kmeans(torch.zeros(1, 1, 8, 8), prior=torch.full((1, 1, 8, 8), float("inf"))), DataError, "infinite"),
    (lambda: gmm(torch.zeros(1, 1, 8, 8, dtype=torch.long)), DTypeError, "floating-point"),
])
def test_bad_options_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_class_equals_function():
    images, _ = square_batch()
    assert torch.equal(Otsu(bins=64).segment(images).masks, otsu(images, bins=64).masks)
    assert torch.equal(LocalThreshold(block_size=21, offset=0.2).segment(images).scores,
                       local_threshold(images, block_size=21, offset=0.2).scores)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(KMeans(clusters=3).segment(images, generator=g1).scores,
                       kmeans(images, clusters=3, generator=g2).scores)


# ------------------------------------------------------------------------------------------- minimum error
def _minimum_error_reference(v: np.ndarray, bins: int = 256, guard: bool = True) -> float:
    """Kittler-Illingworth's criterion evaluated threshold by threshold (a loop, float64) between the means of
    scikit-image's Otsu classes, for comparison."""
    counts, edges = np.histogram(v, bins)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    split = centres <= threshold_otsu(v, nbins=bins)
    lowest = (counts * centres)[split].sum() / counts[split].sum()
    highest = (counts * centres)[~split].sum() / counts[~split].sum()
    best, best_t = np.inf, None
    for j in range(bins - 1):
        if guard and not lowest <= centres[j] <= highest:
            continue
        parts = [(counts[: j + 1], centres[: j + 1]), (counts[j + 1:], centres[j + 1:])]
        if any(c.sum() == 0 for c, _ in parts):
            continue
        crit = 0.0
        for c, x in parts:
            p = c.sum() / counts.sum()
            mean = (c * x).sum() / c.sum()
            var = (c * (x - mean) ** 2).sum() / c.sum() + width ** 2 / 12
            crit += 0.5 * p * np.log(var) - p * np.log(p)
        if crit < best:
            best, best_t = crit, centres[j]
    return best_t


def test_minimum_error_thresholds_agree_with_a_loop_over_thresholds():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 30, 30, generator=g, dtype=torch.float64)
    x = x + (3 + torch.rand(4, 1, 1, generator=g, dtype=torch.float64)) * (torch.rand(4, 30, 30, generator=g) > 0.8)
    t = minimum_error_thresholds(x, bins=64)
    ref = [_minimum_error_reference(a.numpy(), bins=64) for a in x]
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-9)
    assert minimum_error_thresholds(torch.full((1, 5), 2.0)).tolist() == [2.0]


def test_minimum_error_stays_between_the_otsu_class_means():
    """A few saturated pixels (one very bright nucleus, as on a real DSB tile) make the unrestricted criterion split
    the foreground; the threshold is kept between the means of Otsu's two classes."""
    g = torch.Generator().manual_seed(0)
    u = torch.rand(16384, generator=g, dtype=torch.float64)
    x = torch.where(u < 0.8, 0.45 * torch.randn(16384, generator=g, dtype=torch.float64),
                    torch.where(u < 0.997, 1.2 + 0.6 * torch.randn(16384, generator=g, dtype=torch.float64),
                                8.5 + 0.15 * torch.randn(16384, generator=g, dtype=torch.float64)))
    t = float(minimum_error_thresholds(x[None]))
    split = x <= float(otsu_thresholds(x[None]))
    bin_width = float(x.max() - x.min()) / 256  # the class means are taken over bin centres
    assert float(x[split].mean()) - bin_width <= t <= float(x[~split].mean()) + bin_width
    assert t == pytest.approx(_minimum_error_reference(x.numpy()), abs=1e-9)
    assert _minimum_error_reference(x.numpy(), guard=False) > float(x[~split].mean())  # what the guard prevents


def test_minimum_error_keeps_a_rare_wide_class_that_otsu_cuts():
    """Two classes of unequal spread and share: the minimum-error rule misclassifies fewer pixels than Otsu's."""
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(1, 64, 64, generator=g) < 0.15
    x = torch.where(truth, 2.5 + 0.8 * torch.randn(1, 64, 64, generator=g), 0.2 * torch.randn(1, 64, 64, generator=g))
    images = zscore(x[:, None])
    errors = {name: int((run(name, images, foreground="bright").masks.bool() != truth).sum())
              for name in ("otsu", "minerror")}
    assert errors["minerror"] < 0.6 * errors["otsu"], errors
    seg = minimum_error(images)
    assert seg.info["rule"] == "minimum_error"
    assert torch.equal(seg.masks.bool(), seg.scores[:, 0] >= 0.5)
    assert torch.equal(seg.masks[0].bool(), images[0, 0] > seg.info["threshold"][0])
    assert torch.equal(MinimumError(bins=64).segment(images).masks, minimum_error(images, bins=64).masks)


# ------------------------------------------------------------------------------------------------ polarity
@pytest.mark.parametrize(("kind", "side"), [("nuc", "bright"), ("er", "bright"), ("mito", "bright"), ("em", "dark")])
def test_auto_polarity_on_every_kind_and_turned_over(kind, side):
    """The auto rule: bright nuclei, ER and mitochondria, dark EM membranes; turned over, the other side."""
    from mstool.unsupervised import choose_foreground

    other = {"bright": "dark", "dark": "bright"}[side]
    for invert, expect in ((False, side), (True, other)):
        data = synthesize(kind, 6, 96, invert=invert, generator=torch.Generator().manual_seed(3))
        images = torch.stack([normalize_image(im[0].numpy()) for im in data.images])
        got, info = choose_foreground(images)
        assert got == expect, info
        assert info["foreground_votes"][expect] >= 5 and info["foreground_rule"] == "auto"
        assert f"the foreground {expect}" in info["foreground_reason"]


def test_auto_polarity_finds_dark_walls_between_cells_of_varied_tone():
    """Cells whose tones differ as much as the walls differ from them: the whole image's histogram has no single
    background mode (the rule on it, used until 2026-12-07, tied 2 to 2 here and said bright); the residual from
    the local median still leans to the walls' side."""
    from mstool.unsupervised import choose_foreground

    g = torch.Generator().manual_seed(0)
    cell, k = 24, 4
    tones = 0.45 + 0.55 * torch.rand(4, 1, k, k, generator=g)
    x = tones.repeat_interleave(cell, 2).repeat_interleave(cell, 3)
    wall = (torch.arange(cell * k) % cell) < 3
    x = torch.where(wall[:, None] | wall[None, :], torch.tensor(0.15), x) + 0.03 * torch.randn(x.shape, generator=g)
    side, info = choose_foreground(x)
    assert side == "dark" and info["foreground_votes"] == {"dark": 4, "bright": 0}, info
    assert choose_foreground(-x)[0] == "bright"
    with pytest.raises(ParameterError, match="`window` must be odd"):
        choose_foreground(x, window=16)
    # a large image is read on a strided grid of window centres (600 x 600: every third pixel), same side
    big = x[:1].repeat(1, 1, 7, 7)[:, :, :600, :600]
    assert choose_foreground(big)[0] == "dark" and choose_foreground(-big)[0] == "bright"


@pytest.mark.parametrize(("name", "side"), [("coins", "bright"), ("text", "dark"), ("page", "dark"),
                                             ("microaneurysms", "dark"), ("retina", "dark")])
def test_auto_polarity_on_real_images_bundled_with_scikit_image(name, side):
    """Real images whose foreground side is known: bright coins; dark text (page: on an uneven background); dark
    vessels of a fundus photograph (its green channel; the histogram-mode rule used until 2026-12-07 said bright)."""
    from skimage import data

    from mstool.unsupervised import choose_foreground

    image = getattr(data, name)()
    image = image[..., 1] if image.ndim == 3 else image
    x = torch.from_numpy(image.astype(np.float32))[None, None]
    assert choose_foreground(x)[0] == side
    assert choose_foreground(x.amax() - x)[0] == {"bright": "dark", "dark": "bright"}[side]


def test_auto_polarity_without_structure_is_bright():
    from mstool.unsupervised import choose_foreground

    side, info = choose_foreground(torch.ones(2, 1, 8, 8))
    assert side == "bright" and info["foreground_votes"] == {"dark": 0, "bright": 0}
    assert choose_foreground(torch.zeros(0, 1, 8, 8))[0] == "bright"


@pytest.mark.parametrize("name", BINARY)
def test_every_binary_method_records_the_side_and_why(name):
    images, truth = square_batch()
    for given in ("bright", "dark", "auto"):
        info = run(name, images, foreground=given).info
        assert info["foreground"] in ("bright", "dark")
        assert info["foreground_rule"] == ("auto" if given == "auto" else "given")
    assert run(name, -images).info["foreground"] == "dark" and "foreground_reason" in run(name, -images).info


def test_auto_finds_em_membranes():
    data = synthesize("em", 4, 128, generator=torch.Generator().manual_seed(0))
    images = torch.stack([normalize_image(im[0].numpy()) for im in data.images])
    auto = Otsu().segment(images)
    assert auto.info["foreground"] == "dark"
    assert torch.equal(auto.masks, Otsu(foreground="dark").segment(images).masks)
    assert dice(auto.masks, data.labels) > 0.6 > dice(Otsu(foreground="bright").segment(images).masks, data.labels)


def test_every_method_declares_what_it_is_and_takes_the_same_keywords():
    """One interface: each registry entry says whether it is deterministic, binary, learned and takes scribbles,
    and every segment() takes prior, generator, labels and progress."""
    import inspect

    from mstool.unsupervised import METHODS

    declared = {name: (cls.deterministic, cls.binary, cls.learned, cls.scribbles)
                for name, cls in ((n, METHODS.get(n)) for n in METHODS.names())}
    assert declared == {"otsu": (True, True, False, False), "minerror": (True, True, False, False),
                        "multiotsu": (True, False, False, False),
                        "local": (True, True, False, False), "kmeans": (False, True, False, False),
                        "gmm": (False, True, False, False), "dfc": (False, True, True, True),
                        "igtt": (False, True, True, True)}
    for name in METHODS.names():
        params = inspect.signature(METHODS.get(name).segment).parameters
        assert {"prior", "generator", "labels", "progress"} <= set(params), name
        assert ("scribbles" in params) == METHODS.get(name).scribbles, name
