"""DFC at mstool's defaults against DFC at the published settings: Dice and seconds per image, in one run.

Kim, Kanezaki and Tanaka (IEEE TIP 2020) train a 100-channel network on the whole image, here for up to 200
iterations (stopping at 3 clusters), with SGD at lr 0.1 and continuity weight 1 (their demo.py's ``stepsize_con``),
and their clusters become foreground by a label-free split of the cluster means (``mapping="intensity"``).
mstool's defaults train 64 channels on random 64 x 64 crops with the same optimiser and weight, and call a cluster
foreground where most of its pixels are locally bright (``mapping="local"``). Both sides are on the same images
with the same polarity rule (``foreground="auto"``), alternating configuration by configuration and set by set,
the best of ``--repeats`` timings kept (the machines are shared). Dice is per image against the exact labels,
averaged, then mean ± std over ``--seeds`` (each seed draws other networks and crops); seconds per image are
averaged over the seeds.

A third configuration, the defaults with the authors' cluster rule (``mapping="intensity"``, mstool's default
until 2026-12-07), shows what each change gains: the training (crops, width) against the published network, the
mapping against the cluster means.

Sets: the built-in kinds (``--n`` images of ``--size`` pixels, seed 0) and, when the DSB sample is present, its four
256 x 256 corner crops.

``--precision bf16`` adds every configuration with bfloat16 updates (:class:`mstool.device.MixedPrecision`), timed
in the same alternation, to show what a CPU with bfloat16 units (or a GPU) gains at what Dice.

Usage:
    python benchmarks/bench_dfc.py                                 # er, mito, nuc, em, dsb; 2 images each
    python benchmarks/bench_dfc.py --sets nuc,dsb --n 4 --threads 1
    python benchmarks/bench_dfc.py --precision bf16 --threads 1
    python benchmarks/bench_dfc.py --seeds 0,1,2 --threads 1
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mstool.data import synthesize
from mstool.device import PRECISIONS, describe_device, set_threads
from mstool.errors import MstoolWarning
from mstool.io import normalize_image, read_image, read_mask
from mstool.unsupervised import DFC

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018-nuclei-sample"
CONFIGS = {
    "mstool defaults": {},
    "published (q=100, 200 it, 3 labels, lr 0.1, mu 1, means)": {"channels": 100, "iterations": 200,
                                                                 "min_labels": 3, "lr": 0.1, "continuity": 1.0,
                                                                 "crop": None, "mapping": "intensity"},
    "mstool defaults, cluster means": {"mapping": "intensity"},
}


def load(name: str, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if name == "dsb":
        if not (SAMPLE / "image.tif").exists():
            return None
        image, mask = read_image(SAMPLE / "image.tif"), read_mask(SAMPLE / "mask.tif")
        crops = [(image[y:y + 256, x:x + 256], mask[y:y + 256, x:x + 256]) for y in (0, 256) for x in (0, 256)]
        return (torch.stack([normalize_image(c) for c, _ in crops]),
                torch.stack([torch.from_numpy(m) for _, m in crops]))
    data = synthesize(name, n, size, generator=torch.Generator().manual_seed(0))
    return torch.stack([normalize_image(im[0].numpy()) for im in data.images]), data.labels


def dice(masks: torch.Tensor, labels: torch.Tensor) -> float:
    m, t = masks.bool(), labels.bool()
    inter = (m & t).flatten(1).sum(1).double()
    size = (m.flatten(1).sum(1) + t.flatten(1).sum(1)).double()
    return float((2 * inter / size.clamp_min(1)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="er,mito,nuc,em,dsb")
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; Dice is mean ± std over them")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=[p for p in PRECISIONS if p != "auto"], default=None,
                        help="also run every configuration in this precision (default: only the default, auto)")
    args = parser.parse_args()
    set_threads(args.threads)
    configs = dict(CONFIGS)
    if args.precision:
        configs.update({f"{label}, {args.precision}": {**options, "precision": args.precision}
                        for label, options in CONFIGS.items()})
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"device: {describe_device()}; {args.n} images of {args.size} px per built-in kind, 4 DSB crops of 256 px; "
          f"seeds {args.seeds}")
    results: dict[tuple[str, str], tuple[float, float, float]] = {}
    sets = []
    for name in args.sets.split(","):
        loaded = load(name, args.n, args.size)
        if loaded is None:
            print(f"{name}: skipped (the DSB sample is not here)")
            continue
        sets.append(name)
        images, labels = loaded
        scores: dict[str, list[float]] = {label: [] for label in configs}
        times: dict[str, list[float]] = {label: [] for label in configs}
        for seed in seeds:  # configurations alternate within each seed, so a busy spell hits them alike
            for label, options in configs.items():
                best = np.inf
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", MstoolWarning)
                        seg = DFC(**options).segment(images, generator=torch.Generator().manual_seed(seed))
                    best = min(best, (time.perf_counter() - start) / len(images))
                scores[label].append(dice(seg.masks, labels))
                times[label].append(best)
        for label in configs:
            results[label, name] = (float(np.mean(scores[label])), float(np.std(scores[label])),
                                    float(np.mean(times[label])))
    width = max(len(k) for k in configs) + 2
    print(f"{'configuration':<{width}}" + "".join(f"{s + ' Dice':>15}{s + ' s/img':>11}" for s in sets)
          + f"{'mean Dice':>11}")
    for label in configs:
        cells = "".join(f"{results[label, s][0]:>9.3f}±{results[label, s][1]:.3f}{results[label, s][2]:>11.2f}"
                        for s in sets)
        print(f"{label:<{width}}{cells}{np.mean([results[label, s][0] for s in sets]):>11.3f}")
    names = list(CONFIGS)
    for other in names[1:]:
        for s in sets:
            (d0, _, t0), (d1, _, t1) = results[names[0], s], results[other, s]
            print(f"{s}: defaults {d0 - d1:+.3f} Dice against {other}, at {t0 / t1:.2f} of its time")
    if args.precision:
        for label in CONFIGS:
            for s in sets:
                (d0, _, t0), (d1, _, t1) = results[label, s], results[f"{label}, {args.precision}", s]
                print(f"{s}: {label} in {args.precision}: {d1 - d0:+.3f} Dice, {t0 / t1:.2f}x as fast")


if __name__ == "__main__":
    main()
