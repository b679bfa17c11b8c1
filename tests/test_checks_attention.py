"""The attention checks accept the right answers and reject the mistakes learners make, in words."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course import checks
from transformer_course.attention import (
    make_causal_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from transformer_course.checks import CheckFailed

# ----------------------------------------------------------------------------- scaled dot-product


def _sdpa(q, k, v, mask=None, *, scale=None, dim=-1, fill="before", sign=1, zero_empty=True,
          neg=float("-inf")):
    """A configurable attention: the defaults give the right answer, each option one mistake."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    blocked = None if mask is None else (~mask if sign == 1 else mask)
    if blocked is not None and fill == "before":
        scores = scores.masked_fill(blocked, neg)
    w = torch.softmax(scores, dim=dim)
    if blocked is not None and fill == "after":
        w = w.masked_fill(blocked, 0.0)
    if blocked is not None and fill == "after_inf":
        w = w.masked_fill(blocked, float("-inf"))
    if blocked is not None and zero_empty and fill == "before":
        w = w.masked_fill(blocked, 0.0)
    return w @ v, w


SDPA_MISTAKES = {
    "no scaling": (lambda q, k, v, m=None: _sdpa(q, k, v, m, scale=1.0), "not scaled"),
    "scaled by d_model": (lambda q, k, v, m=None: _sdpa(q, k, v, m,
                                                        scale=1 / math.sqrt(q.shape[1] * q.shape[-1])),
                          r"sqrt\(H \* Dh\), the model size d_model"),
    "divided by d_k": (lambda q, k, v, m=None: _sdpa(q, k, v, m, scale=1 / q.shape[-1]),
                       "divided the scores by d_k = 8"),
    "softmax over queries": (lambda q, k, v, m=None: _sdpa(q, k, v, m, dim=-2),
                             r"sum to 1 over the queries \(axis -2\)"),
    "mask after softmax": (lambda q, k, v, m=None: _sdpa(q, k, v, m, fill="after"),
                           "applied the mask after the softmax"),
    "-inf into the weights": (lambda q, k, v, m=None: _sdpa(q, k, v, m, fill="after_inf"),
                              "weights contain -inf"),
    "mask with the wrong sign": (lambda q, k, v, m=None: _sdpa(q, k, v, m, sign=-1), "wrong sign"),
    "mask ignored": (lambda q, k, v, m=None: _sdpa(q, k, v, None), "mask is ignored"),
    "NaN on a fully masked row": (lambda q, k, v, m=None: _sdpa(q, k, v, m, zero_empty=False),
                                  "all blocked gives NaN"),
    "uniform on a fully masked row": (lambda q, k, v, m=None: _sdpa(q, k, v, m, zero_empty=False, neg=-1e9),
                                      "should get zero weights"),
    "only the output": (lambda q, k, v, m=None: _sdpa(q, k, v, m)[0], r"return a pair \(output, weights\)"),
    "output from the keys": (lambda q, k, v, m=None: (_sdpa(q, k, v, m)[1] @ k, _sdpa(q, k, v, m)[1]),
                             r"the output \(weights @ v\)"),
    "weights transposed": (lambda q, k, v, m=None: (_sdpa(q, k, v, m)[0], _sdpa(q, k, v, m)[1].mT),
                           "wrong shape.*last two axes swapped"),
}


def test_sdpa_check_accepts_the_package_and_a_plain_answer(capsys):
    assert checks.check_scaled_dot_product_attention(scaled_dot_product_attention)
    assert checks.check_scaled_dot_product_attention(_sdpa)
    assert "[x] scaled_dot_product_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", SDPA_MISTAKES)
def test_sdpa_check_rejects_mistakes(name):
    fn, message = SDPA_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_scaled_dot_product_attention(fn)


def test_a_crash_is_reported_in_words():
    def crashes(q, k, v, mask=None):
        return q @ k  # (T, Dh) @ (S, Dh): the learner forgot the transpose

    with pytest.raises(CheckFailed, match="your function raised RuntimeError"):
        checks.check_scaled_dot_product_attention(crashes)


# ----------------------------------------------------------------------------- causal mask

CAUSAL_MISTAKES = {
    "hides the diagonal": (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), "the diagonal is False"),
    "wrong sign": (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), "wrong sign"),
    "upper triangle": (lambda T: torch.ones(T, T, dtype=torch.bool).triu(), "upper triangle"),
    "float 0/1": (lambda T: torch.ones(T, T).tril(), "boolean tensor.*dtype=torch.bool"),
    "additive -inf": (lambda T: torch.full((T, T), float("-inf")).triu(1), "additive mask"),
    "blocks nothing": (lambda T: torch.ones(T, T, dtype=torch.bool), "blocks nothing"),
    "wrong shape": (lambda T: torch.ones(T, T + 1, dtype=torch.bool).tril(), r"should have shape \(4, 4\)"),
    "not a tensor": (lambda T: [[True] * T] * T, "return a torch.Tensor"),
    "off by one": (lambda T: torch.ones(T, T, dtype=torch.bool).tril(1), r"at \(query 0, key 1\)"),
}


def test_causal_mask_check_accepts_the_package():
    assert checks.check_causal_mask(make_causal_mask)
    assert checks.check_causal_mask(lambda T: torch.tril(torch.ones(T, T)).bool())


@pytest.mark.parametrize("name", CAUSAL_MISTAKES)
def test_causal_mask_check_rejects_mistakes(name):
    fn, message = CAUSAL_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_causal_mask(fn)


# ----------------------------------------------------------------------------- split / merge heads

def _split_view_only(x, n_heads):
    B, T, D = x.shape
    return x.view(B, n_heads, T, D // n_heads)


def _split_no_transpose(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads)


def _split_interleaved(x, n_heads):
    B, T, D = x.shape
    return x.view(B, T, D // n_heads, n_heads).permute(0, 3, 1, 2)


SPLIT_MISTAKES = {
    "view without transpose": (_split_view_only, r"straight to \(B, H, T, Dh\)"),
    "no transpose": (_split_no_transpose, "the heads go before the positions"),
    "interleaved": (_split_interleaved, "every H-th feature"),
}


def test_split_heads_check_accepts_the_package():
    assert checks.check_split_heads(split_heads)


@pytest.mark.parametrize("name", SPLIT_MISTAKES)
def test_split_heads_check_rejects_mistakes(name):
    fn, message = SPLIT_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_split_heads(fn)


def _merge_view_only(x):
    B, H, T, Dh = x.shape
    return x.view(B, T, H * Dh)


def _merge_transpose_then_view(x):
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).view(B, T, H * Dh)


def _merge_interleaved(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * Dh)


MERGE_MISTAKES = {
    "view without transpose": (_merge_view_only, r"without \.transpose\(1, 2\)"),
    "view of a transposed tensor": (_merge_transpose_then_view, r"call \.contiguous\(\)"),
    "interleaved": (_merge_interleaved, "interleaved across heads"),
    "kept the heads": (lambda x: x.transpose(1, 2), "wrong shape"),
    "type error": (lambda x: x.view(x.shape[0], "T", -1), "your function raised TypeError"),
}


def test_merge_heads_check_accepts_the_package():
    assert checks.check_merge_heads(merge_heads)
    assert checks.check_merge_heads(lambda x: x.transpose(1, 2).contiguous().view(
        x.shape[0], x.shape[2], -1))


@pytest.mark.parametrize("name", MERGE_MISTAKES)
def test_merge_heads_check_rejects_mistakes(name):
    fn, message = MERGE_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_merge_heads(fn)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    checks.check_scaled_dot_product_attention(scaled_dot_product_attention)
    checks.check_split_heads(split_heads)
    assert torch.equal(torch.random.get_rng_state(), before)


# ----------------------------------------------------------------------------- self-attention

def _self_attention(x, w_q, w_k, w_v, *, keys="k", scale_by="Dh", values="v"):
    """Projections then attention; the defaults give the right answer, each option one mistake."""
    q = x @ w_q
    k = {"k": x @ w_k, "q": q, "x": x}[keys]
    if keys == "x":
        q = x
    d = {"Dh": w_q.shape[1], "D": x.shape[-1], "none": 1}[scale_by]
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)
    return w @ (x @ w_v if values == "v" else x), w


SELF_MISTAKES = {
    "keys from w_q": (lambda *a: _self_attention(*a, keys="q"), "the keys are x @ w_q"),
    "no projections": (lambda *a: _self_attention(*a, keys="x", scale_by="D"), "come from x itself"),
    "scaled by D": (lambda *a: _self_attention(*a, scale_by="D"), r"divided by sqrt\(D\) = sqrt\(12\)"),
    "no scaling": (lambda *a: _self_attention(*a, scale_by="none"), "not scaled"),
    "values are x": (lambda *a: _self_attention(*a, values="x"), "the values are v = x @ w_v"),
}


def test_self_attention_check_accepts_a_right_answer():
    assert checks.check_self_attention(_self_attention)
    assert checks.check_self_attention(
        lambda x, wq, wk, wv: scaled_dot_product_attention(x @ wq, x @ wk, x @ wv))


@pytest.mark.parametrize("name", SELF_MISTAKES)
def test_self_attention_check_rejects_mistakes(name):
    fn, message = SELF_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_self_attention(fn)
