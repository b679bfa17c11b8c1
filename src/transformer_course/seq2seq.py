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
weights (B, S))``. The length experiment of notebooks 02 and 03 lives in
``experiments.bottleneck``.

Shapes: B batch, S source length, T target length, D d_model (embedding size),
H hidden size (the GRU state, and so the size of the context vector), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from . import _validate
from .data import PAD, Batch, Pair, Vocab, collate
from .train import sequence_loss

__all__ = ["Seq2SeqConfig", "Encoded", "DecoderState", "RNNEncoder", "RNNDecoder", "Seq2Seq",
           "last_real_state", "seq2seq_loss", "length_grouped_batches"]


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The sizes of a GRU encoder-decoder."""

    src_vocab_size: int  # source vocabulary, specials included
    tgt_vocab_size: int  # target vocabulary, specials included
    d_model: int = 32  # token embedding size, encoder and decoder
    hidden_size: int = 128  # GRU state size = size of the context vector (the bottleneck)

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "hidden_size"):
            _validate.positive_int(getattr(self, name), name, "Seq2SeqConfig")


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
    keys: torch.Tensor | None = None  # (B, S, A) the source's projected keys, computed once per source


def _check_lengths(lengths: object, B: int, S: int, who: str) -> None:
    """``lengths`` (B,) with every value in [1, S]; the values are checked only on the CPU (no sync)."""
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (B,) or lengths.is_floating_point():
        raise ValueError(f"{who} expects src_lengths of shape (B,) = ({B},) holding integers, got "
                         f"{_validate.describe(lengths)}")
    if lengths.device.type == "cpu" and (lengths.min() < 1 or lengths.max() > S):
        raise ValueError(f"{who} expects src_lengths in [1, {S}] (the source width S), got values from "
                         f"{lengths.min().item()} to {lengths.max().item()}")


def _check_src(src: object, src_lengths: object, who: str) -> None:
    """Source token ids (B, S) and their lengths (B,)."""
    _validate.token_ids(src, "src", who, "(B, S)")
    _check_lengths(src_lengths, *src.shape, who)


def _check_pair(src: object, src_lengths: object, tgt_in: object, who: str) -> None:
    """A source batch and a target batch with the same number of rows."""
    _check_src(src, src_lengths, who)
    _validate.token_ids(tgt_in, "tgt_in", who, "(B, T)")
    if tgt_in.shape[0] != src.shape[0]:
        raise ValueError(f"{who} expects tgt_in (B, T) with as many rows as src (B, S), got "
                         f"{tuple(tgt_in.shape)} and {tuple(src.shape)}")


def _check_attention(context: torch.Tensor, weights: torch.Tensor, state: DecoderState) -> None:
    """What an attention module returned: a context like the decoder state, weights like the mask."""
    hidden, mask = state.hidden, state.encoded.mask
    if context.shape != hidden.shape or weights.shape != mask.shape:
        raise ValueError(f"RNNDecoder expects attention to return context (B, H) = {tuple(hidden.shape)} "
                         f"and weights (B, S) = {tuple(mask.shape)}, got {tuple(context.shape)} and "
                         f"{tuple(weights.shape)}")


def last_real_state(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at each row's last real token, ``outputs[b, lengths[b] - 1]``.

    Shapes: outputs (B, S, H), lengths (B,) -> (B, H).
    """
    _validate.tensor(outputs, "outputs", "last_real_state", dims=3, layout="(B, S, H)")
    _check_lengths(lengths, outputs.shape[0], outputs.shape[1], "last_real_state")
    index = (lengths - 1).to(outputs.device).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])  # (B, 1, H)
    return outputs.gather(1, index).squeeze(1)  # (B, H)


class RNNEncoder(nn.Module):
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
        _check_src(src, src_lengths, "RNNEncoder")
        mask = torch.arange(src.shape[1], device=src.device) < src_lengths.to(src.device)[:, None]  # (B, S)
        # A left-to-right GRU's state at step t has seen tokens 0..t only, so the padding
        # on the right cannot change the state at the last real token: read it there.
        outputs, _ = self.rnn(self.embed(src))  # (B, S, H)
        outputs = outputs * mask.unsqueeze(-1)  # (B, S, H) zeros at padding
        return Encoded(outputs, last_real_state(outputs, src_lengths), mask)


class RNNDecoder(nn.Module):
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
            raise ValueError(f"RNNDecoder expects the encoder's hidden size to equal its own, "
                             f"{self.hidden_size}, got {encoded.final.shape[-1]}")
        # Attention's key projection does not change from step to step: compute it once here.
        project = getattr(self.attention, "project_keys", None)
        keys = project(encoded.outputs) if project is not None else None  # (B, S, A) or None
        return DecoderState(encoded.final, encoded, None, keys)

    def context(self, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The context vector for the next step, and the attention weights that made it.

        Shapes: -> context (B, H), weights (B, S) or None.
        """
        enc = state.encoded
        if self.attention is None:
            return enc.final, None  # the bottleneck: the same vector at every step
        if state.keys is None:
            context, weights = self.attention(state.hidden, enc.outputs, enc.mask)  # (B, H), (B, S)
        else:
            context, weights = self.attention(state.hidden, enc.outputs, enc.mask, projected_keys=state.keys)
        _check_attention(context, weights, state)
        return context, weights

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoding step: the previous tokens in, the next token's logits out.

        Shapes: tokens (B,) -> logits (B, V); state.weights (B, S) or None.
        """
        _validate.token_ids(tokens, "tokens", "RNNDecoder.step", "(B)")
        context, weights = self.context(state)  # (B, H), (B, S) | None
        x = torch.cat([self.embed(tokens), context], dim=-1).unsqueeze(1)  # (B, 1, D + H)
        _, hidden = self.rnn(x, state.hidden.unsqueeze(0).contiguous())  # (1, B, H)
        hidden = hidden.squeeze(0)  # (B, H)
        logits = self.out(torch.cat([hidden, context], dim=-1))  # (B, V)
        return logits, DecoderState(hidden, state.encoded, weights, state.keys)

    def forward(self, tgt_in: torch.Tensor, state: DecoderState
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: feed the true previous tokens, predict every next one.

        Shapes: tgt_in (B, T) -> logits (B, T, V), weights (B, T, S) or None.
        """
        _validate.token_ids(tgt_in, "tgt_in", "RNNDecoder", "(B, T)")
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

    def __init__(self, encoder: RNNEncoder, decoder: RNNDecoder):
        super().__init__()
        if encoder.hidden_size != decoder.hidden_size:
            raise ValueError(f"Seq2Seq expects an encoder and a decoder of the same hidden size (the final "
                             f"encoder state starts the decoder), got {encoder.hidden_size} and "
                             f"{decoder.hidden_size}")
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def from_config(cls, config: Seq2SeqConfig, attention: nn.Module | None = None) -> Seq2Seq:
        """Build the encoder and decoder of ``config`` (with ``attention`` when given)."""
        c = config
        return cls(RNNEncoder(c.src_vocab_size, c.d_model, c.hidden_size),
                   RNNDecoder(c.tgt_vocab_size, c.d_model, c.hidden_size, attention))

    def forward_with_weights(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits and the attention weights of every step (None without attention).

        Shapes: src (B, S), src_lengths (B,), tgt_in (B, T) -> (B, T, V), (B, T, S) or None.
        """
        _check_pair(src, src_lengths, tgt_in, "Seq2Seq")
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


def length_grouped_batches(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab, batch_size: int,
                           generator: torch.Generator) -> Iterator[Batch]:
    """One epoch of batches of similar source lengths, in a shuffled order.

    Grouping by length wastes little time on padding (a batch of 4-symbol sequences does
    not run 40 GRU steps). ``generator`` shuffles the pairs, then the order of the batches.
    """
    _validate.positive_int(batch_size, "batch_size", "length_grouped_batches")
    order = torch.randperm(len(pairs), generator=generator).tolist()
    order.sort(key=lambda i: len(pairs[i][0]))  # stable: random within one length
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for k in torch.randperm(len(groups), generator=generator).tolist():
        yield collate([pairs[i] for i in groups[k]], src_vocab, tgt_vocab)
