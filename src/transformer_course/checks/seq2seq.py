"""Checks for solutions/02_seq2seq_bottleneck: the encoder's final state and greedy decoding.

Shapes: B batch, S source length, H hidden size, L decoded length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..data import BOS, EOS, PAD
from ..decoding import greedy_decode
from ..seq2seq import Seq2Seq, Seq2SeqConfig, last_real_state
from ._core import CheckFailed, CheckResult, call, compare, fmt_shape, run_check

__all__ = ["check_last_real_state", "check_greedy_decode"]


def _random_lengths(g: torch.Generator, B: int, S: int) -> torch.Tensor:
    lengths = torch.randint(1, S, (B,), generator=g)  # (B,) every row shorter than S ...
    lengths[torch.randint(0, B, (1,), generator=g)] = S  # ... but one
    return lengths


def _diagnose_final_state(task: str, got: torch.Tensor, outputs: torch.Tensor, lengths: torch.Tensor) -> None:
    """Name the usual wrong indices before a generic comparison."""
    rows = torch.arange(outputs.shape[0])
    same = isinstance(got, torch.Tensor) and got.shape == outputs[:, -1].shape
    if same and torch.allclose(got, last_real_state(outputs, lengths)):
        return
    if same and torch.allclose(got, outputs[:, -1]) and (lengths < outputs.shape[1]).any():
        raise CheckFailed(f"{task}: you returned the last time step, outputs[:, -1]. For a row shorter "
                          "than the batch that is a padding position: take each row's last REAL token, "
                          "outputs[b, lengths[b] - 1].")
    if same and torch.allclose(got, outputs[:, 0]):
        raise CheckFailed(f"{task}: you returned the first time step; the final state is at each row's "
                          "last real token, outputs[b, lengths[b] - 1].")
    short = lengths < outputs.shape[1]
    if same and short.any() and torch.allclose(got[short], outputs[rows[short], lengths[short]]):
        raise CheckFailed(f"{task}: off by one: you took outputs[b, lengths[b]], the first padding "
                          "position. Positions count from 0, so the last real token is at lengths[b] - 1.")


def check_last_real_state(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``fn(outputs (B, S, H), lengths (B,)) -> (B, H)``: the state at each row's last real token."""
    task = "last_real_state"

    def body() -> str:
        g = torch.Generator().manual_seed(202)
        shapes = [(4, 6, 3), (5, 9, 8), (1, 4, 2), (3, 1, 5)]  # (B, S, H)
        for B, S, H in shapes:
            outputs = torch.randn(B, S, H, generator=g)
            lengths = _random_lengths(g, B, S) if S > 1 else torch.ones(B, dtype=torch.long)
            got = call(task, fn, outputs.clone(), lengths.clone())
            _diagnose_final_state(task, got, outputs, lengths)
            compare(task, got, last_real_state(outputs, lengths),
                    what=f"the final states for outputs {fmt_shape(outputs.shape)} and lengths "
                         f"{lengths.tolist()}")
        return f"{len(shapes)} padded batches {', '.join(fmt_shape(s) for s in shapes)}"

    return run_check(task, body)


class _Scripted(nn.Module):
    """A fake model whose next token depends on the token fed back, with <eos> at set steps.

    Row b, fed token x at step t, predicts ``eos_at[b]`` -> <eos>, otherwise a token that
    depends on x, so a loop that does not feed its argmax back gets other tokens. Rows that
    are fed <pad> or <eos> after finishing keep predicting ordinary tokens, so a loop that
    does not pad after <eos> shows it.
    """

    def __init__(self, eos_at: list[int], vocab_size: int = 12):
        super().__init__()
        self.eos_at, self.V = eos_at, vocab_size
        self.fed: list[torch.Tensor] = []

    def start(self, src: torch.Tensor, src_lengths: torch.Tensor) -> int:
        self.fed = []
        return 0

    def step(self, tokens: torch.Tensor, t: int) -> tuple[torch.Tensor, int]:
        if not isinstance(tokens, torch.Tensor) or tokens.shape != (len(self.eos_at),):
            got = fmt_shape(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise CheckFailed(f"greedy_decode: step expects the previous tokens as a ({len(self.eos_at)},) "
                              f"tensor, one per row; it was given {got}.")
        self.fed.append(tokens.clone())
        logits = torch.zeros(len(self.eos_at), self.V)
        for b, stop in enumerate(self.eos_at):
            nxt = EOS if t == stop else 4 + (int(tokens[b]) * 3 + t + b) % (self.V - 4)
            logits[b, nxt] = 2.0
        return logits, t + 1


def _diagnose_greedy(task: str, got: object, expected: torch.Tensor, max_len: int) -> None:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: return a (B, L) tensor of token ids, got {type(got).__name__}")
    if got.dim() != 2 or got.shape[0] != expected.shape[0]:
        raise CheckFailed(f"{task}: the result should have shape (B, L) = ({expected.shape[0]}, L), got "
                          f"{fmt_shape(got.shape)}: stack the tokens of each step along dim 1.")
    if got.dtype != torch.long:
        raise CheckFailed(f"{task}: token ids should be a long tensor (the argmax), got {got.dtype}")
    if (got[:, 0] == BOS).all() and torch.equal(got[:, 1 : expected.shape[1] + 1], expected):
        raise CheckFailed(f"{task}: your output starts with <bos>. <bos> is the first INPUT; the output "
                          "starts with the first predicted token.")
    if got.shape[1] > max_len:
        raise CheckFailed(f"{task}: you returned {got.shape[1]} tokens per row; at most max_len={max_len}.")
    L = min(got.shape[1], expected.shape[1])
    ended = torch.cumsum(expected[:, :L] == EOS, 1) - (expected[:, :L] == EOS).long() > 0  # after <eos>
    if torch.equal(got[:, :L][~ended], expected[:, :L][~ended]):
        if not torch.equal(got[:, :L][ended], expected[:, :L][ended]):
            raise CheckFailed(f"{task}: after a row emits <eos>, every later position should be <pad> "
                              f"(id {PAD}); yours keeps producing tokens. Track which rows are finished.")
        if got.shape[1] > expected.shape[1]:
            raise CheckFailed(f"{task}: you returned {got.shape[1]} columns, but every row had emitted "
                              f"<eos> after {expected.shape[1]}: stop the loop once all rows are finished.")
        if got.shape[1] < expected.shape[1]:
            raise CheckFailed(f"{task}: you stopped after {got.shape[1]} steps, but some rows had not "
                              f"emitted <eos> yet (they need {expected.shape[1]}): stop only when ALL rows "
                              "are finished, or after max_len steps.")


def _check_fed(task: str, model: _Scripted, expected: torch.Tensor) -> None:
    if not model.fed:
        raise CheckFailed(f"{task}: model.step was never called.")
    if not (model.fed[0] == BOS).all():
        raise CheckFailed(f"{task}: the first input to model.step must be <bos> (id {BOS}) in every row; "
                          f"you fed {model.fed[0].tolist()}.")
    for t in range(1, min(len(model.fed), expected.shape[1])):
        live = ~(torch.cumsum(expected[:, :t] == EOS, 1) > 0).any(1)  # rows not finished before step t
        if not torch.equal(model.fed[t][live], expected[live, t - 1]):
            constant = all(torch.equal(f, model.fed[0]) for f in model.fed)
            hint = " (you feed the same token at every step)" if constant else ""
            raise CheckFailed(f"{task}: at step {t} the input should be the token predicted at step "
                              f"{t - 1}; feed the argmax back into the next step{hint}.")


def check_greedy_decode(fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Check ``fn(model, src, src_lengths, max_len) -> (B, L)``: greedy decoding with model.start/step."""
    task = "greedy_decode"

    def body() -> str:
        src, lengths = torch.full((4, 5), 7), torch.full((4,), 5)
        cases = [([2, 0, 4, 1], 10), ([3, 3, 3, 3], 10), ([1, 20, 0, 2], 6), ([5, 2, 6, 0], 3)]
        for eos_at, max_len in cases:
            model = _Scripted(eos_at)
            expected = greedy_decode(model, src, lengths, max_len)
            model = _Scripted(eos_at)
            got = call(task, fn, model, src.clone(), lengths.clone(), max_len)
            _diagnose_greedy(task, got, expected, max_len)
            _check_fed(task, model, expected)
            compare(task, got, expected, what=f"the decoded ids (rows end at steps {eos_at}, "
                                              f"max_len={max_len})")
        g = torch.Generator().manual_seed(22)
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(22)
        real = Seq2Seq.from_config(Seq2SeqConfig(12, 12, 8, 16)).eval()
        torch.random.set_rng_state(torch_state)
        with torch.no_grad():
            real.decoder.out.bias[EOS] += 1.5
        src = torch.randint(4, 12, (6, 7), generator=g)
        lengths = torch.tensor([7, 3, 5, 1, 7, 2])
        expected = greedy_decode(real, src, lengths, 9)
        with torch.no_grad():
            got = call(task, fn, real, src.clone(), lengths.clone(), 9)
        _diagnose_greedy(task, got, expected, 9)
        compare(task, got, expected, what="the decoded ids of a small random Seq2Seq")
        return f"{len(cases)} scripted models (rows ending at different steps, max_len cut-offs), a Seq2Seq"

    return run_check(task, body)
