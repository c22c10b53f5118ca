"""Shared fixtures for the simulation tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The engine's test tensors are tiny: extra intra-op threads only add overhead on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gen():
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)
