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
- Training helpers: ``char_batches``, ``lm_loss``, ``evaluate_loss``; measurement:
  ``generation_times``; notebook 10's widget: ``sampling_figure``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .attention import make_causal_mask
from .positional import LearnedPositionalEmbedding
from .transformer import EncoderLayer

__all__ = ["TEXTS", "load_text", "CharTokenizer", "GPTConfig", "GPTBlock", "GPT", "top_k_filter",
           "sampling_probs", "sample_next", "generate", "char_batches", "lm_loss", "evaluate_loss",
           "generation_times", "sample_texts", "sampling_figure"]

TEXTS = ("small_stories",)  # the texts in texts/, written for the course (see texts/README.md)

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # one (k, v) per layer, each (B, H, S, Dh)


# ----------------------------------------------------------------------------- text and tokenizer

def load_text(name: str = "small_stories") -> str:
    """The text ``texts/<name>.txt`` shipped with the package (nothing is downloaded)."""
    if name not in TEXTS:
        raise ValueError(f"load_text: unknown text {name!r}; the package ships {TEXTS}")
    return resources.files("transformer_course").joinpath("texts", f"{name}.txt").read_text("utf-8")


class CharTokenizer:
    """One id per distinct character of a text, in sorted order."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError("CharTokenizer: expected a non-empty str to take the characters from")
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
            raise ValueError(f"CharTokenizer.encode: characters {unknown} are not in the vocabulary "
                             f"of {self.vocab_size} characters")
        return torch.tensor([self.ids[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Shapes: (T,) ids -> a str of T characters."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"CharTokenizer.decode: ids {bad[:5]} are outside [0, {self.vocab_size})")
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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig: {name} should be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"GPTConfig: d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout should be in [0, 1), got {self.dropout}")


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

    def _check_tokens(self, tokens: object, start: int) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point() \
                or tokens.dtype == torch.bool:
            got = (f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor)
                   else repr(tokens))
            raise ValueError(f"GPT: tokens should be integer ids of shape (B, T), got {got}")
        if start + tokens.shape[1] > self.config.max_len:
            raise ValueError(f"GPT: positions 0..{start + tokens.shape[1] - 1} do not fit the context "
                             f"max_len={self.config.max_len}; feed at most the last "
                             f"{self.config.max_len} tokens")

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
            raise ValueError(f"GPT.forward_cached: cache should hold one (k, v) pair per layer "
                             f"({len(self.blocks)}), got {len(cache)}")
        start = 0 if cache is None else cache[0][0].shape[-2]
        self._check_tokens(tokens, start)
        x = self.positions(self.embed(tokens), start=start)  # (B, T_new, D)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block.forward_cached(x, None if cache is None else cache[i])
            new_cache.append(layer_cache)
        return self.head(self.norm(x)), new_cache  # (B, T_new, V)


# ----------------------------------------------------------------------------- sampling

def _check_logits(logits: object, who: str) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        got = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else repr(logits)
        raise ValueError(f"{who}: logits should be a floating-point tensor (..., V), got {got}")


def _check_top_k(top_k: object, V: int, who: str) -> None:
    if top_k is None:
        return
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= V:
        raise ValueError(f"{who}: top_k should be None or an int in [1, V={V}], got {top_k!r} "
                         "(top_k=1 is greedy, top_k=V keeps every token)")


def _check_temperature(temperature: object, who: str) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{who}: temperature should be a finite number > 0, got {temperature!r} "
                         "(for greedy decoding use greedy=True or top_k=1, not temperature 0)")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row and set the others to -inf (ties at the k-th kept).

    Shapes: logits (..., V) -> (..., V).
    """
    _check_logits(logits, "top_k_filter")
    _check_top_k(k, logits.shape[-1], "top_k_filter")
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None
                   ) -> torch.Tensor:
    """The distribution a sampler draws from: softmax(top_k_filter(logits / temperature)).

    Shapes: logits (..., V) -> probabilities (..., V), zero outside the top k.
    """
    _check_logits(logits, "sampling_probs")
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
    _check_logits(logits, "sample_next")
    _check_temperature(temperature, "sample_next")
    _check_top_k(top_k, logits.shape[-1], "sample_next")
    if greedy:
        return logits.argmax(-1)
    probs = sampling_probs(logits.float().cpu(), temperature, top_k)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)  # (B,)


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
    if not isinstance(model, GPT):
        raise TypeError(f"generate expects a GPT model, got {type(model).__name__}")
    model._check_tokens(prompt, 0)
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
        raise ValueError(f"generate: n_new should be an int >= 0, got {n_new!r}")
    if prompt.shape[1] == 0 or prompt.shape[1] + n_new > model.config.max_len:
        raise ValueError(f"generate: a prompt of {prompt.shape[1]} tokens plus n_new={n_new} must be "
                         f"between 1 and max_len={model.config.max_len} tokens")
    _check_temperature(temperature, "generate")
    _check_top_k(top_k, model.config.vocab_size, "generate")
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
    if not isinstance(data, torch.Tensor) or data.dim() != 1 or data.is_floating_point():
        raise ValueError(f"char_batches: data should be a 1-D tensor of ids, got "
                         f"{getattr(data, 'shape', type(data).__name__)}")
    for name, value in (("block_size", block_size), ("batch_size", batch_size), ("n_batches", n_batches)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"char_batches: {name} should be a positive int, got {value!r}")
    if len(data) < block_size + 1:
        raise ValueError(f"char_batches: {len(data)} ids are too few for windows of {block_size + 1}")
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
        raise ValueError(f"evaluate_loss: {len(data)} ids are too few for windows of {block_size + 1}")
    starts = torch.linspace(0, len(data) - block_size - 1, n_windows).long()[:, None]  # (W, 1)
    windows = data[starts + torch.arange(block_size + 1)]  # (W, T + 1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss = lm_loss(model, windows.to(device)).item()
    model.train(was_training)
    return loss


# ----------------------------------------------------------------------------- measurement

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def generation_times(model: GPT, prompt: torch.Tensor, lengths: list[int], repeats: int = 3
                     ) -> dict[str, list[float]]:
    """Seconds to generate n new tokens greedily, without and with the cache (best of ``repeats``).

    Shapes: prompt (B, T0) -> {"no cache": [...], "cache": [...]}, one time per entry of ``lengths``.
    """
    if not lengths or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths):
        raise ValueError(f"generation_times: lengths should be positive ints, got {lengths!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"generation_times: repeats should be a positive int, got {repeats!r}")
    device = prompt.device
    generate(model, prompt, 2, greedy=True, use_cache=True)  # warm-up
    times = {"no cache": [math.inf] * len(lengths), "cache": [math.inf] * len(lengths)}
    for _ in range(repeats):  # repeats outermost: a burst of load spoils one round, not one length
        for i, n in enumerate(lengths):
            for name, use_cache in (("no cache", False), ("cache", True)):
                _sync(device)
                start = time.perf_counter()
                generate(model, prompt, n, greedy=True, use_cache=use_cache)
                _sync(device)
                times[name][i] = min(times[name][i], time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- the widget's logic

def sample_texts(model: GPT, tokenizer: CharTokenizer, prompt: str, n_chars: int, *,
                 temperature: float = 1.0, top_k: int | None = None, n_samples: int = 3,
                 seed: int = 0) -> list[str]:
    """``n_samples`` continuations of ``prompt`` (the new characters only), drawn in one batch."""
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt)[None].repeat(n_samples, 1).to(device)  # (N, T0)
    out = generate(model, ids, n_chars, temperature=temperature, top_k=top_k, seed=seed)
    return [tokenizer.decode(row[len(prompt):]) for row in out.cpu()]


def _wrap(text: str, width: int) -> str:
    lines = []
    for part in text.split("\n"):
        lines.extend(part[i: i + width] for i in range(0, max(len(part), 1), width))
    return "\n".join(lines)


@torch.no_grad()
def sampling_figure(model: GPT, tokenizer: CharTokenizer, prompt: str, temperature: float = 1.0,
                    top_k: int | None = None, n_chars: int = 80, n_samples: int = 3,
                    seed: int = 0) -> Figure:
    """Notebook 10's widget: the next-character distribution after ``prompt`` and a few samples."""
    _check_temperature(temperature, "sampling_figure")
    _check_top_k(top_k, tokenizer.vocab_size, "sampling_figure")
    device = next(model.parameters()).device
    model.eval()
    logits = model(tokenizer.encode(prompt)[None].to(device))[0, -1].cpu()  # (V,)
    probs = sampling_probs(logits, temperature, top_k)  # (V,)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum().item()
    shown = probs.argsort(descending=True)[:20]
    samples = sample_texts(model, tokenizer, prompt, n_chars, temperature=temperature, top_k=top_k,
                           n_samples=n_samples, seed=seed)
    fig = Figure(figsize=(10, 4.9))
    ax0, ax1 = fig.subplots(2, 1, height_ratios=[1, 1.1])
    labels = [repr(tokenizer.chars[i])[1:-1].replace(" ", "␣") for i in shown.tolist()]
    ax0.bar(labels, probs[shown].numpy(), color="tab:blue")
    ax0.set_ylim(0, 1)
    ax0.set_ylabel("probability")
    k = "all" if top_k is None else top_k
    ax0.set_title(f"next character after {prompt[-25:]!r}: temperature {temperature:.2f}, top-k {k}, "
                  f"entropy {entropy:.2f} nats", fontsize=10)
    ax1.axis("off")
    text = "\n\n".join(f"{i + 1}. " + _wrap(prompt + s, 88) for i, s in enumerate(samples))
    ax1.text(0, 1, text, va="top", ha="left", family="monospace", fontsize=8.5, transform=ax1.transAxes)
    ax1.set_title(f"{n_samples} samples of {n_chars} characters (seed {seed})", fontsize=10, loc="left")
    fig.tight_layout()
    return fig
