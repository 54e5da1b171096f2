"""DFC (differentiable feature clustering) and its prior pseudo-scribbles; tiny images, few iterations."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mstool.device import _cpu_bf16
from mstool.errors import DataError, DeviceError, MstoolWarning, ParameterError, ShapeError
from mstool.unsupervised._base import METHODS
from mstool.unsupervised._dfc import DFC, DFCNet, _foreground, dfc, prior_scribbles

QUICK = {"channels": 16, "layers": 2, "iterations": 30}


def zscore(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True, correction=0)).view_as(x)


def square_batch(n: int = 1, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(n, size, size, dtype=torch.long)
    truth[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return zscore(3.0 * truth[:, None].float() + 0.5 * torch.randn(n, 1, size, size, generator=g)), truth


def two_squares(seed: int = 0):
    """A bright square A, a dim square B, dark background."""
    g = torch.Generator().manual_seed(seed)
    a = torch.zeros(32, 32, dtype=torch.bool)
    a[4:14, 4:14] = True
    b = torch.zeros(32, 32, dtype=torch.bool)
    b[18:28, 18:28] = True
    x = torch.zeros(1, 1, 32, 32)
    x[..., a] = 3.0
    x[..., b] = 1.0
    return zscore(x + 0.2 * torch.randn(x.shape, generator=g)), a, b


def dice(masks: torch.Tensor, truth: torch.Tensor) -> float:
    inter = ((masks == 1) & (truth == 1)).sum().item()
    return 2 * inter / ((masks == 1).sum().item() + (truth == 1).sum().item())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_and_class_equals_function():
    assert METHODS.get("dfc") is DFC
    images, _ = square_batch()
    a = DFC(**QUICK).segment(images, generator=gen(1))
    b = dfc(images, generator=gen(1), **QUICK)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.scores, b.scores)


def test_network_shapes_and_seeded_init():
    a = DFCNet(3, channels=8, layers=3, generator=gen(0))
    b = DFCNet(3, channels=8, layers=3, generator=gen(0))
    assert a(torch.randn(2, 3, 12, 12)).shape == (2, 8, 12, 12)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in a.modules()) == 4  # 3 blocks + the 1x1 response
    assert isinstance(a.response[-1], torch.nn.BatchNorm2d)


def test_bright_square_is_found():
    images, truth = square_batch(n=2)
    seg = dfc(images, generator=gen(0), **QUICK)
    assert seg.masks.shape == (2, 32, 32) and seg.masks.dtype == torch.int64
    assert seg.scores.shape == (2, 1, 32, 32)
    assert float(seg.scores.min()) >= 0 and float(seg.scores.max()) <= 1
    assert dice(seg.masks, truth) > 0.9
    assert seg.info["rule"] == ["local", "local"]
    agree = (seg.masks.bool() == (seg.scores[:, 0] >= 0.5)).float().mean()
    assert float(agree) > 0.95


@pytest.mark.parametrize("mapping", ["local", "intensity"])
def test_dark_rule(mapping):
    images, truth = square_batch()
    seg = dfc(-images, foreground="dark", mapping=mapping, generator=gen(0), **QUICK)
    assert dice(seg.masks, truth) > 0.9 and seg.info["rule"] == [mapping]


def uneven_clusters():
    """Four clusters: a dark left background (0) with dim objects (1), a bright right background (2) with bright
    objects (3); the right background is brighter than the left objects, so no global cut separates them."""
    labels = torch.zeros(32, 64, dtype=torch.long)
    labels[:, 32:] = 2
    for y in (4, 14, 24):
        for x0, cluster in ((4, 1), (14, 1), (36, 3), (46, 3)):
            labels[y : y + 5, x0 : x0 + 5] = cluster
    level = torch.tensor([0.0, 1.0, 2.0, 3.0])
    return labels, level[labels]


@pytest.mark.parametrize("foreground", ["bright", "dark"])
def test_local_mapping_where_the_background_level_changes(foreground):
    labels, intensity = uneven_clusters()
    intensity = intensity if foreground == "bright" else -intensity
    fg, means, rule = _foreground(labels, intensity, 8, False, foreground, "local")
    assert rule == "local" and torch.nonzero(fg).flatten().tolist() == [1, 3]
    # the cluster means split globally: the bright background joins the foreground, the dim objects do not
    fg, _, rule = _foreground(labels, intensity, 8, False, foreground, "intensity")
    assert rule == "intensity" and torch.nonzero(fg).flatten().tolist() == [2, 3]
    assert sorted(means) == [0, 1, 2, 3]


def test_local_mapping_falls_back_to_the_means_without_a_split():
    labels, intensity = uneven_clusters()
    # one cluster: no vote can split it, so the cluster-means rule decides (and finds nothing to split)
    fg, _, rule = _foreground(torch.zeros_like(labels), intensity, 8, False, "bright", "local")
    assert rule == "intensity" and not bool(fg.any())
    # scribble anchors win over the mapping
    fg, _, rule = _foreground(labels, intensity, 8, True, "bright", "local")
    assert rule == "scribbles" and fg[1] and not fg[0]


def test_stops_at_the_minimum_number_of_labels():
    images, _ = square_batch()
    # a strong continuity term merges clusters quickly, so the count reaches 3 within the budget
    seg = dfc(images, generator=gen(0), channels=16, iterations=200, min_labels=3, continuity=5.0)
    steps, labels = seg.info["iterations"][0], seg.info["labels"][0]
    assert 0 < steps < 200 and labels <= 3
    # at most q clusters can exist, so min_labels = q stops before the first update
    assert dfc(images, generator=gen(0), channels=16, min_labels=16).info["iterations"] == [0]
    # without the criterion it runs the full budget
    assert dfc(images, generator=gen(0), channels=16, iterations=5, min_labels=1).info["iterations"] == [5]
    # with scribbles the label-count stop is off
    scribbles = torch.full((1, 32, 32), 255)
    scribbles[0, 16, 16], scribbles[0, 0, 0] = 1, 0
    assert dfc(images, scribbles=scribbles, generator=gen(0), channels=16, iterations=12,
               min_labels=16).info["iterations"] == [12]


def test_precision_is_recorded_and_bf16_trains_in_bfloat16():
    images, truth = square_batch()
    default = dfc(images, generator=gen(2), **QUICK)
    fp32 = dfc(images, generator=gen(2), precision="fp32", **QUICK)
    assert default.info["precision"] == fp32.info["precision"] == "fp32"  # auto on the CPU
    assert torch.equal(default.scores, fp32.scores)
    with pytest.warns(MstoolWarning) if not _cpu_bf16() else contextlib.nullcontext():
        bf16 = dfc(images, generator=gen(2), precision="bf16", **QUICK)
    assert bf16.info["precision"] == "bf16"
    assert not torch.equal(bf16.scores, fp32.scores)  # the updates ran in bfloat16
    assert dice(bf16.masks, truth) > 0.9


def test_same_generator_same_result():
    images, _ = square_batch()
    a, b = dfc(images, generator=gen(4), **QUICK), dfc(images, generator=gen(4), **QUICK)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("b_label", [0, 1])
def test_scribbles_are_followed(b_label):
    x, a, b = two_squares()
    scribbles = torch.full((1, 32, 32), 255)
    scribbles[0, 6:12:2, 6:12:2] = 1
    scribbles[0, 20:26:2, 20:26:2] = b_label
    scribbles[0, 0:32:6, 0] = 0
    scribbles[0, 31, 0:32:6] = 0
    seg = dfc(x, scribbles=scribbles, generator=gen(0), channels=16, iterations=50)
    m = seg.masks[0].bool()
    assert seg.info["rule"] == ["scribbles"]
    assert seg.info["scribbled"] == [[int((scribbles == 0).sum()), int((scribbles == 1).sum())]]
    assert float(m[a].float().mean()) > 0.9
    assert float(m[~(a | b)].float().mean()) < 0.15
    assert float(m[b].float().mean()) == pytest.approx(b_label, abs=0.1)


def test_prior_becomes_pseudo_scribbles():
    x, a, b = two_squares()
    prior = (a | b).float()[None, None]
    seg = dfc(x, prior=prior, generator=gen(2), channels=16, iterations=50, prior_keep=0.2)
    expected = prior_scribbles(prior, keep=0.2, generator=gen(2))
    assert seg.info["scribbled"] == [[int((expected == 0).sum()), int((expected == 1).sum())]]
    assert seg.info["rule"] == ["scribbles"]
    m = seg.masks[0].bool()
    assert float(m[a].float().mean()) > 0.9 and float(m[b].float().mean()) > 0.9  # the dim square joins
    assert float(m[~(a | b)].float().mean()) < 0.1


def test_given_scribbles_win_over_the_prior():
    x, a, b = two_squares()
    scribbles = torch.full((1, 32, 32), 255)
    scribbles[0, b] = 0
    prior = b.float()[None, None]  # the prior says B is foreground, the scribbles say it is not
    seg = dfc(x, scribbles=scribbles, prior=prior, generator=gen(0), channels=16, iterations=30,
              prior_keep=1.0)
    assert seg.info["scribbled"][0][1] == 0


# --------------------------------------------------------------------------------------- pseudo-scribbles
def test_prior_scribbles_hand_computed():
    prior = torch.zeros(1, 1, 4, 4)
    prior[..., :2, :] = torch.arange(8.0).view(2, 4) + 1
    out = prior_scribbles(prior, top=0.25, bottom=0.5, keep=1.0)
    assert out.dtype == torch.int64
    assert out[0].tolist() == [[255, 255, 255, 255], [255, 255, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    # a small `bottom` still takes every zero-density pixel (ties at the cut are included)
    assert int((prior_scribbles(prior, bottom=0.1, keep=1.0) == 0).sum()) == 8


def test_prior_scribbles_fractions_and_sampling():
    prior = torch.rand(2, 1, 40, 40, generator=gen(10))
    all_of_them = prior_scribbles(prior, top=0.1, bottom=0.2, keep=1.0)
    assert (all_of_them == 1).sum((1, 2)).tolist() == [160, 160]
    assert (all_of_them == 0).sum((1, 2)).tolist() == [320, 320]
    sampled = prior_scribbles(prior, top=0.1, bottom=0.2, keep=0.25, generator=gen(0))
    assert bool(((sampled != 255) <= (all_of_them != 255)).all())  # a subset
    assert bool((sampled[sampled != 255] == all_of_them[sampled != 255]).all())
    assert 0.15 < float((sampled != 255).sum() / (all_of_them != 255).sum()) < 0.35
    assert torch.equal(sampled, prior_scribbles(prior, top=0.1, bottom=0.2, keep=0.25, generator=gen(0)))
    assert bool((prior_scribbles(prior, keep=0.0) == 255).all())
    assert bool((prior_scribbles(prior * 50, keep=1.0) == all_of_them).all())  # only the order matters


def test_prior_scribbles_leave_unknown_pixels_unlabelled():
    prior = torch.rand(1, 1, 40, 40, generator=gen(10))
    partial = prior.clone()
    partial[..., 20:, :] = float("nan")
    out = prior_scribbles(partial, top=0.1, bottom=0.2, keep=1.0)
    assert bool((out[0, 20:] == 255).all())
    # on the known half: the same rule as for a prior of that half alone
    assert torch.equal(out[:, :20], prior_scribbles(prior[..., :20, :], top=0.1, bottom=0.2, keep=1.0))
    assert bool((prior_scribbles(torch.full((1, 1, 8, 8), float("nan")), keep=1.0) == 255).all())


def test_prior_scribbles_degenerate_priors():
    assert bool((prior_scribbles(torch.full((1, 1, 8, 8), 0.3), keep=1.0) == 255).all())  # constant: no info
    empty = prior_scribbles(torch.zeros(1, 1, 8, 8), keep=1.0)
    assert bool((empty == 0).all())  # zero density everywhere: all background, no foreground
    assert prior_scribbles(torch.zeros(0, 1, 8, 8)).shape == (0, 8, 8)


# ------------------------------------------------------------------------------------- degenerate, device
def test_constant_image_gives_empty_mask_and_warns():
    images, truth = square_batch(n=2)
    images[0] = 0.0
    with pytest.warns(MstoolWarning, match="image 0 is constant"):
        seg = dfc(images, generator=gen(0), **QUICK)
    assert int(seg.masks[0].sum()) == 0 and int(seg.scores[0].count_nonzero()) == 0
    assert seg.info["iterations"][0] == 0 and seg.info["rule"][0] == "constant"
    assert dice(seg.masks[1:], truth[1:]) > 0.9


def test_empty_batch():
    seg = dfc(torch.zeros(0, 1, 8, 8), **QUICK)
    assert seg.masks.shape == (0, 8, 8) and seg.scores.shape == (0, 1, 8, 8)


def test_runs_on_the_device(device):
    images, truth = square_batch()
    seg = dfc(images.to(device), generator=gen(0), **QUICK)
    assert seg.masks.device.type == device.type and seg.scores.device.type == device.type
    assert dice(seg.masks.cpu(), truth) > 0.9


def test_works_under_no_grad():
    images, truth = square_batch()
    with torch.no_grad():
        seg = dfc(images, generator=gen(0), **QUICK)
    assert dice(seg.masks, truth) > 0.9


# ------------------------------------------------------------------------------------------- large images
def test_tiled_equals_untiled_when_the_image_fits_one_tile():
    images, _ = square_batch(n=2)
    runs = [dfc(images, generator=gen(3), tile=tile, **QUICK) for tile in (None, 32, 512)]
    for other in runs[1:]:
        assert torch.equal(other.masks, runs[0].masks) and torch.equal(other.scores, runs[0].scores)
        assert other.info == runs[0].info


def test_windowed_response_equals_the_whole_image_training_response():
    from mstool.unsupervised._dfc import _whole_image_statistics, _windows

    net = DFCNet(2, channels=6, layers=3, generator=gen(0))
    for m in net.modules():  # batch norms with a non-trivial affine part
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 2.0, generator=gen(1))
            torch.nn.init.uniform_(m.bias, -1.0, 1.0, generator=gen(2))
    x = torch.randn(1, 2, 37, 29, generator=gen(3))
    with torch.no_grad():
        whole = net.train()(x)
    _whole_image_statistics(net, x, 16)
    assert not net.response[-1].training
    tiled = _windows(net, x, 16, lambda r: r)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, rtol=0, atol=1e-4)


def test_tiled_image_trains_on_crops():
    images, truth = square_batch(n=1, size=64)
    seg = dfc(images, generator=gen(0), tile=32, **QUICK)
    assert seg.masks.shape == (1, 64, 64) and 0 < seg.info["iterations"][0] <= 30
    assert dice(seg.masks, truth) > 0.9
    assert float(seg.scores.min()) >= 0 and float(seg.scores.max()) <= 1
    # scribbles in one corner only: most crops hold none, and their loss must stay finite
    scribbles = torch.full((1, 64, 64), 255)
    scribbles[0, 20, 20], scribbles[0, 2, 2] = 1, 0
    seg = dfc(images, scribbles=scribbles, generator=gen(0), tile=16, channels=8, iterations=10)
    assert seg.info["iterations"] == [10] and bool(torch.isfinite(seg.scores).all())


def test_crop_trains_on_crops_and_reads_the_whole_image():
    images, truth = square_batch(n=2, size=64)
    cropped = dfc(images, generator=gen(0), crop=32, **QUICK)
    # the same crops as a 32-pixel tile draws, read in one window instead of four: the same clusters
    tiled = dfc(images, generator=gen(0), tile=32, **QUICK)
    assert torch.equal(cropped.masks, tiled.masks) and cropped.info == tiled.info
    assert torch.allclose(cropped.scores, tiled.scores, rtol=0, atol=1e-5)
    assert dice(cropped.masks, truth) > 0.9
    assert torch.equal(dfc(images, generator=gen(0), crop=32, tile=None, **QUICK).masks, cropped.masks)
    # a crop no smaller than the image is the whole image, bit for bit
    whole, big = (dfc(images, generator=gen(0), crop=crop, **QUICK) for crop in (None, 64))
    assert torch.equal(whole.masks, big.masks) and torch.equal(whole.scores, big.scores)
    assert not torch.equal(whole.scores, cropped.scores)


def test_a_1024_image_goes_through_in_tiles():
    x = torch.randn(1, 1, 1024, 1024, generator=gen(0))
    x[..., 200:500, 300:700] += 4.0
    # one update: only a strong continuity term smooths the pixel noise in a single step
    seg = dfc(zscore(x), generator=gen(0), tile=256, crop=None, channels=4, layers=1, iterations=1, continuity=5.0)
    assert seg.masks.shape == (1, 1024, 1024) and seg.info["iterations"] == [1]
    truth = torch.zeros(1, 1024, 1024, dtype=torch.long)
    truth[:, 200:500, 300:700] = 1
    assert dice(seg.masks, truth) > 0.9


def test_progress_reports_every_update_in_order():
    images, _ = square_batch(n=2)
    events = []
    seg = DFC(channels=16, iterations=4, min_labels=1).segment(images, generator=gen(0), progress=events.append)
    assert [(e["index"], e["round"]) for e in events] == [(i, r) for i in (0, 1) for r in (1, 2, 3, 4)]
    assert {e["event"] for e in events} == {"round"} and events[0]["rounds"] == 4 and events[0]["images"] == 2
    assert seg.info["iterations"] == [4, 4]


# ---------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, error, match", [
    (lambda: DFC(channels=1), ParameterError, "`channels` must be an integer >= 2"),
    (lambda: DFC(layers=0), ParameterError, "`layers` must be an integer >= 1"),
    (lambda: DFC(min_labels=0), ParameterError, "`min_labels` must be an integer >= 1"),
    (lambda: DFC(iterations=-1), ParameterError, "`iterations` must be an integer >= 0"),
    (lambda: DFC(lr=0), ParameterError, "`lr` must be in"),
    (lambda: DFC(momentum=1.0), ParameterError, "`momentum` must be in"),
    (lambda: DFC(continuity=-1), ParameterError, "`continuity` must be in"),
    (lambda: DFC(scribble_continuity=-1), ParameterError, "`scribble_continuity` must be in"),
    (lambda: DFC(scribble_weight=-1), ParameterError, "`scribble_weight` must be in"),
    (lambda: DFC(foreground="left"), ParameterError, "`foreground` must be one of"),
    (lambda: DFC(mapping="otsu"), ParameterError, "`mapping` must be one of local, intensity"),
    (lambda: dfc(torch.randn(1, 1, 8, 8), mapping="vote"), ParameterError, "`mapping` must be one of"),
    (lambda: DFC(prior_keep=2), ParameterError, "`prior_keep` must be in"),
    (lambda: DFC(tile=8), ParameterError, "`tile` must be an integer >= 16"),
    (lambda: DFC(crop=8), ParameterError, "`crop` must be an integer >= 16"),
    (lambda: DFC(precision="half"), ParameterError, "`precision` must be one of auto, fp32, bf16, fp16"),
    (lambda: dfc(torch.randn(1, 1, 8, 8), precision="fp16"), DeviceError, "'fp16' needs a CUDA device"),
    (lambda: prior_scribbles(torch.ones(1, 1, 4, 4), top=1.5), ParameterError, "`top` must be in"),
    (lambda: prior_scribbles(torch.ones(1, 4, 4)), ShapeError, "`prior` must be"),
    (lambda: prior_scribbles(-torch.ones(1, 1, 4, 4)), DataError, "non-negative"),
    (lambda: dfc(torch.zeros(1, 1, 8, 8), scribbles=torch.full((1, 8, 8), 2)), ParameterError,
     "`scribbles` must hold class indices in 0..1 or 255"),
    (lambda: dfc(torch.zeros(1, 1, 8, 8), scribbles=torch.zeros(1, 4, 4, dtype=torch.long)), ShapeError,
     "`scribbles` must be"),
    (lambda: dfc(torch.zeros(1, 8, 8)), ShapeError, "`images` must be"),
])
def test_bad_options_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()
