"""The checks of solutions/08: right answers pass, the usual mistakes are named."""

import math

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed
from transformer_course.data import EOS, PAD

# --- the decoder's self-attention mask ------------------------------------------------------


def mask_right(tgt, pad_id):
    T = tgt.shape[1]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))  # (T, T)
    return causal & (tgt != pad_id)[:, None, None, :]  # (B, 1, T, T)


def mask_wrong_sign(tgt, pad_id):
    return ~mask_right(tgt, pad_id)


def mask_no_padding(tgt, pad_id):
    T = tgt.shape[1]
    return torch.tril(torch.ones(T, T, dtype=torch.bool)).expand(tgt.shape[0], 1, T, T)


def mask_no_causal(tgt, pad_id):
    T = tgt.shape[1]
    return (tgt != pad_id)[:, None, None, :].expand(-1, 1, T, T)


def mask_upper_triangle(tgt, pad_id):
    T = tgt.shape[1]
    return torch.triu(torch.ones(T, T, dtype=torch.bool)) & (tgt != pad_id)[:, None, None, :]


def mask_padding_on_queries(tgt, pad_id):
    T = tgt.shape[1]
    return torch.tril(torch.ones(T, T, dtype=torch.bool)) & (tgt != pad_id)[:, None, :, None]


def mask_padding_on_both(tgt, pad_id):
    real = tgt != pad_id  # (B, T)
    return mask_right(tgt, pad_id) & real[:, None, :, None]  # padded query rows blocked as well


def mask_strict(tgt, pad_id):
    T = tgt.shape[1]
    return torch.tril(torch.ones(T, T, dtype=torch.bool), -1) & (tgt != pad_id)[:, None, None, :]


def mask_float(tgt, pad_id):
    return mask_right(tgt, pad_id).float()


def mask_no_head_axis(tgt, pad_id):
    return mask_right(tgt, pad_id)[:, 0]


def mask_pad_zero_hardcoded(tgt, pad_id):
    return mask_right(tgt, 0)


def mask_loops(tgt, pad_id):
    B, T = tgt.shape
    rows = [[[[s <= t and int(tgt[b, s]) != pad_id for s in range(T)] for t in range(T)]] for b in range(B)]
    return torch.tensor(rows, dtype=torch.bool).reshape(B, 1, T, T)


def mask_arange(tgt, pad_id):
    T = tgt.shape[1]
    pos = torch.arange(T)
    return (pos[None, :] <= pos[:, None]).unsqueeze(0).unsqueeze(0) & tgt.ne(pad_id).view(-1, 1, 1, T)


def mask_not_triu(tgt, pad_id):
    T = tgt.shape[1]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return ~(future | (tgt == pad_id)[:, None, None, :])


def mask_in_place(tgt, pad_id):
    T = tgt.shape[1]
    return torch.tril(torch.ones(T, T, dtype=torch.bool)) & tgt.ne_(pad_id).bool()[:, None, None, :]


@pytest.mark.parametrize("fn", [mask_right, mask_loops, mask_arange, mask_not_triu])
def test_decoder_mask_accepts_right_answers_written_differently(fn, capsys):
    assert checks.check_decoder_mask(fn)
    assert "[x] decoder_mask" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (mask_wrong_sign, r"opposite of the course's convention .* blocked positions instead\?$"),
    (mask_no_padding, "padding is not masked"),
    (mask_no_causal, "the future is not masked"),
    (mask_upper_triangle, "upside down"),
    (mask_padding_on_queries, r"masked on the queries \(rows\) instead of on the keys \(columns\)"),
    (mask_padding_on_both, r"on the keys \(columns\), right, but also on the queries \(rows\)"),
    (mask_strict, "diagonal is blocked"),
    (mask_float, "boolean"),
    (mask_no_head_axis, r"\(B, 1, T, T\)"),
    (mask_pad_zero_hardcoded, "use the pad_id argument"),
    (mask_in_place, "changed its input `tgt` in place"),
])
def test_decoder_mask_names_the_mistake(fn, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_decoder_mask(fn)


# --- one step of beam search: the scores, the (beam, token) pairs and the reordered state -------


def beam_right(scores, lengths, finished, log_probs, state, alpha):
    K, V = log_probs.shape
    carry = torch.full((V,), -math.inf)
    carry[PAD] = 0.0  # a finished beam: one candidate, <pad>, at no cost
    total = scores[:, None] + torch.where(finished[:, None], carry, log_probs)  # (K, V)
    length = lengths + (~finished).long()  # (K,) the candidates' lengths
    rank = total / length[:, None].float() ** alpha  # (K, V)
    _, index = rank.flatten().topk(K)  # (K,) best first
    beam, token = index // V, index % V
    return total.flatten()[index].to(scores.dtype), beam, token, state[beam]


def beam_variant(*, finished="carry", running=True, normalise=True, longer=1, finished_longer=0, split=None,
                 order="best", returned="sums", reorder="beam", ids=None, finished_normalised=True,
                 multiply=False):
    """The right answer with one switch turned: each switch is one usual mistake."""
    def step(scores, lengths, finished_, log_probs, state, alpha):
        K, V = log_probs.shape
        carry = torch.full((V,), -math.inf)
        carry[PAD] = 0.0
        per_token = {"carry": torch.where(finished_[:, None], carry, log_probs), "expand": log_probs,
                     "zero": log_probs.masked_fill(finished_[:, None], 0.0),
                     "drop": log_probs.masked_fill(finished_[:, None], -math.inf),
                     "pay": torch.where(finished_[:, None] & (carry < 0), -math.inf, log_probs)}[finished]
        total = (scores[:, None] if running else 0.0) + per_token  # (K, V)
        length = lengths + torch.where(finished_, finished_longer, longer)
        rank = total / length[:, None].float() ** alpha if normalise else total
        if multiply:  # * instead of /
            rank = total * length[:, None].float() ** alpha
        if not finished_normalised:
            rank = torch.where(finished_[:, None], total, rank)
        _, index = rank.flatten().topk(K)
        if order == "sums":  # the right set, sorted by the plain sums
            index = index[total.flatten()[index].argsort(descending=True)]
        elif order == "worst":
            index = index.flip(0)
        per_beam = V if split is None else split(K, V)
        beam, token = index // per_beam, index % per_beam
        new = total.flatten()[index].to(scores.dtype)
        if returned == "ranks":
            new = rank.flatten()[index]
        elif returned == "float64":
            new = new.double()
        elif returned == "by position":  # each candidate gets the score of the beam at its position
            new = scores + per_token.flatten()[index]
        new_state = {"beam": lambda: state[beam], "none": lambda: state.clone(),
                     "token": lambda: state[token], "axis 1": lambda: state[:, beam]}[reorder]()
        if ids is not None:
            beam, token = ids(beam), ids(token)
        return new, beam, token, new_state
    return step


def beam_per_beam(scores, lengths, finished, log_probs, state, alpha):
    K, V = log_probs.shape
    new, token = (scores[:, None] + log_probs).topk(K, dim=-1)  # (K, K): the best K of each beam
    beam = torch.arange(K)[:, None].expand(K, K)
    return new.flatten(), beam.flatten(), token.flatten(), state[beam.flatten()]


def beam_per_beam_clamped(scores, lengths, finished, log_probs, state, alpha):
    K, V = log_probs.shape
    new, token = (scores[:, None] + log_probs).topk(min(K, V), dim=-1)  # (K, min(K, V))
    beam = torch.arange(K)[:, None].expand_as(token)
    return new.flatten(), beam.flatten(), token.flatten(), state[beam.flatten()]


def beam_in_place_state(scores, lengths, finished, log_probs, state, alpha):
    new, beam, token, _ = beam_right(scores, lengths, finished, log_probs, state, alpha)
    state[:] = state[beam].clone()
    return new, beam, token, state


def beam_in_place_mask(scores, lengths, finished, log_probs, state, alpha):
    log_probs[finished] = -math.inf
    log_probs[finished, PAD] = 0.0
    return beam_right(scores, lengths, finished, log_probs, state, alpha)


def beam_best_token_per_beam(scores, lengths, finished, log_probs, state, alpha):
    """Each beam's best candidate (K of them, one per beam), sorted best first."""
    K, V = log_probs.shape
    carry = torch.full((V,), -math.inf)
    carry[PAD] = 0.0
    total = scores[:, None] + torch.where(finished[:, None], carry, log_probs)  # (K, V)
    rank = total / (lengths + (~finished).long())[:, None].float() ** alpha
    best, token = rank.max(-1)  # (K,), (K,)
    beam = best.argsort(descending=True)
    return total[beam, token[beam]], beam, token[beam], state[beam]


def beam_split_k_swapped(scores, lengths, finished, log_probs, state, alpha):
    """The right flat index, split by K the other way: beam = i % K, token = i // K."""
    K, V = log_probs.shape
    new, beam, token, _ = beam_right(scores, lengths, finished, log_probs, state, alpha)
    index = beam * V + token
    beam, token = index % K, index // K
    return new, beam, token, state[beam]


def beam_swapped(scores, lengths, finished, log_probs, state, alpha):
    new, beam, token, new_state = beam_right(scores, lengths, finished, log_probs, state, alpha)
    return new, token, beam, new_state


def beam_always_float32(scores, lengths, finished, log_probs, state, alpha):
    """The sums made in float32 whatever the dtype of scores (float64 scores come back float32)."""
    new, beam, token, new_state = beam_right(scores.float(), lengths, finished, log_probs.float(), state,
                                             alpha)
    return new.float(), beam, token, new_state


def beam_no_cast_back(scores, lengths, finished, log_probs, state, alpha):
    """No cast back: float32 scores + float64 log_probs give float64 sums."""
    new, beam, token, new_state = beam_right(scores, lengths, finished, log_probs, state, alpha)
    return new.to(torch.promote_types(scores.dtype, log_probs.dtype)), beam, token, new_state


def beam_finished_times_zero(scores, lengths, finished, log_probs, state, alpha):
    """A finished beam's row multiplied by 0 (arithmetic masking): its -inf becomes NaN."""
    K, V = log_probs.shape
    carry = torch.full((V,), -1e30, dtype=log_probs.dtype)
    carry[PAD] = 0.0
    done = finished[:, None].to(log_probs.dtype)  # (K, 1)
    total = scores[:, None] + log_probs * (1 - done) + done * carry  # (K, V)
    rank = total / (lengths + (~finished).long())[:, None].to(total.dtype) ** alpha
    _, index = rank.flatten().topk(K)
    return total.flatten()[index].to(scores.dtype), index // V, index % V, state[index // V]


def beam_state_sorted_again(scores, lengths, finished, log_probs, state, alpha):
    """The ids from topk, the state from a second (stable) sort: ties may come out in another order."""
    new, beam, token, _ = beam_right(scores, lengths, finished, log_probs, state, alpha)
    K, V = log_probs.shape
    carry = torch.full((V,), -math.inf, dtype=log_probs.dtype)
    carry[PAD] = 0.0
    total = scores[:, None] + torch.where(finished[:, None], carry, log_probs)
    rank = total / (lengths + (~finished).long())[:, None].to(total.dtype) ** alpha
    order = rank.flatten().sort(descending=True, stable=True).indices[:K]
    return new, beam, token, state[order // V]


def beam_three_values(scores, lengths, finished, log_probs, state, alpha):
    return beam_right(scores, lengths, finished, log_probs, state, alpha)[:3]


SPLIT_WITH_K = r"split the flat index i with K \(beam = i // K, token = i % K\)"
BEAM_MISTAKES = {
    "finished beams expanded": (beam_variant(finished="expand"), "is finished .* extended it by token"),
    "finished beams expanded at no cost": (beam_variant(finished="zero"), "finished beam 1 was kept 5 times"),
    "finished beams dropped": (beam_variant(finished="drop"), "you dropped the finished beams"),
    "state not reordered": (beam_variant(reorder="none"), "the state was not reordered"),
    "state reordered by token": (beam_variant(reorder="token"), "reordered by the token ids"),
    "flat index split with K": (beam_variant(split=lambda K, V: K), SPLIT_WITH_K),
    "flat index split with K, % for the beam": (beam_split_k_swapped,
                                                r"with K \(beam = i % K, token = i // K\): .* divide the "
                                                "flat index by V, the vocabulary size"),
    "beam and token swapped": (beam_swapped, "beam and token are swapped"),
    "ids split with K, worst first": (beam_variant(split=lambda K, V: K, order="worst"),
                                      SPLIT_WITH_K),  # the ids are diagnosed first
    "no length normalisation": (beam_variant(normalise=False), "ranked the candidates by their plain sums"),
    "multiplied by the length": (beam_variant(multiply=True), r"multiplied the sums by length \*\* alpha"),
    "finished beams pay for <pad>": (beam_variant(finished="pay"),
                                     "charged a finished beam the log-probability of its <pad>"),
    "best token of each beam, sorted": (beam_best_token_per_beam,
                                        "you kept one candidate per beam, its best token: keep the best 8 "
                                        "of all the K x V"),
    "old length for extensions": (beam_variant(longer=0), "one token longer"),
    "finished beams lengthened": (beam_variant(finished_longer=1), "lengthened the finished beams"),
    "no running score": (beam_variant(running=False), "token's log-probability alone"),
    "best of each beam": (beam_per_beam, r"best 8 of all K x V candidates at once"),
    "best of each beam, at most V": (beam_per_beam_clamped,
                                     "That is 5 per beam: you took the best of EACH beam"),
    "finished beams ranked by plain sums": (beam_variant(finished_normalised=False),
                                            "normalised the extended candidates only"),
    "scores by position, not by beam": (beam_variant(returned="by position"),
                                        r"the new scores .* differs from the reference: at index \(\d+,\)"),
    "state reordered along axis 1": (beam_variant(reorder="axis 1"),
                                     r"raised IndexError: .* one row per beam, on axis 0: state\[beam\]"),
    "ranking scores returned": (beam_variant(returned="ranks"), "returned the ranking scores"),
    "worst first": (beam_variant(order="worst"), "not sorted best first"),
    "sorted by the plain sums": (beam_variant(order="sums"),
                                 "right candidates, but in the order of their plain sums"),
    "float ids": (beam_variant(ids=lambda i: i.float()), "should hold integer ids, got float32"),
    "float64 scores": (beam_variant(returned="float64"), "new_scores is float64, but scores is float32: "
                                                         "return the new scores in the dtype of scores"),
    "state reordered in place": (beam_in_place_state, "changed its input `state` in place"),
    "log-probs masked in place": (beam_in_place_mask, "changed its input `log_probs` in place"),
    "float32 new scores for float64 scores": (
        beam_always_float32, r"new_scores is float32, but scores is float64: .*\(a \.float\(\)"),
    "float64 new scores for float32 scores, float64 log-probs": (
        beam_no_cast_back, r"scores float32 and log_probs float64: new_scores is float64, .* scores \+ "
                           r"log_probs is promoted to float64 here, .* \.to\(scores\.dtype\)"),
    "finished rows multiplied by 0": (beam_finished_times_zero,
                                      r"is -inf: your function turned that -inf into NaN .* instead of "
                                      "multiplying it by 0"),
    "state from a second sort": (beam_state_sorted_again,
                                 r"row \d+ of your new state is the state of beam \d+, but the beam you "
                                 r"returned for candidate \d+ is beam\[\d+\] = \d+: .* state\[beam\[i\]\]"),
    "three values": (beam_three_values, r"return 4 values \(new_scores, beam, token, new_state\); got 3"),
}


@pytest.mark.parametrize("name", BEAM_MISTAKES)
def test_beam_step_names_the_mistake(name):
    fn, message = BEAM_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_beam_step(fn)


def test_beam_step_gives_each_mistake_its_own_message():
    messages = {}
    for fn, expected in BEAM_MISTAKES.values():
        with pytest.raises(CheckFailed) as err:
            checks.check_beam_step(fn)
        messages.setdefault(expected, set()).add(str(err.value))
    every = [m for found in messages.values() for m in found]
    assert len(set(every)) == len(every) == len(messages)  # one message per expected pattern, no two alike


def beam_float64(scores, lengths, finished, log_probs, state, alpha):
    new, beam, token, new_state = beam_right(scores.double(), lengths, finished, log_probs.double(),
                                             state, alpha)
    return new.to(scores.dtype), beam, token, new_state


def beam_loops(scores, lengths, finished, log_probs, state, alpha):
    """Python loops over beams and tokens, a sorted list, a list returned, the state stacked row by row."""
    K, V = log_probs.shape
    candidates = []  # (ranking score, sum, beam, token)
    for b in range(K):
        if finished[b]:
            candidates.append((scores[b] / lengths[b] ** alpha, scores[b], b, EOS))
            continue
        for t in range(V):
            total = scores[b] + log_probs[b, t]
            candidates.append((total / (lengths[b] + 1) ** alpha, total, b, t))
    best = sorted(candidates, key=lambda c: -c[0].item())[:K]
    beam = torch.tensor([c[2] for c in best])
    return [torch.stack([c[1] for c in best]).to(scores.dtype), beam, torch.tensor([c[3] for c in best]),
            torch.stack([state[b] for b in beam])]


def beam_gather(scores, lengths, finished, log_probs, state, alpha):
    """masked_fill, argsort, floor division, gather for the state, int32 ids."""
    K, V = log_probs.shape
    step = log_probs.masked_fill(finished.unsqueeze(1), float("-inf"))
    step[:, PAD] = torch.where(finished, 0.0, log_probs[:, PAD])
    total = scores.unsqueeze(1) + step  # (K, V)
    rank = total / (lengths + 1 - finished.long()).unsqueeze(1).to(total.dtype).pow(alpha)
    index = rank.view(-1).argsort(descending=True, stable=True)[:K]
    beam = torch.div(index, V, rounding_mode="floor").int()
    token = (index - beam * V).int()
    new_state = state.gather(0, beam.long()[:, None, None].expand(-1, *state.shape[1:]))
    return total.view(-1).gather(0, index).to(scores.dtype), beam, token, new_state


def beam_other_ties(scores, lengths, finished, log_probs, state, alpha):
    """Ties broken the other way: the beams searched from the last, index_select for the state."""
    K, V = log_probs.shape
    new, beam, token, _ = beam_right(scores.flip(0), lengths.flip(0), finished.flip(0), log_probs.flip(0),
                                     state, alpha)
    beam = K - 1 - beam
    return new, beam, token, state.index_select(0, beam)


def beam_two_pools(scores, lengths, finished, log_probs, state, alpha):
    """Extensions (K * V) and carries (K) as two pools of candidates, joined, topk; the ids by torch.where."""
    K, V = log_probs.shape
    grown = (scores[:, None] + log_probs).masked_fill(finished[:, None], -math.inf)  # (K, V)
    kept = scores.masked_fill(~finished, -math.inf)  # (K,): a finished beam, carried as it is
    ranks = torch.cat([(grown / (lengths + 1)[:, None].to(grown.dtype) ** alpha).flatten(),
                       kept / lengths.to(kept.dtype) ** alpha])
    sums = torch.cat([grown.flatten(), kept.to(grown.dtype)])
    _, index = ranks.topk(K)
    carried = index >= K * V
    beam = torch.where(carried, index - K * V, index // V)
    token = torch.where(carried, torch.full_like(index, PAD), index % V)
    return sums[index].to(scores.dtype), beam, token, state[beam]


@pytest.mark.parametrize("fn", [beam_right, beam_float64, beam_loops, beam_gather, beam_other_ties,
                                beam_variant(ids=lambda i: i.to(torch.int32)), beam_two_pools],
                         ids=["topk", "float64 inside", "loops", "gather", "other tie-breaks", "int32 ids",
                              "two pools"])
def test_beam_step_accepts_right_answers_written_differently(fn, capsys):
    assert checks.check_beam_step(fn)
    assert "[x] beam_step" in capsys.readouterr().out


def test_beam_step_right_answers_break_ties_differently():
    # the inputs hold ties at the boundary of the K best: the answers above choose differently there
    from transformer_course.checks.decoding import _beam_cases
    case = _beam_cases()[0]
    args = (case.scores, case.lengths, case.finished, case.log_probs, case.cache, case.alpha)
    assert not torch.equal(beam_right(*args)[1], beam_other_ties(*args)[1])
