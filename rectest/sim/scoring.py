"""The single scoring function of rectest: cosine similarity of (normalised) vectors."""

from __future__ import annotations

from torch import Tensor

_TINY = 1e-30


def normalize(x: Tensor) -> Tensor:
    """Project every row onto the unit sphere, ``P(x) = x / ||x||``.

    Args:
        x: ``(..., d)`` vectors.

    Returns:
        ``(..., d)`` unit vectors (a zero row stays zero).
    """
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_TINY)


def normalize_(x: Tensor) -> Tensor:
    """:func:`normalize` in place (the same float operations, without a new tensor); returns ``x``."""
    return x.div_(x.norm(dim=-1, keepdim=True).clamp_min(_TINY))


def cosine_scores(users: Tensor, items: Tensor) -> Tensor:
    """Cosine similarity between every user and every item.

    Args:
        users: ``(..., m, d)`` user vectors (any norm).
        items: ``(..., n, d)`` item / creator vectors (any norm), same leading dims as ``users``.

    Returns:
        ``(..., m, n)`` scores ``s[..., j, i] = <u_j, v_i> / (||u_j|| ||v_i||)``.
    """
    return normalize(users) @ normalize(items).transpose(-1, -2)  # (..., m, n)
