"""Checks for solutions/00_warmup: a softmax by hand, attention weights at a temperature.

Shapes: B batch, T queries, S keys, D vector size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._core import (
    SHORTCUTS,
    CheckFailed,
    CheckResult,
    call,
    check_distribution,
    close,
    compare,
    fmt_shape,
    run_check,
    unpack,
)

__all__ = ["check_softmax", "check_attention_weights"]


def _named_mistake(task: str, got: object, expected: torch.Tensor, mistakes) -> None:
    """Raise the message of the first mistake ``got`` equals; one that equals the answer is skipped."""
    for make, message in mistakes:
        try:
            wrong = make()
        except RuntimeError:  # this mistake does not even broadcast on these shapes
            continue
        if close(got, wrong) and not close(wrong, expected):
            raise CheckFailed(f"{task}: {message}")


def _softmax_mistakes(x: torch.Tensor) -> list:
    def no_keepdim():
        return torch.softmax(x - x.amax(-1), dim=-1)  # (.., S) - (..,): lines up with the wrong axis

    def whole_tensor_sum():
        e = (x - x.amax()).exp()
        return e / e.sum()

    return [
        (no_keepdim, "you subtracted x.max(dim=-1) without keepdim=True: its shape (..,) lines up with the "
                     "last axis, not with the rows, so each row got other rows' maxima. Use "
                     "x.max(dim=-1, keepdim=True).values (or x.amax(-1, keepdim=True))."),
        (whole_tensor_sum, "you divided by the sum over the whole tensor; divide each row by its own sum, "
                           "e.sum(dim=-1, keepdim=True)."),
    ]


# Large inputs, in the order that names each mistake: the same maximum in every row (exp(1000)
# overflows without a shift), rows far apart (one global maximum sends the low row to 0/0), and
# a row that spans -1000 to 1000 (its minimum or its mean is no safe shift).
_LARGE = [
    (torch.tensor([[1000.0, 999.0, 998.0], [998.0, 1000.0, 999.0]]),
     "NaN or infinity for inputs near 1000 (exp(1000) overflows to inf, and inf / inf is NaN): subtract "
     "each row's maximum before exp; the factor e^-max cancels in the ratio."),
    (torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, -999.0, -1001.0]]),
     "the row near -1000 came out NaN or all zeros when another row is near 1000: you subtracted one "
     "maximum for the whole tensor, which sends that row's exponents to about -2000, where exp gives 0 "
     "and the ratio 0 / 0; subtract each row's own maximum, x.max(dim=-1, keepdim=True)."),
    (torch.tensor([[-1000.0, 0.0, 1000.0], [5.0, 3.0, 1.0]]),
     "NaN or infinity for a row that spans -1000 to 1000: subtract each row's maximum (its largest "
     "value, so that every exponent is <= 0), not its minimum or its mean."),
]


def check_softmax(softmax: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``softmax(x)`` over the last axis, by hand: random, square, float64 and very large inputs."""
    task = "softmax"

    def body() -> str:
        g = torch.Generator().manual_seed(1234)
        shapes = [(5,), (4, 4), (3, 7), (2, 4, 6), (1, 3)]
        inputs = [torch.randn(shape, generator=g) * 3 for shape in shapes]
        inputs.append(torch.randn(2, 5, generator=g, dtype=torch.float64) * 3)  # keep float64 too
        for x in inputs:
            got = call(task, softmax, x, forbid=SHORTCUTS["softmax"])
            expected = torch.softmax(x, dim=-1)
            _named_mistake(task, got, expected, _softmax_mistakes(x))
            check_distribution(task, got, expected)
        for x, message in _LARGE:
            got = call(task, softmax, x, forbid=SHORTCUTS["softmax"])
            expected = torch.softmax(x, dim=-1)
            if isinstance(got, torch.Tensor) and got.shape == x.shape and (
                    not torch.isfinite(got).all() or (got.sum(-1) < 0.5).any()):
                raise CheckFailed(f"{task}: {message}")
            check_distribution(task, got, expected)
        return (f"random inputs {', '.join(map(fmt_shape, shapes))}, a float64 one, and "
                f"{len(_LARGE)} pairs of rows near +-1000")

    return run_check(task, body)


def _entropy_bits(w: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(w, w).sum(-1) / math.log(2)  # 0 log 0 = 0


def _weight_mistakes(q, k, temperature) -> list:
    scores = q.double() @ k.double().transpose(-2, -1)  # (B,T,D) @ (B,D,S) -> (B,T,S)
    return [
        (lambda: torch.softmax(scores, -1),
         "the weights ignore the temperature: divide the scores by it before the softmax."),
        (lambda: torch.softmax(scores * temperature, -1),
         "you multiplied the scores by the temperature; divide by it (a low temperature sharpens)."),
        (lambda: torch.softmax(scores / q.shape[-1] ** 0.5, -1),
         "you divided the scores by sqrt(D): here the temperature is the only scale."),
        (lambda: torch.softmax(scores / temperature, -2),
         "the weights sum to 1 over the queries (axis -2); each query's weights over the keys (the "
         "last axis) must sum to 1."),
        (lambda: torch.softmax(q.double() @ k.double().reshape(k.shape[0], k.shape[2], k.shape[1])
                               / temperature, -1),
         "you reshaped k from (B, S, D) to (B, D, S): reshape (and view) keep the numbers in their "
         "memory order, which mixes keys and features; swap the two axes with k.transpose(-2, -1) "
         "(or k.mT)."),
    ]


def _entropy_mistakes(w: torch.Tensor) -> list:
    entropy = _entropy_bits(w)  # (B, T)
    return [
        (lambda: entropy * math.log(2),
         "the entropy is in nats (natural log); the task asks for bits: use log2, or divide by ln 2."),
        (lambda: entropy * math.log10(2),
         "the entropy uses the base-10 logarithm; the task asks for bits: use log2."),
        (lambda: -entropy, "the entropy is negative: H = -sum p log2 p (each log2 p is <= 0)."),
        (lambda: entropy / w.shape[-1],
         "you averaged -p log2 p over the keys; the entropy is their sum."),
    ]


def _check_entropy(task: str, got: object, w: torch.Tensor, entropy: torch.Tensor, what: str) -> None:
    if isinstance(got, (int, float)) and not isinstance(got, bool) and abs(got - entropy.sum().item()) < 1e-3:
        raise CheckFailed(f"{task}: the entropy is one number, the total over every query; return one "
                          f"entropy per query, a tensor of shape {fmt_shape(entropy.shape)} (sum over "
                          "the keys only).")
    if (isinstance(got, torch.Tensor) and got.shape == entropy.shape and torch.isnan(got).any()
            and (w == 0).any()):
        raise CheckFailed(f"{task}: the entropy is NaN where some weights underflow to exactly 0 (at a "
                          "low temperature): 0 * log2(0) = 0 * (-inf) = NaN, but the term's limit is 0. "
                          "Use torch.special.xlogy(w, w), or torch.where(w > 0, ...), or the finite "
                          "log-weights of a log-sum-exp softmax.")
    if isinstance(got, torch.Tensor) and got.dim() == entropy.dim() and got.shape[:-1] == entropy.shape[:-1] \
            and got.shape != entropy.shape:
        raise CheckFailed(f"{task}: the entropy has shape {fmt_shape(got.shape)}, expected "
                          f"{fmt_shape(entropy.shape)}: one entropy per query, summed over the keys "
                          "(the last axis of the weights).")
    _named_mistake(task, got, entropy, _entropy_mistakes(w))
    compare(task, got, entropy.to(w.dtype), atol=1e-4, what=what)


def check_attention_weights(attention_weights: Callable[..., tuple]) -> CheckResult:
    """Check ``attention_weights(q, k, temperature) -> (weights (B, T, S), entropy in bits (B, T))``."""
    task = "attention_weights"

    def body() -> str:
        g = torch.Generator().manual_seed(4321)
        # ((B, T, S, D), temperature, dtype): the last case in float64, whose results stay float64
        cases = [((2, 3, 5, 4), 1.0, torch.float32), ((1, 4, 4, 8), 0.5, torch.float32),
                 ((3, 2, 6, 2), 4.0, torch.float32), ((2, 5, 7, 4), 0.01, torch.float32),
                 ((2, 3, 6, 4), 0.25, torch.float64)]
        for (B, T, S, D), temperature, dtype in cases:
            q = torch.randn(B, T, D, generator=g, dtype=dtype)
            k = torch.randn(B, S, D, generator=g, dtype=dtype)
            got = call(task, attention_weights, q, k, temperature, forbid=SHORTCUTS["softmax"])
            weights, entropy = unpack(task, got, ["weights", "entropy"])
            if (isinstance(weights, torch.Tensor) and isinstance(entropy, torch.Tensor)
                    and weights.shape == (B, T) and entropy.shape == (B, T, S)):
                raise CheckFailed(f"{task}: you returned (entropy, weights); return (weights, entropy).")
            scores = q.double() @ k.double().transpose(-2, -1)  # (B,T,D) @ (B,D,S) -> (B,T,S)
            w = torch.softmax(scores / temperature, dim=-1)  # float64: the exact reference
            _named_mistake(task, weights, w, _weight_mistakes(q, k, temperature))
            kind = "float64 " if dtype == torch.float64 else ""
            what = f"for {kind}q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)} at temperature {temperature:g}"
            if (isinstance(weights, torch.Tensor) and weights.shape == w.shape
                    and not torch.isfinite(weights).all()):
                raise CheckFailed(f"{task}: the tensor of weights {what} holds NaN or infinity: exp "
                                  "overflows, or a query whose scores all lie far below the tensor's "
                                  "maximum underflows to 0 / 0. Subtract each query's own maximum, "
                                  "scores.amax(-1, keepdim=True), before exp.")
            if not close(weights, w):  # sums, signs and axes first, then the values
                check_distribution(task, weights, w.to(dtype), what=f"the tensor of weights {what}")
            compare(task, weights, w.to(dtype), what=f"the tensor of weights {what}")
            _check_entropy(task, entropy, w.to(dtype), _entropy_bits(w), what=f"the entropy {what}")
        return (f"{len(cases)} random (q, k) with T != S and T == S, at temperatures "
                f"{', '.join(f'{t:g}' for _, t, _ in cases)}, the last in float64")

    return run_check(task, body)
