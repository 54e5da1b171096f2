"""Build an unsupervised method by registry name from plain options, as the CLI and the comparison suite do."""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch

from ..errors import ParameterError
from ._base import METHODS

__all__ = ["build_method", "method_options", "check_loadable", "check_takes_scribbles"]


def build_method(name: str, options: dict[str, Any] | None = None, *, checkpoint: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu"):
    """An unsupervised method by registry name, with options; ``checkpoint`` loads a trained one (iGTT).

    Raises:
        ParameterError: an unknown method, or an option the method does not take (the message lists the ones it
            takes).
    """
    cls = METHODS.get(name)
    if checkpoint is not None:
        check_loadable(name)
        return cls.load(checkpoint, device=device)
    known = method_options(name)
    if "foreground" in (options or {}) and "foreground" not in known:
        raise ParameterError(f"`foreground`: method {name!r} is multi-class (it returns intensity classes, with no "
                             "foreground side); leave --foreground out or choose a binary method")
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ParameterError(f"method {name!r} has no option {', '.join(map(repr, unknown))}; its options are: "
                             f"{', '.join(known) or 'none'}")
    return cls(**(options or {}))


def method_options(name: str) -> list[str]:
    """The option names an unsupervised method's constructor takes."""
    params = inspect.signature(METHODS.get(name).__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def check_loadable(name: str) -> None:
    if not hasattr(METHODS.get(name), "load"):
        raise ParameterError(f"method {name!r} has no trained state to load; --checkpoint is for igtt")




def check_takes_scribbles(name: str) -> None:
    """Refuse scribbles for a method whose registry entry says it takes none.

    Raises:
        ParameterError: naming the method and the ones that take scribbles.
    """
    if not METHODS.get(name).scribbles:
        takes = ", ".join(n for n in METHODS.names() if METHODS.get(n).scribbles)
        raise ParameterError(f"method {name!r} takes no scribbles (partial labels); {takes} do")
