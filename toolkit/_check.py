"""The one place where shapes, dtypes and value ranges are checked at the public boundary.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import ParameterError, ShapeError

__all__ = ["check_shape", "check_range", "check_labels", "check_in", "check_same_device"]


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_shape(x: torch.Tensor, name: str, dims: str, *, dtype: str | None = None) -> None:
    """Check that ``x`` is a tensor with the named dimensions.

    Args:
        x: the tensor to check.
        name: the parameter name used in the message.
        dims: a space-separated list of dimension names such as ``"N C H W"``; a digit pins that size
            (``"N 1 H W"``).
        dtype: ``"float"``, ``"int"`` or ``"bool"`` to require a dtype family.

    Raises:
        ShapeError: with a message such as ``probs must be (N, C, H, W); got (4, 64, 64)``.

    Example:
        >>> check_shape(torch.zeros(2, 1, 8, 8), "images", "N 1 H W")
        >>> check_shape(torch.zeros(8, 8), "images", "N 1 H W")
        Traceback (most recent call last):
        ...
        mstool.errors.ShapeError: `images` must be (N, 1, H, W); got (8, 8)
    """
    names = dims.split()
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"`{name}` must be a torch.Tensor of shape {_fmt_shape(names)}; got {type(x).__name__}")
    bad = x.dim() != len(names) or any(n.isdigit() and int(n) != s for n, s in zip(names, x.shape))
    if bad:
        raise ShapeError(f"`{name}` must be {_fmt_shape(names)}; got {_fmt_shape(x.shape)}")
    if dtype == "float" and not x.is_floating_point():
        raise ShapeError(f"`{name}` must be a floating-point tensor; got {x.dtype}")
    if dtype == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ShapeError(f"`{name}` must be an integer tensor; got {x.dtype}")
    if dtype == "bool" and x.dtype != torch.bool:
        raise ShapeError(f"`{name}` must be a bool tensor; got {x.dtype}")


def check_range(
    value: float,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check that a scalar lies in an interval and return it as a float.

    Example:
        >>> check_range(0.1, "keep", 0, 1)
        0.1
        >>> check_range(1.5, "keep", 0, 1)
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: `keep` must be in [0, 1]; got 1.5
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"`{name}` must be a number; got {value!r}") from None
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if math.isnan(v) or too_low or too_high:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ParameterError(f"`{name}` must be in {lb}{_num(low)}, {_num(high)}{hb}; got {_num(value)}")
    return v


def _num(v: float) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def check_in(value: str, name: str, allowed: Sequence[str]) -> str:
    """Check that ``value`` is one of ``allowed``.

    Example:
        >>> check_in("box", "kernel", ["box", "gaussian"])
        'box'
    """
    if value not in allowed:
        raise ParameterError(f"`{name}` must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def check_labels(labels: torch.Tensor, name: str = "labels", *, num_classes: int | None = None,
                 ignore_index: int | None = 255) -> None:
    """Check a label batch: ``(N, H, W)`` integer tensor, classes ``0..K-1``, optionally ``ignore_index``.

    Raises:
        ShapeError: wrong shape or a floating dtype.
        ParameterError: a negative value, or a value ``>= num_classes`` that is not ``ignore_index``.
    """
    check_shape(labels, name, "N H W", dtype="int")
    if labels.numel() == 0:
        return
    if ignore_index is None or ignore_index > torch.iinfo(labels.dtype).max:  # int8 cannot hold 255 (it wraps)
        lo_t, hi_t = labels.aminmax()
    else:
        # masked_fill instead of boolean indexing: no copy of the valid pixels. Ignored pixels read as class 0,
        # which changes neither verdict (and fits every dtype: -1 would wrap to 255 in uint8).
        ignored = labels == ignore_index
        if bool(ignored.all()):
            return
        lo_t, hi_t = labels.masked_fill(ignored, 0).aminmax()
    lo, hi = int(lo_t), int(hi_t)
    if lo < 0:
        raise ParameterError(f"`{name}` must hold class indices >= 0; got a minimum of {lo}")
    if num_classes is not None and hi >= num_classes:
        allowed = f"0..{num_classes - 1}" + ("" if ignore_index is None else f" or {ignore_index} (ignore)")
        raise ParameterError(f"`{name}` must hold class indices in {allowed}; got a maximum of {hi}")


def check_same_device(*pairs: tuple[str, torch.Tensor]) -> None:
    """Check that every named tensor lives on the device of the first one."""
    first_name, first = pairs[0]
    for name, t in pairs[1:]:
        if t.device != first.device:
            raise ShapeError(
                f"`{name}` is on {t.device} but `{first_name}` is on {first.device}; move them to one device"
            )
