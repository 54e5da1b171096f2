"""`mstool predict`: masks of new images from a network that `mstool train` trained."""

from __future__ import annotations

import click

from .options import (
    device_option,
    echo,
    handle_errors,
    mask_output_options,
    overwrite_option,
    quiet_option,
    threads_option,
)


def _threshold(ctx, param, value):
    if value in ("auto", "val", "labels"):
        return value
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"expected auto, val, labels or a number between 0 and 1; got {value!r}") from None
    if not 0 < number < 1:
        raise click.BadParameter(f"expected a number strictly between 0 and 1; got {value}")
    return number


@click.command("predict")
@click.argument("images", type=click.Path(exists=True))
@click.option("--checkpoint", required=True, type=click.Path(exists=True),
              help="A training run folder of `mstool train` (its model.pt), or a model.pt / checkpoint.pt.")
@click.option("--threshold", callback=_threshold, default="auto", show_default=True,
              metavar="auto|val|labels|NUMBER",
              help="Binary networks: foreground where the probability is at least this. labels: halfway between "
                   "the training labels' foreground rates on background and on foreground (their noise "
                   "transition matrix: 0.5 for clean labels, 0.05 for a 10% sample); val: the "
                   "threshold `mstool evaluate` chose on validation (its evaluation.json beside the model); auto: "
                   "val when there is one, else labels.")
@click.option("--tile", type=click.IntRange(min=16), default=None,
              help="Predict in overlapping windows of this side. [default: whole images up to 512 px a side, "
                   "windows of 512 beyond]")
@mask_output_options(scores="float probability maps", overlays="image | mask")
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def predict(images, checkpoint, threshold, tile, out, splits, page, scores, no_overlays, mask_format, device, threads,
            overwrite, quiet):
    """Segment IMAGES with a trained network: a folder of images, a dataset folder (its images, never its
    masks) or one image file. Writes masks with the image names, and run.json, in the layout of `mstool segment`,
    so `mstool score` reads either.

    Each image is z-scored as in training and predicted at its own size. A binary network's masks are its
    foreground probability at the threshold (run.json says which and where it came from); a multi-class
    network's are the most probable class.
    """
    from mstool.runs import predict_folder

    from .options import runtime

    dev = runtime(device, threads)
    bar = _Bar(quiet=quiet)
    try:
        run = predict_folder(images, out, checkpoint=checkpoint, threshold=threshold, tile=tile, scores=scores,
                             overlays=not no_overlays, mask_format=mask_format, splits=splits or None, page=page,
                             device=dev, overwrite=overwrite, progress=bar)
    finally:
        bar.close()
    skipped = f", {len(run['problems'])} skipped" if run["problems"] else ""
    rule = "arg-max" if run["threshold"] is None else f"threshold {run['threshold']:.3g} ({run['threshold_source']})"
    echo(f"predicted {len(run['images'])} image(s) with {run['checkpoint']} into {out}, {rule}{skipped}", quiet=quiet)


class _Bar:
    """One bar for the images, started by the ``start`` event (sent once the inputs are checked, so an input error
    is reported alone on stderr)."""

    def __init__(self, *, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        if event.get("event") == "start":
            self.bar = tqdm(total=event["images"], desc="images", unit="image")
        elif event.get("event") == "image" and self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
