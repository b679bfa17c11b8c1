"""Notebook 08's race: three translation models of matched size, trained alike, on the clock.

The models: ``seq2seq`` (notebook 02, one context vector), ``seq2seq + attention`` (notebook
03, Bahdanau's additive attention with the keys projected once per source) and the
``Transformer`` (notebook 08). The GRUs' hidden size is chosen so that their parameter count
is as close as possible to the Transformer's. Every model gets the same recipe: Adam with a
linear warm-up over the first 5% of its steps (then constant), label smoothing 0.1, gradient
clipping at 1, no dropout, and a learning rate picked from the same grid on a validation split.

``bench/race.py`` runs the whole sweep (both length regimes, every learning rate, three seeds)
and writes ``bench/race.json``; notebook 08 plots it and re-runs one seed of the short regime.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import _validate, korean
from ..attention import AdditiveAttention
from ..data import Batch, Pair, Vocab, collate, make_pairs, task_vocabs
from ..decoding import greedy_decode
from ..seq2seq import Seq2Seq, Seq2SeqConfig, length_grouped_batches
from ..train import History, score_predictions, sequence_loss, train
from ..transformer import Transformer, TransformerConfig
from .translation import xavier_init_

MODELS = ("seq2seq", "seq2seq + attention", "Transformer")
LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)  # the grid every model is tuned on
WARMUP_FRACTION = 0.05
SMOOTHING = 0.1


@dataclass(frozen=True)
class Regime:
    """One setting of the race: sentence lengths, data sizes, batch and step budget."""

    name: str
    min_len: int      # English words
    max_len: int
    n_train: int
    n_valid: int      # for picking the learning rate
    n_test: int       # for the learning curves and the verdict
    batch_size: int
    steps: int        # every model trains for this many steps
    eval_every: int   # steps between two evaluations on the test set


REGIMES = {
    "short": Regime("short", 5, 16, 6000, 200, 300, 128, 600, 50),
    "long": Regime("long", 30, 40, 6000, 200, 300, 64, 600, 50),
}


@dataclass(frozen=True)
class RaceData:
    """The sentences of one regime and seed, and the fixed vocabularies of the task."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    src_vocab: Vocab
    tgt_vocab: Vocab
    max_tokens: int  # the longest source or target sequence (with <bos>/<eos>), for the Transformer


def race_data(regime: Regime, seed: int) -> RaceData:
    """Training, validation and test sentences of ``regime``, each drawn with its own seed."""
    _validate.seed(seed, "race_data")
    src_vocab, tgt_vocab = task_vocabs("translate")
    lo, hi = regime.min_len, regime.max_len
    splits = [make_pairs("translate", n, lo, hi, seed=seed * 3 + k)
              for k, n in enumerate((regime.n_train, regime.n_valid, regime.n_test))]
    longest = max(max(len(s), len(t)) for split in splits for s, t in split) + 1  # <bos> / <eos>
    return RaceData(*splits, src_vocab, tgt_vocab, longest + 8)


# ----------------------------------------------------------------------------- the three models

def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def transformer_model(src_vocab: Vocab, tgt_vocab: Vocab, max_len: int) -> Transformer:
    """The race's Transformer: notebook 08's sizes (D = 64, 4 heads, 2 + 2 layers), no dropout."""
    config = TransformerConfig(len(src_vocab), len(tgt_vocab), d_model=64, n_heads=4, d_ff=128,
                               n_layers=2, max_len=max_len, dropout=0.0)
    return xavier_init_(Transformer(config))


def gru_model(src_vocab: Vocab, tgt_vocab: Vocab, hidden_size: int, attention: bool) -> Seq2Seq:
    """A GRU encoder-decoder with 64-wide embeddings, with or without additive attention."""
    config = Seq2SeqConfig(len(src_vocab), len(tgt_vocab), d_model=64, hidden_size=hidden_size)
    return Seq2Seq.from_config(config, AdditiveAttention(hidden_size) if attention else None)


def matched_hidden_size(src_vocab: Vocab, tgt_vocab: Vocab, attention: bool, target: int) -> int:
    """The GRU hidden size (a multiple of 8) whose model has the parameter count closest to ``target``."""
    _validate.positive_int(target, "target", "matched_hidden_size")
    sizes = range(8, 513, 8)
    return min(sizes, key=lambda h: abs(count_parameters(gru_model(src_vocab, tgt_vocab, h, attention))
                                        - target))


def build_model(name: str, data: RaceData, seed: int) -> nn.Module:
    """Model ``name`` for ``data``, initialised from ``seed``; GRUs matched to the Transformer's size."""
    _validate.one_of(name, MODELS, "name", "build_model")
    target = count_parameters(transformer_model(data.src_vocab, data.tgt_vocab, data.max_tokens))
    torch.manual_seed(seed)
    if name == "Transformer":
        return transformer_model(data.src_vocab, data.tgt_vocab, data.max_tokens)
    attention = name == "seq2seq + attention"
    hidden = matched_hidden_size(data.src_vocab, data.tgt_vocab, attention, target)
    torch.manual_seed(seed)
    return gru_model(data.src_vocab, data.tgt_vocab, hidden, attention)


def race_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Label-smoothed teacher-forced cross-entropy, the same for every model."""
    if isinstance(model, Transformer):
        logits = model(batch.src, batch.tgt_in)
    else:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    return sequence_loss(logits, batch.tgt_out, label_smoothing=SMOOTHING)


def warmup_constant(steps: int, fraction: float = WARMUP_FRACTION) -> Callable[[int], float]:
    """A learning-rate factor that rises linearly over ``fraction`` of ``steps``, then stays at 1."""
    _validate.positive_int(steps, "steps", "warmup_constant")
    warmup = max(1, round(fraction * steps))
    return lambda step: min(1.0, (step + 1) / warmup)


def sequential_steps(name: str, n_src: float, n_tgt: float, n_layers: int = 2) -> dict[str, float]:
    """Operations that must wait for the previous one, counted one way for every model.

    Each layer that must wait is a step: a recurrent layer over n positions is n steps, a
    layer that sees all positions at once is 1. Training runs under teacher forcing; at
    inference the decoder writes one token after the other. Returns {"train": ..., "infer": ...}.
    """
    _validate.one_of(name, MODELS, "name", "sequential_steps")
    if name == "Transformer":
        return {"train": 2 * n_layers, "infer": n_layers + n_tgt * n_layers}
    return {"train": n_src + n_tgt, "infer": n_src + n_tgt}


# ----------------------------------------------------------------------------- scoring

def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu's, character n-grams up to 6, beta 2), in [0, 100]."""
    from sacrebleu.metrics import CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"chrf expects as many hypotheses as references, got {len(hypotheses)} and "
                         f"{len(references)}")
    return CHRF().corpus_score(list(hypotheses), [list(references)]).score


@torch.no_grad()
def translation_scores(model: nn.Module, pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
                       batch_size: int = 300) -> dict[str, float]:
    """Greedy decoding of ``pairs``: exact match (a fraction) and chrF on the joined Korean."""
    exact, hyps, refs = [], [], []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        batch = collate(chunk, src_vocab, tgt_vocab)
        ids = greedy_decode(model, batch.src, batch.src_lengths, max_len=batch.tgt_out.shape[1] + 4)
        exact.append(score_predictions(ids, batch.tgt_out)[0])
        hyps += [korean.join(tgt_vocab.decode(row)) for row in ids]
        refs += [korean.join(t) for _, t in chunk]
    return {"exact": torch.cat(exact).mean().item(), "chrf": chrf(hyps, refs)}


# ----------------------------------------------------------------------------- one run

@dataclass
class RunResult:
    """One model trained once: its settings, size, learning curve and final validation score."""

    model: str
    regime: str
    seed: int
    lr: float
    params: int
    steps: int
    curve: list[dict]  # per evaluation: step, seconds, cpu_seconds, exact, chrf (test set)
    valid: dict  # exact, chrf on the validation split after the last step
    seconds: float
    cpu_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def run_one(name: str, regime: Regime, seed: int, lr: float, data: RaceData | None = None,
            steps: int | None = None, progress_desc: str | None = None
            ) -> tuple[RunResult, nn.Module, History]:
    """Train model ``name`` on ``regime`` with learning rate ``lr``; score it on the test set as it trains.

    ``steps`` stops the run early; the schedule is always the regime's, so a shorter run is the
    beginning of the full one, step for step (notebook 08 re-runs the first steps of the sweep).
    """
    _validate.one_of(name, MODELS, "name", "run_one")
    data = race_data(regime, seed) if data is None else data
    steps = regime.steps if steps is None else _validate.positive_int(steps, "steps", "run_one")
    model = build_model(name, data, seed)

    def make_batches(g: torch.Generator):
        return length_grouped_batches(data.train, data.src_vocab, data.tgt_vocab, regime.batch_size, g)

    def evaluate(m: nn.Module) -> dict:
        return translation_scores(m, data.test, data.src_vocab, data.tgt_vocab)

    history = train(model, race_loss, make_batches, steps=steps, lr=lr,
                    schedule=warmup_constant(regime.steps), seed=seed,
                    desc=progress_desc or f"{name}, lr {lr:g}", evaluate=evaluate,
                    eval_every=regime.eval_every)
    valid = translation_scores(model, data.valid, data.src_vocab, data.tgt_vocab)
    result = RunResult(name, regime.name, seed, lr, count_parameters(model), steps, history.evals, valid,
                       history.seconds, history.cpu_seconds)
    return result, model, history


# ----------------------------------------------------------------------------- seconds per step

def random_batch(src_vocab: Vocab, tgt_vocab: Vocab, batch_size: int, length: int, seed: int) -> Batch:
    """A batch of random tokens, every source and target exactly ``length`` tokens long."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, len(src_vocab), (batch_size, length), generator=g)
    tgt = torch.randint(4, len(tgt_vocab), (batch_size, length + 1), generator=g)
    return Batch(src, torch.full((batch_size,), length), tgt[:, :-1], tgt[:, 1:])


def seconds_per_step(name: str, length: int, batch_size: int, repeats: int = 5, seed: int = 0,
                     clock: Callable[[], float] = time.process_time) -> float:
    """Median seconds of one training step (forward, backward, Adam) on sentences of ``length`` tokens.

    The models are the race's (sinusoidal positions: the size does not depend on ``length``).
    The default clock is the process's CPU time, which on one thread is the wall-clock time of
    an idle core; pass ``time.perf_counter`` for wall-clock time with several threads.
    """
    _validate.one_of(name, MODELS, "name", "seconds_per_step")
    for arg, value in (("length", length), ("batch_size", batch_size), ("repeats", repeats)):
        _validate.positive_int(value, arg, "seconds_per_step")
    src_vocab, tgt_vocab = task_vocabs("translate")
    data = RaceData([], [], [], src_vocab, tgt_vocab, length + 2)
    model = build_model(name, data, seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(src_vocab, tgt_vocab, batch_size, length, seed)
    times = []
    for i in range(repeats + 1):  # the first step warms up the allocator and is dropped
        start = clock()
        loss = race_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(clock() - start)
    return sorted(times)[len(times) // 2]


# ----------------------------------------------------------------------------- reading a sweep

REPORT = Path(__file__).resolve().parent.parent / "race_results.json"
REPORT_ENV = "COURSE_RACE"  # a pilot's race_results.json instead of the committed one


def load_report(path: str | Path | None = None) -> dict:
    """The committed sweep of ``make race`` (or the file named by $COURSE_RACE, or ``path``)."""
    path = Path(path or os.environ.get(REPORT_ENV) or REPORT)
    if not path.exists():
        raise FileNotFoundError(f"load_report expects the race's results at {path}; run `make race` first")
    return json.loads(path.read_text())


def final_runs(report: dict, regime: str) -> dict[str, list[dict]]:
    """Per model, the runs of ``regime`` with the learning rate picked on validation (one per seed)."""
    chosen = report["best_lr"][regime]
    return {name: [r for r in report["runs"] if r["model"] == name and r["regime"] == regime
                   and r["lr"] == chosen[name] and r["seed"] in report["seeds"]] for name in MODELS}


def verdict(report: dict, regime: str, level: float) -> dict[str, dict]:
    """The race's verdict on ``regime``, per model and per seed (lists over the seeds).

    Exact match at equal training time (the shortest run of the attention GRU and the Transformer),
    at half the steps and at the end, chrF at the end, training seconds to reach ``level``
    exact match (inf if never), seconds per step, and sequential steps per training sentence.
    """
    runs = final_runs(report, regime)
    # the shorter of the two contenders' runs; seq2seq without attention, faster and weaker,
    # counts with its final score once its run has ended
    equal_time = min(r["cpu_seconds"] for name in ("seq2seq + attention", "Transformer") for r in runs[name])
    steps = report["regimes"][regime]["steps"]
    return {name: {
        "params": rs[0]["params"], "lr": rs[0]["lr"], "equal_time": equal_time,
        "exact_at_equal_time": [at_seconds(r["curve"], equal_time) for r in rs],
        "exact_at_half_steps": [at_step(r["curve"], steps // 2) for r in rs],
        "exact_at_end": [r["curve"][-1]["exact"] for r in rs],
        "chrf_at_end": [r["curve"][-1]["chrf"] for r in rs],
        "chrf_at_equal_time": [at_seconds(r["curve"], equal_time, "chrf") for r in rs],
        "seconds_to_level": [seconds_to_reach(r["curve"], level) for r in rs],
        "seconds_per_step": [r["cpu_seconds"] / r["steps"] for r in rs],
        "sequential_steps": report["sequential_steps"][regime][name]["train"],
    } for name, rs in runs.items()}


def crossover_length(report: dict, batch: int, slow: str = "seq2seq + attention",
                     fast: str = "Transformer") -> int | None:
    """The shortest timed length from which ``fast``'s training step is cheaper than ``slow``'s."""
    times = {(t["model"], t["length"]): t["seconds"] for t in report["step_times"] if t["batch"] == batch}
    lengths = sorted({n for _, n in times})
    cheaper = [n for n in lengths if times[(fast, n)] < times[(slow, n)]]
    return next((n for n in lengths if all(m in cheaper for m in lengths if m >= n)), None)

def at_step(curve: Sequence[dict], step: int, key: str = "exact") -> float:
    """The last evaluation at or before ``step`` (0 before the first one)."""
    done = [e[key] for e in curve if e["step"] <= step]
    return done[-1] if done else 0.0


def at_seconds(curve: Sequence[dict], seconds: float, key: str = "exact",
               clock: str = "cpu_seconds") -> float:
    """The last evaluation reached within ``seconds`` of training (0 before the first one)."""
    done = [e[key] for e in curve if e[clock] <= seconds]
    return done[-1] if done else 0.0


def seconds_to_reach(curve: Sequence[dict], level: float, key: str = "exact",
                     clock: str = "cpu_seconds") -> float:
    """Training seconds at the first evaluation with ``key`` >= ``level``; inf if never reached."""
    return next((e[clock] for e in curve if e[key] >= level), math.inf)


__all__ = ["MODELS", "LEARNING_RATES", "REGIMES", "Regime", "RaceData", "race_data", "build_model",
           "count_parameters", "matched_hidden_size", "race_loss", "warmup_constant", "sequential_steps",
           "chrf", "translation_scores", "RunResult", "run_one", "seconds_per_step", "at_step",
           "at_seconds", "seconds_to_reach", "load_report", "final_runs", "verdict", "crossover_length"]
