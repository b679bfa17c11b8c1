"""Positional encodings: attention alone is blind to order, so positions are added to the inputs.

Shapes: B batch, T sequence length, D d_model.

- ``sinusoidal_encoding(max_len, d_model)``: the paper's fixed table (Vaswani et al. 2017, 3.5),
  PE[pos, 2i] = sin(pos / 10000^(2i / d_model)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).
- ``SinusoidalPositionalEncoding`` adds that table to its input; ``LearnedPositionalEmbedding``
  adds a trained one (as in BERT and GPT). Both refuse sequences longer than ``max_len``.
- ``offset_dot_products(pe, offset)``: PE[p] . PE[p + offset] for every p (the same for all p).
- ``Tagger``: embedding [+ positions] -> encoder layers -> linear, one output per input token,
  for notebook 06's experiment (reversal fails without positions); ``tag_targets`` and
  ``tagging_accuracy`` go with it.
- ``encoding_view(position, dim, ...)``: the logic of notebook 06's widget.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
           "offset_dot_products", "POSITIONS", "Tagger", "tag_targets", "tagging_accuracy",
           "encoding_view"]

POSITIONS = ("none", "sinusoidal", "learned")  # the Tagger's choices of position information


def _check_positive(value: object, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{who}: {name} should be a positive int, got {value!r}")
    return value


def sinusoidal_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """The sinusoidal table: even columns sin(pos * w_i), odd columns cos(pos * w_i), w_i = 10000^(-2i/D).

    Shapes: -> (max_len, d_model). An odd d_model keeps its last sine column.
    """
    _check_positive(max_len, "max_len", "sinusoidal_encoding")
    _check_positive(d_model, "d_model", "sinusoidal_encoding")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    angles = pos * freq  # (T, 1) * (ceil(D/2),) -> (T, ceil(D/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)  # (T, D)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe.float()


def _check_input(x: object, start: int, d_model: int, max_len: int, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: expected input of shape (B, T, d_model={d_model}), got {got}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"{who}: start should be a non-negative int, got {start!r}")
    if start + x.shape[1] > max_len:
        raise ValueError(f"{who}: positions {start}..{start + x.shape[1] - 1} do not fit max_len="
                         f"{max_len}; build the module with a larger max_len")


class SinusoidalPositionalEncoding(nn.Module):
    """Add the fixed sinusoidal encoding of each position to the input (no trained parameters)."""

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = _check_positive(d_model, "d_model", "SinusoidalPositionalEncoding")
        self.max_len = _check_positive(max_len, "max_len", "SinusoidalPositionalEncoding")
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)  # (max_len, D)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x plus the encodings of positions start .. start + T - 1.

        Shapes: x (B, T, D) -> (B, T, D).
        """
        _check_input(x, start, self.d_model, self.max_len, "SinusoidalPositionalEncoding")
        return self.dropout(x + self.pe[start: start + x.shape[1]].to(x.dtype))  # (B, T, D)


class LearnedPositionalEmbedding(nn.Module):
    """Add a trained vector per position to the input (one row of an nn.Embedding per position)."""

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = _check_positive(d_model, "d_model", "LearnedPositionalEmbedding")
        self.max_len = _check_positive(max_len, "max_len", "LearnedPositionalEmbedding")
        self.embedding = nn.Embedding(max_len, d_model)  # (max_len, D)
        nn.init.normal_(self.embedding.weight, std=0.02)  # small, as in GPT-2
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x plus the learned embeddings of positions start .. start + T - 1.

        Shapes: x (B, T, D) -> (B, T, D).
        """
        _check_input(x, start, self.d_model, self.max_len, "LearnedPositionalEmbedding")
        positions = torch.arange(start, start + x.shape[1], device=x.device)  # (T,)
        return self.dropout(x + self.embedding(positions))  # (B, T, D)


def offset_dot_products(pe: torch.Tensor, offset: int) -> torch.Tensor:
    """PE[p] . PE[p + offset] for p = 0 .. max_len - 1 - offset.

    Shapes: pe (max_len, D) -> (max_len - offset,). For the sinusoidal table every entry is
    the same number, sum_i cos(offset * w_i): it depends on the offset only.
    """
    if not isinstance(pe, torch.Tensor) or pe.dim() != 2:
        got = tuple(pe.shape) if isinstance(pe, torch.Tensor) else type(pe).__name__
        raise ValueError(f"offset_dot_products: expected a table of shape (max_len, D), got {got}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < pe.shape[0]:
        raise ValueError(f"offset_dot_products: offset should be an int in [0, {pe.shape[0]}) "
                         f"for a table of {pe.shape[0]} positions, got {offset!r}")
    return (pe[: pe.shape[0] - offset] * pe[offset:]).sum(-1)  # (max_len - offset,)


class Tagger(nn.Module):
    """Embedding [+ positions] -> encoder layers -> linear: one output token per input token."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, d_ff: int = 128,
                 n_layers: int = 2, max_len: int = 32, positions: str = "sinusoidal",
                 dropout: float = 0.0):
        super().__init__()
        from .transformer import EncoderLayer  # transformer imports this module

        if positions not in POSITIONS:
            raise ValueError(f"Tagger: positions should be one of {POSITIONS}, got {positions!r}")
        for name, value in (("vocab_size", vocab_size), ("n_layers", n_layers)):
            _check_positive(value, name, "Tagger")
        self.positions = positions
        self.embed = nn.Embedding(vocab_size, d_model)
        self.add_positions: nn.Module = nn.Identity()
        if positions == "sinusoidal":
            self.add_positions = SinusoidalPositionalEncoding(d_model, max_len)
        elif positions == "learned":
            self.add_positions = LearnedPositionalEmbedding(d_model, max_len)
            # as large as the token embeddings (nn.Embedding starts at N(0, 1)): at GPT-2's 0.02
            # the positions are drowned and training stalls on the plateau of no positions
            nn.init.normal_(self.add_positions.embedding.weight, std=1.0)
        self.max_len = _check_positive(max_len, "max_len", "Tagger")
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout)
                                    for _ in range(n_layers))
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, src: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
        """Token ids -> logits for each position; padded keys are masked.

        Shapes: src (B, S) -> logits (B, S, V).
        """
        if not isinstance(src, torch.Tensor) or src.dim() != 2 or src.is_floating_point():
            got = f"{src.dtype} {tuple(src.shape)}" if isinstance(src, torch.Tensor) else src
            raise ValueError(f"Tagger: src should be integer token ids of shape (B, S), got {got}")
        if src.shape[1] > self.max_len:
            raise ValueError(f"Tagger: src has length {src.shape[1]}, longer than "
                             f"max_len={self.max_len}")
        mask = (src != pad_id)[:, None, None, :]  # (B, 1, 1, S): True = a real key
        x = self.add_positions(self.embed(src))  # (B, S, D)
        for layer in self.layers:
            x = layer(x, mask)
        return self.out(x)  # (B, S, V)


def tag_targets(batch) -> torch.Tensor:
    """The per-position targets of a ``data.Batch`` whose target is as long as its source.

    ``tgt_out`` is ``y_1 .. y_n <eos>`` padded; the tagger predicts ``y_1 .. y_n`` at the n
    source positions, so the ``<eos>`` becomes padding. Shapes: -> (B, S).
    """
    from .data import EOS, PAD

    S = batch.src.shape[1]
    targets = batch.tgt_out[:, :S].masked_fill(batch.tgt_out[:, :S] == EOS, PAD)  # (B, S)
    if batch.tgt_out.shape[1] != S + 1 or ((targets != PAD) != (batch.src != PAD)).any():
        raise ValueError(f"tag_targets: sources {tuple(batch.src.shape)} and targets "
                         f"{tuple(batch.tgt_out.shape)} differ in length; expected a task whose "
                         "output is as long as its input (copy, reverse, sort)")
    return targets


@torch.no_grad()
def tagging_accuracy(model: nn.Module, pairs, vocab, batch_size: int = 512,
                     device: torch.device | str = "cpu") -> tuple[float, torch.Tensor]:
    """Per-token accuracy of ``model(src) -> (B, S, V)`` on ``pairs``, overall and by position.

    Shapes: -> a float, and (S_max,) the accuracy at each output position (NaN where no
    example reaches that position).
    """
    from .data import PAD, collate

    width = max(len(src) for src, _ in pairs)
    correct, count = torch.zeros(width), torch.zeros(width)
    model.eval()
    for i in range(0, len(pairs), batch_size):
        batch = collate(pairs[i: i + batch_size], vocab, vocab).to(device)
        targets = tag_targets(batch).cpu()  # (B, S)
        pred = model(batch.src).argmax(-1).cpu()  # (B, S)
        real = targets != PAD
        S = targets.shape[1]
        correct[:S] += ((pred == targets) & real).sum(0).float()
        count[:S] += real.sum(0).float()
    return (correct.sum() / count.sum()).item(), correct / count


def encoding_view(position: int, dim: int, max_len: int = 64, d_model: int = 32
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The logic of notebook 06's widget: the table, one column, one row, and a wavelength.

    Shapes: -> table (max_len, D), column PE[:, dim] (max_len,), row PE[position] (D,), and
    the wavelength 2 pi 10000^(2i/D) of column dim = 2i or 2i + 1, in positions.
    """
    table = sinusoidal_encoding(max_len, d_model)  # (T, D), checks max_len and d_model
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < max_len:
        raise ValueError(f"encoding_view: position should be an int in [0, {max_len}), got {position!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < d_model:
        raise ValueError(f"encoding_view: dim should be an int in [0, {d_model}), got {dim!r}")
    wavelength = 2 * math.pi * 10000 ** (2 * (dim // 2) / d_model)
    return table, table[:, dim], table[position], wavelength
