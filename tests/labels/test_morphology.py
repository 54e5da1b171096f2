"""Tests for mstool.labels._morphology: disk, dilate, erode, boundary, skeletonize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import measure, morphology

from mstool.errors import DTypeError, ParameterError, ShapeError
from mstool.labels._morphology import (
    _BIT,
    _N,
    _thinning_table,
    boundary,
    dilate,
    disk,
    erode,
    skeletonize,
)


def _random_masks(n: int, size: int, seed: int, p: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, generator=g) < p


def _blobs(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random blobs: thresholded, box-blurred noise (touching the image edge at times)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size, size, generator=g)
    smooth = torch.nn.functional.avg_pool2d(noise, 7, stride=1, padding=3, count_include_pad=False)
    return (smooth > smooth.flatten(1).median(dim=1).values[:, None, None, None])[:, 0]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()


def _components(m: np.ndarray) -> int:
    return int(measure.label(m, connectivity=2).max())


def _holes(m: np.ndarray) -> int:
    """4-connected background components that do not touch the (padded) outside."""
    return int(measure.label(~np.pad(m, 1), connectivity=1).max()) - 1


def _iou_dilated(a: np.ndarray, b: np.ndarray) -> float:
    da, db = morphology.dilation(a, morphology.disk(1)), morphology.dilation(b, morphology.disk(1))
    return float((da & db).sum() / max((da | db).sum(), 1))


# -- shapes with known topology ----------------------------------------------------------------------------

def _filled_disk() -> np.ndarray:
    yy, xx = np.mgrid[:40, :40]
    return (yy - 20) ** 2 + (xx - 19) ** 2 <= 14**2


def _thick_ring() -> np.ndarray:
    yy, xx = np.mgrid[:48, :48]
    d2 = (yy - 24) ** 2 + (xx - 23) ** 2
    return (d2 <= 20**2) & (d2 > 9**2)


def _two_holes() -> np.ndarray:
    """A thick letter 'B'-like block with two holes."""
    m = np.zeros((56, 40), bool)
    m[4:52, 6:34] = True
    m[11:24, 14:26] = False
    m[32:45, 14:26] = False
    return m


def _two_bars() -> np.ndarray:
    m = np.zeros((40, 40), bool)
    m[5:12, 4:36] = True
    m[22:34, 8:30] = True
    return m


def _thick_cross() -> np.ndarray:
    m = np.zeros((48, 48), bool)
    m[20:29, 4:44] = True
    m[4:44, 19:28] = True
    return m


def _tube_network(seed: int = 0) -> np.ndarray:
    """Three seeded random walks on a 4-neighbour lattice, dilated into tubes five pixels thick."""
    rng = np.random.default_rng(seed)
    m = np.zeros((64, 64), bool)
    for _ in range(3):
        y, x = rng.integers(8, 56, 2)
        for _ in range(120):
            m[y, x] = True
            dy, dx = ((1, 0), (-1, 0), (0, 1), (0, -1))[rng.integers(0, 4)]
            y, x = int(np.clip(y + dy, 6, 57)), int(np.clip(x + dx, 6, 57))
    return morphology.dilation(m, morphology.disk(2))


SHAPES = {
    "filled_disk": _filled_disk,
    "thick_ring": _thick_ring,
    "two_holes": _two_holes,
    "two_bars": _two_bars,
    "thick_cross": _thick_cross,
    "tube_network": _tube_network,
}


# -- disk --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 8])
def test_disk_matches_skimage(radius):
    d = disk(radius)
    assert d.dtype == torch.float32 and d.shape == (2 * radius + 1, 2 * radius + 1)
    np.testing.assert_array_equal(d.numpy(), morphology.disk(radius).astype(np.float32))


def test_disk_radius_zero_is_single_pixel():
    assert disk(0).tolist() == [[1.0]]


def test_disk_on_device(device):
    assert disk(2, device=device).device.type == device.type


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_disk_bad_radius(bad):
    with pytest.raises(ParameterError, match="`radius` must be an integer >= 0; got"):
        disk(bad)


def test_disk_negative_radius_message():
    with pytest.raises(ParameterError, match="`radius` must be an integer >= 0; got -1$"):
        disk(-1)


def test_disk_accepts_numpy_integer():
    assert disk(np.int64(1)).shape == (3, 3)


# -- dilate / erode ----------------------------------------------------------------------------------------

def test_dilate_hand_computed_8x8():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 0, 0] = True  # corner pixel: the disk is cut by the border
    m[0, 4, 5] = True
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0, 0] = expected[0, 1] = expected[1, 0] = True
    expected[3, 5] = expected[5, 5] = True
    expected[4, 4:7] = True
    assert torch.equal(dilate(m, 1)[0], expected)


def test_erode_hand_computed_8x8():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 0:3, 0:4] = True  # touches the top and left edges, which count as foreground
    m[0, 5:8, 5:8] = True
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:2, 0:3] = True
    expected[6:8, 6:8] = True
    assert torch.equal(erode(m, 1)[0], expected)


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 13])
def test_dilate_matches_skimage(radius, device):
    masks = torch.cat([_random_masks(2, 24, seed=radius, p=0.08), _blobs(2, 24, seed=radius)])
    out = dilate(masks.to(device), radius)
    assert out.dtype == torch.bool and out.device.type == device.type
    for m, o in zip(masks, out, strict=True):
        np.testing.assert_array_equal(_np(o), morphology.dilation(_np(m), morphology.disk(radius)))


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 13])
def test_erode_matches_skimage(radius, device):
    masks = torch.cat([_random_masks(2, 24, seed=radius, p=0.9), _blobs(2, 24, seed=radius)])
    out = erode(masks.to(device), radius)
    assert out.dtype == torch.bool and out.device.type == device.type
    for m, o in zip(masks, out, strict=True):
        np.testing.assert_array_equal(_np(o), morphology.erosion(_np(m), morphology.disk(radius)))


@pytest.mark.parametrize("op", [dilate, erode])
def test_radius_zero_is_identity_copy(op):
    m = _random_masks(2, 8, seed=0)
    out = op(m, 0)
    assert torch.equal(out, m) and out.data_ptr() != m.data_ptr()


@pytest.mark.parametrize("op", [dilate, erode, boundary, skeletonize])
@pytest.mark.parametrize("n", [0, 1, 2])
def test_empty_masks(op, n, device):
    m = torch.zeros(n, 8, 8, dtype=torch.bool, device=device)
    out = op(m, 2) if op in (dilate, erode) else op(m)
    assert out.shape == (n, 8, 8) and out.dtype == torch.bool and not out.any()


def test_full_mask_stays_full_under_erosion_and_dilation():
    m = torch.ones(2, 8, 8, dtype=torch.bool)
    assert erode(m, 3).all() and dilate(m, 3).all()
    assert not boundary(m).any()


@pytest.mark.parametrize("op", [dilate, erode])
def test_morphology_bad_inputs(op):
    with pytest.raises(ShapeError, match=r"`mask` must be \(N, H, W\); got \(8, 8\)"):
        op(torch.zeros(8, 8, dtype=torch.bool), 1)
    with pytest.raises(DTypeError, match="`mask` must be a bool tensor; got torch.int64"):
        op(torch.zeros(1, 8, 8, dtype=torch.long), 1)
    with pytest.raises(ParameterError, match="`radius` must be an integer >= 0; got -1"):
        op(torch.zeros(1, 8, 8, dtype=torch.bool), -1)


@pytest.mark.parametrize("op", [dilate, erode])
def test_morphology_batch_split_invariance(op):
    masks = _blobs(4, 16, seed=3)
    whole = op(masks, 2)
    parts = torch.cat([op(masks[:1], 2), op(masks[1:], 2)])
    assert torch.equal(whole, parts)


def test_dilate_erode_order_relations():
    masks = _blobs(3, 20, seed=5)
    assert (erode(masks, 2) <= masks).all() and (masks <= dilate(masks, 2)).all()
    # erosion and dilation are dual under complement (with the borders as documented)
    assert torch.equal(erode(masks, 2), ~dilate(~masks, 2))


# -- boundary ----------------------------------------------------------------------------------------------

def test_boundary_hand_computed_8x8():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 1:6, 1:7] = True
    m[0, 6:8, 0:3] = True  # touches the bottom edge, which is not background
    expected = m[0].clone()
    expected[2:5, 2:6] = False
    expected[7, 0] = expected[7, 1] = False  # only outside-the-image or mask pixels around them
    expected[6, 0] = True  # (5, 0) is background
    out = boundary(m)[0]
    assert torch.equal(out, expected), out.long()


@pytest.mark.parametrize("width", [1, 2, 3])
def test_boundary_matches_square_erosion(width, device):
    masks = _blobs(3, 24, seed=width)
    out = boundary(masks.to(device), width=width)
    footprint = np.ones((2 * width + 1, 2 * width + 1), dtype=bool)  # a square
    for m, o in zip(masks, out, strict=True):
        m = _np(m)
        np.testing.assert_array_equal(_np(o), m & ~morphology.erosion(m, footprint))
    assert (out.cpu() <= masks).all()


@pytest.mark.parametrize("bad", [0, -1, 1.0])
def test_boundary_bad_width(bad):
    with pytest.raises(ParameterError, match="`width` must be an integer >= 1; got"):
        boundary(torch.zeros(1, 8, 8, dtype=torch.bool), width=bad)


def test_boundary_single_pixel_is_its_own_boundary():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 3, 4] = True
    assert torch.equal(boundary(m), m)


# -- skeletonize -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SHAPES))
def test_skeleton_topology_and_overlap_match_skimage(name, device):
    m = SHAPES[name]()
    ours = _np(skeletonize(torch.from_numpy(m)[None].to(device))[0])
    ref = morphology.skeletonize(m)
    assert _components(ours) == _components(ref) == _components(m)
    assert _holes(ours) == _holes(ref) == _holes(m)
    assert _iou_dilated(ours, ref) >= 0.9
    assert not (ours & ~m).any()


def test_skeleton_shapes_have_expected_topology():
    """Guards the fixtures: the shapes hold the topology their names promise."""
    expected = {"filled_disk": (1, 0), "thick_ring": (1, 1), "two_holes": (1, 2), "two_bars": (2, 0),
                "thick_cross": (1, 0)}
    for name, (comps, holes) in expected.items():
        m = SHAPES[name]()
        assert (_components(m), _holes(m)) == (comps, holes), name


def test_skeleton_is_thin_idempotent_and_batched(device):
    shapes = [f() for f in SHAPES.values()]
    batch = torch.zeros(len(shapes), 64, 64, dtype=torch.bool)
    for i, s in enumerate(shapes):
        batch[i, : s.shape[0], : s.shape[1]] = torch.from_numpy(s)
    batch = batch.to(device)
    skel = skeletonize(batch)
    assert skel.dtype == torch.bool and skel.device.type == device.type
    assert (skel <= batch).all()
    assert torch.equal(skeletonize(skel), skel)
    per_image = torch.cat([skeletonize(batch[i : i + 1]) for i in range(len(shapes))])
    assert torch.equal(skel, per_image)
    assert torch.equal(skel.cpu(), skeletonize(batch.cpu()))


def test_skeleton_preserves_topology_of_random_masks(device):
    """Noise masks are the hard case for parallel thinning: every component and hole must survive."""
    masks = torch.cat([_random_masks(6, 24, seed=11, p=0.45), _blobs(6, 32, seed=12)[:, :24, :24]])
    skel = skeletonize(masks.to(device)).cpu()
    for m, s in zip(masks, skel, strict=True):
        m, s = _np(m), _np(s)
        assert _components(s) == _components(m)
        assert _holes(s) == _holes(m)
    assert torch.equal(skeletonize(skel), skel)


def _grid(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "#" for c in r] for r in rows])


def test_skeleton_small_patterns_hand_computed():
    m = torch.zeros(5, 8, 8, dtype=torch.bool)
    m[0, 3, 3] = True  # a single pixel stays
    m[1, 2, 1:7] = True  # a one-pixel line stays
    m[2, 3:5, 3:5] = True  # a 2 x 2 block thins to two pixels instead of vanishing
    m[3, 1:7, 3:6] = True  # a bar 3 wide keeps its middle column; the south end is peeled first
    for i in range(6):  # a two-pixel-thick anti-diagonal staircase becomes a one-pixel diagonal
        m[4, 6 - i, 1 + i : 3 + i] = True
    skel = skeletonize(m)
    assert torch.equal(skel[0], m[0]) and torch.equal(skel[1], m[1])
    empty = ["........"] * 2
    block = _grid(empty + ["........", "...##...", "........"] + empty + ["........"])
    bar = _grid(["........"] + ["....#..."] * 4 + ["........"] * 3)
    diagonal = _grid(["........", "......##", ".....#..", "....#...", "...#....", "..#....."] + empty)
    assert torch.equal(skel[2], block), skel[2].long()
    assert torch.equal(skel[3], bar), skel[3].long()
    assert torch.equal(skel[4], diagonal), skel[4].long()
    # scikit-image gives the same skeletons
    for mask, expected in zip(m[2:], (block, bar, diagonal), strict=True):
        np.testing.assert_array_equal(morphology.skeletonize(_np(mask)), _np(expected))


def test_skeleton_max_iter():
    m = torch.from_numpy(_filled_disk())[None]
    full = skeletonize(m)
    assert torch.equal(skeletonize(m, max_iter=0), m)
    one = skeletonize(m, max_iter=1)
    assert (full <= one).all() and (one <= m).all() and m.sum() > one.sum() > full.sum()
    assert torch.equal(skeletonize(m, max_iter=1000), full)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_skeleton_bad_max_iter(bad):
    with pytest.raises(ParameterError, match="`max_iter` must be an integer >= 0; got"):
        skeletonize(torch.zeros(1, 8, 8, dtype=torch.bool), max_iter=bad)


def test_skeleton_bad_mask():
    with pytest.raises(ShapeError, match=r"`mask` must be \(N, H, W\); got \(1, 1, 8, 8\)"):
        skeletonize(torch.zeros(1, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(DTypeError, match="`mask` must be a bool tensor; got torch.float32"):
        skeletonize(torch.zeros(1, 8, 8))


def _ring(code: int) -> list[int]:
    return [(code >> _BIT[k]) & 1 for k in range(_N, _N + 8)]


def test_thinning_table_keeps_ends_interiors_and_connectivity():
    table = _thinning_table()
    assert table.shape == (2, 256) and table.dtype == torch.bool
    for code in range(256):
        if not table[:, code].any():
            continue
        p = _ring(code)
        assert 2 <= sum(p) <= 6, code
        # Hilditch's crossing number: the foreground neighbours form one 8-connected arc
        crossings = sum(1 for i in (0, 2, 4, 6) if not p[i] and (p[i + 1] or p[(i + 2) % 8]))
        assert crossings == 1, code


def test_thinning_table_is_symmetric_under_half_turn():
    """Turning the neighbourhood by 180 degrees swaps the two subiterations."""
    table = _thinning_table()
    for code in range(256):
        p = _ring(code)
        turned = p[4:] + p[:4]
        turned_code = sum(bit << _BIT[k] for k, bit in enumerate(turned))
        assert table[0, code] == table[1, turned_code], code


def test_skeleton_cpu_matches_accelerator(accel):
    masks = torch.cat([_blobs(4, 48, seed=21), _random_masks(4, 48, seed=22, p=0.5)])
    assert torch.equal(skeletonize(masks.to(accel)).cpu(), skeletonize(masks))
    assert torch.equal(dilate(masks.to(accel), 3).cpu(), dilate(masks, 3))
    assert torch.equal(erode(masks.to(accel), 3).cpu(), erode(masks, 3))
    assert torch.equal(boundary(masks.to(accel), width=2).cpu(), boundary(masks, width=2))
