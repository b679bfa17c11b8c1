"""The course's training loop and evaluation by source length."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from transformer_course.data import EOS, PAD, batches, make_pairs, task_vocabs
from transformer_course.seq2seq import Seq2Seq, Seq2SeqConfig, seq2seq_loss
from transformer_course.train import (
    BucketScore,
    evaluate_by_length,
    format_scores,
    score_predictions,
    sequence_loss,
    train,
)

SRC_VOCAB, TGT_VOCAB = task_vocabs("copy")
PAIRS = make_pairs("copy", 96, 3, 9, seed=0)


def make_batches(g: torch.Generator):
    return batches(PAIRS, SRC_VOCAB, TGT_VOCAB, 16, generator=g)


def run(seed: int, steps: int = 8, model_seed: int = 0, **kwargs):
    torch.manual_seed(model_seed)
    model = Seq2Seq.from_config(Seq2SeqConfig(len(SRC_VOCAB), len(TGT_VOCAB), 8, 16))
    return train(model, seq2seq_loss, make_batches, steps=steps, seed=seed, desc="test", **kwargs), model


def test_same_seed_gives_identical_losses_on_cpu():
    first, m1 = run(seed=3)
    second, m2 = run(seed=3)
    assert first.losses == second.losses  # exactly, not approximately
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))
    other, _ = run(seed=4)
    assert other.losses != first.losses  # the seed drives the batch order


def test_training_lowers_the_loss_and_records_lrs():
    history, model = run(seed=0, steps=40, lr=1e-2, schedule=lambda step: min(1.0, (step + 1) / 10))
    assert len(history.losses) == 40 and history.seconds > 0
    assert history.final_loss < history.losses[0] - 0.3
    assert history.lrs[0] == pytest.approx(1e-3) and history.lrs[-1] == pytest.approx(1e-2)
    assert not model.training  # left in eval mode


def test_epochs_repeat_until_steps():
    seen = []

    def two_batches(g):
        for b in list(make_batches(g))[:2]:
            seen.append(b)
            yield b

    torch.manual_seed(0)
    model = Seq2Seq.from_config(Seq2SeqConfig(len(SRC_VOCAB), len(TGT_VOCAB), 8, 16))
    train(model, seq2seq_loss, two_batches, steps=5, seed=0)
    assert len(seen) == 5  # epochs of two batches repeat until the fifth step
    assert not torch.equal(seen[0].src, seen[2].src)  # each epoch is shuffled anew


def test_evaluations_run_in_eval_mode_at_the_chosen_steps_and_leave_training_unchanged():
    seen = []

    def evaluate(model):
        seen.append(model.training)
        time.sleep(0.4)  # a slow evaluation must not count as training time
        return {"loss_probe": 1.0}

    plain, m_plain = run(seed=2, steps=7)
    watched, m_watched = run(seed=2, steps=7, evaluate=evaluate, eval_every=3)
    assert watched.losses == plain.losses  # evaluating changes nothing about training
    assert all(torch.equal(a, b) for a, b in zip(m_plain.parameters(), m_watched.parameters(), strict=True))
    assert [e["step"] for e in watched.evals] == [3, 6, 7] and seen == [False] * 3
    assert all(e["loss_probe"] == 1.0 for e in watched.evals)
    times = [e["seconds"] for e in watched.evals]
    assert times == sorted(times) and watched.seconds < plain.seconds + 0.8  # 1.2 s of sleep left out
    assert watched.cpu_seconds > 0


def test_train_bad_arguments():
    torch.manual_seed(0)
    model = Seq2Seq.from_config(Seq2SeqConfig(len(SRC_VOCAB), len(TGT_VOCAB), 8, 16))
    with pytest.raises(ValueError, match="train expects steps to be a positive int, got 0"):
        train(model, seq2seq_loss, make_batches, steps=0)
    with pytest.raises(TypeError, match="train expects an int seed, got float"):
        train(model, seq2seq_loss, make_batches, steps=1, seed=1.5)
    with pytest.raises(ValueError, match="make_batches to yield at least one batch per epoch, got no batch"):
        train(model, seq2seq_loss, lambda g: iter(()), steps=1)
    with pytest.raises(ValueError, match="train expects eval_every to be a positive int, got None"):
        train(model, seq2seq_loss, make_batches, steps=1, evaluate=lambda m: {})


def test_sequence_loss_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=g)
    targets = torch.tensor([[4, 5, EOS, PAD], [6, EOS, PAD, PAD]])
    real = targets != PAD
    expected = F.cross_entropy(logits[real], targets[real])
    assert torch.allclose(sequence_loss(logits, targets), expected)
    changed = logits.clone()
    changed[0, 3] += 100.0  # a padded position: no effect
    assert torch.allclose(sequence_loss(changed, targets), expected)
    with pytest.raises(ValueError, match=r"logits \(B, T, V\) and targets \(B, T\)"):
        sequence_loss(logits, targets[:, :3])
    with pytest.raises(ValueError, match=r"sequence_loss expects logits \(B, T, V\) with 3 dimensions"):
        sequence_loss(logits[0], targets[0])


def test_score_predictions_exact_and_token():
    target = torch.tensor([[4, 5, 6, EOS], [7, EOS, PAD, PAD]])
    pred = torch.tensor([[4, 5, 6, EOS], [7, EOS, PAD, PAD]])
    exact, token = score_predictions(pred, target)
    assert exact.tolist() == [1.0, 1.0] and token.tolist() == [1.0, 1.0]
    late = torch.tensor([[4, 5, 6, 6], [7, 8, EOS, PAD]])  # no <eos> where the target has it
    exact, token = score_predictions(late, target)
    assert exact.tolist() == [0.0, 0.0] and token.tolist() == [0.75, 0.5]
    short = torch.tensor([[4, EOS], [7, EOS]])  # shorter than the target: padded and wrong
    exact, token = score_predictions(short, target)
    assert exact.tolist() == [0.0, 1.0] and token.tolist() == [0.25, 1.0]
    with pytest.raises(ValueError, match=r"pred \(B, L\) with as many rows as target \(B, T\), got \(1, 4\) "
                                         r"and \(2, 4\)"):
        score_predictions(pred[:1], target)


def test_evaluate_by_length_groups_by_source_length():
    oracle = evaluate_by_length(lambda b: b.tgt_out, PAIRS, SRC_VOCAB, TGT_VOCAB, [(3, 5), (6, 9)])
    assert [(s.lo, s.hi, s.exact, s.token) for s in oracle] == [(3, 5, 1.0, 1.0), (6, 9, 1.0, 1.0)]
    assert sum(s.n for s in oracle) == len(PAIRS)
    assert oracle[0].n == sum(3 <= len(s) <= 5 for s, _ in PAIRS)
    silent = evaluate_by_length(lambda b: torch.full_like(b.tgt_out, EOS), PAIRS, SRC_VOCAB, TGT_VOCAB,
                                [(3, 9)], batch_size=7)
    assert silent[0].exact == 0.0 and 0 < silent[0].token < 0.3  # only the <eos> position is right
    with pytest.raises(ValueError, match=r"every bucket to hold an example, got none with a source length in "
                                         r"\[20, 30\]"):
        evaluate_by_length(lambda b: b.tgt_out, PAIRS, SRC_VOCAB, TGT_VOCAB, [(20, 30)])


def test_format_scores_lists_every_bucket():
    text = format_scores([BucketScore(3, 5, 10, 0.5, 0.75), BucketScore(6, 9, 12, 0.0, 0.25)], "plain")
    assert "plain" in text and " 3-5 " in text and "75.0%" in text and "25.0%" in text
    assert len(text.splitlines()) == 3
