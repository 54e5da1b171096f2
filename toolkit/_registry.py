"""A name -> object registry, one per family (label zoo, models, unsupervised methods, synthetic kinds).

The names a user types are declared once, in :mod:`mstool.names`; a registry made with ``declared=`` accepts only
those, so the command line (which reads :mod:`mstool.names` without importing torch) and the registry cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ParameterError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Named entries of one family.

    Example:
        >>> models = Registry("model")
        >>> @models.register("tiny")
        ... def tiny(): return "a tiny model"
        >>> models.get("tiny")()
        'a tiny model'
        >>> models.get("huge")
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: unknown model 'huge'; choose one of: tiny
    """

    def __init__(self, family: str, *, declared: tuple[str, ...] | None = None):
        self.family = family
        self.declared = declared
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ParameterError(f"{self.family} {name!r} is registered twice")
            if self.declared is not None and name not in self.declared:
                raise ParameterError(f"{self.family} {name!r} is not declared in mstool.names (declared: "
                                     f"{', '.join(self.declared)}); add it there first")
            self._entries[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ParameterError(
                f"unknown {self.family} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
