"""Notebooks 04 and 05: what the heads of a trained translator do, measured against the same
model at initialisation.

A small encoder-decoder Transformer (the race's, notebook 08) learns the English -> Korean task
inside the notebook. Its three kinds of attention are read under teacher forcing on test
sentences, and each head is scored by where its largest weight falls: on the English word a
Korean token translates (cross-attention), on the previous token, on itself or on <bos>
(decoder self-attention), on the previous, the same or the next English word (encoder
self-attention); and by its entropy against a uniform head's. The same architecture with the
same seed, untrained, gets the same scores.

Every score comes with its chance level: the share a head that picks one of its allowed keys
at random would get. A row with a single allowed key (the decoder's first step may only look
at <bos>) says nothing about a head and is not counted.

Shapes: L layers, B sentences, H heads, T query positions, S key positions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import _validate, korean
from ..data import PAD, Pair, Vocab, collate
from ..seq2seq import length_grouped_batches
from ..train import History, train
from ..transformer import Transformer
from ..utils import use_hangul_font
from . import race
from .alignment import plot_alignment, translation_alignment
from .explorer import KINDS, AttentionMaps
from .self_attention import attention_entropy
from .translation import transformer_loss

__all__ = ["HeadsConfig", "Translator", "train_translator", "KindMaps", "attention_maps",
           "allowed_keys", "offset_targets", "first_key_targets", "alignment_targets", "counted_rows",
           "argmax_share", "chance_share", "mean_entropy", "uniform_entropy", "STATISTICS",
           "HeadStats", "head_statistics", "best_head", "strongest_roles", "role_share",
           "entropy_ratio", "summary", "head_table", "example_pair", "sentence_maps", "head_bars_figure",
           "head_pair_figure"]


# ----------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class HeadsConfig:
    """How the translator whose heads are measured is trained: within a notebook's budget."""

    regime: race.Regime = race.REGIMES["short"]  # sentence lengths and data sizes (the race's)
    steps: int = 400           # Adam steps (the race trains 600 at batch 128)
    batch_size: int = 64       # sentences per step
    lr: float = 3e-3           # the race's learning rate for the Transformer, after its warm-up
    smoothing: float = 0.1     # label smoothing, as in notebook 08
    n_sentences: int = 300     # test sentences the heads are measured on

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "n_sentences"):
            _validate.positive_int(getattr(self, name), name, "HeadsConfig")
        _validate.positive_number(self.lr, "lr", "HeadsConfig")
        _validate.probability(self.smoothing, "smoothing", "HeadsConfig")


class Translator(NamedTuple):
    """A trained translator, the same model untrained, their data and the training's history."""

    model: Transformer  # trained
    init: Transformer   # the same architecture and seed, not trained
    data: race.RaceData
    history: History


def train_translator(config: HeadsConfig = HeadsConfig(), seed: int = 0,
                     desc: str = "training the translator") -> Translator:
    """Train the race's Transformer on ``config.regime`` for ``config.steps`` steps from ``seed``."""
    if not isinstance(config, HeadsConfig):
        raise TypeError(f"train_translator expects a HeadsConfig, got {type(config).__name__}")
    _validate.seed(seed, "train_translator")
    data = race.race_data(config.regime, seed)
    init = race.build_model("Transformer", data, seed).eval()
    model = race.build_model("Transformer", data, seed)  # the same start: build_model seeds itself

    def make_batches(g: torch.Generator):
        return length_grouped_batches(data.train, data.src_vocab, data.tgt_vocab, config.batch_size, g)

    history = train(model, functools.partial(transformer_loss, smoothing=config.smoothing), make_batches,
                    steps=config.steps, lr=config.lr, schedule=race.warmup_constant(config.steps),
                    seed=seed, desc=desc)
    return Translator(model.eval(), init, data, history)


# ----------------------------------------------------------------------------- the maps

class KindMaps(NamedTuple):
    """The weights of one kind of attention on a batch, and where a real query may look."""

    weights: torch.Tensor  # (L, B, H, T, S)
    allowed: torch.Tensor  # (B, T, S) True where a real query may attend to a real key


def allowed_keys(query_lengths: torch.Tensor, key_lengths: torch.Tensor,
                 causal: bool = False) -> torch.Tensor:
    """True where real query t of sentence b may attend to real key s (and s <= t when ``causal``).

    Shapes: query_lengths (B,), key_lengths (B,) -> (B, T, S), T and S the longest lengths.
    """
    _validate.token_ids(query_lengths, "query_lengths", "allowed_keys", layout="(B,)")
    _validate.token_ids(key_lengths, "key_lengths", "allowed_keys", layout="(B,)")
    if query_lengths.shape != key_lengths.shape:
        raise ValueError(f"allowed_keys expects one query and one key length per sentence, got "
                         f"{tuple(query_lengths.shape)} and {tuple(key_lengths.shape)}")
    T, S = int(query_lengths.max()), int(key_lengths.max())
    t, s = torch.arange(T)[:, None], torch.arange(S)[None, :]  # (T, 1), (1, S)
    allowed = (t < query_lengths[:, None, None]) & (s < key_lengths[:, None, None])  # (B, T, S)
    return allowed & (s <= t) if causal else allowed


@torch.no_grad()
def attention_maps(model: Transformer, pairs: Sequence[Pair], src_vocab: Vocab,
                   tgt_vocab: Vocab) -> dict[str, KindMaps]:
    """The three kinds of attention of every layer on ``pairs``, under teacher forcing.

    The decoder reads <bos> y1 ... yn (n + 1 queries); its query t predicts target token t
    (``<eos>`` last), the convention of ``alignment.alignment_accuracy``.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"attention_maps expects a Transformer, got {type(model).__name__}")
    batch = collate(pairs, src_vocab, tgt_vocab).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    model(batch.src, batch.tgt_in)
    model.train(was_training)
    src_len, tgt_len = batch.src_lengths.cpu(), (batch.tgt_in != PAD).sum(1).cpu()  # (B,), (B,)
    enc, dec = model.encoder.layers, model.decoder.layers
    return {
        "encoder self-attention": KindMaps(torch.stack([lay.weights.cpu() for lay in enc]),
                                           allowed_keys(src_len, src_len)),
        "decoder self-attention": KindMaps(torch.stack([lay.self_weights.cpu() for lay in dec]),
                                           allowed_keys(tgt_len, tgt_len, causal=True)),
        "cross-attention": KindMaps(torch.stack([lay.cross_weights.cpu() for lay in dec]),
                                    allowed_keys(tgt_len, src_len)),
    }


# ----------------------------------------------------------------------------- where a head looks

def _check_allowed(allowed: object, who: str) -> torch.Tensor:
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or allowed.dim() != 3:
        raise ValueError(f"{who} expects allowed to be a boolean tensor (B, T, S), got "
                         f"{_validate.describe(allowed)}")
    return allowed


def offset_targets(allowed: torch.Tensor, offset: int) -> torch.Tensor:
    """The key at ``offset`` from each query (-1: the previous token, 0: itself, 1: the next), where allowed.

    Shapes: allowed (B, T, S) -> (B, T, S), at most one True per row.
    """
    _check_allowed(allowed, "offset_targets")
    if not _validate.is_int(offset):
        raise ValueError(f"offset_targets expects an int offset, got {offset!r}")
    T, S = allowed.shape[1:]
    t, s = torch.arange(T)[:, None], torch.arange(S)[None, :]  # (T, 1), (1, S)
    return allowed & (s == t + offset)  # (B, T, S)


def first_key_targets(allowed: torch.Tensor) -> torch.Tensor:
    """The first key (the decoder's <bos>), where allowed. Shapes: (B, T, S) -> (B, T, S)."""
    _check_allowed(allowed, "first_key_targets")
    return allowed & (torch.arange(allowed.shape[2]) == 0)


def alignment_targets(pairs: Sequence[Pair], T: int, S: int) -> torch.Tensor:
    """The English word each Korean token translates (``alignment.translation_alignment``).

    Row t of sentence b is the decoder step that writes target token t; particles, which
    translate no word, and ``<eos>`` have no target. Shapes: -> (B, T, S).
    """
    if len(pairs) == 0:
        raise ValueError("alignment_targets expects at least one pair, got none")
    targets = torch.zeros(len(pairs), T, S, dtype=torch.bool)
    for b, (src, tgt) in enumerate(pairs):
        if len(tgt) > T or len(src) > S:
            raise ValueError(f"alignment_targets expects T >= {len(tgt)} and S >= {len(src)} for pair "
                             f"{b}, got T={T}, S={S}")
        for t, word in enumerate(translation_alignment(src)):
            if word.source is not None:
                targets[b, t, word.source] = True
    return targets  # (B, T, S)


def counted_rows(allowed: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The rows a score counts: a target exists and the query has a choice (two or more keys).

    Shapes: allowed (B, T, S), targets (B, T, S) -> (B, T).
    """
    return targets.any(-1) & (allowed.sum(-1) > 1)


def argmax_share(weights: torch.Tensor, allowed: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per head, the share of counted rows whose largest weight is on a target key.

    Shapes: weights (..., B, H, T, S), allowed and targets (B, T, S) -> (..., H).
    """
    _check_weights(weights, allowed, "argmax_share")
    if targets.shape != allowed.shape or targets.dtype != torch.bool:
        raise ValueError(f"argmax_share expects boolean targets of the shape of allowed "
                         f"{tuple(allowed.shape)}, got {_validate.describe(targets)}")
    rows = counted_rows(allowed, targets)[:, None]  # (B, 1, T)
    pick = weights.masked_fill(~allowed[:, None], -1.0).argmax(-1)  # (..., B, H, T)
    hit = targets[:, None].expand(*weights.shape).gather(-1, pick[..., None])[..., 0]  # (..., B, H, T)
    return (hit & rows).sum((-3, -1)) / rows.sum().clamp_min(1)  # (..., H)


def chance_share(allowed: torch.Tensor, targets: torch.Tensor) -> float:
    """The share ``argmax_share`` expects of a head that picks one allowed key at random."""
    rows = counted_rows(_check_allowed(allowed, "chance_share"), targets)  # (B, T)
    per_row = (targets & allowed).sum(-1) / allowed.sum(-1).clamp_min(1)  # (B, T)
    return float(per_row[rows].mean()) if rows.any() else math.nan


def mean_entropy(weights: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per head, the mean entropy (nats) of the rows whose query has two or more keys.

    Shapes: weights (..., B, H, T, S), allowed (B, T, S) -> (..., H).
    """
    _check_weights(weights, allowed, "mean_entropy")
    rows = (allowed.sum(-1) > 1)[:, None]  # (B, 1, T)
    entropy = attention_entropy(weights * allowed[:, None])  # (..., B, H, T)
    return (entropy * rows).sum((-3, -1)) / rows.sum().clamp_min(1)  # (..., H)


def uniform_entropy(allowed: torch.Tensor) -> float:
    """The mean entropy of a head that spreads its weight evenly: log(number of keys), in nats."""
    keys = _check_allowed(allowed, "uniform_entropy").sum(-1)  # (B, T)
    return float(keys[keys > 1].float().log().mean()) if (keys > 1).any() else math.nan


def _check_weights(weights: object, allowed: torch.Tensor, who: str) -> None:
    _check_allowed(allowed, who)
    _validate.tensor(weights, "weights", who, min_dims=4, layout="(..., B, H, T, S)")
    B, T, S = allowed.shape
    if weights.shape[-4] != B or tuple(weights.shape[-2:]) != (T, S):
        raise ValueError(f"{who} expects weights (..., B, H, T, S) = (..., {B}, H, {T}, {S}) to match "
                         f"allowed (B, T, S), got {tuple(weights.shape)}")


# ----------------------------------------------------------------------------- all heads, scored

# statistic -> (kind, the keys that count as a hit); an int is an offset from the query. The
# decoder's query t reads token t (<bos>, then the words written so far): "itself" is the token it
# has just read, the word written one step before; "previous token" is the one read before that.
STATISTICS: dict[str, tuple[str, int | str]] = {
    "cross: aligned word": ("cross-attention", "aligned"),
    "decoder: previous token": ("decoder self-attention", -1),
    "decoder: itself": ("decoder self-attention", 0),
    "decoder: <bos>": ("decoder self-attention", "first"),
    "encoder: previous word": ("encoder self-attention", -1),
    "encoder: itself": ("encoder self-attention", 0),
    "encoder: next word": ("encoder self-attention", 1),
}


class HeadStats(NamedTuple):
    """Every head's scores: each statistic's (L, H) shares and its chance level; entropies by kind."""

    shares: dict[str, torch.Tensor]    # statistic -> (L, H) share of rows with the argmax on target
    chance: dict[str, float]           # statistic -> the share of a head that looks at random
    entropy: dict[str, torch.Tensor]   # kind -> (L, H) mean entropy in nats
    uniform: dict[str, float]          # kind -> the mean entropy of a uniform head


def head_statistics(model: Transformer, pairs: Sequence[Pair], src_vocab: Vocab,
                    tgt_vocab: Vocab) -> HeadStats:
    """Score every head of ``model`` on ``pairs``: ``STATISTICS`` and the entropy of each kind."""
    maps = attention_maps(model, pairs, src_vocab, tgt_vocab)
    shares, chance = {}, {}
    for name, (kind, target) in STATISTICS.items():
        weights, allowed = maps[kind]
        if target == "aligned":
            targets = alignment_targets(pairs, *allowed.shape[1:]) & allowed
        elif target == "first":
            targets = first_key_targets(allowed)
        else:
            targets = offset_targets(allowed, target)
        shares[name], chance[name] = argmax_share(weights, allowed, targets), chance_share(allowed, targets)
    entropy = {kind: mean_entropy(m.weights, m.allowed) for kind, m in maps.items()}
    uniform = {kind: uniform_entropy(m.allowed) for kind, m in maps.items()}
    return HeadStats(shares, chance, entropy, uniform)


def best_head(scores: torch.Tensor) -> tuple[int, int, float]:
    """The layer and head (counted from 1) with the highest score, and the score. (L, H) -> ..."""
    _validate.tensor(scores, "scores", "best_head", dims=2, layout="(L, H)")
    i = int(scores.argmax())
    layer, head = divmod(i, scores.shape[1])
    return layer + 1, head + 1, float(scores.flatten()[i])


def strongest_roles(stats: HeadStats, kind: str) -> list[list[str]]:
    """Per layer and head, the statistic of ``kind`` that is furthest above its chance level."""
    _validate.one_of(kind, KINDS, "kind", "strongest_roles")
    names = [name for name, (k, _) in STATISTICS.items() if k == kind]
    excess = torch.stack([stats.shares[name] - stats.chance[name] for name in names])  # (N, L, H)
    return [[names[i] for i in row] for row in excess.argmax(0).tolist()]


def role_share(stats: HeadStats, name: str) -> float:
    """The share of the heads of one kind whose strongest role (``strongest_roles``) is ``name``."""
    _validate.one_of(name, tuple(STATISTICS), "name", "role_share")
    roles = [r for row in strongest_roles(stats, STATISTICS[name][0]) for r in row]
    return roles.count(name) / len(roles)


def entropy_ratio(stats: HeadStats, kind: str) -> torch.Tensor:
    """Each head's mean entropy as a fraction of a uniform head's: 1 is uniform, 0 one-hot. -> (L, H)."""
    _validate.one_of(kind, tuple(stats.entropy), "kind", "entropy_ratio")
    return stats.entropy[kind] / stats.uniform[kind]


def summary(trained: HeadStats, init: HeadStats) -> dict[str, float]:
    """The numbers notebooks 04 and 05 assert, from the scores of a trained and an untrained model.

    The best head is the trained model's best cross-attention head on the aligned word; its
    values at initialisation are the same layer's and head's.
    """
    aligned = "cross: aligned word"
    layer, head, best = best_head(trained.shares[aligned])
    at = (layer - 1, head - 1)
    cross_t, cross_i = entropy_ratio(trained, "cross-attention"), entropy_ratio(init, "cross-attention")

    def mean_ratio(stats: HeadStats) -> float:
        return float(torch.cat([entropy_ratio(stats, kind).flatten() for kind in KINDS]).mean())

    return {
        "best layer": layer, "best head": head,
        "best head aligned, trained": best,
        "best head aligned, init": float(init.shares[aligned][at]),
        "best head entropy ratio, trained": float(cross_t[at]),
        "best head entropy ratio, init": float(cross_i[at]),
        "best head aligned, any init head": float(init.shares[aligned].max()),
        "aligned chance": trained.chance[aligned],
        "last layer weakest aligned": float(trained.shares[aligned][-1].min()),
        "first layer strongest aligned": float(trained.shares[aligned][0].max()),
        "encoder heads on itself": role_share(trained, "encoder: itself"),
        "decoder heads on itself": role_share(trained, "decoder: itself"),
        "mean entropy ratio, trained": mean_ratio(trained),
        "mean entropy ratio, init": mean_ratio(init),
    }


def head_table(trained: HeadStats, init: HeadStats, kind: str) -> str:
    """A text table of one kind: each head's shares and entropy / uniform, trained | at initialisation."""
    _validate.one_of(kind, KINDS, "kind", "head_table")
    names = [name for name, (k, _) in STATISTICS.items() if k == kind]
    columns = [name.split(": ")[1] for name in names] + ["entropy / uniform"]
    tables = [[*(s.shares[name] for name in names), entropy_ratio(s, kind)] for s in (trained, init)]
    width = max(17, *(len(c) + 2 for c in columns))
    lines = [f"{kind}: trained | at initialisation",
             f"{'':10s}" + "".join(f"{c:>{width}s}" for c in columns),
             f"{'chance':10s}" + "".join(f"{trained.chance[n]:>{width}.2f}" for n in names)
             + f"{1.0:>{width}.2f}"]
    L, H = tables[0][0].shape
    for layer in range(L):
        for head in range(H):
            cells = [f"{a[layer, head]:.2f} | {b[layer, head]:.2f}" for a, b in zip(*tables, strict=True)]
            lines.append(f"L{layer + 1} H{head + 1}    " + "".join(f"{c:>{width}s}" for c in cells))
    return "\n".join(lines)


def example_pair(pairs: Sequence[Pair], min_words: int = 8, max_words: int = 11) -> Pair:
    """A sentence to draw: the first with a relative clause ("who": the order flips most) and
    ``min_words`` to ``max_words`` English words; else the first of that length; else the first."""
    if len(pairs) == 0:
        raise ValueError("example_pair expects at least one pair, got none")
    fits = [p for p in pairs if min_words <= len(p[0]) <= max_words]
    return next((p for p in fits if "who" in p[0]), fits[0] if fits else pairs[0])


# ----------------------------------------------------------------------------- figures

@torch.no_grad()
def sentence_maps(model: Transformer, pair: Pair, src_vocab: Vocab,
                  tgt_vocab: Vocab) -> dict[str, AttentionMaps]:
    """One sentence's three kinds of attention under teacher forcing, labelled as the explorer does.

    The decoder's rows are labelled by the word each step writes (``<eos>`` last), its keys
    by the words it has read (``<bos>`` first), whatever the model would have written itself:
    a trained and an untrained model read the same tokens. Shapes: each map (H, T, S) per layer.
    """
    src, tgt = pair
    maps = attention_maps(model, [pair], src_vocab, tgt_vocab)
    written, read = [*tgt, "<eos>"], ["<bos>", *tgt]
    labels = {"encoder self-attention": (src, src), "decoder self-attention": (written, read),
              "cross-attention": (written, src)}
    return {kind: AttentionMaps(list(q), list(k), list(maps[kind].weights[:, 0]))
            for kind, (q, k) in labels.items()}


_AXES = {"encoder self-attention": ("query (English)", "key (English)"),
         "decoder self-attention": ("the step that writes (Korean)", "key: a token read (Korean)"),
         "cross-attention": ("the step that writes (Korean)", "key (English)")}


def head_pair_figure(trained: dict[str, AttentionMaps], init: dict[str, AttentionMaps], kind: str,
                     layer: int, head: int, figsize: tuple[float, float] = (11, 4.6)) -> Figure:
    """One head on one sentence (``sentence_maps``), trained (left) and at initialisation (right).

    ``layer`` and ``head`` count from 1. Cross-attention marks the English word each Korean
    token translates with a red box. Both maps share one colour scale, from 0 to 1.
    """
    _validate.one_of(kind, KINDS, "kind", "head_pair_figure")
    t, i = trained[kind], init[kind]
    layer = _validate.int_in(layer, "layer (counted from 1)", "head_pair_figure", 1, len(t.layers) + 1)
    head = _validate.int_in(head, "head (counted from 1)", "head_pair_figure", 1, t.layers[0].shape[0] + 1)
    if (t.queries, t.keys) != (i.queries, i.keys):
        raise ValueError("head_pair_figure expects the trained and the initial maps of the same sentence")
    english, korean_tokens = trained["cross-attention"].keys, trained["cross-attention"].queries[:-1]
    gold = None
    if kind == "cross-attention":
        gold = [w.source for w in translation_alignment(english)] + [None]  # <eos> translates nothing
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, maps, name in ((axes[0], t, "trained"), (axes[1], i, "at initialisation")):
        image = plot_alignment(ax, maps.layers[layer - 1][head - 1], maps.keys, maps.queries, gold,
                               title=f"{name}: layer {layer}, head {head}")
        ax.set(xlabel=_AXES[kind][1], ylabel=_AXES[kind][0] if ax is axes[0] else "")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(f"{kind}: {' '.join(english)} -> {korean.join(korean_tokens)}", fontsize=10,
                 fontfamily=use_hangul_font())
    return fig


def head_bars_figure(trained: HeadStats, init: HeadStats, names: Sequence[str] | None = None,
                     figsize: tuple[float, float] | None = None) -> Figure:
    """One panel per statistic: every head's share, trained beside initialisation, and chance.

    ``names`` are keys of ``STATISTICS`` (default all); the last panel is each head's entropy
    as a fraction of a uniform head's, by kind.
    """
    names = list(STATISTICS) if names is None else list(names)
    for name in names:
        _validate.one_of(name, tuple(STATISTICS), "each name", "head_bars_figure")
    kinds = list(trained.entropy)
    L, H = trained.entropy[kinds[0]].shape
    panels = len(names) + 1
    cols = min(panels, 4)
    fig = Figure(figsize=figsize or (3.6 * cols, 2.9 * -(-panels // cols)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-panels // cols), cols, squeeze=False)).ravel()
    x = np.arange(L * H)
    for ax, name in zip(axes, names, strict=False):
        ax.bar(x - 0.2, trained.shares[name].flatten().numpy(), 0.4, color="C0", label="trained")
        ax.bar(x + 0.2, init.shares[name].flatten().numpy(), 0.4, color="0.65", label="initialisation")
        ax.axhline(trained.chance[name], color="C3", ls="--", lw=1, label="chance")
        ax.set(title=name, ylim=(0, 1.05), ylabel="share of queries")
        ax.set_xticks(x, [f"L{l + 1}H{h + 1}" for l in range(L) for h in range(H)], rotation=90, fontsize=7)
    ax = axes[len(names)]
    k = np.arange(len(kinds))
    for shift, stats, colour, label in ((-0.15, trained, "C0", "trained"),
                                        (0.15, init, "0.65", "initialisation")):
        ratios = torch.stack([entropy_ratio(stats, kind).flatten() for kind in kinds])  # (K, L * H)
        ax.scatter(np.repeat(k, L * H) + shift, ratios.flatten().numpy(), color=colour, s=14, label=label)
    ax.axhline(1.0, color="C3", ls="--", lw=1, label="uniform")
    ax.set_xticks(k, [kind.replace(" self-attention", "\nself-attention") for kind in kinds], fontsize=8)
    ax.set(title="entropy per head / uniform", ylim=(0, 1.1))
    for extra in axes[panels:]:
        extra.axis("off")
    axes[0].legend(fontsize=7, loc="upper right")
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("every head (L layer, H head): trained, and the same head at initialisation", fontsize=11)
    return fig
