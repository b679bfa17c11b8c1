"""Notebook 05 (masks and multi-head attention): the mask widget's logic."""

from __future__ import annotations

import torch

from .. import _validate
from ..attention import MultiHeadAttention, make_causal_mask, make_padding_mask

__all__ = ["mask_and_head_weights"]


def mask_and_head_weights(
    seq_len: int, n_pad: int, causal: bool, head: int, n_heads: int = 4, d_model: int = 32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask built from (length, pad count, causal) and one head's weights under it.

    A fixed, seeded MultiHeadAttention attends over a random sequence whose last ``n_pad``
    tokens (at most ``seq_len``) are padding. Shapes: -> mask (T, T), weights (T, T) of head ``head``.
    """
    who = "mask_and_head_weights"
    _validate.positive_int(seq_len, "seq_len", who)
    n_pad = min(_validate.int_in(n_pad, "n_pad", who, 0), seq_len)  # all padding: every row gets zeros
    _validate.int_in(head, "head", who, 0, n_heads)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 20, (1, seq_len), generator=g)  # (1, T), 0 is the pad id
    tokens[:, seq_len - n_pad:] = 0
    mask = make_padding_mask(tokens, pad_id=0)  # (1, 1, 1, T)
    if causal:
        mask = mask & make_causal_mask(seq_len)  # (1, 1, T, T)
    mask = mask.expand(1, 1, seq_len, seq_len)  # (1, 1, T, T)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mha = MultiHeadAttention(d_model, n_heads).eval()
        embed = torch.randn(20, d_model, generator=g)  # (V, D)
    x = embed[tokens]  # (1, T, D)
    with torch.no_grad():
        _, weights = mha(x, x, x, mask)  # (1, H, T, T)
    return mask[0, 0], weights[0, head]
