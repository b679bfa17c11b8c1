"""Positional encodings: attention alone is blind to order, so positions are added to the inputs.

Shapes: B batch, T sequence length, D d_model.

- ``sinusoidal_encoding(max_len, d_model)``: the paper's fixed table (Vaswani et al. 2017, 3.5),
  PE[pos, 2i] = sin(pos / 10000^(2i / d_model)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).
- ``SinusoidalPositionalEncoding`` adds that table to its input; ``LearnedPositionalEmbedding``
  adds a trained one (as in BERT and GPT). Both refuse sequences longer than ``max_len``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding"]


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
