"""The attention explorer: a trained model's weights between the tokens of one sentence.

``explorer_figure`` draws the maps of one kind of attention, one layer, one head or all of
them (tests call it at the ends of every control's range); ``explorer`` wires controls to it:
a sentence (picked, or typed), the kind, the layer and the head. The maps come from a function
of the sentence, so notebooks 05, 08 and 10 use the same explorer on their own models:
``transformer_maps`` records an encoder-decoder's three kinds of attention, ``gpt_maps`` a
decoder-only model's self-attention.

Legend: T query tokens (rows), S key tokens (columns), H heads, L layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import _validate
from ..data import BOS, EOS, Vocab
from ..decoding import greedy_decode
from ..gpt import GPT, CharTokenizer
from ..transformer import Transformer
from ..utils import use_hangul_font
from ..widgets import figure_widget
from .translation import check_sentence, tokenize

KINDS = ("encoder self-attention", "decoder self-attention", "cross-attention")
ALL = "all heads"


class AttentionMaps(NamedTuple):
    """The weights of one kind of attention on one sentence."""

    queries: list[str]          # the T tokens whose rows the maps hold (who looks)
    keys: list[str]             # the S tokens the rows weigh (who is looked at)
    layers: list[torch.Tensor]  # one (H, T, S) map per layer; each row sums to 1


def check_maps(maps: dict[str, AttentionMaps], who: str) -> None:
    """Raise ``ValueError`` unless every map is (H, T, S) with T, S the numbers of tokens."""
    if not isinstance(maps, dict) or not maps:
        raise ValueError(f"{who} expects a dict of AttentionMaps by kind, got {maps!r}")
    for kind, m in maps.items():
        if not isinstance(m, AttentionMaps) or not m.layers:
            raise ValueError(f"{who} expects maps[{kind!r}] to be AttentionMaps with at least one layer")
        expected = (len(m.queries), len(m.keys))
        for i, w in enumerate(m.layers):
            if not isinstance(w, torch.Tensor) or w.dim() != 3 or tuple(w.shape[1:]) != expected:
                raise ValueError(f"{who} expects maps[{kind!r}] layer {i} of shape (H, {len(m.queries)}, "
                                 f"{len(m.keys)}) (H, queries, keys), got "
                                 f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}")


def explorer_figure(maps: dict[str, AttentionMaps], kind: str, layer: int, head: int | str = ALL) -> Figure:
    """One layer's attention of one kind: every head as a small map, or one head as lines and a map.

    ``layer`` and ``head`` count from 1, as the figure's titles do; ``head`` may be ``"all heads"``.
    """
    check_maps(maps, "explorer_figure")
    _validate.one_of(kind, tuple(maps), "kind", "explorer_figure")
    m = maps[kind]
    layer = _validate.int_in(layer, "layer (counted from 1)", "explorer_figure", 1, len(m.layers) + 1)
    weights = m.layers[layer - 1].detach().float().cpu()  # (H, T, S)
    n_heads = weights.shape[0]
    families = use_hangul_font()
    if head == ALL:
        return _all_heads(weights, m, f"{kind}, layer {layer}", families)
    head = _validate.int_in(head, f"head (counted from 1, or {ALL!r})", "explorer_figure", 1, n_heads + 1)
    return _one_head(weights[head - 1], m, f"{kind}, layer {layer}, head {head} of {n_heads}", families)


def _all_heads(weights: torch.Tensor, m: AttentionMaps, title: str, families: list[str]) -> Figure:
    """A row of H maps that share one colour scale."""
    n_heads = weights.shape[0]
    tokens = max(len(m.queries), len(m.keys))
    cols = min(n_heads, 4 if tokens <= 16 else 2)  # long sentences: larger maps, two to a row
    rows = -(-n_heads // cols)
    side = max(3.0, 0.14 * tokens)
    fig = Figure(figsize=(side * cols + 1.0, side * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for h, ax in enumerate(axes):
        if h >= n_heads:
            ax.axis("off")
            continue
        image = ax.imshow(weights[h].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        _ticks(ax, m, families, small=True)
        if h % cols:
            ax.set_yticklabels([])  # the first map of a row names the queries
        ax.set_title(f"head {h + 1}", fontsize=9)
    fig.colorbar(image, ax=list(axes[:n_heads]), shrink=0.8, label="attention weight")
    fig.suptitle(title + " (rows: queries, columns: keys)", fontsize=10)
    return fig


def _one_head(weights: torch.Tensor, m: AttentionMaps, title: str, families: list[str]) -> Figure:
    """The head view: lines from each query to the keys it weighs (darker is more), and the map."""
    T, S = weights.shape
    fig = Figure(figsize=(11, 0.28 * max(T, S) + 2.2), layout="constrained")
    lines, grid = fig.subplots(1, 2, width_ratios=(1, 1.25))
    top = max(T, S) - 1
    for t in range(T):
        for s in range(S):
            w = float(weights[t, s])
            if w > 0.02:
                lines.plot([0, 1], [top - t, top - s], color="tab:blue", alpha=min(1.0, w), lw=0.5 + 3 * w)
    for y, token in enumerate(m.queries):
        lines.text(-0.04, top - y, token, ha="right", va="center", fontsize=9, fontfamily=families)
    for y, token in enumerate(m.keys):
        lines.text(1.04, top - y, token, ha="left", va="center", fontsize=9, fontfamily=families)
    lines.set(xlim=(-0.6, 1.6), ylim=(-0.8, top + 0.8))
    lines.text(0, top + 0.7, "queries", ha="center", fontsize=8, color="0.4")
    lines.text(1, top + 0.7, "keys", ha="center", fontsize=8, color="0.4")
    lines.axis("off")
    image = grid.imshow(weights.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    _ticks(grid, m, families)
    fig.colorbar(image, ax=grid, label="attention weight")
    fig.suptitle(title, fontsize=10)
    return fig


def _ticks(ax, m: AttentionMaps, families: list[str], small: bool = False) -> None:
    size = 8.5 if small else 9.5  # Hangul needs the room: at 7 pt 를 is a blot
    ax.set_xticks(range(len(m.keys)), m.keys, rotation=90, fontsize=size, fontfamily=families)
    ax.set_yticks(range(len(m.queries)), m.queries, fontsize=size, fontfamily=families)


def _message(text: str) -> Figure:
    """A figure that says why nothing can be drawn (a widget never crashes on bad input)."""
    fig = Figure(figsize=(9, 1.4))
    ax = fig.subplots()
    ax.text(0.01, 0.5, text, va="center", fontsize=10, wrap=True)
    ax.axis("off")
    return fig


def explorer(maps_for: Callable[[str], dict[str, AttentionMaps]], sentences: Sequence[str],
             typed: bool = True):
    """The explorer widget: pick a sentence (or type one), a kind, a layer and a head.

    ``maps_for(sentence)`` returns the maps of every kind the model has; it runs once per
    sentence (kept for the next control moves). A typed sentence the model cannot read
    shows the model's message instead of a figure.
    """
    import ipywidgets

    if not sentences:
        raise ValueError("explorer expects at least one sentence to pick from, got none")
    cached = functools.lru_cache(maxsize=32)(maps_for)
    first = cached(sentences[0])
    check_maps(first, "explorer")
    kinds = list(first)
    n_layers = len(first[kinds[0]].layers)
    n_heads = first[kinds[0]].layers[0].shape[0]

    def draw(sentence: str, typed_text: str, kind: str, layer: int, head) -> Figure:
        text = typed_text.strip() or sentence
        try:
            maps = cached(text)
        except ValueError as e:
            return _message(str(e))
        return explorer_figure(maps, kind, layer, head)

    controls = {
        "sentence": ipywidgets.Dropdown(options=list(sentences), description="sentence",
                                        layout=ipywidgets.Layout(width="95%")),
        "typed_text": ipywidgets.Text(value="", description="or type", continuous_update=False,
                                      placeholder="a sentence of your own (empty: the one picked)",
                                      layout=ipywidgets.Layout(width="95%")),
        "kind": ipywidgets.Dropdown(options=kinds, value=kinds[-1], description="kind"),
        "layer": ipywidgets.IntSlider(min=1, max=n_layers, value=n_layers, description="layer"),
        "head": ipywidgets.Dropdown(options=[ALL, *range(1, n_heads + 1)], value=ALL, description="head"),
    }
    if not typed:
        controls["typed_text"] = ipywidgets.fixed("")
    widget = figure_widget(draw, **controls)
    widget.add_class("attention-explorer")
    return widget


# ----------------------------------------------------------------------------- recording maps

@torch.no_grad()
def transformer_maps(model: Transformer, text: str | Sequence[str], src_vocab: Vocab,
                     tgt_vocab: Vocab) -> dict[str, AttentionMaps]:
    """Translate ``text`` greedily, then read the three kinds of attention of every layer.

    Decoder rows are labelled by the word each step writes (<eos> last); the decoder's keys
    are the words it has read (<bos> first). Shapes: each map (H, T, S) per layer.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"transformer_maps expects a Transformer, got {type(model).__name__}")
    words = tokenize(text) if isinstance(text, str) else [str(w) for w in text]
    check_sentence(words, src_vocab, model.config.max_len)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    src = torch.tensor([src_vocab.encode(words)], device=device)  # (1, S)
    ids = greedy_decode(model, src, torch.tensor([len(words)], device=device),
                        model.config.max_len - 1)[0].tolist()  # ends with <eos> when it finished
    written = tgt_vocab.decode(ids) + (["<eos>"] if EOS in ids else [])
    model(src, torch.tensor([[BOS, *ids[: len(written) - 1]]], device=device))  # the steps that wrote them
    model.train(was_training)
    read = ["<bos>", *written[:-1]]
    enc, dec = model.encoder.layers, model.decoder.layers
    return {
        "encoder self-attention": AttentionMaps(words, words, [lay.weights[0].cpu() for lay in enc]),
        "decoder self-attention": AttentionMaps(written, read, [lay.self_weights[0].cpu() for lay in dec]),
        "cross-attention": AttentionMaps(written, words, [lay.cross_weights[0].cpu() for lay in dec]),
    }


@torch.no_grad()
def gpt_maps(model: GPT, tokenizer: CharTokenizer, text: str) -> dict[str, AttentionMaps]:
    """The causal self-attention of every block of a decoder-only model on ``text`` (characters)."""
    if not isinstance(model, GPT):
        raise TypeError(f"gpt_maps expects a GPT, got {type(model).__name__}")
    if not isinstance(text, str) or not text:
        raise ValueError(f"gpt_maps expects a non-empty text, got {text!r}")
    if len(text) > model.config.max_len:
        raise ValueError(f"gpt_maps expects at most max_len={model.config.max_len} characters, "
                         f"got {len(text)}")
    tokens = tokenizer.encode(text)  # raises on characters the model never saw
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model(torch.as_tensor(tokens, device=device)[None])
    model.train(was_training)
    chars = [c if c.strip() else "␣" for c in text]
    return {"self-attention": AttentionMaps(chars, chars, [block.weights[0].cpu() for block in model.blocks])}
