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

__all__ = ["Segmentation", "Method", "METHODS", "check_images_and_prior"]


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
    :meth:`mstool.metastructure.Prior.foreground`), on the images' device. Methods that cannot use a prior say so
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
    """The boundary check every method runs: images ``(N, C, H, W)`` float, prior ``(N, 1, H, W)`` finite >= 0.

    Raises:
        ShapeError, DTypeError: a wrong shape or dtype.
        DataError: a negative or non-finite ``prior``.
    """
    check_shape(images, "images", "N C H W", dtype="float")
    if prior is None:
        return
    check_shape(prior, "prior", "N 1 H W", dtype="float")
    if prior.shape[0] != images.shape[0] or prior.shape[-2:] != images.shape[-2:]:
        raise ShapeError(f"`prior` {tuple(prior.shape)} must match `images` {tuple(images.shape)} in N, H and W")
    if prior.numel() and (not bool(torch.isfinite(prior).all()) or float(prior.min()) < 0):
        raise DataError("`prior` must be finite and non-negative")
