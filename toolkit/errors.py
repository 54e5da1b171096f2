"""Exceptions and warnings raised by mstool.

Every error mstool raises derives from :class:`MstoolError`, and each subclass also inherits the builtin
exception it stands for, so ``except ValueError`` keeps working for callers who do not know mstool.
Messages name the parameter or file, what was expected and what came.
"""

from __future__ import annotations

__all__ = [
    "MstoolError",
    "MstoolWarning",
    "ShapeError",
    "DTypeError",
    "ParameterError",
    "DeviceError",
    "DeviceMismatchError",
    "DataError",
    "FileMissingError",
    "FileReadError",
    "LayoutError",
    "OutputError",
    "OutputExistsError",
    "SpecError",
]


class MstoolError(Exception):
    """Root of every error raised by mstool."""


class MstoolWarning(UserWarning):
    """Odd but legal input (a constant image, an empty mask); the call still returns a documented answer."""


class ShapeError(MstoolError, ValueError):
    """A tensor or array has the wrong number of dimensions or the wrong size (an empty batch included)."""


class DTypeError(MstoolError, TypeError, ValueError):
    """A tensor or array has the wrong dtype (float labels, integer scores), or a value that must be a tensor or
    array is something else (a list, a PIL image).

    A :class:`TypeError`, which is what Python raises for a value of the wrong kind; also a :class:`ValueError`,
    because these were :class:`ShapeError` (a ``ValueError``) before, and ``except ValueError`` keeps catching them.
    Not a ``ShapeError``: the shape may be right.
    """


class ParameterError(MstoolError, ValueError):
    """A parameter is outside its allowed range or set."""


class SpecError(ParameterError):
    """A label-noise spec string (``flip:0.45,0.45``) cannot be parsed or has out-of-range arguments."""


class DeviceError(MstoolError, RuntimeError):
    """A device problem: the requested device does not exist on this machine (this class), or tensors that are
    used together lie on different devices (:class:`DeviceMismatchError`)."""


class DeviceMismatchError(DeviceError, ValueError):
    """Tensors that are used together lie on different devices (``cuda:0`` and ``cpu``).

    A :class:`DeviceError`, so one ``except DeviceError`` handles every device problem, and through it a
    :class:`RuntimeError`, as torch's own "Expected all tensors to be on the same device"; also a
    :class:`ValueError`, as it was when this was a :class:`ShapeError`.
    """


class DataError(MstoolError, ValueError):
    """Values are not valid for their role: a file's content (a float mask, mismatched sizes) or a tensor's values
    (NaN scores, a negative or non-finite prior density)."""


class FileMissingError(MstoolError, FileNotFoundError):
    """A file or folder that was named does not exist."""


class FileReadError(MstoolError, OSError):
    """A file exists but cannot be decoded (unknown format, truncated, not an image)."""


class LayoutError(MstoolError, ValueError):
    """A dataset folder does not follow any supported layout, or its images and masks do not pair up."""


class OutputError(MstoolError, OSError):
    """An output path that may not be written: it overlaps an input, holds files mstool did not write, has the
    wrong suffix, or lies where nothing can be written."""


class OutputExistsError(OutputError, FileExistsError):
    """An output path exists and overwriting was not asked for."""
