"""`mstool segment`: unsupervised segmentation of a folder of images, optionally guided by a density prior."""

from __future__ import annotations

import click

from mstool import names

from .options import (
    device_option,
    echo,
    handle_errors,
    mask_output_options,
    overwrite_option,
    quiet_option,
    seed_option,
    threads_option,
)


@click.command("segment")
@click.argument("images", type=click.Path(exists=True))
@click.option("--method", type=click.Choice(names.UNSUPERVISED_METHODS), default="otsu", show_default=True,
              help="Unsupervised method (see the README for what each does with a prior).")
@click.option("--prior", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A density.npz whose entries match the image names (from `mstool prior estimate`).")
@click.option("--scribbles", type=click.Path(exists=True), default=None,
              help="Partial labels for igtt or dfc: a folder of masks named like the images (or one mask "
                   "file), 0 background, 1 foreground, 255 not labelled (as `mstool labels make --spec "
                   "region:0.25` writes them).")
@click.option("--prior-weight", type=click.FloatRange(min=0), default=None,
              help="iGTT: weight of the prior-consistency term in candidate selection.")
@click.option("--foreground", type=click.Choice(names.FOREGROUND_RULES), default=None,
              help="Which side of the intensity is foreground, for every binary method (iGTT included); auto "
                   "decides for each group of images: background is what most of an image is locally, so the "
                   "foreground is the side the image leans to against its 15 x 15 local median. "
                   "[default: auto]")
@click.option("--no-ems", is_flag=True, help="iGTT without its EMS step (the paper's ablation).")
@click.option("--checkpoint", type=click.Path(exists=True), default=None,
              help="Segment with trained iGTT networks instead of training: a model file (model.pt or "
                   "model-HxW.pt, used for every size) or an earlier output folder (its model-HxW.pt per size, "
                   "else its model.pt).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any method option (repeatable).")
@mask_output_options(scores="float score maps", overlays="image | mask | prior | scribbles")
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def segment(images, method, prior, scribbles, prior_weight, foreground, no_ems, checkpoint, settings, out, splits,
            page, scores, no_overlays, mask_format, seed, device, threads, overwrite, quiet):
    """Segment IMAGES without labels: a folder of images, a dataset folder (its images, never its masks) or one
    image file. Writes masks with the image names, and run.json.

    Images larger than 512 pixels a side are handled in tiles by dfc and igtt (--set tile=N to change), so a
    4096 x 4096 image needs no more memory than a few 512 x 512 ones. Progress: a bar for the images and, for
    igtt and dfc, one for the rounds (updates) of the current network.
    """
    from mstool.runs import segment_folder

    from .options import parse_settings, runtime

    options = parse_settings(settings)
    if foreground is not None:
        options["foreground"] = foreground
    if prior_weight is not None:
        options["prior_weight"] = prior_weight
    if no_ems:
        options["no_ems"] = True
    dev = runtime(device, threads)
    bars = _Bars(quiet=quiet)
    try:
        run = segment_folder(images, out, method=method, options=options, prior=prior, scribbles=scribbles,
                             checkpoint=checkpoint, scores=scores, overlays=not no_overlays, mask_format=mask_format,
                             splits=splits or None, page=page, seed=seed, device=dev, overwrite=overwrite,
                             progress=bars)
    finally:
        bars.close()
    skipped = f", {len(run['problems'])} skipped" if run["problems"] else ""
    echo(f"segmented {len(run['images'])} image(s) with {method} into {out}{skipped}", quiet=quiet)


class _Bars:
    """A bar for the images (its total from the ``start`` event) and a nested one for the rounds of the network
    being trained (iGTT rounds, DFC updates), driven by :func:`mstool.unsupervised.segment_folder`'s events.

    The image bar starts with the ``start`` event, sent once every input is checked, so that an input error is
    reported alone on stderr.
    """

    def __init__(self, *, quiet: bool):
        self.quiet = quiet
        self.images = None
        self.rounds = None
        self.run = None  # which network the rounds bar follows: (size, index of the image for DFC)

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        kind = event.get("event")
        if kind == "start":
            self.images = tqdm(total=event["images"], desc="images", unit="image", position=0)
        elif kind == "round":
            run = (tuple(event.get("size", ())), event.get("index"))
            if self.rounds is None or run != self.run or event["round"] <= self.rounds.n:
                self.run = run
                dfc = event.get("index") is not None
                desc = f"image {event['index'] + 1}/{event['images']}: updates" if dfc else "rounds"
                unit = "update" if dfc else "round"
                if self.rounds is None:
                    self.rounds = tqdm(total=event["rounds"], desc=desc, unit=unit, position=1, leave=False)
                else:
                    self.rounds.reset(total=event["rounds"])
                    self.rounds.unit = unit
                    self.rounds.set_description(desc)
            self.rounds.update(event["round"] - self.rounds.n)
        elif kind in ("group", "image"):
            self._close_rounds()
            if kind == "image" and self.images is not None:
                self.images.update(1)

    def _close_rounds(self) -> None:
        if self.rounds is not None:
            self.rounds.close()
            self.rounds, self.run = None, None

    def close(self) -> None:
        self._close_rounds()
        if self.images is not None:
            self.images.close()
            self.images = None
