"""One step of the dynamics on CPU from a small compiled kernel (``update.c``).

Torch makes the step's update (spec section 2) in about twenty small operations over the ``(R, m, d)`` users and
``(R, n, d)`` creators, each a pass of its own with its temporary, and its reductions over the ``d`` coordinates
are slow for small ``d``: 0.6 ms of the synthetic sweep's 2.2 ms step. ``update.c`` makes it in three passes. Each
product, sum and quotient is the one torch computes; only the sums over the coordinates (``s`` and the norms) run
in another order, so the vectors agree with the torch path to a few units in the last place. The creators' sums over
their audiences are torch's ``index_add_``'s, bit for bit. Used by :class:`~rectest.sim.dynamics.BoundDynamics`
for float32 CPU vectors under the audience rule with ``f`` and ``g`` sign or identity and no fixed dimensions;
elsewhere (CUDA, float64, tanh, fixed dimensions, ``RECTEST_NATIVE=0``, no compiler) the torch path runs.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from rectest.sim import native
from rectest.sim.native import I64, INT, PTR

IMPACTS = {"identity": 0, "sign": 1}  # the impact functions the kernel computes (update.c's IMPACT, SIGN)
MIN_REPLICAS_PER_THREAD = 4


def _function(symbol: str, *argtypes: type, restype: type | None = None) -> ctypes._CFuncPtr | None:
    return native.function("update", symbol, *argtypes, restype=restype)


def _kernels() -> tuple[ctypes._CFuncPtr, ...] | None:
    """``move_users``, ``creator_sums``, ``move_creators`` and ``anchor_cosines`` of ``update.c``, or None."""
    kernels = (
        _function("move_users", I64, I64, I64, I64, PTR, PTR, PTR, PTR, INT, PTR, PTR, INT),
        _function("creator_sums", I64, I64, I64, I64, PTR, PTR, PTR, INT, PTR, INT),
        _function("move_creators", I64, I64, I64, PTR, PTR, PTR, PTR, INT),
        _function("anchor_cosines", I64, I64, I64, I64, PTR, PTR, PTR, PTR, INT),
    )
    return None if any(k is None for k in kernels) else kernels


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """True for float32 CPU vectors when the kernel could be built."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and _kernels() is not None


def _rates(eta: Tensor) -> Tensor:
    """``(R, 1, 1)`` rates as a contiguous ``(R,)`` float32 tensor."""
    return eta.reshape(-1).to(torch.float32).contiguous()


def _threads(replicas: int) -> int:
    return native.threads(replicas, MIN_REPLICAS_PER_THREAD)


def check_choices(chosen: Tensor, n: int) -> Tensor:
    """``chosen`` as contiguous int64, refused unless every index lies in ``[0, n)``: the kernels read the
    creators there. Callers check once a step, before :func:`move_users` and :func:`creator_sums`.

    Raises:
        IndexError: an index outside ``[0, n)``.
    """
    chosen = chosen.to(torch.int64).contiguous()
    if chosen.numel():
        low, high = torch.aminmax(chosen)
        if int(low) < 0 or int(high) >= n:
            raise IndexError(f"chosen creators must lie in [0, {n}), got {int(low)}..{int(high)}")
    return chosen


def move_users(users: Tensor, creators: Tensor, chosen: Tensor, eta: Tensor, f: str) -> tuple[Tensor, Tensor]:
    """``P(u_j + eta f(s_ij) v_i)`` for each user ``j`` and the creator ``i`` it was shown.

    Args:
        users: ``(R, m, d)`` float32 CPU unit vectors.
        creators: ``(R, n, d)`` float32 CPU unit vectors.
        chosen: ``(R, m)`` int64 creators shown, in ``[0, n)`` (:func:`check_choices`).
        eta: ``(R, 1, 1)`` the users' rates.
        f: ``"sign"`` or ``"identity"``.

    Returns:
        The ``(R, m, d)`` new users and the ``(R, m)`` scores ``s_ij`` of the shown creators.
    """
    (R, m, d), n = users.shape, creators.shape[1]
    u, v, c = users.contiguous(), creators.contiguous(), chosen.contiguous()
    out, s = torch.empty_like(u), torch.empty(R, m, dtype=torch.float32)
    rates = _rates(eta)
    _kernels()[0](R, m, n, d, u.data_ptr(), v.data_ptr(), c.data_ptr(), rates.data_ptr(), IMPACTS[f],
                  out.data_ptr(), s.data_ptr(), _threads(R))  # fmt: skip
    return out, s


def creator_sums(users: Tensor, s: Tensor, chosen: Tensor, n: int, g: str) -> Tensor:
    """Each creator's sum of ``g(s_ij) u_j`` over its audience and the audience's size (the terms that
    :func:`rectest.sim.shards.creator_sums` adds with ``index_add_``, added in the same order).

    Args:
        users: ``(R, m, d)`` float32 CPU users (time t).
        s: ``(R, m)`` float32 the scores of the shown creators.
        chosen: ``(R, m)`` int64 creators shown, in ``[0, n)`` (:func:`check_choices`).
        n: creators per replica.
        g: ``"sign"`` or ``"identity"``.

    Returns:
        ``(R, n, d + 1)`` float32: the sums, then the audience's size.
    """
    R, m, d = users.shape
    u, ss, c = users.contiguous(), s.contiguous(), chosen.contiguous()
    acc = torch.empty(R, n, d + 1, dtype=torch.float32)
    _kernels()[1](R, m, n, d, u.data_ptr(), ss.data_ptr(), c.data_ptr(), IMPACTS[g], acc.data_ptr(),
                  _threads(R))  # fmt: skip
    return acc


def move_creators(creators: Tensor, acc: Tensor, eta: Tensor) -> Tensor:
    """``P((eta sum_i) / |S_i| + v_i)`` for each creator with an audience; the others copied.

    Args:
        creators: ``(R, n, d)`` float32 CPU unit vectors.
        acc: ``(R, n, d + 1)`` float32 sums and audience sizes (:func:`creator_sums`).
        eta: ``(R, 1, 1)`` the creators' rates.

    Returns:
        ``(R, n, d)`` new creators.
    """
    R, n, d = creators.shape
    v, a = creators.contiguous(), acc.to(torch.float32).contiguous()
    out = torch.empty_like(v)
    rates = _rates(eta)
    _kernels()[2](R, n, d, v.data_ptr(), a.data_ptr(), rates.data_ptr(), out.data_ptr(), _threads(R))
    return out


def anchor_cosines(users: Tensor, creators: Tensor) -> tuple[Tensor, Tensor]:
    """Each replica's least ``|<x, v_0>|`` over its users and over its creators, ``v_0`` its first creator (the
    polarization check's cheap necessary condition, :func:`rectest.sim.measures.is_polarized`). The dot products
    are summed in another order than torch's matmul (a few units in the last place).

    Args:
        users: ``(R, m, d)`` float32 CPU vectors.
        creators: ``(R, n, d)`` float32 CPU vectors.

    Returns:
        ``(R,)`` over the users and ``(R,)`` over the creators.
    """
    (R, m, d), n = users.shape, creators.shape[1]
    u, v = users.contiguous(), creators.contiguous()
    near_u, near_c = torch.empty(R, dtype=torch.float32), torch.empty(R, dtype=torch.float32)
    _kernels()[3](R, m, n, d, u.data_ptr(), v.data_ptr(), near_u.data_ptr(), near_c.data_ptr(), _threads(R))
    return near_u, near_c
