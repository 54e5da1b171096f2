"""The binary protocols on a set too large to hold: score histograms accumulated batch by batch.

Legend: N images · B coarse bins · F fine bins · K thresholds · H, W pixels.

:func:`~mstool.metrics.evaluate_binary` holds every score map of a set in memory. A set of thousands of large
images is instead counted as it is predicted: :class:`ScoreHistogram` keeps, per image, how many background and
foreground pixels fall in each of ``B`` equal bins of ``[0, 1]`` (8 kB an image at ``B = 1024``), one pooled
histogram of ``F`` finer bins, each image's exact ROC AUC, and the extreme scores.
:func:`evaluate_binary_histograms` then runs the same ``val`` / ``oracle`` / ``fixed`` protocols on them. What
differs from the tensor path, and by how much:

- every threshold is moved down to a bin edge ``e / B`` before it is applied (by less than ``1 / B``, 0.001 at
  the default): the grid, the validation choice and the fixed 0.5 (an edge already). Down, so that a threshold at
  the lowest score still predicts every pixel foreground, as on the tensor path (a constant map included). The
  counts at an edge are then exact for polarity +1, and for polarity -1 exact but for pixels scored exactly on
  that edge;
- the pooled AUC comes from the fine histogram, pairs in one fine bin counting one half (``F = 65536``: bins of
  1.5e-5); per-image AUCs are exact.
"""

from __future__ import annotations

import math

import torch

from .._check import check_in, check_int, check_range
from ..errors import DataError, ParameterError
from ._binary import _auc, _check_binary, _ratio_dtype, _require_images, _summarise
from ._protocol import SELECTION_METRICS, ProtocolResult, run_protocols, warn_degenerate

__all__ = ["ScoreHistogram", "evaluate_binary_histograms"]


class ScoreHistogram:
    """Binary score maps and their labels, counted batch by batch into histograms (see the module notes).

    Args:
        bins: ``B``, coarse bins of ``[0, 1]`` kept per image; thresholds land on their edges.
        fine_bins: ``F``, bins of the pooled histogram the pooled AUC is read from.
        ignore_index: label value that marks unlabelled pixels.
        capacity: images the per-image buffers hold before they double (the set's size, when known).

    Attributes:
        n_images: images counted so far.

    Example:
        >>> hist = ScoreHistogram(bins=4)
        >>> hist.update(torch.tensor([0.1, 0.4, 0.6, 0.9]).view(1, 1, 2, 2), torch.tensor([[[0, 1], [0, 1]]]))
        >>> hist.counts(0.5).tolist()  # tp, fp, fn, tn of each image at 0.5
        [[1, 1, 1, 1]]
        >>> hist.report(0.5, 1)["dice"], hist.report(0.5, 1)["auc"]
        (0.5, 0.75)
    """

    def __init__(self, *, bins: int = 1024, fine_bins: int = 2 ** 16, ignore_index: int = 255,
                 capacity: int = 64) -> None:
        self.bins = check_int(bins, "bins", low=2)
        self.fine_bins = check_int(fine_bins, "fine_bins", low=2)
        self.ignore_index = ignore_index
        capacity = check_int(capacity, "capacity", low=1)
        # per-image counts and AUCs live in buffers that double when full, never in one small tensor per batch:
        # small lasting allocations between a batch's large temporaries stop glibc from handing the heap back,
        # and the process grew by 2.6 MB an image of 512 x 512 that way
        self._images = torch.zeros(capacity, 2, self.bins, dtype=torch.int32)
        self._auc = torch.zeros(capacity, dtype=_ratio_dtype(torch.device("cpu")))
        self._fine: torch.Tensor | None = None  # (2, F), on the device of the scores: no copy per batch
        self.low, self.high = math.inf, -math.inf
        self.n_images = 0

    # ------------------------------------------------------------------------------------------ counting
    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch.

        Args:
            probs: ``(N, 1, H, W)`` foreground probabilities in ``[0, 1]`` (any device; images of a set may
                differ in size from batch to batch).
            labels: ``(N, H, W)`` int labels, 0, 1 or ``ignore_index``, on the device of ``probs``.

        Raises:
            ShapeError, DTypeError, DeviceMismatchError: as for :func:`~mstool.metrics.binary_report`.
            DataError: scores outside ``[0, 1]`` or not finite.
        """
        _check_binary(probs, labels, self.ignore_index)
        if probs.shape[0] == 0:
            return
        s = probs.float()
        lo, hi = float(s.min()), float(s.max())
        if lo < 0 or hi > 1:
            raise DataError(f"`probs` must be probabilities in [0, 1] to be counted in a ScoreHistogram; got "
                            f"values from {lo:.4g} to {hi:.4g}")
        self.low, self.high = min(self.low, lo), max(self.high, hi)
        n = s.shape[0]
        flat, y = s.flatten(1), labels.flatten(1).long()
        keep = y != self.ignore_index
        coarse = (flat * self.bins).long().clamp_(max=self.bins - 1)
        index = (torch.arange(n, device=s.device).unsqueeze(1) * 2 + y.clamp(max=1)) * self.bins + coarse
        per_image = torch.bincount(index[keep], minlength=n * 2 * self.bins).view(n, 2, self.bins)
        fine = (flat * self.fine_bins).long().clamp_(max=self.fine_bins - 1) + y.clamp(max=1) * self.fine_bins
        counted = torch.bincount(fine[keep], minlength=2 * self.fine_bins).view(2, -1)
        self._fine = counted if self._fine is None else self._fine + counted.to(self._fine.device)
        if self.n_images + n > self._images.shape[0]:
            size = max(2 * self._images.shape[0], self.n_images + n)
            self._images = torch.cat([self._images, self._images.new_zeros(size - self._images.shape[0], 2, self.bins)])
            self._auc = torch.cat([self._auc, self._auc.new_zeros(size - self._auc.shape[0])])
        self._images[self.n_images:self.n_images + n] = per_image.cpu()
        self._auc[self.n_images:self.n_images + n] = _auc(s, labels, self.ignore_index, per_image=True).cpu()
        self.n_images += n

    def snap(self, threshold: float) -> float:
        """The highest bin edge at or below ``threshold`` (where :meth:`counts` is exact): what the threshold
        predicts foreground stays foreground, so a threshold at the lowest score still takes every pixel."""
        edge = math.floor(float(threshold) * self.bins + 1e-9)  # an edge given back is its own edge
        return min(max(edge, 0), self.bins) / self.bins

    def counts(self, threshold: float, polarity: int = 1) -> torch.Tensor:
        """``(N, 4)`` int64 tp, fp, fn, tn of each image at the bin edge :meth:`snap` gives, read on the
        polarity-adjusted score (polarity -1: foreground where ``1 - probs >= threshold``)."""
        edge = round(self.snap(threshold) * self.bins)
        chunks = [self._counts_at(self._images[i:i + 4096], edge, polarity) for i in range(0, self.n_images, 4096)]
        return torch.cat(chunks)[:self.n_images] if chunks else torch.zeros(0, 4, dtype=torch.int64)

    def _counts_at(self, hist: torch.Tensor, edge: int, polarity: int) -> torch.Tensor:
        h = hist.long()
        above = h[..., edge:].sum(-1) if polarity == 1 else h[..., :self.bins - edge].sum(-1)
        total = h.sum(-1)
        tp, fp = above[:, 1], above[:, 0]
        return torch.stack([tp, fp, total[:, 1] - tp, total[:, 0] - fp], dim=-1)

    # -------------------------------------------------------------------------- the ScoredSet protocol
    def check(self, metric: str, labels_name: str) -> None:
        """As the tensor path: refuse a set without a labelled pixel, warn when no threshold can mean anything."""
        pixels = torch.zeros(2, dtype=torch.int64) if self._fine is None else self._fine.sum(dim=1).cpu()
        warn_degenerate(labelled=int(pixels.sum()) > 0, constant=self.low == self.high,
                        foreground=int(pixels[1]) > 0, metric=metric, labels_name=labels_name,
                        ignore_index=self.ignore_index)

    def sweep(self, polarity: int, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``num`` thresholds spread between the set's extreme scores (as
        :func:`~mstool.metrics.threshold_grid`), each moved down to a bin edge, and the pooled counts."""
        lo, hi = (self.low, self.high) if polarity == 1 else (1 - self.high, 1 - self.low)
        thresholds = [self.snap(lo + (hi - lo) * k / (num + 1)) for k in range(1, num + 1)]
        pooled = self._images[:self.n_images].sum(dim=0, dtype=torch.int64)  # (2, B)
        counts = torch.stack([self._counts_at(pooled[None], round(t * self.bins), polarity)[0] for t in thresholds])
        return torch.tensor(thresholds, dtype=torch.float64), counts

    def report(self, threshold: float, polarity: int) -> dict[str, float | int]:
        """The :func:`~mstool.metrics.binary_report` dict at the bin edge :meth:`snap` gives."""
        _require_images(torch.empty(self.n_images), "the histogram")
        per_image = self._auc[:self.n_images]
        pooled = self._pooled_auc()
        aucs = (pooled, per_image) if polarity == 1 else (1 - pooled, 1 - per_image)
        return _summarise(self.counts(threshold, polarity), aucs, threshold=self.snap(threshold),
                          polarity=polarity)

    def _pooled_auc(self) -> torch.Tensor:
        """Mann-Whitney AUC of the fine histogram; pairs within one bin count one half."""
        neg, pos = self._fine.cpu().to(_ratio_dtype(torch.device("cpu")))
        below = torch.cumsum(neg, 0) - neg
        return (pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum())


def evaluate_binary_histograms(
    test: ScoreHistogram,
    *,
    val: ScoreHistogram | None = None,
    num_thresholds: int = 50,
    allow_inversion: bool = False,
    fixed_threshold: float = 0.5,
    metric: str = "dice",
) -> ProtocolResult:
    """:func:`~mstool.metrics.evaluate_binary` on sets counted into :class:`ScoreHistogram` s (see the module
    notes for the two ways the numbers can differ from the tensor path's).

    Args:
        test: the test set's histogram, at least one image.
        val: the validation set's, or None (no ``val`` protocol).
        num_thresholds, allow_inversion, fixed_threshold, metric: as for
            :func:`~mstool.metrics.evaluate_binary`.

    Returns:
        A :class:`~mstool.metrics.ProtocolResult` whose thresholds are bin edges.

    Raises:
        ShapeError: an empty histogram.
        DataError: a set without any labelled pixel.
        ParameterError: a bad metric or threshold, or histograms of different bins.

    Example:
        >>> probs, labels = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 2, 2), torch.tensor([[[0, 0], [1, 1]]])
        >>> test = ScoreHistogram()
        >>> test.update(probs, labels)
        >>> result = evaluate_binary_histograms(test, val=test, num_thresholds=5)
        >>> result.entries["val"].metrics["dice"], result.entries["fixed"].metrics["dice"]
        (1.0, 0.0)
    """
    for name, hist in (("test", test), ("val", val)):
        if hist is not None and not isinstance(hist, ScoreHistogram):
            raise ParameterError(f"`{name}` must be a ScoreHistogram; got {type(hist).__name__}")
    _require_images(torch.empty(test.n_images), "test")
    if val is not None:
        _require_images(torch.empty(val.n_images), "val")
        if val.bins != test.bins:
            raise ParameterError(f"`val` and `test` must count into the same bins; got {val.bins} and {test.bins}")
    check_in(metric, "metric", SELECTION_METRICS)
    num_thresholds = check_int(num_thresholds, "num_thresholds", low=1)
    fixed_threshold = check_range(fixed_threshold, "fixed_threshold")
    return run_protocols(test, val, num_thresholds=num_thresholds, allow_inversion=bool(allow_inversion),
                         fixed_threshold=fixed_threshold, metric=metric)
