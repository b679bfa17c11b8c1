"""The checks of notebook 11 accept right answers and reject the mistakes learners make, in words."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed
from transformer_course.efficient import online_softmax_step, tiled_attention

# ----------------------------------------------------------------------------- task 1: one step


def _step(m, l, acc, scores, v, *, rescale_l=True, rescale_acc=True, subtract=True, normalise=False,
          new_max="both"):
    """A learner's step: the defaults give the right answer, each option one mistake."""
    block_max = scores.amax(-1)
    m_new = {"both": torch.maximum(m, block_max), "block": block_max, "old": m}[new_max]
    p = torch.exp(scores - m_new[..., None]) if subtract else torch.exp(scores)
    alpha = torch.exp(m - m_new)
    l_new = (alpha * l if rescale_l else l) + p.sum(-1)
    acc_new = (alpha[..., None] * acc if rescale_acc else acc) + p @ v
    if normalise:
        acc_new = acc_new / l_new[..., None]
    return m_new, l_new, acc_new


STEP_MISTAKES = {
    "running sum not rescaled": (lambda *a: _step(*a, rescale_l=False), "running sum was not rescaled"),
    "accumulator not rescaled": (lambda *a: _step(*a, rescale_acc=False),
                                 "output accumulator was not rescaled"),
    "max not subtracted": (lambda *a: _step(*a, subtract=False), "exp of the raw scores"),
    "divides by the sum in the step": (lambda *a: _step(*a, normalise=True),
                                       "divided by the running sum inside the step"),
    "block max only": (lambda *a: _step(*a, new_max="block"), "block's maximum alone"),
    "max never updated": (lambda *a: _step(*a, new_max="old"), "running maximum was not updated"),
    "returns two things": (lambda *a: _step(*a)[:2], r"return the three updated tensors \(m, l, acc\)"),
    "acc transposed": (lambda *a: (*_step(*a)[:2], _step(*a)[2].transpose(-1, -2)), "wrong shape"),
}


def test_step_check_accepts_the_package_and_a_plain_answer(capsys):
    assert checks.check_online_softmax_step(online_softmax_step)
    assert checks.check_online_softmax_step(_step)
    assert "[x] online_softmax_step" in capsys.readouterr().out


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_step_check_rejects_mistakes(name):
    fn, message = STEP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_online_softmax_step(fn)


def test_step_check_catches_overflow_when_only_large_logits_break_it():
    def overflows_only_when_large(m, l, acc, scores, v):  # right in exact arithmetic, no running max
        p = torch.exp(scores)
        scale = torch.exp(-torch.maximum(m, scores.amax(-1)))
        m_new = torch.maximum(m, scores.amax(-1))
        l_new = (l * torch.exp(m) + p.sum(-1)) * scale
        return m_new, l_new, (acc * torch.exp(m)[..., None] + p @ v) * scale[..., None]

    with pytest.raises(CheckFailed, match="NaN or infinity.*Subtract the new running maximum"):
        checks.check_online_softmax_step(overflows_only_when_large)


# ----------------------------------------------------------------------------- task 2: the loop

def _loop(q, k, v, block_size, causal=False, *, scale=True, mask_ge=False, ahead=False, divide="end",
          partial=True, use_mask=True):
    """A learner's tiled loop: the defaults give the right answer, each option one mistake."""
    T, S = q.shape[-2], k.shape[-2]
    m = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)
    l, acc = torch.zeros(q.shape[:-1], dtype=q.dtype), torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    qs = q / math.sqrt(q.shape[-1]) if scale else q
    for s in range(0, S if partial else S - S % block_size, block_size):
        scores = qs @ k[..., s:s + block_size, :].transpose(-2, -1)
        if causal and use_mask:
            t = torch.arange(T)[:, None]
            key = torch.arange(s, s + scores.shape[-1])
            blocked = key >= t if mask_ge else (key > t + 1 if ahead else key > t)
            scores = scores.masked_fill(blocked, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., s:s + block_size, :])
        if divide == "every":
            acc = acc / l[..., None]
    return acc / l[..., None] if divide == "end" else acc


def _block_relative_mask(q, k, v, block_size, causal=False):
    """Causal positions counted from the start of each block instead of the sequence."""
    T, S = q.shape[-2], k.shape[-2]
    m = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)
    l, acc = torch.zeros(q.shape[:-1], dtype=q.dtype), torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for s in range(0, S, block_size):
        scores = q @ k[..., s:s + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.arange(scores.shape[-1]) > torch.arange(T)[:, None], -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., s:s + block_size, :])
    return acc / l[..., None]


LOOP_MISTAKES = {
    "no final division": (lambda *a: _loop(*a, divide="never"), "never divided by the running sum"),
    "divides at every block": (lambda *a: _loop(*a, divide="every"), "divided by l after every block"),
    "no scaling": (lambda *a: _loop(*a, scale=False), "not scaled"),
    "causal mask ignored": (lambda *a: _loop(*a, use_mask=False), "causal mask is ignored"),
    "causal mask hides the diagonal": (lambda *a: _loop(*a, mask_ge=True),
                                       "off by one: it hides the diagonal"),
    "causal mask one key ahead": (lambda *a: _loop(*a, ahead=True),
                                  r"off by one: query t also sees key t \+ 1"),
    "last partial block dropped": (lambda *a: _loop(*a, partial=False), "last, partial block"),
    "mask counted within the block": (_block_relative_mask, "from the start of each block"),
    "crashes": (lambda q, k, v, b, c=False: q @ k, "your function raised RuntimeError"),
}


def test_loop_check_accepts_the_package_and_a_plain_answer(capsys):
    assert checks.check_tiled_attention(lambda q, k, v, b, c=False: tiled_attention(q, k, v, c, block_size=b))
    assert checks.check_tiled_attention(_loop)
    assert "[x] tiled_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", LOOP_MISTAKES)
def test_loop_check_rejects_mistakes(name):
    fn, message = LOOP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_tiled_attention(fn)


