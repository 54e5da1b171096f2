import pytest
import torch

from mstool._check import check_in, check_labels, check_range, check_same_device, check_shape
from mstool.errors import MstoolError, ParameterError, ShapeError


def test_check_shape_accepts_and_pins_sizes():
    check_shape(torch.zeros(2, 1, 4, 4), "x", "N 1 H W", dtype="float")
    with pytest.raises(ShapeError, match=r"`x` must be \(N, 1, H, W\); got \(2, 3, 4, 4\)"):
        check_shape(torch.zeros(2, 3, 4, 4), "x", "N 1 H W")


def test_check_shape_dtype_and_type():
    with pytest.raises(ShapeError, match="integer tensor; got torch.float32"):
        check_shape(torch.zeros(1, 2, 2), "labels", "N H W", dtype="int")
    with pytest.raises(ShapeError, match="floating-point"):
        check_shape(torch.zeros(1, 2, 2, dtype=torch.long), "probs", "N H W", dtype="float")
    with pytest.raises(ShapeError, match="must be a torch.Tensor"):
        check_shape([1, 2], "x", "N")


def test_errors_are_builtins_too():
    with pytest.raises(ValueError):
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
    if torch.cuda.is_available():  # pragma: no cover - exercised on GPU machines
        with pytest.raises(ShapeError, match="move them to one device"):
            check_same_device(("a", a), ("b", a.to("cuda")))
