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

__all__ = [
    "additive_attention", "AdditiveAttention", "dot_product_attention", "DotProductAttention",
    "scaled_dot_product_attention", "make_causal_mask", "make_padding_mask",
    "split_heads", "merge_heads", "MultiHeadAttention",
    "attention_entropy", "temperature_weights", "mask_and_head_weights",
]


# ----------------------------------------------------------------------------- input checks

def _check_tensor(x: object, name: str, who: str, dims: int | None = None, min_dims: int = 0) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: {name} should be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: {name} should be a floating-point tensor, got dtype {x.dtype}")
    if dims is not None and x.dim() != dims:
        raise ValueError(f"{who}: {name} should have {dims} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_dims:
        raise ValueError(f"{who}: {name} should have at least {min_dims} dimensions, "
                         f"got shape {tuple(x.shape)}")


def _check_mask(mask: object, shape: tuple[int, ...], who: str, layout: str) -> None:
    """A boolean mask that broadcasts to ``shape`` (without growing it)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{who}: mask should be a boolean torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{who}: mask should have dtype torch.bool (True = attention allowed), got "
                        f"{mask.dtype}; an additive float mask (0 / -inf) is not this course's "
                        "convention: use `mask == 0` to convert it")
    try:
        ok = mask.dim() <= len(shape) and torch.broadcast_shapes(mask.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{who}: mask of shape {tuple(mask.shape)} does not broadcast to {layout} = "
                         f"{tuple(shape)}")


def _check_qkv_sizes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, who: str) -> None:
    """q and k share the head size Dh; k and v share the number of positions S."""
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{who}: q (..., T, Dh) = {tuple(q.shape)} and k (..., S, Dh) = "
                         f"{tuple(k.shape)} should have the same last dimension Dh")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{who}: k (..., S, Dh) = {tuple(k.shape)} and v (..., S, Dv) = "
                         f"{tuple(v.shape)} should have the same number of positions S")


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis where ``mask`` is True; rows with nothing allowed give zeros."""
    if mask is None:
        return torch.softmax(scores, dim=-1)
    blocked = ~mask
    # The smallest finite number rather than -inf: a fully blocked row stays finite (no NaN in
    # the forward or the backward pass) and is then zeroed.
    scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
    dropout: nn.Module | None = None, scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The computation of scaled dot-product attention, without input checks."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)  # (..., T, Dh) @ (..., Dh, S) -> (..., T, S)
    weights = _masked_softmax(scores, mask)  # (..., T, S)
    used = weights if dropout is None else dropout(weights)
    return used @ v, used  # (..., T, S) @ (..., S, Dh) -> (..., T, Dh)


# ----------------------------------------------------------------------------- seq2seq attention

def _check_seq2seq(query: object, keys: object, mask: object, who: str) -> None:
    _check_tensor(query, "query", who, dims=2)
    _check_tensor(keys, "keys", who, dims=3)
    if keys.shape[0] != query.shape[0]:
        raise ValueError(f"{who}: query (B, D) = {tuple(query.shape)} and keys (B, S, D) = "
                         f"{tuple(keys.shape)} have different batch sizes")
    if mask is not None:
        _check_mask(mask, tuple(keys.shape[:2]), who, "(B, S)")


def additive_attention(
    query: torch.Tensor, keys: torch.Tensor, w_query: torch.Tensor, w_key: torch.Tensor,
    v: torch.Tensor, mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bahdanau's attention: score_s = v . tanh(W_q q + W_k k_s), softmax over s, context = sum a_s k_s.

    Shapes: query (B, Dq), keys (B, S, Dk), w_query (A, Dq), w_key (A, Dk), v (A,),
    mask (B, S) True = real key -> context (B, Dk), weights (B, S).
    """
    _check_seq2seq(query, keys, mask, "additive_attention")
    if w_query.shape[1] != query.shape[1] or w_key.shape[1] != keys.shape[2]:
        raise ValueError(f"additive_attention: w_query {tuple(w_query.shape)} and w_key "
                         f"{tuple(w_key.shape)} do not fit query {tuple(query.shape)} and keys "
                         f"{tuple(keys.shape)} (expected (A, Dq) and (A, Dk))")
    if w_query.shape[0] != w_key.shape[0] or v.shape != (w_key.shape[0],):
        raise ValueError(f"additive_attention: w_query {tuple(w_query.shape)}, w_key "
                         f"{tuple(w_key.shape)} and v {tuple(v.shape)} disagree on the attention size A")
    hidden = torch.tanh(F.linear(query, w_query)[:, None, :] + F.linear(keys, w_key))  # (B, S, A)
    scores = hidden @ v  # (B, S, A) @ (A,) -> (B, S)
    weights = _masked_softmax(scores, mask)  # (B, S)
    context = (weights[:, None, :] @ keys)[:, 0]  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)
    return context, weights


def dot_product_attention(
    query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Luong's "dot" attention: score_s = q . k_s (no scale), softmax over s, context = sum a_s k_s.

    Shapes: query (B, D), keys (B, S, D), mask (B, S) True = real key -> context (B, D), weights (B, S).
    """
    _check_seq2seq(query, keys, mask, "dot_product_attention")
    if query.shape[1] != keys.shape[2]:
        raise ValueError(f"dot_product_attention: query (B, D) = {tuple(query.shape)} and keys "
                         f"(B, S, D) = {tuple(keys.shape)} have different sizes D")
    m = None if mask is None else mask[:, None, :]  # (B, 1, S)
    context, weights = _attend(query[:, None, :], keys, keys, m, scale=1.0)  # (B, 1, D), (B, 1, S)
    return context[:, 0], weights[:, 0]


class AdditiveAttention(nn.Module):
    """Bahdanau (additive) attention for the seq2seq decoder: one query against the encoder states."""

    def __init__(self, hidden_size: int, key_size: int | None = None, attn_size: int | None = None):
        super().__init__()
        key_size = hidden_size if key_size is None else key_size
        attn_size = hidden_size if attn_size is None else attn_size
        for name, value in (("hidden_size", hidden_size), ("key_size", key_size), ("attn_size", attn_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"AdditiveAttention: {name} should be a positive int, got {value!r}")
        self.query_proj = nn.Linear(hidden_size, attn_size, bias=False)  # W_q
        self.key_proj = nn.Linear(key_size, attn_size, bias=False)  # W_k
        self.score = nn.Linear(attn_size, 1, bias=False)  # v

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from the decoder state ``query`` over the encoder states ``keys``.

        Shapes: query (B, D), keys (B, S, Dk), mask (B, S) True = real key
        -> context (B, Dk), weights (B, S).
        """
        return additive_attention(query, keys, self.query_proj.weight, self.key_proj.weight,
                                  self.score.weight[0], mask)


class DotProductAttention(nn.Module):
    """Luong (dot-product) attention for the seq2seq decoder; ``general=True`` adds Luong's W."""

    def __init__(self, hidden_size: int, key_size: int | None = None, general: bool = False):
        super().__init__()
        key_size = hidden_size if key_size is None else key_size
        if not isinstance(hidden_size, int) or hidden_size <= 0 or not isinstance(key_size, int) \
                or key_size <= 0:
            raise ValueError(f"DotProductAttention: hidden_size and key_size should be positive ints, "
                             f"got {hidden_size!r} and {key_size!r}")
        if key_size != hidden_size and not general:
            raise ValueError(f"DotProductAttention: key_size={key_size} differs from hidden_size="
                             f"{hidden_size}; a plain dot product needs equal sizes (use general=True)")
        # Luong's "general" score q . W k; None for the plain "dot" score.
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False) if general else None

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from the decoder state ``query`` over the encoder states ``keys``.

        Shapes: query (B, D), keys (B, S, Dk), mask (B, S) True = real key
        -> context (B, Dk), weights (B, S).
        """
        if self.key_proj is None:
            return dot_product_attention(query, keys, mask)
        _check_seq2seq(query, keys, mask, "DotProductAttention")
        projected = self.key_proj(keys)  # (B, S, D)
        _, weights = dot_product_attention(query, projected, mask)  # (B, S)
        return (weights[:, None, :] @ keys)[:, 0], weights  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)


# ----------------------------------------------------------------------------- self-attention

def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(Dh)) v, with a boolean mask (True = allowed); also returns the weights.

    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv), mask broadcastable to (..., T, S)
    -> output (..., T, Dv), weights (..., T, S). A query with no allowed key gets zeros.
    """
    who = "scaled_dot_product_attention"
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_tensor(x, name, who, min_dims=2)
    _check_qkv_sizes(q, k, v, who)
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError as err:
        raise ValueError(f"{who}: the leading (batch) dimensions of q {tuple(q.shape)}, k "
                         f"{tuple(k.shape)} and v {tuple(v.shape)} do not broadcast") from err
    if mask is not None:
        _check_mask(mask, (*batch, q.shape[-2], k.shape[-2]), who, "(..., T, S)")
    return _attend(q, k, v, mask)


def make_causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The causal mask: position t may attend to positions 0..t (True on and below the diagonal).

    Shapes: -> (T, T), broadcastable to (B, H, T, T).
    """
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"make_causal_mask: T should be a positive int, got {T!r}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


def make_padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The padding mask: True at the real (non-pad) key positions, ready for (B, H, T, S) scores.

    Shapes: tokens (B, S) -> (B, 1, 1, S). For the seq2seq attention modules use ``[:, 0, 0]``.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"make_padding_mask: tokens should be a (B, S) tensor of ids, got {got}")
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"make_padding_mask: tokens should hold integer ids, got dtype {tokens.dtype}")
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, S)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Split the last axis into heads: (B, T, D) -> (B, H, T, Dh), with Dh = D // H."""
    if x.dim() != 3 or x.shape[-1] % n_heads:
        raise ValueError(f"split_heads: expected (B, T, D) with D divisible by n_heads={n_heads}, "
                         f"got shape {tuple(x.shape)}")
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, T, H, Dh) -> (B, H, T, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Merge the heads back into the last axis: (B, H, T, Dh) -> (B, T, H * Dh)."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads: expected (B, H, T, Dh), got shape {tuple(x.shape)}")
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H, Dh) -> (B, T, D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017): H scaled dot-product attentions side by side."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MultiHeadAttention: {name} should be a positive int, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} is not divisible by "
                             f"n_heads={n_heads}; each head needs d_model // n_heads dimensions")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout should be in [0, 1), got {dropout}")
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
        out, weights = _attend(q, k, v, mask, self.dropout)  # (B, H, T, Dh), (B, H, T, S)
        return self.out_proj(merge_heads(out)), weights  # (B, T, D)

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
        out, weights = _attend(q, k, v, mask, self.dropout)  # (B, H, T_new, Dh), (B, H, T_new, S)
        return self.out_proj(merge_heads(out)), weights, (k, v)  # (B, T_new, D)

    def _check_cache(self, cache: object, k: torch.Tensor) -> None:
        who = "MultiHeadAttention.forward_cached"
        if not isinstance(cache, (tuple, list)) or len(cache) != 2:
            raise TypeError(f"{who}: cache should be a pair (k, v) of tensors (B, H, S_past, Dh) or "
                            f"None, got {type(cache).__name__}")
        B, H, _, Dh = k.shape
        for name, c in zip(("k", "v"), cache, strict=True):
            if not isinstance(c, torch.Tensor) or c.dim() != 4 or (c.shape[0], c.shape[1], c.shape[3]) \
                    != (B, H, Dh):
                got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ValueError(f"{who}: cached {name} should be (B, H, S_past, Dh) = ({B}, {H}, "
                                 f"S_past, {Dh}), got {got}")
        if cache[0].shape != cache[1].shape:
            raise ValueError(f"{who}: cached k {tuple(cache[0].shape)} and v {tuple(cache[1].shape)} "
                             "differ in shape")

    def _check_inputs(self, query: object, key: object, value: object, mask: object) -> None:
        who = "MultiHeadAttention"
        for name, x in (("query", query), ("key", key), ("value", value)):
            _check_tensor(x, name, who, dims=3)
            if x.shape[-1] != self.d_model:
                raise ValueError(f"{who}: {name} should be (B, *, d_model={self.d_model}), "
                                 f"got shape {tuple(x.shape)}")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(f"{who}: query (B, T, D) = {tuple(query.shape)}, key and value "
                             f"(B, S, D) = {tuple(key.shape)}, {tuple(value.shape)} do not agree "
                             "on B and S")
        if mask is not None:
            if isinstance(mask, torch.Tensor) and mask.dim() not in (2, 4):
                raise ValueError(f"{who}: mask should be (T, S) or 4-dimensional like (B, 1, T, S) "
                                 f"or (B, 1, 1, S), got shape {tuple(mask.shape)} (a (B, T, S) "
                                 "mask needs mask[:, None])")
            shape = (query.shape[0], self.n_heads, query.shape[1], key.shape[1])
            _check_mask(mask, shape, who, "(B, H, T, S)")


# ----------------------------------------------------------------------------- the widgets' logic

def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """The entropy (in nats) of each row of attention weights; 0 log 0 counts as 0.

    Shapes: weights (..., S) -> (...,). Uniform over S keys gives log(S); one-hot gives 0.
    """
    return -(weights * weights.clamp_min(1e-30).log()).sum(-1)


def temperature_weights(
    d_k: int, temperature: float = 1.0, scaled: bool = True, n_tokens: int = 8, seed: int = 0,
) -> tuple[torch.Tensor, float]:
    """Weights of self-attention on random unit-variance q, k of size d_k; divided by temperature.

    The logits are q k^T (/ sqrt(d_k) when ``scaled``) / temperature.
    Shapes: -> weights (n_tokens, n_tokens), their mean row entropy (nats).
    """
    if isinstance(d_k, bool) or not isinstance(d_k, int) or d_k <= 0:
        raise ValueError(f"temperature_weights: d_k should be a positive int, got {d_k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature_weights: temperature should be > 0, got {temperature}")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_tokens, d_k, generator=g, dtype=torch.float64)  # (T, Dh)
    k = torch.randn(n_tokens, d_k, generator=g, dtype=torch.float64)  # (S, Dh)
    scale = (1 / math.sqrt(d_k) if scaled else 1.0) / temperature
    _, weights = _attend(q, k, k, None, scale=scale)  # (T, S)
    return weights.float(), attention_entropy(weights).mean().item()


def mask_and_head_weights(
    seq_len: int, n_pad: int, causal: bool, head: int, n_heads: int = 4, d_model: int = 32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask built from (length, pad count, causal) and one head's weights under it.

    A fixed, seeded MultiHeadAttention attends over a random sequence whose last ``n_pad``
    tokens (at most ``seq_len``) are padding. Shapes: -> mask (T, T), weights (T, T) of head ``head``.
    """
    if seq_len < 1 or n_pad < 0:
        raise ValueError(f"mask_and_head_weights: need seq_len >= 1 and n_pad >= 0, "
                         f"got seq_len={seq_len}, n_pad={n_pad}")
    n_pad = min(n_pad, seq_len)  # all padding is allowed: every row then gets zero weights
    if not 0 <= head < n_heads:
        raise ValueError(f"mask_and_head_weights: head should be in [0, {n_heads}), got {head}")
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
