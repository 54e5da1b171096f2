import re

import numpy as np
import pytest
import torch

from mstool._check import check_in, check_int, check_labels, check_range, check_same_device, check_shape
from mstool.errors import (
    DataError,
    DeviceError,
    DeviceMismatchError,
    DTypeError,
    MstoolError,
    ParameterError,
    ShapeError,
)
from mstool.labels import dilate, dilate_labels
from mstool.unsupervised import KMeans
from mstool.unsupervised._classical import kmeans


def test_check_shape_accepts_and_pins_sizes():
    check_shape(torch.zeros(2, 1, 4, 4), "x", "N 1 H W", dtype="float")
    with pytest.raises(ShapeError, match=r"`x` must be \(N, 1, H, W\); got \(2, 3, 4, 4\)"):
        check_shape(torch.zeros(2, 3, 4, 4), "x", "N 1 H W")


def test_check_shape_dtype_and_type():
    with pytest.raises(DTypeError, match="integer tensor; got torch.float32"):
        check_shape(torch.zeros(1, 2, 2), "labels", "N H W", dtype="int")
    with pytest.raises(DTypeError, match="floating-point"):
        check_shape(torch.zeros(1, 2, 2, dtype=torch.long), "probs", "N H W", dtype="float")
    with pytest.raises(DTypeError, match=r"`x` must be a torch.Tensor of shape \(N\); got list"):
        check_shape([1, 2], "x", "N")


def test_a_dtype_error_is_no_shape_error_but_keeps_the_builtins():
    with pytest.raises(DTypeError, match="`labels` must be an integer tensor; got torch.float32") as caught:
        check_shape(torch.zeros(1, 2, 2), "labels", "N H W", dtype="int")
    assert not isinstance(caught.value, ShapeError)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
    assert issubclass(DTypeError, MstoolError)
    assert issubclass(DeviceMismatchError, DeviceError) and issubclass(DeviceMismatchError, RuntimeError)
    assert issubclass(DeviceMismatchError, ValueError) and not issubclass(DeviceMismatchError, ShapeError)


def test_errors_are_builtins_too():
    with pytest.raises(ValueError, match=r"`keep` must be in \[0, 1\]; got 2"):
        check_range(2, "keep", 0, 1)
    assert issubclass(ShapeError, MstoolError)


@pytest.mark.parametrize("value, kw", [(0.0, {"low_open": True}), (1.0, {"high_open": True}), (float("nan"), {})])
def test_check_range_open_bounds_and_nan(value, kw):
    with pytest.raises(ParameterError, match="`p` must be in"):
        check_range(value, "p", 0, 1, **kw)


def test_check_range_rejects_non_numbers():
    with pytest.raises(ParameterError, match="must be a number; got 'a'"):
        check_range("a", "p")


def test_check_in():
    with pytest.raises(ParameterError, match="one of box, gaussian; got 'tophat'"):
        check_in("tophat", "kernel", ["box", "gaussian"])


def test_check_labels_ranges_and_ignore():
    labels = torch.tensor([[[0, 1], [255, 2]]])
    check_labels(labels, num_classes=3)
    with pytest.raises(ParameterError, match="0..1 or 255"):
        check_labels(labels, num_classes=2)
    with pytest.raises(ParameterError, match=">= 0"):
        check_labels(torch.tensor([[[-1]]]))
    check_labels(torch.zeros(0, 4, 4, dtype=torch.long))  # empty batch is legal
    check_labels(torch.full((1, 2, 2), 255))  # all ignored is legal


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_check_labels_reads_every_integer_dtype(dtype):
    labels = torch.tensor([[[0, 1], [2, 1]]], dtype=dtype)
    check_labels(labels, num_classes=3)
    with pytest.raises(ParameterError, match="maximum of 2"):
        check_labels(labels, num_classes=2)
    if dtype != torch.int8:  # int8 cannot hold the ignore index
        labels[0, 1, 0] = 255
        check_labels(labels, num_classes=2)  # 255 is ignored, whatever the dtype
    if dtype != torch.uint8:
        labels[0, 0, 0] = -1
        with pytest.raises(ParameterError, match=">= 0"):
            check_labels(labels)


def test_check_same_device():
    a = torch.zeros(1)
    check_same_device(("a", a), ("b", torch.zeros(2)))
    # the meta device stands in for an accelerator: any second device will do
    with pytest.raises(DeviceMismatchError, match="`b` is on meta but `a` is on cpu; move them to one device"):
        check_same_device(("a", a), ("b", torch.zeros(1, device="meta")))


# ------------------------------------------------------------------------------------------------ check_int


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), np.int32(3), torch.tensor(3)])
def test_check_int_accepts_integers_and_returns_a_python_int(value):
    out = check_int(value, "clusters", low=2)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(("value", "got"), [
    (True, "True (bool)"),
    (np.True_, "np.True_ (bool)"),
    (2.0, "2.0 (float)"),
    (2.5, "2.5 (float)"),
    (np.float64(2.0), "np.float64(2.0) (float64)"),
    ("2", "'2' (str)"),
    (None, "None"),
    (torch.tensor(2.0), "tensor(2.) (Tensor)"),
    (torch.tensor([2]), "tensor([2]) (Tensor)"),
])
def test_check_int_refuses_non_integers_saying_what_came(value, got):
    with pytest.raises(ParameterError, match=f"^`clusters` must be an integer >= 2; got {re.escape(got)}$"):
        check_int(value, "clusters", low=2)


def test_check_int_bounds_are_inclusive():
    assert check_int(2, "k", low=2, high=4) == 2 and check_int(4, "k", low=2, high=4) == 4
    assert check_int(-7, "dy") == -7  # no bound: any integer
    with pytest.raises(ParameterError, match=r"^`k` must be an integer in \[2, 4\]; got 5$"):
        check_int(5, "k", low=2, high=4)
    with pytest.raises(ParameterError, match=r"^`k` must be an integer in \[2, 4\]; got 1$"):
        check_int(np.int64(1), "k", low=2, high=4)
    with pytest.raises(ParameterError, match=r"^`k` must be an integer <= 4; got 5$"):
        check_int(5, "k", high=4)
    with pytest.raises(ParameterError, match=r"^`k` must be an integer; got 1.5 \(float\)$"):
        check_int(1.5, "k")
    with pytest.raises(ParameterError, match=r"^`d` must be an integer >= 1 \(pixels\); got 0$"):
        check_int(0, "d", low=1, note="pixels")


def test_check_int_shortens_a_long_value():
    with pytest.raises(ParameterError, match=r"got \[0, 1, 2, .*\.\.\. \(list\)$"):
        check_int(list(range(1000)), "k")


def test_public_functions_agree_on_what_an_integer_is():
    """The same rule at every public boundary: a numpy integer passes, a float does not."""
    mask = torch.zeros(1, 9, 9, dtype=torch.bool)
    mask[0, 4, 4] = True
    labels = mask.long()
    images = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dilate(mask, np.int64(2)), dilate(mask, 2))
    assert torch.equal(dilate_labels(labels, np.int64(2)), dilate_labels(labels, 2))
    assert KMeans(clusters=np.int64(2)).clusters == 2 and type(KMeans(clusters=np.int64(2)).clusters) is int
    g = torch.Generator().manual_seed(0)
    assert torch.equal(kmeans(images, clusters=np.int64(2), generator=g).masks,
                       kmeans(images, clusters=2, generator=torch.Generator().manual_seed(0)).masks)
    for call, name in [(lambda: dilate(mask, 2.5), "radius"), (lambda: dilate_labels(labels, 2.5), "radius"),
                       (lambda: KMeans(clusters=2.5), "clusters"), (lambda: kmeans(images, clusters=2.5), "clusters")]:
        with pytest.raises(ParameterError, match=rf"^`{name}` must be an integer >= \d; got 2.5 \(float\)$"):
            call()


def test_infinite_or_negative_prior_is_a_data_error():
    images = torch.zeros(1, 1, 4, 4)
    for prior, what in ((-torch.ones(1, 1, 4, 4), "its minimum is -1"),
                        (torch.full((1, 1, 4, 4), float("inf")), "it holds 16 infinite values")):
        with pytest.raises(DataError, match=f"`prior` must be non-negative and finite where known .*; {what}$"):
            kmeans(images, prior=prior)
