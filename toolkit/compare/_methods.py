"""Unsupervised entries of a comparison suite: methods of :mod:`mstool.unsupervised` evaluated beside the
supervised cells, with the same test images and metrics, so one report holds the paper's table (supervised U-Net |
iGTT with EMS | without EMS | DFC | adaptive threshold | Otsu). This module parses the entries; a cell runs with
:func:`mstool.runs.segment_cell`.

A method entry is ``NAME[:ITEM,ITEM...]``: ``NAME`` a method of :data:`mstool.unsupervised.METHODS`, each ``ITEM``
either ``key=value`` (a constructor option, ``-`` read as ``_``: ``prior-weight=2``; a dotted key sets one entry
of a dict option: ``model-options.base=32``) or a bare flag set to true (``no-ems``). The item ``prior=METHOD`` is
not an option: it bootstraps a density prior from ``METHOD``'s masks of the same test images (no labels anywhere)
and passes it to the method, as ``mstool prior estimate --images --from METHOD`` followed by ``mstool segment
--prior`` would; ``prior=otsu+local+dfc`` makes it the consensus of several methods
(:func:`mstool.unsupervised.bootstrap_prior`). The prior's methods look at the side the entry's ``foreground``
says (``auto`` when it says nothing). ``prior=labels:SPEC`` instead gives the method the prior of rough labels of
the same test images, simulated by the label spec ``SPEC`` (``prior=labels:dilate:1+sample:0.3``; a spec's own
commas are kept, ``prior=labels:flip:0.2,0.1``; bare ``prior=labels`` is the exact labels): the paper's question
of what meta-structure information adds to an unsupervised model, asked with a quick annotation's worth of it
(:func:`mstool.runs.segment_cell`). ``scribbles=labels:SPEC``, for the methods that take scribbles (iGTT, DFC),
gives the method a partial annotation of the test images itself (``scribbles=labels:region:0.25``: a quarter of
each image drawn exactly); with ``prior=`` the same ``labels:SPEC`` the two are one draw, and such a row is scored
only where the annotation drew nothing.

What an unsupervised row measures: the method segments the test images without any label (it sees only them, the
paper's transductive setting). The headline, ``mask``, is the method's own label-free mask; ``oracle`` thresholds
its score map at the best threshold on the test labels (the paper's protocol; optimistic). Methods with random
draws (k-means, GMM, DFC, iGTT) run once per seed; Otsu, multi-Otsu and the local threshold are deterministic and
run once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ParameterError, SpecError
from ..labels import is_stochastic, parse_spec
from ..runs import LABELS_PRIOR, labels_prior_spec
from ..unsupervised import METHODS, build_method, check_takes_scribbles, parse_bootstrap

__all__ = ["MethodSpec", "parse_method_spec", "split_method_list", "nest_options", "UNSUPERVISED_PREFIX"]

UNSUPERVISED_PREFIX = "unsup-"
"""Cell ids of unsupervised rows start with this (``unsup-igtt-no-ems__seed0``)."""

@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A parsed method entry: registry ``name``, constructor ``options``, the ``prior`` (its bootstrap methods,
    ``otsu+local``, or ``labels:SPEC``) and the ``scribbles`` (``labels:SPEC``)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    prior: str | None = None
    scribbles: str | None = None

    @property
    def deterministic(self) -> bool:
        """Whether the entry has no random draws (its method and its prior's methods are deterministic, as their
        registry entries say, and a labels prior's spec draws nothing): a comparison runs it once, whatever the
        seeds."""
        specs = [spec for spec in map(labels_prior_spec, (self.prior, self.scribbles)) if spec is not None]
        if any(is_stochastic(spec) for spec in specs):
            return False
        bootstrap = [] if self.prior is None or labels_prior_spec(self.prior) is not None else self.prior.split("+")
        return all(METHODS.get(name).deterministic for name in [self.name, *bootstrap])

    def __str__(self) -> str:
        items = [f"{key}={value}" for key, value in (("prior", self.prior), ("scribbles", self.scribbles)) if value]
        for key, value in self.options:
            key = key.replace("_", "-")
            items.append(key if value is True else f"{key}={_format(value)}")
        return self.name + (":" + ",".join(items) if items else "")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_method_spec(text: str) -> MethodSpec:
    """Parse ``NAME[:ITEM,...]`` and check the name, the options (by building the method) and the prior method.

    Raises:
        ParameterError: an unknown method, an unknown or bad option, an item without a key, a bad prior method
            or labels spec, two priors, scribbles that are not ``labels:SPEC`` or for a method that takes none.

    Example:
        >>> str(parse_method_spec("igtt:no-ems")), str(parse_method_spec(" igtt : prior=otsu , rounds=4 "))
        ('igtt:no-ems', 'igtt:prior=otsu,rounds=4')
        >>> parse_method_spec("dfc:prior=local").prior
        'local'
        >>> str(parse_method_spec("igtt:prior=labels:flip:0.2,0.1,rounds=4"))
        'igtt:prior=labels:flip:0.2,0.1,rounds=4'
        >>> parse_method_spec("igtt:scribbles=labels:region:0.25").scribbles
        'labels:region:0.25'
    """
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"an unsupervised method entry must be NAME[:OPTIONS]; got {text!r}")
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in METHODS.names():
        raise ParameterError(f"unknown unsupervised method {name!r} in {text!r}; known: {', '.join(METHODS.names())}")
    options: dict[str, Any] = {}
    flags: list[str] = []
    prior = scribbles = None
    for item in _items(rest):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not key:
            raise ParameterError(f"empty option in unsupervised method entry {text!r}")
        if key == "prior":
            if prior is not None:
                raise ParameterError(f"one prior per unsupervised method entry; {text!r} names two")
            prior = _parse_prior(value.strip(), text)
            continue
        if key == "scribbles":
            if scribbles is not None:
                raise ParameterError(f"one scribbles item per unsupervised method entry; {text!r} names two")
            scribbles = _parse_scribbles(name, value.strip(), text)
            continue
        options[key] = _parse_value(value.strip()) if eq else True
        if not eq:
            flags.append(item)
    try:
        build_method(name, nest_options(options))  # a bad option fails now, naming the method, not in its cell
    except ParameterError as exc:
        if not flags:
            raise
        raise ParameterError(f"{exc} (if {', '.join(map(repr, flags))} was meant as a method: known methods are "
                             f"{', '.join(METHODS.names())})") from None
    return MethodSpec(name, tuple(sorted(options.items())), prior, scribbles)


def _items(rest: str) -> list[str]:
    """The entry's comma-separated items, with a labels spec (of ``prior=`` or ``scribbles=``) kept whole: a
    piece that continues the spec before it (``prior=labels:flip:0.2`` then ``0.1``) joins it."""
    items: list[str] = []
    for piece in (p.strip() for p in rest.split(",") if rest.strip()):
        head, _, value = items[-1].partition("=") if items else ("", "", "")
        kind, _, spec = value.strip().partition(":")
        if head.strip() in ("prior", "scribbles") and kind == LABELS_PRIOR and spec and "=" not in piece:
            try:
                parse_spec(f"{spec},{piece}")
            except SpecError:
                pass
            else:
                items[-1] += "," + piece
                continue
        items.append(piece)
    return items


def _parse_prior(value: str, text: str) -> str:
    """The canonical prior of an entry: ``a+b`` bootstrap methods, or ``labels:SPEC``."""
    kind, colon, spec = value.partition(":")
    try:
        if kind.strip() == LABELS_PRIOR:
            if colon and not spec.strip():
                raise ParameterError("a labels prior is `labels` or `labels:SPEC`; got an empty spec")
            return f"{LABELS_PRIOR}:{parse_spec(spec.strip() or 'clean')}"
        return "+".join(parse_bootstrap(value))
    except ParameterError as exc:
        hint = "" if kind.strip() == LABELS_PRIOR else f"; or `{LABELS_PRIOR}:SPEC` for rough labels"
        raise ParameterError(f"`prior={value}` in {text!r}: {exc}{hint}") from None


def _parse_scribbles(name: str, value: str, text: str) -> str:
    """The canonical scribbles of an entry, ``labels:SPEC``, for a method that takes scribbles."""
    kind, _, spec = value.partition(":")
    try:
        check_takes_scribbles(name)
        if kind.strip() != LABELS_PRIOR or not spec.strip():
            raise ParameterError(f"scribbles are `{LABELS_PRIOR}:SPEC`, a partial annotation made from the test "
                                 f"labels (e.g. `{LABELS_PRIOR}:region:0.25`)")
        return f"{LABELS_PRIOR}:{parse_spec(spec.strip())}"
    except ParameterError as exc:
        raise ParameterError(f"`scribbles={value}` in {text!r}: {exc}") from None


def nest_options(options: dict[str, Any]) -> dict[str, Any]:
    """``{"model_options.base": 4}`` -> ``{"model_options": {"base": 4}}``."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        head, dot, tail = key.partition(".")
        if not dot:
            out[key] = value
            continue
        sub = out.setdefault(head, {})
        if not isinstance(sub, dict):
            raise ParameterError(f"option {head!r} is given both as a value and as {key!r}")
        sub[tail] = value
    return out


def split_method_list(values: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split repeated and comma-separated method entries: a piece that starts with a method name (alone or
    followed by ``:``) starts the next entry, any other piece is an option of the current one.

    Example:
        >>> split_method_list("otsu,local,igtt:no-ems,rounds=4,igtt:prior=otsu,dfc")
        ['otsu', 'local', 'igtt:no-ems,rounds=4', 'igtt:prior=otsu', 'dfc']
    """
    names = set(METHODS.names())
    out: list[str] = []
    for value in [values] if isinstance(values, str) else list(values):
        for piece in (p.strip() for p in value.split(",")):
            if not piece:
                continue
            if piece.partition(":")[0].strip() in names or not out:
                out.append(piece)
            else:
                out[-1] += ("," if ":" in out[-1] else ":") + piece
    return out
