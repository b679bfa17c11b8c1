"""The race of notebook 08: seq2seq, seq2seq + attention and the Transformer, trained alike.

For each length regime (``experiments.race.REGIMES``): every model is trained once per learning
rate of the grid on seed 0, the rate with the best validation exact match (then chrF) is kept,
and the model is trained again with it on seeds 1 and 2. Every run records held-out exact match
and chrF as it trains, against steps and against training seconds. Then seconds per training
step against sentence length and batch size, for every model.

Training time is the process's CPU time on one thread, which equals the wall-clock time of one
idle core and does not grow when other programs share the machine. Writes
src/transformer_course/race_results.json (with a hash of the source it measured;
tests/test_race.py fails when the code has changed since) and bench/race.md.
Usage: ``make race`` (about 30 minutes on two cores), or for a pilot:
``python bench/race.py --regimes short --steps 100 --lrs 0.001 --seeds 0 --out /tmp/race``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "transformer_course"
# What the race measures: the models, their training, decoding and scoring (their source), and
# the data (what the grammar generates, so that a comment changed in korean.py is no new race).
SOURCES = [PACKAGE / name for name in (
    "experiments/race.py", "train.py", "seq2seq.py", "attention.py", "transformer.py", "positional.py",
    "decoding.py")] + [Path(__file__).resolve()]
LENGTHS = (8, 16, 32, 64, 128)
BATCHES = (32, 128)
TUNING_SEED, SEEDS = 0, (0, 1, 2)
LEVEL = 0.9  # "seconds to reach 90% exact match"


def source_hash() -> str:
    """A hash of what the race measured: the files' bytes, and sentences the grammar generates."""
    sys.path.insert(0, str(PACKAGE.parent))
    import inspect

    from transformer_course import data
    from transformer_course.experiments import race, translation

    h = hashlib.sha256()
    for p in SOURCES:
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(inspect.getsource(translation.xavier_init_).encode())  # the one function used from there
    src_vocab, tgt_vocab = data.task_vocabs("translate")
    sample = [src_vocab.itos, tgt_vocab.itos] + [
        data.make_pairs("translate", 100, r.min_len, r.max_len, seed=12345) for r in race.REGIMES.values()]
    h.update(json.dumps([race.REGIMES, race.LEARNING_RATES, sample], default=vars,
                        ensure_ascii=False).encode())
    return h.hexdigest()


def _init_worker() -> None:
    os.environ.update(TC_PROGRESS="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import torch

    torch.set_num_threads(1)


def _train(job: tuple[str, str, int, float, int | None]) -> dict:
    from transformer_course.experiments import race

    name, regime, seed, lr, steps = job
    result, _, _ = race.run_one(name, race.REGIMES[regime], seed, lr, steps=steps)
    print(f"  {regime:5s} {name:20s} seed {seed} lr {lr:g}: valid exact {result.valid['exact']:.2f}, "
          f"test exact {result.curve[-1]['exact']:.2f}, {result.cpu_seconds:.0f} s", flush=True)
    return result.as_dict()


def _time(job: tuple[str, int, int]) -> dict:
    from transformer_course.experiments import race

    name, length, batch = job
    return {"model": name, "length": length, "batch": batch, "threads": 1,
            "seconds": race.seconds_per_step(name, length, batch)}


def best_lr(runs: list[dict], name: str, regime: str) -> float:
    """The learning rate whose tuning run scored best on the validation split."""
    tuned = [r for r in runs if r["model"] == name and r["regime"] == regime and r["seed"] == TUNING_SEED]
    return max(tuned, key=lambda r: (r["valid"]["exact"], r["valid"]["chrf"]))["lr"]


def _spread(values: list[float], fmt: str) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "never"
    lo, hi = min(finite), max(finite)
    text = f"{lo:{fmt}}" if lo == hi else f"{lo:{fmt}} to {hi:{fmt}}"
    return text + (f" ({len(values) - len(finite)} never)" if len(finite) < len(values) else "")


def summary(report: dict) -> str:
    """bench/race.md: the chosen learning rates and the verdict table of each regime."""
    from transformer_course.experiments import race

    lines = ["# The race (notebook 08)", "",
             f"Written by `make race` (bench/race.py) in {report['minutes']:.0f} minutes on "
             f"{report['machine']}. Training seconds are CPU seconds on one thread (the wall-clock time "
             f"of one idle core); evaluations are not counted. Each cell gives the range over seeds "
             f"{', '.join(map(str, report['seeds']))}. Source hash `{report['source_hash'][:12]}`.", ""]
    for regime in report["best_lr"]:
        r = report["regimes"][regime]
        v = race.verdict(report, regime, LEVEL)
        t = next(iter(v.values()))["equal_time"]
        lines += [f"## {regime}: {r['min_len']} to {r['max_len']} English words, batch {r['batch_size']}, "
                  f"{r['steps']} steps", "",
                  f"| model | params | lr (validation) | exact at {t:.0f} s "
                  f"| exact at step {r['steps'] // 2} | exact at step {r['steps']} | chrF at {t:.0f} s "
                  f"| chrF at step {r['steps']} "
                  f"| s to {LEVEL:.0%} exact | s per step | seq. steps (train) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, x in v.items():
            lines.append(
                f"| {name} | {x['params']:,} | {x['lr']:g} | {_spread(x['exact_at_equal_time'], '.0%')} "
                f"| {_spread(x['exact_at_half_steps'], '.0%')} | {_spread(x['exact_at_end'], '.0%')} "
                f"| {_spread(x['chrf_at_equal_time'], '.1f')} | {_spread(x['chrf_at_end'], '.1f')} "
                f"| {_spread(x['seconds_to_level'], '.0f')} | {_spread(x['seconds_per_step'], '.3f')} "
                f"| {x['sequential_steps']:.1f} |")
        lines.append("")
    lines += ["## Seconds per training step (CPU seconds, one thread)", "",
              "| model | batch | " + " | ".join(f"n = {n}" for n in LENGTHS) + " |",
              "|---|---|" + "---|" * len(LENGTHS)]
    for name in race.MODELS:
        for b in BATCHES:
            cells = [next(t["seconds"] for t in report["step_times"]
                          if t["model"] == name and t["batch"] == b and t["length"] == n) for n in LENGTHS]
            lines.append(f"| {name} | {b} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    lines += ["", "The Transformer's step is cheaper than the attention GRU's from "
              + ", ".join(f"n = {race.crossover_length(report, b)} at batch {b}" for b in BATCHES)
              + " (None: at no timed length)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", nargs="*", default=["short", "long"])
    parser.add_argument("--lrs", nargs="*", type=float, help="the grid (default: race.LEARNING_RATES)")
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--steps", type=int, help="override every regime's step budget (pilots)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-timing", action="store_true", help="skip the seconds-per-step sweep")
    parser.add_argument("--out", type=Path, help="write race_results.json and race.md here (pilots) "
                        "instead of the package and bench/")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PACKAGE.parent))
    from transformer_course.experiments import race

    lrs = tuple(args.lrs) if args.lrs else race.LEARNING_RATES
    start, measured = time.perf_counter(), source_hash()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init_worker) as pool:
        print(f"tuning on seed {TUNING_SEED}: {len(race.MODELS)} models x {len(lrs)} learning rates",
              flush=True)
        tuning = [(name, regime, TUNING_SEED, lr, args.steps) for regime in args.regimes
                  for name in race.MODELS for lr in lrs]
        runs = pool.map(_train, tuning, chunksize=1)
        chosen = {regime: {name: best_lr(runs, name, regime) for name in race.MODELS}
                  for regime in args.regimes}
        print("chosen learning rates:", chosen, flush=True)
        more = [(name, regime, seed, chosen[regime][name], args.steps) for regime in args.regimes
                for name in race.MODELS for seed in args.seeds if seed != TUNING_SEED]
        runs += pool.map(_train, more, chunksize=1)
        step_times = [] if args.no_timing else pool.map(
            _time, [(name, n, b) for name in race.MODELS for b in BATCHES for n in LENGTHS], chunksize=1)
    steps = {}
    for regime in args.regimes:
        data = race.race_data(race.REGIMES[regime], TUNING_SEED)
        n_src = sum(len(s) for s, _ in data.test) / len(data.test)
        n_tgt = sum(len(t) + 1 for _, t in data.test) / len(data.test)  # <eos> is a step too
        steps[regime] = {name: race.sequential_steps(name, n_src, n_tgt) for name in race.MODELS}
    if source_hash() != measured:
        print("the race's code or data changed while it ran: nothing written; run it again")
        return 1
    report = {"source_hash": measured, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"torch {__import__('torch').__version__}", "minutes": (time.perf_counter() - start) / 60,
              "regimes": {name: {**vars(race.REGIMES[name]), **({"steps": args.steps} if args.steps else {})}
                          for name in args.regimes}, "learning_rates": lrs,
              "seeds": args.seeds, "best_lr": chosen, "runs": runs, "step_times": step_times,
              "sequential_steps": steps}
    json_path = args.out / "race_results.json" if args.out else race.REPORT
    md_path = args.out / "race.md" if args.out else ROOT / "bench" / "race.md"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    if step_times:
        md_path.write_text(summary(report))
    print(f"wrote {json_path} and {md_path} in {report['minutes']:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
