"""Checks for the exercises of notebook 06_positional_encoding: the sinusoidal encoding."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..positional import sinusoidal_encoding
from ._core import CheckFailed, call, compare, fmt_shape, run_check

__all__ = ["check_sinusoidal_encoding"]


def _table(max_len: int, d_model: int, col_exponent: Callable[[torch.Tensor], torch.Tensor],
           even: Callable, odd: Callable, start: int = 0) -> torch.Tensor:
    """A variant of the table: angle[pos, j] = pos / 10000^(col_exponent(j)), even/odd functions."""
    pos = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]  # (T, 1)
    j = torch.arange(d_model, dtype=torch.float64)  # (D,)
    angles = pos / 10000 ** col_exponent(j)  # (T, D)
    return torch.where(j.long() % 2 == 0, even(angles), odd(angles)).float()


def _mistakes(max_len: int, d_model: int) -> list[tuple[torch.Tensor, str]]:
    """The tables that typical mistakes produce, each with what to say about it."""
    pair = lambda j: 2 * torch.div(j, 2, rounding_mode="floor") / d_model  # noqa: E731
    half = d_model // 2
    ref = sinusoidal_encoding(max_len, d_model)
    concat = torch.cat([ref[:, 0::2], ref[:, 1::2]], dim=1)
    return [
        (_table(max_len, d_model, pair, torch.cos, torch.sin),
         "sin and cos are swapped: the even columns (0, 2, 4, ...) take sin, the odd ones cos."),
        (concat, f"all the sines come first (columns 0..{half - 1}) and then all the cosines; the "
                 "paper interleaves them: column 2i is sin and column 2i+1 is cos of the same "
                 "frequency."),
        (_table(max_len, d_model, lambda j: j / d_model, torch.sin, torch.cos),
         "column j has the frequency 1/10000^(j/d_model); the two columns of a pair (2i, 2i+1) share "
         "one frequency, 1/10000^(2i/d_model): use the even index 2i, not j."),
        (_table(max_len, d_model, lambda j: 2 * j / d_model, torch.sin, torch.cos),
         "the exponent uses 2j/d_model with j the column; the pair (2i, 2i+1) shares the exponent "
         "2i/d_model: use torch.arange(0, d_model, 2) for the even indices 2i."),
        (_table(max_len, d_model, pair, torch.sin, torch.cos, start=1),
         "the positions start at 1; they start at 0, so row 0 is [0, 1, 0, 1, ...]."),
    ]


def check_sinusoidal_encoding(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Check ``fn(max_len, d_model) -> (max_len, d_model)``: even columns sin, odd columns cos."""
    task = "sinusoidal_encoding"

    def body() -> str:
        cases = [(10, 8), (50, 16), (16, 16), (3, 64)]  # (max_len, d_model)
        for max_len, d_model in cases:
            got = call(task, fn, max_len, d_model)
            ref = sinusoidal_encoding(max_len, d_model)
            where = f"for max_len={max_len}, d_model={d_model}"
            if isinstance(got, torch.Tensor) and got.shape == ref.shape and torch.isfinite(got).all():
                g = got.detach().float()
                if not torch.allclose(g, ref, atol=1e-4):
                    for wrong, message in _mistakes(max_len, d_model):
                        if wrong.shape == g.shape and torch.allclose(g, wrong, atol=1e-4):
                            raise CheckFailed(f"{task}: {where} {message}")
            compare(task, got, ref, atol=1e-4, what=f"the table {where} (rows = positions)")
        shapes = ", ".join(fmt_shape(c) for c in cases)
        return f"tables of shape {shapes} (atol 1e-4)"

    return run_check(task, body)
