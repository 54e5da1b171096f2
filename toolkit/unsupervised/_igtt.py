"""iGTT: a U-Net that trains on labels it makes itself, guided by meta-structure (EMS) and an optional prior.

Size: one module (over 1200 lines) because the loop, its candidate selection, EMS choice and the saved-model
format are one algorithm: the selection rule that trained a network is the rule a loaded one predicts with.

Legend: N batch · C channels · K candidate thresholds · H, W pixels.

One round of iterative ground-truth training (Luo et al. 2022):

1. train the network for a few steps on the current targets;
2. predict a foreground map ``p`` for every image;
3. build ``K`` candidate masks ``p >= t_k`` from thresholds evenly spaced strictly between the map's minimum
   and maximum and keep the one with the lowest (normalised) DMI to ``p`` (:func:`select_candidate`; with a
   prior, minus ``prior_weight`` times the meta-structure similarity of the candidate to the prior);
4. polarity: the paper inverts a mask covering more than half the image (:func:`fix_polarity`, foreground the
   minority); here the side is known before the loop starts (``foreground``: ``bright``, ``dark``, or ``auto``,
   decided once for the batch by :func:`~mstool.unsupervised.choose_foreground`), the first targets come from
   that side, and the network's map is read as it is;
5. extract the next targets from it with EMS (``skeleton+shift:1+sample:0.1``).

What this implementation changes, and why. Each change was measured on synthetic ``er`` and ``mito`` (8 images
of 128 x 128, the quick defaults, 3 seeds; mean Dice against the exact labels, which the method never sees) after
a prototype on real EM and nuclei images had shown the paper's loop to be fragile. With everything as in the paper
the loop collapsed here too (``er`` 0.27, ``mito`` 0.34; Otsu 0.850 and 0.874); the defaults give 0.876 and 0.911.

- **Bootstrap** (``bootstrap``). The paper starts from blank masks, on which DMI and soft IoU carry no signal: the
  first pseudo-labels are thresholds of an untrained network. Here the first targets come from the Otsu mask of the
  raw image (``"otsu"``, also with a prior, which then acts through the selection). The raw image, not a smoothed
  one: the errors pixel noise makes in an Otsu mask are random flips (RCL), whose meta-structure is the clean one
  and which the network averages away, while smoothing first trades them for a systematic dilation (PCL), which it
  learns (on ``er`` the raw mask scores 0.850, the mask of the image smoothed with sigma 1 0.822). ``"prior"`` draws
  the first targets from the prior alone (an RCL-sampled label of the density), ``"otsu+prior"`` thins the Otsu
  targets where the prior is low (``mito``: 0.890 against 0.914 for ``"otsu"`` with the same prior), ``"blank"`` is
  the paper's start. ``"minerror"`` starts from Kittler and Illingworth's minimum-error threshold instead, which
  keeps the rims that Otsu's threshold trims off sparse nuclei (and that a network trained on Otsu's masks learns to
  trim too), but is too wide on mitochondria and DSB nuclei (README's six-set table, 3 seeds: nuclei 0.949 against
  0.915, mitochondria 0.879 against 0.928, DSB 0.816 against 0.921), so it is not the start on such images.
  ``"auto"`` (the default) takes it, with area targets whatever the width (``thick_ems``), where the minimum-error
  masks of the images (smoothed with sigma 1) hold fewer pixels than the Otsu masks, and the Otsu start otherwise.
  The minimum-error threshold fits a Gaussian to each class and lands nearer the narrower one: in fluorescence the
  dark background is the narrow class, so its mask is larger than Otsu's (1.04-2.19 times per image on built-in ER,
  mitochondria and nuclei at SNR 2 to 16, 1.48-1.82 on the DSB tiles); on the EM-like kind the textured cell
  interiors are the wide class, and Otsu's mask takes their dark parts and the organelles with the membranes
  (0.45-0.88 per image, 0.47-0.70 per batch at SNR 2 to 16). There a network trained on Otsu's masks learns Otsu's
  errors, and on membranes 5.6-6.3 px wide, skeletons of a mask that holds organelles carry them along. Chosen on EM
  dev draws 7-10 (seeds 0-2): area targets from the minimum-error start scored 0.847, 0.867, 0.848, 0.906 against
  0.773, 0.799, 0.775, 0.813 for the Otsu start with the width rule's targets; on the test draw (README's six-set
  table) 0.850 ± 0.025 against 0.765 ± 0.008, level with the minimum-error threshold itself (0.852). On every other
  built-in kind and the DSB tiles the rule keeps the Otsu start, bit for bit the earlier default.
  ``info["minerror_to_otsu"]`` records the ratio. It is one synthetic EM kind: a real image whose background is the
  wider class but whose objects are thin tubules (ER) would get area targets, which on ER cost 15 points (0.742
  against 0.892 on the test draw); ``bootstrap="otsu"`` keeps the Otsu start. ``"local"`` starts from the local
  threshold's mask (a window ten times the objects' width), for images whose background level changes from place
  to place more than a global threshold allows: on the held-out EM generator (``examples/heldout_em.py``: cells
  that differ in tone as much as the membranes differ from them) every global threshold takes the dark cells with
  the membranes. Dev draws (8 images each, seeds 0-2), ``local`` against ``auto``: held-out EM draws 1 and 2
  0.730 and 0.720 against 0.668 and 0.645 (the local threshold alone 0.703 and 0.695, the minimum-error 0.595
  and 0.602), DSB training tiles 0.919 against 0.907, ER 0.891 against 0.889, nuclei 0.924 against 0.930, but
  built-in EM 0.799 against 0.843 and mitochondria 0.876 against 0.926. So ``auto`` takes it only where a global
  threshold visibly fails that way: where the Otsu masks hold more than 1.65 times the pixels of the local
  threshold's masks, both of the images smoothed with sigma 1 (:data:`_GLOBAL_TO_LOCAL`;
  ``info["otsu_to_local"]``); it is checked first. The ratio on the dev draws: held-out EM draws 1-6 1.76-1.95,
  and at SNR 2 to 16 (draw 11) 1.80-2.15; every built-in dev draw and the DSB training tiles at most 1.33, and
  at SNR 2 to 16 (draw 11) at most 1.56 (EM at SNR 2). A first version read the masks of the raw images with a
  cut at 1.5 (held-out EM 1.68-1.81, built-in draws at SNR 8 at most 1.25), but pixel noise speckles a raw Otsu
  mask: at SNR 2 built-in EM reached 1.72, took the local start and lost 4 points (0.758 ± 0.009 against 0.798
  ± 0.009 from the minimum-error start, draw 11, seeds 0-2). On the test draws of README's table the ratio is
  0.94-1.22, so nothing else changed; on the held-out EM test sets 1.88-2.10 (local start); on held-out ER 1.63
  (minimum-error start), seen after the raw version had given 1.52 and the local start there.
- **EMS that fits the object** (``ems="auto"``). The object width, foreground pixels per skeleton pixel of the
  Otsu mask of the image smoothed with sigma 1, picks the targets: up to ``thin_width`` pixels, the paper's EMS;
  wider, ``thick_ems`` (default ``clean``, the selected mask itself). Skeletonising a thick object is a PCL
  perturbation that moved the masks round after round (``mito``: 0.27 after 8 rounds, one seed); a plain random
  sample of the mask (``sample:0.1``) lost 10 to 35 points at this budget (ten times fewer labelled pixels to fit)
  and ``sample:0.5`` 2 points against the mask itself. ``info["ems"]`` and ``info["object_width"]`` record the
  choice. So on thick objects the default is plain self-training on the selected masks, the same as ``no_ems``.
- **Loss** (``loss="auto"``). The paper's DMI + soft IoU for skeleton targets, binary cross-entropy otherwise.
  DMI's ``-log |cov(p, s)|`` is linear in ``p``: it pushes to 1 every pixel whose chance of a foreground target
  exceeds the mean foreground fraction, which widens predictions. Around a one-pixel skeleton that restores the
  object's width (``er``: 0.876 with EMS against 0.812 for DMI + IoU on the masks themselves); on area targets
  it dilates the masks round after round (``mito``: 0.812 against 0.911 with cross-entropy, which is a proper
  scoring rule). On ``er``, cross-entropy on the masks (``no_ems``) gives 0.869. DMI is used with its sign
  (:func:`_signed_dmi_loss`): ``|det|`` lets half of the random starts settle in the inverted map.
- **Selection** (``selection="ndmi"``). For a binary map ``p`` and mask ``s`` over ``M`` pixels,
  ``det(P S^T / M) = cov(p, s)``, so the paper's DMI rule maximises ``|cov(p, s)| = f (1 - f) |mu_1 - mu_0|``
  (``f`` the mask's foreground fraction, ``mu`` the mean score in and out): the threshold lands at the mean
  score, low for sparse foreground, and the masks grew. Normalised by the mask's own spread, ``sqrt(f (1 - f))``,
  the rule maximises the correlation of map and mask, which is Otsu's criterion on the map
  (one seed: ``er`` 0.890 against 0.873 for the same run with the DMI rule; ``mito`` 0.66 against 0.57).
- **Schedule.** Adam with a cosine decay over the whole run: with a constant rate the masks swung from round to
  round and a late swing could cost 5 points.
- **Prior.** The consistency term in the selection gained little on these images, where Otsu already finds the
  objects and a density of bandwidth 5 says nothing about their width: with the density of a ``sample:0.1`` label
  of the truth, ``er`` 0.878 and ``mito`` 0.914 (``prior_weight=3``: 0.881 and 0.913).
- **Intensity jitter** (``jitter=0.3``). Each training crop gets a random gain and offset. Self-training on Otsu
  masks teaches the network Otsu's intensity rule, errors included (a dim nucleus stays background); with the
  gain varying, intensity alone no longer predicts the targets and the network leans on shape. Measured on 5
  synthetic images of 128 x 128 per kind and the 16 DSB tiles, 3 seeds (Dice, mean ± std): without it ``er``
  0.840 ± 0.062, ``mito`` 0.900 ± 0.012, ``nuc`` 0.894 ± 0.052, ``em`` 0.756 ± 0.012, DSB 0.889 ± 0.009; with
  0.3: 0.901 ± 0.001, 0.889 ± 0.027, 0.960 ± 0.003, 0.768 ± 0.006, 0.902 ± 0.013 (0.2 and 0.4 were close; an
  average of the maps over rounds, tried with it, helped DSB and hurt nuclei, and was dropped).
- **Polarity** (``foreground``). Every built-in kind but ``em`` has bright objects; the paper's minority rule
  failed on real EM membranes (the dark side of Otsu's split covered more than half of the image). The side is
  now chosen before the loop, and the network is trained on the image turned so that the foreground is bright:
  iGTT on dark objects is iGTT on the negated image, bit for bit (with the sign left to the network, ``em`` scored
  0.648 and its negation 0.756, seeds 0-2).
- **Prior gate** (``prior_gate``, off by default). With a consensus prior (``otsu+local+kmeans``, bandwidth 1)
  used only in the selection, iGTT (jitter 0.3) scored ``er`` 0.899, ``mito`` 0.892, ``nuc`` 0.931, ``em`` 0.756,
  DSB 0.923; gating the targets with it at 0.35 gave 0.901, 0.912, 0.896, 0.781, 0.880: better on thin
  structures (membranes, mitochondria), worse on nuclei. The local threshold then had a fixed 51-pixel window
  and missed the middle of each nucleus; with its window scaled to the objects it finds them, and the gate
  still costs on nuclei (README's six-set table): it drops the dim nuclei iGTT finds beyond the classical masks.
- **Anchor** (``anchor=0.35``). Self-training on its own masks drifted on thick objects: on 5 synthetic nuclei
  images (a draw never used for a choice before, seed 7) two iGTT seeds in four lost dim nuclei round after round
  (foreground 16% -> 7% of the image, Dice 0.88 -> 0.53) while the other two climbed to 0.95. Now a target's
  background pixel where the first Otsu mask is confidently foreground (3 x 3 density above 0.65) is left out of
  the loss: the network is never taught to drop what the bootstrap found, but its map may still do so where the
  rest of the image says it should. The value is ``prior_gate``'s, not tuned. Same draws, iGTT seeds 0-3, mean ±
  std of the pooled Dice: nuclei 0.813 ± 0.200 -> 0.940 ± 0.032, mitochondria 0.905 ± 0.021 -> 0.913 ± 0.015,
  8 DSB training tiles 0.894 ± 0.029 -> 0.903 ± 0.018; a second draw (seed 8): nuclei 0.907 ± 0.030 -> 0.935 ±
  0.034, mitochondria 0.925 ± 0.016 -> 0.929 ± 0.006. Both sides (also leaving out foreground where the Otsu mask
  is confidently background, what ``prior=otsu`` with ``prior_gate=0.35`` does) gave 0.911 on nuclei but cost EM 2.7
  and DSB 2.3 points: the foreground iGTT adds beyond Otsu (dim nuclei) is often right. ER and EM, thin objects
  with skeleton targets, are untouched; with ``no_ems`` their targets are areas and the anchor applies, which cost
  the EM test images of README's table 2.8 points (0.807 -> 0.779, 3 seeds): on membranes iGTT beats Otsu by
  dropping Otsu's false foreground. EM's measured width sits at ``thin_width`` (5.6-6.3 px across draws 0 and
  7-10), and on the draw where it picks area targets (seed 7) the default cost 3 points (0.816 ± 0.039 -> 0.786
  ± 0.033). On ``er`` with ``no_ems`` the anchor helps (seed 7: 0.824 ± 0.116 -> 0.897 ± 0.012).
- **Skeletons of blobs** (``min_skeleton=1.5``). The skeleton of a compact blob, an organelle or a speck, is a
  piece of a few pixels, a network's one long piece; skeleton EMS drew targets on both, and on membranes iGTT
  learnt the organelles as foreground. Skeleton pieces shorter than 1.5 object widths are now dropped before the
  targets are drawn (3 widths gave the same). Dev draws, seeds 0-2: EM draws 8 and 10 0.738 -> 0.799 and 0.802
  -> 0.813, ER draws 7-10 0.899 -> 0.892, 0.906 -> 0.900, 0.892 -> 0.893, 0.893 -> 0.898 (EM draws 7 and 9 take
  area targets and are untouched). It was opt-in while only ER draws 7 and 8 had been measured; the four ER draws
  average -0.2 points, EM's two +3.6. ``min_skeleton=0`` is the paper's EMS. README's table has the test draws.
- **Partial labels** (``scribbles=``). A user who has drawn part of each image exactly (one region, some
  objects, scribbles; 255 elsewhere) gives them as ``scribbles``: every round's targets take them where they are
  labelled, and iGTT's own masks fill in the rest. As a prior alone (its density, through the selection) such an
  annotation gained 0.8 points over eleven test sets; as targets, on the dev draws (8 images each of draw 7 of ER,
  nuclei and EM and of held-out EM draws 1 and 2, ``region:0.25``, seeds 0-2, Dice outside the drawn region),
  with the prior as well: 0.901, 0.951, 0.945, 0.832, 0.871 against 0.881, 0.897, 0.877, 0.665, 0.648 for the
  prior alone (mean 0.900 against 0.794). With scribbles, ``ems="auto"`` takes area targets (``thick_ems``)
  whatever the width: skeleton targets beside dense drawn areas ask one network for two meta-structures, and on
  ER draws 7 and 8 one seed in three swung late in training (0.864 and 0.866 against about 0.92); area targets
  gave 0.925, 0.928, 0.918 on ER draws 7-9 against 0.901, 0.905, 0.916 (the other kinds take them already). On
  the eleven test sets of README's table: 0.910 against 0.839 for iGTT alone, ahead on all eleven; a U-Net
  trained on the same annotation alone scored 0.911.
- **Logging.** Every round logs the share of pixels whose selected label changed since the round before
  (``changed``: 2-7% after round 1, 0.1-0.8% after round 8 on the built-in kinds, so a stop on settled masks
  would save little at these settings); with ground truth (``labels=``, used for nothing else) also the Dice of
  its pseudo-labels and of its map at the best candidate threshold in hindsight.
- **Speed.** Nearly all the time is the ``rounds x steps`` training steps, and fewer crops per step run less
  efficiently on the CPU: 4 crops cost 84% of 8, 2 crops 53%. Training crops are cut and
  flipped by indexing (a kornia pipeline cost 3 to 9 ms a step) and the network runs channels-last: 4.7 -> 3.7
  CPU seconds per 128 x 128 image (5 images, one thread, two jobs side by side). What would cut more costs Dice
  (5 images per kind, 3 seeds; mean over ``er``, ``mito``, ``nuc``, ``em`` and the 16 DSB tiles, 0.887 at the
  defaults before the two changes above): ``batch_size=2`` 0.883 at 53% of the time (nuclei -3 points), 4 crops
  of 48 0.873 at 57%, 8 crops of 32 0.819 at 43%, 4 crops of 48 with 80 steps in round 1 and 10 in each later
  round 0.852 at 29%; half the rounds (with jitter 0.2) 0.872 at half the time. Against the new code (3.7 s,
  0.863 on seeds 0-2): U-Net base 12 3.0 s, 0.888, but on seeds 3-8 ``er`` 0.873 +- 0.033 against 0.897 +- 0.004;
  base 8 1.9 s, 0.849; depth 2 2.8 s, 0.857. The steps are compute-bound (6.9 GFLOP a step, run at about 70
  GFLOP/s on one core), so precision is the lever left: ``precision="bf16"`` on a CPU with bfloat16 units took
  4.73 -> 3.11 CPU seconds per image at the same Dice (0.883 -> 0.884 over ``er``, ``mito``, ``nuc``, ``em``, 3
  seeds; ``benchmarks/bench_igtt.py``). It is not the CPU default, so that results do not depend on the CPU.

All ``K`` candidates of all images are scored in one batched pass: a pixel's bucket among its image's evenly
spaced thresholds is one multiply-add, one histogram over (image, bucket) and a reverse cumulative sum give every
candidate's size and score sum, and the chosen mask is one comparison; there is no loop over thresholds.

References:
    Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep Neural
    Networks", arXiv 2205.00160 (2022): iGTT, EMS, meta-structure similarity.
    Xu, Cao, Kong, Wang, "L_DMI: An Information-theoretic Noise-robust Loss Function", NeurIPS 2019.
    Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. SMC 9 (1979).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .. import IGNORE_INDEX, __version__
from .._check import check_in, check_int, check_labels, check_range, check_shape
from .._fs import atomic_path
from .._types import Progress
from ..device import PRECISIONS, MixedPrecision, make_generator, resolve_device
from ..engine import predict
from ..errors import DTypeError, FileMissingError, FileReadError, MstoolWarning, ParameterError, ShapeError
from ..labels import apply_spec, parse_spec, skeletonize
from ..losses import bce_loss, soft_iou_loss
from ..metastructure import EMS_DEFAULT, foreground_density
from ..models import build_model
from ..models import model_options as network_options  # `model_options` names a setting in this module
from ._base import METHODS, Segmentation, check_images_and_prior, check_prior, known_prior
from ._classical import (
    FOREGROUND_RULES,
    object_width,
    otsu_object_width,
    resolve_foreground,
    smoothed_threshold_masks,
)

__all__ = [
    "IGTT",
    "Selection",
    "BOOTSTRAPS",
    "SELECTION_RULES",
    "LOSSES",
    "candidate_thresholds",
    "select_candidate",
    "fix_polarity",
    "otsu_masks",
    "sample_from_prior",
    "object_width",
    "choose_ems",
]

SELECTION_RULES = ("dmi", "ndmi")
"""Candidate scores: ``dmi`` (the paper's, ``-log |cov(p, s)|``) and ``ndmi`` (DMI normalised by the candidate's
own spread, ``-log(|cov(p, s)| / sqrt(f (1 - f)))`` with ``f`` its foreground fraction: minus the log correlation of
map and mask, i.e. Otsu's criterion on the map)."""

BOOTSTRAPS = ("auto", "otsu", "minerror", "local", "prior", "otsu+prior", "blank")
"""First-round targets: ``otsu`` (the targets extracted from the Otsu mask of the image), ``minerror`` (the same from
its minimum-error mask), ``local`` (the same from the local threshold's mask, :func:`local_threshold` at its
defaults: a window ten times the objects' width), ``prior`` (pixels drawn with probability proportional to the
prior: an RCL-sampled label of it), ``otsu+prior`` (the Otsu targets, each pixel kept with probability
``q / max q``), ``blank`` (the paper's empty masks), ``auto`` (``local`` where the Otsu masks of the
images hold over 1.65 times the local threshold's pixels, a background level that changes from place to place;
else ``minerror`` with area targets where the minimum-error masks hold fewer pixels than the Otsu masks,
membrane-like images; ``otsu`` otherwise; a prior then acts through the selection)."""

LOSSES = ("auto", "dmi+iou", "bce")
"""Training losses: ``dmi+iou`` (the paper's; DMI with its sign, see :func:`_signed_dmi_loss`), ``bce``, and
``auto`` (``dmi+iou`` for skeleton-based targets, ``bce`` otherwise)."""

_FORMAT = "mstool-igtt"
_FORMAT_VERSION = 1
_DMI_EPS = 1e-6  # as in mstool.losses.dmi_loss
_CHUNK = 1 << 24  # candidate pixels per chunk when the densities of candidates are needed
_GLOBAL_TO_LOCAL = 1.65
"""``bootstrap="auto"`` starts from the local threshold's mask where the Otsu masks hold more than this many times
its pixels, both of the images smoothed with sigma 1 (the module docstring says why and where it was chosen)."""



# ------------------------------------------------------------------------------------------------------------
# Candidate building and selection
# ------------------------------------------------------------------------------------------------------------


class Selection(NamedTuple):
    """The candidate chosen for every image by :func:`select_candidate`.

    Attributes:
        masks: ``(N, H, W)`` int64, the chosen candidate after the polarity fix (0 background, 1 foreground).
        thresholds: ``(N,)`` the chosen threshold ``t``: the candidate is ``p >= t``.
        index: ``(N,)`` int64 index of the chosen candidate among the ``K``.
        inverted: ``(N,)`` bool, whether the candidate covered more than half the image and was inverted
            (foreground is then ``p < t``).
        dmi: ``(N, K)`` DMI of every candidate to the map, ``-log(|cov(p, s_k)| + 1e-6)``.
        consistency: ``(N, K)`` polarity-fixed meta-structure similarity of every candidate to the prior
            (Pearson correlation of densities, 0 where undefined), or ``None`` without a prior.
        score: ``(N, K)`` what was minimised.
    """

    masks: torch.Tensor
    thresholds: torch.Tensor
    index: torch.Tensor
    inverted: torch.Tensor
    dmi: torch.Tensor
    consistency: torch.Tensor | None
    score: torch.Tensor


def candidate_thresholds(probs: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` thresholds per image, evenly spaced strictly between the map's minimum and maximum.

    ``t_k = lo + (hi - lo) * k / (num + 1)`` for ``k = 1..num``, so every candidate ``p >= t_k`` of a
    non-constant map holds at least one pixel of each class. A constant map gets ``num`` copies of its value.

    Args:
        probs: ``(N, 1, H, W)`` float score maps.
        num: number of thresholds ``K >= 1``.

    Returns:
        ``(N, K)`` increasing thresholds in the dtype and on the device of ``probs``.

    Example:
        >>> candidate_thresholds(torch.tensor([[[[0.0, 1.0]]]]), 3).tolist()
        [[0.25, 0.5, 0.75]]
    """
    check_shape(probs, "probs", "N 1 H W", dtype="float")
    num = check_int(num, "num", low=1)
    return _thresholds(*_range(probs.flatten(1)), num)


def select_candidate(
    probs: torch.Tensor,
    num: int = 30,
    *,
    prior: torch.Tensor | None = None,
    prior_weight: float = 1.0,
    bandwidth: int = 5,
    rule: str = "dmi",
    minority: bool = True,
) -> Selection:
    """Build ``num`` candidate masks per image from thresholds of its map and choose one, in one batched pass.

    Candidate ``k`` is ``s_k = p >= t_k`` with ``t_k`` from :func:`candidate_thresholds`. Its DMI to the map is
    ``-log(|det(P S^T / M)| + 1e-6) = -log(|cov(p, s_k)| + 1e-6)``, the per-image binary L_DMI of
    :func:`mstool.losses.dmi_loss`. The score is that DMI (``rule="dmi"``, the paper's) or, with ``"ndmi"``, DMI
    plus ``0.5 log(f (1 - f))`` for a candidate of foreground fraction ``f``: minus the log correlation of map and
    mask, Otsu's criterion on the map. With a ``prior``, the score subtracts ``prior_weight`` times the
    consistency ``r_k``: the Pearson correlation of the candidate's foreground density (box window of half-width
    ``bandwidth``) with the prior, sign-flipped for a candidate that the polarity fix will invert (its density is
    one minus the candidate's). The lowest score wins (the first on a tie); with ``minority``, a winner covering
    more than half the image is inverted (:func:`fix_polarity`): the foreground is taken to be the minority,
    for maps whose polarity is unknown. A map known to score the foreground high (iGTT's, trained on targets of
    a known side) is read as it is, ``minority=False``.

    Cost: ``O(N P)`` time and memory, independent of ``K`` but for ``O(N K)`` bookkeeping: each pixel's bucket
    among the evenly spaced thresholds is one multiply-add, one ``bincount`` over (image, bucket) and a reverse
    cumulative sum give every candidate's size and score sum, and the chosen mask is one comparison. A pixel
    within rounding error (a few ulps) of a threshold may be counted on the wrong side of it in the statistics;
    the returned mask is the exact ``p >= t``. No ``(N, K, H, W)`` tensor is made: a 4096 x 4096 map takes a
    few hundred MB. A prior adds the densities of all ``N K`` candidates, computed in chunks of at most
    ``2**24`` candidate pixels (at least one candidate) by :func:`_prior_consistency`.

    Degenerate maps: a constant map has no threshold strictly inside its range; it gets an empty mask,
    ``index`` 0, and DMI ``-log(1e-6)`` for every candidate.

    Args:
        probs: ``(N, 1, H, W)`` float score maps (any range).
        num: number of candidates ``K >= 1``.
        prior: optional ``(N, 1, H, W)`` non-negative foreground density, any scale; NaN where unknown (left out
            of the consistency).
        prior_weight: weight ``>= 0`` of the prior consistency term.
        bandwidth: box half-width of the candidates' densities (whole pixels ``>= 0``).
        rule: ``"dmi"`` or ``"ndmi"`` (:data:`SELECTION_RULES`).
        minority: invert a winner covering more than half the image.

    Returns:
        :class:`Selection`.

    Raises:
        ShapeError: ``probs`` is not ``(N, 1, H, W)`` with pixels, or a ``prior`` of another shape.
        DTypeError: ``probs`` or ``prior`` is not a float tensor.
        DataError: a negative or infinite ``prior``.
        ParameterError: a bad ``num``, ``prior_weight``, ``bandwidth`` or ``rule``.

    References:
        Luo et al., arXiv 2205.00160 (iGTT candidate selection); Xu et al., NeurIPS 2019 (L_DMI);
        Otsu, IEEE Trans. SMC 9 (1979).

    Example:
        >>> p = torch.tensor([[[[0.1, 0.2, 0.8, 0.9]]]])
        >>> sel = select_candidate(p, 3)
        >>> sel.masks.tolist(), round(sel.thresholds.item(), 2)  # 0.3, 0.5 and 0.7 tie: the first wins
        ([[[0, 0, 1, 1]]], 0.3)
    """
    check_shape(probs, "probs", "N 1 H W", dtype="float")
    check_prior(prior, probs, "probs")
    num = check_int(num, "num", low=1)
    check_in(rule, "rule", SELECTION_RULES)
    weight = check_range(prior_weight, "prior_weight", 0)
    bandwidth = check_int(bandwidth, "bandwidth", low=0)
    n, _, h, w = probs.shape
    flat = probs.flatten(1)
    lo, hi = _range(flat)
    thresholds = _thresholds(lo, hi, num)
    (inside, _), (p_inside, p_total) = _candidate_sums(flat, lo, hi, num, None, flat)
    m = float(h * w)
    cov = p_inside / m - (inside / m) * (p_total / m)
    dmi = -torch.log(cov.abs() + _DMI_EPS)
    score, consistency = dmi, None
    if rule == "ndmi":
        frac = inside / m
        score = dmi + 0.5 * torch.log((frac * (1 - frac)).clamp_min(1e-12))
    if prior is not None:
        consistency = _prior_consistency(flat.view(n, h, w), thresholds, prior, bandwidth)
        if minority:
            consistency = torch.where(inside > m / 2, -consistency, consistency)
        score = score - weight * consistency.double()
    index = score.argmin(1, keepdim=True)
    chosen = thresholds.gather(1, index)
    varies = hi > lo
    # the polarity fix (fix_polarity) without another pass: the candidate's size is known from the histogram
    inverted = (inside.gather(1, index) > m / 2).squeeze(1) & varies & minority
    masks = flat >= chosen
    if bool(inverted.any()):
        masks ^= inverted[:, None]
    if not bool(varies.all()):
        masks &= varies[:, None]
    return Selection(masks.view(n, h, w).long(), chosen.squeeze(1), index.squeeze(1), inverted, dmi.to(probs.dtype),
                     None if consistency is None else consistency.to(probs.dtype), score.to(probs.dtype))


def _range(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row minimum and maximum of ``(N, P)``, ``P >= 1`` (empty ``(0,)`` for ``N = 0``)."""
    if flat.shape[1] == 0:
        raise ShapeError(f"score maps must hold at least one pixel; got {flat.shape[1]}")
    if flat.shape[0] == 0:
        return flat.new_zeros(0), flat.new_zeros(0)
    return flat.amin(1), flat.amax(1)


def _thresholds(lo: torch.Tensor, hi: torch.Tensor, num: int) -> torch.Tensor:
    """``(N, K)``: ``lo + (hi - lo) k / (K + 1)``, ``k = 1..K``, computed in float64, returned in ``lo``'s dtype."""
    steps = torch.arange(1, num + 1, dtype=torch.float64, device=lo.device) / (num + 1)
    return (lo.double()[:, None] + (hi - lo).double()[:, None] * steps).to(lo.dtype)


def _candidate_sums(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, num: int,
                    *values: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each ``(N, P)`` value map (``None``: ones, i.e. pixel counts), the ``(N, K)`` float64 sums over the
    pixels of every candidate ``p >= t_k`` and the ``(N, 1)`` sum over all pixels.

    The thresholds are evenly spaced, so a pixel's bucket (how many thresholds lie at or below it) is
    ``floor((p - lo) (K + 1) / (hi - lo))``: one multiply-add per pixel instead of a search. One histogram over
    (image, bucket) and a reverse cumulative sum over buckets give every candidate at once. A pixel within
    rounding error of a threshold (a few ulps) may be counted on the other side of it; the masks themselves
    are made by exact comparison.
    """
    n = flat.shape[0]
    span = hi - lo
    ok = span > 0
    scale = torch.where(ok, (num + 1) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(span))
    bucket = torch.addcmul((-lo * scale)[:, None], flat, scale[:, None]).clamp_(0, num).to(torch.int32)
    offsets = torch.arange(n, dtype=torch.int32, device=flat.device) * (num + 1)
    index = bucket.add_(offsets[:, None]).flatten()
    # float32 weights accumulate in float32: exact enough up to about a million pixels per image
    wide = flat.shape[1] > 2**20
    out = []
    for v in values:
        weights = None if v is None else (v.double() if wide else v).flatten()
        hist = torch.bincount(index, weights=weights, minlength=n * (num + 1)).view(n, num + 1).double()
        above = hist.flip(1).cumsum(1).flip(1)
        out.append((above[:, 1:], above[:, :1]))
    return out


def _prior_consistency(maps: torch.Tensor, thresholds: torch.Tensor, prior: torch.Tensor,
                       bandwidth: int, budget: int | None = None) -> torch.Tensor:
    """``(N, K)`` Pearson correlation of every candidate's foreground density with the prior (0 if undefined),
    over the pixels where the prior is known (not NaN).

    The same numbers as :func:`mstool.metastructure.foreground_density` (box kernel) and
    :func:`mstool.metastructure.density_similarity` give for each candidate, without their per-call work that
    does not depend on the candidate (the window sizes, the prior's centring, the total variation): a density is
    the integer box count of the mask over the box count of the image, so it is bitwise the library's, and the
    correlation differs from the library's by float32 rounding in the sums only.

    A density is not linear in its mask (its variance is a quadratic form), so it cannot come from the
    histogram of :func:`_candidate_sums`: the densities are materialised, ``budget // (H W)`` (image,
    candidate) pairs at a time and at least one (``budget``: ``_CHUNK``, 2**24 candidate pixels), so memory is
    ``O(budget + H W)`` whatever ``N`` and ``K``. Maps of up to ``budget`` candidate pixels in all are one
    batched pass; a 4096 x 4096 map goes one candidate at a time (0.8 GB). The chunking changes nothing but,
    at most, float rounding in the per-row sums.
    """
    n, h, w = maps.shape
    num = thresholds.shape[1]
    total = n * num
    chunk = max(1, (_CHUNK if budget is None else budget) // max(1, h * w))
    windows = _box_counts(torch.ones(1, h, w, dtype=torch.int32, device=maps.device), bandwidth).float().flatten(1)
    known, q = (v.flatten(1) for v in known_prior(prior))
    q = q.float()
    partial = not bool(known.all())
    count = known.sum(-1, keepdim=True).clamp_min(1)
    # a prior known everywhere takes the plain expressions, so its numbers are bit for bit the earlier ones
    q_centred = (q - q.sum(-1, keepdim=True) / count) * known if partial else q - q.mean(-1, keepdim=True)
    q_norm = (q_centred * q_centred).sum(-1).sqrt()
    q_constant = _known_range(q, known) if partial else q.amax(-1) == q.amin(-1)
    flat_thresholds = thresholds.reshape(-1)
    out = []
    for start in range(0, total, chunk):  # bounded memory: chunks of (image, candidate) pairs
        pairs = torch.arange(start, min(start + chunk, total), device=maps.device)
        image = pairs // num
        masks = maps.index_select(0, image) >= flat_thresholds[pairs, None, None]
        dens = _box_counts(masks.to(torch.int32), bandwidth).flatten(1).float() / windows
        if partial:  # the correlation over the pixels the prior knows
            on = known.index_select(0, image)
            centred = (dens - (dens * on).sum(-1, keepdim=True) / count.index_select(0, image)) * on
            constant = _known_range(dens, on) | q_constant[image]
        else:
            centred = dens - dens.mean(-1, keepdim=True)
            constant = (dens.amax(-1) == dens.amin(-1)) | q_constant[image]
        denom = (centred * centred).sum(-1).sqrt() * q_norm[image]
        r = (centred * q_centred[image]).sum(-1) / torch.where(constant, torch.ones_like(denom), denom)
        out.append(torch.where(constant, torch.zeros_like(r), r.clamp(-1, 1)))
    return torch.cat(out).view(n, num) if out else torch.zeros(n, num, device=maps.device)


def _known_range(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``(R,)`` bool: rows of ``x`` ``(R, P)`` constant over their ``known`` pixels (or with none): no correlation.
    Compared exactly, as a centred constant may keep a rounding residue."""
    top = torch.where(known, x, torch.full_like(x, -math.inf)).amax(-1)
    low = torch.where(known, x, torch.full_like(x, math.inf)).amin(-1)
    return ~(top > low)


def _box_counts(x: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, H, W)`` int32 sums of ``x`` over ``(2 r + 1)``-pixel square windows clipped at the border.

    Exact integer counts by differences of a cumulative sum of the zero-padded input, one axis at a time:
    slices only, no gather.
    """
    for dim in (-1, -2):
        size = x.shape[dim]
        padded = F.pad(x, [radius + 1, radius] if dim == -1 else [0, 0, radius + 1, radius])
        c = padded.cumsum(dim, dtype=torch.int32)
        x = c.narrow(dim, 2 * radius + 1, size) - c.narrow(dim, 0, size)
    return x


def fix_polarity(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert every binary mask whose foreground covers more than half of its image.

    Foreground is taken to be the minority class; a mask of exactly half is kept.

    Args:
        masks: ``(N, H, W)`` binary masks, integer (0, 1) or bool.

    Returns:
        ``(masks, inverted)``: ``(N, H, W)`` int64 masks and ``(N,)`` bool, which images were inverted.

    Example:
        >>> m, inv = fix_polarity(torch.tensor([[[1, 1, 1, 0]], [[1, 0, 0, 0]]]))
        >>> m.tolist(), inv.tolist()
        ([[[0, 0, 0, 1]], [[1, 0, 0, 0]]], [True, False])
    """
    check_shape(masks, "masks", "N H W")
    if masks.is_floating_point():
        raise DTypeError(f"`masks` must be an integer or bool tensor; got {masks.dtype}")
    fg = masks.bool()
    inverted = fg.flatten(1).count_nonzero(1) * 2 > fg[0].numel() if fg.shape[0] else fg.new_zeros(0)
    if bool(inverted.any()):
        fg = fg ^ inverted.view(-1, 1, 1)
    return fg.long(), inverted


# ------------------------------------------------------------------------------------------------------------
# Bootstrap and EMS
# ------------------------------------------------------------------------------------------------------------


def otsu_masks(images: torch.Tensor, *, smooth: float = 1.0, bins: int = 256,
               foreground: str = "minority") -> torch.Tensor:
    """Otsu masks of the Gaussian-smoothed images, batched, on the side ``foreground`` says.

    Channels are averaged, each image is blurred with a Gaussian of standard deviation ``smooth`` (reflecting
    border), its range is cut into ``bins`` bins and the bin edge maximising the between-class variance splits
    it. A constant image gives an empty mask.

    Args:
        images: ``(N, C, H, W)`` float.
        smooth: Gaussian sigma in pixels, ``>= 0`` (0: no smoothing).
        bins: histogram bins, ``>= 2``.
        foreground: ``"bright"`` (above the threshold), ``"dark"`` (the bright mask of the negated image) or
            ``"minority"`` (the smaller side of each image, :func:`fix_polarity`).

    Returns:
        ``(N, H, W)`` int64 masks on the images' device.

    References:
        Otsu, IEEE Trans. SMC 9 (1979).

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[..., 2:4, 2:4] = 1.0
        >>> int(otsu_masks(x, smooth=0).sum())
        4
    """
    check_shape(images, "images", "N C H W", dtype="float")
    sigma = check_range(smooth, "smooth", 0)
    bins = check_int(bins, "bins", low=2)
    check_in(foreground, "foreground", ("bright", "dark", "minority"))
    n, _, h, w = images.shape
    if n == 0 or h * w == 0:
        return torch.zeros(n, h, w, dtype=torch.long, device=images.device)
    masks = smoothed_threshold_masks(images, "dark" if foreground == "dark" else "bright", sigma, bins=bins)
    return fix_polarity(masks)[0] if foreground == "minority" else masks


def sample_from_prior(
    prior: torch.Tensor,
    keep: float = 0.1,
    *,
    within: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A randomly sampled (RCL) label of a foreground density: pixel ``x`` is foreground with probability
    ``keep * q(x) / max q``.

    The counts are proportional to the density (twice the density, twice the expected foreground pixels); the
    densest pixel of an image is kept with probability ``keep``. ``within`` restricts the draw to a mask (the
    ``otsu+prior`` bootstrap: an Otsu mask sampled where the prior is dense). An all-zero prior gives an empty
    label. Where the prior is unknown (NaN) the label is 255 (ignored), or, with ``within``, the mask's own value.

    Args:
        prior: ``(N, 1, H, W)`` density, any scale, non-negative where known, NaN where unknown.
        keep: the largest keep probability, in [0, 1].
        within: optional ``(N, H, W)`` integer mask; pixels outside it are never drawn.
        generator: CPU random generator (the draw is made on the CPU, then moved).

    Returns:
        ``(N, H, W)`` int64 labels, 0 background, 1 foreground, 255 unknown.

    Example:
        >>> q = torch.ones(1, 1, 100, 100)
        >>> q[..., 50:] = 0.5
        >>> lab = sample_from_prior(q, 0.5, generator=torch.Generator().manual_seed(0))
        >>> left, right = int(lab[..., :50].sum()), int(lab[..., 50:].sum())
        >>> 1.7 < left / right < 2.3
        True
    """
    check_prior(prior)
    keep = check_range(keep, "keep", 0, 1)
    n, _, h, w = prior.shape
    known, filled = known_prior(prior)
    known, filled = known[:, 0], filled[:, 0]
    top = filled.flatten(1).amax(1).view(n, 1, 1) if n and h * w else prior.new_ones(n, 1, 1)
    chance = keep * filled / torch.where(top > 0, top, torch.ones_like(top))
    if within is not None:
        check_shape(within, "within", "N H W", dtype="int")
        if within.shape != chance.shape:
            raise ShapeError(f"`within` {tuple(within.shape)} must match `prior` in N, H and W; "
                             f"got {tuple(prior.shape)}")
        chance = chance * (within > 0)
    u = torch.rand((n, h, w), generator=generator, dtype=torch.float64).to(prior.device)
    out = (u < chance.double()).long()
    if bool(known.all()):
        return out
    return torch.where(known, out, within.long() if within is not None else torch.full_like(out, 255))


def choose_ems(width: float, *, thin_width: float = 6.0, keep: float = 0.1, thick: str = "clean") -> str:
    """The EMS spec for objects ``width`` pixels wide: skeleton-based EMS for thin ones, ``thick`` for the rest.

    Args:
        width: measured object width (:func:`object_width`).
        thin_width: widest object that counts as thin.
        keep: fraction of skeleton pixels kept for thin objects.
        thick: the spec for thick objects (default ``clean``: the mask itself, see :class:`IGTT`).

    Returns:
        ``"skeleton+shift:1+sample:{keep}"`` when ``width <= thin_width``, else ``thick``.

    Example:
        >>> choose_ems(3.0), choose_ems(9.5), choose_ems(9.5, thick="sample:0.5")
        ('skeleton+shift:1+sample:0.1', 'clean', 'sample:0.5')
    """
    keep = check_range(keep, "keep", 0, 1)
    return f"skeleton+shift:1+sample:{keep:g}" if width <= thin_width else thick


# ------------------------------------------------------------------------------------------------------------
# The method
# ------------------------------------------------------------------------------------------------------------


@METHODS.register("igtt")
class IGTT:
    """iGTT: self-training of a U-Net on its own meta-structure-extracted pseudo-labels (binary).

    ``segment`` trains one fresh U-Net on the batch it segments (the paper's transductive setting): a
    label-free bootstrap gives the first targets, then every round trains ``steps`` steps, predicts, selects
    one candidate mask per image (:func:`select_candidate`), fixes polarity and extracts the next targets. The
    result is the last round's selection. The trained network comes back in the result's ``trained``: a new
    instance holding it, which :meth:`save` writes and whose ``segment`` predicts new images without training
    (predict, then select with the same rule), as does an instance from :meth:`load`. The instance that trained
    it is never changed. The module docstring lists what differs from the paper's loop and why; ``selection="dmi"``,
    ``loss="dmi+iou"``, ``ems="paper"``, ``bootstrap="blank"``, ``schedule="constant"``, ``min_skeleton=0`` give
    the paper's.

    The defaults are quick settings for the CPU (U-Net base 16, depth 3, 64 x 64 crops, 8 rounds of 40 Adam
    steps: about 18 CPU seconds for 5 images of 128 x 128, most of it fixed per call, not per image). The paper's
    setting is closer to ``model_options={"base": 64, "depth": 4}``, ``crop=256``, more rounds and steps.

    Args:
        rounds: number of rounds ``>= 1``.
        steps: optimizer steps per round ``>= 1``.
        thresholds: candidate masks per image and round, ``K >= 1``.
        selection: candidate score, one of :data:`SELECTION_RULES` (``ndmi``; ``dmi`` is the paper's).
        ems: ``"auto"`` (from the object width, :func:`choose_ems`; area targets when the ``auto`` bootstrap takes
            the minimum-error start), ``"paper"`` (``skeleton+shift:1+sample:0.1``)
            or any label spec (:func:`mstool.labels.parse_spec`) applied to each round's masks to make the next
            targets.
        no_ems: train on the selected masks themselves (the paper's ablation); ``ems`` is then unused.
        bootstrap: first-round targets, one of :data:`BOOTSTRAPS` (``auto``: the minimum-error start on
            membrane-like images, Otsu's otherwise; see the module docstring).
        prior_weight: weight ``>= 0`` of the prior consistency term in the selection (used with a prior).
        keep: fraction of skeleton pixels kept by the ``auto`` EMS, and the largest keep probability of the
            ``prior`` bootstrap, in (0, 1].
        thin_width: widest object (pixels) for which ``ems="auto"`` picks skeleton-based EMS.
        thick_ems: the spec ``ems="auto"`` picks for wider objects (``clean``: the masks themselves).
        smooth: Gaussian sigma applied before the Otsu or minimum-error bootstrap, ``>= 0`` (0: the raw image).
        bandwidth: box half-width of the densities compared with the prior.
        model_options: U-Net options (:func:`mstool.models.build_model`); default ``base=16, depth=3``.
        lr: Adam learning rate.
        schedule: ``"cosine"`` (decay to 0 over all rounds) or ``"constant"``.
        batch_size: images per step, one crop from each, drawn at random each step without repeats (so a step
            holds ``min(batch_size, N)`` crops).
        crop: side of the random training crops (``None``: whole images; larger than the image: whole); at most
            ``tile`` for an image larger than a tile.
        dmi_weight: weight of the DMI term of the ``dmi+iou`` loss.
        iou_weight: weight of the soft IoU term of the ``dmi+iou`` loss.
        loss: one of :data:`LOSSES` (``auto``: DMI + soft IoU for skeleton targets, BCE otherwise).
        foreground: the side of the intensity that is foreground: ``"bright"``, ``"dark"`` or ``"auto"``
            (:func:`~mstool.unsupervised.choose_foreground`, one side for the batch). The first targets come from
            that side of Otsu's threshold and the map is read as it is (no minority inversion).
        jitter: random contrast and brightness of each training crop (gain uniform in ``1 +- jitter``, offset
            normal with std ``0.75 jitter``, in units of the image's std), in ``[0, 1)``; 0 turns it off.
        prior_gate: with a prior, leave out of the targets what the (calibrated) prior confidently contradicts:
            foreground where it is below ``prior_gate``, and, for area targets, background where it is above
            ``1 - prior_gate``; in ``[0, 0.5]``, 0 (default) off. See the module docstring for what it did.
        anchor: keep the first targets' foreground from being unlearnt: in every later round, an area target's
            background pixel where the first (Otsu or minimum-error) mask's density (3 x 3 box) is above
            ``1 - anchor`` is left out of the loss, so self-training cannot teach the network to drop what the
            bootstrap found (the confirmation bias that shrank nuclei round after round); in ``[0, 0.5]``, default
            0.35, 0 off. Used with an Otsu or minimum-error bootstrap and area targets: with skeleton EMS (thin
            objects) or a blank or prior bootstrap the run is bit for bit the run without it. See the module
            docstring for what it did.
        min_skeleton: skeleton EMS only: before the targets are drawn, drop the 8-connected skeleton pieces shorter
            than ``min_skeleton`` object widths (the width ``ems="auto"`` measures), the skeletons of compact
            blobs (organelles, specks) rather than of a network; ``>= 0``, default 1.5; 0 keeps every piece, as the
            paper's EMS does. See the module docstring for what it did.
        tile: the side of the largest image handled whole (``>= 16``; ``None``: no limit). An image larger than
            ``tile`` in either side is predicted in ``tile x tile`` windows overlapping by ``tile // 4`` and
            blended (:func:`mstool.engine.predict`), and trained on crops cut from it before augmentation (at
            most ``tile`` on a side, even with ``crop=None``), so memory follows ``batch_size x tile^2`` and
            not the image: with the default 512, ``mstool segment`` of one 4096 x 4096 image peaked at 1.7 GB
            (process RSS, CPU). Images up to ``tile`` are done exactly as without tiling.
        precision: the training steps' precision, one of :data:`~mstool.device.PRECISIONS` (``auto``: mixed on
            CUDA, float32 on the CPU; ``bf16`` on a CPU with bfloat16 units: see the module docstring's Speed).
            Prediction and selection run in float32. ``info["precision"]`` records the one used.

    Raises:
        ParameterError: a setting out of range, an unknown choice or bad model options.
        SpecError: a bad EMS spec.

    References:
        Luo, Liu, Guo, Yang, arXiv 2205.00160 (2022): iGTT and EMS.

    Example:
        >>> from mstool.data import synthesize
        >>> data = synthesize("er", 2, 32, generator=torch.Generator().manual_seed(0))
        >>> x = (data.images - data.images.mean((2, 3), keepdim=True)) / data.images.std((2, 3), keepdim=True)
        >>> method = IGTT(rounds=2, steps=2, model_options={"base": 4, "depth": 2})
        >>> out = method.segment(x, generator=torch.Generator().manual_seed(0))
        >>> out.masks.shape, len(out.info["rounds"]), out.info["ems"]
        (torch.Size([2, 32, 32]), 2, 'skeleton+shift:1+sample:0.1')
        >>> out.trained.pretrained, method.trained  # the network is in the result; the method is unchanged
        (True, False)
    """

    deterministic: ClassVar[bool] = False
    binary: ClassVar[bool] = True
    scribbles: ClassVar[bool] = True
    learned: ClassVar[bool] = True

    def __init__(
        self,
        *,
        rounds: int = 8,
        steps: int = 40,
        thresholds: int = 30,
        selection: str = "ndmi",
        ems: str = "auto",
        no_ems: bool = False,
        bootstrap: str = "auto",
        prior_weight: float = 1.0,
        keep: float = 0.1,
        thin_width: float = 6.0,
        thick_ems: str = "clean",
        smooth: float = 0.0,
        bandwidth: int = 5,
        model_options: dict[str, Any] | None = None,
        lr: float = 3e-3,
        schedule: str = "cosine",
        batch_size: int = 8,
        crop: int | None = 64,
        dmi_weight: float = 1.0,
        iou_weight: float = 1.0,
        loss: str = "auto",
        tile: int | None = 512,
        foreground: str = "auto",
        jitter: float = 0.3,
        prior_gate: float = 0.0,
        anchor: float = 0.35,
        min_skeleton: float = 1.5,
        precision: str = "auto",
    ):
        self.rounds = check_int(rounds, "rounds", low=1)
        self.steps = check_int(steps, "steps", low=1)
        self.thresholds = check_int(thresholds, "thresholds", low=1)
        self.selection = check_in(selection, "selection", SELECTION_RULES)
        if not isinstance(ems, str):
            raise ParameterError(f"`ems` must be 'auto', 'paper' or a label spec string; got {ems!r}")
        if ems not in ("auto", "paper"):
            parse_spec(ems)  # raises SpecError with the grammar's message
        self.ems = ems
        self.no_ems = bool(no_ems)
        self.bootstrap = check_in(bootstrap, "bootstrap", BOOTSTRAPS)
        self.prior_weight = check_range(prior_weight, "prior_weight", 0)
        self.keep = check_range(keep, "keep", 0, 1, low_open=True)
        self.thin_width = check_range(thin_width, "thin_width", 0)
        if not isinstance(thick_ems, str):
            raise ParameterError(f"`thick_ems` must be a label spec string; got {thick_ems!r}")
        parse_spec(thick_ems)
        self.thick_ems = thick_ems
        self.smooth = check_range(smooth, "smooth", 0)
        self.bandwidth = check_int(bandwidth, "bandwidth", low=0)
        self.model_options = {"base": 16, "depth": 3, **(model_options or {})}
        self.lr = check_range(lr, "lr", 0, low_open=True)
        self.schedule = check_in(schedule, "schedule", ("cosine", "constant"))
        self.batch_size = check_int(batch_size, "batch_size", low=1)
        self.crop = None if crop is None else check_int(crop, "crop", low=8)
        self.dmi_weight = check_range(dmi_weight, "dmi_weight", 0)
        self.iou_weight = check_range(iou_weight, "iou_weight", 0)
        self.loss = check_in(loss, "loss", LOSSES)
        self.tile = None if tile is None else check_int(tile, "tile", low=16)
        self.foreground = check_in(foreground, "foreground", FOREGROUND_RULES)
        self.jitter = check_range(jitter, "jitter", 0, 1, high_open=True)
        self.prior_gate = check_range(prior_gate, "prior_gate", 0, 0.5)
        self.anchor = check_range(anchor, "anchor", 0, 0.5)
        self.min_skeleton = check_range(min_skeleton, "min_skeleton", 0)
        self.precision = check_in(precision, "precision", PRECISIONS)
        unknown = sorted(set(self.model_options) - set(network_options("unet")))
        if unknown:  # fail here, not when segment() starts (values are checked when the network is built)
            raise ParameterError(f"`model_options` has unknown option(s) {', '.join(unknown)}; the U-Net takes "
                                 f"{', '.join(network_options('unet'))}")
        self.model: torch.nn.Module | None = None
        self.in_channels: int | None = None
        self.pretrained = False
        self.ems_chosen: str | None = None
        self.side: str | None = None  # the foreground side the network was trained on

    @property
    def trained(self) -> bool:
        """Whether the instance holds a network (it is a segmentation's ``trained``, or loaded): what
        :meth:`save` writes."""
        return self.model is not None

    # -------------------------------------------------------------------------------------------- settings
    def settings(self) -> dict[str, Any]:
        """Every constructor setting as plain Python values (what :meth:`save` stores)."""
        return {
            "rounds": self.rounds, "steps": self.steps, "thresholds": self.thresholds,
            "selection": self.selection, "ems": self.ems,
            "no_ems": self.no_ems, "bootstrap": self.bootstrap, "prior_weight": self.prior_weight,
            "keep": self.keep, "thin_width": self.thin_width,
            "thick_ems": self.thick_ems, "smooth": self.smooth, "bandwidth": self.bandwidth,
            "model_options": dict(self.model_options), "lr": self.lr, "schedule": self.schedule,
            "batch_size": self.batch_size,
            "crop": self.crop, "dmi_weight": self.dmi_weight, "iou_weight": self.iou_weight, "loss": self.loss,
            "tile": self.tile, "foreground": self.foreground, "jitter": self.jitter, "prior_gate": self.prior_gate,
            "anchor": self.anchor, "min_skeleton": self.min_skeleton, "precision": self.precision,
        }

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.settings().items() if v != _DEFAULTS.get(k)}
        return f"IGTT({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ---------------------------------------------------------------------------------------------- segment
    def segment(
        self,
        images: torch.Tensor,
        *,
        prior: torch.Tensor | None = None,
        scribbles: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
        progress: Progress | None = None,
    ) -> Segmentation:
        """Train a fresh U-Net on ``images`` by iGTT and segment them (a loaded instance only predicts).

        Args:
            images: ``(N, C, H, W)`` float, z-scored per image; one size per call.
            prior: optional ``(N, 1, H, W)`` non-negative foreground density (any scale; NaN where unknown): it
                seeds the first targets (``bootstrap``) and adds the consistency term to the selection, both only
                where it is known.
            scribbles: optional ``(N, H, W)`` partial labels, 0 background, 1 foreground, 255 not labelled (one
                region of each image drawn exactly, scribbles): every round's targets take them where they are
                labelled, so the network learns them as they are and iGTT's own masks fill in the rest; with
                ``ems="auto"`` the rest are area targets (``thick_ems``) whatever the objects' width, as the
                drawn labels are.
            generator: CPU random generator (network initialisation, crops, EMS draws); ``None``: a fresh one.
            labels: optional ``(N, H, W)`` ground truth, used only to log Dice per round in ``info["rounds"]``;
                never for a choice (the result is the same with or without it).
            progress: called after every round with ``{"event": "round", "round", "rounds", ...}`` (the round's
                log entry).

        Returns:
            :class:`Segmentation`: ``masks`` ``(N, H, W)`` int64; ``scores`` ``(N, 1, H, W)`` the network's
            foreground probability, ``1 - p`` for images whose polarity was inverted (so the mask is the
            high side of ``info["thresholds"]``, in ``p`` units before inversion); ``info`` with ``rounds`` (one
            log entry per round), ``ems``, ``object_width``, ``bootstrap``, ``otsu_to_local`` and
            ``minerror_to_otsu`` (the ratios the ``auto`` bootstrap chose by, else ``None``), ``thresholds``,
            ``inverted``, ``threshold`` (median), ``constant_images``, ``seconds``, ``scribbled`` (labelled
            scribble pixels per image, or ``None``).

        Raises:
            ShapeError, DTypeError: bad ``images``, ``prior``, ``scribbles`` or ``labels``; channels other than a
                loaded network's.
            DataError: a negative or infinite ``prior``.
            ParameterError: a scribble value other than 0, 1 or 255, or scribbles for a loaded network (it only
                predicts).

        Warns:
            MstoolWarning: constant images (they get an empty mask).
        """
        check_images_and_prior(images, prior)
        for name, given in (("labels", labels), ("scribbles", scribbles)):
            if given is not None:
                check_labels(given, name, num_classes=2)
                if given.shape != (images.shape[0], *images.shape[-2:]):
                    raise ShapeError(f"`{name}` must be (N, H, W) = ({images.shape[0]}, {images.shape[-2]}, "
                                     f"{images.shape[-1]}); got {tuple(given.shape)}")
        if scribbles is not None and self.pretrained:
            raise ParameterError("`scribbles` train a network, and this iGTT is a loaded one that only predicts; "
                                 "segment with a fresh IGTT() to train with them")
        if self.pretrained and images.shape[1] != self.in_channels:
            raise ShapeError(f"`images` must have the loaded network's {self.in_channels} channel(s); "
                             f"got {images.shape[1]}")
        start = time.perf_counter()
        emit = progress if progress is not None else (lambda event: None)
        n, c, h, w = images.shape
        constant = _constant_images(images)
        if bool(constant.any()):
            warnings.warn(f"iGTT: constant image(s) {constant.nonzero().flatten().tolist()} have no structure; "
                          "their masks are empty", MstoolWarning, stacklevel=2)
        info: dict[str, Any] = {"method": "igtt", "settings": self.settings(),
                                "constant_images": constant.nonzero().flatten().tolist(), "rounds": [],
                                "scribbled": None if scribbles is None
                                else (scribbles != IGNORE_INDEX).flatten(1).sum(1).tolist()}
        if n == 0 or bool(constant.all()):  # nothing to train on: no network comes back
            info.update(ems=self.ems_chosen or "none", object_width=None, bootstrap=None, minerror_to_otsu=None,
                        otsu_to_local=None, loss=None, thresholds=[], inverted=[], threshold=None,
                        seconds=time.perf_counter() - start)
            return Segmentation(torch.zeros(n, h, w, dtype=torch.long, device=images.device),
                                torch.zeros(n, 1, h, w, device=images.device), info)
        if self.pretrained:
            probs = self._predict(self._oriented(images))
            sel = self._select(probs, prior, constant)
            info["rounds"].append(self._log(0, sel, probs, labels, None, start))
            info.update(ems=self.ems_chosen or "none", object_width=None, bootstrap=None, minerror_to_otsu=None,
                        otsu_to_local=None, loss=None, foreground=self.side or "minority", foreground_rule="trained")
            return self._result(probs, sel, info, start)

        # the trained state goes to a new instance, so this one can serve any number of calls, even at once
        fitted = type(self)(**self.settings())  # a subclass keeps its own steps
        return fitted._fit(images, prior, constant, labels, generator, emit, info, start, scribbles)

    def _fit(self, images: torch.Tensor, prior: torch.Tensor | None, constant: torch.Tensor,
             labels: torch.Tensor | None, generator: torch.Generator | None, emit: Progress,
             info: dict[str, Any], start: float, scribbles: torch.Tensor | None = None) -> Segmentation:
        """Train this fresh instance's network on ``images`` round by round; the result's ``trained`` is the
        instance, now holding the network. ``scribbles`` replace the targets where they are labelled."""

        def with_scribbles(targets: torch.Tensor) -> torch.Tensor:
            if scribbles is None:
                return targets
            return torch.where(scribbles != IGNORE_INDEX, scribbles.to(targets), targets)

        c = images.shape[1]
        g = generator if generator is not None else make_generator(None)
        self.side, why = resolve_foreground(images[~constant], self.foreground)
        info.update(why)
        images = self._oriented(images)  # from here on the foreground is bright, whichever side it was
        mode, ratios = self._resolve_bootstrap(images[~constant])
        # drawn labels are dense areas: skeleton targets beside them would ask one network for two meta-structures
        drawn = scribbles is not None and bool((scribbles != IGNORE_INDEX).any())
        spec, width = self._choose_ems(images, area=(self.bootstrap == "auto" and mode == "minerror") or drawn)
        shortest = self._shortest_skeleton(images, spec, width)
        loss_name = self._loss_for(spec)
        model = build_model("unet", in_channels=c, num_classes=1, options=self.model_options, generator=g)
        model = _placed(model, images.device)
        mixed = MixedPrecision(images.device, self.precision)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        total = self.rounds * self.steps
        # cosine decay over the whole run: late rounds refine instead of swinging the masks from round to round
        schedule = (torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))
                    if self.schedule == "cosine" else None)
        self.model, self.in_channels, self.ems_chosen = model, c, spec
        targets, info["bootstrap"], first = self._bootstrap(images, prior, constant, spec, g, shortest, mode)
        targets = with_scribbles(targets)
        info.update(ratios)
        anchor = self._anchor(first, spec)
        info.update(ems=spec or "none", object_width=width, loss=loss_name,
                    anchor=None if anchor is None else self.anchor, precision=mixed.name,
                    shortest_skeleton=shortest or None)
        previous = None
        for r in range(self.rounds):
            loss = self._train_round(model, optimizer, schedule, mixed, images, targets, loss_name, g)
            probs = self._predict(images)
            sel = self._select(probs, prior, constant)
            entry = self._log(r + 1, sel, probs, labels, loss, start)
            entry["changed"] = None if previous is None else float((sel.masks != previous).float().mean())
            previous = sel.masks
            info["rounds"].append(entry)
            emit({"event": "round", "rounds": self.rounds, **entry})
            if r + 1 < self.rounds:
                targets = with_scribbles(self._extract(sel.masks, spec, g, prior, anchor, shortest))
        self.pretrained = True
        result = self._result(probs, sel, info, start)
        result.trained = self
        return result

    # ---------------------------------------------------------------------------------------- the steps
    def _resolve_bootstrap(self, images: torch.Tensor) -> tuple[str, dict[str, float | None]]:
        """The bootstrap to use and, for ``auto``, the ratios it was chosen by (``None`` otherwise):
        ``otsu_to_local``, the pixels of the Otsu masks over those of the local threshold's masks: above
        :data:`_GLOBAL_TO_LOCAL`, ``local``; else ``minerror_to_otsu``, the pixels of the minimum-error masks over
        those of the Otsu masks: below 1, ``minerror`` (with area targets, :meth:`_choose_ems`); else ``otsu``.
        All masks are of the images smoothed with sigma 1, oriented, non-constant. See the module docstring."""
        ratios: dict[str, float | None] = {"otsu_to_local": None, "minerror_to_otsu": None}
        if self.bootstrap != "auto":
            return self.bootstrap, ratios
        if images.shape[0] == 0:
            return "otsu", ratios
        otsu = smoothed_threshold_masks(images, "bright", 1.0, "otsu").sum()
        local = smoothed_threshold_masks(images, "bright", 1.0, "local").sum()
        ratios["otsu_to_local"] = float(otsu) / max(1.0, float(local))
        if ratios["otsu_to_local"] > _GLOBAL_TO_LOCAL:
            return "local", ratios
        minerror = smoothed_threshold_masks(images, "bright", 1.0, "minimum_error").sum()
        ratios["minerror_to_otsu"] = float(minerror) / max(1.0, float(otsu))
        return ("minerror" if ratios["minerror_to_otsu"] < 1 else "otsu"), ratios

    def _choose_ems(self, images: torch.Tensor, area: bool = False) -> tuple[str | None, float | None]:
        """The EMS spec (``None`` for ``no_ems``) and, for ``auto``, the object width it was chosen by;
        ``area``: the ``auto`` bootstrap chose the minimum-error start, or scribbles were given, so ``auto``
        picks ``thick_ems`` whatever the width.

        The width is measured on the Otsu mask of the image smoothed with sigma 1, whatever the bootstrap: the
        raw image's mask is speckled by noise, and specks would measure as thin objects. Constant images have no
        Otsu mask, so they add nothing.
        """
        if self.no_ems:
            return None, None
        if self.ems == "paper":
            return EMS_DEFAULT, None
        if self.ems != "auto":
            return self.ems, None
        width = otsu_object_width(images, "bright")
        if area:
            return self.thick_ems, width
        return choose_ems(width, thin_width=self.thin_width, keep=self.keep, thick=self.thick_ems), width

    def _shortest_skeleton(self, images: torch.Tensor, spec: str | None, width: float | None) -> float:
        """The shortest skeleton piece (pixels) skeleton targets keep: ``min_skeleton`` object widths, 0 for none
        (``min_skeleton`` 0, area targets, or no objects to measure)."""
        if self.min_skeleton == 0 or not _skeletal(spec):
            return 0.0
        width = otsu_object_width(images, "bright") if width is None else width
        return 0.0 if math.isinf(width) else self.min_skeleton * width

    def _oriented(self, images: torch.Tensor) -> torch.Tensor:
        """The images with the foreground bright: negated for a dark side, so that iGTT on dark objects is iGTT on
        the turned-over image, bit for bit (the network never has to learn a sign)."""
        return -images if self.side == "dark" else images

    def _loss_for(self, spec: str | None) -> str:
        """``auto``: DMI + soft IoU for skeleton-based targets, BCE otherwise (see the class docstring)."""
        if self.loss != "auto":
            return self.loss
        return "dmi+iou" if _skeletal(spec) else "bce"

    def _bootstrap(self, images: torch.Tensor, prior: torch.Tensor | None, constant: torch.Tensor,
                   spec: str | None, g: torch.Generator, shortest: float = 0.0,
                   mode: str | None = None) -> tuple[torch.Tensor, str, torch.Tensor | None]:
        """First-round targets, the bootstrap's name and its first (Otsu or minimum-error) mask (``None`` for a
        bootstrap without one); ``shortest`` as for :meth:`_extract`; ``mode`` from :meth:`_resolve_bootstrap`
        (``None``: resolved from the ``bootstrap`` setting the same way)."""
        if mode is None:
            mode = self._resolve_bootstrap(images[~constant])[0]
        if mode in ("prior", "otsu+prior") and prior is None:
            raise ParameterError(f"`bootstrap` {mode!r} needs a `prior`; pass one or use 'otsu' or 'blank'")
        n, _, h, w = images.shape
        if mode == "blank":
            return torch.zeros(n, h, w, dtype=torch.long, device=images.device), mode, None
        if mode == "prior":
            return sample_from_prior(prior, self.keep, generator=g) * ~constant.view(n, 1, 1), mode, None
        rule = {"minerror": "minimum_error", "local": "local"}.get(mode, "otsu")
        first = smoothed_threshold_masks(images, "bright", self.smooth, rule) * ~constant.view(n, 1, 1)
        targets = self._extract(first, spec, g, prior, shortest=shortest)
        if mode == "otsu+prior":
            # keep each target pixel with probability q / max q: Otsu's specks where the prior is empty go
            targets = sample_from_prior(prior, 1.0, within=targets, generator=g)
        return targets, mode, first

    def _anchor(self, first: torch.Tensor | None, spec: str | None) -> torch.Tensor | None:
        """``(N, H, W)`` foreground density (3 x 3 box) of the first (Otsu or minimum-error) mask, or ``None`` when
        there is no anchor: ``anchor`` 0, a bootstrap without such a mask, or skeleton targets."""
        if self.anchor == 0 or first is None or _skeletal(spec):
            return None
        return foreground_density(first, kernel="box", bandwidth=1)[:, 0]

    def _extract(self, masks: torch.Tensor, spec: str | None, g: torch.Generator,
                 prior: torch.Tensor | None = None, anchor: torch.Tensor | None = None,
                 shortest: float = 0.0) -> torch.Tensor:
        """The next targets: EMS of the masks, or the masks themselves for ``no_ems``; with a prior and
        ``prior_gate``, what the prior confidently contradicts is left out (skeleton EMS: foreground the prior
        does not support is dropped before the skeleton; area targets: such pixels become 255, ignored); with an
        ``anchor`` density (:meth:`_anchor`), background where it is above ``1 - anchor`` is left out too; with
        skeleton EMS, skeleton pieces of fewer than ``shortest`` pixels (:meth:`_shortest_skeleton`) are dropped."""
        gate = self.prior_gate if prior is not None else 0.0
        q = None if gate == 0 else prior[:, 0]
        skeletal = _skeletal(spec)
        if q is not None and skeletal:
            masks = masks * ((q >= gate) | torch.isnan(q))  # an unknown pixel is not contradicted
        if skeletal and shortest > 0:
            masks = _long_skeletons(masks, shortest)  # the spec's skeleton of a skeleton is the skeleton itself
        targets = masks if spec is None else apply_spec(masks, spec, generator=g, num_classes=2)
        if q is not None and not skeletal:
            contested = ((targets == 1) & (q < gate)) | ((targets == 0) & (q > 1 - gate))
            targets = targets.masked_fill(contested, 255)
        if anchor is not None and not skeletal:
            targets = targets.masked_fill((targets == 0) & (anchor > 1 - self.anchor), 255)
        return targets

    def _train_round(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: torch.optim.lr_scheduler.LRScheduler | None, mixed: MixedPrecision,
                     images: torch.Tensor, targets: torch.Tensor, loss_name: str, g: torch.Generator) -> float:
        """``steps`` Adam steps on random crops of random images; the mean loss."""
        n, _, h, w = images.shape
        side = self.crop
        if self._tiled(images):
            side = self.tile if side is None else min(side, self.tile)
        crop = (h, w) if side is None else (min(side, h), min(side, w))
        model.train()
        losses = []
        for _ in range(self.steps):
            pick = torch.randperm(n, generator=g)[: self.batch_size].to(images.device)
            x, y = _crop_flip(images, targets, pick, crop, g)
            x = x.contiguous(memory_format=torch.channels_last)
            if self.jitter > 0:
                x = _jitter(x, self.jitter, g)
            with mixed.autocast():
                logits = model(x)
            logits = logits.float()
            probs = torch.sigmoid(logits)
            if loss_name == "bce":
                loss = bce_loss(logits, y)
            else:
                loss = self.dmi_weight * _signed_dmi_loss(probs, y) + self.iou_weight * soft_iou_loss(probs, y)
            optimizer.zero_grad(set_to_none=True)
            mixed.backward(loss, optimizer)
            mixed.step(optimizer)
            if schedule is not None:
                schedule.step()
            losses.append(loss.detach())  # read once a round: a float() per step would sync a GPU every step
        return float(torch.stack(losses).double().mean())

    def _predict(self, images: torch.Tensor) -> torch.Tensor:
        # an image that fits in one tile is predicted whole: the same batches, and so the same bits, as untiled
        return predict(self.model, images, batch_size=self.batch_size,
                       tile=self.tile if self._tiled(images) else None).clone()

    def _tiled(self, images: torch.Tensor) -> bool:
        """Whether ``images`` exceed one tile, so that training crops and prediction work on windows."""
        return self.tile is not None and max(images.shape[-2:]) > self.tile

    def _select(self, probs: torch.Tensor, prior: torch.Tensor | None, constant: torch.Tensor) -> Selection:
        # a network trained on one side's targets scores that side high; a model saved before sides were chosen
        # (side None) keeps the minority rule it was trained with
        sel = select_candidate(probs, self.thresholds, prior=prior, prior_weight=self.prior_weight,
                               bandwidth=self.bandwidth, rule=self.selection, minority=self.side is None)
        keep = ~constant
        return sel._replace(masks=sel.masks * keep.view(-1, 1, 1), inverted=sel.inverted & keep)

    def _log(self, r: int, sel: Selection, probs: torch.Tensor, labels: torch.Tensor | None,
             loss: float | None, start: float) -> dict[str, Any]:
        """One round's log entry; with ``labels``, Dice of the pseudo-labels and of the best threshold."""
        entry: dict[str, Any] = {
            "round": r,
            "loss": loss,
            "foreground": float(sel.masks.float().mean()),
            "threshold": float(sel.thresholds.median()),
            "inverted": int(sel.inverted.sum()),
            "seconds": round(time.perf_counter() - start, 3),
        }
        if labels is not None:
            entry["dice"] = _mean_dice(sel.masks, labels)
            entry["best_dice"] = _best_candidate_dice(probs, sel, self.thresholds, labels)
        return entry

    def _result(self, probs: torch.Tensor, sel: Selection, info: dict[str, Any], start: float) -> Segmentation:
        scores = torch.where(sel.inverted.view(-1, 1, 1, 1), 1 - probs, probs)
        info.update(thresholds=sel.thresholds.tolist(), inverted=sel.inverted.tolist(),
                    threshold=float(sel.thresholds.median()), seconds=time.perf_counter() - start)
        return Segmentation(sel.masks, scores, info)

    # ------------------------------------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> Path:
        """Write the trained network and the settings to a torch file (``torch.load(weights_only=True)`` reads it).

        Raises:
            ParameterError: nothing to save yet (call :meth:`segment` first).
        """
        if self.model is None:
            raise ParameterError("`save` needs a trained network: save the `trained` of a segment() result, or "
                                 "an instance from IGTT.load")
        path = Path(path)
        blob = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "mstool_version": __version__,
            "settings": self.settings(),
            "in_channels": int(self.in_channels),
            "ems": self.ems_chosen,
            "foreground": self.side,
            "loss": self._loss_for(self.ems_chosen),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
        }
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> IGTT:
        """An instance holding a saved network; its :meth:`segment` predicts and selects without training.

        Raises:
            FileMissingError: no such file.
            FileReadError: the file is not an iGTT model written by :meth:`save`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileMissingError(f"{path}: iGTT model file does not exist")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds (pickle, zip, runtime) for a damaged file
            raise FileReadError(f"{path}: cannot be read as an iGTT model ({type(err).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise FileReadError(f"{path}: not an iGTT model written by mstool (format "
                                f"{blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r})")
        method = cls(**blob["settings"])
        model = build_model("unet", in_channels=int(blob["in_channels"]), num_classes=1,
                            options=method.model_options)
        model.load_state_dict(blob["state_dict"])
        method.model = _placed(model, resolve_device(device)).eval()
        method.in_channels = int(blob["in_channels"])
        method.ems_chosen = blob.get("ems")
        method.side = blob.get("foreground")
        method.pretrained = True
        return method


_DEFAULTS = {**(IGTT.__init__.__kwdefaults__ or {}), "model_options": {"base": 16, "depth": 3}}


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------


def _crop_windows(images: torch.Tensor, targets: torch.Tensor, pick: torch.Tensor, crop: tuple[int, int],
                  g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, h, w)`` windows of ``images[pick]`` and ``(B, h, w)`` of ``targets[pick]`` at random offsets, one
    gather (nothing of size ``H x W`` is copied)."""
    _, _, height, width = images.shape
    b, (ch, cw) = pick.shape[0], crop
    oy = torch.randint(0, height - ch + 1, (b,), generator=g).to(images.device)
    ox = torch.randint(0, width - cw + 1, (b,), generator=g).to(images.device)
    rows = (oy[:, None] + torch.arange(ch, device=images.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(cw, device=images.device))[:, None, :]
    item = pick[:, None, None]
    # the advanced indices around the channel slice come first: (B, h, w, C)
    return images[item, :, rows, cols].permute(0, 3, 1, 2).contiguous(), targets[item, rows, cols]


def _long_skeletons(masks: torch.Tensor, shortest: float) -> torch.Tensor:
    """``(N, H, W)`` int64 skeletons of ``masks`` without their 8-connected pieces of fewer than ``shortest``
    pixels."""
    skeletons = skeletonize(masks.bool()).cpu().numpy()
    within_image = np.zeros((3, 3, 3), dtype=bool)
    within_image[1] = True  # 8-connected in each image, never across the batch: one labelling for all
    pieces, _ = ndimage.label(skeletons, structure=within_image)
    long_enough = np.bincount(pieces.ravel()) >= shortest
    long_enough[0] = False  # the background
    return torch.from_numpy(long_enough[pieces]).to(masks.device).long()


def _skeletal(spec: str | None) -> bool:
    """Whether an EMS spec makes skeleton targets (one-pixel lines), not area targets."""
    return spec is not None and "skeleton" in spec


def _placed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network on ``device`` in channels-last memory format: 15-18% less time a training step on the CPU (one
    and two threads, U-Net base 16, 64 x 64 crops), and a loaded network predicts bit for bit as the trained one."""
    return model.to(device, memory_format=torch.channels_last)


def _crop_flip(images: torch.Tensor, targets: torch.Tensor, pick: torch.Tensor, crop: tuple[int, int],
               g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``crop`` windows of ``images[pick]`` and ``targets[pick]``, each flipped left-right and up-down with
    probability 0.5: ``(B, C, h, w)`` and ``(B, h, w)``.

    One gather and two selects, all random draws from ``g``: a kornia augmentation pipeline cost 3 to 9 ms a step
    here, up to a fifth of a small step's time on one CPU thread.
    """
    x, y = _crop_windows(images, targets, pick, crop, g)
    flips = (torch.rand(2, pick.shape[0], generator=g) < 0.5).to(images.device)
    for dim, flip in zip((-1, -2), flips, strict=True):
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)
        y = torch.where(flip.view(-1, 1, 1), y.flip(dim), y)
    return x, y


def _jitter(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """Random contrast and brightness per crop: ``x * a + b``, ``a`` uniform in ``1 +- amount``, ``b`` normal with
    standard deviation ``0.75 amount`` (drawn on the CPU from ``g``)."""
    b = x.shape[0]
    gain = 1 + amount * (2 * torch.rand(b, 1, 1, 1, generator=g) - 1)
    shift = 0.75 * amount * torch.randn(b, 1, 1, 1, generator=g)
    return x * gain.to(x) + shift.to(x)


def _signed_dmi_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary L_DMI with the determinant's sign kept: ``-log(max(cov(p, s), 0) + 1e-6)`` per image, averaged.

    For a positive determinant this is :func:`mstool.losses.dmi_loss` (``det(P S^T / M) = cov(p, s)``). Its
    ``|det|`` is blind to polarity: from a random start half the networks would learn the inverted map, and
    ``-log |cov|`` then pushes deeper while soft IoU pushes back. Clamped at 0, DMI is silent until soft IoU
    has found the targets' polarity.
    """
    valid = (target != 255).to(probs.dtype)
    s = (target == 1).to(probs.dtype)
    p = probs[:, 0] * valid
    count = valid.flatten(1).sum(1)
    m = count.clamp_min(1)
    cov = (p * s).flatten(1).sum(1) / m - p.flatten(1).sum(1) / m * s.flatten(1).sum(1) / m
    per_image = -torch.log(cov.clamp_min(0) + _DMI_EPS)
    has = (count > 0).to(probs.dtype)
    return (per_image * has).sum() / has.sum().clamp_min(1)


def _constant_images(images: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: images whose every channel is constant (no structure to segment)."""
    if images.shape[0] == 0 or images.shape[-1] * images.shape[-2] == 0:
        return torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
    flat = images.flatten(2)
    return (flat.amax(2) == flat.amin(2)).all(1)


def _mean_dice(masks: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-image Dice of binary masks against labels (255 ignored; 0/0 images left out)."""
    valid = labels != 255
    pred, true = (masks > 0) & valid, (labels == 1) & valid
    inter = (pred & true).flatten(1).sum(1).double()
    size = pred.flatten(1).sum(1).double() + true.flatten(1).sum(1).double()
    dice = 2 * inter / size
    return float(torch.nanmean(torch.where(size > 0, dice, torch.full_like(dice, math.nan))))


def _best_candidate_dice(probs: torch.Tensor, sel: Selection, num: int, labels: torch.Tensor) -> float:
    """Mean per-image Dice of the best candidate in hindsight (polarity as selected): the map's potential."""
    flat = probs.flatten(1)
    valid = (labels != 255).flatten(1).double()
    true = (labels == 1).flatten(1).double()
    lo, hi = _range(flat)
    (pred, _), (tp, _) = _candidate_sums(flat, lo, hi, num, valid, true)
    inv = sel.inverted.view(-1, 1)
    pred = torch.where(inv, valid.sum(1, keepdim=True) - pred, pred)
    tp = torch.where(inv, true.sum(1, keepdim=True) - tp, tp)
    size = pred + true.sum(1, keepdim=True)
    dice = torch.where(size > 0, 2 * tp / size.clamp_min(1), torch.full_like(size, math.nan))
    return float(torch.nanmean(dice.nan_to_num(-1).amax(1).where(~dice.isnan().all(1), math.nan)))
