"""The measurements of notebook 11 (efficient attention): memory against length, time against block size.

Shapes: B batch, n sequence length (T = S, self-attention), H heads (1 here), Dh head size.

Three ways to compute the same attention, from ``efficient``: ``"naive"`` (the course's
``scaled_dot_product_attention``, which builds the (n, n) weights), ``"tiled"`` (``tiled_attention``,
an online softmax over blocks) and ``"fused"`` (PyTorch's ``F.scaled_dot_product_attention``).
Memory and time are measured with ``measure.peak_memory`` (no autograd: inference) and
``measure.best_time``; ``memory_with_autograd`` measures what each method keeps for its
backward pass when the inputs require gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from matplotlib.figure import Figure

from .. import _validate
from ..efficient import fused_attention, naive_attention, tiled_attention
from ..measure import AllocationTracker, best_time, peak_memory

__all__ = ["ATTENTION_METHODS", "memory_against_length", "memory_with_autograd", "time_against_block_size",
           "tiles_computed", "block_size_report", "block_size_figure"]

ATTENTION_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "naive": naive_attention, "tiled": tiled_attention, "fused": fused_attention,
}


def _random_qkv(n: int, d_head: int, batch: int, device: torch.device | str, seed: int,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """Seeded q, k, v of shape (batch, 1, n, d_head), drawn on the CPU and moved to ``device``."""
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
    _check_sweep(lengths, methods, block_size, "memory_against_length")
    result: dict[str, list[int]] = {name: [] for name in methods}
    for n in lengths:
        q, k, v = _random_qkv(n, d_head, batch, device, seed=n)
        for name in methods:
            result[name].append(peak_memory(_call(name, q, k, v, causal, block_size), device))
    return result


def _check_sweep(lengths: Sequence[int], methods: Sequence[str], block_size: int, who: str) -> None:
    """The checks shared by the memory sweeps: positive lengths and block size, known methods."""
    for n in lengths:
        _validate.positive_int(n, "each length", who)
    for name in methods:
        _validate.one_of(name, tuple(ATTENTION_METHODS), "each method", who)
    _validate.positive_int(block_size, "block_size", who)


def _call(
    name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, block_size: int,
) -> Callable[[], torch.Tensor]:
    """A no-argument call of one attention method; only "tiled" takes the block size."""
    kwargs = {"block_size": block_size} if name == "tiled" else {}
    return partial(ATTENTION_METHODS[name], q, k, v, causal, **kwargs)


def _autograd_bytes(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[int, int]:
    """Bytes alive after ``run()`` (its output and what autograd saved) and the peak through backward."""
    if device.type == "cuda":
        run().sum().backward()  # warm-up: one-time allocations (cuBLAS workspace, kernels)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = run()
        torch.cuda.synchronize(device)
        kept = torch.cuda.memory_allocated(device) - before
        out.sum().backward()
        torch.cuda.synchronize(device)
        del out
        return kept, torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"memory_with_autograd measures on 'cpu' or 'cuda', got device {device}")
    with AllocationTracker() as tracker:
        out = run()
        kept = tracker.live
        out.sum().backward()
        del out
    return kept, tracker.peak


def memory_with_autograd(
    lengths: Sequence[int], block_size: int = 128, d_head: int = 64, causal: bool = False,
    device: torch.device | str = "cpu", methods: Sequence[str] = ("naive", "tiled", "fused"),
) -> dict[str, dict[str, list[int]]]:
    """Bytes of each method when q, k, v require gradients, as in training, at each n = T = S.

    "kept": alive after the forward pass, the output and what autograd saved for the backward
    pass; "peak": the peak over the forward and the backward pass (the gradients included).
    Shapes: inputs (1, 1, n, d_head) float32 -> {method: {"kept": [bytes per n], "peak": [...]}}.
    """
    _check_sweep(lengths, methods, block_size, "memory_with_autograd")
    device = torch.device(device)
    result: dict[str, dict[str, list[int]]] = {name: {"kept": [], "peak": []} for name in methods}
    for n in lengths:
        for name in methods:
            q, k, v = (x.requires_grad_() for x in _random_qkv(n, d_head, 1, device, seed=n))
            kept, peak = _autograd_bytes(_call(name, q, k, v, causal, block_size), device)
            result[name]["kept"].append(int(kept))
            result[name]["peak"].append(int(peak))
    return result


def time_against_block_size(
    n: int, block_sizes: Sequence[int], d_head: int = 64, batch: int = 1, causal: bool = False,
    repeats: int = 3, device: torch.device | str = "cpu",
) -> dict[str, list[float] | float]:
    """Seconds per call of tiled attention at each block size, and of naive and fused for reference.

    Shapes: inputs (batch, 1, n, d_head) -> {"tiled": [s for each block size], "naive": s, "fused": s}.
    """
    for b in block_sizes:
        _validate.positive_int(b, "each block size", "time_against_block_size")
    n = _validate.positive_int(n, "n", "time_against_block_size")
    q, k, v = _random_qkv(n, d_head, batch, device, seed=n)
    return {
        "tiled": [best_time(lambda b=b: tiled_attention(q, k, v, causal, block_size=b), repeats, device)
                  for b in block_sizes],
        "naive": best_time(lambda: naive_attention(q, k, v, causal), repeats, device),
        "fused": best_time(lambda: fused_attention(q, k, v, causal), repeats, device),
    }


# ----------------------------------------------------------------------------- the widget's logic

def tiles_computed(n: int, block_size: int, causal: bool = False) -> int:
    """The (Bq, Bk) score tiles ``tiled_attention`` computes for n queries and n keys.

    Without a mask every pair of blocks, (n / b)^2 rounded up; with the causal mask only the
    blocks on or below the diagonal, the others being wholly in the future.
    """
    blocks = -(-_validate.positive_int(n, "n", "tiles_computed") // _validate.positive_int(
        block_size, "block_size", "tiles_computed"))
    return blocks * (blocks + 1) // 2 if causal else blocks ** 2


def block_size_report(
    block_size: int, n: int = 1024, d_head: int = 64, causal: bool = False, repeats: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """Peak memory (bytes) and time (s) of tiled attention at one block size, beside naive and fused.

    Also the largest difference between the tiled and the exact output. A block of n keys and
    n queries is one tile: tiled attention is then naive attention with extra bookkeeping.
    Shapes: inputs (1, 1, n, d_head) -> {"tiled" | "naive" | "fused": {"bytes", "seconds"}, "check": {...}}.
    """
    _validate.positive_int(block_size, "block_size", "block_size_report")
    q, k, v = _random_qkv(_validate.positive_int(n, "n", "block_size_report"), d_head, 1, device, seed=0)
    runs = {
        "tiled": lambda: tiled_attention(q, k, v, causal, block_size=block_size),
        "naive": lambda: naive_attention(q, k, v, causal),
        "fused": lambda: fused_attention(q, k, v, causal),
    }
    report = {name: {"bytes": float(peak_memory(fn, device)),
                     "seconds": best_time(fn, repeats, device)} for name, fn in runs.items()}
    with torch.no_grad():
        gap = (runs["tiled"]() - runs["fused"]()).abs().max().item()
    report["check"] = {"max_abs_diff": gap}
    return report


def block_size_figure(block_size: int = 128, causal: bool = False, n: int = 1024,
                      device: torch.device | str = "cpu") -> Figure:
    """Memory (left) and time (right) of the three methods at one block size."""
    report = block_size_report(block_size, n=n, causal=causal, device=device)
    names, colors = ["naive", "tiled", "fused"], ["C0", "C1", "C2"]
    fig = Figure(figsize=(10, 3.4))
    ax0, ax1 = fig.subplots(1, 2)
    mb = [report[name]["bytes"] / 2**20 for name in names]
    ms = [report[name]["seconds"] * 1e3 for name in names]
    ax0.bar(names, mb, color=colors)
    ax0.set(ylabel="peak memory (MB)", yscale="log", ylim=(0.1, 100),
            title=f"memory: tiled {mb[1]:.2f} MB, naive {mb[0]:.1f} MB")
    ax1.bar(names, ms, color=colors)
    ax1.set(ylabel="time (ms)", yscale="log", ylim=(0.1, 1000),
            title=f"time: tiled {ms[1]:.1f} ms, fused {ms[2]:.1f} ms")
    tiles = tiles_computed(n, block_size, causal)
    fig.suptitle(f"n = {n}, block {block_size}, causal={causal}: {tiles} tiles; "
                 f"tiled vs fused output: {report['check']['max_abs_diff']:.1e}", fontsize=10)
    fig.tight_layout()
    return fig
