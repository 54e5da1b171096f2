"""iGTT: candidate selection (batched vs a per-threshold loop), polarity, bootstrap, EMS choice, prior, save/load."""

from __future__ import annotations

import contextlib
import math
import warnings

import pytest
import torch

from mstool.data import synthesize
from mstool.device import _cpu_bf16
from mstool.errors import (
    DataError,
    DeviceError,
    FileMissingError,
    FileReadError,
    MstoolWarning,
    ParameterError,
    ShapeError,
    SpecError,
)
from mstool.labels import skeletonize
from mstool.losses import dmi_loss
from mstool.metastructure import EMS_DEFAULT, density_similarity, foreground_density
from mstool.unsupervised._base import METHODS
from mstool.unsupervised._classical import otsu_object_width
from mstool.unsupervised._igtt import (
    IGTT,
    _mean_dice,
    candidate_thresholds,
    choose_ems,
    fix_polarity,
    object_width,
    otsu_masks,
    sample_from_prior,
    select_candidate,
)

TINY = {"rounds": 2, "steps": 2, "model_options": {"base": 4, "depth": 2}, "crop": 24, "batch_size": 2}


def _maps(n=3, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


def _blobs(n=2, size=32, thin=False):
    """Bright objects on a dark noisy background, z-scored: thin lines or thick squares."""
    g = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(n, 1, size, size, generator=g)
    lab = torch.zeros(n, size, size, dtype=torch.long)
    if thin:
        lab[:, 6::10, 2:-2] = 1
    else:
        lab[:, 4:14, 4:14] = 1
        lab[:, 18:28, 16:28] = 1
    x = x + lab[:, None].float()
    return (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True), lab


def _loop_reference(probs, num, prior=None, weight=1.0, rule="dmi"):
    """One threshold and one image at a time, with the library's dmi_loss and density similarity."""
    thresholds = candidate_thresholds(probs, num)
    index = []
    for i in range(probs.shape[0]):
        scores = []
        for k in range(num):
            s = (probs[i:i + 1, 0] >= thresholds[i, k]).long()
            score = float(dmi_loss(probs[i:i + 1], s))
            frac = float(s.float().mean())
            if rule == "ndmi":
                score += 0.5 * math.log(frac * (1 - frac))
            if prior is not None:
                dens = foreground_density(s, bandwidth=5)
                r = float(density_similarity(dens, prior[i:i + 1])[0][0, 0])
                r = 0.0 if math.isnan(r) else r
                score -= weight * (-r if frac > 0.5 else r)
            scores.append(score)
        index.append(min(range(num), key=lambda k: (scores[k], k)))
    return torch.tensor(index), thresholds


# ------------------------------------------------------------------------------------------ candidates
def test_candidate_thresholds_evenly_inside_the_range():
    t = candidate_thresholds(torch.tensor([[[[2.0, 4.0]]], [[[1.0, 1.0]]]]), 3)
    assert t[0].tolist() == [2.5, 3.0, 3.5]
    assert t[1].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("rule", ["dmi", "ndmi"])
def test_select_matches_per_threshold_loop(rule):
    probs = _maps(4, 10, seed=3)
    probs[1] = probs[1] ** 3  # skewed map
    sel = select_candidate(probs, 9, rule=rule)
    index, thresholds = _loop_reference(probs, 9, rule=rule)
    assert sel.index.tolist() == index.tolist()
    expected = probs[:, 0] >= thresholds.gather(1, index[:, None])[:, :, None]
    expected = torch.where(sel.inverted.view(-1, 1, 1), ~expected, expected)
    assert torch.equal(sel.masks, expected.long())
    # the batched DMI equals the library loss of every candidate
    s = (probs[2:3, 0] >= thresholds[2, 4]).long()
    assert sel.dmi[2, 4].item() == pytest.approx(dmi_loss(probs[2:3], s).item(), abs=1e-5)


def test_select_with_prior_matches_loop():
    probs = _maps(2, 12, seed=5)
    prior = _maps(2, 12, seed=6)
    sel = select_candidate(probs, 6, prior=prior, prior_weight=2.0)
    index, _ = _loop_reference(probs, 6, prior=prior, weight=2.0)
    assert sel.index.tolist() == index.tolist()
    assert sel.consistency.shape == (2, 6)


def test_select_does_not_depend_on_batch_split():
    probs = _maps(4, 9, seed=7)
    whole = select_candidate(probs, 5)
    parts = [select_candidate(probs[i:i + 2], 5) for i in (0, 2)]
    assert torch.equal(whole.masks, torch.cat([p.masks for p in parts]))
    assert torch.equal(whole.index, torch.cat([p.index for p in parts]))


def test_prior_weight_changes_the_choice():
    # a map with two plateaus: DMI prefers splitting off the big bright block; the prior asks for the small core
    p = torch.zeros(1, 1, 48, 48)
    p[..., 8:40, 8:40] = 0.5
    p[..., 20:28, 20:28] = 1.0
    prior = torch.zeros(1, 1, 48, 48)
    prior[..., 20:28, 20:28] = 1.0
    plain = select_candidate(p, 5, prior=prior, prior_weight=0.0)
    guided = select_candidate(p, 5, prior=prior, prior_weight=5.0)
    assert int(plain.masks.sum()) == 32 * 32
    assert int(guided.masks.sum()) == 8 * 8
    assert guided.consistency[0, guided.index[0]] > guided.consistency[0, plain.index[0]]


def test_polarity_fix_inverts_majority_foreground():
    masks, inverted = fix_polarity(torch.tensor([[[1, 1, 1, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 1]]]))
    assert masks.tolist() == [[[0, 0, 0, 1]], [[1, 1, 0, 0]], [[0, 0, 0, 1]]]
    assert inverted.tolist() == [True, False, False]
    # a dark object on a bright background comes out as foreground 1
    p = torch.ones(1, 1, 8, 8)
    p[..., 2:4, 2:4] = 0.0
    sel = select_candidate(p, 3)
    assert sel.inverted.tolist() == [True]
    assert sel.masks[0, 2:4, 2:4].sum() == 4 and sel.masks.sum() == 4


def test_select_constant_map_and_empty_batch():
    sel = select_candidate(torch.full((2, 1, 5, 5), 0.3), 4)
    assert sel.masks.sum() == 0 and sel.inverted.tolist() == [False, False]
    empty = select_candidate(torch.zeros(0, 1, 5, 5), 4)
    assert empty.masks.shape == (0, 5, 5) and empty.index.shape == (0,)


def test_select_errors():
    with pytest.raises(ShapeError, match="probs"):
        select_candidate(torch.rand(2, 5, 5), 3)
    with pytest.raises(ParameterError, match="`num`"):
        select_candidate(_maps(), 0)
    with pytest.raises(ParameterError, match="rule"):
        select_candidate(_maps(), 3, rule="otsu")
    with pytest.raises(ShapeError, match="prior"):
        select_candidate(_maps(3, 12), 3, prior=torch.rand(3, 1, 8, 8))
    with pytest.raises(DataError, match="non-negative"):
        select_candidate(_maps(3, 12), 3, prior=-torch.rand(3, 1, 12, 12))
    with pytest.raises(ParameterError, match="prior_weight"):
        select_candidate(_maps(), 3, prior_weight=-1)


# -------------------------------------------------------------------------------------- bootstrap, EMS
def test_otsu_masks_two_levels_and_constant():
    x = torch.zeros(2, 1, 8, 8)
    x[0, :, 1:3, 1:4] = 5.0
    masks = otsu_masks(x, smooth=0)
    assert masks[0].sum() == 6 and masks[0, 1:3, 1:4].all()
    assert masks[1].sum() == 0  # constant image


def test_otsu_masks_dark_side_is_the_bright_side_of_the_negated_image():
    x, _ = _blobs(2, 32)
    dark = otsu_masks(x, foreground="dark")
    assert torch.equal(dark, otsu_masks(-x, foreground="bright"))
    assert 0 < int(dark.sum()) < dark.numel()
    assert torch.equal(otsu_masks(-x, foreground="dark"), otsu_masks(x, foreground="bright"))
    # iGTT's width measure and the local threshold's window read the same masks
    assert otsu_object_width(x, "dark") == object_width(otsu_masks(x, foreground="dark"))


def test_otsu_masks_agree_with_skimage():
    filters = pytest.importorskip("skimage.filters")
    x, _ = _blobs(1, 32)
    ours = otsu_masks(x, smooth=0)[0].bool()
    ref = torch.from_numpy(x[0, 0].numpy() > filters.threshold_otsu(x[0, 0].numpy()))
    assert (ours ^ ref).float().mean() < 0.01


def test_sample_from_prior_counts_follow_the_density():
    q = torch.ones(2, 1, 60, 60)
    q[..., 30:] = 0.25
    lab = sample_from_prior(q, 0.8, generator=torch.Generator().manual_seed(0))
    left, right = lab[..., :30].sum().item(), lab[..., 30:].sum().item()
    assert 3.4 < left / right < 4.6
    assert left / (2 * 60 * 30) == pytest.approx(0.8, abs=0.03)
    again = sample_from_prior(q, 0.8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lab, again)
    within = torch.zeros(2, 60, 60, dtype=torch.long)
    within[:, :10] = 1
    assert sample_from_prior(q, 1.0, within=within, generator=torch.Generator().manual_seed(1))[:, 10:].sum() == 0
    assert sample_from_prior(torch.zeros(1, 1, 8, 8), 1.0).sum() == 0


def test_object_width_and_ems_choice():
    thin = torch.zeros(1, 20, 20, dtype=torch.long)
    thin[:, 5:7, 2:18] = 1
    thick = torch.zeros(1, 20, 20, dtype=torch.long)
    thick[:, 3:17, 3:17] = 1
    assert object_width(thin) < 3 < 6 < object_width(thick)
    assert object_width(torch.zeros(1, 5, 5, dtype=torch.long)) == math.inf
    assert choose_ems(object_width(thin)) == "skeleton+shift:1+sample:0.1"
    assert choose_ems(object_width(thick)) == "clean"
    assert choose_ems(object_width(thick), thick="sample:0.5") == "sample:0.5"
    assert choose_ems(2.0, keep=0.2) == "skeleton+shift:1+sample:0.2"


# ------------------------------------------------------------------------------------------------ IGTT
def test_registered():
    assert METHODS.get("igtt") is IGTT


@pytest.mark.parametrize(("thin", "expected", "loss"), [(True, "skeleton+shift:1+sample:0.1", "dmi+iou"),
                                                         (False, "clean", "bce")])
def test_auto_ems_recorded(thin, expected, loss):
    x, _ = _blobs(2, 32, thin=thin)
    out = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    assert out.info["ems"] == expected and out.info["loss"] == loss
    assert out.info["object_width"] > 0 and out.info["bootstrap"] == "otsu"
    assert out.masks.shape == (2, 32, 32) and out.masks.dtype == torch.long
    assert out.scores.shape == (2, 1, 32, 32) and float(out.scores.min()) >= 0 and float(out.scores.max()) <= 1
    assert len(out.info["rounds"]) == 2


@pytest.mark.parametrize(("kwargs", "expected", "loss"), [
    ({"no_ems": True}, "none", "bce"), ({"ems": "paper"}, "skeleton+shift:1+sample:0.1", "dmi+iou"),
    ({"ems": "sample:0.3", "loss": "dmi+iou"}, "sample:0.3", "dmi+iou"), ({"bootstrap": "blank"}, None, None),
])
def test_ems_settings_recorded(kwargs, expected, loss):
    x, _ = _blobs(2, 32)
    out = IGTT(**TINY, **kwargs).segment(x, generator=torch.Generator().manual_seed(0))
    assert expected is None or out.info["ems"] == expected
    assert loss is None or out.info["loss"] == loss
    assert out.info["bootstrap"] == kwargs.get("bootstrap", "otsu")


def _spy_first_targets(monkeypatch) -> list[torch.Tensor]:
    """The first round's targets of the next iGTT run, appended to the returned list."""
    first_targets = []
    train_round = IGTT._train_round

    def spy(self, model, optimizer, schedule, mixed, images, targets, loss_name, g):
        if not first_targets:
            first_targets.append(targets.clone())
        return train_round(self, model, optimizer, schedule, mixed, images, targets, loss_name, g)

    monkeypatch.setattr(IGTT, "_train_round", spy)
    return first_targets


def test_minimum_error_bootstrap_trains_on_the_minimum_error_masks(monkeypatch):
    """``bootstrap="minerror"``: the first targets (thick objects: the masks themselves) are the minimum-error masks
    of the raw image, which differ from Otsu's on these blobs with a dim rim, and the anchor reads the same mask."""
    from mstool.unsupervised._classical import minimum_error

    first_targets = _spy_first_targets(monkeypatch)
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    r = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2).sqrt()
    x = (torch.clamp(10 - r, 0, 1) * 3 + torch.clamp(10 - r, 0, 4) * 0.5 + 0.2 * torch.randn(2, 1, 32, 32, generator=g))
    x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True)
    out = IGTT(**TINY, bootstrap="minerror").segment(x, generator=torch.Generator().manual_seed(0))
    expected = minimum_error(x, foreground="bright").masks
    assert out.info["bootstrap"] == "minerror" and out.info["ems"] == "clean" and out.info["anchor"] == 0.35
    assert torch.equal(first_targets[0], expected)
    assert not torch.equal(expected, IGTT(**TINY)._bootstrap(x, None, torch.zeros(2, dtype=torch.bool), "clean",
                                                               torch.Generator().manual_seed(0), mode="otsu")[2])


def test_local_bootstrap_trains_on_the_local_threshold_masks(monkeypatch):
    """``bootstrap="local"``: the first targets are the local threshold's masks, which find the blobs of the dim
    half of an unevenly lit image where Otsu's global threshold takes the bright half's background."""
    from mstool.unsupervised._classical import local_threshold

    first_targets = _spy_first_targets(monkeypatch)
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    blobs = ((torch.sin(yy / 2.5) * torch.sin(xx / 2.5)) > 0.6).float()
    x = blobs + 2.0 * (xx > 24) + 0.1 * torch.randn(2, 1, 48, 48, generator=g)
    out = IGTT(**TINY, bootstrap="local", ems="clean").segment(x, generator=torch.Generator().manual_seed(0))
    expected = local_threshold(x, foreground="bright").masks
    assert out.info["bootstrap"] == "local" and torch.equal(first_targets[0], expected)
    otsu_first = IGTT(**TINY)._bootstrap(x, None, torch.zeros(2, dtype=torch.bool), "clean",
                                          torch.Generator().manual_seed(0), mode="otsu")[2]
    truth = blobs.bool().expand(2, 48, 48)
    assert _mean_dice(expected, truth) > _mean_dice(otsu_first, truth) + 0.2


def _lines_and_dots(n=2, size=48):
    """Thin bright lines (a network) with small bright dots beside them, z-scored; and where the dots are."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, size, size)
    x[:, :, 10:13, 4:44] = 3.0
    x[:, :, 4:44, 30:33] = 3.0
    dots = torch.zeros(n, size, size, dtype=torch.bool)
    for y0, x0 in ((30, 8), (38, 16), (22, 40)):
        dots[:, y0:y0 + 3, x0:x0 + 3] = True
    x[dots[:, None]] = 3.0
    x = x + 0.2 * torch.randn(x.shape, generator=g)
    return (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True), dots


def test_long_skeletons_drop_the_pieces_of_blobs():
    from mstool.unsupervised._igtt import _long_skeletons

    masks = torch.zeros(1, 24, 24, dtype=torch.long)
    masks[:, 4:7, 2:22] = 1  # a tubule: a skeleton of about 18 pixels
    masks[:, 14:18, 14:18] = 1  # a blob: a skeleton of a pixel or two
    kept = _long_skeletons(masks, 6)
    assert int(kept[:, 4:7].sum()) >= 15 and int(kept[:, 10:].sum()) == 0
    assert torch.equal(_long_skeletons(masks, 1), skeletonize(masks.bool()).long())


def test_min_skeleton_keeps_small_blobs_out_of_skeleton_targets(monkeypatch):
    """Skeleton EMS at the default ``min_skeleton`` (1.5): no first target lies on a dot; with 0 (the paper's EMS),
    some do; area targets are untouched."""
    first_targets = {}
    train_round = IGTT._train_round

    def spy(self, model, optimizer, schedule, mixed, images, targets, loss_name, g):
        first_targets.setdefault(self.min_skeleton, targets.clone())
        return train_round(self, model, optimizer, schedule, mixed, images, targets, loss_name, g)

    monkeypatch.setattr(IGTT, "_train_round", spy)
    x, dots = _lines_and_dots()
    skeleton = {"ems": "skeleton", "loss": "dmi+iou"}
    runs = {0.0: IGTT(**TINY, **skeleton, min_skeleton=0).segment(x, generator=torch.Generator().manual_seed(0)),
            1.5: IGTT(**TINY, **skeleton).segment(x, generator=torch.Generator().manual_seed(0))}
    assert int(first_targets[0.0][dots].sum()) > 0 and int(first_targets[1.5][dots].sum()) == 0
    assert int(first_targets[1.5].sum()) > 0.8 * int(first_targets[0.0][~dots].sum())  # the lines stay
    assert runs[1.5].info["shortest_skeleton"] == pytest.approx(1.5 * otsu_object_width(x, "bright"))
    assert runs[0.0].info["shortest_skeleton"] is None
    blobs, _ = _blobs(2, 32)
    area = [IGTT(**TINY, min_skeleton=m).segment(blobs, generator=torch.Generator().manual_seed(0)) for m in (0, 1.5)]
    assert area[0].info["ems"] == "clean" and torch.equal(area[0].scores, area[1].scores)
    with pytest.raises(ParameterError, match="`min_skeleton` must be"):
        IGTT(min_skeleton=-1)


def test_signed_dmi_is_dmi_for_the_right_polarity():
    from mstool.unsupervised._igtt import _signed_dmi_loss

    y = torch.tensor([[[0, 1, 1, 0], [0, 0, 1, 255]]])
    p = torch.tensor([[[[0.2, 0.7, 0.9, 0.1], [0.3, 0.2, 0.6, 0.5]]]], requires_grad=True)
    assert _signed_dmi_loss(p, y).item() == pytest.approx(dmi_loss(p, y).item(), abs=1e-5)
    inverted = (1 - p).detach().requires_grad_()
    loss = _signed_dmi_loss(inverted, y)
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(1e-6)) and float(inverted.grad.abs().sum()) == 0


def test_reproducible_and_labels_only_log():
    x, lab = _blobs(2, 32)
    events = []
    a = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(3))
    b = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(3), labels=lab, progress=events.append)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.scores, b.scores)
    assert "dice" not in a.info["rounds"][0]
    assert 0 <= b.info["rounds"][-1]["dice"] <= 1 and 0 <= b.info["rounds"][-1]["best_dice"] <= 1
    assert [e["round"] for e in events] == [1, 2] and events[0]["event"] == "round"


def test_a_subclass_trains_as_itself():
    calls = []

    class Logged(IGTT):  # a user's variant: its own first targets must be the ones trained on
        def _bootstrap(self, *args):
            calls.append("bootstrap")
            return super()._bootstrap(*args)

    x, _ = _blobs(1, 32)
    out = Logged(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    assert calls == ["bootstrap"] and type(out.trained) is Logged


def test_prior_bootstrap_and_selection():
    x, lab = _blobs(2, 32)
    prior = foreground_density(lab, bandwidth=2)
    for bootstrap in ("auto", "otsu+prior", "prior"):
        out = IGTT(**TINY, bootstrap=bootstrap).segment(x, prior=prior, generator=torch.Generator().manual_seed(0))
        assert out.info["bootstrap"] == ("otsu" if bootstrap == "auto" else bootstrap)
        assert out.masks.shape == (2, 32, 32)
    # the prior enters the selection: a heavy weight pulls the masks toward it
    plain = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    heavy = IGTT(**TINY, prior_weight=50.0).segment(x, prior=prior, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(plain.masks, heavy.masks)
    with pytest.raises(ParameterError, match="needs a `prior`"):
        IGTT(**TINY, bootstrap="prior").segment(x)


def test_a_prior_known_nowhere_is_no_prior_and_a_partial_one_runs_every_bootstrap():
    x, lab = _blobs(2, 32)
    plain = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    nowhere = IGTT(**TINY, prior_weight=50.0).segment(x, prior=torch.full((2, 1, 32, 32), float("nan")),
                                                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.masks, nowhere.masks)  # its consistency is 0 for every candidate
    partial = foreground_density(lab, bandwidth=2)
    partial[..., 16:, :] = float("nan")
    for options in ({"bootstrap": "prior"}, {"bootstrap": "otsu+prior"}, {"prior_gate": 0.35, "ems": "clean"},
                    {"prior_gate": 0.35}):
        out = IGTT(**TINY, **options).segment(x, prior=partial, generator=torch.Generator().manual_seed(0))
        assert out.masks.shape == (2, 32, 32) and bool(torch.isfinite(out.scores).all())


def test_scribbles_are_every_rounds_targets_where_labelled(monkeypatch):
    from mstool.unsupervised import _igtt

    x, lab = _blobs(2, 32)
    scribbles = torch.full_like(lab, 255)
    scribbles[:, :16, :16] = lab[:, :16, :16]
    scribbles[0, 20:, 20:] = 1  # against the image: the targets still take it
    seen = []
    train = _igtt.IGTT._train_round

    def spy(self, model, optimizer, schedule, mixed, images, targets, loss_name, g):
        seen.append(targets.clone())
        return train(self, model, optimizer, schedule, mixed, images, targets, loss_name, g)

    monkeypatch.setattr(_igtt.IGTT, "_train_round", spy)
    out = IGTT(**TINY).segment(x, scribbles=scribbles, generator=torch.Generator().manual_seed(0))
    assert len(seen) == TINY["rounds"]
    labelled = scribbles != 255
    for targets in seen:
        assert torch.equal(targets[labelled], scribbles[labelled])
    assert out.info["scribbled"] == labelled.flatten(1).sum(1).tolist()


def test_scribbles_make_auto_ems_take_area_targets_as_the_drawn_labels_are():
    from mstool.data import synthesize

    data = synthesize("er", 2, 48, generator=torch.Generator().manual_seed(0))
    x = (data.images - data.images.mean((2, 3), keepdim=True)) / data.images.std((2, 3), keepdim=True)
    scribbles = torch.full_like(data.labels, 255)
    scribbles[:, :24, :24] = data.labels[:, :24, :24]
    plain = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    assert "skeleton" in plain.info["ems"] and plain.info["loss"] == "dmi+iou"  # thin tubules: skeleton EMS
    drawn = IGTT(**TINY).segment(x, scribbles=scribbles, generator=torch.Generator().manual_seed(0))
    assert drawn.info["ems"] == "clean" and drawn.info["loss"] == "bce"
    # a spec the user names is kept, and scribbles drawn nowhere are no scribbles
    named = IGTT(**TINY, ems="paper").segment(x, scribbles=scribbles, generator=torch.Generator().manual_seed(0))
    assert "skeleton" in named.info["ems"]
    nowhere = IGTT(**TINY).segment(x, scribbles=torch.full_like(scribbles, 255),
                                   generator=torch.Generator().manual_seed(0))
    assert nowhere.info["ems"] == plain.info["ems"] and torch.equal(nowhere.masks, plain.masks)


def test_scribbles_labelled_nowhere_change_nothing_and_bad_ones_are_refused(tmp_path):
    x, lab = _blobs(2, 32)
    plain = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    empty = IGTT(**TINY).segment(x, scribbles=torch.full_like(lab, 255), generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.masks, empty.masks) and torch.equal(plain.scores, empty.scores)
    assert plain.info["scribbled"] is None and empty.info["scribbled"] == [0, 0]
    with pytest.raises(ParameterError, match="scribbles"):
        IGTT(**TINY).segment(x, scribbles=torch.full_like(lab, 2))
    with pytest.raises(ShapeError, match=r"`scribbles` must be \(N, H, W\) = \(2, 32, 32\)"):
        IGTT(**TINY).segment(x, scribbles=lab[:1])
    loaded = IGTT.load(plain.trained.save(tmp_path / "igtt.pt"))
    with pytest.raises(ParameterError, match="loaded one that only predicts"):
        loaded.segment(x, scribbles=lab)


def test_save_load_round_trip(tmp_path):
    x, _ = _blobs(2, 32)
    method = IGTT(**TINY, thresholds=7)
    out = method.segment(x, generator=torch.Generator().manual_seed(0))
    assert not method.trained and out.trained.trained  # the network is returned, not kept on the method
    path = out.trained.save(tmp_path / "igtt.pt")
    blob = torch.load(path, weights_only=True)
    assert blob["settings"]["thresholds"] == 7 and blob["in_channels"] == 1
    loaded = IGTT.load(path)
    again = loaded.segment(x)
    assert torch.equal(again.scores, out.scores) and torch.equal(again.masks, out.masks)
    assert loaded.settings() == method.settings() and loaded.pretrained
    with pytest.raises(ShapeError, match="channel"):
        loaded.segment(torch.zeros(1, 3, 32, 32))


def test_save_load_errors(tmp_path):
    with pytest.raises(ParameterError, match=r"save the `trained` of a segment\(\) result"):
        IGTT().save(tmp_path / "a.pt")
    with pytest.raises(FileMissingError, match="does not exist"):
        IGTT.load(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(FileReadError, match="not an iGTT model"):
        IGTT.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(FileReadError, match="cannot be read"):
        IGTT.load(tmp_path / "junk.pt")


def test_constant_image_gets_empty_mask_and_warning():
    x, _ = _blobs(2, 32)
    x[1] = 0.0
    with pytest.warns(MstoolWarning, match="constant"):
        out = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    assert out.masks[1].sum() == 0 and out.masks[0].sum() > 0
    assert out.info["constant_images"] == [1]
    with pytest.warns(MstoolWarning, match="constant"):
        out = IGTT(**TINY).segment(torch.zeros(2, 1, 16, 16))
    assert out.masks.sum() == 0 and out.info["rounds"] == []


def test_empty_batch():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = IGTT(**TINY).segment(torch.zeros(0, 1, 16, 16))
    assert out.masks.shape == (0, 16, 16) and out.scores.shape == (0, 1, 16, 16)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rounds": 0}, "`rounds`"), ({"steps": 1.5}, "`steps`"), ({"thresholds": True}, "`thresholds`"),
    ({"keep": 0}, "`keep`"), ({"bootstrap": "magic"}, "`bootstrap`"), ({"selection": "best"}, "`selection`"),
    ({"loss": "ce"}, "`loss`"), ({"lr": 0}, "`lr`"), ({"prior_weight": -1}, "`prior_weight`"),
    ({"crop": 4}, "`crop`"), ({"ems": 3}, "`ems`"), ({"model_options": {"width": 3}}, "width"),
    ({"anchor": 0.6}, "`anchor`"), ({"anchor": -0.1}, "`anchor`"),
])
def test_setting_errors(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        IGTT(**kwargs)


def test_bad_ems_spec():
    with pytest.raises(SpecError, match=r"unknown label spec 'wobble' in 'skeleton\+wobble:3'; choose one of: clean"):
        IGTT(ems="skeleton+wobble:3")


def test_segment_input_errors():
    x, lab = _blobs(2, 32)
    method = IGTT(**TINY)
    with pytest.raises(ShapeError, match="images"):
        method.segment(x[:, 0])
    with pytest.raises(ShapeError, match="labels"):
        method.segment(x, labels=lab[:1])
    with pytest.raises(ShapeError, match="prior"):
        method.segment(x, prior=torch.ones(2, 1, 16, 16))


def test_runs_on_device(device):
    x, lab = _blobs(2, 32)
    out = IGTT(**TINY).segment(x.to(device), labels=lab.to(device), generator=torch.Generator().manual_seed(0))
    assert out.masks.device.type == device.type and out.scores.device.type == device.type
    sel = select_candidate(_maps(2, 8).to(device), 4, prior=_maps(2, 8, seed=1).to(device))
    assert sel.masks.device.type == device.type


# ------------------------------------------------------------------------------------- large images, tiles
def test_prior_consistency_is_the_library_density_correlation():
    from mstool.unsupervised._igtt import _prior_consistency

    probs, prior = _maps(2, 21, seed=11)[:, 0], _maps(2, 21, seed=12)
    prior[1] = 0.4  # a constant prior: correlation undefined, 0
    thresholds = candidate_thresholds(probs[:, None], 5)
    ours = _prior_consistency(probs, thresholds, prior, 3)
    for i in range(2):
        for k in range(5):
            dens = foreground_density((probs[i:i + 1] >= thresholds[i, k]).long(), bandwidth=3)
            r = float(density_similarity(dens, prior[i:i + 1])[0][0, 0])
            assert ours[i, k].item() == pytest.approx(0.0 if math.isnan(r) else r, abs=1e-6)
    assert bool((ours[1] == 0).all())


def test_prior_consistency_correlates_over_the_known_pixels_only():
    from mstool.unsupervised._igtt import _prior_consistency

    probs, prior = _maps(2, 21, seed=11)[:, 0], _maps(2, 21, seed=12)
    prior[:, :, 12:] = float("nan")  # known on the first 12 rows
    thresholds = candidate_thresholds(probs[:, None], 5)
    ours = _prior_consistency(probs, thresholds, prior, 3)
    for i in range(2):
        for k in range(5):
            dens = foreground_density((probs[i:i + 1] >= thresholds[i, k]).long(), bandwidth=3)[0, 0, :12]
            q = prior[i, 0, :12]
            r = torch.corrcoef(torch.stack([dens.flatten().double(), q.flatten().double()]))[0, 1]
            assert ours[i, k].item() == pytest.approx(0.0 if torch.isnan(r) else r.item(), abs=1e-5)
    # an unknown part holding anything else would change the numbers; NaN leaves it out
    filled = _prior_consistency(probs, thresholds, prior.nan_to_num(0.0), 3)
    assert not torch.allclose(filled, ours, atol=1e-3)
    everywhere_unknown = _prior_consistency(probs, thresholds, torch.full_like(prior, float("nan")), 3)
    assert bool((everywhere_unknown == 0).all())


def test_sample_from_prior_leaves_unknown_pixels_out():
    q = torch.ones(1, 1, 20, 20)
    q[..., 10:, :] = float("nan")
    lab = sample_from_prior(q, 1.0, generator=torch.Generator().manual_seed(0))
    assert bool((lab[0, 10:] == 255).all()) and bool((lab[0, :10] == 1).all())
    within = torch.zeros(1, 20, 20, dtype=torch.long)
    within[0, 5:15] = 1
    inside = sample_from_prior(q * 0, 1.0, within=within, generator=torch.Generator().manual_seed(0))
    assert torch.equal(inside[0, 10:], within[0, 10:]) and int(inside[0, :10].sum()) == 0


def test_selection_with_prior_chunked_equals_unchunked(monkeypatch):
    from mstool.unsupervised import _igtt

    probs, prior = _maps(2, 96, seed=13), _maps(2, 96, seed=14)
    probs[1] = probs[1] ** 4
    whole = select_candidate(probs, 7, prior=prior, prior_weight=3.0)
    monkeypatch.setattr(_igtt, "_CHUNK", 96 * 96)  # one (image, candidate) pair per chunk: 14 chunks
    chunked = select_candidate(probs, 7, prior=prior, prior_weight=3.0)
    assert torch.allclose(chunked.consistency, whole.consistency, rtol=0, atol=1e-6)
    assert torch.equal(chunked.index, whole.index) and torch.equal(chunked.masks, whole.masks)


def test_tiled_equals_untiled_when_the_image_fits_one_tile():
    x, _ = _blobs(2, 32)
    runs = [IGTT(**TINY, tile=tile).segment(x, generator=torch.Generator().manual_seed(2)) for tile in (None, 32, 512)]
    for other in runs[1:]:
        assert torch.equal(other.masks, runs[0].masks) and torch.equal(other.scores, runs[0].scores)


def test_tiled_image_trains_on_windows_and_predicts_in_tiles():
    from mstool.unsupervised._igtt import _crop_windows

    images = torch.arange(2 * 3 * 20 * 30, dtype=torch.float32).view(2, 3, 20, 30)
    targets = images[:, 0].long()
    pick = torch.tensor([1, 0, 1])
    x, y = _crop_windows(images, targets, pick, (8, 12), torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 8, 12) and y.shape == (3, 8, 12)
    for b in range(3):
        corner = int(x[b, 0, 0, 0]) - int(pick[b]) * 3 * 600
        oy, ox = divmod(corner, 30)
        assert torch.equal(x[b], images[pick[b], :, oy:oy + 8, ox:ox + 12])
        assert torch.equal(y[b], targets[pick[b], oy:oy + 8, ox:ox + 12])
    xb, _ = _blobs(2, 48)
    out = IGTT(**TINY, tile=16).segment(xb, generator=torch.Generator().manual_seed(0))
    assert out.masks.shape == (2, 48, 48) and bool(torch.isfinite(out.scores).all())


def test_training_crops_are_aligned_windows_flipped_both_ways():
    from mstool.unsupervised._igtt import _crop_flip

    images = torch.arange(2 * 20 * 30, dtype=torch.float32).view(2, 1, 20, 30)
    targets = images[:, 0].long()
    pick = torch.zeros(64, dtype=torch.long)
    x, y = _crop_flip(images, targets, pick, (8, 12), torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 8, 12) and y.shape == (64, 8, 12) and torch.equal(x[:, 0].long(), y)
    rows, cols = x[:, 0, 1, 0] - x[:, 0, 0, 0], x[:, 0, 0, 1] - x[:, 0, 0, 0]
    assert set(rows.tolist()) == {30.0, -30.0} and set(cols.tolist()) == {1.0, -1.0}  # each flip both ways
    again = _crop_flip(images, targets, pick, (8, 12), torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x) and torch.equal(again[1], y)
    whole, _ = _crop_flip(images, targets, torch.tensor([1]), (20, 30), torch.Generator().manual_seed(0))
    assert sorted(whole.flatten().tolist()) == sorted(images[1].flatten().tolist())


def test_rounds_log_how_much_of_the_mask_changed():
    x, _ = _blobs(2, 32)
    rounds = IGTT(**{**TINY, "rounds": 3}).segment(x, generator=torch.Generator().manual_seed(0)).info["rounds"]
    assert rounds[0]["changed"] is None and all(0 <= r["changed"] <= 1 for r in rounds[1:])


def test_a_1024_image_goes_through_in_tiles():
    x = 0.3 * torch.randn(1, 1, 1024, 1024, generator=torch.Generator().manual_seed(0))
    x[..., 200:500, 300:700] += 1.0
    method = IGTT(rounds=1, steps=1, tile=256, no_ems=True, crop=32, batch_size=1, thresholds=5,
                  model_options={"base": 2, "depth": 1})
    out = method.segment((x - x.mean()) / x.std(), generator=torch.Generator().manual_seed(0))
    assert out.masks.shape == (1, 1024, 1024) and out.scores.shape == (1, 1, 1024, 1024)
    assert 0 < int(out.masks.sum()) <= 1024 * 1024 // 2 and len(out.info["rounds"]) == 1


# ---------------------------------------------------------------------------------------------------- anchor
def test_anchor_leaves_out_background_targets_where_the_first_mask_is_confident_foreground():
    method = IGTT(anchor=0.35)
    first = torch.zeros(1, 9, 9, dtype=torch.long)
    first[:, 2:7, 2:7] = 1
    anchor = method._anchor(first, None)
    assert anchor.shape == (1, 9, 9) and float(anchor[0, 4, 4]) == 1.0 and float(anchor[0, 0, 0]) == 0.0
    masks = torch.zeros(1, 9, 9, dtype=torch.long)
    masks[:, 3:6, 3:6] = 1  # the selection shrank the object
    targets = method._extract(masks, None, torch.Generator().manual_seed(0), None, anchor)
    # the shrunk ring inside the first object is ignored (its 3 x 3 density is above 0.65), not taught as background
    assert int((targets == 255).sum()) == int(((anchor > 0.65) & (masks == 0)).sum()) > 0
    assert bool((targets[masks == 1] == 1).all()) and bool((targets[anchor == 0] == 0).all())
    assert method._anchor(first, "skeleton+shift:1+sample:0.1") is None and IGTT(anchor=0)._anchor(first, None) is None
    assert method._anchor(None, None) is None  # no Otsu bootstrap, no anchor


def test_precision_is_recorded_and_bf16_trains_in_bfloat16():
    x, truth = _blobs(2, 32)
    default = IGTT(**TINY).segment(x, generator=torch.Generator().manual_seed(0))
    fp32 = IGTT(**TINY, precision="fp32").segment(x, generator=torch.Generator().manual_seed(0))
    assert default.info["precision"] == fp32.info["precision"] == "fp32"  # auto on the CPU
    assert torch.equal(default.scores, fp32.scores)
    with pytest.warns(MstoolWarning) if not _cpu_bf16() else contextlib.nullcontext():
        bf16 = IGTT(**TINY, precision="bf16").segment(x, generator=torch.Generator().manual_seed(0))
    assert bf16.info["precision"] == "bf16" and bf16.trained.settings()["precision"] == "bf16"
    assert not torch.equal(bf16.scores, fp32.scores)  # the steps ran in bfloat16
    assert bf16.scores.dtype == torch.float32  # prediction stays float32
    with pytest.raises(DeviceError, match="'fp16' needs a CUDA device; got cpu"):
        IGTT(**TINY, precision="fp16").segment(x, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ParameterError, match="`precision` must be one of"):
        IGTT(precision="half")


def test_anchor_reaches_the_training_targets_from_round_two(monkeypatch):
    """Thick objects: rounds after the first train on targets with the anchor's ignored pixels; without it, none."""
    ignored: dict[float, list[int]] = {}
    train_round = IGTT._train_round

    def spy(self, model, optimizer, schedule, mixed, images, targets, loss_name, g):
        ignored.setdefault(self.anchor, []).append(int((targets == 255).sum()))
        return train_round(self, model, optimizer, schedule, mixed, images, targets, loss_name, g)

    monkeypatch.setattr(IGTT, "_train_round", spy)
    x, _ = _blobs(2, 32)
    for anchor in (0.35, 0.0):
        IGTT(**{**TINY, "rounds": 3}, anchor=anchor).segment(x, generator=torch.Generator().manual_seed(0))
    assert ignored[0.0] == [0, 0, 0]
    assert ignored[0.35][0] == 0 and all(n > 0 for n in ignored[0.35][1:])


def test_anchor_recorded_and_inert_where_it_does_not_apply():
    """Thick objects: the anchor is used and recorded; thin ones (skeleton EMS) and a blank bootstrap: none, and the
    run is bit for bit the run without it."""
    x, _ = _blobs(2, 32)
    out = IGTT(**TINY, anchor=0.35).segment(x, generator=torch.Generator().manual_seed(0))
    assert out.info["anchor"] == 0.35 and out.trained.settings()["anchor"] == 0.35
    assert IGTT(**TINY, anchor=0).segment(x, generator=torch.Generator().manual_seed(0)).info["anchor"] is None
    thin, _ = _blobs(2, 32, thin=True)
    for data, extra in ((thin, {}), (x, {"bootstrap": "blank"})):
        runs = [IGTT(**TINY, **extra, anchor=a).segment(data, generator=torch.Generator().manual_seed(0))
                for a in (0.0, 0.35)]
        assert runs[1].info["anchor"] is None and torch.equal(runs[0].scores, runs[1].scores)


def test_tile_setting_checked_and_saved():
    assert IGTT().tile == 512 and IGTT(tile=None).settings()["tile"] is None
    with pytest.raises(ParameterError, match="`tile`"):
        IGTT(tile=8)


# ------------------------------------------------------------------------------------------------ polarity
def test_dark_foreground_is_the_turned_over_bright_one_bit_for_bit():
    """iGTT on dark objects (foreground="dark") is iGTT on the negated image with bright ones: same masks and
    scores, so no side is favoured by the network's arithmetic."""
    x, lab = _blobs(2, 32, thin=True)
    dark = IGTT(**TINY, foreground="dark").segment(-x, generator=torch.Generator().manual_seed(0))
    bright = IGTT(**TINY, foreground="bright").segment(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dark.masks, bright.masks) and torch.equal(dark.scores, bright.scores)
    assert dark.info["foreground"] == "dark" and bright.info["foreground"] == "bright"
    auto = IGTT(**TINY).segment(-x, generator=torch.Generator().manual_seed(0))
    assert auto.info["foreground"] == "dark" and "foreground_reason" in auto.info
    assert torch.equal(auto.masks, dark.masks)


def test_a_loaded_network_keeps_its_side(tmp_path):
    x, _ = _blobs(2, 32)
    method = IGTT(**TINY, foreground="dark")
    out = method.segment(-x, generator=torch.Generator().manual_seed(0))
    loaded = IGTT.load(out.trained.save(tmp_path / "dark.pt"))
    again = loaded.segment(-x)
    assert torch.equal(again.masks, out.masks) and again.info["foreground"] == "dark"
    assert again.info["foreground_rule"] == "trained"


def test_no_minority_inversion_when_the_side_is_known():
    """Dense foreground (over half the image) stays foreground: the side is known, so nothing is inverted."""
    g = torch.Generator().manual_seed(2)
    lab = torch.ones(2, 32, 32, dtype=torch.long)
    lab[:, 8:24:8, :] = 0  # thin background lines: the foreground covers most of the image
    x = lab[:, None].float() + 0.05 * torch.randn(2, 1, 32, 32, generator=g)
    x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True)
    out = IGTT(**TINY, foreground="bright").segment(x, generator=torch.Generator().manual_seed(0))
    assert out.info["inverted"] == [False, False]
    probs = lab[:, None].float() * 0.8 + 0.1
    assert float(select_candidate(probs, 5, minority=False).masks.float().mean()) > 0.5
    assert bool(select_candidate(probs, 5).inverted.all())  # the paper's rule takes the minority


def test_bad_foreground_setting():
    with pytest.raises(ParameterError, match="`foreground` must be one of auto, bright, dark"):
        IGTT(foreground="up")


def test_one_instance_serves_several_groups_and_keeps_no_state():
    """The trained network comes back in the result, so one instance segments groups of any size in turn, and a
    group's result does not depend on what the instance segmented before."""
    method = IGTT(**TINY)
    small, _ = _blobs(2, 32)
    large, _ = _blobs(2, 48)
    first = method.segment(small, generator=torch.Generator().manual_seed(0))
    method.segment(large, generator=torch.Generator().manual_seed(0))
    again = method.segment(small, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.masks, again.masks) and not method.trained
    assert first.trained is not again.trained and first.trained.model is not again.trained.model


def _tissue(n=2, cell=24, k=3, seed=0):
    """Dark walls (3 px) between square cells, every other cell of a checkerboard half as bright as the rest (as
    far from the bright cells as the walls are from the dark ones), z-scored."""
    g = torch.Generator().manual_seed(seed)
    checker = (torch.arange(k)[:, None] + torch.arange(k)[None]) % 2
    tones = torch.where(checker == 1, 0.55, 1.0) + 0.05 * torch.rand(n, 1, k, k, generator=g)
    x = tones.repeat_interleave(cell, 2).repeat_interleave(cell, 3)
    wall = (torch.arange(cell * k) % cell) < 3
    x = torch.where(wall[:, None] | wall[None, :], torch.tensor(0.15), x) + 0.03 * torch.randn(x.shape, generator=g)
    return (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True)


@pytest.mark.parametrize("kind, start, ems", [("em", "minerror", "clean"), ("er", "otsu", EMS_DEFAULT),
                                              ("nuc", "otsu", "clean"), ("tissue", "local", "clean")])
def test_auto_bootstrap_picks_the_start_by_the_masks_of_three_thresholds(kind, start, ems):
    """Membranes in textured cells start from the minimum-error mask; where Otsu's mask holds over 1.65 times the
    local threshold's pixels (cells of varied tone: the dark ones go with the walls), from the local threshold's."""
    side = {"foreground": "dark"} if kind == "tissue" else {}  # a checkerboard this coarse fools the polarity rule
    if kind == "tissue":
        x = _tissue()
    else:
        data = synthesize(kind, 2, 64, generator=torch.Generator().manual_seed(3))
        x = (data.images - data.images.mean((2, 3), keepdim=True)) / data.images.std((2, 3), keepdim=True)
    out = IGTT(**TINY, **side).segment(x, generator=torch.Generator().manual_seed(0))
    to_local, ratio = out.info["otsu_to_local"], out.info["minerror_to_otsu"]
    assert out.info["bootstrap"] == start and out.info["ems"] == ems and (to_local > 1.65) == (start == "local")
    assert ratio is None if start == "local" else (ratio < 1) == (start == "minerror")
    # the same run as naming that start (and, for membranes, the area targets) outright
    named = {"bootstrap": start, **({"ems": "clean"} if start == "minerror" else {})}
    same = IGTT(**TINY, **named, **side).segment(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.masks, same.masks) and same.info["minerror_to_otsu"] is same.info["otsu_to_local"] is None
