import math

import pytest
import torch
import torch.nn.functional as F

from mstool.errors import DeviceMismatchError, DTypeError, ParameterError, ShapeError
from mstool.losses import (
    LOSSES,
    BCELoss,
    CrossEntropyLoss,
    DMIIoULoss,
    DMILoss,
    SoftIoULoss,
    bce_loss,
    cross_entropy_loss,
    dmi_iou_loss,
    dmi_loss,
    make_loss,
    soft_iou_loss,
)

PROB_LOSSES = [soft_iou_loss, dmi_loss, dmi_iou_loss]


def _labels(n, k, h, w, g, ignore_frac=0.0):
    y = torch.randint(0, k, (n, h, w), generator=g)
    if ignore_frac:
        y[torch.rand(n, h, w, generator=g) < ignore_frac] = 255
    return y


def _square_mask(n=1):
    """8 x 8 labels with a 4 x 4 foreground square (16 of 64 pixels)."""
    y = torch.zeros(n, 8, 8, dtype=torch.long)
    y[:, 2:6, 2:6] = 1
    return y


# ------------------------------------------------------------------------------------------------ BCE
def test_bce_hand_value_and_ignore():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[0, 1], [255, 255]]])
    assert bce_loss(logits, target).item() == pytest.approx(math.log(2))


def test_bce_matches_torch_on_labelled_pixels(gen):
    logits = torch.randn(2, 1, 8, 8, generator=gen)
    target = _labels(2, 2, 8, 8, gen, ignore_frac=0.3)
    keep = target != 255
    ref = F.binary_cross_entropy_with_logits(logits[:, 0][keep], target[keep].float(),
                                             pos_weight=torch.tensor(3.0))
    assert bce_loss(logits, target, pos_weight=3.0).item() == pytest.approx(ref.item(), rel=1e-6)


def test_bce_is_stable_for_large_logits():
    logits = torch.tensor([[[[100.0, -100.0]]]])
    assert bce_loss(logits, torch.tensor([[[1, 0]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert bce_loss(logits, torch.tensor([[[0, 1]]])).item() == pytest.approx(100.0)


def test_bce_errors():
    with pytest.raises(ShapeError, match="cross_entropy_loss"):
        bce_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"`target` must be \(N, H, W\) = \(1, 4, 4\)"):
        bce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ParameterError, match="target"):
        bce_loss(torch.zeros(1, 1, 4, 4), torch.full((1, 4, 4), 2))
    with pytest.raises(ParameterError, match="pos_weight"):
        bce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), pos_weight=0)
    with pytest.raises(DTypeError, match="`target` must be an integer tensor"):
        bce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4))


# ------------------------------------------------------------------------------------------------- CE
def test_ce_matches_torch_with_ignore_and_weight(gen):
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = _labels(2, 3, 8, 8, gen, ignore_frac=0.25)
    weight = torch.tensor([0.2, 1.0, 3.0])
    ref = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert cross_entropy_loss(logits, target, weight=weight).item() == pytest.approx(ref.item(), rel=1e-6)
    ref = F.cross_entropy(logits, target, ignore_index=255)
    assert cross_entropy_loss(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)


def test_ce_hand_value():
    target = torch.tensor([[[0, 1], [2, 255]]])
    assert cross_entropy_loss(torch.zeros(1, 4, 2, 2), target).item() == pytest.approx(math.log(4))


def test_ce_errors():
    y = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ShapeError, match="bce_loss"):
        cross_entropy_loss(torch.zeros(1, 1, 4, 4), y)
    with pytest.raises(ShapeError, match="weight"):
        cross_entropy_loss(torch.zeros(1, 3, 4, 4), y, weight=torch.ones(2))
    with pytest.raises(ParameterError, match="non-negative"):
        cross_entropy_loss(torch.zeros(1, 3, 4, 4), y, weight=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ParameterError, match=r"0\.\.2"):
        cross_entropy_loss(torch.zeros(1, 3, 4, 4), torch.full((1, 4, 4), 3))


# ------------------------------------------------------------------------------------------- soft IoU
def test_soft_iou_perfect_prediction_is_zero():
    y = _square_mask(2)
    assert soft_iou_loss(y[:, None].float(), y).item() == 0.0
    y3 = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    onehot = F.one_hot(y3, 3).permute(0, 3, 1, 2).float()
    assert soft_iou_loss(onehot, y3).item() == pytest.approx(0, abs=1e-6)


def test_soft_iou_hand_value_binary():
    y = _square_mask()
    # p = 0.5 everywhere: intersection 8, union 0.5 * 48 + 16 = 40
    loss = soft_iou_loss(torch.full((1, 1, 8, 8), 0.5), y, eps=1e-12)
    assert loss.item() == pytest.approx(1 - 8 / 40)


def test_soft_iou_multiclass_averages_present_classes():
    y = _square_mask()  # classes 0 and 1 present, class 2 absent
    probs = torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    iou0 = (0.5 * 48) / (0.5 * 16 + 48)
    iou1 = (0.3 * 16) / (0.3 * 48 + 16)
    expected = 1 - (iou0 + iou1) / 2
    assert soft_iou_loss(probs, y, eps=1e-12).item() == pytest.approx(expected)


def test_soft_iou_empty_foreground():
    empty = torch.zeros(1, 8, 8, dtype=torch.long)
    assert soft_iou_loss(torch.zeros(1, 1, 8, 8), empty).item() == 0.0
    assert soft_iou_loss(torch.full((1, 1, 8, 8), 0.5), empty).item() == pytest.approx(1.0, abs=1e-6)


def test_soft_iou_ignored_pixels_do_not_matter(gen):
    y = _square_mask()
    y[:, :, :3] = 255
    p = torch.rand(1, 1, 8, 8, generator=gen, requires_grad=True)
    q = p.detach().clone()
    q[:, :, :, :3] = torch.rand(1, 1, 8, 3, generator=gen)
    loss = soft_iou_loss(p, y)
    assert loss.item() == pytest.approx(soft_iou_loss(q, y).item())
    loss.backward()
    assert p.grad[:, :, :, :3].abs().max() == 0
    assert p.grad[:, :, :, 3:].abs().max() > 0


def test_soft_iou_gradcheck(gen):
    y = torch.tensor([[[0, 1, 1], [255, 0, 1]]])
    p = torch.rand(1, 1, 2, 3, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: soft_iou_loss(t, y), (p,))
    p3 = torch.rand(1, 3, 2, 3, generator=gen, dtype=torch.float64).requires_grad_()
    y3 = torch.tensor([[[0, 1, 2], [255, 0, 1]]])
    assert torch.autograd.gradcheck(lambda t: soft_iou_loss(t, y3), (p3,))


def test_soft_iou_eps_error():
    with pytest.raises(ParameterError, match="eps"):
        soft_iou_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), eps=0)


# ------------------------------------------------------------------------------------------------ DMI
def _dmi_direct(probs, target, eps=1e-6):
    """-log(|det(P S^T / M)| + eps) per image, from explicit matrices over the labelled pixels."""
    losses = []
    for p, t in zip(probs, target, strict=True):
        if p.shape[0] == 1:
            p = torch.cat([1 - p, p])
        keep = t.flatten() != 255
        P = p.flatten(1)[:, keep]
        S = F.one_hot(t.flatten()[keep], p.shape[0]).T.to(P.dtype)
        losses.append(-torch.log(torch.det(P @ S.T / keep.sum()).abs() + eps))
    return torch.stack(losses).mean()


def test_dmi_matches_direct_determinant(gen):
    p = torch.rand(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = _labels(2, 2, 8, 8, gen, ignore_frac=0.2)
    assert dmi_loss(p, y).item() == pytest.approx(_dmi_direct(p, y).item(), rel=1e-10)
    p3 = torch.softmax(torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64), dim=1)
    y3 = _labels(2, 3, 8, 8, gen, ignore_frac=0.2)
    assert dmi_loss(p3, y3).item() == pytest.approx(_dmi_direct(p3, y3).item(), rel=1e-10)


def test_dmi_perfect_binary_prediction():
    y = _square_mask()
    f = 16 / 64
    assert dmi_loss(y[:, None].float(), y).item() == pytest.approx(-math.log(f * (1 - f) + 1e-6), rel=1e-5)


def test_dmi_is_scale_free():
    y = _square_mask()
    p = 0.7 * y[:, None] + torch.linspace(0.05, 0.25, 64).view(1, 1, 8, 8)
    assert dmi_loss(p, y).item() < 5  # informative, far from -log(eps)
    tiled = dmi_loss(p.repeat(1, 1, 2, 3), y.repeat(1, 2, 3))
    assert tiled.item() == pytest.approx(dmi_loss(p, y).item(), rel=1e-5)


def test_dmi_single_class_labels_give_log_eps_and_no_gradient():
    p = torch.full((1, 1, 8, 8), 0.3, requires_grad=True)
    loss = dmi_loss(p, torch.zeros(1, 8, 8, dtype=torch.long), eps=1e-6)
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(1e-6))
    assert p.grad.abs().max() == 0


def test_dmi_gradcheck(gen):
    y = torch.tensor([[[0, 1, 1], [255, 0, 1]], [[1, 0, 0], [0, 1, 255]]])
    p = torch.rand(2, 1, 2, 3, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: dmi_loss(t, y), (p,))
    y3 = torch.tensor([[[0, 1, 2], [255, 2, 1]]])
    p3 = torch.softmax(torch.randn(1, 3, 2, 3, generator=gen, dtype=torch.float64), 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: dmi_loss(t, y3), (p3,))


def test_dmi_iou_is_weighted_sum(gen):
    p = torch.rand(2, 1, 8, 8, generator=gen)
    y = _labels(2, 2, 8, 8, gen)
    expected = 0.3 * dmi_loss(p, y) + 2.0 * soft_iou_loss(p, y)
    assert dmi_iou_loss(p, y, dmi_weight=0.3, iou_weight=2.0).item() == pytest.approx(expected.item())
    with pytest.raises(ParameterError, match="dmi_weight"):
        dmi_iou_loss(p, y, dmi_weight=-1)


# ---------------------------------------------------------------------------------------- common rules
@pytest.mark.parametrize("fn", PROB_LOSSES)
def test_per_image_losses_do_not_depend_on_batch_split(fn, gen):
    p = torch.rand(4, 1, 8, 8, generator=gen)
    y = _labels(4, 2, 8, 8, gen, ignore_frac=0.1)
    halves = (fn(p[:2], y[:2]) + fn(p[2:], y[2:])) / 2
    assert fn(p, y).item() == pytest.approx(halves.item(), rel=1e-6)


@pytest.mark.parametrize("fn", PROB_LOSSES + [bce_loss])
def test_wrong_probs_shape(fn):
    with pytest.raises(ShapeError, match=r"must be \(N, C, H, W\); got \(4, 4\)"):
        fn(torch.zeros(4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize(("module", "fn", "kw"), [
    (BCELoss(pos_weight=2.0), bce_loss, {"pos_weight": 2.0}),
    (SoftIoULoss(eps=1e-3), soft_iou_loss, {"eps": 1e-3}),
    (DMILoss(eps=1e-3), dmi_loss, {"eps": 1e-3}),
    (DMIIoULoss(dmi_weight=0.5), dmi_iou_loss, {"dmi_weight": 0.5}),
])
def test_module_equals_function(module, fn, kw, gen):
    x = torch.rand(2, 1, 8, 8, generator=gen)
    y = _labels(2, 2, 8, 8, gen, ignore_frac=0.2)
    assert module(x, y).item() == fn(x, y, **kw).item()


def test_ce_module_equals_function_and_moves_weight(gen):
    x = torch.randn(2, 3, 8, 8, generator=gen)
    y = _labels(2, 3, 8, 8, gen, ignore_frac=0.2)
    w = torch.tensor([1.0, 2.0, 0.5])
    module = CrossEntropyLoss(weight=w).to(torch.float64)
    assert "weight" in dict(module.named_buffers())
    assert module(x.double(), y).item() == pytest.approx(cross_entropy_loss(x, y, weight=w).item(), rel=1e-6)


# -------------------------------------------------------------------------------------------- registry
def test_registry_names():
    assert LOSSES.names() == ["bce", "ce", "soft_iou", "dmi", "dmi+iou"]


@pytest.mark.parametrize(("name", "k", "fn", "act"), [
    ("bce", 1, bce_loss, None),
    ("ce", 3, cross_entropy_loss, None),
    ("soft_iou", 1, soft_iou_loss, torch.sigmoid),
    ("soft_iou", 3, soft_iou_loss, lambda z: torch.softmax(z, 1)),
    ("dmi", 1, dmi_loss, torch.sigmoid),
    ("dmi", 3, dmi_loss, lambda z: torch.softmax(z, 1)),
    ("dmi+iou", 1, dmi_iou_loss, torch.sigmoid),
])
def test_make_loss_takes_logits(name, k, fn, act, gen):
    z = torch.randn(2, k, 8, 8, generator=gen)
    y = _labels(2, max(k, 2), 8, 8, gen, ignore_frac=0.2)
    expected = fn(z if act is None else act(z), y)
    assert make_loss(name, k)(z, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_make_loss_errors():
    with pytest.raises(ParameterError, match="choose one of: bce, ce, soft_iou, dmi, dmi\\+iou"):
        make_loss("focal", 1)
    with pytest.raises(ParameterError, match="'bce' needs num_classes = 1"):
        make_loss("bce", 3)
    with pytest.raises(ParameterError, match="'ce' needs num_classes >= 2"):
        make_loss("ce", 1)
    with pytest.raises(ParameterError, match="num_classes"):
        make_loss("dmi", 0)
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        make_loss("dmi", 3)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("name,k", [("bce", 1), ("ce", 3), ("soft_iou", 1), ("soft_iou", 3), ("dmi", 1),
                                    ("dmi", 3), ("dmi+iou", 1)])
@pytest.mark.parametrize("n", [0, 1, 2])
def test_all_ignored_gives_zero_loss_and_zero_grad(name, k, n, gen):
    z = torch.randn(n, k, 8, 8, generator=gen, requires_grad=True)
    loss = make_loss(name, k)(z, torch.full((n, 8, 8), 255))
    loss.backward()
    assert loss.item() == 0.0
    # with N = 0 some torch versions leave the graph disconnected from `z`: no gradient is as good as 0
    assert (n == 0 and z.grad is None) or torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("name,k", [("bce", 1), ("ce", 3), ("soft_iou", 3), ("dmi", 1), ("dmi+iou", 1)])
def test_losses_run_on_device(name, k, device, gen):
    z = torch.randn(2, k, 8, 8, generator=gen)
    y = _labels(2, max(k, 2), 8, 8, gen, ignore_frac=0.2)
    zd = z.to(device).requires_grad_()
    loss = make_loss(name, k)(zd, y.to(device))
    loss.backward()
    assert loss.device.type == device.type
    assert torch.isfinite(zd.grad).all()
    assert loss.item() == pytest.approx(make_loss(name, k)(z, y).item(), rel=1e-4, abs=1e-5)


def test_target_on_other_device_is_refused(accel):
    with pytest.raises(DeviceMismatchError, match="one device"):
        dmi_loss(torch.zeros(1, 1, 4, 4, device=accel), torch.zeros(1, 4, 4, dtype=torch.long))
