"""The checks of solutions/08: right answers pass, the usual mistakes are named."""

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed

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


def mask_strict(tgt, pad_id):
    T = tgt.shape[1]
    return torch.tril(torch.ones(T, T, dtype=torch.bool), -1) & (tgt != pad_id)[:, None, None, :]


def mask_float(tgt, pad_id):
    return mask_right(tgt, pad_id).float()


def mask_no_head_axis(tgt, pad_id):
    return mask_right(tgt, pad_id)[:, 0]


def mask_pad_zero_hardcoded(tgt, pad_id):
    return mask_right(tgt, 0)


def test_decoder_mask_accepts_the_right_answer(capsys):
    assert checks.check_decoder_mask(mask_right)
    assert "[x] decoder_mask" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (mask_wrong_sign, "opposite of the course's convention"),
    (mask_no_padding, "padding is not masked"),
    (mask_no_causal, "the future is not masked"),
    (mask_upper_triangle, "upside down"),
    (mask_padding_on_queries, "queries"),
    (mask_strict, "diagonal is blocked"),
    (mask_float, "boolean"),
    (mask_no_head_axis, r"\(B, 1, T, T\)"),
    (mask_pad_zero_hardcoded, "use the pad_id argument"),
])
def test_decoder_mask_names_the_mistake(fn, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_decoder_mask(fn)


# --- one step of beam search ----------------------------------------------------------------


def beam_right(scores, log_probs, k):
    B, K, V = log_probs.shape
    total = (scores[..., None] + log_probs).reshape(B, K * V)  # (B, K * V)
    new, idx = total.topk(k, dim=-1)
    return new, idx // V, idx % V


def beam_no_running_score(scores, log_probs, k):
    return beam_right(torch.zeros_like(scores), log_probs, k)


def beam_per_beam(scores, log_probs, k):
    B, K, V = log_probs.shape
    new, token = (scores[..., None] + log_probs).topk(k, dim=-1)  # (B, K, k)
    beam = torch.arange(K)[None, :, None].expand(B, K, k)
    return new.reshape(B, -1), beam.reshape(B, -1), token.reshape(B, -1)


def beam_swapped(scores, log_probs, k):
    new, beam, token = beam_right(scores, log_probs, k)
    return new, token, beam


def beam_wrong_token(scores, log_probs, k):
    B, K, V = log_probs.shape
    new, idx = (scores[..., None] + log_probs).reshape(B, K * V).topk(k, dim=-1)
    return new, idx // V, idx // K


def beam_ascending(scores, log_probs, k):
    new, beam, token = beam_right(scores, log_probs, k)
    return new.flip(-1), beam.flip(-1), token.flip(-1)


def beam_float_ids(scores, log_probs, k):
    new, beam, token = beam_right(scores, log_probs, k)
    return new, beam.float(), token.float()


def test_beam_step_accepts_the_right_answer(capsys):
    assert checks.check_beam_step(beam_right)
    assert "[x] beam_step" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (beam_no_running_score, "running scores"),
    (beam_per_beam, "top k of each beam"),
    (beam_swapped, "swapped"),
    (beam_wrong_token, "token ids are not"),
    (beam_ascending, "not sorted best first"),
    (beam_float_ids, "integer ids"),
])
def test_beam_step_names_the_mistake(fn, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_beam_step(fn)


# --- length normalisation -------------------------------------------------------------------


def norm_right(log_probs, lengths, alpha):
    return log_probs / lengths.float() ** alpha


@pytest.mark.parametrize("fn, message", [
    (lambda lp, n, a: lp, "plain sums"),
    (lambda lp, n, a: lp / n, "ignoring alpha"),
    (lambda lp, n, a: lp * n.float() ** a, "multiplied"),
    (lambda lp, n, a: lp / (n * a) if a else lp, r"length \* alpha"),
    (lambda lp, n, a: lp.exp() / n.float() ** a, "probabilities"),
    (lambda lp, n, a: (lp / n.float() ** a)[:, :1], "wrong shape"),
])
def test_length_normalise_names_the_mistake(fn, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_length_normalise(fn)


def test_length_normalise_accepts_the_right_answer(capsys):
    assert checks.check_length_normalise(norm_right)
    assert "[x] length_normalise" in capsys.readouterr().out
