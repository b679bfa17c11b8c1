"""The checks of solutions/09: right answers written differently pass, the usual mistakes are named."""

import contextlib
import math

import numpy as np
import pytest
import torch

from transformer_course import checks, measure
from transformer_course.checks import CheckFailed

# ----------------------------------------------------------------------------- task 1: predict


# An open case, decided: a 1-D numpy array of the two factors is accepted like a list (the task
# asks for "the two factors, as numbers"; an array of two numbers is that). A tensor is not: its
# numbers would need .item() (see "tensors" below).
PREDICT_RIGHT = {
    "a tuple of ints": lambda: (2, 4),
    "a list of floats": lambda: [2.0, 4.0],
    "close enough": lambda: (2.1, 3.9),
    "a careful count: four (n, d) tensors beside scores and weights": lambda: (2.4, 4.0),
    "the low end of the small range": lambda: (1.8, 4.0),
    "the high end of the small range": lambda: (2.7, 4.0),
    "a numpy array of the two": lambda: np.array([2.0, 4.0]),
    "numpy floats": lambda: (np.float64(2.0), np.float32(4.0)),
}

PREDICT_MISTAKES = {
    "n^2 everywhere": (lambda: (4, 4), "from n = 8 to 16 .* still tiny at n = 8"),
    "n everywhere": (lambda: (2, 2), "from n = 1024 to 2048 .* dwarf the \\(n, d_model\\) activations"),
    "exponents": (lambda: (1, 2), "you answered with exponents"),
    "cubic at large n": (lambda: (2, 8), "x8 would be n\\^3: one weight per \\(query, key\\) pair"),
    "cubic at small n": (lambda: (8, 4), "from n = 8 to 16 .* x8 would be n\\^3"),
    "a guess": (lambda: (3, 4), "which tensors take most of the memory at n = 8"),
    "below the small range": (lambda: (1.5, 4), "right: x1.8 to x2.7\\): which tensors"),
    "one number": (lambda: 4, "return 2 values \\(small, large\\)"),
    "a numpy array of three": (lambda: np.array([2.0, 4.0, 8.0]), "return 2 values \\(small, large\\)"),
    "tensors": (lambda: (torch.tensor(2.0), torch.tensor(4.0)), "use .item\\(\\)"),
    "strings": (lambda: ("2", "4"), "should be a Python float, got str"),
}


@pytest.mark.parametrize("name", PREDICT_RIGHT)
def test_predict_check_accepts_right_answers(name, capsys):
    assert checks.check_predict_memory_growth(PREDICT_RIGHT[name])
    assert "[x] predict_memory_growth" in capsys.readouterr().out


@pytest.mark.parametrize("name", PREDICT_MISTAKES)
def test_predict_check_names_the_mistake(name):
    fn, message = PREDICT_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_predict_memory_growth(fn)


# ----------------------------------------------------------------------------- task 2: measure


def measured(forward, d_model, lengths, *, inside=False, batch=1):
    peaks = []
    for n in lengths:
        if inside:  # x made inside the measured call: its bytes count too
            peaks.append(measure.peak_memory(lambda n=n: forward(torch.zeros(batch, n, d_model))))
            continue
        x = torch.zeros(batch, n, d_model)
        peaks.append(measure.peak_memory(lambda x=x: forward(x)))
    return peaks


def growth(*, regime="4d", fit="ln", conclude="largest", unit=2**30, peaks_as=list, inside=False, batch=1,
           exponent_as=float):
    """A learner's memory_growth: the defaults give the right answer, each option a mistake or a variant."""
    def memory_growth(forward, d_model, lengths):
        peaks = measured(forward, d_model, lengths, inside=inside, batch=batch)
        by_length = sorted(range(len(lengths)), key=lengths.__getitem__)  # the lengths need not be sorted
        pick = {"4d": [i for i, n in enumerate(lengths) if n >= 4 * d_model],
                "largest 4": by_length[-4:], "all": list(range(len(lengths)))}[regime]
        n = np.array([lengths[i] for i in pick], dtype=float)
        p = np.array([peaks[i] for i in pick], dtype=float)
        slope = {"ln": lambda: np.polyfit(np.log(n), np.log(p), 1)[0],
                 "log10": lambda: np.polyfit(np.log10(n), np.log10(p), 1)[0],
                 "log10 n, ln p": lambda: np.polyfit(np.log10(n), np.log(p), 1)[0],
                 "ln n, log10 p": lambda: np.polyfit(np.log(n), np.log10(p), 1)[0],
                 "swapped": lambda: np.polyfit(np.log(p), np.log(n), 1)[0],
                 "raw": lambda: np.polyfit(n, p, 1)[0],
                 "two": lambda: 2.0,
                 "package": lambda: measure.fit_exponent(n, p)}[fit]()
        far, big, small = 32768, by_length[-1], by_length[0]
        with np.errstate(over="ignore"):  # a slope fitted to the raw numbers is huge
            gib = {"largest": lambda: peaks[big] * (far / lengths[big]) ** slope,
                   "last given": lambda: peaks[-1] * (far / lengths[-1]) ** slope,
                   "line": lambda: math.exp(np.polyval(np.polyfit(np.log(n), np.log(p), 1), math.log(far))),
                   "squared": lambda: peaks[big] * (far / lengths[big]) ** 2,
                   "smallest": lambda: peaks[small] * (far / lengths[small]) ** slope,
                   "times": lambda: peaks[big] * far / lengths[big] * slope}[conclude]() / unit
        return peaks_as(peaks), exponent_as(slope), gib
    return memory_growth


def measured_by_hand(forward, d_model, lengths, *, no_grad=True, warm_up_with_grad=False, inside=False):
    """AllocationTracker by hand, as measure.peak_memory does, or without torch.no_grad."""
    peaks = []
    for n in lengths:
        x = torch.zeros(1, n, d_model)
        if warm_up_with_grad:
            forward(x)
        with torch.no_grad() if no_grad else contextlib.nullcontext(), measure.AllocationTracker() as tracker:
            forward(torch.zeros(1, n, d_model) if inside else x)
        peaks.append(tracker.peak)
    return peaks


def growth_by_hand(**how):
    def memory_growth(forward, d_model, lengths):
        peaks = measured_by_hand(forward, d_model, lengths, **how)
        n, p = np.array(lengths, dtype=float), np.array(peaks, dtype=float)
        big = n >= 4 * d_model
        slope = float(np.polyfit(np.log(n[big]), np.log(p[big]), 1)[0])
        return peaks, slope, float(p[n.argmax()] * (32768 / n.max()) ** slope / 2**30)
    return memory_growth


def growth_sorted_first(forward, d_model, lengths):
    """The lengths sorted first, measured in that order, the peaks put back in the order of lengths."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    by_n = dict(zip((lengths[i] for i in order), measured(forward, d_model, [lengths[i] for i in order]),
                    strict=True))
    peaks = [by_n[n] for n in lengths]
    big = [n for n in sorted(lengths) if n >= 4 * d_model]
    slope = measure.fit_exponent(big, [by_n[n] for n in big])
    return tuple(peaks), slope, by_n[big[-1]] * (32768 / big[-1]) ** slope / 2**30


def growth_sorted_peaks(forward, d_model, lengths):
    """The peaks returned in increasing order (the lengths sorted, and left so)."""
    ns = sorted(lengths)
    return growth()(forward, d_model, ns)


def growth_two_point(forward, d_model, lengths):
    """A loop, a two-point slope between the two largest lengths, peaks as a tensor, a list returned."""
    peaks = torch.tensor(measured(forward, d_model, lengths))
    a, b = np.argsort(lengths)[-2:]  # the second largest, the largest
    slope = math.log2(peaks[b] / peaks[a]) / math.log2(lengths[b] / lengths[a])
    return [peaks, slope, peaks[b].item() * (32768 / lengths[b]) ** slope / 2**30]


MEASURE_RIGHT = {
    "the solution": growth(),
    "log10 on both axes, the 4 largest lengths, a numpy array": growth(fit="log10", regime="largest 4",
                                                                       peaks_as=np.array),
    "the package's fit, extrapolated along the fitted line": growth(fit="package", conclude="line"),
    "a tensor of peaks, a two-point slope": growth_two_point,
    "exponent as a numpy float": growth(exponent_as=np.float64),
    "AllocationTracker by hand under torch.no_grad": growth_by_hand(),
    "a warm-up call with autograd, then measured under torch.no_grad": growth_by_hand(warm_up_with_grad=True),
    "the lengths sorted first, the peaks put back in their order": growth_sorted_first,
}

MEASURE_MISTAKES = {
    "fitted across both regimes": (growth(regime="all"), "through all the lengths, across both regimes"),
    "log10 of n, ln of the peaks": (growth(fit="log10 n, ln p"), "different bases .* off by ln\\(10\\)"),
    "ln of n, log10 of the peaks": (growth(fit="ln n, log10 p"), "different bases .* off by 1 / ln\\(10\\)"),
    "axes swapped": (growth(fit="swapped"), "gives 1 / p"),
    "raw numbers": (growth(fit="raw"), "fitted a line to the raw numbers"),
    "the expected exponent": (growth(fit="two"), "feed-forward .* exponent is 2.000.* Did you write down"),
    "x made inside": (growth(inside=True),
                      "larger by 4 \\* n \\* d_model bytes at every n, the size of x or of one more "
                      "\\(n, d_model\\) tensor: make x before measuring"),
    # autograd keeps as many bytes as x has: the check asks forward how it was called
    "no torch.no_grad": (growth_by_hand(no_grad=False), "your calls of forward ran with autograd on, .* "
                                                        "torch.no_grad\\(\\)"),
    "x inside, and a warm-up with autograd": (growth_by_hand(inside=True, warm_up_with_grad=True),
                                              "Either x was made inside the measurement .* or forward ran "
                                              "with autograd on"),
    "extrapolated from the last length given": (growth(conclude="last given"),
                                                r"lengths \[512, 2048, .*\] \(in this order\): .* from the "
                                                "last length, n = 64, .* the largest one, n = 2048"),
    "peaks sorted": (growth_sorted_peaks, r"returned the peaks in increasing order, but the lengths are not "
                                          "sorted here"),
    "MiB": (growth(peaks_as=lambda p: [v / 2**20 for v in p]),
            r"at n = 8 you measured 0\.0126953, the check 13312 bytes: you returned MiB"),
    "batch 2": (growth(batch=2), "about twice the check's at every n, as for a batch of 2"),
    "wrong order": (growth(peaks_as=lambda p: p[::-1]), "the right numbers in the wrong order"),
    "bytes, not GiB": (growth(unit=1), "that is bytes"),
    "GB, not GiB": (growth(unit=1e9), "that is GB"),
    "extrapolated with 2": (growth(conclude="squared"), "extrapolated with the exponent 2"),
    "extrapolated from the smallest length": (growth(conclude="smallest"), "from the smallest length"),
    "multiplied by the exponent": (growth(conclude="times"), "multiplied by exponent"),
    "exponent as a tensor": (growth(exponent_as=torch.tensor), "use .item\\(\\)"),
    "both coefficients": (growth(exponent_as=lambda s: np.array([s, 1.0])), "should be a Python float"),
    "peaks as 0-d tensors": (growth(peaks_as=lambda p: [torch.tensor(v) for v in p]),
                             "should hold numbers, one per length, got a Tensor \\(use .item\\(\\)"),
    "two values": (lambda f, d, n: (measured(f, d, n), 2.0), "return 3 values \\(peaks, exponent, gib\\)"),
    "crashes": (lambda f, d, n: f(torch.zeros(n[0], d)), "your function raised"),
}


@pytest.mark.parametrize("name", MEASURE_RIGHT)
def test_measure_check_accepts_right_answers(name, capsys):
    assert checks.check_memory_growth(MEASURE_RIGHT[name])
    assert "[x] memory_growth" in capsys.readouterr().out


@pytest.mark.parametrize("name", MEASURE_MISTAKES)
def test_measure_check_names_the_mistake(name):
    fn, message = MEASURE_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_memory_growth(fn)


def test_the_checks_leave_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    checks.check_predict_memory_growth(PREDICT_RIGHT["a tuple of ints"])
    checks.check_memory_growth(MEASURE_RIGHT["the solution"])
    assert torch.equal(torch.random.get_rng_state(), before)
