"""The GPT checks accept the right answers and reject the mistakes learners make, in words."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course import checks, gpt
from transformer_course.checks import CheckFailed

# ----------------------------------------------------------------------------- top-k

def _top_k(logits, k, *, keep=0, largest=True, fill=float("-inf"), dim=-1):
    """A configurable top-k filter: the defaults are right, each option one mistake."""
    kth = logits.topk(k + keep, dim=dim, largest=largest).values
    kth = kth.narrow(dim, k + keep - 1, 1)
    drop = logits < kth if largest else logits > kth
    return logits.masked_fill(drop, fill)


TOP_K_MISTAKES = {
    "keeps k + 1": (lambda x, k: _top_k(x, k) if k == x.shape[-1] else _top_k(x, k, keep=1),
                    "keeps 4 logits instead of k=3. An off-by-one"),
    "keeps k - 1 (strict >)": (lambda x, k: x.masked_fill(x <= x.topk(k, -1).values[..., -1:], float("-inf")),
                               "keeps 2 logits instead of k=3. An off-by-one"),
    "keeps the smallest": (lambda x, k: _top_k(x, k, largest=False), "kept the k smallest"),
    "filled with 0": (lambda x, k: _top_k(x, k, fill=0.0), "dropped logits are 0"),
    "wrong axis": (lambda x, k: _top_k(x, k, dim=0), "over the wrong axis"),
    "returns probabilities": (lambda x, k: torch.softmax(_top_k(x, k), -1), "returned probabilities"),
    "scales the kept logits": (lambda x, k: _top_k(x, k) * 2, "kept logits were changed"),
    "drops nothing": (lambda x, k: x.clone(), "nothing was dropped"),
    "wrong shape": (lambda x, k: x.topk(k, -1).values, "wrong shape"),
}


def test_top_k_check_accepts_the_package_and_a_very_negative_fill(capsys):
    assert checks.check_top_k_filter(gpt.top_k_filter)
    assert checks.check_top_k_filter(lambda x, k: _top_k(x, k, fill=-1e10))
    assert "[x] top_k_filter" in capsys.readouterr().out


@pytest.mark.parametrize("name", TOP_K_MISTAKES)
def test_top_k_check_rejects_mistakes(name):
    fn, message = TOP_K_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_top_k_filter(fn)


# ----------------------------------------------------------------------------- sampling distribution

def _probs(logits, temperature, top_k):
    return gpt.sampling_probs(logits, temperature, top_k)


def _filt(x, k):
    return x if k is None else gpt.top_k_filter(x, k)


PROBS_MISTAKES = {
    "no temperature": (lambda x, t, k: torch.softmax(_filt(x, k), -1), "temperature has no effect"),
    "multiplies by the temperature": (lambda x, t, k: torch.softmax(_filt(x * t, k), -1),
                                      "multiplied the logits by the temperature"),
    "temperature after the softmax": (lambda x, t, k: torch.softmax(_filt(x, k), -1) / t,
                                      "divided the probabilities by the temperature after"),
    "temperature after a first softmax": (
        lambda x, t, k: torch.softmax(torch.softmax(_filt(x, k), -1) / t, -1), "after a first softmax"),
    "top-k ignored": (lambda x, t, k: torch.softmax(x / t, -1), "top-k is ignored"),
    "filter after the softmax": (lambda x, t, k: torch.softmax(x / t, -1).masked_fill(
        ~torch.isfinite(_filt(x, k)), 0.0), "without renormalising"),
    "log-probabilities": (lambda x, t, k: torch.log_softmax(_filt(x / t, k), -1), "log-probabilities|NaN"),
    "softmax over the wrong axis": (lambda x, t, k: torch.softmax(_filt(x / t, k), 0), "sum to"),
}


def test_sampling_probs_check_accepts_the_package_and_filter_then_scale():
    assert checks.check_sampling_probs(_probs)
    assert checks.check_sampling_probs(lambda x, t, k: torch.softmax(_filt(x, k) / t, -1))


@pytest.mark.parametrize("name", PROBS_MISTAKES)
def test_sampling_probs_check_rejects_mistakes(name):
    fn, message = PROBS_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_sampling_probs(fn)


# ----------------------------------------------------------------------------- one cached step

def _step(q, k_new, v_new, k_cache, v_cache, *, dim=-2, order="append", stale=False, scale=True,
          returned="new", swap=False):
    """A configurable cached step: the defaults are right, each option one mistake."""
    k_parts, v_parts = [k_cache, k_new], [v_cache, v_new]
    if order == "prepend":
        k_parts, v_parts = k_parts[::-1], v_parts[::-1]
    k_all, v_all = torch.cat(k_parts, dim), torch.cat(v_parts, dim)
    k_att, v_att = (k_cache, v_cache) if stale else (k_all, v_all)
    s = 1 / math.sqrt(q.shape[-1]) if scale else 1.0
    out = torch.softmax(q @ k_att.transpose(-2, -1) * s, -1) @ v_att
    if returned == "old":
        return out, k_cache, v_cache
    if swap:
        return out, v_all, v_all
    return out, k_all, v_all


STEP_MISTAKES = {
    "appended on the feature axis": (lambda *a: (a[0], torch.cat([a[3], a[1].expand_as(a[3])], -1),
                                                 torch.cat([a[4], a[2].expand_as(a[4])], -1)),
                                     "along the last axis"),
    "appended on the heads axis": (lambda *a: _step(*a, dim=1), "append along dim=-2"),
    "re-uses the stale cache (returns it)": (lambda *a: _step(*a, returned="old"), "returned the old cache"),
    "attends over the stale cache": (lambda *a: _step(*a, stale=True), "stale cache only"),
    "prepends the new key": (lambda *a: _step(*a, order="prepend"), "before the cached ones"),
    "no scaling": (lambda *a: _step(*a, scale=False), "not scaled"),
    "values into the key cache": (lambda *a: _step(*a, swap=True), "key cache holds the values"),
    "only the output": (lambda *a: _step(*a)[0], r"return a triple \(out, k_cache, v_cache\)"),
}


def test_cached_step_check_accepts_a_right_answer(capsys):
    assert checks.check_attend_with_cache(_step)
    assert "[x] attend_with_cache" in capsys.readouterr().out


def test_cached_step_check_agrees_with_the_package_attention():
    """The check's reference is the package's MultiHeadAttention.forward_cached, head by head."""
    from transformer_course.attention import scaled_dot_product_attention

    def with_package(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], -2), torch.cat([v_cache, v_new], -2)
        return scaled_dot_product_attention(q, k, v)[0], k, v

    assert checks.check_attend_with_cache(with_package)


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_cached_step_check_rejects_mistakes(name):
    fn, message = STEP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_attend_with_cache(fn)
