"""The density prior: per-image meta-structures stored in a ``density.npz`` file.

Legend: N batch · C channels · K classes · H, W pixels.

A prior holds one density map per image and class, estimated from (possibly rough or sparse) labels,
and is read by unsupervised segmentation to steer it towards the right meta-structure. The file is a
plain ``numpy.savez_compressed`` archive that loads without pickle:

============== ============================ ==================================================
key            array                        meaning
============== ============================ ==================================================
density        float32 ``(N, C, H, W)``     non-negative, finite densities
names          unicode ``(N,)``             image names without extension, unique, non-empty
classes        unicode ``(C,)``             class names, e.g. ``background``, ``foreground``
kernel         unicode, 0-d                 ``box`` or ``gaussian``
bandwidth      float, 0-d                   window bandwidth ``h`` in pixels
source         unicode, 0-d                 free text: what the prior was estimated from
format_version integer, 0-d                 :data:`FORMAT_VERSION`
fractions      float32 ``(N, C)``, optional  each class's fraction of the labels the densities
                                            describe, before an EMS thinned them (calibration)
============== ============================ ==================================================

Other keys are ignored, so later versions may add some without breaking older readers of version 1.

**Calibration.** A density estimated after EMS (a 10% sample, a skeleton) has the label's shape but not its
mass: the expected density of a ``sample:0.1`` label is a tenth of the clean one (the paper's Lemma 1). Methods
that read a prior as a foreground probability (Otsu's and the local threshold's foreground fraction, k-means' and
GMM's pixel odds) need the mass. A prior that records ``fractions`` gives, through :meth:`Prior.foreground`, its
foreground density scaled so that each entry's mean is its recorded fraction (clipped to 1): the same meaning
whatever EMS made it.

**Unknown pixels.** A density is the share of each class among the labelled pixels of a window, so its classes sum
to 1 where the window held a labelled pixel and to 0 where it held none: the pixels a partial annotation (one region
of each image, ``region:s``; scribbles; objects left as 255) says nothing about. :meth:`Prior.known` marks the
others, and :meth:`Prior.foreground` gives NaN at the unknown ones, which every method reads as "no prior here"
(the mean fraction and iGTT's consistency are taken over the known pixels). Read as density 0 instead, they would
say "background" wherever nobody looked.

References:
    Luo, Liu, Guo, Yang, arXiv 2205.00160 (2022): meta-structures of labels.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import IGNORE_INDEX
from .._fs import atomic_path
from ..errors import DataError, FileMissingError, FileReadError, ParameterError
from ._density import KERNELS, density

__all__ = ["FORMAT_VERSION", "Prior", "save_prior", "load_prior", "estimate_prior", "class_fractions"]

FORMAT_VERSION = 1
"""Version of the ``density.npz`` layout written by :func:`save_prior`."""

_KEYS = ("density", "names", "classes", "kernel", "bandwidth", "source", "format_version")
_SHOW = 5


@dataclass(frozen=True, eq=False)
class Prior:
    """Per-image, per-class densities with the names that tie them to images.

    Attributes:
        density: ``(N, C, H, W)`` float32, non-negative and finite (any device).
        names: ``N`` unique, non-empty image names without extension.
        classes: ``C`` unique class names, e.g. ``("background", "foreground")``.
        kernel: the window kernel the densities were estimated with (``box`` or ``gaussian``).
        bandwidth: the window bandwidth ``h`` in pixels.
        source: free text saying what the prior was estimated from.
        fractions: optional ``(N, C)`` float32 in ``[0, 1]``: each class's fraction of the labels the densities
            describe, measured before any EMS (see the module docstring); ``None`` when unknown.
        path: the file it was loaded from (``None`` if built in memory); used in messages only.

    Raises:
        DataError: on construction, when any of the above does not hold.

    Example:
        >>> p = Prior(torch.zeros(2, 2, 8, 8), ("a", "b"), ("background", "foreground"))
        >>> p
        Prior(2 images of 8 x 8, classes=('background', 'foreground'), kernel='box', bandwidth=5, source='')
        >>> p.for_names(["b"]).names
        ('b',)
        >>> try:
        ...     p.match(["a.tif"], sizes=[(16, 16)])
        ... except DataError as e:
        ...     print(e)
        prior: entry 'a' is 8 x 8 but image a.tif is 16 x 16
    """

    density: torch.Tensor
    names: tuple[str, ...]
    classes: tuple[str, ...]
    kernel: str = "box"
    bandwidth: float = 5.0
    source: str = ""
    fractions: torch.Tensor | None = field(default=None, repr=False)
    path: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        names = _as_str_tuple(self.names, "names", self._where())
        classes = _as_str_tuple(self.classes, "classes", self._where())
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "classes", classes)
        problem = _content_problem(self.density, names, classes, self.kernel, self.bandwidth, self.source)
        problem = problem or _fractions_problem(self.fractions, self.density)
        if problem:
            raise DataError(f"{self._where()}: {problem}")
        object.__setattr__(self, "bandwidth", float(self.bandwidth))

    def __repr__(self) -> str:
        n, _, h, w = self.density.shape
        return (f"Prior({n} images of {h} x {w}, classes={self.classes!r}, kernel={self.kernel!r}, "
                f"bandwidth={self.bandwidth:g}, source={self.source!r})")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of every entry."""
        return int(self.density.shape[-2]), int(self.density.shape[-1])

    def to(self, device: torch.device | str) -> Prior:
        """The same prior with its densities on ``device``."""
        return replace(self, density=self.density.to(device),
                       fractions=None if self.fractions is None else self.fractions.to(device))

    def for_names(self, names: Sequence[str]) -> Prior:
        """Select and reorder entries by image name.

        A name is looked up as given, then without its folder and extension (``x/a.tif`` finds ``a``).

        Raises:
            DataError: some names have no entry; the message lists a few of them and of the prior's names.
        """
        index = self._indices(names)
        return replace(self, density=self.density[index], names=tuple(self.names[i] for i in index),
                       fractions=None if self.fractions is None else self.fractions[index])

    def match(self, names: Sequence[str], sizes: Sequence[tuple[int, int]] | None = None) -> Prior:
        """Check that every image has an entry of its size, and return the prior in the images' order.

        Args:
            names: image names or file names (looked up as in :meth:`for_names`).
            sizes: ``(H, W)`` of each image, or ``None`` to skip the size check.

        Returns:
            :meth:`for_names` of ``names``: entry ``i`` belongs to image ``i``.

        Raises:
            DataError: ``prior <path>: no entry for images a.tif, b.tif (prior has: x, y, ...)`` or
                ``prior <path>: entry 'x' is 256 x 256 but image x.tif is 512 x 512``.
            ParameterError: ``sizes`` and ``names`` differ in length.
        """
        names = [str(n) for n in names]
        index = self._indices(names)
        if sizes is not None:
            sizes = [tuple(int(v) for v in s) for s in sizes]
            if len(sizes) != len(names):
                raise ParameterError(f"`sizes` must have one (H, W) per name; got {len(sizes)} sizes "
                                     f"for {len(names)} names")
            h, w = self.size
            wrong = [(i, s) for i, s in enumerate(sizes) if s != (h, w)]
            if wrong:
                i, (hi, wi) = wrong[0]
                more = f" (and {len(wrong) - 1} more images differ)" if len(wrong) > 1 else ""
                raise DataError(f"{self._where()}: entry '{self.names[index[i]]}' is {h} x {w} but image "
                                f"{names[i]} is {hi} x {wi}{more}")
        return self.for_names(names)

    def known(self) -> torch.Tensor:
        """``(N, 1, H, W)`` bool: the pixels the prior knows, those whose densities are not all 0.

        A density is the share of each class among the labelled pixels of a window (:func:`density`), so its
        classes sum to 1 wherever the window held a labelled pixel and to 0 where it held none: away from every
        labelled pixel of a partial annotation (``region:s``, scribbles, objects left unlabelled), where the
        prior says nothing.

        Example:
            >>> labels = torch.full((1, 1, 12), 255)
            >>> labels[..., :3] = 1
            >>> estimate_prior(labels, ["a"], num_classes=2, bandwidth=1).known()[0, 0, 0].tolist()[:6]
            [True, True, True, True, False, False]
        """
        return self.density.sum(1, keepdim=True) > 0

    def foreground(self, *, calibrated: bool = True) -> torch.Tensor:
        """``(N, 1, H, W)`` foreground density (channel 1) of a binary prior, NaN where it is unknown (:meth:`known`).

        With ``calibrated`` and recorded ``fractions``, each entry is scaled and clipped to 1 so that its mean over
        the known pixels is its foreground fraction (module docstring; the scale is found by bisection, since
        clipping takes mass away): a foreground probability map whatever EMS made it. Where the density covers too
        little of the known pixels to hold that mass (a sparse sample of a skeleton), the rest is spread over the
        other known pixels in proportion to their room below 1, so the mean is still the fraction.

        Raises:
            DataError: the prior does not have exactly 2 classes.

        Example:
            >>> d = torch.zeros(1, 2, 4, 4)
            >>> d[:, 1, :2] = 0.1  # a 10% sample of a label whose top half is foreground
            >>> d[:, 0] = 1 - d[:, 1]
            >>> p = Prior(d, ("a",), ("background", "foreground"), fractions=torch.tensor([[0.5, 0.5]]))
            >>> [round(v, 3) for v in p.foreground()[0, 0, :, 0].tolist()], p.foreground(calibrated=False).max() < 0.11
            ([1.0, 1.0, 0.0, 0.0], tensor(True))
        """
        if len(self.classes) != 2:
            raise DataError(f"{self._where()}: foreground() needs a binary prior (2 classes); this one has "
                            f"{len(self.classes)}: {', '.join(self.classes)}")
        fg = self.density[:, 1:2]
        known = self.known()
        unknown = torch.tensor(math.nan, device=fg.device)
        if not calibrated or self.fractions is None or fg.numel() == 0:
            return torch.where(known, fg, unknown)
        count = known.sum((1, 2, 3), keepdim=True).clamp_min(1)
        full = bool(known.all())  # then the plain mean, so a prior known everywhere calibrates bit for bit as before

        def mean(x: torch.Tensor) -> torch.Tensor:  # over the known pixels of each entry
            return x.mean((1, 2, 3), keepdim=True) if full else (x * known).sum((1, 2, 3), keepdim=True) / count

        target = self.fractions[:, 1].view(-1, 1, 1, 1).to(fg)
        top = fg.amax((1, 2, 3), keepdim=True)
        # mean(min(s d, 1)) grows with s from 0 to the share of pixels with density: bisect s in [0, 1 / min d>0]
        low = torch.zeros_like(top)
        smallest = torch.where(fg > 0, fg, torch.full_like(fg, math.inf)).amin((1, 2, 3), keepdim=True)
        high = torch.where(top > 0, 1 / smallest.clamp_min(1e-12), torch.zeros_like(top))
        for _ in range(40):
            mid = (low + high) / 2
            over = mean((fg * mid).clamp(max=1)) > target
            high, low = torch.where(over, mid, high), torch.where(over, low, mid)
        q = (fg * low).clamp(max=1)
        # a sparse density (a 10% sample of a few skeleton pixels) may cover less of the image than the fraction:
        # the mass it cannot hold is spread over the rest in proportion to the room left, so the mean is right
        room = 1 - q if full else (1 - q) * known
        missing = (target - mean(q)).clamp_min(0)
        share = mean(room)
        q = q + torch.where(share > 0, missing / share.clamp_min(1e-12), torch.zeros_like(share)) * room
        return torch.where(known, q, unknown)

    def _where(self) -> str:
        return "prior" if self.path is None else f"prior {self.path}"

    def _indices(self, names: Sequence[str]) -> list[int]:
        if isinstance(names, (str, bytes)):
            raise ParameterError(f"`names` must be a sequence of names, not one string; got {names!r}")
        lookup = {n: i for i, n in enumerate(self.names)}
        index, missing = [], []
        for name in (str(n) for n in names):
            i = lookup.get(name, lookup.get(Path(name).stem))
            if i is None:
                missing.append(name)
            else:
                index.append(i)
        if missing:
            raise DataError(f"{self._where()}: no entry for images {_few(missing)} "
                            f"(prior has: {_few(self.names)})")
        return index


def save_prior(path: str | os.PathLike, prior: Prior) -> None:
    """Write ``prior`` to ``path`` as a compressed ``.npz`` archive (see the module for its keys).

    The file is written atomically: a killed process leaves the old file or none, never half of one.
    ``path`` is used exactly as given (no ``.npz`` is appended).

    Example:
        >>> import tempfile
        >>> p = Prior(torch.rand(1, 2, 4, 4), ("a",), ("background", "foreground"), source="demo")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_prior(f"{d}/density.npz", p)
        ...     q = load_prior(f"{d}/density.npz")
        >>> bool(torch.equal(p.density, q.density)), q.names, q.source
        (True, ('a',), 'demo')
    """
    if not isinstance(prior, Prior):
        raise ParameterError(f"`prior` must be a Prior; got {type(prior).__name__}")
    arrays = {
        "density": prior.density.detach().to("cpu", torch.float32).contiguous().numpy(),
        "names": np.asarray(prior.names, dtype=np.str_).reshape(len(prior.names)),
        "classes": np.asarray(prior.classes, dtype=np.str_).reshape(len(prior.classes)),
        "kernel": np.asarray(prior.kernel, dtype=np.str_),
        "bandwidth": np.asarray(prior.bandwidth, dtype=np.float64),
        "source": np.asarray(prior.source, dtype=np.str_),
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
    }
    if prior.fractions is not None:
        arrays["fractions"] = prior.fractions.detach().to("cpu", torch.float32).contiguous().numpy()
    # Writing through a file object stops numpy from appending ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_prior(path: str | os.PathLike) -> Prior:
    """Read and validate a ``density.npz`` prior written by :func:`save_prior` (pickle is never used).

    Returns:
        :class:`Prior` with its densities on the CPU and ``path`` set.

    Raises:
        FileMissingError: ``path`` does not exist.
        FileReadError: the file is not an ``.npz`` archive or cannot be decoded.
        DataError: a missing key, an array of pickled objects, a wrong dtype or shape, names that do not
            match the density's size, NaN, infinite or negative densities, duplicate or empty names, or
            an unknown ``format_version``; the message names the file.
    """
    path = Path(path)
    where = f"prior {path}"
    if not path.is_file():
        raise FileMissingError(f"{where}: file not found")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if not magic.startswith(b"PK") and magic != b"\x93NUMPY":
        # np.load would take any other bytes for a pickle and report "pickled data", which misleads
        raise FileReadError(f"{where}: not a readable .npz archive (the file is not a zip archive; a prior is written "
                            "by `mstool prior estimate`)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FileReadError(f"{where}: not a readable .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FileReadError(f"{where}: a single .npy array, not an .npz archive")
    with archive:
        missing = [k for k in _KEYS if k not in archive.files]
        if missing:
            raise DataError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                            f"(a prior holds: {', '.join(_KEYS)})")
        arrays = {k: _read(archive, k, where) for k in _KEYS}
        fractions = _read(archive, "fractions", where) if "fractions" in archive.files else None
    version = _scalar(arrays["format_version"], "format_version", "iu", where)
    if version != FORMAT_VERSION:
        raise DataError(f"{where}: unknown format_version {version} (this mstool reads {FORMAT_VERSION})")
    dens = arrays["density"]
    if dens.dtype != np.float32:
        raise DataError(f"{where}: 'density' must be float32; got {dens.dtype}")
    if dens.ndim != 4:
        raise DataError(f"{where}: 'density' must be (N, C, H, W); got {dens.shape}")
    for key, dim, what in (("names", 0, "images"), ("classes", 1, "classes")):
        a = arrays[key]
        if a.dtype.kind != "U" or a.ndim != 1:
            raise DataError(f"{where}: '{key}' must be a 1-d unicode array; got {a.dtype} of shape {a.shape}")
        if len(a) != dens.shape[dim]:
            raise DataError(f"{where}: '{key}' has {len(a)} entries but 'density' has "
                            f"{dens.shape[dim]} {what}")
    return Prior(
        density=torch.from_numpy(dens),
        names=tuple(arrays["names"].tolist()),
        classes=tuple(arrays["classes"].tolist()),
        kernel=_scalar(arrays["kernel"], "kernel", "U", where),
        bandwidth=_scalar(arrays["bandwidth"], "bandwidth", "fiu", where),
        source=_scalar(arrays["source"], "source", "U", where),
        fractions=None if fractions is None else torch.from_numpy(_float32(fractions, "fractions", where)),
        path=str(path),
    )


def estimate_prior(labels: torch.Tensor, names: Sequence[str], *, num_classes: int | None = None,
                   class_names: Sequence[str] | None = None, kernel: str = "box", bandwidth: float = 5,
                   source: str = "labels", ignore_index: int | None = IGNORE_INDEX,
                   normalize_ignored: bool = True, reference: torch.Tensor | None = None) -> Prior:
    """The densities of a label batch (:func:`density`) wrapped in a :class:`Prior`.

    Args:
        labels: ``(N, H, W)`` integer labels, classes ``0..K-1`` or ``ignore_index``.
        names: ``N`` image names (stored as given; use names without extension).
        num_classes: ``K``; ``None`` infers it (at least 2).
        class_names: ``K`` class names; default ``("background", "foreground")`` for 2 classes, else
            ``("background", "class1", ..., "class{K-1}")``.
        kernel, bandwidth, ignore_index, normalize_ignored: as in :func:`density`.
        source: free text recorded in the prior (what the labels were).
        reference: ``(N, H, W)`` the labels before an EMS made ``labels`` from them: their class fractions are
            recorded as the prior's ``fractions`` (calibration). ``None``: the fractions of ``labels`` themselves.

    Returns:
        :class:`Prior` on the labels' device.

    Raises:
        ParameterError: ``names`` or ``class_names`` of the wrong length, plus whatever :func:`density`
            raises.

    Example:
        >>> labels = torch.zeros(2, 8, 8, dtype=torch.long)
        >>> labels[0, 2:6, 2:6] = 1
        >>> prior = estimate_prior(labels, ["a", "b"], bandwidth=1, source="demo")
        >>> prior.classes, prior.density.shape
        (('background', 'foreground'), torch.Size([2, 2, 8, 8]))
    """
    d = density(labels, num_classes, kernel=kernel, bandwidth=bandwidth, ignore_index=ignore_index,
                normalize_ignored=normalize_ignored)
    n, k = d.shape[:2]
    if isinstance(names, (str, bytes)) or len(names) != n:
        got = repr(names) if isinstance(names, (str, bytes)) else f"{len(names)} names"
        raise ParameterError(f"`names` must hold one name per image ({n}); got {got}")
    if class_names is None:
        class_names = ("background", *(f"class{i}" for i in range(1, k)))
        if k == 2:
            class_names = ("background", "foreground")
    elif isinstance(class_names, (str, bytes)) or len(class_names) != k:
        got = repr(class_names) if isinstance(class_names, (str, bytes)) else f"{len(class_names)} names"
        raise ParameterError(f"`class_names` must hold one name per class ({k}); got {got}")
    fractions = class_fractions(labels if reference is None else reference, k, ignore_index=ignore_index)
    return Prior(d, tuple(names), tuple(class_names), kernel=kernel, bandwidth=float(bandwidth),
                 source=source, fractions=fractions.to(d.device))


def class_fractions(labels: torch.Tensor, num_classes: int, *, ignore_index: int | None = IGNORE_INDEX
                    ) -> torch.Tensor:
    """``(N, K)`` float32: each class's share of each label map's labelled pixels (0 for a map with none).

    Example:
        >>> class_fractions(torch.tensor([[[0, 1], [1, 255]]]), 2).mul(3).round().tolist()  # 1 and 2 of 3
        [[1.0, 2.0]]
    """
    flat = labels.flatten(1)
    valid = flat != ignore_index if ignore_index is not None else torch.ones_like(flat, dtype=torch.bool)
    counts = torch.stack([((flat == c) & valid).sum(1) for c in range(num_classes)], 1).float()
    return counts / valid.sum(1, keepdim=True).clamp_min(1).float()


def _as_str_tuple(values: Sequence[str], key: str, where: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise DataError(f"{where}: '{key}' must be a sequence of strings; got {type(values).__name__}")
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise DataError(f"{where}: '{key}' must hold strings; got {type(bad[0]).__name__} {bad[0]!r}")
    return tuple(str(v) for v in values)


def _content_problem(dens: torch.Tensor, names: tuple[str, ...], classes: tuple[str, ...], kernel: str,
                     bandwidth: float, source: str) -> str | None:
    """What is wrong with a prior's content, or ``None``."""
    if not isinstance(dens, torch.Tensor) or dens.dim() != 4:
        shape = tuple(dens.shape) if isinstance(dens, torch.Tensor) else type(dens).__name__
        return f"'density' must be an (N, C, H, W) tensor; got {shape}"
    if dens.dtype != torch.float32:
        return f"'density' must be float32; got {dens.dtype}"
    for key, values, dim, what in (("names", names, 0, "images"), ("classes", classes, 1, "classes")):
        if len(values) != dens.shape[dim]:
            return f"'{key}' has {len(values)} entries but 'density' has {dens.shape[dim]} {what}"
        empty = [i for i, v in enumerate(values) if not v.strip()]
        if empty:
            return f"'{key}' has an empty name at index {empty[0]}"
        seen, dups = set(), []
        for v in values:
            if v in seen and v not in dups:
                dups.append(v)
            seen.add(v)
        if dups:
            return f"'{key}' has duplicates: {_few(dups)}"
    if kernel not in KERNELS:
        return f"'kernel' must be one of {', '.join(KERNELS)}; got {kernel!r}"
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not (
            math.isfinite(bandwidth) and bandwidth >= 0):
        return f"'bandwidth' must be a finite number >= 0; got {bandwidth!r}"
    if not isinstance(source, str):
        return f"'source' must be a string; got {type(source).__name__}"
    if dens.numel():
        bad = int((~torch.isfinite(dens)).sum())
        if bad:
            return f"'density' holds {bad} NaN or infinite values"
        low = float(dens.min())
        if low < 0:
            return f"'density' holds negative values (minimum {low:g})"
    return None


def _fractions_problem(fractions: torch.Tensor | None, dens: torch.Tensor) -> str | None:
    """What is wrong with a prior's ``fractions``, or ``None``."""
    if fractions is None:
        return None
    if not isinstance(fractions, torch.Tensor) or tuple(fractions.shape) != tuple(dens.shape[:2]):
        shape = tuple(fractions.shape) if isinstance(fractions, torch.Tensor) else type(fractions).__name__
        return f"'fractions' must be (N, C) = {tuple(dens.shape[:2])} like 'density'; got {shape}"
    if fractions.dtype != torch.float32:
        return f"'fractions' must be float32; got {fractions.dtype}"
    if fractions.numel() and not bool(((fractions >= 0) & (fractions <= 1)).all()):
        return "'fractions' must lie in [0, 1]"
    return None


def _float32(a: np.ndarray, key: str, where: str) -> np.ndarray:
    if a.dtype != np.float32:
        raise DataError(f"{where}: '{key}' must be float32; got {a.dtype}")
    return a


def _read(archive: np.lib.npyio.NpzFile, key: str, where: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError:
        raise DataError(f"{where}: key '{key}' holds pickled Python objects, which are never loaded; "
                        f"store text as a unicode array") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise FileReadError(f"{where}: key '{key}' cannot be decoded ({e})") from None


def _scalar(a: np.ndarray, key: str, kinds: str, where: str) -> str | float | int:
    if a.ndim != 0 or a.dtype.kind not in kinds:
        want = {"U": "a unicode string", "iu": "an integer", "fiu": "a number"}[kinds]
        raise DataError(f"{where}: '{key}' must be {want} (0-d array); got {a.dtype} of shape {a.shape}")
    return a.item()


def _few(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_SHOW])
    return shown + (f", ... ({len(values) - _SHOW} more)" if len(values) > _SHOW else "")
