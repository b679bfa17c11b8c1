"""data: the synthetic tasks, the vocabulary and the padded batches."""

import pytest
import torch

from transformer_course import data
from transformer_course.utils import generator


@pytest.mark.parametrize("task", data.TASKS)
def test_same_seed_same_data_other_seed_other_data(task):
    lo, hi = (5, 9) if task == "translate" else (3, 8)
    a = data.make_pairs(task, 50, lo, hi, seed=1)
    assert a == data.make_pairs(task, 50, lo, hi, seed=1)
    assert a != data.make_pairs(task, 50, lo, hi, seed=2)
    assert len(a) == 50
    assert all(lo <= len(src) <= hi for src, _ in a)


def test_every_length_is_present():
    pairs = data.make_pairs("reverse", 120, 4, 15, seed=0)
    assert {len(s) for s, _ in pairs} == set(range(4, 16))


@pytest.mark.parametrize("task, rule", [
    ("copy", lambda s: s), ("reverse", lambda s: s[::-1]), ("sort", sorted)])
def test_symbol_tasks_follow_their_rule(task, rule):
    for src, tgt in data.make_pairs(task, 30, 2, 12, seed=3):
        assert tgt == rule(src)


def test_translation_moves_the_verb_to_the_end_and_adds_particles():
    from transformer_course import korean

    verbs = {v.forms.plain: v for v in korean.VERBS}
    for en, ko in data.make_pairs("translate", 200, 5, 16, seed=4):
        assert ko[-1] in verbs and {verbs[ko[-1]].en, verbs[ko[-1]].en_plural} & set(en)
        assert {"이", "가", "은", "는"} & set(ko) and not {"the", "a", "an"} & set(ko)  # a subject or topic


def test_translation_is_not_monotonic():
    # the verb leaves the middle of the English sentence for the end of the Korean one
    from transformer_course import korean

    crossing = 0
    for en, _ in data.make_pairs("translate", 100, 9, 16, seed=5):
        source = [s for s in korean.translate(en).source if s is not None]
        crossing += source != sorted(source)
    assert crossing >= 90


def test_vocab_round_trip_and_specials():
    src_vocab, tgt_vocab = data.task_vocabs("translate")
    for en, ko in data.make_pairs("translate", 50, 5, 16, seed=6):
        assert src_vocab.decode(src_vocab.encode(en, bos=True, eos=True)) == en
        assert tgt_vocab.decode(tgt_vocab.encode(ko) + [data.EOS, 7, 7]) == ko
    assert src_vocab.itos[: 4] == list(data.SPECIALS)


def test_unknown_token_is_named():
    vocab, _ = data.task_vocabs("copy")
    with pytest.raises(KeyError, match=r"unknown token\(s\) \['zebra'\]"):
        vocab.encode(["a", "zebra"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(task="rotate", n=5, min_len=2, max_len=4, seed=0),
     r"make_pairs expects task to be one of \('copy', 'reverse', 'sort', 'translate'\), got 'rotate'"),
    (dict(task="copy", n=0, min_len=2, max_len=4, seed=0), "n to be a positive int, got 0"),
    (dict(task="copy", n=5, min_len=0, max_len=4, seed=0), "min_len to be an int >= 1, got 0"),
    (dict(task="copy", n=5, min_len=5, max_len=4, seed=0), "max_len to be an int >= 5, got 4"),
    (dict(task="translate", n=5, min_len=5, max_len=60, seed=0), "its sentences have 4 to 48 words"),
])
def test_make_pairs_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.make_pairs(**kwargs)


def test_make_pairs_rejects_a_seed_that_is_not_an_int():
    with pytest.raises(TypeError, match="expects an int seed, got float"):
        data.make_pairs("copy", 5, 2, 4, seed=0.5)


def test_collate_pads_and_shifts():
    vocab, _ = data.task_vocabs("copy")
    batch = data.collate([(["a", "b", "c"], ["a", "b", "c"]), (["d"], ["d"])], vocab, vocab)
    assert batch.src.shape == (2, 3) and batch.tgt_in.shape == (2, 4)
    assert batch.src_lengths.tolist() == [3, 1]
    assert batch.src[1].tolist() == [vocab.stoi["d"], data.PAD, data.PAD]
    assert batch.tgt_in[:, 0].tolist() == [data.BOS, data.BOS]
    assert torch.equal(batch.tgt_in[0, 1:], batch.tgt_out[0, :-1])
    assert batch.tgt_out[1].tolist() == [vocab.stoi["d"], data.EOS, data.PAD, data.PAD]


def test_batches_cover_every_pair_once_and_shuffle_by_generator():
    vocab, _ = data.task_vocabs("copy")
    pairs = data.make_pairs("copy", 37, 2, 6, seed=0)
    out = list(data.batches(pairs, vocab, vocab, 8, generator=torch.Generator().manual_seed(0)))
    assert sum(len(b) for b in out) == 37
    again = list(data.batches(pairs, vocab, vocab, 8, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a.src, b.src) for a, b in zip(out, again, strict=True))
    ordered = next(data.batches(pairs, vocab, vocab, 37))
    assert not torch.equal(out[0].src, ordered.src[:8])


@pytest.mark.parametrize("call, message", [
    (lambda v: data.collate([], v, v), "empty list of pairs"),
    (lambda v: data.pad_sequences([]), "empty list"),
    (lambda v: list(data.batches([(["a"], ["a"])], v, v, 0)), "positive int, got 0"),
])
def test_empty_or_bad_batching_is_refused(call, message):
    vocab, _ = data.task_vocabs("copy")
    with pytest.raises(ValueError, match=message):
        call(vocab)


# --- the recall task of notebook 01 ---------------------------------------------------------


def test_recall_data_answer_is_the_first_symbol():
    batch = data.make_recall(50, 7, 5, generator(0))
    assert batch.src.shape == (50, 8) and batch.target.shape == (50,)
    assert torch.equal(batch.target, batch.src[:, 0])
    assert batch.src.min() >= 0 and batch.src.max() < 5
    again = data.make_recall(50, 7, 5, generator(0))
    assert torch.equal(batch.src, again.src)
    batches = list(data.recall_batches(3, 4, 8, generator(1), n_batches=5))
    assert len(batches) == 5 and not torch.equal(batches[0].src, batches[1].src)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0, k=3, vocab_size=4), "n to be an int >= 1"),
    (dict(n=2, k=0, vocab_size=4), "k to be an int >= 1"),
    (dict(n=2, k=3, vocab_size=1), "vocab_size to be an int >= 2"),
])
def test_recall_data_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.make_recall(generator=generator(0), **kwargs)
