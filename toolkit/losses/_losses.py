"""Segmentation losses: BCE, cross-entropy with ignore, soft IoU, DMI and DMI + IoU.

Legend: N batch · C channels · K classes · H, W pixels.

Inputs follow one convention. Networks emit logits ``(N, C, H, W)``: ``C = 1`` is binary (sigmoid gives the
foreground probability), ``C = K >= 2`` is multi-class (softmax over ``C``). Targets are ``(N, H, W)`` int64
class indices; pixels equal to ``ignore_index`` (255) carry no label and contribute nothing, neither to the
value nor to the gradient, so sparse labels (scribbles, points) train without change.

BCE and cross-entropy take logits; soft IoU and DMI take probabilities. :func:`make_loss` hides the
difference: every loss it builds takes raw logits and integer targets.

Degenerate input has one answer for every loss: when no pixel of the batch is labelled (all ``ignore_index``,
or ``N = 0``) the loss is 0 and its gradient is 0. Per-image losses (soft IoU, DMI) average over the images
that hold at least one labelled pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import IGNORE_INDEX as IGNORE
from .. import names
from .._check import check_int, check_labels, check_range, check_same_device, check_shape
from .._registry import Registry
from ..errors import ParameterError, ShapeError

__all__ = [
    "bce_loss",
    "cross_entropy_loss",
    "soft_iou_loss",
    "dmi_loss",
    "dmi_iou_loss",
    "BCELoss",
    "CrossEntropyLoss",
    "SoftIoULoss",
    "DMILoss",
    "DMIIoULoss",
    "LossFromLogits",
    "LOSSES",
    "make_loss",
]

# ----------------------------------------------------------------------------------------------- checks
def _check_pair(x: torch.Tensor, name: str, target: torch.Tensor, ignore_index: int) -> None:
    """``x`` is a float ``(N, C, H, W)`` batch and ``target`` its ``(N, H, W)`` label batch."""
    check_shape(x, name, "N C H W", dtype="float")
    n, c, h, w = x.shape
    check_labels(target, "target", num_classes=max(c, 2), ignore_index=ignore_index)
    if tuple(target.shape) != (n, h, w):
        raise ShapeError(f"`target` must be (N, H, W) = ({n}, {h}, {w}) to match `{name}`; "
                         f"got ({', '.join(map(str, target.shape))})")
    check_same_device((name, x), ("target", target))


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(values * weights) / sum(weights)``; 0 (with gradient 0) when every weight is 0."""
    return _safe_div((values * weights).sum(), weights.sum())


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, or ``num`` (which is then 0) where ``den`` is 0; no NaN in value or gradient."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _one_hot(target: torch.Tensor, num_classes: int, ignore_index: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, H, W)`` labels -> ``(N, K, H, W)`` one-hot; ignored pixels are all-zero columns."""
    valid = target != ignore_index
    onehot = F.one_hot(target.where(valid, 0), num_classes).permute(0, 3, 1, 2)
    return onehot.to(dtype) * valid.unsqueeze(1).to(dtype)


def _class_probs(probs: torch.Tensor) -> torch.Tensor:
    """Binary ``(N, 1, H, W)`` foreground probability -> ``(N, 2, H, W)`` ``[1 - p, p]``; K >= 2 unchanged."""
    return torch.cat([1 - probs, probs], dim=1) if probs.shape[1] == 1 else probs


# -------------------------------------------------------------------------------------------- functions
def bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = IGNORE,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """Binary cross-entropy from logits, averaged over the labelled pixels of the batch.

    ``l = -[w y log s(z) + (1 - y) log(1 - s(z))]`` with ``s`` the sigmoid and ``w`` the positive weight,
    computed in the log-sum-exp form so that large logits neither overflow nor lose precision.

    Args:
        logits: ``(N, 1, H, W)`` foreground logits.
        target: ``(N, H, W)`` int64 labels in ``{0, 1}`` or ``ignore_index``.
        ignore_index: label value that marks unlabelled pixels.
        pos_weight: weight ``w > 0`` of foreground pixels (``None``: 1), for rare foreground.

    Returns:
        A scalar: the mean over labelled pixels; 0 with gradient 0 when none is labelled.

    Raises:
        ShapeError: ``logits`` has more than one channel (use :func:`cross_entropy_loss`) or the shapes
            differ.
        DTypeError: integer ``logits`` or a float ``target``.
        DeviceMismatchError: ``logits`` and ``target`` on different devices.
        ParameterError: a label outside ``{0, 1, ignore_index}`` or a non-positive ``pos_weight``.

    Example:
        >>> logits = torch.tensor([[[[0.0, 0.0]]]])
        >>> round(bce_loss(logits, torch.tensor([[[1, 255]]])).item(), 4)  # log 2
        0.6931
    """
    _check_pair(logits, "logits", target, ignore_index)
    if logits.shape[1] != 1:
        raise ShapeError(f"`logits` must be (N, 1, H, W) for bce_loss; got {logits.shape[1]} channels "
                         "(use cross_entropy_loss for K >= 2 classes)")
    pw = None
    if pos_weight is not None:
        pw = torch.tensor(check_range(pos_weight, "pos_weight", 0, low_open=True),
                          dtype=logits.dtype, device=logits.device)
    valid = (target != ignore_index).to(logits.dtype)
    y = (target == 1).to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], y, reduction="none", pos_weight=pw)
    return _masked_mean(per_pixel, valid)


def cross_entropy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = IGNORE,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-class cross-entropy from logits, averaged over the labelled pixels of the batch.

    ``l = -w_y log softmax(z)_y``; the mean divides by the summed class weights of the labelled pixels, as
    :func:`torch.nn.functional.cross_entropy` does, except that an all-ignored batch gives 0 instead of NaN.

    Args:
        logits: ``(N, K, H, W)`` class logits, ``K >= 2``.
        target: ``(N, H, W)`` int64 labels in ``0..K-1`` or ``ignore_index``.
        ignore_index: label value that marks unlabelled pixels.
        weight: optional ``(K,)`` non-negative class weights.

    Returns:
        A scalar: the weighted mean over labelled pixels; 0 with gradient 0 when none is labelled.

    Raises:
        ShapeError: ``K < 2`` (use :func:`bce_loss` for one channel), mismatched shapes or a ``weight`` that
            is not ``(K,)``.
        DTypeError: integer ``logits`` or ``weight``, or a float ``target``.
        DeviceMismatchError: ``logits`` and ``target`` on different devices.
        ParameterError: a label outside ``0..K-1`` that is not ``ignore_index``; a negative class weight.

    Example:
        >>> logits = torch.zeros(1, 4, 2, 2)
        >>> round(cross_entropy_loss(logits, torch.tensor([[[0, 1], [2, 255]]])).item(), 4)  # log 4
        1.3863
    """
    check_shape(logits, "logits", "N C H W", dtype="float")
    if logits.shape[1] < 2:
        raise ShapeError(f"`logits` must have K >= 2 channels for cross_entropy_loss; got {logits.shape[1]} "
                         "(use bce_loss for one foreground channel)")
    _check_pair(logits, "logits", target, ignore_index)
    k = logits.shape[1]
    if weight is not None:
        check_shape(weight, "weight", str(k), dtype="float")
        if bool((weight < 0).any()):
            raise ParameterError("`weight` must hold non-negative class weights; "
                                 f"got a minimum of {float(weight.min())}")
        weight = weight.to(device=logits.device, dtype=logits.dtype)
    per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    pixel_weight = valid.to(logits.dtype) if weight is None else weight[target.where(valid, 0)] * valid
    # F.cross_entropy already weighted each pixel by w_y and zeroed ignored ones
    return _safe_div(per_pixel.sum(), pixel_weight.sum())


def soft_iou_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-6,
    ignore_index: int = IGNORE,
) -> torch.Tensor:
    """Soft IoU (Jaccard) loss: one minus the IoU of probabilities and one-hot labels, per image.

    For an image and a class, with ``p`` the probabilities and ``y`` the one-hot labels over labelled
    pixels: ``IoU = (sum p y + eps) / (sum (p + y - p y) + eps)``. Binary input (``C = 1``) scores the
    foreground channel only; multi-class input averages over the classes present in the image's labels.
    The image loss is ``1 - IoU``; the batch loss is the mean over images with at least one labelled pixel.

    ``eps`` smooths both terms, so a perfect prediction scores exactly 0 and an image whose foreground is
    empty in both prediction and labels also scores 0.

    Args:
        probs: ``(N, 1, H, W)`` foreground probability or ``(N, K, H, W)`` softmax probabilities.
        target: ``(N, H, W)`` int64 labels in ``0..K-1`` (``{0, 1}`` when binary) or ``ignore_index``.
        eps: smoothing term, ``> 0``.
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        A scalar in ``[0, 1]``; 0 with gradient 0 when no pixel is labelled.

    References:
        Rahman and Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
        Segmentation", ISVC 2016 (the soft IoU surrogate).

    Example:
        >>> y = torch.tensor([[[0, 1], [1, 255]]])
        >>> soft_iou_loss(y[:, None].clamp_max(1).float(), y).item()  # perfect prediction
        0.0
        >>> round(soft_iou_loss(torch.full((1, 1, 2, 2), 0.5), y).item(), 4)  # IoU = 1 / 2.5
        0.6
    """
    _check_pair(probs, "probs", target, ignore_index)
    check_range(eps, "eps", 0, low_open=True)
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)
    if probs.shape[1] == 1:
        y = (target == 1).unsqueeze(1).to(probs.dtype)
        present = torch.ones(probs.shape[:2], dtype=probs.dtype, device=probs.device)
    else:
        y = _one_hot(target, probs.shape[1], ignore_index, probs.dtype)
        present = (y.sum(dim=(2, 3)) > 0).to(probs.dtype)
    p = probs * valid
    inter = (p * y).sum(dim=(2, 3))
    union = (p + y - p * y).sum(dim=(2, 3))
    per_class = 1 - (inter + eps) / (union + eps)
    per_image = (per_class * present).sum(1) / present.sum(1).clamp_min(1)
    return _masked_mean(per_image, (valid.sum(dim=(1, 2, 3)) > 0).to(probs.dtype))


def dmi_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-6,
    ignore_index: int = IGNORE,
) -> torch.Tensor:
    """Determinant-based mutual information loss (L_DMI), per image.

    For each image, with ``P`` the ``(K, M)`` matrix of predicted class probabilities and ``S`` the
    ``(K, M)`` one-hot labels over its ``M`` labelled pixels, ``U = P S^T / M`` is the empirical joint
    distribution of (prediction, label) and the image loss is ``-log(|det U| + eps)``. Dividing by ``M``
    makes the value independent of the image size (the unnormalised determinant scales with ``M^K``).
    Binary input ``(N, 1, H, W)`` uses the rows ``[1 - p, p]`` (``K = 2``). The batch loss is the mean over
    images with at least one labelled pixel.

    Unlike cross-entropy, ``det U`` factorises through any invertible label-noise transition matrix ``T``
    (``det(P S_noisy^T) = det(P S_clean^T) det T`` in expectation), so noise only shifts the loss by a
    constant: the property that makes DMI robust to class-conditional noise.

    Things to know: the minimum is not 0 (a perfect binary prediction of foreground fraction ``f`` scores
    ``-log(f (1 - f) + eps)``); an image whose labels hold a single class gives ``det U = 0``, a loss of
    ``-log(eps)`` and zero gradient, since it carries no information for DMI (pair it with IoU,
    :func:`dmi_iou_loss`).

    Args:
        probs: ``(N, 1, H, W)`` foreground probability or ``(N, K, H, W)`` softmax probabilities.
        target: ``(N, H, W)`` int64 labels in ``0..K-1`` (``{0, 1}`` when binary) or ``ignore_index``.
        eps: added to ``|det U|`` inside the log, ``> 0``.
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        A scalar; 0 with gradient 0 when no pixel is labelled.

    References:
        Xu, Cao, Kong, Wang, "L_DMI: An Information-theoretic Noise-robust Loss Function", NeurIPS 2019,
        Eq. (3) and Theorem 4.2; per-image binary use as in Luo, Liu, Guo, Yang, arXiv 2205.00160.

    Example:
        >>> y = torch.tensor([[[0, 1], [1, 1]]])
        >>> p = y[:, None].float()  # perfect: U = diag(1/4, 3/4), det U = 3/16
        >>> round(dmi_loss(p, y).item(), 4)
        1.674
    """
    _check_pair(probs, "probs", target, ignore_index)
    check_range(eps, "eps", 0, low_open=True)
    p = _class_probs(probs)
    s = _one_hot(target, p.shape[1], ignore_index, p.dtype)
    count = s.sum(dim=(1, 2, 3))
    joint = torch.einsum("nkhw,nlhw->nkl", p, s) / count.clamp_min(1).view(-1, 1, 1)
    per_image = -torch.log(torch.linalg.det(joint).abs() + eps)
    return _masked_mean(per_image, (count > 0).to(p.dtype))


def dmi_iou_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    dmi_weight: float = 1.0,
    iou_weight: float = 1.0,
    eps: float = 1e-6,
    ignore_index: int = IGNORE,
) -> torch.Tensor:
    """``dmi_weight * dmi_loss + iou_weight * soft_iou_loss``: noise robustness plus an overlap term.

    Args:
        probs: ``(N, 1, H, W)`` foreground probability or ``(N, K, H, W)`` softmax probabilities.
        target: ``(N, H, W)`` int64 labels or ``ignore_index``.
        dmi_weight: weight ``>= 0`` of :func:`dmi_loss`.
        iou_weight: weight ``>= 0`` of :func:`soft_iou_loss`.
        eps: smoothing passed to both terms.
        ignore_index: label value that marks unlabelled pixels.

    References:
        Xu et al., NeurIPS 2019 (L_DMI); Luo, Liu, Guo, Yang, arXiv 2205.00160.

    Example:
        >>> y = torch.tensor([[[0, 1], [1, 1]]])
        >>> round(dmi_iou_loss(y[:, None].float(), y, dmi_weight=0.5).item(), 4)  # 0.5 * 1.674 + 0
        0.837
    """
    dw = check_range(dmi_weight, "dmi_weight", 0)
    iw = check_range(iou_weight, "iou_weight", 0)
    return (dw * dmi_loss(probs, target, eps=eps, ignore_index=ignore_index)
            + iw * soft_iou_loss(probs, target, eps=eps, ignore_index=ignore_index))


# ---------------------------------------------------------------------------------------------- modules
class BCELoss(nn.Module):
    """Module form of :func:`bce_loss`; ``forward(logits (N, 1, H, W), target (N, H, W))``."""

    def __init__(self, *, ignore_index: int = IGNORE, pos_weight: float | None = None):
        super().__init__()
        self.ignore_index = ignore_index
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_loss(logits, target, ignore_index=self.ignore_index, pos_weight=self.pos_weight)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy_loss`; ``weight`` is stored as a buffer so it follows ``.to()``."""

    def __init__(self, *, ignore_index: int = IGNORE, weight: torch.Tensor | None = None):
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy_loss(logits, target, ignore_index=self.ignore_index, weight=self.weight)


class SoftIoULoss(nn.Module):
    """Module form of :func:`soft_iou_loss`; ``forward(probs, target)``."""

    def __init__(self, *, eps: float = 1e-6, ignore_index: int = IGNORE):
        super().__init__()
        self.eps = eps
        self.ignore_index = ignore_index

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_iou_loss(probs, target, eps=self.eps, ignore_index=self.ignore_index)


class DMILoss(nn.Module):
    """Module form of :func:`dmi_loss`; ``forward(probs, target)``."""

    def __init__(self, *, eps: float = 1e-6, ignore_index: int = IGNORE):
        super().__init__()
        self.eps = eps
        self.ignore_index = ignore_index

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dmi_loss(probs, target, eps=self.eps, ignore_index=self.ignore_index)


class DMIIoULoss(nn.Module):
    """Module form of :func:`dmi_iou_loss`; ``forward(probs, target)``."""

    def __init__(self, *, dmi_weight: float = 1.0, iou_weight: float = 1.0, eps: float = 1e-6,
                 ignore_index: int = IGNORE):
        super().__init__()
        self.dmi_weight = dmi_weight
        self.iou_weight = iou_weight
        self.eps = eps
        self.ignore_index = ignore_index

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dmi_iou_loss(probs, target, dmi_weight=self.dmi_weight, iou_weight=self.iou_weight,
                            eps=self.eps, ignore_index=self.ignore_index)


class LossFromLogits(nn.Module):
    """Give any loss the trainer's signature ``forward(logits (N, C, H, W), target (N, H, W))``.

    Args:
        loss: the wrapped loss module.
        num_classes: the number of logit channels ``C`` the loss expects (1: binary, ``K >= 2``: multi-class).
        wants_probs: apply sigmoid (``C = 1``) or softmax over ``C`` before calling ``loss``.
    """

    def __init__(self, loss: nn.Module, num_classes: int, *, wants_probs: bool):
        super().__init__()
        self.loss = loss
        self.num_classes = num_classes
        self.wants_probs = wants_probs

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_shape(logits, "logits", f"N {self.num_classes} H W", dtype="float")
        if self.wants_probs:
            logits = torch.sigmoid(logits) if self.num_classes == 1 else torch.softmax(logits, dim=1)
        return self.loss(logits, target)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, wants_probs={self.wants_probs}"


# --------------------------------------------------------------------------------------------- registry
LOSSES: Registry[Callable[[int], nn.Module]] = Registry("loss", declared=names.LOSSES)
"""Loss name -> factory ``(num_classes) -> nn.Module`` taking logits; read by the trainer and the CLI."""


def _needs(name: str, num_classes: int, *, binary: bool | None) -> None:
    if binary is True and num_classes != 1:
        raise ParameterError(f"loss {name!r} needs num_classes = 1 (one sigmoid channel); got {num_classes} "
                             "(use 'ce' for K >= 2 classes)")
    if binary is False and num_classes < 2:
        raise ParameterError(f"loss {name!r} needs num_classes >= 2 (softmax channels); got {num_classes} "
                             "(use 'bce' for one channel)")


@LOSSES.register("bce")
def _make_bce(num_classes: int) -> nn.Module:
    _needs("bce", num_classes, binary=True)
    return LossFromLogits(BCELoss(), num_classes, wants_probs=False)


@LOSSES.register("ce")
def _make_ce(num_classes: int) -> nn.Module:
    _needs("ce", num_classes, binary=False)
    return LossFromLogits(CrossEntropyLoss(), num_classes, wants_probs=False)


@LOSSES.register("soft_iou")
def _make_soft_iou(num_classes: int) -> nn.Module:
    return LossFromLogits(SoftIoULoss(), num_classes, wants_probs=True)


@LOSSES.register("dmi")
def _make_dmi(num_classes: int) -> nn.Module:
    return LossFromLogits(DMILoss(), num_classes, wants_probs=True)


@LOSSES.register("dmi+iou")
def _make_dmi_iou(num_classes: int) -> nn.Module:
    return LossFromLogits(DMIIoULoss(), num_classes, wants_probs=True)


def make_loss(name: str, num_classes: int) -> nn.Module:
    """Build a registered loss that takes raw logits ``(N, C, H, W)`` and targets ``(N, H, W)``.

    Sigmoid (``C = 1``) or softmax (``C >= 2``) is applied for the losses that want probabilities
    (``soft_iou``, ``dmi``, ``dmi+iou``), so a trainer calls every loss the same way.

    Args:
        name: one of ``LOSSES.names()``: ``bce``, ``ce``, ``soft_iou``, ``dmi``, ``dmi+iou``.
        num_classes: the number of logit channels ``C``; 1 for binary (required by ``bce``), ``K >= 2``
            for multi-class (required by ``ce``).

    Raises:
        ParameterError: unknown name (lists the names), ``num_classes < 1`` or a channel count the loss
            does not support.

    Example:
        >>> loss = make_loss("dmi+iou", 1)
        >>> logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
        >>> target = torch.randint(0, 2, (2, 8, 8), generator=torch.Generator().manual_seed(0))
        >>> loss(logits, target).backward()
        >>> logits.grad.shape
        torch.Size([2, 1, 8, 8])
    """
    factory = LOSSES.get(name)
    return factory(check_int(num_classes, "num_classes", low=1))
