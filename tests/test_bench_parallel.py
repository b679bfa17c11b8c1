"""bench/parallel.py: the committed timings against threads measured this code, and the script works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transformer_course.experiments import complexity as C

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "parallel.json"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/parallel.py")


@pytest.fixture(scope="module")
def committed() -> dict:
    assert RESULTS.exists(), "bench/parallel.json is missing: run `make parallel` and commit bench/parallel.*"
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def test_the_committed_timings_measured_this_code(bench, committed):
    assert committed["hash"] == bench.source_hash(), (
        "bench/parallel.json was measured on other code than this (the script, the course's attention, "
        "or the functions of experiments.complexity and measure it runs): run `make parallel` on a quiet "
        "machine and commit bench/parallel.md and bench/parallel.json")


def test_the_committed_timings_are_complete_and_at_the_size_asked_for(bench, committed):
    config, cpu = committed["config"], committed["cpu"]
    assert {k: config[k] for k in bench.CONFIG} == bench.CONFIG
    assert cpu["threads"][0] == 1 and cpu["threads"] == sorted(cpu["threads"])
    runs = config["rounds"] * config["repeats"]
    for size, c in bench.sizes(bench.CONFIG).items():
        assert list(cpu["seconds"][size]) == list(C.PARALLEL_KINDS)
        for kind, per_threads in cpu["seconds"][size].items():
            assert len(per_threads) == len(cpu["threads"]) and all(len(s) == runs for s in per_threads)
            assert all(t > 0 for s in per_threads for t in s)
            work = committed["work"][size][kind]
            assert work["flops"] == C.expected_flops(kind, c["n"], c["d_model"], c["batch"], backward=True)
    assert committed["work"]["main"]["attention"]["sequential_steps"] == 2  # forward and backward
    assert committed["work"]["main"]["gru"]["sequential_steps"] == 2 * bench.CONFIG["n"]
    table = (ROOT / "bench" / "parallel.md").read_text(encoding="utf-8")
    assert committed["hash"] in table, "bench/parallel.md and parallel.json come from different runs"


@pytest.mark.parametrize(("cores", "threads"), [(1, [1]), (2, [1, 2]), (8, list(range(1, 9))),
                                                (12, [1, 2, 4, 8, 12]), (64, [1, 2, 4, 8, 16, 32, 64])])
def test_default_threads(bench, cores, threads):
    assert bench.default_threads(cores) == threads


def test_time_layers_times_every_layer_at_both_sizes(bench):
    # the function each worker runs, on the CPU here and on CUDA where there is one
    seconds = bench.time_layers(["rnn", "attention"], repeats=2, device="cpu",
                                config={"batch": 2, "n": 8, "d_model": 16})
    assert set(seconds) == {"main", "probe"}
    assert all(len(s) == 2 and min(s) > 0 for size in seconds.values() for s in size.values())


def test_a_small_sweep_writes_the_table_and_the_json(bench, tmp_path):
    args = ["--threads", "1", "--rounds", "1", "--repeats", "1", "--no-cuda", "--kinds", "gru", "attention",
            "--batch", "2", "--n", "8", "--d-model", "16", "--out", str(tmp_path)]
    assert bench.main(args) == 0
    results = json.loads((tmp_path / "parallel.json").read_text(encoding="utf-8"))
    assert results["cuda"] is None and results["cpu"]["threads"] == [1]
    assert results["work"]["main"]["gru"]["sequential_steps"] == 16
    table = (tmp_path / "parallel.md").read_text(encoding="utf-8")
    assert "| main: B=2, n=8, d=16 | nn.GRU | cpu | 1 |" in table and "No CUDA device" in table
    # where there is a GPU, its timings sit beside the CPU's (faked here: this test runs on CPUs)
    results["cuda"] = {"device": "Some GPU", "seconds": {size: {k: [1e-3, 2e-3] for k in ("gru", "attention")}
                                                         for size in ("main", "probe")}}
    with_gpu = bench.table(results)
    assert "| main: B=2, n=8, d=16 | nn.GRU | Some GPU | - | 1.50 |" in with_gpu and "No CUDA" not in with_gpu


def test_another_size_is_not_written_over_the_committed_table(bench):
    with pytest.raises(SystemExit, match="needs --out"):
        bench.main(["--n", "8"])
