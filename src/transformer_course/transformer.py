"""The Transformer (Vaswani et al. 2017): encoder and decoder layers, and the whole model.

Shapes: B batch, S source length, T target length, D d_model, H heads, F d_ff, V vocabulary.

Built from ``attention.MultiHeadAttention`` and ``positional.SinusoidalPositionalEncoding``:
no second copy of attention. Masks follow the course's convention: True where attention is
allowed. Each layer is post-LN as in the paper (``x = norm(x + sublayer(x))``) or pre-LN
(``x = x + sublayer(norm(x))``) with ``norm_first=True``; the pre-LN stacks end with a final
LayerNorm, as in ``nn.Transformer``.

Notebook 07's experiments (gradient norms per layer, a layer without residuals, warm-up) live
in ``experiments/transformer_block.py``; notebook 08's training and widget helpers in
``experiments/translation.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate
from .attention import MultiHeadAttention, make_causal_mask, make_padding_mask
from .data import PAD, task_vocabs
from .positional import SinusoidalPositionalEncoding

__all__ = ["TransformerConfig", "translate_config", "FeedForward", "EncoderLayer", "DecoderLayer",
           "Encoder", "Decoder", "TransformerState", "Transformer", "label_smoothing_loss",
           "label_smoothing_floor", "warmup_schedule"]


@dataclass(frozen=True)
class TransformerConfig:
    """The hyperparameters of an encoder-decoder Transformer."""

    src_vocab_size: int      # source tokens, specials included
    tgt_vocab_size: int      # target tokens, specials included
    d_model: int = 64        # width of every residual stream vector
    n_heads: int = 4         # attention heads per layer; d_model must divide by it
    d_ff: int = 128          # hidden width of the position-wise feed-forward network
    n_layers: int = 2        # layers in the encoder and, separately, in the decoder
    max_len: int = 64        # the longest source or target sequence the model accepts
    dropout: float = 0.1     # dropout on sublayer outputs, embeddings and attention weights
    norm_first: bool = False  # False: post-LN (the paper); True: pre-LN
    pad_id: int = PAD        # the padding id; padded keys get no attention

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "n_layers",
                     "max_len"):
            _validate.positive_int(getattr(self, name), name, "TransformerConfig")
        _validate.divisible(self.d_model, self.n_heads, "TransformerConfig")
        _validate.probability(self.dropout, "dropout", "TransformerConfig")
        _validate.int_in(self.pad_id, "pad_id", "TransformerConfig", 0)

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads


def translate_config(**overrides) -> TransformerConfig:
    """The course's preset for the translation task (notebook 08): small enough for a CPU."""
    src, tgt = task_vocabs("translate")
    base = dict(src_vocab_size=len(src), tgt_vocab_size=len(tgt), d_model=64, n_heads=4, d_ff=128,
                n_layers=2, max_len=32, dropout=0.1)
    return TransformerConfig(**{**base, **overrides})


class FeedForward(nn.Module):
    """The position-wise feed-forward network: Linear, ReLU, dropout, Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: (B, T, D) -> (B, T, F) -> (B, T, D)."""
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each with a residual connection and a LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first
        self.weights: torch.Tensor | None = None  # the last self-attention weights (B, H, S, S)

    def _self_attention_block(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Self-attention over x, keeping its weights; then dropout. (B, S, D) -> (B, S, D)."""
        out, self.weights = self.self_attn(x, x, x, mask)
        return self.dropout1(out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, S, D), mask broadcastable to (B, H, S, S) -> (B, S, D)."""
        if self.norm_first:  # pre-LN: x + sublayer(norm(x))
            x = x + self._self_attention_block(self.norm1(x), mask)
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self._self_attention_block(x, mask))  # post-LN: norm(x + sublayer(x))
        return self.norm2(x + self.dropout2(self.ff(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder's output, then feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.norm_first = norm_first
        self.self_weights: torch.Tensor | None = None   # (B, H, T, T)
        self.cross_weights: torch.Tensor | None = None  # (B, H, T, S): the alignment

    def _self_attention_block(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Masked self-attention over x, keeping its weights; then dropout. (B, T, D) -> (B, T, D)."""
        out, self.self_weights = self.self_attn(x, x, x, mask)
        return self.dropout1(out)

    def _cross_attention_block(self, x: torch.Tensor, memory: torch.Tensor,
                               mask: torch.Tensor | None) -> torch.Tensor:
        """Queries from x, keys and values from the memory; then dropout. (B, T, D) -> (B, T, D)."""
        out, self.cross_weights = self.cross_attn(x, memory, memory, mask)
        return self.dropout2(out)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, T, D), memory (B, S, D), tgt_mask to (B, H, T, T),
        memory_mask to (B, H, T, S) -> (B, T, D)."""
        if self.norm_first:  # pre-LN: x + sublayer(norm(x))
            x = x + self._self_attention_block(self.norm1(x), tgt_mask)
            x = x + self._cross_attention_block(self.norm2(x), memory, memory_mask)
            return x + self.dropout3(self.ff(self.norm3(x)))
        x = self.norm1(x + self._self_attention_block(x, tgt_mask))  # post-LN: norm(x + sublayer(x))
        x = self.norm2(x + self._cross_attention_block(x, memory, memory_mask))
        return self.norm3(x + self.dropout3(self.ff(x)))


class Encoder(nn.Module):
    """A stack of encoder layers (with a final LayerNorm when pre-LN)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.layers = nn.ModuleList(EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
                                    for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, S, D), mask to (B, H, S, S) -> (B, S, D)."""
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


# Encoder and Decoder are parallel by design (duplicates lists them as a pair): the same stack
# around a different layer with different inputs, kept apart so each reads like the paper's figure.
class Decoder(nn.Module):
    """A stack of decoder layers (with a final LayerNorm when pre-LN)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.layers = nn.ModuleList(DecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
                                    for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, T, D), memory (B, S, D) -> (B, T, D)."""
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return self.norm(x)


@dataclass
class TransformerState:
    """What step-by-step decoding carries: the encoder's output and the tokens so far."""

    memory: torch.Tensor       # (B, S, D)
    memory_mask: torch.Tensor  # (B, 1, 1, S)
    tokens: torch.Tensor       # (B, t) the target prefix fed so far, starting with <bos>
    weights: torch.Tensor | None  # (B, S) cross-attention of the newest position


class Transformer(nn.Module):
    """The encoder-decoder Transformer: token ids in, next-token logits out."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"Transformer expects a TransformerConfig, got {type(config).__name__}")
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.positions = SinusoidalPositionalEncoding(c.d_model, c.max_len, c.dropout)
        self.encoder, self.decoder = Encoder(c), Decoder(c)
        self.head = nn.Linear(c.d_model, c.tgt_vocab_size)  # the output layer: D -> V logits

    def _check_tokens(self, tokens: object, vocab_size: int, name: str) -> None:
        """Integer ids (B, L) with 1 <= L <= max_len, inside the vocabulary (checked on the CPU only)."""
        _validate.token_ids(tokens, name, "Transformer", layout="(B, L)")
        _validate.int_in(tokens.shape[1], f"the length of {name}", "Transformer", 1, self.config.max_len + 1)
        _validate.ids_below(tokens, vocab_size, name, "Transformer")

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids (B, S) -> memory (B, S, D) and its padding mask (B, 1, 1, S)."""
        self._check_tokens(src, self.config.src_vocab_size, "src")
        # the paper scales embeddings by sqrt(d_model) so they are not drowned by the positions
        x = self.positions(self.src_embed(src) * math.sqrt(self.config.d_model))  # (B, S, D)
        mask = make_padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)
        return self.encoder(x, mask), mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Target prefix ids (B, T) and memory -> logits (B, T, V), causally masked."""
        self._check_tokens(tgt, self.config.tgt_vocab_size, "tgt")
        y = self.positions(self.tgt_embed(tgt) * math.sqrt(self.config.d_model))  # (B, T, D)
        causal = make_causal_mask(tgt.shape[1], device=tgt.device)  # (T, T)
        tgt_mask = causal & make_padding_mask(tgt, self.config.pad_id)  # (B, 1, T, T)
        return self.head(self.decoder(y, memory, tgt_mask, memory_mask))  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing. Shapes: src (B, S), tgt (B, T) ids -> logits (B, T, V)."""
        memory, memory_mask = self.encode(src)
        return self.decode(tgt, memory, memory_mask)

    # the decoding interface shared with the RNN models (decoding.greedy_decode, beam_search)
    def start(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None) -> TransformerState:
        """Encode once; the target prefix starts empty. (Lengths are read from the padding.)"""
        memory, memory_mask = self.encode(src)
        tokens = src.new_zeros((src.shape[0], 0))  # (B, 0)
        return TransformerState(memory, memory_mask, tokens, None)

    def step(self, tokens: torch.Tensor, state: TransformerState) -> tuple[torch.Tensor, TransformerState]:
        """Append the latest tokens (B,) to the prefix; return the next logits (B, V) and state.

        The decoder re-reads the whole prefix at every step: simple and exact (notebook 10's
        KV cache removes the repeated work). ``state.weights`` is the last layer's
        cross-attention of the newest position, averaged over heads: (B, S).
        """
        prefix = torch.cat([state.tokens, tokens[:, None]], dim=1)  # (B, t + 1)
        logits = self.decode(prefix, state.memory, state.memory_mask)[:, -1]  # (B, V)
        weights = self.decoder.layers[-1].cross_weights[:, :, -1].mean(1)  # (B, H, S) -> (B, S)
        return logits, TransformerState(state.memory, state.memory_mask, prefix, weights)


def _check_logits_and_targets(logits: object, targets: object, who: str) -> None:
    """Logits (B, T, V) and integer targets (B, T) for the same positions."""
    _validate.tensor(logits, "logits", who, dims=3, layout="(B, T, V)")
    _validate.token_ids(targets, "targets", who, layout="(B, T)")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"{who} expects logits (B, T, V) and targets (B, T) for the same positions, got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                         pad_id: int = PAD) -> torch.Tensor:
    """Cross-entropy against (1 - smoothing) on the target plus smoothing spread over all V.

    Padding positions are ignored. Computed with log_softmax, so it never gives -inf or NaN,
    even for confident logits. Shapes: logits (B, T, V), targets (B, T) -> scalar.
    """
    _check_logits_and_targets(logits, targets, "label_smoothing_loss")
    _validate.probability(smoothing, "smoothing", "label_smoothing_loss")
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    real = targets != pad_id  # (B, T)
    nll = -logp.gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)  # (B, T)
    uniform = -logp.mean(-1)  # (B, T): cross-entropy against the uniform distribution
    loss = (1 - smoothing) * nll + smoothing * uniform
    return loss[real].sum() / real.sum().clamp_min(1)


def label_smoothing_floor(vocab_size: int, smoothing: float = 0.1) -> float:
    """The lowest value ``label_smoothing_loss`` can take: the entropy of the smoothed target.

    The target puts 1 - smoothing + smoothing / V on the right token and smoothing / V on each
    of the other V - 1; the cross-entropy is smallest when the model predicts exactly that.
    """
    _validate.int_in(vocab_size, "vocab_size", "label_smoothing_floor", 2)
    _validate.probability(smoothing, "smoothing", "label_smoothing_floor")
    right, other = 1 - smoothing + smoothing / vocab_size, smoothing / vocab_size
    return -right * math.log(right) - (vocab_size - 1) * (other * math.log(other) if other > 0 else 0.0)


def warmup_schedule(d_model: int, warmup_steps: int):
    """The paper's learning rate: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Returns a function of the step (0-based) for ``train(..., lr=1.0, schedule=...)``: it
    rises linearly for ``warmup_steps`` steps, then decays as 1 / sqrt(step).
    """
    _validate.positive_int(d_model, "d_model", "warmup_schedule")
    _validate.positive_int(warmup_steps, "warmup_steps", "warmup_schedule")

    def lr(step: int) -> float:
        s = step + 1
        return d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)

    return lr
