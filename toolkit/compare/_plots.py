"""Plots of a comparison suite (matplotlib, headless): Dice against noise level per family, against meta-structure
similarity and mutual information (with Spearman's rho), learning curves, example predictions per label spec, and
the unsupervised methods beside supervised training with example masks.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..unsupervised import METHODS
from ..viz import pyplot, save_figure, show_label
from ._rows import PREDICTORS, rank_agreement
from ._suite import SuiteConfig

__all__ = ["draw_all"]

_TAXONOMY_COLOURS = {"CL": "#222222", "RCL": "#1f77b4", "PCL": "#d62728", "RL": "#7f7f7f"}


def _values(rows, key):
    return [r.get(key) for r in rows]


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def draw_all(run_dir: Path, config: SuiteConfig, rows: list[dict[str, Any]], metric: str) -> list[tuple[str, Path]]:
    """Draw every plot into ``run_dir/plots`` and return ``(title, path)`` pairs."""
    out = run_dir / "plots"
    drawn = []
    supervised = [r for r in rows if r.get("kind") != "unsupervised"]
    if len(supervised) < len(rows):
        path = out / "unsupervised.png"
        if _unsupervised(path, rows):
            drawn.append(("Unsupervised methods (own label-free mask) beside supervised training on clean labels "
                          "(val threshold): test Dice, mean ± std over seeds", path))
            path = out / "unsupervised_examples.png"
            if _unsupervised_examples(path, run_dir, rows):
                drawn.append(("Example test masks per unsupervised method (first seed)", path))
    rows = supervised
    for title, name, fn in (
        (f"{metric} against noise level, per label family (mean ± std over seeds)", "noise_level.png", _noise_level),
        (f"{metric} against the expected-density score, the one-draw similarity and mutual information of the "
         "training labels",
         "similarity.png", _similarity),
        ("Learning curves: validation score per epoch (mean over seeds)", "learning_curves.png", _curves),
        ("Example test predictions per label spec (first model and seed)", "examples.png", _examples),
    ):
        path = out / name
        if fn(path, run_dir, config, rows, metric):
            drawn.append((title, path))
    return drawn


def _unsupervised(path, rows) -> bool:
    plt = pyplot()
    bars: dict[str, list[float]] = {}
    colours: dict[str, str] = {}
    for r in rows:
        if r.get("kind") == "unsupervised":
            key, value, colour = r["spec"], r.get("mask/dice"), "#1f77b4" if r.get("prior") else "#4c72b0"
            if r["model"] in METHODS and not METHODS.get(r["model"]).learned:  # a classical rule: grey
                colour = "#7f7f7f"
        elif r["spec"] == "clean":
            key, value, colour = f"supervised {r['model']} (clean labels)", r.get("val/dice"), "#222222"
        else:
            continue
        if _finite(value):
            bars.setdefault(key, []).append(float(value))
            colours[key] = colour
    if not bars:
        return False
    names = list(bars)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(y, [np.mean(bars[n]) for n in names], xerr=[np.std(bars[n]) for n in names],
            color=[colours[n] for n in names], capsize=3)
    for i, n in enumerate(names):
        ax.text(np.mean(bars[n]) + np.std(bars[n]) + 0.015, i, f"{np.mean(bars[n]):.3f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("test Dice")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _first_examples(run_dir: Path, rows: list[dict[str, Any]]) -> list[tuple[str, dict, dict]]:
    """``(spec, row, arrays of examples.npz)`` of the first cell of every spec that saved examples."""
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["spec"], r)
    entries = []
    for spec, r in first.items():
        f = run_dir / "cells" / r["cell"] / "examples.npz"
        if f.exists():
            with np.load(f, allow_pickle=False) as z:
                entries.append((spec, r, {k: z[k] for k in z.files}))
    return entries


def _wrap_entry(spec: str, width: int = 28) -> str:
    """A method entry on lines of about ``width`` characters, broken after ``:``, ``,`` or ``+`` (a panel's title
    is no wider than its picture)."""
    lines = [""]
    for piece in re.split(r"(?<=[:,+])", spec):
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def _unsupervised_examples(path, run_dir, rows) -> bool:
    plt = pyplot()
    entries = [(spec, r, z["images"][0].astype(np.float32), z["labels"][0], z["masks"][0])
               for spec, r, z in _first_examples(run_dir, [r for r in rows if r.get("kind") == "unsupervised"])]
    if not entries:
        return False
    titles = [_wrap_entry(spec) + (f"\nDice {r['mask/dice']:.3f}" if _finite(r.get("mask/dice")) else "")
              for spec, r, *_ in entries]
    extra = max(t.count("\n") for t in titles) - 1  # title lines beyond the usual two
    fig, axes = plt.subplots(1, len(entries) + 2, figsize=(2.2 * (len(entries) + 2), 2.6 + 0.15 * max(0, extra)),
                             squeeze=False)
    axes[0, 0].imshow(entries[0][2], cmap="gray")
    axes[0, 0].set_title("test image", fontsize=8)
    show_label(axes[0, 1], entries[0][3], 2)
    axes[0, 1].set_title("ground truth", fontsize=8)
    for ax, title, (*_, mask) in zip(axes[0, 2:], titles, entries):
        show_label(ax, mask, 2)
        ax.set_title(title, fontsize=8)
    for ax in axes[0]:
        ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _noise_level(path, run_dir, config, rows, metric) -> bool:
    plt = pyplot()
    groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    clean = [r[metric] for r in rows if r["family"] == "clean" and _finite(r.get(metric))]
    for r in rows:
        if r["family"] != "clean" and r["level"] is not None and _finite(r.get(metric)):
            groups[r["family"]][r["level"]].append(r[metric])
    if not groups and not clean:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for family, levels in sorted(groups.items()):
        xs = sorted(levels)
        ax.errorbar(xs, [np.mean(levels[x]) for x in xs], yerr=[np.std(levels[x]) for x in xs], marker="o",
                    capsize=3, label=family)
    if clean:
        ax.axhline(float(np.mean(clean)), color="k", ls="--", lw=1, label="clean")
    ax.set_xlabel("noise level (first argument of the spec)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def _similarity(path, run_dir, config, rows, metric) -> bool:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(PREDICTORS), figsize=(5 * len(PREDICTORS), 4.2))
    any_drawn = False
    for ax, (key, label) in zip(axes, PREDICTORS):
        pts = [(r[key], r[metric], r.get("label/taxonomy", "RCL")) for r in rows
               if _finite(r.get(key)) and _finite(r.get(metric))]
        if not pts:
            ax.set_axis_off()
            continue
        any_drawn = True
        for tax, colour in _TAXONOMY_COLOURS.items():
            sel = [(x, y) for x, y, t in pts if t == tax]
            if sel:
                ax.scatter(*zip(*sel), c=colour, s=22, label=tax, alpha=0.8)
        a = rank_agreement(rows, metric, key)
        ranks = a["note"] or f"Spearman's rho = {a['rho']:.2f}, Kendall's tau = {a['tau']:.2f}"
        ax.set_title(f"{ranks} (n = {len(pts)} cells)", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not any_drawn:
        return False
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _curves(path, run_dir, config, rows, metric) -> bool:
    plt = pyplot()
    per_spec: dict[str, list[list[float]]] = defaultdict(list)
    for r in rows:
        curve = run_dir / "cells" / r["cell"] / "curves.csv"
        if not curve.exists():
            continue
        with open(curve) as fh:
            data = list(csv.DictReader(fh))
        # The val protocol's curve (best threshold) where it was recorded: at 0.5 a sparse label looks collapsed.
        key = next((k for k in ("val_dice_best", "val_dice", "val_miou") if data and k in data[0]), "val_miou")
        values = [float(d[key]) if d.get(key) not in (None, "", "None") else math.nan for d in data]
        per_spec[r["spec"]].append(values)
    if not per_spec:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for spec, curves in per_spec.items():
        n = min(len(c) for c in curves)
        values = np.array([c[:n] for c in curves])
        seen = ~np.isnan(values).all(axis=0)  # epochs without validation (``val_every``) are left out
        mean = np.nanmean(values[:, seen], axis=0) if seen.any() else np.array([])
        ax.plot(np.arange(1, n + 1)[seen], mean, marker=".", label=spec)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice at the best threshold (mIoU: multi-class)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)
    return True


def _examples(path, run_dir, config, rows, metric) -> bool:
    plt = pyplot()
    entries = _first_examples(run_dir, rows)
    if not entries:
        return False
    num_classes = int(entries[0][1].get("num_classes", 2))
    fig, axes = plt.subplots(len(entries), 5, figsize=(12, 2.5 * len(entries)), squeeze=False)
    for i, (spec, r, z) in enumerate(entries):
        probs = z["probs"][0].astype(np.float32)
        if num_classes > 2:
            pred = probs.argmax(0)
            score = probs.max(0)
        else:
            score = probs[0]
            thr = r.get("val/threshold") if _finite(r.get("val/threshold")) else 0.5
            pol = r.get("val/polarity") or 1
            pred = ((score if pol > 0 else 1 - score) >= thr).astype(np.uint8)
        axes[i, 0].imshow(z["images"][0].astype(np.float32), cmap="gray")
        show_label(axes[i, 1], z["labels"][0], num_classes)
        show_label(axes[i, 2], z["train_label"][0], num_classes)
        axes[i, 3].imshow(score, cmap="magma", vmin=0, vmax=1)
        show_label(axes[i, 4], pred, num_classes)
        titles = ("test image", "clean label", f"{spec}: a training label", "score map", "prediction (val thr.)")
        for ax, t in zip(axes[i], titles):
            ax.set_title(t, fontsize=8)
            ax.set_axis_off()
        value = r.get(metric)
        axes[i, 4].set_title(f"prediction, {metric} {value:.3f}" if _finite(value) else "prediction", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return True
