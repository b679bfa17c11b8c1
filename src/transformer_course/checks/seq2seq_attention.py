"""Checks for solutions/03_attention_for_seq2seq: additive attention, masked dot attention, and
the context of one decoder step of a real model.

Masks follow the course's convention: boolean, True at the real (non-padding) source tokens.

Shapes: B batch, S source length, H the decoder's state size (the query), Dk the encoder
state size (the keys), A the size of the additive scoring layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..attention import AdditiveAttention, DotProductAttention, dot_product_attention
from ..seq2seq import Seq2Seq, Seq2SeqConfig
from ._core import CheckFailed, CheckResult, call, compare, fmt_shape, run_check

__all__ = ["check_additive_attention", "check_masked_dot_attention", "check_decoder_context"]


def _close(a: object, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().float(), b.float(), atol=atol, rtol=1e-4)))


def _pair(task: str, result: object) -> tuple[object, object]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        size = f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""
        raise CheckFailed(f"{task}: return a pair (context, weights), got {type(result).__name__}{size}")
    return result[0], result[1]


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=dim)


def _diagnose_weights(task: str, w: object, scores: torch.Tensor, mask: torch.Tensor | None,
                      what: str) -> None:
    """Name the usual mistakes in the weights (B, S) made from ``scores`` (B, S)."""
    ref = _masked_softmax(scores, mask)
    if not isinstance(w, torch.Tensor) or w.shape != ref.shape:
        compare(task, w, ref, what=what)  # reports the type or the shape
    w = w.detach().float()
    if _close(w, ref):
        return
    if mask is not None:
        partial = mask.any(1) & (~mask).any(1)  # rows with real tokens and padding
        flipped = _masked_softmax(scores, ~mask)
        if partial.any() and _close(w[partial].nan_to_num(0.0), flipped[partial]):
            raise CheckFailed(f"{task}: the mask has the wrong sign: you blocked the real tokens and "
                              "kept the padding. The mask is True at the real tokens; fill the scores "
                              "where it is False: scores.masked_fill(~mask, float('-inf')).")
    if not torch.isfinite(w).all():
        compare(task, w, ref, what=what)  # reports the NaN or infinity
    if scores.shape[0] > 1 and _close(w, _masked_softmax(scores, mask, dim=0)):
        raise CheckFailed(f"{task}: the weights sum to 1 over the batch (axis 0), not over the source "
                          "positions: take the softmax over the last axis (dim=-1), one distribution "
                          "per example.")
    if mask is not None:
        if _close(w, torch.softmax(scores, -1)):
            raise CheckFailed(f"{task}: the mask is ignored: padding positions still get weight. Fill "
                              "their scores with -inf before the softmax "
                              "(scores.masked_fill(~mask, float('-inf'))).")
        if _close(w, torch.softmax(scores, -1).masked_fill(~mask, 0.0)):
            raise CheckFailed(f"{task}: you applied the mask after the softmax, so each row's weights no "
                              "longer sum to 1. Fill the padding scores with -inf BEFORE the softmax.")
        leaked = w.masked_select(~mask).abs()
        if leaked.numel() and leaked.max() > 1e-6:
            raise CheckFailed(f"{task}: padding positions get weight up to {leaked.max():.3g}; they must "
                              "get exactly 0.")
    sums = w.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise CheckFailed(f"{task}: each example's weights should sum to 1 over the source positions, "
                          f"but they sum to between {sums.min():.4g} and {sums.max():.4g}: did you "
                          "forget the softmax?")
    compare(task, w, ref, what=what)


# ----------------------------------------------------------------------------- task 1: additive

def check_additive_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, w_query, w_key, v) -> (context, weights)``: Bahdanau's attention."""
    task = "additive_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(303)
        cases = [(3, 5, 4, 6, 7), (1, 4, 8, 8, 8), (4, 7, 6, 5, 3)]  # (B, S, H, Dk, A)
        for B, S, H, Dk, A in cases:
            query, keys = torch.randn(B, H, generator=g), torch.randn(B, S, Dk, generator=g)
            w_query, w_key = torch.randn(A, H, generator=g), torch.randn(A, Dk, generator=g)
            v = torch.randn(A, generator=g)
            args = (query, keys, w_query, w_key, v)
            context, w = _pair(task, call(task, fn, *(a.clone() for a in args)))
            where = (f"for query {fmt_shape(query.shape)}, keys {fmt_shape(keys.shape)}, w_query "
                     f"{fmt_shape(w_query.shape)}, w_key {fmt_shape(w_key.shape)}")
            projected = query @ w_query.T  # (B, A)
            hidden = projected[:, None, :] + keys @ w_key.T  # (B, S, A)
            scores = torch.tanh(hidden) @ v  # (B, S)
            if isinstance(w, torch.Tensor) and _close(w, torch.softmax(hidden @ v, -1)):
                raise CheckFailed(f"{task}: {where} you forgot the tanh: the score is "
                                  "v . tanh(W_q q + W_k k_s), a small network with one hidden layer.")
            _diagnose_weights(task, w, scores, None, f"the weights {where}")
            ref_w = torch.softmax(scores, -1)
            ref = (ref_w[:, None, :] @ keys)[:, 0]  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)
            wrong_tensor = (ref_w[:, None, :] @ (keys @ w_key.T))[:, 0]  # (B, A): projected keys
            if _close(context, wrong_tensor):
                raise CheckFailed(f"{task}: {where} the context averages the projected keys W_k k_s; "
                                  "it should average the encoder states themselves: "
                                  "context = sum_s weights_s * keys_s.")
            if isinstance(context, torch.Tensor) and context.shape == (B, A) and A != Dk:
                raise CheckFailed(f"{task}: {where} the context has shape {fmt_shape(context.shape)}, "
                                  f"the size A = {A} of the scoring layer; it is a weighted average "
                                  f"of the keys, shape (B, Dk) = ({B}, {Dk}).")
            compare(task, context, ref, what=f"the context {where}")
        return f"{len(cases)} random inputs with H, Dk and A different"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: masked dot

def _padding_mask(g: torch.Generator, B: int, S: int) -> torch.Tensor:
    lengths = torch.randint(1, S + 1, (B,), generator=g)  # (B,)
    lengths[0], lengths[-1] = S, 1 if B > 1 else S  # one full row and one of a single token
    return torch.arange(S) < lengths[:, None]  # (B, S)


def check_masked_dot_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, mask) -> (context, weights)``: Luong's dot attention, padding masked."""
    task = "masked_dot_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(304)
        cases = [(4, 6, 5), (3, 9, 16), (2, 3, 4)]  # (B, S, H)
        for B, S, H in cases:
            query, keys = torch.randn(B, H, generator=g), torch.randn(B, S, H, generator=g)
            mask = _padding_mask(g, B, S)
            context, w = _pair(task, call(task, fn, query.clone(), keys.clone(), mask.clone()))
            where = f"for query {fmt_shape(query.shape)}, keys {fmt_shape(keys.shape)}, lengths " \
                    f"{mask.sum(1).tolist()}"
            scores = (keys @ query[:, :, None])[..., 0]  # (B, S, H) @ (B, H, 1) -> (B, S)
            if isinstance(w, torch.Tensor) and _close(w, _masked_softmax(scores / math.sqrt(H), mask)):
                raise CheckFailed(f"{task}: {where} you divided the scores by sqrt(H): Luong's dot score "
                                  "is the plain dot product q . k_s (the scaled version comes in "
                                  "notebook 04).")
            _diagnose_weights(task, w, scores, mask, f"the weights {where}")
            ref_context, ref_w = dot_product_attention(query, keys, mask)
            if _close(context, (torch.softmax(scores, -1)[:, None, :] @ keys)[:, 0]):
                raise CheckFailed(f"{task}: {where} the context uses unmasked weights: average the keys "
                                  "with the masked weights you return.")
            compare(task, context, ref_context, what=f"the context {where}")
        return f"{len(cases)} padded batches (full rows and rows of a single token)"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 3: one real step

def _small_model(attention: str, seed: int) -> Seq2Seq:
    """A tiny random Seq2Seq whose embeddings and states have the same size (so mix-ups show)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    size = 12
    module = AdditiveAttention(size, attn_size=7) if attention == "additive" else DotProductAttention(size)
    model = Seq2Seq.from_config(Seq2SeqConfig(15, 15, d_model=size, hidden_size=size), module).eval()
    torch.random.set_rng_state(state)
    return model


def check_decoder_context(fn: Callable) -> CheckResult:
    """Check ``fn(model, src, src_lengths, hidden) -> (context, weights)``: encode, then attend."""
    task = "decoder_context"

    def body() -> str:
        g = torch.Generator().manual_seed(305)
        for kind, seed in (("additive", 31), ("dot", 32)):
            model = _small_model(kind, seed)
            src = torch.randint(4, 15, (4, 6), generator=g)  # (B, S)
            lengths = torch.tensor([6, 2, 4, 1])
            src = src.masked_fill(torch.arange(6) >= lengths[:, None], 0)  # right padding
            hidden = torch.randn(4, 12, generator=g)  # (B, H)
            with torch.no_grad():
                result = call(task, fn, model, src.clone(), lengths.clone(), hidden.clone())
                enc = model.encoder(src, lengths)
                ref_context, ref_w = model.decoder.attention(hidden, enc.outputs, enc.mask)
                embedded = model.encoder.embed(src)  # (B, S, D)
                from_embeddings = model.decoder.attention(hidden, embedded, enc.mask)
                unmasked = model.decoder.attention(hidden, enc.outputs, None)
            where = f"({kind} attention, source lengths {lengths.tolist()})"
            if _close(result, enc.final):
                raise CheckFailed(f"{task}: {where} you returned the encoder's final state: that is the "
                                  "context WITHOUT attention (notebook 02). Attend over all the encoder's "
                                  "outputs with model.decoder.attention.")
            context, w = _pair(task, result)
            if _close(w, from_embeddings[1]) or _close(context, from_embeddings[0]):
                raise CheckFailed(f"{task}: {where} you attended over the source embeddings "
                                  "(model.encoder.embed(src)); attend over the encoder's outputs, "
                                  "model.encoder(src, src_lengths).outputs, the GRU states that have "
                                  "read the sentence.")
            if _close(w, unmasked[1]):
                raise CheckFailed(f"{task}: {where} padding positions get weight: pass the mask of the "
                                  "real tokens (the encoder returns it, .mask) to the attention.")
            if _close(w, ref_w) and _close(context, enc.outputs.sum(1)):
                raise CheckFailed(f"{task}: {where} the context is the plain sum of the encoder outputs; "
                                  "weight each one by its attention weight.")
            compare(task, w, ref_w, what=f"the weights {where}")
            compare(task, context, ref_context, what=f"the context {where}")
        return "a small Seq2Seq with additive and one with dot attention, padded sources"

    return run_check(task, body)

