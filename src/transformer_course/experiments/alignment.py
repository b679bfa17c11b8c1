"""Notebooks 03 and 08: alignments of the translation task, which English word each Korean token translates.

The translation task comes from a grammar (``korean``), so the true alignment is known: the
Korean verb at the end translates the English verb in the middle, a relative clause that
follows its noun in English precedes it in Korean, and so on. This module reads it off
``korean.translate``, scores a model's attention against it, and draws the heatmaps of
notebook 03 (its widget's logic is ``alignment_figure``); notebook 08 and
``experiments.translation`` score and draw the Transformer's cross-attention with it.
Heatmaps label their rows with Hangul, drawn with ``utils.use_hangul_font``.

Shapes: B batch, S source length, T target length (the decoder's steps), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from textwrap import fill
from typing import NamedTuple

import torch

from .. import _validate, korean
from ..data import Pair, Vocab, collate
from ..decoding import greedy_decode
from ..utils import use_hangul_font

__all__ = ["AlignedWord", "PHRASES", "translation_alignment", "alignment_accuracy",
           "monotonic_weights", "plot_alignment", "alignment_figure"]

# The role of a Korean token in its clause (a relative clause counts as a clause).
PHRASES = korean.PHRASES


class AlignedWord(NamedTuple):
    """One target token, the index of the source word it translates, and its phrase."""

    word: str  # the Korean token
    source: int | None  # index of the English word it translates; None for 이/가, 을/를, 은/는
    phrase: str  # one of PHRASES


def translation_alignment(src: Sequence[str]) -> list[AlignedWord]:
    """The translation of an English sentence of the translate task, token by token with its alignment.

    The tokens are exactly ``data.make_pairs("translate", ...)``'s target; ``source`` is the
    index of the English word each translates (에서 and 에 translate the preposition, 와/과
    "and", the verb's token its English verb; the particles of subject, object and topic none).
    """
    if isinstance(src, str) or not all(isinstance(w, str) for w in src):
        raise TypeError(f"translation_alignment expects a list of English words, got {src!r}")
    try:
        example = korean.translate(list(src))
    except ValueError as err:
        raise ValueError(f"translation_alignment: {' '.join(src)!r} is not a sentence of the "
                         f"translate task") from err
    return [AlignedWord(*t) for t in zip(example.korean, example.source, example.phrase, strict=True)]


def alignment_accuracy(weights: torch.Tensor, pairs: Sequence[Pair]) -> dict[str, float]:
    """The fraction of target words whose largest attention weight is on the source word they
    translate: over all aligned words (``"all"``) and by phrase (``"verb"``, ``"place"`` ...).

    ``weights[b, t]`` are the weights of the step that predicts target token t of ``pairs[b]``
    (teacher forcing); the particles 이/가, 을/를, 은/는, which translate no word, are not counted.

    Shapes: weights (B, T, S) with T, S at least each pair's lengths -> {phrase: fraction}.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() != 3 or weights.shape[0] != len(pairs):
        got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"alignment_accuracy expects weights of shape (B, T, S) with B = "
                         f"{len(pairs)} (one row per pair), got {got}")
    longest_src = max(len(s) for s, _ in pairs)
    longest_tgt = max(len(t) for _, t in pairs)
    if weights.shape[1] < longest_tgt or weights.shape[2] < longest_src:
        raise ValueError(f"alignment_accuracy: weights {tuple(weights.shape)} are too small for "
                         f"targets of up to {longest_tgt} words and sources of up to {longest_src}")
    argmax = weights.argmax(-1).tolist()  # (B, T) the source position each step looks at most
    hits: dict[str, list[bool]] = {"all": []}
    for b, (src, _) in enumerate(pairs):
        for t, word in enumerate(translation_alignment(src)):
            if word.source is not None:
                hit = argmax[b][t] == word.source
                hits["all"].append(hit)
                hits.setdefault(word.phrase, []).append(hit)
    return {k: sum(v) / len(v) for k, v in hits.items()}


def monotonic_weights(pairs: Sequence[Pair]) -> torch.Tensor:
    """A baseline that ignores word order: target word t looks at source word round(t (S-1) / (T-1)).

    Shapes: -> (B, T, S), one-hot rows, zero past each pair's lengths.
    """
    if len(pairs) == 0:
        raise ValueError("monotonic_weights expects at least one pair, got none")
    S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs)
    weights = torch.zeros(len(pairs), T, S)
    for b, (src, tgt) in enumerate(pairs):
        for t in range(len(tgt)):
            weights[b, t, round(t * (len(src) - 1) / max(len(tgt) - 1, 1))] = 1.0
    return weights  # (B, T, S)


def plot_alignment(ax, weights: torch.Tensor, src_words: Sequence[str], tgt_words: Sequence[str],
                   gold: Sequence[int | None] | None = None, title: str = "", colorbar: bool = False):
    """Draw one alignment heatmap on ``ax``: target tokens down, source words across; returns the image.

    ``gold`` (optional) marks, with a red box, the source word each target token translates;
    ``colorbar`` adds the weight scale beside the map. Hangul is drawn with ``use_hangul_font``.
    Shapes: weights (T, S) with T = len(tgt_words), S = len(src_words).
    """
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != (len(tgt_words), len(src_words)):
        got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"plot_alignment expects weights of shape (T, S) = ({len(tgt_words)}, "
                         f"{len(src_words)}) for these words, got {got}")
    families = use_hangul_font()
    image = ax.imshow(weights.detach().cpu().numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(src_words)), src_words, rotation=60, ha="right")
    ax.set_yticks(range(len(tgt_words)), tgt_words)
    ax.set_xlabel("source (English)")
    ax.set_ylabel("output (Korean tokens)")
    for t, s in enumerate(gold or []):
        if s is not None:
            ax.add_patch(_box(s, t))
    if title:
        ax.set_title(title, fontsize=10)
    for text in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title):
        text.set_fontfamily(families)  # the axes may predate use_hangul_font
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    return image


def _box(s: int, t: int):
    from matplotlib.patches import Rectangle

    return Rectangle((s - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="C3", lw=1.5)


def alignment_figure(model: torch.nn.Module, pairs: Sequence[Pair], index: int, src_vocab: Vocab,
                     tgt_vocab: Vocab, figsize: tuple[float, float] = (7, 4.6)):
    """The widget of notebook 03: decode ``pairs[index]`` greedily and draw its attention weights.

    Red boxes mark the true alignment wherever the decoded word is the right one; the title
    gives the output (and, when it is wrong, the reference) as Korean is written.
    """
    from matplotlib.figure import Figure

    _validate.int_in(index, "index", "alignment_figure", 0, len(pairs))
    src, tgt = pairs[index]
    batch = collate([pairs[index]], src_vocab, tgt_vocab)
    device = next(model.parameters()).device
    ids, weights = greedy_decode(model, batch.src.to(device), batch.src_lengths.to(device),
                                 max_len=len(tgt) + 5, return_weights=True)  # (1, L), (1, L, S)
    if weights is None:
        raise ValueError("alignment_figure expects a model with attention, got one whose decoder's "
                         "attention is None")
    out = tgt_vocab.decode(ids[0])
    steps = len(out) + (1 if len(out) < ids.shape[1] else 0)  # the words, and <eos> when emitted
    words = out + ["<eos>"] * (steps - len(out))
    reference = translation_alignment(src)
    gold = [reference[t].source if t < len(tgt) and t < len(out) and out[t] == tgt[t] else None
            for t in range(steps)]
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    title = f"example {index}: {len(src)} words, translation {'right' if out == tgt else 'wrong'}\n"
    title += fill(f"output: {korean.join(out)}", 60)
    if out != tgt:
        title += "\n" + fill(f"reference: {korean.join(tgt)}", 60)
    plot_alignment(ax, weights[0, :steps].cpu(), src, words, gold, title=title, colorbar=True)
    fig.tight_layout()
    return fig
