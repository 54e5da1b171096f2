"""`mstool prior`: estimate a meta-structure density prior (density.npz) and draw it."""

from __future__ import annotations

import click

from mstool import names

from .options import (
    check_spec,
    device_option,
    echo,
    handle_errors,
    mask_mode_option,
    overwrite_option,
    quiet_option,
    seed_option,
    threads_option,
)


@click.group()
def prior():
    """Estimate a meta-structure density prior (density.npz) and draw it."""


@prior.command("estimate")
@click.option("--labels", "labels", type=click.Path(exists=True, file_okay=False), default=None,
              help="Rough, sparse or noisy labels: a dataset folder, a folder of masks or the output of `mstool "
                   "labels make` (all of one size; every split unless --split says which).")
@click.option("--images", "images", type=click.Path(exists=True), default=None,
              help="No labels at all: an image, a folder of images or a dataset folder to bootstrap the prior from "
                   "(with --from).")
@click.option("--from", "from_method", default="otsu", show_default=True, metavar="METHOD[,METHOD...]",
              help="Unsupervised method that bootstraps a prior from --images (a binary method of `mstool segment "
                   "--method`), or several, comma-separated, for a consensus prior: the mean of their densities.")
@click.option("--foreground", type=click.Choice(names.FOREGROUND_RULES), default=None,
              help="With --images: which side of the intensity is foreground for the --from method. "
                   "[default: auto]")
@click.option("--ems", default=None, metavar="SPEC", callback=check_spec,
              help="Label spec applied before the density; 'paper' is the paper's EMS skeleton+shift:1+sample:0.1.")
@click.option("--kernel", type=click.Choice(names.KERNELS), default="box", show_default=True,
              help="Parzen window: the paper's box of half-width H, or a Gaussian of sigma H.")
@click.option("--bandwidth", type=click.FloatRange(min=0), default=None,
              help="Window half-width in pixels. [default: 5 with --labels; 1 with --images, a pixel-level window "
                   "that keeps the methods' masks sharp]")
@click.option("--layout", type=click.Choice(names.LAYOUT_CHOICES), default="auto", show_default=True)
@click.option("--split", "splits", multiple=True, help="Only these splits (repeatable).")
@mask_mode_option
@click.option("--page", type=click.IntRange(min=0), default=None,
              help="With --images: the page to read of multi-page TIFF images (0-based).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="The prior file to write (.npz).")
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def estimate(labels, images, from_method, foreground, ems, kernel, bandwidth, layout, splits, mask_mode, page, out,
             seed, device, threads, overwrite, quiet):
    """Estimate per-class spatial densities from labels (--labels), or bootstrap them from images with no labels
    (--images --from otsu, or a consensus such as --from otsu,local,kmeans,dfc; one image, a folder of images or a
    dataset folder), and save them as a density.npz prior."""
    from mstool.metastructure import EMS_DEFAULT
    from mstool.runs import estimate_prior_from_images, estimate_prior_from_labels

    from .options import runtime

    if (labels is None) == (images is None):
        raise click.UsageError("give exactly one of --labels and --images")
    if foreground is not None and images is None:
        raise click.BadParameter("--foreground goes with --images (labels say which side is foreground)",
                                 param_hint="--foreground")
    if images is not None:
        from mstool.errors import ParameterError
        from mstool.unsupervised import parse_bootstrap

        try:
            parse_bootstrap(from_method)
        except ParameterError as exc:
            raise click.BadParameter(str(exc), param_hint="--from") from None
    dev = runtime(device, threads)
    spec = EMS_DEFAULT if ems == "paper" else ems
    window = {} if bandwidth is None else {"bandwidth": bandwidth}  # each estimate has its own default window
    if labels is not None:
        result = estimate_prior_from_labels(labels, ems=spec, kernel=kernel, seed=seed, layout=layout,
                                            splits=splits or None, mask_mode=mask_mode, out=out,
                                            overwrite=overwrite, device=dev, **window)
    else:
        result = estimate_prior_from_images(images, method=from_method, ems=spec, kernel=kernel,
                                            options=None if foreground is None else {"foreground": foreground},
                                            seed=seed, layout=layout, splits=splits or None, page=page, out=out,
                                            overwrite=overwrite, device=dev, **window)
    n, c, h, w = result.density.shape
    known = float(result.known().float().mean()) if n else 1.0
    # partial labels: say how much the prior knows, so that a 0/1 mask meant as partial (no 255) shows itself
    unknown = "" if known == 1.0 else f"; known on {100 * known:.0f}% of the pixels (the rest unlabelled)"
    echo(f"wrote {out}: {n} densities of {h} x {w}, classes {', '.join(result.classes)}; {result.source}{unknown}",
         quiet=quiet)


@prior.command("show")
@click.argument("prior_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="The picture to write (.png, .pdf or .svg).")
@click.option("--images", type=click.Path(exists=True), default=None,
              help="Images to show beside the densities (an image, an image folder or a dataset folder), each of "
                   "its entry's size.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False), default=None,
              help="Labels to show beside the densities (a dataset folder, a mask folder or the output of `mstool "
                   "labels make`), each of its entry's size.")
@click.option("--split", "splits", multiple=True,
              help="Look for images and labels in these splits only (repeatable; default: every split).")
@click.option("--name", "names", multiple=True, help="Entries to draw (repeatable; default: the first --rows).")
@click.option("--rows", type=click.IntRange(min=1), default=4, show_default=True, help="Entries drawn by default.")
@overwrite_option
@quiet_option
@handle_errors
def show(prior_file, out, images, labels, splits, names, rows, overwrite, quiet):
    """Draw a prior: image, label and the density of each class, one row per entry."""
    from mstool.runs import show_prior

    drawn = show_prior(prior_file, out, images=images, labels=labels, names=list(names) or None, max_rows=rows,
                       splits=splits or None, overwrite=overwrite)
    echo(f"wrote {out} ({len(drawn)} entries: {', '.join(drawn)})", quiet=quiet)
