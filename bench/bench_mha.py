"""Time the course's MultiHeadAttention against nn.MultiheadAttention, forward and backward, on the CPU.

    python bench/bench_mha.py            # print the table and write bench/mha.md
    python bench/bench_mha.py --quick    # fewer rounds, print only

Self-attention with B=32, T=128, D=256, H=8 (float32, the same weights in both modules).
The two run interleaved, round after round, and the median time per step is reported, so
that a burst of load from another process hits both alike. The ratio is ours / PyTorch's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from transformer_course.attention import MultiHeadAttention

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "mha.md"
B, T, D, H = 32, 128, 256, 8
TARGET = 1.25


def make_modules() -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    """The course's module and PyTorch's, holding the same weights."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(D, H)
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, ref


def steps(x: torch.Tensor) -> dict[str, Callable[[], None]]:
    """One forward and backward pass of each contender."""
    ours, ref = make_modules()
    out_ours, _ = ours(x, x, x)
    out_ref, _ = ref(x, x, x)
    assert torch.allclose(out_ours, out_ref, atol=1e-5), "the two modules disagree"

    def course() -> None:
        out, _ = ours(x, x, x)
        out.sum().backward()

    def torch_weights() -> None:  # the default call: returns the head-averaged weights
        out, _ = ref(x, x, x)
        out.sum().backward()

    def torch_fused() -> None:  # no weights returned: PyTorch may use its fused kernel
        out, _ = ref(x, x, x, need_weights=False)
        out.sum().backward()

    return {"course MultiHeadAttention": course,
            "nn.MultiheadAttention (need_weights=True, default)": torch_weights,
            "nn.MultiheadAttention (need_weights=False)": torch_fused}


def measure(rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per forward+backward step of each contender, interleaved."""
    torch.manual_seed(1)
    x = torch.randn(B, T, D, requires_grad=True)
    fns = steps(x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(medians: dict[str, float], rounds: int, per_round: int) -> str:
    """The result as a markdown page."""
    names = list(medians)
    ours = medians[names[0]]
    lines = ["# MultiHeadAttention: the course's against PyTorch's", "",
             f"Measured by `bench/bench_mha.py` on: {platform.system()} {platform.machine()}, "
             f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
             f"torch {torch.__version__}, Python {platform.python_version()}.",
             f"Self-attention, B={B}, T={T}, D={D}, H={H}, float32, CPU, forward + backward; "
             f"median of {rounds} interleaved rounds of {per_round} steps.", "",
             "| module | ms per step | ratio (course / this) |", "|---|---:|---:|"]
    for name in names:
        lines.append(f"| {name} | {medians[name] * 1e3:.1f} | {ours / medians[name]:.2f} |")
    ratio = ours / medians[names[1]]
    verdict = "within" if ratio <= TARGET else "**above**"
    lines += ["", f"Ratio against the default `nn.MultiheadAttention` call (both return attention "
              f"weights): **{ratio:.2f}**, {verdict} the target of {TARGET}.",
              "The course's module always returns its (B, H, T, S) weights, so it computes the "
              "softmax explicitly; the last row is PyTorch without returned weights, for reference."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, print only")
    args = parser.parse_args(argv)
    rounds, per_round = (3, 3) if args.quick else (9, 5)
    text = report(measure(rounds, per_round), rounds, per_round)
    print(text)
    if not args.quick:
        RESULT.write_text(text, encoding="utf-8")
        print(f"wrote {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
