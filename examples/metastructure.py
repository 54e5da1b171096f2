"""Meta-structures of noisy labels: a 10% sampled label keeps the clean meta-structure, a dilated label does not.

The meta-structure of a label is its per-class spatial density (Luo et al. 2022). Lemma 1: the density of a randomly
sampled label is ``s`` times the clean density up to sampling error, and flipping gives an affine map of it; both keep
the meta-structure (RCL). Dilation, erosion and skeletons move it (PCL); random labels have none (RL).

For each label spec this script measures, on built-in synthetic ER images:
- the taxonomy class from the noise transition matrix and the boundary fraction (``mstool.labels.label_info``);
- the meta-structure similarity to the clean label (Pearson correlation of the foreground densities), both for one
  draw and for the *expected* density (the mean over ``--draws`` draws, which is what Lemma 1 is about: a network
  trained on many pixels of the same kind sees the expectation, not one draw);
and the same expected similarity estimated from the one draw alone (``expected_similarity``, what ``mstool labels
audit`` reports), and draws a picture: label, density of one draw, expected density.

Run: python examples/metastructure.py --out demo_out/metastructure
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mstool.data import synthesize
from mstool.device import make_generator
from mstool.labels import apply_spec, is_stochastic, label_info
from mstool.metastructure import density, density_similarity, expected_similarity

SPECS = ("clean", "sample:0.1", "flip:0.45,0.45", "dilate:2", "erode:1", "skeleton", "random:0.3")


def _pearson(da: torch.Tensor, db: torch.Tensor) -> float:
    pearson, _ = density_similarity(da[:, 1:], db[:, 1:])
    return float(pearson.nanmean())


def analyse(kind: str = "er", n: int = 8, size: int = 128, bandwidth: int = 2, draws: int = 200, seed: int = 0):
    g = make_generator(seed)
    clean = synthesize(kind, n, size, generator=g).labels
    d_clean = density(clean, 2, bandwidth=bandwidth)
    rows, panels = [], []
    for spec in SPECS:
        noisy = apply_spec(clean, spec, generator=g, num_classes=2)
        info = label_info(clean, noisy, 2)
        d_one = density(noisy, 2, bandwidth=bandwidth)
        k = draws if is_stochastic(spec) else 1
        d_mean = torch.stack(
            [d_one] + [density(apply_spec(clean, spec, generator=g, num_classes=2), 2, bandwidth=bandwidth)
                       for _ in range(k - 1)]
        ).mean(0)
        rows.append({
            "spec": spec,
            "taxonomy": info.taxonomy,
            "ntm_rank": info.rank,
            "ntm_det": round(info.det, 3),
            "mutual_information_bits": round(info.mutual_information, 3),
            "boundary_fraction": round(info.boundary_fraction, 3) if np.isfinite(info.boundary_fraction) else None,
            "pearson_one_draw": round(_pearson(d_clean, d_one), 3),
            "pearson_expected": round(_pearson(d_clean, d_mean), 3),
            # what `mstool labels audit` estimates from the one draw alone, without redrawing
            "expected_estimate": round(expected_similarity(clean, noisy, 2, bandwidth=bandwidth, bootstrap=0).score, 3),
        })
        panels.append((spec, noisy[0].numpy(), d_one[0, 1].numpy(), d_mean[0, 1].numpy()))
    return rows, panels


def draw(panels, path: Path, bandwidth: int, draws: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(panels), figsize=(2.3 * len(panels), 7.2))
    for col, (spec, label, one, mean) in enumerate(panels):
        axes[0, col].imshow(label, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0, col].set_title(spec, fontsize=9)
        axes[1, col].imshow(one, cmap="magma", vmin=0)
        axes[2, col].imshow(mean, cmap="magma", vmin=0)
        for ax in axes[:, col]:
            ax.set_axis_off()
    axes[1, 0].text(-0.15, 0.5, f"density, one draw (h={bandwidth})", rotation=90, va="center", ha="right",
                    transform=axes[1, 0].transAxes, fontsize=8)
    axes[2, 0].text(-0.15, 0.5, f"expected density ({draws} draws)", rotation=90, va="center", ha="right",
                    transform=axes[2, 0].transAxes, fontsize=8)
    axes[0, 0].text(-0.15, 0.5, "label", rotation=90, va="center", ha="right", transform=axes[0, 0].transAxes,
                    fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("metastructure_out"))
    parser.add_argument("--kind", default="er")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--bandwidth", type=int, default=2)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows, panels = analyse(args.kind, args.n, args.size, args.bandwidth, args.draws, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metastructure.json").write_text(json.dumps(rows, indent=2) + "\n")
    draw(panels, args.out / "metastructure.png", args.bandwidth, args.draws)
    header = (f"{'spec':<16}{'class':<6}{'rank':>5}{'det':>8}{'MI bits':>9}{'boundary':>10}{'r one':>8}"
              f"{'r expected':>12}{'estimate':>10}")
    print(header)
    for r in rows:
        bf = "-" if r["boundary_fraction"] is None else f"{r['boundary_fraction']:.3f}"
        print(f"{r['spec']:<16}{r['taxonomy']:<6}{r['ntm_rank']:>5}{r['ntm_det']:>8.3f}"
              f"{r['mutual_information_bits']:>9.3f}{bf:>10}{r['pearson_one_draw']:>8.3f}{r['pearson_expected']:>12.3f}"
              f"{r['expected_estimate']:>10.3f}")
    print(f"picture: {args.out / 'metastructure.png'}")


if __name__ == "__main__":
    main()
