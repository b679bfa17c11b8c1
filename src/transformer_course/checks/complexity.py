"""Checks for solutions/09_why_transformers_won: predict how attention's memory grows, then measure it.

Both tasks are about the peak memory of one layer's forward pass, counted exactly on the CPU
by ``measure.peak_memory``, so a right answer never fails on noise. At small n the layer's
(n, d_model) activations dominate it and it grows like n; at large n the (n, n) scores and
weights of every head dominate it and it grows like n^2.

Shapes: n sequence length, D d_model, H heads; a layer maps x (1, n, D) to (1, n, D).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..attention import MultiHeadAttention
from ..measure import AllocationTracker, fit_exponent, peak_memory
from ._core import CheckFailed, CheckResult, as_float, call, run_check, unpack

__all__ = ["check_predict_memory_growth", "check_memory_growth"]

GIB = 2**30  # bytes in a GiB
FAR = 32768  # the length the measurement task extrapolates to
PREDICTION_TOLERANCE = 0.10  # the large-n factor is right within 10% of the measured one
# The small-n factor: the lesson is "about 2 (the (n, d_model) tensors dominate), not 4". How many
# tensors of each kind are alive at the peak is not taught, so any careful count in this range is
# right (four (n, d_model) tensors beside the scores and weights give 2.4; the check measures 2.15).
SMALL_RANGE = (1.8, 2.7)
EXPONENT_TOLERANCE = 0.1  # a fitted exponent is right within 0.1 of the check's fit of the regime
CONCLUSION_TOLERANCE = 0.05  # the GiB at n = FAR: within 5% of the learner's own extrapolation
REGIME = 4  # the check's large-n regime: n >= REGIME * d_model, where the (n, n) weights dominate


class _SelfAttention(nn.Module):
    """The course's seeded MultiHeadAttention as self-attention, x (1, n, D) -> (1, n, D)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # nn.Linear draws its initial weights globally
            torch.manual_seed(0)
            self.layer = MultiHeadAttention(d_model, n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x, x, x)[0]


def _attention(d_model: int, n_heads: int) -> nn.Module:
    return _SelfAttention(d_model, n_heads)


class _Watched(nn.Module):
    """The layer the learner gets: it notes, at each call, whether autograd was on."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.grad_on: list[bool] = []  # one entry per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_on.append(torch.is_grad_enabled())
        return self.layer(x)


def _feed_forward(d_model: int) -> nn.Module:
    """A position-wise feed-forward layer, (1, n, D) -> (1, n, D): its memory grows like n."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model))


def _peaks(forward: Callable[[torch.Tensor], torch.Tensor], d_model: int,
           lengths: Sequence[int]) -> list[int]:
    """The check's measurement: peak bytes of forward(x), x (1, n, D) made before it, at each n."""
    peaks = []
    for n in lengths:
        x = torch.zeros(1, n, d_model)  # (1, n, D): allocated before, so not counted
        peaks.append(peak_memory(lambda x=x: forward(x), "cpu"))
    return peaks


# ----------------------------------------------------------------------------- task 1: predict

_PREDICTED = ((8, 16), (1024, 2048))  # the two doublings the learner predicts, d_model 64, 4 heads


@functools.cache  # exact and deterministic: measured once per session
def _measured_factors() -> tuple[float, float]:
    forward = _attention(64, 4)
    (a, b), (c, d) = _PREDICTED
    peaks = dict(zip((a, b, c, d), _peaks(forward, 64, (a, b, c, d)), strict=True))
    return peaks[b] / peaks[a], peaks[d] / peaks[c]


def _with_grad(forward: Callable[[torch.Tensor], torch.Tensor], d_model: int,
               lengths: Sequence[int]) -> list[int]:
    """Peak bytes of forward(x) with autograd on, as a measurement without torch.no_grad gets them."""
    peaks = []
    for n in lengths:
        x = torch.zeros(1, n, d_model)  # (1, n, D)
        with torch.enable_grad(), AllocationTracker() as tracker:
            result = forward(x)
            del result
        peaks.append(tracker.peak)
    return peaks


def _near(got: float, value: float) -> bool:
    return abs(got - value) <= PREDICTION_TOLERANCE * abs(value)


def _small_right(got: float) -> bool:
    return SMALL_RANGE[0] <= got <= SMALL_RANGE[1]


def check_predict_memory_growth(fn: Callable[[], tuple]) -> CheckResult:
    """Check ``fn() -> (small, large)``: the factors by which attention's peak memory grows when n doubles."""
    task = "predict_memory_growth"

    def body() -> str:
        got = call(task, fn)
        if isinstance(got, np.ndarray) and got.ndim == 1:  # an array of the two numbers will do
            got = got.tolist()
        got = unpack(task, got, ("small", "large"))
        small, large = (as_float(task, value, f"the factor `{name}`")
                        for value, name in zip(got, ("small", "large"), strict=True))
        m_small, m_large = _measured_factors()
        if _small_right(small) and _near(large, m_large):
            return (f"n 8 -> 16: measured x{m_small:.2f} (any prediction from x{SMALL_RANGE[0]:g} to "
                    f"x{SMALL_RANGE[1]:g} is right: about 2, not 4); n 1024 -> 2048: measured x{m_large:.2f} "
                    f"(right within {PREDICTION_TOLERANCE:.0%})")
        if math.isclose(small, 1.0, abs_tol=0.15) and math.isclose(large, 2.0, abs_tol=0.15):
            raise CheckFailed(f"{task}: you answered with exponents (1 and 2); the question asks for "
                              "factors: doubling n multiplies n^p by 2^p.")
        if not _small_right(small):
            why = {4: "the (n, n) weights are still tiny at n = 8 (n is far below d_model = 64): the "
                      "(n, d_model) activations of the projections dominate, and they grow like n.",
                   8: "x8 would be n^3; and at n = 8 the (n, n) weights are still tiny: the (n, d_model) "
                      "activations dominate, and they grow like n."}
            hint = next((text for value, text in why.items() if _near(small, value)),
                        "which tensors take most of the memory at n = 8, with d_model = 64?")
            raise CheckFailed(f"{task}: from n = 8 to 16 you predicted x{small:g}; the check measured "
                              f"x{m_small:.2f} (right: x{SMALL_RANGE[0]:g} to x{SMALL_RANGE[1]:g}): {hint}")
        why = {2: "at n = 1024 the (n, n) scores and weights of the 4 heads dwarf the (n, d_model) "
                  "activations, and they grow like n^2.",
               8: "x8 would be n^3: one weight per (query, key) pair is n^2, so x4 when n doubles."}
        hint = next((text for value, text in why.items() if _near(large, value)),
                    "which tensors take most of the memory at n = 1024, with d_model = 64?")
        raise CheckFailed(f"{task}: from n = 1024 to 2048 you predicted x{large:g}; the check measured "
                          f"x{m_large:.2f}: {hint}")

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: measure

def _numbers(task: str, got: object, n: int, what: str) -> list[float]:
    """Any list, tuple, array or 1-D tensor of ``n`` numbers, as floats."""
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().tolist()
    elif isinstance(got, np.ndarray):
        got = got.tolist()
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{task}: {what} should be a list of {n} numbers, one per length, got "
                          f"{type(got).__name__}.")
    for v in got:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            hint = " (use .item() on a tensor)" if isinstance(v, torch.Tensor) else ""
            raise CheckFailed(f"{task}: {what} should hold numbers, one per length, got a "
                              f"{type(v).__name__}{hint}.")
    if len(got) != n:
        raise CheckFailed(f"{task}: {what} should hold {n} numbers, one per length, got {len(got)}.")
    return [float(v) for v in got]


def _diagnose_peaks(task: str, where: str, got: list[float], ref: list[int], lengths: Sequence[int],
                    d_model: int, layer: _Watched) -> None:
    """Name the mistake in the learner's peaks; ``layer.grad_on`` says how its calls of forward ran."""
    if got == ref:
        return
    i = next(i for i, (a, b) in enumerate(zip(got, ref, strict=True)) if a != b)
    n = lengths[i]
    at = f"{where} at n = {n} you measured {got[i]:g}, the check {ref[i]} bytes"
    x_inside = all(a == b + 4 * m * d_model for a, b, m in zip(got, ref, lengths, strict=True))
    # autograd keeps the tensors a backward pass needs: for attention, as many bytes as x has
    grad = any(layer.grad_on) and got == _with_grad(layer.layer, d_model, lengths)
    if grad and x_inside and not all(layer.grad_on):  # both read alike: some calls ran without autograd
        raise CheckFailed(f"{task}: {at}: yours are larger by 4 * n * d_model bytes at every n, the bytes of "
                          "x. Either x was made inside the measurement (make it before, and measure only "
                          "the call forward(x)), or forward ran with autograd on (measure under "
                          "torch.no_grad(), as measure.peak_memory does).")
    if grad:
        raise CheckFailed(f"{task}: {at}: your calls of forward ran with autograd on, which keeps alive the "
                          "tensors a backward pass would need. Measure under torch.no_grad(), as "
                          "measure.peak_memory(lambda: forward(x)) does.")
    if x_inside:
        raise CheckFailed(f"{task}: {at}: yours are larger by 4 * n * d_model bytes at every n, the size "
                          "of x or of one more (n, d_model) tensor: make x before measuring, and measure "
                          "only the single call forward(x).")
    for scale, unit in ((2**20, "MiB"), (1e6, "MB"), (GIB, "GiB"), (1e9, "GB"), (1 / 8, "bits")):
        if all(math.isclose(a * scale, b, rel_tol=1e-6) for a, b in zip(got, ref, strict=True)):
            raise CheckFailed(f"{task}: {at}: you returned {unit}; return the peaks in bytes, as "
                              "measure.peak_memory gives them.")
    if all(math.isclose(a, 2 * b, rel_tol=0.15) for a, b in zip(got, ref, strict=True)):
        raise CheckFailed(f"{task}: {at}: about twice the check's at every n, as for a batch of 2: measure "
                          "one sequence, x of shape (1, n, d_model).")
    if got == sorted(ref) and list(lengths) != sorted(lengths):
        raise CheckFailed(f"{task}: {at}: you returned the peaks in increasing order, but the lengths are "
                          "not sorted here: return them in the order of `lengths`, peaks[i] measured at "
                          "lengths[i].")
    if sorted(got) == sorted(ref):
        raise CheckFailed(f"{task}: {at}: the right numbers in the wrong order; keep the order of `lengths`.")
    raise CheckFailed(f"{task}: {at}. Measure with measure.peak_memory(lambda: forward(x)), with x of "
                      "shape (1, n, d_model) made before it (the values of x do not matter).")


def _exponent_mistakes(lengths: Sequence[int], peaks: Sequence[int], d_model: int) -> list[tuple[float, str]]:
    n, p = np.asarray(lengths, dtype=float), np.asarray(peaks, dtype=float)
    regime = n >= REGIME * d_model
    slope = fit_exponent(n[regime], p[regime])
    return [
        (fit_exponent(n, p), "you fitted through all the lengths, across both regimes: the small-n points, "
                             "where the (n, d_model) activations dominate, bend the line. Fit only the "
                             f"large-n ones (the check uses n >= {REGIME} * d_model)."),
        (slope * math.log(10), "the logarithms have different bases (log10 of n, the natural log of the "
                               "peaks): the slope is off by ln(10). Use the same log on both axes."),
        (slope / math.log(10), "the logarithms have different bases (the natural log of n, log10 of the "
                               "peaks): the slope is off by 1 / ln(10). Use the same log on both axes."),
        (1 / slope, "you fitted log(n) against log(peak), which gives 1 / p: the exponent is the slope of "
                    "log(peak) (vertical) against log(n) (horizontal)."),
        (float(np.polyfit(n[regime], p[regime], 1)[0]), "you fitted a line to the raw numbers: its slope is "
                                                        "bytes per position, not an exponent. Fit on "
                                                        "log-log axes."),
    ]


def _check_exponent(task: str, where: str, got: float, lengths: Sequence[int], peaks: Sequence[int],
                    d_model: int) -> None:
    n, p = np.asarray(lengths, dtype=float), np.asarray(peaks, dtype=float)
    regime = n >= REGIME * d_model
    truth = fit_exponent(n[regime], p[regime])
    if abs(got - truth) <= EXPONENT_TOLERANCE:
        return
    for value, why in _exponent_mistakes(lengths, peaks, d_model):
        if math.isclose(got, value, rel_tol=1e-3, abs_tol=1e-3) and abs(value - truth) > EXPONENT_TOLERANCE:
            raise CheckFailed(f"{task}: {where} your exponent is {got:.3f}: {why}")
    hint = ""
    if math.isclose(got, 2.0) or math.isclose(got, 1.0):
        hint = " Did you write down the exponent you expected, instead of fitting your numbers?"
    raise CheckFailed(f"{task}: {where} your exponent is {got:.3f}; the least-squares slope of log(peak) "
                      f"against log(n) over the large-n lengths (n >= {REGIME} * d_model) is {truth:.3f} "
                      f"(right means within {EXPONENT_TOLERANCE}).{hint}")


def _check_conclusion(task: str, where: str, got: float, exponent: float, lengths: Sequence[int],
                      peaks: Sequence[int]) -> None:
    """The GiB at n = FAR, extrapolated from the largest length with the learner's own exponent."""
    largest = max(range(len(lengths)), key=lengths.__getitem__)
    smallest = min(range(len(lengths)), key=lengths.__getitem__)
    last, n_last = peaks[largest], lengths[largest]
    expected = last * (FAR / n_last) ** exponent / GIB
    if math.isclose(got, expected, rel_tol=CONCLUSION_TOLERANCE):
        return
    wrong = [(last * (FAR / n_last) ** exponent, "that is bytes; return GiB, bytes / 2**30."),
             (last * (FAR / n_last) ** exponent / 1e9, "that is GB (10^9 bytes); return GiB, bytes / 2**30."),
             (last * (FAR / n_last) ** 2 / GIB, "you extrapolated with the exponent 2; use your fitted "
                                               "exponent, the conclusion of your own measurement."),
             (peaks[smallest] * (FAR / lengths[smallest]) ** exponent / GIB,
              "you extrapolated from the smallest length, outside the regime you fitted; extrapolate from "
              "the largest one."),
             (last * FAR / n_last * exponent / GIB, "you multiplied by exponent * (32768 / n); the power "
                                                    "law scales by (32768 / n) ** exponent.")]
    if largest != len(lengths) - 1:
        wrong.append((peaks[-1] * (FAR / lengths[-1]) ** exponent / GIB,
                      f"you extrapolated from the last length, n = {lengths[-1]}, but the lengths are not "
                      f"sorted here: extrapolate from the largest one, n = {n_last} (max(lengths)), in the "
                      "regime you fitted."))
    for value, why in wrong:
        if math.isclose(got, value, rel_tol=CONCLUSION_TOLERANCE):
            raise CheckFailed(f"{task}: {where} you concluded {got:.4g} GiB at n = {FAR}: {why}")
    raise CheckFailed(f"{task}: {where} you concluded {got:.4g} GiB at n = {FAR}; your own numbers give "
                      f"{expected:.4g}: peak at n = {n_last} times (32768 / {n_last}) ** exponent, in GiB "
                      f"(right means within {CONCLUSION_TOLERANCE:.0%}).")


def _measure_cases() -> list[tuple[str, nn.Module, int, list[int]]]:
    doubling = [8 * 2**i for i in range(9)]  # 8 ... 2048
    shuffled = [512, 2048, 16, 128, 1024, 32, 256, 64]  # 16 ... 2048, unsorted: the last is not the largest
    return [("self-attention (d_model 64, 4 heads)", _attention(64, 4), 64, doubling),
            ("a feed-forward layer (d_model 64)", _feed_forward(64), 64, doubling),
            ("self-attention (d_model 32, 2 heads)", _attention(32, 2), 32, shuffled)]


@functools.cache  # exact and deterministic: measured once per session
def _reference_peaks(case: int) -> list[int]:
    _, forward, d_model, lengths = _measure_cases()[case]
    return _peaks(forward, d_model, lengths)


def check_memory_growth(fn: Callable) -> CheckResult:
    """Check ``fn(forward, d_model, lengths) -> (peaks, exponent, gib)``: measured, fitted, concluded."""
    task = "memory_growth"

    def body() -> str:
        cases = _measure_cases()
        for case, (name, forward, d_model, lengths) in enumerate(cases):
            span = (f"lengths {lengths[0]} to {lengths[-1]}" if lengths == sorted(lengths) else
                    f"lengths {lengths} (in this order)")
            where = f"for {name}, {span}:"
            layer = _Watched(forward)
            got = call(task, fn, layer, d_model, list(lengths))
            peaks, exponent, gib = unpack(task, got, ("peaks", "exponent", "gib"))
            peaks = _numbers(task, peaks, len(lengths), f"{where} peaks")
            ref = _reference_peaks(case)
            _diagnose_peaks(task, where, peaks, ref, lengths, d_model, layer)
            exponent = as_float(task, exponent, "the exponent")
            _check_exponent(task, where, exponent, lengths, ref, d_model)
            gib = as_float(task, gib, "the GiB at n = 32768")
            _check_conclusion(task, where, gib, exponent, lengths, ref)
        return (f"{len(cases)} layers (attention: exponent near 2 at large n; feed-forward: 1; lengths "
                "sorted and not), the peaks "
                f"exact, the exponent within {EXPONENT_TOLERANCE}, the GiB at n = {FAR} within "
                f"{CONCLUSION_TOLERANCE:.0%} of your fit's extrapolation")

    return run_check(task, body)
