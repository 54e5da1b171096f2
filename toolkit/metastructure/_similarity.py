"""How alike the meta-structures of two labels are: Pearson correlation and total variation of densities.

Legend: N batch · C channels · K classes · H, W pixels · B bandwidths.

Two labels with the same meta-structure train networks alike even when their pixels disagree (Luo et
al. 2022): a randomly sampled label keeps the clean density up to a factor (Lemma 1), so its densities
correlate with the clean ones, while a dilated or shifted label moves the density itself.

Both measures ignore a global scale of the density: Pearson correlation by construction, the total
variation distance because it compares densities normalised to sum to 1 over the image.

References:
    Luo, Liu, Guo, Yang, arXiv 2205.00160 (2022), Sec. 3 and Lemma 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import IGNORE_INDEX
from .._check import check_in, check_same_device, check_shape
from ..errors import ParameterError, ShapeError
from ._density import _check_window, _density, _resolve_num_classes

__all__ = ["MetaSimilarity", "meta_similarity", "density_similarity"]


@dataclass(frozen=True, eq=False)
class MetaSimilarity:
    """Meta-structure similarity of two label batches at several bandwidths.

    Attributes:
        pearson: ``(N, B)`` Pearson correlation of the densities over pixels, averaged over classes
            (NaN when no class has a non-constant density in both labels).
        tv: ``(N, B)`` total-variation distance of the normalised densities in ``[0, 1]``, averaged over
            classes (NaN when no class is present in either label).
        bandwidths: the ``B`` bandwidths, in the order of the columns.
    """

    pearson: torch.Tensor
    tv: torch.Tensor
    bandwidths: tuple[float, ...]

    def mean(self) -> dict[str, float]:
        """Means over images (NaN entries left out), keyed ``pearson_h<h>`` and ``tv_h<h>``.

        A column with no finite entry (or an empty batch) gives NaN.
        """
        # On the CPU in float64: some devices (MPS) have no float64.
        pearson, tv = self.pearson.detach().cpu().double(), self.tv.detach().cpu().double()
        out: dict[str, float] = {}
        for j, h in enumerate(self.bandwidths):
            out[f"pearson_h{h:g}"] = float(torch.nanmean(pearson[:, j]))
            out[f"tv_h{h:g}"] = float(torch.nanmean(tv[:, j]))
        return out


def density_similarity(da: torch.Tensor, db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson correlation and total-variation distance of two density batches, per image and channel.

    Args:
        da: ``(N, C, H, W)`` non-negative densities.
        db: ``(N, C, H, W)`` non-negative densities, same shape and device.

    Returns:
        ``(pearson, tv)``, each ``(N, C)`` in the dtype of ``da``:

        - ``pearson``: correlation over the ``H * W`` pixels, in ``[-1, 1]``; NaN when either channel is
          constant (correlation is undefined; an absent class has a constant zero density).
        - ``tv``: ``0.5 * sum |p - q|`` of the channels normalised to sum 1 (:func:`normalized_density`),
          in ``[0, 1]``; NaN when both channels are all zero (class absent from both), 1 when exactly one
          is (the largest distance there is).

    Example:
        >>> a = torch.tensor([[[[0.0, 1.0, 2.0, 3.0]]]])
        >>> r, tv = density_similarity(a, 2 * a)
        >>> float(r), float(tv)
        (1.0, 0.0)
        >>> density_similarity(a, torch.ones_like(a))[0]
        tensor([[nan]])
    """
    check_shape(da, "da", "N C H W", dtype="float")
    check_shape(db, "db", "N C H W", dtype="float")
    if da.shape != db.shape:
        raise ShapeError(f"`da` and `db` must have one shape; got {tuple(da.shape)} and {tuple(db.shape)}")
    check_same_device(("da", da), ("db", db))
    n, c = da.shape[:2]
    if da.shape[-1] * da.shape[-2] == 0:
        nan = torch.full((n, c), math.nan, dtype=da.dtype, device=da.device)
        return nan, nan.clone()
    a, b = da.flatten(2), db.to(da.dtype).flatten(2)
    return _pearson(a, b), _total_variation(a, b)


def meta_similarity(a_labels: torch.Tensor, b_labels: torch.Tensor, num_classes: int | None = None, *,
                    bandwidths: Sequence[float] = (2, 4, 8), kernel: str = "box",
                    ignore_index: int | None = IGNORE_INDEX, classes: str = "foreground",
                    normalize_ignored: bool = False) -> MetaSimilarity:
    """Meta-structure similarity of two label batches: do they have the same per-class densities?

    For every bandwidth ``h`` the per-class densities of both labels (:func:`density`) are compared per
    image and class with :func:`density_similarity`, then averaged over classes (NaN classes, i.e. absent
    ones, left out).

    Args:
        a_labels: ``(N, H, W)`` integer labels, e.g. the clean ones.
        b_labels: ``(N, H, W)`` integer labels of the same shape, e.g. noisy or sparse ones.
        num_classes: ``K``; ``None`` infers it from both batches (at least 2).
        bandwidths: the window bandwidths ``h`` to compare at (a whole number each for the box kernel).
        kernel: ``"box"`` or ``"gaussian"``, as in :func:`density`.
        ignore_index: label value of unlabelled pixels.
        classes: ``"foreground"`` compares classes ``1..K-1`` (for binary labels the paper's ``f_1``);
            ``"all"`` compares ``0..K-1``.
        normalize_ignored: passed to :func:`density`. The default ``False`` counts unlabelled pixels in
            the window size, which scales a sparse label's density by its sampling rate (Lemma 1); both
            measures ignore that scale, and no window is ever left without pixels.

    Returns:
        :class:`MetaSimilarity` with ``pearson`` and ``tv`` of shape ``(N, B)``.

    Example:
        >>> labels = torch.zeros(1, 16, 16, dtype=torch.long)
        >>> labels[:, 4:12, 4:12] = 1
        >>> s = meta_similarity(labels, labels, bandwidths=(2,))
        >>> s.mean()
        {'pearson_h2': 1.0, 'tv_h2': 0.0}

    References:
        Luo et al., arXiv 2205.00160 (2022), Lemma 1.
    """
    check_shape(a_labels, "a_labels", "N H W", dtype="int")
    check_shape(b_labels, "b_labels", "N H W", dtype="int")
    if a_labels.shape != b_labels.shape:
        raise ShapeError(f"`a_labels` and `b_labels` must have one shape; got {tuple(a_labels.shape)} "
                         f"and {tuple(b_labels.shape)}")
    check_in(classes, "classes", ("foreground", "all"))
    if isinstance(bandwidths, (str, bytes)) or not isinstance(bandwidths, Sequence) or not bandwidths:
        raise ParameterError(f"`bandwidths` must be a non-empty sequence of numbers; got {bandwidths!r}")
    hs = tuple(_check_window(kernel, h)[1] for h in bandwidths)
    check_same_device(("a_labels", a_labels), ("b_labels", b_labels))
    k = _resolve_num_classes({"a_labels": a_labels, "b_labels": b_labels}, num_classes=num_classes,
                             ignore_index=ignore_index)
    if classes == "foreground" and k < 2:
        raise ParameterError("`classes` 'foreground' needs num_classes >= 2 (class 0 is background); got 1")
    chosen = torch.arange(1 if classes == "foreground" else 0, k, device=a_labels.device)
    pearson, tv = [], []
    for h in hs:
        da, db = (_density(x, chosen, kernel=kernel, bandwidth=h, ignore_index=ignore_index,
                           normalize_ignored=normalize_ignored) for x in (a_labels, b_labels))
        r, t = density_similarity(da, db)
        pearson.append(torch.nanmean(r, dim=1))
        tv.append(torch.nanmean(t, dim=1))
    return MetaSimilarity(torch.stack(pearson, dim=1), torch.stack(tv, dim=1), hs)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation over the last axis of ``(N, C, P)``; NaN where either side is constant."""
    constant = (a.amax(-1) == a.amin(-1)) | (b.amax(-1) == b.amin(-1))
    ac = a - a.mean(-1, keepdim=True)
    bc = b - b.mean(-1, keepdim=True)
    # Separate square roots keep the product of two large sums from overflowing.
    denom = (ac * ac).sum(-1).sqrt() * (bc * bc).sum(-1).sqrt()
    r = (ac * bc).sum(-1) / torch.where(constant, torch.ones_like(denom), denom)
    return torch.where(constant, torch.full_like(r, math.nan), r.clamp(-1, 1))


def _total_variation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum |p - q|`` of ``(N, C, P)`` normalised over ``P``; NaN if both zero, 1 if one is."""
    sa, sb = a.sum(-1, keepdim=True), b.sum(-1, keepdim=True)
    p = a / torch.where(sa > 0, sa, torch.ones_like(sa))
    q = b / torch.where(sb > 0, sb, torch.ones_like(sb))
    tv = (0.5 * (p - q).abs().sum(-1)).clamp(0, 1)
    za, zb = (sa <= 0).squeeze(-1), (sb <= 0).squeeze(-1)
    tv = torch.where(za ^ zb, torch.ones_like(tv), tv)
    return torch.where(za & zb, torch.full_like(tv, math.nan), tv)
