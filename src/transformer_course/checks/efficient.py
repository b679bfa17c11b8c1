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

def _step_cases(g: torch.Generator) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """(description, (m, l, acc, scores, v)) in float64: a first block, later blocks, large logits."""
    cases = []
    for shape, (T, Bk, Dv) in (((), (4, 3, 2)), ((2, 3), (5, 4, 3)), ((1,), (6, 7, 4))):
        scores = torch.randn(*shape, T, Bk, generator=g, dtype=torch.float64) * 2
        v = torch.randn(*shape, Bk, Dv, generator=g, dtype=torch.float64)
        # a previous state whose maximum is below the block's for some rows, above it for others
        m = scores.amax(-1) + torch.randn(*shape, T, generator=g, dtype=torch.float64) * 2
        l = 1 + torch.rand(*shape, T, generator=g, dtype=torch.float64) * 3
        acc = torch.randn(*shape, T, Dv, generator=g, dtype=torch.float64)
        cases.append((f"a later block, scores {fmt_shape(scores.shape)}", (m, l, acc, scores, v)))
    T, Bk, Dv = 3, 5, 2
    f64 = {"dtype": torch.float64}
    scores = torch.randn(T, Bk, generator=g, **f64)
    first = (torch.full((T,), -math.inf, **f64), torch.zeros(T, **f64), torch.zeros(T, Dv, **f64),
             scores, torch.randn(Bk, Dv, generator=g, **f64))
    cases.insert(0, ("the first block (m = -inf, l = 0, acc = 0)", first))
    big = scores * 50 + 800  # logits near 800: exp(800) overflows even in float64
    later = (big.amax(-1) - 3, torch.ones(T, **f64), torch.randn(T, Dv, generator=g, **f64),
             big, torch.randn(Bk, Dv, generator=g, **f64))
    cases.append(("large logits near 800", later))
    return cases


def _diagnose_step(task: str, where: str, got: tuple, state: tuple[torch.Tensor, ...]) -> None:
    m, l, acc, scores, v = state
    m_ref, l_ref, acc_ref = online_softmax_step(m, l, acc, scores, v)
    m_got, l_got, acc_got = got
    if not close(m_got, m_ref, atol=1e-6, rtol=1e-5):
        if close(m_got, scores.amax(-1)):
            raise CheckFailed(f"{task}: {where}: the new maximum is the block's maximum alone; it must "
                              "be the maximum over everything seen so far: torch.maximum(m, "
                              "scores.amax(-1)).")
        if close(m_got, m):
            raise CheckFailed(f"{task}: {where}: the running maximum was not updated: "
                              "m_new = torch.maximum(m, scores.amax(-1)).")
    compare(task, m_got, m_ref, atol=1e-6, rtol=1e-5, what=f"the new running maximum m, {where},")
    for name, x, ref in (("l", l_got, l_ref), ("acc", acc_got, acc_ref)):
        if isinstance(x, torch.Tensor) and x.shape == ref.shape and not torch.isfinite(x).all():
            raise CheckFailed(f"{task}: {where}: the new {name} contains NaN or infinity: exp of a large "
                              "score overflows. Subtract the new running maximum before exp: "
                              "p = exp(scores - m_new[..., None]).")
    p = torch.exp(scores - m_ref[..., None])  # (..., T, Bk)
    alpha = torch.exp(m - m_ref)  # (..., T)
    if not close(l_got, l_ref, atol=1e-6, rtol=1e-5):
        if close(l_got, l + p.sum(-1)):
            raise CheckFailed(f"{task}: {where}: the running sum was not rescaled when the maximum "
                              "changed: the old l counts exp(score - m_old); multiply it by "
                              "exp(m_old - m_new) before adding the block's sum.")
        raw = torch.exp(scores).sum(-1)
        if close(l_got, alpha * l + raw) or close(l_got, l + raw):
            raise CheckFailed(f"{task}: {where}: you took exp of the raw scores: subtract the running "
                              "maximum first, p = exp(scores - m_new[..., None]), or exp overflows for "
                              "large scores.")
    compare(task, l_got, l_ref, atol=1e-6, rtol=1e-5, what=f"the new running sum l, {where},")
    if not close(acc_got, acc_ref, atol=1e-6, rtol=1e-5):
        if close(acc_got, acc + p @ v):
            raise CheckFailed(f"{task}: {where}: the output accumulator was not rescaled when the "
                              "maximum changed: multiply the old acc by exp(m_old - m_new) (one "
                              "factor per query, acc * alpha[..., None]) before adding p @ v.")
        if close(acc_got, acc_ref / l_ref[..., None]):
            raise CheckFailed(f"{task}: {where}: acc was divided by the running sum inside the step. "
                              "Keep acc un-normalised (a sum of exp(score - m) * value) and divide by l "
                              "once, after the last block.")
    compare(task, acc_got, acc_ref, atol=1e-6, rtol=1e-5, what=f"the new accumulator acc, {where},")


def check_online_softmax_step(fn: Callable) -> bool:
    """Check ``fn(m, l, acc, scores, v) -> (m, l, acc)``: one block of the online softmax."""
    task = "online_softmax_step"

    def body() -> str:
        g = torch.Generator().manual_seed(1111)
        cases = _step_cases(g)
        for where, state in cases:
            got = unpack(task, call(task, fn, *state), ("m", "l", "acc"))
            _diagnose_step(task, f"for {where}", got, state)
        return f"{len(cases)} states, including a first block and logits near 800"

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

    It records the first tensor that holds too many scores at once and counts the blocks of
    scores (the results of a sum over the head size Dh, in either orientation). It follows
    which tensors come from the inputs q, k, v, so that positions such as torch.arange(S) are
    not taken for scores. The learner's code runs unchanged: gradients, printing, everything.
    """

    def __init__(self, B: int, T: int, S: int, Dh: int, Dv: int, block_size: int):
        super().__init__()
        self.B, self.T, self.S, self.Dh, self.Dv, self.block = B, T, S, Dh, Dv, block_size
        self.padded = -(-S // block_size) * block_size  # S rounded up to whole blocks
        self.too_big: tuple[str, torch.Tensor] | None = None
        self.blocks = 0  # blocks of scores computed
        self.derived: dict[int, torch.Tensor] = {}  # id -> tensor computed from q, k or v (kept alive)

    def follow(self, *inputs: object) -> None:
        """Count these tensors (the learner's inputs) as the start of everything derived."""
        for t in _results(list(inputs)):
            self.derived[id(t)] = t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.too_big is None and self.S > self.block:
            name = getattr(func, "__name__", "")
            inputs = _results(list(args)) + _results(list((kwargs or {}).values()))
            derived = any(id(x) in self.derived for x in inputs)
            for result in _results(out):
                if derived:
                    self.derived[id(result)] = result
                self._see(name, result, inputs, derived)
        return out

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
                       "key t (and query 0 sees nothing). Block key s where s > t, not s >= t.",
    "one key ahead": "the causal mask is off by one: query t also sees key t + 1. Block key s where "
                     "s > t.",
    "block positions": "the causal mask counts key positions from the start of each block: the key "
                       "at column j of the block starting at s is key s + j; compare s + j with the "
                       "query's position t.",
    "partial block dropped": "the last, partial block of keys is missing: loop over "
                             "range(0, S, block_size); slicing k[..., s:s + block_size] stops at S.",
}

# (B, T, S, Dh, Dv, block_size, causal, dtype). Within a case B, T, Dh, Dv and the block widths
# differ from each other and from S (T = S once, for self-attention), so that a tensor's shape
# says what it holds.
_LOOP_CASES = [
    (2, 8, 22, 5, 3, 6, False, torch.float64),   # blocks of 6, 6, 6, 4
    (1, 9, 20, 7, 3, 6, True, torch.float64),    # T < S: keys after T are all in the future
    (2, 16, 11, 5, 7, 4, True, torch.float64),   # T > S: the last queries see every key
    (2, 13, 13, 4, 6, 5, True, torch.float32),   # self-attention, float32 in and out
    (2, 5, 7, 3, 4, 1, True, torch.float64),     # one key at a time
    (2, 4, 6, 3, 5, 16, False, torch.float64),   # one block holds every key
]


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
        for B, T, S, Dh, Dv, block, causal, dtype in _LOOP_CASES:
            q = torch.randn(B, T, Dh, generator=g, dtype=torch.float64).to(dtype)
            k = torch.randn(B, S, Dh, generator=g, dtype=torch.float64).to(dtype)
            v = torch.randn(B, S, Dv, generator=g, dtype=torch.float64).to(dtype)
            where = (f"for q {fmt_shape(q.shape)}, k {fmt_shape(k.shape)}, v {fmt_shape(v.shape)}, "
                     f"block_size={block}, causal={causal}")
            watch = _ScoreWatch(B, T, S, Dh, Dv, block)
            got = call(task, _watched(fn, watch), q, k, v, block, causal, forbid=_WHOLE_ATTENTION)
            blocks = watch.verdict(task, where)
            ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
            atol = 1e-9 if dtype == torch.float64 else 1e-5
            if not close(got, ref, atol=atol) or not isinstance(got, torch.Tensor) or got.dtype != dtype:
                _explain_values(task, where, got, q, k, v, block, causal, ref)
                compare(task, got, ref, atol=atol, what=f"the output, {where},", dtype=dtype)
            if blocks and not counted:
                counted = f" ({blocks} blocks of scores for S={S}, block_size={block})"
        return (f"{len(_LOOP_CASES)} inputs (T < S, T > S, causal and not, float64 and float32), never "
                f"more than block_size scores per query at once{counted}")

    return run_check(task, body)
