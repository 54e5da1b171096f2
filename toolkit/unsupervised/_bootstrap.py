"""Density priors with no labels at all: bootstrapped from one unsupervised method's masks, or from the
consensus of several.

Legend: N batch · C channels · M methods · H, W pixels.

The consensus prior follows the paper's own argument for why noisy labels train well: a density averages its
label's pixels, so independent, zero-mean pixel errors average out of it while the shared structure stays. Each
method's mask is one noisy label of the same images; the consensus prior is the mean of their densities (the
density of the methods' agreement map), so what one method gets wrong alone weighs ``1 / M``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ParameterError
from ..labels import apply_spec, parse_spec
from ..metastructure import Prior, class_fractions, density
from ._base import METHODS, check_images_and_prior
from ._build import build_method
from ._classical import resolve_foreground

__all__ = ["BOOTSTRAP_BANDWIDTH", "bootstrap_prior", "parse_bootstrap"]

# A pixel-level window: DFC turns the prior into pseudo-scribbles pixel by pixel, and a wide window marks the
# background beside dense tubules as foreground (synth:er, 5 test images, seed 0: DFC 0.695 without a prior, 0.661
# with a bandwidth-5 prior, 0.768 with bandwidth 1); for iGTT the difference stayed within its seed spread.
BOOTSTRAP_BANDWIDTH = 1
"""Default box half-width of a prior bootstrapped from methods' masks (:func:`bootstrap_prior`)."""


def parse_bootstrap(methods: str | Sequence[str]) -> tuple[str, ...]:
    """The methods of a bootstrap: one name, or a consensus written ``a,b,c`` or ``a+b+c``.

    Raises:
        ParameterError: an unknown or multi-class method, an empty entry, or a consensus that does not name at
            least two different methods.

    Example:
        >>> parse_bootstrap("otsu"), parse_bootstrap("otsu+local+dfc"), parse_bootstrap(["otsu", "kmeans"])
        (('otsu',), ('otsu', 'local', 'dfc'), ('otsu', 'kmeans'))
    """
    text = methods if isinstance(methods, str) else ",".join(methods)
    names = tuple(p.strip() for p in text.replace("+", ",").split(","))
    binary = [m for m in METHODS.names() if METHODS.get(m).binary]
    for name in names:
        if name not in binary:
            what = "an empty method name" if not name else f"{name!r}"
            raise ParameterError(f"a prior is bootstrapped from binary methods; got {what} in {text!r} "
                                 f"(binary methods: {', '.join(binary)})")
    if len(names) > 1 and len(set(names)) < 2:
        raise ParameterError(f"a consensus prior needs at least two different methods; got {text!r} (name one "
                             "method for a single-method prior)")
    if len(set(names)) < len(names):
        raise ParameterError(f"a consensus names each method once; got {text!r}")
    return names


def bootstrap_prior(
    images: torch.Tensor,
    names: Sequence[str],
    methods: str | Sequence[str] = "otsu",
    *,
    foreground: str = "auto",
    options: dict[str, dict[str, Any]] | None = None,
    ems: str | None = None,
    kernel: str = "box",
    bandwidth: float = BOOTSTRAP_BANDWIDTH,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> Prior:
    """A foreground density prior from unsupervised masks of the images themselves: no label is used.

    Each method segments the images (all on the same side of the intensity: ``foreground`` is resolved once,
    from the images, and given to every method); ``ems`` optionally turns each mask into a sparser label
    (``sample:0.1``, the paper's ``skeleton+shift:1+sample:0.1``); the prior is the mean of the masks' densities.
    Its ``fractions`` are the mean foreground fraction of the masks before EMS, so :meth:`Prior.foreground`
    gives a calibrated foreground probability whatever EMS thinned the masks.

    Args:
        images: ``(N, C, H, W)`` z-scored float images.
        names: ``N`` image names.
        methods: one method name, or several for a consensus (:func:`parse_bootstrap`).
        foreground: ``"auto"``, ``"bright"`` or ``"dark"``, for every method.
        options: per-method constructor options, ``{"dfc": {"iterations": 50}}``.
        ems: a label spec applied to each mask before its density, or ``None``.
        kernel, bandwidth: the Parzen window (:func:`mstool.metastructure.density`).
        generator: CPU generator of the methods' and the EMS's random draws.
        device: where the methods run (default: the images' device).

    Returns:
        A binary :class:`~mstool.metastructure.Prior` whose ``source`` names the methods, the side and the EMS.

    Raises:
        ParameterError: a bad method list (:func:`parse_bootstrap`), option or spec.
        ShapeError: bad ``images``.

    Example:
        >>> x = torch.zeros(2, 1, 16, 16)
        >>> x[:, :, 4:8, 4:12] = 3.0
        >>> prior = bootstrap_prior(x, ["a", "b"], "otsu,local", bandwidth=1)
        >>> prior.source, round(float(prior.fractions[0, 1]), 3)
        ('bootstrap:otsu+local foreground:bright', 0.125)
    """
    check_images_and_prior(images, None)
    chosen = parse_bootstrap(methods)
    spec = None if ems is None else parse_spec(ems)
    if isinstance(names, (str, bytes)) or len(names) != images.shape[0]:
        got = repr(names) if isinstance(names, (str, bytes)) else f"{len(names)} names"
        raise ParameterError(f"`names` must hold one name per image ({images.shape[0]}); got {got}")
    side, _ = resolve_foreground(images, foreground)
    options = options or {}
    unknown = sorted(set(options) - set(chosen))
    if unknown:
        raise ParameterError(f"`options` name methods that are not in the bootstrap: {', '.join(unknown)}")
    dens, fractions = [], []
    for name in chosen:
        method = build_method(name, {**options.get(name, {}), "foreground": side},
                              device=images.device if device is None else device)
        masks = method.segment(images, generator=generator).masks
        fractions.append(class_fractions(masks, 2))
        if spec is not None:
            masks = apply_spec(masks, spec, generator=generator, num_classes=2)
        dens.append(density(masks, 2, kernel=kernel, bandwidth=bandwidth))
    source = f"bootstrap:{'+'.join(chosen)} foreground:{side}" + ("" if spec is None else f" ems:{spec}")
    mean = torch.stack(dens).mean(0)
    return Prior(mean, tuple(names), ("background", "foreground"), kernel=kernel, bandwidth=float(bandwidth),
                 source=source, fractions=torch.stack(fractions).mean(0).to(mean.device, torch.float32))
