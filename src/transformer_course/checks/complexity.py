"""Checks for solutions/09_why_transformers_won: a fitted exponent, the weights' bytes, path lengths.

Shapes: B batch, H heads, n sequence length; the attention weights are (B, H, n, n).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..experiments.complexity import attention_weight_bytes, expected_path_length
from ..measure import fit_exponent
from ._core import CheckFailed, CheckResult, call, run_check

__all__ = ["check_fit_power_law", "check_attention_weight_bytes", "check_path_length"]


def _number(task: str, got: object, what: str) -> float:
    """The learner's answer as a float, or a CheckFailed that says what came back instead."""
    if isinstance(got, (torch.Tensor, np.ndarray, list, tuple)):
        got = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got)
        if got.size == 2:
            raise CheckFailed(f"{task}: {what} should be one number, got two values {got.tolist()}: "
                              "np.polyfit(x, y, 1) returns [slope, intercept]; return the slope.")
        if got.size != 1:
            raise CheckFailed(f"{task}: {what} should be one number, got an array of shape "
                              f"{tuple(got.shape)}")
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
        raise CheckFailed(f"{task}: {what} should be a number, got {type(got).__name__} ({got!r})")
    return float(got)


# ----------------------------------------------------------------------------- task 1: the exponent

def _power_laws(g: torch.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(lengths, times, true exponent): c n^p with a few per cent of multiplicative noise."""
    cases = []
    for lengths, p, c in (([64, 128, 256, 512, 1024], 1.0, 2e-5), ([32, 64, 128, 256], 2.0, 3e-8),
                          ([10, 30, 100, 300, 1000, 3000], 0.5, 1e-3), ([100, 200, 400], 1.5, 4e-7)):
        n = np.array(lengths, dtype=float)
        noise = np.exp(0.05 * torch.randn(len(lengths), generator=g, dtype=torch.float64).numpy())
        cases.append((n, c * n**p * noise, p))
    return cases


def _exponent_mistakes(n: np.ndarray, t: np.ndarray) -> tuple[dict[str, str], dict[str, float]]:
    slope = fit_exponent(n, t)
    return {
        "linear axes": "you fitted a line to the raw (n, t) values: its slope is seconds per position, "
                       "not an exponent. Fit on log-log axes: the slope of log(t) against log(n).",
        "log10 n, ln t": "the logarithms have different bases (log10 of one axis, the natural log of the "
                         "other): the slope is off by a factor ln(10) = 2.303. Use the same log for both.",
        "ln n, log10 t": "the logarithms have different bases (the natural log of n, log10 of t): the "
                         "slope is off by a factor 1 / ln(10). Use the same log for both.",
        "intercept": "you returned the intercept (the log of the constant c in t = c n^p), not the slope: "
                     "np.polyfit(x, y, 1) returns [slope, intercept].",
        "swapped": "you fitted log(n) against log(t), which gives 1 / p: the exponent is the slope of "
                   "log(t) (vertical) against log(n) (horizontal).",
        "semilog": "only the times were logged: the slope of log(t) against n is not an exponent. "
                   "Take the log of n too.",
        "two points": "you used only the first and the last point: with noisy timings, fit a line "
                      "through all points (least squares, np.polyfit(np.log(n), np.log(t), 1)).",
    }, {
        "linear axes": float(np.polyfit(n, t, 1)[0]),
        "log10 n, ln t": slope * math.log(10),
        "ln n, log10 t": slope / math.log(10),
        "intercept": float(np.polyfit(np.log(n), np.log(t), 1)[1]),
        "swapped": float(np.polyfit(np.log(t), np.log(n), 1)[0]),
        "semilog": float(np.polyfit(n, np.log(t), 1)[0]),
        "two points": float(np.log(t[-1] / t[0]) / np.log(n[-1] / n[0])),
    }


def check_fit_power_law(fit: Callable) -> CheckResult:
    """Check ``fit(lengths, times) -> p``, the exponent of times ~ c * lengths^p on log-log axes."""
    task = "fit_power_law"

    def body() -> str:
        g = torch.Generator().manual_seed(909)
        cases = _power_laws(g)
        for n, t, p in cases:
            where = f"for times ~ n^{p:g} at n = {[int(v) for v in n]}"
            got = _number(task, call(task, fit, n.copy(), t.copy()), f"the exponent {where}")
            expected = fit_exponent(n, t)
            if abs(got - expected) <= 1e-6 * max(1.0, abs(expected)):
                continue
            messages, values = _exponent_mistakes(n, t)
            for name, value in values.items():
                if abs(got - value) <= 1e-6 * max(1.0, abs(value)):
                    raise CheckFailed(f"{task}: {where}: {messages[name]}")
            raise CheckFailed(f"{task}: {where}: got {got:.4g}, expected {expected:.4g} (the least-squares "
                              "slope of log(t) against log(n)).")
        return f"{len(cases)} noisy power laws with exponents 1, 2, 0.5 and 1.5"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: bytes

_BYTES_CASES = ((3, 5, 7, torch.float32), (2, 4, 16, torch.float16), (1, 8, 10, torch.float64),
                (4, 2, 9, torch.bfloat16), (2, 3, 1, torch.float32))


def _bytes_mistakes(batch: int, heads: int, n: int, dtype: torch.dtype) -> list[tuple[int, str]]:
    size = torch.finfo(dtype).bits // 8
    return [
        (heads * n * n * size, "the batch dimension is missing: the weights have shape (B, H, n, n), "
                               "one (n, n) matrix per sequence and per head."),
        (batch * n * n * size, "the heads are missing: each of the H heads has its own (n, n) weights, "
                               "shape (B, H, n, n)."),
        (batch * heads * n * size, "the length counts once: each of the n queries has a weight for each "
                                   "of the n keys, n * n per head."),
        (batch * heads * n * n, "that is the number of elements; multiply by the bytes per element "
                                "(torch.finfo(dtype).bits // 8)."),
        (batch * heads * n * n * size * 8, "that is bits, not bytes: a byte is 8 bits."),
        (batch * heads * n * n * 8, f"{dtype} takes {size} bytes per element, not 8: use "
                                    "torch.finfo(dtype).bits // 8 (float32 is 4 bytes, float64 8)."),
        (batch * heads * n * n * 4, f"{dtype} takes {size} bytes per element, not 4: the element size "
                                    "depends on the dtype, torch.finfo(dtype).bits // 8."),
    ]


def check_attention_weight_bytes(fn: Callable) -> CheckResult:
    """Check ``fn(batch, n_heads, n, dtype) -> bytes`` of a layer's (B, H, n, n) attention weights."""
    task = "attention_weight_bytes"

    def body() -> str:
        for batch, heads, n, dtype in _BYTES_CASES:
            where = f"for batch={batch}, n_heads={heads}, n={n}, dtype={dtype}"
            got = _number(task, call(task, fn, batch, heads, n, dtype), f"the bytes {where}")
            expected = attention_weight_bytes(batch, heads, n, dtype)
            if got == expected:
                continue
            for value, message in _bytes_mistakes(batch, heads, n, dtype):
                if got == value != expected:
                    raise CheckFailed(f"{task}: {where}: got {got:g}, expected {expected}: {message}")
            raise CheckFailed(f"{task}: {where}: got {got:g}, expected {expected} = B * H * n * n * "
                              "(bytes per element).")
        return f"{len(_BYTES_CASES)} (batch, heads, n, dtype) cases in float32, float16, bfloat16 and float64"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 3: path length

# The first convolution case tells the usual mistakes apart: 7 layers, not 6 (rounded down),
# 5 (k positions per layer) or 3 (log_k n).
_PATH_CASES = (("recurrent", 1, 3), ("recurrent", 10, 3), ("attention", 1, 3), ("attention", 50, 3),
               ("convolution", 20, 4), ("convolution", 10, 3), ("convolution", 9, 3),
               ("convolution", 1, 3), ("convolution", 16, 2))


def _path_message(kind: str, n: int, k: int, got: float) -> str:
    if kind == "recurrent":
        if got == n - 1:
            return ("off by one: x_0 enters at the first step (h_0 = cell(x_0, 0)) and each further step "
                    "carries it one position on: n steps in all, as measured in notebook 09.")
        return "a recurrence moves information one position per step: from x_0 to output n-1 takes n steps."
    if kind == "attention":
        return "one attention layer connects every query with every key: 1 layer, whatever n."
    if n > 1 and got == (n - 1) // (k - 1) != math.ceil((n - 1) / (k - 1)):
        return "round up: when k - 1 does not divide n - 1, the last stretch still needs a whole layer."
    if n > 1 and got in ((n - 1) // k, math.ceil((n - 1) / k), math.ceil(n / k)):
        return ("a causal layer of kernel k sees its own position and k - 1 before it: it carries "
                "information k - 1 positions back, so ceil((n - 1) / (k - 1)) layers.")
    if got == 0:
        return "at least one layer: even output 0 needs one layer to see x_0."
    if n > 1 and got == math.ceil(math.log(n, k)):
        return ("log_k(n) is the path of a dilated convolution (dilations 1, k, k^2 ...); a plain "
                "convolution of kernel k needs ceil((n - 1) / (k - 1)) layers.")
    return (f"the path from x_0 to output n-1 through causal convolutions of kernel {k} is "
            "ceil((n - 1) / (k - 1)) layers.")


def check_path_length(fn: Callable) -> CheckResult:
    """Check ``fn(kind, n, kernel_size) -> layers`` from x_0 to output n-1 (the paper's path length)."""
    task = "path_length"

    def body() -> str:
        for kind, n, k in _PATH_CASES:
            where = f"for kind={kind!r}, n={n}" + (f", kernel_size={k}" if kind == "convolution" else "")
            got = call(task, fn, kind, n, k)
            value = _number(task, got, f"the path length {where}")
            expected = expected_path_length(kind, n, k)
            if value == expected:
                if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
                    raise CheckFailed(f"{task}: {where}: return a whole number of layers as an int, got "
                                      f"{got!r} ({type(got).__name__}); math.ceil returns an int.")
                continue
            raise CheckFailed(f"{task}: {where}: got {value:g}, expected {expected}: "
                              f"{_path_message(kind, n, k, value)}")
        return f"{len(_PATH_CASES)} cases: recurrent, attention and causal convolutions of kernel 2, 3 and 4"

    return run_check(task, body)
