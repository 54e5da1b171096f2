"""Reading result rows: which kind a row is, the suite's headline metric, and how well label statistics rank
the trained scores."""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import kendalltau, spearmanr

__all__ = ["is_unsupervised", "headline_metric", "PREDICTORS", "rank_agreement", "number"]


def is_unsupervised(row: dict[str, Any]) -> bool:
    """Whether a result row is an unsupervised method's (rows written before the field existed are supervised)."""
    return row.get("kind") == "unsupervised"


def headline_metric(rows: list[dict[str, Any]]) -> str:
    """``val/dice`` for binary suites, ``argmax/miou`` for multi-class ones (of the supervised rows)."""
    rows = [r for r in rows if not is_unsupervised(r)]
    return "argmax/miou" if rows and rows[0].get("num_classes", 2) > 2 else "val/dice"


PREDICTORS = (
    ("label/expected_score", "expected-density score (h=1)"),
    ("label/similarity_pearson_h4", "one-draw meta-structure similarity (h=4)"),
    ("label/mutual_information", "mutual information"),
)
"""Label statistics the suite ranks against trained scores: the estimated expected-density similarity
(:func:`mstool.metastructure.expected_similarity`), the similarity of the one draw, and mutual information."""


def rank_agreement(rows: list[dict[str, Any]], metric: str, key: str) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau between a label statistic ``key`` and a trained score ``metric``, over cells.

    Returns ``{"n", "rho", "tau", "note"}``: with fewer than 3 cells, or no spread on either side (one label spec
    alone), rho and tau are NaN and ``note`` says why.
    """
    pts = [(float(r[key]), float(r[metric])) for r in rows
           if not is_unsupervised(r) and number(r.get(key)) and number(r.get(metric))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if len(pts) < 3:
        return {"n": len(pts), "rho": math.nan, "tau": math.nan, "note": f"too few cells ({len(pts)})"}
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return {"n": len(pts), "rho": math.nan, "tau": math.nan, "note": "no spread to rank"}
    return {"n": len(pts), "rho": float(spearmanr(xs, ys).statistic), "tau": float(kendalltau(xs, ys).statistic),
            "note": ""}


def number(v: Any) -> bool:
    """Whether ``v`` is a finite number (not a bool, not ``None``)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
