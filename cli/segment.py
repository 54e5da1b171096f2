"""`mstool segment`: unsupervised segmentation of a folder of images, optionally guided by a density prior."""

from __future__ import annotations

import click

from .options import device_option, handle_errors, overwrite_option, quiet_option, seed_option, threads_option

# Kept in step with mstool.unsupervised.METHODS by tests/cli/test_segment.py; listed here so that --help does not
# import torch.
METHOD_NAMES = ("otsu", "multiotsu", "local", "kmeans", "gmm", "dfc", "igtt")


@click.command("segment")
@click.argument("images", type=click.Path(exists=True))
@click.option("--method", type=click.Choice(METHOD_NAMES), default="otsu", show_default=True,
              help="Unsupervised method (see the README for what each does with a prior).")
@click.option("--prior", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A density.npz whose entries match the image names (from `mstool prior estimate`).")
@click.option("--prior-weight", type=click.FloatRange(min=0), default=None,
              help="iGTT: weight of the prior-consistency term in candidate selection.")
@click.option("--foreground", type=click.Choice(("bright", "dark")), default=None,
              help="Label-free cluster-to-class rule of the classical methods and DFC. [default: bright]")
@click.option("--no-ems", is_flag=True, help="iGTT without its EMS step (the paper's ablation).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A trained iGTT model.pt to segment with, instead of training.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any method option (repeatable).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--scores", is_flag=True, help="Also write float score maps (scores/NAME.tif).")
@click.option("--no-overlays", is_flag=True, help="Do not draw image | mask | prior pictures.")
@click.option("--format", "mask_format", type=click.Choice(("png", "tif")), default="png", show_default=True,
              help="Mask file format.")
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def segment(images, method, prior, prior_weight, foreground, no_ems, checkpoint, settings, out, scores, no_overlays,
            mask_format, seed, device, threads, overwrite, quiet):
    """Segment IMAGES (a folder or one file) without labels; writes masks with the input names and run.json."""
    from mstool.unsupervised import segment_folder

    from .options import parse_settings, runtime

    options = parse_settings(settings)
    if foreground is not None:
        options["foreground"] = foreground
    if prior_weight is not None:
        options["prior_weight"] = prior_weight
    if no_ems:
        options["no_ems"] = True
    dev = runtime(device, threads)
    bar = None

    def progress(event):
        # the bar starts with the first image, so an input error is reported alone on stderr
        nonlocal bar
        if quiet or event.get("event") != "image":
            return
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(desc="images", unit="image")
        bar.update(1)

    try:
        run = segment_folder(images, out, method=method, options=options, prior=prior, checkpoint=checkpoint,
                             scores=scores, overlays=not no_overlays, mask_format=mask_format, seed=seed, device=dev,
                             overwrite=overwrite, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"segmented {len(run['images'])} image(s) with {method} into {out}")
    for problem in run["problems"]:
        click.echo(f"Warning: skipped {problem}", err=True)
