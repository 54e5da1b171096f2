"""Meta-structures of labels: per-class spatial densities, their similarity and the density prior.

Legend: N batch · C channels · K classes · H, W pixels.

Networks trained on noisy or sparse labels learn the labels' *meta-structure*, the spatial density of
each class, rather than the pixel labels (Luo et al. 2022). This package estimates densities with a box
or Gaussian window (:func:`density`), compares them (:func:`meta_similarity`) and stores them as a
``density.npz`` prior (:class:`Prior`, :func:`save_prior`, :func:`load_prior`, :func:`estimate_prior`).

References:
    Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep
    Neural Networks", arXiv 2205.00160 (2022), Lemma 1.
    Parzen, "On estimation of a probability density function and mode", Ann. Math. Stat. 33 (1962).
"""

from ._density import KERNELS, class_onehot, density, foreground_density, normalized_density
from ._ems import EMS_DEFAULT, ems, ems_spec
from ._expected import ExpectedSimilarity, expected_density, expected_similarity, expected_threshold
from ._prior import FORMAT_VERSION, Prior, class_fractions, estimate_prior, load_prior, save_prior
from ._similarity import MetaSimilarity, density_similarity, meta_similarity

__all__ = [
    "KERNELS",
    "class_onehot",
    "density",
    "foreground_density",
    "normalized_density",
    "MetaSimilarity",
    "meta_similarity",
    "density_similarity",
    "ExpectedSimilarity",
    "expected_similarity",
    "expected_density",
    "expected_threshold",
    "FORMAT_VERSION",
    "Prior",
    "save_prior",
    "load_prior",
    "estimate_prior",
    "class_fractions",
    "EMS_DEFAULT",
    "ems",
    "ems_spec",
]
