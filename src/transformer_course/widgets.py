"""Widgets: sliders wired to plain functions that return a matplotlib figure.

The logic of every widget is a plain function (tests call it at both ends of each slider's
range); this module only wires sliders to it. Figures are made with
``matplotlib.figure.Figure`` rather than ``pyplot``, so moving a slider does not pile up
open figures in the kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from matplotlib.figure import Figure

DEMO_LOGITS = (2.0, 1.0, 0.5, 0.0, -1.0)


def softmax_temperature(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """Softmax of ``logits / temperature`` and its entropy in bits."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
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


def figure_widget(fn: Callable[..., Figure], **sliders):
    """Wire ipywidgets sliders to ``fn(**values) -> Figure``; returns the widget to display.

    ``sliders`` are ipywidgets controls or the abbreviations ``interactive`` accepts.
    """
    import ipywidgets

    # auto_display: show fn's figure in the widget's output (plain `interactive` would not)
    return ipywidgets.interactive(fn, {"auto_display": True}, **sliders)
