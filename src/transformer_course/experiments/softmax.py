"""Notebook 00 (start here): the softmax temperature widget's logic."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .. import _validate

__all__ = ["DEMO_LOGITS", "softmax_temperature", "temperature_figure"]

DEMO_LOGITS = (2.0, 1.0, 0.5, 0.0, -1.0)


def softmax_temperature(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """Softmax of ``logits / temperature`` and its entropy in bits."""
    _validate.positive_number(temperature, "temperature", "softmax_temperature")
    probs = torch.softmax(logits / temperature, dim=-1)
    entropy = -(probs * probs.clamp_min(1e-12).log2()).sum().item()
    return probs, entropy


def temperature_figure(temperature: float = 1.0) -> Figure:
    """Bar chart of a softmax at one temperature: low is peaked, high is flat."""
    logits = torch.tensor(DEMO_LOGITS)
    probs, entropy = softmax_temperature(logits, temperature)
    fig = Figure(figsize=(6, 2.8))
    ax = fig.subplots()
    ax.bar([f"x{i}={v:g}" for i, v in enumerate(DEMO_LOGITS)], probs.numpy(), color="tab:blue")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(f"softmax(x / {temperature:.2f}): entropy {entropy:.2f} bits "
                 f"(max {torch.log2(torch.tensor(len(DEMO_LOGITS))).item():.2f})")
    fig.tight_layout()
    return fig
