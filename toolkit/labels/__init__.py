"""Labels: the label-noise zoo, its spec grammar, morphology, and label information (NTM, MI, taxonomy).

Legend: N batch · K classes · H, W pixels.

Labels are ``(N, H, W)`` int64 with classes ``0..K-1`` and 255 = ignore (binary: 0 background, 1 foreground).
Noise transition matrices are ``T[i, j] = P(noisy = j | clean = i)``, rows summing to 1.

The paper's taxonomy (Luo et al. 2022): **CL** clean labels; **RCL** randomised clean labels (random sampling or
flipping: the meta-structure survives); **PCL** perturbed clean labels (dilation, erosion, skeleton, shifts: the
meta-structure moves); **RL** random labels (rank-1 NTM: they carry nothing).

Every operation is batched, runs on the labels' device, and draws randomness from a ``generator``.
A spec string names an operation or a composition (``skeleton+shift:1+sample:0.1``); ``spec_help()`` lists them.
"""

from ._info import (
    MIN_SIGNAL,
    RCL_MIN_SCORE,
    TAXONOMY,
    LabelInfo,
    boundary_distance,
    boundary_fraction,
    classify_label,
    confusion_counts,
    count_classes,
    label_info,
    mutual_information,
    noise_transition_matrix,
    ntm_condition,
    ntm_det,
    ntm_rank,
)
from ._morphology import boundary, dilate, disk, erode, skeletonize
from ._spec import LabelSpec, SpecStep, apply_spec, is_stochastic, parse_spec, spec_help, split_spec_list, taxonomy_of
from ._zoo import (
    LABEL_ZOO,
    ZooOp,
    ZooParam,
    clean_labels,
    dilate_labels,
    erode_labels,
    flip_by_matrix,
    flip_labels,
    markov_labels,
    object_labels,
    pair_flip_labels,
    random_labels,
    region_labels,
    sample_labels,
    scribble_labels,
    shift_labels,
    skeleton_labels,
    symmetric_flip_labels,
    translate_labels,
)

__all__ = [
    # zoo and grammar
    "LABEL_ZOO", "ZooOp", "ZooParam", "LabelSpec", "SpecStep", "parse_spec", "apply_spec", "split_spec_list",
    "spec_help", "taxonomy_of", "is_stochastic",
    "clean_labels", "sample_labels", "flip_labels", "symmetric_flip_labels", "pair_flip_labels", "flip_by_matrix",
    "random_labels", "dilate_labels", "erode_labels", "skeleton_labels", "translate_labels", "shift_labels",
    "markov_labels", "scribble_labels", "object_labels", "region_labels",
    # morphology
    "disk", "dilate", "erode", "boundary", "skeletonize",
    # information
    "TAXONOMY", "RCL_MIN_SCORE", "MIN_SIGNAL", "LabelInfo", "confusion_counts", "count_classes",
    "noise_transition_matrix", "ntm_rank", "ntm_det", "ntm_condition",
    "mutual_information", "boundary_fraction", "boundary_distance", "label_info", "classify_label",
]
