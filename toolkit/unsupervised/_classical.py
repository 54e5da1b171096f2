"""Classical unsupervised baselines: Otsu, minimum-error threshold, multi-Otsu, local threshold, k-means and GMMs.

Size: one module (over 1100 lines) because the six methods share the polarity rule (:func:`choose_foreground`),
the cluster-to-foreground rule and the prior handling, which must stay the same for all of them.

Legend: N batch · C channels · K classes or clusters · P pixels (H * W) · D features · H, W pixels.

Every method reads images ``(N, C, H, W)`` z-scored per image (:func:`mstool.io.normalize_image`). The threshold
methods work on the *intensity*, the mean over channels; k-means and the mixture cluster :func:`pixel_features`.

Conventions (shared by every method here and by DFC):

- **Label-free cluster-to-class rule.** ``foreground="bright"`` makes the bright side foreground: above the
  threshold, or, for clusters, the clusters whose mean intensity lies above the Otsu threshold of the cluster
  means (weighted by cluster size; with two clusters, simply the brighter one). ``"dark"`` mirrors it.
  ``"auto"`` (the default) picks the side for the whole batch by :func:`choose_foreground` (the side toward
  which the image departs from its local median); ``info`` records the side, the rule and, for ``auto``, why.
  Nothing here reads labels; a mapping that looks at ground truth belongs to evaluation, where it is called
  ``oracle``.
- **Scores.** Binary methods return ``(N, 1, H, W)`` foreground scores in ``[0, 1]``. Threshold methods map
  the thresholded quantity monotonically (piecewise linear, the threshold at 0.5), so ``masks == (scores >= 0.5)``
  exactly and a threshold sweep over the scores is a sweep over the intensity. Clustering methods give the
  posterior mass of the foreground clusters. Multi-Otsu returns one-hot ``(N, K, H, W)`` scores.
- **Constant image** (every channel and pixel equal): empty mask (all class 0), zero scores (one-hot class 0 for
  multi-Otsu) and a :class:`~mstool.errors.MstoolWarning`. An empty batch gives empty outputs.
- **Prior** ``(N, 1, H, W)``, a foreground density (:meth:`mstool.metastructure.Prior.foreground`):

  ========== ==================================================================================================
  method     what the prior does
  ========== ==================================================================================================
  otsu       replaces Otsu's criterion: the threshold is set so that the foreground fraction equals the
             prior's mean (its expected foreground fraction), per image
  minerror   the same as ``otsu``
  local      the same for the local contrast ``x - local_mean``: the offset is chosen per image to match
             the prior's foreground fraction
  kmeans     a pixel-wise class prior (as an atlas prior in EM segmentation): the clustering is fitted
  gmm        without it, then each pixel's foreground odds are the prior's odds times the clusters'
             likelihood ratio; intensity evidence and prior combine by Bayes' rule
  multiotsu  not used: a foreground density says nothing about how to split K intensity classes; a
             prior is ignored with a warning
  ========== ==================================================================================================

  These five read the prior as a per-pixel foreground probability (a density in ``[0, 1]``, as
  :func:`mstool.metastructure.density` gives); values above 1 are clipped to 1 with a warning. That needs a
  calibrated prior, such as the density of full or rough labels: the density of sparse samples (an EMS skeleton,
  ``normalize_ignored=False``) is far below the true fraction and shrinks the mask accordingly. DFC reads only
  the prior's order (:func:`mstool.unsupervised._dfc.prior_scribbles`), so any scale serves it.

  Unknown pixels (NaN, the density of a partial annotation away from every labelled pixel) say nothing: the
  fraction is the mean over the known pixels (an image with none keeps its own rule: Otsu's criterion, the
  minimum-error threshold, the fixed offset), and k-means and GMM give an unknown pixel the clustering's own
  foreground weight as its prior, which leaves its posterior as the clustering gives it.

References:
    Otsu, "A threshold selection method from gray-level histograms", IEEE TSMC 9 (1979);
    Liao, Chen, Chung, "A fast algorithm for multilevel thresholding", J. Inf. Sci. Eng. 17 (2001);
    Arthur, Vassilvitskii, "k-means++: the advantages of careful seeding", SODA (2007).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from kornia.filters import box_blur, gaussian_blur2d

from .. import names
from .._check import check_in, check_int, check_range, check_shape
from .._types import Progress
from ..device import spawn_seed
from ..errors import MstoolWarning, ParameterError
from ..labels import skeletonize
from ._base import METHODS, Segmentation, check_images_and_prior

__all__ = [
    "FOREGROUND_RULES",
    "choose_foreground",
    "resolve_foreground",
    "otsu_thresholds",
    "minimum_error_thresholds",
    "object_width",
    "otsu_object_width",
    "foreground_clusters",
    "pixel_features",
    "otsu",
    "multiotsu",
    "minimum_error",
    "local_threshold",
    "kmeans",
    "gmm",
    "Otsu",
    "MinimumError",
    "MultiOtsu",
    "LocalThreshold",
    "KMeans",
    "GaussianMixture",
]

FOREGROUND_RULES = names.FOREGROUND_RULES
"""Values of ``foreground``: which side of the intensity is foreground; ``auto`` decides per batch by
:func:`choose_foreground`."""

_LOCAL_KINDS = ("gaussian", "mean")
# A window ten object widths across: the local mean then sees background around every object, so the interior of
# a wide object (a nucleus) is not compared with itself. Chosen on draws 7 and 8 of the built-in kinds and 8 DSB
# training tiles (block_size k x width, k = 6 to 16; the fixed 51 before): larger windows gained up to 22 points on
# nuclei and DSB and lost at most 0.4 on EM, and k = 10 came within 1.7 points of the best k on every set.
_BLOCK_PER_WIDTH = 10
_FIXED_BLOCK = 51  # the window for images with no object to measure
_RESIDUAL_SAMPLES = 1 << 16  # window centres the polarity rule reads per image
_WIDTH_SMOOTH = 1.0  # sigma of the Otsu mask object widths are measured on
_KMEANS_INITS = ("kmeans++", "quantile")
_COVARIANCES = ("full", "diag", "tied", "spherical")


# --------------------------------------------------------------------------------------------------- the pieces
def otsu_thresholds(x: torch.Tensor, *, classes: int = 2, bins: int = 256) -> torch.Tensor:
    """Otsu's thresholds of each item of a batch, from a per-item histogram; one batched pass.

    The ``classes - 1`` thresholds maximise the between-class variance of the ``bins``-bin histogram spanning each
    item's range (dynamic programming over bin boundaries, exact for any number of classes). A threshold is a bin
    centre; values ``> t`` lie above it, as :func:`skimage.filters.threshold_otsu` and
    :func:`skimage.filters.threshold_multiotsu` read theirs (and they agree with them).

    Args:
        x: ``(N, ...)`` float values, one item per row (an image ``(N, H, W)``, a vector ``(N, P)``).
        classes: number of classes ``K >= 2`` (2: Otsu's single threshold).
        bins: histogram bins, ``>= K``.

    Returns:
        ``(N, K - 1)`` ascending thresholds in the dtype of ``x``; a constant item gets its value ``K - 1`` times.

    Example:
        >>> x = torch.tensor([[0.0, 0.1, 0.2, 0.9, 1.0, 1.1]])
        >>> otsu_thresholds(x, bins=12)
        tensor([[0.2292]])
        >>> otsu_thresholds(torch.tensor([[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]]), classes=3, bins=4)
        tensor([[0.2500, 1.2500]])
    """
    classes = check_int(classes, "classes", low=2)
    bins = check_int(bins, "bins", low=classes)
    counts, centres, lo, width = _histograms(x, bins)
    cuts = _optimal_cuts(counts, centres, classes)
    thresholds = centres.gather(1, cuts - 1)
    constant = (width == 0).expand_as(thresholds)
    return torch.where(constant, lo.expand_as(thresholds), thresholds).to(x.dtype)


def _histograms(x: torch.Tensor, bins: int) -> tuple[torch.Tensor, ...]:
    """Per-item ``bins``-bin histograms over each item's range: ``(counts, centres)`` ``(N, bins)`` and the
    ``(N, 1)`` lower edge and bin width, in float64 (float32 on MPS)."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if flat.shape[1] == 0:
        raise ParameterError("`x` must hold at least one value per item; got 0")
    # float64 keeps the variance criterion exact enough to agree with scikit-image (MPS has no float64)
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    v = flat.to(wide)
    lo, hi = v.amin(1, keepdim=True), v.amax(1, keepdim=True)
    width = (hi - lo) / bins
    safe = torch.where(width > 0, width, torch.ones_like(width))
    idx = ((v - lo) / safe).floor().long().clamp_(0, bins - 1)
    offset = torch.arange(n, device=x.device)[:, None] * bins
    counts = torch.bincount((idx + offset).flatten(), minlength=n * bins).view(n, bins).to(wide)
    centres = lo + (torch.arange(bins, device=x.device, dtype=wide) + 0.5) * width
    return counts, centres, lo, width


def minimum_error_thresholds(x: torch.Tensor, *, bins: int = 256) -> torch.Tensor:
    """Kittler and Illingworth's minimum-error threshold of each item of a batch; one batched pass.

    The histogram is read as a mixture of two Gaussians, each with its own share ``P``, mean and spread
    ``sigma``; the threshold minimises ``P_0 ln sigma_0 + P_1 ln sigma_1 - P_0 ln P_0 - P_1 ln P_1``, the
    error of classifying with the fitted mixture. Otsu's criterion assumes equal spreads and so moves the
    threshold into the wider class: on sparse bright objects with blurred edges it lands high and
    cuts the dim rims off. A class's variance includes the bins' own (``width^2 / 12``, Sheppard's
    correction), so a class of a single bin is not a spike of zero spread that the criterion would fall into.
    The threshold is searched between the means of Otsu's two classes: a few saturated pixels (one very bright
    nucleus on a real DSB tile) otherwise made the criterion split the foreground in two, keeping 1.3% of a tile
    whose nuclei cover 20% (Dice 0.10; 0.83 with the restriction, Otsu 0.85). Thresholds and the ``> t``
    reading follow :func:`otsu_thresholds`; this is the ``MinError`` rule of ImageJ's Auto Threshold.

    Args:
        x: ``(N, ...)`` float values, one item per row.
        bins: histogram bins, ``>= 2``.

    Returns:
        ``(N,)`` thresholds in the dtype of ``x``; a constant item gets its value.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> wide = torch.randn(1, 1500, generator=g) * 0.8 + 2.5  # a rare, wide bright class
        >>> x = torch.cat([torch.randn(1, 8500, generator=g) * 0.2, wide], 1)
        >>> minimum_error_thresholds(x), otsu_thresholds(x)[:, 0]  # Otsu's cuts into the wide class
        (tensor([0.6769]), tensor([1.3263]))

    References:
        Kittler, Illingworth, "Minimum error thresholding", Pattern Recognition 19 (1986).
    """
    bins = check_int(bins, "bins", low=2)
    counts, centres, lo, width = _histograms(x, bins)
    total = counts.sum(1, keepdim=True)
    w0 = counts.cumsum(1)[:, :-1]  # class 0: bins 0..j, class 1: bins j+1.. (j = 0 .. bins - 2)
    s0 = (counts * centres).cumsum(1)[:, :-1]
    q0 = (counts * centres * centres).cumsum(1)[:, :-1]
    w1 = total - w0
    s1 = (counts * centres).sum(1, keepdim=True) - s0
    q1 = (counts * centres * centres).sum(1, keepdim=True) - q0
    floor = width * width / 12
    valid = (w0 > 0) & (w1 > 0)
    w0s, w1s = w0.clamp(min=1), w1.clamp(min=1)
    var0 = (q0 / w0s - (s0 / w0s) ** 2).clamp(min=0) + floor
    var1 = (q1 / w1s - (s1 / w1s) ** 2).clamp(min=0) + floor
    p0, p1 = w0s / total, w1s / total
    crit = 0.5 * (p0 * var0.log() + p1 * var1.log()) - p0 * p0.log() - p1 * p1.log()
    # between the means of Otsu's two classes: outside them the criterion can split one class in two
    otsu_cut = _optimal_cuts(counts, centres, 2)  # first bin of Otsu's upper class
    cs0, ct0 = (counts * centres).cumsum(1), counts.cumsum(1)
    below = cs0.gather(1, otsu_cut - 1) / ct0.gather(1, otsu_cut - 1).clamp(min=1)
    above = (cs0[:, -1:] - cs0.gather(1, otsu_cut - 1)) / (ct0[:, -1:] - ct0.gather(1, otsu_cut - 1)).clamp(min=1)
    inside = (centres[:, :-1] >= below) & (centres[:, :-1] <= above)
    cut = crit.masked_fill(~(valid & inside), math.inf).argmin(1, keepdim=True)
    t = centres.gather(1, cut)[:, 0]
    return torch.where(width[:, 0] > 0, t, lo[:, 0]).to(x.dtype)


def choose_foreground(images: torch.Tensor, *, smooth: float = 1.0, window: int = 15) -> tuple[str, dict]:
    """The ``auto`` polarity rule: which side of the intensity is foreground, decided for a whole batch.

    Background is what most of an image is *locally*: per image, the intensity (channel mean, Gaussian-smoothed
    with sigma ``smooth`` so that pixel noise and fine grain do not decide) is compared with its median over a
    ``window`` x ``window`` neighbourhood, and the skewness of that residual says which way the image departs
    from its local background: objects thinner than the window, and the convex rims of larger ones, are a local
    minority, so they lie in the residual's long tail. Negative skewness votes ``dark``, positive ``bright``; the
    batch follows the majority of its images (a tie, or no image with any structure, gives ``bright``): one
    microscope, one polarity. Bright nuclei, ER and mitochondria on a dark background give ``bright``; dark
    membranes around bright cells give ``dark``, also when the cells differ in tone as much as the membranes
    do from them (a rule on the whole image's histogram, which this one replaced, then fails: the most common
    intensity was that of some cells, and Otsu's threshold split the cells; README's held-out EM set).

    Where it fails: objects much wider than the window whose outlines are as concave as convex (a dense
    tessellation of large bright cells, where the dark gaps between them are the thin minority), and images
    whose background texture is as strong as the objects' contrast. Name the side (``foreground="bright"`` or
    ``"dark"``) when the rule is wrong; the reason it gives says what it saw.

    The residual is read on a grid of at most 2**16 window centres per image (every pixel of an image up to
    256 x 256), so the cost does not grow with the image beyond that.

    Args:
        images: ``(N, C, H, W)`` float images.
        smooth: Gaussian sigma in pixels, ``>= 0``.
        window: side of the median window in pixels, odd, ``>= 3`` (cut to the image's smaller side).

    Returns:
        ``(side, info)``: ``"bright"`` or ``"dark"``, and ``{"foreground", "foreground_rule": "auto",
        "foreground_votes": {"bright": b, "dark": d}, "foreground_reason": text}``.

    Example:
        >>> x = torch.ones(2, 1, 32, 32)
        >>> x[:, :, 8:11, 4:28] = 0.0  # a dark bar on a bright background
        >>> choose_foreground(x)[0], choose_foreground(-x)[0]
        ('dark', 'bright')
    """
    check_images_and_prior(images, None)
    sigma = check_range(smooth, "smooth", 0)
    window = check_int(window, "window", low=3)
    if window % 2 == 0:
        raise ParameterError(f"`window` must be odd (the median's window has a centre pixel); got {window}")
    x = smoothed(images.mean(1, keepdim=True), sigma)
    n = len(x)
    structured = ~_constant(images) if n else torch.zeros(0, dtype=torch.bool)
    skew = torch.stack([_residual_skewness(x[i: i + 1], window) for i in range(n)]).cpu() if n else torch.zeros(0)
    dark = (skew < 0).to(structured.device) & structured
    votes = {"dark": int(dark.sum()), "bright": int((structured & ~dark).sum())}
    side = "dark" if votes["dark"] > votes["bright"] else "bright"
    counted = votes["dark"] + votes["bright"]
    typical = float(skew[structured.to(skew.device)].median()) if counted else 0.0
    reason = (f"auto: the image departs from its local median ({window} px window) toward the {side} side "
              f"(residual skewness {'below' if side == 'dark' else 'above'} 0) in {votes[side]} of {counted} "
              f"image(s), median skewness {typical:+.2f}, so the background is "
              f"{'bright' if side == 'dark' else 'dark'} and the foreground {side}"
              ) if counted else "auto: no image with structure; bright by default"
    return side, {"foreground": side, "foreground_rule": "auto", "foreground_votes": votes,
                  "foreground_reason": reason}


def _residual_skewness(x: torch.Tensor, window: int) -> torch.Tensor:
    """Skewness of ``x`` minus its local median, for one ``(1, 1, H, W)`` image, as a 0-d float64 tensor on its
    device (0 when the residual is flat or the image is narrower than 3 pixels)."""
    _, _, h, w = x.shape
    k = min(window, h - (h % 2 == 0), w - (w % 2 == 0))
    if k < 3:
        return torch.zeros((), dtype=torch.float64, device=x.device)
    stride = max(1, math.ceil(math.sqrt((h - k + 1) * (w - k + 1) / _RESIDUAL_SAMPLES)))
    patches = F.unfold(x, k, stride=stride)[0]  # (k * k, L): one column per window centre
    residual = (patches[k * k // 2] - patches.median(0).values).double()
    residual = residual - residual.mean()
    spread = residual.pow(2).mean().sqrt().clamp(min=torch.finfo(torch.float64).tiny)  # flat: 0 / tiny = 0
    return (residual / spread).pow(3).mean()


def resolve_foreground(images: torch.Tensor, foreground: str) -> tuple[str, dict]:
    """``foreground`` as a side: ``"bright"`` and ``"dark"`` as given, ``"auto"`` by :func:`choose_foreground`;
    with the info every method records (``foreground``, ``foreground_rule`` and, for ``auto``, the votes and the
    reason)."""
    check_in(foreground, "foreground", FOREGROUND_RULES)
    if foreground != "auto":
        return foreground, {"foreground": foreground, "foreground_rule": "given"}
    return choose_foreground(images)


def smoothed(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(N, 1, H, W)`` images blurred with a Gaussian of standard deviation ``sigma`` (reflecting border; the
    kernel is cut at 3 sigma and at the image's size); ``sigma`` 0 returns ``x``."""
    _, _, h, w = x.shape
    if sigma == 0 or h * w == 0:
        return x
    radius = max(1, min(math.ceil(3 * sigma), min(h, w) - 1))
    return gaussian_blur2d(x, (2 * radius + 1, 2 * radius + 1), (sigma, sigma), border_type="reflect")


def object_width(masks: torch.Tensor) -> float:
    """The mean object width of a mask batch: foreground pixels per skeleton pixel, pooled over the batch.

    A tubule ``w`` pixels wide and ``L`` long has about ``w L`` pixels and an ``L``-pixel skeleton; a disc of
    radius ``r`` has ``pi r^2`` pixels and a skeleton of a few, so blobs measure wide. An empty batch (or
    foreground) measures ``inf``.

    Args:
        masks: ``(N, H, W)`` integer binary masks.

    Returns:
        Width in pixels (``inf`` without foreground).

    Example:
        >>> m = torch.zeros(1, 16, 16, dtype=torch.long)
        >>> m[:, 4:7, 2:14] = 1
        >>> round(object_width(m), 1)  # 36 pixels, an 11-pixel skeleton
        3.3
    """
    check_shape(masks, "masks", "N H W", dtype="int")
    fg = masks > 0
    length = int(skeletonize(fg).sum()) if fg.numel() else 0
    return float(fg.sum()) / length if length else math.inf


def otsu_object_width(images: torch.Tensor, foreground: str) -> float:
    """The width of the objects on side ``foreground`` of a batch, in pixels: :func:`object_width` of the Otsu
    masks of the images smoothed with sigma 1 (the raw images' masks are speckled by noise, and specks would
    measure as thin objects). Constant images add nothing; a batch without objects measures ``inf``.

    Args:
        images: ``(N, C, H, W)`` float images; the intensity is the channel mean.
        foreground: ``"bright"`` or ``"dark"``.

    Example:
        >>> square, line = torch.zeros(2, 1, 32, 32).unbind(0)
        >>> square[..., 8:24, 8:24] = 1.0
        >>> line[..., 16, 4:28] = 1.0
        >>> otsu_object_width(line[None], "bright") < 4 < 20 < otsu_object_width(square[None], "bright")
        True
    """
    check_in(foreground, "foreground", ("bright", "dark"))
    n, _, h, w = images.shape
    if n == 0 or h * w == 0:
        return math.inf
    return object_width(smoothed_threshold_masks(images, foreground, _WIDTH_SMOOTH))


def smoothed_threshold_masks(images: torch.Tensor, foreground: str, sigma: float, rule: str = "otsu",
                             bins: int = 256) -> torch.Tensor:
    """``(N, H, W)`` int64 masks of the channel-mean images blurred with sigma ``sigma`` (:func:`smoothed`) above
    their global threshold by ``rule`` (``"otsu"``, :func:`otsu_thresholds`, or ``"minimum_error"``,
    :func:`minimum_error_thresholds`), or above their local mean (``"local"``: :func:`local_threshold` at its
    defaults), on side ``foreground`` (``"bright"`` or ``"dark"``: the negated intensity, so the dark mask of ``x``
    is the bright mask of ``-x`` exactly); a constant image gives an empty mask. Inputs are not checked: the public
    callers (:func:`otsu_object_width`, iGTT's bootstrap, DFC's cluster vote) do that."""
    n, _, h, w = images.shape
    x = smoothed(_signed_intensity(images, foreground)[:, None], sigma)
    if rule == "local":
        return local_threshold(x, foreground="bright").masks
    flat = x.flatten(1)
    span = flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True)
    t = otsu_thresholds(flat, bins=bins) if rule == "otsu" else minimum_error_thresholds(flat, bins=bins)[:, None]
    return ((flat > t) & (span > 0)).view(n, h, w).long()


def _optimal_cuts(counts: torch.Tensor, centres: torch.Tensor, classes: int) -> torch.Tensor:
    """Bin indices ``(N, K - 1)`` where classes 1..K-1 start, maximising ``sum_k S_k^2 / W_k`` (Otsu's criterion).

    ``W_k`` and ``S_k`` are the count and the count-weighted sum of bin centres of class ``k``; maximising their
    ratio sum maximises the between-class variance. Dynamic programming: ``best[k][j]`` is the best score of
    ``k + 1`` classes covering bins ``0..j``; every step is one ``(N, B, B)`` tensor operation.
    """
    n, b = counts.shape
    zero = counts.new_zeros(n, 1)
    cw = torch.cat([zero, counts.cumsum(1)], 1)
    cs = torch.cat([zero, (counts * centres).cumsum(1)], 1)
    w = cw[:, None, 1:] - cw[:, :-1, None]  # (N, i, j): bins i..j
    s = cs[:, None, 1:] - cs[:, :-1, None]
    upper = torch.ones(b, b, dtype=torch.bool, device=counts.device).triu()
    score = torch.where(w > 0, s * s / torch.where(w > 0, w, torch.ones_like(w)), torch.zeros_like(w))
    score = score.masked_fill(~upper, -math.inf)
    best = score[:, 0, :]  # one class over bins 0..j
    starts = []
    for _ in range(1, classes):
        shifted = torch.cat([best.new_full((n, 1), -math.inf), best[:, :-1]], 1)  # best up to bin i - 1
        best, start = (shifted[:, :, None] + score).max(dim=1)
        starts.append(start)
    cuts = []
    end = torch.full((n, 1), b - 1, dtype=torch.long, device=counts.device)
    for start in reversed(starts):
        cut = start.gather(1, end)
        cuts.append(cut)
        end = (cut - 1).clamp(min=0)
    return torch.cat(cuts[::-1], 1).clamp(min=1)


def pixel_features(
    images: torch.Tensor,
    *,
    smooth: float = 0.0,
    position: float = 0.0,
) -> torch.Tensor:
    """The per-pixel features that k-means and the mixture cluster.

    Columns, in order: the ``C`` image channels; with ``smooth > 0`` the channels blurred by a Gaussian of that
    sigma (pixels; local context against noise); with ``position > 0`` the ``(y, x)`` coordinates scaled so the
    image's longer side spans ``position`` (in image std units, as the images are z-scored).

    Args:
        images: ``(N, C, H, W)`` z-scored float images.
        smooth: Gaussian sigma of the smoothed channels, ``>= 0`` (0: none).
        position: weight of the coordinates, ``>= 0`` (0: none).

    Returns:
        ``(N, H * W, D)`` in the images' dtype and device, ``D = C * (1 + [smooth > 0]) + 2 [position > 0]``.

    Example:
        >>> pixel_features(torch.zeros(2, 1, 4, 4), smooth=1.0, position=1.0).shape
        torch.Size([2, 16, 4])
    """
    check_images_and_prior(images, None)
    smooth = check_range(smooth, "smooth", 0)
    position = check_range(position, "position", 0)
    n, c, h, w = images.shape
    columns = [images]
    if smooth > 0:
        radius = max(1, math.ceil(3 * smooth))
        columns.append(gaussian_blur2d(images, 2 * radius + 1, (smooth, smooth), border_type="replicate"))
    if position > 0:
        scale = position / max(h, w)
        ys = torch.arange(h, dtype=images.dtype, device=images.device) * scale
        xs = torch.arange(w, dtype=images.dtype, device=images.device) * scale
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))
        columns.append(grid.expand(n, 2, h, w))
    feats = torch.cat(columns, 1)
    return feats.flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------- methods
def otsu(images: torch.Tensor, *, foreground: str = "auto", bins: int = 256,
         prior: torch.Tensor | None = None) -> Segmentation:
    """Otsu's global threshold of each image's intensity, batched.

    Args:
        images: ``(N, C, H, W)`` z-scored float images; the intensity is the channel mean.
        foreground: ``"bright"`` (above the threshold is foreground), ``"dark"``, or ``"auto"``
            (:func:`choose_foreground`).
        bins: histogram bins.
        prior: ``(N, 1, H, W)`` foreground density in ``[0, 1]``, or ``None``. Given, it replaces Otsu's criterion:
            the threshold is the intensity quantile that makes the foreground fraction equal to the prior's mean
            over its known (not NaN) pixels; an image with none keeps Otsu's criterion.

    Returns:
        :class:`Segmentation`: masks ``(N, H, W)`` (intensity above the threshold, for ``bright``), scores
        ``(N, 1, H, W)`` (the intensity mapped monotonically to ``[0, 1]`` with the threshold at 0.5), info
        ``threshold`` (per image, in intensity units), ``foreground``, ``rule`` (``otsu`` or ``prior_fraction``)
        and, with a prior, ``fraction``.

    Raises:
        ShapeError, DTypeError: bad ``images`` or ``prior``.
        DataError: a negative or infinite ``prior``.
        ParameterError: a bad ``foreground`` or ``bins``.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[..., 2:6, 2:6] = 1.0
        >>> seg = otsu(x)
        >>> int(seg.masks.sum()), seg.info["rule"]
        (16, 'otsu')
        >>> bool((seg.masks.bool() == (seg.scores[:, 0] >= 0.5)).all())
        True

    References:
        Otsu, IEEE TSMC 9 (1979).
    """
    return _global_threshold(images, foreground, bins, prior, "otsu")


def minimum_error(images: torch.Tensor, *, foreground: str = "auto", bins: int = 256,
                  prior: torch.Tensor | None = None) -> Segmentation:
    """Kittler and Illingworth's minimum-error global threshold of each image's intensity, batched.

    :func:`otsu` with the threshold of :func:`minimum_error_thresholds`: the two intensity classes may differ in
    spread and share, so sparse objects with blurred edges keep their dim rims (Otsu's threshold lands high on
    them). It reads the histogram as two Gaussians, and objects whose intensity is far from one are made too
    wide: thin tubules, whose blurred edges fill the range between background and object (README's six-set
    table: nuclei 0.918 and EM membranes 0.852 against Otsu's 0.859 and 0.770, but ER 0.741 against 0.835).

    Args:
        images: ``(N, C, H, W)`` z-scored float images; the intensity is the channel mean.
        foreground: ``"bright"``, ``"dark"`` or ``"auto"`` (:func:`choose_foreground`).
        bins: histogram bins.
        prior: as for :func:`otsu`: given, the threshold matches the prior's foreground fraction instead.

    Returns:
        :class:`Segmentation` as :func:`otsu`'s; ``info["rule"]`` is ``minimum_error`` or ``prior_fraction``.

    Raises:
        The errors of :func:`otsu`, for the same inputs.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[..., 2:6, 2:6] = 1.0
        >>> seg = minimum_error(x)
        >>> int(seg.masks.sum()), seg.info["rule"]
        (16, 'minimum_error')

    References:
        Kittler, Illingworth, Pattern Recognition 19 (1986).
    """
    return _global_threshold(images, foreground, bins, prior, "minimum_error")


def _global_threshold(images: torch.Tensor, foreground: str, bins: int, prior: torch.Tensor | None,
                      rule: str) -> Segmentation:
    """One global threshold per image by ``rule`` (``otsu`` or ``minimum_error``), or by the prior's fraction."""
    check_images_and_prior(images, prior)
    bins = _check_binary(foreground, bins)
    foreground, info = resolve_foreground(images, foreground)
    x = _signed_intensity(images, foreground)
    fraction = None if prior is None else _prior_fraction(prior)
    t = None
    if fraction is None or not bool(torch.isfinite(fraction).all()):  # no prior, or an image it knows nothing of
        if not len(x):
            t = x.new_zeros(0)
        elif rule == "otsu":
            t = otsu_thresholds(x, bins=bins)[:, 0]
        else:
            t = minimum_error_thresholds(x, bins=bins)
        info["rule"] = rule
    if fraction is not None:
        t = _prior_threshold(x, fraction, t)
        info.update(rule="prior_fraction", fraction=_known_list(fraction))
    info["threshold"] = (t if foreground == "bright" else -t).tolist()
    return _thresholded(images, x, t, info)


def multiotsu(images: torch.Tensor, *, classes: int = 3, bins: int = 256) -> Segmentation:
    """Multi-level Otsu: ``K`` intensity classes per image, class 0 the darkest; batched.

    Args:
        images: ``(N, C, H, W)`` z-scored float images; the intensity is the channel mean.
        classes: number of classes ``K >= 2``.
        bins: histogram bins.

    Returns:
        :class:`Segmentation`: masks ``(N, H, W)`` in ``0..K-1`` ordered by intensity, scores one-hot
        ``(N, K, H, W)`` (a hard partition has no softer score), info ``thresholds`` (per image, ``K - 1``
        ascending values in intensity units).

    Raises:
        ShapeError, DTypeError: bad ``images``.
        ParameterError: ``classes < 2`` or bad ``bins``.

    Example:
        >>> x = torch.tensor([0.0, 1.0, 2.0]).repeat_interleave(4).view(1, 1, 3, 4)
        >>> seg = multiotsu(x, classes=3)
        >>> seg.masks[0].tolist()
        [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]]
        >>> seg.scores.shape
        torch.Size([1, 3, 3, 4])

    References:
        Liao, Chen, Chung, J. Inf. Sci. Eng. 17 (2001).
    """
    check_images_and_prior(images, None)
    classes = check_int(classes, "classes", low=2)
    bins = check_int(bins, "bins", low=2)
    x = images.mean(1)
    n = x.shape[0]
    t = otsu_thresholds(x, classes=classes, bins=bins) if n else x.new_zeros(0, classes - 1)
    masks = (x[:, None] > t[:, :, None, None]).sum(1)
    constant = _constant(images)
    masks = masks.masked_fill(constant[:, None, None], 0)
    _warn_constant(constant, "multiotsu")
    scores = F.one_hot(masks, classes).permute(0, 3, 1, 2).to(images.dtype)
    return Segmentation(masks, scores, {"thresholds": t.tolist(), "classes": classes})


def local_threshold(images: torch.Tensor, *, block_size: int | str = "auto", kind: str = "gaussian",
                    offset: float = 0.5, foreground: str = "auto", prior: torch.Tensor | None = None) -> Segmentation:
    """Local (adaptive) threshold: a pixel is foreground where it exceeds its neighbourhood mean by ``offset``.

    The local contrast ``x - local_mean(x)`` is thresholded at ``offset``; ``local_mean`` is a Gaussian window
    (sigma ``(block_size - 1) / 6``, as scikit-image's ``threshold_local``) or a ``block_size`` box, with
    replicated borders. Because the images are z-scored, ``offset`` is in units of the image's standard deviation;
    a positive offset keeps flat background (where the contrast is pure noise) out of the foreground. Note the
    sign: scikit-image's ``offset`` is subtracted from the threshold, this one is added.

    The window must be wider than the objects, or the middle of a wide object is compared with itself and lost
    (a fixed 51-pixel window found 0.70-0.72 Dice of synthetic nuclei and 0.64 of real DSB nuclei, against
    0.84-0.86 for a window scaled to them: draws 7 and 8 of ``synth:nuc``, 8 DSB training tiles).
    ``block_size="auto"`` (the default) makes it ten times the objects' width, measured on the batch
    (:func:`otsu_object_width`, on the foreground side), odd, and at most ``2 * min(H, W) - 1``; 51 when there is
    nothing to measure. ``info`` records the window and the width.

    Args:
        images: ``(N, C, H, W)`` z-scored float images; the intensity is the channel mean.
        block_size: ``"auto"`` or an odd window side ``>= 3`` in pixels.
        kind: ``"gaussian"`` or ``"mean"`` (box).
        offset: contrast threshold in image std units (``dark``: the intensity must fall ``offset`` below).
        foreground: ``"bright"``, ``"dark"`` or ``"auto"`` (:func:`choose_foreground`).
        prior: ``(N, 1, H, W)`` foreground density in ``[0, 1]``, or ``None``. Given, the offset is chosen per image
            so that the foreground fraction equals the prior's mean over its known (not NaN) pixels (``offset`` is
            then not used; an image with no known pixel keeps it).

    Returns:
        :class:`Segmentation`: masks ``(N, H, W)``, scores ``(N, 1, H, W)`` (the contrast mapped monotonically to
        ``[0, 1]`` with the offset at 0.5), info ``offset`` (per image), ``rule`` (``fixed_offset`` or
        ``prior_fraction``), ``block_size``, ``block_rule`` (``given`` or ``auto``), for ``auto`` the
        ``object_width`` and, with a prior, ``fraction``.

    Raises:
        ShapeError, DTypeError: bad ``images`` or ``prior``.
        DataError: a negative or infinite ``prior``.
        ParameterError: a bad ``block_size``, ``kind``, ``offset`` or ``foreground``.

    Example:
        >>> x = torch.zeros(1, 1, 16, 16)
        >>> x[..., 6:10, 6:10] = 4.0
        >>> int(local_threshold(x, block_size=9).masks.sum())
        16
    """
    check_images_and_prior(images, prior)
    block_size, kind, offset = _check_local(block_size, kind, offset)
    foreground, why = resolve_foreground(images, foreground)
    info: dict = {**why, "block_rule": "given"}
    if block_size == "auto":
        width = otsu_object_width(images, foreground)
        # beyond twice the image the window adds only copies of the border row, whose noise it then repeats
        widest = max(3, 2 * min(images.shape[-2:]) - 1)
        block_size = _FIXED_BLOCK if math.isinf(width) else min(2 * round(_BLOCK_PER_WIDTH * width / 2) + 1, widest)
        info.update(block_rule="auto", object_width=width)
    x = _signed_intensity(images, foreground)
    contrast = x - _local_mean(x, block_size, kind)
    info.update(block_size=block_size, kind=kind)
    t = x.new_full((x.shape[0],), offset)
    info["rule"] = "fixed_offset"
    if prior is not None:
        fraction = _prior_fraction(prior)
        t = _prior_threshold(contrast, fraction, t)
        info.update(rule="prior_fraction", fraction=_known_list(fraction))
    info["offset"] = t.tolist()
    return _thresholded(images, contrast, t, info)


def kmeans(
    images: torch.Tensor,
    *,
    clusters: int = 2,
    smooth: float = 0.0,
    position: float = 0.0,
    iterations: int = 30,
    init: str = "kmeans++",
    foreground: str = "auto",
    prior: torch.Tensor | None = None,
    prior_clip: float = 0.01,
    generator: torch.Generator | None = None,
) -> Segmentation:
    """k-means on :func:`pixel_features`, one clustering per image, all images in one batched loop.

    Lloyd iterations (at most ``iterations``; an image whose assignment no longer changes stays fixed) from
    k-means++ seeding drawn on ``generator`` or from intensity quantiles (deterministic). Clusters become
    foreground by the bright/dark rule (module docstring). The score is the soft assignment of a Gaussian mixture
    with the k-means centres, equal weights and one shared isotropic variance (the mean squared distance to the
    assigned centre per feature): ``softmax(-d^2 / (2 sigma^2))`` summed over the foreground clusters. With two
    clusters, ``masks == (scores >= 0.5)`` up to exact ties.

    With a prior, each pixel's foreground probability ``p`` (the prior clipped to ``[prior_clip, 1 - prior_clip]``)
    replaces the clusters' equal weights: the foreground odds become ``p / (1 - p)`` times the likelihood ratio of
    the foreground and background clusters, and the mask is ``scores >= 0.5``. The clip keeps a prior of 0 or 1
    from overruling any intensity evidence.

    Args:
        images: ``(N, C, H, W)`` z-scored float images.
        clusters: ``K >= 2``.
        smooth, position: see :func:`pixel_features`.
        iterations: maximum Lloyd iterations, ``>= 1``.
        init: ``"kmeans++"`` (random, seeded by ``generator``) or ``"quantile"`` (centres at the pixels of
            intensity quantiles ``(k + 0.5) / K``).
        foreground: ``"bright"``, ``"dark"`` or ``"auto"`` (:func:`choose_foreground`).
        prior: ``(N, 1, H, W)`` foreground probability per pixel (a density in ``[0, 1]``; NaN where unknown: the
            clustering's own weight), or ``None``.
        prior_clip: the prior is clipped to ``[prior_clip, 1 - prior_clip]``, ``0 <= prior_clip < 0.5``.
        generator: CPU generator for the k-means++ seeding.

    Returns:
        :class:`Segmentation`: masks ``(N, H, W)``, scores ``(N, 1, H, W)``, info ``cluster_means`` (mean intensity
        per cluster and image), ``foreground_clusters``, ``iterations``, ``rule`` (``clusters`` or
        ``prior_odds``).

    Raises:
        ShapeError, DTypeError: bad ``images`` or ``prior``.
        DataError: a negative or infinite ``prior``.
        ParameterError: a bad option.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[..., :, 4:] = 3.0
        >>> seg = kmeans(x, init="quantile")
        >>> seg.masks[0, 0].tolist(), seg.info["foreground_clusters"]
        ([0, 0, 0, 0, 1, 1, 1, 1], [[1]])

    References:
        Lloyd, IEEE Trans. Inf. Theory 28 (1982); Arthur, Vassilvitskii, SODA (2007).
    """
    check_images_and_prior(images, prior)
    clusters, iterations, init = _check_kmeans(clusters, iterations, init)
    foreground, why = resolve_foreground(images, foreground)
    prior_clip = _check_clip(prior_clip)
    feats = pixel_features(images, smooth=smooth, position=position)
    intensity = images.mean(1).flatten(1)
    if feats.shape[0] == 0:
        return _empty(images, {"iterations": 0, "init": init, "clusters": clusters})
    centres = _kmeans_init(feats, intensity, clusters, init, generator)
    assign = None
    done = 0
    while done < iterations:
        new = torch.cdist(feats, centres).argmin(-1)
        if assign is not None and bool((new == assign).all()):
            break
        done += 1
        assign = new
        onehot = F.one_hot(assign, clusters).to(feats.dtype)
        counts = onehot.sum(1)[..., None]
        sums = onehot.transpose(1, 2) @ feats
        # an emptied cluster keeps its centre instead of collapsing to the origin
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    d2 = torch.cdist(feats, centres).square()
    assign = d2.argmin(-1)
    sigma2 = d2.gather(-1, assign[..., None]).mean((1, 2), keepdim=True) / feats.shape[-1]
    posterior = torch.softmax(-d2 / (2 * sigma2.clamp(min=1e-12)), dim=-1)
    info = {**why, "iterations": done, "init": init, "clusters": clusters}
    weights = posterior.new_full((posterior.shape[0], clusters), 1 / clusters)
    return _from_clusters(images, assign, posterior, weights, intensity, foreground, info, prior, prior_clip)


def gmm(
    images: torch.Tensor,
    *,
    clusters: int = 2,
    covariance: str = "full",
    smooth: float = 0.0,
    position: float = 0.0,
    max_samples: int = 10000,
    iterations: int = 100,
    foreground: str = "auto",
    prior: torch.Tensor | None = None,
    prior_clip: float = 0.01,
    generator: torch.Generator | None = None,
) -> Segmentation:
    """Gaussian mixture on :func:`pixel_features`, fitted per image with scikit-learn on the CPU.

    Each image's mixture is fitted (EM, k-means initialisation) on at most ``max_samples`` pixels drawn without
    replacement from ``generator``, then every pixel gets its posterior. Components become foreground by the
    bright/dark rule applied to the mean intensity of the pixels each component wins; the score is the posterior
    mass of the foreground components and the mask the most probable component's side. A prior enters as in
    :func:`kmeans`, replacing the fitted mixture weights pixel by pixel.

    Args:
        images: ``(N, C, H, W)`` z-scored float images.
        clusters: number of components ``K >= 2``.
        covariance: scikit-learn ``covariance_type``: ``full``, ``diag``, ``tied`` or ``spherical``.
        smooth, position: see :func:`pixel_features`.
        max_samples: pixels per image the mixture is fitted on, ``>= clusters``.
        iterations: maximum EM iterations, ``>= 1``.
        foreground: ``"bright"``, ``"dark"`` or ``"auto"`` (:func:`choose_foreground`).
        prior: ``(N, 1, H, W)`` foreground probability per pixel (a density in ``[0, 1]``; NaN where unknown: the
            clustering's own weight), or ``None``.
        prior_clip: the prior is clipped to ``[prior_clip, 1 - prior_clip]``, ``0 <= prior_clip < 0.5``.
        generator: CPU generator for the subsample and scikit-learn's seed.

    Returns:
        :class:`Segmentation`: masks ``(N, H, W)``, scores ``(N, 1, H, W)``, info ``cluster_means``,
        ``foreground_clusters``, ``converged`` (per image), ``rule`` (``clusters`` or ``prior_odds``).

    Raises:
        ShapeError, DTypeError: bad ``images`` or ``prior``.
        DataError: a negative or infinite ``prior``.
        ParameterError: a bad option.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[..., :, 4:] = 3.0
        >>> x = x + 0.1 * torch.randn(1, 1, 8, 8, generator=g)
        >>> gmm(x, foreground="bright", generator=g).masks[0, 0].tolist()
        [0, 0, 0, 0, 1, 1, 1, 1]

    References:
        Dempster, Laird, Rubin, J. R. Stat. Soc. B 39 (1977); scikit-learn ``GaussianMixture``.
    """
    check_images_and_prior(images, prior)
    clusters, covariance, max_samples, iterations = _check_gmm(clusters, covariance, max_samples, iterations)
    foreground, why = resolve_foreground(images, foreground)
    prior_clip = _check_clip(prior_clip)
    from sklearn.mixture import GaussianMixture  # imported here: scikit-learn is slow to import

    feats = pixel_features(images, smooth=smooth, position=position)
    n, p, _ = feats.shape
    if n == 0:
        return _empty(images, {"converged": [], "clusters": clusters, "covariance": covariance})
    intensity = images.mean(1).flatten(1)
    constant = _constant(images)
    posterior = feats.new_zeros(n, p, clusters)
    posterior[..., 0] = 1
    weights = feats.new_full((n, clusters), 1 / clusters)
    converged = []
    # one independent fit per image: scikit-learn has no batched mixture, and a loop over images is its unit
    for i in range(n):
        seed = spawn_seed(generator)
        if bool(constant[i]):
            converged.append(True)
            continue
        g = torch.Generator().manual_seed(seed)
        sample = torch.randperm(p, generator=g)[:max_samples]
        data = feats[i].detach().cpu().double().numpy()
        model = GaussianMixture(clusters, covariance_type=covariance, max_iter=iterations,
                                random_state=seed % 2**32)
        model.fit(data[sample.numpy()])
        posterior[i] = torch.from_numpy(model.predict_proba(data)).to(posterior)
        weights[i] = torch.from_numpy(model.weights_).to(weights)
        converged.append(bool(model.converged_))
    assign = posterior.argmax(-1)
    info = {**why, "converged": converged, "clusters": clusters, "covariance": covariance}
    return _from_clusters(images, assign, posterior, weights, intensity, foreground, info, prior, prior_clip)


# ----------------------------------------------------------------------------------------- registered classes
@dataclass
class _GlobalThreshold:
    """One global threshold per image by the class's ``rule`` (shared by :class:`Otsu` and :class:`MinimumError`)."""

    deterministic: ClassVar[bool] = True
    binary: ClassVar[bool] = True
    scribbles: ClassVar[bool] = False
    learned: ClassVar[bool] = False
    rule: ClassVar[str]

    foreground: str = "auto"
    bins: int = 256

    def __post_init__(self) -> None:
        self.bins = _check_binary(self.foreground, self.bins)

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None) -> Segmentation:
        """The threshold with these settings (deterministic: ``generator`` is not used)."""
        return _global_threshold(images, self.foreground, self.bins, prior, self.rule)


@METHODS.register("otsu")
@dataclass
class Otsu(_GlobalThreshold):
    """Otsu's threshold (:func:`otsu`); a prior sets the threshold to match its foreground fraction."""

    rule: ClassVar[str] = "otsu"


@METHODS.register("minerror")
@dataclass
class MinimumError(_GlobalThreshold):
    """Kittler and Illingworth's minimum-error threshold (:func:`minimum_error`); a prior sets the threshold to
    match its foreground fraction, as for :class:`Otsu`."""

    rule: ClassVar[str] = "minimum_error"


@METHODS.register("multiotsu")
@dataclass
class MultiOtsu:
    """Multi-level Otsu (:func:`multiotsu`), ``K`` classes by intensity; does not use a prior (warns, ignores)."""

    deterministic: ClassVar[bool] = True
    binary: ClassVar[bool] = False
    scribbles: ClassVar[bool] = False
    learned: ClassVar[bool] = False

    classes: int = 3
    bins: int = 256

    def __post_init__(self) -> None:
        self.classes = check_int(self.classes, "classes", low=2)
        self.bins = check_int(self.bins, "bins", low=2)

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None) -> Segmentation:
        """:func:`multiotsu` with these settings; a ``prior`` is checked, then ignored with a warning."""
        check_images_and_prior(images, prior)
        if prior is not None:
            warnings.warn("multiotsu does not use a prior (a foreground density does not say how to split K "
                          "intensity classes); it is ignored", MstoolWarning, stacklevel=2)
        return multiotsu(images, classes=self.classes, bins=self.bins)


@METHODS.register("local")
@dataclass
class LocalThreshold:
    """Local threshold (:func:`local_threshold`); a prior sets the offset to match its foreground fraction."""

    deterministic: ClassVar[bool] = True
    binary: ClassVar[bool] = True
    scribbles: ClassVar[bool] = False
    learned: ClassVar[bool] = False

    block_size: int | str = "auto"
    kind: str = "gaussian"
    offset: float = 0.5
    foreground: str = "auto"

    def __post_init__(self) -> None:
        self.block_size = _check_local(self.block_size, self.kind, self.offset)[0]
        check_in(self.foreground, "foreground", FOREGROUND_RULES)

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None) -> Segmentation:
        """:func:`local_threshold` with these settings (deterministic: ``generator`` is not used)."""
        return local_threshold(images, block_size=self.block_size, kind=self.kind, offset=self.offset,
                               foreground=self.foreground, prior=prior)


@METHODS.register("kmeans")
@dataclass
class KMeans:
    """k-means on pixel features (:func:`kmeans`); a prior is a pixel-wise foreground probability."""

    deterministic: ClassVar[bool] = False
    binary: ClassVar[bool] = True
    scribbles: ClassVar[bool] = False
    learned: ClassVar[bool] = False

    clusters: int = 2
    smooth: float = 0.0
    position: float = 0.0
    iterations: int = 30
    init: str = "kmeans++"
    foreground: str = "auto"
    prior_clip: float = 0.01

    def __post_init__(self) -> None:
        self.clusters, self.iterations, _ = _check_kmeans(self.clusters, self.iterations, self.init)
        _check_features(self.smooth, self.position, self.prior_clip)
        check_in(self.foreground, "foreground", FOREGROUND_RULES)

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None) -> Segmentation:
        """:func:`kmeans` with these settings."""
        return kmeans(images, clusters=self.clusters, smooth=self.smooth, position=self.position,
                      iterations=self.iterations, init=self.init, foreground=self.foreground, prior=prior,
                      prior_clip=self.prior_clip, generator=generator)


@METHODS.register("gmm")
@dataclass
class GaussianMixture:
    """Gaussian mixture on pixel features (:func:`gmm`); a prior is a pixel-wise foreground probability."""

    deterministic: ClassVar[bool] = False
    binary: ClassVar[bool] = True
    scribbles: ClassVar[bool] = False
    learned: ClassVar[bool] = False

    clusters: int = 2
    covariance: str = "full"
    smooth: float = 0.0
    position: float = 0.0
    max_samples: int = 10000
    iterations: int = 100
    foreground: str = "auto"
    prior_clip: float = 0.01

    def __post_init__(self) -> None:
        self.clusters, _, self.max_samples, self.iterations = _check_gmm(self.clusters, self.covariance,
                                                                         self.max_samples, self.iterations)
        _check_features(self.smooth, self.position, self.prior_clip)
        check_in(self.foreground, "foreground", FOREGROUND_RULES)

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None) -> Segmentation:
        """:func:`gmm` with these settings."""
        return gmm(images, clusters=self.clusters, covariance=self.covariance, smooth=self.smooth,
                   position=self.position, max_samples=self.max_samples, iterations=self.iterations,
                   foreground=self.foreground, prior=prior, prior_clip=self.prior_clip, generator=generator)


# -------------------------------------------------------------------------------------------------- helpers
def foreground_clusters(means: torch.Tensor, sizes: torch.Tensor, foreground: str = "bright") -> torch.Tensor:
    """The label-free cluster-to-class rule: which clusters are foreground.

    Otsu's criterion on the cluster mean intensities weighted by cluster size (the between-class variance of the
    image with every pixel replaced by its cluster's mean): the clusters above the best split are foreground
    (``bright``; below it for ``dark``). Empty clusters are never foreground; when fewer than two distinct
    non-empty cluster means exist there is no split and nothing is foreground.

    Args:
        means: ``(N, K)`` mean intensity per cluster (any value where ``sizes`` is 0).
        sizes: ``(N, K)`` pixel count (or weight) per cluster, ``>= 0``.
        foreground: ``"bright"`` or ``"dark"``.

    Returns:
        ``(N, K)`` bool.

    Example:
        >>> foreground_clusters(torch.tensor([[0.0, 5.0, 0.2, 4.0]]), torch.tensor([[10, 3, 10, 3]]))
        tensor([[False,  True, False,  True]])
    """
    check_in(foreground, "foreground", ("bright", "dark"))
    wide = torch.float32 if means.device.type == "mps" else torch.float64
    m = (means if foreground == "bright" else -means).to(wide)
    w = sizes.to(wide)
    valid = w > 0
    m = torch.where(valid, m, torch.zeros_like(m))
    order = torch.where(valid, m, torch.full_like(m, math.inf)).argsort(1)
    ms, ws = m.gather(1, order), w.clamp(min=0).gather(1, order)
    w0, s0 = ws.cumsum(1)[:, :-1], (ws * ms).cumsum(1)[:, :-1]
    w1, s1 = ws.sum(1, keepdim=True) - w0, (ws * ms).sum(1, keepdim=True) - s0
    ok = (w0 > 0) & (w1 > 0)
    gap = s0 / w0.clamp(min=1e-300) - s1 / w1.clamp(min=1e-300)
    between = torch.where(ok, w0 * w1 * gap * gap, torch.full_like(w0, -1.0))
    if between.shape[1] == 0:
        return torch.zeros_like(valid)
    value, best = between.max(1)
    cut = ms.gather(1, best[:, None])
    return valid & (m > cut) & (value > 0)[:, None]


def _from_clusters(images: torch.Tensor, assign: torch.Tensor, posterior: torch.Tensor, weights: torch.Tensor,
                   intensity: torch.Tensor, foreground: str, info: dict, prior: torch.Tensor | None,
                   prior_clip: float) -> Segmentation:
    """Binary masks and scores from a clustering: assign ``(N, P)``, posterior ``(N, P, K)`` under the mixture
    weights ``(N, K)``, intensity ``(N, P)``; a prior ``(N, 1, H, W)`` replaces the weights pixel by pixel."""
    n, _, h, w = images.shape
    k = posterior.shape[-1]
    onehot = F.one_hot(assign, k).to(intensity.dtype)
    sizes = onehot.sum(1)
    means = (onehot * intensity[..., None]).sum(1) / sizes.clamp(min=1)
    fg = foreground_clusters(means, sizes, foreground)
    q = (posterior * fg[:, None, :].to(posterior.dtype)).sum(-1).clamp(0, 1)
    if prior is None:
        masks = fg.gather(1, assign).long().view(n, h, w)
        info = dict(info, rule="clusters")
    else:
        w_fg = (weights * fg.to(weights.dtype)).sum(1, keepdim=True)
        p = _prior_fraction(prior, per_pixel=True).flatten(1).clamp(prior_clip, 1 - prior_clip).to(q.dtype)
        # an unknown pixel's prior is the clustering's own foreground weight: its posterior stays q
        p = torch.where(torch.isnan(p), w_fg.to(p.dtype).expand_as(p), p)
        # Bayes: posterior odds = prior odds x likelihood ratio, the likelihoods being q / w_fg and (1-q) / w_bg
        a = p * q / w_fg.clamp(min=1e-12)
        b = (1 - p) * (1 - q) / (1 - w_fg).clamp(min=1e-12)
        q = torch.where(w_fg > 0, a / (a + b).clamp(min=1e-30), torch.zeros_like(q))
        masks = (q >= 0.5).long().view(n, h, w)
        info = dict(info, rule="prior_odds", prior_clip=prior_clip)
    scores = q.view(n, 1, h, w)
    constant = _constant(images)
    _warn_constant(constant, "clustering")
    masks = masks.masked_fill(constant[:, None, None], 0)
    scores = scores.masked_fill(constant[:, None, None, None], 0)
    info = dict(info, foreground=foreground, cluster_means=means.tolist(),
                foreground_clusters=[torch.nonzero(row).flatten().tolist() for row in fg])
    return Segmentation(masks, scores.to(images.dtype), info)


def _kmeans_init(feats: torch.Tensor, intensity: torch.Tensor, k: int, init: str,
                 generator: torch.Generator | None) -> torch.Tensor:
    """Initial centres ``(N, K, D)``: k-means++ seeding or the pixels at intensity quantiles."""
    n, p, d = feats.shape
    if init == "quantile":
        order = intensity.argsort(1)
        ranks = ((torch.arange(k, device=feats.device) + 0.5) / k * p).long().clamp(max=p - 1)
        pick = order[:, ranks]
        return feats.gather(1, pick[..., None].expand(n, k, d))
    u = torch.rand(n, k, generator=generator).to(feats.device, feats.dtype)
    first = (u[:, 0] * p).long().clamp(max=p - 1)
    centres = [feats.gather(1, first.view(n, 1, 1).expand(n, 1, d))]
    d2 = (feats - centres[0]).square().sum(-1)
    for j in range(1, k):
        # D^2 sampling by inverting the cumulative distribution with one uniform per image
        cdf = d2.cumsum(1)
        target = u[:, j : j + 1] * cdf[:, -1:]
        pick = torch.searchsorted(cdf, target, right=True).clamp(max=p - 1)
        centres.append(feats.gather(1, pick.view(n, 1, 1).expand(n, 1, d)))
        d2 = torch.minimum(d2, (feats - centres[-1]).square().sum(-1))
    return torch.cat(centres, 1)


def _thresholded(images: torch.Tensor, x: torch.Tensor, t: torch.Tensor, info: dict) -> Segmentation:
    """Masks ``x > t`` and monotone scores with ``t`` at 0.5, for ``x`` ``(N, H, W)`` and ``t`` ``(N,)``."""
    n = x.shape[0]
    tt = t.view(n, 1, 1).to(x.dtype)
    masks = x > tt
    if n:
        lo = x.amin((1, 2), keepdim=True)
        hi = x.amax((1, 2), keepdim=True)
    else:
        lo = hi = tt
    below = 0.5 * (x - lo) / torch.where(tt > lo, tt - lo, torch.ones_like(tt))
    above = 0.5 + 0.5 * (x - tt) / torch.where(hi > tt, hi - tt, torch.ones_like(tt))
    half = torch.tensor(0.5, dtype=x.dtype, device=x.device)
    just_below = torch.nextafter(half, torch.zeros_like(half))
    # the clamps keep masks == (scores >= 0.5) exact despite rounding near the threshold
    scores = torch.where(masks, above.clamp(0.5, 1.0), below.clamp(0.0, just_below))
    constant = _constant(images)
    _warn_constant(constant, "thresholding")
    masks = masks.masked_fill(constant[:, None, None], False)
    scores = scores.masked_fill(constant[:, None, None], 0.0)
    return Segmentation(masks.long(), scores[:, None].to(images.dtype), info)


def _signed_intensity(images: torch.Tensor, foreground: str) -> torch.Tensor:
    """Channel mean ``(N, H, W)``, negated for ``dark`` so that foreground is always the high side."""
    x = images.mean(1)
    return x if foreground == "bright" else -x


def _local_mean(x: torch.Tensor, block_size: int, kind: str) -> torch.Tensor:
    """Neighbourhood mean of ``(N, H, W)`` with replicated borders (any image size)."""
    if x.shape[0] == 0:
        return x
    if kind == "gaussian":
        sigma = (block_size - 1) / 6
        return gaussian_blur2d(x[:, None], block_size, (sigma, sigma), border_type="replicate")[:, 0]
    return box_blur(x[:, None], block_size, border_type="replicate")[:, 0]


def _prior_fraction(prior: torch.Tensor, *, per_pixel: bool = False) -> torch.Tensor:
    """The prior read as a foreground probability: per pixel ``(N, 1, H, W)`` (NaN where unknown), or its mean
    over the known pixels per image ``(N,)``, the expected foreground fraction (NaN for an image with none)."""
    top = float(prior.nan_to_num(nan=0.0).max()) if prior.numel() else 0.0
    if top > 1:
        warnings.warn(f"`prior` has values above 1 (max {top:.3g}); it is read as a foreground "
                      "probability and clipped to 1", MstoolWarning, stacklevel=4 if per_pixel else 3)
    p = prior.clamp(max=1)
    return p if per_pixel else p.nanmean((1, 2, 3))


def _prior_threshold(x: torch.Tensor, fraction: torch.Tensor, fallback: torch.Tensor | None) -> torch.Tensor:
    """Per image, the threshold of ``x`` that matches the prior's ``fraction``; ``fallback`` (the method's own
    threshold) where the fraction is NaN, an image the prior knows nothing of."""
    t = _fraction_threshold(x, fraction.nan_to_num(nan=0.0))
    return t if fallback is None else torch.where(torch.isfinite(fraction), t, fallback)


def _known_list(values: torch.Tensor) -> list[float | None]:
    """``values.tolist()`` with ``None`` for NaN (JSON has no NaN)."""
    return [None if math.isnan(v) else v for v in values.tolist()]


def _fraction_threshold(x: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """Per-item ``t`` ``(N,)`` such that ``round(fraction * P)`` values of ``x`` ``(N, ...)`` lie above it (ties
    aside)."""
    n = x.shape[0]
    if n == 0:
        return x.new_zeros(0)
    flat = x.reshape(n, -1).sort(1).values
    p = flat.shape[1]
    m = (fraction.detach().cpu().double() * p).round().long().to(flat.device)
    t = flat.gather(1, (p - m - 1).clamp(min=0)[:, None])[:, 0]
    below_min = torch.nextafter(flat[:, 0], torch.full_like(flat[:, 0], -math.inf))
    return torch.where(m >= p, below_min, t)


def _empty(images: torch.Tensor, info: dict) -> Segmentation:
    """The answer for an empty batch: ``(0, H, W)`` masks and ``(0, 1, H, W)`` scores."""
    _, _, h, w = images.shape
    return Segmentation(images.new_zeros(0, h, w, dtype=torch.long), images.new_zeros(0, 1, h, w), info)


def _constant(images: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: images whose every channel and pixel are equal."""
    flat = images.flatten(1)
    if flat.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=images.device)
    return flat.amin(1) == flat.amax(1)


def _warn_constant(constant: torch.Tensor, what: str) -> None:
    if bool(constant.any()):
        which = ", ".join(str(i) for i in torch.nonzero(constant).flatten().tolist())
        warnings.warn(f"image {which} is constant: nothing to separate, so the mask is empty ({what})",
                      MstoolWarning, stacklevel=4)


def _check_binary(foreground: str, bins: int) -> int:
    check_in(foreground, "foreground", FOREGROUND_RULES)
    return check_int(bins, "bins", low=2)


def _check_local(block_size: int | str, kind: str, offset: float) -> tuple[int | str, str, float]:
    if block_size != "auto":
        if isinstance(block_size, str):
            raise ParameterError(f"`block_size` must be 'auto' or an odd integer >= 3; got {block_size!r}")
        block_size = check_int(block_size, "block_size", low=3)
        if block_size % 2 == 0:
            raise ParameterError(f"`block_size` must be odd; got {block_size}")
    return block_size, check_in(kind, "kind", _LOCAL_KINDS), check_range(offset, "offset")


def _check_kmeans(clusters: int, iterations: int, init: str) -> tuple[int, int, str]:
    return (check_int(clusters, "clusters", low=2), check_int(iterations, "iterations", low=1),
            check_in(init, "init", _KMEANS_INITS))


def _check_gmm(clusters: int, covariance: str, max_samples: int, iterations: int) -> tuple[int, str, int, int]:
    clusters = check_int(clusters, "clusters", low=2)
    return (clusters, check_in(covariance, "covariance", _COVARIANCES),
            check_int(max_samples, "max_samples", low=clusters), check_int(iterations, "iterations", low=1))


def _check_features(smooth: float, position: float, prior_clip: float) -> None:
    check_range(smooth, "smooth", 0)
    check_range(position, "position", 0)
    _check_clip(prior_clip)


def _check_clip(prior_clip: float) -> float:
    return check_range(prior_clip, "prior_clip", 0, 0.5, high_open=True)
