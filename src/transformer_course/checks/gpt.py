"""Checks for solutions/10_decoder_only_gpt: top-k filtering, the sampling distribution, a cached step.

Shapes: B batch, H heads, S cached positions, Dh head size, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._core import CheckFailed, call, check_distribution, compare, fmt_shape, run_check

__all__ = ["check_top_k_filter", "check_sampling_probs", "check_attend_with_cache"]


def _same(a: object, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().float(), b.float(), atol=atol, rtol=1e-4)))


def _ref_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


# ----------------------------------------------------------------------------- top-k

def _diagnose_top_k(task: str, got: torch.Tensor, logits: torch.Tensor, k: int) -> None:
    where = f"for logits {fmt_shape(logits.shape)} and k={k}"
    got = got.detach().float()
    if torch.isnan(got).any():
        raise CheckFailed(f"{task}: {where} the result contains NaN; fill the dropped logits with "
                          "float('-inf').")
    dropped = torch.isneginf(got) | (got <= -1e9)  # -inf, or a number so negative it acts as one
    if torch.allclose(got.sum(-1), torch.ones(got.shape[:-1]), atol=1e-4) and (got >= 0).all():
        raise CheckFailed(f"{task}: {where} you returned probabilities; return the logits with all "
                          "but the k largest set to -inf (the softmax comes later).")
    if not dropped.any() and k < logits.shape[-1]:
        zeros = (got == 0) & (logits != 0)
        if zeros.any():
            raise CheckFailed(f"{task}: {where} the dropped logits are 0, and a logit of 0 still "
                              "gets probability after the softmax: fill them with float('-inf').")
        raise CheckFailed(f"{task}: {where} nothing was dropped: keep the k largest logits of each "
                          "row and set the others to -inf.")
    ref_kept = torch.isfinite(_ref_top_k(logits, k))
    if logits.dim() >= 2 and logits.shape[-2] >= k and not torch.equal(~dropped, ref_kept):
        other = torch.isfinite(_ref_top_k(logits.transpose(-1, -2), k).transpose(-1, -2))
        if torch.equal(~dropped, other):
            raise CheckFailed(f"{task}: {where} you took the top k over the wrong axis: the "
                              "vocabulary is the last axis, dim=-1.")
    kept = (~dropped).sum(-1)  # (...,)
    if not (kept == k).all():
        n = int(kept.flatten()[(kept != k).flatten().nonzero()[0]])
        hint = (" An off-by-one: compare with the k-th largest value using >=, e.g. "
                "logits < logits.topk(k).values[..., -1:] marks the ones to drop."
                if abs(n - k) == 1 else "")
        raise CheckFailed(f"{task}: {where} a row keeps {n} logits instead of k={k}.{hint}")
    if torch.equal(~dropped, torch.isfinite(_ref_top_k(-logits, k))) and not torch.equal(~dropped, ref_kept):
        raise CheckFailed(f"{task}: {where} you kept the k smallest logits: keep the k largest "
                          "(the most likely tokens). Check the sign of the comparison, or "
                          "topk's largest=True.")
    if not torch.equal(~dropped, ref_kept):
        raise CheckFailed(f"{task}: {where} some of the kept logits are not among the k largest "
                          "of their row.")
    if not torch.allclose(got[~dropped], logits[~dropped], atol=1e-5):
        raise CheckFailed(f"{task}: {where} the kept logits were changed: keep them as they are "
                          "and only set the others to -inf.")


def check_top_k_filter(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(logits, k)``: the k largest logits of each row kept, the others set to -inf."""
    task = "top_k_filter"

    def body() -> str:
        g = torch.Generator().manual_seed(1010)
        cases = [((4, 10), 3), ((2, 3, 7), 1), ((5, 6), 5), ((3, 8), 8), ((6, 12), 4)]  # (shape, k)
        for shape, k in cases:
            logits = torch.randn(*shape, generator=g) * 2
            got = call(task, fn, logits.clone(), k)
            ref = _ref_top_k(logits, k)
            if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
                compare(task, got, ref, what=f"the result for logits {fmt_shape(logits.shape)}")
            _diagnose_top_k(task, got, logits, k)
        return f"{len(cases)} random inputs, k from 1 to V"

    return run_check(task, body)


# ----------------------------------------------------------------------------- sampling distribution

def _diagnose_probs(task: str, got: torch.Tensor, logits: torch.Tensor, t: float, k: int | None) -> None:
    where = f"for temperature={t} and top_k={k}"
    filt = (lambda x: x) if k is None else (lambda x: _ref_top_k(x, k))
    got = got.detach().float()
    if not torch.isfinite(got).all():
        raise CheckFailed(f"{task}: {where} the probabilities contain NaN or infinity.")
    candidates = [
        (torch.softmax(filt(logits), -1), "the temperature has no effect: divide the logits by the "
                                          "temperature before the softmax."),
        (torch.softmax(filt(logits * t), -1), "you multiplied the logits by the temperature; divide "
                                              "by it (a low temperature must sharpen the distribution)."),
        (torch.softmax(filt(logits), -1) / t, "you divided the probabilities by the temperature after "
                                              "the softmax; divide the logits before it."),
        (torch.softmax(torch.softmax(filt(logits), -1) / t, -1),
         "you applied the temperature after a first softmax; divide the logits by the temperature, "
         "then take one softmax."),
        (torch.softmax(logits / t, -1), "top-k is ignored: only the top_k most likely tokens may "
                                        "have probability; set the other logits to -inf."),
    ]
    if k is not None:
        p = torch.softmax(logits / t, -1)
        candidates.append((p.masked_fill(~torch.isfinite(_ref_top_k(logits, k)), 0.0),
                           "you filtered after the softmax without renormalising, so the "
                           "probabilities no longer sum to 1: filter the logits, then take the softmax."))
    ref = torch.softmax(filt(logits / t), -1)
    for wrong, message in candidates:
        if _same(got, wrong) and not _same(got, ref):
            raise CheckFailed(f"{task}: {where} {message}")


def check_sampling_probs(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(logits, temperature, top_k)``: softmax(top-k filtered logits / temperature)."""
    task = "sampling_probs"

    def body() -> str:
        g = torch.Generator().manual_seed(1011)
        cases = [((4, 9), 0.5, None), ((3, 9), 2.0, 3), ((2, 3, 6), 0.7, 2), ((5, 8), 1.5, 1),
                 ((3, 7), 0.8, 7)]
        for shape, t, k in cases:
            logits = torch.randn(*shape, generator=g) * 2
            got = call(task, fn, logits.clone(), t, k)
            ref = torch.softmax((logits / t) if k is None else _ref_top_k(logits / t, k), -1)
            if isinstance(got, torch.Tensor) and got.shape == ref.shape:
                _diagnose_probs(task, got, logits, t, k)
            check_distribution(task, got, ref)
        return f"{len(cases)} random inputs, temperatures 0.5 to 2, top_k None and 1 to V"

    return run_check(task, body)


# ----------------------------------------------------------------------------- one cached step

def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v  # (B,H,1,Dh) @ (B,H,Dh,S) -> ... (B,H,1,Dh)


def _diagnose_step(task: str, result: tuple, case: tuple[torch.Tensor, ...]) -> None:
    q, k_new, v_new, k_cache, v_cache = case
    out, k_all, v_all = result
    B, H, S, Dh = k_cache.shape
    where = f"with a cache of S={S} positions, q {fmt_shape(q.shape)}"
    ref_k, ref_v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)  # (B, H, S + 1, Dh)
    pairs = (("k", k_all, ref_k, k_cache, k_new), ("v", v_all, ref_v, v_cache, v_new))
    for name, got, ref, old, new in pairs:
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"{task}: the new cached {name} should be a tensor, got {type(got).__name__}")
        if got.shape == old.shape and _same(got, old):
            raise CheckFailed(f"{task}: {where} you returned the old cache of {name}: append the new "
                              f"{name} to it (torch.cat along the positions, dim=-2) and return the "
                              "grown cache, or the next step will not see this token.")
        if got.shape == (B, H, S, 2 * Dh):
            raise CheckFailed(f"{task}: {where} the cached {name} has shape {fmt_shape(got.shape)}: you "
                              "appended along the last axis (the features); append along the "
                              "positions, dim=-2, to get (B, H, S + 1, Dh).")
        if got.shape == ref.shape and _same(got, torch.cat([new, old], -2)):
            raise CheckFailed(f"{task}: {where} you put the new {name} before the cached ones: append "
                              "it at the end, torch.cat([cache, new], dim=-2), so positions stay in order.")
        if name == "k" and got.shape == ref.shape and _same(got, ref_v):
            raise CheckFailed(f"{task}: {where} the key cache holds the values: append k_new to k_cache "
                              "and v_new to v_cache.")
        compare(task, got, ref, what=f"the new cached {name} {where}")
    if isinstance(out, torch.Tensor) and out.shape == q.shape:
        if _same(out, _attention(q, k_cache, v_cache)):
            raise CheckFailed(f"{task}: {where} the output attends over the stale cache only: the new "
                              "token must also see itself; attend over the cache with the new key and "
                              "value appended.")
        if _same(out, _attention(q, ref_k, ref_v, scale=1.0)):
            raise CheckFailed(f"{task}: {where} the scores are not scaled: divide q @ k^T by "
                              f"sqrt(Dh) = {math.sqrt(Dh):.4g}.")
        if _same(out, _attention(q, ref_k, ref_k)):
            raise CheckFailed(f"{task}: {where} the output mixes the keys: the weights multiply the "
                              "values, weights @ v.")
    compare(task, out, _attention(q, ref_k, ref_v), what=f"the output {where}")


def check_attend_with_cache(fn: Callable[..., tuple]) -> bool:
    """Check ``fn(q, k_new, v_new, k_cache, v_cache) -> (out, k_cache, v_cache)``: one cached step.

    q, k_new, v_new are (B, H, 1, Dh) for the newest token; the caches (B, H, S, Dh) hold the
    earlier positions. The step appends the new key and value and attends over all S + 1.
    """
    task = "attend_with_cache"

    def body() -> str:
        g = torch.Generator().manual_seed(1012)
        cases = [(2, 4, 5, 8), (1, 2, 1, 4), (3, 1, 9, 6)]  # (B, H, S, Dh)
        for B, H, S, Dh in cases:
            case = (torch.randn(B, H, 1, Dh, generator=g), torch.randn(B, H, 1, Dh, generator=g),
                    torch.randn(B, H, 1, Dh, generator=g), torch.randn(B, H, S, Dh, generator=g),
                    torch.randn(B, H, S, Dh, generator=g))
            try:
                result = fn(*(x.clone() for x in case))
            except NotImplementedError:
                raise
            except RuntimeError as err:
                if "Sizes of tensors must match" in str(err) or "size of tensor" in str(err):
                    said = str(err).rstrip(".")
                    raise CheckFailed(f"{task}: your function raised RuntimeError: {said}. The cache "
                                      "(B, H, S, Dh) and the new key (B, H, 1, Dh) differ only in the "
                                      "positions axis: append along dim=-2.") from err
                result = call(task, fn, *(x.clone() for x in case))
            except Exception:  # the learner's code may raise anything: reported in words
                result = call(task, fn, *(x.clone() for x in case))
            if not isinstance(result, (tuple, list)) or len(result) != 3:
                raise CheckFailed(f"{task}: return a triple (out, k_cache, v_cache) with the grown "
                                  f"caches, got {type(result).__name__}")
            _diagnose_step(task, tuple(result), case)
        return f"{len(cases)} random caches of 1 to 9 positions"

    return run_check(task, body)
