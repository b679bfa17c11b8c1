"""Notebook 04 (self-attention): the entropy of attention weights and the temperature widget's figure."""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure

from .. import _validate
from ..attention import scaled_dot_product_attention

__all__ = ["attention_entropy", "temperature_weights", "weights_figure"]


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """The entropy (in nats) of each row of attention weights; 0 log 0 counts as 0.

    Shapes: weights (..., S) -> (...,). Uniform over S keys gives log(S); one-hot gives 0.
    """
    return -(weights * weights.clamp_min(1e-30).log()).sum(-1)


def temperature_weights(
    d_k: int, temperature: float = 1.0, scaled: bool = True, n_tokens: int = 8, seed: int = 0,
) -> tuple[torch.Tensor, float]:
    """Weights of self-attention on random unit-variance q, k of size d_k; divided by temperature.

    The logits are q k^T (/ sqrt(d_k) when ``scaled``) / temperature.
    Shapes: -> weights (n_tokens, n_tokens), their mean row entropy (nats).
    """
    _validate.positive_int(d_k, "d_k", "temperature_weights")
    _validate.positive_number(temperature, "temperature", "temperature_weights")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_tokens, d_k, generator=g, dtype=torch.float64)  # (T, Dh)
    k = torch.randn(n_tokens, d_k, generator=g, dtype=torch.float64)  # (S, Dh)
    scale = (1 / math.sqrt(d_k) if scaled else 1.0) / temperature
    _, weights = scaled_dot_product_attention(q, k, k, scale=scale)  # (T, S)
    return weights.float(), attention_entropy(weights).mean().item()


def weights_figure(d_k: int = 64, temperature: float = 1.0, scaled: bool = True, seed: int = 0) -> Figure:
    """Heatmap of the weights of 8 random queries over 8 random keys (drawn from ``seed``), and
    their entropy."""
    weights, entropy = temperature_weights(d_k, temperature, scaled=scaled, seed=seed)
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    im = ax.imshow(weights.numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    logits = f"q·k{' / √d_k' if scaled else ''} / τ"
    ax.set_title(f"d_k = {d_k}, τ = {temperature:.2g}, softmax({logits})\nmean entropy {entropy:.2f} nats "
                 f"(uniform: {math.log(8):.2f})", fontsize=10)
    fig.colorbar(im, ax=ax, label="weight")
    fig.tight_layout()
    return fig
