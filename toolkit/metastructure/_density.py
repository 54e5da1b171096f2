"""Per-class spatial densities of labels: the meta-structure of Luo et al. (2022).

Legend: N batch · C channels · K classes · H, W pixels.

The meta-structure of a label is the density ``f_c(x)`` of every class ``c`` around every pixel ``x``,
estimated with a window (Parzen) estimator::

    f_c(x) = (1 / |W(x)|) * sum_{y in W(x)} 1[label(y) = c]

with a box window of side ``2h + 1`` (the paper's kernel, bandwidth ``h``) or a Gaussian window of
standard deviation ``h`` truncated at ``3h``. Both are computed with separable 1-D window sums on the
device of the labels (cumulative sums for the box, two 1-D convolutions for the Gaussian).

Border: windows are clipped at the image border and normalised by the (kernel-weighted) number of
in-image pixels, so a uniform label has density exactly 1 at the border too.

Ignored pixels (``ignore_index``): with ``normalize_ignored=True`` they are left out of both the
numerator and the denominator, so the density is the class fraction among the *labelled* pixels of the
window (a window without any labelled pixel gets density 0 for every class). With
``normalize_ignored=False`` they count in the denominator only, so a label that keeps a random fraction
``s`` of its pixels has density ``s`` times the clean density (Lemma 1 of Luo et al.). A density is
defined at every pixel, ignored ones included. Densities of all classes sum to 1 wherever every pixel of
the window is labelled.

References:
    Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep
    Neural Networks", arXiv 2205.00160 (2022), Sec. 3 and Lemma 1.
    Parzen, "On estimation of a probability density function and mode", Ann. Math. Stat. 33 (1962).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import IGNORE_INDEX, names
from .._check import check_in, check_int, check_labels, check_range, check_shape
from ..errors import ParameterError

__all__ = ["KERNELS", "class_onehot", "density", "foreground_density", "normalized_density"]

KERNELS = names.KERNELS
"""Window kernels of :func:`density`: ``box`` (side ``2h + 1``), ``gaussian`` (sigma ``h``, cut at ``3h``)."""

def class_onehot(labels: torch.Tensor, num_classes: int | None = None, *,
                 ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """One channel per class: ``1`` where the pixel has that class, ``0`` elsewhere.

    Args:
        labels: ``(N, H, W)`` integer labels, classes ``0..K-1`` or ``ignore_index``.
        num_classes: ``K``; ``None`` infers ``max(label) + 1`` over labelled pixels, at least 2 (a label
            holding only background is still binary).
        ignore_index: label value of unlabelled pixels (``None``: every value is a class).

    Returns:
        ``(N, K, H, W)`` float32 on the labels' device; an ignored pixel is all zeros.

    Example:
        >>> class_onehot(torch.tensor([[[0, 1, 255]]]))[0, :, 0]
        tensor([[1., 0., 0.],
                [0., 1., 0.]])
    """
    k = _resolve_num_classes({"labels": labels}, num_classes=num_classes, ignore_index=ignore_index)
    return _onehot(labels, torch.arange(k, device=labels.device), ignore_index)


def density(labels: torch.Tensor, num_classes: int | None = None, *, kernel: str = "box",
            bandwidth: float = 5, ignore_index: int | None = IGNORE_INDEX,
            normalize_ignored: bool = True) -> torch.Tensor:
    """Per-class Parzen density ``f_c(x)`` of a label batch (its meta-structure).

    Args:
        labels: ``(N, H, W)`` integer labels, classes ``0..K-1`` or ``ignore_index``.
        num_classes: ``K``; ``None`` infers ``max(label) + 1``, at least 2.
        kernel: ``"box"`` (window side ``2 * bandwidth + 1``, the paper's kernel) or ``"gaussian"``
            (sigma ``bandwidth``, truncated at ``3 * bandwidth``).
        bandwidth: ``h >= 0`` in pixels; a whole number for the box kernel. ``0`` gives the one-hot label.
        ignore_index: label value of unlabelled pixels (``None``: every value is a class).
        normalize_ignored: ``True``: ignored pixels are left out of the window (density among labelled
            pixels; a window with no labelled pixel gives 0). ``False``: they count in the denominator
            only, so a sparse label's density scales with its sampling rate (Lemma 1).

    Returns:
        ``(N, K, H, W)`` float32 in ``[0, 1]`` on the labels' device, class 0 (background) included.
        Windows are clipped at the border and normalised by their in-image pixels.

    Raises:
        ShapeError: ``labels`` is not an ``(N, H, W)`` integer tensor.
        ParameterError: a bad ``kernel`` or ``bandwidth``, or a class index ``>= num_classes``.

    Example:
        >>> labels = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> labels[:, 2:6, 2:6] = 1
        >>> d = density(labels, bandwidth=1)
        >>> d.shape
        torch.Size([1, 2, 8, 8])
        >>> round(float(d[0, 1, 1, 1]), 4)  # 3 x 3 window at the square's corner holds 1 of 9 fg pixels
        0.1111
        >>> bool(torch.allclose(d.sum(1), torch.ones(1, 8, 8)))
        True

    References:
        Luo et al., arXiv 2205.00160 (2022), Lemma 1; Parzen, Ann. Math. Stat. 33 (1962).
    """
    kernel, bandwidth = _check_window(kernel, bandwidth)
    k = _resolve_num_classes({"labels": labels}, num_classes=num_classes, ignore_index=ignore_index)
    classes = torch.arange(k, device=labels.device)
    return _density(labels, classes, kernel=kernel, bandwidth=bandwidth, ignore_index=ignore_index,
                    normalize_ignored=normalize_ignored)


def foreground_density(labels: torch.Tensor, *, kernel: str = "box", bandwidth: float = 5,
                       ignore_index: int | None = IGNORE_INDEX,
                       normalize_ignored: bool = True) -> torch.Tensor:
    """Density of the foreground (class 1) of a binary label batch; the paper's ``f_1``.

    Same arguments and border/ignore handling as :func:`density`; only channel 1 is computed.

    Args:
        labels: ``(N, H, W)`` binary labels (0 background, 1 foreground, or ``ignore_index``).

    Returns:
        ``(N, 1, H, W)`` float32, equal to ``density(labels, 2, ...)[:, 1:2]``.

    Example:
        >>> labels = torch.tensor([[[0, 1, 1, 0]]])
        >>> foreground_density(labels, bandwidth=1)
        tensor([[[[0.5000, 0.6667, 0.6667, 0.5000]]]])
    """
    kernel, bandwidth = _check_window(kernel, bandwidth)
    _resolve_num_classes({"labels": labels}, num_classes=2, ignore_index=ignore_index)
    classes = torch.ones(1, dtype=torch.long, device=labels.device)
    return _density(labels, classes, kernel=kernel, bandwidth=bandwidth, ignore_index=ignore_index,
                    normalize_ignored=normalize_ignored)


def normalized_density(d: torch.Tensor) -> torch.Tensor:
    """Divide each image's per-class density by its spatial sum: a probability map per channel.

    Args:
        d: ``(N, C, H, W)`` non-negative densities.

    Returns:
        ``(N, C, H, W)`` in the dtype of ``d``; each channel sums to 1 over ``H, W``, except an all-zero
        channel (a class absent from the image), which stays all zero.

    Example:
        >>> normalized_density(torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]]]))
        tensor([[[[0.2500, 0.7500]],
        <BLANKLINE>
                 [[0.0000, 0.0000]]]])
    """
    check_shape(d, "d", "N C H W", dtype="float")
    total = d.sum(dim=(-2, -1), keepdim=True)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, d / safe, torch.zeros_like(d))


def _check_window(kernel: str, bandwidth: float) -> tuple[str, float]:
    check_in(kernel, "kernel", KERNELS)
    h = check_range(bandwidth, "bandwidth", 0, math.inf, high_open=True)
    if kernel == "box" and not h.is_integer():
        raise ParameterError(f"`bandwidth` must be a whole number of pixels for the box kernel "
                             f"(window side 2h + 1); got {bandwidth}")
    return kernel, h


def _resolve_num_classes(named: dict[str, torch.Tensor], *, num_classes: int | None,
                         ignore_index: int | None) -> int:
    """Check the named label batches and return ``K`` (given, or ``max + 1`` over all of them, at least 2)."""
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", low=1)
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ParameterError(f"`ignore_index` {ignore_index} is also a class index "
                                 f"(num_classes={num_classes}); choose a value outside 0..{num_classes - 1}")
    for name, x in named.items():
        check_labels(x, name, num_classes=num_classes, ignore_index=ignore_index)
    if num_classes is not None:
        return num_classes
    highest = 1
    for x in named.values():
        valid = x if ignore_index is None else x[x != ignore_index]
        if valid.numel():
            highest = max(highest, int(valid.max()))
    return highest + 1


def _onehot(labels: torch.Tensor, classes: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """``(N, len(classes), H, W)`` float32 indicators of the listed classes; ignored pixels are zero."""
    hit = labels.unsqueeze(1) == classes.view(1, -1, 1, 1)
    if ignore_index is not None:
        hit &= (labels != ignore_index).unsqueeze(1)
    return hit.float()


def _density(labels: torch.Tensor, classes: torch.Tensor, *, kernel: str, bandwidth: float,
             ignore_index: int | None, normalize_ignored: bool) -> torch.Tensor:
    """Window densities of the listed classes (inputs already checked)."""
    n, h, w = labels.shape
    onehot = _onehot(labels, classes, ignore_index)
    if onehot.numel() == 0:
        return onehot
    num = _window_sum(onehot, kernel, bandwidth)
    labelled = None
    if normalize_ignored and ignore_index is not None:
        labelled = labels != ignore_index
        if bool(labelled.all()):
            labelled = None
    if labelled is None:
        # The in-image part of the window; one (1, 1, H, W) map serves the whole batch.
        den = _window_sum(torch.ones(1, 1, h, w, device=labels.device), kernel, bandwidth)
    else:
        den = _window_sum(labelled.unsqueeze(1).float(), kernel, bandwidth)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    # Division can round a uniform window a hair above 1; densities are fractions.
    return torch.where(den > 0, num / safe, torch.zeros_like(num)).clamp_(0, 1)


def _window_sum(x: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    """Separable window sum of ``(N, C, H, W)`` with zero padding (the window is clipped at the border)."""
    if kernel == "box":
        r = int(bandwidth)
        return _box_sum_1d(_box_sum_1d(x, r, dim=-1), r, dim=-2)
    return _gaussian_sum(x, bandwidth)


def _box_sum_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over ``[i - r, i + r]`` clipped to the axis, by differences of a cumulative sum.

    Exact for the 0/1 indicators used here (integer counts below 2**24), and O(1) in ``r``.
    """
    size = x.shape[dim]
    r = min(r, size - 1)
    if r <= 0:
        return x
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    c = torch.cat([zero, torch.cumsum(x, dim=dim)], dim=dim)
    i = torch.arange(size, device=x.device)
    hi = (i + r).clamp(max=size - 1) + 1
    lo = (i - r).clamp(min=0)
    return c.index_select(dim, hi) - c.index_select(dim, lo)


def _gaussian_sum(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-weighted window sum (sigma ``sigma``, radius ``ceil(3 sigma)``), one 1-D pass per axis."""
    radius = math.ceil(3 * sigma)
    if radius == 0:
        return x
    offsets = torch.arange(radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps = (taps / taps.sum()).tolist()
    return _symmetric_sum_1d(_symmetric_sum_1d(x, taps, dim=-1), taps, dim=-2)


def _symmetric_sum_1d(x: torch.Tensor, taps: list[float], dim: int) -> torch.Tensor:
    """``sum_d taps[|d|] * x[i + d]`` along ``dim`` with zeros outside the axis.

    A shifted sum over the taps rather than a convolution: elementwise arithmetic in a fixed order gives
    results that do not depend on the batch or on the other channels, and equal inputs give bitwise equal
    window sums, so a uniform label has density exactly 1.
    """
    size = x.shape[dim]
    # Taps farther than the axis length cannot reach an in-axis pixel.
    radius = min(len(taps) - 1, size - 1)
    if radius <= 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - (dim % x.dim())) + [radius, radius]
    xp = F.pad(x, pad)
    out = x * taps[0]
    for d in range(1, radius + 1):
        out.add_(xp.narrow(dim, radius - d, size) + xp.narrow(dim, radius + d, size), alpha=taps[d])
    return out
