"""Device choice, thread count, numeric precision and random generators: the only place where these are decided.

The library never seeds global state. Functions that draw random numbers take a ``generator`` and
draw on the CPU generator before moving the result to the input's device, so the same seed gives the
same numbers on every device. Only the CLI turns ``--seed`` into a generator (:func:`make_generator`).
"""

from __future__ import annotations

import os
import warnings
from contextlib import AbstractContextManager

import torch

from ._check import check_in, check_int
from .errors import DeviceError, MstoolWarning, ParameterError

__all__ = ["resolve_device", "set_threads", "make_generator", "spawn_seed", "describe_device", "PRECISIONS",
           "MixedPrecision"]

#: Precisions a training loop takes: ``auto`` (mixed on CUDA, float32 elsewhere), ``fp32``, ``bf16``, ``fp16``.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

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
        threads, cores = torch.get_num_threads(), os.cpu_count() or 0
        return f"cpu ({threads} thread{'s' * (threads != 1)}, {cores} core{'s' * (cores != 1)})"
    return str(device)


class MixedPrecision:
    """The precision of a network's training steps on one device: the autocast dtype and, for float16, the
    gradient scaler.

    The forward pass runs under :func:`torch.autocast` in ``dtype``; weights, optimizer state and (by the caller's
    ``.float()``) the loss stay float32. ``precision`` is one of :data:`PRECISIONS`:

    - ``auto``: bfloat16 on a CUDA device that supports it, float16 on one that does not, float32 elsewhere;
    - ``fp32``: no autocast;
    - ``bf16``: bfloat16 on CUDA or the CPU. On a CPU with bfloat16 units (AVX512-BF16 or AMX) the convolutions
      of a small U-Net ran 1.5 to 1.8 times faster; without them they are emulated and slower, which is warned;
    - ``fp16``: float16 with a gradient scaler, CUDA only.

    Args:
        device: where the network runs.
        precision: one of :data:`PRECISIONS`.

    Raises:
        ParameterError: an unknown ``precision``.
        DeviceError: ``fp16`` off CUDA, or ``bf16`` on a CUDA device or other device without it.

    Example:
        >>> mp = MixedPrecision(torch.device("cpu"))
        >>> mp.name, mp.dtype, mp.scaler
        ('fp32', None, None)
    """

    def __init__(self, device: torch.device, precision: str = "auto"):
        precision = check_in(precision, "precision", PRECISIONS)
        self.device = torch.device(device)
        kind = self.device.type
        if precision == "auto":
            precision = "fp32" if kind != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        if precision == "fp16" and kind != "cuda":
            raise DeviceError(f"`precision` 'fp16' needs a CUDA device; got {self.device} (use bf16 or fp32)")
        if precision == "bf16":
            if kind == "cuda" and not torch.cuda.is_bf16_supported():
                raise DeviceError(f"`precision` 'bf16': {self.device} has no bfloat16 support; use fp16 or fp32")
            if kind not in ("cuda", "cpu"):
                raise DeviceError(f"`precision` 'bf16' runs on CUDA or the CPU; got {self.device} (use fp32)")
            if kind == "cpu" and not _cpu_bf16():
                warnings.warn("`precision` 'bf16': this CPU has no bfloat16 units, so bfloat16 is emulated and "
                              "slower than fp32", MstoolWarning, stacklevel=2)
        self.name = precision
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def __repr__(self) -> str:
        return f"MixedPrecision({self.device}, {self.name!r})"

    def autocast(self) -> AbstractContextManager:
        """The context the forward pass runs in (a no-op for ``fp32``)."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Gradients of ``loss``, unscaled, so that clipping between this and :meth:`step` sees their true size."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step (skipped by the scaler when float16 gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def _cpu_bf16() -> bool:
    # private in torch (no public query exists); a torch without it is treated as having no bfloat16 units
    query = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(query()) if query is not None else False
    except RuntimeError:
        return False
