"""A folder of images and no labels at all: segment it with Otsu and with iGTT, with and without a bootstrapped prior.

Four `mstool` commands, each one a user can run alone:

1. `mstool prior estimate --images DIR --from otsu` bootstraps a meta-structure prior (a per-image foreground
   density) from the Otsu masks of the images themselves: no label is used anywhere;
2. `mstool segment DIR --method otsu` is the label-free baseline;
3. `mstool segment DIR --method igtt` trains a U-Net on the masks it selects itself (iterative ground-truth
   training with EMS, Luo et al. 2022);
4. `mstool segment DIR --method igtt --prior prior.npz` does the same with the prior in its candidate selection.

By default the images are built-in synthetic ER micrographs (`mstool data synth --kind er`, every split copied into
one flat folder), whose exact labels are then used only to print a Dice table at the end (what `mstool score
OUT/<method> --truth TRUTH` prints, through its library call `mstool.runs.score_masks`). Each method writes
OUT/<method>/masks/NAME.png with the input names, overlays (image | mask | prior) and a run.json.

Run (from the repository root; about 2 minutes on 1 CPU thread):
    python examples/segment_without_labels.py --out demo_out/unlabelled --threads 1
on your own folder of images (optionally with masks of the same names to score against):
    python examples/segment_without_labels.py --images my_images/ --truth my_masks/ --out runs/mine
quicker, with fewer iGTT rounds (any `mstool segment --set KEY=VALUE` option of iGTT):
    python examples/segment_without_labels.py --set rounds=2 --set steps=10
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _outputs import example_folder  # examples/_outputs.py: the folder rules of the examples

from mstool.runs import score_masks

METHODS = {"otsu": ("otsu", False), "igtt": ("igtt", False), "igtt_prior": ("igtt", True)}
"""Output folder -> (method of `mstool segment`, whether it gets the prior)."""


def mstool(*args: str) -> None:
    exe = Path(sys.executable).with_name("mstool")
    cmd = [str(exe) if exe.exists() else "mstool", *args]
    print("$ " + " ".join(["mstool", *args]), flush=True)
    subprocess.run(cmd, check=True)


def synthetic_folder(out: Path, n: int, size: int, seed: int, threads: int) -> tuple[Path, Path]:
    """Write `n` synthetic ER images and copy every split into one flat image folder and one truth folder."""
    root = out / "data" / "synth"
    mstool("data", "synth", "--kind", "er", "--n", str(n), "--size", str(size), "--seed", str(seed),
           "--threads", str(threads), "--overwrite", str(root))
    images, truth = out / "data" / "images", out / "data" / "truth"
    for folder in (images, truth):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for path in sorted(root.glob("*/images/*")):
        shutil.copy2(path, images / path.name)
    for path in sorted(root.glob("*/labels/*")):
        shutil.copy2(path, truth / path.name)
    return images, truth


def print_table(out: Path, truth: Path) -> None:
    """Dice of each method's masks against the truth (`mstool score OUT/<method> --truth TRUTH` in Python)."""
    print(f"{'method':<12}{'Dice':>8}{'Dice/img':>10}{'images':>8}{'seconds':>9}")
    for name in METHODS:
        report = score_masks(out / name, truth)
        seconds = json.loads((out / name / "run.json").read_text())["seconds"]
        print(f"{name:<12}{report.pooled.dice:>8.3f}{report.mean_dice:>10.3f}{len(report.images):>8d}"
              f"{seconds:>9.1f}")
    print("Dice: pooled over all pixels of the images; Dice/img: mean of the images' own Dice; seconds: the "
          "method's own time (run.json), without start-up", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("segment_without_labels_out"))
    parser.add_argument("--images", type=Path, default=None,
                        help="your folder of images, all of one size as the prior needs (default: synthetic ER images)")
    parser.add_argument("--truth", type=Path, default=None,
                        help="masks with the images' names, used only to print Dice (synthetic data has its own)")
    parser.add_argument("--n", type=int, default=8, help="synthetic images")
    parser.add_argument("--size", type=int, default=128, help="side of the synthetic images in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the prior and every method")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of each command (0: torch's default)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="an iGTT option passed to `mstool segment --set` (repeatable), e.g. rounds=2")
    parser.add_argument("--no-overlays", action="store_true", help="do not draw image | mask | prior pictures")
    args = parser.parse_args()
    t0 = time.perf_counter()
    example_folder(args.out)
    common = ["--seed", str(args.seed), "--threads", str(args.threads), "--overwrite"]
    drawing = ["--no-overlays"] if args.no_overlays else []
    truth_dir = args.truth
    if args.images is None:
        print("== built-in synthetic ER images (their labels only score the result) ==", flush=True)
        images, truth_dir = synthetic_folder(args.out, args.n, args.size, args.seed, args.threads)
    else:
        images = args.images
    prior = args.out / "prior.npz"
    print("== a prior bootstrapped from Otsu masks, no labels ==", flush=True)
    mstool("prior", "estimate", "--images", str(images), "--from", "otsu", "-o", str(prior), *common)
    print("== segmentation: Otsu, iGTT, iGTT with the prior ==", flush=True)
    for name, (method, with_prior) in METHODS.items():
        extra = ["--prior", str(prior)] if with_prior else []
        if method == "igtt":
            extra += [a for s in args.settings for a in ("--set", s)]
        mstool("segment", str(images), "--method", method, *extra, "-o", str(args.out / name), *drawing, *common)
    if truth_dir is not None:
        print_table(args.out, truth_dir)
    print(f"masks in {args.out}/{{{','.join(METHODS)}}}/masks, overlays beside them, prior in {prior}; "
          f"finished in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
