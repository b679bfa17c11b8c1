"""Checks for solutions/08_full_transformer: the decoder's mask and one step of beam search.

The beam step is checked against a reference written here, on hand-placed inputs: finished
beams of several lengths around the K-th best candidate, tied beams, a beam that is sure of
its next token but far behind, more beams than tokens. Any answer that keeps the K best
candidates passes, whichever way it breaks ties; each usual mistake chooses differently on
the first case, which is how the check names it.

Shapes: B batch, T target length, K beams, V vocabulary, t tokens decoded so far, D state width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..attention import make_causal_mask, make_padding_mask
from ..data import EOS, PAD
from ._core import CheckFailed, CheckResult, call, close, compare, fmt_shape, run_check, unpack

__all__ = ["check_decoder_mask", "check_beam_step"]


# ----------------------------------------------------------------------------- task 1: the decoder's mask

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
        (causal & real.transpose(-1, -2), _ON_QUERIES),
        (torch.tril(torch.ones(T, T, dtype=torch.bool), -1) & real,
         "the diagonal is blocked: position t must be allowed to look at itself"),
        (causal | ~real, "padding is combined with | instead of &: a position is allowed only if it "
                         "is in the past AND is a real token"),
    ]


# With right padding, masking the queries (rows) with or without the keys gives the same mask: a
# real query never reaches a <pad> key. _queries_mistake tells the two apart on one more batch.
_ON_QUERIES = "padding is masked on the queries (rows)"


def _queries_mistake(task: str, fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str:
    """Which query mistake, from the learner's mask of a batch with <pad> in the middle (pad_id 0)."""
    tokens = torch.tensor([[1, 5, 0, 6, 0]])  # (1, T)
    causal, real = make_causal_mask(5), make_padding_mask(tokens, 0)  # (T, T), (1, 1, 1, T)
    try:
        got = call(task, fn, tokens.clone(), 0)
    except CheckFailed:
        got = None
    keys_only = "mask the keys (columns) only: a <pad> query may still look at the real tokens before it"
    if close(got, causal & real & real.transpose(-1, -2)):
        return f"padding is masked on the keys (columns), right, but also on the queries (rows): {keys_only}"
    if close(got, causal & real.transpose(-1, -2)):
        return f"{_ON_QUERIES} instead of on the keys (columns): {keys_only}"
    return f"{_ON_QUERIES}, so the row of a <pad> query is all blocked: {keys_only}"


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
                    why = _queries_mistake(task, fn) if why == _ON_QUERIES else why
                    raise CheckFailed(f"{task}: {why}" + ("" if why.endswith("?") else "."))
            bad = (got != expected).nonzero()[0].tolist()
            raise CheckFailed(f"{task}: wrong at [batch {bad[0]}, query {bad[2]}, key {bad[3]}]: got "
                              f"{bool(got[tuple(bad)])}, expected {bool(expected[tuple(bad)])} (tokens "
                              f"of that row: {tokens[bad[0]].tolist()}, pad_id {pad_id}).")
        return f"{len(cases)} padded batches, pad_id 0 and 9, T = 1 to 7"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: one beam step

# A finished hypothesis is carried forward by <pad> (the package's choice); <eos> again is accepted too.
_CARRY_TOKENS = (PAD, EOS)


class _BeamCase(NamedTuple):
    scores: torch.Tensor    # (K,) float32 or float64: each beam's summed log-probability so far
    lengths: torch.Tensor   # (K,) int64: tokens so far, <eos> included
    finished: torch.Tensor  # (K,) bool: the beam ended in <eos>
    log_probs: torch.Tensor  # (K, V) float32 or float64: the next-token log-probabilities (-inf in
                            # finished beams' rows: the task ignores them)
    cache: torch.Tensor     # (K, t, D) float32: each beam's decoder state, one row per beam
    alpha: float


def _candidates(case: _BeamCase, *, running: bool = True, normalise: bool = True, multiply: bool = False,
                longer: int = 1, finished_longer: int = 0, finished: str = "carry",
                finished_normalised: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (beam, token) candidate's sum and ranking score, (K, V) float64; -inf: not a candidate.

    The defaults are the reference; each keyword is one usual mistake: ``running=False`` forgets
    the beam's score, ``normalise=False`` ranks by plain sums, ``multiply=True`` by
    sum * length ** alpha, ``longer=0`` keeps an extended
    candidate's old length, ``finished_longer=1`` lengthens finished beams,
    ``finished_normalised=False`` ranks finished beams by their plain sums, ``finished="expand"``
    extends finished beams like the others, ``"free"`` by every token at no cost, ``"pay"``
    carries them by <pad> at the cost of its log-probability, ``"drop"`` removes them.
    """
    K, V = case.log_probs.shape
    lp, done = case.log_probs.double(), case.finished[:, None]  # (K, V), (K, 1)
    carry = torch.full((V,), -math.inf, dtype=torch.float64)
    carry[PAD] = 0.0  # a finished beam: one candidate, <pad>, at no cost
    paid = torch.where(carry == 0.0, lp, carry)  # (K, V): <pad> at its log-probability
    step = {"carry": torch.where(done, carry, lp), "expand": lp, "free": torch.where(done, 0.0, lp),
            "pay": torch.where(done, paid, lp), "drop": torch.where(done, -math.inf, lp)}[finished]
    sums = (case.scores.double()[:, None] if running else 0.0) + step  # (K, V)
    length = case.lengths.double()[:, None] + torch.where(done, finished_longer, longer)  # (K, 1)
    ranks = (sums * length**case.alpha if multiply else sums / length**case.alpha) if normalise else sums
    if not finished_normalised:
        ranks = torch.where(done, sums, ranks)
    return sums, ranks


def _pair_values(values: torch.Tensor, beam: list[int], token: list[int]) -> torch.Tensor:
    return values[torch.tensor(beam, dtype=torch.long), torch.tensor(token, dtype=torch.long)]


def _is_best(beam: list[int], token: list[int], ranks: torch.Tensor) -> bool:
    """True when the pairs are K distinct candidates whose ranking scores are the K best (ties: any)."""
    K, V = ranks.shape
    pairs = set(zip(beam, token, strict=True))
    if len(pairs) != K or not all(0 <= b < K and 0 <= t < V for b, t in pairs):
        return False
    chosen = _pair_values(ranks, beam, token).sort(descending=True).values
    best = ranks.flatten().topk(K).values
    return bool(torch.isfinite(chosen).all()) and bool(torch.allclose(chosen, best, atol=1e-5, rtol=0))


def _beam_case(g: torch.Generator, K: int, V: int, t: int, alpha: float,
               finished: dict[int, tuple[int, float]], copy: tuple[int, int] | None = None,
               peaked: int | None = None, D: int = 3, dtype: torch.dtype = torch.float32,
               log_probs_dtype: torch.dtype | None = None) -> _BeamCase:
    """Random log-probs and scores, with finished beams placed among the candidates, and tied beams.

    ``finished`` maps a beam to (its length, a ratio): its ranking score is the ratio times the
    K-th best ranking score of the unfinished beams' extensions (all negative), so 0.5 puts it
    among the best, 1.05 just out of the K best, 3 far out (unless a mistake rewards its
    shortness). ``copy = (a, b)``: beam b is a copy of beam a (score, length, log-probs; its own
    state), so their candidates tie. ``peaked``: that beam is sure of its next token but far
    behind the others, so that ranking by the log-probabilities alone picks it. Each finished
    beam's row of log-probabilities holds -inf at its least likely token other than <pad> (a row
    the task ignores; multiplied by 0 it would give NaN). ``dtype`` is the scores' dtype,
    ``log_probs_dtype`` the log-probabilities' (default: the same).
    """
    log_probs = torch.log_softmax(torch.randn(K, V, generator=g) * 2, -1)  # (K, V)
    scores = -(0.6 * t + torch.rand(K, generator=g) * 2)  # (K,): the running sums differ between beams
    lengths = torch.full((K,), t, dtype=torch.long)
    done = torch.zeros(K, dtype=torch.bool)
    if peaked is not None:
        log_probs[peaked] = torch.log_softmax(torch.arange(V) * -2.0 + 6 * (torch.arange(V) == V - 1), -1)
        scores[peaked] -= 2.5
    if copy is not None:
        a, b = copy
        scores[b], log_probs[b] = scores[a], log_probs[a]
    done[list(finished)] = True
    lengths[list(finished)] = torch.tensor([n for n, _ in finished.values()], dtype=torch.long)
    case = _BeamCase(scores, lengths, done, log_probs, torch.randn(K, t, D, generator=g), alpha)
    kth = _candidates(case, finished="drop")[1].flatten().sort(descending=True).values[K - 1]
    for k, (n, ratio) in finished.items():
        scores[k] = float(ratio * kth) * n**alpha
        others = log_probs[k].clone()
        others[list(_CARRY_TOKENS)] = math.inf
        log_probs[k, int(others.argmin())] = -math.inf
    return case._replace(scores=scores.to(dtype), log_probs=log_probs.to(log_probs_dtype or dtype))


def _beam_cases() -> list[_BeamCase]:
    g = torch.Generator().manual_seed(808)
    return [
        # V < K first: answers that mix up beam and token ids still run, and can be diagnosed
        _beam_case(g, K=8, V=5, t=4, alpha=1.0, copy=(0, 3), peaked=2,
                   finished={1: (3, 0.5), 4: (1, 3.0), 5: (2, 1.2), 6: (3, 1.05), 7: (1, 0.6)}),
        _beam_case(g, K=4, V=7, t=5, alpha=0.6, finished={2: (3, 0.97)}, copy=(1, 3)),
        _beam_case(g, K=3, V=9, t=3, alpha=0.0, finished={0: (2, 0.9)}),
        _beam_case(g, K=5, V=6, t=2, alpha=1.0, finished={}),
        _beam_case(g, K=2, V=8, t=6, alpha=0.6, finished={0: (4, 0.9)}),
        # new_scores come back in the dtype of scores, whatever the dtype of log_probs
        _beam_case(g, K=4, V=6, t=3, alpha=0.6, finished={1: (2, 0.8)}, dtype=torch.float64),
        _beam_case(g, K=3, V=7, t=4, alpha=1.0, finished={2: (3, 0.7)}, log_probs_dtype=torch.float64),
    ]


def _where(case: _BeamCase) -> str:
    K, V = case.log_probs.shape
    done = case.finished.nonzero().flatten().tolist()
    dtypes = {str(x.dtype).removeprefix("torch.") for x in (case.scores, case.log_probs)}
    kind = "" if dtypes == {"float32"} else (
        f", scores {str(case.scores.dtype).removeprefix('torch.')} and log_probs "
        f"{str(case.log_probs.dtype).removeprefix('torch.')}")
    return (f"for K={K} beams (finished: {', '.join(map(str, done)) or 'none'}; lengths "
            f"{case.lengths.tolist()}), V={V}, alpha={case.alpha:g}{kind}:")


def _ids(task: str, where: str, got: object, name: str, K: int) -> list[int]:
    """The learner's beam or token ids as a list, if they are a (K,) integer tensor; else CheckFailed."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: {where} {name} should be a tensor of {K} integer ids, got "
                          f"{type(got).__name__}.")
    if got.is_floating_point() or got.dtype == torch.bool:
        dtype = str(got.dtype).removeprefix("torch.")
        raise CheckFailed(f"{task}: {where} {name} should hold integer ids, got {dtype}: split the integer "
                          "index that topk returns with // and % (not /), and keep it an integer.")
    if got.shape != (K,):
        hint = ""
        if got.numel() > K and got.numel() % K == 0:
            hint = (f" That is {got.numel() // K} per beam: you took the best of EACH beam. Take the best "
                    f"{K} of all K x V candidates at once: flatten the (K, V) scores first.")
        raise CheckFailed(f"{task}: {where} {name} should have shape ({K},), one id per kept candidate, "
                          f"got {fmt_shape(got.shape)}.{hint}")
    return [int(i) for i in got.tolist()]


_RANKING_MISTAKES = (
    (dict(normalise=False), "you ranked the candidates by their plain sums: rank them by sum / length ** "
                            "alpha (a finished beam with its own length, an extended one with length + 1), "
                            "or short hypotheses win just for being short."),
    (dict(multiply=True), "you multiplied the sums by length ** alpha: divide, sum / length ** alpha (a "
                          "finished beam with its own length, an extended one with length + 1). Sums are "
                          "negative, so multiplying punishes long hypotheses even more."),
    (dict(longer=0), "you normalised an extended candidate with its beam's old length; it is one token "
                     "longer: rank it by (score + log p) / (length + 1) ** alpha."),
    (dict(finished_longer=1), "you lengthened the finished beams too: a finished hypothesis gets no new "
                              "token (its <pad> does not count), so its length and its score stay."),
    (dict(finished_normalised=False), "you normalised the extended candidates only: rank a finished "
                                      "hypothesis by its sum / length ** alpha too, or it loses to longer "
                                      "ones it beats."),
    (dict(finished="pay"), "you charged a finished beam the log-probability of its <pad>: a finished "
                           "hypothesis is carried forward at no cost, its score unchanged (0 at <pad>, "
                           "not log_probs[k, PAD])."),
    (dict(finished="drop"), "you dropped the finished beams: a finished hypothesis stays in the "
                            "running, carried by <pad> with its score unchanged, until better "
                            "candidates push it out."),
    (dict(running=False), "you ranked the candidates by the token's log-probability alone: a candidate's "
                          "sum is its beam's score so far PLUS the token's log-probability."),
    (dict(running=False, normalise=False), "you ranked the candidates by the token's log-probability "
                                           "alone: a candidate's sum is its beam's score so far PLUS the "
                                           "token's log-probability."),
)


class _Unclear(CheckFailed):
    """A failure whose cause this case cannot pin down: the check first tries its other cases."""


def _carried(case: _BeamCase, beam: list[int], token: list[int]) -> list[int]:
    """The tokens, with a finished beam kept once and carried by <eos> written as <pad>, as the reference."""
    K = len(case.finished)
    return [PAD if 0 <= b < K and case.finished[b] and t in _CARRY_TOKENS and beam.count(b) == 1 else t
            for b, t in zip(beam, token, strict=True)]


def _diagnose_split(task: str, where: str, case: _BeamCase, beam: list[int], token: list[int]) -> None:
    """Name a wrong split of the flat index, if the learner's ids are the K best split that way."""
    K, V = case.log_probs.shape
    ranks = _candidates(case)[1]  # (K, V)

    def best(flat: list[int]) -> bool:
        right_beam = [i // V for i in flat]
        return _is_best(right_beam, _carried(case, right_beam, [i % V for i in flat]), ranks)

    pairs = list(zip(beam, token, strict=True))
    if _is_best(token, _carried(case, token, beam), ranks):
        raise CheckFailed(f"{task}: {where} beam and token are swapped: in the flat index i over the (K, V) "
                          "candidates, the beam is i // V and the token i % V.")
    by_v = (f"flattening (K, V) puts the V = {V} tokens of a beam side by side, so divide the flat index "
            "by V, the vocabulary size: beam = i // V and token = i % V.")
    if all(0 <= t < K for t in token) and best([b * K + t for b, t in pairs]):
        raise CheckFailed(f"{task}: {where} you split the flat index i with K (beam = i // K, "
                          f"token = i % K): {by_v}")
    if all(0 <= b < K for b in beam) and best([t * K + b for b, t in pairs]):
        raise CheckFailed(f"{task}: {where} you split the flat index i with K (beam = i % K, "
                          f"token = i // K): {by_v}")


def _one_per_beam(case: _BeamCase, beam: list[int], token: list[int]) -> bool:
    """True when the pairs are each beam once, with its own best candidate."""
    K = len(beam)
    ranks = _candidates(case)[1]  # (K, V)
    if sorted(beam) != list(range(K)) or not all(0 <= t < ranks.shape[1] for t in token):
        return False
    return all(bool(ranks[b, t] >= ranks[b].max() - 1e-5) for b, t in zip(beam, token, strict=True))


def _diagnose_pairs(task: str, where: str, case: _BeamCase, beam: list[int], token: list[int],
                    raw_token: list[int], new_scores: object = None) -> None:
    """Return when the (beam, token) pairs are the K best candidates; else name the mistake.

    ``token`` holds the learner's tokens with <eos> carries written as <pad>, ``raw_token`` them as
    given; ``new_scores`` the learner's (NaN where a -inf became NaN).
    """
    K, V = case.log_probs.shape
    ranks = _candidates(case)[1]  # (K, V)
    if _is_best(beam, token, ranks):
        return
    _diagnose_split(task, where, case, beam, raw_token)
    free = _is_best(beam, token, _candidates(case, finished="free")[1])  # every token at no cost
    nan = (new_scores.detach().isnan().tolist() if isinstance(new_scores, torch.Tensor)
           and new_scores.shape == (K,) and new_scores.is_floating_point() else [False] * K)
    for k in case.finished.nonzero().flatten().tolist():
        mine = [t for b, t in zip(beam, token, strict=True) if b == k]
        grown = [t for t in mine if t not in _CARRY_TOKENS]
        # a -inf of the ignored row kept: it became NaN (the learner's score says so, or no other
        # reading, such as every token of a finished beam at no cost, fits)
        lost = [t for i, (b, t) in enumerate(zip(beam, token, strict=True))
                if b == k and t in grown and 0 <= t < V and case.log_probs[k, t] == -math.inf
                and (nan[i] or not free)]
        if lost:
            raise CheckFailed(f"{task}: {where} you kept (beam {k}, token {lost[0]}), where beam {k} is "
                              f"finished and log_probs[{k}, {lost[0]}] is -inf: your function turned that "
                              "-inf into NaN (0 * -inf, or -inf - -inf, is NaN), and topk ranks NaN above "
                              "everything. A finished beam's row of log_probs is ignored: replace it with "
                              "torch.where or masked_fill (-inf everywhere, 0 at <pad>) instead of "
                              "multiplying it by 0.")
        if grown and not (free and len(mine) > 1):
            raise CheckFailed(f"{task}: {where} beam {k} is finished (it ended in <eos>), but your function "
                              f"extended it by token {grown[0]}: a finished hypothesis is carried forward "
                              f"once, as it is, by <pad> (id {PAD}) at no cost; give its other tokens -inf.")
        if len(mine) > 1:
            raise CheckFailed(f"{task}: {where} finished beam {k} was kept {len(mine)} times (tokens "
                              f"{mine}): a finished hypothesis is ONE candidate, carried forward by <pad>; "
                              "give its other tokens -inf, not 0.")
    fitting = [(wrong, why) for wrong, why in ((_candidates(case, **mistake)[1], why)
                                               for mistake, why in _RANKING_MISTAKES)
               if _is_best(beam, token, wrong)]  # (the mistake's ranking scores, its message)
    if _one_per_beam(case, beam, token):
        fitting.append((ranks, f"you kept one candidate per beam, its best token: keep the best {K} of all "
                               "the K x V candidates at once (flatten the (K, V) scores, then topk), so that "
                               "a strong beam may be kept several times and a weak one not at all."))
    fits = list(dict.fromkeys(why for _, why in fitting))
    if len(fits) > 1:  # the learner's own order, best first, may tell them apart
        fits = list(dict.fromkeys(why for wrong, why in fitting if _best_first(wrong, beam, token))) or fits
    if len(fits) == 1:
        raise CheckFailed(f"{task}: {where} {fits[0]}")
    if fits:  # the mistakes choose the same candidates here: another case may tell them apart
        raise _Unclear(f"{task}: {where} these are not the {K} best candidates, and here they fit more "
                       "than one mistake: " + " Or: ".join(fits))
    pairs = list(zip(beam, token, strict=True))
    for b, t in pairs:
        if not (0 <= b < K and 0 <= t < V):
            raise CheckFailed(f"{task}: {where} the pair (beam {b}, token {t}) is out of range: beams are "
                              f"0..{K - 1}, tokens 0..{V - 1}.")
        if pairs.count((b, t)) > 1:
            raise CheckFailed(f"{task}: {where} the pair (beam {b}, token {t}) is kept "
                              f"{pairs.count((b, t))} times: each candidate can be kept once.")
    chosen = _pair_values(ranks, beam, token)
    worst = int(chosen.argmin())
    left = ranks.clone()
    left[beam, token] = -math.inf
    missed = int(left.flatten().argmax())
    raise _Unclear(f"{task}: {where} these are not the {K} best candidates: you kept (beam "
                   f"{beam[worst]}, token {token[worst]}) with ranking score {chosen[worst]:.4g}, but (beam "
                   f"{missed // V}, token {missed % V}) ranks higher, {left.flatten()[missed]:.4g}.")


def _diagnose_scores(task: str, where: str, case: _BeamCase, new_scores: object, b: torch.Tensor,
                     t: torch.Tensor) -> None:
    sums, ranks = _candidates(case)
    want = sums[b, t]  # (K,) float64
    wrong = ((ranks[b, t], "you returned the ranking scores (normalised by length); return the plain "
                           "sums of log-probabilities: they add up at the next step, and are normalised "
                           "only to rank."),
             (case.log_probs.double()[b, t], "the new scores are the tokens' log-probabilities alone: add "
                                             "the beam's score so far."),
             (_candidates(case, finished="expand")[0][b, t], "you added a log-probability to a finished "
                                                            "beam's score: a finished hypothesis keeps "
                                                            "its score."))
    for value, why in wrong:
        if close(new_scores, value.float(), atol=1e-5) and not close(value, want, atol=1e-5):
            raise CheckFailed(f"{task}: {where} {why}")
    dtype = case.scores.dtype
    if (isinstance(new_scores, torch.Tensor) and new_scores.is_floating_point()
            and new_scores.dtype != dtype):
        name, got = (str(d).removeprefix("torch.") for d in (dtype, new_scores.dtype))
        why = (f"scores + log_probs is promoted to {got} here, as log_probs is {got}: cast the sums back"
               if new_scores.dtype == case.log_probs.dtype != dtype else
               f"something in your function (a .float(), a table made without dtype=, or a {got} "
               "constant) changed it: make the sums from scores, or cast them back")
        raise CheckFailed(f"{task}: {where} new_scores is {got}, but scores is {name}: return the new scores "
                          f"in the dtype of scores; {why} with .to(scores.dtype).")
    compare(task, new_scores, want.to(dtype), what=f"the new scores {where}")


def _best_first(ranks: torch.Tensor, beam: list[int] | torch.Tensor, token: list[int] | torch.Tensor) -> bool:
    """True when the pairs come sorted by these ranking scores, best first (ties: any order)."""
    r = _pair_values(ranks, beam, token) if isinstance(beam, list) else ranks[beam, token]
    return bool((r[:-1] >= r[1:] - 1e-5).all())


def _diagnose_order(task: str, where: str, case: _BeamCase, b: torch.Tensor, t: torch.Tensor) -> None:
    r = _candidates(case)[1][b, t]
    if _best_first(_candidates(case)[1], b, t):
        return
    if _best_first(_candidates(case, normalise=False)[1], b, t):
        raise CheckFailed(f"{task}: {where} the right candidates, but in the order of their plain sums: sort "
                          "them by the ranking score, sum / length ** alpha, best first.")
    fits = list(dict.fromkeys(why for mistake, why in _RANKING_MISTAKES
                              if _best_first(_candidates(case, **mistake)[1], b, t)))
    if len(fits) == 1:
        raise CheckFailed(f"{task}: {where} the right candidates, but in the wrong order: {fits[0]}")
    if fits:  # another case may tell them apart
        raise _Unclear(f"{task}: {where} the right candidates, but in the wrong order, as if ranked by one "
                       "of these mistakes: " + " Or: ".join(fits))
    raise CheckFailed(f"{task}: {where} the right candidates, but not sorted best first: their ranking "
                      f"scores in your order are {[round(v, 3) for v in r.tolist()]}.")


def _diagnose_state(task: str, where: str, case: _BeamCase, new_cache: object, b: torch.Tensor,
                    t: torch.Tensor) -> None:
    want = case.cache[b]  # (K, t, D)
    same_shape = isinstance(new_cache, torch.Tensor) and new_cache.shape == want.shape
    if same_shape and not close(new_cache, want):
        if close(new_cache, case.cache):
            raise CheckFailed(f"{task}: {where} the state was not reordered: row i of the new state must be "
                              "the state of the beam that candidate i extends, state[beam].")
        if int(t.max()) < len(case.cache) and close(new_cache, case.cache[t]):
            raise CheckFailed(f"{task}: {where} the state was reordered by the token ids: pick its rows by "
                              "the beam ids, state[beam] (each beam has its own state, tokens do not).")
        rows = [next((j for j in range(len(case.cache)) if close(new_cache[i], case.cache[j])), None)
                for i in range(len(b))]  # which beam's state each of the learner's rows is
        if None not in rows:
            i = next(i for i, j in enumerate(rows) if j != int(b[i]))
            raise CheckFailed(f"{task}: {where} row {i} of your new state is the state of beam {rows[i]}, "
                              f"but the beam you returned for candidate {i} is beam[{i}] = {int(b[i])}: "
                              "row i of the new state must be state[beam[i]], for the very beams you "
                              "returned. (Did you choose the candidates twice, once for the ids and once for "
                              "the state? Ties may come out in another order: index the state with your beam "
                              "ids.)")
    compare(task, new_cache, want, what=f"the reordered state {where}")


def _check_one_step(task: str, fn: Callable, case: _BeamCase) -> None:
    K, V = case.log_probs.shape
    where = _where(case)
    try:
        got = call(task, fn, case.scores, case.lengths, case.finished, case.log_probs, case.cache,
                   case.alpha)
    except CheckFailed as err:
        if "selected index k out of range" in str(err.__cause__):
            raise CheckFailed(f"{err} There are {V} tokens but {K} beams: topk over one beam's tokens "
                              f"cannot give {K}. Take the best {K} of all K x V candidates at once: flatten "
                              "the (K, V) scores first.") from err.__cause__
        if isinstance(err.__cause__, IndexError):
            raise CheckFailed(f"{err}. Every argument has one row per beam, on axis 0: state[beam] picks "
                              "the beams' rows of the state.") from err.__cause__
        raise
    new_scores, beam, token, new_cache = unpack(task, got, ("new_scores", "beam", "token", "new_state"))
    beam_ids, token_ids = _ids(task, where, beam, "beam", K), _ids(task, where, token, "token", K)
    # a finished beam may be carried by <eos> as well as by <pad>: the reference's candidate is <pad>
    carried = _carried(case, beam_ids, token_ids)
    _diagnose_pairs(task, where, case, beam_ids, carried, token_ids, new_scores)
    b, t = torch.tensor(beam_ids), torch.tensor(carried)
    _diagnose_scores(task, where, case, new_scores, b, t)
    _diagnose_order(task, where, case, b, t)
    _diagnose_state(task, where, case, new_cache, b, token.long())


def check_beam_step(fn: Callable) -> CheckResult:
    """Check ``fn(scores, lengths, finished, log_probs, state, alpha)`` -> new_scores, beam, token, new_state.

    One step of beam search for one sentence: K beams, some of them finished; the state has one
    row per beam and must come back reordered. Every answer that picks the K best candidates
    passes, whichever way it breaks ties.
    """
    task = "beam_step"

    def body() -> str:
        cases = _beam_cases()
        unclear: list[_Unclear] = []
        for case in cases:
            try:
                _check_one_step(task, fn, case)
            except _Unclear as err:
                unclear.append(err)
        if unclear:
            raise unclear[0]
        return (f"{len(cases)} beam steps (K = 2 to 8 beams, finished ones among them, tied candidates, "
                "alpha 0, 0.6 and 1, float32 and float64 scores)")

    return run_check(task, body)
