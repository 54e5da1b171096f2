import pytest
import torch

from mstool.device import describe_device, make_generator, resolve_device, set_threads, spawn_seed
from mstool.errors import DeviceError, ParameterError


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
