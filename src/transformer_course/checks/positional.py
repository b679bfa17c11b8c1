"""Checks for the exercises of notebook 06_positional_encoding.

The sinusoidal table, adding positions to token embeddings (refusing sequences longer than
the table), and the dot products of encodings by offset.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..positional import offset_dot_products, sinusoidal_encoding
from ._core import CheckFailed, call, compare, fmt_shape, run_check

__all__ = ["check_sinusoidal_encoding", "check_add_positions", "check_offset_dot_products"]


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


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-4))


def _add_positions_mistakes(x: torch.Tensor, pe: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """What ``add_positions(x, pe)`` returns under the usual mistakes, each with what to say."""
    B, T, _ = x.shape
    found = [
        (x + pe[-T:], f"you added the last {T} rows of the table (pe[-T:]); position t gets row t: "
                      "add pe[:T] with T = x.shape[1]."),
        (x * pe[:T], "you multiplied the token vectors by the positions; the positions are added: "
                     "x + pe[:T]."),
        (pe[:T].expand_as(x), "you returned the positions alone; add them to the token vectors x."),
        (x, "you returned x unchanged; add the first T rows of the table to it."),
        (x + pe[0], "you added row 0 of the table to every position: did you slice with the batch "
                    "size x.shape[0] instead of the length x.shape[1]?"),
    ]
    if T + 1 <= pe.shape[0]:
        found.append((x + pe[1: T + 1], "you added rows 1..T of the table (positions counted from 1);"
                                        " positions start at 0: pe[:T]."))
    return found


def _call_add_positions(task: str, fn: Callable, x: torch.Tensor, pe: torch.Tensor):
    """Call the learner's function; a ValueError on a sequence that fits is a specific mistake."""
    try:
        return fn(x, pe)
    except ValueError as err:
        raise CheckFailed(f"{task}: your function raised ValueError for x {fmt_shape(x.shape)} and a "
                          f"table of {pe.shape[0]} positions, but T = {x.shape[1]} fits (T <= max_len "
                          f"is fine; refuse only T > max_len): {err}") from err
    except NotImplementedError:
        raise
    except Exception:
        return call(task, fn, x, pe)  # reports the error in words


def _check_refuses_too_long(task: str, fn: Callable, g: torch.Generator) -> None:
    max_len, D = 6, 8
    pe = torch.randn(max_len, D, generator=g)
    x = torch.randn(2, max_len + 1, D, generator=g)
    where = f"x of shape {fmt_shape(x.shape)} (T = {max_len + 1}) and a table of max_len = {max_len} rows"
    try:
        fn(x, pe)
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as err:
        raise CheckFailed(f"{task}: for {where} your function raised {type(err).__name__} ({err}); "
                          "check the length first and raise a ValueError that says the sequence is "
                          "longer than max_len.") from err
    raise CheckFailed(f"{task}: for {where} your function returned a result; a sequence longer than "
                      "the table has positions without an encoding: raise a ValueError.")


def check_add_positions(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(x, pe) -> x + pe[:T]`` for x (B, T, D), pe (max_len, D); ValueError if T > max_len."""
    task = "add_positions"

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        cases = [(1, 7, 4, 12), (2, 5, 8, 10), (3, 10, 16, 10), (4, 1, 6, 3)]  # B, T, D, max_len
        for B, T, D, max_len in cases:
            x = torch.randn(B, T, D, generator=g)
            pe = torch.randn(max_len, D, generator=g)  # random rows: a wrong slice shows
            x_before, pe_before = x.clone(), pe.clone()
            got = _call_add_positions(task, fn, x, pe)
            if not (torch.equal(x, x_before) and torch.equal(pe, pe_before)):
                raise CheckFailed(f"{task}: your function changed its input in place (x += ...); "
                                  "return a new tensor, x + pe[:T], and leave x and pe alone.")
            ref = x + pe[:T]  # (B, T, D)
            where = f"for x {fmt_shape(x.shape)} and a table of {max_len} positions"
            if isinstance(got, torch.Tensor) and not _close(got.detach(), ref):
                for wrong, message in _add_positions_mistakes(x, pe):
                    if _close(got.detach(), wrong):
                        raise CheckFailed(f"{task}: {where} {message}")
            compare(task, got, ref, what=f"the result {where}")
        _check_refuses_too_long(task, fn, g)
        return f"{len(cases)} random batches (T from 1 to max_len) and a too-long sequence"

    return run_check(task, body)


def _offset_mistakes(pe: torch.Tensor, offset: int, got: torch.Tensor) -> str | None:
    """What to say when ``got`` is what a usual mistake gives for ``offset_dot_products(pe, offset)``."""
    L, D = pe.shape
    n = L - offset
    ref = offset_dot_products(pe, offset)
    if got.shape == (0,) and offset == 0:
        return ("for offset 0 you returned no values: pe[:-0] is pe[:0], which is empty. Slice with "
                "pe[:len(pe) - offset] (or pe[:L - offset]).")
    if got.shape == (n, D):
        return (f"you returned one product per dimension, shape {fmt_shape(got.shape)}; a dot product "
                "sums them: .sum(-1) over the last axis.")
    if got.shape == (L, L):
        return (f"you returned all the dot products PE PE^T, shape {fmt_shape(got.shape)}; keep the "
                "ones at the given offset: the diagonal torch.diagonal(gram, offset).")
    if got.shape != ref.shape and got.numel() == 1:
        return (f"you returned one number; expected one dot product per starting position p, "
                f"{n} of them (shape ({n},)).")
    if offset > 0 and got.shape == (L,):
        return (f"you returned {L} values for offset {offset}: only {n} pairs (p, p + offset) fit in "
                f"{L} positions (torch.roll wraps the last rows around to the start).")
    if got.shape != ref.shape:
        return None
    rows = pe[:n]
    candidates = [
        (ref / D, "you averaged over the dimensions; a dot product sums them."),
        (ref / (rows.norm(dim=-1) * pe[offset:].norm(dim=-1)),
         "you normalised the vectors (cosine similarity); return the plain dot product."),
        ((rows * rows).sum(-1), "you took the dot product of each row with itself; pair row p with "
                                "row p + offset."),
    ]
    for wrong, message in candidates:
        if _close(got, wrong) and not _close(wrong, ref):
            return message
    return None


def check_offset_dot_products(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(pe, offset) -> (max_len - offset,)``: PE[p] . PE[p + offset] for every p."""
    task = "offset_dot_products"

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        tables = [torch.randn(10, 8, generator=g), torch.randn(6, 4, generator=g),
                  sinusoidal_encoding(16, 8)]
        tried = 0
        for pe in tables:
            L = pe.shape[0]
            for offset in sorted({0, 1, 3, L - 1}):
                where = f"for a table {fmt_shape(pe.shape)} and offset {offset}"
                try:
                    got = call(task, fn, pe.clone(), offset)
                except CheckFailed as err:
                    if offset == 0:  # pe[:-0] is pe[:0], empty: the products no longer broadcast
                        raise CheckFailed(f"{err} Hint: for offset 0, pe[:-offset] is pe[:-0] = "
                                          "pe[:0], which is empty; slice with pe[:len(pe) - offset]."
                                          ) from err
                    raise
                if isinstance(got, torch.Tensor):
                    message = _offset_mistakes(pe, offset, got.detach())
                    if message is not None:
                        raise CheckFailed(f"{task}: {where} {message}")
                compare(task, got, offset_dot_products(pe, offset), atol=1e-4,
                        what=f"the dot products {where}")
                tried += 1
        return f"{tried} (table, offset) pairs, offsets 0 to max_len - 1"

    return run_check(task, body)
