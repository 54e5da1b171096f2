"""A network trained on labels, then applied to new images (`mstool predict`), at each threshold rule.

Two ways to get the training labels, from a dataset folder with train, val and test splits and clean masks:

- ``--annotate SPEC`` (default ``region:0.25``): your own annotation. The label spec draws it on the train and
  val images (``region:0.25``: a quarter of each image exactly, 255 elsewhere), and those images with those
  labels become a dataset of their own (``OUT/mine``), trained as they are: ``mstool labels make``, then
  ``mstool train --data OUT/mine``. With no test split there, ``mstool train`` holds 20% of train out to validate
  on, and ``mstool evaluate`` scores the val split;
- ``--labels SPEC``: the dataset trained with noise from the label zoo (``mstool train --labels SPEC``),
  validated against its clean val labels.

Then ``mstool evaluate`` (which writes the val threshold), and ``mstool predict`` of the dataset's test images at
``0.5``, ``labels`` (the training labels' noise transition matrix, halfway between their foreground rates) and
``val``, each scored against the test masks (``mstool score``). Every step is the library call behind the command.

Run (about 45 s per seed on one thread for 24 images of 128 x 128, the quick preset):
    python examples/train_predict.py runs/table/er/data --out runs/tp-er
    python examples/train_predict.py runs/table/er/data --labels sample:0.1 --out runs/tp-er-sample
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from _outputs import example_folder  # examples/_outputs.py: the folder rules of the examples

from mstool.data import DataSource
from mstool.runs import evaluate_run, make_label_set, predict_folder, run_config, score_masks, train_run

THRESHOLDS = ("0.5", "labels", "val")


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, tuple[float, float]]:
    """``{rule: (Dice on the test images, threshold)}`` of one seed."""
    out = args.out / f"seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    if args.labels is None:
        make_label_set(args.data, args.annotate, out / "annotation", seed=seed, splits=("train", "val"))
        for split in ("train", "val"):  # the annotated images, as a dataset of their own
            shutil.copytree(args.data / split / "images", out / "mine" / split / "images")
            shutil.copytree(out / "annotation" / split / "labels", out / "mine" / split / "labels")
        train_run(DataSource(str(out / "mine")), out / "run", run_config("quick", overrides, seed=seed))
    else:
        train_run(DataSource(str(args.data)), out / "run", run_config("quick", overrides, labels=args.labels,
                                                                      seed=seed))
    evaluate_run(out / "run" / "model.pt", probe=False)
    found = {}
    for rule in THRESHOLDS:
        threshold = float(rule) if rule[0].isdigit() else rule
        run = predict_folder(args.data / "test" / "images", out / f"predict-{rule}", checkpoint=out / "run",
                             threshold=threshold, overlays=False)
        dice = score_masks(out / f"predict-{rule}", args.data / "test" / "labels").mean_dice
        found[rule] = (dice, run["threshold"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a dataset folder with train, val and test splits and clean masks")
    parser.add_argument("--out", type=Path, required=True, help="work folder (replaced seed by seed)")
    parser.add_argument("--annotate", default="region:0.25", help="label spec of the drawn annotation")
    parser.add_argument("--labels", default=None, help="train with this label zoo spec instead of an annotation")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the quick preset's epochs")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    example_folder(args.out)
    rows = {seed: run_seed(args, seed) for seed in seeds}
    what = f"--labels {args.labels}" if args.labels else f"--annotate {args.annotate}"
    print(f"{args.data} ({what}): test Dice per threshold rule, seeds {args.seeds}")
    for rule in THRESHOLDS:
        dice = [rows[s][rule][0] for s in seeds]
        spread = f" ± {statistics.stdev(dice):.3f}" if len(dice) > 1 else ""
        at = ", ".join(f"{rows[s][rule][1]:.3f}" for s in seeds)
        print(f"  {rule:<7} {statistics.mean(dice):.3f}{spread}  (thresholds {at})")


if __name__ == "__main__":
    main()
