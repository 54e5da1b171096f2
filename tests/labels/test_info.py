import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mstool.errors import DTypeError, MstoolWarning, ParameterError, ShapeError
from mstool.labels._info import (
    TAXONOMY,
    LabelInfo,
    boundary_fraction,
    classify_label,
    confusion_counts,
    label_info,
    mutual_information,
    noise_transition_matrix,
    ntm_condition,
    ntm_det,
    ntm_rank,
)

# ------------------------------------------------------------------------------------------ label makers


def disk(size: int, r: int, cy: int, cx: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).long()


def disks() -> torch.Tensor:
    """Two 64 x 64 binary images, one disk each, away from the border."""
    return torch.stack([disk(64, 16, 30, 33), disk(64, 12, 36, 28)])


def dilate(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    return F.max_pool2d(x[:, None].float(), 2 * k + 1, 1, k)[:, 0].long()


def erode(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    return 1 - dilate(1 - x, k)


def flip_exact(x: torch.Tensor, f: float, b: float, g: torch.Generator) -> torch.Tensor:
    """Flip exactly round(f * n0) background and round(b * n1) foreground pixels of a binary batch."""
    flat, out = x.flatten(), x.flatten().clone()
    for cls, rate in ((0, f), (1, b)):
        idx = (flat == cls).nonzero()[:, 0]
        pick = idx[torch.randperm(idx.numel(), generator=g)[: round(rate * idx.numel())]]
        out[pick] = 1 - cls
    return out.view_as(x)


def bars() -> torch.Tensor:
    """Thin objects: horizontal bars 5 pixels thick, and their one-pixel centre line (a skeleton)."""
    x = torch.zeros(1, 32, 32, dtype=torch.long)
    x[:, 4:9, 2:30] = 1
    x[:, 14:19, 2:30] = 1
    x[:, 24:29, 2:30] = 1
    return x


def bar_skeleton() -> torch.Tensor:
    x = torch.zeros(1, 32, 32, dtype=torch.long)
    x[:, [6, 16, 26], 4:28] = 1
    return x


# ------------------------------------------------------------------------------------------ counts and NTM


def test_confusion_counts_hand_computed(device):
    clean = torch.tensor([[[0, 0, 1], [1, 2, 2]], [[2, 2, 2], [0, 1, 255]]], device=device)
    noisy = torch.tensor([[[0, 1, 1], [0, 2, 255]], [[0, 2, 2], [0, 1, 1]]], device=device)
    c = confusion_counts(clean, noisy)
    assert c.dtype == torch.float64 and c.device.type == device.type and c.shape == (2, 3, 3)
    expected = torch.tensor([[[1, 1, 0], [1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 0], [1, 0, 2]]],
                            dtype=torch.float64)
    assert torch.equal(c.cpu(), expected)


def test_confusion_counts_pooled_is_sum_of_per_image_and_batch_split_invariant(gen):
    clean = torch.randint(0, 3, (5, 8, 8), generator=gen)
    noisy = torch.randint(0, 3, (5, 8, 8), generator=gen)
    noisy[0, :2] = 255
    per_image = confusion_counts(clean, noisy, 3)
    split = torch.cat([confusion_counts(clean[:2], noisy[:2], 3), confusion_counts(clean[2:], noisy[2:], 3)])
    assert torch.equal(per_image, split)
    pooled = noise_transition_matrix(clean, noisy, 3)
    assert torch.allclose(pooled, per_image.sum(0) / per_image.sum((0, 2))[:, None])
    halves = [confusion_counts(clean[i:i + 1], noisy[i:i + 1], 3) for i in range(5)]
    assert torch.equal(per_image.sum(0), torch.cat(halves).sum(0))
    rolled = mutual_information(torch.cat([clean[3:], clean[:3]]), torch.cat([noisy[3:], noisy[:3]]), 3)
    assert torch.allclose(mutual_information(clean, noisy, 3), rolled)


def test_num_classes_inferred_at_least_binary():
    empty_fg = torch.zeros(1, 4, 4, dtype=torch.long)
    assert confusion_counts(empty_fg, empty_fg).shape == (1, 2, 2)
    assert confusion_counts(empty_fg, empty_fg + 3).shape == (1, 4, 4)
    assert confusion_counts(empty_fg, empty_fg, 5).shape == (1, 5, 5)


def test_integer_dtypes_accepted():
    clean = torch.tensor([[[0, 1], [1, 1]]], dtype=torch.uint8)
    noisy = torch.tensor([[[0, 1], [0, 1]]], dtype=torch.int32)
    expected = torch.tensor([[[1.0, 0.0], [1.0, 2.0]]], dtype=torch.float64)
    assert torch.equal(confusion_counts(clean, noisy), expected)


def test_identical_labels_identity_ntm_and_mi_equals_entropy(device):
    clean = torch.zeros(1, 8, 8, dtype=torch.long, device=device)
    clean[:, :2] = 1      # 16 pixels
    clean[:, 2:4] = 2     # 16 pixels, class 0 has 32
    T = noise_transition_matrix(clean, clean)
    assert torch.equal(T.cpu(), torch.eye(3, dtype=torch.float64))
    entropy = -(0.5 * math.log2(0.5) + 2 * 0.25 * math.log2(0.25))  # 1.5 bits
    assert mutual_information(clean, clean).item() == pytest.approx(entropy, abs=1e-12)
    info = label_info(clean, clean)
    assert info.clean_entropy == pytest.approx(1.5) and info.mutual_information == pytest.approx(1.5)
    assert info.taxonomy == "CL" and info.rank == 3 and info.changed_fraction == 0.0
    assert info.condition == pytest.approx(1.0) and info.det is None  # det only for binary


def test_independent_labels_rank_one_and_zero_mi():
    clean = torch.zeros(1, 4, 4, dtype=torch.long)
    clean[:, :, 2:] = 1                  # left | right
    noisy = clean.transpose(1, 2)        # top / bottom: each quarter holds 4 pixels
    T = noise_transition_matrix(clean, noisy)
    assert torch.equal(T, torch.full((2, 2), 0.5, dtype=torch.float64))
    assert int(ntm_rank(T)) == 1
    assert ntm_det(T).item() == pytest.approx(0.0, abs=1e-12)
    assert ntm_condition(T).item() == math.inf
    assert mutual_information(clean, noisy).item() == pytest.approx(0.0, abs=1e-12)
    info = label_info(clean, noisy)
    assert info.taxonomy == "RL" and info.rank == 1


def test_known_two_by_two_confusion_exact_values():
    # 8 clean zeros, 2 of them noisy ones; 8 clean ones, 4 of them noisy zeros
    clean = torch.tensor([[[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]])
    noisy = torch.tensor([[[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]])
    T = noise_transition_matrix(clean, noisy)
    assert torch.equal(T, torch.tensor([[0.75, 0.25], [0.5, 0.5]], dtype=torch.float64))
    assert ntm_det(T).item() == pytest.approx(1 - 0.25 - 0.5)
    s = torch.linalg.svdvals(T)
    assert ntm_condition(T).item() == pytest.approx((s[0] / s[1]).item())
    joint = [[6 / 16, 2 / 16], [4 / 16, 4 / 16]]
    rows, cols = [0.5, 0.5], [10 / 16, 6 / 16]
    mi = sum(joint[i][j] * math.log2(joint[i][j] / (rows[i] * cols[j])) for i in range(2) for j in range(2))
    assert mutual_information(clean, noisy).item() == pytest.approx(mi, abs=1e-12)


@pytest.mark.parametrize("f, b", [(0.0, 0.0), (0.25, 0.125), (0.5, 0.25), (0.5, 0.5), (0.75, 0.25),
                                  (0.75, 0.5), (1.0, 1.0)])
def test_det_is_one_minus_f_minus_b_for_exact_flips(f, b, gen):
    clean = torch.zeros(2, 8, 8, dtype=torch.long)
    clean[:, :, :4] = 1  # 64 pixels of each class in the batch: f and b are exact multiples of 1/64
    noisy = flip_exact(clean, f, b, gen)
    T = noise_transition_matrix(clean, noisy)
    assert torch.allclose(T, torch.tensor([[1 - f, f], [b, 1 - b]], dtype=torch.float64))
    det = ntm_det(T).item()
    assert det == pytest.approx(1 - f - b, abs=1e-12)
    assert int(ntm_rank(T)) == (1 if f + b == 1 else 2)
    if f + b > 1:
        assert det < 0  # past f + b = 1 more than half the signal is inverted
    info = label_info(clean, noisy)
    assert info.det == pytest.approx(1 - f - b, abs=1e-12) and info.rank == int(ntm_rank(T))


def test_det_sign_flips_across_f_plus_b_equal_one(gen):
    clean = torch.zeros(1, 8, 8, dtype=torch.long)
    clean[:, 4:] = 1
    dets = [ntm_det(noise_transition_matrix(clean, flip_exact(clean, f, f, gen))).item()
            for f in (0.375, 0.5, 0.625)]
    assert dets[0] > 0 and dets[1] == pytest.approx(0, abs=1e-12) and dets[2] < 0


def test_ignore_pixels_excluded_everywhere():
    clean = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [255, 255, 255, 255]]])
    noisy = torch.tensor([[[0, 1, 1, 255], [0, 0, 1, 1], [0, 0, 0, 1], [1, 0, 1, 0]]])
    c = confusion_counts(clean, noisy)
    assert c.sum().item() == 11  # 12 pixels in rows 0..2, less the one the noisy label ignores
    assert torch.equal(c[0], torch.tensor([[5.0, 1.0], [1.0, 4.0]], dtype=torch.float64))
    info = label_info(clean, noisy)
    assert info.num_pixels == 11 and info.changed_fraction == pytest.approx(2 / 11)
    # ignore_index=None counts everything, so 255 must then be a class
    with pytest.raises(ParameterError, match="`clean` must hold class indices in 0..1"):
        confusion_counts(clean, noisy, 2, ignore_index=None)


def test_absent_clean_class_gives_nan_row_and_rank_on_present_rows():
    clean = torch.zeros(1, 8, 8, dtype=torch.long)
    clean[:, :, 4:] = 1
    noisy = clean.clone()
    noisy[:, :, 0] = 2   # a quarter of class 0
    noisy[:, :, 7] = 2   # a quarter of class 1
    T = noise_transition_matrix(clean, noisy, 3)
    assert torch.isnan(T[2]).all() and torch.isfinite(T[:2]).all()
    assert torch.allclose(T[:2], torch.tensor([[0.75, 0, 0.25], [0, 0.75, 0.25]], dtype=torch.float64))
    assert int(ntm_rank(T)) == 2           # the two present rows are independent
    assert math.isnan(ntm_det(T).item()) and math.isnan(ntm_condition(T).item())
    same_rows = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [math.nan] * 3], dtype=torch.float64)
    assert int(ntm_rank(same_rows)) == 1
    info = label_info(clean, noisy, 3)
    assert info.present_classes == 2 and info.rank == 2 and math.isnan(info.condition)
    assert info.as_dict()["ntm"][2] == [None, None, None]


# ------------------------------------------------------------------------------------------ NTM algebra


def test_ntm_rank_tolerances():
    T = torch.tensor([[0.6, 0.4], [0.6 + 1e-5, 0.4 - 1e-5]], dtype=torch.float64)
    assert int(ntm_rank(T)) == 1                      # below the default relative 1e-3
    assert int(ntm_rank(T, tol=0.0)) == 2
    near = torch.tensor([[0.6, 0.4], [0.62, 0.38]], dtype=torch.float64)
    assert int(ntm_rank(near)) == 2
    assert int(ntm_rank(near, support=torch.tensor([500, 500]))) == 1      # within sampling noise
    assert int(ntm_rank(near, support=torch.tensor([10**6, 10**6]))) == 2  # not with a million pixels a row
    assert int(ntm_rank(torch.eye(3), support=torch.tensor([1, 1, 1]))) == 3  # exact rows: no sampling term
    assert int(ntm_rank(torch.full((2, 2), math.nan))) == 0


def test_ntm_rank_sampling_term_keeps_independent_labels_rank_one(gen):
    clean = (torch.rand(200, 16, 16, generator=gen) < 0.3).long()
    noisy = (torch.rand(200, 16, 16, generator=gen) < 0.5).long()
    counts = confusion_counts(clean, noisy)
    per_image = counts / counts.sum(-1, keepdim=True)
    ranks = ntm_rank(per_image, support=counts.sum(-1))
    assert ranks.shape == (200,) and ranks.dtype == torch.int64
    assert (ranks == 1).float().mean() >= 0.97
    assert (ntm_rank(per_image) == 2).float().mean() > 0.9  # without it, measured NTMs read as full rank


def test_batched_algebra_matches_single():
    Ts = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.5, 0.5], [0.5, 0.5]], [[0.0, 1.0], [1.0, 0.0]]],
                      dtype=torch.float64)
    assert ntm_rank(Ts).tolist() == [2, 1, 2]
    assert torch.allclose(ntm_det(Ts), torch.tensor([0.7, 0.0, -1.0], dtype=torch.float64))
    cond = ntm_condition(Ts)
    assert cond[1] == math.inf and cond[2].item() == pytest.approx(1.0)
    for i in range(3):
        assert ntm_det(Ts[i]).item() == pytest.approx(ntm_det(Ts)[i].item())
        assert ntm_condition(Ts[i]).item() == ntm_condition(Ts)[i].item()
    assert ntm_rank(Ts[:0]).shape == (0,) and ntm_det(Ts[:0]).shape == (0,)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3), torch.zeros(2, 2, 2, 2), torch.zeros(0, 0)])
def test_ntm_algebra_rejects_non_square(bad):
    for fn in (ntm_rank, ntm_det, ntm_condition):
        with pytest.raises(ShapeError, match="`T` must be a square"):
            fn(bad)


def test_ntm_algebra_rejects_non_tensors():
    for fn in (ntm_rank, ntm_det, ntm_condition):
        with pytest.raises(DTypeError, match="`T` must be a torch.Tensor, a square .*; got list"):
            fn([[1.0]])


def test_ntm_rank_argument_errors():
    with pytest.raises(DTypeError, match="floating-point"):
        ntm_rank(torch.eye(2, dtype=torch.long))
    with pytest.raises(ParameterError, match=r"`tol` must be in \[0, 1\)"):
        ntm_rank(torch.eye(2), tol=1.0)
    with pytest.raises(ShapeError, match=r"`support` must have shape \(2,\)"):
        ntm_rank(torch.eye(2), support=torch.ones(3))


# ------------------------------------------------------------------------------------------ per image


def test_reduction_none_gives_per_image_values():
    clean = torch.zeros(3, 4, 4, dtype=torch.long)
    clean[:, :, 2:] = 1
    noisy = torch.stack([clean[0], clean[1].t(), 1 - clean[2]])  # identical, independent, inverted
    T = noise_transition_matrix(clean, noisy, reduction="none")
    assert T.shape == (3, 2, 2)
    assert ntm_rank(T).tolist() == [2, 1, 2]
    assert torch.allclose(ntm_det(T), torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
    mi = mutual_information(clean, noisy, reduction="none")
    assert mi.shape == (3,) and torch.allclose(mi, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    for i in range(3):
        assert torch.equal(T[i], noise_transition_matrix(clean[i:i + 1], noisy[i:i + 1]))


def test_empty_batch_documented_answers():
    empty = torch.zeros(0, 8, 8, dtype=torch.long)
    assert confusion_counts(empty, empty).shape == (0, 2, 2)
    assert torch.isnan(noise_transition_matrix(empty, empty, 3)).all()
    assert noise_transition_matrix(empty, empty, 3).shape == (3, 3)
    assert noise_transition_matrix(empty, empty, reduction="none").shape == (0, 2, 2)
    assert math.isnan(mutual_information(empty, empty).item())
    assert mutual_information(empty, empty, reduction="none").shape == (0,)
    assert math.isnan(boundary_fraction(empty, empty).item())
    assert boundary_fraction(empty, empty, reduction="none").shape == (0,)
    with pytest.warns(MstoolWarning, match="no unignored pixel"):
        info = label_info(empty, empty)
    assert info.taxonomy == "CL" and info.rank == 0 and info.num_pixels == 0
    assert math.isnan(info.mutual_information) and math.isnan(info.changed_fraction)
    json.dumps(info.as_dict(), allow_nan=False)


def test_all_ignored_image_is_nan_per_image():
    clean = torch.zeros(2, 4, 4, dtype=torch.long)
    noisy = clean.clone()
    noisy[1] = 255
    mi = mutual_information(clean, noisy, reduction="none")
    assert mi[0].item() == 0.0 and math.isnan(mi[1].item())  # one class: H(clean) = 0 = MI
    assert torch.isnan(noise_transition_matrix(clean, noisy, reduction="none")[1]).all()


# ------------------------------------------------------------------------------------------ boundary


def test_boundary_band_hand_computed():
    clean = torch.zeros(1, 8, 8, dtype=torch.long)
    clean[:, :, 4:] = 1                   # a vertical edge between columns 3 and 4
    noisy = clean.clone()
    noisy[0, 0, 0] = 1                    # far from the edge
    noisy[0, 1, 3] = 1                    # next to it
    assert boundary_fraction(clean, noisy, distance=1).item() == 0.5
    noisy[0, 2, 2] = 1                    # two columns from the far side of the edge
    assert boundary_fraction(clean, noisy, distance=1).item() == pytest.approx(1 / 3)
    assert boundary_fraction(clean, noisy, distance=2).item() == pytest.approx(2 / 3)
    info = label_info(clean, noisy, distance=1)
    assert info.boundary_band_fraction == pytest.approx(16 / 64)  # columns 3 and 4


def test_boundary_ignores_ignore_and_image_border():
    clean = torch.zeros(1, 8, 8, dtype=torch.long)
    clean[:, :, 4] = 255                  # an ignored column makes no boundary
    noisy = torch.ones_like(clean)
    noisy[:, :, 4] = 255
    assert boundary_fraction(clean, noisy, distance=3).item() == 0.0
    assert label_info(clean, noisy, distance=3).boundary_band_fraction == 0.0


def test_boundary_fraction_nan_without_changes_and_per_image():
    clean = torch.stack([disk(16, 4, 8, 8), disk(16, 4, 8, 8)])
    noisy = torch.stack([clean[0], dilate(clean[1:])[0]])
    per_image = boundary_fraction(clean, noisy, reduction="none")
    assert math.isnan(per_image[0].item()) and per_image[1].item() == 1.0
    assert boundary_fraction(clean, noisy).item() == 1.0


def test_boundary_fraction_near_one_for_dilation_and_erosion():
    clean = disks()
    for noisy in (dilate(clean), dilate(clean, 2), erode(clean), torch.roll(clean, 2, -1)):
        assert boundary_fraction(clean, noisy).item() == 1.0


def test_boundary_fraction_near_band_share_for_uniform_flips(gen):
    clean = disks()
    flips = torch.rand(clean.shape, generator=gen) < 0.2
    noisy = torch.where(flips, 1 - clean, clean)
    info = label_info(clean, noisy)
    assert 0.05 < info.boundary_band_fraction < 0.2
    assert info.boundary_fraction == pytest.approx(info.boundary_band_fraction, abs=0.03)
    assert info.expected_boundary_fraction == pytest.approx(info.boundary_band_fraction, abs=0.01)


# ------------------------------------------------------------------------------------------ taxonomy


@functools.cache
def _families(seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, str]]:
    gen = torch.Generator().manual_seed(seed)
    clean = disks()
    uniform = torch.rand(clean.shape, generator=gen)
    return {
        "clean": (clean, clean, "CL"),
        "sample keep 0.5": (clean, flip_exact(clean, 0.0, 0.5, gen), "RCL"),
        "sample keep 0.1": (clean, flip_exact(clean, 0.0, 0.9, gen), "RCL"),
        "flip 0.3,0.3": (clean, flip_exact(clean, 0.3, 0.3, gen), "RCL"),
        "flip 0.45,0.45": (clean, flip_exact(clean, 0.45, 0.45, gen), "RCL"),
        "flip 0.7,0.7": (clean, flip_exact(clean, 0.7, 0.7, gen), "RCL"),
        "random 0.5": (clean, (uniform < 0.5).long(), "RL"),
        "random 0.2": (clean, (uniform < 0.2).long(), "RL"),
        "flip 0.6,0.4": (clean, flip_exact(clean, 0.6, 0.4, gen), "RL"),
        "dilate 1": (clean, dilate(clean), "PCL"),
        "dilate 2": (clean, dilate(clean, 2), "PCL"),
        "erode 1": (clean, erode(clean), "PCL"),
        "erode 2": (clean, erode(clean, 2), "PCL"),
        "shift 2": (clean, torch.roll(clean, (2, -1), (-1, -2)), "PCL"),
        "skeleton of bars": (bars(), bar_skeleton(), "PCL"),
        "sample bars": (bars(), flip_exact(bars(), 0.0, 0.5, gen), "RCL"),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("family", list(_families(0)))
def test_taxonomy_of_label_families(family, seed, device):
    clean, noisy, expected = _families(seed)[family]
    info = label_info(clean.to(device), noisy.to(device))
    assert info.taxonomy == expected, info.as_dict()
    assert info.taxonomy in TAXONOMY


def test_classify_label_rules_and_thresholds():
    base = dict(changed_fraction=0.2, rank=2, present_classes=2)
    assert classify_label(**{**base, "changed_fraction": 0.0}, boundary_fraction=math.nan,
                          expected_boundary_fraction=math.nan) == "CL"
    assert classify_label(**{**base, "changed_fraction": math.nan}, boundary_fraction=math.nan,
                          expected_boundary_fraction=math.nan) == "CL"
    assert classify_label(**{**base, "rank": 1}, boundary_fraction=1, expected_boundary_fraction=0.1) == "RL"
    # one clean class: rank 1 says nothing, fall through to the boundary test
    assert classify_label(**{**base, "rank": 1, "present_classes": 1}, boundary_fraction=0.0,
                          expected_boundary_fraction=0.0) == "RCL"
    # odds ratio exactly 4 is PCL, just under is not: bf = 0.8 (odds 4) against e = 0.5 (odds 1)
    assert classify_label(**base, boundary_fraction=0.8, expected_boundary_fraction=0.5) == "PCL"
    assert classify_label(**base, boundary_fraction=0.79, expected_boundary_fraction=0.5) == "RCL"
    assert classify_label(**base, boundary_fraction=0.79, expected_boundary_fraction=0.5, pcl_odds=3) == "PCL"
    # every pixel of the changed classes is in the band: no power, not PCL
    assert classify_label(**base, boundary_fraction=1.0, expected_boundary_fraction=1.0) == "RCL"
    assert classify_label(**base, boundary_fraction=1.0, expected_boundary_fraction=0.95) == "PCL"
    assert classify_label(**base, boundary_fraction=0.1, expected_boundary_fraction=0.1) == "RCL"
    with pytest.raises(ParameterError, match="`pcl_odds` must be in"):
        classify_label(**base, boundary_fraction=0.5, expected_boundary_fraction=0.5, pcl_odds=1)


# ------------------------------------------------------------------------------------------ label_info


def test_label_info_agrees_with_the_functions(gen):
    clean = disks()
    noisy = flip_exact(clean, 0.1, 0.3, gen)
    noisy[0, :3] = 255
    info = label_info(clean, noisy, distance=3)
    assert isinstance(info, LabelInfo) and info.num_classes == 2 and info.distance == 3
    assert torch.equal(info.ntm, noise_transition_matrix(clean, noisy))
    assert info.mutual_information == pytest.approx(mutual_information(clean, noisy).item())
    assert info.boundary_fraction == pytest.approx(boundary_fraction(clean, noisy, distance=3).item())
    assert info.det == pytest.approx(ntm_det(info.ntm).item())
    assert info.condition == pytest.approx(ntm_condition(info.ntm).item())
    assert 0 < info.mutual_information < info.clean_entropy


def test_label_info_as_dict_is_json():
    clean = torch.zeros(1, 4, 4, dtype=torch.long)
    clean[:, :, 2:] = 1
    info = label_info(clean, clean.transpose(1, 2))
    d = info.as_dict()
    assert d["condition"] is None  # singular: inf is written as None
    assert d["ntm"] == [[0.5, 0.5], [0.5, 0.5]] and d["taxonomy"] == "RL" and d["rank"] == 1
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    clean_only = label_info(clean, clean).as_dict()
    assert clean_only["boundary_fraction"] is None and clean_only["changed_fraction"] == 0.0
    with pytest.raises(AttributeError, match="cannot assign to field 'rank'"):
        info.rank = 2  # frozen


def test_label_info_multiclass_has_no_det():
    clean = torch.zeros(1, 8, 8, dtype=torch.long)
    clean[:, 2:5, 2:5] = 1
    clean[:, 5:, 5:] = 2
    info = label_info(clean, dilate(clean))
    assert info.det is None and info.num_classes == 3 and info.taxonomy == "PCL"


# ------------------------------------------------------------------------------------------ errors


def test_argument_errors():
    x = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ShapeError, match="one shape"):
        confusion_counts(x, torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"`clean` must be \(N, H, W\)"):
        confusion_counts(x[0], x[0])
    with pytest.raises(DTypeError, match="`noisy` must be an integer tensor"):
        noise_transition_matrix(x, x.float())
    with pytest.raises(ParameterError, match="`noisy` must hold class indices in 0..1 or 255"):
        confusion_counts(x, x + 2, 2)
    with pytest.raises(ParameterError, match="`clean` must hold class indices >= 0"):
        confusion_counts(x - 1, x)
    with pytest.raises(ParameterError, match=r"`num_classes` must be an integer >= 1 \(or None\); got 0"):
        confusion_counts(x, x, 0)
    with pytest.raises(ParameterError, match="`reduction` must be one of pooled, none; got 'mean'"):
        mutual_information(x, x, reduction="mean")
    with pytest.raises(ParameterError, match=r"`distance` must be an integer >= 1 \(pixels\); got 0"):
        boundary_fraction(x, x, distance=0)
    with pytest.raises(ParameterError, match="`distance` must be an integer"):
        label_info(x, x, distance=1.5)
    with pytest.raises(ParameterError, match=r"`rank_tol` must be in \[0, 1\)"):
        label_info(x, x, rank_tol=-0.1)


# ------------------------------------------------------------------------------------------ devices


def test_outputs_follow_input_device(device):
    clean = disks().to(device)
    noisy = dilate(clean)
    for out in (confusion_counts(clean, noisy), noise_transition_matrix(clean, noisy),
                mutual_information(clean, noisy), boundary_fraction(clean, noisy),
                ntm_rank(noise_transition_matrix(clean, noisy))):
        assert out.device.type == device.type
    assert label_info(clean, noisy).ntm.device.type == "cpu"


def test_cpu_equals_accelerator(accel, gen):
    clean = disks()
    noisy = flip_exact(clean, 0.2, 0.1, gen)
    a, b = label_info(clean, noisy).as_dict(), label_info(clean.to(accel), noisy.to(accel)).as_dict()
    assert a.keys() == b.keys() and a["taxonomy"] == b["taxonomy"] and a["rank"] == b["rank"]
    for key in ("mutual_information", "det", "condition", "boundary_fraction", "expected_boundary_fraction"):
        assert a[key] == pytest.approx(b[key], rel=1e-9)
    on_accel = confusion_counts(clean.to(accel), noisy.to(accel)).cpu()
    assert torch.equal(confusion_counts(clean, noisy), on_accel)


def test_taxonomy_separates_sampling_from_skeleton_on_thin_tubules():
    """On ER-like tubules every pixel is near a boundary; the narrow band and the significance rule still see
    that a skeleton removes boundary pixels while sampling removes pixels uniformly."""
    from mstool.data import synthesize
    from mstool.device import make_generator
    from mstool.labels import apply_spec

    clean = synthesize("er", 4, 96, generator=make_generator(0)).labels
    got = {spec: label_info(clean, apply_spec(clean, spec, generator=make_generator(1), num_classes=2), 2).taxonomy
           for spec in ("sample:0.1", "sample:0.5", "flip:0.3,0.1", "skeleton", "erode:1", "dilate:1")}
    assert got == {"sample:0.1": "RCL", "sample:0.5": "RCL", "flip:0.3,0.1": "RCL",
                   "skeleton": "PCL", "erode:1": "PCL", "dilate:1": "PCL"}


def test_classify_label_significance_rule():
    base = dict(changed_fraction=0.2, rank=2, present_classes=2, boundary_fraction=0.86,
                expected_boundary_fraction=0.76)
    assert classify_label(**base) == "RCL"  # odds ratio about 2: below pcl_odds
    assert classify_label(**base, changed_pixels=20000) == "PCL"  # but certain over many pixels
    assert classify_label(**base, changed_pixels=50) == "RCL"  # and uncertain over few


def test_classify_label_calls_a_moved_expected_density_pcl_when_it_is_signal():
    from mstool.labels import MIN_SIGNAL, RCL_MIN_SCORE, classify_label

    base = dict(changed_fraction=0.2, rank=2, present_classes=2, boundary_fraction=0.4,
                expected_boundary_fraction=0.39)  # the boundary test alone says RCL (a blob skeleton, say)
    assert classify_label(**base) == "RCL"
    assert classify_label(**base, expected_score=0.37, expected_signal=1.0) == "PCL"
    assert classify_label(**base, expected_score=RCL_MIN_SCORE, expected_signal=1.0) == "RCL"
    # too little structure for the score to be trusted (labels flipped 45% both ways): the NTM's word stands
    assert classify_label(**base, expected_score=0.7, expected_signal=MIN_SIGNAL / 2) == "RCL"
    assert classify_label(**base, expected_score=float("nan"), expected_signal=1.0) == "RCL"
    # rank-1 labels stay RL whatever the score
    assert classify_label(**{**base, "rank": 1}, expected_score=0.0, expected_signal=0.0) == "RL"


def test_partial_labels_are_not_the_clean_labels_themselves():
    from mstool.labels import apply_spec

    clean = torch.zeros(2, 32, 32, dtype=torch.long)
    clean[:, 8:20, 8:24] = 1
    g = torch.Generator().manual_seed(0)
    for spec in ("sample:0.1,ignore", "scribble:0.5"):
        info = label_info(clean, apply_spec(clean, spec, generator=g, num_classes=2))
        # every kept pixel is right (nothing changed), but most are left out: not CL
        assert info.changed_fraction == 0 and info.ignored_fraction > 0.85 and info.taxonomy == "RCL"
        assert info.as_dict()["ignored_fraction"] == pytest.approx(info.ignored_fraction)
    assert label_info(clean, clean).taxonomy == "CL" and label_info(clean, clean).ignored_fraction == 0


def test_one_drawn_region_is_rcl_by_its_expected_density():
    from mstool.data import synthesize
    from mstool.labels import apply_spec
    from mstool.metastructure import expected_similarity

    clean = synthesize("nuc", 4, 64, generator=torch.Generator().manual_seed(1)).labels
    for spec, kind in (("region:0.25", "RCL"), ("region:0.25+dilate:2", "PCL")):
        drawn = apply_spec(clean, spec, generator=torch.Generator().manual_seed(0), num_classes=2)
        s = expected_similarity(clean, drawn, bootstrap=0)
        assert label_info(clean, drawn, expected_score=s.score, expected_signal=s.signal).taxonomy == kind, s
