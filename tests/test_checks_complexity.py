"""The checks of notebook 09 accept right answers and reject the mistakes learners make, in words."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed
from transformer_course.experiments import complexity
from transformer_course.measure import fit_exponent

# ----------------------------------------------------------------------------- task 1: the exponent


def _fit(n, t):
    return np.polyfit(np.log(n), np.log(t), 1)[0]


FIT_MISTAKES = {
    "linear axes": (lambda n, t: np.polyfit(n, t, 1)[0], "raw \\(n, t\\) values.*log-log"),
    "log10 of n, ln of t": (lambda n, t: np.polyfit(np.log10(n), np.log(t), 1)[0], "different bases.*2.303"),
    "ln of n, log10 of t": (lambda n, t: np.polyfit(np.log(n), np.log10(t), 1)[0], "different bases.*1 / ln"),
    "the intercept": (lambda n, t: np.polyfit(np.log(n), np.log(t), 1)[1], "returned the intercept"),
    "axes swapped": (lambda n, t: np.polyfit(np.log(t), np.log(n), 1)[0], "gives 1 / p"),
    "only t logged": (lambda n, t: np.polyfit(n, np.log(t), 1)[0], "only the times were logged"),
    "two points": (lambda n, t: np.log(t[-1] / t[0]) / np.log(n[-1] / n[0]), "only the first and the last"),
    "both coefficients": (lambda n, t: np.polyfit(np.log(n), np.log(t), 1),
                          "got two values.*return the slope"),
    "a string": (lambda n, t: "2", "should be a number, got str"),
    "a wrong number": (lambda n, t: 1.0, "got 1, expected"),
    "crashes on arrays": (lambda n, t: math.log(n), "your function raised TypeError"),
}


def test_fit_check_accepts_right_answers(capsys):
    assert checks.check_fit_power_law(_fit)
    assert checks.check_fit_power_law(fit_exponent)
    assert checks.check_fit_power_law(lambda n, t: np.polyfit(np.log10(n), np.log10(t), 1)[0])  # any one base
    assert checks.check_fit_power_law(lambda n, t: torch.tensor(_fit(n, t)))
    assert "[x] fit_power_law" in capsys.readouterr().out


@pytest.mark.parametrize("name", FIT_MISTAKES)
def test_fit_check_rejects_mistakes(name):
    fn, message = FIT_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_fit_power_law(fn)


# ----------------------------------------------------------------------------- task 2: bytes

def _size(dtype):
    return torch.finfo(dtype).bits // 8


BYTES_MISTAKES = {
    "no batch": (lambda B, H, n, dt: H * n * n * _size(dt), "batch dimension is missing"),
    "no heads": (lambda B, H, n, dt: B * n * n * _size(dt), "heads are missing"),
    "n, not n squared": (lambda B, H, n, dt: B * H * n * _size(dt), "the length counts once"),
    "elements": (lambda B, H, n, dt: B * H * n * n, "number of elements"),
    "bits": (lambda B, H, n, dt: B * H * n * n * torch.finfo(dt).bits, "bits, not bytes"),
    "float32 as 8 bytes": (lambda B, H, n, dt: B * H * n * n * 8,
                           "torch.float32 takes 4 bytes per element, not 8"),
    "4 bytes for every dtype": (lambda B, H, n, dt: B * H * n * n * 4,
                                "torch.float16 takes 2 bytes per element, not 4"),
    "d_head instead of n": (lambda B, H, n, dt: B * H * n * 16 * _size(dt),
                            "got 6720, expected 2940 = B \\* H \\* n \\* n"),
    "returns a tensor": (lambda B, H, n, dt: torch.zeros(B, H, n, n, dtype=dt),
                         "should be one number, got an array of shape \\(3, 5, 7, 7\\)"),
}


def test_bytes_check_accepts_right_answers(capsys):
    assert checks.check_attention_weight_bytes(complexity.attention_weight_bytes)
    def from_a_tensor(B, H, n, dt):
        weights = torch.empty(B, H, n, n, dtype=dt)
        return weights.nelement() * weights.element_size()

    assert checks.check_attention_weight_bytes(from_a_tensor)
    assert "[x] attention_weight_bytes" in capsys.readouterr().out


@pytest.mark.parametrize("name", BYTES_MISTAKES)
def test_bytes_check_rejects_mistakes(name):
    fn, message = BYTES_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_attention_weight_bytes(fn)


# ----------------------------------------------------------------------------- task 3: path length

def _path(kind, n, k, *, rec=0, conv="ceil", att=None, at_least_one=True):
    """A learner's path length: the defaults give the right answer, each option one mistake."""
    if kind == "recurrent":
        return n + rec
    if kind == "attention":
        return 1 if att is None else att(n)
    value = {"ceil": math.ceil((n - 1) / (k - 1)), "floor": (n - 1) // (k - 1), "k": math.ceil((n - 1) / k),
             "log": math.ceil(math.log(max(n, 2), k))}[conv]
    return max(1, value) if at_least_one else value


PATH_MISTAKES = {
    "recurrent off by one": (lambda *a: _path(*a, rec=-1), "off by one: x_0 enters at the first step"),
    "recurrent one too many": (lambda *a: _path(*a, rec=1), "one position per step"),
    "attention grows with n": (lambda *a: _path(*a, att=lambda n: n), "1 layer, whatever n"),
    "convolution rounded down": (lambda *a: _path(*a, conv="floor"), "round up"),
    "convolution reaches k back": (lambda *a: _path(*a, conv="k"), "k - 1 positions back"),
    "convolution zero layers": (lambda *a: _path(*a, at_least_one=False), "at least one layer"),
    "dilated convolution": (lambda *a: _path(*a, conv="log"), "dilated convolution"),
    "a float": (lambda *a: float(_path(*a)), "return a whole number of layers as an int"),
    "unknown kind": (lambda kind, n, k: {"recurrent": n, "attention": 1}[kind], "raised KeyError"),
}


def test_path_check_accepts_right_answers(capsys):
    assert checks.check_path_length(complexity.expected_path_length)
    assert checks.check_path_length(_path)
    assert "[x] path_length" in capsys.readouterr().out


@pytest.mark.parametrize("name", PATH_MISTAKES)
def test_path_check_rejects_mistakes(name):
    fn, message = PATH_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_path_length(fn)


