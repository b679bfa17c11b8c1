"""Checks for solutions/04_self_attention and solutions/05_masks_and_multi_head.

Shapes: B batch, H heads, T queries, S keys, D d_model, Dh head size (D // H).
Masks follow the course's convention: boolean, True where attention is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..attention import MultiHeadAttention
from ..measure import fit_exponent
from ._core import (
    SHORTCUTS,
    CheckFailed,
    as_float,
    backpropagate,
    call,
    check_distribution,
    close,
    compare,
    fmt_shape,
    run_check,
    unpack,
)

__all__ = ["check_scaled_dot_product_attention", "check_masked_attention", "check_predict_variance_exponent",
           "check_measure_score_variance", "check_causal_padding_mask", "check_multi_head_attention",
           "check_influence_matrix"]

# The library's attention, and the course's, are switched off while the learner's code runs.
_NO_ATTENTION = SHORTCUTS["attention"] + ("transformer_course.attention:scaled_dot_product_attention",)


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
    raw = q.double() @ k.double().transpose(-2, -1)  # (..., T, S)
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
    """Name the mask mistake behind weights ``w`` (float64) for float64 ``scores``.

    A mask that allows every key can show only the first two mistakes (-inf in the weights, the
    wrong sign); the others need a blocked key.
    """
    if torch.isneginf(w).any():
        raise CheckFailed(f"{task}: the weights contain -inf: you filled the weights (after the "
                          "softmax) instead of the scores (before it). Fill the blocked scores with "
                          "-inf, then take the softmax.")
    full = mask.expand(scores.shape)
    if close(w, _softmax_weights(scores, ~full)):
        raise CheckFailed(f"{task}: the mask has the wrong sign: you blocked the keys where the mask "
                          "is True. In this course True means 'may attend' (as in "
                          "F.scaled_dot_product_attention): fill the scores where the mask is False "
                          "(scores.masked_fill(~mask, float('-inf'))).")
    if full.all():
        return
    unmasked = torch.softmax(scores, -1)
    times = torch.softmax(scores * full, -1)  # the scores multiplied by the 0/1 mask
    if not close(times, _softmax_weights(scores, mask)) and (
            close(w, times) or close(w, times.masked_fill(~full, 0.0))):
        raise CheckFailed(f"{task}: you multiplied the scores by the mask: a blocked score becomes 0, not "
                          "-inf, so the softmax still gives that key weight (exp(0) = 1) and the allowed "
                          "keys' weights change. Fill the blocked scores instead: "
                          "scores.masked_fill(~mask, float('-inf')), then take the softmax.")
    if close(w, unmasked.masked_fill(~full, 0.0)):
        raise CheckFailed(f"{task}: you applied the mask after the softmax, so each query's weights "
                          "no longer sum to 1. Fill the blocked scores with -inf before the softmax.")
    if close(w, unmasked):
        raise CheckFailed(f"{task}: the mask is ignored: blocked keys still get weight. Fill the "
                          "scores where the mask is False with -inf before the softmax.")
    leaked = w.masked_select(~full & full.any(-1, keepdim=True)).abs()
    if leaked.numel() and leaked.max() > 0:
        raise CheckFailed(f"{task}: keys that the mask blocks get weight up to {leaked.max():.3g}, "
                          "where they must get exactly 0: a finite fill value such as -100 leaves "
                          "exp(-100) > 0. Fill the blocked scores with float('-inf').")


def _far_below_case(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (5, 4), k (6, 4), v (6, 3): query 0's scores are all near -100, the others' near +100."""
    T, S = 5, 6
    sign = torch.ones(T)
    sign[0] = -1.0
    q = torch.cat([10 * sign[:, None], torch.randn(T, 3, generator=g)], dim=1)  # (T, 4)
    k = torch.cat([torch.full((S, 1), 20.0), torch.randn(S, 3, generator=g)], dim=1)  # (S, 4)
    return q, k, torch.randn(S, 3, generator=g)


def _diagnose_far_below(task: str, w: torch.Tensor) -> None:
    """Weights of the far-below case: which rows broke, and so which softmax slip it was."""
    bad = ~torch.isfinite(w).all(-1) | (w.sum(-1) - 1).abs().gt(1e-3)  # (T,) broken rows
    if bad[1:].any():
        raise CheckFailed(f"{task}: for scores near +100 your weights hold NaN or infinity: exp(100) "
                          "overflows float32. Subtract each query's largest score before exp "
                          "(scores - scores.amax(-1, keepdim=True)), or use torch.softmax.")
    if bad[0]:
        raise CheckFailed(f"{task}: query 0, whose scores are all far below the others' (near -100 "
                          "against +100), gets weights that do not sum to 1 (NaN or zeros): you "
                          "subtracted one maximum for the whole tensor, so exp underflows to 0 on that "
                          "row. Subtract each query's own maximum: scores.amax(-1, keepdim=True).")


def _far_masked_case(g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """q (4, 4), k (4, 4), v (4, 3), mask (4, 4): allowed scores far below the blocked ones.

    k = 2 I, so the scaled scores q @ k^T / sqrt(4) are q itself, exactly. Query 0: allowed keys
    near -300, blocked ones near +300; query 1: allowed and blocked near -200; query 2: allowed
    near 0, blocked near +200; query 3: ordinary scores.
    """
    small = (4 * torch.randn(4, 4, generator=g)).round() / 4  # exact in float32
    base = torch.tensor([[-300.0, -300.0, 300.0, 300.0], [-200.0, -200.0, -200.0, -230.0],
                         [0.0, 0.0, 0.0, 200.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False], [True, True, False, False],
                         [True, True, True, False], [True, False, True, True]])
    return base + small, 2 * torch.eye(4), torch.randn(4, 3, generator=g), mask


def _diagnose_far_masked(task: str, w: torch.Tensor, ref_w: torch.Tensor) -> None:
    """Weights of the far-apart masked case: which rows broke, and so which masking slip it was."""
    bad = [not close(w[t], ref_w[t], atol=1e-5, rtol=1e-4) for t in range(4)]
    sums = ", ".join(f"{v:.3g}" for v in w.nan_to_num(0.0).sum(-1).tolist())
    lost = [t for t in range(4) if bad[t] and not torch.isfinite(w[t]).all()]
    if lost:
        raise CheckFailed(f"{task}: the weights of query {' and '.join(map(str, lost))} hold NaN (each "
                          f"query's weights sum to {sums}, NaN read as 0): the allowed scores lie far below "
                          "the largest score you subtracted (query 0: allowed near -300; query 1: near "
                          "-200), so exp underflows to 0 on every allowed key and the softmax divides 0 by "
                          "0. Subtract each query's own largest allowed score: fill the blocked scores with "
                          "-inf first, then scores.amax(-1, keepdim=True) (or use torch.softmax), not one "
                          "maximum for the whole tensor.")
    if bad[0] and bad[2] and not bad[1]:
        raise CheckFailed(f"{task}: you applied the mask after the softmax and renormalised the allowed "
                          "weights. That fails when the blocked keys' scores are far above the allowed "
                          "ones (query 0: allowed near -300, blocked near +300; query 2: allowed near 0, "
                          "blocked near +200): exp of the allowed scores underflows to 0 before the mask "
                          f"is applied, so nothing is left to renormalise (each query's weights sum to "
                          f"{sums}). Fill the blocked scores with -inf before the softmax.")
    if bad[0] and bad[1] and not bad[2]:
        raise CheckFailed(f"{task}: you filled the blocked scores with a finite value (such as -100) and "
                          "zeroed their weights after the softmax. A query whose allowed scores all lie "
                          "below that value (query 1: near -200; query 0: near -300, its blocked ones "
                          "near +300) gives its weight to the blocked keys, and zeroing them leaves "
                          f"almost nothing (each query's weights sum to {sums}). Fill with "
                          "float('-inf') or torch.finfo(scores.dtype).min.")
    if any(bad):
        raise CheckFailed(f"{task}: for a query whose allowed scores are far below its blocked ones "
                          "(query 0: allowed near -300, blocked near +300) your weights are wrong (each "
                          f"query's weights sum to {sums}): the blocked keys must not matter at all, "
                          "whatever their scores. Fill the blocked scores with -inf before the softmax, "
                          "not after it, and not with a finite value such as -100.")


def _squeezed(got: object, shape: torch.Size) -> bool:
    """True when ``got`` has ``shape`` with its size-1 axes dropped (.squeeze())."""
    return (isinstance(got, torch.Tensor) and got.shape != shape and 1 in shape
            and tuple(got.shape) == tuple(n for n in shape if n != 1))


def _check_attention_case(
    task: str, fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    mask: torch.Tensor | None, far_below: bool = False, far_masked: bool = False,
) -> tuple:
    """Check the values on one input; return what ``_check_attention_gradients`` needs for it.

    Without a mask, or with one that allows every key, the weights are those of plain attention:
    the slips of the scale, the axis and the sums are named then.
    """
    args = (q.clone(), k.clone(), v.clone()) + (() if mask is None else (mask.clone(),))
    out, w = unpack(task, call(task, fn, *args, forbid=_NO_ATTENTION), ("output", "weights"))
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S)
    ref_w = _softmax_weights(scores, mask)
    out_shape = (*ref_w.shape[:-1], v.shape[-1])
    if (isinstance(out, torch.Tensor) and isinstance(w, torch.Tensor) and out.shape == ref_w.shape
            and w.shape == out_shape and out_shape != ref_w.shape):
        raise CheckFailed(f"{task}: you returned (weights, output); return (output, weights): the output "
                          f"{fmt_shape(out_shape)} first, then the weights {fmt_shape(ref_w.shape)}.")
    what = f"the tensor of weights for q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)}" + (
        "" if mask is None else f", mask {fmt_shape(mask.shape)}")
    for name, got, shape in (("weights", w, ref_w.shape), ("output", out, out_shape)):
        if _squeezed(got, shape):
            raise CheckFailed(f"{task}: for q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)} your {name} have "
                              f"shape {fmt_shape(got.shape)}, expected {fmt_shape(shape)}: an axis of size 1 "
                              "was dropped (.squeeze() drops every one, also a single query T = 1, as in "
                              "generation, or a batch of 1). Keep the shapes (..., T, S) and (..., T, Dv).")
    if not isinstance(w, torch.Tensor) or w.shape != ref_w.shape:
        compare(task, w, ref_w, what=what, dtype=q.dtype)  # reports the type or the shape
    w64 = w.detach().double()
    if far_below:
        _diagnose_far_below(task, w64)
    everything = mask is None or bool(mask.all())  # every key allowed: plain attention's weights
    if mask is not None:
        _diagnose_mask(task, w64.nan_to_num(0.0, posinf=0.0, neginf=float("-inf")), scores, mask)
    if far_masked:
        _diagnose_far_masked(task, w64, ref_w)
    if not torch.isfinite(w64).all():
        compare(task, w, ref_w, what=what, dtype=q.dtype)  # reports the NaN or infinity
    if everything and not far_below:
        rows, cols = w64.sum(-1), w64.sum(-2)
        if (not torch.allclose(rows, torch.ones_like(rows), atol=1e-4)
                and torch.allclose(cols, torch.ones_like(cols), atol=1e-4)):
            raise CheckFailed(f"{task}: the weights sum to 1 over the queries (axis -2): each "
                              "query's weights over the keys must sum to 1, so take the softmax "
                              "over the last axis (dim=-1).")
        _diagnose_weights_scaled(task, rows, q)
        _diagnose_scale(task, w64, q, k)
    if w.dtype != q.dtype:
        compare(task, w, ref_w, what=what, dtype=q.dtype)  # reports the dtype
    if everything:
        check_distribution(task, w64, ref_w, what=what)
    else:
        compare(task, w, ref_w, what=what, dtype=q.dtype)
    compare(task, out, ref_w @ v.double(), what=f"the output (weights @ v) for q {fmt_shape(q.shape)}",
            dtype=q.dtype)
    return (q, k, v), mask, what.replace("the tensor of weights ", "")


def _diagnose_weights_scaled(task: str, rows: torch.Tensor, q: torch.Tensor) -> None:
    """Every query's weights sum to the same c != 1: the weights were scaled after the softmax."""
    c = rows.flatten()[0].item()
    if math.isclose(c, 1.0, rel_tol=1e-4) or not torch.allclose(rows, torch.full_like(rows, c), rtol=1e-4):
        return
    d = q.shape[-1]
    if math.isclose(c, 1 / math.sqrt(d), rel_tol=1e-3):
        raise CheckFailed(f"{task}: each query's weights sum to {c:.4g} = 1/sqrt(d_k), not 1, for q "
                          f"{fmt_shape(q.shape)}: you divided the weights after the softmax; divide the "
                          "scores before it: softmax(q @ k^T / sqrt(d_k)).")
    raise CheckFailed(f"{task}: each query's weights sum to {c:.4g}, not 1, for q {fmt_shape(q.shape)}: "
                      "you multiplied the weights after the softmax; scale the scores before it: "
                      "softmax(q @ k^T / sqrt(d_k)).")


def _check_attention_gradients(task: str, fn: Callable, qkv: tuple[torch.Tensor, ...],
                               mask: torch.Tensor | None, where: str) -> None:
    """The output's gradients with respect to q, k and v equal the reference's (attention is trained)."""
    g = torch.Generator().manual_seed(4041)
    leaves = {name: t.clone().requires_grad_() for name, t in zip("qkv", qkv, strict=True)}
    args = (*leaves.values(),) + (() if mask is None else (mask.clone(),))
    out, _ = unpack(task, call(task, fn, *args, forbid=_NO_ATTENTION), ("output", "weights"))
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = backpropagate(out, upstream, leaves.values(), prefix=f"{task}: {where}: your output",
                          trained="Attention is trained", in_place_hint=(
                              ". An in-place change of a tensor that autograd saved (such as "
                              "`weights[weights != weights] = 0` after the softmax) breaks the backward "
                              "pass: compute a new tensor instead (weights.masked_fill(...), "
                              "torch.nan_to_num)."))
    ref = {name: t.detach().double().requires_grad_() for name, t in leaves.items()}
    scores = ref["q"] @ ref["k"].transpose(-2, -1) / math.sqrt(qkv[0].shape[-1])  # (..., T, S)
    ref_out = _softmax_weights(scores, mask) @ ref["v"]  # (..., T, Dv)
    ref_grads = torch.autograd.grad((ref_out * upstream).sum(), list(ref.values()))
    ref_grads = dict(zip(ref, ref_grads, strict=True))
    cut = [name for name, grad in zip(leaves, grads, strict=True)
           if (grad is None or not grad.abs().any()) and ref_grads[name].abs().any()]
    if cut and set(cut) <= {"q", "k"}:
        raise CheckFailed(f"{task}: {where}: your output is right, but no gradient reaches "
                          f"{' and '.join(cut)}: the weights are cut from autograd (.detach(), .data, "
                          "torch.no_grad(), numpy or .item() on the way to the softmax). Attention is "
                          "trained: q and k learn only through the weights, so keep them in the graph.")
    if cut:
        raise CheckFailed(f"{task}: {where}: your output is right, but no gradient reaches "
                          f"{' and '.join(cut)}: part of the computation is cut from autograd (.detach(), "
                          ".data, torch.no_grad(), numpy or .item()). Attention is trained, so every step "
                          "must stay in autograd.")
    broken = [name for name, grad in zip(leaves, grads, strict=True) if not torch.isfinite(grad).all()]
    if broken and mask is not None and not mask.any(-1).all():
        raise CheckFailed(f"{task}: {where}: your output is right, but its gradient with respect to "
                          f"{' and '.join(broken)} holds NaN. The softmax of the query whose keys are all "
                          "blocked is NaN (0/0), and the backward pass carries that NaN back through the "
                          "scores, to q and k, unless the blocked scores are cut off: replacing the NaN "
                          "after the softmax fixes the values, not the gradient. Fill the scores with "
                          "scores.masked_fill(~mask, float('-inf')) (its backward pass gives the blocked "
                          "scores a zero gradient) rather than adding a -inf bias; in training, one such "
                          "query would turn every weight into NaN.")
    if broken:
        raise CheckFailed(f"{task}: {where}: your output is right, but its gradient with respect to "
                          f"{' and '.join(broken)} holds NaN or infinity, where the reference's is finite: "
                          "some step of your computation has no finite derivative (a division by 0, a "
                          "sqrt or log of 0?). Follow the formula: softmax of the scaled, filled scores.")
    for (name, leaf), grad in zip(leaves.items(), grads, strict=True):
        try:
            compare(task, grad, ref_grads[name], atol=1e-4, rtol=1e-3,
                    what=f"the gradient of the output with respect to {name} {where}", dtype=leaf.dtype)
        except CheckFailed as err:
            raise CheckFailed(f"{err} The output is right, so part of the computation does not reach "
                              "autograd: a .detach(), .data, torch.no_grad() or a detour through numpy "
                              "or .item()?") from None


def _check_empty_row(task: str, fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor, row: int) -> tuple:
    """A query whose keys are all blocked: zero weights and a zero output, no NaN."""
    result = call(task, fn, q.clone(), k.clone(), v.clone(), mask.clone(), forbid=_NO_ATTENTION)
    out, w = unpack(task, result, ("output", "weights"))
    if isinstance(out, torch.Tensor) and isinstance(w, torch.Tensor) and w.dim() >= 2:
        if (torch.isfinite(w).all() and w[..., row, :].abs().max() == 0
                and not torch.isfinite(out).all()):
            raise CheckFailed(f"{task}: the weights of a query whose keys are all blocked are right (zeros), "
                              "but your output holds NaN on that query: you computed the output from the "
                              "weights before you fixed them. Compute the output from the fixed weights "
                              "(weights @ v after the masked_fill).")
        if not (torch.isfinite(out).all() and torch.isfinite(w).all()):
            raise CheckFailed(f"{task}: a query whose keys are all blocked gives NaN (the softmax of "
                              "a row of -inf is 0/0). Return zero weights for it: after the softmax, "
                              "weights = weights.masked_fill(~mask, 0.0).")
        if w[..., row, :].abs().max() > 0:
            raise CheckFailed(f"{task}: a query whose keys are all blocked should get zero weights "
                              f"(and a zero output), got weights summing to "
                              f"{w[..., row, :].sum(-1).flatten()[0]:.3g}: after the softmax, "
                              "weights = weights.masked_fill(~mask, 0.0).")
    return _check_attention_case(task, fn, q, k, v, mask)


def check_scaled_dot_product_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v) -> (output, weights)``: attention without a mask (exercise 04)."""
    task = "scaled_dot_product_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(404)
        # (batch, T, S, Dh); one query (T = 1, as in generation) and a batch of one: no .squeeze()
        plain = [((2, 4), 5, 6, 8), ((3,), 4, 7, 16), ((), 6, 3, 4), ((3,), 1, 5, 8), ((1,), 4, 6, 8)]
        graded = []  # the gradients are compared once every value is right: a value mistake is named first
        for batch, T, S, d in plain:
            q, k = torch.randn(*batch, T, d, generator=g), torch.randn(*batch, S, d, generator=g)
            graded.append(_check_attention_case(task, fn, q, k, torch.randn(*batch, S, 5, generator=g), None))
        graded.append(_check_attention_case(task, fn, *_far_below_case(g), None, far_below=True))
        q64, k64, v64 = (torch.randn(3, 4, 5, generator=g, dtype=torch.float64) for _ in range(3))
        graded.append(_check_attention_case(task, fn, q64, k64, v64, None))
        for qkv, mask, where in graded:
            _check_attention_gradients(task, fn, qkv, mask, where)
        return (f"{len(plain) + 2} inputs (a single query, a batch of one, one query's scores far below "
                "the others', float64); the output's gradients with respect to q, k and v")

    return run_check(task, body)


def check_masked_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v, mask) -> (output, weights)`` with boolean masks, True = allowed (exercise 05)."""
    task = "masked_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(505)
        graded = []  # the gradients are compared once every value is right: a value mistake is named first
        # a mask that allows every key first: plain attention's slips (the scale, the axis) are named there
        q, k, v = (torch.randn(2, L, 8, generator=g) for L in (5, 6, 6))
        graded.append(_check_attention_case(task, fn, q, k, v, torch.ones(5, 6, dtype=torch.bool)))
        q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
        random = torch.rand(2, 3, 6, 6, generator=g) > 0.5
        random[..., 0] = True  # every query keeps a key
        lengths = torch.tensor([6, 2])
        padding = (torch.arange(6) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
        causal = torch.ones(6, 6, dtype=torch.bool).tril()
        for mask in (random, padding, causal, padding & causal):
            graded.append(_check_attention_case(task, fn, q, k, v, mask))
        q64, k64, v64 = (torch.randn(3, 4, 5, generator=g, dtype=torch.float64) for _ in range(3))
        graded.append(_check_attention_case(task, fn, q64, k64, v64, causal[:4, :4]))
        graded.append(_check_attention_case(task, fn, *_far_masked_case(g), far_masked=True))
        empty = causal.clone()
        empty[2] = False  # query 2 may see nothing
        graded.append(_check_empty_row(task, fn, q, k, v, empty, row=2))
        for qkv, mask, where in graded:
            _check_attention_gradients(task, fn, qkv, mask, where)
        return ("a mask that allows every key; random, padding (B, 1, 1, S), causal (T, T) and combined "
                "masks, float64, a query whose allowed scores lie far below its blocked ones, and a query "
                "with no key to see; the output's gradients with respect to q, k and v")

    return run_check(task, body)


# ----------------------------------------------------------------------------- the sqrt(d_k) measurement

_DIMS = (4, 16, 64, 256, 1024)
_N = 64


def no_scale(d_k: int) -> float:
    """The logits as they are: q . k."""
    return 1.0


def sqrt_scale(d_k: int) -> float:
    """The Transformer's scale: q . k / sqrt(d_k)."""
    return 1 / math.sqrt(d_k)


def dk_scale(d_k: int) -> float:
    """A frequent slip: q . k / d_k."""
    return 1 / d_k


_SCALES = {"no scale": no_scale, "1/sqrt(d_k)": sqrt_scale, "1/d_k": dk_scale}


def _measure(dims: Sequence[int], scale: Callable[[int], float], n: int, seed: int) -> dict[str, object]:
    """The reference measurement, and the numbers of the usual slips, from the same draws."""
    g = torch.Generator().manual_seed(seed)
    found: dict[str, list[float]] = {"var": [], "biased": [], "mean square": [], "std": [], "q": [],
                                     "unscaled": [], "scale once": [], "scale twice": [], "diagonal": [],
                                     "rows": [], "rows biased": [], "columns": []}
    for d in dims:
        q = torch.randn(n, d, generator=g)  # (n, d_k)
        k = torch.randn(n, d, generator=g)  # (n, d_k)
        raw = q @ k.T  # (n, d_k) @ (d_k, n) -> (n, n)
        logits = raw * scale(d)
        found["var"].append(logits.double().var().item())
        found["biased"].append(logits.double().var(unbiased=False).item())
        found["mean square"].append(logits.double().pow(2).mean().item())
        found["std"].append(logits.double().std().item())
        found["q"].append(q.double().var().item())
        found["unscaled"].append(raw.double().var().item())
        found["scale once"].append(raw.double().var().item() * scale(d))
        found["scale twice"].append(logits.double().var().item() * scale(d) ** 2)
        found["diagonal"].append((q * k).sum(-1).mul(scale(d)).double().var().item())
        found["rows"].append(logits.double().var(dim=-1).mean().item())
        found["rows biased"].append(logits.double().var(dim=-1, unbiased=False).mean().item())
        found["columns"].append(logits.double().var(dim=0).mean().item())
    return {**{key: torch.tensor(v, dtype=torch.float64) for key, v in found.items()},
            "state": g.get_state()}


def _numbers(task: str, got: object, count: int, what: str) -> torch.Tensor:
    """A list, tuple, 1-D tensor or array of ``count`` numbers, as a float64 tensor."""
    if isinstance(got, (torch.Tensor, np.ndarray)):
        got = got.tolist() if got.ndim == 1 else got
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{task}: {what} should be a list with one number per d_k ({count}), got "
                          f"{type(got).__name__}.")
    if len(got) != count:
        raise CheckFailed(f"{task}: {what} should hold one number per d_k, {count} in all; got {len(got)}.")
    values = []
    for item in got:
        if isinstance(item, torch.Tensor) and item.numel() == 1:
            item = item.item()
        if isinstance(item, bool) or not isinstance(item, (int, float, np.integer, np.floating)):
            raise CheckFailed(f"{task}: {what} should hold numbers, got a {type(item).__name__}.")
        values.append(float(item))
    return torch.tensor(values, dtype=torch.float64)


def _diagnose_variances(task: str, got: torch.Tensor, ref: dict, dims: Sequence[int], scale_name: str,
                        same_draws: bool) -> None:
    where = f"with {scale_name} for d_k = {list(dims)}"
    if not torch.isfinite(got).all():
        raise CheckFailed(f"{task}: your variances {where} hold NaN or infinity.")
    if any(close(got, ref[key], atol=0, rtol=1e-4) for key in ("var", "biased", "mean square")):
        return
    slips = {
        "std": "you returned the standard deviations, not the variances (.var(), or .std() squared)",
        "q": "these are the variances of q itself, not of the logits q @ k.T",
        "unscaled": "the scale is ignored: multiply the logits by scale(d_k)",
        "scale once": "you multiplied the variance by scale(d_k); scale the logits, and their "
                      "variance changes by scale(d_k) squared",
        "scale twice": "you applied scale(d_k) twice (to q and to k, say); multiply the logits q @ k.T "
                       "by it once",
        "diagonal": "you took only the n products q_i . k_i (the diagonal); take the variance of all "
                    "n x n logits q @ k.T",
        "rows": "your draws are the check's, but you averaged the variance of each row (.var(dim=-1)"
                ".mean()); take one variance over all n x n logits, logits.var()",
        "rows biased": "your draws are the check's, but you averaged the variance of each row "
                       "(.var(dim=-1).mean()); take one variance over all n x n logits, logits.var()",
        "columns": "your draws are the check's, but you averaged the variance of each column "
                   "(.var(dim=0).mean()); take one variance over all n x n logits, logits.var()",
    }
    for key, message in slips.items():
        if not close(ref[key], ref["var"], atol=0, rtol=1e-3) and close(got, ref[key], atol=0, rtol=1e-4):
            raise CheckFailed(f"{task}: {where}: {message}.")
    measured = ref["var"]
    if ((got / measured).log().abs() < math.log(1.5)).all():
        how = ("you drew as many numbers as the check (your generator advanced exactly as far), but either "
               "in another order or shape, or you computed another statistic than one variance over all "
               "n x n logits" if same_draws else "your draws differ from the check's")
        raise CheckFailed(f"{task}: {where} your variances ({_fmt(got)}) follow the right trend but are "
                          f"not the check's measurement with the same generator ({_fmt(measured)}): "
                          f"{how}. For each d_k in order draw q = torch.randn(n, d_k, "
                          "generator=generator), then k the same way, and take the variance of "
                          "the n x n logits (q @ k.T) * scale(d_k).")
    i = int(((got - measured).abs() / measured).argmax())
    raise CheckFailed(f"{task}: {where} at d_k = {dims[i]} your variance is {got[i].item():.4g}; the "
                      f"check measured {measured[i].item():.4g} with the same generator (all: "
                      f"{_fmt(measured)}).")


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values.tolist()) + "]"


def _diagnose_exponent(task: str, p: float, got: torch.Tensor, dims: Sequence[int], scale_name: str) -> None:
    slope = fit_exponent(dims, got.tolist())
    if abs(p - slope) <= 0.05:
        return
    x, y = np.log(np.asarray(dims, dtype=float)), np.log(got.numpy())
    slips = {
        "you fitted a line to the raw (d_k, variance) values; fit on log-log axes: the slope of "
        "log(variance) against log(d_k)": np.polyfit(np.asarray(dims, dtype=float), got.numpy(), 1)[0],
        "only the variance axis is on a log scale; take the log of d_k too":
            np.polyfit(np.asarray(dims, dtype=float), y, 1)[0],
        "you returned the intercept, not the slope: np.polyfit(x, y, 1) returns [slope, intercept]":
            np.polyfit(x, y, 1)[1],
        "the axes are swapped: fit log(variance) (y) against log(d_k) (x)": np.polyfit(y, x, 1)[0],
        "the sign is flipped": -slope,
    }
    for message, value in slips.items():
        if abs(value - slope) > 0.05 and abs(p - value) <= 1e-3 * max(1.0, abs(value)):
            raise CheckFailed(f"{task}: with {scale_name} your exponent is {p:.4g}: {message} "
                              f"(your own variances give {slope:.3f}).")
    raise CheckFailed(f"{task}: with {scale_name} your exponent is {p:.4g}, but the slope of "
                      f"log(variance) against log(d_k) for your own variances is {slope:.3f}: the "
                      "exponent must come from the measured numbers.")


def _call_seeded(task: str, fn: Callable, *args) -> object:
    """Call the learner's measurement; its draws must come from the generator it is given."""
    state = torch.random.get_rng_state()
    try:
        got = call(task, fn, *args)
    finally:
        moved = not torch.equal(torch.random.get_rng_state(), state)
        torch.random.set_rng_state(state)
    if moved:
        raise CheckFailed(f"{task}: your function drew from the global random generator: pass "
                          "generator=generator to every torch.randn, so that the measurement can be "
                          "repeated (the check repeats it with the same generator).")
    return got


def check_measure_score_variance(fn: Callable) -> bool:
    """Check ``fn(dims, scale, n, generator) -> (variances, exponent)`` for three scales."""
    task = "measure_score_variance"

    def body() -> str:
        runs = [(_DIMS, name, _N, 4040 + i) for i, name in enumerate(_SCALES)]
        runs.append(((2, 8, 32, 128, 512), "1/sqrt(d_k)", 32, 4050))  # other sizes: nothing hard-coded
        exponents = {}
        for dims, name, n, seed in runs:
            ref = _measure(dims, _SCALES[name], n, seed)
            g = torch.Generator().manual_seed(seed)
            got = _call_seeded(task, fn, list(dims), _SCALES[name], n, g)
            variances, exponent = unpack(task, got, ("variances", "exponent"))
            got_v = _numbers(task, variances, len(dims), "the variances")
            _diagnose_variances(task, got_v, ref, dims, name, torch.equal(g.get_state(), ref["state"]))
            p = as_float(task, exponent, "the exponent")
            _diagnose_exponent(task, p, got_v, dims, name)
            exponents.setdefault(name, p)
        shown = ", ".join(f"{name}: {p:.2f}" for name, p in exponents.items())
        return f"{len(runs)} measurements with the check's generator (exponents {shown})"

    return run_check(task, body)


def check_predict_variance_exponent(fn: Callable[[], float]) -> bool:
    """Check the prediction ``fn() -> p``: the logits divided by d_k have a variance ~ d_k^p."""
    task = "predict_variance_exponent"

    def body() -> str:
        p = as_float(task, call(task, fn), "your prediction")
        measured = fit_exponent(_DIMS, _measure(_DIMS, dk_scale, _N, 4042)["var"].tolist())
        if abs(p - measured) <= 0.25:
            return f"the exponent measured with q . k / d_k for d_k = {list(_DIMS)}: {measured:.2f}"
        hints = {1.0: "that is the exponent with no scale at all",
                 0.0: "that is the exponent with the 1/sqrt(d_k) scale",
                 -0.5: "the variance does not change like the logits: var(c x) = c^2 var(x)",
                 -2.0: "var(q . k) itself grows like d_k^1 before you divide"}
        hint = next((text for value, text in hints.items() if abs(p - value) <= 0.25),
                    "var(c x) = c^2 var(x), and var(q . k) = d_k")
        raise CheckFailed(f"{task}: you predicted {p:.3g}; the check measured {measured:.2f} for the "
                          f"logits q . k / d_k ({hint}). Right means within 0.25 of the measured "
                          "exponent.")

    return run_check(task, body)


# ----------------------------------------------------------------------------- the combined mask

def _reference_mask(tokens: torch.Tensor, pad_id: int, n_queries: int, *, offset: bool = True,
                    keys: bool = True, queries: bool = False, combine: str = "and",
                    future: bool = False, pad_sign: bool = True) -> torch.Tensor:
    """(B, 1, T, S): key s is real and s <= the query's position; the options give the slips."""
    B, S = tokens.shape
    T = n_queries
    position = torch.arange(S - T, S) if offset else torch.arange(T)  # (T,) each query's position
    causal = torch.arange(S)[None, :] <= position[:, None]  # (T, S)
    if future:
        causal = torch.arange(S)[None, :] >= position[:, None]
    real = (tokens != pad_id) if pad_sign else (tokens == pad_id)  # (B, S)
    padding = real[:, None, None, :] if keys else torch.ones(B, 1, 1, S, dtype=torch.bool)
    if queries:
        padding = padding & real[:, None, S - T:, None]
    return padding & causal if combine == "and" else padding | causal


def _diagnose_combined_mask(task: str, got: torch.Tensor, tokens: torch.Tensor, pad_id: int, T: int,
                            ref: torch.Tensor) -> None:
    S = tokens.shape[1]
    where = f"for tokens {fmt_shape(tokens.shape)} (pad_id={pad_id}) and n_queries={T}"
    if got.shape != ref.shape:
        hint = ""
        if got.shape == (ref.shape[0], T, S):
            hint = (" Add the head axis, (B, 1, T, S), so that it broadcasts over the heads: "
                    "mask[:, None].")
        elif got.dim() == 4 and got.shape[2] == 1:
            hint = " That is the padding mask alone: combine it with the causal mask (T, S) using &."
        elif got.shape == (T, S):
            hint = " That is the causal mask alone: combine it with the padding mask (B, 1, 1, S) using &."
        elif got.dim() == 4 and got.shape[-2:] == (S, S) and T != S:
            hint = (f" There is one row per query: only the last n_queries = {T} positions are "
                    "queries here.")
        raise CheckFailed(f"{task}: {where} the mask should have shape (B, 1, T, S) = "
                          f"{fmt_shape(ref.shape)}, got {fmt_shape(got.shape)}.{hint}")
    if got.dtype != torch.bool:
        hint = (" It holds -inf: that is an additive mask; this course's masks are boolean, True where "
                "attention is allowed." if got.is_floating_point() and torch.isneginf(got).any()
                else " A comparison such as `tokens != pad_id` gives one; combine with &.")
        raise CheckFailed(f"{task}: the mask should be a boolean tensor (True = may attend), got dtype "
                          f"{str(got.dtype).removeprefix('torch.')}.{hint}")
    if torch.equal(got, ref):
        return
    slips = [
        (~ref, "the mask has the wrong sign: it is True where attention is blocked. True means 'may "
               "attend'"),
        (_reference_mask(tokens, pad_id, T, offset=False),
         f"the causal part ignores where the queries sit: the {T} queries are the last positions "
         f"{S - T} .. {S - 1} of the {S} keys, so query i may see keys 0 .. {S - T} + i "
         f"(torch.ones(T, S).tril(S - T), or compare positions with torch.arange)"),
        (_reference_mask(tokens, pad_id, T, combine="or"),
         "you combined the masks with | (or): a key must be allowed by both, use &"),
        (_reference_mask(tokens, pad_id, T, queries=True),
         "you also blocked the rows of the padded queries; the padding mask hides padded keys only "
         "(the last axis): a padded query may still look at the real keys, and its output is "
         "ignored later"),
        (_reference_mask(tokens, pad_id, T, keys=False, queries=True),
         "the padding is applied to the queries (axis -2) instead of the keys (the last axis)"),
        (_reference_mask(tokens, pad_id, T, keys=False), "the padding is missing: padded keys are "
                                                         "visible. Combine with tokens != pad_id"),
        (_reference_mask(tokens, pad_id, T, pad_sign=False),
         "the padding part has the wrong sign: it allows the padded keys and blocks the real ones. A key "
         "may be attended where tokens != pad_id"),
        (ref.transpose(-2, -1),
         "the mask is transposed, (B, 1, S, T): axis -2 is the queries and the last axis the keys, so "
         "mask[b, 0, i, s] says whether query i may attend to key s"),
        (_reference_mask(tokens, 0, T) if pad_id != 0 else ref,
         f"the pad id is hard-coded as 0: compare with the pad_id you are given ({pad_id})"),
        (ref & ~torch.eye(S, dtype=torch.bool)[S - T:], "the diagonal is blocked: each query may attend "
                                                        "to its own position (s <= t, not s < t)"),
        (_reference_mask(tokens, pad_id, T, future=True),
         "you built the upper triangle (the future): the rows are queries, the columns keys, and "
         "query i may see the keys up to its own position"),
    ]
    for wrong, message in slips:
        if not torch.equal(wrong, ref) and wrong.shape == got.shape and torch.equal(got, wrong):
            raise CheckFailed(f"{task}: {where} {message}.")
    b, _, i, s = ((got != ref).nonzero()[0]).tolist()
    raise CheckFailed(f"{task}: {where} at (batch {b}, query {i}, key {s}) got {bool(got[b, 0, i, s])}, "
                      f"expected {bool(ref[b, 0, i, s])}: key s is allowed when it is not padding and "
                      f"s <= {S - T} + i, the query's position.")


def check_causal_padding_mask(fn: Callable) -> bool:
    """Check ``fn(tokens, pad_id, n_queries) -> (B, 1, T, S)`` boolean, True where attention is allowed."""
    task = "causal_padding_mask"

    def body() -> str:
        g = torch.Generator().manual_seed(505)
        # (lengths or left pads, S, n_queries, pad_id, padded on the left?)
        cases = [([6, 4, 2], 6, 6, 0, False), ([5, 3], 5, 5, 0, True), ([7, 4], 7, 3, 1, False),
                 ([8, 8], 8, 1, 0, False), ([3], 3, 3, 2, False), ([9, 5, 6], 9, 4, 0, True)]
        for lengths, S, T, pad_id, left in cases:
            tokens = torch.randint(0, 10, (len(lengths), S), generator=g)
            tokens[tokens == pad_id] = pad_id + 3  # real tokens differ from the pad id
            if pad_id != 0:
                tokens[:, 0] = 0  # a real token 0, where the pad id is not 0
            for b, n in enumerate(lengths):
                if left:
                    tokens[b, :S - n] = pad_id
                else:
                    tokens[b, n:] = pad_id
            ref = _reference_mask(tokens, pad_id, T)
            got = call(task, fn, tokens.clone(), pad_id, T)
            if not isinstance(got, torch.Tensor):
                raise CheckFailed(f"{task}: return a torch.Tensor, got {type(got).__name__}.")
            _diagnose_combined_mask(task, got, tokens, pad_id, T, ref)
        return (f"{len(cases)} batches: right and left padding, pad ids 0, 1 and 2, "
                "n_queries = S and fewer (the newest positions)")

    return run_check(task, body)


# ----------------------------------------------------------------------------- multi-head attention

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _split(x: torch.Tensor, H: int, how: str = "right") -> torch.Tensor:
    """(B, L, D) -> (B, H, L, Dh), as the course does or as a slip does."""
    B, L, D = x.shape
    if how == "interleaved":  # head h takes every H-th feature
        return x.reshape(B, L, D // H, H).permute(0, 3, 1, 2)
    if how == "no transpose":  # a view straight to (B, H, L, Dh)
        return x.reshape(B, H, L, D // H)
    return x.reshape(B, L, H, D // H).transpose(1, 2)


def _merge(x: torch.Tensor, how: str = "right") -> torch.Tensor:
    """(B, H, L, Dh) -> (B, L, D), as the course does or as a slip does."""
    B, H, L, Dh = x.shape
    if how == "interleaved":
        return x.permute(0, 2, 3, 1).reshape(B, L, H * Dh)
    if how == "no transpose":
        return x.reshape(B, L, H * Dh)
    return x.transpose(1, 2).reshape(B, L, H * Dh)


def _mha(p: dict[str, torch.Tensor], H: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
         mask: torch.Tensor | None, *, split: str = "right", merge: str = "right", scale: str = "Dh",
         use_mask: str = "before", out_proj: bool = True, values: str = "value", softmax_dim: int = -1,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's multi-head attention from weights ``p``; each option gives one slip."""
    def linear(x, name):
        return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    D = query.shape[-1]
    q = _split(linear(query, "q_proj"), H, split)  # (B, H, T, Dh)
    k = _split(linear(key, "k_proj"), H, split)  # (B, H, S, Dh)
    v = _split(linear({"value": value, "key": key}[values], "v_proj"), H, split)  # (B, H, S, Dh)
    d = {"Dh": D // H, "D": D, "none": 1, "Dh^2": (D // H) ** 2}[scale]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B,H,T,Dh) @ (B,H,Dh,S) -> (B,H,T,S)
    m = None if mask is None or use_mask == "ignored" else mask if use_mask != "inverted" else ~mask
    if m is not None and use_mask == "after":
        weights = torch.softmax(scores, -1).masked_fill(~m, 0.0)
    else:
        weights = _softmax_weights(scores, m, softmax_dim)  # (B, H, T, S)
    out = _merge(weights @ v, merge)  # (B, T, D)
    return (linear(out, "out_proj") if out_proj else out), weights


def _weight_slips(H: int, D: int, has_mask: bool) -> list[tuple[dict, str]]:
    Dh = D // H
    slips = [
        ({"scale": "D"}, f"the scores are divided by sqrt(d_model) = sqrt({D}); each head is scaled by "
                         f"its own size, sqrt(Dh) = sqrt(d_model / n_heads) = sqrt({Dh})"),
        ({"scale": "none"}, f"the scores are not scaled: divide them by sqrt(Dh) = sqrt({Dh})"),
        ({"scale": "Dh^2"}, f"the scores are divided by Dh = {Dh}; divide by its square root"),
        ({"split": "interleaved"}, "the heads are split the wrong way: head h took every H-th feature, "
                                   "where it should take the consecutive features h*Dh .. (h+1)*Dh - 1 "
                                   "(view as (B, T, H, Dh), not (B, T, Dh, H))"),
        ({"split": "no transpose"}, "the heads are split the wrong way: a view straight to (B, H, T, Dh) "
                                    "cuts the sequence into blocks instead of cutting each vector into "
                                    "heads. View as (B, T, H, Dh), then .transpose(1, 2)"),
        ({"softmax_dim": -2}, "the weights sum to 1 over the queries (axis -2): each query's weights over "
                              "the keys must sum to 1, so take the softmax over the last axis (dim=-1)"),
    ]
    if has_mask:
        slips += [
            ({"use_mask": "ignored"}, "the mask is ignored: blocked keys get weight. Fill the scores "
                                      "where the mask is False with -inf before the softmax"),
            ({"use_mask": "after"}, "the mask is applied after the softmax, so the weights no longer "
                                    "sum to 1: fill the blocked scores with -inf before the softmax"),
            ({"use_mask": "inverted"}, "the mask has the wrong sign: True means 'may attend', so fill "
                                       "the scores where the mask is False (~mask)"),
        ]
    return slips


def _output_slips(cross: bool) -> list[tuple[dict, str]]:
    slips = [
        ({"out_proj": False}, "the output projection is missing: the merged heads go through "
                              "self.out_proj"),
        ({"merge": "no transpose"}, "the heads are merged without .transpose(1, 2): a reshape of (B, H, "
                                    "T, Dh) straight to (B, T, D) mixes the positions of different "
                                    "heads. Transpose to (B, T, H, Dh) first, then reshape"),
        ({"merge": "interleaved"}, "the heads are merged interleaved: head h's features should land "
                                   "together at h*Dh .. (h+1)*Dh - 1 (transpose(1, 2), then reshape)"),
    ]
    if cross:
        slips.append(({"values": "key"}, "the values are projected from the key: v = v_proj(value)"))
    return slips


def _matches(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return close(got, expected, atol=1e-4, rtol=1e-3)


def _learner_module(task: str, cls: Callable, D: int, H: int, ref: MultiHeadAttention) -> torch.nn.Module:
    """The learner's module for (D, H), holding a copy of the course module's weights."""
    with torch.random.fork_rng(devices=[]):  # nn.Linear draws its initial weights globally
        module = call(task, cls, D, H)
    if not isinstance(module, torch.nn.Module):
        raise CheckFailed(f"{task}: MultiHeadAttention({D}, {H}) should be an nn.Module, got "
                          f"{type(module).__name__}.")
    for name in _PROJECTIONS:
        layer = getattr(module, name, None)
        weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
        if (not isinstance(weight, torch.Tensor) or weight.shape != (D, D)
                or not isinstance(bias, torch.Tensor)):
            raise CheckFailed(f"{task}: the module needs self.{name} = nn.Linear(d_model, d_model) (with a "
                              "bias), as given in __init__: the check copies the course's weights into "
                              "q_proj, k_proj, v_proj and out_proj.")
        with torch.no_grad():
            weight.copy_(getattr(ref, name).weight)
            bias.copy_(getattr(ref, name).bias)
    return module


def _run_module(module, query, key, value, mask):
    """The learner's module on one input (a named function, so that messages name its arguments)."""
    return module(query, key, value, mask)


def _check_gradients(task: str, module: torch.nn.Module, out: torch.Tensor, inputs: dict[str, torch.Tensor],
                     ref_out: torch.Tensor, ref_leaves: dict[str, torch.Tensor], upstream: torch.Tensor,
                     where: str) -> None:
    if not out.requires_grad:
        raise CheckFailed(f"{task}: {where} no gradient reaches the output: did you use .detach(), "
                          ".data, .item(), numpy or torch.no_grad()? The module must stay differentiable.")
    params = {f"{name}.{kind}": getattr(getattr(module, name), kind)
              for name in _PROJECTIONS for kind in ("weight", "bias")}
    leaves = {**inputs, **params}
    grads = torch.autograd.grad((out * upstream).sum(), list(leaves.values()), allow_unused=True)
    ref_grads = torch.autograd.grad((ref_out * upstream.double()).sum(), [ref_leaves[n] for n in leaves])
    for name, grad in zip(leaves, grads, strict=True):
        if grad is None:
            raise CheckFailed(f"{task}: {where} no gradient reaches {name}: is it detached (.detach(), "
                              ".data) or unused?")
    for (name, leaf), grad, ref in zip(leaves.items(), grads, ref_grads, strict=True):
        try:
            compare(task, grad, ref, atol=1e-4, rtol=1e-3, what=f"the gradient of {name} {where}",
                    dtype=leaf.dtype)
        except CheckFailed as err:
            raise CheckFailed(f"{err} The output is right, so part of the computation does not reach "
                              "autograd: a .detach(), .data, torch.no_grad() or a detour through numpy "
                              "or .item()?") from None


def _planted(p: dict[str, torch.Tensor], H: int, score: float) -> torch.Tensor:
    """(D,): an input vector whose query and key give ``score`` with each other in head 0.

    Along the direction u where q . k / sqrt(Dh) is most negative, x = c u gives the score
    a c^2 + b c + e, a < 0; c is the positive root of a c^2 + b c + e = score.
    """
    D = p["q_proj.weight"].shape[0]
    Dh = D // H
    wq, wk = p["q_proj.weight"][:Dh].double(), p["k_proj.weight"][:Dh].double()  # head 0: (Dh, D)
    bq, bk = p["q_proj.bias"][:Dh].double(), p["k_proj.bias"][:Dh].double()
    form = wq.T @ wk / math.sqrt(Dh)  # (D, D): x^T form x is the quadratic part of the score
    u = torch.linalg.eigh((form + form.T) / 2).eigenvectors[:, 0]  # the most negative direction
    a = (u @ form @ u).item()
    b = ((bq @ wk @ u + bk @ wq @ u) / math.sqrt(Dh)).item()
    e = (bq @ bk / math.sqrt(Dh)).item() - score
    c = (-b - math.sqrt(b * b - 4 * a * e)) / (2 * a)
    return (c * u).float()


def _mha_case(task: str, cls: Callable, g: torch.Generator, B: int, T: int, S: int, D: int, H: int,
              mask: torch.Tensor | None, *, cross: bool, size: float = 1.0, plant: float | None = None,
              ) -> None:
    with torch.random.fork_rng(devices=[]):
        ref = MultiHeadAttention(D, H)
    with torch.no_grad():
        for name in _PROJECTIONS:
            getattr(ref, name).weight.copy_(torch.randn(D, D, generator=g) / math.sqrt(D))
            getattr(ref, name).bias.copy_(0.1 * torch.randn(D, generator=g))
    module = _learner_module(task, cls, D, H, ref)
    x = size * torch.randn(B, T, D, generator=g)
    if plant is not None:  # query 0 of example 0, whose only allowed key is itself, scores `plant` in head 0
        x[0, 0] = _planted(ref.state_dict(), H, plant)
    inputs = ({"query": x, "key": size * torch.randn(B, S, D, generator=g),
               "value": size * torch.randn(B, S, D, generator=g)} if cross else {"x": x})
    inputs = {name: t.clone().requires_grad_() for name, t in inputs.items()}
    q, k, v = (inputs["query"], inputs["key"], inputs["value"]) if cross else (inputs["x"],) * 3
    out, w = unpack(task, call(task, _run_module, module, q, k, v, mask, forbid=_NO_ATTENTION),
                    ("output", "weights"))

    p = {name: t.detach().double().requires_grad_() for name, t in ref.state_dict().items()}
    ref_inputs = {name: t.detach().double().requires_grad_() for name, t in inputs.items()}
    q64, k64, v64 = ((ref_inputs["query"], ref_inputs["key"], ref_inputs["value"]) if cross
                     else (ref_inputs["x"],) * 3)
    ref_out, ref_w = _mha(p, H, q64, k64, v64, mask)
    kind = "cross-attention" if cross else "self-attention"
    where = (f"for {kind} with query {fmt_shape(q.shape)}, key {fmt_shape(k.shape)}, d_model={D}, "
             f"n_heads={H}" + ("" if mask is None else f", mask {fmt_shape(mask.shape)}"))
    if isinstance(w, torch.Tensor) and w.shape == (B, T, S):
        raise CheckFailed(f"{task}: {where} the weights have shape (B, T, S) = {fmt_shape(w.shape)}: "
                          f"return each head's weights, (B, H, T, S) = {fmt_shape(ref_w.shape)}, not their "
                          "average.")
    if isinstance(out, torch.Tensor) and not torch.isfinite(out.detach()).all() and size > 1:
        raise CheckFailed(f"{task}: {where} and large inputs (scores up to about "
                          f"{_max_score(p, H, q64, k64):.0f}) your output "
                          "holds NaN or infinity: exp overflows, or a row underflows to 0/0. Subtract each "
                          "query's own largest score before exp, or use torch.softmax.")
    if isinstance(w, torch.Tensor) and w.shape == ref_w.shape:
        _diagnose_mha(task, out, w.detach().double().nan_to_num(0.0), p, H, (q64, k64, v64), mask,
                      (ref_out.detach(), ref_w.detach()), cross, where)
    compare(task, w, ref_w.detach(), atol=1e-5, rtol=1e-4, what=f"the tensor of weights {where}",
            dtype=x.dtype)
    compare(task, out, ref_out.detach(), atol=1e-4, rtol=1e-4, what=f"the output {where}", dtype=x.dtype)
    upstream = torch.randn(out.shape, generator=g)
    _check_gradients(task, module, out, inputs, ref_out, {**ref_inputs, **p}, upstream, where)


def _max_score(p: dict[str, torch.Tensor], H: int, q: torch.Tensor, k: torch.Tensor) -> float:
    """The largest scaled score, in absolute value, of the course's attention on these inputs."""
    qs = _split(q @ p["q_proj.weight"].T + p["q_proj.bias"], H)  # (B, H, T, Dh)
    ks = _split(k @ p["k_proj.weight"].T + p["k_proj.bias"], H)  # (B, H, S, Dh)
    return (qs @ ks.transpose(-2, -1) / math.sqrt(qs.shape[-1])).abs().max().item()


def _diagnose_mha(task: str, out: object, w64: torch.Tensor, p: dict[str, torch.Tensor], H: int,
                  qkv: tuple[torch.Tensor, ...], mask: torch.Tensor | None,
                  ref: tuple[torch.Tensor, torch.Tensor], cross: bool, where: str) -> None:
    """Name the slip behind weights ``w64`` (NaN read as 0) or, with the right weights, the output."""
    ref_out, ref_w = ref
    D = qkv[0].shape[-1]
    if not _matches(w64, ref_w):
        for options, message in _weight_slips(H, D, mask is not None):
            if _matches(w64, _mha(p, H, *qkv, mask, **options)[1].detach()):
                raise CheckFailed(f"{task}: {where} {message}.")
        if mask is not None:
            _diagnose_lost_rows(task, w64, ref_w, p, H, qkv, mask, where)
        return
    if mask is not None:
        leaked = w64.masked_select(~mask.expand(w64.shape)).abs()
        if leaked.numel() and leaked.max() > 0:
            raise CheckFailed(f"{task}: {where} keys that the mask blocks get weight up to "
                              f"{leaked.max():.3g}, where they must get exactly 0: fill the blocked "
                              "scores with float('-inf').")
    if isinstance(out, torch.Tensor) and out.shape == ref_out.shape and not _matches(out, ref_out):
        for options, message in _output_slips(cross):
            if _matches(out, _mha(p, H, *qkv, mask, **options)[0].detach()):
                raise CheckFailed(f"{task}: {where} {message}.")


def _diagnose_lost_rows(task: str, w64: torch.Tensor, ref_w: torch.Tensor, p: dict[str, torch.Tensor],
                        H: int, qkv: tuple[torch.Tensor, ...], mask: torch.Tensor, where: str) -> None:
    """Queries whose weights vanish while the blocked keys get none: a finite fill, zeroed afterwards."""
    sums = w64.sum(-1)  # (B, H, T)
    lost = (ref_w.sum(-1) > 0.5) & (sums < 0.5)
    if not lost.any() or w64.masked_select(~mask.expand(w64.shape)).abs().max() > 0:
        return
    qs = _split(qkv[0] @ p["q_proj.weight"].T + p["q_proj.bias"], H)  # (B, H, T, Dh)
    ks = _split(qkv[1] @ p["k_proj.weight"].T + p["k_proj.bias"], H)  # (B, H, S, Dh)
    scores = (qs @ ks.transpose(-2, -1) / math.sqrt(qs.shape[-1])).detach()  # (B, H, T, S)
    b, h, t = (int(i) for i in lost.nonzero()[0])
    top = scores[b, h, t].masked_fill(~mask.expand(scores.shape)[b, h, t], float("-inf")).max().item()
    raise CheckFailed(f"{task}: {where} query {t} of example {b} in head {h}, whose allowed scores are all "
                      f"low (the largest is {top:.0f}), gets weights that sum to {sums[b, h, t]:.3g}, not 1: "
                      "a finite fill value such as -100 lies above its real scores, so the blocked keys "
                      "take its weight, and zeroing them after the softmax leaves nothing. Fill the "
                      "blocked scores with float('-inf') or torch.finfo(scores.dtype).min.")


def check_multi_head_attention(cls: Callable) -> bool:
    """Check ``cls(d_model, n_heads)``: a module whose forward(query, key, value, mask) is the course's.

    The check copies the weights of the course's ``MultiHeadAttention`` (itself equal to
    ``nn.MultiheadAttention``) into the learner's q_proj, k_proj, v_proj and out_proj, and
    compares the output, the per-head weights and the gradients of the inputs and of every weight.
    """
    task = "multi_head_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(506)
        causal = torch.ones(6, 6, dtype=torch.bool).tril()  # (T, T)
        padding = (torch.arange(7) < torch.tensor([7, 3, 5])[:, None])[:, None, None, :]  # (B, 1, 1, S)
        right = (torch.arange(6) < torch.tensor([6, 4])[:, None])[:, None, None, :] & causal  # (B, 1, T, T)
        # (B, T, S, D, H, mask, cross-attention?)
        cases = [(2, 5, 5, 12, 3, None, False), (2, 6, 6, 16, 4, causal, False),
                 (3, 4, 7, 24, 2, padding, True), (2, 6, 6, 8, 4, right, False)]
        for B, T, S, D, H, mask, cross in cases:
            _mha_case(task, cls, g, B, T, S, D, H, mask, cross=cross)
        _mha_case(task, cls, g, 2, 6, 6, 16, 4, causal, cross=False, size=8.0, plant=-250.0)
        return (f"{len(cases) + 1} inputs (self- and cross-attention; no mask, causal (T, T), padding "
                "(B, 1, 1, S), combined (B, 1, T, T); large scores, one query's only allowed score near "
                "-250): outputs, weights and gradients equal the course's MultiHeadAttention's")

    return run_check(task, body)


# ----------------------------------------------------------------------------- the influence matrix

def _influence(attention: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None, *,
               role: str = "all", reduce: str = "fro") -> torch.Tensor:
    """(T, T): the size of d output[0, t] / d x[0, s], x entering as query, key and value (or one role)."""
    def output(y: torch.Tensor) -> torch.Tensor:
        q, k, v = (y if role in ("all", r) else x for r in ("query", "key", "value"))
        return attention(q, k, v, mask)[0]

    jac = torch.autograd.functional.jacobian(output, x)[0, :, :, 0]  # (T, D, T, D): [t, i, s, j]
    if reduce == "piled up":  # x.grad never zeroed: each output feature's gradient adds to the earlier ones
        piled = jac.flatten(0, 1).cumsum(0).unflatten(0, jac.shape[:2])  # (T, D, T, D)
        return piled.pow(2).sum((1, 3)).sqrt()
    blocks = jac.transpose(1, 2)  # (T, T, D, D): block [t, s]
    if reduce == "sum":  # the gradient of out[0, t].sum(): the features summed before differentiating
        return blocks.sum(-2).norm(dim=-1)
    if reduce == "max":
        return blocks.abs().amax((-2, -1))
    norms = torch.linalg.matrix_norm(blocks)  # Frobenius norm of each (D, D) block
    return norms**2 if reduce == "squared" else norms


def _diagnose_influence(task: str, got: torch.Tensor, module: torch.nn.Module, x: torch.Tensor,
                        mask: torch.Tensor | None, ref: torch.Tensor, where: str) -> None:
    g64 = got.detach().double()
    if close(g64, ref, atol=1e-5, rtol=1e-4):
        leak = g64.masked_select(ref == 0).abs()
        if leak.numel() and leak.max() > 0:
            raise CheckFailed(f"{task}: {where} entries that must be exactly 0 (the mask cuts those paths) "
                              f"are up to {leak.max():.3g}: estimated numerically (finite differences)? "
                              "Differentiate with autograd, which gives exact zeros.")
        return
    slips = {
        ("query", "fro"): "you differentiated through the query only: x is the query, the key and the "
                          "value at once, so the influence runs through all three",
        ("key", "fro"): "you differentiated through the key only: x is the query, the key and the value "
                        "at once, so the influence runs through all three",
        ("value", "fro"): "you differentiated through the value only: x is the query, the key and the "
                          "value at once, so the influence runs through all three",
        ("all", "sum"): "you differentiated out[0, t].sum(), the features summed: take the whole (D, D) "
                        "Jacobian block of out[0, t] with respect to x[0, s], and its Frobenius norm",
        ("all", "max"): "you took the largest entry of each block; take its Frobenius norm (the square "
                        "root of the sum of the squares)",
        ("all", "squared"): "you returned the squared Frobenius norms: take the square root",
        ("all", "piled up"): "x.grad piles up across your .backward() calls: zero it between them "
                             "(x.grad = None), or use torch.autograd.grad or autograd.functional.jacobian",
    }
    for (role, reduce), message in slips.items():
        if close(g64, _influence(module, x, mask, role=role, reduce=reduce), atol=1e-5, rtol=1e-4):
            raise CheckFailed(f"{task}: {where} {message}.")
    if close(g64.T, ref, atol=1e-5, rtol=1e-4):
        raise CheckFailed(f"{task}: {where} your matrix is transposed: row t is the output out[0, t], "
                          "column s the input x[0, s].")
    if mask is not None and close(g64, _influence(module, x, None), atol=1e-5, rtol=1e-4):
        raise CheckFailed(f"{task}: {where} the mask is not used: call attention(x, x, x, mask).")
    _, weights = module(x, x, x, mask)
    if close(g64, weights.detach().mean(1)[0], atol=1e-5, rtol=1e-4):
        raise CheckFailed(f"{task}: {where} these are the attention weights (averaged over the heads), not "
                          "the influence: differentiate the output with respect to x.")
    if close(g64, ref, atol=1e-3, rtol=1e-2):
        raise CheckFailed(f"{task}: {where} your values are close to the influence but not equal (largest "
                          f"error {(g64 - ref).abs().max():.2g}): finite differences? Differentiate with "
                          "autograd.")


def check_influence_matrix(fn: Callable) -> bool:
    """Check ``fn(attention, x, mask) -> (T, T)``: Frobenius norms of d out[0, t] / d x[0, s]."""
    task = "influence_matrix"

    def body() -> str:
        g = torch.Generator().manual_seed(507)
        T, D, H = 6, 8, 2
        with torch.random.fork_rng(devices=[]):
            module = MultiHeadAttention(D, H)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(D))
        causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
        padding = (torch.arange(T) < 4)[None, None, None, :]  # (1, 1, 1, S): the last two are padding
        masks = {"no mask": None, "a causal mask (T, T)": causal, "a padding mask (1, 1, 1, S)": padding,
                 "causal and padding (1, 1, T, S)": padding & causal}
        x = torch.randn(1, T, D, generator=g)
        for name, mask in masks.items():
            got = call(task, fn, module, x.clone(), mask)
            ref = _influence(_double(module), x.double(), mask)  # (T, T)
            where = f"for x {fmt_shape(x.shape)} and {name}"
            if isinstance(got, torch.Tensor) and got.shape == ref.shape and got.is_floating_point():
                _diagnose_influence(task, got, _double(module), x.double(), mask, ref, where)
            compare(task, got, ref, atol=1e-5, rtol=1e-4, what=f"the influence matrix {where}", dtype=x.dtype)
        return (f"{len(masks)} masks (none, causal, padding, both): the future and the padded keys have an "
                "influence of exactly 0, except a padded position on its own output (through its query)")

    return run_check(task, body)


def _double(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of the course's module, for the reference."""
    with torch.random.fork_rng(devices=[]):
        copy = MultiHeadAttention(module.d_model, module.n_heads).double()
    copy.load_state_dict({name: t.double() for name, t in module.state_dict().items()})
    return copy
