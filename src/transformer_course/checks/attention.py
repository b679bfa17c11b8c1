"""Checks for solutions/04_self_attention and solutions/05_masks_and_multi_head.

Masks follow the course's convention: boolean, True where attention is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._core import CheckFailed, call, check_distribution, compare, fmt_shape, run_check

__all__ = ["check_scaled_dot_product_attention", "check_self_attention", "check_causal_mask",
           "check_split_heads", "check_merge_heads"]


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4))


# ----------------------------------------------------------------------------- scaled dot-product

def _softmax_weights(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """The reference's weights for given (already scaled) scores: rows with nothing allowed -> 0."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=dim).nan_to_num(0.0)


def _fitted_scale(w: torch.Tensor, raw: torch.Tensor) -> float | None:
    """The c for which w = softmax(c * raw) over the last axis, or None if no c fits.

    Compares each weight with its row's largest, log w_s - log w_max = c (raw_s - raw_max),
    on the weights that did not underflow.
    """
    w, raw = w.double(), raw.double()
    top = w.argmax(-1, keepdim=True)
    a = w.clamp_min(1e-300).log() - w.gather(-1, top).clamp_min(1e-300).log()
    b = raw - raw.gather(-1, top)
    keep = w > 1e-25
    if (b[keep] ** 2).sum() < 1e-12:
        return None
    c = (a[keep] * b[keep]).sum() / (b[keep] ** 2).sum()
    return c.item() if torch.allclose(a[keep], c * b[keep], atol=1e-3, rtol=1e-4) else None


def _diagnose_scale(task: str, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> None:
    d = q.shape[-1]
    raw = q @ k.transpose(-2, -1)  # (..., T, S)
    c = _fitted_scale(w, raw)
    if c is None or math.isclose(c, 1 / math.sqrt(d), rel_tol=1e-3):
        return
    where = f"for q {fmt_shape(q.shape)} (d_k = q.shape[-1] = {d})"
    if math.isclose(c, 1.0, rel_tol=1e-3):
        raise CheckFailed(f"{task}: the scores are not scaled {where}: divide q @ k^T by "
                          f"sqrt(d_k) = {math.sqrt(d):.4g}, or the softmax saturates as d_k grows.")
    if math.isclose(c, 1 / d, rel_tol=1e-3):
        raise CheckFailed(f"{task}: you divided the scores by d_k = {d} {where}; divide by its "
                          f"square root, sqrt(d_k) = {math.sqrt(d):.4g}.")
    if q.dim() >= 4 and math.isclose(c, 1 / math.sqrt(q.shape[-3] * d), rel_tol=1e-3):
        raise CheckFailed(f"{task}: you scaled by sqrt({q.shape[-3] * d}) = sqrt(H * Dh), the model "
                          f"size d_model, {where}; each head is scaled by its own size: "
                          f"sqrt(Dh) = sqrt(q.shape[-1]) = {math.sqrt(d):.4g}.")
    raise CheckFailed(f"{task}: your scores are multiplied by {c:.4g} (= 1/{1 / c:.4g}) {where}; "
                      f"they should be divided by sqrt(d_k) = {math.sqrt(d):.4g}.")


def _diagnose_mask(task: str, w: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> None:
    if torch.isneginf(w).any():
        raise CheckFailed(f"{task}: the weights contain -inf: you filled the weights (after the "
                          "softmax) instead of the scores (before it). Fill the blocked scores with "
                          "-inf, then take the softmax.")
    full = mask.expand(scores.shape)
    if _close(w, _softmax_weights(scores, ~full)):
        raise CheckFailed(f"{task}: the mask has the wrong sign: you blocked the keys where the mask "
                          "is True. In this course True means 'may attend' (as in "
                          "F.scaled_dot_product_attention): fill the scores where the mask is False "
                          "(scores.masked_fill(~mask, float('-inf'))).")
    unmasked = torch.softmax(scores, -1)
    if _close(w, unmasked.masked_fill(~full, 0.0)):
        raise CheckFailed(f"{task}: you applied the mask after the softmax, so each query's weights "
                          "no longer sum to 1. Fill the blocked scores with -inf before the softmax.")
    if _close(w, unmasked):
        raise CheckFailed(f"{task}: the mask is ignored: blocked keys still get weight. Fill the "
                          "scores where the mask is False with -inf before the softmax.")
    leaked = w.masked_select(~full).abs()
    if leaked.numel() and leaked.max() > 1e-6:
        raise CheckFailed(f"{task}: keys that the mask blocks get weight up to {leaked.max():.3g}; "
                          "blocked keys must get exactly 0.")


def _check_attention_case(
    task: str, fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    mask: torch.Tensor | None,
) -> None:
    args = (q.clone(), k.clone(), v.clone()) + (() if mask is None else (mask.clone(),))
    result = call(task, fn, *args)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(f"{task}: return a pair (output, weights), got {type(result).__name__}"
                          + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    out, w = result
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S)
    ref_w = _softmax_weights(scores, mask)
    what = f"the weights for q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)}" + (
        "" if mask is None else f", mask {fmt_shape(mask.shape)}")
    if not isinstance(w, torch.Tensor) or w.shape != ref_w.shape:
        compare(task, w, ref_w, what=what)  # reports the type or the shape
    w = w.detach().float()
    if mask is not None:
        _diagnose_mask(task, w.nan_to_num(0.0, posinf=0.0, neginf=float("-inf")), scores, mask)
    if not torch.isfinite(w).all():
        compare(task, w, ref_w, what=what)  # reports the NaN or infinity
    if mask is None:
        rows, cols = w.sum(-1), w.sum(-2)
        if (not torch.allclose(rows, torch.ones_like(rows), atol=1e-4)
                and torch.allclose(cols, torch.ones_like(cols), atol=1e-4)):
            raise CheckFailed(f"{task}: the weights sum to 1 over the queries (axis -2): each "
                              "query's weights over the keys must sum to 1, so take the softmax "
                              "over the last axis (dim=-1).")
        _diagnose_scale(task, w, q, k)
    check_distribution(task, w, ref_w) if mask is None else compare(task, w, ref_w, what=what)
    compare(task, out, ref_w @ v, what=f"the output (weights @ v) for q {fmt_shape(q.shape)}")


def check_scaled_dot_product_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v, mask=None) -> (output, weights)`` without and with masks (True = allowed)."""
    task = "scaled_dot_product_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(404)
        plain = [((2, 4), 5, 6, 8), ((3,), 4, 7, 16), ((), 6, 3, 4)]  # (batch, T, S, Dh)
        for batch, T, S, d in plain:
            q, k = torch.randn(*batch, T, d, generator=g), torch.randn(*batch, S, d, generator=g)
            _check_attention_case(task, fn, q, k, torch.randn(*batch, S, 5, generator=g), None)
        q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
        random = torch.rand(2, 3, 6, 6, generator=g) > 0.5
        random[..., 0] = True  # every query keeps a key
        lengths = torch.tensor([6, 2])
        padding = (torch.arange(6) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
        causal = torch.ones(6, 6, dtype=torch.bool).tril()
        for mask in (random, padding, causal):
            _check_attention_case(task, fn, q, k, v, mask)
        empty = causal.clone()
        empty[2] = False  # query 2 may see nothing
        result = call(task, fn, q.clone(), k.clone(), v.clone(), empty)
        out, w = result
        if not (torch.isfinite(out).all() and torch.isfinite(w).all()):
            raise CheckFailed(f"{task}: a query whose keys are all blocked gives NaN (the softmax of "
                              "a row of -inf is 0/0). Return zero weights for it: after the softmax, "
                              "weights = weights.masked_fill(~mask, 0.0).")
        if w[..., 2, :].abs().max() > 1e-6:
            raise CheckFailed(f"{task}: a query whose keys are all blocked should get zero weights "
                              f"(and a zero output), got weights summing to {w[0, 0, 2].sum():.3g}: "
                              "after the softmax, weights = weights.masked_fill(~mask, 0.0).")
        _check_attention_case(task, fn, q, k, v, empty)
        return (f"{len(plain)} unmasked shapes and random, padding (B, 1, 1, S), causal and "
                "fully blocked masks")

    return run_check(task, body)


# The seeded-cases loop below has the shape of every check's (check_additive_attention's too):
# each task draws its own inputs, so that its messages can name them. Kept per task on purpose.
def check_self_attention(fn: Callable) -> bool:
    """Check ``fn(x, w_q, w_k, w_v) -> (output, weights)``: q = x @ w_q, k = x @ w_k, v = x @ w_v."""
    task = "self_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(405)
        cases = [(2, 5, 12, 4, 6), (1, 7, 8, 16, 3), (3, 4, 6, 2, 2)]  # (B, T, D, Dh, Dv)
        for B, T, D, Dh, Dv in cases:
            x = torch.randn(B, T, D, generator=g)
            w_q, w_k = torch.randn(D, Dh, generator=g), torch.randn(D, Dh, generator=g)
            w_v = torch.randn(D, Dv, generator=g)
            result = call(task, fn, x.clone(), w_q.clone(), w_k.clone(), w_v.clone())
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise CheckFailed(f"{task}: return a pair (output, weights), got {type(result).__name__}")
            out, w = result
            q, k, v = x @ w_q, x @ w_k, x @ w_v
            ref_w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(Dh), -1)  # (B, T, T)
            where = f"for x {fmt_shape(x.shape)}, w_q and w_k {fmt_shape(w_q.shape)}"
            if isinstance(w, torch.Tensor) and w.shape == ref_w.shape and torch.isfinite(w).all():
                w = w.detach().float()
                if _close(w, torch.softmax(q @ q.transpose(-2, -1) / math.sqrt(Dh), -1)):
                    raise CheckFailed(f"{task}: {where} the keys are x @ w_q: compute k = x @ w_k.")
                if _close(w, torch.softmax(x @ x.transpose(-2, -1) / math.sqrt(D), -1)):
                    raise CheckFailed(f"{task}: {where} the weights come from x itself: project "
                                      "first, q = x @ w_q and k = x @ w_k.")
                c = _fitted_scale(w, q @ k.transpose(-2, -1))
                if c is not None and math.isclose(c, 1 / math.sqrt(D), rel_tol=1e-3):
                    raise CheckFailed(f"{task}: {where} you divided by sqrt(D) = sqrt({D}), the size "
                                      f"of x; divide by the size of the queries and keys, "
                                      f"sqrt(Dh) = sqrt(w_q.shape[1]) = {math.sqrt(Dh):.4g}.")
                _diagnose_scale(task, w, q, k)
            check_distribution(task, w, ref_w)
            if isinstance(out, torch.Tensor) and out.shape == (B, T, D) and Dv != D:
                raise CheckFailed(f"{task}: {where} the output has x's size {D}: the values are "
                                  f"v = x @ w_v, of size {Dv}.")
            compare(task, out, ref_w @ v, atol=1e-4, what=f"the output (weights @ v) {where}")
        return f"{len(cases)} random inputs with D != Dh"

    return run_check(task, body)


# ----------------------------------------------------------------------------- masks and heads

def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> bool:
    """Check ``fn(T) -> (T, T)`` boolean mask, True where query t may see key s (s <= t)."""
    task = "causal_mask"

    def body() -> str:
        sizes = (4, 1, 7)
        for T in sizes:
            got = call(task, fn, T)
            ref = torch.ones(T, T, dtype=torch.bool).tril()
            if not isinstance(got, torch.Tensor):
                raise CheckFailed(f"{task}: return a torch.Tensor, got {type(got).__name__}")
            if got.shape != ref.shape:
                raise CheckFailed(f"{task}: for T={T} the mask should have shape {fmt_shape(ref.shape)} "
                                  f"(queries x keys), got {fmt_shape(got.shape)}")
            if got.dtype != torch.bool:
                hint = (" It holds -inf: that is an additive mask; this course's masks are boolean, "
                        "True where attention is allowed." if got.is_floating_point()
                        and torch.isneginf(got).any() else
                        " Build it with dtype=torch.bool (or call .bool()).")
                raise CheckFailed(f"{task}: the mask should be a boolean tensor (True = may attend), "
                                  f"got dtype {got.dtype}.{hint}")
            if torch.equal(got, ref):
                continue
            if torch.equal(got, ref.tril(-1)):
                raise CheckFailed(f"{task}: the diagonal is False, so a position cannot attend to "
                                  "itself (and the first query sees nothing). Keep the diagonal: "
                                  "torch.tril with the default diagonal=0.")
            if torch.equal(got, ~ref):
                raise CheckFailed(f"{task}: the mask has the wrong sign: it is True on the future "
                                  "positions. True means 'may attend': query t may see keys 0..t.")
            if torch.equal(got, ref.T):
                raise CheckFailed(f"{task}: you built the upper triangle (the future) instead of the "
                                  "lower one: row t is the query, column s the key, and s <= t is "
                                  "allowed: use torch.tril.")
            if got.all():
                raise CheckFailed(f"{task}: the mask is all True: it blocks nothing.")
            bad = (got != ref).nonzero()[0].tolist()
            raise CheckFailed(f"{task}: for T={T}, at (query {bad[0]}, key {bad[1]}) got "
                              f"{bool(got[bad[0], bad[1]])}, expected {bool(ref[bad[0], bad[1]])} "
                              "(True exactly where key <= query).")
        return f"T = {', '.join(map(str, sizes))}"

    return run_check(task, body)


def check_split_heads(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(x, n_heads)``: (B, T, D) -> (B, H, T, Dh), head h holding features h*Dh..(h+1)*Dh-1."""
    task = "split_heads"

    def body() -> str:
        g = torch.Generator().manual_seed(77)
        cases = [(2, 5, 12, 3), (3, 4, 16, 2), (1, 3, 8, 8)]  # (B, T, D, H)
        for B, T, D, H in cases:
            x = torch.randn(B, T, D, generator=g)
            got = call(task, fn, x.clone(), H)
            ref = x.view(B, T, H, D // H).transpose(1, 2)
            where = f"for x {fmt_shape(x.shape)} and n_heads={H}"
            if isinstance(got, torch.Tensor) and got.shape == (B, T, H, D // H) and got.shape != ref.shape:
                raise CheckFailed(f"{task}: {where} you returned (B, T, H, Dh) = {fmt_shape(got.shape)}; "
                                  "the heads go before the positions: .transpose(1, 2) to get "
                                  f"(B, H, T, Dh) = {fmt_shape(ref.shape)}.")
            if isinstance(got, torch.Tensor) and got.shape == ref.shape:
                got = got.detach()
                if _close(got, x.reshape(B, H, T, D // H)) and not _close(got, ref):
                    raise CheckFailed(f"{task}: {where} you reshaped (B, T, D) straight to (B, H, T, "
                                      "Dh): that cuts the sequence into blocks instead of cutting each "
                                      "vector into heads. View as (B, T, H, Dh) first, then "
                                      ".transpose(1, 2).")
                if _close(got, x.view(B, T, D // H, H).permute(0, 3, 1, 2)) and not _close(got, ref):
                    raise CheckFailed(f"{task}: {where} head h takes every H-th feature; it should "
                                      "take the consecutive features h*Dh .. (h+1)*Dh - 1: view as "
                                      "(B, T, H, Dh), not (B, T, Dh, H).")
            compare(task, got, ref, what=f"the result {where}")
        return f"{len(cases)} random inputs with T != H"

    return run_check(task, body)


# Mirrors check_split_heads on purpose: the inverse operation, diagnosed by the inverse mistakes.
def check_merge_heads(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(x)``: (B, H, T, Dh) -> (B, T, H * Dh), the inverse of split_heads."""
    task = "merge_heads"

    def body() -> str:
        g = torch.Generator().manual_seed(78)
        cases = [(2, 3, 5, 4), (3, 2, 4, 8), (1, 8, 3, 1)]  # (B, H, T, Dh)
        for B, H, T, Dh in cases:
            x = torch.randn(B, H, T, Dh, generator=g)
            try:
                got = fn(x.clone())
            except NotImplementedError:
                raise
            except Exception as err:  # the learner's code may raise anything
                if isinstance(err, RuntimeError) and "view" in str(err):
                    raise CheckFailed(f"{task}: .view failed ({err}). After .transpose(1, 2) the "
                                      "tensor is not contiguous in memory: call .contiguous() before "
                                      ".view(...), or use .reshape(...).") from err
                got = call(task, fn, x.clone())  # reports the error in words
            ref = x.transpose(1, 2).reshape(B, T, H * Dh)
            where = f"for x {fmt_shape(x.shape)}"
            if isinstance(got, torch.Tensor) and got.shape == ref.shape:
                got = got.detach()
                if _close(got, x.reshape(B, T, H * Dh)) and not _close(got, ref):
                    raise CheckFailed(f"{task}: {where} you reshaped (B, H, T, Dh) straight to (B, T, "
                                      "D) without .transpose(1, 2): that mixes positions of different "
                                      "heads. Transpose to (B, T, H, Dh) first, then reshape.")
                if _close(got, x.permute(0, 2, 3, 1).reshape(B, T, H * Dh)) and not _close(got, ref):
                    raise CheckFailed(f"{task}: {where} the features are interleaved across heads; "
                                      "head h's Dh features should stay together, at h*Dh .. "
                                      "(h+1)*Dh - 1: transpose(1, 2), then reshape.")
            compare(task, got, ref, what=f"the result {where}")
        return f"{len(cases)} random inputs, including H = 8 with Dh = 1"

    return run_check(task, body)
