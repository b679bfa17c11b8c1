"""Two runs, same numbers: the training of notebooks 02, 03 and 08 is reproducible on the CPU.

Each test trains a notebook's models through the same package functions the notebook calls,
at a small budget, twice with the same seed, and compares the per-step losses with ``==``
(bit for bit, not allclose); a third run with another seed must differ, so the test can fail.
Between runs the global random generators are scrambled, as a learner running other cells
would: the seed alone must decide the numbers. One thread (conftest's ``one_thread`` fixture,
and OMP_NUM_THREADS=1 in the subprocess), the CPU only.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from transformer_course import data, utils
from transformer_course.attention import AdditiveAttention, DotProductAttention
from transformer_course.experiments.bottleneck import BOTTLENECK, run_length_experiment
from transformer_course.experiments.translation import transformer_loss, xavier_init_
from transformer_course.seq2seq import Seq2Seq, Seq2SeqConfig, length_grouped_batches, seq2seq_loss
from transformer_course.train import train
from transformer_course.transformer import Transformer, translate_config, warmup_schedule

# Notebooks 02 and 03: the BOTTLENECK preset, shrunk (copy, 3-10 symbols, 16 steps of 32).
SMALL = dataclasses.replace(BOTTLENECK, max_len=10, n_train=256, n_test=32, buckets=((3, 6), (7, 10)),
                            hidden_size=32, steps=16, batch_size=32)
ATTN_SIZE = 16  # notebook 03's additive scoring size, shrunk with the hidden size

# Notebook 08: translation, 5-10 words, 16 steps of 16 sentences (the notebook: 5-16 words,
# 300 steps of 128, warm-up 100).
STEPS, BATCH, WARMUP, HIDDEN = 16, 16, 6, 32


def scramble_global_rngs() -> None:
    """Move Python's, numpy's and torch's global generators, as other cells would."""
    random.random()
    np.random.rand(3)
    torch.rand(5)


def same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- notebooks 02 and 03: run_length_experiment, with set_seed before the attention is built ---

def run_02(seed: int):
    """Notebook 02: seq2seq GRU without attention, the hidden-size sweep's call."""
    scramble_global_rngs()
    utils.set_seed(seed)
    return run_length_experiment(dataclasses.replace(SMALL, seed=seed), hidden_size=16, desc="02")


def run_03(kind: str, seed: int):
    """Notebook 03: set_seed, then the attention is built, then run_length_experiment."""
    scramble_global_rngs()
    utils.set_seed(seed)
    exp = dataclasses.replace(SMALL, seed=seed)
    attention = (AdditiveAttention(exp.hidden_size, attn_size=ATTN_SIZE) if kind == "additive"
                 else DotProductAttention(exp.hidden_size))
    return run_length_experiment(exp, attention, desc=kind)


def assert_reproducible_run(first, second, other) -> None:
    assert len(first.history.losses) == SMALL.steps
    assert first.history.losses == second.history.losses  # bit for bit
    assert first.scores == second.scores  # greedy decoding of the same weights: the same accuracy
    assert same_parameters(first.model, second.model)
    assert other.history.losses != first.history.losses  # the seed matters


def test_notebook_02_seq2seq_without_attention_is_reproducible():
    assert_reproducible_run(run_02(0), run_02(0), run_02(1))


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_notebook_03_seq2seq_with_attention_is_reproducible(kind):
    assert_reproducible_run(run_03(kind, 0), run_03(kind, 0), run_03(kind, 1))


# --- notebook 08: train() directly, on the translation task ---

def translation_batches(seed: int):
    src_vocab, tgt_vocab = data.task_vocabs("translate")
    pairs = data.make_pairs("translate", 160, 5, 10, seed=seed)

    def make_batches(g):
        return length_grouped_batches(pairs, src_vocab, tgt_vocab, BATCH, g)

    return src_vocab, tgt_vocab, make_batches


def train_transformer(seed: int) -> tuple[list[float], Transformer]:
    """Notebook 08's Transformer: xavier init, warm-up schedule, label smoothing, dropout 0.1."""
    scramble_global_rngs()
    _, _, make_batches = translation_batches(seed)
    config = translate_config()
    assert config.dropout > 0  # dropout masks come from the global generator that train() seeds
    utils.set_seed(seed)
    model = Transformer(config)
    xavier_init_(model)
    utils.set_seed(seed)
    history = train(model, transformer_loss, make_batches, steps=STEPS, lr=0.7,
                    schedule=warmup_schedule(config.d_model, WARMUP), seed=seed, desc="Transformer")
    return history.losses, model


def train_seq2seq_pair(seed: int) -> tuple[list[float], list[float], Seq2Seq]:
    """Notebook 08's GRUs, in the notebook's order: the attention module is built (as the argument
    of ``train_seq2seq``) before that function's ``set_seed``, from the generator state the plain
    GRU's training left behind."""
    scramble_global_rngs()
    src_vocab, tgt_vocab, make_batches = translation_batches(seed)

    def train_seq2seq(attention):
        utils.set_seed(seed)
        cfg = Seq2SeqConfig(len(src_vocab), len(tgt_vocab), d_model=16, hidden_size=HIDDEN)
        m = Seq2Seq.from_config(cfg, attention)
        history = train(m, seq2seq_loss, make_batches, steps=STEPS, lr=1e-2, seed=seed, desc="seq2seq")
        return m, history

    _, rnn_history = train_seq2seq(None)
    att, att_history = train_seq2seq(AdditiveAttention(HIDDEN))
    return rnn_history.losses, att_history.losses, att


def test_notebook_08_transformer_is_reproducible():
    first, m1 = train_transformer(0)
    second, m2 = train_transformer(0)
    assert len(first) == STEPS
    assert first == second
    assert same_parameters(m1, m2)
    assert train_transformer(1)[0] != first


def test_notebook_08_seq2seq_and_attention_gru_are_reproducible():
    rnn1, att1, m1 = train_seq2seq_pair(0)
    rnn2, att2, m2 = train_seq2seq_pair(0)
    assert len(att1) == STEPS
    assert rnn1 == rnn2 and att1 == att2
    assert same_parameters(m1, m2)
    rnn3, att3, _ = train_seq2seq_pair(1)
    assert rnn3 != rnn1 and att3 != att1


# --- a restarted kernel: another process, another hash seed, the same numbers ---

def test_a_fresh_process_gives_the_same_transformer_losses():
    here = Path(__file__).resolve().parent
    script = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[1]); "
              "from test_determinism import train_transformer; "
              "print(repr(train_transformer(0)[0]))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TC_PROGRESS": "0",
           "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", script, str(here)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    theirs = ast.literal_eval(done.stdout.strip().splitlines()[-1])  # repr floats round-trip exactly
    mine, _ = train_transformer(0)
    assert theirs == mine
