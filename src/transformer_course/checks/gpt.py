"""Checks for solutions/10_decoder_only_gpt: the sampling distribution and a cached attention step.

Shapes: B batch, H heads, S cached positions, n new positions, Dh head size, V vocabulary.
Masks follow the course's convention: boolean, True where attention is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._core import CheckFailed, call, check_distribution, close, compare, fmt_shape, run_check, unpack

__all__ = ["check_sampling_probs", "check_attend_with_cache"]


def _like(got: object, want: torch.Tensor, atol: float = 1e-5) -> bool:
    return close(got, want, atol=atol, nonfinite=True)


# ----------------------------------------------------------------------------- task 1: the sampler

# The course's own sampler: the task is to write the filter by hand.
_SAMPLERS = ("transformer_course.gpt:top_k_filter", "transformer_course.gpt:sampling_probs",
             "transformer_course.gpt:sample_next")

# (logits shape, temperature, top_k, dtype): float64 logits once, so that the result must keep
# the dtype of `logits` rather than be float32 whatever comes in
_SAMPLING_CASES = [((4, 9), 0.5, None, torch.float32), ((4, 9), 2.0, 3, torch.float32),
                   ((2, 3, 6), 0.7, 2, torch.float32), ((5, 8), 1.5, 1, torch.float32),
                   ((3, 7), 0.8, 7, torch.float32), ((5, 10), 1.0, 4, torch.float32),
                   ((3, 8), 1.2, 3, torch.float64)]

# (float32 logits, temperature, top_k), after the random cases. Logits / temperature up to 100:
# exp overflows float32 above about 88, so a softmax by hand must subtract each row's maximum (a
# row 200 below the other's maximum underflows to 0 / 0 if it subtracts one maximum for the batch).
# Then ties at the k-th largest: keeping all the tied logits or exactly k of them are both right.
_FIXED_CASES = [([[100.0, 90.0, 80.0, 0.0], [-100.0, -110.0, -120.0, -130.0], [3.0, 1.0, 0.0, -2.0]], 1.0,
                 None),
                ([[50.0, 40.0, 0.0, -5.0], [10.0, 9.0, -3.0, -4.0]], 0.5, 2),
                ([[3.0, 1.0, 1.0, 0.0, -1.0, 1.0], [2.0, 2.0, 2.0, 0.0, -1.0, -3.0],
                  [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]], 1.0, 2)]


def _top(x: torch.Tensor, k: int, dim: int = -1, largest: bool = True) -> torch.Tensor:
    """True at the k largest (or smallest) entries along ``dim``; nothing for k = 0."""
    if k == 0:
        return torch.zeros_like(x, dtype=torch.bool)
    kth = x.topk(k, dim=dim, largest=largest).values.narrow(dim, k - 1, 1)
    return x >= kth if largest else x <= kth


def _sampling_logits(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Rows far apart (one row far below the others' maxima), as the logits of a batch are."""
    shift = torch.randn(*shape[:-1], 1, generator=g) * 6  # (..., 1)
    shift.view(-1)[0] = shift.min() - 8
    return torch.randn(*shape, generator=g) * 2 + shift  # (..., V)


def _sampler_mistakes(x: torch.Tensor, t: float, k: int | None) -> list[tuple[torch.Tensor, str]]:
    """Wrong answers, whole, with what each got wrong (float64 logits in)."""
    keep = torch.ones_like(x, dtype=torch.bool) if k is None else _top(x, k)  # the same for x / t

    def soft(y: torch.Tensor) -> torch.Tensor:
        return torch.softmax(y, -1)

    def filt(y: torch.Tensor) -> torch.Tensor:
        return y.masked_fill(~keep, -math.inf)

    z = x / t
    wrong = [
        (soft(filt(x)), "the temperature has no effect: divide the logits by the temperature before "
                        "the softmax."),
        (soft(filt(x * t)), "you multiplied the logits by the temperature; divide by it (a "
                            "temperature below 1 must sharpen the distribution)."),
        (soft(filt(x)) / t, "you divided the probabilities by the temperature after the softmax; "
                            "divide the logits before it."),
        (soft(soft(filt(x)) / t), "you applied the temperature after a first softmax; divide the "
                                  "logits by the temperature, then take one softmax."),
        (torch.log_softmax(filt(z), -1), "you returned log-probabilities: return the probabilities, "
                                         "the softmax of the filtered logits."),
        (filt(z), "you returned logits (divided by the temperature, filtered): return probabilities, "
                  "their softmax over the last axis."),
    ]
    if k is not None and k < x.shape[-1]:
        wrong += [
            (soft(z), "top_k is ignored: only the top_k largest logits of each row may keep "
                      "probability; set the others to float('-inf') before the softmax."),
            (soft(z).masked_fill(~keep, 0.0), "you zeroed the dropped tokens after the softmax "
                                              "without renormalising, so a row no longer sums to 1: "
                                              "set the dropped logits to -inf, then take the softmax."),
            (soft(z.masked_fill(~keep, 0.0)), "the dropped logits were set to 0, and a logit of 0 "
                                              "still gets probability after the softmax: set them to "
                                              "float('-inf'), which the softmax turns into exactly 0."),
        ]
    return wrong


def _kept(got: torch.Tensor) -> torch.Tensor:
    """(..., V) bool: the tokens the learner gave probability (> 0); rows with NaN or inf keep none."""
    p = got.detach().double()
    return (p > 0) & torch.isfinite(p).all(-1, keepdim=True)


def _keep(got: object, x: torch.Tensor, k: int | None) -> torch.Tensor:
    """(..., V) bool: the tokens a right answer keeps; at a tie with the k-th largest, the learner's choice.

    Every logit >= the k-th largest (the ties kept, as gpt.top_k_filter does), or, in the rows
    where the learner kept exactly k tokens, all above the k-th largest and some tied with it
    (a scatter of topk's indices): both are right.
    """
    if k is None:
        return torch.ones_like(x, dtype=torch.bool)
    ties = _top(x, k)  # (..., V): >= the k-th largest
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        return ties
    above = x > x.topk(k, dim=-1).values[..., -1:]  # (..., V)
    kept = _kept(got)
    exactly_k = ((kept.sum(-1) == k) & ~(kept & ~ties).any(-1) & ~(above & ~kept).any(-1))[..., None]
    return torch.where(exactly_k, kept, ties)


def _diagnose_nan(task: str, where: str, got: torch.Tensor, z: torch.Tensor, dtype: torch.dtype) -> None:
    """Name an unsafe softmax: NaN where the reference ``softmax(z)`` has none (z filtered, float64).

    Other NaN (a row whose filter kept nothing) are left to the diagnoses of the filter.
    """
    if not isinstance(got, torch.Tensor) or got.shape != z.shape:
        return
    rows = torch.isnan(got.detach()).any(-1)  # (...,)
    if not rows.any():
        return
    limit = math.log(torch.finfo(dtype).max)  # exp overflows above it: 88.7 for float32
    top = z.amax(-1)  # (...,): each row's largest logit / temperature
    name = str(dtype).removeprefix("torch.")
    if (top[rows] > limit).any():
        raise CheckFailed(f"{task}: {where}: your result has NaN in the rows whose largest logit / "
                          f"temperature is {top[rows].max():g}: exp of it overflows {name} (above about "
                          f"{limit:.1f}) to inf, and inf / inf is NaN. Subtract each row's maximum before "
                          "exp, z - z.amax(dim=-1, keepdim=True) (the softmax stays the same), or use "
                          "torch.softmax.")
    if (z.max() - top[rows] > limit).any():
        raise CheckFailed(f"{task}: {where}: your result has NaN in a row whose logits sit far below the "
                          "batch's largest: did you subtract one maximum for the whole batch? Every exp of "
                          "that row then underflows to 0, and 0 / 0 is NaN. Subtract each row's own "
                          "maximum, z.amax(dim=-1, keepdim=True).")


def _diagnose_kept(task: str, where: str, got: torch.Tensor, x: torch.Tensor, k: int,
                   keep: torch.Tensor) -> None:
    """Name the mistake in which tokens keep probability (> 0); ``keep``: the right ones."""
    kept = _kept(got)
    if torch.equal(kept, keep):
        return
    counts = kept.sum(-1).flatten().tolist()
    if k + 1 <= x.shape[-1] and torch.equal(kept, _top(x, k + 1)):
        raise CheckFailed(f"{task}: {where}: every row keeps k + 1 = {k + 1} tokens instead of "
                          f"top_k = {k}: an off-by-one. The k-th largest logit is "
                          "logits.topk(k, dim=-1).values[..., -1:] (index k - 1, the last of the top k).")
    if torch.equal(kept, _top(x, k - 1)):
        raise CheckFailed(f"{task}: {where}: every row keeps k - 1 = {k - 1} tokens instead of "
                          f"top_k = {k}: an off-by-one. Keep the logits >= the k-th largest (drop "
                          "those <); `>` drops the k-th largest itself.")
    if x.dim() >= 2 and x.shape[-2] >= k and torch.equal(kept, _top(x, k, dim=-2)):
        raise CheckFailed(f"{task}: {where}: you took the top k over the wrong axis: the vocabulary is "
                          "the last axis, dim=-1.")
    if torch.equal(kept, _top(x, k, largest=False)):
        raise CheckFailed(f"{task}: {where}: you kept the k smallest logits: keep the k largest (the "
                          "most likely tokens); check the comparison, or topk's largest=True.")
    if kept.any() and (~kept).any() and x[~kept].max() < x[kept].min():
        raise CheckFailed(f"{task}: {where}: your function used one threshold for all the rows: the "
                          f"rows keep {counts} tokens. Each row needs its own k-th largest logit, "
                          "logits.topk(k, dim=-1).values[..., -1:] of shape (..., 1), not one number "
                          "for the whole batch: with one number, a row whose logits sit low keeps "
                          "fewer than k tokens (or none) and a row whose logits sit high keeps more.")
    raise CheckFailed(f"{task}: {where}: the tokens with probability > 0 are not the top_k = {k} "
                      f"largest logits of each row (the rows keep {counts} tokens).")


def check_sampling_probs(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(logits, temperature, top_k)``: softmax of the top-k filtered logits / temperature."""
    task = "sampling_probs"

    def body() -> str:
        g = torch.Generator().manual_seed(1011)
        cases = [(_sampling_logits(shape, g).to(dtype), t, k) for shape, t, k, dtype in _SAMPLING_CASES]
        cases += [(torch.tensor(rows), t, k) for rows, t, k in _FIXED_CASES]
        for logits, t, k in cases:
            dtype = logits.dtype
            kind = "" if dtype == torch.float32 else f" of dtype {str(dtype).removeprefix('torch.')}"
            rows = "" if logits.numel() > 24 else (  # a small batch of its own: its rows, as numbers
                " [" + ", ".join(f"[{', '.join(f'{v:g}' for v in row)}]" for row in logits.tolist()) + "]")
            where = f"for logits {fmt_shape(logits.shape)}{kind}{rows}, temperature={t}, top_k={k}"
            try:
                got = call(task, fn, logits, t, k, forbid=_SAMPLERS)
            except CheckFailed as err:
                if k is None or "must match the size of tensor" not in str(err):
                    raise
                raise CheckFailed(f"{err}. If it comes from comparing the logits with the k-th largest: "
                                  "keep its last axis, values[..., -1:] of shape (..., 1), so that each "
                                  "row is compared with its own.") from err
            x = logits.double()
            keep = _keep(got, x, k)
            z = (x / t).masked_fill(~keep, -math.inf)
            ref = torch.softmax(z, -1)
            if not isinstance(got, torch.Tensor) or got.shape != ref.shape or got.dtype != logits.dtype:
                compare(task, got, ref, what=f"the result, {where},", dtype=logits.dtype)
            _diagnose_nan(task, where, got, z, dtype)
            for wrong, message in _sampler_mistakes(x, t, k):
                if _like(got, wrong) and not _like(ref, wrong):
                    raise CheckFailed(f"{task}: {where}: {message}")
            if k is not None:
                _diagnose_kept(task, where, got, x, k, keep)
            check_distribution(task, got, ref.to(logits.dtype))
        return (f"{len(cases)} batches of logits (rows far apart, logits / temperature up to 100, ties at "
                "the k-th largest, float32 and float64), temperatures 0.5 to 2, top_k None and 1 to V")

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: a cached step

def _allowed(n: int, S: int, offset: int) -> torch.Tensor:
    """(n, S + n) mask: new query i may see keys 0 .. i + offset (offset S is right)."""
    return torch.arange(S + n)[None, :] <= torch.arange(n)[:, None] + offset


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None,
            scale: bool = True) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1)  # (B,H,n,Dh) @ (B,H,Dh,S+n) -> (B,H,n,S+n)
    if scale:
        scores = scores / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, -math.inf)
    return torch.softmax(scores, -1) @ v  # (B,H,n,S+n) @ (B,H,S+n,Dh) -> (B,H,n,Dh)


def _output_mistakes(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """Wrong outputs (float64), each with what it got wrong."""
    n, S = q.shape[-2], k_cache.shape[-2]
    k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)  # (B, H, S + n, Dh)
    right = _allowed(n, S, S)
    return [
        (_attend(q, k, v, None), "the new tokens see the new tokens after them: with n > 1 new "
                                 "positions, new query i (at position S + i) may see keys 0 .. S + i "
                                 "only, so mask the later ones (causally among the new tokens)."),
        (_attend(q, k, v, _allowed(n, S, 0)), "the causal mask is not offset by the cache length: new "
                                              "query i sits at position S + i, so it sees all S cached "
                                              "keys and the new keys up to itself, key j <= S + i. A "
                                              "mask built as torch.ones(n, S + n).tril() (or is_causal=True "
                                              "when n != S + n) lines the queries up with keys 0 .. n - 1 "
                                              "instead: use .tril(diagonal=S)."),
        (_attend(q, k, v, _allowed(n, S, S - 1)), "the causal mask is off by one: it hides the diagonal, "
                                                  "so new query i cannot see its own key S + i. Allow key j "
                                                  "where j <= S + i."),
        (_attend(q, k, v, _allowed(n, S, S + 1)), "the causal mask is off by one: new query i also sees "
                                                  "the next key, S + i + 1. Allow key j where j <= S + i."),
        (_attend(q, k, v, ~right), "the mask is inverted: in this course True means 'may attend', so "
                                   "fill the scores where the mask is False, "
                                   "scores.masked_fill(~mask, float('-inf'))."),
        (_attend(q, k_new, v_new, _allowed(n, 0, 0)), "the output ignores the cache: the new tokens must "
                                                      "also attend over the S cached keys and values."),
        (_attend(q, k_cache, v_cache, None), "the output attends over the stale cache only: the new "
                                             "tokens must also see themselves; attend over the cache "
                                             "with the new keys and values appended."),
        (_attend(q, k, v, right, scale=False), "the scores are not scaled: divide q @ k^T by sqrt(Dh) "
                                               f"= {math.sqrt(q.shape[-1]):.4g}."),
        (_attend(q, k, k, right), "the output mixes the keys: the weights multiply the values, "
                                  "weights @ v."),
    ]


def _check_cache(task: str, where: str, name: str, got: object, old: torch.Tensor, new: torch.Tensor,
                 other: torch.Tensor) -> None:
    """The grown cache of ``name`` ("k" or "v"); ``other`` is the other one's right value."""
    ref = torch.cat([old, new], -2)  # (B, H, S + n, Dh)
    what = f"the new cached {name}, {where},"
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: {what} should be a tensor, got {type(got).__name__}")
    if got.shape == old.shape and close(got, old):
        raise CheckFailed(f"{task}: {where}: you returned the old cache of {name}: append the new "
                          f"{name} to it (torch.cat along the positions, dim=-2) and return the grown "
                          "cache, or the next step will not see these tokens.")
    if got.shape == new.shape and close(got, new) and old.shape[-2] > 0:
        raise CheckFailed(f"{task}: {where}: the cache of {name} you returned holds only the new "
                          f"positions: return the grown cache, the old one with the new {name} appended "
                          "(torch.cat([cache, new], dim=-2)), or the next step forgets the earlier tokens.")
    if got.shape != ref.shape and got.numel() == ref.numel() and got.shape[-2] == old.shape[-2]:
        axis = "the last axis (the features)" if got.shape[-1] != ref.shape[-1] else "another axis"
        raise CheckFailed(f"{task}: {where}: the cached {name} has shape {fmt_shape(got.shape)}: you "
                          f"appended along {axis}; append along the positions, dim=-2, to get "
                          f"(B, H, S + n, Dh) = {fmt_shape(ref.shape)}.")
    if got.shape == ref.shape and close(got, torch.cat([new, old], -2)) and old.shape[-2] > 0:
        raise CheckFailed(f"{task}: {where}: you put the new {name} before the cached ones: append at "
                          "the end, torch.cat([cache, new], dim=-2), so positions stay in order.")
    if got.shape == ref.shape and close(got, other) and not close(ref, other):
        raise CheckFailed(f"{task}: {where}: the cache of {name} holds the "
                          f"{'values' if name == 'k' else 'keys'}: append k_new to k_cache and "
                          "v_new to v_cache.")
    compare(task, got, ref, what=what)


def _cached_step(task: str, fn: Callable, q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor,
                 k_cache: torch.Tensor, v_cache: torch.Tensor, q_past: torch.Tensor) -> tuple:
    """Run one step of ``fn``, check it against full causal attention; return its grown caches."""
    n, S = q.shape[-2], k_cache.shape[-2]
    where = f"with a cache of S={S} positions and n={n} new ones (q {fmt_shape(q.shape)})"
    try:
        result = call(task, fn, q, k_new, v_new, k_cache, v_cache)
    except CheckFailed as err:
        joined = re.search(r"Sizes of tensors must match except in dimension (\d+)", str(err))
        if not joined:
            raise
        raise CheckFailed(f"{task}: {where}: torch.cat failed: you joined them along dimension "
                          f"{joined.group(1)}, but the cache (B, H, S, Dh) and the new keys (B, H, n, Dh) "
                          "differ only in the positions axis: append along dim=-2.") from err
    out, k_all, v_all = unpack(task, result, ("out", "k_cache", "v_cache"))
    k_ref, v_ref = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)  # (B, H, S + n, Dh)
    _check_cache(task, where, "k", k_all, k_cache, k_new, v_ref)
    _check_cache(task, where, "v", v_all, v_cache, v_new, k_ref)
    # the reference: causal attention over the whole sequence at once, its last n rows
    f64 = [x.double() for x in (q, k_new, v_new, k_cache, v_cache)]
    full = F.scaled_dot_product_attention(torch.cat([q_past.double(), f64[0]], -2), k_ref.double(),
                                          v_ref.double(), is_causal=True)  # (B, H, S + n, Dh)
    ref = full[..., S:, :]  # (B, H, n, Dh)
    if isinstance(out, torch.Tensor) and out.shape == ref.shape and not close(out, ref):
        for wrong, message in _output_mistakes(*f64):
            if _like(out, wrong) and not _like(ref, wrong):
                raise CheckFailed(f"{task}: {where}: {message}")
    compare(task, out, ref, what=f"the output, {where},", dtype=q.dtype)
    return k_all, v_all


def check_attend_with_cache(fn: Callable[..., tuple]) -> bool:
    """Check ``fn(q, k_new, v_new, k_cache, v_cache) -> (out, k_cache, v_cache)``: a cached step.

    q, k_new, v_new are (B, H, n, Dh) for n new positions (a prefill of several, or one); the
    caches (B, H, S, Dh) hold the S earlier ones (S may be 0). The output must equal the last n
    rows of causal attention over the whole sequence of S + n positions.
    """
    task = "attend_with_cache"

    def body() -> str:
        g = torch.Generator().manual_seed(1012)

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g)

        for B, H, S, n, Dh in [(2, 3, 5, 4, 8), (1, 2, 3, 3, 4), (3, 1, 7, 1, 6), (2, 2, 0, 5, 4)]:
            _cached_step(task, fn, rand(B, H, n, Dh), rand(B, H, n, Dh), rand(B, H, n, Dh),
                         rand(B, H, S, Dh), rand(B, H, S, Dh), rand(B, H, S, Dh))
        # a whole generation: the cache starts empty, then grows by the answer's own returned caches
        B, H, Dh, chunks = 2, 2, 4, (4, 1, 1, 3)
        q, k, v = rand(B, H, sum(chunks), Dh), rand(B, H, sum(chunks), Dh), rand(B, H, sum(chunks), Dh)
        k_cache, v_cache = k[..., :0, :], v[..., :0, :]  # (B, H, 0, Dh)
        start = 0
        for n in chunks:
            new = slice(start, start + n)
            k_cache, v_cache = _cached_step(task, fn, q[..., new, :], k[..., new, :], v[..., new, :],
                                            k_cache, v_cache, q[..., :start, :])
            start += n
        return ("4 random steps (prefills of 1 to 5 new positions, caches of 0 to 7) and a prompt of 4 "
                "then 1, 1 and 3 tokens on the returned caches")

    return run_check(task, body)
