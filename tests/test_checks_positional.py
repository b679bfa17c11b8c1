"""The sinusoidal-encoding check accepts the right answer and rejects the usual mistakes, in words."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed
from transformer_course.positional import sinusoidal_encoding


def _encoding(max_len, d_model, *, swap=False, exponent="pair", concat=False, start=0):
    """A learner's table, written the usual way; the defaults give the right answer."""
    pos = torch.arange(start, start + max_len, dtype=torch.float32)[:, None]
    i = torch.arange(0, d_model, 2, dtype=torch.float32)
    if exponent == "pair":
        freq = torch.exp(-math.log(10000.0) * i / d_model)
    elif exponent == "column":  # 10000^(j / d_model) with j the column
        freq = torch.exp(-math.log(10000.0) * torch.arange(d_model, dtype=torch.float32) / d_model)
    else:  # "double": 10000^(2j / d_model)
        freq = torch.exp(-math.log(10000.0) * 2 * torch.arange(d_model, dtype=torch.float32) / d_model)
    pe = torch.zeros(max_len, d_model)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if exponent == "pair":
        angles = pos * freq
        if concat:
            return torch.cat([first(angles), second(angles)], dim=1)
        pe[:, 0::2], pe[:, 1::2] = first(angles), second(angles)
    else:
        angles = pos * freq  # one frequency per column
        pe[:, 0::2], pe[:, 1::2] = first(angles[:, 0::2]), second(angles[:, 1::2])
    return pe


MISTAKES = {
    "sin and cos swapped": (lambda n, d: _encoding(n, d, swap=True), "sin and cos are swapped"),
    "sines then cosines": (lambda n, d: _encoding(n, d, concat=True), "all the sines come first"),
    "one frequency per column": (lambda n, d: _encoding(n, d, exponent="column"),
                                 r"column j has the frequency 1/10000\^\(j/d_model\)"),
    "2j over d_model": (lambda n, d: _encoding(n, d, exponent="double"), r"uses 2j/d_model"),
    "positions from 1": (lambda n, d: _encoding(n, d, start=1), "positions start at 1"),
    "transposed": (lambda n, d: _encoding(n, d).T, "last two axes swapped"),
    "numpy array": (lambda n, d: _encoding(n, d).numpy(), "should be a torch.Tensor"),
}


def test_check_accepts_the_package_and_a_plain_answer(capsys):
    assert checks.check_sinusoidal_encoding(sinusoidal_encoding)
    assert checks.check_sinusoidal_encoding(_encoding)
    assert checks.check_sinusoidal_encoding(lambda n, d: _encoding(n, d).double())
    assert "[x] sinusoidal_encoding" in capsys.readouterr().out


@pytest.mark.parametrize("name", MISTAKES)
def test_check_rejects_mistakes(name):
    fn, message = MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_sinusoidal_encoding(fn)


# --- add_positions: x (B, T, D) + pe[:T], refusing T > max_len ------------------------------------

def _add_positions(x, pe):
    """The right answer, written the usual way."""
    if x.shape[1] > pe.shape[0]:
        raise ValueError(f"sequence of length {x.shape[1]} is longer than max_len={pe.shape[0]}")
    return x + pe[: x.shape[1]]


def _in_place(x, pe):
    if x.shape[1] > pe.shape[0]:
        raise ValueError("too long")
    x += pe[: x.shape[1]]
    return x


def _refuses_exact_fit(x, pe):
    if x.shape[1] >= pe.shape[0]:
        raise ValueError("too long")
    return x + pe[: x.shape[1]]


def _no_length_check(x, pe):
    return x + pe[: x.shape[1]]  # T > max_len: a RuntimeError from broadcasting, not a ValueError


def _slices_nothing(x, pe):
    return x + pe[: x.shape[1]] if x.shape[1] <= pe.shape[0] else x  # silently ignores the tail


def _guarded(wrong):
    """A wrong formula behind a correct length check, so that the formula is what is tested."""
    def fn(x, pe):
        if x.shape[1] > pe.shape[0]:
            raise ValueError("too long")
        return wrong(x, pe)
    return fn


ADD_MISTAKES = {
    "last rows": (_guarded(lambda x, pe: x + pe[-x.shape[1]:]), r"the last \d+ rows of the table"),
    "positions from 1": (_guarded(lambda x, pe: x + pe[1: x.shape[1] + 1]), "counted from 1"),
    "multiplied": (_guarded(lambda x, pe: x * pe[: x.shape[1]]), "you multiplied"),
    "positions alone": (_guarded(lambda x, pe: pe[: x.shape[1]].expand_as(x).clone()),
                        "returned the positions alone"),
    "x unchanged": (_guarded(lambda x, pe: x.clone()), "returned x unchanged"),
    "sliced by the batch size": (_guarded(lambda x, pe: x + pe[: x.shape[0]]),
                                 r"row 0 of the table to every position: .* batch size x.shape\[0\]"),
    "in place": (_in_place, "changed its input in place"),
    "refuses exactly max_len": (_refuses_exact_fit, r"T = 10 fits \(T <= max_len is fine"),
    "no length check": (_no_length_check, "raised RuntimeError .* raise a ValueError"),
    "ignores the tail": (_slices_nothing, "returned a result; a sequence longer than the table"),
}


def test_add_positions_accepts_the_right_answer(capsys):
    assert checks.check_add_positions(_add_positions)
    assert "[x] add_positions" in capsys.readouterr().out


@pytest.mark.parametrize("name", ADD_MISTAKES)
def test_add_positions_rejects_mistakes(name):
    fn, message = ADD_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_add_positions(fn)


# --- offset_dot_products: PE[p] . PE[p + k] for every p ---------------------------------------------

def _offsets(pe, offset):
    """The right answer, written the usual way."""
    return (pe[: len(pe) - offset] * pe[offset:]).sum(-1)


OFFSET_MISTAKES = {
    "pe[:-0] for offset 0": (lambda pe, k: (pe[:-k] * pe[k:]).sum(-1), r"pe\[:-0\] = pe\[:0\]"),
    "not summed": (lambda pe, k: pe[: len(pe) - k] * pe[k:], "one product per dimension"),
    "whole gram matrix": (lambda pe, k: pe @ pe.T, r"all the dot products PE PE\^T"),
    "mean over dimensions": (lambda pe, k: (pe[: len(pe) - k] * pe[k:]).mean(-1), "averaged"),
    "cosine similarity": (lambda pe, k: torch.cosine_similarity(pe[: len(pe) - k], pe[k:], dim=-1),
                          "cosine similarity"),
    "row with itself": (lambda pe, k: (pe[: len(pe) - k] ** 2).sum(-1), "each row with itself"),
    "one number": (lambda pe, k: (pe[: len(pe) - k] * pe[k:]).sum(), "you returned one number"),
    "roll wraps around": (lambda pe, k: (pe * pe.roll(-k, 0)).sum(-1), "torch.roll wraps"),
}


def test_offset_dot_products_accepts_right_answers(capsys):
    assert checks.check_offset_dot_products(_offsets)
    assert checks.check_offset_dot_products(lambda pe, k: torch.diagonal(pe @ pe.T, k))
    assert checks.check_offset_dot_products(lambda pe, k: (pe[k:] * pe[: len(pe) - k]).sum(-1).double())
    assert "[x] offset_dot_products" in capsys.readouterr().out


@pytest.mark.parametrize("name", OFFSET_MISTAKES)
def test_offset_dot_products_rejects_mistakes(name):
    fn, message = OFFSET_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_offset_dot_products(fn)


