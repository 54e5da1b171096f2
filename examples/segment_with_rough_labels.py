"""Five rough labels: a prior from a few quick annotations guides iGTT, whose network then segments the other images.

The setting: many images, and someone has spent a few minutes roughly annotating five of them. The rough labels
are never used as training targets; only their meta-structure (the spatial density of their foreground) is:

1. `mstool labels make --spec dilate:1+sample:0.3` turns the exact labels of five synthetic ER images into rough
   ones (the stand-in for a quick annotation, see below);
2. `mstool prior estimate --labels ROUGH` turns them into a density prior whose entries carry the images' names;
3. `mstool segment FIVE --method igtt --prior prior.npz` trains iGTT's U-Net on those five images, the prior
   steering which of its own masks it keeps (it saves the network as model.pt);
4. `mstool segment REST --method igtt --checkpoint model.pt` segments the other images with that network, without
   training and without labels;
5. `mstool segment ALL --method otsu` is the label-free baseline.

Why `dilate:1+sample:0.3`: a quick annotation of thin tubules is drawn with a brush a little wider than the
tubules (``dilate:1``, a systematic widening: PCL noise, which moves the meta-structure slightly) and covers only
part of them (``sample:0.3`` keeps 30% of the foreground pixels of each image: RCL noise, which thins the labels
but keeps their meta-structure). At the defaults the rough labels alone score a Dice of 0.41 against the truth,
yet their density (box half-width 5, as in the prior) correlates at 0.94 with that of the exact labels
(`mstool labels analyze --bandwidth 5`), and a density is all the prior takes from them. Pixel sampling scatters
the kept pixels where a person would leave whole branches out; `--spec markov:3,0.6,0.3,0.01` (boundary noise
after Yao et al. 2023) or `--spec scribble:0.5` model other habits, and `--spec region:0.25` a different way of
annotating: one quarter of each image drawn exactly and the rest left out (255), whose prior is unknown away from
the drawn region (README, "Partial annotations"); it is scored on the drawn region only.

The exact synthetic labels are used only to print the Dice table at the end. Outputs: OUT/data (all images, the
labelled and the other ones in flat folders, the rough labels), OUT/prior.npz, and one `mstool segment` folder per
run (masks/NAME.png, overlays, run.json, and model.pt beside the trained network's masks). iGTT without any prior
is in examples/segment_without_labels.py.

Run (from the repository root; about 1 to 2 minutes on 1 CPU thread):
    python examples/segment_with_rough_labels.py --out demo_out/rough --threads 1
quicker, with fewer iGTT rounds (any `mstool segment --set KEY=VALUE` option of iGTT):
    python examples/segment_with_rough_labels.py --set rounds=2 --set steps=10
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from _outputs import example_folder  # examples/_outputs.py: the folder rules of the examples

from mstool.io import find_images, read_mask
from mstool.metrics import binary_report


def mstool(*args: str) -> None:
    exe = Path(sys.executable).with_name("mstool")
    cmd = [str(exe) if exe.exists() else "mstool", *args]
    print("$ " + " ".join(["mstool", *args]), flush=True)
    subprocess.run(cmd, check=True)


def split_synthetic(out: Path, n: int, size: int, labelled: int, seed: int, threads: int) -> dict[str, Path]:
    """Write `n` synthetic ER images as flat folders with masks named as their images: all of them in
    OUT/data/images, the first `labelled` by name in OUT/data/labelled/{images,clean}, the others in
    OUT/data/rest/{images,truth}."""
    root = out / "data" / "synth"
    mstool("data", "synth", "--kind", "er", "--n", str(n), "--size", str(size), "--seed", str(seed),
           "--threads", str(threads), "--overwrite", str(root))
    images = sorted(root.glob("*/images/*"), key=lambda p: p.name)
    if not 0 < labelled < len(images):
        raise SystemExit(f"--labelled must be in [1, {len(images) - 1}] for {len(images)} images; got {labelled}")
    folders = {"all": out / "data" / "images", "labelled": out / "data" / "labelled", "rest": out / "data" / "rest"}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    for i, path in enumerate(images):
        mask = next((path.parent.parent / "labels").glob(f"{path.stem}.*"))
        target, masks = (folders["labelled"], "clean") if i < labelled else (folders["rest"], "truth")
        for source, folder in ((path, folders["all"]), (path, target / "images"), (mask, target / masks)):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / source.name)
    return folders


def dice(masks: Path, truth: Path) -> float:
    """Pooled Dice of the masks in `masks` against the masks of the same names in `truth` (counts summed over the
    images, each scored on its own); pixels a partial label leaves out (255, `region:s`) are not scored."""
    tp = fp = fn = 0
    for path in find_images(truth):
        mask = torch.from_numpy(read_mask(next(masks.glob(f"{path.stem}.*")), mode="auto")).long()  # 255: left out
        labels = torch.from_numpy(read_mask(path, mode="binary")).long().masked_fill(mask == 255, 255)
        mask = mask.masked_fill(mask == 255, 0)
        report = binary_report(mask[None, None].float(), labels[None], threshold=0.5)
        tp, fp, fn = tp + report["tp"], fp + report["fp"], fn + report["fn"]
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan


def trained_model(run: Path) -> Path:
    """The network an iGTT run saved: its one model file, or the run folder itself when it saved one per image
    size (`--checkpoint` then picks model-HxW.pt by size)."""
    files = json.loads((run / "run.json").read_text())["checkpoints"]
    if len(files) == 1:
        return run / next(iter(files.values()))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("segment_with_rough_labels_out"))
    parser.add_argument("--n", type=int, default=12, help="synthetic images in all")
    parser.add_argument("--size", type=int, default=128, help="side of the synthetic images in pixels")
    parser.add_argument("--labelled", type=int, default=5, help="images that get a rough label")
    parser.add_argument("--spec", default="dilate:1+sample:0.3",
                        help="label-zoo spec that makes the rough labels (`mstool labels specs`)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the rough labels and every method")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of each command (0: torch's default)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="an iGTT training option passed to `mstool segment --set` (repeatable), e.g. rounds=2")
    parser.add_argument("--no-overlays", action="store_true", help="do not draw image | mask | prior pictures")
    args = parser.parse_args()
    t0 = time.perf_counter()
    example_folder(args.out)
    common = ["--seed", str(args.seed), "--threads", str(args.threads), "--overwrite"]
    drawing = ["--no-overlays"] if args.no_overlays else []
    settings = [a for s in args.settings for a in ("--set", s)]

    print(f"== {args.n} synthetic ER images, {args.labelled} of them to be labelled roughly ==", flush=True)
    folders = split_synthetic(args.out, args.n, args.size, args.labelled, args.seed, args.threads)
    done, rest = folders["labelled"], folders["rest"]
    rough = done / "rough"
    mstool("labels", "make", "--clean", str(done / "clean"), "--spec", args.spec, "-o", str(rough), *common)

    print("== a prior from the rough labels, iGTT trained with it on the labelled images ==", flush=True)
    prior = args.out / "prior.npz"
    mstool("prior", "estimate", "--labels", str(rough), "-o", str(prior), *common)
    mstool("segment", str(done / "images"), "--method", "igtt", "--prior", str(prior), *settings,
           "-o", str(args.out / "igtt_prior"), *drawing, *common)
    model = trained_model(args.out / "igtt_prior")

    print("== the trained network on the other images; Otsu on all of them ==", flush=True)
    mstool("segment", str(rest / "images"), "--method", "igtt", "--checkpoint", str(model),
           "-o", str(args.out / "rest_igtt"), *drawing, *common)
    mstool("segment", str(folders["all"]), "--method", "otsu", "-o", str(args.out / "otsu"), *drawing, *common)

    n_done, n_rest = len(find_images(done / "images")), len(find_images(rest / "images"))
    otsu = args.out / "otsu" / "masks"
    rows = [
        (f"rough labels ({args.spec})", dice(rough, done / "clean"), math.nan),
        ("otsu", dice(otsu, done / "clean"), dice(otsu, rest / "truth")),
        ("igtt + rough-label prior", dice(args.out / "igtt_prior" / "masks", done / "clean"),
         dice(args.out / "rest_igtt" / "masks", rest / "truth")),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'Dice':<{width}}{f'labelled ({n_done})':>14}{f'others ({n_rest})':>12}")
    for name, a, b in rows:
        print(f"{name:<{width}}{a:>14.3f}{'-' if math.isnan(b) else f'{b:.3f}':>12}")
    print("Dice pooled over the images against the exact labels; iGTT trained on the labelled images only and "
          "applied unchanged to the others", flush=True)
    print(f"trained network: {model}; masks in {args.out}/{{igtt_prior,rest_igtt,otsu}}/masks; rough labels in "
          f"{rough}; finished in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
