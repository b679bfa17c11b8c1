"""Decoding: turn a model's next-token logits into output sequences.

Any model with the step interface can be decoded::

    state = model.start(src, src_lengths)          # encode once
    logits, state = model.step(tokens, state)      # tokens (B,) -> logits (B, V)

Greedy decoding lives here; beam search (notebook 08) goes beside it with the same
interface.

Shapes: B batch, S source length, L decoded length (<= max_len), V vocabulary, K beam width.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn

from . import _validate
from .data import BOS, EOS, PAD

__all__ = ["greedy_decode", "beam_search", "reorder_state", "BeamResult"]


def _check_decode_args(model: nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int,
                       who: str) -> None:
    """A model with the step interface, source ids (B, S), their lengths (B,) and a positive max_len."""
    missing = [name for name in ("start", "step") if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(f"{who} expects a model with start(src, src_lengths) and step(tokens, state), "
                        f"got a {type(model).__name__}, which has no {' or '.join(missing)}")
    _validate.token_ids(src, "src", who, "(B, S)")
    if not isinstance(src_lengths, torch.Tensor) or src_lengths.shape != src.shape[:1]:
        raise ValueError(f"{who} expects src_lengths of shape (B,) = ({src.shape[0]},), got "
                         f"{_validate.describe(src_lengths)}")
    _validate.positive_int(max_len, "max_len", who)


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int,
                  return_weights: bool = False):
    """Decode by taking the most likely token at each step, until every row has emitted <eos>.

    The output starts at the first predicted token (no <bos>), keeps each row's <eos>, and is
    <pad> after it. It stops after ``max_len`` tokens or when every row is finished, so L <=
    max_len. With ``return_weights`` it also returns the attention weights of each step,
    ``(B, L, S)`` (None for a model without attention).

    Shapes: src (B, S), src_lengths (B,) -> ids (B, L).
    """
    _check_decode_args(model, src, src_lengths, max_len, "greedy_decode")
    state = model.start(src, src_lengths)
    tokens = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)  # (B,)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)  # (B,)
    out, weights = [], []
    for _ in range(max_len):
        logits, state = model.step(tokens, state)  # (B, V)
        tokens = logits.argmax(-1).masked_fill(finished, PAD)  # (B,) pad once a row is done
        out.append(tokens)
        weights.append(getattr(state, "weights", None))
        finished |= tokens == EOS
        if finished.all():
            break
    ids = torch.stack(out, 1)  # (B, L)
    if not return_weights:
        return ids
    has_weights = all(w is not None for w in weights)
    return ids, (torch.stack(weights, 1) if has_weights else None)  # (B, L, S)


# --- Beam search (notebook 08) ---------------------------------------------------------------
#
# K beam width, N = B * K rows decoded side by side (row b * K + k is beam k of source b).
#
# The protocol: a decoding state is whatever ``model.start`` returns, made of tensors whose
# first axis is the batch (``(N, ...)``), or, like ``nn.GRU``'s hidden state, ``(layers, N, H)``
# with the batch second; tensors may sit inside tuples, NamedTuples, lists, dicts and
# dataclasses. ``reorder_state`` picks rows of all of them at once. A model whose state does not
# fit can define its own ``model.reorder_state(state, index)``; beam search prefers it.


def reorder_state(state, index: torch.Tensor):
    """Pick rows ``index`` of every tensor in a decoding state: ``state[index]`` along the batch.

    The batch axis of a tensor is its first if that has the batch size N (= ``len(index)``),
    else its second (``nn.GRU``'s ``(layers, N, H)``); a tensor with neither is shared and kept.
    Works through None, tuples, NamedTuples, lists, dicts and dataclasses. Shapes: index (N,).
    """
    if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.is_floating_point():
        raise ValueError(f"reorder_state expects index to be a 1-D integer tensor, got "
                         f"{_validate.describe(index)}")
    n = index.shape[0]

    def pick(x):
        if isinstance(x, torch.Tensor):
            if x.dim() >= 1 and x.shape[0] == n:
                return x.index_select(0, index.to(x.device))
            if x.dim() >= 2 and x.shape[1] == n:
                return x.index_select(1, index.to(x.device))
            return x
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return dataclasses.replace(x, **{f.name: pick(getattr(x, f.name))
                                             for f in dataclasses.fields(x) if f.init})
        if isinstance(x, tuple) and hasattr(x, "_fields"):  # a NamedTuple
            return type(x)(*(pick(v) for v in x))
        if isinstance(x, (tuple, list)):
            return type(x)(pick(v) for v in x)
        if isinstance(x, dict):
            return {k: pick(v) for k, v in x.items()}
        return x

    return pick(state)


class BeamResult(NamedTuple):
    """The K best hypotheses of each source, best first."""

    tokens: torch.Tensor     # (B, K, L) ids, each ending with <eos> (unless cut at max_len), then <pad>
    scores: torch.Tensor     # (B, K) log-probability / length ** length_penalty, sorted descending
    log_probs: torch.Tensor  # (B, K) the plain sum of the tokens' log-probabilities
    lengths: torch.Tensor    # (B, K) tokens in each hypothesis, <eos> included


def _check_length_penalty(length_penalty: object) -> None:
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise ValueError(f"beam_search expects length_penalty to be a number >= 0, got {length_penalty!r}")


def _normalise(log_probs: torch.Tensor, lengths: torch.Tensor, length_penalty: float) -> torch.Tensor:
    """Length normalisation: log-probability / length ** alpha (alpha 0: none, 1: per token)."""
    return log_probs / lengths.clamp_min(1).to(log_probs.dtype) ** length_penalty


@torch.no_grad()
def beam_search(model: nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int,
                beam_size: int, length_penalty: float = 1.0) -> BeamResult:
    """Keep the ``beam_size`` best partial translations at every step, not only the best one.

    At each step every beam is extended by every token, and the ``beam_size`` best of the
    K x V candidates survive, ranked by their length-normalised score ``sum of log-probs /
    length ** length_penalty``. A finished beam (it emitted <eos>) stays in the running with its
    score frozen. With ``beam_size=1`` this is exactly ``greedy_decode``. Use
    ``result.tokens[:, 0]`` for the best hypotheses, shaped like greedy's output.

    Beam search is a heuristic: a wider beam usually finds a higher score than greedy, but it
    can lose the greedy path on the way, so "never worse" is measured (notebook 08), not promised.

    Shapes: src (B, S), src_lengths (B,) -> BeamResult with tokens (B, K, L), L <= max_len.
    """
    _check_decode_args(model, src, src_lengths, max_len, "beam_search")
    K = _validate.positive_int(beam_size, "beam_size", "beam_search")
    _check_length_penalty(length_penalty)
    B, dev = src.shape[0], src.device
    reorder = getattr(model, "reorder_state", None) or reorder_state
    # K copies of each source: the state has N = B * K rows from the start
    state = model.start(src.repeat_interleave(K, 0), src_lengths.repeat_interleave(K, 0))
    log_probs = torch.full((B, K), float("-inf"), device=dev)  # (B, K)
    log_probs[:, 0] = 0.0  # all beams start equal: expand only the first at step one
    lengths = torch.zeros(B, K, dtype=torch.long, device=dev)  # (B, K)
    finished = torch.zeros(B, K, dtype=torch.bool, device=dev)  # (B, K)
    history = torch.zeros(B, K, 0, dtype=torch.long, device=dev)  # (B, K, t)
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=dev)  # (N,)
    for _ in range(max_len):
        logits, state = model.step(tokens, state)  # (N, V)
        V = logits.shape[-1]
        step_lp = torch.log_softmax(logits.float(), -1).view(B, K, V)  # (B, K, V)
        # a finished beam can only be continued by <pad>, at no cost
        done_row = torch.full((V,), float("-inf"), device=dev)
        done_row[PAD] = 0.0
        step_lp = torch.where(finished[..., None], done_row, step_lp)  # (B, K, V)
        cand_lp = log_probs[..., None] + step_lp  # (B, K, V)
        cand_len = (lengths + (~finished).long())[..., None].expand(B, K, V)  # (B, K, V)
        cand_score = _normalise(cand_lp, cand_len, length_penalty)  # (B, K, V)
        _, best = cand_score.view(B, K * V).topk(min(K, K * V), dim=-1)  # (B, K) over beams x tokens
        beam, token = best // V, best % V  # (B, K), (B, K)
        log_probs = cand_lp.view(B, -1).gather(1, best)  # (B, K)
        lengths = cand_len.reshape(B, -1).gather(1, best)  # (B, K)
        was_done = finished.gather(1, beam)  # (B, K)
        finished = was_done | (token == EOS)
        history = torch.cat([history.gather(1, beam[..., None].expand_as(history)), token[..., None]], 2)
        rows = (beam + torch.arange(B, device=dev)[:, None] * K).view(-1)  # (N,) rows to keep
        state = reorder(state, rows)
        tokens = token.view(-1)  # (N,)
        if finished[log_probs > float("-inf")].all():
            break
    scores = _normalise(log_probs, lengths, length_penalty)  # (B, K)
    order = scores.argsort(dim=1, descending=True, stable=True)  # (B, K)
    history = history.gather(1, order[..., None].expand_as(history))  # (B, K, L)
    return BeamResult(history, scores.gather(1, order), log_probs.gather(1, order), lengths.gather(1, order))

