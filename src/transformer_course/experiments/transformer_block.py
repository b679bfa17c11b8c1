"""Notebook 07: the block's experiments: the gradient that reaches each layer, with and without
residual connections, and the learning-rate warm-up of the post-LN against pre-LN comparison.

Shapes: B batch, S sequence length, D d_model.

- ``NoResidualEncoderLayer``: the course's ``EncoderLayer`` with its skip connections removed,
  built only for this experiment;
- ``layer_gradient_norms`` and ``gradient_norm_curves`` (the logic of notebook 07's widget),
  ``plot_gradient_curves`` (one panel of them) and ``gradient_figure`` (the widget's figure);
- ``constant_warmup``: a linear warm-up to a constant learning rate.

The tagging model and its targets, which notebook 07 trains post-LN and pre-LN, are notebook 06's:
``experiments.positions.Tagger`` and ``tag_targets``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from .. import _validate
from ..transformer import EncoderLayer

__all__ = ["NoResidualEncoderLayer", "layer_gradient_norms", "GRADIENT_VARIANTS", "gradient_norm_curves",
           "GRADIENT_STYLE", "plot_gradient_curves", "gradient_figure", "constant_warmup"]


class NoResidualEncoderLayer(EncoderLayer):
    """``EncoderLayer`` without its residual connections: each sublayer's output replaces its input."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, S, D), mask broadcastable to (B, H, S, S) -> (B, S, D)."""
        if self.norm_first:  # pre-LN without the skip: sublayer(norm(x))
            x = self._self_attention_block(self.norm1(x), mask)
            return self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(self._self_attention_block(x, mask))  # post-LN without the skip: norm(sublayer(x))
        return self.norm2(self.dropout2(self.ff(x)))


def layer_gradient_norms(depth: int, residual: bool = True, norm_first: bool = False, *,
                         d_model: int = 64, n_heads: int = 4, d_ff: int = 256, batch_size: int = 8,
                         seq_len: int = 16, seed: int = 0) -> torch.Tensor:
    """The gradient norm of the loss w.r.t. each layer's input, at initialisation: (depth,).

    A stack of ``depth`` freshly initialised encoder layers (pre-LN stacks end with a final
    LayerNorm, as ``Encoder`` does) maps a random input (B, S, D) to an output whose mean
    squared error to a random target is the loss. Entry ``i`` is ``||dL / dx_i||``, where
    ``x_i`` is the input of layer ``i`` (0 = the first layer, nearest the data).
    """
    depth = _validate.positive_int(depth, "depth", "layer_gradient_norms")
    layer = EncoderLayer if residual else NoResidualEncoderLayer
    g = torch.Generator().manual_seed(_validate.seed(seed, "layer_gradient_norms"))
    with torch.random.fork_rng():  # the layers' initialisation leaves the global RNG alone
        torch.manual_seed(seed)
        layers = nn.ModuleList(layer(d_model, n_heads, d_ff, 0.0, norm_first) for _ in range(depth))
        final = nn.LayerNorm(d_model) if norm_first else nn.Identity()
    x = torch.randn(batch_size, seq_len, d_model, generator=g, requires_grad=True)  # (B, S, D)
    target = torch.randn(batch_size, seq_len, d_model, generator=g)  # (B, S, D)
    inputs, h = [], x
    for block in layers:
        inputs.append(h)
        h = block(h)  # (B, S, D)
    loss = F.mse_loss(final(h), target)
    grads = torch.autograd.grad(loss, inputs)
    return torch.stack([gr.norm() for gr in grads])  # (depth,)


GRADIENT_VARIANTS = {  # name -> (residual, norm_first)
    "post-LN, residual": (True, False),
    "pre-LN, residual": (True, True),
    "post-LN, no residual": (False, False),
    "pre-LN, no residual": (False, True),
}


def gradient_norm_curves(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``layer_gradient_norms`` of the four variants (post/pre-LN, with/without residuals).

    The logic of notebook 07's widget: depth in, one (depth,) curve per variant out.
    """
    depth = _validate.positive_int(depth, "depth", "gradient_norm_curves")
    return {name: layer_gradient_norms(depth, residual, norm_first, seed=seed)
            for name, (residual, norm_first) in GRADIENT_VARIANTS.items()}


GRADIENT_STYLE = {  # variant -> (colour, line style): colour for the norm order, dashes for no residual
    "post-LN, residual": ("tab:blue", "-"), "pre-LN, residual": ("tab:green", "-"),
    "post-LN, no residual": ("tab:blue", "--"), "pre-LN, no residual": ("tab:green", "--"),
}


def plot_gradient_curves(ax: Axes, depth_curves: dict[str, torch.Tensor], depth: int) -> None:
    """One panel: gradient norm per layer, relative to the last layer, on a log scale."""
    for name, norms in depth_curves.items():
        color, ls = GRADIENT_STYLE[name]
        rel = (norms / norms[-1]).numpy()
        ax.plot(range(1, depth + 1), rel, color=color, ls=ls, marker="o" if depth <= 12 else None,
                ms=4, label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_title(f"{depth} layers")
    ax.set_xlabel("layer (1 = nearest the input)")


def gradient_figure(depth: int = 48, seed: int = 0) -> Figure:
    """The gradient-norm curves of the four variants for one depth (layers initialised from ``seed``).

    The title is the depth drawn, ``"{depth} layers"``. The default is the widget's starting depth:
    the fade without residuals is clear at 48 layers and noisy for one seed at 6 to 24.
    """
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    plot_gradient_curves(ax, gradient_norm_curves(depth, seed=seed), depth)
    ax.set_ylabel("||dL/d input|| / same at the last layer")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def constant_warmup(warmup_steps: int) -> Callable[[int], float]:
    """A learning-rate multiplier that rises linearly to 1 over ``warmup_steps``, then stays 1.

    ``warmup_steps=0`` means no warm-up (always 1). For ``train(..., schedule=...)``.
    """
    warmup_steps = _validate.int_in(warmup_steps, "warmup_steps", "constant_warmup", 0)
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
