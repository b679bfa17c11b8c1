"""Checks for solutions/00_warmup: softmax and attention scores."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._core import CheckFailed, CheckResult, call, check_distribution, compare, fmt_shape, run_check

__all__ = ["check_softmax", "check_attention_scores"]


def check_softmax(softmax: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``softmax(x)`` (over the last axis) on random and on very large inputs."""
    task = "softmax"

    def body() -> str:
        g = torch.Generator().manual_seed(1234)
        shapes = [(5,), (3, 7), (2, 4, 6), (1, 3)]
        for shape in shapes:
            x = torch.randn(shape, generator=g) * 3
            check_distribution(task, call(task, softmax, x.clone()), torch.softmax(x, dim=-1))
        big = torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, 0.0, 1000.0]])
        got = call(task, softmax, big.clone())
        if isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
            raise CheckFailed(f"{task}: NaN or infinity for large inputs such as 1000 (exp(1000) "
                              "overflows): subtract each row's maximum before exp.")
        check_distribution(task, got, torch.softmax(big, dim=-1))
        return f"{len(shapes)} random inputs {', '.join(map(fmt_shape, shapes))} and large logits"

    return run_check(task, body)


def check_attention_scores(scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``scores(q, k)``: every query against every key, ``(B,T,D),(B,S,D) -> (B,T,S)``."""
    task = "attention_scores"

    def body() -> str:
        g = torch.Generator().manual_seed(4321)
        shapes = [(2, 3, 4, 4), (1, 5, 2, 8), (3, 4, 4, 2)]  # (B, T, S, D)
        for b, t, s, d in shapes:
            q, k = torch.randn(b, t, d, generator=g), torch.randn(b, s, d, generator=g)
            compare(task, call(task, scores, q.clone(), k.clone()), q @ k.transpose(-2, -1),
                    what=f"scores for q {fmt_shape(q.shape)} and k {fmt_shape(k.shape)}")
        return f"{len(shapes)} random (q, k) pairs with T != S and T == S"

    return run_check(task, body)
