"""Checks for the exercises of notebook 06_positional_encoding.

The sinusoidal table, adding positions start .. start + T - 1 to token embeddings (refusing
positions beyond the table, with a message that gives the positions and max_len), and the measurement of
the dot product by offset: its mean and its spread over the positions p.

Shapes: B batch, T sequence length, D d_model, L max_len (rows of the table).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch

from ..positional import offset_dot_products, sinusoidal_encoding
from ._core import CheckFailed, call, close, compare, fmt_shape, run_check, unpack

__all__ = ["check_sinusoidal_encoding", "check_add_positions", "check_offset_profile"]

# The course's own answers to tasks 1 and 3: switched off while the learner's function runs.
_TABLE_SHORTCUTS = ("transformer_course.positional:sinusoidal_encoding",
                    "transformer_course.positional:SinusoidalPositionalEncoding")
_DOT_SHORTCUTS = ("transformer_course.positional:offset_dot_products",)


# ----------------------------------------------------------------------------- task 1: the table

def _table(max_len: int, d_model: int, col_exponent: Callable[[torch.Tensor], torch.Tensor],
           even: Callable, odd: Callable, start: int = 0, base: float = 10000.0) -> torch.Tensor:
    """A variant of the table: angle[pos, j] = pos / base^(col_exponent(j)), even/odd functions."""
    pos = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]  # (L, 1)
    j = torch.arange(d_model, dtype=torch.float64)  # (D,)
    angles = pos / base ** col_exponent(j)  # (L, D)
    return torch.where(j.long() % 2 == 0, even(angles), odd(angles))


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
        (_table(max_len, d_model, lambda j: -pair(j), torch.sin, torch.cos),
         "the frequencies grow with the column (pos * 10000^(2i/d_model)); they fall: divide by "
         "10000^(2i/d_model), so that w_i = 10000^(-2i/d_model) goes from 1 down to about 1/10000."),
        (_table(max_len, d_model, pair, torch.sin, torch.cos, base=math.e ** 4),
         "the frequencies use e^4 instead of 10000 as the base: math.log10(10000) = 4 is not the "
         "natural log; write 10000.0 ** (-2i/d_model), or exp(-2i/d_model * math.log(10000.0))."),
        (_table(max_len, d_model, pair, torch.sin, torch.cos, start=1),
         "the positions start at 1; they start at 0, so row 0 is [0, 1, 0, 1, ...]."),
    ]


def check_sinusoidal_encoding(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Check ``fn(max_len, d_model) -> (max_len, d_model)`` float32: even columns sin, odd cos."""
    task = "sinusoidal_encoding"

    def body() -> str:
        cases = [(10, 8), (50, 16), (16, 16), (3, 64), (1, 4)]  # (max_len, d_model)
        for max_len, d_model in cases:
            got = call(task, fn, max_len, d_model, forbid=_TABLE_SHORTCUTS)
            ref = sinusoidal_encoding(max_len, d_model)  # (L, D) float32
            where = f"for max_len={max_len}, d_model={d_model}"
            if isinstance(got, torch.Tensor) and got.shape == ref.shape:
                if got.dtype != torch.float32:
                    raise CheckFailed(
                        f"{task}: {where} your table is {str(got.dtype).removeprefix('torch.')}; return "
                        "float32, PyTorch's default dtype (the table is added to float32 embeddings): "
                        "compute in float64 if you like, then .float() at the end.")
                if torch.isfinite(got).all() and not close(got, ref, atol=1e-4):
                    for wrong, message in _mistakes(max_len, d_model):
                        if close(got, wrong, atol=2e-2):  # float32 sines of large angles are rough
                            raise CheckFailed(f"{task}: {where} {message}")
            compare(task, got, ref, atol=1e-4, what=f"the table {where} (rows = positions)")
        shapes = ", ".join(fmt_shape(c) for c in cases)
        return f"tables of shape {shapes} (float32, atol 1e-4)"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: add positions

def _add_positions_mistakes(x: torch.Tensor, pe: torch.Tensor, start: int) -> list[tuple[torch.Tensor, str]]:
    """What ``add_positions(x, pe, start)`` returns under the usual mistakes, each with what to say."""
    B, T, _ = x.shape
    rows = pe.to(x.dtype)
    end = start + T
    found = [
        (x * rows[start:end], "you multiplied the token vectors by the positions; the positions are "
                              "added: x + pe[start:start + T]."),
        (rows[start:end].expand_as(x), "you returned the positions alone; add them to the token "
                                       "vectors x."),
        (x, "you returned x unchanged; add the rows of positions start .. start + T - 1 to it."),
        (x + rows[start], f"you added one row of the table (position {start}) to every token: did you "
                          "slice with the batch size x.shape[0] instead of the length x.shape[1], or "
                          "index pe[start] instead of slicing pe[start:start + T]?"),
        (x + rows[0], "you added row 0 of the table to every token: did you slice with the batch size "
                      "x.shape[0] instead of the length x.shape[1]?"),
        (x + rows[-T:], f"you added the last {T} rows of the table (pe[-T:]); the token at index t "
                        "gets the row of position start + t: pe[start:start + T]."),
    ]
    if start > 0:
        found.append((x + rows[:T], f"you added the rows of positions 0..{T - 1}, ignoring start = "
                                    f"{start}: these tokens sit at positions {start}..{end - 1}, so add "
                                    "pe[start:start + T]."))
    if end + 1 <= pe.shape[0]:
        found.append((x + rows[start + 1: end + 1], "you added the rows one position too far on "
                                                    "(positions counted from 1?): the first token "
                                                    "gets the row of position start, pe[start]."))
    return found


def _where(x: torch.Tensor, pe: torch.Tensor, start: int) -> str:
    return (f"x {fmt_shape(x.shape)}, a table of max_len = {pe.shape[0]} rows and start = {start} "
            f"(positions {start}..{start + x.shape[1] - 1})")


def _call_fitting(task: str, fn: Callable, x: torch.Tensor, pe: torch.Tensor, start: int | None):
    """Call the learner's function on positions that fit the table; explain the likely errors."""
    args = (x, pe) if start is None else (x, pe, start)
    start = 0 if start is None else start
    try:
        return call(task, fn, *args)
    except CheckFailed as failed:
        cause, (B, T) = failed.__cause__, x.shape[:2]
        max_len, said = pe.shape[0], str(cause)
        if isinstance(cause, ValueError):
            axis = ""
            if B != T and start + B > max_len:
                axis = (f" With B = {B} sequences of T = {T} tokens, start + B = {start + B} > max_len: did "
                        "you take T from x.shape[0], the batch axis? T is x.shape[1].")
            raise CheckFailed(f"{task}: your function raised ValueError for {_where(x, pe, start)}, but "
                              f"these positions fit: start + T = {start + T} <= max_len = {max_len} "
                              f"is fine; refuse only start + T > max_len.{axis} ({cause})") from cause
        if isinstance(cause, TypeError) and len(args) == 2:
            raise CheckFailed(f"{failed} Called as add_positions(x, pe), without start: give start "
                              "the default 0, `def add_positions(x, pe, start=0)`.") from cause
        if isinstance(cause, RuntimeError) and B != T and (f"tensor b ({B})" in said
                                                           or f"existing size ({B})" in said):
            raise CheckFailed(f"{failed} The table's slice has {B} rows, the batch size: T is "
                              "x.shape[1], not x.shape[0].") from cause
        if (isinstance(cause, RuntimeError) and B != T and f"tensor a ({B})" in said
                and f"tensor b ({T})" in said and "dimension 0" in said):
            raise CheckFailed(f"{failed} The rows of the table met x's batch axis: x is (B, T, D), so the "
                              "rows pe[start:start + T], shape (T, D), broadcast as they are (or as "
                              "(1, T, D), unsqueeze(0)); unsqueeze(1) makes (T, 1, D).") from cause
        if isinstance(cause, RuntimeError) and start > 0:
            raise CheckFailed(f"{failed} With start = {start} and T = {T} the rows are "
                              f"pe[start:start + T], positions {start}..{start + T - 1}.") from cause
        raise


def _numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", text)}


def _ranges(text: str) -> list[tuple[int, int]]:
    """The ranges written ``a..b`` (or ``a...b``) in a message."""
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+)\s*(?:\.\.\.?|\u2026)\s*(\d+)", text)]


def _range_hint(first: int, last: int, a: int, b: int) -> str:
    if (a, b) == (first + 1, last + 1):
        return "you counted from 1; positions count from 0, the first token sits at start."
    if a == first and b == last + 1:
        return "the range ends one too far: the last token sits at start + T - 1."
    return "the tokens sit at positions start .. start + T - 1."


def _check_refuses(task: str, fn: Callable, x: torch.Tensor, pe: torch.Tensor, start: int) -> None:
    """Positions beyond the table: a ValueError whose message gives the positions and max_len."""
    T, max_len = x.shape[1], pe.shape[0]
    first, last = start, start + T - 1
    where = _where(x, pe, start)
    one_past = ""
    if start + T == max_len + 1:
        one_past = (f" Here the last position, start + T - 1 = {last}, is max_len itself, one past the "
                    f"table's last row {max_len - 1}: a bound such as start + T - 1 > max_len is one too "
                    "loose.")
    try:
        call(task, fn, x, pe, start)
    except CheckFailed as failed:
        cause = failed.__cause__
        if cause is None:  # a shortcut or another check's verdict: already in words
            raise
        if not isinstance(cause, ValueError):
            raise CheckFailed(f"{task}: for {where} your function raised {type(cause).__name__} "
                              f"({cause}); check start + T > max_len first and raise a ValueError that "
                              f"gives the numbers.{one_past}") from cause
        said = _numbers(str(cause))
        if start == 0:  # "start = 0" goes without saying: T or the last position will do
            gives_positions = T in said or last in said
        else:
            gives_positions = start + T in said or last in said or {start, T} <= said
        if max_len not in said or not gives_positions:
            last_row = ""
            if gives_positions and max_len - 1 in said:
                last_row = (f" (the table's last row, {max_len - 1}, is not max_len: give max_len "
                            "itself)")
            raise CheckFailed(f"{task}: for {where} your function raised ValueError({str(cause)!r}), "
                              f"but the message should give the numbers: the positions asked for "
                              f"({first}..{last}, or start = {start} and T = {T}) and max_len = {max_len}"
                              f"{last_row}, e.g. f\"positions {{start}}..{{start + T - 1}} do not fit "
                              f"max_len={{max_len}}\".") from cause
        for a, b in _ranges(str(cause)):
            if (a, b) not in ((first, last), (0, max_len - 1)):  # the positions, or the table's rows
                raise CheckFailed(f"{task}: for {where} your function raised ValueError({str(cause)!r}), "
                                  f"but the positions asked for are {first}..{last}, not {a}..{b}: "
                                  f"{_range_hint(first, last, a, b)}") from cause
        return
    raise CheckFailed(f"{task}: for {where} your function returned a result; positions {max_len} and "
                      "beyond have no row in the table: raise a ValueError (check start + T > max_len, "
                      f"not only T > max_len).{one_past}")


def check_add_positions(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(x, pe, start=0) -> x + pe[start:start+T]`` in x's dtype; ValueError beyond max_len."""
    task = "add_positions"

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        f32, f64 = torch.float32, torch.float64
        # B, T, D, max_len, start (None: called without it), x's dtype, pe's dtype
        cases = [(2, 5, 8, 10, None, f32, f32), (1, 7, 4, 12, 3, f32, f32), (3, 4, 6, 10, 6, f32, f32),
                 (3, 10, 16, 10, 0, f32, f32), (4, 1, 6, 9, 5, f64, f32), (2, 3, 8, 8, 2, f32, f64),
                 (6, 2, 4, 8, 4, f32, f32)]  # the last: start + B > max_len, a bound on B refuses it
        for B, T, D, max_len, start, x_dtype, pe_dtype in cases:
            x = torch.randn(B, T, D, generator=g, dtype=f64).to(x_dtype)
            pe = torch.randn(max_len, D, generator=g, dtype=f64).to(pe_dtype)  # random: a wrong slice shows
            got = _call_fitting(task, fn, x, pe, start)
            start = 0 if start is None else start
            ref = x + pe[start: start + T].to(x.dtype)  # (B, T, D) + (T, D) -> (B, T, D)
            where = f"for {_where(x, pe, start)}"
            if isinstance(got, torch.Tensor) and got.shape == ref.shape and got.dtype != x.dtype:
                raise CheckFailed(f"{task}: {where} the result is {str(got.dtype).removeprefix('torch.')}, "
                                  f"but x is {str(x.dtype).removeprefix('torch.')} and the table "
                                  f"{str(pe.dtype).removeprefix('torch.')}: keep x's dtype, "
                                  "x + pe[start:start + T].to(x.dtype).")
            if isinstance(got, torch.Tensor) and not close(got, ref):
                if got.dim() == 3 and got.shape[1] == 0:
                    raise CheckFailed(f"{task}: {where} the result has no positions, shape "
                                      f"{fmt_shape(got.shape)}: the slice ends at start + T, "
                                      "pe[start:start + T], not at T.")
                for wrong, message in _add_positions_mistakes(x, pe, start):
                    if close(got, wrong) and not close(wrong, ref):
                        raise CheckFailed(f"{task}: {where} {message}")
            compare(task, got, ref, what=f"the result {where}")
        # too long by 3, 2, 2 and by exactly 1 (start + T = max_len + 1: a bound one too loose)
        too_long = [(2, 9, 8, 6, 0), (1, 5, 4, 10, 7), (3, 3, 4, 8, 7), (2, 4, 6, 8, 5)]
        for B, T, D, max_len, start in too_long:
            x, pe = torch.randn(B, T, D, generator=g), torch.randn(max_len, D, generator=g)
            _check_refuses(task, fn, x, pe, start)
        return (f"{len(cases)} random batches (start 0 to max_len - 1, float32 and float64) and "
                f"{len(too_long)} that run past max_len (one of them by a single position)")

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 3: dot products by offset

def _profile(pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: for each offset k, the mean and the range over p of PE[p] . PE[p + k]."""
    dots = [offset_dot_products(pe, k) for k in range(pe.shape[0])]  # each (L - k,)
    mean = torch.stack([d.mean() for d in dots])  # (L,)
    spread = torch.stack([d.max() - d.min() for d in dots])  # (L,)
    return mean, spread


def _profile_of(dots: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.stack([d.mean() for d in dots]),
            torch.stack([d.max() - d.min() for d in dots]))


def _offset_mistakes(pe: torch.Tensor) -> list[tuple[torch.Tensor | None, torch.Tensor | None, str]]:
    """(mean, spread, message) of the usual mistakes; None where that half is not the mistake."""
    L, D = pe.shape
    mean, spread = _profile(pe)
    dots = [offset_dot_products(pe, k) for k in range(L)]
    unit = pe / pe.norm(dim=-1, keepdim=True)
    roll = [(pe * pe.roll(-k, 0)).sum(-1) for k in range(L)]
    itself = [(pe[: L - k] ** 2).sum(-1) for k in range(L)]
    gram = pe @ pe.T  # (L, L)
    std = torch.stack([d.std() if len(d) > 1 else d.new_tensor(float("nan")) for d in dots])
    std0 = torch.stack([d.std(unbiased=False) for d in dots])
    return [
        (spread, mean, "you returned (spread, mean); return them in the order the task asks: "
                       "(mean, spread)."),
        (mean / D, None, "the means are the expected ones divided by D: you averaged the products over "
                         "the dimensions as well; a dot product sums them (.sum(-1)), then average "
                         "over p."),
        (torch.stack([d.sum() for d in dots]) / L, None,
         "you divided every offset's sum by max_len; offset k has only max_len - k pairs (p, p + k): "
         "take the mean of those max_len - k values."),
        (gram[0], None, "your mean is PE[0] . PE[k], the value at p = 0 only (the first row of PE PE^T); "
                        "average over every p from 0 to max_len - 1 - k."),
        (None, std, "your spread is the standard deviation over p; the task asks for the range, "
                    "max - min."),
        (None, std0, "your spread is the standard deviation over p; the task asks for the range, "
                     "max - min."),
        (None, torch.stack([d.max() for d in dots]), "your spread is the largest value; the spread "
                                                      "is the range, max - min."),
        (*_profile_of(roll), "torch.roll wraps the last rows around to the start: only max_len - k "
                             "pairs (p, p + k) fit in max_len positions, pe[:max_len - k] with pe[k:]."),
        (*_profile_of([(unit[: L - k] * unit[k:]).sum(-1) for k in range(L)]),
         "you normalised the vectors (cosine similarity); measure the plain dot product."),
        (*_profile_of(itself), "you took the dot product of each row with itself; pair row p with "
                               "row p + k."),
    ]


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    """float32 sums of products agree to about 1e-6; float64 ones to about 1e-15."""
    return {"atol": 1e-4, "rtol": 1e-4} if dtype != torch.float64 else {"atol": 1e-9, "rtol": 1e-7}


def _same(got: torch.Tensor, wrong: torch.Tensor | None, ref: torch.Tensor, tol: dict) -> bool:
    """True when ``got`` matches a mistake's values (where they are finite) and the mistake is not right."""
    if wrong is None:
        return True
    keep = torch.isfinite(wrong)
    return (got.shape == wrong.shape and bool(keep.any())
            and close(got[keep], wrong[keep], **tol) and not close(wrong[keep], ref[keep], **tol))


_EMPTY_SLICE = ("at offset k = 0, pe[:-k] is pe[:-0] = pe[:0], which is empty (not the whole table); "
                "slice with pe[:L - k] (L = pe.shape[0]), which is the whole table at k = 0")


def _diagnose_offset_zero(task: str, mean: torch.Tensor, spread: torch.Tensor, ref_mean: torch.Tensor,
                          ref_spread: torch.Tensor, tol: dict, where: str) -> None:
    """Every offset right but 0: the slice pe[:-k], empty at k = 0."""
    rest_right = close(mean[1:], ref_mean[1:], **tol) and close(spread[1:], ref_spread[1:], **tol)
    if len(ref_mean) < 2 or not rest_right:
        return
    if close(mean[:1], ref_mean[:1], **tol) and close(spread[:1], ref_spread[:1], **tol):
        return
    got = f"mean {mean[0].item():.4g} and spread {spread[0].item():.4g}"
    expected = f"{ref_mean[0].item():.4g} and {ref_spread[0].item():.4g}"
    if torch.isnan(mean[0]) or torch.isnan(spread[0]) or spread[0] == 0:
        raise CheckFailed(f"{task}: {where} every offset is right except offset 0 ({got}, expected "
                          f"{expected}): {_EMPTY_SLICE}.")
    raise CheckFailed(f"{task}: {where} every offset is right except offset 0 ({got}, expected {expected}): "
                      "offset 0 pairs each row with itself, PE[p] . PE[p], for every p. (If you sliced "
                      f"with pe[:-k]: {_EMPTY_SLICE}.)")


def _diagnose_profile(task: str, pe: torch.Tensor, mean: torch.Tensor, spread: torch.Tensor,
                      where: str) -> None:
    L, tol = pe.shape[0], _tolerance(pe.dtype)
    ref_mean, ref_spread = _profile(pe)
    for name, got in (("mean", mean), ("spread", spread)):
        if isinstance(got, torch.Tensor) and got.shape == (L - 1,):
            raise CheckFailed(f"{task}: {where} {name} has {L - 1} values; there are max_len = {L} offsets, "
                              f"k = 0 .. {L - 1} (offset 0 pairs each row with itself).")
        if isinstance(got, torch.Tensor) and got.shape == (L, L):
            raise CheckFailed(f"{task}: {where} {name} has shape ({L}, {L}): one value per offset k, "
                              f"shape ({L},): reduce the dot products PE[p] . PE[p + k] over p.")
    if not all(isinstance(t, torch.Tensor) and t.shape == (L,) for t in (mean, spread)):
        return
    _diagnose_offset_zero(task, mean, spread, ref_mean, ref_spread, tol, where)
    for wrong_mean, wrong_spread, message in _offset_mistakes(pe):
        if ((wrong_mean is not None or wrong_spread is not None)
                and _same(mean, wrong_mean, ref_mean, tol) and _same(spread, wrong_spread, ref_spread, tol)
                and not (close(mean, ref_mean, **tol) and close(spread, ref_spread, **tol))):
            raise CheckFailed(f"{task}: {where} {message}")
    roughly = close(mean, ref_mean, atol=1e-4) and close(spread, ref_spread, atol=1e-4)
    if pe.dtype == torch.float64 and roughly:
        if not (close(mean, ref_mean, **tol) and close(spread, ref_spread, **tol)):
            raise CheckFailed(f"{task}: {where} the values are right to about 1e-6 only: the table is "
                              "float64 but part of your computation ran in float32 (torch.tensor of "
                              "numbers, .float()?); keep pe's dtype throughout.")


def check_offset_profile(fn: Callable[[torch.Tensor], tuple]) -> bool:
    """Check ``fn(pe) -> (mean, spread)``, each (max_len,): over p, of PE[p] . PE[p + k] for each k."""
    task = "offset_profile"

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        tables = [torch.randn(10, 8, generator=g), torch.randn(6, 4, generator=g),
                  sinusoidal_encoding(16, 8), torch.randn(7, 5, generator=g, dtype=torch.float64),
                  sinusoidal_encoding(12, 6).double(), torch.randn(2, 3, generator=g)]
        for pe in tables:
            where = f"for a {str(pe.dtype).removeprefix('torch.')} table {fmt_shape(pe.shape)}"
            try:
                got = call(task, fn, pe, forbid=_DOT_SHORTCUTS)
            except CheckFailed as failed:
                cause = str(failed.__cause__)
                if isinstance(failed.__cause__, (RuntimeError, IndexError, ValueError)) and (
                        "(0)" in cause or "numel() == 0" in cause or "zero-size" in cause):
                    raise CheckFailed(f"{failed} An empty slice: {_EMPTY_SLICE}.") from failed.__cause__
                raise
            mean, spread = unpack(task, got, ("mean", "spread"))
            for name, value in (("mean", mean), ("spread", spread)):
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != pe.dtype:
                    raise CheckFailed(
                        f"{task}: {where} {name} is {str(value.dtype).removeprefix('torch.')}; keep the "
                        f"table's dtype, {str(pe.dtype).removeprefix('torch.')} (torch.tensor of a list "
                        "of Python numbers gives float32: pass dtype=pe.dtype, or torch.stack the 0-d "
                        "tensors).")
            _diagnose_profile(task, pe, mean, spread, where)
            ref_mean, ref_spread = _profile(pe)
            compare(task, mean, ref_mean, **_tolerance(pe.dtype), what=f"mean {where}")
            compare(task, spread, ref_spread, **_tolerance(pe.dtype), what=f"spread {where}")
        return (f"{len(tables)} tables (random and sinusoidal, float32 and float64), every offset "
                "from 0 to max_len - 1")

    return run_check(task, body)
