"""Tests of the label-noise zoo (mstool.labels._zoo)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.morphology import dilation, disk, erosion

from mstool.errors import DTypeError, ParameterError, ShapeError
from mstool.labels import TAXONOMY
from mstool.labels._morphology import skeletonize
from mstool.labels._spec import apply_spec
from mstool.labels._zoo import (
    _KEY_BITS,
    LABEL_ZOO,
    _check_labels,
    _random_subset,
    _smallest_per_group,
    dilate_labels,
    erode_labels,
    flip_by_matrix,
    flip_labels,
    markov_labels,
    object_labels,
    pair_flip_labels,
    random_labels,
    region_labels,
    sample_labels,
    scribble_labels,
    shift_labels,
    skeleton_labels,
    symmetric_flip_labels,
    translate_labels,
)

IGNORE = 255

# One example spec per zoo entry; test_every_entry_has_an_example keeps it complete.
EXAMPLES = {
    "clean": "clean",
    "sample": "sample:0.3",
    "flip": "flip:0.2,0.1",
    "pairflip": "pairflip:0.3",
    "scribble": "scribble:0.5",
    "dilate": "dilate:1",
    "erode": "erode:1",
    "skeleton": "skeleton",
    "translate": "translate:2,-1",
    "shift": "shift:1",
    "markov": "markov:4,0.5,0.3,0.05",
    "random": "random:0.4",
    "objects": "objects:0.5",
    "region": "region:0.25",
}
BINARY_ONLY = {"flip"}  # flip:f,b; the one-argument flip covers K classes


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(n: int = 2, size: int = 32, seed: int = 0, classes: int = 2) -> torch.Tensor:
    """``n`` label maps with a few random rectangles of classes ``1..classes-1`` on background 0."""
    g = gen(seed)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in range(1, classes):
            for _ in range(2):
                y, x = torch.randint(0, size - size // 4, (2,), generator=g).tolist()
                h, w = torch.randint(size // 8, size // 3, (2,), generator=g).tolist()
                labels[i, y : y + h, x : x + w] = c
    return labels


def bands(n: int = 4, size: int = 96, classes: int = 4) -> torch.Tensor:
    """``n`` maps of ``classes`` vertical bands of equal width, rolled by a different amount per image."""
    band = torch.arange(size) * classes // size
    return torch.stack([band.roll(7 * i).expand(size, size) for i in range(n)]).contiguous()


def with_ignore(labels: torch.Tensor) -> torch.Tensor:
    """A copy with a 255 band (a row and a column) through every image."""
    out = labels.clone()
    out[:, 5, :] = IGNORE
    out[:, :, 9] = IGNORE
    return out


def ntm(clean: torch.Tensor, noisy: torch.Tensor, k: int) -> torch.Tensor:
    """Measured T[i, j] = P(noisy = j | clean = i) over non-ignored pixels."""
    valid = (clean != IGNORE) & (noisy != IGNORE)
    counts = torch.bincount(clean[valid] * k + noisy[valid], minlength=k * k).view(k, k).double()
    return counts / counts.sum(1, keepdim=True)


def count(labels: torch.Tensor, c: int) -> torch.Tensor:
    """Pixels of class ``c`` per image, ``(N,)``."""
    return (labels == c).flatten(1).sum(1)


# ------------------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------------------


def test_every_entry_has_an_example():
    assert set(EXAMPLES) == set(LABEL_ZOO.names())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_entry_metadata(name):
    op = LABEL_ZOO.get(name)
    assert op.name == name
    assert op.taxonomy in TAXONOMY
    assert op.help and op.usage.startswith(name)
    assert callable(op.run) and callable(op.function)
    for p in op.params:
        assert p.kind in ("float", "int", "choice")


def test_taxonomy_classes():
    kinds = {name: LABEL_ZOO.get(name).taxonomy for name in LABEL_ZOO.names()}
    assert kinds["clean"] == "CL" and kinds["random"] == "RL"
    assert {kinds[n] for n in ("sample", "flip", "pairflip", "scribble", "objects", "region")} == {"RCL"}
    assert {kinds[n] for n in ("dilate", "erode", "skeleton", "translate", "shift", "markov")} == {"PCL"}


@pytest.mark.parametrize("name, classes", [(name, classes) for name in sorted(EXAMPLES) for classes in (2, 4)
                                            if classes == 2 or name not in BINARY_ONLY])
def test_every_op_keeps_shape_dtype_and_ignore(name, classes):
    labels = with_ignore(blobs(2, 24, classes=classes)).to(torch.int32)
    out = apply_spec(labels, EXAMPLES[name], generator=gen())
    assert out.shape == labels.shape and out.dtype == labels.dtype
    ignored = labels == IGNORE
    assert bool((out[ignored] == IGNORE).all()), "an ignored pixel became a class"
    valid_out = out[out != IGNORE]
    assert bool(((valid_out >= 0) & (valid_out < classes)).all())
    if name not in ("scribble", "region"):  # the two that leave pixels out by design
        assert bool((out[~ignored] != IGNORE).all()), "a labelled pixel became ignored"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_op_takes_an_empty_batch(name):
    labels = torch.zeros(0, 8, 8, dtype=torch.long)
    out = apply_spec(labels, EXAMPLES[name], generator=gen())
    assert out.shape == (0, 8, 8)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_op_takes_an_empty_foreground(name):
    labels = torch.zeros(2, 12, 12, dtype=torch.long)
    out = apply_spec(labels, EXAMPLES[name], generator=gen())
    assert out.shape == labels.shape
    if name not in ("random", "scribble", "markov", "flip", "pairflip", "region"):
        assert bool((out == 0).all())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_same_seed_same_output_other_seed_differs(name):
    labels = blobs(2, 32)
    a = apply_spec(labels, EXAMPLES[name], generator=gen(1))
    b = apply_spec(labels, EXAMPLES[name], generator=gen(1))
    assert torch.equal(a, b)
    if LABEL_ZOO.get(name).stochastic:
        c = apply_spec(labels, EXAMPLES[name], generator=gen(2))
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_device_matches_cpu(name, device):
    labels = with_ignore(blobs(2, 24, classes=2 if name in BINARY_ONLY else 3))
    cpu = apply_spec(labels, EXAMPLES[name], generator=gen(3))
    out = apply_spec(labels.to(device), EXAMPLES[name], generator=gen(3))
    assert out.device.type == device.type
    assert torch.equal(out.cpu(), cpu)


@pytest.mark.parametrize("spec", ["dilate:2", "erode:1", "skeleton", "translate:3,2", "clean"])
def test_deterministic_ops_do_not_depend_on_batch_split(spec):
    labels = with_ignore(blobs(3, 24, classes=3))
    whole = apply_spec(labels, spec)
    parts = torch.cat([apply_spec(labels[i : i + 1], spec) for i in range(3)])
    assert torch.equal(whole, parts)


def test_bad_label_tensors():
    with pytest.raises(ShapeError, match=r"`labels` must be \(N, H, W\)"):
        sample_labels(torch.zeros(8, 8, dtype=torch.long), 0.5)
    with pytest.raises(DTypeError, match="`labels` must be an integer tensor"):
        dilate_labels(torch.zeros(1, 8, 8), 1)
    with pytest.raises(ParameterError, match=">= 0"):
        shift_labels(torch.full((1, 4, 4), -1), 1)
    with pytest.raises(ParameterError, match="below 255"):
        sample_labels(torch.full((1, 4, 4), 300), 0.5)
    with pytest.raises(ParameterError, match="`num_classes` must be an integer >= 1; got 0"):
        random_labels(blobs(1, 8), 0.5, num_classes=0)


# ------------------------------------------------------------------------------------------------------------
# sample
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_sample_exact_counts(keep):
    labels = blobs(3, 32)
    out = sample_labels(labels, keep, generator=gen())
    expected = [math.ceil(keep * n) for n in count(labels, 1).tolist()]
    assert count(out, 1).tolist() == expected
    assert bool((out[labels == 0] == 0).all()), "background must stay background"
    assert bool((labels[out == 1] == 1).all()), "kept pixels must be foreground"


def test_sample_hand_computed():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 2:6, 2:6] = 1  # 16 pixels -> ceil(0.1 * 16) = 2
    assert sample_labels(labels, 0.1, generator=gen()).sum().item() == 2


def test_sample_multiclass_counts_per_class():
    labels = blobs(2, 32, classes=4)
    out = sample_labels(labels, 0.25, generator=gen())
    for c in (1, 2, 3):
        assert count(out, c).tolist() == [math.ceil(0.25 * n) for n in count(labels, c).tolist()]
        assert bool((labels[out == c] == c).all())


def test_sample_ignore_mode_samples_every_class():
    labels = with_ignore(blobs(2, 32, classes=3))
    out = sample_labels(labels, 0.2, unlabeled="ignore", generator=gen())
    for c in (0, 1, 2):
        assert count(out, c).tolist() == [math.ceil(0.2 * n) for n in count(labels, c).tolist()]
    assert bool((out[labels == IGNORE] == IGNORE).all())
    kept = out != IGNORE
    assert torch.equal(out[kept], labels[kept])


def test_sample_degenerate_keep():
    labels = with_ignore(blobs(2, 16))
    assert torch.equal(sample_labels(labels, 1.0, generator=gen()), labels)
    assert torch.equal(sample_labels(labels, 1.0, unlabeled="ignore", generator=gen()), labels)
    assert torch.equal(sample_labels(labels, 0.0), torch.where(labels == IGNORE, labels, 0))
    assert bool((sample_labels(labels, 0.0, unlabeled="ignore") == IGNORE).all())


def test_sample_is_uniform_over_pixels():
    labels = torch.ones(1, 4, 4, dtype=torch.long)
    hits = sum(sample_labels(labels, 0.25, generator=gen(s)) for s in range(400)).float()
    assert hits.sum().item() == 400 * 4
    assert abs(hits.mean().item() - 100) < 1e-6 and hits.min().item() > 60 and hits.max().item() < 140


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("unlabeled", ["background", "ignore"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8])
def test_sample_exact_counts_on_widths_off_the_byte_grid(classes, unlabeled, keep):
    # 13 columns and 7 * 13 pixels per image: neither a row nor an image fills whole 8-byte words.
    labels = torch.randint(0, classes, (3, 7, 13), generator=gen(1))
    labels[:, 2, 3:6] = IGNORE
    out = sample_labels(labels, keep, unlabeled=unlabeled, generator=gen())
    for c in range(1 if unlabeled == "background" else 0, classes):
        assert count(out, c).tolist() == [math.ceil(keep * n) for n in count(labels, c).tolist()]
    assert bool((out[labels == IGNORE] == IGNORE).all())
    kept = (out != IGNORE) & (out != 0) if unlabeled == "background" else out != IGNORE
    assert torch.equal(out[kept], labels[kept])


def test_sample_more_than_half_is_uniform_over_pixels():
    # keep 0.8 draws the pixels left out instead of the ones kept; 15 pixels, a row of 5 (not whole words)
    labels = torch.ones(1, 3, 5, dtype=torch.long)
    hits = sum(sample_labels(labels, 0.8, generator=gen(s)) for s in range(300)).float()
    assert hits.sum().item() == 300 * 12
    assert hits.min().item() > 200 and hits.max().item() < 280  # 240 expected, sd 6.9


def test_sample_and_shift_take_strided_and_narrow_labels():
    labels = blobs(2, 24, classes=3)
    labels[:, 4, :] = IGNORE
    for op in (lambda x: sample_labels(x, 0.3, generator=gen(4)), lambda x: shift_labels(x, 2, generator=gen(4))):
        expected = op(labels.transpose(1, 2).contiguous())
        assert torch.equal(op(labels.transpose(1, 2)), expected)
        assert torch.equal(op(labels.transpose(1, 2).to(torch.uint8)), expected.to(torch.uint8))


@pytest.mark.parametrize("value", [2**31, 2**32, 2**32 + 1, 2**40, -(2**32), -(2**63)])
def test_labels_beyond_a_byte_are_rejected(value):
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 1, 2] = value
    with pytest.raises(ParameterError, match=">= 0" if value < 0 else "below 255"):
        _check_labels(labels)
    message = (f"`labels` must hold class indices >= 0; got a minimum of {value}" if value < 0 else
               f"`labels` must hold classes below 255 \\(the ignore index\\); got {value}")
    with pytest.raises(ParameterError, match=message):
        sample_labels(labels, 0.5)


def test_sample_rejects_bad_parameters():
    labels = blobs(1, 8)
    with pytest.raises(ParameterError, match=r"`keep` must be in \[0, 1\]; got 1.5"):
        sample_labels(labels, 1.5)
    with pytest.raises(ParameterError, match="`unlabeled` must be one of background, ignore"):
        sample_labels(labels, 0.5, unlabeled="zero")


# ------------------------------------------------------------------------------------------------------------
# flip
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("f", "b"), [(0.0, 0.0), (0.1, 0.3), (0.45, 0.45), (0.7, 0.6), (1.0, 1.0)])
def test_flip_exact_counts(f, b):
    labels = with_ignore(blobs(3, 32))
    out = flip_labels(labels, f, b, generator=gen())
    fg, bg = labels == 1, labels == 0
    fg_to_bg = ((out == 0) & fg).flatten(1).sum(1).tolist()
    bg_to_fg = ((out == 1) & bg).flatten(1).sum(1).tolist()
    assert fg_to_bg == [math.floor(f * n + 0.5) for n in count(labels, 1).tolist()]
    assert bg_to_fg == [math.floor(b * n + 0.5) for n in count(labels, 0).tolist()]
    assert bool((out[labels == IGNORE] == IGNORE).all())


def test_flip_rounds_halves_up():
    labels = torch.zeros(1, 4, 5, dtype=torch.long)
    labels[0, :2] = 1  # 10 foreground, 10 background
    out = flip_labels(labels, 0.25, 0.05, generator=gen())  # 2.5 -> 3, 0.5 -> 1
    assert ((out == 0) & (labels == 1)).sum().item() == 3
    assert ((out == 1) & (labels == 0)).sum().item() == 1


@pytest.mark.parametrize(("f", "b"), [(0.1, 0.3), (0.45, 0.45), (0.3, 0.7), (0.8, 0.6)])
def test_flip_ntm_matches_request(f, b):
    labels = blobs(4, 64)
    measured = ntm(labels, flip_labels(labels, f, b, generator=gen()), 2)
    expected = torch.tensor([[1 - b, b], [f, 1 - f]], dtype=torch.float64)
    assert torch.allclose(measured, expected, atol=1e-3)


def test_flip_rank_one_at_f_plus_b_one_and_determinant_sign():
    labels = blobs(4, 64)
    dets = {}
    for f, b in [(0.3, 0.5), (0.3, 0.7), (0.6, 0.4), (0.5, 0.7)]:
        t = ntm(labels, flip_labels(labels, f, b, generator=gen()), 2)
        dets[(f, b)] = torch.linalg.det(t).item()
        if math.isclose(f + b, 1):
            assert torch.allclose(t[0], t[1], atol=1e-3), "rows must be equal (rank 1) at f + b = 1"
    assert dets[(0.3, 0.5)] > 0.1 and dets[(0.5, 0.7)] < -0.1
    assert abs(dets[(0.3, 0.7)]) < 2e-3 and abs(dets[(0.6, 0.4)]) < 2e-3


def test_flip_rejects_multiclass_and_bad_rates():
    with pytest.raises(ParameterError, match="needs binary labels"):
        flip_labels(blobs(1, 16, classes=3), 0.1, 0.1)
    with pytest.raises(ParameterError, match=r"`fg_to_bg` must be in \[0, 1\]; got 1.5"):
        flip_labels(blobs(1, 8), 1.5, 0.1)
    with pytest.raises(ParameterError, match=r"`bg_to_fg` must be in \[0, 1\]; got -0.1"):
        flip_labels(blobs(1, 8), 0.1, -0.1)


def test_symmetric_flip_ntm_multiclass():
    labels = bands(4, 96, classes=4)
    out = symmetric_flip_labels(labels, 0.3, generator=gen())
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(ntm(labels, out, 4), 0.7 * eye + 0.1 * (1 - eye), atol=1e-3)
    for c in range(4):
        moved = ((labels == c) & (out != c)).flatten(1).sum(1).tolist()
        assert moved == [math.floor(0.3 * n + 0.5) for n in count(labels, c).tolist()]


def test_symmetric_flip_binary_equals_flip_labels():
    labels = with_ignore(blobs(2, 32))
    assert torch.equal(
        symmetric_flip_labels(labels, 0.2, generator=gen(5)), flip_labels(labels, 0.2, 0.2, generator=gen(5))
    )


def test_symmetric_flip_num_classes():
    labels = blobs(2, 32)  # binary data, three classes asked for
    out = symmetric_flip_labels(labels, 0.5, num_classes=3, generator=gen())
    assert set(out.unique().tolist()) == {0, 1, 2}
    single = torch.zeros(1, 8, 8, dtype=torch.long)
    assert torch.equal(symmetric_flip_labels(single, 0.5, num_classes=1, generator=gen()), single)
    with pytest.raises(ParameterError, match="0..1"):
        symmetric_flip_labels(blobs(1, 16, classes=3), 0.1, num_classes=2)


def test_pair_flip_ntm():
    labels = bands(4, 96, classes=3)
    out = pair_flip_labels(labels, 0.4, generator=gen())
    expected = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.6, 0.4], [0.4, 0.0, 0.6]], dtype=torch.float64)
    assert torch.allclose(ntm(labels, out, 3), expected, atol=1e-3)


def test_flip_by_matrix_exact_and_independent():
    labels = with_ignore(bands(4, 96, classes=3))
    t = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [0.3, 0.3, 0.4]])
    exact = flip_by_matrix(labels, t, exact=True, generator=gen())
    assert torch.allclose(ntm(labels, exact, 3), t.double(), atol=1e-3)
    loose = flip_by_matrix(labels, t, generator=gen())
    assert torch.allclose(ntm(labels, loose, 3), t.double(), atol=0.03)
    assert bool((loose[labels == IGNORE] == IGNORE).all()) and bool((exact[labels == IGNORE] == IGNORE).all())


def test_flip_by_matrix_zero_probability_never_happens():
    labels = blobs(2, 32, classes=3)
    t = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.0, 0.5]]
    for exact in (False, True):
        out = flip_by_matrix(labels, t, exact=exact, generator=gen())
        assert bool((out[labels == 0] == 0).all()) and bool((out[labels == 1] == 2).all())
        assert not bool((out[labels == 2] == 1).any())


def test_flip_by_matrix_identity_and_errors():
    labels = blobs(2, 16, classes=3)
    assert torch.equal(flip_by_matrix(labels, torch.eye(3), generator=gen()), labels)
    with pytest.raises(ShapeError, match=r"`matrix` must be \(K, K\)"):
        flip_by_matrix(labels, torch.ones(3, 2) / 2)
    with pytest.raises(ParameterError, match="rows must sum to 1"):
        flip_by_matrix(labels, torch.ones(3, 3) / 2)
    with pytest.raises(ParameterError, match=">= 0"):
        flip_by_matrix(labels, [[1.5, -0.5, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ParameterError, match="0..1"):
        flip_by_matrix(labels, torch.eye(2))


# ------------------------------------------------------------------------------------------------------------
# random
# ------------------------------------------------------------------------------------------------------------


def test_random_rate_and_rank_one():
    labels = with_ignore(blobs(4, 64))
    out = random_labels(labels, 0.3, generator=gen())
    assert abs((out[out != IGNORE] == 1).double().mean().item() - 0.3) < 0.01
    t = ntm(labels, out, 2)
    assert torch.allclose(t[0], t[1], atol=0.03)
    assert abs(torch.linalg.det(t).item()) < 0.03
    assert bool((out[labels == IGNORE] == IGNORE).all())


def test_random_degenerate_rates_and_classes():
    labels = blobs(2, 16)
    assert bool((random_labels(labels, 0.0, generator=gen()) == 0).all())
    assert bool((random_labels(labels, 1.0, generator=gen()) == 1).all())
    single = torch.zeros(2, 8, 8, dtype=torch.long)
    assert bool((random_labels(single, 0.7, num_classes=1, generator=gen()) == 0).all())


def test_random_multiclass_uniform():
    labels = bands(4, 64, classes=4)
    out = random_labels(labels, 0.75, generator=gen())
    shares = torch.bincount(out.flatten(), minlength=4).double() / out.numel()
    assert torch.allclose(shares, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)


def test_random_ignores_the_image():
    a, b = blobs(2, 16, seed=0), blobs(2, 16, seed=1)
    assert torch.equal(random_labels(a, 0.4, generator=gen(9)), random_labels(b, 0.4, generator=gen(9)))


# ------------------------------------------------------------------------------------------------------------
# dilate, erode, skeleton
# ------------------------------------------------------------------------------------------------------------


def test_dilate_hand_computed():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 3, 3] = 1
    out = dilate_labels(labels, 1)
    assert (
        out.sum().item() == 5
        and out[0, 2:5, 3].tolist() == [1, 1, 1]
        and out[0, 3, 2:5].tolist() == [1, 1, 1]
    )
    assert torch.equal(dilate_labels(labels, 0), labels)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_dilate_and_erode_match_skimage(radius):
    labels = blobs(2, 32)
    d, e = dilate_labels(labels, radius), erode_labels(labels, radius)
    for i in range(2):
        m = labels[i].numpy().astype(bool)
        assert np.array_equal(d[i].numpy().astype(bool), dilation(m, disk(radius)))
        assert np.array_equal(e[i].numpy().astype(bool), erosion(m, disk(radius)))


def test_dilate_multiclass_grows_into_background_only():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 3, 2] = 1
    labels[0, 3, 4] = 2
    labels[0, 3, 3] = 0
    labels[0, 2, 3] = IGNORE
    out = dilate_labels(labels, 1)
    assert out[0, 3, 3].item() == 2, "the higher class wins a pixel both reach"
    assert out[0, 3, 2].item() == 1 and out[0, 3, 4].item() == 2
    assert out[0, 2, 3].item() == IGNORE
    assert out[0, 3, 1].item() == 1 and out[0, 3, 5].item() == 2


def test_erode_multiclass_and_ignore():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 1:4, 1:4] = 1
    labels[0, 4:7, 4:7] = 2
    labels[0, 0, 0] = IGNORE
    out = erode_labels(labels, 1)
    assert out[0, 2, 2].item() == 1 and out[0, 5, 5].item() == 2
    assert count(out, 1).item() == 1 and count(out, 2).item() == 1
    assert out[0, 0, 0].item() == IGNORE
    assert torch.equal(erode_labels(labels, 0), labels)


def test_skeleton_per_class():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 1:6, 1:14] = 1
    labels[0, 8:15, 3:10] = 2
    labels[0, 0, :] = IGNORE
    out = skeleton_labels(labels)
    for c in (1, 2):
        assert torch.equal(out == c, skeletonize(labels == c))
    assert bool((out[0, 0] == IGNORE).all())
    assert set(out.unique().tolist()) == {0, 1, 2, IGNORE}


def test_composition_order_matters():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 4:11, 3:13] = 1
    a = apply_spec(labels, "dilate:1+skeleton")
    b = apply_spec(labels, "skeleton+dilate:1")
    assert not torch.equal(a, b)
    assert torch.equal(a, skeleton_labels(dilate_labels(labels, 1)))
    assert torch.equal(b, dilate_labels(skeleton_labels(labels), 1))


# ------------------------------------------------------------------------------------------------------------
# translate, shift
# ------------------------------------------------------------------------------------------------------------


def test_translate_hand_computed():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 1
    labels[0, 1, 1] = 2
    out = translate_labels(labels, 2, 1)
    expected = torch.zeros(1, 4, 4, dtype=torch.long)
    expected[0, 2, 1] = 1
    expected[0, 3, 2] = 2
    assert torch.equal(out, expected)
    assert torch.equal(translate_labels(labels, -1, -1)[0, 0], torch.tensor([2, 0, 0, 0]))
    assert bool((translate_labels(labels, 4, 0) == 0).all())
    assert torch.equal(translate_labels(labels, 0, 0), labels)


def test_translate_keeps_ignore_in_place():
    labels = torch.ones(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = IGNORE
    out = translate_labels(labels, 1, 1)
    assert out[0, 0, 0].item() == IGNORE and out[0, 1, 1].item() == 0, "255 must not spread as a class"
    assert out[0, 0, 1].item() == 0 and out[0, 2, 2].item() == 1


def test_translate_rejects_floats():
    with pytest.raises(ParameterError, match=r"`dy` must be an integer; got 1.5 \(float\)"):
        translate_labels(blobs(1, 8), 1.5, 0)


@pytest.mark.parametrize("radius", [1, 2])
def test_shift_moves_pixels_within_radius(radius):
    labels = with_ignore(blobs(2, 32, classes=3))
    out = shift_labels(labels, radius, generator=gen())
    assert (out == 1).sum() + (out == 2).sum() <= (labels == 1).sum() + (labels == 2).sum()
    for c in (1, 2):
        reach = (
            F.max_pool2d((labels == c).float()[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0
        )
        assert bool(reach[out == c].all()), "a pixel moved further than the radius"
    assert bool((out[labels == IGNORE] == IGNORE).all())
    assert not torch.equal(out, labels)


def test_shift_single_pixel_lands_in_its_box():
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, 4, 4] = 1
    seen = set()
    for s in range(60):
        ys, xs = torch.nonzero(shift_labels(labels, 1, generator=gen(s))[0], as_tuple=True)
        assert len(ys) == 1
        seen.add((ys.item(), xs.item()))
    assert seen == {(y, x) for y in range(3, 6) for x in range(3, 6)}


def test_shift_reaches_every_offset_on_a_width_off_the_byte_grid():
    labels = torch.zeros(1, 7, 11, dtype=torch.long)
    labels[0, 3, 9] = 1
    seen = set()
    for s in range(120):
        ys, xs = torch.nonzero(shift_labels(labels, 1, generator=gen(s))[0], as_tuple=True)
        seen.add((ys.item(), xs.item()))
    assert seen == {(y, x) for y in range(2, 5) for x in range(8, 11)}


@pytest.mark.parametrize("row", [[1, 2], [1, 1, 1, 1, 1, 1, 1, 2]])
def test_shift_collisions_keep_the_higher_class(row):
    # A radius past the image sends most pixels to the ends; where the 2 lands it must win. The short row
    # leaves most of its 8-byte word empty and the long one fills it (the two ways offsets are drawn).
    labels = torch.tensor([[row]])
    for s in range(40):
        out = shift_labels(labels, 9, generator=gen(s))
        assert (out == 2).sum().item() == 1 and (out == 1).sum().item() <= len(row) - 1


def test_shift_clips_to_the_image_and_radius_zero():
    labels = torch.zeros(1, 5, 5, dtype=torch.long)
    labels[0, 0, 0] = 1
    for s in range(20):
        out = shift_labels(labels, 3, generator=gen(s))
        assert out.sum().item() == 1
    assert torch.equal(shift_labels(labels, 0, generator=gen()), labels)


# ------------------------------------------------------------------------------------------------------------
# markov
# ------------------------------------------------------------------------------------------------------------


def square(size: int = 24, lo: int = 7, hi: int = 17) -> torch.Tensor:
    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[0, lo:hi, lo:hi] = 1
    return labels


def test_markov_identity_grow_shrink():
    labels = square()
    assert torch.equal(markov_labels(labels, 0, 0.5, 0.5, 0.0, generator=gen()), labels)
    grown = markov_labels(labels, 6, 1.0, 0.5, 0.0, generator=gen())
    shrunk = markov_labels(labels, 6, 0.0, 0.5, 0.0, generator=gen())
    assert bool((grown >= labels).all()) and grown.sum() > labels.sum()
    assert bool((shrunk <= labels).all()) and shrunk.sum() < labels.sum()
    # Each round moves the boundary by at most one pixel (4-neighbours): 6 rounds stay within 6 steps.
    reach = labels.clone()
    for _ in range(6):
        reach = dilate_labels(reach, 1)
    assert bool((grown <= reach).all())


def test_markov_boundary_probability_one_grows_like_dilation():
    labels = square()
    assert torch.equal(markov_labels(labels, 1, 1.0, 1.0, 0.0, generator=gen()), dilate_labels(labels, 1))


def test_markov_final_flip():
    labels = with_ignore(square())
    flipped = markov_labels(labels, 0, 0.5, 0.5, 1.0, generator=gen())
    valid = labels != IGNORE
    assert torch.equal(flipped[valid], 1 - labels[valid])
    assert bool((flipped[~valid] == IGNORE).all())
    noisy = markov_labels(blobs(4, 64), 0, 0.5, 0.5, 0.1, generator=gen())
    assert abs((noisy != blobs(4, 64)).double().mean().item() - 0.1) < 0.01


def test_markov_multiclass_grows_into_background_only():
    labels = blobs(2, 32, classes=3)
    out = markov_labels(labels, 5, 1.0, 0.7, 0.0, generator=gen())
    changed = out != labels
    assert bool((labels[changed] == 0).all())
    assert changed.any()


def test_markov_rejects_bad_parameters():
    with pytest.raises(ParameterError, match=r"`grow` must be in \[0, 1\]"):
        markov_labels(square(), 3, 1.2, 0.1, 0.0)
    with pytest.raises(ParameterError, match="`steps` must be an integer >= 0; got -1"):
        markov_labels(square(), -1, 0.5, 0.1, 0.0)


# ------------------------------------------------------------------------------------------------------------
# scribble
# ------------------------------------------------------------------------------------------------------------


def skeleton_union(labels: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(labels, IGNORE)
    for c in labels.unique().tolist():
        if c != IGNORE:
            out[skeletonize(labels == c)] = c
    return out


def test_scribble_fraction_one_is_every_skeleton():
    labels = with_ignore(blobs(2, 32, classes=3))
    assert torch.equal(scribble_labels(labels, 1.0, generator=gen()), skeleton_union(labels))
    assert bool((scribble_labels(labels, 0.0, generator=gen()) == IGNORE).all())


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.77])
def test_scribble_exact_counts_per_class(fraction):
    labels = blobs(2, 32, classes=3)
    full = skeleton_union(labels)
    out = scribble_labels(labels, fraction, generator=gen())
    for c in (0, 1, 2):
        assert count(out, c).tolist() == [math.ceil(fraction * n) for n in count(full, c).tolist()]
    kept = out != IGNORE
    assert torch.equal(out[kept], full[kept]), "scribbles must lie on the skeletons"


def test_scribble_keeps_runs_together():
    labels = torch.zeros(1, 7, 96, dtype=torch.long)
    labels[0, 2:5, 2:94] = 1  # a bar whose skeleton is one long line

    def runs(length: int) -> float:
        total = 0
        for s in range(10):
            out = scribble_labels(labels, 0.4, length=length, generator=gen(s))
            total += ndimage.label((out[0] == 1).numpy(), structure=np.ones((3, 3)))[1]
        return total / 10

    assert runs(12) < 0.5 * runs(1)


def test_scribble_rejects_bad_length():
    with pytest.raises(ParameterError, match="`length` must be an integer >= 1; got 0"):
        scribble_labels(blobs(1, 8), 0.5, length=0)


# ------------------------------------------------------------------------------------------------------------
# objects, region
# ------------------------------------------------------------------------------------------------------------


def squares(n: int = 3, classes: int = 2) -> torch.Tensor:
    """``n`` maps of 48 x 48 holding nine separate 3 x 3 squares per foreground class, in a row per class."""
    labels = torch.zeros(n, 48, 48, dtype=torch.long)
    for c in range(1, classes):
        for j in range(9):
            labels[:, 5 * c : 5 * c + 3, 1 + 5 * j : 4 + 5 * j] = c
    return labels


def pieces_of(mask: torch.Tensor) -> list[torch.Tensor]:
    from scipy import ndimage  # the reference labelling the zoo also uses

    found, n = ndimage.label(mask.numpy(), structure=ndimage.generate_binary_structure(2, 2))
    return [torch.from_numpy(found == k) for k in range(1, n + 1)]


@pytest.mark.parametrize("keep, kept", [(0.0, 0), (0.1, 1), (0.5, 5), (1 / 3, 3), (1.0, 9)])
@pytest.mark.parametrize("unlabeled", ["background", "ignore"])
def test_objects_keep_whole_objects_by_exact_count(keep, kept, unlabeled):
    labels = squares(3, classes=3)
    out = object_labels(labels, keep, unlabeled=unlabeled, generator=gen(4))
    fill = 0 if unlabeled == "background" else IGNORE
    for i in range(3):
        for c in (1, 2):
            objects = pieces_of(labels[i] == c)
            assert len(objects) == 9
            whole = [bool((out[i][obj] == c).all()) for obj in objects]
            gone = [bool((out[i][obj] == fill).all()) for obj in objects]
            assert all(w or g for w, g in zip(whole, gone, strict=True)), "an object was cut"
            assert sum(whole) == kept
    assert torch.equal(out[labels == 0], labels[labels == 0]), "the background changed"


def test_objects_diagonal_neighbours_are_one_object_and_ignore_passes_through():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 1, 1] = labels[0, 2, 2] = labels[0, 3, 3] = 1  # one diagonal line: 8-connected
    labels[0, 6, 6] = 1
    labels[0, 0, 7] = IGNORE
    outs = {tuple(object_labels(labels, 0.5, generator=gen(s))[0, [1, 2, 3, 6], [1, 2, 3, 6]].tolist())
            for s in range(12)}
    assert outs == {(1, 1, 1, 0), (0, 0, 0, 1)}
    assert int(object_labels(labels, 0.5, generator=gen(0))[0, 0, 7]) == IGNORE


def test_objects_are_drawn_uniformly():
    labels = squares(1)
    hits = torch.zeros(48, 48)
    for s in range(300):
        hits += (object_labels(labels, 1 / 3, generator=gen(s))[0] == 1).float()
    rates = torch.stack([hits[obj].mean() for obj in pieces_of(labels[0] == 1)]) / 300
    assert bool(((rates - 1 / 3).abs() < 0.1).all()), rates


def test_region_keeps_one_rectangle_of_the_right_size():
    labels = blobs(4, 40, classes=3)
    out = region_labels(labels, 0.25, generator=gen(2))
    for i in range(4):
        rows, cols = (out[i] != IGNORE).nonzero(as_tuple=True)
        assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (20, 20)
        assert int((out[i] != IGNORE).sum()) == 400
        inside = out[i] != IGNORE
        assert torch.equal(out[i][inside], labels[i][inside])
    corners = {tuple((region_labels(labels[:1], 0.25, generator=gen(s))[0] != IGNORE).nonzero()[0].tolist())
               for s in range(20)}
    assert len(corners) > 5, "the rectangle does not move"


def test_region_aspect_follows_the_image_and_degenerate_fractions():
    labels = blobs(1, 40)[:, :, :20].contiguous()
    out = region_labels(labels, 0.5, generator=gen(0))
    assert int((out != IGNORE).sum()) == round(40 * 0.5**0.5) * round(20 * 0.5**0.5)
    assert torch.equal(region_labels(labels, 1.0, generator=gen(0)), labels)
    assert bool((region_labels(labels, 0.0, generator=gen(0)) == IGNORE).all())


def test_objects_and_region_reject_bad_parameters():
    with pytest.raises(ParameterError, match="`keep` must be"):
        object_labels(blobs(1, 8), 1.5)
    with pytest.raises(ParameterError, match="`unlabeled` must be one of"):
        object_labels(blobs(1, 8), 0.5, unlabeled="drop")
    with pytest.raises(ParameterError, match="`fraction` must be"):
        region_labels(blobs(1, 8), -0.1)


# ------------------------------------------------------------------------------------------------------------
# The shared selection step
# ------------------------------------------------------------------------------------------------------------


def brute_force_smallest(group, quota, keys):
    chosen = []
    for g, q in enumerate(quota.tolist()):
        members = (group == g).nonzero().squeeze(1)
        order = torch.argsort(keys[members], stable=True)
        chosen += members[order[:q]].tolist()
    return sorted(chosen)


@pytest.mark.parametrize("adversarial", [False, True])
def test_smallest_per_group_matches_brute_force(adversarial, monkeypatch):
    group = torch.tensor([0] * 700 + [1] * 1000 + [2] * 3)
    quota = torch.tensor([70, 500, 3])
    if adversarial:  # every key above the pre-selection cut: the full sort must take over
        fake = (2**_KEY_BITS - 1 - torch.arange(group.numel())) // 2
        monkeypatch.setattr(torch, "randint", lambda *args, **kwargs: fake.clone())
    keys = torch.randint(0, 2**_KEY_BITS, (group.numel(),), generator=gen(8))
    chosen, rank = _smallest_per_group(group, quota, gen(8))
    assert sorted(chosen.tolist()) == brute_force_smallest(group, quota, keys)
    for g, q in enumerate(quota.tolist()):
        assert sorted(rank[group[chosen] == g].tolist()) == list(range(q))


@pytest.mark.parametrize("valid_slots", [False, True])
def test_random_subset_is_exact_and_uniform(valid_slots):
    # Three groups; with `valid`, the elements are some of each group's slots. Quota 4 of 5 draws the one left out.
    if valid_slots:
        spans, valid = torch.tensor([8, 0, 8]), torch.tensor([1, 0, 1, 0, 1, 0, 0, 0] + [1] * 5 + [0] * 3).bool()
    else:
        spans, valid = None, None
    counts, quota = torch.tensor([3, 0, 5]), torch.tensor([1, 0, 4])
    elements = valid.nonzero().squeeze(1) if valid_slots else torch.arange(8)
    hits = torch.zeros(16 if valid_slots else 8)
    for s in range(1200):
        chosen = _random_subset(counts, quota, gen(s), spans=spans, valid=valid)
        assert chosen.numel() == 5 and chosen.unique().numel() == 5
        assert bool(torch.isin(chosen, elements).all())
        assert (chosen < elements[3]).sum().item() == 1  # one of the first group's three
        hits[chosen] += 1
    first, second = hits[elements[:3]], hits[elements[3:]]
    assert bool((first - 400).abs().max() < 70) and bool((second - 960).abs().max() < 70)  # sd 16 and 14
