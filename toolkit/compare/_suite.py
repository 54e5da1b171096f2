"""The comparison suite's plan: which cells (label spec x model x seed) to run, with which settings and data.

A suite is the paper's experiment made a command: train the same network on clean, sampled, flipped, perturbed and
random labels, then compare. Every cell is an independent job (a training run and an evaluation) that writes into
its own folder, so cells can run in any order, on any machine, and a suite resumes by skipping finished cells.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._check import check_in, check_int
from ..data import DataSource
from ..engine import PRESETS, TrainConfig
from ..errors import FileReadError, ParameterError
from ..labels import LABEL_ZOO, LabelSpec, parse_spec, split_spec_list
from ..models import MODELS
from ..runs import run_config, run_source
from ._methods import UNSUPERVISED_PREFIX, parse_method_spec

__all__ = ["SuiteConfig", "Cell", "LabelEntry", "plan_cells", "cell_id", "parse_list", "write_toml", "read_config_file",
           "DEFAULT_LABELS", "label_folder"]

DEFAULT_LABELS = (
    "clean", "sample:0.1", "sample:0.5", "flip:0.2,0.2", "flip:0.45,0.45", "flip:0.9,0.9",
    "dilate:2", "erode:1", "skeleton", "random:0.3",
)
"""The paper's label families: CL, RCL (sampled, flipped, inverted), PCL (dilated, eroded, skeleton), RL."""


@dataclass(frozen=True)
class LabelEntry:
    """One ``labels`` entry of a suite, parsed once: a zoo spec, or a folder of real noisy masks (``NAME=PATH``).

    The entry travels from the command line through the plan (:attr:`Cell.label`) to the results row, which
    reads its family, level and taxonomy from it; nothing parses the text again.

    Attributes:
        text: the canonical text (``flip:0.45,0.45``; ``NAME=/absolute/path``), as ``config.toml`` stores it.
        spec: the parsed zoo spec (``None`` for a folder).
        folder: ``(name, path)`` of a folder (``None`` for a zoo spec).

    Example:
        >>> entry = LabelEntry.parse(" flip:0.45 , 0.45 ")
        >>> entry.text, entry.family, entry.taxonomy, entry.spec.noise_mode
        ('flip:0.45,0.45', ('flip', 0.45), 'RCL', 'online')
    """

    text: str
    spec: LabelSpec | None = None
    folder: tuple[str, str] | None = None

    @classmethod
    def parse(cls, entry: str | LabelEntry) -> LabelEntry:
        """Parse and check a labels entry; a folder's path is made absolute once it is known to be a folder.

        Raises:
            SpecError: a bad zoo spec.
            ParameterError: a folder named like a zoo operation, or a path that is not a folder.
        """
        if isinstance(entry, LabelEntry):
            return entry
        folder = label_folder(entry)
        if folder is None:
            spec = parse_spec(entry)
            return cls(str(spec), spec=spec)
        name, path = folder
        if name == "clean" or name in LABEL_ZOO.names():
            raise ParameterError(f"labels entry {entry!r}: {name!r} names a label spec; give the folder another "
                                 "name")
        if not Path(path).is_dir():
            raise ParameterError(f"labels entry {entry!r}: {path} is not a folder of masks")
        resolved = str(Path(path).resolve())
        return cls(f"{name}={resolved}", folder=(name, resolved))

    @property
    def name(self) -> str:
        """The folder-safe name cells are named by (a folder entry: its ``NAME``)."""
        return _slug(self.text)

    @property
    def family(self) -> tuple[str, float | None]:
        """The family (first operation) and noise level (its first number) for plots; a folder: its name."""
        if self.spec is None:
            return self.folder[0], None
        if len(self.spec.steps) > 1:
            return self.text, None
        step = self.spec.steps[0]
        if step.name == "clean":
            return "clean", 0.0
        numbers = [a for a in step.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        return step.name, (float(numbers[0]) if numbers else None)

    @property
    def taxonomy(self) -> str | None:
        """The spec's taxonomy class (CL, RCL, PCL, RL); ``None`` for a folder (measured, not declared)."""
        return None if self.spec is None else self.spec.taxonomy

    @property
    def training_spec(self) -> LabelSpec:
        """What the trainer applies: the spec, or ``clean`` for a folder (its masks are trained on as given)."""
        return self.spec if self.spec is not None else parse_spec("clean")

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Cell:
    """One job of a suite: train ``model`` on ``spec`` labels with ``seed``, then evaluate (``kind`` supervised);
    or segment the test images with the unsupervised method entry ``spec`` (``kind`` unsupervised, ``model`` the
    method's name), then evaluate. A supervised cell planned by :func:`plan_cells` carries its parsed labels
    entry in ``label``."""

    spec: str
    model: str
    seed: int
    kind: str = "supervised"
    label: LabelEntry | None = field(default=None, compare=False, repr=False)

    @property
    def entry(self) -> LabelEntry:
        """The parsed labels entry of a supervised cell."""
        return self.label if self.label is not None else LabelEntry.parse(self.spec)

    @property
    def id(self) -> str:
        if self.kind == "unsupervised":
            return UNSUPERVISED_PREFIX + _slug(self.spec) + f"__seed{self.seed}"
        return cell_id(self.spec, self.model, self.seed)


_LABEL_FOLDER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.+)")


def label_folder(spec: str) -> tuple[str, str] | None:
    """``(name, path)`` when a labels entry names a folder of real noisy masks (``NAME=PATH``), else ``None``.

    Example:
        >>> label_folder("crowd=/data/crowd_masks"), label_folder("flip:0.2,0.2")
        (('crowd', '/data/crowd_masks'), None)
    """
    m = _LABEL_FOLDER.fullmatch(str(spec))
    return (m.group(1), m.group(2)) if m else None


def cell_id(spec: str, model: str, seed: int) -> str:
    """A folder-safe cell name, ``<spec>__<model>__seed<k>``.

    Example:
        >>> cell_id("flip:0.45,0.45", "unet", 2)
        'flip-0.45_0.45__unet__seed2'
    """
    return f"{_slug(spec)}__{model}__seed{seed}"


def _slug(spec: str) -> str:
    folder = label_folder(spec)
    slug = folder[0] if folder else str(spec)
    slug = slug.replace(":", "-").replace(",", "_").replace("=", "-")
    if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", slug):
        raise ParameterError(f"spec {spec!r} cannot name a folder")
    return slug


@dataclass
class SuiteConfig:
    """Every setting of a comparison suite (written to ``config.toml`` in the run folder).

    Attributes:
        data: a dataset folder, or ``synth:KIND`` for built-in synthetic data generated into the run folder.
        labels: label specs to train on (canonical strings, see :func:`mstool.labels.parse_spec`), or
            ``NAME=PATH`` for a folder of real noisy masks named like the training images (:func:`label_folder`);
            may be empty when ``unsupervised`` is not.
        models: network names of :data:`mstool.models.MODELS`.
        seeds: one cell per seed and spec and model.
        preset: the :class:`~mstool.engine.TrainConfig` preset (``quick`` or ``paper``).
        train: overrides of the preset's training settings (any :class:`~mstool.engine.TrainConfig` field).
            Without a ``noise_mode`` override, flipped labels are drawn online and the rest offline
            (:attr:`mstool.labels.LabelSpec.noise_mode`).
        layout: the dataset layout (``auto``, ``paper``, ``cellpose``, ``voc``).
        synth_n, synth_size, synth_seed: size of a ``synth:`` dataset (default per preset,
            :data:`mstool.runs.SYNTH_DEFAULTS`: 24 images of 128 px for ``quick``, 64 of 256 px for ``paper``) and
            its seed.
        synth_invert: turn a ``synth:`` dataset over (dark objects on a bright background).
        val_fraction: when the data has no validation split, this share of the training images (at least one)
            becomes the validation set, drawn with ``synth_seed`` (documented fallback; the report says so).
        fit: ``center`` crops images of different sizes to a common size (see
            :func:`mstool.engine.load_split_tensors`), ``None`` requires one size.
        unsupervised: unsupervised method entries evaluated beside the supervised cells on the same test images
            (``otsu``, ``igtt:no-ems``, ``igtt:prior=otsu``; see :func:`mstool.compare.parse_method_spec`).
    The data settings (``data``, ``layout``, ``fit``, ``mask_mode``, ``val_fraction``, ``synth_*``) make one
    :class:`~mstool.data.DataSource` (:attr:`source`), checked when the suite is made.
        mask_mode: how the dataset's masks are read (:func:`mstool.io.read_mask`); ``None``: the layout's default.
        mask_suffix: the cellpose layout's mask suffix (``name.tif`` pairs with ``name{mask_suffix}.tif``).
    """

    data: str = "synth:er"
    labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    models: list[str] = field(default_factory=lambda: ["unet"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    preset: str = "quick"
    train: dict[str, Any] = field(default_factory=dict)
    layout: str = "auto"
    synth_n: int | None = None
    synth_size: int | None = None
    synth_seed: int = 0
    synth_invert: bool = False
    val_fraction: float = 0.2
    fit: str | None = None
    unsupervised: list[str] = field(default_factory=list)
    mask_mode: str | None = None
    mask_suffix: str = "_masks"
    entries: dict[str, LabelEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_in(self.preset, "preset", list(PRESETS))
        self.unsupervised = _unique([str(parse_method_spec(s)) for s in self.unsupervised])
        if not self.labels and not self.unsupervised:
            raise ParameterError("`labels` must name at least one label spec (or `unsupervised` one method)")
        entries = [LabelEntry.parse(s) for s in self.labels]
        self.entries = {entry.text: entry for entry in entries}
        self.labels = list(self.entries)
        names = [entry.name for entry in self.entries.values()]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ParameterError(f"labels entries share the name {clash[0]!r}; give each folder its own name")
        for m in self.models:
            MODELS.get(m)
        if not self.models:
            raise ParameterError("`models` must name at least one model")
        self.models = _unique(list(self.models))
        if not self.seeds:
            raise ParameterError("`seeds` must name at least one seed")
        self.seeds = _unique([check_int(s, "seeds", low=0) for s in self.seeds])
        run_config(self.preset, self.train)  # validates the overrides now, not mid-suite
        if not self.is_synthetic:  # recorded in config.toml: the same folder whatever the working directory
            self.data = str(Path(self.data).resolve())
        source = self.source  # checks the data settings now
        if source.is_synthetic:
            self.synth_n, self.synth_size = source.synth_n, source.synth_size

    @property
    def source(self) -> DataSource:
        """Where the suite's data comes from and how it is read."""
        return run_source(self.data, self.preset, layout=self.layout, fit=self.fit, mask_mode=self.mask_mode,
                          mask_suffix=self.mask_suffix, val_fraction=self.val_fraction, seed=self.synth_seed,
                          synth_n=self.synth_n, synth_size=self.synth_size, synth_invert=self.synth_invert)

    @property
    def label_folders(self) -> dict[str, str]:
        """The real noisy label folders among ``labels``, by name."""
        return dict(entry.folder for entry in self.entries.values() if entry.folder is not None)

    @property
    def is_synthetic(self) -> bool:
        return self.data.startswith("synth:")

    def train_config(self, cell: Cell) -> TrainConfig:
        """The :class:`~mstool.engine.TrainConfig` of one cell."""
        return run_config(self.preset, self.train, labels=cell.entry.training_spec, model=cell.model, seed=cell.seed)

    def base_train_config(self) -> TrainConfig:
        """The preset with this suite's overrides (the settings every cell shares)."""
        return TrainConfig.from_preset(self.preset, **self.train)

    def cells(self) -> list[Cell]:
        return plan_cells(self)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "entries"}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SuiteConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"unknown suite setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


def plan_cells(config: SuiteConfig) -> list[Cell]:
    """Every cell of a suite, ordered spec by spec (so a partial run already covers each seed of the first specs),
    then the unsupervised entries (a deterministic method once, with the first seed)."""
    cells = [Cell(text, model, seed, label=entry) for text, entry in config.entries.items()
             for model in config.models for seed in config.seeds]
    for entry in config.unsupervised:
        method = parse_method_spec(entry)
        seeds = config.seeds[:1] if method.deterministic else config.seeds
        cells += [Cell(entry, method.name, seed, "unsupervised") for seed in seeds]
    return cells


def parse_list(values: tuple[str, ...] | list[str] | str, kind: str = "labels") -> list[str]:
    """Turn repeated and comma-separated CLI values into a list; for label specs a comma followed by a letter
    starts the next spec (``flip:0.2,0.2`` stays one).

    Example:
        >>> parse_list(["clean,sample:0.1,flip:0.2,0.2", "dilate:2"])
        ['clean', 'sample:0.1', 'flip:0.2,0.2', 'dilate:2']
        >>> parse_list("0,1,2", kind="seeds")
        ['0', '1', '2']
    """
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        parts = split_spec_list(item) if kind == "labels" else [p.strip() for p in item.split(",")]
        out.extend(p for p in parts if p)
    return out


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------------------------------- TOML
def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``run.toml``: top-level suite settings and a ``[train]`` table of training overrides."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise FileReadError(f"{path}: config file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise FileReadError(f"{path}: not valid TOML ({exc})") from None


def write_toml(values: dict[str, Any]) -> str:
    """Serialise a config dict (scalars, lists of scalars, nested tables) as TOML; ``None`` values are left out."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []

    def emit(prefix: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                tables.append((f"{prefix}{k}", v))
            elif v is not None:
                lines.append(f"{_key(k)} = {_value(v)}")

    emit("", values)
    while tables:
        name, d = tables.pop(0)
        lines.append(f"\n[{name}]")
        sub: list[tuple[str, dict]] = []
        for k, v in d.items():
            if isinstance(v, dict):
                sub.append((f"{name}.{k}", v))
            elif v is not None:
                lines.append(f"{_key(k)} = {_value(v)}")
        tables[:0] = sub
    return "\n".join(lines) + "\n"


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else '"' + k.replace('"', '\\"') + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise ParameterError(f"cannot write {type(v).__name__} value {v!r} to TOML")
