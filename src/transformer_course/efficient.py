"""Memory-efficient attention: tiling with an online softmax (FlashAttention's forward pass).

Shapes: B batch, S source length (keys), T target length (queries), D d_model, H heads,
Dh head size, V vocabulary; Bq and Bk are the query and key block sizes. Attention inputs
are q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) with the same leading (batch) dimensions.

Exact attention materialises the (T, S) matrix of weights: memory grows as n^2. Tiled
attention walks over blocks of keys (and of queries), keeps per query only a running
maximum ``m``, a running sum ``l`` of exponentials and an un-normalised output ``acc``,
rescales them when the maximum grows, and divides by ``l`` once at the end (Milakov and
Gimelshein 2018; Dao et al. 2022). Its extra memory is the output plus one (Bq, Bk) block.

Memory is measured, not estimated. On CUDA: the allocator's peak
(``torch.cuda.max_memory_allocated``). On the CPU: :class:`AllocationTracker`, a
``TorchDispatchMode`` that sees every tensor each operator returns and frees; see its docstring.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .attention import _check_qkv_sizes, make_causal_mask, scaled_dot_product_attention

__all__ = [
    "online_softmax", "online_softmax_step", "tiled_attention", "naive_attention", "fused_attention",
    "Allocation", "AllocationTracker", "peak_memory", "memory_against_length", "fit_exponent",
    "fit_growth_exponent",
    "time_attention", "time_against_block_size", "block_size_report", "ATTENTION_METHODS",
]


# ----------------------------------------------------------------------------- input checks

def _check_block(block_size: object, who: str, name: str = "block_size") -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise ValueError(f"{who}: {name} should be a positive int, got {block_size!r}")
    return block_size


def _check_qkv(q: object, k: object, v: object, who: str) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{who}: {name} should be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{who}: {name} should be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() < 2:
            raise ValueError(f"{who}: {name} should have at least 2 dimensions (..., positions, "
                             f"features), got shape {tuple(x.shape)}")
    _check_qkv_sizes(q, k, v, who)
    if not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        raise ValueError(f"{who}: q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} "
                         "should have the same leading (batch) dimensions")


# ----------------------------------------------------------------------------- the online softmax

def online_softmax(x: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax over the last axis in one pass over blocks: a running max and a rescaled running sum.

    Shapes: x (..., S) -> probabilities (..., S), max (...,), sum of exp(x - max) (...,).
    The probabilities need a second pass, exp(x - max) / sum; attention folds it into ``acc``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise TypeError(f"online_softmax: x should be a floating-point tensor, got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    _check_block(block_size, "online_softmax")
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)  # (...,)
    l = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)  # (...,)
    for start in range(0, x.shape[-1], block_size):
        block = x[..., start:start + block_size]  # (..., Bk)
        m_new = torch.maximum(m, block.amax(-1))
        # the old sum was taken relative to the old max: rescale it to the new one
        l = l * torch.exp(m - m_new) + torch.exp(block - m_new[..., None]).sum(-1)
        m = m_new
    return torch.exp(x - m[..., None]) / l[..., None], m, l


def online_softmax_step(
    m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor, scores: torch.Tensor, v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One block of keys: update the running max ``m``, sum ``l`` and un-normalised output ``acc``.

    ``scores`` are the block's scaled scores (-inf where masked). Start from m = -inf, l = 0,
    acc = 0; after the last block the output is acc / l.
    Shapes: m (..., T), l (..., T), acc (..., T, Dv), scores (..., T, Bk), v (..., Bk, Dv)
    -> m (..., T), l (..., T), acc (..., T, Dv).
    """
    m_new = torch.maximum(m, scores.amax(-1))  # (..., T)
    # a row with nothing seen yet keeps m = -inf; subtract 0 there so that exp gives 0, not NaN
    m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(scores - m_safe[..., None])  # (..., T, Bk)
    alpha = torch.exp(m - m_safe)  # (..., T): how much the old max was below the new one
    l = alpha * l + p.sum(-1)
    acc = alpha[..., None] * acc + p @ v  # (..., T, Bk) @ (..., Bk, Dv) -> (..., T, Dv)
    return m_new, l, acc


def tiled_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
    block_size: int = 64, block_q: int | None = None,
) -> torch.Tensor:
    """Exact attention block by block with an online softmax, never building the (T, S) weights.

    ``causal`` lets query t see keys 0..t (top-left aligned, as ``F.scaled_dot_product_attention``'s
    ``is_causal``); key blocks wholly in a query block's future are skipped. ``block_size`` is the
    key block Bk, ``block_q`` the query block Bq (default: the same).
    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) -> output (..., T, Dv).
    """
    who = "tiled_attention"
    _check_qkv(q, k, v, who)
    block_k = _check_block(block_size, who)
    block_q = block_k if block_q is None else _check_block(block_q, who, "block_q")
    if not isinstance(causal, bool):
        raise TypeError(f"{who}: causal should be True or False, got {causal!r}")
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = q.new_empty(*q.shape[:-1], v.shape[-1])  # (..., T, Dv)
    for qs in range(0, T, block_q):
        qb = q[..., qs:qs + block_q, :] * scale  # (..., Bq, Dh)
        rows = qb.shape[-2]
        m = qb.new_full(qb.shape[:-1], float("-inf"))  # (..., Bq)
        l = qb.new_zeros(qb.shape[:-1])  # (..., Bq)
        acc = qb.new_zeros(*qb.shape[:-1], v.shape[-1])  # (..., Bq, Dv)
        last_key = min(S, qs + rows) if causal else S  # causal: keys after the last query are unseen
        for ks in range(0, last_key, block_k):
            kb = k[..., ks:ks + block_k, :]  # (..., Bk, Dh)
            scores = qb @ kb.transpose(-2, -1)  # (..., Bq, Dh) @ (..., Dh, Bk) -> (..., Bq, Bk)
            if causal and ks + scores.shape[-1] - 1 > qs:  # the block crosses the diagonal
                q_pos = torch.arange(qs, qs + rows, device=q.device)[:, None]  # (Bq, 1)
                k_pos = torch.arange(ks, ks + scores.shape[-1], device=q.device)  # (Bk,)
                scores = scores.masked_fill(k_pos > q_pos, float("-inf"))  # (..., Bq, Bk)
            m, l, acc = online_softmax_step(m, l, acc, scores, v[..., ks:ks + block_k, :])
        out[..., qs:qs + rows, :] = acc / l[..., None]  # divide once, at the end
    return out


# ----------------------------------------------------------------------------- the three methods

def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """The course's exact attention, which materialises the (T, S) weights (and a (T, S) mask).

    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) -> output (..., T, Dv).
    """
    mask = None
    if causal:
        T, S = q.shape[-2], k.shape[-2]
        mask = make_causal_mask(max(T, S), device=q.device)[:T, :S]  # (T, S), top-left aligned
    return scaled_dot_product_attention(q, k, v, mask)[0]


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """PyTorch's fused ``F.scaled_dot_product_attention`` (a flash kernel on CPU and on CUDA).

    Shapes: q (..., T, Dh), k (..., S, Dh), v (..., S, Dv) -> output (..., T, Dv).
    """
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


ATTENTION_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "naive": naive_attention, "tiled": tiled_attention, "fused": fused_attention,
}


# ----------------------------------------------------------------------------- measuring memory

@dataclass(frozen=True)
class Allocation:
    """One allocation seen by :class:`AllocationTracker`."""

    op: str  # the operator that returned the tensor, e.g. "aten.mm.default"
    shape: tuple[int, ...]
    nbytes: int
    live_after: int  # bytes alive (allocated inside the tracker and not yet freed) afterwards


def _tensors(items: tuple) -> list[torch.Tensor]:
    """The tensors in nested tuples and lists (an operator's arguments or results)."""
    found = []
    for x in items:
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, (tuple, list)):
            found.extend(_tensors(x))
    return found


class AllocationTracker(TorchDispatchMode):
    """Count the bytes of every tensor storage created inside the ``with`` block; keep the peak.

    A ``TorchDispatchMode`` sees each ATen operator and what it returns. An output whose
    storage is not one of the operator's inputs' storages is a new allocation (a view or an
    in-place result shares its input's storage); a weak-reference finalizer on the storage
    subtracts its bytes the moment it is freed. The count is exact and deterministic: it does
    not depend on the allocator's caching, on other threads or on the operating system, unlike
    the process's resident memory. It does not see the scratch buffers a fused kernel allocates
    *inside* one operator (PyTorch's CPU flash kernel keeps a few per-thread blocks there,
    independent of n), and it ignores tensors made before the block (the inputs).
    ``keep_log=True`` records each allocation (operator, shape, bytes, bytes alive after it).
    """

    def __init__(self, keep_log: bool = False):
        super().__init__()
        self.keep_log = keep_log
        self.live = 0  # bytes allocated inside the block and not yet freed
        self.peak = 0  # the largest value ``live`` reached
        self.log: list[Allocation] = []
        self._sizes: dict[int, int] = {}  # storage address -> bytes, for the storages we track

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, tuple(kwargs.values())))}
        out = func(*args, **kwargs)
        for t in _tensors((out,)):
            self._track(t, inputs, func)
        return out

    def _track(self, t: torch.Tensor, inputs: set[int], op: object) -> None:
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or ptr in inputs or ptr in self._sizes:
            return
        self._sizes[ptr] = nbytes
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, ptr, nbytes)
        if self.keep_log:
            self.log.append(Allocation(str(op), tuple(t.shape), nbytes, self.live))

    def _free(self, ptr: int, nbytes: int) -> None:
        if self._sizes.pop(ptr, None) is not None:
            self.live -= nbytes


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before it.

    CUDA: the caching allocator's statistics (``torch.cuda.max_memory_allocated``), after one
    warm-up call. CPU: :class:`AllocationTracker`. Runs without autograd; the result is dropped.
    """
    device = torch.device(device)
    if device.type == "cuda":
        with torch.no_grad():
            fn()  # warm-up: one-time allocations (cuBLAS workspace, kernels) are not the algorithm's
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del result
        return int(peak)
    if device.type != "cpu":
        raise ValueError(f"peak_memory: measures on 'cpu' or 'cuda', got device {device}")
    with torch.no_grad(), AllocationTracker() as tracker:
        result = fn()
        del result
    return tracker.peak


def _random_qkv(n: int, d_head: int, batch: int, device: torch.device | str, seed: int,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, 1, n, d_head, generator=g, dtype=dtype).to(device) for _ in range(3))


def memory_against_length(
    lengths: Sequence[int], block_size: int = 128, d_head: int = 64, batch: int = 1,
    causal: bool = False, device: torch.device | str = "cpu",
    methods: Sequence[str] = ("naive", "tiled", "fused"),
) -> dict[str, list[int]]:
    """Peak bytes of each attention method at each sequence length n = T = S (self-attention).

    Shapes: inputs (batch, 1, n, d_head) float32 -> {method: [bytes for each n]}.
    """
    for n in lengths:
        _check_block(n, "memory_against_length", "each length")
    _check_block(block_size, "memory_against_length")
    unknown = set(methods) - set(ATTENTION_METHODS)
    if unknown:
        raise ValueError(f"memory_against_length: unknown methods {sorted(unknown)}, "
                         f"expected some of {list(ATTENTION_METHODS)}")
    result: dict[str, list[int]] = {name: [] for name in methods}
    for n in lengths:
        q, k, v = _random_qkv(n, d_head, batch, device, seed=n)
        for name in methods:
            kwargs = {"block_size": block_size} if name == "tiled" else {}
            run = partial(ATTENTION_METHODS[name], q, k, v, causal, **kwargs)
            result[name].append(peak_memory(run, device))
    return result


def fit_exponent(lengths: Sequence[float], values: Sequence[float]) -> float:
    """The slope of log(values) against log(lengths): values ~ c * n^slope."""
    x, y = np.log(np.asarray(lengths, dtype=float)), np.log(np.asarray(values, dtype=float))
    if x.size < 2 or x.size != y.size:
        raise ValueError(f"fit_exponent: need at least 2 (length, value) pairs of equal count, "
                         f"got {x.size} lengths and {y.size} values")
    return float(np.polyfit(x, y, 1)[0])


def fit_growth_exponent(lengths: Sequence[float], values: Sequence[float]) -> float:
    """The exponent p of the part of ``values`` that grows, for values = a + c * n^p, a constant.

    ``lengths`` must grow by a constant factor r (e.g. doubling): then the increments
    values[i+1] - values[i] = c (r^p - 1) n_i^p, and their log-log slope is p; the constant
    a (here: tiled attention's fixed block workspace) drops out.
    """
    n, y = np.asarray(lengths, dtype=float), np.asarray(values, dtype=float)
    if n.size < 3 or n.size != y.size:
        raise ValueError(f"fit_growth_exponent: need at least 3 (length, value) pairs of equal count, "
                         f"got {n.size} lengths and {y.size} values")
    ratios = n[1:] / n[:-1]
    if not np.allclose(ratios, ratios[0]) or ratios[0] <= 1:
        raise ValueError(f"fit_growth_exponent: lengths should grow by a constant factor (e.g. double), "
                         f"got {list(lengths)}")
    growth = np.diff(y)
    if (growth <= 0).any():
        raise ValueError(f"fit_growth_exponent: values should increase with the length, got {list(values)}")
    return fit_exponent(n[:-1], growth)


# ----------------------------------------------------------------------------- measuring time

def time_attention(fn: Callable[[], object], repeats: int = 3, device: torch.device | str = "cpu") -> float:
    """The best of ``repeats`` wall-clock times of ``fn()`` in seconds, after one warm-up call."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    with torch.no_grad():
        fn()
        best = float("inf")
        for _ in range(max(1, repeats)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - start)
    return best


def time_against_block_size(
    n: int, block_sizes: Sequence[int], d_head: int = 64, batch: int = 1, causal: bool = False,
    repeats: int = 3, device: torch.device | str = "cpu",
) -> dict[str, list[float] | float]:
    """Seconds per call of tiled attention at each block size, and of naive and fused for reference.

    Shapes: inputs (batch, 1, n, d_head) -> {"tiled": [s for each block size], "naive": s, "fused": s}.
    """
    for b in block_sizes:
        _check_block(b, "time_against_block_size", "each block size")
    q, k, v = _random_qkv(_check_block(n, "time_against_block_size", "n"), d_head, batch, device, seed=n)
    return {
        "tiled": [time_attention(lambda b=b: tiled_attention(q, k, v, causal, block_size=b), repeats, device)
                  for b in block_sizes],
        "naive": time_attention(lambda: naive_attention(q, k, v, causal), repeats, device),
        "fused": time_attention(lambda: fused_attention(q, k, v, causal), repeats, device),
    }


# ----------------------------------------------------------------------------- the widget's logic

def block_size_report(
    block_size: int, n: int = 1024, d_head: int = 64, causal: bool = False, repeats: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """Peak memory (bytes) and time (s) of tiled attention at one block size, beside naive and fused.

    Also the largest difference between the tiled and the exact output. A block of n keys and
    n queries is one tile: tiled attention is then naive attention with extra bookkeeping.
    Shapes: inputs (1, 1, n, d_head) -> {"tiled" | "naive" | "fused": {"bytes", "seconds"}, "check": {...}}.
    """
    who = "block_size_report"
    _check_block(block_size, who)
    _check_block(n, who, "n")
    q, k, v = _random_qkv(n, d_head, 1, device, seed=0)
    runs = {
        "tiled": lambda: tiled_attention(q, k, v, causal, block_size=block_size),
        "naive": lambda: naive_attention(q, k, v, causal),
        "fused": lambda: fused_attention(q, k, v, causal),
    }
    report = {name: {"bytes": float(peak_memory(fn, device)),
                     "seconds": time_attention(fn, repeats, device)} for name, fn in runs.items()}
    with torch.no_grad():
        gap = (runs["tiled"]() - runs["fused"]()).abs().max().item()
    report["check"] = {"max_abs_diff": gap}
    return report
