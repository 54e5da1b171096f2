"""`make demo`: the main job on built-in data, told as the paper's story with mstool's own commands.

1. Built-in synthetic microscopy: make an ER-like dataset (exact ground truth) and check the folder.
2. Meta-structures of labels: make the sampled, flipped, dilated, skeleton and random label sets of step 3 with the
   label zoo, analyse them (noise transition matrix, rank, mutual information, boundary fraction, taxonomy
   CL/RCL/PCL/RL), audit them before any training (the expected-density score and a verdict per set, which step 3
   checks), show that a 10% sample keeps the clean meta-structure while a dilation moves it, and estimate an EMS
   density prior.
3. The paper's experiment: train the same U-Net on clean, sampled, flipped, dilated, skeleton and random labels
   and compare them honestly (threshold and polarity chosen on validation), with a report. By default one seed and
   100 epochs per label set; ``--full`` runs the paper table: 10 label specs x 3 seeds at the preset's 300 epochs.
4. The positive result: segment with no labels at all, on ER (bright tubules) and on EM-like tissue (dark
   membranes, with dark organelles that are not membrane). Bootstrap a consensus density prior from the Otsu,
   local-threshold and k-means masks and segment the test images with iGTT guided by it (`mstool segment
   --prior`; the polarity is found from the images); make a partial annotation (one quarter of each test image
   labelled exactly, `region:0.25`, the rest unknown), draw its prior and segment with the annotation as iGTT's
   scribbles (`mstool segment --scribbles`); annotate the training images the same way, train a U-Net on that
   annotation (`mstool train --labels NAME=FOLDER`) and segment the unannotated test images with it (`mstool
   predict`, scored by `mstool score`); then add the unsupervised methods (Otsu, the minimum-error
   threshold, local threshold, iGTT with EMS, without EMS, with the consensus prior, with the partial
   annotation's prior and with the annotation as scribbles, scored where it drew nothing; ``--full`` adds
   k-means, DFC with and without a prior and with the scribbles, and iGTT with an Otsu prior, over 3 seeds) to
   the comparison of step 3, and run the same on EM beside a U-Net trained on its clean labels.

Every step is a command a user can run alone; this script only chains them, prints where the outputs went and
how long each step took. Run: python examples/demo.py --out demo_out (about 5 minutes on 2 CPU cores), or
python examples/demo.py --out demo_out --full (the paper's table, about 33 minutes, estimated).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _outputs import example_folder  # examples/_outputs.py: the folder rules of the examples

HERE = Path(__file__).resolve().parent


def mstool(*args: str) -> None:
    exe = Path(sys.executable).with_name("mstool")
    cmd = [str(exe) if exe.exists() else "mstool", *args]
    print("$ " + " ".join(["mstool", *args]), flush=True)
    subprocess.run(cmd, check=True)


def step_data(out: Path, n: int, size: int) -> Path:
    root = out / "data" / "er"
    mstool("data", "synth", "--kind", "er", "--n", str(n), "--size", str(size), "--seed", "0", "--overwrite", str(root))
    mstool("data", "check", str(root), "--json", str(out / "data" / "er_check.json"), "--overwrite")
    subprocess.run([sys.executable, str(HERE / "synthetic_gallery.py"), "--out", str(out / "synthetic_gallery.png")],
                   check=True)
    return root


def step_labels(out: Path, root: Path, specs: tuple[str, ...]) -> None:
    noisy = []
    for spec in specs:
        target = out / "labels" / spec.replace(":", "_").replace(",", "_")
        mstool("labels", "make", "--clean", str(root), "--spec", spec, "--seed", "0", "--overwrite", "-o", str(target))
        noisy.append(target)
    mstool("labels", "analyze", "--clean", str(root), *[a for p in noisy for a in ("--noisy", str(p))],
           "--json", str(out / "labels" / "analysis.json"), "--overwrite")
    # Before any training: will these labels train like clean ones? (the expected-density score, step 3 checks it)
    mstool("labels", "audit", "--clean", str(root), *[a for p in noisy for a in ("--noisy", str(p))],
           "--pictures", str(out / "labels" / "audit"), "--json", str(out / "labels" / "audit.json"), "--overwrite")
    prior = out / "prior" / "density.npz"
    mstool("prior", "estimate", "--labels", str(root), "--split", "train", "--ems", "paper", "--bandwidth", "4",
           "--overwrite", "-o", str(prior))
    mstool("prior", "show", str(prior), "--images", str(root), "--labels", str(root), "--rows", "3",
           "--overwrite", "-o", str(out / "prior" / "prior.png"))
    subprocess.run([sys.executable, str(HERE / "metastructure.py"), "--out", str(out / "metastructure")], check=True)


# The default tells the story in minutes: one seed, 100 epochs (each cell's curve has levelled off on built-in ER),
# one label set per family; --full is the paper's table (the suite's default specs, 3 seeds, 300 epochs).
QUICK_LABELS = "clean,sample:0.1,flip:0.3,0.3,dilate:2,skeleton,random:0.3"
QUICK_EPOCHS = "100"
# Step 2 audits the noisy label sets that step 3 trains on, so each audit verdict is checked by a trained network
# (flip:0.45,0.45 is in the full suite, flip:0.3,0.3 in the quick one).
AUDIT_QUICK = ("sample:0.1", "flip:0.3,0.3", "dilate:2", "skeleton", "random:0.3")
AUDIT_FULL = ("sample:0.1", "flip:0.45,0.45", "dilate:2", "skeleton", "random:0.3")


def _suite_args(full: bool, seeds: str) -> list[str]:
    return ["--preset", "quick", "--seeds", seeds] + ([] if full else ["--epochs", QUICK_EPOCHS])


def step_compare(out: Path, seeds: str, full: bool) -> None:
    labels = [] if full else ["--labels", QUICK_LABELS]
    mstool("compare", "--data", "synth:er", *_suite_args(full, seeds), *labels, "-o", str(out / "compare" / "er"))
    print((out / "compare" / "er" / "summary.md").read_text(), flush=True)


CONSENSUS = "otsu,local,kmeans"
REGION = "region:0.25"
UNSUPERVISED_QUICK = (f"otsu,minerror,local,igtt,igtt:no-ems,igtt:prior=otsu+local+kmeans,igtt:prior=labels:{REGION},"
                      f"igtt:scribbles=labels:{REGION}")
UNSUPERVISED = ("otsu,minerror,local,kmeans,dfc,dfc:prior=otsu+local+kmeans,igtt,igtt:no-ems,igtt:prior=otsu,"
                f"igtt:prior=otsu+local+kmeans,igtt:prior=labels:{REGION},igtt:scribbles=labels:{REGION},"
                f"dfc:scribbles=labels:{REGION}")


def step_unsupervised(out: Path, root: Path, n: int, size: int, seeds: str, full: bool) -> None:
    # ER (bright tubules) and EM (dark membranes around bright cells, dark organelles that are not membrane):
    # the same commands, no --foreground, no label; the polarity is found from the images (run.json says why)
    em = out / "data" / "em"
    mstool("data", "synth", "--kind", "em", "--n", str(n), "--size", str(size), "--seed", "0", "--overwrite", str(em))
    for kind, data in (("er", root), ("em", em)):
        images = data / "test" / "images"
        prior = out / "unsupervised" / f"{kind}_consensus_prior.npz"
        mstool("prior", "estimate", "--images", str(images), "--from", CONSENSUS, "--bandwidth", "1", "--overwrite",
               "-o", str(prior))
        mstool("segment", str(images), "--method", "igtt", "--prior", str(prior), "--overwrite",
               "-o", str(out / "unsupervised" / f"{kind}_igtt"))
        # a partial annotation: one quarter of each test image drawn exactly, the rest left out (255); its prior
        # is unknown away from the drawn region, and iGTT reads it only where it is known
        region = out / "unsupervised" / f"{kind}_region_labels"
        mstool("labels", "make", "--clean", str(data), "--split", "test", "--spec", REGION, "--seed", "0",
               "--overwrite", "-o", str(region))
        region_prior = out / "unsupervised" / f"{kind}_region_prior.npz"
        mstool("prior", "estimate", "--labels", str(region), "--overwrite", "-o", str(region_prior))
        mstool("prior", "show", str(region_prior), "--images", str(images), "--labels", str(region), "--rows", "2",
               "--overwrite", "-o", str(out / "unsupervised" / f"{kind}_region_prior.png"))
        # the annotation itself, as iGTT's targets where it is drawn (measured: far more than its prior gives)
        mstool("segment", str(images), "--method", "igtt", "--scribbles", str(region), "--overwrite",
               "-o", str(out / "unsupervised" / f"{kind}_igtt_scribbles"))
        # the same kind of annotation on the training images instead, as a U-Net's labels; the network then
        # segments the test images, which nobody annotated
        drawn = out / "unsupervised" / f"{kind}_train_region_labels"
        mstool("labels", "make", "--clean", str(data), "--split", "train", "--spec", REGION, "--seed", "0",
               "--overwrite", "-o", str(drawn))
        net = out / "unsupervised" / f"{kind}_unet_on_annotation"
        mstool("train", "--data", str(data), "--labels", f"drawn={drawn}",
               *([] if full else ["--epochs", QUICK_EPOCHS]), "-q", "-o", str(net))
        predicted = out / "unsupervised" / f"{kind}_unet_predict"
        mstool("predict", str(images), "--checkpoint", str(net), "--overwrite", "-o", str(predicted))
        mstool("score", str(predicted), "--truth", str(data / "test"))
    # ER: the same run folder as step 3 (its supervised cells are kept, the unsupervised ones are added);
    # EM: a run of its own, with the supervised reference trained on its clean labels
    entries = UNSUPERVISED if full else UNSUPERVISED_QUICK
    mstool("compare", "--data", "synth:er", *_suite_args(full, seeds), "--labels", "none",
           "--unsupervised", entries, "-o", str(out / "compare" / "er"))
    mstool("compare", "--data", "synth:em", *_suite_args(full, seeds), "--labels", "clean",
           "--unsupervised", entries, "-o", str(out / "compare" / "em"))
    for kind in ("er", "em"):
        summary = (out / "compare" / kind / "summary.md").read_text()
        print(f"-- {kind} --\n" + summary[summary.find("## Unsupervised"):], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="mstool demo on built-in synthetic data")
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--n", type=int, default=24, help="images in the synthetic dataset")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seeds", default=None, help="seeds of the comparison suite (default 0; 0,1,2 with --full)")
    parser.add_argument("--full", action="store_true",
                        help="the paper's table: 10 label specs x 3 seeds at 300 epochs, every unsupervised entry "
                             "(about 33 minutes on 2 CPU cores, estimated)")
    parser.add_argument("--clean", action="store_true", help="remove the output folder first")
    parser.add_argument("--steps", default="1,2,3,4", help="steps to run (default all: 1,2,3,4)")
    args = parser.parse_args()
    example_folder(args.out, clean=args.clean)
    steps = {s.strip() for s in args.steps.split(",")}
    seeds = args.seeds or ("0,1,2" if args.full else "0")
    t0 = time.perf_counter()
    times = []

    def timed(title: str, run):
        print(f"== {title} ==", flush=True)
        start = time.perf_counter()
        result = run()
        times.append((title, time.perf_counter() - start))
        print(f"-- {title}: {times[-1][1]:.0f} s", flush=True)
        return result

    # always: the later steps read its folder
    root = timed("1. built-in synthetic microscopy", lambda: step_data(args.out, args.n, args.size))
    if "2" in steps:
        audit = AUDIT_FULL if args.full else AUDIT_QUICK
        timed("2. meta-structures of noisy labels", lambda: step_labels(args.out, root, audit))
    if "3" in steps:
        timed("3. the noisy-label comparison suite", lambda: step_compare(args.out, seeds, args.full))
    if "4" in steps:
        timed("4. unsupervised segmentation with meta-structure priors",
              lambda: step_unsupervised(args.out, root, args.n, args.size, seeds, args.full))
    for title, seconds in times:
        print(f"{seconds:7.0f} s  {title}", flush=True)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {args.out}/", flush=True)


if __name__ == "__main__":
    main()
