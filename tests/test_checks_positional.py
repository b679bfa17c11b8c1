"""Notebook 06's checks accept right answers written in many ways and reject the usual mistakes, in words."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course import checks, positional
from transformer_course.checks import CheckFailed
from transformer_course.positional import sinusoidal_encoding

# ----------------------------------------------------------------------------- sinusoidal_encoding


def _encoding(max_len, d_model, *, swap=False, exponent="pair", concat=False, start=0, base=10000.0):
    """A learner's table, written the usual way; the defaults give the right answer."""
    pos = torch.arange(start, start + max_len, dtype=torch.float32)[:, None]
    i = torch.arange(0, d_model, 2, dtype=torch.float32)
    if exponent == "pair":
        freq = torch.exp(-math.log(base) * i / d_model)
    elif exponent == "rising":  # pos * 10000^(2i/d): the sign of the exponent lost
        freq = torch.exp(math.log(base) * i / d_model)
    elif exponent == "column":  # 10000^(j / d_model) with j the column
        freq = torch.exp(-math.log(base) * torch.arange(d_model, dtype=torch.float32) / d_model)
    else:  # "double": 10000^(2j / d_model)
        freq = torch.exp(-math.log(base) * 2 * torch.arange(d_model, dtype=torch.float32) / d_model)
    pe = torch.zeros(max_len, d_model)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if exponent in ("pair", "rising"):
        angles = pos * freq
        if concat:
            return torch.cat([first(angles), second(angles)], dim=1)
        pe[:, 0::2], pe[:, 1::2] = first(angles), second(angles)
    else:
        angles = pos * freq  # one frequency per column
        pe[:, 0::2], pe[:, 1::2] = first(angles[:, 0::2]), second(angles[:, 1::2])
    return pe


def _stacked(max_len, d_model):
    """sin and cos stacked on a new last axis, then flattened: the pairs interleave."""
    pos = torch.arange(max_len).unsqueeze(1)  # (L, 1), integers
    omega = 1.0 / 10000 ** (torch.arange(0, d_model, 2) / d_model)  # (D/2,)
    angles = pos * omega  # (L, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (L, D/2, 2) -> (L, D)


def _in_float64(max_len, d_model):
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    angles = pos / torch.pow(10000.0, torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, ::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.float()


def _loops(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)
            pe[pos, i], pe[pos, i + 1] = math.sin(angle), math.cos(angle)
    return pe


TABLE_RIGHT = {
    "the package": sinusoidal_encoding,
    "slices, exp and log": _encoding,
    "torch.stack then flatten": _stacked,
    "float64 inside, cast back": _in_float64,
    "two Python loops": _loops,
}

TABLE_WRONG = {
    "sin and cos swapped": (lambda n, d: _encoding(n, d, swap=True), "sin and cos are swapped"),
    "sines then cosines": (lambda n, d: _encoding(n, d, concat=True), "all the sines come first"),
    "one frequency per column": (lambda n, d: _encoding(n, d, exponent="column"),
                                 r"column j has the frequency 1/10000\^\(j/d_model\)"),
    "2j over d_model": (lambda n, d: _encoding(n, d, exponent="double"), r"uses 2j/d_model"),
    "rising frequencies": (lambda n, d: _encoding(n, d, exponent="rising"),
                           "frequencies grow with the column"),
    "log10 as the log": (lambda n, d: _encoding(n, d, base=math.e ** math.log10(10000.0)),
                         r"e\^4 instead of 10000"),
    "positions from 1": (lambda n, d: _encoding(n, d, start=1), "positions start at 1"),
    "float64 table": (lambda n, d: _in_float64(n, d).double(), "your table is float64; return float32"),
    "transposed": (lambda n, d: _encoding(n, d).T, "last two axes swapped"),
    "numpy array": (lambda n, d: _encoding(n, d).numpy(), "should be a torch.Tensor"),
    "calls the package": (lambda n, d: positional.sinusoidal_encoding(n, d),
                          "called `transformer_course.positional.sinusoidal_encoding`.*by hand"),
    "uses the package's module": (lambda n, d: positional.SinusoidalPositionalEncoding(d, n).pe,
                                  "called `transformer_course.positional.SinusoidalPositionalEncoding`"),
}


@pytest.mark.parametrize("name", TABLE_RIGHT)
def test_sinusoidal_check_accepts_right_answers(name, capsys):
    assert checks.check_sinusoidal_encoding(TABLE_RIGHT[name])
    assert "[x] sinusoidal_encoding" in capsys.readouterr().out


@pytest.mark.parametrize("name", TABLE_WRONG)
def test_sinusoidal_check_rejects_mistakes(name):
    fn, message = TABLE_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_sinusoidal_encoding(fn)


def test_the_package_is_back_after_a_blocked_call():
    with pytest.raises(CheckFailed):
        checks.check_sinusoidal_encoding(TABLE_WRONG["calls the package"][0])
    assert positional.sinusoidal_encoding(2, 4).shape == (2, 4)


# ----------------------------------------------------------------------------- add_positions

def _add_positions(x, pe, start=0):
    """The right answer, written the usual way."""
    T, max_len = x.shape[1], pe.shape[0]
    if start + T > max_len:
        raise ValueError(f"positions {start}..{start + T - 1} do not fit max_len={max_len}")
    return x + pe[start: start + T].to(x.dtype)


def _add_by_index(x, pe, start=0):
    """Gathers the rows with an index tensor and checks the length by the last position."""
    positions = torch.arange(start, start + x.shape[1])  # (T,)
    if positions[-1] >= len(pe):
        raise ValueError(f"position {positions[-1].item()} is beyond the table (max_len {len(pe)})")
    return x + pe[positions].type_as(x)


def _add_in_a_loop(x, pe, start=0):
    """One position at a time, torch.stack; the message gives start, T and max_len."""
    B, T, D = x.shape
    if start + T > pe.shape[0]:
        raise ValueError(f"a sequence of {T} tokens from position {start} needs more than "
                         f"max_len = {pe.shape[0]} rows")
    return torch.stack([x[:, t] + pe[start + t].to(x.dtype) for t in range(T)], dim=1)


def _add_broadcast_copy(x, pe, start=0):
    """A copy of x, then += on the copy (not on the input), and narrow() for the slice."""
    if start + x.shape[1] > pe.shape[0]:
        raise ValueError(f"start + T = {start + x.shape[1]} > max_len = {pe.shape[0]}")
    out = x.clone()
    out += pe.narrow(0, start, x.shape[1]).unsqueeze(0).to(out.dtype)
    return out


def _add_with_table_range(x, pe, start=0):
    """The message gives the table's rows as a range too (0..max_len - 1), three dots for the positions."""
    T, max_len = x.shape[1], pe.shape[0]
    if start + T - 1 >= max_len:
        raise ValueError(f"the table holds {max_len} positions (0..{max_len - 1}); "
                         f"you asked for {start}...{start + T - 1}")
    return x + pe[start: start + T].to(x.dtype)


def _add_in_float64(x, pe, start=0):
    """float64 inside, cast back; the message gives start, T and max_len."""
    T, max_len = x.shape[1], pe.shape[0]
    if not start + T <= max_len:
        raise ValueError(f"start={start}, T={T}: positions beyond max_len={max_len}")
    return (x.double() + pe[start: start + T].double()[None]).to(x.dtype)


ADD_RIGHT = {
    "slice and .to": _add_positions,
    "index tensor and type_as": _add_by_index,
    "a loop over positions": _add_in_a_loop,
    "+= on a copy, narrow": _add_broadcast_copy,
    "table range in the message, >= bound": _add_with_table_range,
    "float64 inside, start and T in the message": _add_in_float64,
}


def _guarded(wrong):
    """A wrong formula behind a correct length check, so that the formula is what is tested."""
    def fn(x, pe, start=0):
        if start + x.shape[1] > pe.shape[0]:
            raise ValueError(f"positions {start}..{start + x.shape[1] - 1} do not fit max_len={pe.shape[0]}")
        return wrong(x, pe, start)
    return fn


def _in_place(x, pe, start=0):
    if start + x.shape[1] > pe.shape[0]:
        raise ValueError(f"positions {start}..{start + x.shape[1] - 1} do not fit max_len={pe.shape[0]}")
    x += pe[start: start + x.shape[1]].to(x.dtype)
    return x


def _too_long(message):
    def fn(x, pe, start=0):
        if start + x.shape[1] > pe.shape[0]:
            raise ValueError(message)
        return x + pe[start: start + x.shape[1]].to(x.dtype)
    return fn


def _message(text):
    """The right answer, whose ValueError says text(start, T, max_len)."""
    def fn(x, pe, start=0):
        if start + x.shape[1] > pe.shape[0]:
            raise ValueError(text(start, x.shape[1], pe.shape[0]))
        return x + pe[start: start + x.shape[1]].to(x.dtype)
    return fn


def _refuses_exact_fit(x, pe, start=0):
    if start + x.shape[1] >= pe.shape[0]:
        raise ValueError(f"positions {start}..{start + x.shape[1] - 1} do not fit max_len={pe.shape[0]}")
    return x + pe[start: start + x.shape[1]].to(x.dtype)


def _checks_only_t(x, pe, start=0):
    if x.shape[1] > pe.shape[0]:
        raise ValueError(f"sequence of {x.shape[1]} tokens is longer than max_len={pe.shape[0]}")
    return x + pe[start: start + x.shape[1]].to(x.dtype)


def _asserts(x, pe, start=0):
    assert start + x.shape[1] <= pe.shape[0], f"{start + x.shape[1]} > {pe.shape[0]}"
    return x + pe[start: start + x.shape[1]].to(x.dtype)


def _bound_one_too_loose(x, pe, start=0):
    if start + x.shape[1] - 1 > pe.shape[0]:
        raise ValueError(f"positions {start}..{start + x.shape[1] - 1} do not fit max_len={pe.shape[0]}")
    return x + pe[start: start + x.shape[1]].to(x.dtype)


def _bound_on_the_batch(x, pe, start=0):
    T = x.shape[0]  # the batch axis
    if start + T > pe.shape[0]:
        raise ValueError(f"positions {start}..{start + T - 1} do not fit max_len={pe.shape[0]}")
    return x + pe[start: start + x.shape[1]].to(x.dtype)


def _batch_axis_everywhere(x, pe, start=0):
    T = x.shape[0]  # the batch axis, for the bound and the rows
    if start + T > pe.shape[0]:
        raise ValueError(f"positions {start}..{start + T - 1} do not fit max_len={pe.shape[0]}")
    return x + pe[start: start + T].to(x.dtype)[None].expand_as(x)


def _no_default(x, pe, start):
    return _add_positions(x, pe, start)


ADD_WRONG = {
    "ignores start": (_guarded(lambda x, pe, s: x + pe[: x.shape[1]].to(x.dtype)), "ignoring start = 3"),
    "slice ends at T": (_guarded(lambda x, pe, s: x + pe[s: x.shape[1]].to(x.dtype)),
                        r"pe\[start:start \+ T\], positions 3..9"),
    "last rows": (_guarded(lambda x, pe, s: x + pe[-x.shape[1]:].to(x.dtype)),
                  r"the last \d+ rows of the table"),
    "one row too far": (_guarded(lambda x, pe, s: x + pe[s + 1: s + x.shape[1] + 1].to(x.dtype)),
                        "one position too far"),
    "multiplied": (_guarded(lambda x, pe, s: x * pe[s: s + x.shape[1]].to(x.dtype)), "you multiplied"),
    "positions alone": (_guarded(lambda x, pe, s: pe[s: s + x.shape[1]].to(x.dtype).expand_as(x).clone()),
                        "returned the positions alone"),
    "x unchanged": (_guarded(lambda x, pe, s: x.clone()), "returned x unchanged"),
    "sliced by the batch size": (_guarded(lambda x, pe, s: x + pe[s: s + x.shape[0]].to(x.dtype)),
                                 r"slice has 2 rows, the batch size: T is x.shape\[1\]"),
    "one row for every token": (_guarded(lambda x, pe, s: x + pe[s].to(x.dtype)),
                                r"one row of the table \(position 0\) to every token"),
    "keeps the table's dtype": (_guarded(lambda x, pe, s: x + pe[s: s + x.shape[1]]),
                                r"the result is float64, but x is float32 .*\.to\(x\.dtype\)"),
    "in place": (_in_place, "changed its input `x` in place"),
    "refuses exactly max_len": (_refuses_exact_fit, r"these positions fit: start \+ T = 10 <= max_len = 10"),
    "checks T only": (_checks_only_t, r"raised RuntimeError .* check start \+ T > max_len first"),
    "no length check": (lambda x, pe, start=0: x + pe[start: start + x.shape[1]].to(x.dtype),
                        r"raised RuntimeError .* raise a ValueError that gives the numbers"),
    "assert instead of ValueError": (_asserts, "(?s)raised AssertionError .* raise a ValueError"),
    "message without numbers": (_too_long("sequence too long"),
                                r"message should give the numbers: the positions asked for \(0..8, or "
                                r"start = 0 and T = 9\) and max_len = 6"),
    "bound one too loose": (_bound_one_too_loose,
                            r"raised RuntimeError .* start \+ T - 1 = 8, is max_len itself, one past the "
                            r"table's last row 7: .* one too loose"),
    "T from the batch axis in the bound": (_bound_on_the_batch, r"these positions fit.* start \+ B = 10 > "
                                                                r"max_len: did you take T from x.shape\[0\]"),
    "T from the batch axis everywhere": (_batch_axis_everywhere,
                                         r"slice has 2 rows, the batch size: T is x.shape\[1\]"),
    "rows on the batch axis": (_guarded(lambda x, pe, s: x + pe[s: s + x.shape[1]].to(x.dtype).unsqueeze(1)),
                               r"rows of the table met x's batch axis.*unsqueeze\(1\) makes \(T, 1, D\)"),
    "message counts from 1": (_message(lambda s, T, L: f"positions {s + 1}..{s + T} do not fit max_len={L}"),
                              r"the positions asked for are 0..8, not 1..9: you counted from 1"),
    "message range one too far": (_message(lambda s, T, L: f"positions {s}..{s + T} do not fit max_len={L}"),
                                  r"are 0..8, not 0..9: the range ends one too far"),
    "message gives the last row": (_message(lambda s, T, L: f"position {s + T - 1} is past the last row "
                                                            f"{L - 1}"),
                                   r"and max_len = 6 \(the table's last row, 5, is not max_len"),
    "message with max_len only": (_too_long("longer than the table"), "message should give the numbers"),
    "no default for start": (_no_default, "give start the default 0"),
}


@pytest.mark.parametrize("name", ADD_RIGHT)
def test_add_positions_accepts_right_answers(name, capsys):
    assert checks.check_add_positions(ADD_RIGHT[name])
    assert "[x] add_positions" in capsys.readouterr().out


@pytest.mark.parametrize("name", ADD_WRONG)
def test_add_positions_rejects_mistakes(name):
    fn, message = ADD_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_add_positions(fn)


def test_add_positions_wants_both_numbers_when_start_is_not_0():
    def half_message(x, pe, start=0):  # gives T and max_len, but not where the positions end
        if start + x.shape[1] > pe.shape[0]:
            raise ValueError(f"{x.shape[1]} tokens, max_len={pe.shape[0]}")
        return x + pe[start: start + x.shape[1]].to(x.dtype)

    with pytest.raises(CheckFailed, match=r"the positions asked for \(7..11, or start = 7 and T = 5\)"):
        checks.check_add_positions(half_message)


# ----------------------------------------------------------------------------- offset_profile

def _profile(pe):
    """The right answer, written the usual way: slices in a loop, torch.stack."""
    dots = [(pe[: len(pe) - k] * pe[k:]).sum(-1) for k in range(len(pe))]
    return torch.stack([d.mean() for d in dots]), torch.stack([d.max() - d.min() for d in dots])


def _profile_gram(pe):
    gram = pe @ pe.T  # (L, L)
    diagonals = [torch.diagonal(gram, k) for k in range(len(pe))]
    lows, highs = zip(*(torch.aminmax(d) for d in diagonals), strict=True)
    return [torch.stack([d.mean() for d in diagonals]), torch.stack(highs) - torch.stack(lows)]


def _profile_vectorised(pe):
    L = pe.shape[0]
    gram = pe @ pe.T  # (L, L)
    k, p = torch.arange(L)[:, None], torch.arange(L)[None, :]  # (L, 1), (1, L)
    valid = p + k < L  # (L, L): pair (p, p + k) exists
    values = gram[p, (p + k).clamp(max=L - 1)]  # (L, L), row k holds PE[p] . PE[p + k]
    mean = (values * valid).sum(1) / valid.sum(1)
    high = values.masked_fill(~valid, float("-inf")).amax(1)
    low = values.masked_fill(~valid, float("inf")).amin(1)
    return mean, high - low


def _profile_float64(pe):
    mean, spread = _profile(pe.double())
    return mean.to(pe.dtype), spread.to(pe.dtype)


def _profile_items(pe):
    means, spreads = [], []
    for k in range(len(pe)):
        d = torch.einsum("pd,pd->p", pe[:-k or None], pe[k:])
        means.append(d.mean().item())
        spreads.append((d.max() - d.min()).item())
    return torch.tensor(means, dtype=pe.dtype), torch.tensor(spreads, dtype=pe.dtype)


PROFILE_RIGHT = {
    "slices in a loop": _profile,
    "gram matrix diagonals, aminmax, a list": _profile_gram,
    "vectorised with a mask": _profile_vectorised,
    "float64 inside, cast back": _profile_float64,
    "einsum, pe[:-k or None], .item() with dtype": _profile_items,
}


def _each_offset(dot, reduce):
    """A profile built from a (possibly wrong) dot product per offset and a reduction."""
    def fn(pe):
        dots = [dot(pe, k) for k in range(len(pe))]
        return torch.stack([d.mean() for d in dots]), torch.stack([reduce(d) for d in dots])
    return fn


def _right_dot(pe, k):
    return (pe[: len(pe) - k] * pe[k:]).sum(-1)


def _range(d):
    return d.max() - d.min()


def _profile_minus_k(pe):
    """pe[:-k], empty at k = 0: its mean is NaN and its spread set to 0 (round 3 of the review)."""
    means, spreads = [], []
    for k in range(len(pe)):
        head = pe[:-k]
        d = (head * pe[k:][: len(head)]).sum(-1)
        means.append(d.mean())
        spreads.append(d.max() - d.min() if d.numel() else torch.zeros((), dtype=pe.dtype))
    return torch.stack(means), torch.stack(spreads)


def _profile_minus_k_max(pe):
    """pe[:-k] and pe[k:][:len]: the max of the empty offset 0 crashes."""
    dots = [(pe[:-k] * pe[k:][: len(pe[:-k])]).sum(-1) for k in range(len(pe))]
    return torch.stack([d.mean() for d in dots]), torch.stack([d.max() - d.min() for d in dots])


PROFILE_WRONG = {
    "pe[:-0] for offset 0": (_each_offset(lambda pe, k: (pe[:-k] * pe[k:]).sum(-1), _range),
                             r"pe\[:-0\] = pe\[:0\], which is empty"),
    "pe[:-0] for offset 0, NaN mean kept": (_profile_minus_k,
                                            r"every offset is right except offset 0 \(mean nan and spread 0.*"
                                            r"pe\[:-0\] = pe\[:0\], which is empty.*pe\[:L - k\]"),
    "pe[:-0] for offset 0, max of nothing": (_profile_minus_k_max,
                                             r"An empty slice: at offset k = 0, pe\[:-k\] is pe\[:-0\]"),
    "offset 0 alone wrong": (lambda pe: (torch.cat([_profile(pe)[0][:1] + 1, _profile(pe)[0][1:]]),
                                         _profile(pe)[1]),
                             r"every offset is right except offset 0.*pairs each row with itself"),
    "swapped results": (lambda pe: _profile(pe)[::-1], r"you returned \(spread, mean\)"),
    "averaged over dimensions": (_each_offset(lambda pe, k: (pe[: len(pe) - k] * pe[k:]).mean(-1), _range),
                                 "averaged the products over the dimensions"),
    "sum divided by max_len": (lambda pe: (torch.stack([_right_dot(pe, k).sum() for k in range(len(pe))])
                                           / len(pe), _profile(pe)[1]),
                               "divided every offset's sum by max_len"),
    "p = 0 only": (lambda pe: ((pe @ pe.T)[0], torch.zeros(len(pe), dtype=pe.dtype)),
                   "the value at p = 0 only"),
    "std as the spread": (_each_offset(_right_dot, lambda d: d.std()), "standard deviation over p"),
    "population std as the spread": (_each_offset(_right_dot, lambda d: d.std(unbiased=False)),
                                     "standard deviation over p"),
    "max as the spread": (_each_offset(_right_dot, lambda d: d.max()), "your spread is the largest value"),
    "roll wraps around": (_each_offset(lambda pe, k: (pe * pe.roll(-k, 0)).sum(-1), _range),
                          "torch.roll wraps"),
    "cosine similarity": (_each_offset(lambda pe, k: torch.cosine_similarity(pe[: len(pe) - k], pe[k:], -1),
                                       _range), "cosine similarity"),
    "row with itself": (_each_offset(lambda pe, k: (pe[: len(pe) - k] ** 2).sum(-1), _range),
                        "each row with itself"),
    "offset 0 left out": (lambda pe: tuple(t[1:] for t in _profile(pe)),
                          r"mean has 9 values; there are max_len = 10"),
    "whole gram matrix": (lambda pe: (pe @ pe.T, _profile(pe)[1]), r"mean has shape \(10, 10\)"),
    "torch.tensor of floats": (lambda pe: tuple(torch.tensor([v.item() for v in t]) for t in _profile(pe)),
                               r"mean is float32; keep the table's dtype, float64 .*dtype=pe.dtype"),
    "float32 inside a float64 table": (lambda pe: tuple(t.to(pe.dtype) for t in _profile(pe.float())),
                                       "right to about 1e-6 only"),
    "one tensor": (lambda pe: torch.stack(_profile(pe)), r"return 2 values \(mean, spread\) as a tuple"),
    "three values": (lambda pe: (*_profile(pe), None), r"return 2 values \(mean, spread\); got 3"),
    "calls the package": (lambda pe: _each_offset(positional.offset_dot_products, _range)(pe),
                          "called `transformer_course.positional.offset_dot_products`"),
    "normalises pe in place": (lambda pe: _profile(pe.div_(pe.norm(dim=-1, keepdim=True))),
                               "changed its input `pe` in place"),
}


@pytest.mark.parametrize("name", PROFILE_RIGHT)
def test_offset_profile_accepts_right_answers(name, capsys):
    assert checks.check_offset_profile(PROFILE_RIGHT[name])
    assert "[x] offset_profile" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:std\\(\\). degrees of freedom")  # the unbiased std of one value
@pytest.mark.parametrize("name", PROFILE_WRONG)
def test_offset_profile_rejects_mistakes(name):
    fn, message = PROFILE_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_offset_profile(fn)

