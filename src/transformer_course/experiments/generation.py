"""Notebook 10: count baselines, the KV cache's speed-up measured, the logic of the sampling widget.

Shapes: B batch, T0 prompt length, V vocabulary (characters), N and M text lengths.

- ``ngram_loss``: the held-out cross-entropy of a character n-gram count model, the baseline
  the trained GPT is compared with;
- ``generation_times``: seconds to generate n tokens greedily, without and with the KV cache;
- ``sample_texts`` and ``sampling_figure``: the next-character distribution after a prompt and
  a few samples, at one temperature and top-k (the widget only wires sliders to them).
"""

from __future__ import annotations

import math
import textwrap
import time

import torch
from matplotlib.figure import Figure

from .. import _validate
from ..gpt import GPT, CharTokenizer, generate, sampling_probs
from ..measure import sync

__all__ = ["ngram_loss", "generation_times", "sample_texts", "sampling_figure"]


def ngram_loss(train_data: torch.Tensor, held_out: torch.Tensor, order: int, vocab_size: int,
               alpha: float = 0.1) -> float:
    """Held-out cross-entropy (nats per token) of an n-gram count model with add-alpha smoothing.

    Each token is predicted from the ``order - 1`` tokens before it, with the counts of
    ``train_data``: p(c | context) = (count(context, c) + alpha) / (count(context) + alpha * V).
    Order 1 is the unigram (token frequencies), 2 the bigram, 3 the trigram. Scored on every
    token of ``held_out`` that has ``order - 1`` tokens before it.
    Shapes: train_data (N,) ids, held_out (M,) ids -> a float.
    """
    who = "ngram_loss"
    for name, data in (("train_data", train_data), ("held_out", held_out)):
        _validate.token_ids(data, name, who, layout="(N)")
        _validate.ids_below(data, vocab_size, name, who)
    _validate.int_in(order, "order", who, 1, 5)  # a table of V^order counts: keep it small
    _validate.positive_number(alpha, "alpha", who)
    if min(len(train_data), len(held_out)) < order:
        raise ValueError(f"{who} expects texts of at least order={order} tokens, got {len(train_data)} "
                         f"and {len(held_out)}")

    def grams(data: torch.Tensor) -> torch.Tensor:  # (N - order + 1,): each window as a number in base V
        index = torch.zeros(len(data) - order + 1, dtype=torch.long)
        for j in range(order):
            index = index * vocab_size + data[j:len(data) - order + 1 + j].cpu()
        return index

    counts = torch.bincount(grams(train_data), minlength=vocab_size ** order).double()
    counts = counts.view(-1, vocab_size) + alpha  # (V^(order - 1), V): one row per context
    log_p = counts.log() - counts.sum(-1, keepdim=True).log()  # (V^(order - 1), V)
    return -log_p.view(-1)[grams(held_out)].mean().item()


def generation_times(model: GPT, prompt: torch.Tensor, lengths: list[int], repeats: int = 3
                     ) -> dict[str, list[float]]:
    """Seconds to generate n new tokens greedily, without and with the cache (best of ``repeats``).

    Shapes: prompt (B, T0) -> {"no cache": [...], "cache": [...]}, one time per entry of ``lengths``.
    """
    if not lengths or not all(_validate.is_int(n) and n >= 1 for n in lengths):
        raise ValueError(f"generation_times expects lengths to be positive ints, got {lengths!r}")
    _validate.positive_int(repeats, "repeats", "generation_times")
    device = prompt.device
    generate(model, prompt, 2, greedy=True, use_cache=True)  # warm-up
    times = {"no cache": [math.inf] * len(lengths), "cache": [math.inf] * len(lengths)}
    for _ in range(repeats):  # repeats outermost: a burst of load spoils one round, not one length
        for i, n in enumerate(lengths):
            for name, use_cache in (("no cache", False), ("cache", True)):
                sync(device)
                start = time.perf_counter()
                generate(model, prompt, n, greedy=True, use_cache=use_cache)
                sync(device)
                times[name][i] = min(times[name][i], time.perf_counter() - start)
    return times


def sample_texts(model: GPT, tokenizer: CharTokenizer, prompt: str, n_chars: int, *,
                 temperature: float = 1.0, top_k: int | None = None, n_samples: int = 3,
                 seed: int = 0) -> list[str]:
    """``n_samples`` continuations of ``prompt`` (the new characters only), drawn in one batch."""
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt)[None].repeat(n_samples, 1).to(device)  # (N, T0)
    out = generate(model, ids, n_chars, temperature=temperature, top_k=top_k, seed=seed)
    return [tokenizer.decode(row[len(prompt):]) for row in out.cpu()]


def _wrap(text: str, width: int) -> str:
    """Lines of at most ``width`` characters, broken between words (a word longer than a line
    is cut), so that a sample is never split inside a word it wrote."""
    lines = []
    for part in text.split("\n"):
        lines.extend(textwrap.wrap(part, width, break_long_words=True, replace_whitespace=False,
                                   drop_whitespace=True) or [""])
    return "\n".join(lines)


@torch.no_grad()
def sampling_figure(model: GPT, tokenizer: CharTokenizer, prompt: str, temperature: float = 1.0,
                    top_k: int | None = None, n_chars: int = 80, n_samples: int = 3,
                    seed: int = 0) -> Figure:
    """Notebook 10's widget: the next-character distribution after ``prompt`` and a few samples."""
    device = next(model.parameters()).device
    model.eval()
    logits = model(tokenizer.encode(prompt)[None].to(device))[0, -1].cpu()  # (V,)
    probs = sampling_probs(logits, temperature, top_k)  # (V,); checks temperature and top_k
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum().item()
    shown = logits.argsort(descending=True)[:20]  # by logit: the characters top-k cut off show at 0
    samples = sample_texts(model, tokenizer, prompt, n_chars, temperature=temperature, top_k=top_k,
                           n_samples=n_samples, seed=seed)
    fig = Figure(figsize=(10, 4.9))
    ax0, ax1 = fig.subplots(2, 1, height_ratios=[1, 1.1])
    labels = [repr(tokenizer.chars[i])[1:-1].replace(" ", "␣") for i in shown.tolist()]
    ax0.bar(labels, probs[shown].numpy(), color="tab:blue")
    ax0.set_ylim(0, 1)
    ax0.set_ylabel("probability")
    k = "all" if top_k is None else top_k
    ax0.set_title(f"next character after {prompt[-25:]!r}: temperature {temperature:.2f}, top-k {k}, "
                  f"entropy {entropy:.2f} nats", fontsize=10)
    ax1.axis("off")
    text = "\n\n".join(f"{i + 1}. " + _wrap(prompt + s, 88) for i, s in enumerate(samples))
    ax1.text(0, 1, text, va="top", ha="left", family="monospace", fontsize=8.5, transform=ax1.transAxes)
    ax1.set_title(f"{n_samples} samples of {n_chars} characters (seed {seed})", fontsize=10, loc="left")
    fig.tight_layout()
    return fig
