"""Broadcasting of scalar-or-per-replica parameters to ``(R,)`` tensors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

Scalar = int | float
PerReplica = Scalar | Sequence[Scalar] | Tensor | None


def as_list(value: PerReplica, name: str, optional: bool = False) -> list[float] | None:
    """Return the values of a scalar or sequence parameter as a flat list (``None`` stays ``None``).

    Args:
        value: a number, a sequence of numbers (one per replica) or None.
        name: the parameter's name for messages.
        optional: a sequence may hold None for a replica where the parameter is off.

    Raises:
        ValueError: the value is neither a number nor a flat sequence of numbers.
    """
    if value is None:
        return None
    if isinstance(value, Tensor):
        return [float(x) for x in value.reshape(-1).tolist()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = []
        for x in value:
            if x is None and optional:
                out.append(None)
                continue
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ValueError(f"{name}={value!r}: expected a number or a list of numbers")
            out.append(float(x))
        if not out:
            raise ValueError(f"{name}=[]: expected a number or a non-empty list of numbers")
        return out
    raise ValueError(f"{name}={value!r}: expected a number or a list of numbers")


def per_replica(values: list[float], replicas: int, name: str) -> list[float]:
    """Broadcast a one-element list to ``replicas`` values, or check the list has exactly that length.

    Raises:
        ValueError: a list whose length is neither 1 nor ``replicas``.
    """
    if len(values) == 1:
        return values * replicas
    if len(values) != replicas:
        raise ValueError(f"{name} has {len(values)} values but the simulation has {replicas} replicas")
    return values


def check_range(values: list[float | None] | None, name: str, low: float, high: float) -> None:
    """Raise ``ValueError`` naming the value when any element lies outside ``[low, high]`` or is NaN."""
    for x in values or []:
        if x is None:  # off for this replica
            continue
        if math.isnan(x) or x < low or x > high:
            raise ValueError(f"{name}={x}: expected a value in [{low}, {high}]")


def column(values: list[float], device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(R, 1, 1)`` tensor of per-replica values, ready to broadcast against ``(R, c, n)``."""
    return torch.tensor(values, device=device, dtype=dtype).view(-1, 1, 1)
