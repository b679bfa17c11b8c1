"""A recurrent network from scratch: one step of an Elman RNN, and the loop over time.

``RNNCell`` is one step, ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``, with its weights
named as in ``nn.RNN`` (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``;
``reference.copy_rnn`` loads ``nn.RNN``'s ``weight_ih_l0`` ... into them). ``RNN`` runs the
cell over time, one step after the other: step t needs the state of step t-1, which is why
an RNN cannot run in parallel over time. Notebook 01's measurements of how the gradient
fades with distance live in ``experiments.fading_memory``.

Shapes: B batch, T sequence length, D input size, H hidden size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate

__all__ = ["RNNCell", "RNN"]


class RNNCell(nn.Module):
    """One tanh RNN step with explicit weights: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = _validate.positive_int(input_size, "input_size", "RNNCell")
        self.hidden_size = _validate.positive_int(hidden_size, "hidden_size", "RNNCell")
        # PyTorch's layout: (out, in), so the products below use the transpose.
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))   # W_ih (H, D)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # W_hh (H, H)
        self.bias_ih = nn.Parameter(torch.empty(hidden_size))                 # b_ih (H,)
        self.bias_hh = nn.Parameter(torch.empty(hidden_size))                 # b_hh (H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every weight uniform in [-1/sqrt(H), 1/sqrt(H)]."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step.

        Shapes: x (B, D), h (B, H) -> h' (B, H).
        """
        _validate.shape(x, "x", (None, self.input_size), "RNNCell", "(B, D)")
        _validate.shape(h, "h", (x.shape[0], self.hidden_size), "RNNCell", "(B, H)")
        pre = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh  # (B, H)
        return torch.tanh(pre)


class RNN(nn.Module):
    """A one-layer tanh RNN unrolled over time with a Python loop (batch first, like ``nn.RNN``)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = RNNCell(input_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the cell over every step; ``h0`` defaults to zeros.

        Shapes: x (B, T, D), h0 (B, H) -> outputs (B, T, H) (the state after each step), h_T (B, H).
        Unlike ``nn.RNN``, h0 and h_T have no leading layer axis.
        """
        B, T, _ = _validate.shape(x, "x", (None, None, self.input_size), "RNN", "(B, T, D)").shape
        h = x.new_zeros(B, self.hidden_size) if h0 is None else h0  # (B, H)
        _validate.shape(h, "h0", (B, self.hidden_size), "RNN", "(B, H)")
        outputs = []
        for t in range(T):  # sequential: step t needs h from step t-1
            h = self.cell(x[:, t], h)  # (B, H)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h  # (B, T, H), (B, H)
