"""Data: built-in synthetic microscopy, dataset folder layouts, the torch Dataset, augmentation and checks.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from ._collect import ImageEntry, collect_images, find_masks_by_stem
from ._dataset import RandomCropFlip, SegmentationDataset, random_crop_flip
from ._inspect import DatasetReport, SplitReport, check_dataset
from ._layouts import LAYOUTS, SPLITS, Layout, Sample, discover_layout, layout_names
from ._writer import split_counts, write_synthetic_dataset, write_tiled_dataset
from .synthetic import SYNTH_KINDS, Synthetic, synth_kinds, synthesize

__all__ = [
    "SYNTH_KINDS", "Synthetic", "synthesize", "synth_kinds", "write_synthetic_dataset", "write_tiled_dataset",
    "split_counts",
    "LAYOUTS", "SPLITS", "Layout", "Sample", "discover_layout", "layout_names",
    "SegmentationDataset", "RandomCropFlip", "random_crop_flip",
    "DatasetReport", "SplitReport", "check_dataset", "ImageEntry", "collect_images",
    "find_masks_by_stem",
]
