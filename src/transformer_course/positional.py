"""Positional encodings: attention alone is blind to order, so positions are added to the inputs.

Shapes: B batch, T sequence length, D d_model.

- ``sinusoidal_encoding(max_len, d_model)``: the paper's fixed table (Vaswani et al. 2017, 3.5),
  PE[pos, 2i] = sin(pos / 10000^(2i / d_model)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).
- ``SinusoidalPositionalEncoding`` adds that table to its input; ``LearnedPositionalEmbedding``
  adds a trained one (as in BERT and GPT). Both refuse sequences longer than ``max_len``.
- ``offset_dot_products(pe, offset)``: PE[p] . PE[p + offset] for every p (the same for all p).

Notebook 06's experiment (a tagger trained with and without positions) and the logic of its
widget live in ``experiments/positions.py``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate

__all__ = ["sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
           "offset_dot_products"]


def sinusoidal_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """The sinusoidal table: even columns sin(pos * w_i), odd columns cos(pos * w_i), w_i = 10000^(-2i/D).

    Shapes: -> (max_len, d_model). An odd d_model keeps its last sine column.
    """
    _validate.positive_int(max_len, "max_len", "sinusoidal_encoding")
    _validate.positive_int(d_model, "d_model", "sinusoidal_encoding")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    angles = pos * freq  # (T, 1) * (ceil(D/2),) -> (T, ceil(D/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)  # (T, D)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe.float()


def _check_input(x: object, start: object, d_model: int, max_len: int, who: str) -> None:
    """x of shape (B, T, d_model), and positions start .. start + T - 1 inside the table."""
    _validate.tensor(x, "x", who, dims=3, layout=f"(B, T, d_model={d_model})")
    if x.shape[-1] != d_model:
        raise ValueError(f"{who} expects x of shape (B, T, d_model={d_model}), got shape {tuple(x.shape)}")
    _validate.int_in(start, "start", who, 0)
    if start + x.shape[1] > max_len:
        end = start + x.shape[1] - 1
        raise ValueError(f"{who} expects start + T <= max_len, got positions {start}..{end}, which do not "
                         f"fit max_len={max_len}; build the module with a larger max_len")


class SinusoidalPositionalEncoding(nn.Module):
    """Add the fixed sinusoidal encoding of each position to the input (no trained parameters)."""

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = _validate.positive_int(d_model, "d_model", "SinusoidalPositionalEncoding")
        self.max_len = _validate.positive_int(max_len, "max_len", "SinusoidalPositionalEncoding")
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
        self.d_model = _validate.positive_int(d_model, "d_model", "LearnedPositionalEmbedding")
        self.max_len = _validate.positive_int(max_len, "max_len", "LearnedPositionalEmbedding")
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
    _validate.tensor(pe, "pe", "offset_dot_products", dims=2, layout="(max_len, D)")
    _validate.int_in(offset, "offset", "offset_dot_products", 0, pe.shape[0])
    return (pe[: pe.shape[0] - offset] * pe[offset:]).sum(-1)  # (max_len - offset,)
