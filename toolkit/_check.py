"""The one place where shapes, dtypes and value ranges are checked at the public boundary.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .errors import DeviceMismatchError, DTypeError, ParameterError, ShapeError

__all__ = ["check_shape", "check_int", "check_range", "check_labels", "check_in", "check_same_device"]


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
        DTypeError: ``x`` is not a tensor, or not of the ``dtype`` family.

    Example:
        >>> check_shape(torch.zeros(2, 1, 8, 8), "images", "N 1 H W")
        >>> check_shape(torch.zeros(8, 8), "images", "N 1 H W")
        Traceback (most recent call last):
        ...
        mstool.errors.ShapeError: `images` must be (N, 1, H, W); got (8, 8)
    """
    names = dims.split()
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"`{name}` must be a torch.Tensor of shape {_fmt_shape(names)}; got {type(x).__name__}")
    bad = x.dim() != len(names) or any(n.isdigit() and int(n) != s for n, s in zip(names, x.shape))
    if bad:
        raise ShapeError(f"`{name}` must be {_fmt_shape(names)}; got {_fmt_shape(x.shape)}")
    if dtype == "float" and not x.is_floating_point():
        raise DTypeError(f"`{name}` must be a floating-point tensor; got {x.dtype}")
    if dtype == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise DTypeError(f"`{name}` must be an integer tensor; got {x.dtype}")
    if dtype == "bool" and x.dtype != torch.bool:
        raise DTypeError(f"`{name}` must be a bool tensor; got {x.dtype}")


def check_int(value: object, name: str, *, low: int | None = None, high: int | None = None,
              note: str | None = None) -> int:
    """Check that ``value`` is an integer in ``[low, high]`` (bounds inclusive, ``None``: unbounded) and return it
    as a Python int.

    Python ints, numpy integer scalars and 0-d integer tensors pass, since a count read from an array or a tensor
    is as good as a literal one. Bools, floats (even ``2.0``), strings and None do not: a whole float is usually a
    computed value that was meant to be rounded somewhere, and ``True`` is a flag, not a count.

    ``note`` follows the rule in parentheses: the unit (``"pixels"``) or where a bound comes from.

    Raises:
        ParameterError: naming the parameter, the allowed integers and what came.

    Example:
        >>> check_int(np.int64(3), "clusters", low=2)
        3
        >>> check_int(1.5, "clusters", low=2)
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: `clusters` must be an integer >= 2; got 1.5 (float)
        >>> check_int(7, "depth", low=1, high=6)
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: `depth` must be an integer in [1, 6]; got 7
        >>> check_int(0, "distance", low=1, note="pixels")
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: `distance` must be an integer >= 1 (pixels); got 0
    """
    v = _as_int(value)
    if v is not None and (low is None or v >= low) and (high is None or v <= high):
        return v
    if low is not None and high is not None:
        rule = f"an integer in [{low}, {high}]"
    elif low is not None:
        rule = f"an integer >= {low}"
    elif high is not None:
        rule = f"an integer <= {high}"
    else:
        rule = "an integer"
    if note:
        rule += f" ({note})"
    # An integer out of range reads as itself; anything else also says its type (`2.0` and `'2'` look alike).
    got = str(v) if v is not None else "None" if value is None else f"{_short_repr(value)} ({type(value).__name__})"
    raise ParameterError(f"`{name}` must be {rule}; got {got}")


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (never a bool, which Python counts as one); else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if (isinstance(value, torch.Tensor) and value.dim() == 0 and value.dtype != torch.bool
            and not value.is_floating_point() and not value.is_complex()):
        return int(value.item())
    return None


def _short_repr(value: object, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


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
    """Check that every named tensor lives on the device of the first one.

    Raises:
        DeviceMismatchError: naming both tensors and their devices.
    """
    first_name, first = pairs[0]
    for name, t in pairs[1:]:
        if t.device != first.device:
            raise DeviceMismatchError(
                f"`{name}` is on {t.device} but `{first_name}` is on {first.device}; move them to one device"
            )
