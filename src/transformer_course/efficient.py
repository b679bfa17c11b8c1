"""Memory-efficient attention: tiling with an online softmax (the forward pass of FlashAttention-2).

Shapes: B batch, S source length (keys), T target length (queries), D d_model, H heads,
Dh head size, V vocabulary; Bq and Bk are the query and key block sizes. Attention inputs
are q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) with the same leading (batch) dimensions.

Exact attention materialises the (T, S) matrix of weights: memory grows as n^2. Tiled
attention walks over blocks of keys (and of queries), keeps per query only a running
maximum ``m``, a running sum ``l`` of exponentials and an un-normalised output ``acc``,
rescales them when the maximum grows, and divides by ``l`` once at the end (the online
softmax: Milakov and Gimelshein 2018). Its extra memory is the output plus one (Bq, Bk) block.
This loop order, query blocks outside, key blocks inside and one division per query at the
end, is FlashAttention-2's (Dao 2023); FlashAttention (Dao et al. 2022, Algorithm 1) loops
over key/value blocks outermost and rescales each query block's normalised output at every step.

That memory is the forward pass's without autograd (inference). Under autograd this Python
loop keeps every probability tile for the backward pass, (T, S) numbers again;
FlashAttention's backward instead recomputes the tiles from q, k, v and one or two numbers
per query kept by the forward pass (FlashAttention-2 keeps the log-sum-exp of each row).

The measurements of notebook 11 (memory against length, time against block size) live in
``experiments.efficient_attention``; the instruments (``peak_memory``, ``best_time``) in ``measure``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _validate
from .attention import make_causal_mask, scaled_dot_product_attention

__all__ = ["online_softmax", "online_softmax_step", "tiled_attention", "naive_attention", "fused_attention"]


def _check_tiles(causal: object, block_size: object, block_q: object, who: str) -> tuple[int, int]:
    """The query and key block sizes (Bq defaults to Bk), after checking ``causal`` is a bool."""
    if not isinstance(causal, bool):
        raise TypeError(f"{who} expects causal to be True or False, got {causal!r}")
    block_k = _validate.positive_int(block_size, "block_size", who)
    return (block_k if block_q is None else _validate.positive_int(block_q, "block_q", who)), block_k


# ----------------------------------------------------------------------------- the online softmax

def online_softmax(x: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax over the last axis in one pass over blocks: a running max and a rescaled running sum.

    Shapes: x (..., S) -> probabilities (..., S), max (...,), sum of exp(x - max) (...,).
    The probabilities need a second pass, exp(x - max) / sum; attention folds it into ``acc``.
    """
    _validate.tensor(x, "x", "online_softmax", min_dims=1, layout="(..., S)")
    _validate.positive_int(block_size, "block_size", "online_softmax")
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)  # (...,)
    l = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)  # (...,)
    for start in range(0, x.shape[-1], block_size):
        block = x[..., start:start + block_size]  # (..., Bk)
        m_new = torch.maximum(m, block.amax(-1))
        # the old sum was taken relative to the old max: rescale it to the new one
        l = l * torch.exp(m - m_new) + torch.exp(block - m_new[..., None]).sum(-1)
        m = m_new
    return torch.exp(x - m[..., None]) / l[..., None], m, l


def online_softmax_step(
    m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor, scores: torch.Tensor, v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of keys: update the running max ``m``, sum ``l`` and un-normalised output ``acc``.

    ``scores`` are the block's scaled scores (-inf where masked). Start from m = -inf, l = 0,
    acc = 0; after the last block the output is acc / l.
    Shapes: m (..., T), l (..., T), acc (..., T, Dv), scores (..., T, Bk), v (..., Bk, Dv)
    -> m (..., T), l (..., T), acc (..., T, Dv).
    """
    m_new = torch.maximum(m, scores.amax(-1))  # (..., T)
    # a row with nothing seen yet keeps m = -inf; subtract 0 there so that exp gives 0, not NaN
    m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(scores - m_safe[..., None])  # (..., T, Bk)
    alpha = torch.exp(m - m_safe)  # (..., T): how much the old max was below the new one
    l = alpha * l + p.sum(-1)
    acc = alpha[..., None] * acc + p @ v  # (..., T, Bk) @ (..., Bk, Dv) -> (..., T, Dv)
    return m_new, l, acc


def tiled_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
    block_size: int = 64, block_q: int | None = None,
) -> torch.Tensor:
    """Exact attention block by block with an online softmax, never building the (T, S) weights.

    ``causal`` lets query t see keys 0..t: top-left aligned, as ``F.scaled_dot_product_attention``'s
    ``is_causal``, right when query t and key t are the same position (T = S, one sequence).
    A KV cache's T new queries are the last T of S positions and need the bottom-right
    alignment instead (query i sees keys 0..S - T + i, ``MultiHeadAttention.forward_cached``).
    Key blocks wholly in a query block's future are skipped. ``block_size`` is the key block
    Bk, ``block_q`` the query block Bq (default: the same).
    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) -> output (..., T, Dv).
    """
    _validate.qkv(q, k, v, "tiled_attention", same_batch=True)
    block_q, block_k = _check_tiles(causal, block_size, block_q, "tiled_attention")
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = q.new_empty(*q.shape[:-1], v.shape[-1])  # (..., T, Dv)
    for qs in range(0, T, block_q):
        qb = q[..., qs:qs + block_q, :] * scale  # (..., Bq, Dh)
        rows = qb.shape[-2]
        m = qb.new_full(qb.shape[:-1], float("-inf"))  # (..., Bq)
        l = qb.new_zeros(qb.shape[:-1])  # (..., Bq)
        acc = qb.new_zeros(*qb.shape[:-1], v.shape[-1])  # (..., Bq, Dv)
        last_key = min(S, qs + rows) if causal else S  # causal: keys after the last query are unseen
        for ks in range(0, last_key, block_k):
            kb = k[..., ks:ks + block_k, :]  # (..., Bk, Dh)
            scores = qb @ kb.transpose(-2, -1)  # (..., Bq, Dh) @ (..., Dh, Bk) -> (..., Bq, Bk)
            if causal and ks + scores.shape[-1] - 1 > qs:  # the block crosses the diagonal
                q_pos = torch.arange(qs, qs + rows, device=q.device)[:, None]  # (Bq, 1)
                k_pos = torch.arange(ks, ks + scores.shape[-1], device=q.device)  # (Bk,)
                scores = scores.masked_fill(k_pos > q_pos, float("-inf"))  # (..., Bq, Bk)
            m, l, acc = online_softmax_step(m, l, acc, scores, v[..., ks:ks + block_k, :])
        out[..., qs:qs + rows, :] = acc / l[..., None]  # divide once, at the end
    return out


# ----------------------------------------------------------------------------- the exact references

def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """The course's exact attention, which materialises the (T, S) weights (and a (T, S) mask).

    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) -> output (..., T, Dv).
    """
    mask = None
    if causal:
        T, S = q.shape[-2], k.shape[-2]
        mask = make_causal_mask(max(T, S), device=q.device)[:T, :S]  # (T, S), top-left aligned
    return scaled_dot_product_attention(q, k, v, mask)[0]


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """PyTorch's fused ``F.scaled_dot_product_attention``: a tiled kernel that never stores the weights.

    On the CPU a flash kernel; on CUDA FlashAttention in half precision, the memory-efficient
    kernel in float32 (PyTorch picks the backend).

    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) -> output (..., T, Dv).
    """
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
