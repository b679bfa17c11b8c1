"""One seeded training loop for the whole course, and evaluation by source length.

Shapes: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate
from .data import EOS, PAD, Batch, Pair, Vocab, collate
from .utils import generator, progress


@dataclass
class History:
    """What a training run leaves behind: the loss at every step and the time it took."""

    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall-clock seconds of training (evaluations excluded)
    cpu_seconds: float = 0.0  # processor seconds of this process (= wall-clock on one idle thread)
    evals: list[dict] = field(default_factory=list)  # {"step", "seconds", "cpu_seconds", **evaluate(model)}

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10% of steps (less noisy than the last step)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail)


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = PAD,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the non-padding target tokens.

    Shapes: logits (B, T, V), targets (B, T) -> scalar.
    """
    _validate.tensor(logits, "logits", "sequence_loss", dims=3, layout="(B, T, V)")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"sequence_loss expects logits (B, T, V) and targets (B, T), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing)


def _cycle(make_batches: Callable[[torch.Generator], Iterable], g: torch.Generator) -> Iterator:
    while True:
        empty = True
        for batch in make_batches(g):
            empty = False
            yield batch
        if empty:
            raise ValueError("train expects make_batches to yield at least one batch per epoch, got "
                             "no batch")


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    make_batches: Callable[[torch.Generator], Iterable],
    *,
    steps: int,
    lr: float = 1e-3,
    clip: float | None = 1.0,
    schedule: Callable[[int], float] | None = None,
    seed: int = 0,
    desc: str = "training",
    device: torch.device | str | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int | None = None,
) -> History:
    """Train ``model`` for ``steps`` Adam steps and return the loss history.

    ``make_batches(generator)`` yields one epoch of batches, shuffled with the seeded
    generator it is given; epochs repeat until ``steps`` is reached. ``loss_fn(model,
    batch)`` returns a scalar. ``schedule(step)`` multiplies the learning rate (warm-up).
    ``evaluate(model)``, when given, runs in eval mode after every ``eval_every`` steps (and
    after the last); its dict goes to ``history.evals`` with the step and the training time so
    far, which leaves the evaluations out. The same seed gives the same losses on the CPU.
    """
    seed = _validate.seed(seed, "train")
    _validate.positive_int(steps, "steps", "train")
    if evaluate is not None:
        _validate.positive_int(eval_every, "eval_every", "train")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    torch.manual_seed(seed)  # dropout masks
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule is not None else None
    history = History()
    batches = _cycle(make_batches, generator(seed))
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in progress(range(1, steps + 1), desc=desc):
        batch = next(batches)
        batch = batch.to(device) if hasattr(batch, "to") else batch
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        history.lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        history.losses.append(loss.item())
        if evaluate is not None and (step % eval_every == 0 or step == steps):
            history.seconds += time.perf_counter() - start
            history.cpu_seconds += time.process_time() - cpu_start
            model.eval()
            history.evals.append({"step": step, "seconds": history.seconds,
                                  "cpu_seconds": history.cpu_seconds, **evaluate(model)})
            model.train()
            start, cpu_start = time.perf_counter(), time.process_time()
    history.seconds += time.perf_counter() - start
    history.cpu_seconds += time.process_time() - cpu_start
    model.eval()
    return history


@dataclass
class BucketScore:
    """Exact-match and token accuracy of the examples whose source length is in [lo, hi]."""

    lo: int
    hi: int
    n: int
    exact: float
    token: float


def score_predictions(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example exact match and token accuracy of predicted ids against ``tgt_out``.

    A prediction is compared up to the target's ``<eos>`` (included), so stopping early or
    late both count as errors. Shapes: pred (B, L), target (B, T) -> (B,), (B,).
    """
    B, T = target.shape
    if pred.shape[0] != B:
        raise ValueError(f"score_predictions expects pred (B, L) with as many rows as target (B, T), got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[1] < T:  # pad short predictions so they compare as wrong
        pred = F.pad(pred, (0, T - pred.shape[1]), value=PAD)
    pred = pred[:, :T]
    real = target != PAD
    correct = (pred == target) & real
    token = correct.sum(1).float() / real.sum(1).float()
    exact = (correct | ~real).all(1).float()
    return exact, token


@torch.no_grad()
def evaluate_by_length(
    decode: Callable[[Batch], torch.Tensor],
    pairs: Sequence[Pair],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    buckets: Sequence[tuple[int, int]],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[BucketScore]:
    """Score ``decode(batch) -> (B, L) ids`` on ``pairs``, grouped by source length."""
    scores = []
    for lo, hi in buckets:
        chosen = [p for p in pairs if lo <= len(p[0]) <= hi]
        if not chosen:
            raise ValueError(f"evaluate_by_length expects every bucket to hold an example, got none "
                             f"with a source length in [{lo}, {hi}]")
        exact, token = [], []
        for i in range(0, len(chosen), batch_size):
            batch = collate(chosen[i : i + batch_size], src_vocab, tgt_vocab).to(device)
            e, t = score_predictions(decode(batch).cpu(), batch.tgt_out.cpu())
            exact.append(e)
            token.append(t)
        scores.append(BucketScore(lo, hi, len(chosen), torch.cat(exact).mean().item(),
                                  torch.cat(token).mean().item()))
    return scores


def format_scores(scores: Sequence[BucketScore], name: str = "") -> str:
    """A small text table of bucket scores."""
    lines = [f"{name:>12} | length | n    | exact  | token"]
    for s in scores:
        lines.append(f"{'':>12} | {s.lo:>2}-{s.hi:<3} | {s.n:<4} | {s.exact:6.1%} | {s.token:6.1%}")
    return "\n".join(lines)


__all__ = ["History", "train", "sequence_loss", "evaluate_by_length", "score_predictions",
           "BucketScore", "format_scores", "EOS"]
