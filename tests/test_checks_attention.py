"""The attention checks accept right answers written in many ways and reject each mistake, in words.

Each check has two tables: WRONG answers (each rejected with its own message, asserted with
``match=``) and RIGHT answers written differently (einsum or matmul, reshape or view, loops or
batches, float64 inside, lists or tuples), which must all pass.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course import checks
from transformer_course.attention import MultiHeadAttention, scaled_dot_product_attention
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


def _sdpa_einsum(q, k, v, mask=None):
    scores = torch.einsum("...td,...sd->...ts", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    w = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return [torch.einsum("...ts,...sd->...td", w, v), w]  # a list, not a tuple


def _sdpa_float64_inside(q, k, v, mask=None):
    out, w = _sdpa(q.double(), k.double(), v.double(), mask)
    return out.to(q.dtype), w.to(q.dtype)


def _sdpa_by_hand(q, k, v, mask=None):
    """Softmax written out: each row's own maximum, exp, a mask that multiplies, a safe division."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand(scores.shape)
    scores = scores.masked_fill(~allowed, float("-inf"))
    top = scores.amax(-1, keepdim=True).nan_to_num(0.0, neginf=0.0)
    e = (scores - top).exp() * allowed
    w = e / e.sum(-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
    return w @ v, w


def _sdpa_loop(q, k, v, mask=None):
    """One (T, S) problem at a time, over every leading batch index."""
    batch = q.shape[:-2]
    T, S = q.shape[-2], k.shape[-2]
    full = (torch.ones(T, S, dtype=torch.bool) if mask is None else mask).expand(*batch, T, S)
    qs, ks, vs, ms = (t.reshape(-1, *t.shape[-2:]) for t in (q, k, v, full))
    outs, ws = [], []
    for qi, ki, vi, mi in zip(qs, ks, vs, ms, strict=True):
        scores = (qi @ ki.T / math.sqrt(q.shape[-1])).masked_fill(~mi, torch.finfo(q.dtype).min)
        w = torch.softmax(scores, dim=-1).masked_fill(~mi, 0.0)
        outs.append(w @ vi)
        ws.append(w)
    return torch.stack(outs).reshape(*batch, T, -1), torch.stack(ws).reshape(*batch, T, S)


def _sdpa_weights_returned_detached(q, k, v, mask=None):
    """The output from the live weights, the weights handed back detached: the check differentiates the
    output only (the weights are returned for inspection), so this is right."""
    out, w = _sdpa(q, k, v, mask)
    return out, w.detach()


def _sdpa_nan_zeroed_on_a_copy(q, k, v, mask=None):
    """NaN rows zeroed by an in-place assignment, on a copy of the softmax's output (which autograd keeps)."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, -1).clone()
    w[w.isnan()] = 0.0
    return w @ v, w


def _sdpa_finite_bias(q, k, v, mask=None):
    """An additive bias of finfo.min (finite: no NaN anywhere), the blocked weights zeroed after."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, torch.finfo(q.dtype).min)
    w = torch.softmax(scores, -1)
    return (w.masked_fill(~mask, 0.0) @ v, w.masked_fill(~mask, 0.0)) if mask is not None else (w @ v, w)


def _sdpa_masked_max(q, k, v, mask=None):
    """Softmax by hand: the maximum over the allowed keys only, exp, then the 0/1 mask multiplies."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand(scores.shape)
    top = torch.where(allowed, scores, torch.finfo(scores.dtype).min).amax(-1, keepdim=True)
    e = torch.exp(torch.where(allowed, scores - top, torch.zeros_like(scores))) * allowed
    w = e / e.sum(-1, keepdim=True).clamp_min(1e-30)
    return w @ v, w


def _sdpa_renormalised(q, k, v, mask=None):
    """Softmax over every key, then the blocked weights zeroed and the rest renormalised (round 3)."""
    w = torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), -1)
    if mask is not None:
        w = w * mask
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    return w @ v, w


def _sdpa_mask_times_scores(q, k, v, mask=None, *, zero=False):
    """The scores multiplied by the 0/1 mask: blocked scores become 0, not -inf."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores * mask
    w = torch.softmax(scores, -1)
    if mask is not None and zero:
        w = w.masked_fill(~mask, 0.0)
    return w @ v, w


def _manual_no_max(q, k, v, mask=None):
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    e = scores.exp()
    w = (e / e.sum(-1, keepdim=True)).nan_to_num(0.0)
    return w @ v, w


def _manual_global_max(q, k, v, mask=None):
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    e = (scores - scores.max()).exp()
    w = e / e.sum(-1, keepdim=True)
    if mask is not None:
        w = w.masked_fill(~mask, 0.0)
    return w @ v, w


def _fused(q, k, v, mask=None):
    _, w = _sdpa(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), w


def _in_place(q, k, v, mask=None):
    q /= math.sqrt(q.shape[-1])
    w = torch.softmax(q @ k.mT, -1)
    return w @ v, w


def _sdpa_key_bias(q, k, v, mask=None):
    """Scores plus 0.1 per key index: no single scale explains the weights."""
    scores = q @ k.mT / math.sqrt(q.shape[-1]) + 0.1 * torch.arange(k.shape[-2])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, -1).nan_to_num(0.0)
    return w @ v, w


def _sdpa_detached(q, k, v, mask=None):
    """Right values, but the weights cut from autograd: q and k get no gradient (round 2 of the review)."""
    _, w = _sdpa(q, k, v, mask)
    w = w.detach()
    return w @ v, w


def _sdpa_output_before_fix(q, k, v, mask=None):
    """The weights fixed (NaN -> 0), but the output taken from the NaN weights."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, -1)
    return w @ v, w.nan_to_num(0.0)


def _sdpa_scaled_after(q, k, v, mask=None):
    """The weights divided by sqrt(d_k) after the softmax, the scores left unscaled."""
    _, w = _sdpa(q, k, v, mask, scale=1.0)
    w = w / math.sqrt(q.shape[-1])
    return w @ v, w


def _sdpa_nan_zeroed_in_place(q, k, v, mask=None):
    """The softmax's own output changed in place: right values, but the backward pass fails."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    w = torch.softmax(scores, -1)
    w[w != w] = 0.0
    return w @ v, w


def _sdpa_inf_bias(q, k, v, mask=None):
    """An additive -inf bias, NaN replaced after the softmax: right values, but the fully blocked query's
    NaN flows back through the bias's addition into q and k (masked_fill would stop it)."""
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, -1)
    w = torch.where(w.isnan(), torch.zeros_like(w), w)
    return w @ v, w


def _sdpa_output_via_numpy(q, k, v, mask=None):
    out, w = _sdpa(q, k, v, mask)
    return torch.from_numpy(out.detach().numpy()), w


# Exercise 04: check_scaled_dot_product_attention calls fn(q, k, v), without a mask.
SDPA_RIGHT = {
    "the package's (its mask defaults to None)": scaled_dot_product_attention,
    "matmul, torch.softmax": lambda q, k, v: _sdpa(q, k, v),
    "einsum, a list": _sdpa_einsum,
    "float64 inside, cast back": _sdpa_float64_inside,
    "softmax by hand, row maximum": _sdpa_by_hand,
    "softmax by hand, the maximum through torch.where": _sdpa_masked_max,
    "a loop over the batch": _sdpa_loop,
    "weights returned detached, output from the live ones": _sdpa_weights_returned_detached,
    "a mask parameter that defaults to None": _sdpa,
}

SDPA_WRONG = {
    "weights detached": (lambda q, k, v: _sdpa_detached(q, k, v),
                         r"your output is right, but no gradient reaches q and k: the weights are cut from "
                         r"autograd"),
    "weights divided after the softmax": (lambda q, k, v: _sdpa_scaled_after(q, k, v),
                                          r"sum to 0.3536 = 1/sqrt\(d_k\), not 1.*you divided the weights "
                                          r"after the softmax; divide the scores before it"),
    "weights doubled after the softmax": (lambda q, k, v: tuple(2 * t for t in _sdpa(q, k, v)),
                                          "sum to 2, not 1.*multiplied the weights after the softmax"),
    "output computed in numpy": (lambda q, k, v: _sdpa_output_via_numpy(q, k, v),
                                 "your output is right, but no gradient reaches it"),
    "no scaling": (lambda q, k, v: _sdpa(q, k, v, scale=1.0), "not scaled"),
    "scaled by d_model": (lambda q, k, v: _sdpa(q, k, v, scale=1 / math.sqrt(q.shape[1] * q.shape[-1])),
                          r"sqrt\(H \* Dh\), the model size d_model"),
    "divided by d_k": (lambda q, k, v: _sdpa(q, k, v, scale=1 / q.shape[-1]),
                       "divided the scores by d_k = 8"),
    "softmax over queries": (lambda q, k, v: _sdpa(q, k, v, dim=-2),
                             r"sum to 1 over the queries \(axis -2\)"),
    "squeezed": (lambda q, k, v: tuple(t.squeeze() for t in _sdpa(q, k, v)),
                 r"for q \(3, 1, 8\), k \(3, 5, 8\) your weights have shape \(3, 5\), expected \(3, 1, 5\).*"
                 r"\.squeeze\(\) drops every one"),
    "squeezed on the batch axis only": (lambda q, k, v: tuple(t.squeeze(0) for t in _sdpa(q, k, v)),
                                        r"for q \(1, 4, 8\), k \(1, 6, 8\) your weights have shape \(4, 6\), "
                                        r"expected \(1, 4, 6\): an axis of size 1 was dropped"),
    "only the output": (lambda q, k, v: _sdpa(q, k, v)[0], r"return 2 values \(output, weights\)"),
    "three values": (lambda q, k, v: (*_sdpa(q, k, v), q), r"return 2 values.*got 3"),
    "output from the keys": (lambda q, k, v: (_sdpa(q, k, v)[1] @ k, _sdpa(q, k, v)[1]),
                             r"the output \(weights @ v\)"),
    "weights transposed": (lambda q, k, v: (_sdpa(q, k, v)[0], _sdpa(q, k, v)[1].mT),
                           "wrong shape.*last two axes swapped"),
    "exp without the maximum": (lambda q, k, v: _manual_no_max(q, k, v), "exp\\(100\\) overflows float32"),
    "one maximum for the whole tensor": (lambda q, k, v: _manual_global_max(q, k, v),
                                         "each query's own maximum"),
    "float64 returned": (lambda q, k, v: _sdpa(q.double(), k.double(), v.double()),
                         "is float64, expected float32"),
    "the fused shortcut": (lambda q, k, v: _fused(q, k, v),
                           "called `torch.nn.functional.scaled_dot_product_attention`"),
    "the course's function": (lambda q, k, v: __import__("transformer_course").attention
                              .scaled_dot_product_attention(q, k, v),
                              "called `transformer_course.attention.scaled_dot_product_attention`"),
    "q divided in place": (lambda q, k, v: _in_place(q, k, v), "changed its input `q` in place"),
    "a crash": (lambda q, k, v: q @ k, "your function raised RuntimeError"),
    "(weights, output)": (lambda q, k, v: _sdpa(q, k, v)[::-1],
                          r"you returned \(weights, output\); return \(output, weights\)"),
    "float64 weights, named": (lambda q, k, v: (_sdpa(q, k, v)[0], _sdpa(q, k, v)[1].double()),
                               r"the tensor of weights for q \(2, 4, 5, 8\), k \(2, 4, 6, 8\) is float64"),
    "a bias that grows along the keys": (lambda q, k, v: _sdpa_key_bias(q, k, v),
                                         r"the tensor of weights for q \(2, 4, 5, 8\), k \(2, 4, 6, 8\) "
                                         "differs from the reference"),
    "a mask it requires": (lambda q, k, v, mask: _sdpa(q, k, v, mask),
                           r"raised TypeError: .*missing 1 required positional argument: 'mask'"),
}


@pytest.mark.parametrize("name", SDPA_RIGHT)
def test_sdpa_check_accepts_right_answers(name, capsys):
    assert checks.check_scaled_dot_product_attention(SDPA_RIGHT[name])
    assert "[x] scaled_dot_product_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", SDPA_WRONG)
def test_sdpa_check_rejects_mistakes(name):
    fn, message = SDPA_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_scaled_dot_product_attention(fn)


# Exercise 05: check_masked_attention calls fn(q, k, v, mask), the mask boolean, True = allowed.
MASKED_RIGHT = {
    "the package's": scaled_dot_product_attention,
    "softmax by hand, the allowed keys' maximum, the mask multiplies": _sdpa_masked_max,
    "a finite fill of -1e4, then zero": lambda q, k, v, m: _sdpa(q, k, v, m, neg=-1e4),
    "weights returned detached, output from the live ones": _sdpa_weights_returned_detached,
    "NaN zeroed in place on a copy": _sdpa_nan_zeroed_on_a_copy,
    "an additive finite bias, then zero": _sdpa_finite_bias,
    "matmul, -inf, zero the empty rows": _sdpa,
    "a finite fill of -1e9, then zero": lambda q, k, v, m: _sdpa(q, k, v, m, neg=-1e9),
    "einsum, torch.where, a list": _sdpa_einsum,
    "float64 inside, cast back": _sdpa_float64_inside,
    "softmax by hand, row maximum": _sdpa_by_hand,
    "a loop over the batch, finfo.min": _sdpa_loop,
}

MASKED_WRONG = {
    "output from the NaN weights": (_sdpa_output_before_fix,
                                    r"weights .* are right \(zeros\), but your output holds NaN.*Compute the "
                                    r"output from the fixed weights \(weights @ v after the masked_fill\)"),
    "NaN zeroed in place on the softmax's output": (
        _sdpa_nan_zeroed_in_place,
        r"backpropagating through it fails \(one of the variables needed for gradient computation has been "
        r"modified"),
    "an additive -inf bias": (_sdpa_inf_bias,
                              r"gradient with respect to q and k holds NaN.*rather than adding a -inf bias"),
    "mask after softmax": (lambda q, k, v, m: _sdpa(q, k, v, m, fill="after"),
                           "applied the mask after the softmax"),
    "-inf into the weights": (lambda q, k, v, m: _sdpa(q, k, v, m, fill="after_inf"), "weights contain -inf"),
    "mask with the wrong sign": (lambda q, k, v, m: _sdpa(q, k, v, m, sign=-1), "wrong sign"),
    "mask ignored": (lambda q, k, v, m: _sdpa(q, k, v, None), "mask is ignored"),
    "a fill of -100": (lambda q, k, v, m: _sdpa(q, k, v, m, neg=-100.0, zero_empty=False),
                       "must get exactly 0"),
    "a fill of -100, then zero": (lambda q, k, v, m: _sdpa(q, k, v, m, neg=-100.0),
                                  r"filled the blocked scores with a finite value \(such as -100\) and "
                                  r"zeroed their weights.*query 1: near -200"),
    "softmax, mask, renormalise": (_sdpa_renormalised,
                                   r"applied the mask after the softmax and renormalised.*query 2: allowed "
                                   r"near 0, blocked near \+200"),
    "scores times the mask": (_sdpa_mask_times_scores, r"you multiplied the scores by the mask: a blocked "
                                                      r"score becomes 0, not -inf"),
    "scores times the mask, then zero": (lambda q, k, v, m: _sdpa_mask_times_scores(q, k, v, m, zero=True),
                                         "you multiplied the scores by the mask"),
    "NaN on a fully masked row": (lambda q, k, v, m: _sdpa(q, k, v, m, zero_empty=False),
                                  "all blocked gives NaN"),
    "uniform on a fully masked row": (lambda q, k, v, m: _sdpa(q, k, v, m, zero_empty=False, neg=-1e9),
                                      "should get zero weights"),
    # exercise 04's slips, named on the mask that allows every key
    "weights detached": (_sdpa_detached, r"no gradient reaches q and k: the weights are cut from autograd"),
    "no scaling": (lambda q, k, v, m: _sdpa(q, k, v, m, scale=1.0), "not scaled"),
    "divided by d_k": (lambda q, k, v, m: _sdpa(q, k, v, m, scale=1 / q.shape[-1]),
                       "divided the scores by d_k = 8"),
    "softmax over queries": (lambda q, k, v, m: _sdpa(q, k, v, m, dim=-2),
                             r"sum to 1 over the queries \(axis -2\)"),
    "weights divided after the softmax": (_sdpa_scaled_after,
                                          r"sum to 0.3536 = 1/sqrt\(d_k\), not 1.*you divided the weights"),
    "one maximum for the whole tensor": (_manual_global_max,
                                         r"the weights of query 0 and 1 hold NaN.*Subtract each query's own "
                                         r"largest allowed score"),
    "(weights, output)": (lambda q, k, v, m: _sdpa(q, k, v, m)[::-1],
                          r"masked_attention: you returned \(weights, output\)"),
    "the fused shortcut": (_fused, "called `torch.nn.functional.scaled_dot_product_attention`"),
    "the course's function": (lambda q, k, v, m: __import__("transformer_course").attention
                              .scaled_dot_product_attention(q, k, v, m),
                              "called `transformer_course.attention.scaled_dot_product_attention`"),
    "exercise 04's function, no mask parameter": (lambda q, k, v: _sdpa(q, k, v),
                                                  r"raised TypeError: .*takes 3 positional arguments but 4"),
}


@pytest.mark.parametrize("name", MASKED_RIGHT)
def test_masked_check_accepts_right_answers(name, capsys):
    assert checks.check_masked_attention(MASKED_RIGHT[name])
    assert "[x] masked_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", MASKED_WRONG)
def test_masked_check_rejects_mistakes(name):
    fn, message = MASKED_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_masked_attention(fn)


# ----------------------------------------------------------------------------- predict, then measure

PREDICT_RIGHT = {"-1.0": lambda: -1.0, "an int": lambda: -1, "near": lambda: -0.9,
                 "numpy float64": lambda: np.float64(-1.0), "a Fraction": lambda: Fraction(-1, 1),
                 "numpy int64": lambda: np.int64(-1), "numpy float32": lambda: np.float32(-1.0),
                 "-0.8, within 0.25": lambda: -0.8}

PREDICT_WRONG = {
    "no scale's": (lambda: 1.0, "exponent with no scale at all"),
    "sqrt scale's": (lambda: 0.0, "exponent with the 1/sqrt\\(d_k\\) scale"),
    "the factor, not its square": (lambda: -0.5, r"var\(c x\) = c\^2 var\(x\)"),
    "one power too many": (lambda: -2.0, "grows like d_k\\^1 before you divide"),
    "far off": (lambda: 3.0, r"you predicted 3; the check measured -0\.9\d"),
    "a tensor": (lambda: torch.tensor(-1.0), r"Python float, got Tensor \(a tensor: use \.item\(\)\)"),
    "a string": (lambda: "-1", "Python float, got str"),
    "a bool": (lambda: True, "Python float, got bool"),
    "None (no return)": (lambda: None, "Python float, got NoneType"),
    "-1.25, just outside 0.25": (lambda: -1.25, r"you predicted -1\.25.*within 0\.25"),
}


@pytest.mark.parametrize("name", PREDICT_RIGHT)
def test_predict_check_accepts_right_predictions(name):
    assert checks.check_predict_variance_exponent(PREDICT_RIGHT[name])


@pytest.mark.parametrize("name", PREDICT_WRONG)
def test_predict_check_rejects_wrong_predictions(name):
    fn, message = PREDICT_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_predict_variance_exponent(fn)


def _logits(q, k, c, how):
    """The logits of one d_k (c = scale(d_k)), right or as a slip computes them."""
    return {"right": lambda: (q @ k.T) * c,
            "einsum float64": lambda: torch.einsum("id,jd->ij", q.double(), k.double()) * c,
            "q only": lambda: q,
            "no scale": lambda: q @ k.T,
            "scale twice": lambda: (q * c) @ (k * c).T,
            "diagonal": lambda: (q * k).sum(-1) * c}[how]()


def _statistic(x, c, how):
    return {"var": lambda: x.var(), "biased": lambda: x.var(unbiased=False),
            "mean square": lambda: x.pow(2).mean(), "std": lambda: x.std(),
            "var times scale": lambda: x.var() * c, "rows": lambda: x.var(dim=-1).mean(),
            "rows biased": lambda: x.var(dim=-1, unbiased=False).mean(),
            "columns": lambda: x.var(dim=0).mean()}[how]().item()


def _measure(dims, scale, n, generator, *, stat="var", fit="polyfit", draw="randn", logits="right",
             order="per d_k", ret="tuple"):
    """A configurable measurement: the defaults give the right answer, each option a variant."""
    pairs = []
    if order == "descending d_k":
        pairs = {d: (torch.randn(n, d, generator=generator), torch.randn(n, d, generator=generator))
                 for d in sorted(dims, reverse=True)}
        pairs = [pairs[d] for d in dims]
    if order == "q first for every d_k":
        qs = [torch.randn(n, d, generator=generator) for d in dims]
        pairs = [(q, torch.randn(n, d, generator=generator)) for q, d in zip(qs, dims, strict=True)]
    for d in dims if order == "per d_k" else ():
        if draw == "randn":
            q = torch.randn(n, d, generator=generator)
            k = torch.randn(n, d, generator=generator)
        elif draw == "normal":
            q = torch.normal(0.0, 1.0, (n, d), generator=generator)
            k = torch.normal(0.0, 1.0, (n, d), generator=generator)
        elif draw == "transposed":
            q = torch.randn(d, n, generator=generator).T
            k = torch.randn(d, n, generator=generator).T
        elif draw == "float64":
            q = torch.randn(n, d, generator=generator, dtype=torch.float64)
            k = torch.randn(n, d, generator=generator, dtype=torch.float64)
        elif draw == "global":
            q, k = torch.randn(n, d), torch.randn(n, d)
        pairs.append((q, k))
    variances = [_statistic(_logits(q, k, scale(d), logits), scale(d), stat)
                 for (q, k), d in zip(pairs, dims, strict=True)]
    lx, ly = np.log(dims), np.log(variances)
    exponent = {
        "polyfit": lambda: float(np.polyfit(lx, ly, 1)[0]),
        "by hand": lambda: float(((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()),
        "log2, lstsq": lambda: torch.linalg.lstsq(
            torch.stack([torch.tensor(np.log2(dims)), torch.ones(len(dims), dtype=torch.float64)], 1),
            torch.tensor(np.log2(variances))[:, None]).solution[0, 0].item(),
        "linear axes": lambda: float(np.polyfit(dims, variances, 1)[0]),
        "semi-log": lambda: float(np.polyfit(dims, ly, 1)[0]),
        "intercept": lambda: float(np.polyfit(lx, ly, 1)[1]),
        "swapped axes": lambda: float(np.polyfit(ly, lx, 1)[0]),
        "hard-coded 1": lambda: 1.0,
        "a tensor": lambda: torch.tensor(np.polyfit(lx, ly, 1)[0]),
    }[fit]()
    if ret == "list":
        return [torch.tensor(variances), exponent]
    if ret == "0-d tensors":
        return [torch.tensor(v) for v in variances], exponent
    if ret == "variances only":
        return variances
    return variances, exponent


MEASURE_RIGHT = {
    "var, polyfit": {},
    "biased variance": {"stat": "biased"},
    "mean of squares (the mean is 0)": {"stat": "mean square"},
    "einsum in float64": {"logits": "einsum float64"},
    "torch.normal draws": {"draw": "normal"},
    "slope by hand": {"fit": "by hand"},
    "log2 and lstsq": {"fit": "log2, lstsq"},
    "a list holding a tensor": {"ret": "list"},
    # Borderline, accepted on purpose: the biased variance differs from .var() by n^2 / (n^2 - 1), far
    # below the noise of the measurement; a list of 0-d tensors is a list of numbers.
    "a list of 0-d tensors": {"ret": "0-d tensors"},
}

_REARRANGED = "as many numbers as the check.*another order or shape"

MEASURE_WRONG = {
    "standard deviation": ({"stat": "std"}, "standard deviations, not the variances"),
    "variance of q": ({"logits": "q only"}, "variances of q itself"),
    "scale ignored": ({"logits": "no scale"}, "the scale is ignored"),
    "variance times the scale": ({"logits": "no scale", "stat": "var times scale"},
                                 "multiplied the variance by scale"),
    "scale on q and k": ({"logits": "scale twice"}, "applied scale\\(d_k\\) twice"),
    "only the diagonal": ({"logits": "diagonal"}, "only the n products q_i . k_i"),
    "global generator": ({"draw": "global"}, "drew from the global random generator"),
    "drawn as (d_k, n)": ({"draw": "transposed"}, _REARRANGED),
    "all q first": ({"order": "q first for every d_k"}, _REARRANGED),
    "largest d_k first": ({"order": "descending d_k"}, _REARRANGED),
    "mean of the rows' variances": ({"stat": "rows"}, r"your draws are the check's, but you averaged the "
                                                      r"variance of each row \(\.var\(dim=-1\)\.mean\(\)\)"),
    "mean of the rows' biased variances": ({"stat": "rows biased"}, "averaged the variance of each row"),
    "mean of the columns' variances": ({"stat": "columns"}, "averaged the variance of each column"),
    "drawn in float64": ({"draw": "float64"}, "your draws differ from the check's"),
    "linear axes": ({"fit": "linear axes"}, "raw \\(d_k, variance\\) values"),
    "semi-log": ({"fit": "semi-log"}, "take the log of d_k too"),
    "intercept": ({"fit": "intercept"}, "returned the intercept"),
    "swapped axes": ({"fit": "swapped axes"}, "the axes are swapped"),
    "hard-coded exponent": ({"fit": "hard-coded 1"}, "must come from the measured numbers"),
    "exponent as a tensor": ({"fit": "a tensor"}, r"use \.item\(\)"),
    "variances only": ({"ret": "variances only"}, r"return 2 values \(variances, exponent\)"),
}


@pytest.mark.parametrize("name", MEASURE_RIGHT)
def test_measure_check_accepts_right_measurements(name):
    options = MEASURE_RIGHT[name]
    assert checks.check_measure_score_variance(lambda *a: _measure(*a, **options))


@pytest.mark.parametrize("name", MEASURE_WRONG)
def test_measure_check_rejects_mistakes(name):
    options, message = MEASURE_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_measure_score_variance(lambda *a: _measure(*a, **options))


def test_measure_check_leaves_the_global_random_state_alone_even_when_the_answer_moves_it():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with pytest.raises(CheckFailed):
        checks.check_measure_score_variance(lambda *a: _measure(*a, draw="global"))
    assert torch.equal(torch.random.get_rng_state(), before)


# ----------------------------------------------------------------------------- the combined mask

def _mask(tokens, pad_id, n_queries):
    S = tokens.shape[1]
    real = (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, S)
    return real & torch.ones(n_queries, S, dtype=torch.bool).tril(S - n_queries)


def _mask_arange(tokens, pad_id, n_queries):
    B, S = tokens.shape
    position = torch.arange(S - n_queries, S)[:, None]  # (T, 1): where each query sits
    return ((torch.arange(S) <= position) & (tokens != pad_id)[:, None, :]).unsqueeze(1)


def _mask_loops(tokens, pad_id, n_queries):
    B, S = tokens.shape
    mask = torch.zeros(B, 1, n_queries, S, dtype=torch.bool)
    for b in range(B):
        for i in range(n_queries):
            for s in range(S):
                mask[b, 0, i, s] = bool(tokens[b, s] != pad_id) and s <= S - n_queries + i
    return mask


MASK_RIGHT = {
    "tril with an offset": _mask,
    "positions with arange": _mask_arange,
    "three loops": _mask_loops,
    "not of the upper triangle": lambda t, p, T: (
        (t != p).view(t.shape[0], 1, 1, -1)
        & ~torch.ones(T, t.shape[1], dtype=torch.bool).triu(t.shape[1] - T + 1)),
    "an expanded view": lambda t, p, T: _mask(t, p, T).expand(t.shape[0], 1, T, t.shape[1]),
}

MASK_WRONG = {
    "no offset": (lambda t, p, T: (t != p)[:, None, None, :]
                  & torch.ones(T, t.shape[1], dtype=torch.bool).tril(),
                  r"the 3 queries are the last positions 4 \.\. 6"),
    "or": (lambda t, p, T: (t != p)[:, None, None, :] | torch.ones(T, t.shape[1], dtype=torch.bool)
           .tril(t.shape[1] - T), "combined the masks with \\|"),
    "padded queries blocked too": (lambda t, p, T: _mask(t, p, T) & (t != p)[:, None, -T:, None],
                                                   "also blocked the rows of the padded queries"),
    "padding on the queries": (lambda t, p, T: (t != p)[:, None, -T:, None]
                               & torch.ones(T, t.shape[1], dtype=torch.bool).tril(t.shape[1] - T),
                               "applied to the queries|blocked the rows of the padded queries"),
    "padding missing": (lambda t, p, T: torch.ones(T, t.shape[1], dtype=torch.bool).tril(t.shape[1] - T)
                        .expand(t.shape[0], 1, T, t.shape[1]), "the padding is missing"),
    "pad id hard-coded": (lambda t, p, T: _mask(t, 0, T), "hard-coded as 0"),
    "diagonal blocked": (lambda t, p, T: (t != p)[:, None, None, :]
                         & torch.ones(T, t.shape[1], dtype=torch.bool).tril(t.shape[1] - T - 1),
                         "the diagonal is blocked"),
    "upper triangle": (lambda t, p, T: (t != p)[:, None, None, :]
                       & torch.ones(T, t.shape[1], dtype=torch.bool).triu(t.shape[1] - T), "upper triangle"),
    "wrong sign": (lambda t, p, T: ~_mask(t, p, T), "wrong sign"),
    "no head axis": (lambda t, p, T: _mask(t, p, T)[:, 0], "Add the head axis"),
    "padding alone": (lambda t, p, T: (t != p)[:, None, None, :], "That is the padding mask alone"),
    "causal alone": (lambda t, p, T: torch.ones(T, t.shape[1], dtype=torch.bool).tril(t.shape[1] - T),
                     "That is the causal mask alone"),
    "a row per position": (lambda t, p, T: _mask(t, p, t.shape[1]), "only the last n_queries = 3"),
    "float 0/1": (lambda t, p, T: _mask(t, p, T).float(), "boolean tensor.*got dtype float32"),
    "additive -inf": (lambda t, p, T: torch.zeros(_mask(t, p, T).shape)
                      .masked_fill(~_mask(t, p, T), -math.inf),
                      "additive mask"),
    "tokens changed in place": (lambda t, p, T: _mask(t.masked_fill_(t == p, -1), -1, T),
                                "changed its input `t` in place"),
    "a list": (lambda t, p, T: _mask(t, p, T).tolist(), "return a torch.Tensor, got list"),
    "padding inverted": (lambda t, p, T: (t == p)[:, None, None, :]
                         & torch.ones(T, t.shape[1], dtype=torch.bool).tril(t.shape[1] - T),
                         "the padding part has the wrong sign: it allows the padded keys"),
    "transposed (B, 1, S, T)": (lambda t, p, T: _mask(t, p, T).transpose(-2, -1),
                                r"the mask is transposed, \(B, 1, S, T\)"),
}


@pytest.mark.parametrize("name", MASK_RIGHT)
def test_mask_check_accepts_right_answers(name):
    assert checks.check_causal_padding_mask(MASK_RIGHT[name])


@pytest.mark.parametrize("name", MASK_WRONG)
def test_mask_check_rejects_mistakes(name):
    fn, message = MASK_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_causal_padding_mask(fn)


# ----------------------------------------------------------------------------- multi-head attention

class _Base(nn.Module):
    """The exercise's given __init__: four projections of size d_model."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)


class _Configurable(_Base):
    """The defaults give the right answer; each option gives one mistake."""

    options: dict = {}

    def forward(self, query, key, value, mask=None):
        o = self.options
        B, T, D = query.shape
        H, Dh = self.n_heads, self.d_head

        def split(x):
            if o.get("split") == "interleaved":
                return x.view(B, -1, Dh, H).permute(0, 3, 1, 2)
            if o.get("split") == "no transpose":
                return x.reshape(B, H, -1, Dh)
            return x.view(B, -1, H, Dh).transpose(1, 2)

        q = split(self.q_proj(query))
        k = split(self.k_proj(query if o.get("keys") == "query" else key))
        v = split(self.v_proj(key if o.get("values") == "key" else value))
        if o.get("detach_k"):
            k = k.detach()
        scale = {"Dh": math.sqrt(Dh), "D": math.sqrt(D), "none": 1.0,
                 "2Dh": math.sqrt(2 * Dh)}[o.get("scale", "Dh")]
        scores = q @ k.transpose(-2, -1) / scale
        if mask is not None and o.get("mask", "before") in ("before", "inverted"):
            blocked = mask if o.get("mask") == "inverted" else ~mask
            scores = scores.masked_fill(blocked, o.get("fill", float("-inf")))
        if o.get("softmax") == "queries":
            weights = torch.softmax(scores, dim=-2)
        elif o.get("softmax") == "no max":
            e = scores.exp()
            weights = e / e.sum(-1, keepdim=True)
        else:
            weights = torch.softmax(scores, dim=-1)
        if mask is not None and (o.get("mask") == "after" or o.get("zero")):
            weights = weights.masked_fill(~mask, 0.0)
        out = weights @ v
        if o.get("merge") == "no transpose":
            out = out.reshape(B, T, D)
        elif o.get("merge") == "interleaved":
            out = out.permute(0, 2, 3, 1).reshape(B, T, D)
        else:
            out = out.transpose(1, 2).reshape(B, T, D)
        if o.get("out_proj", True):
            out = self.out_proj(out)
        if o.get("detach"):
            out = out.detach()
        if o.get("average"):
            weights = weights.mean(1)
        return out, weights


def _module(**options):
    return type("MultiHeadAttention", (_Configurable,), {"options": options})


class _Einsum(_Base):
    """reshape + permute, einsum, F.linear with the projections' weights, a list returned."""

    def forward(self, query, key, value, mask=None):
        B, T, D = query.shape

        def project(layer, x):  # (B, L, D) -> (B, H, L, Dh)
            y = F.linear(x, layer.weight, layer.bias)
            return y.reshape(B, x.shape[1], self.n_heads, -1).permute(0, 2, 1, 3)

        q, k, v = project(self.q_proj, query), project(self.k_proj, key), project(self.v_proj, value)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) * self.d_head ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e9)
        w = scores.softmax(-1)
        out = torch.einsum("bhts,bhsd->bthd", w, v).reshape(B, T, D)
        return [self.out_proj(out), w]


class _Loop(_Base):
    """One head at a time, on slices of the projected features; concatenated at the end."""

    def forward(self, query, key, value, mask=None):
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        outs, weights = [], []
        for h in range(self.n_heads):
            cut = slice(h * self.d_head, (h + 1) * self.d_head)
            scores = q[..., cut] @ k[..., cut].transpose(1, 2) / math.sqrt(self.d_head)  # (B, T, S)
            if mask is not None:
                m = mask.expand(q.shape[0], self.n_heads, q.shape[1], k.shape[1])[:, h]
                scores = scores.masked_fill(~m, torch.finfo(scores.dtype).min)
            w = torch.softmax(scores, dim=-1)
            outs.append(w @ v[..., cut])
            weights.append(w)
        return self.out_proj(torch.cat(outs, dim=-1)), torch.stack(weights, dim=1)


class _Methods(_Base):
    """split_heads / merge_heads / attention as methods; view + contiguous; a softmax by hand."""

    def split_heads(self, x):
        B, L, D = x.shape
        return x.view(B, L, self.n_heads, self.d_head).transpose(1, 2)

    def merge_heads(self, x):
        B, H, L, Dh = x.shape
        return x.transpose(1, 2).contiguous().view(B, L, H * Dh)

    def attention(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = torch.where(mask, scores, float("-inf"))
        e = (scores - scores.amax(-1, keepdim=True)).exp()
        w = e / e.sum(-1, keepdim=True)
        return w @ v, w

    def forward(self, query, key, value, mask=None):
        q = self.split_heads(self.q_proj(query))
        k = self.split_heads(self.k_proj(key))
        v = self.split_heads(self.v_proj(value))
        out, w = self.attention(q, k, v, mask)
        return self.out_proj(self.merge_heads(out)), w


class _Float64Inside(_Base):
    """The right answer computed in float64, cast back to the input's dtype."""

    def forward(self, query, key, value, mask=None):
        def project(layer, x):
            return F.linear(x.double(), layer.weight.double(), layer.bias.double())

        def split(x):
            return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_head).transpose(1, 2)

        q, k, v = (split(project(layer, x)) for layer, x in
                   ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=-1)
        out = project(self.out_proj, (w @ v).transpose(1, 2).flatten(2))
        return out.to(query.dtype), w.to(query.dtype)


class _Fused(_Base):
    def forward(self, query, key, value, mask=None):
        q, k, v = (t.view(t.shape[0], t.shape[1], self.n_heads, -1).transpose(1, 2)
                   for t in (self.q_proj(query), self.k_proj(key), self.v_proj(value)))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(query.shape)), None


class _CourseSubclass(MultiHeadAttention):
    pass


class _TorchModule(_Base):
    """PyTorch's nn.MultiheadAttention, loaded with the four projections' weights."""

    def forward(self, query, key, value, mask=None):
        D = query.shape[-1]
        mha = nn.MultiheadAttention(D, self.n_heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
            mha.out_proj.load_state_dict(self.out_proj.state_dict())
        return mha(query, key, value, attn_mask=None if mask is None else ~mask, average_attn_weights=False)


class _MaskInPlace(_Configurable):
    """Right values, but the caller's mask is flipped in place (True = blocked inside)."""

    options = {"mask": "inverted"}

    def forward(self, query, key, value, mask=None):
        return super().forward(query, key, value, None if mask is None else mask.logical_not_())


class _Renamed(_Base):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.o_proj = self.out_proj
        del self.out_proj


MHA_RIGHT = {
    "view, transpose, -inf": _module(),
    "a fill of -1e9": _module(fill=-1e9),
    "a fill of finfo.min, then zero": _module(fill=torch.finfo(torch.float32).min, zero=True),
    # -1e4 with no zeroing: exactly 0 in float32 unless a query's allowed scores all lie below about
    # -9900, and every query of the check keeps a key (the task says so): right (round 3 called it wrong)
    "a fill of -1e4": _module(fill=-1e4),
    "reshape, permute, einsum, F.linear, a list": _Einsum,
    "a loop over heads, finfo.min": _Loop,
    "methods, contiguous().view, softmax by hand": _Methods,
    "float64 inside, cast back": _Float64Inside,
}

MHA_WRONG = {
    "scaled by sqrt(d_model)": (_module(scale="D"), r"divided by sqrt\(d_model\) = sqrt\(12\)"),
    "not scaled": (_module(scale="none"), "the scores are not scaled"),
    "heads interleaved": (_module(split="interleaved", merge="interleaved"), "took every H-th feature"),
    "split without transpose": (_module(split="no transpose", merge="no transpose"),
                                r"a view straight to \(B, H, T, Dh\)"),
    "merge without transpose": (_module(merge="no transpose"), r"merged without \.transpose\(1, 2\)"),
    "merge interleaved": (_module(merge="interleaved"), "merged interleaved"),
    "no out projection": (_module(out_proj=False), "output projection is missing"),
    "mask ignored": (_module(mask="ignored"), "the mask is ignored"),
    "mask after softmax": (_module(mask="after"), "applied after the softmax"),
    "mask inverted": (_module(mask="inverted"), "the mask has the wrong sign"),
    "a fill of -100": (_module(fill=-100.0), "must get exactly 0"),
    "a fill of -100, then zero": (_module(fill=-100.0, zero=True),
                                  r"query 0 of example 0 in head 0, whose allowed scores are all low \(the "
                                  r"largest is -250\), gets weights that sum to 0, not 1: a finite fill"),
    "values from the key": (_module(values="key"), "values are projected from the key"),
    "weights averaged over heads": (_module(average=True), r"return each head's weights, \(B, H, T, S\)"),
    "softmax without the maximum": (_module(softmax="no max"), "large inputs .* NaN or infinity"),
    "softmax over the queries": (_module(softmax="queries"),
                                 r"n_heads=3 the weights sum to 1 over the queries \(axis -2\)"),
    "scaled by sqrt(2 Dh)": (_module(scale="2Dh"),
                             r"the tensor of weights for self-attention with query \(2, 5, 12\).* "
                             "differs from the reference"),
    "output detached": (_module(detach=True), "no gradient reaches the output"),
    "keys detached": (_module(detach_k=True), "no gradient reaches k_proj.weight"),
    "the fused shortcut": (_Fused, "called `torch.nn.functional.scaled_dot_product_attention`"),
    "nn.MultiheadAttention": (_TorchModule, r"called `torch\.nn\.functional\.multi_head_attention_forward` "
                                            r"\(directly, or through nn\.MultiheadAttention, which calls"),
    "the course's module": (_CourseSubclass,
                            "called `transformer_course.attention.scaled_dot_product_attention`"),
    "mask changed in place": (_MaskInPlace, "changed its input `mask` in place"),
    "projection renamed": (_Renamed, r"needs self\.out_proj = nn\.Linear"),
}


@pytest.mark.parametrize("name", MHA_RIGHT)
def test_mha_check_accepts_right_answers(name, capsys):
    assert checks.check_multi_head_attention(MHA_RIGHT[name])
    assert "[x] multi_head_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", MHA_WRONG)
def test_mha_check_rejects_mistakes(name):
    cls, message = MHA_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_multi_head_attention(cls)


def test_the_check_reference_is_the_course_module_and_pytorchs():
    """The check's reference, with no slip chosen, equals MultiHeadAttention and nn.MultiheadAttention."""
    from transformer_course.checks.attention import _mha
    from transformer_course.reference import mha_to_torch

    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).double()
    q, k = torch.randn(2, 4, 12, dtype=torch.float64), torch.randn(2, 6, 12, dtype=torch.float64)
    mask = torch.rand(2, 1, 4, 6) > 0.3
    mask[..., 0] = True
    p = {name: t.detach() for name, t in mha.state_dict().items()}
    out, w = _mha(p, 3, q, k, k, mask)
    for got, want in zip((out, w), mha(q, k, k, mask), strict=True):
        assert torch.allclose(got, want, atol=1e-12)
    torch_out, torch_w = mha_to_torch(mha)(q, k, k, attn_mask=~mask.repeat_interleave(3, 0)[:, 0],
                                          average_attn_weights=False)
    assert torch.allclose(out, torch_out, atol=1e-12) and torch.allclose(w, torch_w, atol=1e-12)


# ----------------------------------------------------------------------------- the influence matrix

def _influence(attention, x, mask, *, roles=("query", "key", "value"), norm="fro", use_mask=True):
    """The defaults give the right answer; each option one mistake."""
    def output(y):
        q, k, v = (y if role in roles else x for role in ("query", "key", "value"))
        return attention(q, k, v, mask if use_mask else None)[0]

    blocks = torch.autograd.functional.jacobian(output, x)[0, :, :, 0].transpose(1, 2)  # (T, T, D, D)
    return {"fro": lambda: torch.linalg.matrix_norm(blocks), "squared": lambda: blocks.pow(2).sum((-2, -1)),
            "max": lambda: blocks.abs().amax((-2, -1)), "sum": lambda: blocks.sum(-2).norm(dim=-1)}[norm]()


def _influence_loop(attention, x, mask):
    """torch.autograd.grad, one output feature at a time; float64 inside, cast back."""
    y = x.detach().double().requires_grad_()
    module = type(attention)(attention.d_model, attention.n_heads).double()
    module.load_state_dict({k: v.double() for k, v in attention.state_dict().items()})
    out, _ = module(y, y, y, mask)
    T, D = x.shape[1], x.shape[2]
    squares = torch.zeros(T, T, dtype=torch.float64)
    for t in range(T):
        for i in range(D):
            (grad,) = torch.autograd.grad(out[0, t, i], y, retain_graph=True)
            squares[t] += grad[0].pow(2).sum(-1)
    return squares.sqrt().to(x.dtype)


def _influence_backward(attention, x, mask, *, zero=True):
    """.backward() in a loop, x.grad read per row (zeroed between calls, or piling up)."""
    y = x.detach().clone().requires_grad_()
    out, _ = attention(y, y, y, mask)
    rows = []
    for t in range(x.shape[1]):
        block = []
        for i in range(x.shape[2]):
            if zero:
                y.grad = None
            out[0, t, i].backward(retain_graph=True)
            block.append(y.grad[0].clone())
        rows.append(torch.stack(block).pow(2).sum((0, 2)).sqrt())  # (S,)
    return torch.stack(rows)


def _influence_finite_differences(attention, x, mask, eps=1e-3):
    """Forward differences in float32: close, not equal."""
    y, module = x.detach(), attention
    T, D = x.shape[1], x.shape[2]
    blocks = torch.zeros(T, T, D, D)
    for s in range(T):
        for j in range(D):
            step = torch.zeros_like(y)
            step[0, s, j] = eps
            up, here = module(y + step, y + step, y + step, mask)[0], module(y, y, y, mask)[0]
            blocks[:, s, :, j] = ((up - here) / eps)[0]
    return torch.linalg.matrix_norm(blocks)


INFLUENCE_RIGHT = {
    "jacobian, matrix_norm": _influence,
    "autograd.grad loop in float64": _influence_loop,
    ".backward() with x.grad zeroed": _influence_backward,
}

INFLUENCE_WRONG = {
    "query only": (lambda a, x, m: _influence(a, x, m, roles=("query",)), "through the query only"),
    "value only": (lambda a, x, m: _influence(a, x, m, roles=("value",)), "through the value only"),
    "features summed": (lambda a, x, m: _influence(a, x, m, norm="sum"),
                        r"differentiated out\[0, t\]\.sum\(\)"),
    "largest entry": (lambda a, x, m: _influence(a, x, m, norm="max"), "largest entry of each block"),
    "squared norms": (lambda a, x, m: _influence(a, x, m, norm="squared"), "squared Frobenius norms"),
    "mask not used": (lambda a, x, m: _influence(a, x, m, use_mask=False), "the mask is not used"),
    "transposed": (lambda a, x, m: _influence(a, x, m).T, "your matrix is transposed: row t is the output"),
    "the weights": (lambda a, x, m: a(x, x, x, m)[1].mean(1)[0], "these are the attention weights"),
    "x.grad piling up": (lambda a, x, m: _influence_backward(a, x, m, zero=False), "x.grad piles up"),
    "finite differences": (_influence_finite_differences, "finite differences"),
    "float64 returned": (lambda a, x, m: _influence_loop(a, x, m).double(), "is float64, expected float32"),
    "(1, T, T)": (lambda a, x, m: _influence(a, x, m)[None],
                  r"wrong shape: got \(1, 6, 6\), expected \(6, 6\)"),
}


@pytest.mark.parametrize("name", INFLUENCE_RIGHT)
def test_influence_check_accepts_right_answers(name):
    assert checks.check_influence_matrix(INFLUENCE_RIGHT[name])


@pytest.mark.parametrize("name", INFLUENCE_WRONG)
def test_influence_check_rejects_mistakes(name):
    fn, message = INFLUENCE_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_influence_matrix(fn)


# ----------------------------------------------------------------------------- all seven

def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    checks.check_scaled_dot_product_attention(scaled_dot_product_attention)
    checks.check_masked_attention(scaled_dot_product_attention)
    checks.check_predict_variance_exponent(lambda: -1.0)
    checks.check_measure_score_variance(_measure)
    checks.check_causal_padding_mask(_mask)
    checks.check_multi_head_attention(_module())
    checks.check_influence_matrix(_influence)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_the_tables_are_large():
    wrong = (len(SDPA_WRONG) + len(MASKED_WRONG) + len(PREDICT_WRONG) + len(MEASURE_WRONG) + len(MASK_WRONG)
             + len(MHA_WRONG) + len(INFLUENCE_WRONG))
    right = (len(SDPA_RIGHT) + len(MASKED_RIGHT) + len(PREDICT_RIGHT) + len(MEASURE_RIGHT) + len(MASK_RIGHT)
             + len(MHA_RIGHT) + len(INFLUENCE_RIGHT))
    assert wrong >= 60 and right >= 25, (wrong, right)
