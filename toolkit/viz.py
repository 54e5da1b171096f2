"""Pictures: matplotlib figures saved as PNG, headless (Agg backend), written atomically.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ._fs import atomic_path
from .errors import ParameterError

__all__ = ["pyplot", "save_figure", "label_cmap", "show_label", "plot_prior", "plot_label_panel"]


def pyplot():
    """matplotlib's pyplot on a file-only backend (Agg): imported on first use, so ``import mstool`` stays light."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 90) -> None:
    """Save a figure as PNG atomically and close it."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)


def label_cmap(num_classes: int):
    """A colour map for class indices: black background, then tab10 colours; ignore (255) is shown grey."""
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    colours = [(0, 0, 0)] + [plt.get_cmap("tab10")(i % 10)[:3] for i in range(max(num_classes - 1, 1))]
    if num_classes == 2:
        colours = [(0, 0, 0), (1, 1, 1)]
    return ListedColormap(colours)


def show_label(ax, label: np.ndarray, num_classes: int) -> None:
    """Draw a label map ``(H, W)`` on ``ax`` in the label colours, the ignore index (255) grey, in a thin frame."""
    from matplotlib.patches import Rectangle  # matplotlib is imported on first use (see pyplot)

    shown = np.ma.masked_equal(label, 255)
    cmap = label_cmap(num_classes).with_extremes(bad=(0.5, 0.5, 0.5))
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=max(num_classes - 1, 1), interpolation="nearest")
    # a thin frame, so that an all-foreground (white) label still reads as a panel on a white figure
    h, w = label.shape[:2]
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="0.5", linewidth=1.0, clip_on=False))


def plot_prior(
    path: str | os.PathLike,
    density: torch.Tensor,
    *,
    names: Sequence[str],
    classes: Sequence[str],
    images: Sequence[torch.Tensor | np.ndarray | None] | None = None,
    labels: Sequence[torch.Tensor | np.ndarray | None] | None = None,
    title: str = "",
) -> None:
    """One row per entry: image (if given), label (if given), then the density of each class.

    Args:
        path: the PNG to write.
        density: ``(N, C, H, W)`` densities; pixels whose densities are all 0 (unknown) are drawn in grey.
        names: ``N`` row titles.
        classes: ``C`` class names.
        images: ``N`` images ``(H, W)`` or ``(C, H, W)`` (or ``None`` entries); shown in grey.
        labels: ``N`` labels ``(H, W)`` (or ``None`` entries).
    """
    if density.dim() != 4 or density.shape[0] == 0:
        raise ParameterError(f"`density` must be (N, C, H, W) with N >= 1; got {tuple(density.shape)}")
    plt = pyplot()
    n, c = density.shape[:2]
    has_img = images is not None and any(x is not None for x in images)
    has_lab = labels is not None and any(x is not None for x in labels)
    cols = c + int(has_img) + int(has_lab)
    fig, axes = plt.subplots(n, cols, figsize=(2.6 * cols, 2.6 * n), squeeze=False)
    dens = density.detach().float().cpu().numpy()
    # a pixel whose densities are all 0 is one the prior knows nothing of (Prior.known): drawn in grey, not as 0
    dens = np.where(dens.sum(1, keepdims=True) > 0, dens, np.nan)
    cmap = _density_cmap(plt)
    for i in range(n):
        col = 0
        if has_img:
            img = images[i]
            if img is not None:
                img = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img, dtype=np.float32)
                img = img.mean(0) if img.ndim == 3 else img
                axes[i, col].imshow(img, cmap="gray")
            axes[i, col].set_title(f"{names[i]}: image", fontsize=8)
            col += 1
        if has_lab:
            lab = labels[i]
            if lab is not None:
                lab = np.asarray(lab.detach().cpu() if isinstance(lab, torch.Tensor) else lab)
                show_label(axes[i, col], lab, len(classes))
            axes[i, col].set_title("label", fontsize=8)
            col += 1
        for k in range(c):
            top = float(np.nanmax(dens[i, k])) if np.isfinite(dens[i, k]).any() else 0.0
            im = axes[i, col + k].imshow(dens[i, k], cmap=cmap, vmin=0, vmax=max(top, 1e-6))
            unknown = " (grey: unknown)" if np.isnan(dens[i, k]).any() else ""
            axes[i, col + k].set_title(f"density: {classes[k]}{unknown}", fontsize=8)
            fig.colorbar(im, ax=axes[i, col + k], fraction=0.046, pad=0.02)
        for ax in axes[i]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def _density_cmap(plt):
    """The colour map of densities: magma, with NaN (a pixel the prior knows nothing of) in grey."""
    return plt.get_cmap("magma").with_extremes(bad="0.6")


def plot_label_panel(
    path: str | os.PathLike,
    columns: Sequence[tuple[str, np.ndarray, str]],
    *,
    title: str = "",
    num_classes: int = 2,
) -> None:
    """A row of panels; each column is ``(title, array, kind)`` with kind ``image``, ``label``, ``density`` or
    ``difference`` (signed, in ``[-1, 1]``, on a diverging scale centred on 0)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(2.8 * len(columns), 3.0), squeeze=False)
    for ax, (name, arr, kind) in zip(axes[0], columns):
        if kind == "label":
            show_label(ax, np.asarray(arr), num_classes)
        elif kind == "density":  # NaN (a prior's unknown pixels) in grey
            ax.imshow(arr, cmap=_density_cmap(plt), vmin=0)
        elif kind == "difference":
            ax.imshow(arr, cmap="coolwarm", vmin=-1, vmax=1)
        else:
            ax.imshow(arr, cmap="gray")
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
