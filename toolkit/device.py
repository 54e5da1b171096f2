"""Device choice, thread count and random generators: the only place where these are decided.

The library never seeds global state. Functions that draw random numbers take a ``generator`` and
draw on the CPU generator before moving the result to the input's device, so the same seed gives the
same numbers on every device. Only the CLI turns ``--seed`` into a generator (:func:`make_generator`).
"""

from __future__ import annotations

import os

import torch

from ._check import check_int
from .errors import DeviceError, ParameterError

__all__ = ["resolve_device", "set_threads", "make_generator", "spawn_seed", "describe_device"]

_DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a :class:`torch.device` that exists on this machine.

    ``auto`` picks the first CUDA device, then Apple's MPS, then the CPU.

    Raises:
        DeviceError: the device was named but is not available (with what is available).
        ParameterError: the string is not a device name.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ParameterError(f"`device` must be {_DEVICE_CHOICES}; got {spec!r}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceError(f"`device` {spec!r} was asked for but this machine has no CUDA device; use cpu or auto")
        index = 0 if dev.index is None else dev.index
        if index >= n:
            raise DeviceError(
                f"`device` {spec!r} does not exist; this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"`device` {spec!r} was asked for but MPS is not available here; use cpu or auto")
        return dev
    raise ParameterError(f"`device` must be {_DEVICE_CHOICES}; got {spec!r}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_threads(n: int | None) -> int:
    """Set torch's intra-op thread count; ``None`` or 0 keeps the current setting. Returns the count in force."""
    if n is not None:
        n = check_int(n, "threads", low=0, note="0 keeps the default")
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with ``seed`` (a fresh nondeterministic seed when ``None``).

    Random numbers are always drawn on the CPU and then moved, so one generator serves every device.

    Example:
        >>> a = torch.rand(3, generator=make_generator(0))
        >>> b = torch.rand(3, generator=make_generator(0))
        >>> bool((a == b).all())
        True
    """
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_int(seed, "seed", low=0))
    return g


def spawn_seed(generator: torch.Generator | None) -> int:
    """Draw a 63-bit integer seed from ``generator`` (or from a fresh one), for handing to a sub-step."""
    g = generator if generator is not None else make_generator(None)
    return int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())


def describe_device(device: torch.device | None = None) -> str:
    """A one-line human description of a device, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)``."""
    device = resolve_device("auto") if device is None else device
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"
    return str(device)
