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


def test_check_reports_not_done_yet(capsys):
    def not_done(max_len, d_model):
        raise NotImplementedError

    assert not checks.check_sinusoidal_encoding(not_done)
    assert "not done yet" in capsys.readouterr().out
