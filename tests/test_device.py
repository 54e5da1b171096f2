import warnings

import pytest
import torch

from mstool.device import (
    MixedPrecision,
    _cpu_bf16,
    describe_device,
    make_generator,
    resolve_device,
    set_threads,
    spawn_seed,
)
from mstool.errors import DeviceError, MstoolWarning, ParameterError


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type in {"cpu", "cuda", "mps"}
    assert resolve_device(None) == auto


def test_resolve_device_errors():
    with pytest.raises(ParameterError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda")
    else:  # pragma: no cover - GPU machines
        with pytest.raises(DeviceError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_generators_are_reproducible_and_independent():
    a = torch.rand(5, generator=make_generator(7))
    b = torch.rand(5, generator=make_generator(7))
    c = torch.rand(5, generator=make_generator(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert spawn_seed(make_generator(1)) == spawn_seed(make_generator(1))


def test_library_generators_leave_global_state_alone():
    state = torch.random.get_rng_state()
    make_generator(3)
    spawn_seed(make_generator(3))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_make_generator_rejects_bad_seeds(seed):
    with pytest.raises(ParameterError, match="`seed` must be an integer >= 0; got"):
        make_generator(seed)


def test_set_threads_and_describe():
    before = torch.get_num_threads()
    assert set_threads(0) == before
    assert set_threads(1) == 1
    set_threads(before)
    with pytest.raises(ParameterError, match=r"`threads` must be an integer >= 0 \(0 keeps the default\); got -2"):
        set_threads(-2)
    assert describe_device(torch.device("cpu")).startswith("cpu (")
    set_threads(1)
    assert describe_device(torch.device("cpu")).startswith("cpu (1 thread, ")
    set_threads(2)
    assert describe_device(torch.device("cpu")).startswith("cpu (2 threads, ")
    set_threads(before)


def _fixed_net(device: torch.device) -> tuple[torch.nn.Conv2d, torch.optim.SGD, torch.Tensor]:
    """A conv net with constant weights, its SGD optimizer and a fixed input."""
    net = torch.nn.Conv2d(1, 4, 3, padding=1)
    torch.nn.init.constant_(net.weight, 0.1)
    torch.nn.init.zeros_(net.bias)
    net = net.to(device)
    return net, torch.optim.SGD(net.parameters(), lr=0.1), torch.linspace(-1, 1, 64, device=device).view(1, 1, 8, 8)


def _train_once(precision: MixedPrecision) -> torch.Tensor:
    """One SGD step of the fixed conv net under ``precision``; the weights after it."""
    net, opt, x = _fixed_net(precision.device)
    with precision.autocast():
        out = net(x)
    loss = out.float().square().mean()
    opt.zero_grad()
    precision.backward(loss, opt)
    precision.step(opt)
    return net.weight.detach().cpu()


def test_mixed_precision_on_the_cpu_is_float32_unless_asked():
    auto = MixedPrecision(torch.device("cpu"))
    assert (auto.name, auto.dtype, auto.scaler) == ("fp32", None, None)
    with auto.autocast():
        assert not torch.is_autocast_enabled("cpu")
    # fp32 steps are plain backward and step: the same weights as the loop written by hand
    net, opt, x = _fixed_net(torch.device("cpu"))
    net(x).square().mean().backward()
    opt.step()
    assert torch.equal(_train_once(auto), net.weight.detach())


def test_mixed_precision_bf16_on_the_cpu_runs_the_forward_pass_in_bfloat16():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp = MixedPrecision(torch.device("cpu"), "bf16")
    # the warning says so exactly when this CPU would emulate bfloat16
    assert any(issubclass(w.category, MstoolWarning) for w in caught) is not _cpu_bf16()
    assert (mp.name, mp.dtype, mp.scaler) == ("bf16", torch.bfloat16, None)
    with mp.autocast():
        out = torch.nn.Conv2d(1, 2, 3)(torch.ones(1, 1, 5, 5))
    assert out.dtype == torch.bfloat16
    fp32 = _train_once(MixedPrecision(torch.device("cpu"), "fp32"))
    bf16 = _train_once(mp)
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=1e-2)


def test_mixed_precision_bf16_warns_on_a_cpu_without_bfloat16_units(monkeypatch):
    monkeypatch.setattr("mstool.device._cpu_bf16", lambda: False)
    with pytest.warns(MstoolWarning, match="no bfloat16 units, so bfloat16 is emulated and slower"):
        assert MixedPrecision(torch.device("cpu"), "bf16").dtype == torch.bfloat16
    monkeypatch.setattr("mstool.device._cpu_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MixedPrecision(torch.device("cpu"), "bf16")


def test_mixed_precision_refuses_what_the_device_cannot_run():
    with pytest.raises(ParameterError, match="`precision` must be one of"):
        MixedPrecision(torch.device("cpu"), "half")
    with pytest.raises(DeviceError, match="'fp16' needs a CUDA device; got cpu"):
        MixedPrecision(torch.device("cpu"), "fp16")


def test_mixed_precision_on_a_gpu_is_mixed_by_default(accel):
    mp = MixedPrecision(accel)
    if accel.type != "cuda":
        assert mp.name == "fp32"
        return
    assert mp.dtype in (torch.bfloat16, torch.float16)
    half = MixedPrecision(accel, "fp16")
    assert half.scaler is not None
    fp32 = _train_once(MixedPrecision(accel, "fp32"))
    assert torch.allclose(_train_once(half), fp32, atol=1e-2)
