"""The comparison suite's results: one row per cell (``results.csv``, ``results.json``), mean +- std over seeds
(``summary.md``), plots (``plots/*.png``) and ``report.html`` showing all of it. Every file is written atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_path, is_mstool_folder
from .._version import __version__
from ..errors import OutputError
from ..runs import labels_prior_spec
from ._loop import run_suite
from ._plots import draw_all
from ._rows import PREDICTORS, headline_metric, is_unsupervised, rank_agreement
from ._runner import FAILED_NAME, load_run_config
from ._suite import SuiteConfig

__all__ = ["run_and_report", "write_results", "summarize", "summarize_unsupervised", "gap_closed", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ("val", "oracle", "fixed")

UNSUPERVISED_METRICS = (("mask/dice", "Dice (own mask)"), ("mask/iou", "IoU (own mask)"),
                        ("mask/precision", "precision"), ("mask/recall", "recall"),
                        ("oracle/dice", "Dice (oracle)"), ("auc", "AUC"),
                        ("undrawn/dice", "Dice where not annotated"))


def _metric_names(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    if headline_metric(rows) == "argmax/miou":
        return [("argmax/miou", "mIoU"), ("argmax/pixel_accuracy", "pixel acc."), ("probe/miou", "probe mIoU")]
    return [("val/dice", "Dice (val thr.)"), ("oracle/dice", "Dice (oracle)"), ("fixed/dice", "Dice (0.5)"),
            ("labels/dice", "Dice (labels' thr.)"), ("val/iou", "IoU (val thr.)"), ("val/auc", "AUC"),
            ("probe/dice", "probe Dice")]


def _mean_std(values: list[Any]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (label spec, model) of the supervised rows, in the order the specs first
    appear."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if not is_unsupervised(r):
            groups[(r["spec"], r["model"])].append(r)
    out = []
    for (spec, model), rs in groups.items():
        entry: dict[str, Any] = {"spec": spec, "model": model, "n": len(rs), "family": rs[0]["family"],
                                 "level": rs[0]["level"], "taxonomy": rs[0].get("label/taxonomy")}
        for key in ("label/rank", "label/det", "label/mutual_information", "label/similarity_pearson_h4",
                    "label/expected_score", "label/boundary_fraction", "seconds"):
            entry[key] = _mean_std([r.get(key) for r in rs])[0]
        for key, _ in _metric_names(rows):
            m, s, n = _mean_std([r.get(key) for r in rs])
            entry[key] = m
            entry[key + "_std"] = s
        pols = sorted({(r.get("val/polarity"), r.get("val/polarity_source")) for r in rs if r.get("val/polarity")})
        entry["polarity"] = ", ".join(f"{'+' if p > 0 else '-'} ({src})" for p, src in pols) or "-"
        out.append(entry)
    return out


def summarize_unsupervised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per unsupervised method entry, in the order the entries first appear."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if is_unsupervised(r):
            groups[r["spec"]].append(r)
    out = []
    for spec, rs in groups.items():
        entry: dict[str, Any] = {"spec": spec, "model": rs[0]["model"], "prior": rs[0].get("prior"),
                                 "scribbles": rs[0].get("scribbles"), "n": len(rs),
                                 "seconds_per_image": _mean_std([r.get("seconds_per_image") for r in rs])[0],
                                 "ems": rs[0].get("method_info", {}).get("ems")}
        for key, _ in UNSUPERVISED_METRICS:
            entry[key], entry[key + "_std"], _ = _mean_std([r.get(key) for r in rs])
        out.append(entry)
    return out


def _pm(mean: float, std: float, n: int) -> str:
    return "-" if math.isnan(mean) else (f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}")


def _unsupervised_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The paper's table: every unsupervised entry, then the supervised rows of clean labels for reference."""
    header = ["method", "labels used", "Dice (headline)", "headline protocol"]
    header += [label for key, label in UNSUPERVISED_METRICS if key != "mask/dice"]
    header += ["Otsu-to-supervised gap closed", "s / image", "seeds"]
    body = []
    unsupervised = summarize_unsupervised(rows)
    supervised = [e for e in summarize(rows) if e["spec"] == "clean"]
    for e in supervised:
        body.append([f"supervised {e['model']}", "clean training labels", _pm(e["val/dice"], e["val/dice_std"],
                     e["n"]), "val threshold", "-", "-", "-", _pm(e["oracle/dice"], e["oracle/dice_std"], e["n"]),
                     _pm(e["val/auc"], e["val/auc_std"], e["n"]), "-", "100%", "-", str(e["n"])])
    gaps = gap_closed(unsupervised, supervised[0]["val/dice"] if supervised else math.nan)
    for e in unsupervised:
        used, protocol = _labels_used(e["prior"], e.get("scribbles"))
        line = [e["spec"], used, _pm(e["mask/dice"], e["mask/dice_std"], e["n"]), protocol]
        line += [_pm(e[k], e[k + "_std"], e["n"]) for k, _ in UNSUPERVISED_METRICS if k != "mask/dice"]
        gap = gaps.get(e["spec"], math.nan)
        line += ["-" if math.isnan(gap) else f"{gap:.0%}", _fmt(e["seconds_per_image"], 2), str(e["n"])]
        body.append(line)
    return header, body


def _labels_used(prior: str | None, scribbles: str | None) -> tuple[str, str]:
    """What an unsupervised row saw of the labels, and how its headline is measured."""
    if scribbles is not None:
        spec = labels_prior_spec(scribbles)
        also = ", and as a prior" if prior == scribbles else ""
        return (f"the test labels through {spec}, as scribbles{also}",
                "own mask, where no scribble was drawn")
    spec = labels_prior_spec(prior)
    if spec is not None:
        made = "the exact test labels" if spec == "clean" else f"the test labels through {spec}"
        return f"{made}, as a prior", "own mask"
    return ("none" if prior is None else f"none (prior bootstrapped from {prior})"), "own mask (label-free)"


def gap_closed(entries: list[dict[str, Any]], supervised: float) -> dict[str, float]:
    """The share of the gap between Otsu's Dice and the supervised network's that each entry closes:
    ``(dice - otsu) / (supervised - otsu)`` (the paper's iGTT closes 56% of it on ER: 69.5 -> 78.8 of 86.0); NaN
    without an ``otsu`` entry, a supervised Dice, or a gap.

    Example:
        >>> gaps = gap_closed([{"spec": "otsu", "mask/dice": 0.695}, {"spec": "igtt", "mask/dice": 0.788}], 0.86)
        >>> {k: round(v, 3) for k, v in gaps.items()}
        {'otsu': 0.0, 'igtt': 0.564}
    """
    otsu = next((e["mask/dice"] for e in entries if e["spec"] == "otsu"), math.nan)
    gap = supervised - otsu
    ok = not (math.isnan(gap) or gap == 0)
    return {e["spec"]: (e["mask/dice"] - otsu) / gap if ok else math.nan for e in entries}


_UNSUPERVISED_NOTE = (
    "Unsupervised methods see only the test images, never a label (a `prior=labels:` row sees the density of "
    "rough labels made from the test labels, nothing more; a `scribbles=labels:` row is given a partial annotation "
    "of the test images, and is scored only where it drew nothing; **Dice where not annotated** scores every "
    "row given an annotation, as scribbles or only as a prior, on the pixels it left unlabelled); **own mask** "
    "is the mask the method gives by its label-free rule (its headline), **oracle** the best threshold of its "
    "score map on the test labels (optimistic). Methods with random draws run once per seed; deterministic ones "
    "(the thresholds) once."
)
_SUPERVISED_REFERENCE = " The supervised rows are the clean-label cells of the table above, for reference."


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _summary_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    names = _metric_names(rows)
    header = ["label spec", "model", "class", "NTM rank", "det", "MI (bits)", "one-draw similarity r (h=4)",
              "expected-density score"]
    header += [label for _, label in names] + ["polarity (val)", "seeds"]
    body = []
    for e in summarize(rows):
        line = [e["spec"], e["model"], _fmt(e["taxonomy"]), _fmt(e["label/rank"], 0), _fmt(e["label/det"]),
                _fmt(e["label/mutual_information"]), _fmt(e["label/similarity_pearson_h4"]),
                _fmt(e["label/expected_score"])]
        for key, _ in names:
            m, s = e[key], e[key + "_std"]
            line.append("-" if math.isnan(m) else (f"{m:.3f} ± {s:.3f}" if e["n"] > 1 else f"{m:.3f}"))
        line += [e["polarity"], str(e["n"])]
        body.append(line)
    return header, body


def _agreement_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    metric = headline_metric(rows)
    header = ["label statistic", f"Spearman's rho with {metric}", "Kendall's tau", "cells"]
    body = []
    for key, label in PREDICTORS:
        a = rank_agreement(rows, metric, key)
        rho = a["note"] or f"{a['rho']:.2f}"
        body.append([label, rho, "-" if a["note"] else f"{a['tau']:.2f}", str(a["n"])])
    return header, body


_AGREEMENT_NOTE = (
    "How well each label statistic, computed from the training labels alone, orders the trained scores. The "
    "expected-density score estimates what a network averages out of the noise (independent pixel noise, see "
    "mstool.metastructure.expected_similarity) and predicts converged training: a cell still improving at the "
    "end of its budget scores below what its labels allow."
)


def not_converged(rows: list[dict[str, Any]]) -> list[str]:
    """One line per supervised cell whose validation curve was still rising at the end of its budget, and one for
    the cells whose curve had too few points to judge."""
    lines = []
    for r in rows:
        if is_unsupervised(r) or r.get("curve/converged") is not False:
            continue
        epochs = r.get("epochs") or r.get("settings", {}).get("epochs")
        lines.append(f"{r['cell']}: the validation curve gained {r['curve/gain']:+.3f} in the second half of "
                     f"{epochs} epochs: not converged: noisy labels need more steps; try --epochs {2 * int(epochs)}")
    # a cell recorded before the curve was judged has no key at all; this one was judged and had too few points
    unjudged = [r["cell"] for r in rows
                if not is_unsupervised(r) and "curve/converged" in r and r["curve/converged"] is None]
    if unjudged:
        shown = ", ".join(unjudged[:3]) + (", ..." if len(unjudged) > 3 else "")
        lines.append(f"{len(unjudged)} cell(s) ({shown}) were validated fewer than 4 times, so whether they converged "
                     "was not judged: train more epochs or validate more often (--set val_every=N)")
    return lines


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


_PROTOCOLS = (
    "**val** (the headline): the threshold, and the polarity when the training labels invert the classes "
    "(NTM determinant < 0), are chosen on the validation set and applied to test. **oracle**: the best threshold "
    "on the test set itself (the paper's protocol; optimistic). **fixed**: threshold 0.5. **labels' thr.**: "
    "halfway between the training labels' foreground rates on clean background and on clean foreground (their "
    "NTM), which a network that learns the labels' density (Lemma 1) separates; no validation or test label "
    "chooses it (`mstool predict --threshold labels`). Dice is pooled over all test pixels. **probe**: a 1x1-conv "
    "logistic probe fitted on the frozen network's last decoder features with "
    "clean training labels (the paper's feature-extraction experiment). Label statistics describe each cell's "
    "actual training labels against the clean ones."
)


_PROTOCOLS_MULTICLASS = (
    "**mIoU**: the mean over classes of the intersection over union of the argmax prediction on the test set, "
    "pooled over all test pixels (255 = ignore left out); **pixel acc.**: the share of test pixels predicted right. "
    "**probe**: a 1x1-conv logistic probe fitted on the frozen network's last decoder features with clean training "
    "labels (the paper's feature-extraction experiment). Label statistics describe each cell's actual training "
    "labels against the clean ones."
)


def _protocols(rows: list[dict[str, Any]]) -> str:
    """The paragraph that says how the table's figures were measured: binary protocols or multi-class mIoU."""
    return _PROTOCOLS_MULTICLASS if headline_metric(rows) == "argmax/miou" else _PROTOCOLS


def run_and_report(config: SuiteConfig, run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """:func:`mstool.compare.run_suite`, then :func:`write_results` of the run folder: the library call behind
    ``mstool compare``. ``options`` are :func:`~mstool.compare.run_suite`'s; returns the results' summary
    (``rows``, ``planned``: cells of the run folder's suite, this one merged with what it held, ``files``)."""
    rows = run_suite(config, run_dir, **options)
    return write_results(run_dir, rows)


def write_results(run_dir: str | Path, rows: list[dict[str, Any]] | None = None, *, plots: bool = True) -> dict:
    """Write ``results.csv``, ``results.json``, ``summary.md``, ``plots/*.png`` and ``report.html``.

    Args:
        run_dir: a run folder of :func:`mstool.compare.run_suite`.
        rows: the finished cells' rows; ``None`` reads every ``cells/*/metrics.json`` of the stored suite.
        plots: draw the plots (the tables are always written).

    Returns:
        ``{"rows": n, "planned": cells of the stored suite, "failed": [ids of cells whose job failed],
        "files": [paths written]}``.

    Raises:
        OutputError: ``run_dir`` is not a comparison run folder mstool wrote.
    """
    run_dir = Path(run_dir)
    if not is_mstool_folder(run_dir, "compare"):
        raise OutputError(f"{run_dir}: not an mstool comparison run folder (no config.toml written by mstool "
                          "compare); the report is written for an existing run")
    config = load_run_config(run_dir)
    if rows is None:
        rows = []
        for cell in config.cells():
            path = run_dir / "cells" / cell.id / "metrics.json"
            if path.exists():
                rows.append(json.loads(path.read_text()))
    failed = _failed_cells(config, run_dir)
    files = []
    flat = [{k: v for k, v in r.items() if k not in ("settings", "label/ntm")} | {
        "label/ntm": json.dumps(r.get("label/ntm")), "settings": json.dumps(r.get("settings"))} for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in flat:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    with atomic_path(run_dir / "results.csv") as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(run_dir / "results.json") as tmp:
        tmp.write_text(json.dumps({"mstool_version": __version__, "suite": config.to_dict(), "cells": rows,
                                   **({"failed": failed} if failed else {})},
                                  indent=1) + "\n")
    files += [run_dir / "results.csv", run_dir / "results.json"]
    notes_path = run_dir / "data_notes.json"
    notes = json.loads(notes_path.read_text()) if notes_path.exists() else []
    supervised = [r for r in rows if not is_unsupervised(r)]
    header, body = _summary_table(supervised) if supervised else ([], [])
    unsup_header, unsup_body = _unsupervised_table(rows) if len(supervised) < len(rows) else ([], [])
    unsup_note = _UNSUPERVISED_NOTE + (_SUPERVISED_REFERENCE if any(r["spec"] == "clean" for r in supervised) else "")
    planned = len(config.cells())
    md = [f"# Comparison suite: {config.data}, preset {config.preset}\n",
          f"{len(rows)} of {planned} cells finished; mean ± std over seeds. mstool {__version__}.\n"]
    md += [f"- {n}\n" for n in notes]
    agreement = _agreement_table(supervised) if supervised else ([], [])
    if config.labels:
        md += ["\n", _markdown(header, body) if supervised else "No supervised cell has finished yet.\n", "\n",
               _protocols(supervised), "\n"]
        if supervised:
            md += ["\n## What the labels predict\n\n", _markdown(*agreement), "\n", _AGREEMENT_NOTE, "\n"]
            unfinished = not_converged(supervised)
            md += ["\n## Training that did not converge\n\n"]
            md += [f"- {line}\n" for line in unfinished] or ["Every cell's validation curve had levelled off.\n"]
    if failed:
        md += ["\n## Cells that failed\n\n", *[f"- {f['cell']}: {f['error']}\n" for f in failed],
               "\nThe others went on; a re-run into this folder tries the failed cells again.\n"]
    if unsup_body:
        md += ["\n## Unsupervised methods beside supervised training\n\n", _markdown(unsup_header, unsup_body),
               "\n", unsup_note, "\n"]
    with atomic_path(run_dir / "summary.md") as tmp:
        tmp.write_text("".join(md))
    files.append(run_dir / "summary.md")
    images: list[tuple[str, Path]] = []
    if plots and rows:
        images = draw_all(run_dir, config, rows, headline_metric(rows))
        files += [p for _, p in images]
    _write_html(run_dir, config, rows, header, body, notes, images, planned, (unsup_header, unsup_body, unsup_note),
                agreement)
    files.append(run_dir / "report.html")
    return {"rows": len(rows), "planned": planned, "failed": [f["cell"] for f in failed],
            "files": [str(f) for f in files]}


def _failed_cells(config: SuiteConfig, run_dir: Path) -> list[dict[str, Any]]:
    """The cells of the plan whose last job failed (``failed.json``, no ``metrics.json``), in the plan's order."""
    out = []
    for cell in config.cells():
        folder = run_dir / "cells" / cell.id
        if (folder / FAILED_NAME).exists() and not (folder / "metrics.json").exists():
            out.append(json.loads((folder / FAILED_NAME).read_text()))
    return out


def _html_table(header: list[str], body: list[list[str]]) -> str:
    esc = html.escape
    if not body:
        return ""
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body)
    return table + "</table>"


def _write_html(run_dir, config, rows, header, body, notes, images, planned, unsupervised, agreement) -> None:
    esc = html.escape
    table = _html_table(header, body)
    if agreement[1]:
        table += f"<h2>What the labels predict</h2>{_html_table(*agreement)}<p>{esc(_AGREEMENT_NOTE)}</p>"
        unfinished = not_converged(rows)
        items = "".join(f"<li>{esc(line)}</li>" for line in unfinished)
        table += ("<h2>Training that did not converge</h2>"
                  + (f"<ul>{items}</ul>" if items else "<p>Every cell's validation curve had levelled off.</p>"))
    unsup = ""
    if unsupervised[1]:
        unsup = (f"<h2>Unsupervised methods beside supervised training</h2>{_html_table(*unsupervised[:2])}"
                 f"<p>{esc(unsupervised[2]).replace('**', '')}</p>")
    settings = esc((run_dir / "config.toml").read_text()) if (run_dir / "config.toml").exists() else ""
    figs = "".join(f"<figure><img src='{esc(str(p.relative_to(run_dir)))}' alt='{esc(t)}'>"
                   f"<figcaption>{esc(t)}</figcaption></figure>" for t, p in images)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mstool comparison: {esc(config.data)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} th, td {{ border: 1px solid #ccc; padding: 3px 6px; }}
th {{ background: #f0f0f0; }} td {{ text-align: right; }} td:first-child, td:nth-child(2) {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} pre {{ background: #f7f7f7; padding: 1em; }}
</style></head><body>
<h1>Noisy-label comparison: {esc(config.data)}</h1>
<p>{len(rows)} of {planned} cells finished (label spec × model × seed), preset <b>{esc(config.preset)}</b>,
models {esc(', '.join(config.models))}, seeds {esc(', '.join(map(str, config.seeds)))}. mstool {esc(__version__)}.
Per-cell numbers: <a href="results.csv">results.csv</a>, <a href="results.json">results.json</a>.</p>
<ul>{''.join(f'<li>{esc(n)}</li>' for n in notes)}</ul>
<h2>Summary (mean ± std over seeds)</h2>{table}
<p>{esc(_protocols(rows)).replace('**', '')}</p>
{unsup}
<h2>Plots</h2>{figs}
<h2>Settings</h2><pre>{settings}</pre>
</body></html>
"""
    with atomic_path(run_dir / "report.html") as tmp:
        tmp.write_text(page)
