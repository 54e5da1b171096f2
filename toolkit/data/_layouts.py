"""Dataset folder layouts: find image/mask pairs per split, found automatically or named.

Four layouts (the registry ``LAYOUTS``):

``paper``
    the layout of Luo et al.'s ER/MITO data: ``ROOT/{train,val,test}/{images,labels}/`` with equal file names
    (matched by name without extension, so ``a.tif`` pairs with ``a.png``). A split without ``labels/`` is an
    unlabelled split (masks are ``None``).
``cellpose``
    pairs in one folder, ``name.tif`` with ``name_masks.tif`` (the suffix is configurable), either directly in ROOT
    (one split, ``all``) or in ``ROOT/{train,val,test}/``.
``voc``
    PASCAL VOC: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs, 255 = ignore) and
    ``ImageSets/Segmentation/{train,val,trainval,test}.txt``. ROOT may also be a ``VOCdevkit`` folder holding one
    ``VOC20xx`` folder, or the folder holding that ``VOCdevkit``.
``cityscapes``
    Cityscapes: ``leftImg8bit/{train,val,test}/<city>/<name>_leftImg8bit.png`` beside
    ``gtFine/{train,val,test}/<city>/<name>_gtFine_labelIds.png``; the sample name is ``<city>_<seq>_<frame>``.
    Masks are read with the ``cityscapes`` mask mode (labelIds -> the 19 train ids, others 255), or, when every
    train and val image has a ``<name>_gtFine_labelTrainIds.png`` (cityscapesScripts' ``createTrainIdLabelImgs``),
    from those files as ``multiclass``. The test split is unlabelled (its public masks are blank). Each folder may
    also sit one level down, as the zip files unpack by name (``leftImg8bit_trainvaltest/leftImg8bit/``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import names
from .._registry import Registry
from ..errors import FileMissingError, LayoutError, ParameterError
from ..io import IMAGE_SUFFIXES

__all__ = ["Sample", "Layout", "LAYOUTS", "SPLITS", "discover_layout", "layout_names"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image and its mask file (``None`` for an unlabelled image)."""

    name: str
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class Layout:
    """A dataset folder read with one layout.

    Attributes:
        kind: the layout name (one of :func:`layout_names`).
        root: the dataset folder.
        splits: the splits found, in the order train, val, test (or ``all``).
        mask_mode: how masks of this layout are read by default (``multiclass`` for VOC, ``instance`` for
            cellpose, ``auto`` for paper; ``cityscapes`` for Cityscapes labelIds, ``multiclass`` for its
            labelTrainIds).
    """

    kind: str
    root: Path
    splits: tuple[str, ...]
    mask_mode: str
    _lister: Callable[[str], tuple[list[Sample], list[str]]] = field(repr=False, compare=False)

    def scan(self, split: str) -> tuple[list[Sample], list[str]]:
        """List a split's samples and every pairing problem found, without raising on problems.

        An image whose mask is missing is listed with ``mask=None`` (and its problem reported), so readers of
        images alone still see it.
        """
        if split not in self.splits:
            raise LayoutError(
                f"{self.root}: split {split!r} not found in this {self.kind} layout; it has: {', '.join(self.splits)}"
            )
        return self._lister(split)

    def samples(self, split: str) -> list[Sample]:
        """List a split's samples; raise :class:`LayoutError` on the first pairing problem."""
        samples, problems = self.scan(split)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s); run `mstool data check`)" if len(problems) > 1 else ""
            raise LayoutError(problems[0] + more)
        return samples


LAYOUTS: Registry[Callable[[Path, str], Layout | None]] = Registry("dataset layout", declared=names.LAYOUTS)


def layout_names() -> list[str]:
    """Names accepted by ``--layout`` besides ``auto``."""
    return LAYOUTS.names()


def discover_layout(root: str | os.PathLike, layout: str = "auto", *, mask_suffix: str = "_masks") -> Layout:
    """Read a dataset folder with the named layout, or find which layout it follows.

    Args:
        root: the dataset folder.
        layout: ``auto`` or one of :func:`layout_names`.
        mask_suffix: the cellpose mask suffix (``name.tif`` pairs with ``name{mask_suffix}.tif``).

    Raises:
        FileMissingError: ``root`` does not exist.
        LayoutError: no layout matches (the message says what each layout expects), or a Cityscapes folder lacks
            ``leftImg8bit/`` or ``gtFine/``.
        ParameterError: an unknown layout name.
    """
    root = Path(root)
    if not root.exists():
        raise FileMissingError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise LayoutError(f"{root}: dataset root must be a folder")
    if layout != "auto":
        found = LAYOUTS.get(layout)(root, mask_suffix)
        if found is None:
            raise LayoutError(f"{root}: does not follow the {layout} layout ({_EXPECT[layout]})")
        return found
    for name in LAYOUTS:
        found = LAYOUTS.get(name)(root, mask_suffix)
        if found is not None:
            return found
    expected = "; ".join(f"{k}: {v}" for k, v in _EXPECT.items())
    raise LayoutError(f"{root}: no dataset layout found. Expected one of -- {expected}")


_EXPECT = {
    "paper": "ROOT/{train,val,test}/{images,labels}/ with equal file names",
    "voc": "ROOT/JPEGImages, ROOT/SegmentationClass and ROOT/ImageSets/Segmentation/{train,val}.txt",
    "cellpose": "ROOT/name.tif with ROOT/name_masks.tif (or in ROOT/{train,val,test}/)",
    "cityscapes": "ROOT/leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png beside "
                  "ROOT/gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png",
}


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _by_stem(files: list[Path], problems: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            problems.append(f"{p}: two files share the name {p.stem!r} ({out[p.stem].name} and {p.name})")
            continue
        out[p.stem] = p
    return out


def _pair(images: dict[str, Path], masks: dict[str, Path] | None, where: Path) -> tuple[list[Sample], list[str]]:
    problems: list[str] = []
    if not images:
        problems.append(f"{where}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    samples = []
    for name, path in images.items():
        mask = None if masks is None else masks.get(name)
        if masks is not None and mask is None:
            # listed, unlabelled, so that image-only readers still see it; samples() raises on the problem
            problems.append(f"{path}: no matching mask for this image")
        samples.append(Sample(name, path, mask))
    if masks is not None:
        problems.extend(f"{path}: mask has no matching image" for name, path in masks.items() if name not in images)
    return samples, problems


@LAYOUTS.register("paper")
def _paper(root: Path, mask_suffix: str) -> Layout | None:
    splits = tuple(s for s in SPLITS if (root / s / "images").is_dir())
    if not splits:
        return None

    def lister(split: str) -> tuple[list[Sample], list[str]]:
        problems: list[str] = []
        images = _by_stem(_image_files(root / split / "images"), problems)
        label_dir = root / split / "labels"
        masks = _by_stem(_image_files(label_dir), problems) if label_dir.is_dir() else None
        samples, more = _pair(images, masks, root / split / "images")
        return samples, problems + more

    return Layout("paper", root, splits, "auto", lister)


@LAYOUTS.register("voc")
def _voc(root: Path, mask_suffix: str) -> Layout | None:
    if not (root / "JPEGImages").is_dir():
        # ROOT may be VOCdevkit/ (one VOC20xx inside) or the folder the tar unpacks into (VOCdevkit/VOC20xx)
        inner = [p for p in [*root.glob("VOC*"), *root.glob("VOCdevkit/VOC*")] if (p / "JPEGImages").is_dir()]
        if len(inner) != 1:
            return None
        root = inner[0]
    sets = root / "ImageSets" / "Segmentation"
    if not (root / "SegmentationClass").is_dir() or not sets.is_dir():
        return None
    splits = tuple(s for s in ("train", "val", "trainval", "test") if (sets / f"{s}.txt").is_file())
    if not splits:
        return None

    def lister(split: str) -> tuple[list[Sample], list[str]]:
        problems: list[str] = []
        list_file = sets / f"{split}.txt"
        names = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not names:
            problems.append(f"{list_file}: the split list is empty")
        images = _by_stem(_image_files(root / "JPEGImages"), problems)
        masks = _by_stem(_image_files(root / "SegmentationClass"), problems)
        samples = []
        for name in names:
            if name not in images:
                problems.append(f"{list_file}: lists {name!r} but {root / 'JPEGImages'} has no such image")
            else:
                if name not in masks and split != "test":
                    problems.append(f"{images[name]}: no matching mask for this image in "
                                    f"{root / 'SegmentationClass'}")
                samples.append(Sample(name, images[name], masks.get(name)))
        return samples, problems

    return Layout("voc", root, splits, "multiclass", lister)


@LAYOUTS.register("cellpose")
def _cellpose(root: Path, mask_suffix: str) -> Layout | None:
    if not mask_suffix:
        raise ParameterError("`mask_suffix` must be a non-empty string such as '_masks'")

    def has_pairs(folder: Path) -> bool:
        return any(p.stem.endswith(mask_suffix) for p in _image_files(folder))

    splits = tuple(s for s in SPLITS if has_pairs(root / s))
    if not splits:
        if not has_pairs(root):
            return None
        splits = ("all",)

    def lister(split: str) -> tuple[list[Sample], list[str]]:
        problems: list[str] = []
        folder = root if split == "all" else root / split
        files = _image_files(folder)
        masks = _by_stem([p for p in files if p.stem.endswith(mask_suffix)], problems)
        masks = {stem[: -len(mask_suffix)]: path for stem, path in masks.items()}
        images = _by_stem([p for p in files if not p.stem.endswith(mask_suffix)], problems)
        samples, more = _pair(images, masks, folder)
        return samples, problems + more

    return Layout("cellpose", root, splits, "instance", lister)


_CS_IMAGE = "_leftImg8bit"
_CS_LABEL_IDS = "_gtFine_labelIds"
_CS_TRAIN_IDS = "_gtFine_labelTrainIds"


def _cityscapes_folder(root: Path, name: str) -> Path | None:
    """``ROOT/name``, or ``ROOT/name_trainvaltest/name`` as the zip file unpacks into a folder of its own name."""
    for folder in (root / name, root / f"{name}_trainvaltest" / name):
        if folder.is_dir():
            return folder
    return None


def _city_files(split_dir: Path, suffix: str, problems: list[str]) -> dict[str, Path]:
    """``split_dir/<city>/<name>{suffix}.png`` by ``<name>``; other files (colour masks, polygons) are skipped."""
    out: dict[str, Path] = {}
    if not split_dir.is_dir():
        return out
    for city in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for p in sorted(city.glob(f"*{suffix}.png")):
            name = p.name[: -len(f"{suffix}.png")]
            if name in out:
                problems.append(f"{p}: two files share the name {name!r} ({out[name]} and {p})")
                continue
            out[name] = p
    return out


def _every_train_id_mask(gt: Path, splits: tuple[str, ...]) -> bool:
    """Whether the labelled splits hold labelTrainIds masks, one for every labelIds mask."""
    ignored: list[str] = []
    found = False
    for split in (s for s in splits if s != "test"):
        train_ids = _city_files(gt / split, _CS_TRAIN_IDS, ignored)
        if not set(_city_files(gt / split, _CS_LABEL_IDS, ignored)) <= set(train_ids):
            return False
        found = found or bool(train_ids)
    return found


@LAYOUTS.register("cityscapes")
def _cityscapes(root: Path, mask_suffix: str) -> Layout | None:
    left, gt = _cityscapes_folder(root, "leftImg8bit"), _cityscapes_folder(root, "gtFine")
    if left is None and gt is None:
        return None
    if left is None or gt is None:
        have, lack = ("leftImg8bit", "gtFine") if gt is None else ("gtFine", "leftImg8bit")
        raise LayoutError(f"{root}: a Cityscapes folder holds leftImg8bit/ and gtFine/ side by side; found {have}/ "
                          f"but no {lack}/ (unpack {lack}_trainvaltest.zip into {root})")
    splits = tuple(s for s in SPLITS if (left / s).is_dir())
    if not splits:
        raise LayoutError(f"{left}: no split folder; a Cityscapes leftImg8bit/ holds {', '.join(SPLITS)}/")
    train_ids = _every_train_id_mask(gt, splits)
    suffix = _CS_TRAIN_IDS if train_ids else _CS_LABEL_IDS

    def lister(split: str) -> tuple[list[Sample], list[str]]:
        problems: list[str] = []
        images = _city_files(left / split, _CS_IMAGE, problems)
        if not images:
            return [], problems + [f"{left / split}: no <city>/<city>_<seq>_<frame>{_CS_IMAGE}.png images found"]
        masks = None  # the test split's public masks are blank: its images are unlabelled
        if split != "test":
            if (gt / split).is_dir():
                masks = _city_files(gt / split, suffix, problems)
            else:
                problems.append(f"{gt / split}: folder missing, so the {split} images have no masks")
        samples, more = _pair(images, masks, left / split)
        return samples, problems + more

    return Layout("cityscapes", root, splits, "multiclass" if train_ids else "cityscapes", lister)
