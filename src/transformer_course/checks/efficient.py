"""Checks for solutions/11_efficient_attention: the online-softmax step and the tiled loop.

Shapes: B batch, T queries, S keys, Bk keys in one block, Dh head size, Dv value size.
The running state of one query: m (running maximum of its scores), l (running sum of
exp(score - m)) and acc (running sum of exp(score - m) * value, not yet divided by l).

The tiled loop is checked for what it computes and for how: while the learner's function
runs, a ``TorchFunctionMode`` sees the shape of every tensor it builds, so an answer that
holds the whole (T, S) score matrix (or all S scores of a query) at once is told so, even
when its numbers are right.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..efficient import online_softmax_step
from ._core import SHORTCUTS, CheckFailed, call, close, compare, fmt_shape, run_check, unpack

__all__ = ["check_online_softmax_step", "check_tiled_attention"]


# ----------------------------------------------------------------------------- task 1: one step

def _same(got: object, want: torch.Tensor) -> bool:
    return close(got, want, nonfinite=True)


# What NaN or infinity in the new l or acc means, by the kind of state it came from.
_NOT_FINITE = {
    "first": "in the first block the old maximum m is -inf, so anything measured against it, "
             "exp(scores - m) or exp(m_new - m), is exp(+inf). Measure against the new maximum, "
             "which is finite: p = exp(scores - m_new[..., None]) and alpha = exp(m - m_new) (0 here).",
    "masked": "a masked key (score -inf) must add exp(-inf) = 0, and a query whose whole row of "
              "this block is masked (all its keys in its future, as task 2's causal mask makes them) "
              "keeps its finite m, l and acc. Subtract the new running maximum m_new = "
              "torch.maximum(m, scores.amax(-1)), finite here, not the block's maximum alone (-inf "
              "for that row): exp(-inf - (-inf)) is NaN.",
    "empty": "this query's whole row of the block is masked (-inf) before it has seen any key: m is "
             "still -inf, so m_new is -inf too, and exp(-inf - (-inf)) is NaN. Guard it: where m_new is "
             "-inf, subtract 0 instead, m_safe = torch.where(torch.isinf(m_new), 0.0, m_new), and "
             "compute p = exp(scores - m_safe[..., None]) and alpha = exp(m - m_safe); both are then 0, "
             "and the state stays m = -inf, l = 0, acc = 0.",
    "large": "exp of a large score overflows. Subtract the new running maximum before exp: "
             "p = exp(scores - m_new[..., None]).",
}


def _step_cases(g: torch.Generator) -> list[tuple[str, str, tuple[torch.Tensor, ...]]]:
    """(kind, description, (m, l, acc, scores, v)): a first block, later blocks (one in float32),
    a block with masked scores, a first block that masks whole rows, large logits."""
    f64 = {"dtype": torch.float64}
    cases = []
    for shape, (T, Bk, Dv) in (((), (4, 3, 2)), ((2, 3), (5, 4, 3)), ((1,), (6, 7, 4)), ((2,), (3, 5, 2))):
        scores = torch.randn(*shape, T, Bk, generator=g, **f64) * 2
        v = torch.randn(*shape, Bk, Dv, generator=g, **f64)
        # a previous state whose maximum is below the block's for some rows, above it for others
        m = scores.amax(-1) + torch.randn(*shape, T, generator=g, **f64) * 2
        l = 1 + torch.rand(*shape, T, generator=g, **f64) * 3
        acc = torch.randn(*shape, T, Dv, generator=g, **f64)
        cases.append(("later", f"a later block, scores {fmt_shape(scores.shape)}", (m, l, acc, scores, v)))
    # the last of them in float32: the new state keeps the dtype of the inputs
    state32 = tuple(x.float() for x in cases.pop()[2])
    cases.append(("later", f"a later block in float32, scores {fmt_shape(state32[3].shape)}", state32))
    T, Bk, Dv = 3, 5, 2
    scores = torch.randn(T, Bk, generator=g, **f64)
    first = (torch.full((T,), -math.inf, **f64), torch.zeros(T, **f64), torch.zeros(T, Dv, **f64),
             scores, torch.randn(Bk, Dv, generator=g, **f64))
    cases.insert(0, ("first", "the first block (m = -inf, l = 0, acc = 0)", first))
    # masked keys, as task 2's causal mask sets them: part of a row, and one query's whole row
    T, Bk, Dv = 4, 5, 3
    masked = torch.randn(T, Bk, generator=g, **f64) * 2
    masked[0, 3:], masked[1], masked[2, 0] = -math.inf, -math.inf, -math.inf
    state = (torch.randn(T, generator=g, **f64) * 2, 1 + torch.rand(T, generator=g, **f64) * 3,
             torch.randn(T, Dv, generator=g, **f64), masked, torch.randn(Bk, Dv, generator=g, **f64))
    cases.append(("masked", "a later block with masked scores (-inf), one query's whole row masked", state))
    big = scores * 50 + 800  # logits near 800: exp(800) overflows even in float64
    later = (big.amax(-1) - 3, torch.ones(3, **f64), torch.randn(3, 2, generator=g, **f64),
             big, torch.randn(5, 2, generator=g, **f64))
    cases.append(("large", "large logits near 800", later))
    # a first block that masks whole rows (a padding mask, or blocks met in another order): the
    # state of those queries must stay m = -inf, l = 0, acc = 0, without NaN
    T, Bk, Dv = 4, 3, 2
    empty = torch.randn(T, Bk, generator=g, **f64)
    empty[1], empty[2], empty[3, :2] = -math.inf, -math.inf, -math.inf  # rows 1 and 2 wholly masked
    state = (torch.full((T,), -math.inf, **f64), torch.zeros(T, **f64), torch.zeros(T, Dv, **f64),
             empty, torch.randn(Bk, Dv, generator=g, **f64))
    cases.append(("empty", "a first block (m = -inf, l = 0, acc = 0) that masks the whole row of two "
                  "queries", state))
    return cases


def _step_variants(m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor, scores: torch.Tensor,
                   v: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """The new l of wrong formulas, each with what it got wrong (float64 state in)."""
    m_new = torch.maximum(m, scores.amax(-1))
    alpha = torch.exp(m - m_new)  # (..., T)
    p = torch.exp(scores - m_new[..., None]).sum(-1)  # (..., T): the block's sums
    p_old = torch.exp(scores - m[..., None]).sum(-1)
    p_block = torch.exp(scores - scores.amax(-1, keepdim=True)).sum(-1)
    return [
        (alpha * l + p_old,
         "you measured the block's terms against the old maximum, p = exp(scores - m); in the first "
         "block m is -inf, so that is exp(+inf). Subtract the new maximum: p = exp(scores - "
         "m_new[..., None]), so that p, l and acc are all measured against m_new."),
        (alpha * l + p_block,
         "you measured the block's terms against the block's own maximum, but the new l and acc are "
         "sums against the new running maximum m_new = torch.maximum(m, scores.amax(-1)): "
         "p = exp(scores - m_new[..., None])."),
        (torch.exp(m_new - m) * l + p,
         "the rescaling factor is inverted: the old l and acc were measured against m <= m_new, so "
         "they shrink, alpha = exp(m - m_new) <= 1, not exp(m_new - m)."),
    ]


def _diagnose_step(task: str, kind: str, where: str, got: tuple, state: tuple[torch.Tensor, ...]) -> None:
    dtype = state[3].dtype  # the new state must keep the dtype of the inputs
    m, l, acc, scores, v = (x.double() for x in state)
    m_ref, l_ref, acc_ref = online_softmax_step(m, l, acc, scores, v)
    m_got, l_got, acc_got = got
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float64 else {"atol": 1e-5, "rtol": 1e-4}
    if not close(m_got, m_ref, **tol):
        if close(m_got, scores.amax(-1)):
            raise CheckFailed(f"{task}: {where}: the new maximum is the block's maximum alone; it must "
                              "be the maximum over everything seen so far: torch.maximum(m, "
                              "scores.amax(-1)).")
        if close(m_got, m):
            raise CheckFailed(f"{task}: {where}: the running maximum was not updated: "
                              "m_new = torch.maximum(m, scores.amax(-1)).")
    if isinstance(m_got, torch.Tensor) and m_got.shape == m_ref.shape and torch.isneginf(m_ref).any():
        unseen = torch.isneginf(m_ref)  # queries that have seen no key yet: m stays -inf
        if not torch.isneginf(m_got.detach()[unseen]).all():
            raise CheckFailed(f"{task}: {where}: a query whose scores so far are all masked has seen no "
                              "key yet: its running maximum must stay -inf, m_new = torch.maximum(m, "
                              "scores.amax(-1)).")
        m_got, m_ref = m_got.masked_fill(unseen, 0.0), m_ref.masked_fill(unseen, 0.0)
    compare(task, m_got, m_ref, **tol, what=f"the new running maximum m, {where},", dtype=dtype)

    def named_formula() -> None:
        if not (_same(l_got, l_ref) and _same(acc_got, acc_ref)):
            for l_wrong, message in _step_variants(m, l, acc, scores, v):
                if _same(l_got, l_wrong) and not _same(l_ref, l_wrong):
                    raise CheckFailed(f"{task}: {where}: {message}")

    def finite() -> None:
        for name, x, ref in (("l", l_got, l_ref), ("acc", acc_got, acc_ref)):
            if isinstance(x, torch.Tensor) and x.shape == ref.shape and not torch.isfinite(x).all():
                raise CheckFailed(f"{task}: {where}: the new {name} contains NaN or infinity: "
                                  f"{_NOT_FINITE.get(kind, _NOT_FINITE['large'])}")

    # with masked scores NaN is the mistake itself; elsewhere a wrong formula names it better
    for diagnose in (finite, named_formula) if kind in ("masked", "empty") else (named_formula, finite):
        diagnose()
    p = torch.exp(scores - m_ref[..., None])  # (..., T, Bk)
    alpha = torch.exp(m - m_ref)  # (..., T)
    if not close(l_got, l_ref, **tol):
        if close(l_got, l + p.sum(-1)):
            raise CheckFailed(f"{task}: {where}: the running sum was not rescaled when the maximum "
                              "changed: the old l counts exp(score - m_old); multiply it by "
                              "exp(m_old - m_new) before adding the block's sum.")
        raw = torch.exp(scores).sum(-1)
        if close(l_got, alpha * l + raw) or close(l_got, l + raw):
            raise CheckFailed(f"{task}: {where}: you took exp of the raw scores: subtract the running "
                              "maximum first, p = exp(scores - m_new[..., None]), or exp overflows for "
                              "large scores.")
    compare(task, l_got, l_ref, **tol, what=f"the new running sum l, {where},", dtype=dtype)
    if not close(acc_got, acc_ref, **tol):
        if close(acc_got, acc + p @ v):
            raise CheckFailed(f"{task}: {where}: the output accumulator was not rescaled when the "
                              "maximum changed: multiply the old acc by exp(m_old - m_new) (one "
                              "factor per query, acc * alpha[..., None]) before adding p @ v.")
        if close(acc_got, acc_ref / l_ref[..., None]):
            raise CheckFailed(f"{task}: {where}: acc was divided by the running sum inside the step. "
                              "Keep acc un-normalised (a sum of exp(score - m) * value) and divide by l "
                              "once, after the last block.")
    compare(task, acc_got, acc_ref, **tol, what=f"the new accumulator acc, {where},", dtype=dtype)


def check_online_softmax_step(fn: Callable) -> bool:
    """Check ``fn(m, l, acc, scores, v) -> (m, l, acc)``: one block of the online softmax."""
    task = "online_softmax_step"

    def body() -> str:
        g = torch.Generator().manual_seed(1111)
        cases = _step_cases(g)
        for kind, where, state in cases:
            got = unpack(task, call(task, fn, *state), ("m", "l", "acc"))
            _diagnose_step(task, kind, f"for {where}", got, state)
        return (f"{len(cases)} states, including a first block, a float32 one, masked scores, a "
                "first block that masks whole rows and logits near 800")

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: the loop

# The library's and the course's own attention: the task is to write the loop by hand.
_WHOLE_ATTENTION = (*SHORTCUTS["softmax"], *SHORTCUTS["attention"],
                    "transformer_course.efficient:tiled_attention",
                    "transformer_course.efficient:naive_attention",
                    "transformer_course.efficient:fused_attention",
                    "transformer_course.attention:scaled_dot_product_attention")

# Operations that sum over the head size: the ones that turn queries and keys into scores.
_CONTRACTIONS = frozenset({"matmul", "__matmul__", "__rmatmul__", "bmm", "mm", "einsum", "baddbmm",
                           "tensordot", "inner", "linear", "sum", "mv", "dot"})


def _results(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _results(item)]
    return []


class _ScoreWatch(TorchFunctionMode):
    """Watches the tensors a tiled loop builds (top-level torch calls only, so nothing twice).

    It records the first tensor that holds too many scores at once, counts the blocks of
    scores (the results of a sum over the head size Dh, in either orientation) and notes how
    many keys each block of all T queries holds (``widths``, to the end). It follows
    which tensors come from the inputs q, k, v, so that positions such as torch.arange(S) are
    not taken for scores. The learner's code runs unchanged: gradients, printing, everything.
    """

    def __init__(self, B: int, T: int, S: int, Dh: int, Dv: int, block_size: int):
        super().__init__()
        self.B, self.T, self.S, self.Dh, self.Dv, self.block = B, T, S, Dh, Dv, block_size
        self.padded = -(-S // block_size) * block_size  # S rounded up to whole blocks
        self.too_big: tuple[str, torch.Tensor] | None = None
        self.blocks = 0  # blocks of scores computed
        self.widths: list[int] = []  # keys in each block of scores for all T queries
        self.derived: dict[int, torch.Tensor] = {}  # id -> tensor computed from q, k or v (kept alive)

    def follow(self, *inputs: object) -> None:
        """Count these tensors (the learner's inputs) as the start of everything derived."""
        for t in _results(list(inputs)):
            self.derived[id(t)] = t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.S > self.block:
            name = getattr(func, "__name__", "")
            inputs = _results(list(args)) + _results(list((kwargs or {}).values()))
            derived = any(id(x) in self.derived for x in inputs)
            for result in _results(out):
                if derived and self.too_big is None:
                    self.derived[id(result)] = result
                self._note_width(name, result, inputs)
                self._see(name, result, inputs, derived)
        return out

    def _note_width(self, name: str, out: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        """Note the keys of a block of scores: a sum over Dh with the T queries on one of its last axes."""
        last2 = tuple(out.shape[-2:])
        if (name not in _CONTRACTIONS or not out.is_floating_point() or len(last2) < 2
                or self.Dh in last2 or self.T not in last2
                or not any(self.Dh in x.shape[-2:] for x in inputs)):
            return
        self.widths.append(last2[1] if last2[0] == self.T else last2[0])

    def fixed_width(self) -> int | None:
        """The width of the blocks when the keys went by in blocks of one width other than block_size."""
        w = self.widths
        steady = len(w) >= 2 and len(set(w[:-1])) == 1 and w[-1] <= w[0]  # the last block may be shorter
        return w[0] if steady and w[0] != self.block and sum(w) == self.S else None

    def _see(self, name: str, out: torch.Tensor, inputs: list[torch.Tensor], derived: bool) -> None:
        last2 = tuple(out.shape[-2:])
        if self.too_big is not None or not last2:
            return
        if last2 in ((self.T, self.S), (self.S, self.T)):  # the whole matrix, either way round
            self.too_big = ("matrix" if derived and out.is_floating_point() else "mask", out)
            return
        floating = out.is_floating_point()
        keys = {self.S, self.padded} & set(last2)
        features = {self.Dh, self.Dv} & set(last2)  # k, v and their transposes hold no scores
        if (derived and floating and keys and not features
                and self.S not in (self.T, self.B, self.Dh, self.Dv)):
            self.too_big = ("row", out)
            return
        if name not in _CONTRACTIONS or not floating or self.Dh in last2 or last2[-1] == self.Dv:
            return
        if not any(self.Dh in x.shape[-2:] for x in inputs):
            return
        if out.numel() > self.B * self.T * self.block:
            self.too_big = ("block", out)
            return
        self.blocks += 1

    def verdict(self, task: str, where: str) -> int:
        """Raise CheckFailed when the loop held too many scores at once; else the blocks counted."""
        T, S, block = self.T, self.S, self.block
        limit = (f"the task is to never hold more than (T, block_size) = ({T}, {block}) scores at "
                 "once: loop over the keys in blocks, k[..., s:s + block_size, :].")
        if self.too_big is None:
            return self.blocks
        kind, out = self.too_big
        shape = fmt_shape(out.shape)
        if kind == "mask":
            raise CheckFailed(f"{task}: {where}: your function built a (T, S) = ({T}, {S}) mask (a "
                              f"tensor of shape {shape}), as big as the scores: build the mask of "
                              "one block at a time, key positions s .. s + Bk - 1 against the "
                              "query positions (a (T, Bk) mask).")
        if kind == "matrix":
            raise CheckFailed(f"{task}: {where}: your function built a (T, S) = ({T}, {S}) score "
                              f"matrix (a tensor of shape {shape}): {limit}")
        if kind == "row":
            raise CheckFailed(f"{task}: {where}: your function built a tensor of shape {shape}, with "
                              f"all S = {S} keys on one axis: {limit}")
        last2 = tuple(out.shape[-2:])
        width = last2[1] if last2[0] == T else last2[0] if last2[-1] == T else None
        if width is not None and width not in (S, self.padded):
            why = (f"one key too many: k[..., s:s + block_size, :] holds block_size = {block} keys"
                   if width == block + 1 else
                   "block_size was ignored: slice the keys with it, k[..., s:s + block_size, :]")
            raise CheckFailed(f"{task}: {where}: your function scored a block of {width} keys for all "
                              f"the queries (a tensor of shape {shape}), but block_size = {block}: {why}.")
        raise CheckFailed(f"{task}: {where}: your function computed {out.numel() // self.B} scores per "
                          f"batch row at once (a tensor of shape {shape}), more than T * block_size = "
                          f"{T} * {block}: {limit}")


def _watched(fn: Callable, watch: _ScoreWatch) -> Callable:
    """``fn`` run under the watch; the same signature, so that messages use the learner's names."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        watch.follow(*args, *kwargs.values())
        with watch:
            return fn(*args, **kwargs)
    return run


def _tiled_variant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int, causal: bool,
                   mistake: str = "") -> torch.Tensor:
    """The tiled loop over key blocks (all queries at once), optionally with one learner mistake."""
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 if mistake == "no scale" else 1 / math.sqrt(q.shape[-1])
    m = q.new_full(q.shape[:-1], -math.inf)
    l, acc = q.new_zeros(q.shape[:-1]), q.new_zeros(*q.shape[:-1], v.shape[-1])
    stop = S - S % block_size if mistake == "partial block dropped" else S
    shift = {"diagonal masked": 0, "one key ahead": 2}.get(mistake, 1)
    if mistake == "bottom-right":  # query t at position S - T + t, as a KV cache's new queries
        shift += S - T
    for ks in range(0, stop, block_size):
        scores = (q @ k[..., ks:ks + block_size, :].transpose(-2, -1)) * scale  # (..., T, Bk)
        if causal and mistake != "causal ignored":
            first = 0 if mistake == "block positions" else ks
            k_pos = torch.arange(first, first + scores.shape[-1])
            scores = scores.masked_fill(k_pos >= torch.arange(T)[:, None] + shift, -math.inf)
        m, l, acc = online_softmax_step(m, l, acc, scores, v[..., ks:ks + block_size, :])
        if mistake == "divided every block":
            acc = acc / l[..., None]
    if mistake in ("no final division", "divided every block"):
        return acc
    return acc / l[..., None]


_LOOP_MISTAKES = {
    "no final division": "the output was never divided by the running sum l: after the last block "
                         "return acc / l[..., None].",
    "divided every block": "acc was divided by l after every block; the next block's rescaling then "
                           "mixes normalised and un-normalised sums. Keep acc un-normalised inside "
                           "the loop and divide once, after the last block.",
    "no scale": "the scores are not scaled: divide q @ k^T by sqrt(Dh) = sqrt(q.shape[-1]).",
    "causal ignored": "the causal mask is ignored: with causal=True, query t must not see keys after t.",
    "diagonal masked": "the causal mask is off by one: it hides the diagonal, so query t cannot see "
                       "key t (and query 0 sees nothing). Block the keys whose position j = s + "
                       "column (in the whole sequence) is j > t, not j >= t.",
    "one key ahead": "the causal mask is off by one: query t also sees key t + 1. Block the keys "
                     "whose position j = s + column (in the whole sequence) is j > t.",
    "bottom-right": "the causal mask is aligned at the bottom right, as exercise 10's KV cache, where "
                    "the T new queries are the last T of S positions. Here query t sits at position t "
                    "and key s + j at position s + j, aligned at the top left as PyTorch's is_causal: "
                    "block the keys with s + j > t, with no offset S - T.",
    "block positions": "the causal mask counts key positions from the start of each block: the key "
                       "at column j of the block starting at s is key s + j; compare s + j with the "
                       "query's position t.",
    "partial block dropped": "the last, partial block of keys is missing: loop over "
                             "range(0, S, block_size); slicing k[..., s:s + block_size] stops at S.",
}

# (B, T, S, Dh, Dv, block_size, causal, dtype, large). Within a case B, T, Dh, Dv and the block
# widths differ from each other and from S (T = S once, for self-attention), so that a tensor's
# shape says what it holds. `large`: the scores lie near +800 for half the queries and near -800
# for the others, where exp overflows (or underflows to 0) unless the running maximum, started
# at -inf, is subtracted.
_LOOP_CASES = [
    (2, 8, 22, 5, 3, 6, False, torch.float64, False),   # blocks of 6, 6, 6, 4
    (1, 9, 20, 7, 3, 6, True, torch.float64, False),    # T < S: keys after T are all in the future
    (2, 16, 11, 5, 7, 4, True, torch.float64, False),   # T > S: the last queries see every key
    (2, 13, 13, 4, 6, 5, True, torch.float32, False),   # self-attention, float32 in and out
    (2, 5, 7, 3, 4, 1, True, torch.float64, False),     # one key at a time
    (2, 4, 6, 3, 5, 16, False, torch.float64, False),   # one block holds every key
    (2, 10, 20, 3, 5, 7, True, torch.float64, True),    # scores near +-800, blocks of 7, 7, 6
]

# The probe for a loop that ignores block_size: blocks of one other width show up on many keys.
_PROBE = {"B": 1, "T": 5, "S": 300, "Dh": 3, "Dv": 2, "block_size": 8}


def _loop_inputs(B: int, T: int, S: int, Dh: int, Dv: int, dtype: torch.dtype, large: bool,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, T, Dh), k (B, S, Dh), v (B, S, Dv); with ``large``, scores near +-800 (a few apart)."""
    q = torch.randn(B, T, Dh, generator=g, dtype=torch.float64)
    k = torch.randn(B, S, Dh, generator=g, dtype=torch.float64)
    v = torch.randn(B, S, Dv, generator=g, dtype=torch.float64)
    if large:  # the first feature dominates: q_0 k_0 / sqrt(Dh) = +-40 * 35 / sqrt(3), about +-808
        q[..., 0] = 40 * (1 - 2 * (torch.arange(T) % 2))  # queries 0, 2, ... near +800; 1, 3, ... near -800
        k[..., 0] = 35 + 0.05 * torch.randn(B, S, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _explain_not_finite(task: str, where: str, got: object, q: torch.Tensor, k: torch.Tensor,
                        causal: bool) -> None:
    """Name the numerical mistake behind NaN or infinity in the output, by the queries that have it."""
    if not isinstance(got, torch.Tensor) or got.shape[:-1] != q.shape[:-1] or torch.isfinite(got).all():
        return
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, T, S)
    if causal:
        T, S = scores.shape[-2:]
        scores = scores.masked_fill(torch.arange(S) > torch.arange(T)[:, None], -math.inf)
    top = scores.amax(-1)  # (B, T): each query's largest score
    bad = ~torch.isfinite(got.detach()).all(-1)  # (B, T)
    if (bad & (top > 100)).any():
        raise CheckFailed(f"{task}: {where}: the output has NaN or infinity for the queries whose scores "
                          "are near +800: exp of a raw score overflows (exp(800) is inf, even in "
                          "float64). This is what the online softmax's running maximum is for: keep m "
                          "(from -inf), measure every exp against it and rescale l and acc when it "
                          "grows, as efficient.online_softmax_step does.")
    if (bad & (top < -100)).any():
        raise CheckFailed(f"{task}: {where}: the output has NaN for the queries whose scores are all near "
                          "-800: the running maximum must start at -inf. Started at 0 it stays 0 for "
                          "these queries, exp(score - 0) underflows to 0, l stays 0, and acc / l is "
                          "0 / 0. Start from m = q.new_full(q.shape[:-1], float('-inf')).")


def _ignored_block_size(task: str, fn: Callable) -> int | None:
    """The fixed block width ``fn`` uses instead of block_size, seen on a probe of many keys."""
    g = torch.Generator().manual_seed(3333)
    B, T, S, Dh, Dv, block = _PROBE.values()
    q, k, v = _loop_inputs(B, T, S, Dh, Dv, torch.float64, False, g)
    watch = _ScoreWatch(B, T, S, Dh, Dv, block)
    try:
        call(task, _watched(fn, watch), q, k, v, block, False, forbid=_WHOLE_ATTENTION)
    except CheckFailed:
        return None
    return watch.fixed_width()


def _explain_values(task: str, where: str, got: object, q: torch.Tensor, k: torch.Tensor,
                    v: torch.Tensor, block: int, causal: bool, ref: torch.Tensor) -> None:
    if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
        return
    clean = got.detach().double().nan_to_num(0.0)
    for mistake, message in _LOOP_MISTAKES.items():
        wrong = _tiled_variant(q.double(), k.double(), v.double(), block, causal, mistake).nan_to_num(0.0)
        if not close(wrong, ref, atol=1e-6) and close(clean, wrong, atol=1e-6):
            raise CheckFailed(f"{task}: {where}: {message}")


def check_tiled_attention(fn: Callable) -> bool:
    """Check ``fn(q, k, v, block_size, causal) -> output``: exact attention, one block of keys at a time.

    Besides the values, the check watches the shapes of the tensors ``fn`` builds: no more than
    (T, block_size) scores at once, no (T, S) mask.
    """
    task = "tiled_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(2222)
        counted = ""
        for B, T, S, Dh, Dv, block, causal, dtype, large in _LOOP_CASES:
            q, k, v = _loop_inputs(B, T, S, Dh, Dv, dtype, large, g)
            where = (f"for q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)}, v {fmt_shape(v.shape)}, "
                     f"block_size={block}, causal={causal}" + (", scores near 800 and -800" if large else ""))
            watch = _ScoreWatch(B, T, S, Dh, Dv, block)
            got = call(task, _watched(fn, watch), q, k, v, block, causal, forbid=_WHOLE_ATTENTION)
            try:
                blocks = watch.verdict(task, where)
            except CheckFailed:
                kind, out = watch.too_big
                width = _ignored_block_size(task, fn) if kind == "matrix" else None
                if width is None:
                    raise
                raise CheckFailed(f"{task}: {where}: your function ignores block_size: here it scored "
                                  f"all S = {S} keys at once (a tensor of shape {fmt_shape(out.shape)}), "
                                  f"and on S = {_PROBE['S']} keys with block_size={_PROBE['block_size']} "
                                  f"it scores blocks of {width} keys. Slice the keys with the argument, "
                                  "k[..., s:s + block_size, :], so that no more than (T, block_size) "
                                  "scores are held at once.") from None
            ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
            atol = 1e-9 if dtype == torch.float64 else 1e-5
            if not close(got, ref, atol=atol) or not isinstance(got, torch.Tensor) or got.dtype != dtype:
                _explain_not_finite(task, where, got, q, k, causal)
                _explain_values(task, where, got, q, k, v, block, causal, ref)
                compare(task, got, ref, atol=atol, what=f"the output, {where},", dtype=dtype)
            if blocks and not counted:
                counted = f" ({blocks} blocks of scores for S={S}, block_size={block})"
        return (f"{len(_LOOP_CASES)} inputs (T < S, T > S, causal and not, float64 and float32, scores "
                f"near 800 and -800), never more than block_size scores per query at once{counted}")

    return run_check(task, body)
