"""Training on a dataset read item by item: a folder larger than memory trains in the memory of a few batches.

Legend: N batch · C channels · K classes · H, W pixels.

:func:`mstool.engine.train` takes this path when its images are a :class:`torch.utils.data.Dataset` of
``{"image": (C, H, W), "mask": (H, W)}`` items (:class:`mstool.data.SegmentationDataset`) instead of tensors.
Each step reads its batch's items, and nothing else; validation reads the validation items in batches and
accumulates confusion counts. What differs from the tensor path, and why:

- noisy labels are drawn per item, from a seed made of the run's noise seed, the item's index and (online noise)
  the epoch, so a label is the same whenever its item is read again, and nothing of size ``N x H x W`` is kept;
  with clean labels the two paths train the same network bit for bit;
- the label statistics (NTM, determinant, polarity) are measured on those of the first ``_STATS_ITEMS`` items
  that have the first item's size;
- a folder of mixed sizes trains with a crop: a batch holding an item of another size than the first has each
  item cut to the crop on its own, at an offset drawn from the run's data generator, before it is flipped as
  usual (a folder of one size trains exactly as before); validation batches consecutive items of one size;
- a checkpoint resumes on the same dataset: same length, names and first item;
- :data:`READ_THREADS` threads read the items of the next :data:`READ_AHEAD` batches while a batch trains or
  is predicted (decoding releases the GIL), so the dataset's ``__getitem__`` must be safe to call from several
  threads, as :class:`~mstool.data.SegmentationDataset`'s is; every random draw is made in the same order as
  without them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..device import make_generator
from ..errors import DataError, ShapeError
from ..labels import apply_spec
from ..metrics import binary_scores, confusion_at_thresholds
from ._config import TrainConfig
from ._predict import predict
from ._trainer import _label_stats, _Run

__all__: list[str] = []

_STATS_ITEMS = 32
"""Items the label statistics of a lazy run are measured on."""

READ_THREADS = 4
"""Threads that read (decode and normalise) the items of a lazy run's coming batches."""

READ_AHEAD = 2
"""Batches read ahead of the one training: the memory of a lazy run is that many batches more."""


def _item(dataset: torch.utils.data.Dataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    item = dataset[index]
    if not isinstance(item, dict) or "image" not in item or item.get("mask") is None:
        raise DataError(f"item {index} of the dataset must be a dict with an image and a mask (a "
                        f"SegmentationDataset of a labelled split); got {type(item).__name__}")
    return item["image"].float(), item["mask"]


def _fingerprint(dataset: torch.utils.data.Dataset | None) -> list[Any] | None:
    if dataset is None:
        return None
    names = [getattr(s, "name", None) for s in getattr(dataset, "samples", [])]
    image, mask = _item(dataset, 0)
    digest = int(hashlib.sha1(repr(names).encode()).hexdigest()[:12], 16)  # 48 bits: exact as a float
    return [[len(dataset), *image.shape], float(image.double().sum()), int(mask.long().sum()), digest]


def read_items(dataset: torch.utils.data.Dataset, indices: Iterable[int],
               ahead: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The items at ``indices``, in order, read by :data:`READ_THREADS` threads at most ``ahead`` items ahead."""
    todo = iter(indices)
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="mstool-read") as pool:
        for i in itertools.islice(todo, max(1, ahead)):
            pending.append(pool.submit(_item, dataset, i))
        while pending:
            item = pending.popleft().result()
            for i in itertools.islice(todo, 1):
                pending.append(pool.submit(_item, dataset, i))
            yield item


def batches(dataset: torch.utils.data.Dataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(n, C, H, W)`` images and ``(n, H, W)`` masks of at most ``batch_size`` consecutive items of one size."""
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for image, mask in read_items(dataset, range(len(dataset)), READ_AHEAD * batch_size):
        if images and (len(images) == batch_size or image.shape != images[0].shape):
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
        images.append(image)
        masks.append(mask)
    if images:
        yield torch.stack(images), torch.stack(masks)


class LazyRun(_Run):
    """A training run whose data is read item by item (see the module notes)."""

    def __init__(self, config: TrainConfig, dataset: torch.utils.data.Dataset,
                 val_dataset: torch.utils.data.Dataset | None, num_classes: int, dev: torch.device) -> None:
        if len(dataset) == 0:
            raise ShapeError("the training dataset must hold at least one item; got an empty dataset")
        image, _ = _item(dataset, 0)
        self._setup(config, num_classes, dev, image.shape[0], len(dataset))
        self.dataset, self.val_dataset = dataset, val_dataset
        self.size = tuple(image.shape[-2:])
        self.fingerprint = {"train": _fingerprint(dataset), "val": _fingerprint(val_dataset), "lazy": True}
        self.images = self.clean = self.val_images = self.val_labels = None
        self._setup_data(self.size)
        self.epoch_now = 1
        self.targets = None
        self.first_labels = torch.zeros(0, *self.size, dtype=self.label_dtype)

    # ------------------------------------------------------------------------------------- labels
    def _draw(self) -> None:  # labels are drawn per item as they are read
        return None

    def _set_first(self, labels: torch.Tensor | None) -> None:  # measured once, in draw_offline_labels
        return None

    def draw_offline_labels(self) -> None:
        """Measure the label statistics on the first items of the first size (their epoch-1 draw)."""
        first = [(i, _item(self.dataset, i)[1]) for i in range(min(self.n, _STATS_ITEMS))]
        first = [(i, mask) for i, mask in first if tuple(mask.shape) == self.size]
        index = torch.tensor([i for i, _ in first])
        clean = torch.stack([mask for _, mask in first]).to(self.dev, self.label_dtype)
        noisy = self._noise(clean, index, epoch=1)
        self.first_labels = noisy.to("cpu")
        self.label_stats = _label_stats(clean, noisy, self.num_classes)

    def _noise(self, clean: torch.Tensor, index: torch.Tensor, *, epoch: int) -> torch.Tensor:
        """Each item's noisy label, from its own generator: (noise seed, item, epoch when online)."""
        if not self.noisy:
            return clean
        out = []
        for j, i in enumerate(index.tolist()):
            g = make_generator(((self.noise_seed * 1_000_003 + i) * 1009 + (epoch if self.online else 0)) % 2 ** 62)
            out.append(apply_spec(clean[j:j + 1], self.config.label_spec, generator=g,
                                  num_classes=self.num_classes))
        return torch.cat(out)

    # ------------------------------------------------------------------------------------- one epoch
    def epoch(self, epoch: int, emit) -> dict[str, Any]:
        self.epoch_now = epoch
        return super().epoch(epoch, emit)

    def _steps(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
        """Each step's batch, its items read by background threads while the steps before it train."""
        ahead = READ_AHEAD * max((index.numel() for index in batches), default=1)
        items = read_items(self.dataset, (i for index in batches for i in index.tolist()), ahead)
        for index in batches:
            yield index, self._assemble(index, [next(items) for _ in range(index.numel())])

    def _assemble(self, index: torch.Tensor, items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor,
                                                                                                      torch.Tensor]:
        """The batch of the items read: their labels drawn, cut to the crop if sizes differ, cropped and flipped."""
        images, targets = [], []
        for i, (image, mask) in zip(index.tolist(), items):
            image, mask = image.to(self.dev, torch.float32), mask.to(self.dev, self.label_dtype)
            images.append(image)
            targets.append(self._noise(mask[None], torch.tensor([i]), epoch=self.epoch_now)[0])
        if any(tuple(image.shape[-2:]) != self.size for image in images):
            cut = [self._cut(i, image, mask) for i, image, mask in zip(index.tolist(), images, targets)]
            images, targets = [image for image, _ in cut], [mask for _, mask in cut]
        self.images, self.targets = torch.stack(images), torch.stack(targets)
        try:
            return super()._batch(torch.arange(len(images), device=self.dev))
        finally:
            self.images = self.targets = None  # the batch is all a lazy run holds

    def _cut(self, i: int, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An item of a batch of mixed sizes, cut to the crop at a random offset."""
        h, w = image.shape[-2:]
        if self.crop is None or h < self.crop[0] or w < self.crop[1]:
            need = "a crop (--crop)" if self.crop is None else f"items of at least the crop, {self.crop[0]} x " \
                                                                f"{self.crop[1]}"
            raise ShapeError(f"item {i} of the training dataset is {h} x {w}, not {self.size[0]} x {self.size[1]} "
                             f"like the first; a lazy run over mixed sizes needs {need}")
        top = int(torch.randint(h - self.crop[0] + 1, (1,), generator=self.g_data))
        left = int(torch.randint(w - self.crop[1] + 1, (1,), generator=self.g_data))
        return (image[..., top:top + self.crop[0], left:left + self.crop[1]],
                mask[top:top + self.crop[0], left:left + self.crop[1]])

    # ------------------------------------------------------------------------------------- validation
    def _validate(self) -> dict[str, float]:
        """The tensor path's validation scores, from confusion counts accumulated batch by batch."""
        if self.val_dataset is None:
            return {}
        thresholds = sorted({0.5, *torch.linspace(0, 1, self.config.num_thresholds + 2)[1:-1].tolist()})
        counts = inverted = confusion = None
        batch = self.config.batch_size
        for x, y in batches(self.val_dataset, batch):
            x, y = x.to(self.dev, torch.float32), y.to(self.dev, torch.long)
            probs = predict(self.model, x, batch_size=batch, tile=self.config.tile)
            if self.num_classes == 2:
                c = confusion_at_thresholds(probs, y, thresholds).sum(dim=0)
                counts = c if counts is None else counts + c
                if self.label_stats.get("inverts", False):
                    c = confusion_at_thresholds(1 - probs, y, thresholds).sum(dim=0)
                    inverted = c if inverted is None else inverted + c
            else:
                keep = y != 255
                pred = probs.argmax(1)[keep]
                c = torch.bincount(y[keep] * self.num_classes + pred, minlength=self.num_classes ** 2)
                confusion = c if confusion is None else confusion + c
        if self.num_classes == 2:
            dice = binary_scores(counts)["dice"]
            at_half = float(dice[thresholds.index(0.5)])
            if inverted is not None:
                dice = torch.maximum(dice, binary_scores(inverted)["dice"])
            return {"val_dice": at_half, "val_dice_best": float(dice.max())}
        m = confusion.view(self.num_classes, self.num_classes).double()
        iou = m.diag() / (m.sum(0) + m.sum(1) - m.diag())
        return {"val_miou": float(iou[~iou.isnan()].mean())}
