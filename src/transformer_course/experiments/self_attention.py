"""Notebook 04 (self-attention): the entropy of attention weights and the temperature widget's logic."""

from __future__ import annotations

import math

import torch

from .. import _validate
from ..attention import scaled_dot_product_attention

__all__ = ["attention_entropy", "temperature_weights"]


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
