"""Notebooks 02 (the seq2seq bottleneck) and 03 (attention for seq2seq): accuracy against length.

Notebook 02 (``ChannelExperiment``, ``CHANNEL``): a GRU encoder-decoder whose only link is a
linear layer of ``width`` floats (``BottleneckSeq2Seq``), trained for a fixed number of steps
(``run_channel``; the budget was chosen so that, at width 128, strings of 3-4 symbols come back
at least 99% exact, which the notebook asserts), then measured: exact match and per-position
accuracy against length (``score_by_length``, ``position_accuracy``), a linear probe that reads
each source symbol from the ``width`` floats (``fit_probe``, ``probe_accuracy``), and a sweep
over ``width`` with everything else fixed. Its widget's figure is ``plot_channel``.

Notebook 03 and exercise 02 (``LengthExperiment``, ``BOTTLENECK``): ``run_length_experiment``
trains a ``seq2seq.Seq2Seq`` with or without attention on one preset and scores it by
source-length bucket, greedily decoded.

Shapes: B batch, S source length, T target length, H hidden size, V vocabulary,
W the bottleneck's width, N strings, L lengths, P positions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from ..data import PAD, Batch, Pair, Vocab, collate, make_pairs, task_vocabs
from ..decoding import greedy_decode
from ..seq2seq import (
    DecoderState,
    Encoded,
    RNNDecoder,
    RNNEncoder,
    Seq2Seq,
    Seq2SeqConfig,
    length_grouped_batches,
    seq2seq_loss,
)
from ..train import BucketScore, History, evaluate_by_length, train
from ..utils import set_seed

__all__ = ["LengthExperiment", "BOTTLENECK", "LengthRun", "experiment_data", "run_length_experiment",
           "bucket_centers", "ChannelExperiment", "CHANNEL", "BottleneckSeq2Seq", "ChannelRun",
           "channel_data", "by_length", "same_length_batches", "cosine_decay", "run_channel",
           "score_by_length", "position_accuracy", "LinearProbe", "fit_probe", "probe_accuracy",
           "probe_pairs", "plot_channel"]

@dataclass(frozen=True)
class LengthExperiment:
    """One task, one data set and one training budget, evaluated by source-length bucket.

    Notebook 03 trains the models with and without attention on the same preset
    (``BOTTLENECK``), so the curves compare like with like; exercise 02 trains a small model on
    a shrunk copy of it. (Notebook 02 uses ``ChannelExperiment`` instead.)
    """

    task: str = "copy"  # copy / reverse / sort (data.TASKS)
    min_len: int = 3  # shortest source sequence
    max_len: int = 24  # longest source sequence
    n_train: int = 20_000  # training pairs, lengths spread evenly over [min_len, max_len]
    n_test: int = 660  # test pairs (another seed): 30 per source length
    buckets: tuple[tuple[int, int], ...] = ((3, 5), (6, 8), (9, 11), (12, 14), (15, 17),
                                            (18, 20), (21, 24))  # source-length buckets
    d_model: int = 32  # embedding size
    hidden_size: int = 128  # GRU state size
    steps: int = 300  # Adam steps: the training budget
    batch_size: int = 64  # pairs per step, grouped by similar source length
    lr: float = 1e-2  # Adam learning rate
    clip: float = 1.0  # gradient-norm clipping
    seed: int = 0  # one seed for the model's initialisation, the data and the batch order


# Notebook 03's copy experiment, with and without attention: copy sequences of 3 to 24 symbols.
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

    ``hidden_size`` overrides the preset's; ``attention`` is passed to the decoder and must
    match the hidden size.
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


# --- Notebook 02: the bottleneck, measured after short strings are learned -------------------


@dataclass(frozen=True)
class ChannelExperiment:
    """Notebook 02's experiment: copy strings through a channel of ``width`` floats.

    Everything but ``width`` stays fixed across notebook 02's sweep. The budget (``steps``) is
    fixed in advance, chosen so that short strings (lengths ``min_len`` to ``short_max``) come
    back at least 99% exact at the widest width: the model has learned to copy before we ask
    what length costs. Narrower widths train for the same budget.
    """

    task: str = "copy"  # copy / reverse / sort (data.TASKS)
    min_len: int = 3  # shortest source string
    max_len: int = 12  # longest source string
    short_max: int = 4  # "short": lengths min_len..short_max (>= 99% exact at width 128, notebook 02)
    n_train: int = 24_000  # training pairs, lengths spread evenly over [min_len, max_len]
    n_test: int = 100  # held-out test strings per length (another seed)
    d_model: int = 32  # embedding size
    hidden_size: int = 128  # encoder and decoder GRU state size (fixed in the sweep)
    width: int = 128  # floats between encoder and decoder: the bottleneck (the sweep varies it)
    steps: int = 700  # Adam steps, learning rate decayed to zero on a cosine
    batch_size: int = 128  # pairs per step, all of one source length
    lr: float = 5e-3  # Adam's peak learning rate
    clip: float = 1.0  # gradient-norm clipping
    eval_every: int = 175  # steps between two scorings of the test set (the last one scores the run)
    seed: int = 0  # the model's initialisation, the data and the batch order

    @property
    def lengths(self) -> list[int]:
        """Every source length of the experiment, shortest first."""
        return list(range(self.min_len, self.max_len + 1))


# Notebook 02's experiment: copy strings of 3 to 12 symbols through a channel of 128 floats.
CHANNEL = ChannelExperiment()


class BottleneckSeq2Seq(nn.Module):
    """``seq2seq``'s GRU encoder-decoder with a linear layer of ``width`` floats between the two.

    The encoder's final state h is mapped to ``width`` floats ``z = D h + b_D`` (``down``, the
    channel); the decoder starts from ``c = U z + b_U`` (``up``) and is fed ``c`` at every step,
    as ``RNNDecoder`` does without attention. Nothing else of the source reaches the decoder.
    """

    def __init__(self, config: Seq2SeqConfig, width: int):
        super().__init__()
        _validate.positive_int(width, "width", "BottleneckSeq2Seq")
        H = config.hidden_size
        self.encoder = RNNEncoder(config.src_vocab_size, config.d_model, H)
        self.down = nn.Linear(H, width)  # encoder state -> the channel's W floats
        self.up = nn.Linear(width, H)  # the channel -> the decoder's first state and context
        self.decoder = RNNDecoder(config.tgt_vocab_size, config.d_model, H)  # no attention
        self.width = width
        # Start from orthogonal maps, which keep the state's scale (an orthogonal matrix when
        # W = H): nn.Linear's default init would divide the context's variance by about 3 per layer.
        for layer in (self.down, self.up):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def channel(self, src: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """The ``width`` floats that carry the source to the decoder.

        Shapes: src (B, S), src_lengths (B,) -> z (B, W).
        """
        return self.down(self.encoder(src, src_lengths).final)  # (B, H) -> (B, W)

    def start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """Encode, squeeze through the channel; the decoder's state before its first step."""
        enc = self.encoder(src, src_lengths)
        c = self.up(self.down(enc.final))  # (B, H) -> (B, W) -> (B, H)
        # Without attention the decoder reads only `final`; zeros stand in for the
        # per-token states, so that nothing but the channel can reach it.
        return self.decoder.init_state(Encoded(torch.zeros_like(enc.outputs), c, enc.mask))

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoding step. Shapes: tokens (B,) -> logits (B, V)."""
        return self.decoder.step(tokens, state)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits. Shapes: src (B, S), src_lengths (B,), tgt_in (B, T) -> (B, T, V)."""
        _validate.token_ids(tgt_in, "tgt_in", "BottleneckSeq2Seq", "(B, T)")
        return self.decoder(tgt_in, self.start(src, src_lengths))[0]


def channel_data(exp: ChannelExperiment) -> tuple[list[Pair], list[Pair], Vocab, Vocab]:
    """Training pairs and held-out test pairs (``n_test`` per length, another seed) of ``exp``."""
    src_vocab, tgt_vocab = task_vocabs(exp.task)
    train_pairs = make_pairs(exp.task, exp.n_train, exp.min_len, exp.max_len, seed=exp.seed)
    test_pairs = make_pairs(exp.task, exp.n_test * len(exp.lengths), exp.min_len, exp.max_len,
                            seed=exp.seed + 1)
    return train_pairs, test_pairs, src_vocab, tgt_vocab


def by_length(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab) -> dict[int, Batch]:
    """One batch per source length, holding every pair of that length (collated once)."""
    groups: dict[int, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(len(pair[0]), []).append(pair)
    return {n: collate(group, src_vocab, tgt_vocab) for n, group in sorted(groups.items())}


def same_length_batches(groups: dict[int, Batch], batch_size: int, generator: torch.Generator
                        ) -> Iterator[Batch]:
    """One epoch of batches, each of one source length (no padding), in a shuffled order.

    Cut from batches collated once (``by_length``), so a step pays for no Python collation.
    """
    _validate.positive_int(batch_size, "batch_size", "same_length_batches")
    chunks = []
    for group in groups.values():
        order = torch.randperm(group.src.shape[0], generator=generator)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            chunks.append(Batch(group.src[rows], group.src_lengths[rows], group.tgt_in[rows],
                                group.tgt_out[rows]))
    for k in torch.randperm(len(chunks), generator=generator).tolist():
        yield chunks[k]


def cosine_decay(steps: int):
    """A learning-rate multiplier for ``train.train``: from 1 down to 0 over ``steps`` steps."""
    _validate.positive_int(steps, "steps", "cosine_decay")
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


@dataclass
class ChannelRun:
    """A ``BottleneckSeq2Seq`` trained on a ``ChannelExperiment``, scored on held-out strings."""

    exp: ChannelExperiment
    model: BottleneckSeq2Seq
    history: History  # losses; history.evals holds the exact match by length during training
    scores: list[BucketScore]  # one per source length, after training

    def exact(self, lo: int, hi: int | None = None) -> float:
        """Exact match over the test strings of lengths lo..hi (hi = lo by default)."""
        hi = lo if hi is None else hi
        chosen = [s for s in self.scores if lo <= s.lo and s.hi <= hi]
        if not chosen:
            raise ValueError(f"ChannelRun.exact expects lengths within the scored ones "
                             f"{self.scores[0].lo}-{self.scores[-1].hi}, got {lo}-{hi}")
        return sum(s.exact * s.n for s in chosen) / sum(s.n for s in chosen)


def _model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def score_by_length(model: nn.Module, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
                    device: torch.device | str | None = None) -> list[BucketScore]:
    """Exact match and token accuracy of greedy decoding, one ``BucketScore`` per source length
    (on ``device``; by default the model's own)."""
    device = _model_device(model) if device is None else device
    lengths = sorted({len(s) for s, _ in pairs})
    return evaluate_by_length(
        lambda b: greedy_decode(model, b.src, b.src_lengths, max_len=b.tgt_out.shape[1]),
        pairs, src_vocab, tgt_vocab, [(n, n) for n in lengths], device=device)


def run_channel(exp: ChannelExperiment, width: int | None = None, *, device: torch.device | str = "cpu",
                desc: str | None = None) -> ChannelRun:
    """Train a ``BottleneckSeq2Seq`` of ``width`` (default ``exp.width``) on ``exp``, score it by length.

    Every ``exp.eval_every`` steps and after the last the test set is decoded, so
    ``history.evals`` shows how the exact match of each length grew during training; the last
    scoring is the run's ``scores``.
    """
    exp = exp if width is None else dataclasses.replace(exp, width=width)
    train_pairs, test_pairs, src_vocab, tgt_vocab = channel_data(exp)
    groups = by_length(train_pairs, src_vocab, tgt_vocab)
    set_seed(exp.seed)
    config = Seq2SeqConfig(len(src_vocab), len(tgt_vocab), exp.d_model, exp.hidden_size)
    model = BottleneckSeq2Seq(config, exp.width).to(device)

    def evaluate(m: nn.Module) -> dict:
        scores = score_by_length(m, test_pairs, src_vocab, tgt_vocab, device)
        return {"exact": [s.exact for s in scores], "scores": scores}

    history = train(model, seq2seq_loss, lambda g: same_length_batches(groups, exp.batch_size, g),
                    steps=exp.steps, lr=exp.lr, clip=exp.clip, schedule=cosine_decay(exp.steps),
                    seed=exp.seed, device=device, desc=desc or f"width {exp.width}",
                    evaluate=evaluate, eval_every=exp.eval_every)
    return ChannelRun(exp, model, history, history.evals[-1]["scores"])


@torch.no_grad()
def position_accuracy(model: nn.Module, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """How often greedy decoding gets output position i right, for each source length (on
    ``device``; by default the model's own).

    Row k is the k-th shortest length n, column i the position (0-based); NaN where i >= n.
    Shapes: -> (L, P), P the longest length.
    """
    device = _model_device(model) if device is None else device
    groups = by_length(pairs, src_vocab, tgt_vocab)
    longest = max(groups)
    acc = torch.full((len(groups), longest), float("nan"))
    for k, (n, b) in enumerate(groups.items()):
        b = b.to(device)
        pred = greedy_decode(model, b.src, b.src_lengths, max_len=n + 1).cpu()  # (N, <= n + 1)
        pred = F.pad(pred, (0, n + 1 - pred.shape[1]), value=PAD)[:, :n]  # (N, n)
        acc[k, :n] = (pred == b.tgt_out[:, :n].cpu()).float().mean(0)
    return acc


class LinearProbe(nn.Module):
    """A linear classifier per source position that reads the symbol there from the channel.

    Scores ``(z - mean) / std @ weight + bias``, one score per (position, symbol); the
    prediction at each position is the symbol with the highest score.
    """

    def __init__(self, width: int, positions: int, vocab_size: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))  # the features' mean and spread on the fit set
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("weight", torch.zeros(width, positions * vocab_size))
        self.register_buffer("bias", torch.zeros(positions * vocab_size))
        self.positions, self.vocab_size = positions, vocab_size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Shapes: z (N, W) -> scores (N, P, V)."""
        _validate.tensor(z, "z", "LinearProbe", dims=2, layout="(N, W)")
        x = (z - self.mean) / self.std  # (N, W) standardised
        return (x @ self.weight + self.bias).view(-1, self.positions, self.vocab_size)  # (N, P, V)


@torch.no_grad()
def fit_probe(z: torch.Tensor, symbols: torch.Tensor, vocab_size: int, ridge: float = 1e-4) -> LinearProbe:
    """Fit a ``LinearProbe`` by least squares to the one-hot codes of ``symbols``.

    A closed form (ridge regression on standardised features), so the fit is exact, fast and
    needs no seed; ``ridge`` (times the number of strings) keeps it well posed.
    Shapes: z (N, W), symbols (N, P) token ids -> a probe whose scores are (N, P, V).
    """
    _validate.tensor(z, "z", "fit_probe", dims=2, layout="(N, W)")
    if not isinstance(symbols, torch.Tensor) or symbols.dim() != 2 or symbols.shape[0] != z.shape[0]:
        raise ValueError(f"fit_probe expects symbols (N, P) with as many rows as z (N, W) = "
                         f"{tuple(z.shape)}, got {_validate.describe(symbols)}")
    N, W = z.shape
    probe = LinearProbe(W, symbols.shape[1], vocab_size).to(z.device)
    probe.mean.copy_(z.mean(0))
    probe.std.copy_(z.std(0).clamp_min(1e-6))
    x = (z - probe.mean) / probe.std  # (N, W) standardised
    y = F.one_hot(symbols, vocab_size).flatten(1).to(z.dtype)  # (N, P * V)
    probe.bias.copy_(y.mean(0))  # centred features: the bias is the targets' mean
    gram = x.T @ x + ridge * N * torch.eye(W, dtype=z.dtype, device=z.device)  # (W, W)
    probe.weight.copy_(torch.linalg.solve(gram, x.T @ (y - probe.bias)))  # (W, P * V)
    return probe


def probe_pairs(exp: ChannelExperiment, per_length: int, seed: int) -> list[Pair]:
    """``per_length`` fresh strings of every length of ``exp`` (for fitting or scoring a probe)."""
    _validate.positive_int(per_length, "per_length", "probe_pairs")
    return make_pairs(exp.task, per_length * len(exp.lengths), exp.min_len, exp.max_len, seed=seed)


@torch.no_grad()
def probe_accuracy(model: BottleneckSeq2Seq, fit_pairs: Sequence[Pair], test_pairs: Sequence[Pair],
                   vocab: Vocab, device: torch.device | str | None = None) -> torch.Tensor:
    """How often a linear probe reads the symbol at position i from the channel, per length
    (the channel computed on ``device``; by default the model's own).

    For each source length n, one probe is fitted on the channel floats of the ``fit_pairs`` of
    that length and scored on the ``test_pairs`` of that length (strings it never saw). Row k is
    the k-th shortest length, column i the position (0-based); NaN where i >= n.
    Shapes: -> (L, P), P the longest length.
    """
    device = _model_device(model) if device is None else device
    fit, test = by_length(fit_pairs, vocab, vocab), by_length(test_pairs, vocab, vocab)
    if set(fit) != set(test):
        raise ValueError(f"probe_accuracy expects the same lengths in fit_pairs and test_pairs, got "
                         f"{sorted(fit)} and {sorted(test)}")
    acc = torch.full((len(fit), max(fit)), float("nan"))
    for k, n in enumerate(fit):
        z_fit = model.channel(fit[n].src.to(device), fit[n].src_lengths.to(device))  # (N, W)
        probe = fit_probe(z_fit, fit[n].src.to(device), len(vocab))
        z_test = model.channel(test[n].src.to(device), test[n].src_lengths.to(device))  # (N, W)
        acc[k, :n] = (probe(z_test).argmax(-1).cpu() == test[n].src).float().mean(0)  # (n,)
    return acc


def plot_channel(runs: dict[int, ChannelRun], width: int, length: int, *, n_fit: int = 2000,
                 n_test: int = 500, seed: int = 0, figsize: tuple[float, float] = (11, 3.8)):
    """The widget of notebook 02, for one trained width and one source length.

    Left, computed now on fresh strings of that length (nothing is retrained): how often the
    decoder gets each position right on ``n_test`` strings, and how often a linear probe, fitted
    now on ``n_fit`` other strings, reads the symbol there from the channel. Right, from the runs
    as trained: exact match against length for every width, the chosen one bold (a legend names
    each width).
    """
    from matplotlib.figure import Figure

    if width not in runs:
        raise ValueError(f"plot_channel expects width to be one of the trained widths {sorted(runs)}, "
                         f"got {width!r}")
    exp = runs[width].exp
    _validate.int_in(length, "length", "plot_channel", exp.min_len, exp.max_len + 1)
    model, vocab = runs[width].model, task_vocabs(exp.task)[0]
    one = dataclasses.replace(exp, min_len=length, max_len=length)
    test = probe_pairs(one, n_test, seed)
    decoded = position_accuracy(model, test, vocab, vocab)[0]  # (n,)
    probed = probe_accuracy(model, probe_pairs(one, n_fit, seed + 1), test, vocab)[0]  # (n,)
    fig = Figure(figsize=figsize)
    left, right = fig.subplots(1, 2)
    xs = range(1, length + 1)
    left.plot(xs, decoded, "o-", color="C0", label="decoder, greedy")
    left.plot(xs, probed, "s--", color="C1", label="linear probe on the channel")
    left.axhline(1 / (len(vocab) - 4), color="0.6", ls=":", label="chance (1/20)")
    left.set(xlabel="source position", ylabel="accuracy on fresh strings", ylim=(-0.03, 1.03),
             title=f"width {width}, strings of {length} symbols")
    left.legend(loc="upper right", fontsize=8)
    others = iter([":", "--", "-."])  # the other widths, told apart by their line style
    for w in sorted(runs):
        scores = runs[w].scores
        style = (dict(lw=2.5, marker="o", color="C0", zorder=3) if w == width
                 else dict(lw=1.2, color="0.5", ls=next(others, "-")))
        right.plot([s.lo for s in scores], [s.exact for s in scores], label=f"width {w}", **style)
    right.axvline(length, color="C3", ls="--", lw=1, label=f"length {length}")
    right.set(xlabel="source length", ylabel="exact match (held-out)", ylim=(-0.03, 1.03),
              title=f"as trained: every width, width {width} bold")
    right.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
