"""The label spec grammar: one string names a chain of zoo operations, e.g. ``skeleton+shift:1+sample:0.1``.

Legend: N batch · K classes · H, W pixels.

Grammar::

    spec  := step ("+" step)*        steps apply left to right
    step  := name | name ":" args    name from LABEL_ZOO (see spec_help())
    args  := arg ("," arg)*          numbers in usage order; a word for a choice (sample:0.1,ignore)
    list  := spec ("," spec)*        a comma followed by a letter starts the next spec (split_spec_list)

Parameters left out at the end take their defaults (``flip:0.2`` is the symmetric flip, ``scribble:0.1`` runs
of 8 pixels). ``str(parse_spec(text))`` is the canonical text: trailing defaults dropped, numbers written
shortest (``sample:0.10`` -> ``sample:0.1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import IGNORE_INDEX
from .._check import check_int
from ..errors import ParameterError, SpecError
from ._zoo import LABEL_ZOO, ZooOp, ZooParam, _fmt_number, _scan_labels

__all__ = [
    "LabelSpec",
    "SpecStep",
    "parse_spec",
    "apply_spec",
    "split_spec_list",
    "spec_help",
    "taxonomy_of",
    "is_stochastic",
]


class SpecStep(NamedTuple):
    """One step of a spec: the zoo name and its typed arguments, with every default filled in."""

    name: str
    args: tuple[object, ...]

    def __str__(self) -> str:
        op = LABEL_ZOO.get(self.name)
        args = list(self.args)
        params = list(op.params)
        while params and not params[-1].required and args[-1] == params[-1].default:
            args.pop()
            params.pop()
        if not args:
            return self.name
        return f"{self.name}:" + ",".join(_fmt_arg(a) for a in args)


def _fmt_arg(value: object) -> str:
    return value if isinstance(value, str) else _fmt_number(value)


@dataclass(frozen=True)
class LabelSpec:
    """A parsed label spec: the steps of a chain of zoo operations, applied left to right.

    Build one with :func:`parse_spec`; constructing it directly also checks every step. ``str(spec)`` gives
    the canonical text back.

    Attributes:
        steps: the ``(name, args)`` steps in order.

    Example:
        >>> spec = parse_spec("skeleton + shift:1 + sample:0.10")
        >>> str(spec), spec.steps[2]
        ('skeleton+shift:1+sample:0.1', SpecStep(name='sample', args=(0.1, 'background')))
        >>> spec.taxonomy, spec.stochastic
        ('PCL', True)
    """

    steps: tuple[SpecStep, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise SpecError(_empty_message())
        steps = []
        for step in self.steps:
            if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[1], tuple)):
                raise SpecError(f"a spec step must be a (name, args) pair with args a tuple; got {step!r}")
            name, args = step
            op = _lookup(name, str(name))
            if len(args) != len(op.params):
                raise SpecError(
                    f"`{name}` step needs {len(op.params)} argument(s) with defaults filled; got {len(args)}"
                )
            values = tuple(_check_value(op, p, a) for p, a in zip(op.params, args, strict=True))
            steps.append(SpecStep(name, values))
        object.__setattr__(self, "steps", tuple(steps))

    def __str__(self) -> str:
        return "+".join(str(step) for step in self.steps)

    @property
    def taxonomy(self) -> str:
        """The label kind: CL if every step is clean, RL if any is random, PCL if any perturbs, else RCL."""
        kinds = {LABEL_ZOO.get(s.name).taxonomy for s in self.steps}
        for kind in ("RL", "PCL", "RCL"):
            if kind in kinds:
                return kind
        return "CL"

    @property
    def stochastic(self) -> bool:
        """Whether any step draws random numbers (so the output depends on the generator)."""
        return any(LABEL_ZOO.get(s.name).stochastic for s in self.steps)

    @property
    def noise_mode(self) -> str:
        """How training draws this label by default: ``online`` (afresh every epoch) when every step is an online
        operation of the zoo (the flips), else ``offline`` (one fixed label per image).

        Example:
            >>> parse_spec("flip:0.45,0.45").noise_mode, parse_spec("sample:0.1").noise_mode
            ('online', 'offline')
        """
        return "online" if all(LABEL_ZOO.get(s.name).online for s in self.steps) else "offline"


def _empty_message() -> str:
    return (
        "empty label spec; write NAME or NAME:ARGS, steps joined by '+' "
        f"(e.g. skeleton+shift:1+sample:0.1); names: {', '.join(LABEL_ZOO.names())}"
    )


def _lookup(name: str, text: str) -> ZooOp:
    if name not in LABEL_ZOO:
        where = "" if name == text else f" in {text!r}"
        raise SpecError(f"unknown label spec {name!r}{where}; choose one of: {', '.join(LABEL_ZOO.names())}")
    return LABEL_ZOO.get(name)


def _bad(op: ZooOp, param: ZooParam, got: str) -> SpecError:
    word = "option" if param.kind == "choice" else "argument"
    return SpecError(f"`{op.name}` {word} {param.name} must be {param.range_text()}; got {got} (usage: {op.usage})")


def _check_value(op: ZooOp, param: ZooParam, value: object) -> object:
    """Check a typed argument against its parameter; return it (ints as int, floats as float)."""
    if value is None and param.default is None:
        return None
    if param.kind == "choice":
        if not isinstance(value, str) or value not in param.choices:
            raise _bad(op, param, repr(value))
        return value
    if param.kind == "int":
        try:  # check_int's rule for what is an integer; a spec's message names the operation and its usage
            value = check_int(value, param.name)
        except ParameterError:
            raise SpecError(f"`{op.name}` argument {param.name} must be an integer; got {value!r} "
                            f"(usage: {op.usage})") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"`{op.name}` argument {param.name} must be a number; got {value!r} (usage: {op.usage})")
    else:
        value = float(value)
    too_low = param.low is not None and value < param.low
    too_high = param.high is not None and value > param.high
    if (isinstance(value, float) and math.isnan(value)) or too_low or too_high:
        raise _bad(op, param, _fmt_arg(value))
    return value


def _convert(op: ZooOp, param: ZooParam, text: str) -> object:
    """Turn one argument's text into its typed value."""
    if param.kind == "choice":
        return _check_value(op, param, text)
    try:
        value: object = int(text) if param.kind == "int" else float(text)
    except ValueError:
        kind = "an integer" if param.kind == "int" else "a number"
        raise SpecError(f"`{op.name}` argument {param.name} must be {kind}; got {text!r} (usage: {op.usage})") from None
    return _check_value(op, param, value)


def _parse_step(text: str, spec: str) -> SpecStep:
    name, colon, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise SpecError(f"a step of {spec!r} is empty; steps are joined by '+' (e.g. skeleton+shift:1+sample:0.1)")
    op = _lookup(name, spec)
    parts = [p.strip() for p in rest.split(",")] if colon else []
    if colon and not any(parts):
        raise SpecError(f"`{name}` has ':' but no arguments (usage: {op.usage})")
    if any(not p for p in parts):
        raise SpecError(f"`{name}` has an empty argument in {text.strip()!r} (usage: {op.usage})")
    n_required = sum(p.required for p in op.params)
    if not n_required <= len(parts) <= len(op.params):
        raise SpecError(
            f"`{name}` takes {_count_text(n_required, len(op.params))}; got {len(parts)} (usage: {op.usage})"
        )
    args = [_convert(op, p, t) for p, t in zip(op.params, parts, strict=False)]
    args += [p.default for p in op.params[len(parts) :]]
    return SpecStep(name, tuple(args))


def _count_text(low: int, high: int) -> str:
    if high == 0:
        return "no arguments"
    if low == high:
        return f"{low} argument" + ("s" if low != 1 else "")
    return f"{low} to {high} arguments"


def parse_spec(spec: str | LabelSpec) -> LabelSpec:
    """Parse a spec string such as ``flip:0.45,0.45`` or ``skeleton+shift:1+sample:0.1``.

    Args:
        spec: the text (a :class:`LabelSpec` is returned as it is).

    Returns:
        The :class:`LabelSpec`.

    Raises:
        SpecError: empty spec or step, unknown name (the message lists the known ones), wrong argument count,
            an argument of the wrong type or out of range (the message gives the allowed range and the usage).

    Example:
        >>> str(parse_spec("flip:0.45,0.45"))
        'flip:0.45,0.45'
        >>> try:
        ...     parse_spec("flip:1.5")
        ... except SpecError as error:
        ...     print(error)
        `flip` argument f must be in [0, 1]; got 1.5 (usage: flip:f,b or flip:f)
    """
    if isinstance(spec, LabelSpec):
        return spec
    if not isinstance(spec, str):
        raise SpecError(f"a label spec must be a string; got {type(spec).__name__}")
    if not spec.strip():
        raise SpecError(_empty_message())
    return LabelSpec(tuple(_parse_step(part, spec) for part in spec.split("+")))


def split_spec_list(text: str) -> list[str]:
    """Split a comma-separated list of specs: a comma followed by a letter starts the next spec.

    A word that is a choice of the step before it stays with it (``sample:0.1,ignore``). Specs are not parsed.

    Example:
        >>> split_spec_list("clean,sample:0.1,flip:0.2,0.2,dilate:2")
        ['clean', 'sample:0.1', 'flip:0.2,0.2', 'dilate:2']
        >>> split_spec_list("sample:0.1,ignore, translate:-2,3")
        ['sample:0.1,ignore', 'translate:-2,3']
    """
    specs: list[str] = []
    for chunk in text.split(","):
        word = chunk.strip()
        if word[:1].isalpha() and not (specs and _is_choice_word(specs[-1], word)):
            specs.append(word)
        elif specs:
            specs[-1] += "," + word
        elif word:
            raise SpecError(f"a spec list must start with a spec name; got {text!r}")
    if not specs:
        raise SpecError(f"empty spec list {text!r}; give specs separated by commas (e.g. clean,sample:0.1)")
    return specs


def _is_choice_word(previous: str, word: str) -> bool:
    last = previous.split("+")[-1]
    name = last.partition(":")[0].strip()
    if name not in LABEL_ZOO or ":" not in last:
        return False
    return any(word in p.choices for p in LABEL_ZOO.get(name).params)


def apply_spec(
    labels: torch.Tensor,
    spec: str | LabelSpec,
    *,
    generator: torch.Generator | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Apply a spec's steps to a label batch, left to right, drawing random numbers from ``generator`` in
    order.

    Args:
        labels: ``(N, H, W)`` integer labels, classes ``0..K-1``, 255 ignored.
        spec: spec text or a parsed :class:`LabelSpec`.
        generator: CPU random generator; the same seed gives the same labels on every device.
        num_classes: K for the steps that need it (``flip:f``, ``pairflip``, ``random``, ``markov``); default
            max label + 1 (at least 2).

    Returns:
        ``(N, H, W)`` labels of the same dtype and device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> labels[0, 2:6, 2:6] = 1
        >>> apply_spec(labels, "sample:0.25", generator=g).sum().item()
        4
    """
    parsed = parse_spec(spec)
    _, _, small = _scan_labels(labels, num_classes)
    # Classes fit in a byte, so the steps run on byte labels: a wider batch is read once here and written once
    # at the end, not at every step, and the check each step repeats costs an eighth. Unless `num_classes`
    # allows a step (random, flip) to make classes that do not fit, or there is nothing to do but copy.
    narrow = (
        labels.dtype != torch.uint8
        and labels.numel() > 0
        and (num_classes or 0) <= IGNORE_INDEX
        and any(step.name != "clean" for step in parsed.steps)
    )
    work = (labels.to(torch.uint8) if small is None else small) if narrow else labels
    for step in parsed.steps:
        work = LABEL_ZOO.get(step.name).run(work, *step.args, generator=generator, num_classes=num_classes)
    return work.to(labels.dtype) if narrow else work


def spec_help() -> str:
    """One line per zoo operation: usage, label kind and what it does (for ``mstool labels --help``).

    Example:
        >>> print(spec_help().splitlines()[0])
        clean                CL   the clean labels, unchanged
    """
    ops = [LABEL_ZOO.get(name) for name in LABEL_ZOO.names()]
    width = max(len(op.usage) for op in ops) + 2
    return "\n".join(f"{op.usage:<{width}}{op.taxonomy:<5}{op.help}" for op in ops)


def taxonomy_of(spec: str | LabelSpec) -> str:
    """The label kind of a spec: ``CL`` if all steps are clean, ``RL`` if any is random, ``PCL`` if any
    perturbs the structure, else ``RCL``.

    Example:
        >>> taxonomy_of("clean"), taxonomy_of("sample:0.1"), taxonomy_of("skeleton+shift:1+sample:0.1")
        ('CL', 'RCL', 'PCL')
        >>> taxonomy_of("dilate:2+random:0.5")
        'RL'
    """
    return parse_spec(spec).taxonomy


def is_stochastic(spec: str | LabelSpec) -> bool:
    """Whether a spec draws random numbers (its output depends on the generator).

    Example:
        >>> is_stochastic("dilate:2+skeleton"), is_stochastic("dilate:2+shift:1")
        (False, True)
    """
    return parse_spec(spec).stochastic
