"""Tests for mstool.data.synthetic: built-in synthetic fluorescence micrographs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mstool.data import synthetic
from mstool.data.synthetic import SYNTH_KINDS, Synthetic, render, synth_kinds, synthesize
from mstool.errors import DeviceError, MstoolWarning, ParameterError, ShapeError

KINDS = ["er", "mito", "nuc", "shapes", "em"]
BINARY = ["er", "mito", "nuc"]  # bright foreground, density exactly on the labels


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _measured_snr(data: Synthetic) -> float:
    """Mean over images of (mean fg - mean bg) / noise std, the noise estimated from horizontal neighbour
    differences at least 3 px away from any foreground (so that blurred edges do not count as noise)."""
    ratios = []
    for img, lab in zip(data.images[:, 0], data.labels, strict=True):
        fg = lab != 0
        contrast = (img[fg].mean() - img[~fg].mean()).abs()
        near = F.max_pool2d(fg[None, None].float(), 7, stride=1, padding=3)[0, 0] > 0
        far = ~near[:, 1:] & ~near[:, :-1]
        diff = (img[:, 1:] - img[:, :-1])[far]
        ratios.append(float(contrast / diff.pow(2).mean().div(2).sqrt()))
    return sum(ratios) / len(ratios)


def test_kinds_are_registered():
    assert synth_kinds() == KINDS
    assert list(SYNTH_KINDS) == KINDS
    for kind in KINDS:
        assert SYNTH_KINDS.get(kind).classes[0] == "background"


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtypes_and_ranges(kind):
    data = synthesize(kind, 2, 64, generator=_gen(0))
    assert isinstance(data, Synthetic)
    assert data.images.shape == (2, 1, 64, 64) and data.images.dtype == torch.float32
    assert data.labels.shape == (2, 64, 64) and data.labels.dtype == torch.int64
    assert torch.equal(data.images, data.images.round())
    assert data.images.min() >= 0 and data.images.max() <= 65535
    assert data.labels.min() >= 0 and data.labels.max() < len(data.classes)
    assert data.classes == SYNTH_KINDS.get(kind).classes


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_other_seed_differs(kind):
    a = synthesize(kind, 2, 64, generator=_gen(7))
    b = synthesize(kind, 2, 64, generator=_gen(7))
    c = synthesize(kind, 2, 64, generator=_gen(8))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels) and not torch.equal(a.images, c.images)


def test_images_in_a_batch_differ():
    data = synthesize("nuc", 2, 64, generator=_gen(0))
    assert not torch.equal(data.labels[0], data.labels[1])


def test_no_generator_still_works():
    data = synthesize("mito", 1, 32)
    assert data.images.shape == (1, 1, 32, 32)


@pytest.mark.parametrize(("kind", "low", "high"), [
    ("er", 0.10, 0.30), ("mito", 0.05, 0.20), ("nuc", 0.12, 0.45), ("shapes", 0.08, 0.45), ("em", 0.12, 0.30),
])
def test_foreground_fraction_is_plausible(kind, low, high):
    data = synthesize(kind, 4, 96, generator=_gen(1))
    fraction = (data.labels != 0).float().mean().item()
    assert low <= fraction <= high


def test_shapes_has_all_classes():
    data = synthesize("shapes", 4, 64, generator=_gen(0))
    assert data.classes == ("background", "disc", "rectangle", "triangle", "ring")
    assert data.labels.unique().tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", BINARY)
def test_binary_labels_mark_the_density_exactly(kind):
    labels, density = SYNTH_KINDS.get(kind)(2, 64, 64, _gen(3))
    assert labels.dtype == torch.int64 and density.shape == (2, 1, 64, 64)
    assert torch.equal(labels == 1, density[:, 0] > 0)
    assert labels.unique().tolist() == [0, 1]


def test_em_membranes_are_dark_and_organelles_are_as_dark_but_not_membrane():
    labels, density = SYNTH_KINDS.get("em")(2, 128, 128, _gen(3))
    d, membrane = density[:, 0], labels == 1
    assert labels.unique().tolist() == [0, 1]
    assert d[membrane].max() < 0.4 and d[~membrane].median() > 0.7
    dark_inside = (~membrane) & (d < 0.5)  # organelles: membrane-dark pixels that are background
    assert 0.01 < float(dark_inside.float().mean()) < 0.15
    data = synthesize("em", 2, 96, generator=_gen(2))
    img = data.images[:, 0]
    assert img[data.labels == 1].mean() < img[data.labels == 0].mean()


@pytest.mark.parametrize("kind", ["nuc", "em"])
def test_invert_turns_intensities_over_and_keeps_labels(kind):
    plain = synthesize(kind, 2, 64, generator=_gen(4))
    turned = synthesize(kind, 2, 64, invert=True, generator=_gen(4))
    assert torch.equal(plain.labels, turned.labels)
    lo, hi = plain.images.amin((2, 3), keepdim=True), plain.images.amax((2, 3), keepdim=True)
    assert torch.equal(turned.images, lo + hi - plain.images)
    fg = plain.labels[:, None] == 1
    bright = plain.images[fg].mean() > plain.images[~fg].mean()
    assert bool(turned.images[fg].mean() > turned.images[~fg].mean()) != bool(bright)


def test_shapes_density_is_class_specific():
    labels, density = SYNTH_KINDS.get("shapes")(2, 64, 64, _gen(3))
    d = density[:, 0]
    assert torch.all(d[labels == 1] == 1.1)
    assert torch.all(d[labels == 4] == 0.85)
    assert d[labels == 0].max() < d[labels > 0].min()


@pytest.mark.parametrize("kind", BINARY)
def test_foreground_is_brighter(kind):
    data = synthesize(kind, 2, 64, snr=4.0, generator=_gen(2))
    img, fg = data.images[:, 0], data.labels == 1
    assert img[fg].mean() > img[~fg].mean() + 2 * img[~fg].std() / math.sqrt(4.0)


def test_shapes_class_means_differ():
    data = synthesize("shapes", 3, 128, snr=30.0, generator=_gen(0))
    img, labels = data.images[:, 0], data.labels
    # Per-image contrast units take out the per-image photon scale: background 0, mean foreground 1.
    bg = torch.stack([im[lab == 0].mean() for im, lab in zip(img, labels, strict=True)])[:, None, None]
    fg = torch.stack([im[lab != 0].mean() for im, lab in zip(img, labels, strict=True)])[:, None, None]
    z = (img - bg) / (fg - bg)
    means = torch.stack([z[labels == k].mean() for k in range(5)])
    ordered = means[[0, 3, 2, 4, 1]]  # background < triangle < rectangle < ring < disc
    assert (ordered.diff() > 0.1).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("snr", [3.0, 12.0])
def test_measured_snr_matches_request(kind, snr):
    data = synthesize(kind, 4, 64, snr=snr, generator=_gen(4))
    assert snr / 1.5 <= _measured_snr(data) <= snr * 1.5


def test_higher_snr_is_cleaner():
    low = _measured_snr(synthesize("nuc", 2, 64, snr=2.0, generator=_gen(5)))
    high = _measured_snr(synthesize("nuc", 2, 64, snr=20.0, generator=_gen(5)))
    assert high > 4 * low


@pytest.mark.parametrize("kind", KINDS)
def test_empty_batch(kind):
    data = synthesize(kind, 0, (40, 56), generator=_gen(0))
    assert data.images.shape == (0, 1, 40, 56) and data.images.dtype == torch.float32
    assert data.labels.shape == (0, 40, 56) and data.labels.dtype == torch.int64
    assert data.classes == SYNTH_KINDS.get(kind).classes


@pytest.mark.parametrize("kind", KINDS)
def test_non_square_and_minimum_size(kind):
    data = synthesize(kind, 1, (48, 80), generator=_gen(0))
    assert data.images.shape == (1, 1, 48, 80) and data.labels.shape == (1, 48, 80)
    data = synthesize(kind, 1, 32, generator=_gen(0))
    assert data.images.shape == (1, 1, 32, 32)


def test_chunked_generation(monkeypatch):
    monkeypatch.setattr(synthetic, "_CHUNK_PIXELS", 32 * 32)
    a = synthesize("er", 3, 32, generator=_gen(0))
    b = synthesize("er", 3, 32, generator=_gen(0))
    assert a.images.shape == (3, 1, 32, 32) and torch.equal(a.images, b.images)
    assert not torch.equal(a.labels[0], a.labels[1])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"kind": "golgi"}, ParameterError, "unknown synthetic kind 'golgi'; choose one of: er, mito, nuc, sh"),
    ({"kind": 3}, ParameterError, "`kind` must be a string"),
    ({"n": -1}, ParameterError, "`n` must be an integer >= 0; got -1"),
    ({"n": 2.0}, ParameterError, r"`n` must be an integer >= 0; got 2.0 \(float\)"),
    ({"n": True}, ParameterError, r"`n` must be an integer >= 0; got True \(bool\)"),
    ({"size": 31}, ParameterError, "`size` must be at least 32"),
    ({"size": (64, 16)}, ParameterError, "`size` must be at least 32"),
    ({"size": (64,)}, ParameterError, r"`size` must be an integer or a pair \(H, W\)"),
    ({"size": 64.0}, ParameterError, r"`size` must be an integer or a pair \(H, W\)"),
    ({"snr": 0.0}, ParameterError, r"`snr` must be in \(0, inf\); got 0"),
    ({"snr": -2.0}, ParameterError, r"`snr` must be in \(0, inf\)"),
    ({"snr": float("nan")}, ParameterError, "`snr` must be in"),
    ({"snr": float("inf")}, ParameterError, "`snr` must be in"),
    ({"generator": 0}, ParameterError, "`generator` must be a CPU torch.Generator"),
    ({"device": "tpu9"}, ParameterError, "`device` must be"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"kind": "er", "n": 1, "size": 32} | kwargs
    kind, n, size = args.pop("kind"), args.pop("n"), args.pop("size")
    with pytest.raises(error, match=match):
        synthesize(kind, n, size, **args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_missing_cuda_device():
    with pytest.raises(DeviceError, match="no CUDA device"):
        synthesize("er", 1, 32, device="cuda")


@pytest.mark.parametrize("kind", KINDS)
def test_device_gives_the_cpu_result(kind, device):
    on_cpu = synthesize(kind, 2, 48, generator=_gen(11))
    on_dev = synthesize(kind, 2, 48, generator=_gen(11), device=device)
    assert on_dev.images.device.type == device.type and on_dev.labels.device.type == device.type
    assert torch.equal(on_dev.labels.cpu(), on_cpu.labels)
    assert torch.equal(on_dev.images.cpu(), on_cpu.images)


def test_saturation_warns():
    with pytest.warns(MstoolWarning, match="saturated at 65535"):
        data = synthesize("nuc", 1, 32, snr=5000.0, generator=_gen(0))
    assert data.images.max() == 65535


# render ---------------------------------------------------------------------------------------------------


def test_render_square():
    density = torch.zeros(2, 1, 32, 32)
    density[..., 8:24, 8:24] = 1.0
    img = render(density, density[:, 0] > 0, snr=10.0, generator=_gen(0))
    assert img.shape == (2, 1, 32, 32) and img.dtype == torch.float32
    assert torch.equal(img, img.round()) and img.min() >= 0
    assert (img[..., 12:20, 12:20].mean() > img[..., :4, :4].mean())


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_render_without_foreground_or_background(fill):
    density = torch.full((1, 1, 32, 32), fill)
    img = render(density, density[:, 0] > 0, snr=5.0, generator=_gen(0))
    assert torch.isfinite(img).all() and img.min() >= 0


def test_render_empty_batch():
    img = render(torch.zeros(0, 1, 32, 32), torch.zeros(0, 32, 32, dtype=torch.bool), generator=_gen(0))
    assert img.shape == (0, 1, 32, 32)


def test_render_follows_device(device):
    density = torch.rand(1, 1, 32, 32, generator=_gen(1))
    fg = density[:, 0] > 0.5
    on_cpu = render(density, fg, generator=_gen(0))
    on_dev = render(density.to(device), fg.to(device), generator=_gen(0))
    assert on_dev.device.type == device.type
    assert torch.equal(on_dev.cpu(), on_cpu)


def test_render_bad_arguments():
    with pytest.raises(ShapeError, match=r"`density` must be \(N, 1, H, W\)"):
        render(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32))
    with pytest.raises(ParameterError, match="`foreground` must be"):
        render(torch.zeros(1, 1, 32, 32), torch.zeros(1, 32, 16))
    with pytest.raises(ParameterError, match="`snr` must be in"):
        render(torch.zeros(1, 1, 32, 32), torch.zeros(1, 32, 32), snr=-1)
