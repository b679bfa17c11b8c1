"""experiments.efficient_attention: the measurements of notebook 11 measure what they claim to."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from transformer_course.experiments import efficient_attention as E
from transformer_course.measure import fit_growth_exponent


def test_naive_takes_more_memory_than_tiled_at_large_n():
    lengths = [256, 512, 1024, 2048]
    mem = E.memory_against_length(lengths, block_size=128)
    assert mem["naive"][-1] > 20 * mem["tiled"][-1]
    assert all(n > t for n, t in zip(mem["naive"][1:], mem["tiled"][1:], strict=True))
    assert 1.9 < fit_growth_exponent(lengths, mem["naive"]) < 2.1
    assert 0.9 < fit_growth_exponent(lengths, mem["tiled"]) < 1.1
    assert 0.9 < fit_growth_exponent(lengths, mem["fused"]) < 1.1
    # minus the (n, Dh) output:
    workspace = [t - n * 64 * 4 for n, t in zip(lengths, mem["tiled"], strict=True)]
    assert len(set(workspace)) == 1, "beyond its output, tiled attention needs the same bytes at every n"


def test_memory_against_length_is_deterministic_and_checks_inputs():
    a = E.memory_against_length([64, 128], block_size=32, causal=True)
    b = E.memory_against_length([64, 128], block_size=32, causal=True)
    assert a == b
    with pytest.raises(ValueError, match=r"each method to be one of \(.*\), got 'flash'"):
        E.memory_against_length([64], methods=("naive", "flash"))
    with pytest.raises(ValueError, match="each length"):
        E.memory_against_length([0])


def test_under_autograd_the_tiled_loop_keeps_n_squared_and_fused_keeps_n():
    lengths = [128, 256, 512]
    mem = E.memory_with_autograd(lengths, block_size=32)
    assert set(mem) == {"naive", "tiled", "fused"}
    assert all(set(m) == {"kept", "peak"} for m in mem.values())
    assert all(p >= k > 0 for m in mem.values() for k, p in zip(m["kept"], m["peak"], strict=True))
    assert 1.8 < fit_growth_exponent(lengths, mem["tiled"]["kept"]) < 2.1  # every tile kept for backward
    assert 0.9 < fit_growth_exponent(lengths, mem["fused"]["kept"]) < 1.1  # the output, one number per query
    assert mem["tiled"]["kept"][-1] > mem["naive"]["kept"][-1] > 5 * mem["fused"]["kept"][-1]
    # without autograd the same tiled loop holds far less than it keeps here
    inference = E.memory_against_length([512], block_size=32, methods=("tiled",))["tiled"][0]
    assert inference < mem["tiled"]["kept"][-1] / 10


def test_memory_with_autograd_is_deterministic_and_checks_inputs():
    a = E.memory_with_autograd([64], block_size=16, causal=True, methods=("tiled",))
    assert a == E.memory_with_autograd([64], block_size=16, causal=True, methods=("tiled",))
    with pytest.raises(ValueError, match=r"each method to be one of \(.*\), got 'flash'"):
        E.memory_with_autograd([64], methods=("flash",))
    with pytest.raises(ValueError, match="each length"):
        E.memory_with_autograd([0])
    with pytest.raises(ValueError, match="measures on 'cpu' or 'cuda'"):
        E.memory_with_autograd([8], device="meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_with_autograd_on_cuda():
    mem = E.memory_with_autograd([512, 1024, 2048], block_size=128, device="cuda")
    assert fit_growth_exponent([512, 1024, 2048], mem["tiled"]["kept"]) > 1.8
    assert mem["fused"]["kept"][-1] < mem["tiled"]["kept"][-1] / 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda_grows_as_n_squared_for_naive():
    mem = E.memory_against_length([512, 1024, 2048], block_size=128, device="cuda")
    assert mem["naive"][-1] > 10 * mem["tiled"][-1]


# ----------------------------------------------------------------------------- time and the widget

@pytest.mark.parametrize("n, block_size", [(256, 32), (100, 16), (64, 64), (50, 64)])
def test_tiles_computed_counts_the_tiles_the_loop_computes(n, block_size):
    q, k, v = (torch.randn(1, 1, n, 7) for _ in range(3))  # Dh = 7: no block is 7 keys wide
    for causal in (False, True):
        with E.AllocationTracker(keep_log=True) as tracker:  # one (Bq, Bk) score tile per bmm
            E.tiled_attention(q, k, v, causal, block_size=block_size)
        tiles = sum(1 for a in tracker.log if "bmm" in a.op and a.shape[-1] != 7)
        assert E.tiles_computed(n, block_size, causal) == tiles
    assert E.tiles_computed(1024, 128) == 64 and E.tiles_computed(1024, 128, causal=True) == 36
    with pytest.raises(ValueError, match="block_size to be a positive int"):
        E.tiles_computed(8, 0)


def test_time_against_block_size_reports_every_block():
    times = E.time_against_block_size(64, [8, 64], repeats=1)
    assert len(times["tiled"]) == 2 and all(t > 0 for t in times["tiled"])
    assert times["naive"] > 0 and times["fused"] > 0
    with pytest.raises(ValueError, match="each block size"):
        E.time_against_block_size(64, [0])


@pytest.mark.parametrize("block_size", [32, 1024])  # the widget slider's two ends
@pytest.mark.parametrize("causal", [False, True])
def test_block_size_report_at_both_ends_of_the_slider(block_size, causal):
    report = E.block_size_report(block_size, n=1024, causal=causal)
    assert report["check"]["max_abs_diff"] < 1e-5
    assert all(report[name]["seconds"] > 0 for name in ("tiled", "naive", "fused"))
    if block_size == 32:
        assert report["tiled"]["bytes"] < report["naive"]["bytes"] / 20
    else:  # one tile of n x n: as much as naive attention, give or take the bookkeeping
        assert report["tiled"]["bytes"] > report["naive"]["bytes"] / 3


@pytest.mark.parametrize("block_size", [32, 1024])  # the widget slider's two ends
@pytest.mark.parametrize("causal", [False, True])
def test_block_size_figure_at_both_ends_of_the_slider(block_size, causal):
    # n = 256 rather than the notebook's 1024 to stay fast; the report at n = 1024 is tested above
    fig = E.block_size_figure(block_size, causal, n=256)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # memory and time
    assert all(len(ax.patches) == 3 for ax in fig.axes)  # naive, tiled, fused
    tiles = 1 if block_size == 1024 else 36 if causal else 64  # causal: 8 * 9 / 2 tiles up to the diagonal
    assert f"block {block_size}, causal={causal}: {tiles} tiles" in fig._suptitle.get_text()


def test_block_size_report_checks_inputs():
    with pytest.raises(ValueError, match="block_size to be a positive int"):
        E.block_size_report(0)
    with pytest.raises(ValueError, match="n to be a positive int"):
        E.block_size_report(16, n=-1)
