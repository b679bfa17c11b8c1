"""The checks of solutions/02 accept right answers written differently and reject each usual
wrong one with its own message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_course import checks
from transformer_course.checks import CheckFailed
from transformer_course.checks import seq2seq as seq2seq_checks
from transformer_course.checks._core import _resolve
from transformer_course.data import BOS, EOS, PAD

# --- the encoder's final state ------------------------------------------------------------


def final_right(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths - 1]


def final_gather(outputs, lengths):
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])  # (B, 1, H)
    return outputs.gather(1, index).squeeze(1)


def final_loop(outputs, lengths):
    return torch.stack([outputs[b, int(n) - 1] for b, n in enumerate(lengths)])


def final_float64_inside(outputs, lengths):
    rows = torch.arange(outputs.shape[0])
    return outputs.double()[rows, lengths - 1].to(outputs.dtype)


def final_one_hot(outputs, lengths):
    pick = F.one_hot(lengths - 1, outputs.shape[1]).to(outputs.dtype)  # (B, S)
    return (outputs * pick[..., None]).sum(1)


def final_one_hot_einsum(outputs, lengths):
    pick = F.one_hot(lengths - 1, outputs.shape[1]).to(outputs.dtype)  # (B, S)
    return torch.einsum("bs,bsh->bh", pick, outputs)


def final_diagonal(outputs, lengths):
    return outputs[:, lengths - 1].diagonal(dim1=0, dim2=1).T  # (B, B, H) -> (H, B) -> (B, H)


def final_take_along_dim(outputs, lengths):
    index = (lengths.long() - 1).reshape(-1, 1, 1)  # (B, 1, 1)
    return torch.take_along_dim(outputs, index, dim=1)[:, 0, :]


def final_flat_index_select(outputs, lengths):
    B, S, H = outputs.shape
    return outputs.reshape(B * S, H).index_select(0, torch.arange(B) * S + lengths - 1)


def final_where_sum(outputs, lengths):
    pick = torch.arange(outputs.shape[1])[None, :] == (lengths - 1)[:, None]  # (B, S)
    return torch.where(pick[..., None], outputs, torch.zeros((), dtype=outputs.dtype)).sum(1)


def final_numpy_index(outputs, lengths):
    return outputs[range(outputs.shape[0]), (lengths - 1).numpy()]  # the values are not cut from the graph


FINAL_RIGHT = [final_right, final_gather, final_loop, final_float64_inside, final_one_hot,
               final_one_hot_einsum, final_diagonal, final_take_along_dim, final_flat_index_select,
               final_where_sum, final_numpy_index]


@pytest.mark.parametrize("right", FINAL_RIGHT, ids=lambda f: f.__name__)
def test_last_real_state_accepts_right_answers(right):
    assert checks.check_last_real_state(right)


def final_last_step(outputs, lengths):
    return outputs[:, -1]


def final_longest_row(outputs, lengths):
    return outputs[:, lengths.max() - 1]


def final_off_by_one(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths.clamp(max=outputs.shape[1] - 1)]


def final_off_by_one_unclamped(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths]


def final_first_step(outputs, lengths):
    return outputs[:, 0]


def final_keepdim(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths - 1].unsqueeze(1)


def final_no_row_index(outputs, lengths):
    return outputs[:, lengths - 1]  # (B, B, H)


def final_transposed(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths - 1].T


def final_mean(outputs, lengths):
    return outputs.mean(1)


def final_mean_of_real(outputs, lengths):
    real = torch.arange(outputs.shape[1]) < lengths[:, None]
    return (outputs * real[..., None]).sum(1) / lengths[:, None]


def final_float64(outputs, lengths):
    return outputs.double()[torch.arange(outputs.shape[0]), lengths - 1]


def final_lengths_in_place(outputs, lengths):
    lengths -= 1  # changes the caller's tensor
    return outputs[torch.arange(outputs.shape[0]), lengths]


def final_zero_padding_in_place(outputs, lengths):
    outputs[torch.arange(outputs.shape[1]) >= lengths[:, None]] = 0.0  # masked assignment
    return outputs[torch.arange(outputs.shape[0]), lengths - 1]


def final_numpy(outputs, lengths):
    return final_right(outputs, lengths).numpy()


def final_negated(outputs, lengths):
    return -final_right(outputs, lengths)


def final_zeros(outputs, lengths):
    return torch.zeros_like(outputs[:, 0])


def final_float_index(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths.float() - 1]


def final_detached(outputs, lengths):
    return final_right(outputs, lengths).detach()


def final_through_tolist(outputs, lengths):
    return torch.tensor(final_right(outputs, lengths).tolist())


def final_also_reaching_the_last_column(outputs, lengths):
    last = outputs[:, -1]
    return final_right(outputs, lengths) + (last - last.detach())  # the same values, a wrong gradient


def final_package(outputs, lengths):
    from transformer_course.seq2seq import last_real_state  # imported while the check runs

    return last_real_state(outputs, lengths)


FINAL_WRONG = {
    "the last column": (final_last_step, r"last time step, outputs\[:, -1\].*padding"),
    "the longest row's position for every row": (final_longest_row,
                                                 r"same position for every row.*lengths.max\(\) - 1 = 4"),
    "off by one": (final_off_by_one, r"off by one.*lengths\[b\] - 1"),
    "the first column": (final_first_step, "first time step"),
    "a kept axis": (final_keepdim, r"wrong shape: got \(4, 1, 3\), expected \(4, 3\)"),
    "no row index": (final_no_row_index, r"wrong shape: got \(4, 4, 3\), expected \(4, 3\)"),
    "transposed": (final_transposed, "last two axes swapped"),
    "the mean over all positions": (final_mean, "averaged the states over all positions, padding included"),
    "the mean over the real tokens": (final_mean_of_real, "averaged the states over the real tokens"),
    "float64 for float32 inputs": (final_float64, "is float64, expected float32"),
    "lengths changed in place": (final_lengths_in_place, "changed its input `lengths` in place"),
    "padding zeroed in place": (final_zero_padding_in_place, "changed its input `outputs` in place"),
    "a numpy array": (final_numpy, "should be a torch.Tensor, got ndarray"),
    "the sign flipped": (final_negated, "sign flipped"),
    "all zeros": (final_zeros, "all zeros"),
    "a float index": (final_float_index, "your function raised IndexError"),
    "the package's last_real_state": (final_package, "called `transformer_course.seq2seq.last_real_state`"),
    "detached": (final_detached, r"your result carries no gradient: it is cut from the graph \(a \.detach\(\)"
                                 ".*the encoder is trained through this function"),
    "a wrong gradient": (final_also_reaching_the_last_column,
                         "the gradient of your result with respect to outputs differs from the reference"),
}

# The same mistakes written differently: the same message.
FINAL_WRONG_AGAIN = {
    "off by one, unclamped": (final_off_by_one_unclamped, r"off by one.*lengths\[b\] - 1"),
    "rebuilt from .tolist()": (final_through_tolist, "your result carries no gradient"),
}


@pytest.mark.parametrize("name", [*FINAL_WRONG, *FINAL_WRONG_AGAIN])
def test_last_real_state_rejects_wrong_answers(name):
    wrong, message = {**FINAL_WRONG, **FINAL_WRONG_AGAIN}[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_last_real_state(wrong)


# --- greedy decoding -----------------------------------------------------------------------


@torch.no_grad()
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


def greedy_preallocated(model, src, src_lengths, max_len):
    B = src.shape[0]
    out = torch.full((B, max_len), PAD, dtype=torch.long)
    with torch.no_grad():
        state, tokens = model.start(src, src_lengths), torch.full((B,), BOS)
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_len):
            logits, state = model.step(tokens, state)
            tokens = torch.where(done, torch.full_like(tokens, PAD), logits.max(-1).indices)
            out[:, t] = tokens
            done |= tokens == EOS
            if bool(done.all()):
                return out[:, : t + 1]
    return out


def greedy_while_cat_int32_inputs(model, src, src_lengths, max_len):
    with torch.inference_mode():
        state = model.start(src, src_lengths)
        tokens = torch.tensor([BOS] * src.shape[0], dtype=torch.int32)
        alive = torch.ones(src.shape[0], dtype=torch.bool)
        out = torch.empty(src.shape[0], 0, dtype=torch.long)
        while out.shape[1] < max_len and alive.any():
            logits, state = model.step(tokens, state)
            tokens = (logits.argmax(-1) * alive + PAD * ~alive).int()
            out = torch.cat([out, tokens[:, None].long()], dim=1)
            alive = alive & (tokens != EOS)
        return out


def greedy_feeds_raw_argmax_after_eos(model, src, src_lengths, max_len):
    with torch.no_grad():
        state = model.start(src, src_lengths)
        token = torch.full((src.size(0),), BOS, dtype=torch.long)
        finished = torch.zeros(src.size(0), dtype=torch.bool)
        columns = []
        for _ in range(max_len):
            logits, state = model.step(token, state)
            token = logits.argmax(dim=1)
            columns.append(torch.where(finished, PAD, token))
            finished = finished | (token == EOS)
            if finished.all():
                break
        return torch.stack(columns, 1)


def greedy_python_lists(model, src, src_lengths, max_len):
    with torch.no_grad():
        B = src.shape[0]
        state = model.start(src, src_lengths)
        tokens = torch.tensor([BOS] * B)
        rows, done = [[] for _ in range(B)], [False] * B
        for _ in range(max_len):
            logits, state = model.step(tokens, state)
            best = logits.softmax(-1).argmax(-1).tolist()
            for b in range(B):
                best[b] = PAD if done[b] else best[b]
                rows[b].append(best[b])
                done[b] = done[b] or best[b] == EOS
            tokens = torch.tensor(best, dtype=torch.long)
            if all(done):
                break
        return torch.tensor(rows, dtype=torch.long)


def greedy_cat_on_bos_column(model, src, src_lengths, max_len):
    with torch.inference_mode():
        state = model.start(src, src_lengths)
        y = src.new_full((src.shape[0], 1), BOS)
        alive = torch.ones(src.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logits, state = model.step(y[:, -1], state)
            nxt = logits.argmax(-1)
            nxt[~alive] = PAD
            y = torch.cat([y, nxt[:, None]], dim=1)
            alive &= nxt != EOS
            if not alive.any():
                break
        return y[:, 1:]


@torch.no_grad()
def greedy_one_step_more(model, src, src_lengths, max_len):
    """Looks at the finished rows after the next call of model.step: one call more, the same tokens."""
    state = model.start(src, src_lengths)
    tokens = torch.full((src.shape[0],), BOS)
    finished = torch.zeros(src.shape[0], dtype=torch.bool)
    out = []
    for _ in range(max_len):
        logits, state = model.step(tokens, state)
        if finished.all():
            break
        tokens = logits.argmax(-1).masked_fill(finished, PAD)
        out.append(tokens)
        finished = finished | (tokens == EOS)
    return torch.stack(out, 1)


@torch.no_grad()
def greedy_counts_eos(model, src, src_lengths, max_len):
    """Counts each row's <eos> and pads after the loop with a cumulative sum."""
    state = model.start(src, src_lengths)
    tokens = torch.full((src.shape[0],), BOS)
    seen = torch.zeros(src.shape[0], dtype=torch.long)
    cols = []
    while len(cols) < max_len and not (seen > 0).all():
        logits, state = model.step(tokens, state)
        tokens = logits.argmax(-1)
        cols.append(tokens)
        seen = seen + (tokens == EOS)
    ids = torch.stack(cols, 1)
    after = (ids == EOS).cumsum(1) - (ids == EOS).long() > 0  # strictly after the first <eos>
    return ids.masked_fill(after, PAD)


GREEDY_RIGHT = [greedy_right, greedy_preallocated, greedy_while_cat_int32_inputs,
                greedy_feeds_raw_argmax_after_eos, greedy_python_lists, greedy_cat_on_bos_column,
                greedy_one_step_more, greedy_counts_eos]


@pytest.mark.parametrize("right", GREEDY_RIGHT, ids=lambda f: f.__name__)
def test_greedy_decode_accepts_right_answers(right):
    assert checks.check_greedy_decode(right)


def _loop(model, src, src_lengths, max_len, *, feed_back=True, mask=True, stop="all", first=BOS,
          keep_bos=False, keep_eos=True, pick="argmax", restart=False, carry=True, drop_last=False,
          trim=True, grad=False, dtype=torch.long, dim=-1, pad_ends=False, filler=PAD):
    """A configurable greedy loop: the defaults are right, each option one mistake."""
    with torch.set_grad_enabled(grad):
        state = start = model.start(src, src_lengths)
        tokens = torch.full((src.shape[0],), first, dtype=torch.long)
        finished = torch.zeros(src.shape[0], dtype=torch.bool)
        out = [tokens] if keep_bos else []
        for _ in range(max_len):
            if restart:
                state = model.start(src, src_lengths)
            logits, new_state = model.step(tokens if feed_back else torch.full_like(tokens, BOS), state)
            state = new_state if carry else start
            if pick == "sample":
                g = torch.Generator().manual_seed(0)
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)[:, 0]
            else:
                nxt = (logits if pick == "argmax" else logits[:, 1:]).argmax(dim)
            ended = finished | (nxt == EOS) | (pad_ends & (nxt == PAD))
            tokens = nxt.masked_fill(finished if keep_eos else ended, PAD) if mask else nxt
            if drop_last and ended.all():
                break
            out.append(tokens)
            finished = ended if mask else finished | (tokens == EOS)
            if stop == "all" and finished.all() or stop == "any" and finished.any():
                break
            if stop == "eos or pad" and ((tokens == EOS) | (tokens == PAD)).all():
                break
        ids = torch.stack(out, 1)
        if filler != PAD:
            ids = ids.masked_fill((ids == EOS).cumsum(1) - (ids == EOS).long() > 0, filler)
        if not trim:
            ids = torch.cat([ids, torch.full((ids.shape[0], max_len - ids.shape[1]), PAD)], 1)
        return ids.to(dtype)


def greedy_source_cleaned_in_place(model, src, src_lengths, max_len):
    src[src == PAD] = EOS  # changes the caller's source: it has <pad> past each row's length
    return greedy_right(model, src, src_lengths, max_len)


def greedy_column_tokens(model, src, src_lengths, max_len):
    state = model.start(src, src_lengths)
    logits, state = model.step(torch.full((src.shape[0], 1), BOS), state)
    return logits.argmax(-1, keepdim=True)


def greedy_package(model, src, src_lengths, max_len):
    from transformer_course.decoding import greedy_decode  # imported while the check runs

    return greedy_decode(model, src, src_lengths, max_len)


def greedy_steps_of_the_source_width(model, src, src_lengths, max_len):
    return greedy_right(model, src, src_lengths, src.shape[1])


GREEDY_WRONG = {
    "no feedback": (lambda *a: _loop(*a, feed_back=False), "feed the argmax back.*same token at every step"),
    "no <pad> after <eos>": (lambda *a: _loop(*a, mask=False),
                             "after a row emits <eos>, every later position should be <pad>"),
    "<eos> replaced by <pad>": (lambda *a: _loop(*a, keep_eos=False),
                                "wrote <pad> where a row emitted <eos>: keep each row's <eos>"),
    "stops when every token is <eos> or <pad>": (
        lambda *a: _loop(*a, stop="eos or pad"),
        r"you stopped after 3 steps, when every token of the step was <eos> or <pad>.*Stop when every row "
        r"has emitted <eos> \(track finished rows\), not when every current token is <eos> or <pad>"),
    "<pad> finishes a row": (lambda *a: _loop(*a, pad_ends=True),
                             "at step 2 you padded a row that had predicted <pad> but not <eos>: only <eos> "
                             "finishes a row. Stop when every row has emitted <eos>"),
    "<eos> as the filler": (lambda *a: _loop(*a, filler=EOS),
                            r"after <eos>, fill with <pad> \(id 0\), not <eos>"),
    "never stops": (lambda *a: _loop(*a, stop="never"), "stop the loop once all rows are finished"),
    "stops at the first <eos>": (lambda *a: _loop(*a, stop="any"),
                                 "stopped after 1 step, .*stop only when ALL rows are finished"),
    "stops at the source's width": (greedy_steps_of_the_source_width,
                                    "stopped after 3 steps, .*stop only when ALL rows are finished"),
    "max_len - 1 steps": (lambda m, s, sl, n: _loop(m, s, sl, n - 1),
                          r"ran 5 steps \(max_len - 1\).*range\(max_len\)"),
    "keeps <bos>": (lambda *a: _loop(*a, keep_bos=True), "starts with <bos>"),
    "starts from <eos>": (lambda *a: _loop(*a, first=EOS), "first input to model.step must be <bos>"),
    "one step too many": (lambda m, s, sl, n: _loop(m, s, sl, n + 1, stop="never"),
                          "called model.step 11 times; at most max_len=10"),
    "the argmax of logits[:, 1:]": (lambda *a: _loop(*a, pick="slice"), r"argmax minus 1.*logits\[:, 1:\]"),
    "a sample": (lambda *a: _loop(*a, pick="sample"), r"are not the argmax.*logits.argmax\(-1\)"),
    "model.start at every step": (lambda *a: _loop(*a, restart=True),
                                  "called model.start 11 times; call it once"),
    "the first state at every step": (lambda *a: _loop(*a, carry=False),
                                      "at step 1 you passed model.step a state other than the one the "
                                      "previous step returned"),
    "the last step's token dropped": (lambda *a: _loop(*a, drop_last=True),
                                      "called model.step 5 times but returned 4 columns"),
    "unused columns kept": (lambda *a: _loop(*a, trim=False), "ran 5 steps but returned 10 columns"),
    "gradients on": (lambda *a: _loop(*a, grad=True), "your tokens are right, but model.step ran with "
                                                      r"gradients on: .*torch.no_grad\(\)"),
    "a list": (lambda *a: greedy_right(*a).tolist(), r"return a .B, L. tensor"),
    "no columns": (lambda *a: greedy_right(*a)[:, :0], "your result has no columns"),
    "float ids": (lambda *a: greedy_right(*a).float(), "token ids should be an integer"),
    "int32 ids": (lambda *a: _loop(*a, dtype=torch.int32), r"long \(int64\) tensor.*yours is int32"),
    "(L, B)": (lambda *a: greedy_right(*a).T, r"shape \(B, L\) = \(4, L\), got \(5, 4\)"),
    "the source changed in place": (greedy_source_cleaned_in_place, "changed its input `src` in place"),
    "a column of tokens": (greedy_column_tokens, r"your function raised TypeError: model.step expects"),
    "the package's greedy_decode": (greedy_package, "called `transformer_course.decoding.greedy_decode`"),
}

# The same mistakes written differently.
GREEDY_WRONG_AGAIN = {
    "max_len + 1 steps, stopping early": (lambda m, s, sl, n: _loop(m, s, sl, n + 1),
                                          "called model.step 7 times; at most max_len=6"),
    "the argmax over the batch axis": (lambda *a: _loop(*a, dim=0), "your function raised RuntimeError"),
}


@pytest.mark.parametrize("name", [*GREEDY_WRONG, *GREEDY_WRONG_AGAIN])
def test_greedy_decode_rejects_wrong_answers(name):
    wrong, message = {**GREEDY_WRONG, **GREEDY_WRONG_AGAIN}[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_greedy_decode(wrong)


@pytest.mark.parametrize("check, table", [(checks.check_last_real_state, FINAL_WRONG),
                                          (checks.check_greedy_decode, GREEDY_WRONG)],
                         ids=["last_real_state", "greedy_decode"])
def test_each_mistake_gets_its_own_message_never_times_zero(check, table):
    messages = []
    for wrong, _ in table.values():
        with pytest.raises(CheckFailed) as err:
            check(wrong)
        assert "times 0" not in str(err.value)
        messages.append(str(err.value))
    assert len(set(messages)) == len(messages)


@pytest.mark.parametrize("module", [seq2seq_checks])
def test_the_blocked_shortcuts_exist(module):
    """``call`` skips a path that does not resolve, so a renamed function would pass unblocked."""
    for paths in module.FORBID.values():
        for path in paths:
            owner, name = _resolve(path)
            assert hasattr(owner, name), path


def test_checks_leave_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    checks.check_greedy_decode(greedy_right)
    checks.check_last_real_state(final_right)
    assert torch.equal(torch.rand(3), before)
