"""Data: built-in synthetic microscopy, dataset folder layouts, label sets on disk, the torch Dataset,
augmentation, checks, and a dataset as the train/val/test tensors of a run (:func:`prepare_splits`).

Legend: N batch · C channels · K classes · H, W pixels.
"""

from ._collect import (
    MASK_NAME_SUFFIXES,
    ImageEntry,
    MaskEntry,
    collect_images,
    collect_masks,
    find_counterparts,
    find_masks_by_stem,
    mask_image_name,
    read_images,
    read_label_set,
    stack_labels,
)
from ._dataset import RandomCropFlip, SegmentationDataset, random_crop_flip
from ._inspect import DatasetReport, SplitReport, check_dataset
from ._layouts import LAYOUTS, SPLITS, Layout, Sample, discover_layout, layout_names
from ._splits import DataSource, Splits, lazy_split, lazy_splits, load_split_tensors, prepare_splits, read_label_folder
from ._writer import split_counts, write_synthetic_dataset, write_tiled_dataset
from .synthetic import SYNTH_KINDS, Synthetic, synth_kinds, synthesize

__all__ = [
    "SYNTH_KINDS", "Synthetic", "synthesize", "synth_kinds", "write_synthetic_dataset", "write_tiled_dataset",
    "split_counts",
    "LAYOUTS", "SPLITS", "Layout", "Sample", "discover_layout", "layout_names",
    "SegmentationDataset", "RandomCropFlip", "random_crop_flip",
    "DatasetReport", "SplitReport", "check_dataset", "ImageEntry", "collect_images",
    "find_masks_by_stem", "MASK_NAME_SUFFIXES", "mask_image_name", "MaskEntry", "collect_masks", "find_counterparts",
    "read_label_set", "stack_labels", "read_images",
    "DataSource", "Splits", "prepare_splits", "lazy_split", "lazy_splits", "load_split_tensors", "read_label_folder",
]
