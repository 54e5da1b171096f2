"""Bootstrapped priors: one method's masks, or the consensus of several; calibrated whatever EMS thinned them."""

from __future__ import annotations

import pytest
import torch

from mstool.data import synthesize
from mstool.errors import ParameterError
from mstool.io import normalize_image
from mstool.metastructure import density
from mstool.unsupervised import bootstrap_prior, build_method, parse_bootstrap


def _images(kind="nuc", n=3, size=48, invert=False):
    data = synthesize(kind, n, size, invert=invert, generator=torch.Generator().manual_seed(0))
    return torch.stack([normalize_image(im[0].numpy()) for im in data.images]), data.labels


def test_consensus_is_the_mean_of_the_methods_densities():
    x, _ = _images()
    prior = bootstrap_prior(x, ["a", "b", "c"], "otsu,local", bandwidth=2)
    masks = [build_method(m, {"foreground": "bright"}).segment(x).masks for m in ("otsu", "local")]
    expected = torch.stack([density(m, 2, bandwidth=2) for m in masks]).mean(0)
    assert torch.allclose(prior.density, expected)
    assert prior.source == "bootstrap:otsu+local foreground:bright"
    fractions = torch.stack([m.float().mean((1, 2)) for m in masks]).mean(0)
    assert torch.allclose(prior.fractions[:, 1], fractions)


def test_every_method_looks_at_the_same_side():
    x, labels = _images("em", invert=False)
    prior = bootstrap_prior(x, ["a", "b", "c"], ["otsu", "kmeans"], bandwidth=1)
    assert "foreground:dark" in prior.source
    fg = prior.foreground()
    # the membranes (dark) carry the density, not the bright cells
    assert float(fg[labels[:, None] == 1].mean()) > 2 * float(fg[labels[:, None] == 0].mean())
    bright = bootstrap_prior(x, ["a", "b", "c"], "otsu", foreground="bright", bandwidth=1)
    assert "foreground:bright" in bright.source


def test_ems_thins_the_masks_but_the_prior_stays_calibrated():
    x, _ = _images()
    g = torch.Generator().manual_seed(0)
    plain = bootstrap_prior(x, ["a", "b", "c"], "otsu", bandwidth=3)
    sampled = bootstrap_prior(x, ["a", "b", "c"], "otsu", ems="sample:0.1", bandwidth=3, generator=g)
    assert float(sampled.foreground(calibrated=False).mean()) < 0.2 * float(plain.foreground().mean())
    assert torch.allclose(sampled.foreground().mean((1, 2, 3)), plain.fractions[:, 1], atol=0.02)


@pytest.mark.parametrize(("text", "match"), [
    ("otsu,otsu", "at least two different methods"),
    ("otsu+local+otsu", "names each method once"),
    ("otsu,watershed", "'watershed'"),
    ("multiotsu", "binary methods"),
    ("otsu,", "an empty method name"),
])
def test_bad_bootstraps(text, match):
    with pytest.raises(ParameterError, match=match):
        parse_bootstrap(text)


def test_bootstrap_argument_errors():
    x, _ = _images()
    with pytest.raises(ParameterError, match="one name per image"):
        bootstrap_prior(x, ["a"], "otsu")
    with pytest.raises(ParameterError, match="not in the bootstrap: dfc"):
        bootstrap_prior(x, ["a", "b", "c"], "otsu", options={"dfc": {}})
