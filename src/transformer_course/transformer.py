"""The Transformer (Vaswani et al. 2017): encoder and decoder layers, and the whole model.

Shapes: B batch, S source length, T target length, D d_model, H heads, F d_ff, V vocabulary.

Built from ``attention.MultiHeadAttention`` and ``positional.SinusoidalPositionalEncoding``:
no second copy of attention. Masks follow the course's convention: True where attention is
allowed. Each layer is post-LN as in the paper (``x = norm(x + sublayer(x))``) or pre-LN
(``x = x + sublayer(norm(x))``) with ``norm_first=True``; the pre-LN stacks end with a final
LayerNorm, as in ``nn.Transformer``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention, make_causal_mask, make_padding_mask
from .data import PAD
from .positional import SinusoidalPositionalEncoding

__all__ = ["TransformerConfig", "translate_config", "FeedForward", "EncoderLayer", "DecoderLayer",
           "Encoder", "Decoder", "Transformer", "label_smoothing_loss", "warmup_schedule",
           "layer_gradient_norms", "gradient_norm_curves", "GRADIENT_VARIANTS", "EncoderTagger",
           "sort_tags", "constant_warmup"]


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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TransformerConfig: {name} should be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig: d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}; each head needs d_model // n_heads dimensions")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig: dropout should be in [0, 1), got {self.dropout}")

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads


def translate_config(**overrides) -> TransformerConfig:
    """The course's preset for the translation task (notebook 08): small enough for a CPU."""
    from .data import task_vocabs

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
                 norm_first: bool = False, residual: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first
        # residual=False drops the skip connections: only for notebook 07's experiment
        self.skip = 1.0 if residual else 0.0
        self.weights: torch.Tensor | None = None  # the last self-attention weights (B, H, S, S)

    def _sa(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out, self.weights = self.self_attn(x, x, x, mask)
        return self.dropout1(out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, S, D), mask broadcastable to (B, H, S, S) -> (B, S, D)."""
        if self.norm_first:
            x = self.skip * x + self._sa(self.norm1(x), mask)
            return self.skip * x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(self.skip * x + self._sa(x, mask))
        return self.norm2(self.skip * x + self.dropout2(self.ff(x)))


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

    def _sa(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out, self.self_weights = self.self_attn(x, x, x, mask)
        return self.dropout1(out)

    def _ca(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out, self.cross_weights = self.cross_attn(x, memory, memory, mask)
        return self.dropout2(out)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: x (B, T, D), memory (B, S, D), tgt_mask to (B, H, T, T),
        memory_mask to (B, H, T, S) -> (B, T, D)."""
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask)
            x = x + self._ca(self.norm2(x), memory, memory_mask)
            return x + self.dropout3(self.ff(self.norm3(x)))
        x = self.norm1(x + self._sa(x, tgt_mask))
        x = self.norm2(x + self._ca(x, memory, memory_mask))
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
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size)

    def _embed(self, tokens: torch.Tensor, table: nn.Embedding, name: str) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else tokens
            raise ValueError(f"Transformer: {name} should be integer token ids of shape (B, L), got {got}")
        if tokens.shape[1] > self.config.max_len:
            raise ValueError(f"Transformer: {name} has length {tokens.shape[1]}, longer than "
                             f"max_len={self.config.max_len}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= table.num_embeddings):
            raise ValueError(f"Transformer: {name} holds ids outside [0, {table.num_embeddings}): "
                             f"min {tokens.min().item()}, max {tokens.max().item()}")
        # the paper scales embeddings by sqrt(d_model) so they are not drowned by the positions
        return self.positions(table(tokens) * math.sqrt(self.config.d_model))  # (B, L, D)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids (B, S) -> memory (B, S, D) and its padding mask (B, 1, 1, S)."""
        x = self._embed(src, self.src_embed, "src")
        mask = make_padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)
        return self.encoder(x, mask), mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Target prefix ids (B, T) and memory -> logits (B, T, V), causally masked."""
        y = self._embed(tgt, self.tgt_embed, "tgt")
        causal = make_causal_mask(tgt.shape[1], device=tgt.device)  # (T, T)
        tgt_mask = causal & make_padding_mask(tgt, self.config.pad_id)  # (B, 1, T, T)
        return self.generator(self.decoder(y, memory, tgt_mask, memory_mask))  # (B, T, V)

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


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                         pad_id: int = PAD) -> torch.Tensor:
    """Cross-entropy against (1 - smoothing) on the target plus smoothing spread over all V.

    Padding positions are ignored. Computed with log_softmax, so it never gives -inf or NaN,
    even for confident logits. Shapes: logits (B, T, V), targets (B, T) -> scalar.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"label_smoothing_loss expects logits (B, T, V) and targets (B, T), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label_smoothing_loss: smoothing should be in [0, 1), got {smoothing}")
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    real = targets != pad_id  # (B, T)
    nll = -logp.gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)  # (B, T)
    uniform = -logp.mean(-1)  # (B, T): cross-entropy against the uniform distribution
    loss = (1 - smoothing) * nll + smoothing * uniform
    return loss[real].sum() / real.sum().clamp_min(1)


def warmup_schedule(d_model: int, warmup_steps: int):
    """The paper's learning rate: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Returns a function of the step (0-based) for ``train(..., lr=1.0, schedule=...)``: it
    rises linearly for ``warmup_steps`` steps, then decays as 1 / sqrt(step).
    """
    if not (isinstance(d_model, int) and d_model > 0 and isinstance(warmup_steps, int)
            and warmup_steps > 0):
        raise ValueError(f"warmup_schedule expects positive ints, got d_model={d_model!r}, "
                         f"warmup_steps={warmup_steps!r}")

    def lr(step: int) -> float:
        s = step + 1
        return d_model ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)

    return lr


# --- Notebook 07: the block's experiments ---------------------------------------------------


def _check_depth(depth: object, who: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"{who}: depth should be an int >= 1, got {depth!r}")
    return depth


def layer_gradient_norms(depth: int, residual: bool = True, norm_first: bool = False, *,
                         d_model: int = 64, n_heads: int = 4, d_ff: int = 256, batch_size: int = 8,
                         seq_len: int = 16, seed: int = 0) -> torch.Tensor:
    """The gradient norm of the loss w.r.t. each layer's input, at initialisation: (depth,).

    A stack of ``depth`` freshly initialised encoder layers (pre-LN stacks end with a final
    LayerNorm, as ``Encoder`` does) maps a random input (B, S, D) to an output whose mean
    squared error to a random target is the loss. Entry ``i`` is ``||dL / dx_i||``, where
    ``x_i`` is the input of layer ``i`` (0 = the first layer, nearest the data).
    """
    depth = _check_depth(depth, "layer_gradient_norms")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the layers' initialisation leaves the global RNG alone
        torch.manual_seed(seed)
        layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, 0.0, norm_first, residual)
                               for _ in range(depth))
        final = nn.LayerNorm(d_model) if norm_first else nn.Identity()
    x = torch.randn(batch_size, seq_len, d_model, generator=g, requires_grad=True)  # (B, S, D)
    target = torch.randn(batch_size, seq_len, d_model, generator=g)  # (B, S, D)
    inputs, h = [], x
    for layer in layers:
        inputs.append(h)
        h = layer(h)  # (B, S, D)
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
    depth = _check_depth(depth, "gradient_norm_curves")
    return {name: layer_gradient_norms(depth, residual, norm_first, seed=seed)
            for name, (residual, norm_first) in GRADIENT_VARIANTS.items()}


class EncoderTagger(nn.Module):
    """An encoder-only Transformer that labels every source position (notebook 07's trainer).

    Source embeddings (scaled by sqrt(d_model)) plus sinusoidal positions, the ``Encoder``
    stack, and a linear layer to ``config.tgt_vocab_size`` labels at every position.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"EncoderTagger expects a TransformerConfig, got {type(config).__name__}")
        c = self.config = config
        self.embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.positions = SinusoidalPositionalEncoding(c.d_model, c.max_len, c.dropout)
        self.encoder = Encoder(c)
        self.head = nn.Linear(c.d_model, c.tgt_vocab_size)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """Shapes: src (B, S) token ids -> logits (B, S, V)."""
        if not isinstance(src, torch.Tensor) or src.dim() != 2 or src.is_floating_point():
            got = f"{src.dtype} {tuple(src.shape)}" if isinstance(src, torch.Tensor) else repr(src)
            raise ValueError(f"EncoderTagger: src should be integer token ids (B, S), got {got}")
        if src.shape[1] > self.config.max_len:
            raise ValueError(f"EncoderTagger: src has length {src.shape[1]}, longer than "
                             f"max_len={self.config.max_len}")
        x = self.positions(self.embed(src) * math.sqrt(self.config.d_model))  # (B, S, D)
        mask = make_padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)
        return self.head(self.encoder(x, mask))  # (B, S, V)


def sort_tags(batch) -> torch.Tensor:
    """The labels of the sort task read as tagging: position i gets the i-th smallest symbol.

    ``batch.tgt_out`` is the sorted source followed by ``<eos>``; the tag of each source
    position is the token at the same index, with ``<eos>`` and beyond set to padding.
    Shapes: -> (B, S), padding where the source is padding.
    """
    S = batch.src.shape[1]
    tags = batch.tgt_out[:, :S]  # (B, S)
    return tags.masked_fill(batch.src == PAD, PAD)


def constant_warmup(warmup_steps: int):
    """A learning-rate multiplier that rises linearly to 1 over ``warmup_steps``, then stays 1.

    ``warmup_steps=0`` means no warm-up (always 1). For ``train(..., schedule=...)``.
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"constant_warmup expects an int >= 0, got {warmup_steps!r}")
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
