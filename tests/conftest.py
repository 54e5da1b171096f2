"""Shared fixtures. `--device cuda` runs the device-parametrised tests on a GPU as well as the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DSB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018-nuclei-sample"


def pytest_configure(config):
    # The suite's tensors are tiny: on a shared 2-core machine one thread is faster and steadier than two.
    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--device", action="store", default="cpu",
                     help="extra device for device-parametrised tests, e.g. cuda or cuda:0 (default: cpu only)")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device named by --device (cpu when not given)."""
    return torch.device(request.config.getoption("--device"))


@pytest.fixture(scope="session")
def accel(request) -> torch.device:
    """A non-CPU device named by --device; tests that need it are skipped when only the CPU was named."""
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cpu":
        pytest.skip("needs a GPU: run pytest with --device cuda on a machine that has one")
    return dev


@pytest.fixture(scope="session")
def dsb_dir() -> Path:
    """The real DSB2018 nuclei sample shipped beside the repository (`../shared/data`)."""
    if not (DSB_DIR / "image.tif").exists():
        pytest.skip(f"real-data sample not found at {DSB_DIR} (it lives beside the repo, in ../shared/data)")
    return DSB_DIR


@pytest.fixture
def gen() -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0)
    return g
