"""`mstool train` and `mstool evaluate` from Python: the same library calls the two commands make.

    python examples/train_evaluate.py                 # built-in ER data, sampled labels, a few epochs
    python examples/train_evaluate.py --out runs/er --labels flip:0.45,0.45 --epochs 20

The command line equivalent:

    mstool train --data synth:er --labels sample:0.1 --epochs 20 -o runs/er
    mstool evaluate --checkpoint runs/er/model.pt
"""

from __future__ import annotations

import argparse
import tempfile

from mstool.runs import evaluate_run, run_config, run_source, train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synth:er", help="a dataset folder or synth:KIND")
    parser.add_argument("--labels", default="sample:0.1", help="the label spec the clean labels are turned into")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n", type=int, default=8, help="images of a synth: dataset")
    parser.add_argument("--size", type=int, default=64, help="side of a synth: dataset's images")
    parser.add_argument("--out", default=None, help="the run folder (default: a temporary one)")
    args = parser.parse_args()

    config = run_config("quick", {"epochs": args.epochs, "val_every": 1}, labels=args.labels, seed=0)
    source = run_source(args.data, "quick", synth_n=args.n, synth_size=args.size)
    out = args.out or tempfile.mkdtemp(prefix="mstool-train-")
    run = train_run(source, out, config)
    print(f"trained on {config.label_spec} labels ({config.noise_mode}) for {config.epochs} epochs: "
          f"{run.out / 'model.pt'}; the training labels' NTM determinant {run.result.label_stats['ntm_det']:.2f}")
    ev = evaluate_run(run.out / "model.pt", probe=False)
    m = ev.metrics
    print(f"test Dice {m['val/dice']:.3f} at the threshold chosen on validation ({m['val/threshold']:.2f}), "
          f"oracle {m['oracle/dice']:.3f}; every metric in {ev.path}")


if __name__ == "__main__":
    main()
