"""Checks for solutions/08_full_transformer: the decoder's mask and beam search.

Shapes: B batch, T target length, K beams, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import make_causal_mask, make_padding_mask
from ._core import CheckFailed, CheckResult, call, compare, fmt_shape, run_check

__all__ = ["check_decoder_mask", "check_beam_step", "check_length_normalise"]


def _tokens(g: torch.Generator, B: int, T: int, pad_id: int) -> torch.Tensor:
    """Random target prefixes (B, T) with <bos>-like first tokens and right padding."""
    tokens = torch.randint(4, 20, (B, T), generator=g)
    tokens[:, 0] = 1
    for b in range(1, B):  # row 0 stays unpadded
        n = int(torch.randint(1, T + 1, (1,), generator=g))
        tokens[b, n:] = pad_id
    return tokens


def _mask_mistakes(tokens: torch.Tensor, pad_id: int) -> list[tuple[torch.Tensor, str]]:
    T = tokens.shape[1]
    causal, real = make_causal_mask(T), make_padding_mask(tokens, pad_id)  # (T, T), (B, 1, 1, T)
    full = causal & real
    hardcoded = [] if pad_id == 0 else [
        (causal & make_padding_mask(tokens, 0), f"you treated id 0 as padding; use the pad_id argument "
                                                f"(here {pad_id})")]
    return hardcoded + [
        (~full, "it is the opposite of the course's convention (True where attention is *allowed*): "
                "did you mark the blocked positions instead?"),
        (causal.expand_as(full), "padding is not masked: a query may still look at <pad> keys "
                                 "(combine the causal mask with the padding mask using &)"),
        (real.expand_as(full), "the future is not masked: position t may look at positions after t "
                               "(combine with the causal mask, lower triangle)"),
        (causal.T & real, "it allows the future and blocks the past: the triangle is upside down "
                          "(row t should allow columns 0..t, the lower triangle)"),
        (causal & real.transpose(-1, -2), "padding is masked on the queries (rows) instead of on the "
                                          "keys (columns)"),
        (torch.tril(torch.ones(T, T, dtype=torch.bool), -1) & real,
         "the diagonal is blocked: position t must be allowed to look at itself"),
        (causal | ~real, "padding is combined with | instead of &: a position is allowed only if it "
                         "is in the past AND is a real token"),
    ]


# Its type and dtype checks mirror check_causal_mask's (checks/attention.py); the masks and the
# hints differ (padding as well as causality), so each check keeps its own.
def check_decoder_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """Check ``fn(tgt, pad_id) -> (B, 1, T, T)`` bool: causal AND the key is not padding."""
    task = "decoder_mask"

    def body() -> str:
        g = torch.Generator().manual_seed(808)
        cases = [(3, 5, 0), (4, 7, 0), (2, 1, 0), (3, 6, 9)]  # (B, T, pad_id)
        for B, T, pad_id in cases:
            tokens = _tokens(g, B, T, pad_id)
            expected = make_causal_mask(T) & make_padding_mask(tokens, pad_id)  # (B, 1, T, T)
            got = call(task, fn, tokens.clone(), pad_id)
            if not isinstance(got, torch.Tensor):
                raise CheckFailed(f"{task}: return a torch.Tensor, got {type(got).__name__}")
            if got.dtype != torch.bool:
                raise CheckFailed(f"{task}: the mask should be boolean (True = allowed), got dtype "
                                  f"{got.dtype}")
            if got.shape != expected.shape:
                raise CheckFailed(f"{task}: for tgt {fmt_shape(tokens.shape)} the mask should have shape "
                                  f"(B, 1, T, T) = {fmt_shape(expected.shape)} (1 broadcasts over the "
                                  f"heads), got {fmt_shape(got.shape)}")
            if torch.equal(got, expected):
                continue
            for wrong, why in _mask_mistakes(tokens, pad_id):
                if torch.equal(got, wrong):
                    raise CheckFailed(f"{task}: {why}.")
            bad = (got != expected).nonzero()[0].tolist()
            raise CheckFailed(f"{task}: wrong at [batch {bad[0]}, query {bad[2]}, key {bad[3]}]: got "
                              f"{bool(got[tuple(bad)])}, expected {bool(expected[tuple(bad)])} (tokens "
                              f"of that row: {tokens[bad[0]].tolist()}, pad_id {pad_id}).")
        return f"{len(cases)} padded batches, pad_id 0 and 9, T = 1 to 7"

    return run_check(task, body)


def _beam_reference(scores: torch.Tensor, log_probs: torch.Tensor, k: int):
    B, K, V = log_probs.shape
    best, idx = (scores[..., None] + log_probs).view(B, K * V).topk(k, dim=-1)  # (B, k)
    return best, idx // V, idx % V


def _beam_cases(g: torch.Generator):
    cases = []
    for B, K, V, k in [(2, 3, 5, 3), (3, 2, 7, 4), (1, 4, 6, 2), (2, 1, 9, 3)]:
        log_probs = torch.log_softmax(torch.randn(B, K, V, generator=g) * 2, -1)
        scores = -torch.rand(B, K, generator=g) * 6  # running sums differ a lot between beams
        cases.append((scores, log_probs, k))
    return cases


def _diagnose_beam(task: str, got: tuple, scores: torch.Tensor, log_probs: torch.Tensor, k: int) -> None:
    B, K, V = log_probs.shape
    new, beam, token = got
    ref_new, ref_beam, ref_token = _beam_reference(scores, log_probs, k)
    no_running, _, _ = _beam_reference(torch.zeros_like(scores), log_probs, k)
    ignored = new.shape == no_running.shape and torch.allclose(new, no_running, atol=1e-5)
    if ignored and not torch.allclose(no_running, ref_new, atol=1e-5):
        raise CheckFailed(f"{task}: the new scores ignore the beams' running scores: a candidate's score "
                          "is its beam's score so far PLUS the token's log-probability.")
    per_beam = (scores[..., None] + log_probs).topk(min(k, V), dim=-1).values  # (B, K, k')
    flat_per_beam = per_beam.view(B, -1).sort(-1).values  # (B, K * k')
    if new.shape == flat_per_beam.shape and torch.allclose(new.sort(-1).values, flat_per_beam):
        raise CheckFailed(f"{task}: you took the top k of each beam (giving K x k candidates); take the "
                          "top k over ALL beams x tokens at once (flatten to (B, K * V) first).")
    if new.shape == ref_new.shape and torch.allclose(new, ref_new, atol=1e-5):
        if torch.equal(beam, ref_token) and torch.equal(token, ref_beam):
            raise CheckFailed(f"{task}: beam and token are swapped: in the flattened (K * V) index, "
                              "the beam is index // V and the token index % V.")
        if torch.equal(beam, ref_beam) or torch.equal(token, ref_token):
            which = "token" if torch.equal(beam, ref_beam) else "beam"
            raise CheckFailed(f"{task}: the scores are right but the {which} ids are not: from the "
                              "flattened index i, beam = i // V and token = i % V.")
    if new.shape == ref_new.shape and torch.allclose(new.sort(-1, descending=True).values, ref_new,
                                                     atol=1e-5):
        raise CheckFailed(f"{task}: the right candidates, but not sorted best first.")
    if new.shape != ref_new.shape:
        raise CheckFailed(f"{task}: the new scores should have shape (B, k) = {fmt_shape(ref_new.shape)}, "
                          f"got {fmt_shape(new.shape)}.")
    compare(task, new, ref_new, what="the new scores")


def check_beam_step(fn: Callable[[torch.Tensor, torch.Tensor, int], tuple]) -> CheckResult:
    """Check ``fn(scores (B, K), log_probs (B, K, V), k) -> (new_scores, beam, token)``, each (B, k)."""
    task = "beam_step"

    def body() -> str:
        g = torch.Generator().manual_seed(88)
        cases = _beam_cases(g)
        for scores, log_probs, k in cases:
            got = call(task, fn, scores.clone(), log_probs.clone(), k)
            if not (isinstance(got, tuple) and len(got) == 3
                    and all(isinstance(x, torch.Tensor) for x in got)):
                raise CheckFailed(f"{task}: return three tensors (new_scores, beam, token), got "
                                  f"{type(got).__name__}")
            if got[1].is_floating_point() or got[2].is_floating_point():
                raise CheckFailed(f"{task}: beam and token should be integer ids (use // and %), got "
                                  f"{got[1].dtype} and {got[2].dtype}")
            ref = _beam_reference(scores, log_probs, k)
            if all(x.shape == r.shape for x, r in zip(got, ref, strict=True)) and (
                    torch.allclose(got[0], ref[0], atol=1e-5) and torch.equal(got[1], ref[1])
                    and torch.equal(got[2], ref[2])):
                continue
            _diagnose_beam(task, got, scores, log_probs, k)
            raise CheckFailed(f"{task}: the result differs from the reference for scores "
                              f"{fmt_shape(scores.shape)}, log_probs {fmt_shape(log_probs.shape)}, k={k}.")
        return f"{len(cases)} random beams (K = 1 to 4, V = 5 to 9, k = 2 to 4)"

    return run_check(task, body)


def check_length_normalise(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Check ``fn(log_probs (B, K), lengths (B, K), alpha) -> log_probs / lengths ** alpha``."""
    task = "length_normalise"

    def body() -> str:
        g = torch.Generator().manual_seed(8)
        alphas = (0.6, 1.0, 0.0, 2.0)
        for alpha in alphas:
            lengths = torch.randint(1, 12, (3, 4), generator=g)
            log_probs = -torch.rand(3, 4, generator=g) * 10
            expected = log_probs / lengths.float() ** alpha
            got = call(task, fn, log_probs.clone(), lengths.clone(), alpha)
            if isinstance(got, torch.Tensor) and got.shape == expected.shape and alpha not in (0.0, 1.0):
                got_d = got.detach().float()
                for wrong, why in (
                        (log_probs, "these are the plain sums: divide by length ** alpha"),
                        (log_probs / lengths, "you divided by the length, ignoring alpha (length ** alpha)"),
                        (log_probs * lengths.float() ** alpha, "you multiplied by length ** alpha: divide"),
                        (log_probs / (lengths * alpha), "you divided by length * alpha; the penalty is "
                                                        "length ** alpha"),
                        (log_probs.exp() / lengths.float() ** alpha,
                         "you normalised probabilities; normalise the log-probabilities")):
                    if torch.allclose(got_d, wrong.float(), atol=1e-5):
                        raise CheckFailed(f"{task} (alpha={alpha}): {why}.")
            compare(task, got, expected, what=f"the normalised scores (alpha={alpha})")
        return f"random sums and lengths, alpha in {alphas}"

    return run_check(task, body)
