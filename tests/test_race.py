"""Notebook 08's race: the committed sweep is fresh and fair, and its parts do what they say."""

from __future__ import annotations

import json
import math

import pytest
import torch

from transformer_course.data import task_vocabs
from transformer_course.experiments import race

REPORT = race.REPORT


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/race.py")


@pytest.fixture(scope="module")
def report() -> dict:
    assert REPORT.exists(), f"{REPORT.name} is missing: run `make race` and commit it with bench/race.md"
    return json.loads(REPORT.read_text())


# ----------------------------------------------------------------------------- the committed sweep

def test_the_committed_race_measured_the_code_as_it_is(report, bench):
    assert report["source_hash"] == bench.source_hash(), (
        "the race's code changed since race_results.json was written (models, training, data or "
        "scoring): run `make race` again and commit race_results.json and bench/race.md")


def test_every_model_was_tuned_on_the_same_grid_and_run_on_three_seeds_per_regime(report, bench):
    assert set(report["regimes"]) == {"short", "long"} and len(report["learning_rates"]) >= 3
    runs = report["runs"]
    for regime, chosen in report["best_lr"].items():
        for name in race.MODELS:
            tuned = {r["lr"] for r in runs
                     if r["model"] == name and r["regime"] == regime and r["seed"] == 0}
            assert tuned == set(report["learning_rates"]), f"{name} ({regime}): not tuned on the whole grid"
            assert chosen[name] == bench.best_lr(runs, name, regime), "a rate not picked on validation"
            seeds = {r["seed"] for r in runs if r["model"] == name and r["regime"] == regime
                     and r["lr"] == chosen[name]}
            assert len(seeds) >= 3, f"{name} ({regime}) ran on seeds {sorted(seeds)} only"


def test_the_racers_sizes_are_within_25_percent_of_each_other(report):
    for regime in report["regimes"]:
        params = {r["model"]: r["params"] for r in report["runs"] if r["regime"] == regime}
        assert max(params.values()) <= 1.25 * min(params.values()), params


def test_the_curves_are_against_steps_and_seconds_and_the_step_times_cover_every_length(report, bench):
    for r in report["runs"]:
        steps = [e["step"] for e in r["curve"]]
        assert steps == sorted(steps) and steps[-1] == r["steps"]
        assert all(0 <= e["exact"] <= 1 and 0 <= e["chrf"] <= 100 and e["cpu_seconds"] > 0
                   for e in r["curve"])
    timed = {(t["model"], t["length"], t["batch"]) for t in report["step_times"]}
    assert timed == {(m, n, b) for m in race.MODELS for n in bench.LENGTHS for b in bench.BATCHES}


# ----------------------------------------------------------------------------- the parts

def test_the_grus_are_matched_to_the_transformers_size_on_both_regimes():
    for regime in race.REGIMES.values():
        data = race.race_data(race.Regime(regime.name, regime.min_len, regime.max_len, 8, 4, 4, 4, 1, 1), 0)
        sizes = {name: race.count_parameters(race.build_model(name, data, 0)) for name in race.MODELS}
        assert max(sizes.values()) <= 1.1 * min(sizes.values()), sizes


def test_sequential_steps_are_counted_one_way_for_every_model():
    assert race.sequential_steps("seq2seq", 10, 12) == {"train": 22, "infer": 22}
    assert race.sequential_steps("seq2seq + attention", 10, 12) == {"train": 22, "infer": 22}
    # 2 encoder layers and 2 decoder layers: 4 steps in training; at inference the decoder's
    # 2 layers wait for each of the 12 tokens in turn
    assert race.sequential_steps("Transformer", 10, 12) == {"train": 4, "infer": 2 + 24}


def test_warm_up_rises_over_five_percent_of_the_steps_then_stays():
    f = race.warmup_constant(200)
    assert [f(s) for s in (0, 4, 9, 10, 199)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])


def test_chrf_is_sacrebleus_and_reads_joined_korean():
    assert race.chrf(["학생이 책을 읽는다"], ["학생이 책을 읽는다"]) == pytest.approx(100)
    assert 0 < race.chrf(["학생이 책을 본다"], ["학생이 책을 읽는다"]) < 100
    with pytest.raises(ValueError, match="as many hypotheses as references"):
        race.chrf(["a"], [])


def test_reading_a_curve_at_a_step_a_time_and_a_level():
    curve = [{"step": 10, "cpu_seconds": 1.0, "exact": 0.2}, {"step": 20, "cpu_seconds": 2.5, "exact": 0.95}]
    assert race.at_step(curve, 5) == 0 and race.at_step(curve, 15) == 0.2 and race.at_step(curve, 20) == 0.95
    assert race.at_seconds(curve, 2.0) == 0.2 and race.at_seconds(curve, 3.0) == 0.95
    assert race.seconds_to_reach(curve, 0.9) == 2.5 and math.isinf(race.seconds_to_reach(curve, 0.99))


def test_one_tiny_run_records_a_curve_and_a_validation_score():
    tiny = race.Regime("short", 5, 8, 64, 8, 8, 16, 4, 2)
    result, model, history = race.run_one("seq2seq + attention", tiny, 0, 1e-3)
    assert [e["step"] for e in result.curve] == [2, 4] and set(result.valid) == {"exact", "chrf"}
    assert result.params == race.count_parameters(model) and len(history.losses) == 4


def test_seconds_per_step_times_a_real_training_step():
    assert 0 < race.seconds_per_step("Transformer", 8, 4, repeats=1) < 5


def test_random_batches_have_the_asked_length_and_no_specials():
    src_vocab, tgt_vocab = task_vocabs("translate")
    batch = race.random_batch(src_vocab, tgt_vocab, 3, 7, seed=0)
    assert batch.src.shape == (3, 7) and batch.tgt_in.shape == (3, 7) and (batch.src >= 4).all()
    assert torch.equal(batch.tgt_in[:, 1:], batch.tgt_out[:, :-1])
