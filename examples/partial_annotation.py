"""A partial annotation, two ways: a U-Net trained on it, or iGTT given it as scribbles; on the images to segment
or on separate training images.

`--on test` (the default) annotates the very images to segment, as a `compare --unsupervised
igtt:scribbles=labels:SPEC` row does: the same spec, seed and generator as that row, so the same rectangles of
`region:0.25`. The method trains on the test images with the annotation (the U-Net skips the undrawn pixels in
its loss and has no validation set, none being labelled) and is scored only where nothing was drawn. `--method
igtt` repeats the compare row itself.

`--on train` annotates the training images instead, trains there and segments the test images with the trained
network (`mstool segment --scribbles` then `mstool segment --checkpoint` for iGTT), scored on every test pixel.

The U-Net is the quick preset and its mask is its probability at 0.5; iGTT runs at its defaults. The splits come
from a finished `mstool compare` run folder.

Run (about 20 s per seed on one thread for the built-in sets):
    python examples/partial_annotation.py runs/table/er
    python examples/partial_annotation.py runs/table/er --on train --method igtt --seeds 0
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
from mstool.data import Splits, prepare_splits
from mstool.device import make_generator
from mstool.engine import TrainConfig, predict, train
from mstool.labels import apply_spec
from mstool.metrics import binary_report
from mstool.unsupervised import IGTT


def segment(args: argparse.Namespace, images: torch.Tensor, drawn: torch.Tensor, apply_to: torch.Tensor, seed: int,
            generator: torch.Generator) -> torch.Tensor:
    """``(N, 1, H, W)`` foreground scores of ``apply_to`` from ``args.method`` trained on ``images`` with
    ``drawn``."""
    if args.method == "igtt":
        options = {} if args.rounds is None else {"rounds": args.rounds}
        fit = IGTT(**options).segment(images, scribbles=drawn, generator=generator)
        result = fit if apply_to is images else fit.trained.segment(apply_to, generator=generator)
        return result.masks[:, None].float()
    with tempfile.TemporaryDirectory() as folder:
        epochs = {} if args.epochs is None else {"epochs": args.epochs}
        config = TrainConfig.from_preset(args.preset, seed=seed, **epochs)
        net = train(config, images, drawn, out_dir=folder, num_classes=2)
        return predict(net.model, apply_to)[:, -1:]


def run_seed(splits: Splits, args: argparse.Namespace, seed: int) -> float:
    # the generator a compare row draws its annotation from first, then segments with
    g = make_generator(seed)
    on_test = args.on == "test"
    images, labels = (splits.test_images, splits.test_labels) if on_test else (splits.train_images,
                                                                               splits.train_labels)
    drawn = apply_spec(labels, args.spec, generator=g, num_classes=2)
    scores = segment(args, images, drawn, images if on_test else splits.test_images, seed, g)
    truth = torch.where(drawn != IGNORE_INDEX, IGNORE_INDEX, labels) if on_test else splits.test_labels
    return float(binary_report(scores, truth, threshold=0.5)["dice"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished `mstool compare` run folder (its splits are used)")
    parser.add_argument("--spec", default="region:0.25", help="the partial annotation, as in scribbles=labels:SPEC")
    parser.add_argument("--on", choices=("test", "train"), default="test", help="which images are annotated")
    parser.add_argument("--method", choices=("unet", "igtt"), default="unet")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="quick", help="the U-Net's training preset")
    parser.add_argument("--epochs", type=int, default=None, help="the U-Net's epochs (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=None, help="iGTT's rounds (default: its own)")
    args = parser.parse_args()
    config = load_run_config(args.run)
    splits = prepare_splits(config.source, args.run, label_folders=config.label_folders)
    if splits.num_classes != 2:
        raise SystemExit(f"{args.run}: binary data only; it has {splits.num_classes} classes")
    scored = "where not annotated" if args.on == "test" else "on the test images"
    scores = []
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        scores.append(run_seed(splits, args, seed))
        print(f"seed {seed}: Dice {scored} {scores[-1]:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    spread = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    print(json.dumps({"run": str(args.run), "spec": args.spec, "on": args.on, "method": args.method,
                      "dice": scores, "mean": statistics.mean(scores), "std": spread}))


if __name__ == "__main__":
    main()
