"""A GRU encoder-decoder (Cho et al. 2014), with a hook for attention (Bahdanau et al. 2015).

The encoder reads the source and returns one state per token. The decoder sees the source
only through a *context vector* ``c``, fed at every step next to the previous token and
again to the output layer::

    c_t = final encoder state                      (attention=None: one vector for all t)
    c_t = attention(s_{t-1}, encoder outputs)      (with an attention module)
    s_t = GRU([embed(y_{t-1}); c_t], s_{t-1})
    logits_t = Linear([s_t; c_t])

So the decoder with and without attention differ only in how ``c_t`` is computed: that
difference is notebook 03's lesson. An attention module has the interface
``attention(query (B, H), keys (B, S, H), mask (B, S) bool, True = real) -> (context (B, H),
weights (B, S))``.

Shapes: B batch, S source length, T target length, D d_model (embedding size),
H hidden size (the GRU state, and so the size of the context vector), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .data import PAD, Batch, Pair, Vocab, collate, make_pairs, task_vocabs
from .train import BucketScore, History, evaluate_by_length, sequence_loss, train
from .utils import set_seed


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The sizes of a GRU encoder-decoder."""

    src_vocab_size: int  # source vocabulary, specials included
    tgt_vocab_size: int  # target vocabulary, specials included
    d_model: int = 32  # token embedding size, encoder and decoder
    hidden_size: int = 128  # GRU state size = size of the context vector (the bottleneck)

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Seq2SeqConfig.{name} must be a positive int, got {value!r}")


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


class Encoded(NamedTuple):
    """What the encoder hands to the decoder."""

    outputs: torch.Tensor  # (B, S, H) one state per source token, zeros at padding
    final: torch.Tensor  # (B, H) the state after the last *real* token
    mask: torch.Tensor  # (B, S) bool, True at real tokens


class DecoderState(NamedTuple):
    """The decoder's state between two steps, plus what attention needs and showed."""

    hidden: torch.Tensor  # (B, H) s_{t-1}
    encoded: Encoded  # the encoder's outputs, final state and mask
    weights: torch.Tensor | None = None  # (B, S) the last step's attention weights (None without)


def _check_tokens(name: str, tokens: torch.Tensor, dim: int) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(tokens).__name__}")
    if tokens.dtype != torch.long or tokens.dim() != dim:
        raise ValueError(f"{name} must be a {dim}-D long tensor of token ids, got dtype "
                         f"{tokens.dtype} and shape {tuple(tokens.shape)}")
    if tokens.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(tokens.shape)}); expected B >= 1")


def _check_src(src: torch.Tensor, src_lengths: torch.Tensor) -> None:
    _check_tokens("src", src, 2)
    B, S = src.shape
    if not isinstance(src_lengths, torch.Tensor) or src_lengths.shape != (B,):
        got = tuple(src_lengths.shape) if isinstance(src_lengths, torch.Tensor) else type(src_lengths)
        raise ValueError(f"src_lengths must be a tensor of shape ({B},) for src {tuple(src.shape)}, "
                         f"got {got}")
    if src_lengths.min() < 1 or src_lengths.max() > S:
        raise ValueError(f"src_lengths must lie in [1, {S}] (the source width), got values from "
                         f"{src_lengths.min().item()} to {src_lengths.max().item()}")


def last_real_state(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at each row's last real token, ``outputs[b, lengths[b] - 1]``.

    Shapes: outputs (B, S, H), lengths (B,) -> (B, H).
    """
    if outputs.dim() != 3 or lengths.shape != outputs.shape[:1]:
        raise ValueError(f"last_real_state expects outputs (B, S, H) and lengths (B,), got "
                         f"{tuple(outputs.shape)} and {tuple(lengths.shape)}")
    index = (lengths - 1).to(outputs.device).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])  # (B, 1, H)
    return outputs.gather(1, index).squeeze(1)  # (B, H)


class Encoder(nn.Module):
    """Embed the source and run a GRU over it; right padding never reaches the final state."""

    def __init__(self, vocab_size: int, d_model: int, hidden_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.rnn = nn.GRU(d_model, hidden_size, batch_first=True)
        self.hidden_size = hidden_size

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Encoded:
        """Encode a right-padded batch.

        Shapes: src (B, S), src_lengths (B,) -> outputs (B, S, H), final (B, H), mask (B, S).
        """
        _check_src(src, src_lengths)
        mask = torch.arange(src.shape[1], device=src.device) < src_lengths.to(src.device)[:, None]  # (B, S)
        # A left-to-right GRU's state at step t has seen tokens 0..t only, so the padding
        # on the right cannot change the state at the last real token: read it there.
        outputs, _ = self.rnn(self.embed(src))  # (B, S, H)
        outputs = outputs * mask.unsqueeze(-1)  # (B, S, H) zeros at padding
        return Encoded(outputs, last_real_state(outputs, src_lengths), mask)


class Decoder(nn.Module):
    """A GRU decoder fed a context vector at every step: the final encoder state, or attention's."""

    def __init__(self, vocab_size: int, d_model: int, hidden_size: int,
                 attention: nn.Module | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.rnn = nn.GRU(d_model + hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(2 * hidden_size, vocab_size)
        self.attention = attention
        self.hidden_size = hidden_size

    def init_state(self, encoded: Encoded) -> DecoderState:
        """The state before the first step: s_0 is the encoder's final state."""
        if encoded.final.shape[-1] != self.hidden_size:
            raise ValueError(f"the encoder's hidden size {encoded.final.shape[-1]} differs from the "
                             f"decoder's {self.hidden_size}")
        return DecoderState(encoded.final, encoded)

    def context(self, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The context vector for the next step, and the attention weights that made it.

        Shapes: -> context (B, H), weights (B, S) or None.
        """
        enc = state.encoded
        if self.attention is None:
            return enc.final, None  # the bottleneck: the same vector at every step
        context, weights = self.attention(state.hidden, enc.outputs, enc.mask)  # (B, H), (B, S)
        if context.shape != state.hidden.shape or weights.shape != enc.mask.shape:
            raise ValueError(f"attention must return context {tuple(state.hidden.shape)} and weights "
                             f"{tuple(enc.mask.shape)}, got {tuple(context.shape)} and "
                             f"{tuple(weights.shape)}")
        return context, weights

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoding step: the previous tokens in, the next token's logits out.

        Shapes: tokens (B,) -> logits (B, V); state.weights (B, S) or None.
        """
        _check_tokens("tokens", tokens, 1)
        context, weights = self.context(state)  # (B, H), (B, S) | None
        x = torch.cat([self.embed(tokens), context], dim=-1).unsqueeze(1)  # (B, 1, D + H)
        _, hidden = self.rnn(x, state.hidden.unsqueeze(0).contiguous())  # (1, B, H)
        hidden = hidden.squeeze(0)  # (B, H)
        logits = self.out(torch.cat([hidden, context], dim=-1))  # (B, V)
        return logits, DecoderState(hidden, state.encoded, weights)

    def forward(self, tgt_in: torch.Tensor, state: DecoderState
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: feed the true previous tokens, predict every next one.

        Shapes: tgt_in (B, T) -> logits (B, T, V), weights (B, T, S) or None.
        """
        _check_tokens("tgt_in", tgt_in, 2)
        if self.attention is None:  # a constant context: one GRU call over all T steps
            context = state.encoded.final.unsqueeze(1).expand(-1, tgt_in.shape[1], -1)  # (B, T, H)
            x = torch.cat([self.embed(tgt_in), context], dim=-1)  # (B, T, D + H)
            hiddens, _ = self.rnn(x, state.hidden.unsqueeze(0).contiguous())  # (B, T, H)
            return self.out(torch.cat([hiddens, context], dim=-1)), None  # (B, T, V)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):  # attention needs s_{t-1} before step t: a loop
            step_logits, state = self.step(tgt_in[:, t], state)
            logits.append(step_logits)
            weights.append(state.weights)
        return torch.stack(logits, 1), torch.stack(weights, 1)  # (B, T, V), (B, T, S)


class Seq2Seq(nn.Module):
    """Encoder + decoder, with teacher forcing (``forward``) and a step interface for decoding."""

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        if encoder.hidden_size != decoder.hidden_size:
            raise ValueError(f"encoder hidden size {encoder.hidden_size} != decoder hidden size "
                             f"{decoder.hidden_size}: the final encoder state starts the decoder")
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def from_config(cls, config: Seq2SeqConfig, attention: nn.Module | None = None) -> Seq2Seq:
        """Build the encoder and decoder of ``config`` (with ``attention`` when given)."""
        c = config
        return cls(Encoder(c.src_vocab_size, c.d_model, c.hidden_size),
                   Decoder(c.tgt_vocab_size, c.d_model, c.hidden_size, attention))

    def forward_with_weights(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits and the attention weights of every step (None without attention).

        Shapes: src (B, S), src_lengths (B,), tgt_in (B, T) -> (B, T, V), (B, T, S) or None.
        """
        _check_src(src, src_lengths)
        _check_tokens("tgt_in", tgt_in, 2)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in has {tgt_in.shape[0]} rows but src has {src.shape[0]}")
        return self.decoder(tgt_in, self.start(src, src_lengths))

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for every target position.

        Shapes: src (B, S), src_lengths (B,), tgt_in (B, T) -> logits (B, T, V).
        """
        return self.forward_with_weights(src, src_lengths, tgt_in)[0]

    def start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """Encode the source; the returned state is what ``step`` needs first."""
        return self.decoder.init_state(self.encoder(src, src_lengths))

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoding step. Shapes: tokens (B,) -> logits (B, V)."""
        return self.decoder.step(tokens, state)


def seq2seq_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Teacher-forced cross-entropy of ``model`` on one padded batch (for ``train.train``)."""
    return sequence_loss(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out)


@dataclass
class LengthRun:
    """A model trained on a ``LengthExperiment``, its loss history and its scores by bucket."""

    model: Seq2Seq
    history: History
    scores: list[BucketScore]


def length_grouped_batches(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab, batch_size: int,
                           generator: torch.Generator) -> Iterator[Batch]:
    """One epoch of batches of similar source lengths, in a shuffled order.

    Grouping by length wastes little time on padding (a batch of 4-symbol sequences does
    not run 40 GRU steps). ``generator`` shuffles the pairs, then the order of the batches.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = torch.randperm(len(pairs), generator=generator).tolist()
    order.sort(key=lambda i: len(pairs[i][0]))  # stable: random within one length
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for k in torch.randperm(len(groups), generator=generator).tolist():
        yield collate([pairs[i] for i in groups[k]], src_vocab, tgt_vocab)


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
    from .decoding import greedy_decode

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
    if metric not in ("exact", "token"):
        raise ValueError(f"metric must be 'exact' or 'token', got {metric!r}")
    if not scores:
        raise ValueError("hold_length needs at least one bucket score, got none")
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

    if metric not in ("exact", "token"):
        raise ValueError(f"metric must be 'exact' or 'token', got {metric!r}")
    if hidden_size not in sweep:
        raise ValueError(f"hidden_size {hidden_size} is not in the sweep {sorted(sweep)}")
    sizes = sorted(sweep)
    first = sweep[sizes[0]]
    lo, hi = first[0].lo, first[-1].hi
    if not lo <= length <= hi:
        raise ValueError(f"length {length} is outside the evaluated range [{lo}, {hi}]")
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


__all__ = ["Seq2SeqConfig", "LengthExperiment", "BOTTLENECK", "Encoded", "DecoderState", "Encoder",
           "Decoder", "Seq2Seq", "last_real_state", "seq2seq_loss", "LengthRun", "length_grouped_batches",
           "experiment_data", "run_length_experiment", "bucket_centers", "hold_length", "plot_bottleneck"]
