"""Notebook 08: train the Transformer on the translation task, read its cross-attention, and
translate a typed sentence (the logic of the notebook's widget).

Shapes: B batch, S source length, T target length, L layers, H heads, V vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from textwrap import fill
from typing import NamedTuple

import torch
from matplotlib.figure import Figure
from torch import nn

from .. import korean
from ..data import BOS, Batch, Pair, Vocab
from ..decoding import beam_search, greedy_decode
from ..transformer import Transformer, label_smoothing_loss
from ..utils import use_hangul_font
from .alignment import plot_alignment, translation_alignment

__all__ = ["xavier_init_", "transformer_loss", "cross_attention_weights", "tokenize",
           "check_sentence", "Translation", "translate", "translation_figure", "example_translation_figure"]


def xavier_init_(model: nn.Module) -> nn.Module:
    """Xavier-uniform initialisation of every weight matrix (as the Annotated Transformer does).

    ``nn.Embedding`` starts at N(0, 1); times the paper's sqrt(d_model) that is 8 per feature at
    D = 64, which drowns the positional encoding (at most 1). Xavier's smaller start keeps the
    two at the same scale, and the translation model learns word order several times faster.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"xavier_init_ expects an nn.Module, got {type(model).__name__}")
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    return model


def transformer_loss(model: Transformer, batch: Batch, smoothing: float = 0.1) -> torch.Tensor:
    """Teacher-forced label-smoothed cross-entropy of ``model`` on one batch (for ``train.train``)."""
    return label_smoothing_loss(model(batch.src, batch.tgt_in), batch.tgt_out, smoothing,
                                model.config.pad_id)


@torch.no_grad()
def cross_attention_weights(model: Transformer, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
    """The cross-attention weights of every decoder layer and head, under teacher forcing.

    Row t of each map is the step that predicts target word t (its input is word t - 1, or
    <bos>). Shapes: src (B, S), tgt_in (B, T) -> (L, B, H, T, S).
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"cross_attention_weights expects a Transformer, got {type(model).__name__}")
    was_training = model.training
    model.eval()  # no dropout on the weights we read
    model(src, tgt_in)
    model.train(was_training)
    return torch.stack([layer.cross_weights for layer in model.decoder.layers])  # (L, B, H, T, S)


def tokenize(text: str) -> list[str]:
    """Lower-case words of a typed sentence, punctuation dropped: "The dog sees a cat." -> [the, ...]."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a string, got {type(text).__name__}")
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def check_sentence(words: Sequence[str], src_vocab: Vocab, max_len: int) -> None:
    """Raise ``ValueError`` with a readable message unless the model can read ``words``."""
    if len(words) == 0:
        raise ValueError("type an English sentence, e.g. 'the old dog sees a small cat in the park'")
    unknown = [w for w in dict.fromkeys(words) if w not in src_vocab.stoi or src_vocab.stoi[w] < 4]
    if unknown:
        raise ValueError(f"unknown word{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(w) for w in unknown)}: the model only knows the "
                         f"{len(src_vocab) - 4} words of the task: {' '.join(src_vocab.itos[4:])}")
    if len(words) > max_len:
        raise ValueError(f"the sentence has {len(words)} words; the model reads at most {max_len}")


class Translation(NamedTuple):
    """A translated sentence and the cross-attention that produced it."""

    src: list[str]          # the English words
    out: list[str]          # the model's translation, <eos> removed
    weights: torch.Tensor   # (L, H, T, S) cross-attention of each layer and head, T = len(out)


def translate(model: Transformer, text: str | Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab,
              beam_size: int = 1, max_len: int | None = None) -> Translation:
    """Translate one sentence (a string or a list of words), greedily or with a beam.

    The weights come from re-reading the translation with teacher forcing, which gives the
    same weights as the decoding steps did. Unknown words raise a ``ValueError`` that names them.
    """
    words = tokenize(text) if isinstance(text, str) else [str(w) for w in text]
    check_sentence(words, src_vocab, model.config.max_len)
    max_len = max_len or model.config.max_len - 1  # room for <bos> in the decoder's input
    device = next(model.parameters()).device
    model.eval()
    src = torch.tensor([src_vocab.encode(words)], device=device)  # (1, S)
    lengths = torch.tensor([len(words)], device=device)  # (1,)
    if beam_size == 1:
        ids = greedy_decode(model, src, lengths, max_len)[0]  # (L,)
    else:
        ids = beam_search(model, src, lengths, max_len, beam_size).tokens[0, 0]  # (L,)
    out = tgt_vocab.decode(ids)
    tgt_in = torch.tensor([[BOS, *tgt_vocab.encode(out)]], device=device)  # (1, T + 1)
    weights = cross_attention_weights(model, src, tgt_in)[:, 0, :, : len(out)]  # (L, H, T, S)
    return Translation(words, out, weights.cpu())


def _message_figure(message: str, figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=(figsize[0], 1.6))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.0, 0.5, fill(message, 110), ha="left", va="center", fontsize=10, color="C3",
            transform=ax.transAxes)
    return fig


def translation_figure(model: Transformer, text: str | Sequence[str], src_vocab: Vocab,
                       tgt_vocab: Vocab, reference: Sequence[str] | None = None, beam_size: int = 1,
                       figsize: tuple[float, float] = (15, 6.5)) -> Figure:
    """The widget of notebook 08: translate a sentence and draw every layer's and head's
    cross-attention (rows: layers, columns: heads). Red boxes mark the true alignment of the
    words that come out right: a box is drawn at each position where the output token equals
    the reference token at that position (after a dropped or repeated phrase, most do not).
    A sentence the model cannot read gets a figure with the reason.
    """
    try:
        tr = translate(model, text, src_vocab, tgt_vocab, beam_size=beam_size)
    except ValueError as err:
        return _message_figure(f"Cannot translate: {err}", figsize)
    try:
        truth = translation_alignment(tr.src)
    except ValueError:  # words the task knows, but not a sentence of its grammar
        truth = None
    reference = list(reference) if reference is not None else (
        [w.word for w in truth] if truth is not None else None)
    gold = None
    if truth is not None and reference == [w.word for w in truth]:
        gold = [truth[t].source if t < len(truth) and tr.out[t] == truth[t].word else None
                for t in range(len(tr.out))]
    n_layers, n_heads = tr.weights.shape[:2]
    # a row of Hangul needs about a third of an inch: long outputs get a taller figure
    height = max(figsize[1], 1.2 + n_layers * 0.34 * len(tr.out))
    fig = Figure(figsize=(figsize[0], height), layout="constrained")
    axes = fig.subplots(n_layers, n_heads, squeeze=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer][head]
            image = plot_alignment(ax, tr.weights[layer, head], tr.src, tr.out, gold,
                                   title=f"layer {layer + 1}, head {head + 1}")
            if head:
                ax.set_ylabel("")
            if layer < n_layers - 1:
                ax.set_xlabel("")
    if reference is None:
        verdict = "(no reference: not a sentence of the task's grammar)"
    else:
        verdict = "right" if tr.out == list(reference) else f"wrong; reference: {korean.join(reference)}"
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(f"{' '.join(tr.src)}\n-> {korean.join(tr.out)}   [{verdict}]", fontsize=11,
                 fontfamily=use_hangul_font())
    return fig


def example_translation_figure(model: Transformer, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
                               index: int = 0, text: str = "") -> Figure:
    """``translation_figure`` of the typed ``text`` or, when it is blank, of ``pairs[index]``."""
    chosen = text if text.strip() else " ".join(pairs[index][0])
    reference = None if text.strip() else pairs[index][1]
    return translation_figure(model, chosen, src_vocab, tgt_vocab, reference=reference)
