"""The course's data: seeded synthetic tasks, a tiny vocabulary, and padded batches.

Nothing is downloaded. Every example comes from a generator seeded by the caller, so the
same seed gives the same data on every machine.

Tasks (``TASKS``):

- ``copy``:      a b c d  ->  a b c d
- ``reverse``:   a b c d  ->  d c b a
- ``sort``:      d a c b  ->  a b c d
- ``translate``: English into Korean, in Hangul, from a small grammar (``korean``)::

      the student who reads the book sees a small cat in the park
      책 을 읽는 학생 이 공원 에서 작은 고양이 를 본다

  The target keeps each particle as a token of its own; ``korean.join`` writes the sentence
  as Korean is written (책을 읽는 학생이 공원에서 작은 고양이를 본다). Articles vanish,
  particles appear, the verb moves to the end and relative clauses before their noun, so
  the alignment between source and target crosses and nests.

Shapes: B batch, S source length, T target length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from . import _validate, korean

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TASKS = ("copy", "reverse", "sort", "translate")

# The symbols of the copy / reverse / sort tasks.
SYMBOLS = tuple("abcdefghijklmnopqrst")

Pair = tuple[list[str], list[str]]
TRANSLATE_LENGTHS = korean.LENGTHS  # the shortest and longest English sentence the grammar makes


class Vocab:
    """Maps tokens to ids and back; ids 0-3 are ``<pad> <bos> <eos> <unk>``."""

    def __init__(self, tokens: Sequence[str]):
        words = [t for t in dict.fromkeys(tokens) if t not in SPECIALS]
        self.itos: list[str] = list(SPECIALS) + words
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {' '.join(self.itos[4:12])} ...)"

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token strings -> ids; an unknown token raises a ``KeyError`` that names it."""
        if isinstance(tokens, str):
            tokens = tokens.split()
        unknown = [t for t in tokens if t not in self.stoi]
        if unknown:
            known = " ".join(self.itos[4:])
            raise KeyError(f"unknown token(s) {unknown}; the vocabulary knows: {known}")
        ids = [self.stoi[t] for t in tokens]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Ids -> token strings, stopping at ``<eos>`` and skipping ``<pad>`` and ``<bos>``."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else "<unk>")
        return out


def task_vocabs(task: str) -> tuple[Vocab, Vocab]:
    """The (source, target) vocabularies of a task, fixed by the task, not by the data."""
    _validate.one_of(task, TASKS, "task", "task_vocabs")
    if task != "translate":
        v = Vocab(SYMBOLS)
        return v, v
    return Vocab(korean.source_words()), Vocab(korean.target_words())


def _symbol_pair(task: str, rng: random.Random, length: int) -> Pair:
    src = [rng.choice(SYMBOLS) for _ in range(length)]
    if task == "copy":
        return src, list(src)
    if task == "reverse":
        return src, src[::-1]
    return src, sorted(src)


def _check_pair_args(task: str, n: int, min_len: int, max_len: int, seed: int) -> None:
    _validate.one_of(task, TASKS, "task", "make_pairs")
    _validate.seed(seed, "make_pairs")
    _validate.positive_int(n, "n", "make_pairs")
    _validate.int_in(min_len, "min_len", "make_pairs", 1)
    _validate.int_in(max_len, "max_len", "make_pairs", min_len)  # max_len >= min_len
    lo, hi = TRANSLATE_LENGTHS
    if task == "translate" and not lo <= min_len <= max_len <= hi:
        raise ValueError(f"make_pairs expects min_len and max_len in [{lo}, {hi}] for the translate task "
                         f"(its sentences have {lo} to {hi} words), got min_len={min_len}, max_len={max_len}")


def make_pairs(task: str, n: int, min_len: int, max_len: int, seed: int) -> list[Pair]:
    """``n`` (source, target) token lists of ``task`` with source lengths in [min_len, max_len].

    Source lengths are spread evenly over the range, so every length bucket is filled.
    """
    _check_pair_args(task, n, min_len, max_len, seed)
    rng = random.Random(int(seed))
    pairs: list[Pair] = []
    while len(pairs) < n:
        want = min_len + len(pairs) % (max_len - min_len + 1)
        if task != "translate":
            pairs.append(_symbol_pair(task, rng, want))
            continue
        example = korean.generate(rng, want)  # a sentence of exactly `want` English words
        pairs.append((example.english, example.korean))
    rng.shuffle(pairs)
    return pairs


@dataclass
class Batch:
    """A padded batch: ``tgt_in`` starts with ``<bos>``, ``tgt_out`` ends with ``<eos>``."""

    src: torch.Tensor          # (B, S) source ids, right-padded with PAD
    src_lengths: torch.Tensor  # (B,) number of real source tokens
    tgt_in: torch.Tensor       # (B, T) decoder input: <bos> y1 ... yn, padded
    tgt_out: torch.Tensor      # (B, T) decoder target: y1 ... yn <eos>, padded

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        return Batch(*(t.to(device) for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)))

    def __len__(self) -> int:
        return self.src.shape[0]


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = PAD) -> torch.Tensor:
    """Right-pad lists of ids into one ``(B, L)`` long tensor."""
    if len(seqs) == 0:
        raise ValueError("pad_sequences expects at least one sequence, got an empty list")
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


def collate(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab) -> Batch:
    """Encode and pad (source, target) token lists into a ``Batch``."""
    if len(pairs) == 0:
        raise ValueError("collate expects at least one pair, got an empty list of pairs")
    src = [src_vocab.encode(s) for s, _ in pairs]
    tgt = [tgt_vocab.encode(t) for _, t in pairs]
    return Batch(
        src=pad_sequences(src),
        src_lengths=torch.tensor([len(s) for s in src]),
        tgt_in=pad_sequences([[BOS, *t] for t in tgt]),
        tgt_out=pad_sequences([[*t, EOS] for t in tgt]),
    )


def batches(
    pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab, batch_size: int,
    generator: torch.Generator | None = None,
) -> Iterator[Batch]:
    """Padded batches over ``pairs``, shuffled by ``generator`` (in order when it is None)."""
    _validate.positive_int(batch_size, "batch_size", "batches")
    order = (torch.randperm(len(pairs), generator=generator).tolist()
             if generator is not None else range(len(pairs)))
    order = list(order)
    for i in range(0, len(order), batch_size):
        yield collate([pairs[j] for j in order[i : i + batch_size]], src_vocab, tgt_vocab)


# --- The recall task of notebook 01: which token came k steps before the last? -------------


@dataclass
class RecallBatch:
    """Sequences of k + 1 random symbols; the answer is the first, k steps before the last."""

    src: torch.Tensor     # (B, k + 1) symbol ids in [0, vocab_size), no padding
    target: torch.Tensor  # (B,) the symbol to recall: src[:, 0]

    def to(self, device: torch.device | str) -> RecallBatch:
        """The same batch on ``device``."""
        return RecallBatch(self.src.to(device), self.target.to(device))

    def __len__(self) -> int:
        return self.src.shape[0]


def make_recall(n: int, k: int, vocab_size: int, generator: torch.Generator) -> RecallBatch:
    """``n`` recall examples: a symbol, then k random distractors; the answer is the symbol.

    The distractors come from the same symbols, so only the position tells which one to
    recall, and chance accuracy is 1 / vocab_size.
    """
    for name, value, low in (("n", n, 1), ("k", k, 1), ("vocab_size", vocab_size, 2)):
        _validate.int_in(value, name, "make_recall", low)
    src = torch.randint(0, vocab_size, (n, k + 1), generator=generator)  # (B, k + 1)
    return RecallBatch(src=src, target=src[:, 0].clone())


def recall_batches(
    k: int, vocab_size: int, batch_size: int, generator: torch.Generator, n_batches: int = 50,
) -> Iterator[RecallBatch]:
    """``n_batches`` fresh batches of the recall task (an endless supply: no example repeats)."""
    _validate.positive_int(n_batches, "n_batches", "recall_batches")
    for _ in range(n_batches):
        yield make_recall(batch_size, k, vocab_size, generator)
