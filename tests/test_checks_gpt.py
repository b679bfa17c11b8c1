"""The GPT checks accept the right answers and reject the mistakes learners make, in words.

Each check has two tables: WRONG answers (each must be rejected with its own message) and
RIGHT answers written in other ways (each must pass).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course import checks, gpt
from transformer_course.attention import scaled_dot_product_attention
from transformer_course.checks import CheckFailed

INF = float("-inf")

# ----------------------------------------------------------------------------- task 1: the sampler


def _filtered(x, k, *, kth_at=None, strict=False, largest=True, fill=INF, dim=-1):
    """Top-k filtering: the defaults are right, each option one mistake."""
    if k is None:
        return x
    if kth_at is None:
        kth_at = k - 1
    values = x.topk(x.shape[dim], dim=dim, largest=largest).values  # sorted
    kth = values.narrow(dim, kth_at, 1)
    drop = (x <= kth if strict else x < kth) if largest else x > kth
    return x.masked_fill(drop, fill)


def _sampler(x, t, k, **mistake):
    return torch.softmax(_filtered(x / t, k, **mistake), -1)


def _one_threshold(x, t, k):
    """The smallest k-th largest of all rows, used for every row."""
    if k is None:
        return torch.softmax(x / t, -1)
    kth = x.topk(k, -1).values[..., -1].min()
    return torch.softmax((x / t).masked_fill(x < kth, INF), -1)


def _top_k_of_the_batch(x, t, k):
    """The k largest logits of the whole batch, not of each row."""
    if k is None:
        return torch.softmax(x / t, -1)
    kth = x.flatten().topk(k).values[-1]
    return torch.softmax((x / t).masked_fill(x < kth, INF), -1)


def _no_keepdim(x, t, k):
    """The k-th largest without its last axis: (B,) against (B, V) does not broadcast per row."""
    if k is None:
        return torch.softmax(x / t, -1)
    return torch.softmax((x / t).masked_fill(x < x.topk(k, -1).values[..., -1], INF), -1)


def _divides_in_place(x, t, k):
    x /= t
    return torch.softmax(_filtered(x, k), -1)


def _masked_assignment(x, t, k):
    if k is not None:
        x[x < x.topk(k, -1).values[..., -1:]] = INF
    return torch.softmax(x / t, -1)


def _exp_without_the_maximum(x, t, k):
    """A softmax by hand that does not subtract the maximum: exp overflows float32 above about 88."""
    e = torch.exp(_filtered(x / t, k))
    return e / e.sum(-1, keepdim=True)


def _one_maximum_for_the_batch(x, t, k):
    """A softmax by hand that subtracts the batch's maximum: a row far below it underflows to 0 / 0."""
    z = _filtered(x / t, k)
    e = torch.exp(z - z.max())
    return e / e.sum(-1, keepdim=True)


SAMPLER_MISTAKES = {
    "no temperature": (lambda x, t, k: torch.softmax(_filtered(x, k), -1), "temperature has no effect"),
    "multiplies by the temperature": (lambda x, t, k: _sampler(x * t * t, t, k),
                                      "multiplied the logits by the temperature"),
    "temperature after the softmax": (lambda x, t, k: torch.softmax(_filtered(x, k), -1) / t,
                                      "divided the probabilities by the temperature after"),
    "temperature after a first softmax": (
        lambda x, t, k: torch.softmax(torch.softmax(_filtered(x, k), -1) / t, -1), "after a first softmax"),
    "log-probabilities": (lambda x, t, k: torch.log_softmax(_filtered(x / t, k), -1),
                          "returned log-probabilities"),
    "top-k ignored": (lambda x, t, k: torch.softmax(x / t, -1), "top_k is ignored"),
    "zeroed after the softmax": (lambda x, t, k: torch.softmax(x / t, -1).masked_fill(
        torch.isinf(_filtered(x, k)), 0.0), "without renormalising"),
    "dropped logits set to 0": (lambda x, t, k: _sampler(x, t, k, fill=0.0), "a logit of 0 still gets"),
    "returns the filtered logits": (lambda x, t, k: _filtered(x / t, k), "you returned logits"),
    "keeps k + 1 (index k)": (lambda x, t, k: _sampler(x, t, k, kth_at=k),
                              r"keeps k \+ 1 = 4 tokens.*off-by-one"),
    "keeps k - 1 (strict >)": (lambda x, t, k: _sampler(x, t, k, strict=True),
                               "keeps k - 1 = 2 tokens.*off-by-one"),
    "one threshold for the batch": (_one_threshold, "one threshold for all the rows"),
    "the top k of the whole batch": (_top_k_of_the_batch, "one threshold for all the rows"),
    "top k over the wrong axis": (lambda x, t, k: _sampler(x, t, k, dim=0), "over the wrong axis"),
    "keeps the smallest": (lambda x, t, k: _sampler(x, t, k, largest=False), "kept the k smallest"),
    "softmax over the wrong axis": (lambda x, t, k: torch.softmax(_filtered(x / t, k), 0),
                                    "sum to 1 along axis 0"),
    "kth without keepdim": (_no_keepdim, r"raised RuntimeError.*keep its last axis, values\[\.\.\., -1:\]"),
    "divides the logits in place": (_divides_in_place, "changed its input `x` in place"),
    "masked assignment into the logits": (_masked_assignment, "changed its input `x` in place"),
    "calls the course's sampler": (lambda x, t, k: gpt.sampling_probs(x, t, k),
                                   r"called `transformer_course\.gpt\.sampling_probs`"),
    "calls the course's filter": (lambda x, t, k: torch.softmax(gpt.top_k_filter(x, k or x.shape[-1]), -1),
                                  r"called `transformer_course\.gpt\.top_k_filter`"),
    "returns float64": (lambda x, t, k: _sampler(x.double(), t, k), "is float64, expected float32"),
    "always returns float32": (lambda x, t, k: _sampler(x, t, k).float(),
                               r"logits \(3, 8\) of dtype float64.*is float32, expected float64"),
    "returns a list": (lambda x, t, k: _sampler(x, t, k).tolist(), "should be a torch.Tensor, got list"),
    "softmax by hand without the maximum": (_exp_without_the_maximum,
                                            r"largest logit / temperature is 100: exp of it overflows "
                                            r"float32 .* Subtract each row's maximum before exp"),
    "softmax by hand, one maximum for the batch": (_one_maximum_for_the_batch,
                                                   "did you subtract one maximum for the whole batch"),
}


def _sorted_rows(x, t, k):
    """Sort each row; the k-th largest is at index k - 1; torch.where instead of masked_fill."""
    z = x / t
    if k is not None and k < x.shape[-1]:
        kth = z.sort(dim=-1, descending=True).values[..., k - 1:k]
        z = torch.where(z >= kth, z, torch.full_like(z, -math.inf))
    return torch.softmax(z, dim=-1)


def _row_by_row(x, t, k):
    """A loop over the rows, a list of results stacked back."""
    rows = []
    for row in x.reshape(-1, x.shape[-1]):
        z = row / t
        if k is not None:
            z = z.masked_fill(z < torch.topk(z, k).values.min(), -math.inf)
        e = torch.exp(z - z.max())
        rows.append(e / e.sum())
    return torch.stack(rows).reshape(x.shape)


def _scatter(x, t, k):
    """Scatter the top k back into a row of -inf."""
    z = x / t
    if k is not None:
        top = z.topk(k, dim=-1)
        z = torch.full_like(z, -math.inf).scatter(-1, top.indices, top.values)
    return z.softmax(-1)


def _exactly_k_last_ties(x, t, k):
    """Exactly k kept, ties at the k-th largest cut the other way: the last tied tokens, not the first."""
    z = x / t
    if k is None:
        return torch.softmax(z, -1)
    V = x.shape[-1]
    order = z.flip(-1).argsort(dim=-1, descending=True, stable=True)[..., :k]  # ties: the last first
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, V - 1 - order, True)
    return torch.softmax(z.masked_fill(~keep, -math.inf), -1)


def _renormalise_after(x, t, k):
    """Softmax first, zero the dropped tokens, renormalise: the same distribution."""
    p = torch.softmax(x / t, -1)
    if k is not None:
        p = p * (x >= x.kthvalue(x.shape[-1] - k + 1, dim=-1, keepdim=True).values)
    return p / p.sum(-1, keepdim=True)


def _float64_inside(x, t, k):
    return _sampler(x.double(), t, k).to(x.dtype)


def _very_negative_fill(x, t, k):
    """-1e9 instead of -inf: exp gives exactly 0 in float32 too."""
    return _sampler(x, t, k, fill=-1e9)


def _filter_then_scale(x, t, k):
    return torch.softmax(_filtered(x, k) / t, -1)


def _where_in_the_logits_dtype(x, t, k):
    """torch.where with a -inf of the logits' own dtype; the softmax by hand."""
    z = x / t
    if k is not None:
        z = torch.where(z < z.topk(k, -1).values[..., -1:], torch.tensor(-math.inf, dtype=x.dtype), z)
    e = torch.exp(z - z.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


SAMPLER_RIGHT = {
    "torch.where with a -inf of the logits' dtype, softmax by hand": _where_in_the_logits_dtype,
    "topk and masked_fill": lambda x, t, k: _sampler(x, t, k),
    "filter, then divide by the temperature": _filter_then_scale,
    "sort and torch.where": _sorted_rows,
    "a loop over the rows": _row_by_row,
    # ties at the k-th largest (the check's last case): keeping all of them, as the answers above do,
    # and keeping exactly k, whichever k, are both right (the task's text says so)
    "scatter into -inf (exactly k at a tie)": _scatter,
    "exactly k, the last tied tokens": _exactly_k_last_ties,
    "kthvalue, renormalised after the softmax": _renormalise_after,
    "float64 inside, cast back": _float64_inside,
    "a very negative fill": _very_negative_fill,
}


@pytest.mark.parametrize("name", SAMPLER_RIGHT)
def test_sampler_check_accepts_right_answers(name, capsys):
    assert checks.check_sampling_probs(SAMPLER_RIGHT[name])
    assert "[x] sampling_probs" in capsys.readouterr().out


def test_sampler_check_has_ties_that_the_right_answers_cut_differently():
    from transformer_course.checks.gpt import _FIXED_CASES

    rows, t, k = _FIXED_CASES[-1]
    x = torch.tensor(rows)
    kept = [(fn(x, t, k) > 0).sum(-1).tolist() for fn in (_sampler, _scatter, _exactly_k_last_ties)]
    assert kept[0] != kept[1] == [k] * len(rows)  # all the ties, or exactly k
    assert not torch.equal(_scatter(x, t, k), _exactly_k_last_ties(x, t, k))


@pytest.mark.parametrize("name", SAMPLER_MISTAKES)
def test_sampler_check_rejects_mistakes(name):
    fn, message = SAMPLER_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_sampling_probs(fn)


# ----------------------------------------------------------------------------- task 2: a cached step

def _step(q, k_new, v_new, k_cache, v_cache, *, dim=-2, order="append", attend="all", offset="S",
          scale=True, returned="new", swap=False, weights_on="v", invert=False):
    """A cached step: the defaults are right, each option one mistake."""
    S = k_cache.shape[-2]
    k_parts, v_parts = [k_cache, k_new], [v_cache, v_new]
    if order == "prepend":
        k_parts, v_parts = k_parts[::-1], v_parts[::-1]
    k_all, v_all = torch.cat(k_parts, dim), torch.cat(v_parts, dim)
    k_att, v_att = {"all": (k_all, v_all), "stale": (k_cache, v_cache), "new": (k_new, v_new)}[attend]
    diagonal = {"S": S, "none": None, "0": 0, "S-1": S - 1, "S+1": S + 1}[offset]
    s = q @ k_att.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale else 1.0)
    if diagonal is not None:
        allowed = torch.ones(s.shape[-2:], dtype=torch.bool).tril(diagonal if attend == "all" else 0)
        s = s.masked_fill(allowed if invert else ~allowed, INF)
    out = torch.softmax(s, -1) @ (v_att if weights_on == "v" else k_att)
    if returned == "old":
        return out, k_cache, v_cache
    return (out, v_all, v_all) if swap else (out, k_all, v_all)


def _sdpa_is_causal(q, k_new, v_new, k_cache, v_cache):
    k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True), k, v


def _scales_q_in_place(q, k_new, v_new, k_cache, v_cache):
    q /= math.sqrt(q.shape[-1])
    return _step(q * math.sqrt(q.shape[-1]), k_new, v_new, k_cache, v_cache)


STEP_MISTAKES = {
    "appended on the feature axis": (lambda *a: _step(*a, dim=-1), "you joined them along dimension 3"),
    "appended on the heads axis": (lambda *a: _step(*a, dim=1), "you joined them along dimension 1"),
    "returns the old cache": (lambda *a: _step(*a, returned="old"), "returned the old cache"),
    "returns the new keys as the cache": (lambda q, k, v, kc, vc: (_step(q, k, v, kc, vc)[0], k, v),
                                          "holds only the new positions"),
    "attends over the stale cache": (lambda *a: _step(*a, attend="stale", offset="none"), "stale cache only"),
    "ignores the cache": (lambda *a: _step(*a, attend="new", offset="0"), "output ignores the cache"),
    "prepends the new keys": (lambda *a: _step(*a, order="prepend"), "before the cached ones"),
    "no scaling": (lambda *a: _step(*a, scale=False), "not scaled"),
    "values into the key cache": (lambda *a: _step(*a, swap=True), "cache of k holds the values"),
    "weights times the keys": (lambda *a: _step(*a, weights_on="k"), "mixes the keys"),
    "only the output": (lambda *a: _step(*a)[0], r"return 3 values \(out, k_cache, v_cache\)"),
    "no mask (right for one token only)": (lambda *a: _step(*a, offset="none"),
                                           "see the new tokens after them"),
    "mask not offset, tril()": (lambda *a: _step(*a, offset="0"), "not offset by the cache length"),
    "is_causal=True over the cache": (_sdpa_is_causal, "not offset by the cache length"),
    "mask hides the diagonal": (lambda *a: _step(*a, offset="S-1"), "hides the diagonal"),
    "mask one key ahead": (lambda *a: _step(*a, offset="S+1"), "also sees the next key"),
    "mask inverted": (lambda *a: _step(*a, invert=True), "mask is inverted"),
    "scales q in place": (_scales_q_in_place, "changed its input `q` in place"),
    "returns float64": (lambda *a: _step(*(x.double() for x in a)), "is float64, expected float32"),
}


def _sdpa_with_mask(q, k_new, v_new, k_cache, v_cache):
    n, S = q.shape[-2], k_cache.shape[-2]
    k, v = torch.cat((k_cache, k_new), dim=2), torch.cat((v_cache, v_new), dim=2)
    allowed = torch.arange(S + n) <= torch.arange(S, S + n)[:, None]  # key position <= query position
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), k, v


def _preallocated(q, k_new, v_new, k_cache, v_cache):
    """Grown caches written into new tensors; the mask as blocked positions with triu."""
    B, H, S, Dh = k_cache.shape
    n = q.shape[-2]
    k, v = k_cache.new_empty(B, H, S + n, Dh), v_cache.new_empty(B, H, S + n, Dh)
    k[..., :S, :], k[..., S:, :] = k_cache, k_new
    v[..., :S, :], v[..., S:, :] = v_cache, v_new
    blocked = torch.ones(n, S + n, dtype=torch.bool).triu(S + 1)
    scores = torch.einsum("bhnd,bhsd->bhns", q, k) / math.sqrt(Dh)
    return torch.softmax(scores.masked_fill(blocked, -math.inf), -1) @ v, k, v


def _one_query_at_a_time(q, k_new, v_new, k_cache, v_cache):
    """A loop over the new queries: query i attends over keys 0 .. S + i, no mask; a list back."""
    S = k_cache.shape[-2]
    k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)
    outs = []
    for i in range(q.shape[-2]):
        w = torch.softmax(q[..., i:i + 1, :] @ k[..., :S + i + 1, :].mT / q.shape[-1] ** 0.5, -1)
        outs.append(w @ v[..., :S + i + 1, :])
    return [torch.cat(outs, -2), k, v]


def _where_float64(q, k_new, v_new, k_cache, v_cache):
    """float64 inside, torch.where for the mask, cast back."""
    n, S = q.shape[-2], k_cache.shape[-2]
    k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)
    scores = (q.double() @ k.double().transpose(-2, -1)) / math.sqrt(q.shape[-1])
    allowed = torch.ones(n, S + n, dtype=torch.bool).tril(diagonal=S)
    scores = torch.where(allowed, scores, torch.tensor(-math.inf, dtype=torch.float64))
    return (torch.softmax(scores, -1) @ v.double()).to(q.dtype), k, v


def _the_lecture_way(q, k_new, v_new, k_cache, v_cache):
    """As MultiHeadAttention.forward_cached: no mask for a single new token, the course's attention."""
    n, S = q.shape[-2], k_cache.shape[-2] + q.shape[-2]
    k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)
    mask = None if n == 1 else torch.ones(n, S, dtype=torch.bool).tril(S - n)
    return scaled_dot_product_attention(q, k, v, mask)[0], k, v


STEP_RIGHT = {
    "torch.cat, tril(S), masked_fill": _step,
    "F.scaled_dot_product_attention with a mask of positions": _sdpa_with_mask,
    "preallocated caches, triu, einsum": _preallocated,
    "one new query at a time, a list": _one_query_at_a_time,
    "float64 inside, torch.where": _where_float64,
    "as the lecture's forward_cached": _the_lecture_way,
}


@pytest.mark.parametrize("name", STEP_RIGHT)
def test_cached_step_check_accepts_right_answers(name, capsys):
    assert checks.check_attend_with_cache(STEP_RIGHT[name])
    assert "[x] attend_with_cache" in capsys.readouterr().out


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_cached_step_check_rejects_mistakes(name):
    fn, message = STEP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_attend_with_cache(fn)


def test_cached_steps_add_up_to_the_package_attention():
    """The check's reference, row by row, is the package's MultiHeadAttention.forward_cached."""
    from transformer_course.attention import MultiHeadAttention, make_causal_mask

    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=8, n_heads=2).eval()
    x = torch.randn(2, 7, 8)
    with torch.no_grad():
        full, _ = mha(x, x, x, make_causal_mask(7))
        first, _, cache = mha.forward_cached(x[:, :4])
        rest, _, _ = mha.forward_cached(x[:, 4:], cache)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-6)
