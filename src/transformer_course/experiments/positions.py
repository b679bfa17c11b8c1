"""Notebooks 06 and 07: the tagging model trained with and without positions, and notebook 06's widget.

Shapes: B batch, S source length, D d_model, V vocabulary.

- ``Tagger``: embedding [+ positions] -> the course's ``Encoder`` -> linear, one output token per
  input token. Notebook 06 trains it on reversal with ``positions`` none, sinusoidal or learned;
  notebook 07 trains a deeper one on sort, post-LN against pre-LN, with the paper's embedding
  scale (``scale_embeddings=True``).
- ``tag_targets``: the per-position targets of a task whose output is as long as its input
  (copy, reverse, sort); ``tagging_accuracy``: per-token accuracy, overall and by position.
- ``encoding_view(position, dim, ...)``: the logic of notebook 06's widget; ``encoding_figure``
  draws it.
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from torch import nn

from .. import _validate
from ..attention import make_padding_mask
from ..data import EOS, PAD, Batch, Pair, Vocab, collate
from ..positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_encoding
from ..transformer import Encoder, TransformerConfig

__all__ = ["POSITIONS", "Tagger", "tag_targets", "tagging_accuracy", "encoding_view",
           "encoding_figure"]

POSITIONS = ("none", "sinusoidal", "learned")  # the Tagger's choices of position information


class Tagger(nn.Module):
    """Embedding [+ positions] -> encoder layers -> linear: one output token per input token."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, d_ff: int = 128,
                 n_layers: int = 2, max_len: int = 32, positions: str = "sinusoidal",
                 dropout: float = 0.0, *, n_labels: int | None = None, norm_first: bool = False,
                 scale_embeddings: bool = False, pad_id: int = PAD):
        super().__init__()
        _validate.positive_int(vocab_size, "vocab_size", "Tagger")
        self.positions = _validate.one_of(positions, POSITIONS, "positions", "Tagger")
        n_labels = vocab_size if n_labels is None else n_labels  # the output vocabulary
        self.config = TransformerConfig(vocab_size, n_labels, d_model, n_heads, d_ff, n_layers, max_len,
                                        dropout, norm_first, pad_id)
        # the paper multiplies embeddings by sqrt(d_model) (notebook 07); notebook 06 does not
        self.scale = math.sqrt(d_model) if scale_embeddings else 1.0
        self.embed = nn.Embedding(vocab_size, d_model)
        self.add_positions: nn.Module = nn.Identity()
        if positions == "sinusoidal":
            self.add_positions = SinusoidalPositionalEncoding(d_model, max_len, dropout)
        elif positions == "learned":
            self.add_positions = LearnedPositionalEmbedding(d_model, max_len, dropout)
            # as large as the token embeddings (nn.Embedding starts at N(0, 1)): at GPT-2's 0.02
            # the positions are drowned and training stalls on the plateau of no positions
            nn.init.normal_(self.add_positions.embedding.weight, std=1.0)
        self.encoder = Encoder(self.config)  # n_layers EncoderLayers (and a final norm if pre-LN)
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """Token ids -> logits for each position; padded keys are masked.

        Shapes: src (B, S) -> logits (B, S, V).
        """
        _validate.token_ids(src, "src", "Tagger")
        _validate.int_in(src.shape[1], "the length of src", "Tagger", 1, self.config.max_len + 1)
        _validate.ids_below(src, self.config.src_vocab_size, "src", "Tagger")
        x = self.add_positions(self.embed(src) * self.scale)  # (B, S, D)
        mask = make_padding_mask(src, self.config.pad_id)  # (B, 1, 1, S): True = a real key
        return self.out(self.encoder(x, mask))  # (B, S, V)


def tag_targets(batch: Batch) -> torch.Tensor:
    """The per-position targets of a ``data.Batch`` whose target is as long as its source.

    ``tgt_out`` is ``y_1 .. y_n <eos>`` padded; the tagger predicts ``y_1 .. y_n`` at the n
    source positions, so the ``<eos>`` becomes padding. For sort, position i gets the i-th
    smallest symbol. Shapes: -> (B, S), padding where the source is padding.
    """
    S = batch.src.shape[1]
    targets = batch.tgt_out[:, :S].masked_fill(batch.tgt_out[:, :S] == EOS, PAD)  # (B, S)
    if batch.tgt_out.shape[1] != S + 1 or ((targets != PAD) != (batch.src != PAD)).any():
        raise ValueError(f"tag_targets expects a task whose output is as long as its input (copy, "
                         f"reverse, sort), got sources {tuple(batch.src.shape)} and targets "
                         f"{tuple(batch.tgt_out.shape)} that differ in length")
    return targets


@torch.no_grad()
def tagging_accuracy(model: nn.Module, pairs: list[Pair], vocab: Vocab, batch_size: int = 512,
                     device: torch.device | str = "cpu") -> tuple[float, torch.Tensor]:
    """Per-token accuracy of ``model(src) -> (B, S, V)`` on ``pairs``, overall and by position.

    Shapes: -> a float, and (S_max,) the accuracy at each output position (NaN where no
    example reaches that position).
    """
    width = max(len(src) for src, _ in pairs)
    correct, count = torch.zeros(width), torch.zeros(width)
    model.eval()
    for i in range(0, len(pairs), batch_size):
        batch = collate(pairs[i: i + batch_size], vocab, vocab).to(device)
        targets = tag_targets(batch).cpu()  # (B, S)
        pred = model(batch.src).argmax(-1).cpu()  # (B, S)
        real = targets != PAD
        S = targets.shape[1]
        correct[:S] += ((pred == targets) & real).sum(0).float()
        count[:S] += real.sum(0).float()
    return (correct.sum() / count.sum()).item(), correct / count


def encoding_view(position: int, dim: int, max_len: int = 64, d_model: int = 32
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The logic of notebook 06's widget: the table, one column, one row, and a wavelength.

    Shapes: -> table (max_len, D), column PE[:, dim] (max_len,), row PE[position] (D,), and
    the wavelength 2 pi 10000^(2i/D) of column dim = 2i or 2i + 1, in positions.
    """
    table = sinusoidal_encoding(max_len, d_model)  # (T, D), checks max_len and d_model
    _validate.int_in(position, "position", "encoding_view", 0, max_len)
    _validate.int_in(dim, "dim", "encoding_view", 0, d_model)
    wavelength = 2 * math.pi * 10000 ** (2 * (dim // 2) / d_model)
    return table, table[:, dim], table[position], wavelength


def encoding_figure(position: int = 10, dim: int = 4) -> Figure:
    """The table with one position and one dimension marked, and that dimension's curve."""
    table, column, row, wavelength = encoding_view(position, dim, max_len=64, d_model=32)
    fig = Figure(figsize=(11, 3.8))
    ax0, ax1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    image = ax0.imshow(table.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax0, label="PE value")
    ax0.axhline(position, color="lime", lw=1.5)
    ax0.axvline(dim, color="lime", lw=1.5)
    ax0.set(title=f"PE (64 positions, d_model 32): row {position}, column {dim}",
            xlabel="dimension", ylabel="position")
    ax1.plot(column.numpy(), color="tab:blue")
    ax1.plot([position], [column[position].item()], "o", color="k")
    ax1.set(ylim=(-1.1, 1.1), xlabel="position",
            ylabel=f"PE[position, {dim}]",
            title=f"dimension {dim} ({'sin' if dim % 2 == 0 else 'cos'}): wavelength "
                  f"{wavelength:,.1f} positions; PE[{position}, {dim}] = {column[position].item():.3f}")
    fig.tight_layout()
    return fig
