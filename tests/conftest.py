"""Shared fixtures: the real data folder beside the repository, validation on, fixed seeds.

Tests (and the example scripts they start) run torch on one thread: the models under test are
small, and on a shared 2-core machine a second OpenMP thread waiting for a busy core makes
each step many times slower.
"""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; inherited by subprocesses

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PYRO_LVM_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The folder with mnist/, binarized_mnist/, cifar10_subset/ (../shared/data); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set PYRO_LVM_TEST_DATA to point at it)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Every test starts with an empty param store, validation on and a fixed seed."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    torch.set_default_dtype(torch.float32)
    yield
    pyro.clear_param_store()
