"""Notebook 05 (masks and multi-head attention): the mask widget's logic."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .. import _validate, utils
from ..attention import MultiHeadAttention, make_causal_mask, make_padding_mask

__all__ = ["mask_and_head_weights", "mask_figure"]


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


def mask_figure(seq_len: int = 8, n_pad: int = 2, causal: bool = True, head: int = 0) -> Figure:
    """The mask (left) and one head's weights under it (right)."""
    mask, weights = mask_and_head_weights(seq_len, n_pad, causal, head)
    fig = Figure(figsize=(9, 3.8))
    ax0, ax1 = fig.subplots(1, 2)
    mask_image = ax0.imshow(mask.numpy(), cmap="gray", vmin=0, vmax=1)
    utils.two_level_colorbar(mask_image, ax0)
    ax0.set_title(f"mask: {seq_len} tokens, {min(n_pad, seq_len)} pads"
                  f"{', causal' if causal else ''}\n(white = may attend)", fontsize=10)
    im = ax1.imshow(weights.numpy(), cmap="viridis", vmin=0, vmax=1)
    ax1.set_title(f"head {head}: weights (rows sum to 1, or 0)", fontsize=10)
    for ax in (ax0, ax1):
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.colorbar(im, ax=ax1, label="weight")
    fig.tight_layout()
    return fig
