"""Types shared by every floor of mstool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Progress"]

Progress = Callable[[dict[str, Any]], None]
"""A progress callback: called with one event dict (``{"event": "epoch", ...}``) at a time; it returns nothing and
must not raise. Every long-running function takes one as ``progress=`` and documents its events."""
