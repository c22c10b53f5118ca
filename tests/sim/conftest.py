"""Shared fixtures for the simulation tests."""

import pytest
import torch


@pytest.fixture
def gen():
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)
