"""The one interface of unsupervised segmentation methods: images in, masks and score maps out.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from .. import names
from .._check import check_shape
from .._registry import Registry
from .._types import Progress
from ..errors import DataError, ShapeError

__all__ = ["Segmentation", "Method", "METHODS", "check_images_and_prior", "check_prior", "known_prior"]


@dataclass
class Segmentation:
    """The result of an unsupervised method.

    Attributes:
        masks: ``(N, H, W)`` int64 labels (binary: 0 background, 1 foreground; multi-class: ``0..K-1``).
        scores: ``(N, 1, H, W)`` foreground score in [0, 1] (binary), or ``(N, K, H, W)`` class scores; what was
            thresholded (or arg-maxed) to give ``masks``.
        info: what the method chose, per image or overall (thresholds, cluster means, rounds, the EMS spec ...),
            JSON-friendly.
        trained: what a learned method trained on these images (iGTT: a new instance holding the network, which
            :meth:`~mstool.unsupervised.IGTT.save` writes and whose ``segment`` predicts new images without
            training); ``None`` for the others. The method instance that made it is never changed, so one
            instance may segment several groups of images, one after another or at once.
    """

    masks: torch.Tensor
    scores: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    trained: Any = None


class Method(Protocol):
    """An unsupervised method: settings in the constructor, work in :meth:`segment`, what it is in class
    attributes.

    ``segment(images, *, prior=None, generator=None, labels=None, progress=None)`` takes ``images``
    ``(N, C, H, W)`` float, z-scored per image (as :func:`mstool.io.normalize_image` gives them), and optionally a
    foreground density ``prior`` ``(N, 1, H, W)`` (non-negative; any scale; e.g.
    :meth:`mstool.metastructure.Prior.foreground`), on the images' device. A NaN in the prior marks a pixel it
    knows nothing about (the density of a partial annotation, away from every labelled pixel): each method reads
    the prior where it is known and falls back to its own rule where it is not. Methods that cannot use a prior say so
    in their docstring and ignore it with a warning. ``labels`` ``(N, H, W)`` are for evaluation only (a method may
    log its agreement with them per round, never use them for a choice); ``progress`` receives the method's round
    events (methods without rounds send none). A method whose class says ``scribbles = True`` also takes
    ``scribbles=`` (user scribbles, ``(N, H, W)`` 0/1/255).

    Attributes:
        deterministic: the result does not depend on ``generator`` (a comparison runs it once, whatever the seeds).
        binary: it separates foreground from background (else it returns ``K`` intensity classes).
        scribbles: ``segment`` takes user scribbles.
        learned: it trains a network on the images (DFC, iGTT), rather than a classical rule.
    """

    deterministic: ClassVar[bool]
    binary: ClassVar[bool]
    scribbles: ClassVar[bool]
    learned: ClassVar[bool]

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None) -> Segmentation: ...


METHODS: Registry[type] = Registry("unsupervised method", declared=names.UNSUPERVISED_METHODS)
"""Method classes by name (``otsu``, ``multiotsu``, ``local``, ``kmeans``, ``gmm``, ``dfc``, ``igtt``)."""


def check_images_and_prior(images: torch.Tensor, prior: torch.Tensor | None) -> None:
    """The boundary check every method runs: images ``(N, C, H, W)`` float, then :func:`check_prior`.

    Raises:
        ShapeError, DTypeError: a wrong shape or dtype.
        DataError: a negative or infinite ``prior``.
    """
    check_shape(images, "images", "N C H W", dtype="float")
    check_prior(prior, images, "images")


def check_prior(prior: torch.Tensor | None, like: torch.Tensor | None = None, like_name: str = "images") -> None:
    """``prior`` is ``None`` or an ``(N, 1, H, W)`` float tensor, non-negative where known (NaN: unknown), matching
    ``like`` in N, H and W when given.

    Raises:
        ShapeError, DTypeError: a wrong shape or dtype.
        DataError: a negative or infinite value.

    Example:
        >>> check_prior(torch.tensor([[[[0.2, float("nan")]]]]))  # NaN: a pixel the prior knows nothing about
        >>> try:
        ...     check_prior(torch.tensor([[[[0.2, float("inf")]]]]))
        ... except DataError as e:
        ...     print(str(e).split("; ")[-1])
        it holds 1 infinite value
    """
    if prior is None:
        return
    check_shape(prior, "prior", "N 1 H W", dtype="float")
    if like is not None and (prior.shape[0] != like.shape[0] or prior.shape[-2:] != like.shape[-2:]):
        raise ShapeError(f"`prior` {tuple(prior.shape)} must match `{like_name}` {tuple(like.shape)} in N, H and W")
    if not prior.numel():
        return
    what = "`prior` must be non-negative and finite where known (NaN marks an unknown pixel)"
    infinite = int(torch.isinf(prior).sum())
    if infinite:
        raise DataError(f"{what}; it holds {infinite} infinite value{'s' if infinite > 1 else ''}")
    low = prior.nan_to_num(nan=0.0).amin()
    if float(low) < 0:
        raise DataError(f"{what}; its minimum is {float(low):g}")


def known_prior(prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A prior's known pixels ``(N, 1, H, W)`` bool and the prior with its unknown (NaN) pixels set to 0.

    Example:
        >>> known, filled = known_prior(torch.tensor([[[[0.2, float("nan")]]]]))
        >>> known.tolist(), filled.tolist()
        ([[[[True, False]]]], [[[[0.20000000298023224, 0.0]]]])
    """
    known = ~torch.isnan(prior)
    return known, prior.nan_to_num(nan=0.0)
