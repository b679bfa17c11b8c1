"""The checks of notebook 11 accept right answers and reject the mistakes learners make, in words.

Each check has two tables: WRONG answers (each must be rejected with its own message) and
RIGHT answers written in other ways (each must pass).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course import checks, efficient
from transformer_course.checks import CheckFailed
from transformer_course.checks.efficient import _ScoreWatch, _watched
from transformer_course.efficient import online_softmax_step, tiled_attention

# ----------------------------------------------------------------------------- task 1: one step


def _step(m, l, acc, scores, v, *, rescale_l=True, rescale_acc=True, subtract=True, normalise=False,
          new_max="both", guard=True):
    """A learner's step: the defaults give the right answer, each option one mistake."""
    block_max = scores.amax(-1)
    m_new = {"both": torch.maximum(m, block_max), "block": block_max, "old": m}[new_max]
    safe = torch.where(torch.isinf(m_new), 0.0, m_new) if guard else m_new  # a row with no key seen yet
    p = torch.exp(scores - safe[..., None]) if subtract else torch.exp(scores)
    alpha = torch.exp(m - safe)
    l_new = (alpha * l if rescale_l else l) + p.sum(-1)
    acc_new = (alpha[..., None] * acc if rescale_acc else acc) + p @ v
    if normalise:
        acc_new = acc_new / l_new[..., None]
    return m_new, l_new, acc_new


def _old_max_for_p(m, l, acc, scores, v):
    """p measured against the old maximum: exp(scores - (-inf)) = inf in the first block."""
    m_new = torch.maximum(m, scores.amax(-1))
    p = torch.exp(scores - m[..., None])
    alpha = torch.exp(m - m_new)
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v


def _block_max_for_p(m, l, acc, scores, v):
    """p against the block's own maximum, l and acc rescaled to the running one."""
    m_new = torch.maximum(m, scores.amax(-1))
    p = torch.exp(scores - scores.amax(-1, keepdim=True))
    alpha = torch.exp(m - m_new)
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v


def _alpha_inverted(m, l, acc, scores, v, *, guard=True):
    """alpha = exp(m_new - m); with the guard its inf in the first block becomes 0."""
    m_new = torch.maximum(m, scores.amax(-1))
    p = torch.exp(scores - m_new[..., None])
    alpha = torch.exp(m_new - m)
    if guard:
        alpha = torch.nan_to_num(alpha, posinf=0.0)
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v


def _block_max_then_rescale(m, l, acc, scores, v):
    """Right in exact arithmetic, but exp(-inf - (-inf)) = NaN for a fully masked row."""
    block_max = scores.amax(-1)
    m_new = torch.maximum(m, block_max)
    p = torch.exp(scores - block_max[..., None]) * torch.exp(block_max - m_new)[..., None]
    alpha = torch.exp(m - m_new)
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v


def _guards_l_only(m, l, acc, scores, v):
    """The NaN of a wholly masked first row replaced by 0 in l, not in acc."""
    m_new = torch.maximum(m, scores.amax(-1))
    p = torch.exp(scores - m_new[..., None])
    alpha = torch.exp(m - m_new)
    return m_new, (alpha * l + p.sum(-1)).nan_to_num(0.0), alpha[..., None] * acc + p @ v


def _max_skips_masked_rows(m, l, acc, scores, v):
    """A wholly masked row's maximum set to 0 rather than left at -inf."""
    m_new, l_new, acc_new = _step(m, l, acc, scores, v)
    return torch.where(torch.isinf(m_new), 0.0, m_new), l_new, acc_new


def _float64_never_cast_back(m, l, acc, scores, v):
    return _step(*(x.double() for x in (m, l, acc, scores, v)))


def _step_in_place(m, l, acc, scores, v):
    m_new = torch.maximum(m, scores.amax(-1))
    p = torch.exp(scores - m_new[..., None])
    alpha = torch.exp(m - m_new)
    l *= alpha  # changes the caller's running sum
    return m_new, l + p.sum(-1), alpha[..., None] * acc + p @ v


STEP_MISTAKES = {
    "running sum not rescaled": (lambda *a: _step(*a, rescale_l=False), "running sum was not rescaled"),
    "accumulator not rescaled": (lambda *a: _step(*a, rescale_acc=False),
                                 "output accumulator was not rescaled"),
    "max not subtracted": (lambda *a: _step(*a, subtract=False), "exp of the raw scores"),
    "divides by the sum in the step": (lambda *a: _step(*a, normalise=True),
                                       "divided by the running sum inside the step"),
    "block max only": (lambda *a: _step(*a, new_max="block"), "block's maximum alone"),
    "max never updated": (lambda *a: _step(*a, new_max="old"), "running maximum was not updated"),
    "returns two things": (lambda *a: _step(*a)[:2], r"return 3 values \(m, l, acc\)"),
    "acc transposed": (lambda *a: (*_step(*a)[:2], _step(*a)[2].transpose(-1, -2)), "wrong shape"),
    "rescales l in place": (_step_in_place, "changed its input `l` in place"),
    "returns float32": (lambda *a: tuple(x.float() for x in _step(*a)), "is float32, expected float64"),
    "float64 inside, never cast back": (_float64_never_cast_back,
                                        r"in float32, .*is float64, expected float32"),
    "p against the old maximum": (_old_max_for_p,
                                  r"first block.*against the old maximum, p = exp\(scores - m\)"),
    "p against the block's maximum": (_block_max_for_p, "against the block's own maximum"),
    "alpha inverted": (lambda *a: _alpha_inverted(*a, guard=False), "rescaling factor is inverted"),
    "alpha inverted, inf guarded": (_alpha_inverted, r"later block.*rescaling factor is inverted"),
    "block max, then rescaled": (_block_max_then_rescale,
                                 r"masked scores.*NaN or infinity: a masked key .* not the block's maximum"),
    "no guard for a row masked before any key": (lambda *a: _step(*a, guard=False),
                                                 r"masks the whole row of two queries: the new l contains "
                                                 r"NaN or infinity: .* Guard it"),
    "guarded l, acc forgotten": (_guards_l_only, r"masks the whole row.*the new acc contains NaN"),
    "a fully masked row takes the block's maximum": (_max_skips_masked_rows,
                                                     r"seen no key yet: its running maximum must stay -inf"),
}


def _step_where(m, l, acc, scores, v):  # the package's guard against -inf - -inf, with torch.where
    m_new = torch.max(m, scores.max(dim=-1).values)
    safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
    p = (scores - safe.unsqueeze(-1)).exp()
    alpha = (m - safe).exp()
    pv = torch.einsum("...tb,...bd->...td", p, v)
    return [m_new, l * alpha + p.sum(dim=-1), acc * alpha.unsqueeze(-1) + pv]


def _step_float32_inside(m, l, acc, scores, v):  # computed in float32, cast back: too coarse? no, 1e-6
    m_new = torch.stack([m, scores.amax(-1)]).amax(0)
    p = torch.exp(scores - m_new[..., None]).nan_to_num(0.0)  # NaN only where the row has seen no key
    alpha = torch.exp(m - m_new).nan_to_num(0.0)
    return m_new, (alpha * l + p.sum(-1)).to(l.dtype), (alpha[..., None] * acc + p @ v).to(acc.dtype)


def _step_float64_cast_back(m, l, acc, scores, v):
    """float64 inside, einsum, every result cast back to the inputs' dtype."""
    m64, l64, a64, s64, v64 = (x.double() for x in (m, l, acc, scores, v))
    m_new = torch.maximum(m64, s64.amax(-1))
    seen = torch.isfinite(m_new)  # False for a row with no key seen yet
    p = torch.exp(s64 - torch.where(seen, m_new, 0.0)[..., None])
    alpha = torch.exp(m64 - torch.where(seen, m_new, 0.0))
    acc_new = alpha[..., None] * a64 + torch.einsum("...tk,...kd->...td", p, v64)
    return tuple(x.to(scores.dtype) for x in (m_new, alpha * l64 + p.sum(-1), acc_new))


def _step_masked_by_hand(m, l, acc, scores, v):
    """exp only where the score is finite, zeros elsewhere."""
    m_new = torch.maximum(m, scores.amax(-1))
    finite = torch.isfinite(scores)
    p = torch.where(finite, torch.exp(scores.masked_fill(~finite, 0.0) - m_new[..., None]), 0.0)
    alpha = torch.where(torch.isneginf(m_new), 0.0, torch.exp(m - m_new))
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v


STEP_RIGHT = {
    "the package": online_softmax_step,
    "float64 inside, cast back": _step_float64_cast_back,
    "exp only of the finite scores": _step_masked_by_hand,
    "plain": _step,
    "torch.where guard, einsum, a list": _step_where,
    "stack of maxima": _step_float32_inside,
}


@pytest.mark.parametrize("name", STEP_RIGHT)
def test_step_check_accepts_right_answers(name, capsys):
    assert checks.check_online_softmax_step(STEP_RIGHT[name])
    assert "[x] online_softmax_step" in capsys.readouterr().out


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_step_check_rejects_mistakes(name):
    fn, message = STEP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_online_softmax_step(fn)


def test_step_check_catches_overflow_when_only_large_logits_break_it():
    def overflows_only_when_large(m, l, acc, scores, v):  # right in exact arithmetic, no running max
        p = torch.exp(scores)
        scale = torch.exp(-torch.maximum(m, scores.amax(-1)))
        m_new = torch.maximum(m, scores.amax(-1))
        l_new = (l * torch.exp(m) + p.sum(-1)) * scale
        return m_new, l_new, (acc * torch.exp(m)[..., None] + p @ v) * scale[..., None]

    with pytest.raises(CheckFailed, match="NaN or infinity.*Subtract the new running maximum"):
        checks.check_online_softmax_step(overflows_only_when_large)


# ----------------------------------------------------------------------------- task 2: the loop

def _start(q, v, m0=-math.inf):
    m = torch.full(q.shape[:-1], m0, dtype=q.dtype)
    return m, torch.zeros(q.shape[:-1], dtype=q.dtype), torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)


def _loop(q, k, v, block_size, causal=False, *, scale=True, mask_ge=False, ahead=False, divide="end",
          partial=True, use_mask=True, m0=-math.inf, bottom_right=False):
    """A learner's tiled loop: the defaults give the right answer, each option one mistake."""
    T, S = q.shape[-2], k.shape[-2]
    m, l, acc = _start(q, v, m0)
    qs = q / math.sqrt(q.shape[-1]) if scale else q
    for s in range(0, S if partial else S - S % block_size, block_size):
        scores = qs @ k[..., s:s + block_size, :].transpose(-2, -1)
        if causal and use_mask:
            t = torch.arange(T)[:, None] + (S - T if bottom_right else 0)  # the query's position
            key = torch.arange(s, s + scores.shape[-1])
            blocked = key >= t if mask_ge else (key > t + 1 if ahead else key > t)
            scores = scores.masked_fill(blocked, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., s:s + block_size, :])
        if divide == "every":
            acc = acc / l[..., None]
    return acc / l[..., None] if divide == "end" else acc


def _block_relative_mask(q, k, v, block_size, causal=False):
    """Causal positions counted from the start of each block instead of the sequence."""
    T, S = q.shape[-2], k.shape[-2]
    m, l, acc = _start(q, v)
    for s in range(0, S, block_size):
        scores = q @ k[..., s:s + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.arange(scores.shape[-1]) > torch.arange(T)[:, None], -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., s:s + block_size, :])
    return acc / l[..., None]


def _whole_softmax_by_hand(q, k, v, block_size, causal=False):
    """Exact attention with the whole (T, S) matrix, softmax written out: right values, no tiling."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, T, S)
    if causal:
        T, S = scores.shape[-2:]
        scores = scores.masked_fill(torch.arange(S) > torch.arange(T)[:, None], -math.inf)
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True) @ v


def _row_by_row(q, k, v, block_size, causal=False):
    """One query at a time, over all S keys at once: S scores held, not block_size."""
    rows = []
    for t in range(q.shape[-2]):
        scores = torch.einsum("bd,bsd->bs", q[:, t], k) / math.sqrt(q.shape[-1])  # (B, S)
        if causal:
            scores = scores.masked_fill(torch.arange(k.shape[-2]) > t, -math.inf)
        e = torch.exp(scores - scores.amax(-1, keepdim=True))
        rows.append(torch.einsum("bs,bsd->bd", e / e.sum(-1, keepdim=True), v))
    return torch.stack(rows, 1)


def _whole_mask_first(q, k, v, block_size, causal=False):
    """Tiled scores, but a (T, S) causal mask built before the loop."""
    T, S = q.shape[-2], k.shape[-2]
    mask = torch.ones(T, S, dtype=torch.bool).tril() if causal else None
    m, l, acc = _start(q, v)
    for s in range(0, S, block_size):
        scores = q @ k[..., s:s + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(~mask[:, s:s + block_size], -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., s:s + block_size, :])
    return acc / l[..., None]


def _every_block_at_once(q, k, v, block_size, causal=False):
    """Pads the keys to whole blocks and scores all of them in one einsum: (B, T, n_blocks, Bk)."""
    B, T, S = q.shape[0], q.shape[-2], k.shape[-2]
    pad = -S % block_size
    kb = F.pad(k, (0, 0, 0, pad)).reshape(B, -1, block_size, k.shape[-1])  # (B, nb, Bk, Dh)
    vb = F.pad(v, (0, 0, 0, pad)).reshape(B, -1, block_size, v.shape[-1])  # (B, nb, Bk, Dv)
    scores = torch.einsum("btd,bnkd->btnk", q, kb) / math.sqrt(q.shape[-1])  # (B, T, nb, Bk)
    key = torch.arange(S + pad).reshape(-1, block_size)  # (nb, Bk)
    hidden = key >= S
    if causal:
        hidden = hidden | (key > torch.arange(T)[:, None, None])  # (T, nb, Bk)
    scores = scores.masked_fill(hidden, -math.inf)
    m, l, acc = _start(q, v)
    for n in range(kb.shape[1]):
        m, l, acc = online_softmax_step(m, l, acc, scores[:, :, n], vb[:, n])
    return acc / l[..., None]


def _blocks_one_too_wide(q, k, v, block_size, causal=False):
    """Right values with blocks of block_size + 1 keys."""
    return _loop(q, k, v, block_size + 1, causal)


def _scales_q_in_place(q, k, v, block_size, causal=False):
    q /= math.sqrt(q.shape[-1])
    return _loop(q * math.sqrt(q.shape[-1]), k, v, block_size, causal)


def _state_in_float64(q, k, v, block_size, causal=False):
    """Builds m, l, acc in float64 whatever q's dtype: a float32 input gives a float64 output."""
    out = _loop(q.double(), k.double(), v.double(), block_size, causal)
    return out


def _plain_exp_sums(q, k, v, block_size, causal=False):
    """Tiled, but no running maximum: exp of the raw scores summed block by block, divided at the end."""
    T = q.shape[-2]
    l, acc = q.new_zeros(q.shape[:-1]), q.new_zeros(*q.shape[:-1], v.shape[-1])
    for s in range(0, k.shape[-2], block_size):
        scores = q @ k[..., s:s + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.arange(s, s + scores.shape[-1]) > torch.arange(T)[:, None],
                                        -math.inf)
        p = scores.exp()
        l, acc = l + p.sum(-1), acc + p @ v[..., s:s + block_size, :]
    return acc / l[..., None]


def _fixed_block_width(q, k, v, block_size, causal=False):
    """block_size ignored: blocks of 64 keys, as the package's default."""
    return _loop(q, k, v, 64, causal)


LOOP_MISTAKES = {
    "no final division": (lambda *a: _loop(*a, divide="never"), "never divided by the running sum"),
    "divides at every block": (lambda *a: _loop(*a, divide="every"), "divided by l after every block"),
    "no scaling": (lambda *a: _loop(*a, scale=False), "not scaled"),
    "causal mask ignored": (lambda *a: _loop(*a, use_mask=False), "causal mask is ignored"),
    "causal mask hides the diagonal": (lambda *a: _loop(*a, mask_ge=True),
                                       "off by one: it hides the diagonal"),
    "causal mask one key ahead": (lambda *a: _loop(*a, ahead=True),
                                  r"off by one: query t also sees key t \+ 1\. Block the keys whose "
                                  r"position j = s \+ column .* is j > t\."),
    "last partial block dropped": (lambda *a: _loop(*a, partial=False), "last, partial block"),
    "mask aligned at the bottom right": (lambda *a: _loop(*a, bottom_right=True),  # as exercise 10's cache
                                         r"aligned at the bottom right, as exercise 10's KV cache.*no offset "
                                         r"S - T"),
    "mask counted within the block": (_block_relative_mask, "from the start of each block"),
    "crashes": (lambda q, k, v, b, c=False: q @ k, "your function raised RuntimeError"),
    "plain softmax": (lambda q, k, v, b, c=False: torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), -1) @ v,
                      r"called `torch.softmax`.*by hand"),
    "softmax as a method": (lambda q, k, v, b, c=False: (q @ k.mT / math.sqrt(q.shape[-1])).softmax(-1) @ v,
                            r"called `torch.Tensor.softmax`"),
    "PyTorch's fused attention": (lambda q, k, v, b, c=False: F.scaled_dot_product_attention(q, k, v,
                                                                                             is_causal=c),
                                  r"called `torch.nn.functional.scaled_dot_product_attention`"),
    "the course's tiled_attention": (
        lambda q, k, v, b, c=False: efficient.tiled_attention(q, k, v, c, block_size=b),
        r"called `transformer_course.efficient.tiled_attention`"),
    "whole matrix, softmax by hand": (_whole_softmax_by_hand,
                                      r"built a \(T, S\) = \(8, 22\) score matrix.*never hold more than "
                                      r"\(T, block_size\) = \(8, 6\) scores at once"),
    "one query at a time over all keys": (_row_by_row, r"tensor of shape \(2, 22\), with all S = 22 keys"),
    "a whole (T, S) causal mask": (_whole_mask_first, r"built a \(T, S\) = \(9, 20\) mask"),
    "every block in one einsum": (_every_block_at_once,
                                  r"computed 192 scores per batch row at once \(a tensor of shape "
                                  r"\(2, 8, 4, 6\)\), more than T \* block_size"),
    "blocks one key too wide": (_blocks_one_too_wide,
                                r"a block of 7 keys .* block_size = 6: one key too many"),
    "no running maximum": (_plain_exp_sums, r"scores near 800 and -800: the output has NaN or infinity .* "
                                            r"near \+800: exp of a raw score overflows.*running maximum"),
    "running maximum starts at 0": (lambda *a: _loop(*a, m0=0.0),
                                    r"near -800: the running maximum must start at -inf"),
    "block_size ignored (fixed 64)": (_fixed_block_width,
                                      r"ignores block_size: here it scored all S = 22 keys at once .* "
                                      r"it scores blocks of 64 keys"),
    "scales q in place": (_scales_q_in_place, "changed its input `q` in place"),
    "float64 state for float32 inputs": (_state_in_float64, "is float64, expected float32"),
}


def _own_step(m, l, acc, scores, v):
    """The learner's own step from task 1, without the package's guard against -inf - -inf."""
    m_new = torch.maximum(m, scores.amax(-1))
    p = torch.exp(scores - m_new[..., None])
    alpha = torch.exp(m - m_new)
    return m_new, alpha * l + p.sum(-1), alpha[..., None] * acc + p @ v


def _notebook(q, k, v, block_size, causal=False):
    """The solution notebook's answer, with the learner's own step."""
    T, S = q.shape[-2], k.shape[-2]
    q = q / math.sqrt(q.shape[-1])
    m = q.new_full(q.shape[:-1], float("-inf"))
    l = q.new_zeros(q.shape[:-1])
    acc = q.new_zeros(*q.shape[:-1], v.shape[-1])
    for s in range(0, S, block_size):
        scores = q @ k[..., s:s + block_size, :].transpose(-2, -1)
        if causal:
            scores = scores.masked_fill(torch.arange(s, s + scores.shape[-1]) > torch.arange(T)[:, None],
                                        float("-inf"))
        m, l, acc = _own_step(m, l, acc, scores, v[..., s:s + block_size, :])
    return acc / l[..., None]


def _split_einsum_where(q, k, v, block_size, causal=False):
    """k.split and v.split, einsum scores, torch.where for the mask, the learner's own step."""
    T = q.shape[-2]
    m, l, acc = _start(q, v)
    s = 0
    for kb, vb in zip(k.split(block_size, dim=-2), v.split(block_size, dim=-2), strict=True):
        scores = torch.einsum("btd,bkd->btk", q, kb) * q.shape[-1] ** -0.5
        if causal:
            allowed = torch.arange(s, s + kb.shape[-2]) <= torch.arange(T).unsqueeze(1)
            scores = torch.where(allowed, scores, torch.tensor(-math.inf, dtype=q.dtype))
        m, l, acc = _own_step(m, l, acc, scores, vb)
        s += kb.shape[-2]
    return acc / l.unsqueeze(-1)


def _pre_transposed(q, k, v, block_size, causal=False):
    """k transposed once before the loop, sliced along its last axis; float positions made once."""
    kt = k.transpose(1, 2).contiguous()  # (B, Dh, S): all keys, not scores
    positions = torch.arange(k.shape[1], dtype=q.dtype)  # (S,): positions as floats, not scores
    m, l, acc = _start(q, v)
    for s in range(0, k.shape[1], block_size):
        scores = torch.matmul(q, kt[..., s:s + block_size]) / math.sqrt(q.shape[-1])
        if causal:
            hidden = positions[s:s + block_size] > torch.arange(q.shape[1])[:, None]  # (T, Bk)
            scores = scores.masked_fill(hidden, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[:, s:s + block_size])
    return acc / l[..., None]


def _batch_by_batch(q, k, v, block_size, causal=False):
    """A loop over the batch too: 2-D blocks, outputs stacked."""
    return torch.stack([_loop(q[b], k[b], v[b], block_size, causal) for b in range(q.shape[0])])


def _skips_future_blocks(q, k, v, block_size, causal=False):
    """Causal: the key blocks after the last query are never scored."""
    T, S = q.shape[-2], k.shape[-2]
    m, l, acc = _start(q, v)
    for s in range(0, min(S, T) if causal else S, block_size):
        scores = q @ k[..., s:s + block_size, :].mT / math.sqrt(q.shape[-1])
        if causal:
            hidden = torch.arange(s, s + scores.shape[-1]) > torch.arange(T)[:, None]  # (T, Bk)
            scores = scores.masked_fill(hidden, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., s:s + block_size, :])
    return acc / l[..., None]


def _float64_inside(q, k, v, block_size, causal=False):
    return _notebook(q.double(), k.double(), v.double(), block_size, causal).to(q.dtype)


def _padded_keys(q, k, v, block_size, causal=False):
    """Keys and values padded to whole blocks; the padding is masked with -inf."""
    T, S = q.shape[-2], k.shape[-2]
    pad = -S % block_size
    k, v = F.pad(k, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
    m, l, acc = _start(q, v)
    for s in range(0, S + pad, block_size):
        scores = q @ k[:, s:s + block_size].transpose(1, 2) / math.sqrt(q.shape[-1])
        key = torch.arange(s, s + block_size)
        hidden = (key >= S) | (key > torch.arange(T)[:, None]) if causal else (key >= S).expand(T, -1)
        scores = scores.masked_fill(hidden, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[:, s:s + block_size])
    return acc / l[..., None]


def _mul_and_sum(q, k, v, block_size, causal=False):
    """Scores as a broadcast product summed over Dh, no matrix product; prints a shape on the way."""
    T = q.shape[-2]
    m, l, acc = _start(q, v)
    for s in range(0, k.shape[-2], block_size):
        kb = k[:, s:s + block_size]  # (B, Bk, Dh)
        scores = (q[:, :, None, :] * kb[:, None, :, :]).sum(-1) / math.sqrt(q.shape[-1])  # (B, T, Bk)
        if s == 0:
            print("first block of scores:", tuple(scores.shape))
        if causal:
            hidden = torch.arange(s, s + kb.shape[1]) > torch.arange(T)[:, None]  # (T, Bk)
            scores = scores.masked_fill(hidden, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[:, s:s + block_size])
    return acc / l[..., None]


def _baddbmm_and_bias(q, k, v, block_size, causal=False):
    """Scores with torch.baddbmm, the causal mask as an additive (T, Bk) bias of 0 and -inf."""
    B, T, Dh = q.shape
    m, l, acc = _start(q, v)
    for s in range(0, k.shape[1], block_size):
        kb = k[:, s:s + block_size]
        w = kb.shape[1]
        scores = torch.baddbmm(q.new_zeros(B, T, w), q, kb.transpose(1, 2), alpha=1 / math.sqrt(Dh))
        if causal:
            bias = q.new_zeros(T, w).masked_fill(torch.arange(s, s + w) > torch.arange(T)[:, None], -math.inf)
            scores = scores + bias
        m, l, acc = online_softmax_step(m, l, acc, scores, v[:, s:s + block_size])
    return acc / l[..., None]


def _keys_times_queries(q, k, v, block_size, causal=False):
    """Scores the other way round, (B, Bk, T) = k_block @ q^T, then transposed."""
    T = q.shape[1]
    m, l, acc = _start(q, v)
    for s in range(0, k.shape[1], block_size):
        scores = (k[:, s:s + block_size] @ q.mT).mT / math.sqrt(q.shape[-1])  # (B, T, Bk)
        if causal:
            hidden = torch.arange(s, s + scores.shape[-1]) > torch.arange(T)[:, None]  # (T, Bk)
            scores = scores.masked_fill(hidden, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[:, s:s + block_size])
    return acc / l[..., None]


def _query_by_query(q, k, v, block_size, causal=False):
    """One query at a time, its keys in blocks: a column of scores k_block @ q_t, a list of rows."""
    B, T, Dh = q.shape
    rows = []
    for t in range(T):
        m, l, acc = q.new_full((B, 1), -math.inf), q.new_zeros(B, 1), q.new_zeros(B, 1, v.shape[-1])
        for s in range(0, k.shape[1], block_size):
            column = k[:, s:s + block_size] @ q[:, t, :, None] / math.sqrt(Dh)  # (B, Bk, 1)
            scores = column.mT  # (B, 1, Bk)
            if causal:
                scores = scores.masked_fill(torch.arange(s, s + scores.shape[-1]) > t, -math.inf)
            m, l, acc = online_softmax_step(m, l, acc, scores, v[:, s:s + block_size])
        rows.append(acc / l[..., None])
    return torch.cat(rows, 1)


LOOP_RIGHT = {
    "baddbmm and an additive bias": _baddbmm_and_bias,
    "keys times queries, transposed": _keys_times_queries,
    "one query at a time": _query_by_query,
    "the package (it also tiles the queries)": lambda q, k, v, b, c=False: tiled_attention(q, k, v, c,
                                                                                            block_size=b),
    "plain loop with the course's step": _loop,
    "the notebook's answer with the learner's own step": _notebook,
    "split, einsum, torch.where": _split_einsum_where,
    "k transposed once": _pre_transposed,
    "a loop over the batch too": _batch_by_batch,
    "future blocks skipped": _skips_future_blocks,
    "float64 inside, cast back": _float64_inside,
    "keys padded to whole blocks": _padded_keys,
    "broadcast product and sum, with a print": _mul_and_sum,
}


@pytest.mark.parametrize("name", LOOP_RIGHT)
def test_loop_check_accepts_right_answers(name, capsys):
    assert checks.check_tiled_attention(LOOP_RIGHT[name])
    assert "[x] tiled_attention" in capsys.readouterr().out


@pytest.mark.parametrize("name", LOOP_MISTAKES)
def test_loop_check_rejects_mistakes(name):
    fn, message = LOOP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_tiled_attention(fn)


def test_loop_check_reports_the_blocks_it_counted(capsys):
    assert checks.check_tiled_attention(_loop)
    assert "4 blocks of scores for S=22, block_size=6" in capsys.readouterr().out


def test_the_watch_keeps_autograd_and_counts_blocks():
    """Under the watch a right answer runs as usual: same values, same gradients."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, d, generator=g, dtype=torch.float64, requires_grad=True)
               for n, d in ((8, 5), (22, 5), (22, 3)))
    watch = _ScoreWatch(B=2, T=8, S=22, Dh=5, Dv=3, block_size=6)
    out = _watched(_notebook, watch)(q, k, v, 6, True)
    assert watch.verdict("demo", "here") == 4  # ceil(22 / 6) blocks of keys
    ours = torch.autograd.grad(out.sum(), (q, k, v))
    theirs = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True).sum(), (q, k, v))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_the_shortcuts_come_back_after_the_check():
    checks.check_tiled_attention(_loop)
    with pytest.raises(CheckFailed):
        checks.check_tiled_attention(LOOP_MISTAKES["plain softmax"][0])
    x = torch.randn(3, 4)
    assert torch.allclose(torch.softmax(x, -1).sum(-1), torch.ones(3))
    assert F.scaled_dot_product_attention(x[None], x[None], x[None]).shape == (1, 3, 4)
