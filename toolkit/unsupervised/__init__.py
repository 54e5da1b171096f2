"""Unsupervised segmentation, optionally guided by a meta-structure density prior.

Legend: N batch · C channels · K classes · H, W pixels.

One registry (:data:`METHODS`) and one interface: ``METHODS.get(name)(**options).segment(images, prior=...,
generator=...)`` takes z-scored images ``(N, C, H, W)`` and an optional foreground density ``(N, 1, H, W)`` and
returns a :class:`Segmentation` (masks, score maps, info). Classical baselines (Otsu, minimum-error threshold,
multi-Otsu, local threshold, k-means, Gaussian mixture), DFC (Kim et al. 2020) and iGTT (Luo et al. 2022, with
its EMS step).
"""

from ._base import METHODS, Method, Segmentation, check_images_and_prior
from ._bootstrap import BOOTSTRAP_BANDWIDTH, bootstrap_prior, parse_bootstrap
from ._build import build_method, check_loadable, check_takes_scribbles, method_options
from ._classical import (
    FOREGROUND_RULES,
    GaussianMixture,
    KMeans,
    LocalThreshold,
    MinimumError,
    MultiOtsu,
    Otsu,
    choose_foreground,
    resolve_foreground,
)
from ._dfc import DFC
from ._igtt import IGTT

__all__ = [
    "METHODS", "Method", "Segmentation", "check_images_and_prior",
    "Otsu", "MinimumError", "MultiOtsu", "LocalThreshold", "KMeans", "GaussianMixture", "DFC", "IGTT",
    "FOREGROUND_RULES", "choose_foreground", "resolve_foreground", "bootstrap_prior", "parse_bootstrap",
    "BOOTSTRAP_BANDWIDTH",
    "build_method", "method_options", "check_loadable", "check_takes_scribbles",
]
