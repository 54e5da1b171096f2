"""Noise transition matrices and label information: what a noisy label still says about the clean one.

Size: one module (over 600 lines) because every statistic is read from the same confusion counts and boundary
band, computed once per call by :func:`label_info`; the taxonomy rule reads them all.

Legend: N batch · K classes · H, W pixels.

A pair of labels ``clean``, ``noisy`` ``(N, H, W)`` int64 (classes ``0..K-1``, ignore index 255) is
summarised by

- the confusion counts ``C[n, i, j]`` = number of pixels of image ``n`` with ``clean = i`` and ``noisy = j``;
- the noise transition matrix (NTM) ``T[i, j] = P(noisy = j | clean = i)``: **rows are the clean class**, each
  row sums to 1; a class absent from the clean label has no row to estimate and gets a NaN row;
- its numerical rank, determinant and condition number: for binary flip noise ``flip:f,b``
  (``f = P(noisy=1 | clean=0)``, ``b = P(noisy=0 | clean=1)``), ``det T = 1 - f - b``, the NTM is singular at
  ``f + b = 1`` (the noisy label is then independent of the clean one) and the sign of ``det`` flips past it;
- the mutual information ``I(clean; noisy)`` in bits of the joint pixel distribution;
- the boundary fraction: how many changed pixels lie near a class boundary of the clean label.

A pixel is ignored, in every count, when either label holds ``ignore_index`` there. The counts are exact
integers held in float64; every ratio is float64. Nothing loops over images: one ``bincount`` counts a batch.

Label taxonomy (Luo et al. 2021, Table 1): **CL** clean label; **RCL** randomised clean label (pixels
sampled or flipped at random, the meta-structure survives); **PCL** perturbed clean label (dilation, erosion,
skeleton, shift: the meta-structure moves); **RL** random label (independent of the clean one).
:func:`classify_label` states the rule that tells them apart from the measured statistics.

References:
    Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep Neural
    Networks", arXiv 2205.00160 (NTM of each label type, rank and label information);
    Luo et al., "Deep Neural Networks Learn Meta-Structures from Noisy Labels in Semantic Segmentation",
    AAAI 2021, arXiv 2103.11594 (Table 1: CL, RCL, PCL, RL).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .._check import check_in, check_int, check_labels, check_range, check_same_device, check_shape
from ..errors import DTypeError, MstoolWarning, ShapeError

__all__ = [
    "TAXONOMY",
    "RCL_MIN_SCORE",
    "MIN_SIGNAL",
    "LabelInfo",
    "count_classes",
    "confusion_counts",
    "noise_transition_matrix",
    "ntm_rank",
    "ntm_det",
    "ntm_condition",
    "mutual_information",
    "boundary_fraction",
    "boundary_distance",
    "label_info",
    "classify_label",
]

TAXONOMY = {
    "CL": "clean labels",
    "RCL": "randomised clean labels (random sampling or flipping that keeps the meta-structure)",
    "PCL": "perturbed clean labels (morphological changes that move the meta-structure)",
    "RL": "random labels (independent of the image)",
}
"""The four label kinds of Luo et al. and what they mean (keys in the order CL, RCL, PCL, RL)."""
"""The label types :func:`classify_label` returns: clean, randomised clean, perturbed clean, random."""

_REDUCTIONS = ("pooled", "none")
_SAMPLING_Z = 2.0
"""How many root-mean-square sampling errors a singular value must clear to count (see :func:`ntm_rank`)."""


def count_classes(labels: torch.Tensor, *, ignore_index: int = 255) -> int:
    """How many classes a label tensor (any shape, integer) holds: its highest class + 1, at least 2.

    A set without any labelled pixel counts as binary.

    Example:
        >>> count_classes(torch.tensor([[0, 2], [255, 1]])), count_classes(torch.tensor([255]))
        (3, 2)
    """
    valid = labels[labels != ignore_index]
    return max(int(valid.max()) + 1 if valid.numel() else 2, 2)


# ---------------------------------------------------------------------------------------------- checks


def _check_pair(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None,
                ignore_index: int | None) -> int | None:
    """Check a clean/noisy pair; return ``num_classes`` as a Python int (or None)."""
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", low=1, note="or None")
    check_labels(clean, "clean", num_classes=num_classes, ignore_index=ignore_index)
    check_labels(noisy, "noisy", num_classes=num_classes, ignore_index=ignore_index)
    if clean.shape != noisy.shape:
        raise ShapeError(f"`clean` and `noisy` must have one shape; got {tuple(clean.shape)} and "
                         f"{tuple(noisy.shape)}")
    check_same_device(("clean", clean), ("noisy", noisy))
    return num_classes


def _valid(clean: torch.Tensor, noisy: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    if ignore_index is None:
        return torch.ones_like(clean, dtype=torch.bool)
    return (clean != ignore_index) & (noisy != ignore_index)


def _num_classes(labels: tuple[torch.Tensor, ...], valid: torch.Tensor, num_classes: int | None) -> int:
    """``num_classes`` when given, else one more than the largest class seen, and at least 2 (binary)."""
    if num_classes is not None:
        return num_classes
    if valid.numel() == 0:
        return 2
    largest = max(int(torch.where(valid, x, torch.zeros_like(x)).max()) for x in labels)
    return max(2, largest + 1)


def _check_distance(distance: int) -> int:
    return check_int(distance, "distance", low=1, note="pixels")


def _check_ntm(T: torch.Tensor) -> None:
    if not isinstance(T, torch.Tensor):
        raise DTypeError(f"`T` must be a torch.Tensor, a square (K, K) or (N, K, K) matrix; got {type(T).__name__}")
    if not (T.dim() in (2, 3) and T.shape[-1] == T.shape[-2] >= 1):
        raise ShapeError(f"`T` must be a square (K, K) or (N, K, K) matrix with K >= 1; got {tuple(T.shape)}")
    check_shape(T, "T", " ".join("NKK"[3 - T.dim():]), dtype="float")


# ---------------------------------------------------------------------------------------------- counts


def _joint_counts(clean: torch.Tensor, noisy: torch.Tensor, valid: torch.Tensor, num_classes: int,
                  band: torch.Tensor | None = None) -> torch.Tensor:
    """One batched bincount: ``(N, K, K)`` counts, or ``(N, K, K, 2)`` split by ``band`` (0 out, 1 in)."""
    n, k = clean.shape[0], num_classes
    image = torch.arange(n, device=clean.device).view(n, 1, 1)
    idx = (image * k + clean.long()) * k + noisy.long()
    size = n * k * k
    if band is not None:
        idx = idx * 2 + band.long()
        size *= 2
    counts = torch.bincount(idx[valid], minlength=size).to(torch.float64)
    return counts.reshape((n, k, k) if band is None else (n, k, k, 2))


def confusion_counts(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None = None, *,
                     ignore_index: int | None = 255) -> torch.Tensor:
    """Per-image confusion counts between a clean and a noisy label.

    Args:
        clean: ``(N, H, W)`` integer clean labels, classes ``0..K-1`` or ``ignore_index``.
        noisy: ``(N, H, W)`` integer noisy labels of the same images.
        num_classes: ``K``; ``None`` takes one more than the largest class in either label, and at least 2, so
            a binary batch without foreground still gives ``2 x 2`` counts.
        ignore_index: a pixel is left out of every count when either label holds it (``None``: keep all).

    Returns:
        ``(N, K, K)`` float64 counts on the input's device: ``C[n, i, j]`` = pixels of image ``n`` with
        ``clean = i`` and ``noisy = j`` (rows: clean class). An empty batch gives ``(0, K, K)``.

    Raises:
        ShapeError: a label is not ``(N, H, W)``, or the two shapes differ.
        DTypeError: a label is not an integer tensor.
        DeviceMismatchError: the two labels lie on different devices.
        ParameterError: a class outside ``0..K-1`` that is not ``ignore_index``; a bad ``num_classes``.

    Example:
        >>> clean = torch.tensor([[[0, 0], [1, 1]]])
        >>> noisy = torch.tensor([[[0, 1], [1, 255]]])
        >>> confusion_counts(clean, noisy)
        tensor([[[1., 1.],
                 [0., 1.]]], dtype=torch.float64)
    """
    num_classes = _check_pair(clean, noisy, num_classes, ignore_index)
    valid = _valid(clean, noisy, ignore_index)
    k = _num_classes((clean, noisy), valid, num_classes)
    return _joint_counts(clean, noisy, valid, k)


def _rows_normalised(counts: torch.Tensor) -> torch.Tensor:
    return counts / counts.sum(-1, keepdim=True)  # 0 / 0 -> NaN row for an absent clean class


def noise_transition_matrix(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None = None, *,
                            ignore_index: int | None = 255, reduction: str = "pooled") -> torch.Tensor:
    """The noise transition matrix ``T[i, j] = P(noisy = j | clean = i)`` measured from label pairs.

    Rows are the clean class and sum to 1. A class absent from the clean label (no unignored pixel) has no
    conditional distribution: its row is NaN. The pooled matrix adds the counts of all images before
    normalising (pixel-weighted), so it is not the mean of the per-image matrices.

    Args:
        clean: ``(N, H, W)`` integer clean labels.
        noisy: ``(N, H, W)`` integer noisy labels.
        num_classes: ``K``, or ``None`` to infer it as in :func:`confusion_counts`.
        ignore_index: pixels holding it in either label are left out.
        reduction: ``"pooled"`` for one ``(K, K)`` matrix over the batch (all NaN for an empty batch),
            ``"none"`` for ``(N, K, K)``, one per image.

    Returns:
        float64 ``(K, K)`` or ``(N, K, K)`` on the input's device.

    Example:
        >>> clean = torch.tensor([[[0, 0, 0, 0], [1, 1, 1, 1]]])
        >>> noisy = torch.tensor([[[0, 0, 0, 1], [0, 0, 1, 1]]])
        >>> noise_transition_matrix(clean, noisy)
        tensor([[0.7500, 0.2500],
                [0.5000, 0.5000]], dtype=torch.float64)
    """
    check_in(reduction, "reduction", _REDUCTIONS)
    counts = confusion_counts(clean, noisy, num_classes, ignore_index=ignore_index)
    return _rows_normalised(counts.sum(0) if reduction == "pooled" else counts)


# ---------------------------------------------------------------------------------------------- NTM algebra


def _present_rows(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that hold numbers, and ``T`` with the others (absent classes) set to zero."""
    present = torch.isfinite(T).all(-1)
    return present, torch.where(present.unsqueeze(-1), T, torch.zeros((), dtype=T.dtype, device=T.device))


def ntm_rank(T: torch.Tensor, *, tol: float = 1e-3, support: torch.Tensor | None = None) -> torch.Tensor:
    """Numerical rank of a noise transition matrix, computed on the rows of the classes present.

    NaN rows (classes absent from the clean label) are left out: they are set to zero, which does not change
    the rank of the remaining rows. A singular value ``s`` of the float64 matrix counts when

    ``s > max(tol * s_max, 2 * sqrt(sum_i (1 - sum_j T[i, j]**2) / n_i))``.

    The first term (relative, ``tol = 1e-3`` by default) absorbs rounding and the last digits of a matrix
    written by hand. The second applies only when ``support`` gives ``n_i``, the number of clean pixels behind
    row ``i``: it is twice the root-mean-square Frobenius norm of the sampling error of a measured NTM (row
    ``i`` is a multinomial estimate with variance ``T[i, j] (1 - T[i, j]) / n_i`` per entry). By Weyl's
    inequality no singular value moves by more than that norm; for a binary NTM of independent labels the
    spurious second singular value has a standard deviation of about ``1 / sqrt(2)`` of it, so the floor sits
    near three of those, and pixel-wise independent labels measure rank 1 (not ``K``) with probability above
    99% in simulations. The price: a weak but real dependence (flips with ``f + b`` close to 1) on few pixels
    also reads as rank 1. The largest singular value always counts when it is positive, so the rank is at
    least 1 while one row is present; an empty, zero or all-NaN matrix has rank 0.

    Args:
        T: ``(K, K)`` or ``(N, K, K)`` float matrix, rows = clean class.
        tol: relative tolerance in ``[0, 1)``.
        support: ``(K,)`` or ``(N, K)`` pixel counts per clean class (the row sums of the confusion counts);
            ``None`` leaves the sampling term out.

    Returns:
        int64 rank, a 0-dim tensor for ``(K, K)`` or ``(N,)`` for ``(N, K, K)``; use ``int()`` on the former.

    Example:
        >>> ntm_rank(torch.tensor([[0.6, 0.4], [0.3, 0.7]]))
        tensor(2)
        >>> ntm_rank(torch.tensor([[0.6, 0.4], [0.6, 0.4]]))   # flip f + b = 1: noisy independent of clean
        tensor(1)
        >>> ntm_rank(torch.tensor([[0.6, 0.4], [0.62, 0.38]]), support=torch.tensor([500, 500]))
        tensor(1)
    """
    _check_ntm(T)
    tol = check_range(tol, "tol", 0, 1, high_open=True)
    present, Tz = _present_rows(T.to(torch.float64))
    s = torch.linalg.svdvals(Tz)
    threshold = tol * s[..., 0]
    if support is not None:
        if not isinstance(support, torch.Tensor) or tuple(support.shape) != tuple(T.shape[:-1]):
            shape = tuple(support.shape) if isinstance(support, torch.Tensor) else type(support).__name__
            raise ShapeError(f"`support` must have shape {tuple(T.shape[:-1])} (pixels per clean class); "
                             f"got {shape}")
        n = support.to(device=T.device, dtype=torch.float64)
        use = present & (n > 0)
        spread = (1 - (Tz**2).sum(-1)).clamp_min(0) / n.clamp_min(1)
        rms = torch.where(use, spread, torch.zeros_like(spread)).sum(-1).sqrt()
        threshold = torch.maximum(threshold, _SAMPLING_Z * rms)
    counted = s > threshold.unsqueeze(-1)
    counted[..., 0] = s[..., 0] > 0  # a measured row is a distribution, never zero: the floor spares s_max
    return counted.sum(-1)


def ntm_det(T: torch.Tensor) -> torch.Tensor:
    """Determinant of a noise transition matrix (float64; NaN when a row is NaN).

    For binary flip noise ``T = [[1 - f, f], [b, 1 - b]]`` it is ``1 - f - b``: positive while the noisy label
    leans towards the clean one, 0 when it is independent of it, negative once more than half the signal is
    inverted (``f + b > 1``). For ``K > 2`` it is still the volume scale of ``T``, zero exactly when singular.

    Args:
        T: ``(K, K)`` or ``(N, K, K)`` float matrix, rows = clean class.

    Returns:
        float64 0-dim tensor or ``(N,)``.

    Example:
        >>> ntm_det(torch.tensor([[0.9, 0.1], [0.3, 0.7]], dtype=torch.float64))
        tensor(0.6000, dtype=torch.float64)
    """
    _check_ntm(T)
    present, Tz = _present_rows(T.to(torch.float64))
    det = torch.linalg.det(Tz)
    return torch.where(present.all(-1), det, torch.full_like(det, math.nan))


def ntm_condition(T: torch.Tensor) -> torch.Tensor:
    """Condition number ``s_max / s_min`` of a noise transition matrix (2-norm, float64).

    1 for a permutation, growing as the noisy label carries less of the clean one, ``inf`` when singular to
    working precision (``s_min <= K * eps * s_max``, float64 ``eps``, so that LAPACK builds that leave
    ``1e-17`` in place of 0 agree) and NaN when a row is NaN (an absent class) or the matrix is zero.

    Args:
        T: ``(K, K)`` or ``(N, K, K)`` float matrix, rows = clean class.

    Returns:
        float64 0-dim tensor or ``(N,)``.

    Example:
        >>> round(float(ntm_condition(torch.tensor([[0.75, 0.25], [0.25, 0.75]]))), 6)
        2.0
    """
    _check_ntm(T)
    present, Tz = _present_rows(T.to(torch.float64))
    s = torch.linalg.svdvals(Tz)
    eps = torch.finfo(torch.float64).eps * T.shape[-1]
    s_min = torch.where(s[..., -1] <= eps * s[..., 0], torch.zeros_like(s[..., -1]), s[..., -1])
    cond = s[..., 0] / s_min
    return torch.where(present.all(-1), cond, torch.full_like(cond, math.nan))


# ---------------------------------------------------------------------------------------------- information


def _mutual_information(counts: torch.Tensor) -> torch.Tensor:
    """Plug-in ``I(clean; noisy)`` in bits from ``(..., K, K)`` counts; NaN where there is no pixel."""
    total = counts.sum((-1, -2), keepdim=True)
    p = counts / total
    outer = p.sum(-1, keepdim=True) * p.sum(-2, keepdim=True)
    terms = torch.where(p > 0, p * torch.log2(p / outer), torch.zeros_like(p))
    mi = terms.sum((-1, -2)).clamp_min(0)  # rounding can leave -1e-17 for independent labels
    return torch.where(total[..., 0, 0] > 0, mi, torch.full_like(mi, math.nan))


def _entropy(counts: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of ``(..., K)`` class counts; NaN where there is no pixel."""
    total = counts.sum(-1, keepdim=True)
    p = counts / total
    h = -torch.where(p > 0, p * torch.log2(p), torch.zeros_like(p)).sum(-1)
    return torch.where(total[..., 0] > 0, h, torch.full_like(h, math.nan))


def mutual_information(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None = None, *,
                       ignore_index: int | None = 255, reduction: str = "pooled") -> torch.Tensor:
    """Mutual information ``I(clean; noisy)`` in bits of the joint pixel distribution.

    The plug-in estimate ``sum_ij p_ij log2(p_ij / (p_i q_j))`` from the confusion counts. It is
    ``H(clean)`` for identical labels and 0 for independent ones; a finite sample biases it upward by about
    ``(K - 1)**2 / (2 n ln 2)`` bits for independent labels of ``n`` pixels.

    Args:
        clean: ``(N, H, W)`` integer clean labels.
        noisy: ``(N, H, W)`` integer noisy labels.
        num_classes: ``K``, or ``None`` to infer it as in :func:`confusion_counts`.
        ignore_index: pixels holding it in either label are left out.
        reduction: ``"pooled"`` (one value over all pixels of the batch) or ``"none"`` (``(N,)``, per image).

    Returns:
        float64 0-dim tensor or ``(N,)``; NaN where there is no unignored pixel (an empty batch, pooled).

    Example:
        >>> clean = torch.tensor([[[0, 0], [1, 1]]])
        >>> mutual_information(clean, clean)                   # = H(clean) = 1 bit
        tensor(1., dtype=torch.float64)
        >>> mutual_information(clean, clean.transpose(1, 2))   # independent halves
        tensor(0., dtype=torch.float64)
    """
    check_in(reduction, "reduction", _REDUCTIONS)
    counts = confusion_counts(clean, noisy, num_classes, ignore_index=ignore_index)
    return _mutual_information(counts.sum(0) if reduction == "pooled" else counts)


# ---------------------------------------------------------------------------------------------- boundary


def _boundary_band(clean: torch.Tensor, valid: torch.Tensor, distance: int) -> torch.Tensor:
    """``(N, H, W)`` bool: a pixel of another valid clean class lies within chessboard ``distance``."""
    return _distance(clean, valid, distance + 1) <= distance


def boundary_distance(labels: torch.Tensor, max_distance: int = 8, *, metric: str = "chessboard",
                      ignore_index: int | None = 255) -> torch.Tensor:
    """Distance from every pixel to the nearest labelled pixel of another class, capped.

    Args:
        labels: ``(N, H, W)`` integer labels.
        max_distance: the cap ``1 <= D <= 255``; pixels with no other class within ``D - 1`` get ``D``.
        metric: ``"chessboard"`` (8-neighbour steps) or ``"cityblock"`` (4-neighbour steps).
        ignore_index: label value of unlabelled pixels; they are nobody's neighbour (their own distance is
            computed all the same, from the labelled pixels around them).

    Returns:
        ``(N, H, W)`` uint8 in ``1..D`` on the labels' device: 1 for a pixel touching another class (an
        8-neighbour for chessboard, a 4-neighbour for cityblock).

    Example:
        >>> labels = torch.zeros(1, 1, 7, dtype=torch.long)
        >>> labels[..., 3:] = 1
        >>> boundary_distance(labels, 3)[0, 0].tolist()
        [3, 2, 1, 1, 2, 3, 3]
    """
    check_shape(labels, "labels", "N H W", dtype="int")
    max_distance = check_int(max_distance, "max_distance", low=1, high=255, note="pixels")
    check_in(metric, "metric", ("chessboard", "cityblock"))
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    return _distance(labels, valid, max_distance, metric)


def _distance(labels: torch.Tensor, valid: torch.Tensor, cap: int, metric: str = "chessboard") -> torch.Tensor:
    """:func:`boundary_distance` on checked input, as uint8.

    The window grows one ring at a time: the largest and the negated smallest valid class in the window are a
    3 x 3 (or cross) max of the last window's, so every step costs the same, and the window holds two classes
    exactly when their sum is positive. The distance is one plus the number of rings that did not yet reach
    another class. Classes are held in int8 when they fit (a quarter of the memory traffic of int32),
    unlabelled pixels at a floor whose double still fits the type.
    """
    largest = int(torch.where(valid, labels, torch.zeros_like(labels)).max()) if labels.numel() else 0
    dtype, floor = (torch.int8, -64) if largest < 64 else (torch.int32, torch.iinfo(torch.int32).min // 2)
    x = labels.to(dtype)
    hi = torch.where(valid, x, torch.full_like(x, floor))
    lo = torch.where(valid, -x, torch.full_like(x, floor))
    out = torch.ones(labels.shape, dtype=torch.uint8, device=labels.device)
    for _ in range(1, cap):
        hi, lo = _grow(hi, metric), _grow(lo, metric)
        out += hi + lo <= 0
    return out


def _max_along(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over each pixel and its two neighbours along ``dim`` of ``(N, H, W)``, clipped at the border."""
    size = v.shape[dim]
    if size < 2:
        return v
    pair = torch.maximum(v.narrow(dim, 1, size - 1), v.narrow(dim, 0, size - 1))
    out = v.clone()
    out.narrow(dim, 0, size - 1).copy_(pair)
    tail = out.narrow(dim, 1, size - 1)
    torch.maximum(tail, pair, out=tail)
    return out


def _grow(v: torch.Tensor, metric: str) -> torch.Tensor:
    """One ring of growth: the max over the 3 x 3 window (chessboard) or the 4-neighbour cross (cityblock)."""
    if metric == "chessboard":
        return _max_along(_max_along(v, -1), -2)
    return torch.maximum(_max_along(v, -1), _max_along(v, -2))


def _boundary_counts(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None,
                     ignore_index: int | None, distance: int) -> torch.Tensor:
    """``(N, K, K, 2)`` counts by clean class, noisy class and in-band (index 1) or out (index 0)."""
    valid = _valid(clean, noisy, ignore_index)
    k = _num_classes((clean, noisy), valid, num_classes)
    if clean.shape[0] == 0:
        return torch.zeros(0, k, k, 2, dtype=torch.float64, device=clean.device)
    clean_valid = torch.ones_like(valid) if ignore_index is None else clean != ignore_index
    band = _boundary_band(clean, clean_valid, distance)
    return _joint_counts(clean, noisy, valid, k, band)


def _ignored_fraction(clean: torch.Tensor, noisy: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Float64 share of the clean label's unignored pixels that ``noisy`` ignores (0 without an ignore index)."""
    if ignore_index is None:
        return torch.zeros((), dtype=torch.float64, device=clean.device)
    labelled = clean != ignore_index
    left_out = (labelled & (noisy == ignore_index)).sum().to(torch.float64)
    return left_out / labelled.sum().clamp_min(1).to(torch.float64)


def _boundary_summary(joint: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boundary statistics from ``(..., K, K, 2)`` counts (see :func:`boundary_fraction`)."""
    k = joint.shape[-2]
    off = 1 - torch.eye(k, dtype=joint.dtype, device=joint.device)
    pixels = joint.sum((-1, -2))                                # (..., K) per clean class
    in_band = joint[..., 1].sum(-1)
    changed = (joint.sum(-1) * off).sum(-1)
    changed_in_band = (joint[..., 1] * off).sum(-1)
    band_share = torch.where(pixels > 0, in_band / pixels, torch.zeros_like(pixels))
    total_changed = changed.sum(-1)
    return {
        "boundary_fraction": changed_in_band.sum(-1) / total_changed,
        "expected_boundary_fraction": (changed * band_share).sum(-1) / total_changed,
        "boundary_band_fraction": in_band.sum(-1) / pixels.sum(-1),
    }


def boundary_fraction(clean: torch.Tensor, noisy: torch.Tensor, *, distance: int = 2,
                      ignore_index: int | None = 255, reduction: str = "pooled") -> torch.Tensor:
    """Fraction of the changed pixels that lie within ``distance`` pixels of a class boundary of ``clean``.

    A pixel is changed when ``clean != noisy`` and neither holds ``ignore_index``. It lies in the boundary
    band when a pixel of another clean class is at chessboard distance ``<= distance`` (``max(|dy|, |dx|)``),
    so ``distance=1`` is the one-pixel rim on each side of an edge. Ignored clean pixels and the image border
    make no boundary. Perturbations of the meta-structure (dilation, erosion, a thin object's skeleton, a
    shift by up to ``distance`` pixels) change only pixels in the band, so the fraction is near 1; random
    flips spread over the image, so it is near the band's share of the pixels. No changed pixel gives NaN.

    Args:
        clean: ``(N, H, W)`` integer clean labels (the boundary is taken from these).
        noisy: ``(N, H, W)`` integer noisy labels.
        distance: band half-width in pixels, an integer ``>= 1``.
        ignore_index: pixels holding it in either label are never changed pixels.
        reduction: ``"pooled"`` (changed pixels of the whole batch) or ``"none"`` (``(N,)``, per image).

    Returns:
        float64 0-dim tensor or ``(N,)``.

    Example:
        >>> clean = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> clean[:, 2:6, 2:6] = 1
        >>> eroded = torch.zeros_like(clean)
        >>> eroded[:, 3:5, 3:5] = 1
        >>> boundary_fraction(clean, eroded, distance=1)
        tensor(1., dtype=torch.float64)
    """
    check_in(reduction, "reduction", _REDUCTIONS)
    distance = _check_distance(distance)
    _check_pair(clean, noisy, None, ignore_index)
    joint = _boundary_counts(clean, noisy, None, ignore_index, distance)
    return _boundary_summary(joint.sum(0) if reduction == "pooled" else joint)["boundary_fraction"]


# ---------------------------------------------------------------------------------------------- taxonomy


RCL_MIN_SCORE = 0.95
"""The lowest expected-density score (:func:`mstool.metastructure.expected_similarity`) a label keeps as RCL."""

MIN_SIGNAL = 0.1
"""The least share of structure in the noisy density for the expected-density score to decide PCL; below it the
score is too noisy to trust (labels flipped 45% both ways carry 3-4%)."""


def classify_label(*, changed_fraction: float, rank: int, present_classes: int, boundary_fraction: float,
                   expected_boundary_fraction: float, pcl_odds: float = 4.0, changed_pixels: float | None = None,
                   pcl_z: float = 6.0, expected_score: float | None = None,
                   expected_signal: float | None = None, ignored_fraction: float = 0.0) -> str:
    """The label type, ``"CL"``, ``"RL"``, ``"PCL"`` or ``"RCL"``: the first rule below that matches.

    1. **CL**: no pixel changed (``changed_fraction`` is 0, or NaN because no pixel was left to compare) and
       none of the clean labels was left out (``ignored_fraction`` is 0). Partial labels (scribbles,
       ``sample:s,ignore``) change no pixel they keep; what they leave out is judged by the rules below.
    2. **RL**: the NTM has rank ``<= 1`` (see :func:`ntm_rank`; every present row is the same distribution,
       the noisy label is independent of the clean one and carries nothing) while at least two clean classes
       are present (with one class, any label is trivially independent of it).
    3. **PCL**: the changes concentrate at the clean boundary: the odds that a changed pixel lies in the band,
       ``bf / (1 - bf)``, are at least ``pcl_odds`` (4) times the odds ``e / (1 - e)`` for a pixel placed
       uniformly at random among the pixels of the same clean classes (``e`` =
       ``expected_boundary_fraction``), and ``bf > e``. Comparing with the class-wise expectation, not the
       band's share of the whole image, keeps random sampling of small objects, whose pixels are all near a
       boundary, out of PCL. When almost every pixel of the changed classes is in the band (``e`` near 1:
       objects thinner than ``2 * distance``) the test has no power: use a smaller ``distance``.
       When ``changed_pixels`` (the number of changed pixels) is given, a smaller but certain concentration also
       counts: ``bf > e`` by at least ``pcl_z`` binomial standard errors, ``sqrt(e (1 - e) / changed_pixels)``.
       Random sampling and flipping place changes uniformly within each class, so their ``bf`` matches ``e`` to
       within sampling error however many pixels there are; a skeleton of tubules a few pixels wide, whose
       junctions keep some interior pixels, has a modest odds ratio (about 2) over tens of thousands of pixels.
    4. **PCL** by the expected density, when ``expected_score`` is given: the noisy label's expected density
       (what a network learns, :func:`mstool.metastructure.expected_similarity`) correlates below
       ``RCL_MIN_SCORE`` (0.95) with the clean density, and at least ``MIN_SIGNAL`` (10%) of the noisy
       density's variance is structure (``expected_signal``), so the score is not noise itself. This is what
       calls a skeleton of blobs (nuclei) PCL: it removes whole interiors, which the boundary test reads as
       sampling.
    5. **RCL**: everything else: a full-rank (or partially informative) NTM whose changes keep the expected
       density, as random sampling and flipping do.

    Without ``expected_score`` a skeleton of thick objects removes whole interiors and so reads as heavy
    sampling (RCL); a skeleton, dilation, erosion or shift within ``distance`` of the edges reads as PCL.

    Args:
        changed_fraction: share of unignored pixels where the labels differ.
        rank: numerical rank of the NTM on its present rows.
        present_classes: number of clean classes with at least one unignored pixel.
        boundary_fraction: ``bf``, from :func:`boundary_fraction`.
        expected_boundary_fraction: ``e``, see :class:`LabelInfo`.
        pcl_odds: odds-ratio threshold for PCL, ``> 1``.
        changed_pixels: number of changed pixels behind ``bf`` (enables the significance rule).
        pcl_z: significance threshold of that rule, in standard errors.
        expected_score: the expected-density score of the noisy label (rule 4), or ``None``.
        expected_signal: the share of structure behind that score (rule 4; ``None`` counts as enough).
        ignored_fraction: share of the clean label's pixels that the noisy label leaves out (ignore index).

    Example:
        >>> classify_label(changed_fraction=0.1, rank=2, present_classes=2, boundary_fraction=0.97,
        ...                expected_boundary_fraction=0.3)
        'PCL'
        >>> classify_label(changed_fraction=0.5, rank=1, present_classes=2, boundary_fraction=0.2,
        ...                expected_boundary_fraction=0.2)
        'RL'
    """
    check_range(pcl_odds, "pcl_odds", 1, math.inf, low_open=True)
    if not changed_fraction > 0 and not ignored_fraction > 0:
        return "CL"
    if rank <= 1 and present_classes >= 2:
        return "RL"
    bf, e = boundary_fraction, expected_boundary_fraction
    if bf > e and bf * (1 - e) >= pcl_odds * (1 - bf) * e:
        return "PCL"
    if changed_pixels is not None and bf > e and (bf - e) >= pcl_z * math.sqrt(e * (1 - e) / max(changed_pixels, 1)):
        return "PCL"
    if (expected_score is not None and math.isfinite(expected_score) and expected_score < RCL_MIN_SCORE
            and (expected_signal is None or expected_signal >= MIN_SIGNAL)):
        return "PCL"
    return "RCL"


@dataclass(frozen=True, eq=False)
class LabelInfo:
    """What a noisy label keeps of a clean one, pooled over a batch (see :func:`label_info`).

    Attributes:
        ntm: ``(K, K)`` float64 CPU tensor, ``T[i, j] = P(noisy = j | clean = i)``; NaN row = absent class.
        rank: numerical rank of ``ntm`` on its present rows, with the sampling term of :func:`ntm_rank`.
        det: ``det(ntm)`` for ``K = 2`` (``1 - f - b`` for flips), ``None`` for ``K > 2``.
        condition: condition number of ``ntm`` (``inf`` singular, NaN with an absent class).
        mutual_information: ``I(clean; noisy)`` in bits.
        clean_entropy: ``H(clean)`` in bits, the most ``mutual_information`` can be.
        changed_fraction: share of the unignored pixels where the labels differ.
        ignored_fraction: share of the clean label's unignored pixels that the noisy label ignores (partial
            labels: scribbles, ``sample:s,ignore``); 0 without an ignore index.
        boundary_fraction: share of the changed pixels inside the boundary band (NaN when none changed).
        boundary_band_fraction: share of all unignored pixels inside the band: the expected
            ``boundary_fraction`` when changes fall uniformly over the image.
        expected_boundary_fraction: the expected ``boundary_fraction`` when each changed pixel falls
            uniformly within its own clean class: ``sum_i c_i * band_i / n_i / sum_i c_i`` (NaN when none
            changed). The PCL rule compares with this one.
        present_classes: clean classes with at least one unignored pixel.
        num_pixels: unignored pixels counted.
        distance: band half-width used (chessboard pixels).
        taxonomy: ``"CL"``, ``"RCL"``, ``"PCL"`` or ``"RL"`` (:func:`classify_label`).

    Compared by identity (it holds a tensor); compare ``as_dict()`` for values.
    """

    ntm: torch.Tensor
    rank: int
    det: float | None
    condition: float
    mutual_information: float
    clean_entropy: float
    changed_fraction: float
    boundary_fraction: float
    boundary_band_fraction: float
    expected_boundary_fraction: float
    present_classes: int
    num_pixels: int
    distance: int
    taxonomy: str
    ignored_fraction: float = 0.0

    @property
    def num_classes(self) -> int:
        return int(self.ntm.shape[0])

    def as_dict(self) -> dict:
        """JSON-ready values: numbers and lists, every NaN or infinity written as ``None``."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "taxonomy": self.taxonomy,
            "num_classes": self.num_classes,
            "ntm": [[num(v) for v in row] for row in self.ntm.tolist()],
            "rank": self.rank,
            "det": num(self.det),
            "condition": num(self.condition),
            "mutual_information": num(self.mutual_information),
            "clean_entropy": num(self.clean_entropy),
            "changed_fraction": num(self.changed_fraction),
            "ignored_fraction": num(self.ignored_fraction),
            "boundary_fraction": num(self.boundary_fraction),
            "boundary_band_fraction": num(self.boundary_band_fraction),
            "expected_boundary_fraction": num(self.expected_boundary_fraction),
            "present_classes": self.present_classes,
            "num_pixels": self.num_pixels,
            "distance": self.distance,
        }


def label_info(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None = None, *,
               ignore_index: int | None = 255, distance: int = 2, rank_tol: float = 1e-3,
               pcl_odds: float = 4.0, expected_score: float | None = None,
               expected_signal: float | None = None) -> LabelInfo:
    """Everything this module measures about a noisy label, pooled over the batch, with its label type.

    One pass counts pixels by (image, clean class, noisy class, inside the boundary band); every statistic is
    read from those counts. The rank uses ``tol = rank_tol`` and the pixels per clean class as ``support`` of
    :func:`ntm_rank`, so sampling noise in the measured NTM does not make independent labels full-rank.

    Args:
        clean: ``(N, H, W)`` integer clean labels.
        noisy: ``(N, H, W)`` integer noisy labels.
        num_classes: ``K``, or ``None`` to infer it as in :func:`confusion_counts`.
        ignore_index: pixels holding it in either label are left out of every count.
        distance: boundary band half-width (see :func:`boundary_fraction`); the reported boundary fraction uses
            it, and the PCL test is made with every band half-width from ``distance`` down to 1 (PCL if any says
            so), since on structures thinner than ``2 * distance`` the wide band holds every pixel.
        rank_tol: relative rank tolerance (see :func:`ntm_rank`).
        pcl_odds: PCL odds-ratio threshold (see :func:`classify_label`).
        expected_score, expected_signal: the labels' :func:`mstool.metastructure.expected_similarity` score and
            signal share, for the taxonomy's expected-density rule (see :func:`classify_label`); ``None`` leaves
            the rule out.

    Returns:
        A :class:`LabelInfo`. With no unignored pixel (an empty batch) every ratio is NaN, the rank is 0 and
        the type is ``"CL"`` (nothing contradicts the clean label), with a :class:`MstoolWarning`.

    Example:
        >>> clean = torch.zeros(1, 16, 16, dtype=torch.long)
        >>> clean[:, 6:10, 6:10] = 1
        >>> dilated = torch.nn.functional.max_pool2d(clean[:, None].float(), 3, 1, 1)[:, 0].long()
        >>> info = label_info(clean, dilated)
        >>> info.taxonomy, info.rank, round(info.det, 4), info.boundary_fraction
        ('PCL', 2, 0.9167, 1.0)
    """
    distance = _check_distance(distance)
    check_range(rank_tol, "rank_tol", 0, 1, high_open=True)
    num_classes = _check_pair(clean, noisy, num_classes, ignore_index)
    joint = _boundary_counts(clean, noisy, num_classes, ignore_index, distance).sum(0)  # (K, K, 2)
    counts = joint.sum(-1)
    support = counts.sum(-1)
    ntm = _rows_normalised(counts)
    k = ntm.shape[0]
    total = support.sum()
    if not bool(total > 0):
        warnings.warn("`clean` and `noisy` share no unignored pixel; every ratio of the label info is NaN",
                      MstoolWarning, stacklevel=2)
    boundary = _boundary_summary(joint)
    scalars = torch.stack([
        ntm_rank(ntm, tol=rank_tol, support=support).to(torch.float64),
        ntm_det(ntm),
        ntm_condition(ntm),
        _mutual_information(counts),
        _entropy(support),
        1 - counts.diagonal().sum() / total,
        boundary["boundary_fraction"],
        boundary["boundary_band_fraction"],
        boundary["expected_boundary_fraction"],
        (support > 0).sum().to(torch.float64),
        total,
        _ignored_fraction(clean, noisy, ignore_index),
    ]).tolist()  # one device sync for all of them
    rank, det, cond, mi, h, changed, bf, band, expected, present, pixels, ignored = scalars
    taxonomy = classify_label(changed_fraction=changed, rank=int(rank), present_classes=int(present),
                              boundary_fraction=bf, expected_boundary_fraction=expected, pcl_odds=pcl_odds,
                              changed_pixels=changed * pixels, expected_score=expected_score,
                              expected_signal=expected_signal, ignored_fraction=ignored)
    # Narrower bands too: on thin structures (ER tubules) every pixel lies within `distance` of a boundary, so only
    # a narrower band can show that a skeleton or an erosion removed exactly the boundary pixels.
    for d in range(distance - 1, 0, -1):
        if taxonomy != "RCL":
            break
        narrow = _boundary_summary(_boundary_counts(clean, noisy, num_classes, ignore_index, d).sum(0))
        taxonomy = classify_label(
            changed_fraction=changed, rank=int(rank), present_classes=int(present),
            boundary_fraction=float(narrow["boundary_fraction"]),
            expected_boundary_fraction=float(narrow["expected_boundary_fraction"]), pcl_odds=pcl_odds,
            changed_pixels=changed * pixels, ignored_fraction=ignored,
        )
    return LabelInfo(
        ntm=ntm.cpu(), rank=int(rank), det=det if k == 2 else None, condition=cond, mutual_information=mi,
        clean_entropy=h, changed_fraction=changed, boundary_fraction=bf, boundary_band_fraction=band,
        expected_boundary_fraction=expected, present_classes=int(present), num_pixels=int(pixels),
        distance=distance, taxonomy=taxonomy, ignored_fraction=ignored,
    )
