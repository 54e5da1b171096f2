"""The label-noise zoo: batched operations that make sparse, noisy or perturbed labels from clean ones.

Size: one module (over 1000 lines) because each operation sits beside its registry entry (parameters, ranges,
usage, taxonomy class), so the spec grammar, ``mstool labels specs`` and the function cannot drift apart, and the
exact-count draws share their helpers; each operation is short.

Legend: N batch · K classes · H, W pixels.

Every operation takes labels ``(N, H, W)`` of an integer dtype (binary 0/1 or classes ``0..K-1``) and returns
labels of the same shape, dtype and device. Pixels holding the ignore index 255 are passed through: they are
255 in the output at the same places, and their value never spreads to other pixels. Random numbers are drawn
on the CPU from ``generator`` and then moved, so one seed gives the same output on every device.

The operations fall into the four kinds of label of Luo et al. (arXiv 2205.00160):

- ``CL`` clean labels (``clean``);
- ``RCL`` randomised clean labels: random sampling or flipping that keeps the per-class spatial density, the
  *meta-structure*, in expectation (``sample``, ``flip``, ``pairflip``, ``scribble``, ``objects``, ``region``);
- ``PCL`` perturbed clean labels: morphological changes that move the meta-structure (``dilate``, ``erode``,
  ``skeleton``, ``translate``, ``shift``, ``markov``);
- ``RL`` random labels, independent of the image (``random``).

:data:`LABEL_ZOO` describes each operation (parameters, ranges, defaults, kind, help) for the spec grammar of
:mod:`mstool.labels._spec`, the CLI and the comparison suite.

References:
    Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep Neural
    Networks", arXiv 2205.00160 (label types CL, RCL, PCL, RL; EMS = ``skeleton+shift:1+sample:0.1``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy import ndimage

from .. import IGNORE_INDEX
from .._check import check_in, check_int, check_labels, check_range, check_shape
from .._registry import Registry
from ..errors import ParameterError, ShapeError
from ._morphology import dilate, erode, skeletonize

__all__ = [
    "LABEL_ZOO",
    "ZooOp",
    "ZooParam",
    "clean_labels",
    "sample_labels",
    "flip_labels",
    "symmetric_flip_labels",
    "pair_flip_labels",
    "flip_by_matrix",
    "random_labels",
    "dilate_labels",
    "erode_labels",
    "skeleton_labels",
    "translate_labels",
    "shift_labels",
    "markov_labels",
    "scribble_labels",
    "object_labels",
    "region_labels",
]


# Random keys get this many bits; the group of an element goes above them (see `_smallest_per_group`).
_KEY_BITS = 40
# The shift that brings byte j (in memory order) of an int64 down to the lowest byte.
_BYTE_SHIFTS = tuple(range(0, 64, 8)) if sys.byteorder == "little" else tuple(range(56, -8, -8))


# ------------------------------------------------------------------------------------------------------------
# Shared steps
# ------------------------------------------------------------------------------------------------------------


def _check_labels(labels: torch.Tensor, num_classes: int | None = None) -> tuple[int, bool]:
    """Check a label batch; return its largest class (-1 if none) and whether it holds 255.

    Classes must be < 255, so every label fits in a byte. Anything odd is handed to
    :func:`mstool._check.check_labels` for its message.
    """
    top, ignored, _ = _scan_labels(labels, num_classes)
    return top, ignored


def _byte_labels(labels: torch.Tensor) -> tuple[torch.Tensor, int, bool]:
    """:func:`_check_labels`, and the labels as a contiguous ``(N, H, W)`` uint8 tensor (1/8 of int64's bytes)."""
    top, ignored, small = _scan_labels(labels, None)
    if small is None:
        small = labels.to(torch.uint8, memory_format=torch.contiguous_format).contiguous()
    return small, top, ignored


def _scan_labels(labels: torch.Tensor, num_classes: int | None) -> tuple[int, bool, torch.Tensor | None]:
    """The work of :func:`_check_labels`; also the byte labels if the 255 case needed them (else ``None``).

    The common case costs two reductions (the sign and the largest label; the batch is often too large for the
    cache, so the passes over it, not the arithmetic, set the time).
    """
    check_shape(labels, "labels", "N H W", dtype="int")
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", low=1)
    if labels.numel() == 0:
        return -1, False, None
    negative, high = _negative_and_max(labels)
    ignored = high == IGNORE_INDEX and not negative
    small = None
    if ignored:
        small = labels.to(torch.uint8, memory_format=torch.contiguous_format).contiguous()
        high = int((small + 1).amax()) - 1  # the byte 255 wraps to 0, so this is the largest class below 255
    limit = IGNORE_INDEX - 1 if num_classes is None else min(num_classes, IGNORE_INDEX) - 1
    if negative or high > limit:
        check_labels(labels, num_classes=num_classes)
        raise ParameterError(f"`labels` must hold classes below {IGNORE_INDEX} (the ignore index); got {high}")
    return high, ignored, small


def _negative_and_max(labels: torch.Tensor) -> tuple[bool, int]:
    """Whether a nonempty integer tensor holds a negative number, and its largest.

    On the CPU ``amin`` of int64 is several times slower than ``amax`` (not vectorised), so there the minimum
    of the int32 view stands in: a negative int64 has a negative high half. It also reads labels of ``2**31``
    and more as negative (their low half), which are as invalid as negatives.
    """
    if labels.device.type == "cpu" and labels.dtype == torch.int64 and labels.is_contiguous():
        return bool(labels.view(torch.int32).amin() < 0), int(labels.amax())
    low, high = torch.aminmax(labels)
    return bool(low < 0), int(high)


def _num_classes(top: int, num_classes: int | None) -> int:
    """``num_classes`` when given, else the largest class + 1, at least 2."""
    return num_classes if num_classes is not None else max(top + 1, 2)


def _draw_uniform(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=generator).to(device)


def _smallest_per_group(
    group: torch.Tensor, quota: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """In each group ``g`` choose the ``quota[g]`` elements with the smallest random keys: a uniform random subset.

    Every element gets a random 40-bit key; a stable sort of ``group << 40 | key`` orders each group's elements
    by key, ties by position, so the choice is the same on every device. Only the keys below a per-group cut,
    six standard deviations above the quota's share, are sorted (sorting is the slow step); if a group has
    fewer than its quota below the cut (about never), every key is sorted, which chooses the same elements.

    Args:
        group: ``(M,)`` int64 group of each element, ``< 2**23``.
        quota: ``(G,)`` int64 how many to choose per group, at most the group's size.
        generator: CPU random generator.

    Returns:
        The chosen elements' positions in ``group`` and their ranks ``0..quota - 1`` within their group.
    """
    if quota.numel() > 2 ** (63 - _KEY_BITS):
        raise ParameterError(f"too many images in one batch ({quota.numel()} groups); split the batch")
    keys = torch.randint(0, 2**_KEY_BITS, (group.numel(),), generator=generator).to(group.device)
    counts = torch.bincount(group, minlength=quota.numel())
    size = counts.clamp(min=1).to(torch.float64)
    share = quota / size
    cut = (share + 6 * torch.sqrt(share * (1 - share) / size) + 2 / size).clamp(max=1) * 2**_KEY_BITS
    candidates = (keys < cut.ceil().long()[group]).nonzero().squeeze(1)
    sub_counts = torch.bincount(group[candidates], minlength=quota.numel())
    if bool((sub_counts < quota).any()):
        candidates, sub_counts = torch.arange(group.numel(), device=group.device), counts
    sub_group = group[candidates]
    order = torch.argsort((sub_group << _KEY_BITS) | keys[candidates], stable=True)
    sorted_group = sub_group[order]
    rank = torch.arange(order.numel(), device=group.device) - (sub_counts.cumsum(0) - sub_counts)[sorted_group]
    take = rank < quota[sorted_group]
    return candidates[order[take]], rank[take]


def _words(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The 8-byte words of a ``(R, C)`` byte mask that hold a nonzero byte, each row padded with zeros to whole words.

    Finding them reads an eighth as many elements as a pixel-wise ``nonzero`` (its cost is per element read),
    and sparse masks leave most words out.

    Returns:
        ``(index, values, width)``: the ``(K,)`` flat indices of those words in the padded ``(R, width)`` mask,
        the words as ``(K,)`` int64 (``values.view(torch.uint8)`` gives their bytes in order), and the padded row
        width ``width = 8 * ceil(C / 8)``.
    """
    mask = mask.view(torch.uint8)
    width = -(-mask.shape[1] // 8) * 8
    if width != mask.shape[1]:
        mask = F.pad(mask, (0, width - mask.shape[1]))
    elif not mask.is_contiguous() or mask.storage_offset() % 8:
        mask = mask.clone(memory_format=torch.contiguous_format)
    words = mask.view(torch.int64).view(-1)
    index = words.nonzero().squeeze(1)
    return index, words.index_select(0, index), width


def _byte_sums(values: torch.Tensor) -> torch.Tensor:
    """Sum of the eight bytes of each ``(K,)`` int64 word whose bytes are 0 or 1: shifts and adds, no carries."""
    s = values
    s = s + (s >> 8)
    s = s + (s >> 16)
    return (s + (s >> 32)) & 0xFF


def _random_subset(
    counts: torch.Tensor,
    quota: torch.Tensor,
    generator: torch.Generator | None,
    *,
    spans: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Choose ``quota[g]`` of the ``counts[g]`` elements of each group ``g``: a uniform random subset.

    Group ``g`` owns ``spans[g]`` consecutive slots (group 0's first), and its elements are the slots marked in
    ``valid`` (by default every slot, ``spans = counts``). Slots are drawn uniformly with replacement and the
    first ``quota[g]`` distinct valid ones kept, in draw order: sequential sampling without replacement, so
    every subset of that size is equally likely. Where more than half a group is chosen, the elements left out
    are drawn instead. Each round draws enough that a group rarely needs another, so the cost grows with the
    quota, not with the group sizes.

    Args:
        counts: ``(G,)`` int64 number of elements per group.
        quota: ``(G,)`` int64 how many to choose per group, in ``[0, counts]``.
        generator: CPU random generator.
        spans: ``(G,)`` int64 number of slots per group, ``>= counts``.
        valid: ``(spans.sum(),)`` bool, the slots that are elements (``counts[g]`` of group ``g``'s).

    Returns:
        ``(quota.sum(),)`` int64 slots of the chosen elements, in no particular order.
    """
    device = counts.device
    spans = counts if spans is None else spans
    total = int(spans.sum())
    starts = spans.cumsum(0) - spans
    invert = 2 * quota > counts
    missing = torch.where(invert, counts - quota, quota)
    # `spare = counts - missing >= counts / 2` elements are never chosen, so a draw finds a new element with
    # chance p >= spare / spans: the draws needed have a mean of `spans * log(free / spare)` (coupon collector)
    # and a standard deviation below sqrt(missing * (1 - p)) / p; four of them more rarely fall short.
    spare = (counts - missing).clamp(min=1).to(torch.float64)
    p = spare / spans.clamp(min=1)
    open_ = valid.clone() if valid is not None else torch.ones(total, dtype=torch.bool, device=device)
    picked = []
    while bool(missing.any()):
        spread = 4 * (missing * (1 - p)).sqrt() / p + 4 * missing.clamp(max=1)
        draws = torch.ceil(spans * torch.log1p(missing / spare) + spread).long()
        owner = torch.repeat_interleave(draws)
        uniform = torch.rand(owner.numel(), dtype=torch.float64, generator=generator).to(device)
        pick = (uniform * spans.index_select(0, owner)).long() + starts.index_select(0, owner)
        order = torch.arange(owner.numel(), dtype=torch.int32, device=device)
        first = torch.full((total,), owner.numel(), dtype=torch.int32, device=device)
        first.scatter_reduce_(0, pick, order, "amin")
        new = (first.index_select(0, pick) == order) & open_.index_select(0, pick)
        seen = new.cumsum(0)  # new slots up to each draw
        ends = draws.cumsum(0)
        counted = F.pad(seen, (1, 0))
        before, found = counted.index_select(0, ends - draws), counted.index_select(0, ends)
        keep = (new & (seen <= (before + missing).index_select(0, owner))).nonzero().squeeze(1)
        pick = pick.index_select(0, keep)
        open_.index_fill_(0, pick, False)
        picked.append(pick)
        missing -= torch.minimum(found - before, missing)
    if not bool(invert.any()):
        return torch.cat(picked) if picked else torch.zeros(0, dtype=torch.long, device=device)
    taken = ~open_ if valid is None else open_ ^ valid  # open_ is within valid
    chosen = torch.where(torch.repeat_interleave(invert, spans, output_size=total), open_, taken)
    return chosen.nonzero().squeeze(1)


def _apportion(counts: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Split each count ``n[g, i]`` over row ``i`` of ``matrix`` in whole numbers that sum to ``n[g, i]``.

    First ``round(n * (1 - T[i, i]))`` pixels (halves up) are set to move, so the flip rate of every class is
    as exact as whole pixels allow; then the movers are shared over the other classes in proportion to
    ``T[i, j]`` by largest remainder (shares rounded down, the pixels left over to the largest remainders, the
    lower class first on a tie).

    Args:
        counts: ``(G, K)`` integer counts per group and class.
        matrix: ``(K, K)`` row-stochastic float64.

    Returns:
        ``(G, K, K)`` int64 target counts.
    """
    k = matrix.shape[0]
    eye = torch.eye(k, dtype=torch.bool, device=counts.device)
    moved = torch.floor(counts * (1 - matrix.diagonal()) + 0.5 + 1e-9).clamp(max=counts).long()
    off = matrix.masked_fill(eye, 0)
    total = off.sum(1, keepdim=True)
    weights = torch.where(total > 0, off / total.clamp(min=1e-300), torch.zeros_like(off))
    ideal = moved.to(torch.float64)[:, :, None] * weights[None]
    base = torch.floor(ideal + 1e-9)
    left = moved - base.sum(-1).long()
    priority = torch.round((ideal - base).clamp(min=0) * 1e9).masked_fill(eye, -1.0)
    order = torch.argsort(-priority, dim=-1, stable=True)
    place = torch.empty_like(order)
    place.scatter_(-1, order, torch.arange(k, device=counts.device).expand_as(order).contiguous())
    shares = base.long() + (place < left[..., None]).long()
    return torch.where(eye, (counts - moved)[:, :, None], shares)


def _neighbour_of(mask: torch.Tensor, *, outside: bool) -> torch.Tensor:
    """Pixels with at least one 4-neighbour in ``mask``; pixels beyond the image count as ``outside``."""
    padded = F.pad(mask[:, None].to(torch.uint8), (1, 1, 1, 1), value=int(outside))[:, 0]
    touch = padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    return touch.bool()


# ------------------------------------------------------------------------------------------------------------
# CL
# ------------------------------------------------------------------------------------------------------------


def clean_labels(labels: torch.Tensor) -> torch.Tensor:
    """The clean labels themselves (a copy): the ``clean`` entry of the zoo.

    Args:
        labels: ``(N, H, W)`` integer labels.

    Returns:
        ``(N, H, W)`` a copy of ``labels``.

    Example:
        >>> clean_labels(torch.tensor([[[0, 1, 255]]])).tolist()
        [[[0, 1, 255]]]
    """
    _check_labels(labels)
    return labels.clone()


# ------------------------------------------------------------------------------------------------------------
# RCL
# ------------------------------------------------------------------------------------------------------------


def sample_labels(
    labels: torch.Tensor,
    keep: float,
    *,
    unlabeled: str = "background",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep exactly ``ceil(keep * n)`` randomly chosen pixels of each class in each image (sparse labels).

    With ``unlabeled="background"`` (the paper's sampled labels) only foreground classes are sampled and the
    pixels not kept become background 0; background pixels stay as they are. With ``unlabeled="ignore"``
    (partial labels) every class, background included, is sampled and the pixels not kept become the ignore
    index 255, so a loss that skips 255 sees a fraction ``keep`` of each class.

    Degenerate cases: ``keep=1`` returns the labels unchanged; ``keep=0`` gives all background (or, with
    ``"ignore"``, all 255); a class absent from an image keeps 0 pixels there.

    Args:
        labels: ``(N, H, W)`` integer labels.
        keep: fraction of each class's pixels to keep, in [0, 1].
        unlabeled: ``"background"`` or ``"ignore"``: what the pixels not kept become.
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` sampled labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.ones(2, 4, 4, dtype=torch.long)
        >>> sample_labels(labels, 0.25, generator=g).sum(dim=(1, 2)).tolist()
        [4, 4]
        >>> (sample_labels(labels, 0.3, unlabeled="ignore", generator=g) == 1).sum().item()
        10

    References:
        Luo et al., arXiv 2205.00160, sampled labels (RCL) and EMS.
    """
    small, top, has_ignore = _byte_labels(labels)
    keep = check_range(keep, "keep", 0, 1)
    check_in(unlabeled, "unlabeled", ("background", "ignore"))
    fill = 0 if unlabeled == "background" else IGNORE_INDEX
    out = torch.full(labels.shape, fill, dtype=labels.dtype, device=labels.device)
    if labels.numel() == 0:
        return out
    flat = out.view(-1)
    if has_ignore and fill == 0:
        flat.index_fill_(0, _nonzero_bytes(_ignored(small)), IGNORE_INDEX)
    lowest = 1 if unlabeled == "background" else 0  # the lowest class sampled
    if top <= lowest:  # one class at most: its pixels are the bytes that are neither background nor 255
        if lowest == 0:
            candidates = _ignored(small).logical_not_()
        else:  # without 255 the nonzero bytes are the foreground, and 0/1 bytes if binary
            candidates = _foreground(small) if has_ignore else small
        return flat.index_fill_(0, _sample_mask(candidates, keep, generator), lowest).view(labels.shape)
    # One class at a time, each like the binary case: a loop over classes, not pixels. Grouping every pixel by
    # (class, image) with a sort instead cost several times more (the background alone is most of the batch).
    for c in range(lowest, top + 1):
        mask = (small ^ c).logical_not_()  # small == c, which is many times slower on uint8 on the CPU
        flat.index_fill_(0, _sample_mask(mask, keep, generator), c)
    return out


def _sample_mask(mask: torch.Tensor, keep: float, generator: torch.Generator | None) -> torch.Tensor:
    """Flat indices of ``ceil(keep * n)`` uniformly chosen pixels of the ``n`` set in each image of a 0/1 byte mask.

    The slots are the bytes of the mask's nonzero words, so no list of every set pixel is needed.
    """
    n = mask.shape[0]
    size = mask[0].numel()
    index, values, width = _words(mask.view(n, size))
    bounds = torch.searchsorted(index, torch.arange(n + 1, device=mask.device) * (width // 8))
    ends = torch.cat([index.new_zeros(1), _byte_sums(values).cumsum(0)])
    counts = ends.index_select(0, bounds).diff()
    quota = torch.ceil(keep * counts.to(torch.float64) - 1e-9).long()
    slots = values.view(torch.uint8).bool()
    slot = _random_subset(counts, quota, generator, spans=8 * bounds.diff(), valid=slots)
    flat = index.index_select(0, slot >> 3) * 8 + (slot & 7)
    if width == size:
        return flat
    return flat - torch.div(flat, width, rounding_mode="floor") * (width - size)


def _nonzero_bytes(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices, ascending, of the nonzero bytes of a contiguous uint8 or bool tensor."""
    index, values, _ = _words(mask.view(1, -1))
    hit = values.view(torch.uint8).nonzero().squeeze(1)
    return index.index_select(0, hit >> 3) * 8 + (hit & 7)


def _foreground(small: torch.Tensor) -> torch.Tensor:
    """Pixels of classes 1..254 among byte labels, as bool: ``(small + 1) >> 1`` is 0 just for 0 and 255 (which
    wraps to 0). Arithmetic, as comparing uint8 with a number is many times slower on the CPU."""
    return ((small + 1) >> 1).bool()


def _ignored(small: torch.Tensor) -> torch.Tensor:
    """Pixels holding 255 among byte labels, as bool (``small + 1`` wraps 255 to 0)."""
    return (small + 1).bool().logical_not_()


def _class_groups(index: torch.Tensor, classes: torch.Tensor, shape: torch.Size, k: int) -> torch.Tensor:
    """Group ``image * k + class`` of flat pixel indices into an ``(N, H, W)`` batch."""
    return torch.div(index, shape[1] * shape[2], rounding_mode="floor") * k + classes.long()


def flip_by_matrix(
    labels: torch.Tensor,
    matrix: torch.Tensor | Sequence[Sequence[float]],
    *,
    exact: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Relabel every pixel of clean class ``i`` as class ``j`` with probability ``matrix[i, j]``.

    ``matrix`` is a noise transition matrix (NTM) ``T[i, j] = P(noisy = j | clean = i)``, rows summing to 1.
    With ``exact=False`` each pixel draws its new class independently. With ``exact=True`` each image realises
    the row proportions exactly as far as whole pixels allow: of its ``n`` pixels of class ``i``, exactly
    ``round(n * (1 - T[i, i]))`` (halves up), chosen uniformly at random, change class, shared over the
    classes ``j != i`` in proportion to ``T[i, j]`` (largest remainder), so the NTM measured on the result
    equals ``T`` up to rounding.

    Args:
        labels: ``(N, H, W)`` integer labels with classes ``0..K-1`` (255 passes through).
        matrix: ``(K, K)`` row-stochastic noise transition matrix.
        exact: realise the row proportions exactly per image and class instead of drawing per pixel.
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` noisy labels.

    Raises:
        ShapeError: ``matrix`` is not square.
        ParameterError: a negative entry, a row that does not sum to 1, or a label ``>= K``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1]]])
        >>> T = [[0.5, 0.5], [0.0, 1.0]]
        >>> noisy = flip_by_matrix(labels, T, exact=True, generator=g)
        >>> (noisy[labels == 0] == 1).sum().item(), noisy[labels == 1].tolist()
        (2, [1, 1, 1, 1])
    """
    check_shape(labels, "labels", "N H W", dtype="int")
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ShapeError(f"`matrix` must be (K, K); got {tuple(matrix.shape)}")
    if bool((matrix < 0).any()) or not bool(torch.isfinite(matrix).all()):
        raise ParameterError("`matrix` must hold finite probabilities >= 0")
    row_sums = matrix.sum(1)
    if not bool(torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-6)):
        raise ParameterError(f"`matrix` rows must sum to 1; got row sums {[round(v, 6) for v in row_sums.tolist()]}")
    k = matrix.shape[0]
    _check_labels(labels, num_classes=k)
    matrix = matrix / row_sums[:, None]
    if exact:
        return _flip_exact(labels, matrix, generator)
    return _flip_independent(labels, matrix, generator)


def _flip_independent(labels: torch.Tensor, matrix: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Each pixel draws its noisy class from its row of ``matrix`` (inverse CDF of one uniform number)."""
    u = _draw_uniform(labels.shape, generator, labels.device).to(torch.float64)
    cdf = matrix.cumsum(1).to(labels.device)
    cdf[:, -1] = 1.0 + 1e-9  # rows that sum to 1 - 1e-7 must still catch every u < 1
    out = labels.clone()
    for i in range(matrix.shape[0]):
        noisy = torch.searchsorted(cdf[i].contiguous(), u, right=True).clamp(max=matrix.shape[0] - 1)
        out = torch.where(labels == i, noisy.to(labels.dtype), out)
    return out


def _flip_exact(labels: torch.Tensor, matrix: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per image and class, choose the movers at random, then hand them out over the target classes."""
    k = matrix.shape[0]
    out = labels.clone(memory_format=torch.contiguous_format)
    small = out.view(-1).to(torch.uint8)
    index = (small != IGNORE_INDEX).nonzero().squeeze(1)
    if index.numel() == 0:
        return out
    group = _class_groups(index, small[index], labels.shape, k)
    counts = torch.bincount(group, minlength=labels.shape[0] * k).view(-1, k)
    shares = _apportion(counts, matrix.to(labels.device))
    stay = shares.diagonal(dim1=-2, dim2=-1)
    chosen, rank = _smallest_per_group(group, (counts - stay).view(-1), generator)
    # A mover of rank r goes to the target class whose cumulative share first exceeds r.
    bounds = (shares - torch.diag_embed(stay)).cumsum(-1).view(-1, k)[group[chosen]]
    noisy = (rank[:, None] >= bounds[:, : k - 1]).sum(1)
    out.view(-1)[index[chosen]] = noisy.to(labels.dtype)
    return out


def flip_labels(
    labels: torch.Tensor,
    fg_to_bg: float,
    bg_to_fg: float,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flip exactly ``round(f * n_fg)`` foreground and ``round(b * n_bg)`` background pixels per image.

    Binary labels only (0, 1 and 255). The measured NTM is ``[[1 - b, b], [f, 1 - f]]`` up to rounding
    (halves round up); its determinant ``1 - f - b`` is 0 at ``f + b = 1``, where the noisy labels no longer
    depend on the clean ones, and negative beyond, where they anti-correlate.

    Args:
        labels: ``(N, H, W)`` binary labels.
        fg_to_bg: fraction ``f`` of foreground pixels turned into background, in [0, 1].
        bg_to_fg: fraction ``b`` of background pixels turned into foreground, in [0, 1].
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` flipped labels.

    Raises:
        ParameterError: a rate outside [0, 1] or a class other than 0, 1 (and 255).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.tensor([[[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]]])
        >>> noisy = flip_labels(labels, 0.5, 0.5, generator=g)
        >>> (noisy[labels == 1] == 0).sum().item(), (noisy[labels == 0] == 1).sum().item()
        (2, 3)

    References:
        Luo et al., arXiv 2205.00160, flipped labels (RCL).
    """
    f = check_range(fg_to_bg, "fg_to_bg", 0, 1)
    b = check_range(bg_to_fg, "bg_to_fg", 0, 1)
    _check_binary(labels, "flip_labels")
    return flip_by_matrix(labels, [[1 - b, b], [f, 1 - f]], exact=True, generator=generator)


def _check_binary(labels: torch.Tensor, caller: str) -> None:
    top, _ = _check_labels(labels)
    if top > 1:
        raise ParameterError(
            f"`{caller}` needs binary labels (0, 1, 255); got class {top}; "
            "for K classes use symmetric_flip_labels, pair_flip_labels or flip_by_matrix"
        )


def symmetric_flip_labels(
    labels: torch.Tensor,
    rate: float,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Move exactly a fraction ``rate`` of each class's pixels per image to the other classes, evenly.

    The NTM is ``1 - rate`` on the diagonal and ``rate / (K - 1)`` elsewhere, realised exactly per image as
    far as rounding allows (:func:`flip_by_matrix` with ``exact=True``). For two classes this is
    ``flip_labels(labels, rate, rate)``. A single class (``num_classes=1``) has nowhere to go: labels are
    returned unchanged.

    Args:
        labels: ``(N, H, W)`` integer labels.
        rate: fraction of each class that changes, in [0, 1].
        num_classes: K; default max label + 1 (at least 2).
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` noisy labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.arange(3).repeat_interleave(6).view(1, 3, 6)
        >>> noisy = symmetric_flip_labels(labels, 0.5, generator=g)
        >>> [(noisy[labels == c] != c).sum().item() for c in range(3)]
        [3, 3, 3]
    """
    rate = check_range(rate, "rate", 0, 1)
    top, _ = _check_labels(labels, num_classes)
    k = _num_classes(top, num_classes)
    if k == 1:
        return labels.clone()
    eye = torch.eye(k, dtype=torch.float64)
    return flip_by_matrix(labels, (1 - rate) * eye + rate / (k - 1) * (1 - eye), exact=True, generator=generator)


def pair_flip_labels(
    labels: torch.Tensor,
    rate: float,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Move exactly a fraction ``rate`` of each class ``i`` per image to class ``i + 1`` (``K - 1`` to 0).

    The NTM is ``1 - rate`` on the diagonal and ``rate`` at ``[i, (i + 1) % K]``, realised exactly per image
    as far as rounding allows. A single class is returned unchanged.

    Args:
        labels: ``(N, H, W)`` integer labels.
        rate: fraction of each class that changes, in [0, 1].
        num_classes: K; default max label + 1 (at least 2).
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` noisy labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.arange(3).repeat_interleave(4).view(1, 3, 4)
        >>> noisy = pair_flip_labels(labels, 0.5, generator=g)
        >>> [sorted(noisy[labels == c].tolist()) for c in range(3)]
        [[0, 0, 1, 1], [1, 1, 2, 2], [0, 0, 2, 2]]
    """
    rate = check_range(rate, "rate", 0, 1)
    top, _ = _check_labels(labels, num_classes)
    k = _num_classes(top, num_classes)
    eye = torch.eye(k, dtype=torch.float64)
    return flip_by_matrix(labels, (1 - rate) * eye + rate * eye.roll(1, dims=1), exact=True, generator=generator)


def scribble_labels(
    labels: torch.Tensor,
    fraction: float,
    *,
    length: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scribbles: runs along the skeleton of each class (background included); every other pixel becomes 255.

    Each class region of each image (the background region too, whose skeleton runs between objects, away from
    them) is thinned to its skeleton. Exactly ``ceil(fraction * n)`` of the ``n`` skeleton pixels of each
    class and image are kept, in runs: every skeleton pixel gets a random key, the keys are replaced by the
    smallest key within ``length // 2`` steps along the skeleton, and the pixels with the smallest keys win,
    so whole runs of about ``length`` pixels are kept together (the last run may be cut short to hit the
    count).

    Degenerate cases: ``fraction=0`` gives all 255; ``fraction=1`` keeps every skeleton pixel.

    Args:
        labels: ``(N, H, W)`` integer labels.
        fraction: fraction of each class's skeleton pixels to keep, in [0, 1].
        length: typical run length in pixels, >= 1.
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` labels that are 255 except on the kept scribbles.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.zeros(1, 9, 16, dtype=torch.long)
        >>> labels[0, 3:6, 2:14] = 1
        >>> out = scribble_labels(labels, 1.0, generator=g)
        >>> sorted(set(out.unique().tolist()))
        [0, 1, 255]
    """
    top, _ = _check_labels(labels)
    fraction = check_range(fraction, "fraction", 0, 1)
    length = check_int(length, "length", low=1)
    skeleton = torch.full_like(labels, IGNORE_INDEX)
    for c in range(top + 1):
        skeleton[skeletonize(labels == c)] = c
    on = skeleton != IGNORE_INDEX
    index = on.reshape(-1).nonzero().squeeze(1)
    if index.numel() == 0:
        return skeleton
    keys = torch.full(labels.shape, math.inf, dtype=torch.float64, device=labels.device)
    draws = torch.randint(0, 2**_KEY_BITS, (index.numel(),), generator=generator).to(labels.device)
    keys.view(-1)[index] = draws.to(torch.float64)
    for _ in range(length // 2):
        pooled = -F.max_pool2d(-keys[:, None], 3, stride=1, padding=1)[:, 0]
        keys = torch.where(on, pooled, keys)
    group = _class_groups(index, skeleton.view(-1)[index], labels.shape, 256)
    counts = torch.bincount(group)
    quota = torch.ceil(fraction * counts.to(torch.float64) - 1e-9).long()
    order = torch.argsort((group << _KEY_BITS) | keys.view(-1)[index].long(), stable=True)
    starts = counts.cumsum(0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(index.numel(), device=labels.device) - starts[group[order]]
    skeleton.view(-1)[index[rank >= quota[group]]] = IGNORE_INDEX
    return skeleton


def object_labels(
    labels: torch.Tensor,
    keep: float,
    *,
    unlabeled: str = "background",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep ``ceil(keep * n)`` of the ``n`` objects of each foreground class in each image, whole (missed objects).

    An object is a connected piece of one class (8-connected). The kept objects are drawn uniformly; the others
    become background 0 (``unlabeled="background"``: an annotator who skipped them) or the ignore index 255
    (``"ignore"``: objects left unlabelled, which a loss or a prior then skips). The background and 255 stay as
    they are. Averaged over draws, each pixel of an object keeps its class with probability about ``keep``: the
    sampling of :func:`sample_labels` with whole objects as the unit, so the meta-structure is kept in expectation
    while one draw leaves whole holes. Thin structures that form one connected network (ER, membranes) are one
    object each: any ``keep > 0`` keeps all of it; :func:`region_labels` is the partial annotation for them.

    The pieces are found with :func:`scipy.ndimage.label` on the CPU (labels on another device make a round trip).

    Degenerate cases: ``keep=1`` returns the labels unchanged; ``keep=0`` drops every object.

    Args:
        labels: ``(N, H, W)`` integer labels.
        keep: fraction of each class's objects to keep, in [0, 1].
        unlabeled: ``"background"`` or ``"ignore"``: what the objects not kept become.
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` labels with some objects removed.

    Example:
        >>> labels = torch.zeros(1, 6, 9, dtype=torch.long)
        >>> labels[0, 1:3, 1:3] = 1; labels[0, 1:3, 5:7] = 1; labels[0, 4:6, 3:5] = 1  # three squares
        >>> out = object_labels(labels, 0.5, generator=torch.Generator().manual_seed(0))
        >>> int(out.sum()) // 4  # ceil(0.5 * 3) of them, whole
        2
    """
    small, top, _ = _byte_labels(labels)
    keep = check_range(keep, "keep", 0, 1)
    check_in(unlabeled, "unlabeled", ("background", "ignore"))
    fill = 0 if unlabeled == "background" else IGNORE_INDEX
    out = labels.clone()
    if labels.numel() == 0 or top < 1:
        return out
    # 8-connected pieces; scipy has no batched or GPU labelling, so one image and class at a time
    host = small.cpu().numpy()
    structure = ndimage.generate_binary_structure(2, 2)
    dropped = torch.zeros(labels.shape, dtype=torch.bool)
    for i in range(host.shape[0]):
        for c in range(1, top + 1):
            pieces, n = ndimage.label(host[i] == c, structure=structure)
            if n == 0:
                continue
            quota = math.ceil(keep * n - 1e-9)
            lose = torch.zeros(n + 1, dtype=torch.bool)
            lose[1 + torch.randperm(n, generator=generator)[quota:]] = True
            dropped[i] |= lose[torch.from_numpy(pieces)]
    return out.masked_fill_(dropped.to(labels.device), fill)


def region_labels(labels: torch.Tensor, fraction: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep the labels inside one random rectangle per image, ``fraction`` of its area; every other pixel 255.

    A partial annotation as it is often made: one region of each image labelled exactly, the rest left out. The
    rectangle has the image's aspect ratio, sides ``round(H sqrt(fraction))`` by ``round(W sqrt(fraction))``, and
    a uniformly drawn position (one draw of the top-left corner per image, in image order). Averaged over
    positions every pixel is kept about equally often, so the meta-structure is kept in expectation.

    Degenerate cases: ``fraction=1`` returns the labels unchanged; ``fraction=0`` gives all 255.

    Args:
        labels: ``(N, H, W)`` integer labels.
        fraction: share of each image's area kept, in [0, 1].
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` labels, 255 outside each image's rectangle.

    Example:
        >>> out = region_labels(torch.ones(2, 8, 8, dtype=torch.long), 0.25, generator=torch.Generator().manual_seed(0))
        >>> (out == 1).sum(dim=(1, 2)).tolist()  # a 4 x 4 square of each image
        [16, 16]
    """
    _check_labels(labels)
    fraction = check_range(fraction, "fraction", 0, 1)
    n, h, w = labels.shape
    side = math.sqrt(fraction)
    rh, rw = round(h * side), round(w * side)
    out = torch.full_like(labels, IGNORE_INDEX)
    if labels.numel() == 0 or rh == 0 or rw == 0:
        return out
    for i in range(n):
        y = int(torch.randint(0, h - rh + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - rw + 1, (1,), generator=generator))
        out[i, y : y + rh, x : x + rw] = labels[i, y : y + rh, x : x + rw]
    return out


# ------------------------------------------------------------------------------------------------------------
# RL
# ------------------------------------------------------------------------------------------------------------


def random_labels(
    labels: torch.Tensor,
    rate: float,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random labels: each pixel is foreground with probability ``rate``, independently of the clean labels.

    Binary (K = 2): foreground 1 with probability ``rate``. K classes: a class drawn uniformly from
    ``1..K-1`` with probability ``rate``, else background; ``rate = (K - 1) / K`` makes the labels uniform
    over all K classes. Only the shape and the 255 pixels of ``labels`` are used, so the NTM has rank 1
    (equal rows). ``num_classes=1`` gives all background.

    Args:
        labels: ``(N, H, W)`` integer labels (their values do not matter, except 255).
        rate: probability of a foreground class, in [0, 1].
        num_classes: K; default max label + 1 (at least 2).
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` random labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> out = random_labels(torch.zeros(1, 100, 100, dtype=torch.long), 0.3, generator=g)
        >>> round(out.float().mean().item(), 2)
        0.3

    References:
        Luo et al., arXiv 2205.00160, random labels (RL).
    """
    top, _ = _check_labels(labels, num_classes)
    rate = check_range(rate, "rate", 0, 1)
    k = _num_classes(top, num_classes)
    u = _draw_uniform(labels.shape, generator, labels.device)
    if k == 1:
        noisy = torch.zeros_like(labels)
    else:
        spread = torch.floor(u / max(rate, 1e-300) * (k - 1)).clamp(max=k - 2).to(labels.dtype)
        noisy = torch.where(u < rate, 1 + spread, torch.zeros_like(labels))
    return torch.where(labels == IGNORE_INDEX, labels, noisy)


# ------------------------------------------------------------------------------------------------------------
# PCL
# ------------------------------------------------------------------------------------------------------------


def dilate_labels(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow each foreground class by a disk of ``radius`` pixels into the background.

    A class grows only over background pixels; where two classes reach the same background pixel, the higher
    class wins. ``radius=0`` returns the labels unchanged.

    Args:
        labels: ``(N, H, W)`` integer labels.
        radius: disk radius in pixels, >= 0.

    Returns:
        ``(N, H, W)`` dilated labels.

    Example:
        >>> labels = torch.zeros(1, 5, 5, dtype=torch.long)
        >>> labels[0, 2, 2] = 1
        >>> dilate_labels(labels, 1)[0].tolist()
        [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    """
    top, _ = _check_labels(labels)
    radius = check_int(radius, "radius", low=0)
    out = labels.clone()
    if radius == 0:
        return out
    background = labels == 0
    for c in range(1, top + 1):
        out[dilate(labels == c, radius) & background] = c
    return out


def erode_labels(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """Shrink each foreground class by a disk of ``radius`` pixels; the pixels removed become background.

    ``radius=0`` returns the labels unchanged.

    Args:
        labels: ``(N, H, W)`` integer labels.
        radius: disk radius in pixels, >= 0.

    Returns:
        ``(N, H, W)`` eroded labels.

    Example:
        >>> labels = torch.zeros(1, 5, 5, dtype=torch.long)
        >>> labels[0, 1:4, 1:4] = 1
        >>> erode_labels(labels, 1).sum().item()
        1
    """
    top, _ = _check_labels(labels)
    radius = check_int(radius, "radius", low=0)
    out = labels.clone()
    if radius == 0:
        return out
    for c in range(1, top + 1):
        mask = labels == c
        out[mask & ~erode(mask, radius)] = 0
    return out


def skeleton_labels(labels: torch.Tensor) -> torch.Tensor:
    """Thin each foreground class to its 1-pixel skeleton; every other pixel becomes background (255 stays).

    Args:
        labels: ``(N, H, W)`` integer labels.

    Returns:
        ``(N, H, W)`` skeleton labels.

    Example:
        >>> labels = torch.zeros(1, 5, 9, dtype=torch.long)
        >>> labels[0, 1:4, 1:8] = 1  # a bar three pixels thick
        >>> labels[0, 0, 0] = 255
        >>> skeleton_labels(labels)[0]
        tensor([[255,   0,   0,   0,   0,   0,   0,   0,   0],
                [  0,   0,   0,   0,   0,   0,   1,   0,   0],
                [  0,   1,   1,   1,   1,   1,   0,   0,   0],
                [  0,   0,   0,   0,   0,   0,   0,   0,   0],
                [  0,   0,   0,   0,   0,   0,   0,   0,   0]])
    """
    top, _ = _check_labels(labels)
    out = torch.where(labels == IGNORE_INDEX, labels, torch.zeros_like(labels))
    for c in range(1, top + 1):
        out[skeletonize(labels == c)] = c
    return out


def translate_labels(labels: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift the whole label map by ``(dy, dx)`` pixels; vacated pixels become background.

    Positive ``dy`` moves down, positive ``dx`` right. The 255 pixels stay where they are (the labels moving
    under them are hidden) and do not move.

    Args:
        labels: ``(N, H, W)`` integer labels.
        dy: rows to move (any sign).
        dx: columns to move (any sign).

    Returns:
        ``(N, H, W)`` translated labels.

    Example:
        >>> translate_labels(torch.tensor([[[1, 2, 0, 0]]]), 0, 1).tolist()
        [[[0, 1, 2, 0]]]
    """
    _, has_ignore = _check_labels(labels)
    dy, dx = check_int(dy, "dy"), check_int(dx, "dx")
    ignored = labels == IGNORE_INDEX if has_ignore else None
    source = labels.masked_fill(ignored, 0) if has_ignore else labels
    out = torch.zeros_like(labels)
    h, w = labels.shape[1:]
    if abs(dy) < h and abs(dx) < w:
        out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = source[
            :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out.masked_fill(ignored, IGNORE_INDEX) if has_ignore else out


def shift_labels(labels: torch.Tensor, radius: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Jitter: move every foreground pixel by its own random offset, uniform in ``{-radius..radius}^2``.

    Offsets are clipped to the image; the moved pixels are written into a fresh background map, where pixels
    landing on one place merge (the higher class wins) and pixels landing on a 255 pixel vanish.
    ``radius=0`` returns the labels unchanged.

    Args:
        labels: ``(N, H, W)`` integer labels.
        radius: largest offset per axis in pixels, >= 0.
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` jittered labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.zeros(1, 9, 9, dtype=torch.long)
        >>> labels[0, 4, 4] = 1
        >>> moved = shift_labels(labels, 1, generator=g)
        >>> moved.sum().item(), bool(moved[0, 3:6, 3:6].sum() == 1)
        (1, True)

    References:
        Luo et al., arXiv 2205.00160, jittered labels (PCL) and EMS.
    """
    small, top, has_ignore = _byte_labels(labels)
    radius = check_int(radius, "radius", low=0)
    if radius == 0 or top <= 0:
        return labels.clone()
    n, h, w = labels.shape
    device = labels.device
    moving = small * (small + 1).bool() if has_ignore else small  # 255 does not move
    index, values, width = _words(moving.view(n * h, w))
    side = 2 * radius + 1
    # int32 arithmetic is several times faster than int64 on the CPU; int64 only where int32 could overflow.
    dtype = torch.int32 if n * h * w < 2**31 and side * side < 2**31 else torch.int64
    word = index.to(dtype)
    row = torch.div(word, width // 8, rounding_mode="floor")
    top_row = torch.div(row, h, rounding_mode="floor") * h  # the first row of each word's image
    y = row - top_row - radius  # of each word, shifted by -radius
    x = (word - row * (width // 8)) * 8 - radius  # of each word's byte 0, shifted by -radius
    lanes = values.view(torch.uint8)
    if 2 * int(torch.count_nonzero(lanes)) < lanes.numel():  # mostly empty words: list their set bytes
        element = lanes.nonzero().squeeze(1)
        parent = element >> 3  # its word
        y, top_row, lanes = y.index_select(0, parent), top_row.index_select(0, parent), lanes.index_select(0, element)
        x = x.index_select(0, parent) + (element & 7).to(dtype)
    else:  # every byte draws an offset (cheaper than listing them); the background bytes then write 0
        # laid out (8, K), byte j of every word in row j, so that per-word values broadcast cheaply
        x = x + torch.arange(8, device=device, dtype=dtype)[:, None]
        lanes = ((values >> torch.tensor(_BYTE_SHIFTS, device=device)[:, None]) & 0xFF).to(torch.uint8)
    offset = torch.randint(0, side * side, x.shape, dtype=dtype, generator=generator).to(device)
    dy = _floor_divide(offset, side)
    target = ((y + dy).clamp_(0, h - 1) + top_row) * w + (x + offset - dy * side).clamp_(0, w - 1)
    # Written as bytes (a fraction of the memory traffic), converted once.
    out = torch.zeros(n * h * w, dtype=torch.uint8, device=device)
    out.scatter_reduce_(0, target.view(-1).long(), lanes.reshape(-1), "amax")
    if has_ignore:
        out.index_fill_(0, _nonzero_bytes(_ignored(small)), IGNORE_INDEX)
    return out.view(n, h, w).to(labels.dtype)


def _floor_divide(v: torch.Tensor, d: int) -> torch.Tensor:
    """``v // d`` for ``0 <= v < d * d``: as a multiply and a shift, several times faster than a division on the
    CPU, where the product fits the dtype (``m = ceil(2**s / d)`` errs by less than ``d**3 / 2**s``)."""
    bits = 3 * d.bit_length()
    if bits + d.bit_length() < (31 if v.dtype == torch.int32 else 63):
        return (v * -(-(2**bits) // d)) >> bits
    return torch.div(v, d, rounding_mode="floor")


def markov_labels(
    labels: torch.Tensor,
    steps: int,
    grow: float,
    flip_boundary: float,
    flip_all: float,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Markov boundary noise: ``steps`` rounds of random growth or shrinkage at the boundary, then flips.

    Our reading of Yao et al. (ICLR 2023) and their noise generator, per image and foreground class:

    1. ``steps`` times: with probability ``grow`` the class grows, otherwise it shrinks. Growing, each
       background pixel with a 4-neighbour in the class joins it with probability ``flip_boundary``;
       shrinking, each class pixel with a background 4-neighbour becomes background with probability
       ``flip_boundary`` (pixels beyond the image are neither).
    2. Each pixel then changes with probability ``flip_all`` (binary: 0 <-> 1; K classes: to a uniformly
       chosen other class).

    The authors' generator also blurs the result (5 x 5 Gaussian, sigma 2) and re-thresholds it, which removes
    most of step 2's isolated flips; we leave that out, so ``flip_all`` is the pixel flip rate it says.

    Args:
        labels: ``(N, H, W)`` integer labels.
        steps: number of grow/shrink rounds ``T``, >= 0.
        grow: probability ``theta1`` that a round grows the class, in [0, 1].
        flip_boundary: probability ``theta2`` that a boundary pixel changes in a round, in [0, 1].
        flip_all: probability ``theta3`` of the final independent flip, in [0, 1].
        num_classes: K, for step 2; default max label + 1 (at least 2).
        generator: CPU random generator.

    Returns:
        ``(N, H, W)`` noisy labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.zeros(1, 16, 16, dtype=torch.long)
        >>> labels[0, 4:12, 4:12] = 1
        >>> grown = markov_labels(labels, 10, 1.0, 0.5, 0.0, generator=g)
        >>> bool(grown.sum() > labels.sum()) and bool((grown >= labels).all())
        True

    References:
        Yao, Zhang, Zheng, Goswami, Prasanna, Chen, "Learning to Segment from Noisy Annotations: A Spatial
        Correction Approach", ICLR 2023, Sec. 3 (Markov label noise).
    """
    top, _ = _check_labels(labels, num_classes)
    steps = check_int(steps, "steps", low=0)
    grow = check_range(grow, "grow", 0, 1)
    flip_boundary = check_range(flip_boundary, "flip_boundary", 0, 1)
    flip_all = check_range(flip_all, "flip_all", 0, 1)
    k = _num_classes(top, num_classes)
    small = labels.to(torch.uint8, copy=True)  # classes < 255: the rounds work on bytes, in place
    for _ in range(steps):
        grows = _draw_uniform((labels.shape[0], k - 1), generator, labels.device) < grow
        for c in range(1, k):
            _markov_round(small, c, grows[:, c - 1], flip_boundary, generator)
    out = small.to(labels.dtype)
    if k > 1 and flip_all > 0:
        eye = torch.eye(k, dtype=torch.float64)
        out = flip_by_matrix(out, (1 - flip_all) * eye + flip_all / (k - 1) * (1 - eye), generator=generator)
    return out


def _markov_round(
    small: torch.Tensor, c: int, grows: torch.Tensor, rate: float, generator: torch.Generator | None
) -> None:
    """One round for class ``c``, in place: in images that ``grows`` the background pixels touching the class
    join it, in the others the class pixels touching the background leave it, each with probability ``rate``."""
    inside = small == c
    background = small == 0
    outer = background & _neighbour_of(inside, outside=False)
    inner = inside & _neighbour_of(background, outside=False)
    band = torch.where(grows[:, None, None], outer, inner).view(-1).nonzero().squeeze(1)
    hit = band[_draw_uniform((band.numel(),), generator, small.device) < rate]
    image = torch.div(hit, small.shape[1] * small.shape[2], rounding_mode="floor")
    small.view(-1)[hit] = torch.where(grows[image], c, 0).to(torch.uint8)


# ------------------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True)
class ZooParam:
    """One parameter of a zoo operation as it appears in a spec string.

    Attributes:
        name: the short name used in the spec usage (``f`` in ``flip:f,b``).
        kind: ``"float"``, ``"int"`` or ``"choice"``.
        low: smallest allowed value (``None``: unbounded).
        high: largest allowed value (``None``: unbounded).
        default: the value when left out; ``REQUIRED`` when it must be given.
        choices: the words allowed for a ``"choice"`` parameter.
        help: what the parameter means.
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    default: object = _REQUIRED
    choices: tuple[str, ...] = ()
    help: str = ""

    REQUIRED = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def range_text(self) -> str:
        """``[0, 1]``, ``>= 0`` or ``any integer``: the allowed values in words."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            return f"in [{_fmt_number(self.low)}, {_fmt_number(self.high)}]"
        if self.low is not None:
            return f">= {_fmt_number(self.low)}"
        if self.high is not None:
            return f"<= {_fmt_number(self.high)}"
        return "any integer" if self.kind == "int" else "any number"


def _fmt_number(value: float) -> str:
    """Shortest text that reads back as the same number: ``1.0 -> '1'``, ``0.45 -> '0.45'``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class ZooOp:
    """One entry of :data:`LABEL_ZOO`.

    Attributes:
        name: the spec name (``flip``).
        params: the spec parameters in order.
        taxonomy: ``"CL"``, ``"RCL"``, ``"PCL"`` or ``"RL"`` (see :data:`TAXONOMY`).
        help: one line on what it does.
        run: ``run(labels, *args, generator=..., num_classes=...)`` with the typed args in ``params`` order.
        function: the plain public function behind it.
        stochastic: whether it draws random numbers.
        usage: how to write it (``flip:f,b or flip:f``).
        online: drawn afresh every epoch by default in training (the paper flips labels online); the other
            operations give one fixed label per image, as an annotator would.
    """

    name: str
    params: tuple[ZooParam, ...]
    taxonomy: str
    help: str
    run: Callable[..., torch.Tensor]
    function: Callable[..., torch.Tensor]
    stochastic: bool
    usage: str
    online: bool = False


LABEL_ZOO: Registry[ZooOp] = Registry("label spec")
"""Every zoo operation by spec name; the spec grammar, the CLI and the comparison suite read it."""


def _register(
    name: str,
    params: tuple[ZooParam, ...],
    taxonomy: str,
    help: str,
    function: Callable[..., torch.Tensor],
    *,
    stochastic: bool,
    usage: str | None = None,
    online: bool = False,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    if usage is None:
        required = [p.name for p in params if p.required]
        optional = "".join(f"[,{p.choices[-1] if p.kind == 'choice' else p.name}]" for p in params if not p.required)
        usage = name + (":" + ",".join(required) if required else "") + optional

    def decorator(run: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        LABEL_ZOO.add(name, ZooOp(name, params, taxonomy, help, run, function, stochastic, usage, online))
        return run

    return decorator


def _fraction(name: str, help: str) -> ZooParam:
    return ZooParam(name, "float", 0.0, 1.0, help=help)


def _unlabeled(help: str) -> ZooParam:
    return ZooParam("unlabeled", "choice", default="background", choices=("background", "ignore"), help=help)


def _radius(help: str = "disk radius in pixels") -> ZooParam:
    return ZooParam("r", "int", 0, None, help=help)


@_register("clean", (), "CL", "the clean labels, unchanged", clean_labels, stochastic=False)
def _run_clean(labels, *, generator, num_classes):
    return clean_labels(labels)


@_register(
    "sample",
    (
        _fraction("s", "fraction of each class's pixels kept"),
        _unlabeled("what the other pixels become"),
    ),
    "RCL",
    "keep exactly ceil(s*n) random pixels of each class per image; the rest background (or 255 with ,ignore)",
    sample_labels,
    stochastic=True,
)
def _run_sample(labels, s, unlabeled, *, generator, num_classes):
    return sample_labels(labels, s, unlabeled=unlabeled, generator=generator)


@_register(
    "flip",
    (
        _fraction("f", "fraction of foreground flipped to background (K classes: of each class, to the others)"),
        ZooParam("b", "float", 0.0, 1.0, default=None, help="fraction of background flipped to foreground"),
    ),
    "RCL",
    "binary f,b: flip exactly round(f*n_fg) fg and round(b*n_bg) bg pixels; one f: symmetric over K classes",
    flip_labels,
    stochastic=True,
    usage="flip:f,b or flip:f",
    online=True,
)
def _run_flip(labels, f, b, *, generator, num_classes):
    if b is None:
        return symmetric_flip_labels(labels, f, num_classes=num_classes, generator=generator)
    return flip_labels(labels, f, b, generator=generator)


@_register(
    "pairflip",
    (_fraction("f", "fraction of each class moved to the next class"),),
    "RCL",
    "move exactly a fraction f of each class i to class i+1 (K-1 -> 0) per image",
    pair_flip_labels,
    stochastic=True,
    online=True,
)
def _run_pairflip(labels, f, *, generator, num_classes):
    return pair_flip_labels(labels, f, num_classes=num_classes, generator=generator)


@_register(
    "scribble",
    (
        _fraction("p", "fraction of each class's skeleton pixels kept"),
        ZooParam("length", "int", 1, None, default=8, help="typical run length in pixels"),
    ),
    "RCL",
    "runs along the skeleton of each class and of the background; everything else 255",
    scribble_labels,
    stochastic=True,
)
def _run_scribble(labels, p, length, *, generator, num_classes):
    return scribble_labels(labels, p, length=length, generator=generator)


@_register(
    "objects",
    (
        _fraction("s", "fraction of each class's objects kept"),
        _unlabeled("what the other objects become"),
    ),
    "RCL",
    "keep ceil(s*n) random whole objects (8-connected pieces) of each class per image; the rest background (or 255)",
    object_labels,
    stochastic=True,
)
def _run_objects(labels, s, unlabeled, *, generator, num_classes):
    return object_labels(labels, s, unlabeled=unlabeled, generator=generator)


@_register(
    "region",
    (_fraction("s", "share of each image's area kept"),),
    "RCL",
    "keep one random rectangle of each image, a share s of its area, as it is; everything else 255",
    region_labels,
    stochastic=True,
)
def _run_region(labels, s, *, generator, num_classes):
    return region_labels(labels, s, generator=generator)


@_register("dilate", (_radius(),), "PCL", "grow each class by a disk of radius r", dilate_labels, stochastic=False)
def _run_dilate(labels, r, *, generator, num_classes):
    return dilate_labels(labels, r)


@_register("erode", (_radius(),), "PCL", "shrink each class by a disk of radius r", erode_labels, stochastic=False)
def _run_erode(labels, r, *, generator, num_classes):
    return erode_labels(labels, r)


@_register("skeleton", (), "PCL", "thin each class to its 1-pixel skeleton", skeleton_labels, stochastic=False)
def _run_skeleton(labels, *, generator, num_classes):
    return skeleton_labels(labels)


@_register(
    "translate",
    (ZooParam("dy", "int", help="rows down"), ZooParam("dx", "int", help="columns right")),
    "PCL",
    "shift the whole label map by (dy, dx); vacated pixels background",
    translate_labels,
    stochastic=False,
)
def _run_translate(labels, dy, dx, *, generator, num_classes):
    return translate_labels(labels, dy, dx)


@_register(
    "shift",
    (_radius("largest offset per axis in pixels"),),
    "PCL",
    "jitter: move each foreground pixel by a random offset in {-r..r}^2",
    shift_labels,
    stochastic=True,
)
def _run_shift(labels, r, *, generator, num_classes):
    return shift_labels(labels, r, generator=generator)


@_register(
    "markov",
    (
        ZooParam("T", "int", 0, None, help="number of grow/shrink rounds"),
        _fraction("t1", "probability that a round grows"),
        _fraction("t2", "probability that a boundary pixel changes in a round"),
        _fraction("t3", "probability of the final independent flip"),
    ),
    "PCL",
    "Markov boundary noise (Yao et al. 2023): T random grow/shrink rounds, then flips with probability t3",
    markov_labels,
    stochastic=True,
)
def _run_markov(labels, T, t1, t2, t3, *, generator, num_classes):
    return markov_labels(labels, T, t1, t2, t3, num_classes=num_classes, generator=generator)


@_register(
    "random",
    (_fraction("r", "probability that a pixel is foreground"),),
    "RL",
    "each pixel foreground with probability r, independent of the image (K classes: fg class uniform)",
    random_labels,
    stochastic=True,
)
def _run_random(labels, r, *, generator, num_classes):
    return random_labels(labels, r, num_classes=num_classes, generator=generator)
