"""The checks of solutions/03 accept right answers written differently and reject each usual
wrong one with its own message."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transformer_course import checks
from transformer_course.attention import dot_product_attention
from transformer_course.checks import CheckFailed
from transformer_course.checks import seq2seq_attention as seq2seq_attention_checks
from transformer_course.checks._core import _resolve

# ----------------------------------------------------------------------------- additive attention


def _additive(query, keys, w_query, w_key, v, *, tanh=True, dim=-1, normalise=True, read="keys"):
    """A configurable additive attention: the defaults are right, each option one mistake."""
    hidden = (query @ w_query.T)[:, None, :] + keys @ w_key.T  # (B, S, A)
    scores = (torch.tanh(hidden) if tanh else hidden) @ v  # (B, S)
    weights = torch.softmax(scores, dim=dim) if normalise else scores.exp()
    values = {"keys": keys, "projected": keys @ w_key.T, "hidden": torch.tanh(hidden)}[read]
    return (weights[:, None, :] @ values)[:, 0], weights


def additive_einsum_list(query, keys, w_query, w_key, v):
    hidden = torch.tanh(torch.einsum("ah,bh->ba", w_query, query)[:, None]
                        + torch.einsum("ad,bsd->bsa", w_key, keys))
    weights = torch.einsum("bsa,a->bs", hidden, v).softmax(-1)
    return [torch.einsum("bs,bsd->bd", weights, keys), weights]


def additive_float64_inside(query, keys, w_query, w_key, v):
    context, weights = _additive(*(a.double() for a in (query, keys, w_query, w_key, v)))
    return context.to(query.dtype), weights.to(query.dtype)


def additive_loop(query, keys, w_query, w_key, v):
    contexts, weights = [], []
    for b in range(query.shape[0]):
        scores = torch.stack([v @ torch.tanh(w_query @ query[b] + w_key @ k) for k in keys[b]])
        e = (scores - scores.max()).exp()
        w = e / e.sum()
        weights.append(w)
        contexts.append((w[:, None] * keys[b]).sum(0))
    return torch.stack(contexts), torch.stack(weights)


def additive_double_loop_list(query, keys, w_query, w_key, v):
    B, S, _ = keys.shape
    scores = torch.empty(B, S, dtype=keys.dtype)
    for b in range(B):
        for s in range(S):
            scores[b, s] = v @ torch.tanh(w_query @ query[b] + w_key @ keys[b, s])
    weights = scores.softmax(-1)
    return [torch.bmm(weights.unsqueeze(1), keys).squeeze(1), weights]


def additive_linear_float64_by_hand(query, keys, w_query, w_key, v):
    q, k = query.double(), keys.double()
    e = torch.tanh(F.linear(q, w_query.double()).unsqueeze(1) + F.linear(k, w_key.double())) @ v.double()
    e = e - e.max(dim=-1, keepdim=True).values
    a = e.exp() / e.exp().sum(-1, keepdim=True)
    return (a.unsqueeze(-1) * k).sum(1).to(query.dtype), a.to(query.dtype)


def additive_helper_softmax(query, keys, w_query, w_key, v):
    def softmax(x):
        x = x - x.amax(-1, keepdim=True)
        return x.exp() / x.exp().sum(-1, keepdim=True)

    projected = torch.matmul(keys, w_key.t()) + torch.matmul(query, w_query.t()).unsqueeze(-2)
    weights = softmax(torch.matmul(projected.tanh(), v.unsqueeze(-1)).squeeze(-1))
    return torch.matmul(weights.unsqueeze(-2), keys).squeeze(-2), weights


ADDITIVE_RIGHT = [_additive, additive_einsum_list, additive_float64_inside, additive_loop,
                  additive_double_loop_list, additive_linear_float64_by_hand, additive_helper_softmax]


@pytest.mark.parametrize("right", ADDITIVE_RIGHT, ids=lambda f: f.__name__)
def test_additive_check_accepts_right_answers(right, capsys):
    assert checks.check_additive_attention(right)
    assert "[x] additive_attention" in capsys.readouterr().out


def _hand_softmax_without_max(query, keys, w_query, w_key, v):
    scores = torch.tanh((query @ w_query.T)[:, None, :] + keys @ w_key.T) @ v
    weights = scores.exp() / scores.exp().sum(-1, keepdim=True)
    return (weights[:, None, :] @ keys)[:, 0], weights


def _query_normalised_in_place(query, keys, w_query, w_key, v):
    query /= query.norm(dim=-1, keepdim=True)
    return _additive(query, keys, w_query, w_key, v)


def _softmax_of_the_tanh_layer(query, keys, w_query, w_key, v, dim=-1):
    weights = torch.softmax(torch.tanh((query @ w_query.T)[:, None] + keys @ w_key.T), dim) @ v
    return (weights[..., None] * keys).sum(1), weights


def _tanh_after_v(query, keys, w_query, w_key, v):
    weights = torch.softmax(torch.tanh(((query @ w_query.T)[:, None] + keys @ w_key.T) @ v), -1)
    return (weights[..., None] * keys).sum(1), weights


def _weights_not_transposed(query, keys, w_query, w_key, v):
    weights = torch.softmax(torch.tanh((query @ w_query)[:, None] + keys @ w_key) @ v, -1)
    return (weights[..., None] * keys).sum(1), weights


def _divided_by_the_sum(query, keys, w_query, w_key, v):
    e = torch.tanh((query @ w_query.T)[:, None] + keys @ w_key.T) @ v
    weights = e / e.sum(-1, keepdim=True)
    return (weights[..., None] * keys).sum(1), weights


def _sigmoid(query, keys, w_query, w_key, v):
    weights = torch.sigmoid(torch.tanh((query @ w_query.T)[:, None] + keys @ w_key.T) @ v)
    return (weights[..., None] * keys).sum(1), weights


def _uniform(query, keys, w_query, w_key, v):
    return keys.mean(1), torch.full(keys.shape[:2], 1.0 / keys.shape[1])


def _keys_weighted_in_place(query, keys, w_query, w_key, v):
    weights = _additive(query, keys, w_query, w_key, v)[1]
    keys *= weights[..., None]
    return keys.sum(1), weights


def _package_additive_attention(query, keys, w_query, w_key, v):
    from transformer_course.attention import additive_attention  # imported while the check runs

    return additive_attention(query, keys, w_query, w_key, v)


def _package_additive_module(query, keys, w_query, w_key, v):
    from transformer_course.attention import AdditiveAttention

    module = AdditiveAttention(query.shape[1], keys.shape[2], w_query.shape[0])
    with torch.no_grad():
        module.query_proj.weight.copy_(w_query)
        module.key_proj.weight.copy_(w_key)
        module.score.weight.copy_(v[None])
    return module(query, keys)


ADDITIVE_WRONG = {
    "no tanh": (lambda *a: _additive(*a, tanh=False), "forgot the tanh"),
    "softmax of the tanh layer over A": (_softmax_of_the_tanh_layer,
                                         r"softmax of the tanh layer \(B, S, A\), before multiplying by v"),
    "tanh after v": (_tanh_after_v, r"the tensor of weights for .* differs from the reference"),
    "weights not transposed": (_weights_not_transposed, "raised RuntimeError: mat1 and mat2 shapes"),
    "(weights, context)": (lambda *a: _additive(*a)[::-1],
                           r"you returned \(weights, context\), swapped: the first result has the shape of "
                           r"the weights, \(3, 5\); return them in the order \(context, weights\)"),
    "divided by the sum": (_divided_by_the_sum, r"the tensor of weights for .* differs from the reference"),
    "sigmoid": (_sigmoid, "sum to between .*did you forget the softmax"),
    "uniform weights": (_uniform, r"differs from the reference: .* got 0.2,"),
    "keys changed in place": (_keys_weighted_in_place, "changed its input `keys` in place"),
    "the package's additive_attention": (_package_additive_attention,
                                         "called `transformer_course.attention.additive_attention`"),
    "the package's AdditiveAttention": (_package_additive_module,
                                        "called `transformer_course.attention.AdditiveAttention`"),
    "softmax over the batch": (lambda *a: _additive(*a, dim=0), "over the batch"),
    "not normalised": (lambda *a: _additive(*a, normalise=False), "sum to 1 over the source positions"),
    "context from the projected keys": (lambda *a: _additive(*a, read="projected"),
                                        "averages the projected keys"),
    "context from the tanh layer": (lambda *a: _additive(*a, read="hidden"),
                                    "the size A = 7 of the scoring layer"),
    "only the context": (lambda *a: _additive(*a)[0], r"return 2 values \(context, weights\)"),
    "three values": (lambda *a: (*_additive(*a), None), r"return 2 values \(context, weights\); got 3"),
    "weights transposed": (lambda *a: (_additive(*a)[0], _additive(*a)[1].T), "wrong shape"),
    "context summed, not weighted": (lambda *a: (a[1].sum(1), _additive(*a)[1]), "plain sum or mean"),
    "float64 weights": (lambda *a: (_additive(*a)[0], _additive(*a)[1].double()),
                        "is float64, expected float32"),
    "softmax without the maximum": (_hand_softmax_without_max, "are NaN.*subtract each row's own maximum"),
    "query changed in place": (_query_normalised_in_place, "changed its input `query` in place"),
}


# The same mistakes written differently: the same message.
ADDITIVE_WRONG_AGAIN = {
    "[weights, context] as a list": (lambda *a: list(_additive(*a))[::-1],
                                     r"you returned \(weights, context\), swapped"),
    "softmax of the tanh layer over S": (lambda *a: _softmax_of_the_tanh_layer(*a, dim=1),
                                         "softmax of the tanh layer"),
}


@pytest.mark.parametrize("name", [*ADDITIVE_WRONG, *ADDITIVE_WRONG_AGAIN])
def test_additive_check_rejects_mistakes(name):
    fn, message = {**ADDITIVE_WRONG, **ADDITIVE_WRONG_AGAIN}[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_additive_attention(fn)


# ----------------------------------------------------------------------------- masked dot attention


def _dot(query, keys, mask, *, fill="before", sign=1, dim=-1, scale=1.0, context_from="masked"):
    """A configurable masked dot attention: the defaults are right, each option one mistake."""
    scores = (keys @ query[:, :, None])[..., 0] * scale  # (B, S)
    blocked = ~mask if sign == 1 else mask
    if fill == "before":
        scores = scores.masked_fill(blocked, float("-inf"))
    elif fill == "times":
        scores = scores * ~blocked
    elif isinstance(fill, float):
        scores = scores.masked_fill(blocked, fill)
    weights = torch.softmax(scores, dim=dim)
    if fill == "after":
        weights = weights.masked_fill(blocked, 0.0)
    used = weights if context_from == "masked" else torch.softmax((keys @ query[:, :, None])[..., 0], -1)
    return (used[:, None, :] @ keys)[:, 0], weights


def dot_einsum_where(query, keys, mask):
    scores = torch.where(mask, torch.einsum("bh,bsh->bs", query, keys), float("-inf"))
    weights = scores.softmax(-1)
    return torch.einsum("bs,bsh->bh", weights, keys), weights


def dot_float64_inside_list(query, keys, mask):
    context, weights = _dot(query.double(), keys.double(), mask)
    return [context.float(), weights.float()]


def dot_loop_over_real_tokens(query, keys, mask):
    B, S, _ = keys.shape
    weights = torch.zeros(B, S)
    for b in range(B):
        n = int(mask[b].sum())
        weights[b, :n] = torch.softmax(keys[b, :n] @ query[b], 0)
    return (weights[:, :, None] * keys).sum(1), weights


def dot_hand_softmax_big_negative(query, keys, mask):
    scores = (query[:, None, :] * keys).sum(-1).masked_fill(~mask, -1e9)
    e = (scores - scores.max(-1, keepdim=True).values).exp()
    weights = e / e.sum(-1, keepdim=True)
    return weights.unsqueeze(1).bmm(keys).squeeze(1), weights


def dot_where_tensor_inf(query, keys, mask):
    scores = torch.einsum("bh,bsh->bs", query, keys)
    scores = torch.where(mask, scores, torch.tensor(-math.inf, dtype=scores.dtype))
    weights = scores.softmax(-1)
    return torch.einsum("bs,bsh->bh", weights, keys), weights


def dot_bmm_fill_minus_1e9(query, keys, mask):
    scores = torch.bmm(keys, query[:, :, None])[:, :, 0].masked_fill(mask == 0, -1e9)
    weights = F.softmax(scores, dim=1)
    return torch.bmm(weights[:, None, :], keys)[:, 0, :], weights


def dot_finfo_min_tuple(query, keys, mask):
    scores = (query[:, None, :] * keys).sum(-1)
    scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, -1)
    return tuple([(weights[..., None] * keys).sum(1), weights])


def dot_float64_by_hand_index_assignment(query, keys, mask):
    s = torch.einsum("bh,bsh->bs", query.double(), keys.double())
    s[~mask] = -torch.inf  # index assignment on a tensor of its own
    s = s - s.max(-1, keepdim=True).values
    w = s.exp() / s.exp().sum(-1, keepdim=True)
    return torch.einsum("bs,bsh->bh", w, keys.double()).to(query.dtype), w.to(query.dtype)


def dot_exp_minus_real_max_where(query, keys, mask):  # exp minus the real maximum, torch.where: inf never met
    scores = (keys * query[:, None, :]).sum(-1)
    real_max = scores.masked_fill(~mask, float("-inf")).amax(-1, keepdim=True)
    e = torch.where(mask, torch.exp(scores - real_max), 0.0)
    weights = e / e.sum(-1, keepdim=True)
    return (weights[..., None] * keys).sum(1), weights


DOT_RIGHT = [_dot, dot_einsum_where, dot_float64_inside_list, dot_loop_over_real_tokens,
             dot_hand_softmax_big_negative, dot_where_tensor_inf, dot_bmm_fill_minus_1e9, dot_finfo_min_tuple,
             dot_float64_by_hand_index_assignment, dot_exp_minus_real_max_where]



@pytest.mark.parametrize("right", DOT_RIGHT, ids=lambda f: f.__name__)
def test_dot_check_accepts_right_answers(right):
    assert checks.check_masked_dot_attention(right)


def _global_max_softmax(query, keys, mask):
    scores = (keys @ query[:, :, None])[..., 0].masked_fill(~mask, float("-inf"))
    e = (scores - scores.max()).exp()  # one maximum for the whole batch
    weights = e / e.sum(-1, keepdim=True)
    return (weights[:, None, :] @ keys)[:, 0], weights


def _padding_zeroed_in_place(query, keys, mask):
    keys[~mask] = 0.0  # masked assignment on the input
    return _dot(query, keys, mask)


def _little_weight_on_padding(q, k, m):
    context, weights = _dot(q, k, m)
    leaked = (weights + 0.01 * ~m) / (1 + 0.01 * (~m).sum(1, keepdim=True))
    return context, leaked


def _mask_after_softmax_renormalised(query, keys, mask):
    weights = torch.softmax((keys @ query[..., None])[..., 0], -1) * mask
    weights = weights / weights.sum(-1, keepdim=True)
    return (weights[..., None] * keys).sum(1), weights


def _exp_times_mask(query, keys, mask):
    e = (keys @ query[..., None])[..., 0].exp() * mask  # no maximum subtracted
    weights = e / e.sum(-1, keepdim=True)
    return (weights[..., None] * keys).sum(1), weights


def _exp_minus_real_max_times_mask(query, keys, mask):
    scores = (keys * query[:, None, :]).sum(-1)
    real_max = scores.masked_fill(~mask, float("-inf")).amax(-1, keepdim=True)
    e = torch.exp(scores - real_max) * mask  # padding far above the real maximum: inf * 0 = NaN
    weights = e / e.sum(-1, keepdim=True)
    return (weights[..., None] * keys).sum(1), weights


def _package_dot_product_attention(query, keys, mask):
    from transformer_course.attention import dot_product_attention  # imported while the check runs

    return dot_product_attention(query, keys, mask)


def _package_dot_module(query, keys, mask):
    from transformer_course.attention import DotProductAttention

    return DotProductAttention(query.shape[1])(query, keys, mask)


DOT_WRONG = {
    "mask ignored": (lambda q, k, m: _dot(q, k, m, fill=None), "mask is ignored"),
    "mask after the softmax": (lambda q, k, m: _dot(q, k, m, fill="after"), "after the softmax"),
    "mask after the softmax, renormalised": (_mask_after_softmax_renormalised,
                                             r"rows \[1, 3\] are NaN: you took the softmax over every "
                                             "position, then zeroed the padding and divided by the sum"),
    "mask multiplied in": (lambda q, k, m: _dot(q, k, m, fill="times"),
                           r"gave the padding a score of 0 \(by multiplying the scores by the mask, or "
                           r"filling with 0\)"),
    "exp minus the real maximum, mask multiplied in": (
        _exp_minus_real_max_times_mask,
        r"rows \[1, 2, 3\] are NaN: exp of the padding's scores overflows to inf before you multiply by the "
        r"mask \(inf \* 0 is NaN\).*-inf \(or use torch\.where"),
    "exp without a maximum, mask multiplied in": (_exp_times_mask,
                                                  r"rows \[0, 1, 2, 3\] are NaN.*subtract each row's own"),
    "(weights, context)": (lambda q, k, m: _dot(q, k, m)[::-1],
                           r"you returned \(weights, context\), swapped: the first result has the shape of "
                           r"the weights, \(4, 6\); return them in the order \(context, weights\)"),
    "the package's dot_product_attention": (_package_dot_product_attention,
                                            "called `transformer_course.attention.dot_product_attention`"),
    "the package's DotProductAttention": (_package_dot_module,
                                          "called `transformer_course.attention.DotProductAttention`"),
    "mask filled with -100": (lambda q, k, m: _dot(q, k, m, fill=-100.0),
                              "must get exactly 0. A finite fill such as -100"),
    "mask with the wrong sign": (lambda q, k, m: _dot(q, k, m, sign=-1), "wrong sign"),
    "softmax over the batch": (lambda q, k, m: _dot(q, k, m, dim=0), "over the batch"),
    "scaled by sqrt(H)": (lambda q, k, m: _dot(q, k, m, scale=1 / math.sqrt(q.shape[-1])),
                          r"divided the scores by sqrt\(H\)"),
    "context from unmasked weights": (lambda q, k, m: _dot(q, k, m, context_from="unmasked"),
                                      "unmasked weights"),
    "not normalised": (lambda q, k, m: (_dot(q, k, m)[0], _dot(q, k, m)[1] * 2), "sum to 1"),
    "padding gets a little weight": (_little_weight_on_padding, "padding positions get weight"),
    "one maximum for the batch": (_global_max_softmax, r"rows \[1\] are NaN.*far below the batch's maximum"),
    "keys changed in place": (_padding_zeroed_in_place, "changed its input `keys` in place"),
    "float64 context": (lambda q, k, m: (_dot(q, k, m)[0].double(), _dot(q, k, m)[1]),
                        "the context .* is float64, expected float32"),
    "a dict": (lambda q, k, m: dict(zip("cw", _dot(q, k, m), strict=True)), r"return 2 values.*got a dict"),
}


# The same mistakes written differently: the same message.
DOT_WRONG_AGAIN = {
    "mask filled with 0": (lambda q, k, m: _dot(q, k, m, fill=0.0), "gave the padding a score of 0"),
    "mask filled with -10": (lambda q, k, m: _dot(q, k, m, fill=-10.0), "must get exactly 0"),
    "float64 context and weights": (lambda q, k, m: tuple(t.double() for t in _dot(q, k, m)),
                                    "the tensor of weights .* is float64, expected float32"),
    "[weights, context] as a list": (lambda q, k, m: list(_dot(q, k, m))[::-1],
                                     r"you returned \(weights, context\), swapped"),
}


@pytest.mark.parametrize("name", [*DOT_WRONG, *DOT_WRONG_AGAIN])
def test_dot_check_rejects_mistakes(name):
    fn, message = {**DOT_WRONG, **DOT_WRONG_AGAIN}[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_masked_dot_attention(fn)


# ----------------------------------------------------------------------------- one decoder step


def _step(tokens, hidden, enc_outputs, mask, embed, cell, *, order="ec", masked=True, query="hidden",
          state="hidden", context_is="attention", returns="pair", fill=float("-inf")):
    """A configurable attention-decoder step: the defaults are right, each option one mistake."""
    emb = embed(tokens)  # (B, D)
    q = hidden if query == "hidden" else emb
    scores = (enc_outputs @ q[:, :, None])[..., 0]  # (B, S)
    weights = torch.softmax(scores.masked_fill(~mask, fill) if masked else scores, -1)
    context = {"attention": (weights[:, None, :] @ enc_outputs)[:, 0],
               "last": enc_outputs[torch.arange(len(tokens)), mask.sum(1) - 1],
               "mean": enc_outputs.mean(1)}[context_is]
    x = torch.cat([emb, context] if order == "ec" else [context, emb], -1)
    new = cell(x, hidden) if state == "hidden" else cell(x)
    return {"pair": (new, weights), "swapped": (weights, new), "old": (hidden, weights),
            "context": (context, weights), "one": new}[returns]


def step_package_attention(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = dot_product_attention(hidden, enc_outputs, mask)
    return cell(torch.cat([embed(tokens), context], dim=-1), hidden), weights


def step_einsum_list(tokens, hidden, enc_outputs, mask, embed, cell):
    scores = torch.where(mask, torch.einsum("bh,bsh->bs", hidden, enc_outputs), float("-inf"))
    weights = scores.softmax(-1)
    context = torch.einsum("bs,bsh->bh", weights, enc_outputs)
    return [cell(torch.hstack([F.embedding(tokens, embed.weight), context]), hidden), weights]


def step_float64_gru_by_hand(tokens, hidden, enc_outputs, mask, embed, cell):
    weights = torch.softmax((enc_outputs.double() @ hidden.double()[:, :, None])[..., 0]
                            .masked_fill(~mask, float("-inf")), -1)
    context = (weights[:, :, None] * enc_outputs.double()).sum(1)
    x = torch.cat([embed(tokens).double(), context], -1)
    h = hidden.double()
    gi = x @ cell.weight_ih.double().T + cell.bias_ih.double()
    gh = h @ cell.weight_hh.double().T + cell.bias_hh.double()
    (ir, iz, i_n), (hr, hz, hn) = gi.chunk(3, -1), gh.chunk(3, -1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * hn)
    return ((1 - z) * n + z * h).to(hidden.dtype), weights.to(hidden.dtype)


def step_loop_over_rows(tokens, hidden, enc_outputs, mask, embed, cell):
    news, weights = [], torch.zeros(mask.shape)
    for b in range(len(tokens)):
        real = enc_outputs[b, : int(mask[b].sum())]  # (n, H)
        w = torch.softmax(real @ hidden[b], 0)
        weights[b, : len(w)] = w
        x = torch.cat([embed(tokens[b : b + 1]), (w @ real)[None]], -1)
        news.append(cell(x, hidden[b : b + 1])[0])
    return torch.stack(news), weights


def step_keywords_hx(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = _dot(query=hidden, keys=enc_outputs, mask=mask)
    return [cell(torch.hstack((embed(tokens), context)), hx=hidden), weights]


def step_float64_attention_cast_back(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = dot_float64_inside_list(hidden, enc_outputs, mask)
    return cell(torch.cat([F.embedding(tokens, embed.weight), context], dim=1), hidden), weights


# A gray case, decided: the package's dot_product_attention inside the step is accepted, although the
# task says "your masked_dot_attention": it computes the same thing, and the task here is the step.
STEP_RIGHT = [_step, step_package_attention, step_einsum_list, step_float64_gru_by_hand,
              step_loop_over_rows, step_keywords_hx, step_float64_attention_cast_back]


@pytest.mark.parametrize("right", STEP_RIGHT, ids=lambda f: f.__name__)
def test_step_check_accepts_right_answers(right):
    assert checks.check_attention_decoder_step(right)


def _step_in_place(tokens, hidden, enc_outputs, mask, embed, cell):
    enc_outputs.masked_fill_(~mask[..., None], 0.0)
    return _step(tokens, hidden, enc_outputs, mask, embed, cell)


def _step_unmasked_context(tokens, hidden, enc_outputs, mask, embed, cell):
    _, weights = _step(tokens, hidden, enc_outputs, mask, embed, cell)
    context = (torch.softmax((enc_outputs @ hidden[:, :, None])[..., 0], -1)[:, None] @ enc_outputs)[:, 0]
    return cell(torch.cat([embed(tokens), context], -1), hidden), weights


def _step_float64(*args):
    new, weights = _step(*args)
    return new.double(), weights


def _step_attending_with_the_new_state(tokens, hidden, enc_outputs, mask, embed, cell):
    mean = (enc_outputs * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    new = cell(torch.cat([embed(tokens), mean], -1), hidden)
    return new, _dot(new, enc_outputs, mask)[1]


def _step_weights_of_the_new_state(tokens, hidden, enc_outputs, mask, embed, cell):
    new, _ = _step(tokens, hidden, enc_outputs, mask, embed, cell)
    return new, _dot(new, enc_outputs, mask)[1]


def _step_state_updated_in_place(tokens, hidden, enc_outputs, mask, embed, cell):
    new, weights = _step(tokens, hidden, enc_outputs, mask, embed, cell)
    hidden.copy_(new)
    return hidden, weights


def _step_using(attention):
    """A right step around a (wrong) task-2 attention."""
    def step(tokens, hidden, enc_outputs, mask, embed, cell):
        context, weights = attention(hidden, enc_outputs, mask)
        return cell(torch.cat([embed(tokens), context], -1), hidden), weights

    return step


def _step_cell_arguments_swapped(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = _dot(hidden, enc_outputs, mask)
    return cell(hidden, torch.cat([embed(tokens), context], -1)), weights


# Gray cases, decided: a step run under torch.no_grad() or with a detached context gives the right
# values, but the step is used for training, so the check compares the gradients of the new state
# (with respect to the encoder states, the previous state, the embedding and the GRU cell's weights)
# with the reference's, and names the cut graph.
def _step_under_no_grad(*args):
    with torch.no_grad():
        return _step(*args)


def _step_detached_context(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = _dot(hidden, enc_outputs, mask)
    return cell(torch.cat([embed(tokens), context.detach()], -1), hidden), weights


def _step_detached_weights(tokens, hidden, enc_outputs, mask, embed, cell):
    _, weights = _dot(hidden, enc_outputs, mask)
    context = (weights.detach()[:, None, :] @ enc_outputs)[:, 0]
    return cell(torch.cat([embed(tokens), context], -1), hidden), weights


def _step_detached_state(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = _dot(hidden, enc_outputs, mask)
    return cell(torch.cat([embed(tokens), context], -1), hidden.detach()), weights


def _step_detached_embedding(tokens, hidden, enc_outputs, mask, embed, cell):
    context, weights = _dot(hidden, enc_outputs, mask)
    return cell(torch.cat([embed(tokens).detach(), context], -1), hidden), weights


STEP_WRONG = {
    "[context; embedding]": (lambda *a: _step(*a, order="ce"), r"\[context; embedding\]"),
    "the new state's weights": (_step_weights_of_the_new_state,
                                r"you computed the weights from the new state s_t; the query is the previous "
                                r"state s_\{t-1\}, not the new one"),
    "the state updated in place": (_step_state_updated_in_place, "changed its input `hidden` in place"),
    "softmax, mask, renormalise": (_step_using(_mask_after_softmax_renormalised),
                                   r"rows \[2, 3\] are NaN: you took the softmax over every .*task 2"),
    "cell(hidden, x)": (_step_cell_arguments_swapped,
                        "raised RuntimeError: input has inconsistent input_size"),
    "mask after the softmax": (_step_using(lambda q, k, m: _dot(q, k, m, fill="after")),
                               "after the softmax.*task 2"),
    "scaled dot attention": (_step_using(lambda q, k, m: _dot(q, k, m, scale=1 / math.sqrt(q.shape[-1]))),
                             r"divided by sqrt\(H\)"),
    "no previous state": (lambda *a: _step(*a, state="zeros"), "without the previous state"),
    "no mask": (lambda *a: _step(*a, masked=False), "mask is ignored.*task 2"),
    "mask filled with -100": (lambda *a: _step(*a, fill=-100.0), "must get exactly 0"),
    "the embedding as the query": (lambda *a: _step(*a, query="embedding"), "with the token's embedding"),
    "the last encoder state as the context": (lambda *a: _step(*a, context_is="last"),
                                              "last real state.*without attention"),
    "the mean as the context": (lambda *a: _step(*a, context_is="mean"), "plain mean of the encoder states"),
    "unmasked context": (_step_unmasked_context, "unmasked attention context"),
    "(weights, new_hidden)": (lambda *a: _step(*a, returns="swapped"), r"order \(new_hidden, weights\)"),
    "the old state": (lambda *a: _step(*a, returns="old"), "previous state unchanged"),
    "the context as the state": (lambda *a: _step(*a, returns="context"), "context vector as the new state"),
    "only the new state": (lambda *a: _step(*a, returns="one"), r"return 2 values \(new_hidden, weights\)"),
    "float64 state": (_step_float64, "new state .* is float64, expected float32"),
    "encoder states changed in place": (_step_in_place, "changed its input `enc_outputs` in place"),
    "under torch.no_grad()": (_step_under_no_grad,
                              r"the new state carries no gradient: it was computed under torch\.no_grad\(\), "
                              r"or detached.*used for training"),
    "context detached": (_step_detached_context,
                         r"no gradient reaches enc_outputs from the new state \(a \.detach\(\).*on the "
                         "attention's scores, weights or context cuts the path from the new state back to "
                         "the encoder"),
    "weights detached": (_step_detached_weights,
                         r"the gradient of the new state with respect to enc_outputs differs from the "
                         r"reference.*cut from the graph \(a \.detach\(\)"),
    "previous state detached": (_step_detached_state,
                                r"the gradient of the new state with respect to hidden differs.*"
                                r"a \.detach\(\) on the previous state"),
    "embedding detached": (_step_detached_embedding, "no gradient reaches embed.weight from the new state"),
}


def _step_embedding_padded_as_query(tokens, hidden, enc_outputs, mask, embed, cell):
    e = embed(tokens)
    q = F.pad(e, (0, max(0, hidden.shape[1] - e.shape[1])))[:, : hidden.shape[1]]
    context, weights = _dot(q, enc_outputs, mask)
    return cell(torch.cat([e, context], -1), hidden), weights


# The same mistakes written differently: the same message.
STEP_WRONG_AGAIN = {
    "attends with the new state (made from the mean)": (_step_attending_with_the_new_state,
                                                        r"weights from the new state s_t; the query is the "
                                                        r"previous state s_\{t-1\}"),
    "the embedding, padded to H, as the query": (_step_embedding_padded_as_query,
                                                 "with the token's embedding"),
    "an all-True mask": (_step_using(lambda q, k, m: _dot(q, k, torch.ones_like(m))),
                         "mask is ignored.*task 2"),
}


@pytest.mark.parametrize("name", [*STEP_WRONG, *STEP_WRONG_AGAIN])
def test_step_check_rejects_mistakes(name):
    fn, message = {**STEP_WRONG, **STEP_WRONG_AGAIN}[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_attention_decoder_step(fn)


def test_step_check_says_not_done_while_task_2_is_not_done(capsys):
    def step_with_untouched_attention(*args):
        raise NotImplementedError("masked_dot_attention: write this part")

    assert not checks.check_attention_decoder_step(step_with_untouched_attention)
    assert "not done yet" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the prediction

# The task asks for "a number": any real number is accepted (a Python float, an int, a numpy
# scalar, a Fraction such as 1/5); a tensor, a string or None is refused with the core's message.
PREDICTION_RIGHT = [lambda: 0.2, lambda: 1 / 5, lambda: np.float64(0.2), lambda: 0.205, lambda: 0.195,
                    lambda: torch.tensor(0.2).item(), lambda: Fraction(1, 5)]


@pytest.mark.parametrize("right", PREDICTION_RIGHT)
def test_prediction_check_accepts_right_answers(right):
    assert checks.check_weight_per_token_prediction(right)


PREDICTION_WRONG = {
    "1/L": (lambda: 1 / 7, "1/L = 1/7.*padding included"),
    "the padding's weight": (lambda: 0.0, "0 is the weight of each padding position"),
    "the sum": (lambda: 1, "what the 5 real tokens get together"),
    "n/L": (lambda: 5 / 7, "the fraction of real positions"),
    "a guess": (lambda: 0.5, "not what equal scores give"),
    "close, not within 0.01": (lambda: 0.22, "your prediction 0.22 is not what equal scores give"),
    "a percentage": (lambda: 20, "your prediction 20 is not what equal scores give"),
    "None": (lambda: None, "should be a Python float, got NoneType"),
    "a tensor": (lambda: torch.tensor(0.2), r"a Python float, got Tensor \(a tensor: use .item\(\)\)"),
    "a string": (lambda: "1/5", "should be a Python float, got str"),
}


@pytest.mark.parametrize("name", PREDICTION_WRONG)
def test_prediction_check_rejects_wrong_answers(name):
    fn, message = PREDICTION_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_weight_per_token_prediction(fn)


# ----------------------------------------------------------------------------- all four


ALL = [(checks.check_additive_attention, ADDITIVE_WRONG), (checks.check_masked_dot_attention, DOT_WRONG),
       (checks.check_attention_decoder_step, STEP_WRONG),
       (checks.check_weight_per_token_prediction, PREDICTION_WRONG)]


@pytest.mark.parametrize("check, table", ALL, ids=lambda x: getattr(x, "__name__", ""))
def test_each_mistake_gets_its_own_message_never_times_zero(check, table):
    messages = []
    for fn, _ in table.values():
        with pytest.raises(CheckFailed) as err:
            check(fn)
        assert "times 0" not in str(err.value)
        messages.append(str(err.value))
    assert len(set(messages)) == len(messages)


@pytest.mark.parametrize("check, right", [(checks.check_additive_attention, _additive),
                                          (checks.check_masked_dot_attention, _dot),
                                          (checks.check_attention_decoder_step, _step),
                                          (checks.check_weight_per_token_prediction, lambda: 0.2)])
def test_checks_leave_the_global_random_state_alone(check, right):
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    check(right)
    assert torch.equal(before, torch.random.get_rng_state())


def test_the_blocked_shortcuts_exist():
    """``call`` skips a path that does not resolve, so a renamed function would pass unblocked."""
    for paths in seq2seq_attention_checks.FORBID.values():
        for path in paths:
            owner, name = _resolve(path)
            assert hasattr(owner, name), path
