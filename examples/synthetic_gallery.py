"""Gallery of the built-in synthetic microscopy kinds: one image and its exact ground truth per kind.

Run: python examples/synthetic_gallery.py --out docs/images/synthetic_gallery.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mstool.data import synth_kinds, synthesize  # noqa: E402
from mstool.device import make_generator  # noqa: E402


def main(out: Path, size: int = 256, seed: int = 0) -> Path:
    kinds = synth_kinds()
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.2 * len(kinds), 6.6))
    for col, kind in enumerate(kinds):
        data = synthesize(kind, 1, size, generator=make_generator(seed))
        image = data.images[0, 0].numpy()
        lo, hi = (float(v) for v in (image.min(), image.max()))
        axes[0, col].imshow(image, cmap="gray", vmin=lo, vmax=hi)
        axes[0, col].set_title(f"{kind}: image (16-bit counts)", fontsize=9)
        axes[1, col].imshow(data.labels[0].numpy(), cmap="tab10" if len(data.classes) > 2 else "gray",
                            vmin=0, vmax=max(len(data.classes) - 1, 1), interpolation="nearest")
        axes[1, col].set_title(f"ground truth ({len(data.classes)} classes)", fontsize=9)
        for ax in axes[:, col]:
            ax.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("synthetic_gallery.png"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.out, args.size, args.seed))
