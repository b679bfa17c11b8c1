"""utils: seeds, devices, progress bars."""

import random

import numpy as np
import pytest
import torch

from transformer_course import utils


def test_set_seed_makes_all_three_generators_repeat():
    utils.set_seed(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    utils.set_seed(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_set_seed_rejects_non_int(bad):
    with pytest.raises(TypeError, match="expects an int seed, got"):
        utils.set_seed(bad)


def test_set_seed_rejects_negative():
    with pytest.raises(ValueError, match=r"seed in \[0, 2\*\*32\), got -1"):
        utils.set_seed(-1)


def test_generator_is_seeded_and_leaves_global_state_alone():
    utils.set_seed(0)
    expected = torch.rand(1).item()
    utils.set_seed(0)
    a = torch.rand(3, generator=utils.generator(5))
    b = torch.rand(3, generator=utils.generator(5))
    assert torch.equal(a, b)
    assert torch.rand(1).item() == expected


def test_get_device_defaults_to_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert utils.get_device().type == expected
    assert utils.get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="prefer='cpu', 'cuda' or None, got 'tpu'"):
        utils.get_device("tpu")


def test_progress_yields_everything_and_prints_a_final_summary(capsys):
    assert list(utils.progress(range(5), desc="demo", enable=False)) == [0, 1, 2, 3, 4]
    assert "demo: 5/5 steps in" in capsys.readouterr().out


def test_progress_bar_can_be_switched_off_by_environment(monkeypatch, capsys):
    monkeypatch.setenv("TC_PROGRESS", "0")
    assert not utils.progress_enabled()
    assert sum(utils.progress(range(4), desc="quiet")) == 6
    captured = capsys.readouterr()
    assert "quiet: 4/4 steps" in captured.out
    assert "it/s" not in captured.err  # no tqdm bar was drawn


def test_progress_bar_draws_when_enabled(capsys):
    list(utils.progress(range(3), desc="loud", enable=True))
    captured = capsys.readouterr()
    assert "3/3" in captured.err  # tqdm draws on stderr outside a notebook


def test_environment_report_names_versions_and_times_a_product():
    report = utils.environment_report(matmul_size=32, repeats=1)
    assert report["torch"] == torch.__version__
    assert "GFLOP/s" in report["matmul 32x32"]
    with pytest.raises(ValueError, match="expects matmul_size to be a positive int, got 0"):
        utils.environment_report(matmul_size=0)
