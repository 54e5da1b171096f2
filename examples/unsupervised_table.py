"""The paper's positive result, measured: unsupervised methods with and without meta-structure priors on several
kinds of data, beside a supervised U-Net trained on the clean labels of the same images.

For each set, one comparison run (`mstool compare --labels clean --unsupervised ...`) segments the test images
with every method entry, with no label, once per seed (Otsu and the local threshold once), and trains the
supervised reference (quick preset) on the clean training labels. The `prior=labels:SPEC` entries are the one
exception: their prior is made from the test labels after the label spec (a simulated rough annotation), and
only its density reaches the method. The table gives the own-mask Dice, mean ± std
over seeds, and the share of the gap between Otsu and the supervised network that each method closes.

Sets: `er`, `mito`, `nuc`, `em` (built-in synthetic, 24 images of 128 x 128, 5 test images) and `dsb` (the real
DSB2018 nuclei sample cut into 16 tiles of 128 x 128, 3 test tiles; needs ../shared/data, or --image/--mask).
`heldout-em` is EM-like data from another generator and camera model (`examples/heldout_em.py`, 24 images of
128 x 128, 5 test images), on which no setting was chosen; `heldout-er` the same generator's ER: dark tubules in
a bright, mottled cytoplasm with dark mitochondria. `NAME-inv` turns a set over (dark objects on a bright
background; bright membranes on `heldout-em-inv`). A folder in the paper layout (`{train,val,test}/{images,labels}`)
is a set as it is, named by its path.

Run (about 8 to 13 minutes per set on 2 CPU cores):
    python examples/unsupervised_table.py --out runs/table
    python examples/unsupervised_table.py --out runs/table --sets em,dsb --seeds 0
Re-running into the same folder reuses the finished cells.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mstool.compare import SuiteConfig, gap_closed, run_suite, summarize, summarize_unsupervised
from mstool.data import write_tiled_dataset

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018-nuclei-sample"
METHODS = ["otsu", "minerror", "local", "kmeans", "gmm", "dfc", "dfc:mapping=intensity", "dfc:prior=otsu",
           "dfc:prior=local", "dfc:prior=kmeans", "dfc:prior=otsu+local+kmeans", "dfc:prior=minerror",
           "dfc:prior=otsu+minerror+local", "igtt", "igtt:no-ems", "igtt:anchor=0", "igtt:min-skeleton=0",
           "igtt:bootstrap=minerror",
           "igtt:bootstrap=otsu", "igtt:bootstrap=local", "igtt:bootstrap=minerror,ems=clean", "igtt:prior=otsu",
           "igtt:prior=local", "igtt:prior=kmeans", "igtt:prior=otsu+local+kmeans",
           "igtt:prior=otsu+local+kmeans,prior-gate=0.35", "igtt:prior=minerror", "igtt:prior=otsu+minerror+local",
           "igtt:prior=labels:dilate:1+sample:0.3", "igtt:prior=labels:skeleton+shift:1+sample:0.1",
           "dfc:prior=labels:dilate:1+sample:0.3"]


def data_for(name: str, out: Path, image: Path, mask: Path) -> tuple[str, bool]:
    """The suite's data argument for a set name, and whether it is turned over."""
    if Path(name).is_dir():  # a dataset folder of one's own, as it is
        return name, False
    base, invert = (name[:-4], True) if name.endswith("-inv") else (name, False)
    if base not in ("dsb", "heldout-em", "heldout-er"):
        return f"synth:{base}", invert
    root = out / f"data-{name}"
    if not root.exists() and base == "dsb":
        write_tiled_dataset(image, mask, root, tile=128, invert=invert)
    elif not root.exists():
        from heldout_em import write_dataset  # a script beside this one, not part of the package

        write_dataset(root, invert=invert, kind=base.split("-")[1])
    return str(root), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--out", type=Path, default=Path("unsupervised_table_out"))
    parser.add_argument("--sets", default="er,mito,nuc,em,dsb")
    parser.add_argument("--methods", default=",".join(METHODS), help="compare --unsupervised entries")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image", type=Path, default=SAMPLE / "image.tif")
    parser.add_argument("--mask", type=Path, default=SAMPLE / "mask.tif")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from mstool.compare import split_method_list

    methods = split_method_list(args.methods)
    seeds = [int(s) for s in args.seeds.split(",")]
    table: dict[str, dict] = {}
    for name in args.sets.split(","):
        data, invert = data_for(name, args.out, args.image, args.mask)
        suite = SuiteConfig(data=data, labels=["clean"], unsupervised=methods, seeds=seeds, preset="quick",
                            synth_invert=invert)
        rows = run_suite(suite, args.out / Path(name).name, device=args.device)  # a folder set: its last part
        supervised = [e for e in summarize(rows) if e["spec"] == "clean"]
        reference = supervised[0]["val/dice"] if supervised else math.nan
        entries = summarize_unsupervised(rows)
        gaps = gap_closed(entries, reference)
        table[name] = {"supervised": reference, "supervised_std": supervised[0]["val/dice_std"] if supervised else None,
                       "methods": {e["spec"]: {"dice": e["mask/dice"], "std": e["mask/dice_std"], "n": e["n"],
                                               "gap_closed": gaps.get(e["spec"]),
                                               "seconds_per_image": e["seconds_per_image"]} for e in entries}}
        print(f"{name}: supervised {reference:.3f}; " + ", ".join(
            f"{e['spec']} {e['mask/dice']:.3f}" for e in entries), flush=True)
    (args.out / "table.json").write_text(json.dumps(table, indent=1, default=float) + "\n")
    lines = markdown(table, methods)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown(table: dict[str, dict], methods: list[str]) -> list[str]:
    """Rows: methods (then the supervised reference); columns: sets; cells: Dice mean ± std (gap closed)."""
    sets = list(table)
    lines = ["| method | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for spec in methods:
        cells = []
        for name in sets:
            m = table[name]["methods"].get(spec)
            if m is None or m["dice"] is None or math.isnan(m["dice"]):
                cells.append("-")
                continue
            spread = f" ± {m['std']:.3f}" if m["n"] > 1 else ""
            gap = m["gap_closed"]
            cells.append(f"{m['dice']:.3f}{spread}" + ("" if gap is None or math.isnan(gap) else f" ({gap:.0%})"))
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    sup = [f"{table[n]['supervised']:.3f} ± {table[n]['supervised_std']:.3f}" for n in sets]
    lines.append("| supervised U-Net (clean labels) | " + " | ".join(sup) + " |")
    return lines


if __name__ == "__main__":
    main()
