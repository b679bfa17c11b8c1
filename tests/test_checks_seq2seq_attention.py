"""The checks of solutions/03 accept the right answers and reject the usual wrong ones by name."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course import checks
from transformer_course.attention import additive_attention, dot_product_attention
from transformer_course.checks import CheckFailed

# ----------------------------------------------------------------------------- additive attention


def _additive(query, keys, w_query, w_key, v, *, tanh=True, dim=-1, normalise=True, read="keys"):
    """A configurable additive attention: the defaults are right, each option one mistake."""
    hidden = (query @ w_query.T)[:, None, :] + keys @ w_key.T  # (B, S, A)
    scores = (torch.tanh(hidden) if tanh else hidden) @ v  # (B, S)
    weights = torch.softmax(scores, dim=dim) if normalise else scores.exp()
    values = {"keys": keys, "projected": keys @ w_key.T, "hidden": torch.tanh(hidden)}[read]
    return (weights[:, None, :] @ values)[:, 0], weights


ADDITIVE_MISTAKES = {
    "no tanh": (lambda *a: _additive(*a, tanh=False), "forgot the tanh"),
    "softmax over the batch": (lambda *a: _additive(*a, dim=0), "over the batch"),
    "not normalised": (lambda *a: _additive(*a, normalise=False), "sum to 1 over the source positions"),
    "context from the projected keys": (lambda *a: _additive(*a, read="projected"),
                                        "averages the projected keys"),
    "context from the tanh layer": (lambda *a: _additive(*a, read="hidden"),
                                    "the size A = 7 of the scoring layer"),
    "only the context": (lambda *a: _additive(*a)[0], r"return a pair \(context, weights\)"),
    "weights transposed": (lambda *a: (_additive(*a)[0], _additive(*a)[1].T), "wrong shape"),
    "context summed, not weighted": (lambda *a: (a[1].sum(1), _additive(*a)[1]), "the context"),
}


def test_additive_check_accepts_the_package_and_a_plain_answer(capsys):
    assert checks.check_additive_attention(additive_attention)
    assert checks.check_additive_attention(_additive)
    assert "[x] additive_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", ADDITIVE_MISTAKES)
def test_additive_check_rejects_mistakes(name):
    fn, message = ADDITIVE_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_additive_attention(fn)


# ----------------------------------------------------------------------------- masked dot attention


def _dot(query, keys, mask, *, fill="before", sign=1, dim=-1, scale=1.0, context_from="masked"):
    """A configurable masked dot attention: the defaults are right, each option one mistake."""
    scores = (keys @ query[:, :, None])[..., 0] * scale  # (B, S)
    blocked = ~mask if sign == 1 else mask
    if fill == "before":
        scores = scores.masked_fill(blocked, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    if fill == "after":
        weights = weights.masked_fill(blocked, 0.0)
    used = weights if context_from == "masked" else torch.softmax((keys @ query[:, :, None])[..., 0], -1)
    return (used[:, None, :] @ keys)[:, 0], weights


DOT_MISTAKES = {
    "mask ignored": (lambda q, k, m: _dot(q, k, m, fill=None), "mask is ignored"),
    "mask after the softmax": (lambda q, k, m: _dot(q, k, m, fill="after"), "after the softmax"),
    "mask with the wrong sign": (lambda q, k, m: _dot(q, k, m, sign=-1), "wrong sign"),
    "softmax over the batch": (lambda q, k, m: _dot(q, k, m, dim=0), "over the batch"),
    "scaled by sqrt(H)": (lambda q, k, m: _dot(q, k, m, scale=1 / math.sqrt(q.shape[-1])),
                          r"divided the scores by sqrt\(H\)"),
    "context from unmasked weights": (lambda q, k, m: _dot(q, k, m, context_from="unmasked"),
                                      "unmasked weights"),
    "not normalised": (lambda q, k, m: (_dot(q, k, m)[0], _dot(q, k, m)[1] * 2), "sum to 1"),
    "padding gets a little weight": (lambda q, k, m: (_dot(q, k, m)[0],
                                                      (_dot(q, k, m)[1] + 0.01 * ~m) / (1 + 0.01 * (~m).sum(1,
                                                       keepdim=True))),
                                     "padding positions get weight"),
}


def test_dot_check_accepts_the_package_and_a_plain_answer():
    assert checks.check_masked_dot_attention(dot_product_attention)
    assert checks.check_masked_dot_attention(_dot)


@pytest.mark.parametrize("name", DOT_MISTAKES)
def test_dot_check_rejects_mistakes(name):
    fn, message = DOT_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_masked_dot_attention(fn)


# ----------------------------------------------------------------------------- one real decoder step


def _context(model, src, src_lengths, hidden, *, over="outputs", masked=True):
    """The context of one step: the defaults are right, each option one mistake."""
    enc = model.encoder(src, src_lengths)
    keys = enc.outputs if over == "outputs" else model.encoder.embed(src)
    return model.decoder.attention(hidden, keys, enc.mask if masked else None)


def _context_plain_sum(model, src, src_lengths, hidden):
    enc = model.encoder(src, src_lengths)
    _, weights = model.decoder.attention(hidden, enc.outputs, enc.mask)
    return enc.outputs.sum(1), weights


CONTEXT_MISTAKES = {
    "embeddings instead of encoder outputs": (lambda *a: _context(*a, over="embeddings"),
                                              "source embeddings"),
    "no padding mask": (lambda *a: _context(*a, masked=False), "padding positions get weight"),
    "the final state (no attention)": (lambda m, s, sl, h: m.encoder(s, sl).final, "final state"),
    "a plain sum": (_context_plain_sum, "plain sum of the encoder outputs"),
    "crashes": (lambda m, s, sl, h: m.decoder.attention(h, s, None), "your function raised"),
}


def test_context_check_accepts_the_right_answer():
    assert checks.check_decoder_context(_context)


def test_context_check_accepts_a_mask_made_from_the_tokens():
    def from_tokens(model, src, src_lengths, hidden):
        return model.decoder.attention(hidden, model.encoder(src, src_lengths).outputs, src != 0)

    assert checks.check_decoder_context(from_tokens)


@pytest.mark.parametrize("name", CONTEXT_MISTAKES)
def test_context_check_rejects_mistakes(name):
    fn, message = CONTEXT_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_decoder_context(fn)


# ----------------------------------------------------------------------------- all three


@pytest.mark.parametrize("check, right", [(checks.check_additive_attention, additive_attention),
                                          (checks.check_masked_dot_attention, dot_product_attention),
                                          (checks.check_decoder_context, _context)])
def test_checks_leave_the_global_random_state_alone(check, right):
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    check(right)
    assert torch.equal(before, torch.random.get_rng_state())
