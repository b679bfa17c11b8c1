"""Checks for solutions/02_seq2seq_bottleneck: the encoder's final state and greedy decoding.

Every call of the learner's function goes through ``call`` (in-place changes of the inputs
are rejected, and the package's own answer to the task is switched off during the call), and
every comparison is dtype-safe (``close``, ``compare``): an answer computed in float64 inside
and cast back passes, one that returns float64 for float32 inputs is told so.

Shapes: B batch, S source length, H hidden size, L decoded length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..data import BOS, EOS, PAD
from ..decoding import greedy_decode
from ..seq2seq import Seq2Seq, Seq2SeqConfig, last_real_state
from ._core import CheckFailed, CheckResult, call, close, compare, fmt_shape, run_check

__all__ = ["check_last_real_state", "check_greedy_decode"]

# The package's own answers to the tasks, switched off while the learner's function runs.
FORBID = {"last_real_state": ("transformer_course.seq2seq:last_real_state",),
          "greedy_decode": ("transformer_course.decoding:greedy_decode",)}


def _random_lengths(g: torch.Generator, B: int, S: int, full: bool = True) -> torch.Tensor:
    """Lengths in 1..S-1, one row of length S when ``full`` (the longest row fills the width)."""
    lengths = torch.randint(1, S, (B,), generator=g)  # (B,) every row shorter than S ...
    if full:
        lengths[torch.randint(0, B, (1,), generator=g)] = S  # ... but one
    return lengths


def _diagnose_final_state(task: str, got: object, outputs: torch.Tensor, lengths: torch.Tensor) -> None:
    """Name the usual wrong indices before a generic comparison (values compared dtype-safely)."""
    rows = torch.arange(outputs.shape[0])
    if close(got, last_real_state(outputs, lengths)):
        return
    short = lengths < outputs.shape[1]
    longest = int(lengths.max())
    if close(got, outputs[:, -1]) and short.any():
        raise CheckFailed(f"{task}: you returned the last time step, outputs[:, -1]. For a row shorter "
                          "than the batch that is a padding position: take each row's last REAL token, "
                          "outputs[b, lengths[b] - 1].")
    if close(got, outputs[:, longest - 1]) and (lengths < longest).any():
        raise CheckFailed(f"{task}: you took the same position for every row, the longest row's last "
                          f"token (lengths.max() - 1 = {longest - 1} for lengths {lengths.tolist()}); each "
                          "row has its own last real token, outputs[b, lengths[b] - 1]: index the rows "
                          "with torch.arange(B) and the positions with lengths - 1.")
    if close(got, outputs[:, 0]):
        raise CheckFailed(f"{task}: you returned the first time step; the final state is at each row's "
                          "last real token, outputs[b, lengths[b] - 1].")
    if (short.any() and isinstance(got, torch.Tensor) and got.shape == outputs[:, 0].shape
            and close(got[short], outputs[rows[short], lengths[short]])):
        raise CheckFailed(f"{task}: off by one: you took outputs[b, lengths[b]], the first padding "
                          "position. Positions count from 0, so the last real token is at lengths[b] - 1.")
    real = torch.arange(outputs.shape[1]) < lengths[:, None]  # (B, S)
    if close(got, (outputs * real[..., None]).sum(1) / lengths[:, None]):
        raise CheckFailed(f"{task}: you averaged the states over the real tokens; the final state is ONE "
                          "state, the one after each row's last real token, outputs[b, lengths[b] - 1].")
    if close(got, outputs.mean(1)):
        raise CheckFailed(f"{task}: you averaged the states over all positions, padding included; the "
                          "final state is the one after each row's last real token, "
                          "outputs[b, lengths[b] - 1].")


def _check_final_state_gradient(task: str, fn: Callable, outputs: torch.Tensor, lengths: torch.Tensor,
                                g: torch.Generator) -> None:
    """The encoder is trained through the final state: d loss / d outputs must match the reference's.

    The learner's function runs again on outputs that require grad; the gradient of
    (result * u).sum(), for a random u, is u at each row's last real position and 0 elsewhere.
    """
    why = ("The values are right, but the encoder is trained through this function: the decoder's loss "
           "backpropagates through the final state into the encoder's GRU.")
    outputs_in = outputs.clone().requires_grad_(True)
    got = call(task, fn, outputs_in, lengths.clone(), forbid=FORBID[task])
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        raise CheckFailed(f"{task}: your result carries no gradient: it is cut from the graph (a .detach(), "
                          ".data, torch.no_grad(), numpy or .tolist() on the way). " + why + " Index "
                          "outputs directly, without cutting the graph.")
    up = torch.randn(got.shape, generator=g)  # (B, H)
    (grad,) = torch.autograd.grad((got * up).sum(), outputs_in, allow_unused=True)
    expected = torch.zeros_like(outputs)  # (B, S, H)
    expected[torch.arange(outputs.shape[0]), lengths - 1] = up
    if grad is None or not close(grad, expected):
        raise CheckFailed(f"{task}: the gradient of your result with respect to outputs differs from the "
                          "reference (it should reach exactly each row's last real state): part of the "
                          "computation is cut from the graph (a .detach() or .data somewhere?). " + why)


def check_last_real_state(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``fn(outputs (B, S, H), lengths (B,)) -> (B, H)``: the state at each row's last real token."""
    task = "last_real_state"

    def body() -> str:
        g = torch.Generator().manual_seed(202)
        # (B, S, H, does the longest row fill the width): the first batch is padded past its
        # longest row, as a batch padded to a fixed width is, so outputs[:, -1] and
        # outputs[:, lengths.max() - 1] differ there
        shapes = [(4, 7, 3, False), (4, 6, 3, True), (5, 9, 8, True), (1, 4, 2, True), (3, 1, 5, True)]
        for B, S, H, full in shapes:
            outputs = torch.randn(B, S, H, generator=g)
            lengths = _random_lengths(g, B, S, full) if S > 1 else torch.ones(B, dtype=torch.long)
            got = call(task, fn, outputs.clone(), lengths.clone(), forbid=FORBID[task])
            _diagnose_final_state(task, got, outputs, lengths)
            compare(task, got, last_real_state(outputs, lengths),
                    what=f"the tensor of final states for outputs {fmt_shape(outputs.shape)} and lengths "
                         f"{lengths.tolist()}")
            _check_final_state_gradient(task, fn, outputs, lengths, g)
        return (f"{len(shapes)} padded batches {', '.join(fmt_shape(s[:3]) for s in shapes)}, one padded "
                "past its longest row: values and gradients")

    return run_check(task, body)


# ----------------------------------------------------------------------------- greedy decoding

class _Recorder(nn.Module):
    """A model with ``start`` / ``step`` that records how the learner's loop drives it.

    Per step t: the tokens fed in (``fed``), the argmax of the logits it returned (``preds``),
    whether gradients were on (``grad``), and whether it was given the state that ``start`` or
    the previous step returned (``carried``); and how often ``start`` was called (``starts``).
    Subclasses compute the state and the logits (``_start``, ``_step``).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.B = batch_size
        self.starts = 0
        self.fed: list[torch.Tensor] = []
        self.preds: list[torch.Tensor] = []
        self.grad: list[bool] = []
        self.carried: list[bool] = []
        self._last: object = None

    def start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> object:
        self.starts += 1
        self._last = self._start(src, src_lengths)
        return self._last

    def step(self, tokens: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        if not isinstance(tokens, torch.Tensor) or tokens.shape != (self.B,):
            got = fmt_shape(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise TypeError(f"model.step expects the previous tokens as a ({self.B},) tensor, one per "
                            f"row; it was given {got}")
        self.carried.append(state is self._last)
        self.grad.append(torch.is_grad_enabled())
        self.fed.append(tokens.detach().clone())
        logits, self._last = self._step(tokens, state)
        self.preds.append(logits.detach().argmax(-1))
        return logits, self._last

    def _start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> object:
        raise NotImplementedError

    def _step(self, tokens: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        raise NotImplementedError


class _Time:
    """The scripted model's state: the index of the next step."""

    def __init__(self, t: int):
        self.t = t


class _Scripted(_Recorder):
    """A fake model whose next token depends on the token fed back, with <eos> at set steps.

    Row b, fed token x at step t, predicts <eos> at step ``eos_at[b]``, <pad> at the steps
    ``pad_at[b]`` (an unfinished row that predicts <pad>: it is not finished), otherwise a
    token that depends on x, so a loop that does not feed its argmax back gets other tokens.
    Rows that are fed <pad> or <eos> after finishing keep predicting ordinary tokens, so a
    loop that does not pad after <eos> shows it.
    """

    def __init__(self, eos_at: list[int], pad_at: list[list[int]] | None = None, vocab_size: int = 12):
        super().__init__(len(eos_at))
        self.eos_at, self.V = eos_at, vocab_size
        self.pad_at = pad_at or [[] for _ in eos_at]

    def __repr__(self) -> str:
        return "model"

    def _start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> _Time:
        return _Time(0)

    def _step(self, tokens: torch.Tensor, state: object) -> tuple[torch.Tensor, _Time]:
        if not isinstance(state, _Time):
            raise TypeError("model.step expects the state returned by model.start or by the previous "
                            f"model.step; it was given {type(state).__name__}")
        t = state.t
        logits = torch.zeros(self.B, self.V)
        for b, stop in enumerate(self.eos_at):
            if t == stop or t in self.pad_at[b]:
                nxt = EOS if t == stop else PAD
            else:
                nxt = 4 + (int(tokens[b]) * 3 + t + b) % (self.V - 4)
            logits[b, nxt] = 2.0
        return logits, _Time(t + 1)


class _Recording(_Recorder):
    """A real model with ``start`` / ``step``, recorded."""

    def __init__(self, model: nn.Module, batch_size: int):
        super().__init__(batch_size)
        self.model = model

    def __repr__(self) -> str:
        return f"model ({type(self.model).__name__})"

    def _start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> object:
        return self.model.start(src, src_lengths)

    def _step(self, tokens: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        return self.model.step(tokens, state)


STOP_RULE = ("Stop when every row has emitted <eos> (track finished rows), not when every current token "
             "is <eos> or <pad>: a row that predicts <pad> has not finished.")


def _diagnose_result(task: str, got: object, B: int) -> torch.Tensor:
    """``got`` as a (B, L) int64 tensor, or CheckFailed naming what it is instead."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: return a (B, L) tensor of token ids, got {type(got).__name__}")
    if got.dim() != 2 or got.shape[0] != B:
        raise CheckFailed(f"{task}: the result should have shape (B, L) = ({B}, L), got "
                          f"{fmt_shape(got.shape)}: stack the tokens of each step along dim 1.")
    if got.shape[1] == 0:
        raise CheckFailed(f"{task}: your result has no columns: keep each step's token (B,) and stack "
                          "them along dim 1.")
    if got.dtype.is_floating_point or got.dtype.is_complex or got.dtype == torch.bool:
        raise CheckFailed(f"{task}: token ids should be an integer (long) tensor, the argmax; got "
                          f"{str(got.dtype).removeprefix('torch.')}.")
    if got.dtype != torch.long:
        raise CheckFailed(f"{task}: token ids should be a long (int64) tensor, as the task asks and as "
                          "argmax returns them (cross-entropy, for one, takes its targets as int64); yours "
                          f"is {str(got.dtype).removeprefix('torch.')}: drop the conversion, or end with "
                          ".long().")
    return got


def _diagnose_driving(task: str, model: _Recorder, max_len: int) -> None:
    """How the loop drove the model: start once, carry the state, begin with <bos>, max_len steps."""
    if model.starts != 1:
        raise CheckFailed(f"{task}: you called model.start {model.starts} times; call it once, before the "
                          "loop: it encodes the source and returns the first state, and each model.step "
                          "returns the state for the next step (calling model.start again starts the "
                          "decoder over).")
    if not model.fed:
        raise CheckFailed(f"{task}: model.step was never called.")
    if not all(model.carried):
        t = model.carried.index(False)
        raise CheckFailed(f"{task}: at step {t} you passed model.step a state other than the one the "
                          f"{'previous step' if t else 'model.start'} returned; carry it on: "
                          "`logits, state = model.step(tokens, state)`.")
    if not (model.fed[0] == BOS).all():
        raise CheckFailed(f"{task}: the first input to model.step must be <bos> (id {BOS}) in every row; "
                          f"you fed {model.fed[0].tolist()}.")
    if len(model.fed) > max_len:
        raise CheckFailed(f"{task}: you called model.step {len(model.fed)} times; at most max_len={max_len}.")


def _diagnose_steps(task: str, got: torch.Tensor, model: _Recorder) -> None:
    """Step by step: each live row's token is the argmax and is fed back; finished rows get <pad>."""
    preds = torch.stack(model.preds, 1)  # (B, n) the argmax of each step's logits
    if (got[:, 0] == BOS).all() and not (preds[:, 0] == BOS).all():
        raise CheckFailed(f"{task}: your output starts with <bos>. <bos> is the first INPUT; the output "
                          "starts with the first predicted token.")
    constant = all(torch.equal(f.long(), model.fed[0].long()) for f in model.fed)
    for t in range(min(len(model.fed), got.shape[1])):
        live = ~(preds[:, :t] == EOS).any(1)  # (B,) rows that had not emitted <eos> before step t
        if t and not torch.equal(model.fed[t][live].long(), preds[live, t - 1]):
            if torch.equal(model.fed[t][live].long(), preds[live, t - 1] - 1):
                raise CheckFailed(f"{task}: at step {t} you fed back the argmax minus 1: did you take "
                                  "the argmax of a slice such as logits[:, 1:]? Its indices count from "
                                  "the slice's start; take the argmax over the whole vocabulary.")
            hint = " (you feed the same token at every step)" if constant else ""
            raise CheckFailed(f"{task}: at step {t} the input should be the token predicted at step "
                              f"{t - 1}; feed the argmax back into the next step{hint}.")
        mine, best = got[live, t], preds[live, t]
        if not torch.equal(mine, best):
            if torch.equal(mine, best - 1):
                raise CheckFailed(f"{task}: at step {t} your tokens are the argmax minus 1: did you take "
                                  "the argmax of a slice such as logits[:, 1:]? Its indices count from "
                                  "the slice's start; take the argmax over the whole vocabulary.")
            if torch.equal(mine[best != EOS], best[best != EOS]) and (mine[best == EOS] == PAD).all():
                raise CheckFailed(f"{task}: at step {t} you wrote <pad> where a row emitted <eos>: keep "
                                  "each row's <eos>, and pad only the positions after it.")
            differ = mine != best
            padded_early = (preds[live][differ, :t] == PAD).any(1)  # those rows had predicted <pad> before
            if (mine[differ] == PAD).all() and padded_early.all():
                raise CheckFailed(f"{task}: at step {t} you padded a row that had predicted <pad> but not "
                                  "<eos>: only <eos> finishes a row. " + STOP_RULE)
            raise CheckFailed(f"{task}: at step {t} your tokens are not the argmax of the logits "
                              f"model.step returned (in the rows not finished yet, yours {mine.tolist()}, "
                              f"the argmax {best.tolist()}): greedy decoding takes logits.argmax(-1), the "
                              "most likely token.")
        after = got[~live, t]  # the positions after each finished row's <eos>
        if not (after == PAD).all() and (after[after != PAD] == EOS).all():
            raise CheckFailed(f"{task}: after <eos>, fill with <pad> (id {PAD}), not <eos>: at step {t} you "
                              "wrote <eos> after a row's <eos>. Each row keeps one <eos>, then <pad>.")
        if not (after == PAD).all():
            raise CheckFailed(f"{task}: after a row emits <eos>, every later position should be <pad> "
                              f"(id {PAD}); yours keeps producing tokens. Track which rows are finished.")


def _diagnose_length(task: str, got: torch.Tensor, model: _Recorder, expected: torch.Tensor,
                     max_len: int) -> None:
    """The number of columns returned (and of steps run, to say why they are too few or too many).

    Only the result counts: a loop that calls model.step once more after every row has finished,
    but returns the right columns, passes.
    """
    steps, needed, L = len(model.fed), expected.shape[1], got.shape[1]
    if L > max_len:
        raise CheckFailed(f"{task}: you returned {L} tokens per row; at most max_len={max_len}.")
    if L < needed:
        if steps > L:
            raise CheckFailed(f"{task}: you called model.step {steps} times but returned {L} columns: keep "
                              "every step's token, the last step's too, before you leave the loop.")
        unfinished = ~(got == EOS).any(1)  # (B,) rows that have not emitted <eos>
        if ((got[:, -1] == EOS) | (got[:, -1] == PAD)).all() and (got[unfinished, -1] == PAD).any():
            raise CheckFailed(f"{task}: you stopped after {steps} step{'s' if steps > 1 else ''}, when every "
                              "token of the step was <eos> or <pad>, but a row that predicted <pad> had "
                              f"not emitted <eos> yet (this batch needs {needed} steps). " + STOP_RULE)
        if steps == max_len - 1:
            raise CheckFailed(f"{task}: you ran {steps} steps (max_len - 1), but some rows had not "
                              f"emitted <eos> yet and max_len={max_len} allows {max_len} steps: loop over "
                              "range(max_len).")
        raise CheckFailed(f"{task}: you stopped after {steps} step{'s' if steps > 1 else ''}, but some rows "
                          f"had not emitted <eos> yet (they need {needed}): stop only when ALL rows are "
                          "finished, or after max_len steps.")
    if L > needed:
        if steps > needed:
            raise CheckFailed(f"{task}: you ran {steps} steps, but every row had emitted <eos> after "
                              f"{needed}: stop the loop once all rows are finished.")
        raise CheckFailed(f"{task}: you ran {steps} steps but returned {L} columns: return one column per "
                          "step (cut the unused columns off).")


def _check_decoding(task: str, fn: Callable, model: _Recorder, src: torch.Tensor, lengths: torch.Tensor,
                    max_len: int, expected: torch.Tensor, what: str) -> None:
    got = call(task, fn, model, src.clone(), lengths.clone(), max_len, forbid=FORBID[task])
    got = _diagnose_result(task, got, src.shape[0])
    _diagnose_driving(task, model, max_len)
    _diagnose_steps(task, got, model)
    _diagnose_length(task, got, model, expected, max_len)
    compare(task, got, expected, what=what)
    if any(model.grad):
        raise CheckFailed(f"{task}: your tokens are right, but model.step ran with gradients on: wrap the "
                          "loop in `with torch.no_grad():` (or decorate the function with "
                          "@torch.no_grad()). Decoding trains nothing, and with gradients on every step "
                          "keeps its computation graph in memory.")


def _padded_source(g: torch.Generator, B: int, S: int, V: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids (B, S) as a collate batch has them: real ids, then <pad> past each row's length."""
    lengths = _random_lengths(g, B, S)  # (B,)
    src = torch.randint(4, V, (B, S), generator=g)  # (B, S) no special tokens
    return src.masked_fill(torch.arange(S) >= lengths[:, None], PAD), lengths


def check_greedy_decode(fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Check ``fn(model, src, src_lengths, max_len) -> (B, L)``: greedy decoding with model.start/step."""
    task = "greedy_decode"

    def body() -> str:
        g = torch.Generator().manual_seed(22)
        # (the step at which each row emits <eos>, max_len, source width, the steps at which each
        # row predicts <pad> before its <eos>): finished rows, max_len cut-offs, a source narrower
        # than the output; unfinished rows that predict <pad>: while other rows go on, while every
        # other row is finished, at the step another row emits <eos>
        cases = [([2, 0, 4, 1], 10, 6, None), ([3, 3, 3, 3], 10, 3, None), ([1, 20, 0, 2], 6, 8, None),
                 ([5, 2, 6, 0], 3, 5, None), ([3, 5, 2], 8, 5, [[1], [], []]),
                 ([0, 4, 1], 7, 4, [[], [2], []]), ([2, 0], 6, 3, [[0], []])]
        for eos_at, max_len, S, pad_at in cases:
            src, lengths = _padded_source(g, len(eos_at), S, 12)
            expected = greedy_decode(_Scripted(eos_at, pad_at), src, lengths, max_len)
            _check_decoding(task, fn, _Scripted(eos_at, pad_at), src, lengths, max_len, expected,
                            f"the tensor of decoded ids (rows end at steps {eos_at}, max_len={max_len})")
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(22)
        real = Seq2Seq.from_config(Seq2SeqConfig(12, 12, 8, 16)).eval()
        torch.random.set_rng_state(torch_state)
        with torch.no_grad():
            real.decoder.out.bias[EOS] += 1.5
        src = torch.randint(4, 12, (6, 7), generator=g)  # (6, 7)
        lengths = torch.tensor([7, 3, 5, 1, 7, 2])
        src = src.masked_fill(torch.arange(7) >= lengths[:, None], PAD)
        expected = greedy_decode(real, src, lengths, 9)
        _check_decoding(task, fn, _Recording(real, 6), src, lengths, 9, expected,
                        "the tensor of decoded ids of a small random Seq2Seq")
        return (f"{len(cases)} scripted models (rows ending at different steps, max_len cut-offs, padded "
                "sources, unfinished rows that predict <pad>), a Seq2Seq")

    return run_check(task, body)
