"""Checks for solutions/11_efficient_attention: the online-softmax step and the tiled loop.

Shapes: T queries, S keys, Bk keys in one block, Dh head size, Dv value size.
The running state of one query: m (running maximum of its scores), l (running sum of
exp(score - m)) and acc (running sum of exp(score - m) * value, not yet divided by l).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..efficient import online_softmax_step
from ._core import CheckFailed, call, compare, fmt_shape, run_check

__all__ = ["check_online_softmax_step", "check_tiled_attention"]


def _close(a: object, b: torch.Tensor, atol: float = 1e-6) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().double(), b.double(), atol=atol, rtol=1e-5)))


# ----------------------------------------------------------------------------- task 1: one step

def _step_cases(g: torch.Generator) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """(description, (m, l, acc, scores, v)) in float64: a first block, later blocks, large logits."""
    cases = []
    for shape, (T, Bk, Dv) in (((), (4, 3, 2)), ((2, 3), (5, 4, 3)), ((1,), (6, 7, 4))):
        scores = torch.randn(*shape, T, Bk, generator=g, dtype=torch.float64) * 2
        v = torch.randn(*shape, Bk, Dv, generator=g, dtype=torch.float64)
        # a previous state whose maximum is below the block's for some rows, above it for others
        m = scores.amax(-1) + torch.randn(*shape, T, generator=g, dtype=torch.float64) * 2
        l = 1 + torch.rand(*shape, T, generator=g, dtype=torch.float64) * 3
        acc = torch.randn(*shape, T, Dv, generator=g, dtype=torch.float64)
        cases.append((f"a later block, scores {fmt_shape(scores.shape)}", (m, l, acc, scores, v)))
    T, Bk, Dv = 3, 5, 2
    f64 = {"dtype": torch.float64}
    scores = torch.randn(T, Bk, generator=g, **f64)
    first = (torch.full((T,), -math.inf, **f64), torch.zeros(T, **f64), torch.zeros(T, Dv, **f64),
             scores, torch.randn(Bk, Dv, generator=g, **f64))
    cases.insert(0, ("the first block (m = -inf, l = 0, acc = 0)", first))
    big = scores * 50 + 800  # logits near 800: exp(800) overflows even in float64
    later = (big.amax(-1) - 3, torch.ones(T, **f64), torch.randn(T, Dv, generator=g, **f64),
             big, torch.randn(Bk, Dv, generator=g, **f64))
    cases.append(("large logits near 800", later))
    return cases


def _diagnose_step(task: str, where: str, got: tuple, state: tuple[torch.Tensor, ...]) -> None:
    m, l, acc, scores, v = state
    m_ref, l_ref, acc_ref = online_softmax_step(m, l, acc, scores, v)
    m_got, l_got, acc_got = got
    if not _close(m_got, m_ref):
        if _close(m_got, scores.amax(-1)):
            raise CheckFailed(f"{task}: {where} the new maximum is the block's maximum alone; it must "
                              "be the maximum over everything seen so far: torch.maximum(m, "
                              "scores.amax(-1)).")
        if _close(m_got, m):
            raise CheckFailed(f"{task}: {where} the running maximum was not updated: "
                              "m_new = torch.maximum(m, scores.amax(-1)).")
        compare(task, m_got, m_ref, what=f"the new running maximum m ({where})")
    for name, x in (("l", l_got), ("acc", acc_got)):
        if isinstance(x, torch.Tensor) and x.shape == (l_ref if name == "l" else acc_ref).shape \
                and not torch.isfinite(x).all():
            raise CheckFailed(f"{task}: {where} the new {name} contains NaN or infinity: exp of a large "
                              "score overflows. Subtract the new running maximum before exp: "
                              "p = exp(scores - m_new[..., None]).")
    p = torch.exp(scores - m_ref[..., None])  # (..., T, Bk)
    alpha = torch.exp(m - m_ref)  # (..., T)
    if not _close(l_got, l_ref):
        if _close(l_got, l + p.sum(-1)):
            raise CheckFailed(f"{task}: {where} the running sum was not rescaled when the maximum "
                              "changed: the old l counts exp(score - m_old); multiply it by "
                              "exp(m_old - m_new) before adding the block's sum.")
        raw = torch.exp(scores).sum(-1)
        if _close(l_got, alpha * l + raw) or _close(l_got, l + raw):
            raise CheckFailed(f"{task}: {where} you took exp of the raw scores: subtract the running "
                              "maximum first, p = exp(scores - m_new[..., None]), or exp overflows for "
                              "large scores.")
        compare(task, l_got, l_ref, what=f"the new running sum l ({where})")
    if not _close(acc_got, acc_ref):
        if _close(acc_got, acc + p @ v):
            raise CheckFailed(f"{task}: {where} the output accumulator was not rescaled when the "
                              "maximum changed: multiply the old acc by exp(m_old - m_new) (one "
                              "factor per query, acc * alpha[..., None]) before adding p @ v.")
        if _close(acc_got, acc_ref / l_ref[..., None]):
            raise CheckFailed(f"{task}: {where} acc was divided by the running sum inside the step. "
                              "Keep acc un-normalised (a sum of exp(score - m) * value) and divide by l "
                              "once, after the last block.")
        compare(task, acc_got, acc_ref, what=f"the new accumulator acc ({where})")


def check_online_softmax_step(fn: Callable) -> bool:
    """Check ``fn(m, l, acc, scores, v) -> (m, l, acc)``: one block of the online softmax."""
    task = "online_softmax_step"

    def body() -> str:
        g = torch.Generator().manual_seed(1111)
        cases = _step_cases(g)
        for where, state in cases:
            got = call(task, fn, *(x.clone() for x in state))
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                raise CheckFailed(f"{task}: return the three updated tensors (m, l, acc), got "
                                  f"{type(got).__name__}" + (f" of length {len(got)}"
                                                             if isinstance(got, (tuple, list)) else ""))
            _diagnose_step(task, f"for {where}:", tuple(got), state)
        return f"{len(cases)} states, including a first block and logits near 800"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: the loop

def _tiled_variant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int, causal: bool,
                   mistake: str = "") -> torch.Tensor:
    """The tiled loop over key blocks (all queries at once), optionally with one learner mistake."""
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 if mistake == "no scale" else 1 / math.sqrt(q.shape[-1])
    m = q.new_full(q.shape[:-1], -math.inf)
    l, acc = q.new_zeros(q.shape[:-1]), q.new_zeros(*q.shape[:-1], v.shape[-1])
    stop = S - S % block_size if mistake == "partial block dropped" else S
    shift = {"diagonal masked": 0, "one key ahead": 2}.get(mistake, 1)
    for ks in range(0, stop, block_size):
        scores = (q @ k[..., ks:ks + block_size, :].transpose(-2, -1)) * scale  # (..., T, Bk)
        if causal and mistake != "causal ignored":
            first = 0 if mistake == "block positions" else ks
            k_pos = torch.arange(first, first + scores.shape[-1])
            scores = scores.masked_fill(k_pos >= torch.arange(T)[:, None] + shift, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., ks:ks + block_size, :])
        if mistake == "divided every block":
            acc = acc / l[..., None]
    if mistake in ("no final division", "divided every block"):
        return acc
    return acc / l[..., None]


_LOOP_MISTAKES = {
    "no final division": "the output was never divided by the running sum l: after the last block "
                         "return acc / l[..., None].",
    "divided every block": "acc was divided by l after every block; the next block's rescaling then "
                           "mixes normalised and un-normalised sums. Keep acc un-normalised inside "
                           "the loop and divide once, after the last block.",
    "no scale": "the scores are not scaled: divide q @ k^T by sqrt(Dh) = sqrt(q.shape[-1]).",
    "causal ignored": "the causal mask is ignored: with causal=True, query t must not see keys after t.",
    "diagonal masked": "the causal mask is off by one: it hides the diagonal, so query t cannot see "
                       "key t (and query 0 sees nothing). Block key s where s > t, not s >= t.",
    "one key ahead": "the causal mask is off by one: query t also sees key t + 1. Block key s where "
                     "s > t.",
    "block positions": "the causal mask counts key positions from the start of each block: the key "
                       "at column j of the block starting at s is key s + j; compare s + j with the "
                       "query's position t.",
    "partial block dropped": "the last, partial block of keys is missing: loop over "
                             "range(0, S, block_size); slicing k[..., s:s + block_size] stops at S.",
}


def check_tiled_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v, block_size, causal) -> output``: tiled attention equal to exact attention."""
    task = "tiled_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(2222)
        cases = [((2, 8, 8, 4), 4, False), ((1, 7, 10, 8), 3, False), ((3, 9, 9, 4), 4, True),
                 ((2, 6, 11, 4), 5, True), ((1, 5, 5, 2), 1, True), ((2, 4, 6, 4), 16, False)]
        for (B, T, S, Dh), block, causal in cases:
            q = torch.randn(B, T, Dh, generator=g, dtype=torch.float64)
            k = torch.randn(B, S, Dh, generator=g, dtype=torch.float64)
            v = torch.randn(B, S, Dh + 1, generator=g, dtype=torch.float64)
            got = call(task, fn, q.clone(), k.clone(), v.clone(), block, causal)
            ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            where = (f"for q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)}, block_size={block}, "
                     f"causal={causal}:")
            if _close(got, ref, atol=1e-8):
                continue
            if isinstance(got, torch.Tensor) and got.shape == ref.shape:
                clean = got.detach().double().nan_to_num(0.0)
                for mistake, message in _LOOP_MISTAKES.items():
                    wrong = _tiled_variant(q, k, v, block, causal, mistake).nan_to_num(0.0)
                    if not _close(wrong, ref, atol=1e-8) and _close(clean, wrong, atol=1e-8):
                        raise CheckFailed(f"{task}: {where} {message}")
            compare(task, got, ref, atol=1e-8, what=f"the output {where}")
        return f"{len(cases)} inputs: T != S, T not a multiple of the block, causal and not"

    return run_check(task, body)
