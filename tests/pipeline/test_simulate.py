"""The simulation driver's process settings: no NaN fill of new tensors while it runs, restored afterwards."""

import pytest
import torch

from rectest.pipeline.simulate import _no_memory_fill


def test_the_loop_runs_without_the_deterministic_memory_fill_and_puts_it_back():
    """After Lightning's ``deterministic=True`` every new tensor would be NaN-filled (a pass per temporary);
    the loop turns that off, and the setting comes back afterwards, also when the loop raises."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # as training leaves the process
    try:
        assert torch.utils.deterministic.fill_uninitialized_memory
        assert torch.isnan(torch.empty(64)).all()  # the fill the loop avoids
        with _no_memory_fill():
            assert not torch.utils.deterministic.fill_uninitialized_memory
        assert torch.utils.deterministic.fill_uninitialized_memory
        with pytest.raises(KeyboardInterrupt), _no_memory_fill():
            raise KeyboardInterrupt
        assert torch.utils.deterministic.fill_uninitialized_memory
    finally:
        torch.use_deterministic_algorithms(was)
