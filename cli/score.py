"""`mstool score`: predicted masks against ground truth, per image and pooled."""

from __future__ import annotations

import math

import click

from mstool import names

from .options import echo, handle_errors, overwrite_option, quiet_option

_COLUMNS = ("Dice", "IoU", "precision", "recall", "predicted", "true")


@click.command("score")
@click.argument("masks", type=click.Path(exists=True))
@click.option("--truth", required=True, type=click.Path(exists=True),
              help="Ground truth: a mask file, a folder of masks, or a dataset folder of any layout (its masks).")
@click.option("--mask-mode", type=click.Choice(names.MASK_MODES), default=None,
              help="How to read the truth: binary (0/1, 0/255), instance (object ids: > 0 is foreground), "
                   "multiclass (class indices: refused unless 0/1), auto. Predicted masks are read as auto. "
                   "[default: the layout's: instance for cellpose, auto]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every score as JSON to this file (.json).")
@overwrite_option
@quiet_option
@handle_errors
def score(masks, truth, mask_mode, json_path, overwrite, quiet):
    """Score the predicted MASKS against ground truth: Dice, IoU, precision and recall per image, pooled over
    all pixels (counts summed over the images, which may differ in size) and the mean of the images' Dice.

    MASKS is a mask file, a folder of masks or an `mstool segment` or `mstool predict` output folder (its
    masks/). Masks pair with their truth by image name: the file name without extension and without a _mask or
    _masks suffix; a file named on one side pairs with the only mask on the other. Binary scoring: an instance
    mask's objects are foreground, 255 is ignored; masks with no partner are left out with a warning.
    """
    from mstool.runs import score_masks

    report = score_masks(masks, truth, mask_mode=mask_mode, json_path=json_path, overwrite=overwrite)
    rows = [(s.name, s) for s in report.images] + [("pooled", report.pooled)]
    width = max(len("image"), *(len(name) for name, _ in rows))
    click.echo(f"{'image':<{width}}" + "".join(f"{c:>11}" for c in _COLUMNS))
    for name, s in rows:
        ratios = "".join(f"{_fmt(v):>11}" for v in (s.dice, s.iou, s.precision, s.recall))
        click.echo(f"{name:<{width}}{ratios}{s.predicted:>11}{s.true:>11}")
    click.echo(f"mean Dice of {report.mean_dice_n} image(s): {_fmt(report.mean_dice)}")
    unpaired = len(report.unpaired_masks) + len(report.unpaired_truth)
    left = f", {unpaired} unpaired mask(s) left out" if unpaired else ""
    wrote = f"; wrote {json_path}" if json_path else ""
    echo(f"scored {len(report.images)} image(s) of {masks} against {truth}{left}{wrote}", quiet=quiet)


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.3f}"
