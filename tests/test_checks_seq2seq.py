"""The checks of solutions/02 accept the right answers and reject the usual wrong ones by name."""

from __future__ import annotations

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed
from transformer_course.data import BOS, EOS, PAD
from transformer_course.decoding import greedy_decode
from transformer_course.seq2seq import last_real_state

# --- the encoder's final state ------------------------------------------------------------


def final_right(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths - 1]


def final_last_step(outputs, lengths):
    return outputs[:, -1]


def final_off_by_one(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths.clamp(max=outputs.shape[1] - 1)]


def final_first_step(outputs, lengths):
    return outputs[:, 0]


def final_keepdim(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths - 1].unsqueeze(1)


def final_mean(outputs, lengths):
    return outputs.mean(1)


def test_last_real_state_accepts_right_answers():
    assert checks.check_last_real_state(final_right)
    assert checks.check_last_real_state(last_real_state)


@pytest.mark.parametrize("wrong, message", [
    (final_last_step, r"last time step, outputs\[:, -1\].*padding"),
    (final_off_by_one, r"off by one.*lengths\[b\] - 1"),
    (final_first_step, "first time step"),
    (final_keepdim, r"wrong shape: got \(4, 1, 3\), expected \(4, 3\)"),
    (final_mean, "differs from the reference"),
])
def test_last_real_state_rejects_wrong_answers(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_last_real_state(wrong)


# --- greedy decoding -----------------------------------------------------------------------


def greedy_right(model, src, src_lengths, max_len):
    state = model.start(src, src_lengths)
    tokens = torch.full((src.shape[0],), BOS, dtype=torch.long)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    out = []
    for _ in range(max_len):
        logits, state = model.step(tokens, state)
        tokens = logits.argmax(-1).masked_fill(finished, PAD)
        out.append(tokens)
        finished = finished | (tokens == EOS)
        if finished.all():
            break
    return torch.stack(out, 1)


def _loop(model, src, src_lengths, max_len, *, feed_back=True, mask=True, stop="all", first=BOS,
          keep_bos=False):
    state = model.start(src, src_lengths)
    tokens = torch.full((src.shape[0],), first, dtype=torch.long)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    out = [tokens] if keep_bos else []
    for _ in range(max_len):
        logits, state = model.step(tokens if feed_back else torch.full_like(tokens, BOS), state)
        nxt = logits.argmax(-1)
        tokens = nxt.masked_fill(finished, PAD) if mask else nxt
        out.append(tokens)
        finished = finished | (tokens == EOS)
        if stop == "all" and finished.all() or stop == "any" and finished.any():
            break
    return torch.stack(out, 1)


def greedy_no_feedback(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len, feed_back=False)


def greedy_no_mask(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len, mask=False)


def greedy_never_stops(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len, stop="never")


def greedy_stops_at_first_eos(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len, stop="any")


def greedy_keeps_bos(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len, keep_bos=True)


def greedy_starts_with_eos(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len, first=EOS)


def greedy_extra_step(model, src, src_lengths, max_len):
    return _loop(model, src, src_lengths, max_len + 1, stop="never")


def greedy_list(model, src, src_lengths, max_len):
    return greedy_right(model, src, src_lengths, max_len).tolist()


def test_greedy_decode_accepts_right_answers():
    assert checks.check_greedy_decode(greedy_right)
    assert checks.check_greedy_decode(greedy_decode)


@pytest.mark.parametrize("wrong, message", [
    (greedy_no_feedback, "feed the argmax back.*same token at every step"),
    (greedy_no_mask, "after a row emits <eos>, every later position should be <pad>"),
    (greedy_never_stops, "stop the loop once all rows are finished"),
    (greedy_stops_at_first_eos, "stop only when ALL rows are finished"),
    (greedy_keeps_bos, "starts with <bos>"),
    (greedy_starts_with_eos, "first input to model.step must be <bos>"),
    (greedy_extra_step, "at most max_len=10"),
    (greedy_list, "return a .B, L. tensor"),
])
def test_greedy_decode_rejects_wrong_answers(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_greedy_decode(wrong)


def test_checks_leave_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    checks.check_greedy_decode(greedy_right)
    checks.check_last_real_state(final_right)
    assert torch.equal(torch.rand(3), before)
