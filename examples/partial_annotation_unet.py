"""The plain baseline for a partial annotation: a U-Net trained on the annotation of the very images to segment.

A `compare --unsupervised igtt:scribbles=labels:SPEC` row gives iGTT a partial annotation of the test images
(`region:0.25`: a quarter of each drawn exactly, the rest 255) and scores its masks where nothing was drawn. What
would the same annotation give without iGTT? This script draws the same annotation (the same spec, seed and
generator as the row, so the same rectangles), trains a U-Net on it alone (quick preset, the undrawn pixels
skipped by the loss, no validation set: none is labelled), and scores its mask at probability 0.5 on the same
undrawn pixels. It reads the test split from a finished `compare` run folder.

Run (about 20 s per seed for 5 test images of 128 x 128, one thread):
    python examples/partial_annotation_unet.py runs/table/er
    python examples/partial_annotation_unet.py runs/table/er --spec objects:0.3,ignore --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mstool import IGNORE_INDEX
from mstool.compare import load_run_config
from mstool.data import prepare_splits
from mstool.device import make_generator
from mstool.engine import TrainConfig, predict, train
from mstool.labels import apply_spec
from mstool.metrics import binary_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished `mstool compare` run folder (its test split is used)")
    parser.add_argument("--spec", default="region:0.25", help="the partial annotation, as in scribbles=labels:SPEC")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    args = parser.parse_args()
    config = load_run_config(args.run)
    splits = prepare_splits(config.source, args.run, label_folders=config.label_folders)
    if splits.num_classes != 2:
        raise SystemExit(f"{args.run}: binary data only; it has {splits.num_classes} classes")
    scores = []
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        # the generator segment_cell draws a scribbles row's annotation from first, so the same rectangles
        drawn = apply_spec(splits.test_labels, args.spec, generator=make_generator(seed), num_classes=2)
        with tempfile.TemporaryDirectory() as folder:
            epochs = {} if args.epochs is None else {"epochs": args.epochs}
            result = train(TrainConfig.from_preset(args.preset, seed=seed, **epochs), splits.test_images, drawn,
                           out_dir=folder, num_classes=2)
            probs = predict(result.model, splits.test_images)
        undrawn = torch.where(drawn != IGNORE_INDEX, IGNORE_INDEX, splits.test_labels)
        scores.append(float(binary_report(probs[:, -1:], undrawn, threshold=0.5)["dice"]))
        print(f"seed {seed}: Dice where not annotated {scores[-1]:.3f} ({time.perf_counter() - started:.0f} s)",
              flush=True)
    spread = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    print(json.dumps({"run": str(args.run), "spec": args.spec, "dice": scores, "mean": statistics.mean(scores),
                      "std": spread}))


if __name__ == "__main__":
    main()
