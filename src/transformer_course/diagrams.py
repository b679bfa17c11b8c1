"""Diagrams: a picture of what each notebook builds, drawn before its formulas.

Each function returns a ``matplotlib.figure.Figure`` made of boxes and arrows, labelled with
the names and shapes of the course's code (``q_proj``, ``(B, T, D)``, ``self_attn``), so that
what a learner sees in the picture is what they meet in the code. Nothing here computes a
model's output, except :func:`soft_lookup`, whose numbers are one real attention step.

Legend: B batch, S source length, T target length, D d_model, H heads (or the RNN's hidden
size where the notebook says so), Dh head size, V vocabulary.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

from . import _validate

__all__ = ["seq2seq", "soft_lookup", "multi_head", "masks", "block", "encoder_decoder",
           "kv_cache", "tiles", "course_map", "NOTEBOOKS", "CLAIMS", "OPENING", "MAP_DPI"]

# One colour per kind of part, in every diagram.
INPUT, ENCODER, DECODER, ATTENTION = "#e8e8e8", "#cfe0f3", "#fbdcc0", "#cdebc7"
NORM, FEED_FORWARD, OUTPUT, HIGHLIGHT = "#e3d3f0", "#f6e7a8", "#f3c9cf", "#d62728"
# Bold text in matplotlib's own font: a Hangul font added to font.family (notebooks 03 and 08
# register one) has no bold face, and matplotlib would warn under every diagram.
BOLD = {"fontweight": "bold", "fontfamily": "DejaVu Sans"}


class Diagram(Figure):
    """A figure that shows itself as a PNG when a notebook cell ends with it, whatever backend
    matplotlib has (a plain ``Figure`` made without pyplot shows only as text unless the
    inline backend has registered its formatter)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _canvas(width: float, height: float, title: str = "") -> tuple[Figure, object]:
    """A figure of ``width`` x ``height`` inches whose axes run 0..width and 0..height, no frame."""
    fig = Diagram(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, width), ylim=(0, height))
    ax.axis("off")
    if title:
        ax.text(0.15, height - 0.22, title, fontsize=11, **BOLD, va="top")
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str, color: str = INPUT,
         fontsize: float = 8.5, edge: str = "0.35", lw: float = 1.0, **text_kw) -> None:
    """A rounded box centred at (x, y) with its text in the middle."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                facecolor=color, edgecolor=edge, linewidth=lw))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, **text_kw)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.3",
           lw: float = 1.1, curve: float = 0.0, style: str = "-|>", **kw) -> None:
    """An arrow from ``start`` to ``end``; ``curve`` bends it (an arc's radius, 0 is straight)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=color, lw=lw,
                                 connectionstyle=f"arc3,rad={curve}", shrinkA=1, shrinkB=1, **kw))


def _note(ax, x: float, y: float, text: str = "", fontsize: float = 7.5, color: str = "0.3", **kw) -> None:
    """Small grey text: a shape or a remark beside a part."""
    ax.text(x, y, text, fontsize=fontsize, color=color, **kw)


# ----------------------------------------------------------------------------- 02 and 03

def seq2seq(attention: bool = False, source: tuple[str, ...] = ("a", "b", "c", "d"),
            step: int = 2) -> Figure:
    """Notebooks 02 and 03: the GRU encoder-decoder, with one context vector or with attention.

    Without attention every decoder step reads the same context, the encoder's last state h_S.
    With attention (``attention=True``) decoder step ``step`` (1-based) scores every encoder
    state and reads their weighted sum; the other steps do the same, not drawn.
    """
    n = _validate.int_in(len(source), "the number of source tokens", "seq2seq", 2, 7)
    step = _validate.int_in(step, "step (a decoder step with a state before it)", "seq2seq", 2, n + 1)
    title = ("03 · seq2seq with attention: each decoder step looks back at every encoder state" if attention
             else "02 · seq2seq: the whole source squeezed into one context vector")
    fig, ax = _canvas(10.5, 5.0, title)
    enc_x = [0.9 + 1.05 * i for i in range(n)]
    dec_x = [6.2 + 1.05 * i for i in range(n)]
    token_y, state_y, out_y = 0.75, 1.8, 2.75
    for i, (x, token) in enumerate(zip(enc_x, source, strict=True)):
        _box(ax, x, token_y, 0.6, 0.4, token)
        _arrow(ax, (x, token_y + 0.21), (x, state_y - 0.26))
        _box(ax, x, state_y, 0.7, 0.5, f"$h_{i + 1}$", ENCODER, fontsize=10)
        if i:
            _arrow(ax, (enc_x[i - 1] + 0.36, state_y), (x - 0.36, state_y))
    _note(ax, enc_x[0] - 0.35, 0.2,
          "RNNEncoder (nn.GRU): outputs (B, S, H), one state per token; final (B, H)")
    inputs = ["<bos>", *source[:-1]]
    for t, x in enumerate(dec_x):
        _box(ax, x, token_y, 0.6, 0.4, inputs[t])
        _arrow(ax, (x, token_y + 0.21), (x, state_y - 0.26))
        edge, lw = (HIGHLIGHT, 1.8) if attention and t == step - 1 else ("0.35", 1.0)
        _box(ax, x, state_y, 0.7, 0.5, f"$s_{t + 1}$", DECODER, fontsize=10, edge=edge, lw=lw)
        _arrow(ax, (x, state_y + 0.26), (x, out_y - 0.21))
        _box(ax, x, out_y, 0.5, 0.4, source[t], OUTPUT)
        if t:
            _arrow(ax, (dec_x[t - 1] + 0.36, state_y), (x - 0.36, state_y))
    _note(ax, dec_x[0] - 0.35, 0.2,
          "RNNDecoder: one step per target token, logits (B, T, V)\n"
          "(the last step, which writes <eos>, is not drawn)")
    gap = (enc_x[-1] + dec_x[0]) / 2
    _arrow(ax, (enc_x[-1] + 0.36, state_y), (dec_x[0] - 0.36, state_y), lw=1.5)
    _note(ax, gap, state_y - 0.1, "$h_S$ starts\nthe decoder", ha="center", va="top")
    if attention:
        _attention_lines(ax, enc_x, dec_x, step, state_y)
    else:
        box = gap - 0.35
        _box(ax, box, 3.75, 2.1, 0.5, "context $c$ = final = $h_S$   (B, H)", ATTENTION)
        _arrow(ax, (enc_x[-1], state_y + 0.26), (box - 0.6, 3.49), curve=-0.2)
        ax.plot([box + 1.06, dec_x[-1] - 0.3], [3.75, 3.75], color="tab:green", lw=0.9)
        for x in dec_x:  # a bus: the same c dropped into every step
            _arrow(ax, (x - 0.3, 3.75), (x - 0.3, state_y + 0.26), color="tab:green", lw=0.9)
        _note(ax, 0.3, 4.55, va="top", fontsize=8.5,
              text="every decoder step reads the same c (green): one vector of H numbers for the "
                   "whole source, however long")
    return fig


def _attention_lines(ax, enc_x: list[float], dec_x: list[float], step: int, state_y: float) -> None:
    """Decoder step ``step`` reading every encoder state: thicker lines for larger weights."""
    weights = torch.softmax(torch.tensor([0.2, 1.6, 0.4, -0.3] * len(enc_x))[: len(enc_x)], dim=0)
    box_x, box_y, top = (enc_x[-1] + dec_x[0]) / 2 - 0.3, 3.75, state_y + 0.26
    label = f"context $c_{step} = \\sum_j \\alpha_{{{step}j}}\\, h_j$   weights (B, S)"
    _box(ax, box_x, box_y, 2.6, 0.5, label, ATTENTION)
    for j, (x, w) in enumerate(zip(enc_x, weights.tolist(), strict=True)):
        _arrow(ax, (x, top), (box_x - 1.0 + 0.25 * j, box_y - 0.26), color="tab:green",
               lw=0.5 + 6 * w, style="-")
        _note(ax, x - 0.42, top + 0.12, f"$\\alpha_{{{step}{j + 1}}}$={w:.2f}", color="tab:green")
    _arrow(ax, (box_x + 1.31, box_y), (dec_x[step - 1] - 0.3, top), color="tab:green", lw=1.4,
           curve=-0.1)
    _arrow(ax, (dec_x[step - 2] - 0.36, state_y + 0.1), (box_x + 0.9, box_y - 0.26), color=HIGHLIGHT,
           lw=1.0, linestyle="--", curve=-0.25)
    _note(ax, 0.3, 4.55, va="top",
          text=f"step {step}: the query $s_{{{step - 1}}}$ is scored against every $h_j$ (red, dashed); "
               "a softmax over the S positions gives the weights $\\alpha$ (line width);\n"
               "their weighted sum is this step's context (green). Every other step does the same "
               "with its own weights.", fontsize=8)


# ----------------------------------------------------------------------------- 04

def _vector(ax, x: float, y: float, values: list[float], cell: float = 0.22, label: str = "",
            scale: float = 1.5) -> None:
    """A vector drawn as a row of cells, coloured by sign and size (blue negative, red positive)."""
    cmap = _coolwarm()
    for i, v in enumerate(values):
        ax.add_patch(Rectangle((x + i * cell, y - cell / 2), cell, cell, edgecolor="0.4", lw=0.6,
                               facecolor=cmap(0.5 + max(-0.5, min(0.5, v / (2 * scale))))))
    if label:
        ax.text(x - 0.08, y, label, ha="right", va="center", fontsize=9)


def _coolwarm():
    from matplotlib import colormaps
    return colormaps["coolwarm"]


def soft_lookup(seed: int = 0, query: int = 2, n_keys: int = 4, d_k: int = 4) -> Figure:
    """Notebook 04: attention as a soft dictionary lookup, one query against every key.

    The numbers are real: X (n_keys, 6) and W_Q, W_K, W_V (6, d_k) drawn from ``seed``; the
    figure shows q = x_query W_Q, each score q . k_s / sqrt(d_k), the softmax weights and
    the weighted sum of the values.
    """
    seed = _validate.seed(seed, "soft_lookup")
    n_keys = _validate.int_in(n_keys, "n_keys", "soft_lookup", 2, 7)
    d_k = _validate.int_in(d_k, "d_k", "soft_lookup", 1, 9)
    query = _validate.int_in(query, "query (a token of the sequence)", "soft_lookup", 0, n_keys)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_keys, 6, generator=g)
    W_Q, W_K, W_V = (torch.randn(6, d_k, generator=g) / math.sqrt(6) for _ in range(3))
    q, K, V = X[query] @ W_Q, X @ W_K, X @ W_V  # (d_k,), (S, d_k), (S, d_k)
    scores = K @ q / math.sqrt(d_k)  # (S,)
    weights = torch.softmax(scores, dim=0)
    out = weights @ V  # (d_k,)

    fig, ax = _canvas(10.5, 2.45 + 0.55 * n_keys, "04 · attention as a soft dictionary lookup")
    top = 0.9 + 0.55 * n_keys
    _note(ax, 0.15, top + 0.85, va="top", fontsize=8.5,
          text=f"token {query}'s query is compared with every key; a softmax turns the scores into "
               "weights that sum to 1;\nthe output is the weighted sum of the values "
               "(cell colour: blue negative, red positive)")
    _vector(ax, 0.75, top - 0.15, q.tolist(), label=f"$q_{query}$")
    _note(ax, 0.75, top + 0.12, f"$q = x\\,W_Q$   ($d_k$ = {d_k})")
    cx = 2.3  # keys
    _note(ax, cx, top + 0.12, "keys   $k = x\\,W_K$")
    _note(ax, cx + 1.55, top + 0.12, "score   $q \\cdot k_s / \\sqrt{d_k}$")
    _note(ax, cx + 3.05, top + 0.12, "weight $a_s$ (softmax)")
    _note(ax, cx + 4.8, top + 0.12, "values   $v = x\\,W_V$")
    for s in range(n_keys):
        y = top - 0.15 - 0.55 * s
        _vector(ax, cx, y, K[s].tolist(), label=f"$k_{s}$")
        _arrow(ax, (0.75 + 0.22 * d_k + 0.05, top - 0.15), (cx - 0.35, y), color="0.6", lw=0.7)
        ax.text(cx + 1.55 + 0.45, y, f"{scores[s]:+.2f}", ha="center", va="center", fontsize=9)
        w = float(weights[s])
        ax.add_patch(Rectangle((cx + 3.05, y - 0.12), 1.2 * w, 0.24, facecolor="tab:green", alpha=0.7))
        ax.text(cx + 3.05 + 1.2 * w + 0.06, y, f"{w:.2f}", va="center", fontsize=8.5)
        _vector(ax, cx + 4.85, y, V[s].tolist(), label=f"$v_{s}$")
        _arrow(ax, (cx + 4.85 + 0.22 * d_k + 0.05, y), (cx + 6.55, top - 0.15 - 0.275 * (n_keys - 1)),
               color="tab:green", lw=0.4 + 4 * w)
    mid = top - 0.15 - 0.275 * (n_keys - 1)
    _vector(ax, cx + 6.7, mid, out.tolist())
    _note(ax, cx + 6.7, mid + 0.25, "output $= \\sum_s a_s v_s$")
    _note(ax, 0.15, 0.25, f"shapes in the notebook: X (T, D) -> Q, K, V (T, d_k); scores Q Kᵀ (T, S); "
          f"weights (T, S), rows sum to 1; output (T, d_k). Here T = S = {n_keys}, one row drawn.")
    return fig


# ----------------------------------------------------------------------------- 05

def multi_head(n_heads: int = 4) -> Figure:
    """Notebook 05: multi-head attention, H lookups side by side in subspaces of size Dh = D / H."""
    n_heads = _validate.int_in(n_heads, "n_heads", "multi_head", 1, 9)
    fig, ax = _canvas(10.5, 4.3, "05 · multi-head attention: H lookups in parallel, each in its own subspace")
    mid = 1.9
    _box(ax, 0.7, mid, 0.95, 0.6, "x\n(B, T, D)")
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        y = mid + 0.75 * (1 - i)
        _box(ax, 2.15, y, 1.1, 0.5, f"{name}\nD → D", ATTENTION)
        _arrow(ax, (1.18, mid), (1.6, y))
        _arrow(ax, (2.7, y), (3.45, mid + 0.25 * (1 - i)))
    _box(ax, 4.05, mid, 1.15, 0.95, "split_heads\n(B, T, D) →\n(B, H, T, Dh)", INPUT, fontsize=8)
    shown = min(n_heads, 4)
    for h in range(shown):  # cards stacked back to front
        off = 0.16 * (shown - 1 - h)
        y = mid + 0.95 - 0.63 * h
        label = (f"head {h + 1}: softmax($Q_{h + 1} K_{h + 1}^T / \\sqrt{{D_h}}$) $V_{h + 1}$"
                 if h < shown - 1 or shown == n_heads else f"head {n_heads}: ...")
        _box(ax, 6.3 + off * 0, y, 2.7, 0.5, label, ATTENTION, fontsize=8)
        _arrow(ax, (4.64, mid), (4.93, y))
        _arrow(ax, (7.66, y), (8.02, mid + 0.35))
    if n_heads > shown:
        _note(ax, 5.0, mid - 1.55, f"... {n_heads} heads in all")
    _box(ax, 8.55, mid + 0.35, 1.05, 0.6, "merge_heads\n→ (B, T, D)", INPUT, fontsize=8)
    _box(ax, 8.55, mid - 0.45, 1.05, 0.5, "out_proj\nD → D", ATTENTION, fontsize=8)
    _arrow(ax, (8.55, mid + 0.04), (8.55, mid - 0.19))
    _arrow(ax, (9.09, mid - 0.45), (9.6, mid - 0.45))
    _note(ax, 9.62, mid - 0.5, "(B, T, D)")
    _note(ax, 0.15, 0.35, "each head sees only its own Dh = D / H numbers of every query, key and value "
          "(one view and one transpose, no copy);\nits weights are (B, H, T, S): one T × S map per head; "
          "the masks below are broadcast over B and H.", fontsize=8)
    return fig


def masks(length: int = 4, T: int = 6) -> Figure:
    """Notebook 05: the padding mask, the causal mask and their combination, as grids (True = may attend)."""
    T = _validate.int_in(T, "T", "masks", 2, 13)
    n = _validate.int_in(length, "length (the real tokens)", "masks", 1, T + 1)
    pad = [[s < n for s in range(T)] for _ in range(T)]
    causal = [[s <= t for s in range(T)] for t in range(T)]
    both = [[s < n and s <= t for s in range(T)] for t in range(T)]
    fig, ax = _canvas(10.5, 3.9, f"05 · masks for a sentence of {n} real tokens padded to {T}")
    cell = 2.2 / T
    panels = [(f"make_padding_mask(tokens, PAD)\n(B, 1, 1, S): keys {n}..{T - 1} are padding", pad),
              (f"make_causal_mask({T})\n(T, T): no looking ahead", causal),
              ("pad_mask & causal\nboth, as a decoder uses them", both)]
    for p, (title, grid) in enumerate(panels):
        x0 = 0.8 + 3.3 * p
        ax.text(x0 + 1.1, 3.3, title, ha="center", va="top", fontsize=8.5)
        for t in range(T):
            for s in range(T):
                ax.add_patch(Rectangle((x0 + s * cell, 2.55 - (t + 1) * cell), cell, cell, edgecolor="white",
                                       facecolor="#4c9a5b" if grid[t][s] else "#d9d9d9", lw=1))
        _note(ax, x0 + 1.1, 2.62, "key s →", ha="center")
        _note(ax, x0 - 0.08, 2.55 - 0.3, "query t\n↓", ha="right", va="top")
    ax.legend(handles=[Patch(facecolor="#4c9a5b", label="True: may attend"),
                       Patch(facecolor="#d9d9d9", label="False: blocked")],
              loc="lower center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


# ----------------------------------------------------------------------------- 07

def _plus(ax, x: float, y: float) -> None:
    """A residual addition: a circled plus at (x, y)."""
    ax.add_patch(Circle((x, y), 0.15, facecolor="white", edgecolor="0.3", lw=1.0))
    ax.text(x, y, "+", ha="center", va="center", fontsize=11)


def _bypass(ax, x: float, y_from: float, y_to: float, offset: float) -> None:
    """A residual path: leaves the stream at y_from, runs up beside it, joins the plus at y_to."""
    ax.plot([x, x - offset, x - offset], [y_from, y_from, y_to], color="tab:purple", lw=1.3)
    _arrow(ax, (x - offset, y_to), (x - 0.16, y_to), color="tab:purple", lw=1.3)


def _stack(ax, x: float, y: float, parts: list[tuple[str, str]], offsets: tuple[float, ...] = (1.3, 1.15),
           w: float = 2.0, gap: float = 0.5) -> float:
    """Draw a stream from the point (x, y) upwards through ``parts``; returns the top's y.

    A part is (text, colour) for a box, ("|", "") where a residual path leaves the stream, and
    ("+", "") for the addition where it comes back.
    """
    branch, n_added = y, 0
    for text, color in parts:
        if text == "|":
            branch = y
        elif text == "+":
            centre = y + 0.7 * gap
            _arrow(ax, (x, y), (x, centre - 0.15))
            _plus(ax, x, centre)
            _bypass(ax, x, branch, centre, offsets[n_added % len(offsets)])
            n_added += 1
            y = centre + 0.15
        else:
            _arrow(ax, (x, y), (x, y + gap - 0.18))
            _box(ax, x, y + gap, w, 0.36, text, color)
            y += gap + 0.18
    return y


def block() -> Figure:
    """Notebook 07: the Transformer block, post-LN (the paper) beside pre-LN, with its residual paths."""
    fig, ax = _canvas(10.5, 6.3, "07 · the Transformer block: two sublayers, each inside a residual "
                      "connection, and where the LayerNorm goes")
    attn, ff = ("self_attn: MultiHeadAttention", ATTENTION), ("ff: FeedForward  D → d_ff → D", FEED_FORWARD)
    post = [("|", ""), attn, ("+", ""), ("norm1: LayerNorm", NORM), ("|", ""), ff, ("+", ""),
            ("norm2: LayerNorm", NORM)]
    pre = [("|", ""), ("norm1: LayerNorm", NORM), attn, ("+", ""), ("|", ""), ("norm2: LayerNorm", NORM), ff,
           ("+", "")]
    for x, parts, title, formula in (
            (2.9, post, "post-LN (the paper, norm_first=False)", "x = norm(x + sublayer(x))"),
            (8.0, pre, "pre-LN (GPT-2, norm_first=True)", "x = x + sublayer(norm(x))")):
        _box(ax, x, 0.75, 1.3, 0.36, "x  (B, S, D)")
        top = _stack(ax, x, 0.93, parts)
        _arrow(ax, (x, top + 0.02), (x, top + 0.35))
        _note(ax, x, top + 0.42, "(B, S, D): the same shape, so blocks stack", ha="center")
        ax.text(x, 0.45, title, ha="center", va="top", fontsize=9, **BOLD)
        _note(ax, x, 0.17, formula, ha="center", fontsize=8.5)
    _note(ax, 0.15, 5.85, va="top", fontsize=8.5,
          text="purple: the residual paths. Post-LN puts a LayerNorm on the main stream after every "
               "addition; pre-LN normalises only each sublayer's input,\nso the stream from the "
               "input to the output is a chain of additions (the stack then ends with one more "
               "LayerNorm, Encoder.norm).")
    return fig


# ----------------------------------------------------------------------------- 08

def encoder_decoder(n_layers: int = 2) -> Figure:
    """Notebook 08: the encoder-decoder Transformer, its three kinds of attention and the memory."""
    n_layers = _validate.positive_int(n_layers, "n_layers", "encoder_decoder")  # only written on the figure
    fig, ax = _canvas(10.5, 6.6, "08 · the encoder-decoder Transformer (post-LN, as in the paper)")
    ex, dx = 2.6, 7.4
    _box(ax, ex, 0.55, 2.2, 0.4, "src tokens (B, S): English")
    _box(ax, dx, 0.55, 2.4, 0.4, "tgt tokens (B, T): <bos> + Korean")
    for x, name in ((ex, "src_embed"), (dx, "tgt_embed")):
        _arrow(ax, (x, 0.76), (x, 1.1))
        _box(ax, x, 1.3, 2.4, 0.4, f"{name} + positions → (B, ·, D)", INPUT, fontsize=8)
        _arrow(ax, (x, 1.5), (x, 1.85))
    # encoder layer: self_attn, ff
    ax.add_patch(FancyBboxPatch((ex - 1.45, 1.85), 2.9, 1.75, boxstyle="round,pad=0,rounding_size=0.1",
                                facecolor=ENCODER, edgecolor="0.35", alpha=0.5))
    _box(ax, ex, 2.25, 2.5, 0.42, "self_attn (padding mask)\n+ add & norm1", ATTENTION, fontsize=8)
    _box(ax, ex, 3.1, 2.5, 0.42, "ff: FeedForward\n+ add & norm2", FEED_FORWARD, fontsize=8)
    _arrow(ax, (ex, 2.47), (ex, 2.88))
    _note(ax, ex - 0.1, 3.7, f"EncoderLayer × n_layers ({n_layers} here)", ha="right")
    _arrow(ax, (ex, 3.6), (ex, 4.35))
    _box(ax, ex, 4.6, 2.3, 0.45, "memory (B, S, D)\none vector per source word", ENCODER, fontsize=8)
    # decoder layer: masked self_attn, cross_attn, ff
    ax.add_patch(FancyBboxPatch((dx - 1.55, 1.85), 3.1, 2.6, boxstyle="round,pad=0,rounding_size=0.1",
                                facecolor=DECODER, edgecolor="0.35", alpha=0.5))
    _box(ax, dx, 2.25, 2.7, 0.42, "self_attn (causal + padding mask)\n+ add & norm1", ATTENTION, fontsize=8)
    _box(ax, dx, 3.05, 2.7, 0.42, "cross_attn: queries from here,\nkeys, values from memory + norm2",
         ATTENTION, fontsize=8, edge=HIGHLIGHT, lw=1.6)
    _box(ax, dx, 3.9, 2.7, 0.42, "ff: FeedForward\n+ add & norm3", FEED_FORWARD, fontsize=8)
    _arrow(ax, (dx, 2.47), (dx, 2.83))
    _arrow(ax, (dx, 3.27), (dx, 3.68))
    _note(ax, dx - 0.1, 4.55, f"DecoderLayer × n_layers ({n_layers} here)", ha="right")
    _arrow(ax, (ex + 1.16, 4.6), (dx - 1.36, 3.05), color=HIGHLIGHT, lw=1.6, curve=-0.25)
    _note(ax, 4.25, 5.0, "every decoder layer\nreads the memory", color=HIGHLIGHT)
    _arrow(ax, (dx, 4.45), (dx, 4.9))
    _box(ax, dx, 5.12, 2.4, 0.42, "head: Linear D → V\nlogits (B, T, V)", OUTPUT, fontsize=8)
    _note(ax, 0.15, 6.05, va="top", fontsize=8.5,
          text="three attentions: the encoder's self-attention (every source word sees every "
               "source word), the decoder's masked self-attention (a Korean word sees\nonly the "
               "words before it) and cross-attention (each Korean word looks at the English "
               "sentence: the alignment). Residual paths as in notebook 07.")
    return fig


# ----------------------------------------------------------------------------- 10

def kv_cache(steps: int = 4) -> Figure:
    """Notebook 10: the decoder-only stack, and the KV cache growing by one column per new token."""
    steps = _validate.int_in(steps, "steps", "kv_cache", 1, 7)
    fig, ax = _canvas(10.5, 5.2, "10 · a decoder-only model (GPT), and the KV cache while it writes")
    x = 1.9
    rows = [(0.5, "tokens (B, T)", INPUT), (1.2, "embed + positions → (B, T, D)", INPUT),
            (2.05, "GPTBlock: pre-LN, causal self_attn\n+ ff, residuals", DECODER),
            (2.9, "norm: LayerNorm", NORM), (3.55, "head: Linear D → V\nlogits (B, T, V)", OUTPUT)]
    for i, (y, text, color) in enumerate(rows):
        _box(ax, x, y, 2.8, 0.5 if "\n" in text else 0.38, text, color, fontsize=8)
        if i:
            _arrow(ax, (x, rows[i - 1][0] + 0.25), (x, y - 0.26))
    _note(ax, x + 1.45, 2.05, "× n_layers", va="center")
    _note(ax, 0.2, 4.35, "no encoder, no cross-attention:\nthe blocks of notebook 07 with a causal mask")
    cell, x0 = 0.3, 5.0
    for t in range(steps):
        y = 3.75 - 0.95 * t
        _note(ax, x0 - 0.15, y + 0.05, f"step {t + 1}", ha="right", va="center")
        for s in range(t + 1):
            new = s == t
            for r, old in enumerate(("tab:blue", "tab:orange")):  # keys, values
                ax.add_patch(Rectangle((x0 + s * cell, y - r * cell), cell, cell, lw=0.8, edgecolor="white",
                                       facecolor=HIGHLIGHT if new else old, alpha=0.85 if new else 0.55))
        _note(ax, x0 + (t + 1) * cell + 0.1, y + 0.1, "keys", va="center")
        _note(ax, x0 + (t + 1) * cell + 0.1, y - cell + 0.1, "values", va="center")
        seen = "its own key only (the cache is empty)" if t == 0 else f"{t + 1} keys ({t} cached and its own)"
        _note(ax, x0 + (steps + 1) * cell + 0.6, y - 0.05, va="center",
              text=f"the new query against {seen}: one row of weights")
    _note(ax, x0 - 0.6, 0.35, va="top", fontsize=8,
          text="red: what the new token adds, one key and one value in every layer; each layer's cache "
               "holds\nk, v each (B, H, T_past, Dh). Without the cache every step recomputes every column.")
    return fig


# ----------------------------------------------------------------------------- 11

def tiles(n_q_tiles: int = 4, n_kv_tiles: int = 4, current: tuple[int, int] = (1, 2)) -> Figure:
    """Notebook 11: tiled attention, one tile of queries against one tile of keys and values at a time."""
    n_q_tiles = _validate.int_in(n_q_tiles, "n_q_tiles", "tiles", 1, 7)
    n_kv_tiles = _validate.int_in(n_kv_tiles, "n_kv_tiles", "tiles", 1, 9)
    if not isinstance(current, tuple) or len(current) != 2:
        raise ValueError(f"tiles expects current as (query tile, key tile), got {current!r}")
    i = _validate.int_in(current[0], "current's query tile", "tiles", 0, n_q_tiles)
    j = _validate.int_in(current[1], "current's key tile", "tiles", 0, n_kv_tiles)
    fig, ax = _canvas(10.5, 4.9, "11 · tiled attention: the T × S score matrix is never held whole")
    c = 0.62
    gx, gy = 1.2, 0.55 + n_q_tiles * c  # top-left corner of the score grid
    for a in range(n_q_tiles):
        for b in range(n_kv_tiles):
            done = a < i or (a == i and b < j)
            color = HIGHLIGHT if (a, b) == (i, j) else ("#bfbfbf" if done else "#eeeeee")
            ax.add_patch(Rectangle((gx + b * c, gy - (a + 1) * c), c, c, facecolor=color,
                                   edgecolor="0.4", lw=0.8))
        _box(ax, gx - 0.55, gy - (a + 0.5) * c, 0.7, c * 0.8, f"Q tile {a + 1}",
             ATTENTION if a == i else INPUT, fontsize=7.5)
    for b in range(n_kv_tiles):
        _box(ax, gx + (b + 0.5) * c, gy + 0.45, c * 0.9, 0.5, f"K, V\ntile {b + 1}",
             ATTENTION if b == j else INPUT, fontsize=7, edge=HIGHLIGHT if b == j else "0.35",
             lw=1.8 if b == j else 1.0)
    _note(ax, gx, 0.25, "block_size queries × block_size keys per tile")
    nx = gx + n_kv_tiles * c + 0.5
    _note(ax, nx, gy + 0.3, va="top", fontsize=8.5,
          text=f"for Q tile {i + 1} (green) the loop walks the K, V tiles left to right.\n"
               f"At K, V tile {j + 1} (the red square) it scores block_size × block_size pairs,\n"
               "then updates, per query row:\n"
               "   m  the running maximum of the scores seen so far,\n"
               "   l  the running sum of exp(score − m),\n"
               "   acc  the running weighted sum of the values,\n"
               "rescaling the old l and acc by exp(m_old − m_new) when the maximum\ngrows "
               "(online_softmax_step). The output is acc / l after the last tile.\n\n"
               "grey: tiles already folded into m, l, acc; light: still to come.\n"
               "Memory without autograd: a few tiles of scores at a time, never T × S\n"
               "(with autograd the loop keeps every tile for the backward pass).\n"
               "The result equals attention's up to rounding.")
    return fig


# ----------------------------------------------------------------------------- 00 and the README

# The notebooks, as their first headings name them (a test keeps the two in step).
NOTEBOOKS = ("Start here", "RNNs and fading memory", "The seq2seq bottleneck", "Attention for seq2seq",
             "Self-attention: queries, keys and values", "Masks and multi-head attention",
             "Positional encoding", "The Transformer block: residuals, LayerNorm, feed-forward",
             "The full Transformer: assembled, trained, decoded, and raced", "Why Transformers won, measured",
             "A decoder-only language model (GPT)", "Efficient attention: tiling and the online softmax")
# The seed post's four claims: (claim, the notebook that measures it, what the course found).
CLAIMS = (("a seq2seq encoder squeezes the input into one vector, and information is lost", 2,
           "holds, under a fixed training budget"),
          ("in an RNN, the farther back a word, the more it fades", 1, "holds"),
          ("an RNN cannot run in parallel over time", 9, "holds"),
          ("attention alone, as encoder and decoder, translates better than an RNN", 8,
           "does not hold at this scale"))


def course_map() -> Figure:
    """Notebook 00 and the README: the notebooks as a path, each seed claim where it is measured."""
    fig, ax = _canvas(10.5, 6.2, "the course: from the RNN's bottleneck to the Transformer, and after")
    rows = (("the RNN and its limits", ENCODER), ("attention, piece by piece", ATTENTION),
            ("the Transformer, and after", DECODER))
    w, h, dx = 2.2, 0.78, 2.5
    centres = {}
    for r, (name, color) in enumerate(rows):
        y = 4.85 - 1.35 * r
        _note(ax, 0.2, y + 0.55, name, fontsize=8.5, **BOLD)
        for c in range(4):
            k = 4 * r + c
            x = 1.35 + dx * c
            centres[k] = (x, y)
            short = NOTEBOOKS[k].split(":")[0].replace(", measured", "")
            _box(ax, x, y, w, h, f"{k:02d}\n" + textwrap.fill(short, 24), color, fontsize=8.5)
            if c:
                _arrow(ax, (x - dx + w / 2 + 0.02, y), (x - w / 2 - 0.02, y))
    for i, (claim, k, verdict) in enumerate(CLAIMS):
        x, y = centres[k]
        badge = (x + w / 2 - 0.05, y + h / 2 - 0.02)
        ax.add_patch(Circle(badge, 0.17, facecolor=HIGHLIGHT, edgecolor="white"))
        ax.text(*badge, str(i + 1), color="white", ha="center", va="center",
                fontsize=8.5, **BOLD)
        ax.text(0.35, 1.0 - 0.26 * i, f"claim {i + 1} ({k:02d}): {claim}; {verdict}", fontsize=8.3,
                va="center", color="0.15")
    _note(ax, 0.2, 1.3, "the seed post's four claims (red), each at the notebook that measures it:",
          fontsize=8.5, **BOLD)
    return fig


# The resolution of docs/course_map.png (`make diagrams`), which the README shows.
MAP_DPI = 100

# The diagram each notebook opens with (notebook number -> a function of no arguments).
OPENING = {"00": course_map, "02": seq2seq, "03": functools.partial(seq2seq, attention=True),
           "04": soft_lookup, "05": multi_head, "07": block, "08": encoder_decoder, "10": kv_cache,
           "11": tiles}
