"""A decoder-only language model (GPT) at character level: tokenizer, model, sampling, KV cache.

Shapes: B batch, T sequence length (positions), D d_model, H heads, Dh head size (d_head),
V vocabulary (characters).

- ``load_text`` reads a text shipped with the package (``texts/``, license in its README);
  ``CharTokenizer`` maps its characters to ids and back.
- ``GPTBlock`` is the course's pre-LN ``EncoderLayer`` (self-attention + feed-forward) used
  with a causal mask, plus a cached step; ``GPT`` stacks them between a token embedding with
  learned positions and a linear head. No second copy of attention or of the block.
- Sampling: ``top_k_filter``, ``sampling_probs`` (temperature, then top-k, then softmax),
  ``sample_next`` and ``generate`` (with or without the KV cache).
- Training helpers: ``char_batches``, ``lm_loss``, ``evaluate_loss``.

Notebook 10's measurement (``generation_times``) and the logic of its widget
(``sample_texts``, ``sampling_figure``) live in ``experiments/generation.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate
from .attention import make_causal_mask
from .positional import LearnedPositionalEmbedding
from .transformer import EncoderLayer

__all__ = ["TEXTS", "load_text", "CharTokenizer", "GPTConfig", "GPTBlock", "GPT", "top_k_filter",
           "sampling_probs", "sample_next", "generate", "char_batches", "lm_loss", "evaluate_loss"]

TEXTS = ("small_stories",)  # the texts in texts/, written for the course (see texts/README.md)

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # one (k, v) per layer, each (B, H, S, Dh)


# ----------------------------------------------------------------------------- text and tokenizer

def load_text(name: str = "small_stories") -> str:
    """The text ``texts/<name>.txt`` shipped with the package (nothing is downloaded)."""
    _validate.one_of(name, TEXTS, "name (a text shipped in texts/)", "load_text")
    return resources.files("transformer_course").joinpath("texts", f"{name}.txt").read_text("utf-8")


class CharTokenizer:
    """One id per distinct character of a text, in sorted order."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError(f"CharTokenizer expects a non-empty str to take the characters from, "
                             f"got {_validate.describe(text)}")
        self.chars = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters, V."""
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Shapes: a str of T characters -> (T,) int64 ids."""
        unknown = sorted(set(text) - self.ids.keys())
        if unknown:
            raise ValueError(f"CharTokenizer.encode expects the {self.vocab_size} characters of its "
                             f"vocabulary, got text whose characters {unknown} are not in the vocabulary")
        return torch.tensor([self.ids[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Shapes: (T,) ids -> a str of T characters."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"CharTokenizer.decode expects ids in [0, {self.vocab_size}), got ids "
                             f"{bad[:5]} outside [0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids)


# ----------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class GPTConfig:
    """The hyperparameters of the decoder-only model."""

    vocab_size: int       # distinct tokens (characters)
    max_len: int = 128    # the context: the longest sequence the model reads (learned positions)
    d_model: int = 64     # width of the residual stream
    n_heads: int = 4      # attention heads per block; d_model must divide by it
    d_ff: int = 256       # hidden width of the feed-forward network
    n_layers: int = 2     # number of blocks
    dropout: float = 0.0  # dropout on attention weights and sublayer outputs (training only)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "d_ff", "n_layers"):
            _validate.positive_int(getattr(self, name), name, "GPTConfig")
        _validate.divisible(self.d_model, self.n_heads, "GPTConfig")
        _validate.probability(self.dropout, "dropout", "GPTConfig")


class GPTBlock(EncoderLayer):
    """A GPT block: the course's pre-LN encoder layer, run with a causal mask; plus a cached step."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__(d_model, n_heads, d_ff, dropout, norm_first=True)

    def forward_cached(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The same computation as ``forward(x, causal mask)`` for new positions after a cache.

        Shapes: x (B, T_new, D), cache (k, v) each (B, H, S_past, Dh) or None
        -> (B, T_new, D), cache (k, v) each (B, H, S_past + T_new, Dh).
        """
        out, self.weights, cache = self.self_attn.forward_cached(self.norm1(x), cache)
        x = x + self.dropout1(out)  # (B, T_new, D)
        return x + self.dropout2(self.ff(self.norm2(x))), cache


class GPT(nn.Module):
    """Token embedding + learned positions, causal GPT blocks, a final LayerNorm, a linear head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)  # as the positions, as in GPT-2
        self.positions = LearnedPositionalEmbedding(c.d_model, c.max_len, c.dropout)
        self.blocks = nn.ModuleList(GPTBlock(c.d_model, c.n_heads, c.d_ff, c.dropout)
                                    for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)

    def _check_tokens(self, tokens: object, start: int, who: str = "GPT") -> None:
        """Integer ids (B, T) in the vocabulary (checked on the CPU only) whose positions
        start .. start + T - 1 fit the context."""
        _validate.token_ids(tokens, "tokens", who, layout="(B, T)")
        _validate.ids_below(tokens, self.config.vocab_size, "tokens", who)
        if start + tokens.shape[1] > self.config.max_len:
            max_len = self.config.max_len
            raise ValueError(f"{who} expects at most max_len={max_len} positions, got positions "
                             f"0..{start + tokens.shape[1] - 1}, which do not fit the context "
                             f"max_len={max_len}; feed at most the last {max_len} tokens")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position; position t sees tokens 0..t only.

        Shapes: tokens (B, T) with T <= max_len -> logits (B, T, V).
        """
        self._check_tokens(tokens, 0)
        x = self.positions(self.embed(tokens))  # (B, T, D)
        mask = make_causal_mask(tokens.shape[1], device=tokens.device)  # (T, T)
        for block in self.blocks:
            x = block(x, mask)  # (B, T, D)
        return self.head(self.norm(x))  # (B, T, V)

    def forward_cached(self, tokens: torch.Tensor, cache: Cache | None = None
                       ) -> tuple[torch.Tensor, Cache]:
        """Logits of new tokens that follow the cached ones, and the cache grown by them.

        Shapes: tokens (B, T_new), cache: n_layers pairs (k, v) each (B, H, S_past, Dh) or None
        -> logits (B, T_new, V), cache with S_past + T_new positions.
        """
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"GPT.forward_cached expects a cache of one (k, v) pair per layer "
                             f"({len(self.blocks)}), got {len(cache)}")
        start = 0 if cache is None else cache[0][0].shape[-2]
        self._check_tokens(tokens, start, "GPT.forward_cached")
        x = self.positions(self.embed(tokens), start=start)  # (B, T_new, D)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block.forward_cached(x, None if cache is None else cache[i])
            new_cache.append(layer_cache)
        return self.head(self.norm(x)), new_cache  # (B, T_new, V)


# ----------------------------------------------------------------------------- sampling

def _check_top_k(top_k: object, V: int, who: str) -> None:
    """top_k is None or an int in [1, V]."""
    if top_k is not None and not (_validate.is_int(top_k) and 1 <= top_k <= V):
        raise ValueError(f"{who} expects top_k to be None or an int in [1, V={V}], got {top_k!r} "
                         "(top_k=1 is greedy, top_k=V keeps every token)")


def _check_temperature(temperature: object, who: str) -> None:
    """A finite temperature > 0; the message says how to get greedy decoding instead."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{who} expects temperature to be a finite number > 0, got {temperature!r} "
                         "(for greedy decoding use greedy=True or top_k=1, not temperature 0)")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row and set the others to -inf (ties at the k-th kept).

    Shapes: logits (..., V) -> (..., V).
    """
    _validate.tensor(logits, "logits", "top_k_filter", min_dims=1, layout="(..., V)")
    _check_top_k(k, logits.shape[-1], "top_k_filter")
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None
                   ) -> torch.Tensor:
    """The distribution a sampler draws from: softmax(top_k_filter(logits / temperature)).

    Shapes: logits (..., V) -> probabilities (..., V), zero outside the top k.
    """
    _validate.tensor(logits, "logits", "sampling_probs", min_dims=1, layout="(..., V)")
    _check_temperature(temperature, "sampling_probs")
    scaled = logits / temperature  # low temperature sharpens, high flattens
    if top_k is not None:
        scaled = top_k_filter(scaled, top_k)
    return torch.softmax(scaled, dim=-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                greedy: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose one next token per row: the argmax (greedy) or a draw from ``sampling_probs``.

    Shapes: logits (B, V) -> (B,) ids. Draws on the CPU with ``generator`` (same draws on any device).
    """
    _validate.tensor(logits, "logits", "sample_next", min_dims=1, layout="(..., V)")
    _check_temperature(temperature, "sample_next")
    _check_top_k(top_k, logits.shape[-1], "sample_next")
    if greedy:
        return logits.argmax(-1)
    probs = sampling_probs(logits.float().cpu(), temperature, top_k)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)  # (B,)


def _check_generate(model: object, prompt: object, n_new: object, temperature: object,
                    top_k: object) -> None:
    """A GPT, a prompt (B, T0) with 1 <= T0 + n_new <= max_len, and the sampler's settings."""
    if not isinstance(model, GPT):
        raise TypeError(f"generate expects a GPT model, got {type(model).__name__}")
    model._check_tokens(prompt, 0, "generate")
    _validate.int_in(n_new, "n_new", "generate", 0)
    if prompt.shape[1] == 0 or prompt.shape[1] + n_new > model.config.max_len:
        raise ValueError(f"generate expects a prompt of {prompt.shape[1]} tokens plus n_new={n_new} to be "
                         f"between 1 and max_len={model.config.max_len} tokens, got "
                         f"{prompt.shape[1] + n_new}")
    _check_temperature(temperature, "generate")
    _check_top_k(top_k, model.config.vocab_size, "generate")


@torch.no_grad()
def generate(model: GPT, prompt: torch.Tensor, n_new: int, *, temperature: float = 1.0,
             top_k: int | None = None, greedy: bool = False, use_cache: bool = True, seed: int = 0,
             return_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Extend ``prompt`` by ``n_new`` tokens, one at a time, with or without the KV cache.

    Without the cache every step runs the whole sequence through the model again; with it,
    a step runs only the newest token and reuses the cached keys and values.
    Shapes: prompt (B, T0) ids, T0 + n_new <= max_len -> (B, T0 + n_new) ids, and with
    ``return_logits`` the logits that chose each new token, (B, n_new, V).
    """
    _check_generate(model, prompt, n_new, temperature, top_k)
    g = torch.Generator().manual_seed(seed)
    model.eval()
    tokens, chosen_by, cache = prompt, [], None
    for _ in range(n_new):
        if use_cache:
            step_in = tokens if cache is None else tokens[:, -1:]  # the prompt once, then one token
            logits, cache = model.forward_cached(step_in, cache)  # (B, T_in, V)
        else:
            logits = model(tokens)  # (B, T, V): everything again
        last = logits[:, -1]  # (B, V)
        nxt = sample_next(last, temperature, top_k, greedy, generator=g)  # (B,)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)  # (B, T + 1)
        chosen_by.append(last)
    if not return_logits:
        return tokens
    V = model.config.vocab_size
    logits = torch.stack(chosen_by, 1) if chosen_by else prompt.new_zeros(prompt.shape[0], 0, V).float()
    return tokens, logits  # (B, T0 + n_new), (B, n_new, V)


# ----------------------------------------------------------------------------- training helpers

def char_batches(data: torch.Tensor, block_size: int, batch_size: int, n_batches: int = 50
                 ) -> Callable[[torch.Generator], Iterator[torch.Tensor]]:
    """``make_batches`` for ``train.train``: random windows of ``block_size + 1`` characters.

    Shapes: data (N,) ids -> each batch (batch_size, block_size + 1): inputs ``[:, :-1]``,
    next-character targets ``[:, 1:]``.
    """
    _validate.token_ids(data, "data", "char_batches", layout="(N)")
    for name, value in (("block_size", block_size), ("batch_size", batch_size), ("n_batches", n_batches)):
        _validate.positive_int(value, name, "char_batches")
    if len(data) < block_size + 1:
        raise ValueError(f"char_batches expects at least block_size + 1 = {block_size + 1} ids, got "
                         f"{len(data)}: too few for windows of {block_size + 1}")
    offsets = torch.arange(block_size + 1)  # (T + 1,)

    def make_batches(g: torch.Generator) -> Iterator[torch.Tensor]:
        for _ in range(n_batches):
            starts = torch.randint(0, len(data) - block_size, (batch_size, 1), generator=g)  # (B, 1)
            yield data[starts + offsets]  # (B, T + 1)

    return make_batches


def lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next-character predictions (nats per character).

    Shapes: batch (B, T + 1) ids -> scalar.
    """
    x, y = batch[:, :-1], batch[:, 1:]  # (B, T), (B, T)
    logits = model(x)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate_loss(model: nn.Module, data: torch.Tensor, block_size: int, n_windows: int = 64) -> float:
    """``lm_loss`` on ``n_windows`` evenly spaced windows of ``data`` (the same ones every call)."""
    if len(data) < block_size + 1:
        raise ValueError(f"evaluate_loss expects at least block_size + 1 = {block_size + 1} ids, got "
                         f"{len(data)}: too few for windows of {block_size + 1}")
    starts = torch.linspace(0, len(data) - block_size - 1, n_windows).long()[:, None]  # (W, 1)
    windows = data[starts + torch.arange(block_size + 1)]  # (W, T + 1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss = lm_loss(model, windows.to(device)).item()
    model.train(was_training)
    return loss
