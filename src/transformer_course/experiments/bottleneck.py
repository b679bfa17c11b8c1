"""Notebooks 02 (the seq2seq bottleneck) and 03 (attention for seq2seq): accuracy against length.

A ``LengthExperiment`` fixes one task, one data set and one training budget;
``run_length_experiment`` trains a ``seq2seq.Seq2Seq`` on it (with or without attention) and
scores it by source-length bucket, greedily decoded. Notebook 02 sweeps the hidden size
without attention (its widget's figure is ``plot_bottleneck``); notebook 03 trains the
attention models on exactly the same preset, ``BOTTLENECK``.

Shapes: B batch, S source length, T target length, H hidden size, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import _validate
from ..data import Pair, Vocab, make_pairs, task_vocabs
from ..decoding import greedy_decode
from ..seq2seq import Seq2Seq, Seq2SeqConfig, length_grouped_batches, seq2seq_loss
from ..train import BucketScore, History, evaluate_by_length, train
from ..utils import set_seed

__all__ = ["LengthExperiment", "BOTTLENECK", "LengthRun", "experiment_data", "run_length_experiment",
           "bucket_centers", "hold_length", "plot_bottleneck"]

METRICS = ("exact", "token")


@dataclass(frozen=True)
class LengthExperiment:
    """One task, one data set and one training budget, evaluated by source-length bucket.

    Notebook 02 trains a seq2seq model without attention on it; notebook 03 trains the
    attention models on exactly the same preset, so the curves compare like with like.
    """

    task: str = "copy"  # copy / reverse / sort (data.TASKS)
    min_len: int = 3  # shortest source sequence
    max_len: int = 24  # longest source sequence
    n_train: int = 20_000  # training pairs, lengths spread evenly over [min_len, max_len]
    n_test: int = 660  # test pairs (another seed): 30 per source length
    buckets: tuple[tuple[int, int], ...] = ((3, 5), (6, 8), (9, 11), (12, 14), (15, 17),
                                            (18, 20), (21, 24))  # source-length buckets
    d_model: int = 32  # embedding size
    hidden_size: int = 128  # GRU state size (the sweep of notebook 02 varies it)
    steps: int = 300  # Adam steps: the training budget (about 5 s of CPU at hidden 128)
    batch_size: int = 64  # pairs per step, grouped by similar source length
    lr: float = 1e-2  # Adam learning rate
    clip: float = 1.0  # gradient-norm clipping
    seed: int = 0  # one seed for the model's initialisation, the data and the batch order


# The bottleneck experiment of notebooks 02 and 03: copy sequences of 3 to 24 symbols.
BOTTLENECK = LengthExperiment()


@dataclass
class LengthRun:
    """A model trained on a ``LengthExperiment``, its loss history and its scores by bucket."""

    model: Seq2Seq
    history: History
    scores: list[BucketScore]


def experiment_data(exp: LengthExperiment) -> tuple[list[Pair], list[Pair], Vocab, Vocab]:
    """The training and test pairs of ``exp`` (two seeds) and the task's vocabularies."""
    src_vocab, tgt_vocab = task_vocabs(exp.task)
    train_pairs = make_pairs(exp.task, exp.n_train, exp.min_len, exp.max_len, seed=exp.seed)
    test_pairs = make_pairs(exp.task, exp.n_test, exp.min_len, exp.max_len, seed=exp.seed + 1)
    return train_pairs, test_pairs, src_vocab, tgt_vocab


def run_length_experiment(exp: LengthExperiment, attention: nn.Module | None = None, *,
                          hidden_size: int | None = None, device: torch.device | str = "cpu",
                          desc: str | None = None) -> LengthRun:
    """Train a seq2seq model on ``exp`` and score it by source-length bucket, greedily decoded.

    ``hidden_size`` overrides the preset's (the sweep); ``attention`` is passed to the decoder
    and must match the hidden size.
    """
    train_pairs, test_pairs, src_vocab, tgt_vocab = experiment_data(exp)
    hidden = exp.hidden_size if hidden_size is None else hidden_size
    config = Seq2SeqConfig(len(src_vocab), len(tgt_vocab), exp.d_model, hidden)
    set_seed(exp.seed)
    model = Seq2Seq.from_config(config, attention).to(device)
    history = train(model, seq2seq_loss,
                    lambda g: length_grouped_batches(train_pairs, src_vocab, tgt_vocab, exp.batch_size, g),
                    steps=exp.steps, lr=exp.lr, clip=exp.clip, seed=exp.seed, device=device,
                    desc=desc or f"hidden {hidden}")
    scores = evaluate_by_length(
        lambda b: greedy_decode(model, b.src, b.src_lengths, max_len=b.tgt_out.shape[1]),
        test_pairs, src_vocab, tgt_vocab, exp.buckets, device=device)
    return LengthRun(model, history, scores)


def bucket_centers(scores: Sequence[BucketScore]) -> list[float]:
    """The middle source length of each bucket (the x axis of accuracy-by-length plots)."""
    return [(s.lo + s.hi) / 2 for s in scores]


def hold_length(scores: Sequence[BucketScore], threshold: float = 0.5, metric: str = "token") -> float:
    """The source length at which accuracy first falls below ``threshold``.

    Read off the accuracy-by-length curve, linearly interpolated between bucket centres:
    the first centre when even the first bucket is below, the last when none is.
    """
    _validate.one_of(metric, METRICS, "metric", "hold_length")
    if not scores:
        raise ValueError("hold_length expects at least one bucket score, got none")
    xs, ys = bucket_centers(scores), [getattr(s, metric) for s in scores]
    if ys[0] < threshold:
        return xs[0]
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False):
        if y1 < threshold:
            return x0 + (x1 - x0) * (y0 - threshold) / (y0 - y1)
    return xs[-1]


def plot_bottleneck(sweep: dict[int, Sequence[BucketScore]], hidden_size: int, length: int,
                    metric: str = "token", figsize: tuple[float, float] = (10, 3.6)):
    """The widget of notebook 02: accuracy against source length for one hidden size (left),
    and accuracy at one source length against hidden size (right).

    ``sweep`` maps each hidden size to its bucket scores (all on the same buckets).
    """
    from matplotlib.figure import Figure

    _validate.one_of(metric, METRICS, "metric", "plot_bottleneck")
    if hidden_size not in sweep:
        raise ValueError(f"plot_bottleneck expects hidden_size to be one of the sweep's sizes "
                         f"{sorted(sweep)}, got {hidden_size!r} (not in the sweep)")
    sizes = sorted(sweep)
    first = sweep[sizes[0]]
    lo, hi = first[0].lo, first[-1].hi
    if not lo <= length <= hi:
        raise ValueError(f"plot_bottleneck expects length in [{lo}, {hi}], got {length!r} "
                         "(outside the evaluated range)")
    k = next(i for i, s in enumerate(first) if s.lo <= length <= s.hi or length < s.lo)
    fig = Figure(figsize=figsize)
    left, right = fig.subplots(1, 2)
    for h in sizes:
        ys = [getattr(s, metric) for s in sweep[h]]
        style = dict(lw=2.5, marker="o", color="C0", zorder=3) if h == hidden_size else dict(
            lw=1, color="0.75")
        left.plot(bucket_centers(sweep[h]), ys, label=f"hidden {h}" if h == hidden_size else None, **style)
    left.axvline(length, color="C3", ls="--", lw=1)
    left.set(xlabel="source length", ylabel=f"{metric} accuracy", ylim=(-0.03, 1.03),
             title=f"hidden size {hidden_size} (grey: the other sizes)")
    accs = [getattr(sweep[h][k], metric) for h in sizes]
    right.plot(sizes, accs, marker="o", color="C3")
    right.plot([hidden_size], [getattr(sweep[hidden_size][k], metric)], "o", ms=12, mfc="none", color="C0")
    right.set(xscale="log", xticks=sizes, xticklabels=[str(h) for h in sizes], ylim=(-0.03, 1.03),
              xlabel="hidden size (size of the context vector)", ylabel=f"{metric} accuracy",
              title=f"source length {first[k].lo}-{first[k].hi}")
    right.minorticks_off()
    fig.tight_layout()
    return fig
