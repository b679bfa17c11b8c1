"""Time greedy generation with and without the KV cache (notebook 10's model size).

    python bench/bench_kv_cache.py     # print the table and write bench/kv_cache.md

The model is notebook 10's configuration with untrained weights: the time per token does
not depend on what the weights have learned. Best of several interleaved rounds.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

from transformer_course import gpt
from transformer_course.experiments.generation import generation_times
from transformer_course.utils import set_seed

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "kv_cache.md"
PROMPT = "The machine read the sentence "
LENGTHS = [16, 32, 64, 96]


def main() -> int:
    set_seed(0)
    torch.set_num_threads(1)  # as notebook 10 runs: tiny per-token work
    text = gpt.load_text()
    tok = gpt.CharTokenizer(text)
    model = gpt.GPT(gpt.GPTConfig(vocab_size=tok.vocab_size, max_len=128, d_model=64, n_heads=4,
                                  d_ff=256, n_layers=2)).eval()
    prompt = tok.encode(PROMPT)[None]  # (1, T0)
    lines = ["# KV cache: greedy generation with and without the cache", "",
             f"Measured by `bench/{Path(__file__).name}` on {platform.system()} {platform.machine()}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; notebook 10's model size "
             f"(2 blocks, d_model 64), prompt of {prompt.shape[1]} characters; best of 5 rounds.", "",
             "| prompts | new tokens | no cache (ms) | cache (ms) | speed-up |", "|---:|---:|---:|---:|---:|"]
    for batch in (1, 8):
        times = generation_times(model, prompt.repeat(batch, 1), LENGTHS, repeats=5)
        for n, plain, cached in zip(LENGTHS, times["no cache"], times["cache"], strict=True):
            row = f"| {batch} | {n} | {plain * 1e3:.1f} | {cached * 1e3:.1f} | {plain / cached:.1f}x |"
            lines.append(row)
            print(row, flush=True)
    RESULT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
