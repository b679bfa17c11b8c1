"""The core of the exercise checks: compare, diagnose, report.

A check prints one short line when the answer is right, prints "not done yet" while the
task still raises ``NotImplementedError``, and otherwise raises ``CheckFailed`` with a
sentence that says what is wrong (a wrong shape, a forgotten scale, a transposed result,
rows that do not sum to one ...), not only that something is.

Every check uses its own seeded ``torch.Generator``: it never moves the notebook's global
random state, and a failure shows up the same way twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

__all__ = ["CheckFailed", "run_check", "call", "compare", "check_distribution", "fmt_shape", "CheckResult"]


class CheckFailed(AssertionError):
    """A learner's answer differs from the reference; the message says how."""


def fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class CheckResult:
    """What a check returns: true when the task is done and correct.

    It prints nothing more in a notebook (the check already printed its one line).
    """

    def __init__(self, task: str, done: bool):
        self.task, self.done = task, done

    def __bool__(self) -> bool:
        return self.done

    def __repr__(self) -> str:
        return f"CheckResult({self.task!r}, done={self.done})"

    def _ipython_display_(self) -> None:
        pass


def run_check(task: str, body: Callable[[], str]) -> CheckResult:
    """Run ``body``; print "not done yet" on ``NotImplementedError``, a tick on success.

    ``body`` returns a short description of what it tried ("4 random inputs ...").
    Returns True when the task is done and correct; ``CheckFailed`` propagates.
    """
    try:
        tried = body()
    except NotImplementedError as err:
        if os.environ.get("NBGRADER_EXECUTION"):  # nbgrader's autograder: a missing answer fails
            raise CheckFailed(f"{task}: not done (the function still raises NotImplementedError)") from err
        print(f"[ ] {task}: not done yet (replace `raise NotImplementedError` with your code)")
        return CheckResult(task, False)
    print(f"[x] {task}: correct on {tried}")
    return CheckResult(task, True)


def call(task: str, fn: Callable, *args, **kwargs):
    """Call the learner's ``fn``; an error other than NotImplementedError becomes CheckFailed."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # the learner's code may raise anything
        shapes = ", ".join(fmt_shape(a.shape) if isinstance(a, torch.Tensor) else repr(a)
                           for a in args)
        raise CheckFailed(f"{task}: your function raised {type(err).__name__}: {err} "
                          f"(called with {shapes})") from err


def compare(
    task: str, got: object, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-4,
    what: str = "the result",
) -> None:
    """Raise ``CheckFailed`` with a diagnosis unless ``got`` equals ``expected``.

    Diagnoses, in order: not a tensor, wrong shape (and whether it is the transpose),
    NaN or infinity, transposed values, off by a constant factor, then the largest error.
    """
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: {what} should be a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        hint = ""
        if got.dim() >= 2 and got.transpose(-1, -2).shape == expected.shape:
            hint = " It has the last two axes swapped: is something transposed?"
        raise CheckFailed(f"{task}: {what} has the wrong shape: got {fmt_shape(got.shape)}, "
                          f"expected {fmt_shape(expected.shape)}.{hint}")
    got = got.detach().to(expected.dtype)
    expected = expected.detach()
    if not torch.isfinite(got).all():
        bad = "NaN" if torch.isnan(got).any() else "infinity"
        raise CheckFailed(f"{task}: {what} contains {bad} where the reference is finite.")
    if torch.allclose(got, expected, atol=atol, rtol=rtol):
        return
    if (got.dim() >= 2 and got.shape[-1] == got.shape[-2]
            and torch.allclose(got.transpose(-1, -2), expected, atol=atol, rtol=rtol)):
        raise CheckFailed(f"{task}: {what} is the transpose of the expected one: "
                          "check which axis is which.")
    factor = _constant_factor(got, expected)
    if factor is not None:
        raise CheckFailed(f"{task}: {what} is the expected one times {factor:.4g}: "
                          "a missing or extra scale factor?")
    err = (got - expected).abs()
    idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
    raise CheckFailed(f"{task}: {what} differs from the reference: at index {idx} got "
                      f"{got[idx].item():.5g}, expected {expected[idx].item():.5g} "
                      f"(largest error {err.max().item():.3g}).")


def _constant_factor(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    mask = expected.abs() > 1e-6
    if mask.sum() < 2:
        return None
    ratio = got[mask] / expected[mask]
    c = ratio.median().item()
    if abs(c - 1) > 1e-3 and torch.allclose(ratio, torch.full_like(ratio, c), rtol=1e-3, atol=1e-6):
        return c
    return None


def check_distribution(task: str, got: torch.Tensor, expected: torch.Tensor, dim: int = -1) -> None:
    """Diagnose probability outputs before comparing: log-probs, wrong axis, bad sums."""
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
        got_d = got.detach().to(expected.dtype)
        if (got_d <= 0).all() and torch.allclose(got_d.exp(), expected, atol=1e-5):
            raise CheckFailed(f"{task}: you returned log-probabilities (all values <= 0, and their "
                              "exp matches): return probabilities, not their log.")
        if (got_d < -1e-6).any():
            raise CheckFailed(f"{task}: some probabilities are negative (min "
                              f"{got_d.min().item():.3g}): did you exponentiate?")
        sums = got_d.sum(dim)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            for other in range(got_d.dim()):
                if other % got_d.dim() == dim % got_d.dim() or got_d.shape[other] == 1:
                    continue
                s = got_d.sum(other)
                if torch.allclose(s, torch.ones_like(s), atol=1e-4):
                    raise CheckFailed(f"{task}: the values sum to 1 along axis {other} instead "
                                      f"of axis {dim % got_d.dim()}: did you take the softmax "
                                      "over the wrong axis?")
            raise CheckFailed(f"{task}: the values along axis {dim % got_d.dim()} should sum to "
                              f"1, but they sum to between {sums.min().item():.4g} and "
                              f"{sums.max().item():.4g}.")
    compare(task, got, expected)
