"""The pictures of mstool.viz hold what they claim to draw, not just a file on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mstool.errors import ParameterError
from mstool.viz import plot_label_panel, plot_prior
from tests.pictures import assert_picture_has_content


def _square(size: int = 32) -> np.ndarray:
    label = np.zeros((size, size), np.int64)
    label[8:24, 8:24] = 1
    return label


def test_plot_prior_draws_images_labels_and_densities(tmp_path):
    label = _square()
    density = torch.zeros(2, 2, 32, 32)
    density[:, 1] = torch.from_numpy(label).float()
    density[:, 0] = 1 - density[:, 1]
    image = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    plot_prior(tmp_path / "p.png", density, names=["a", "b"], classes=["background", "nucleus"],
               images=[image, None], labels=[label, label], title="prior")
    rgb = assert_picture_has_content(tmp_path / "p.png", min_side=200)
    # two rows of four panels (image, label, two densities) make a picture wider than it is tall
    assert rgb.shape[1] > rgb.shape[0]
    # magma's top end (density 1) is a light yellow: the densities were drawn, not left blank (the colour bars
    # alone, as drawn for all-zero densities, make under 1% of the picture light yellow)
    light_yellow = (rgb[..., 0] > 230) & (rgb[..., 1] > 200) & (rgb[..., 2] > 120) & (rgb[..., 2] < 220)
    assert light_yellow.mean() > 0.05


def test_plot_label_panel_draws_every_kind(tmp_path):
    label = _square()
    columns = [("image", label.astype(np.float32), "image"), ("label", label, "label"),
               ("density", label * 0.5, "density"), ("difference", label - 0.5, "difference")]
    plot_label_panel(tmp_path / "panel.png", columns, title="panel", num_classes=2)
    assert_picture_has_content(tmp_path / "panel.png", min_side=100)


def test_plot_prior_rejects_a_density_without_rows(tmp_path):
    with pytest.raises(ParameterError, match=r"`density` must be \(N, C, H, W\) with N >= 1; got \(0, 1, 4, 4\)"):
        plot_prior(tmp_path / "p.png", torch.zeros(0, 1, 4, 4), names=[], classes=["x"])
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("picture, message", [
    (np.full((100, 100, 3), 255, np.uint8), "only 1 colour"),
    (np.full((20, 200, 3), 128, np.uint8), "smaller than 64 on a side"),
])
def test_the_picture_check_catches_blank_pictures(tmp_path, picture, message):
    Image.fromarray(picture).save(tmp_path / "blank.png")
    with pytest.raises(AssertionError, match=message):
        assert_picture_has_content(tmp_path / "blank.png")
