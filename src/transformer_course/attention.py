"""Attention: Bahdanau and Luong attention for seq2seq, scaled dot-product and multi-head attention.

Shapes: B batch, S source length (keys), T target length (queries), D d_model (or the RNN's
hidden size), H heads, Dh head size (d_head = d_model // n_heads), V vocabulary.

The mask convention, one for the whole course: a mask is a boolean tensor, **True where
attention is allowed** and False where it is blocked (padding, the future), exactly as the
``attn_mask`` of ``F.scaled_dot_product_attention``. (``nn.MultiheadAttention``'s
``attn_mask`` and ``key_padding_mask`` use the opposite sign: True = blocked.)
A query whose keys are all blocked gets zero weights and a zero output, never NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate

__all__ = [
    "masked_softmax", "additive_attention", "AdditiveAttention", "dot_product_attention",
    "DotProductAttention", "scaled_dot_product_attention", "make_causal_mask", "make_padding_mask",
    "split_heads", "merge_heads", "MultiHeadAttention",
]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis where ``mask`` is True; rows with nothing allowed give zeros.

    Shapes: scores (..., S), mask broadcastable to scores -> weights (..., S).
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    blocked = ~mask
    # The smallest finite number rather than -inf: a fully blocked row stays finite (no NaN in
    # the forward or the backward pass) and is then zeroed.
    scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)


# ----------------------------------------------------------------------------- seq2seq attention

def _check_seq2seq(query: object, keys: object, mask: object, who: str, same_size: bool = False) -> None:
    """One decoder state per example (B, D) against its encoder states (B, S, Dk), mask (B, S)."""
    _validate.tensor(query, "query", who, dims=2, layout="(B, D)")
    _validate.tensor(keys, "keys", who, dims=3, layout="(B, S, Dk)")
    if keys.shape[0] != query.shape[0]:
        raise ValueError(f"{who} expects query (B, D) and keys (B, S, Dk) with the same batch size B, "
                         f"got {tuple(query.shape)} and {tuple(keys.shape)}")
    if same_size and query.shape[1] != keys.shape[2]:
        raise ValueError(f"{who} expects query (B, D) and keys (B, S, D) of the same size D, got "
                         f"{tuple(query.shape)} and {tuple(keys.shape)}")
    if mask is not None:
        _validate.mask(mask, tuple(keys.shape[:2]), who, "(B, S)")


def _check_additive_weights(w_query: torch.Tensor, w_key: torch.Tensor, v: torch.Tensor,
                            query: torch.Tensor, keys: torch.Tensor) -> None:
    if w_query.shape[1] != query.shape[1] or w_key.shape[1] != keys.shape[2]:
        raise ValueError(f"additive_attention expects w_query (A, Dq) and w_key (A, Dk) that fit query "
                         f"{tuple(query.shape)} and keys {tuple(keys.shape)}, got {tuple(w_query.shape)} "
                         f"and {tuple(w_key.shape)}")
    if w_query.shape[0] != w_key.shape[0] or v.shape != (w_key.shape[0],):
        raise ValueError(f"additive_attention expects w_query, w_key and v to agree on the attention "
                         f"size A, got {tuple(w_query.shape)}, {tuple(w_key.shape)} and {tuple(v.shape)}")


def _check_projected_keys(projected: object, keys: torch.Tensor, size: int, who: str) -> None:
    want = (*keys.shape[:2], size)
    if not isinstance(projected, torch.Tensor) or tuple(projected.shape) != want:
        raise ValueError(f"{who} expects projected_keys of shape (B, S, A) = {want}, the keys after "
                         f"their projection, got {_validate.describe(projected)}")


def additive_attention(
    query: torch.Tensor, keys: torch.Tensor, w_query: torch.Tensor, w_key: torch.Tensor,
    v: torch.Tensor, mask: torch.Tensor | None = None, projected_keys: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bahdanau's attention: score_s = v . tanh(W_q q + W_k k_s), softmax over s, context = sum a_s k_s.

    W_k k_s does not depend on the decoder step: a decoder computes it once per source
    (``projected_keys``, as Bahdanau et al. do) instead of once per target step.

    Shapes: query (B, Dq), keys (B, S, Dk), w_query (A, Dq), w_key (A, Dk), v (A,),
    mask (B, S) True = real key, projected_keys (B, S, A) = W_k k_s -> context (B, Dk), weights (B, S).
    """
    _check_seq2seq(query, keys, mask, "additive_attention")
    _check_additive_weights(w_query, w_key, v, query, keys)
    if projected_keys is None:
        projected_keys = F.linear(keys, w_key)  # (B, S, A)
    else:
        _check_projected_keys(projected_keys, keys, w_key.shape[0], "additive_attention")
    hidden = torch.tanh(F.linear(query, w_query)[:, None, :] + projected_keys)  # (B, S, A)
    scores = hidden @ v  # (B, S, A) @ (A,) -> (B, S)
    weights = masked_softmax(scores, mask)  # (B, S)
    context = (weights[:, None, :] @ keys)[:, 0]  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)
    return context, weights


def dot_product_attention(
    query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Luong's "dot" attention: score_s = q . k_s (no scale), softmax over s, context = sum a_s k_s.

    Shapes: query (B, D), keys (B, S, D), mask (B, S) True = real key -> context (B, D), weights (B, S).
    """
    _check_seq2seq(query, keys, mask, "dot_product_attention", same_size=True)
    scores = (query[:, None, :] @ keys.transpose(1, 2))[:, 0]  # (B, 1, D) @ (B, D, S) -> (B, S)
    weights = masked_softmax(scores, mask)  # (B, S)
    context = (weights[:, None, :] @ keys)[:, 0]  # (B, 1, S) @ (B, S, D) -> (B, D)
    return context, weights


class AdditiveAttention(nn.Module):
    """Bahdanau (additive) attention for the seq2seq decoder: one query against the encoder states."""

    def __init__(self, hidden_size: int, key_size: int | None = None, attn_size: int | None = None):
        super().__init__()
        key_size = hidden_size if key_size is None else key_size
        attn_size = hidden_size if attn_size is None else attn_size
        for name, value in (("hidden_size", hidden_size), ("key_size", key_size), ("attn_size", attn_size)):
            _validate.positive_int(value, name, "AdditiveAttention")
        self.query_proj = nn.Linear(hidden_size, attn_size, bias=False)  # W_q
        self.key_proj = nn.Linear(key_size, attn_size, bias=False)  # W_k
        self.score = nn.Linear(attn_size, 1, bias=False)  # v

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from the decoder state ``query`` over the encoder states ``keys``.

        Shapes: query (B, D), keys (B, S, Dk), mask (B, S) True = real key,
        projected_keys (B, S, A) from ``project_keys`` or None -> context (B, Dk), weights (B, S).
        """
        return additive_attention(query, keys, self.query_proj.weight, self.key_proj.weight,
                                  self.score.weight[0], mask, projected_keys)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """W_k k_s for every encoder state, once per source. Shapes: keys (B, S, Dk) -> (B, S, A)."""
        _validate.tensor(keys, "keys", "AdditiveAttention.project_keys", dims=3, layout="(B, S, Dk)")
        return self.key_proj(keys)


class DotProductAttention(nn.Module):
    """Luong (dot-product) attention for the seq2seq decoder; ``general=True`` adds Luong's W."""

    def __init__(self, hidden_size: int, key_size: int | None = None, general: bool = False):
        super().__init__()
        key_size = hidden_size if key_size is None else key_size
        _validate.positive_int(hidden_size, "hidden_size", "DotProductAttention")
        _validate.positive_int(key_size, "key_size", "DotProductAttention")
        if key_size != hidden_size and not general:
            raise ValueError(f"DotProductAttention expects key_size equal to hidden_size for a plain dot "
                             f"product (or general=True), got key_size={key_size} and "
                             f"hidden_size={hidden_size}")
        # Luong's "general" score q . W k; None for the plain "dot" score.
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False) if general else None

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from the decoder state ``query`` over the encoder states ``keys``.

        Shapes: query (B, D), keys (B, S, Dk), mask (B, S) True = real key,
        projected_keys (B, S, D) from ``project_keys`` (general only) or None
        -> context (B, Dk), weights (B, S).
        """
        if self.key_proj is None:
            if projected_keys is not None:
                raise ValueError("DotProductAttention expects projected_keys=None for the plain dot score "
                                 "(it has no key projection), got a tensor")
            return dot_product_attention(query, keys, mask)
        _check_seq2seq(query, keys, mask, "DotProductAttention")
        if projected_keys is None:
            projected_keys = self.key_proj(keys)  # (B, S, D)
        else:
            _check_projected_keys(projected_keys, keys, query.shape[1], "DotProductAttention")
        projected = projected_keys
        _, weights = dot_product_attention(query, projected, mask)  # (B, S)
        return (weights[:, None, :] @ keys)[:, 0], weights  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor | None:
        """W k_s once per source for the general score; None for the plain dot (nothing to project).

        Shapes: keys (B, S, Dk) -> (B, S, D) or None.
        """
        _validate.tensor(keys, "keys", "DotProductAttention.project_keys", dims=3, layout="(B, S, Dk)")
        return None if self.key_proj is None else self.key_proj(keys)


# ----------------------------------------------------------------------------- self-attention

def _check_attention(q: object, k: object, v: object, mask: object, who: str) -> None:
    batch = _validate.qkv(q, k, v, who)
    if mask is not None:
        _validate.mask(mask, (*batch, q.shape[-2], k.shape[-2]), who, "(..., T, S)")


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
    dropout: nn.Module | None = None, scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(Dh)) v, with a boolean mask (True = allowed); also returns the weights.

    ``dropout`` (MultiHeadAttention's) acts on the weights; ``scale`` replaces 1 / sqrt(Dh).
    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv), mask broadcastable to (..., T, S)
    -> output (..., T, Dv), weights (..., T, S). A query with no allowed key gets zeros.
    """
    _check_attention(q, k, v, mask, "scaled_dot_product_attention")
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)  # (..., T, Dh) @ (..., Dh, S) -> (..., T, S)
    weights = masked_softmax(scores, mask)  # (..., T, S)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights  # (..., T, S) @ (..., S, Dv) -> (..., T, Dv)


def make_causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The causal mask: position t may attend to positions 0..t (True on and below the diagonal).

    Shapes: -> (T, T), broadcastable to (B, H, T, T).
    """
    _validate.positive_int(T, "T", "make_causal_mask")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


def make_padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The padding mask: True at the real (non-pad) key positions, ready for (B, H, T, S) scores.

    Shapes: tokens (B, S) -> (B, 1, 1, S). For the seq2seq attention modules use ``[:, 0, 0]``.
    """
    _validate.token_ids(tokens, "tokens", "make_padding_mask", "(B, S)")
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, S)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Split the last axis into heads: (B, T, D) -> (B, H, T, Dh), with Dh = D // H."""
    if x.dim() != 3 or x.shape[-1] % n_heads:
        raise ValueError(f"split_heads expects x (B, T, D) with D divisible by n_heads={n_heads}, "
                         f"got shape {tuple(x.shape)}")
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, T, H, Dh) -> (B, H, T, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Merge the heads back into the last axis: (B, H, T, Dh) -> (B, T, H * Dh)."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects x (B, H, T, Dh), got shape {tuple(x.shape)}")
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H, Dh) -> (B, T, D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017): H scaled dot-product attentions side by side."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        who = "MultiHeadAttention"
        _validate.divisible(_validate.positive_int(d_model, "d_model", who),
                            _validate.positive_int(n_heads, "n_heads", who), who)
        _validate.probability(dropout, "dropout", who)
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None  # on the attention weights

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from each query position over the key/value positions, in every head.

        Shapes: query (B, T, D), key and value (B, S, D), mask (True = allowed) broadcastable
        to (B, H, T, S), e.g. (T, S) causal or (B, 1, 1, S) padding
        -> output (B, T, D), weights (B, H, T, S).
        """
        self._check_inputs(query, key, value, mask)
        q = split_heads(self.q_proj(query), self.n_heads)  # (B, H, T, Dh)
        k = split_heads(self.k_proj(key), self.n_heads)  # (B, H, S, Dh)
        v = split_heads(self.v_proj(value), self.n_heads)  # (B, H, S, Dh)
        out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)  # (B, H, T, Dh)
        return self.out_proj(merge_heads(out)), weights  # (B, T, D), (B, H, T, S)

    def forward_cached(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Causal self-attention of new positions over the cached earlier ones and themselves.

        The cache (the KV cache of notebook 10) holds the projected keys and values of the
        positions already seen, so a step projects only its new positions and appends them.
        Shapes: x (B, T_new, D), cache (k, v) each (B, H, S_past, Dh) or None
        -> output (B, T_new, D), weights (B, H, T_new, S_past + T_new),
        new cache (k, v) each (B, H, S_past + T_new, Dh).
        """
        self._check_inputs(x, x, x, None)
        q = split_heads(self.q_proj(x), self.n_heads)  # (B, H, T_new, Dh)
        k = split_heads(self.k_proj(x), self.n_heads)  # (B, H, T_new, Dh)
        v = split_heads(self.v_proj(x), self.n_heads)  # (B, H, T_new, Dh)
        if cache is not None:
            self._check_cache(cache, k)
            k = torch.cat([cache[0], k], dim=-2)  # (B, H, S_past + T_new, Dh)
            v = torch.cat([cache[1], v], dim=-2)  # (B, H, S_past + T_new, Dh)
        T_new, S = q.shape[-2], k.shape[-2]
        # new query i sits at position S - T_new + i and may see keys 0 .. S - T_new + i;
        # a single new query sees every key, so it needs no mask
        mask = None if T_new == 1 else torch.ones(T_new, S, dtype=torch.bool, device=x.device).tril(S - T_new)
        out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)  # (B, H, T_new, Dh)
        return self.out_proj(merge_heads(out)), weights, (k, v)  # (B, T_new, D), (B, H, T_new, S)

    def _check_cache(self, cache: object, k: torch.Tensor) -> None:
        who = "MultiHeadAttention.forward_cached"
        if not isinstance(cache, (tuple, list)) or len(cache) != 2:
            raise TypeError(f"{who} expects cache to be a pair (k, v) of tensors (B, H, S_past, Dh) or "
                            f"None, got {type(cache).__name__}")
        B, H, _, Dh = k.shape
        for name, c in zip(("k", "v"), cache, strict=True):
            if not isinstance(c, torch.Tensor) or c.dim() != 4 or (c.shape[0], c.shape[1], c.shape[3]) \
                    != (B, H, Dh):
                got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ValueError(f"{who} expects the cached {name} to be (B, H, S_past, Dh) = ({B}, {H}, "
                                 f"S_past, {Dh}), got {got}")
        if cache[0].shape != cache[1].shape:
            raise ValueError(f"{who} expects cached k and v of one shape, got {tuple(cache[0].shape)} "
                             f"and {tuple(cache[1].shape)}")

    def _check_inputs(self, query: object, key: object, value: object, mask: object) -> None:
        who = "MultiHeadAttention"
        for name, x in (("query", query), ("key", key), ("value", value)):
            _validate.tensor(x, name, who, dims=3, layout="(B, *, D)")
            if x.shape[-1] != self.d_model:
                raise ValueError(f"{who} expects {name} of shape (B, *, d_model={self.d_model}), "
                                 f"got shape {tuple(x.shape)}")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(f"{who} expects query (B, T, D), key and value (B, S, D) that agree on B "
                             f"and S, got {tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}")
        if mask is not None:
            if isinstance(mask, torch.Tensor) and mask.dim() not in (2, 4):
                raise ValueError(f"{who} expects a mask of shape (T, S) or 4-dimensional like (B, 1, T, S) "
                                 f"or (B, 1, 1, S), got shape {tuple(mask.shape)} (a (B, T, S) "
                                 "mask needs mask[:, None])")
            shape = (query.shape[0], self.n_heads, query.shape[1], key.shape[1])
            _validate.mask(mask, shape, who, "(B, H, T, S)")
