"""Notebooks 04 and 05: the scores of trained heads, on hand-built weights whose answer is known."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

from transformer_course.data import make_pairs, task_vocabs
from transformer_course.experiments import alignment, head_roles, race

PAIRS = make_pairs("translate", 60, 5, 12, seed=4)
TINY = replace(head_roles.HeadsConfig(), regime=replace(race.REGIMES["short"], n_train=64, n_valid=8,
                                                        n_test=16),
               steps=3, batch_size=16, n_sentences=16)


def one_hot_rows(allowed: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Weights (B, 1, T, S) that put everything on ``key[b, t]`` (rows without a key: uniform)."""
    B, T, S = allowed.shape
    weights = torch.full((B, 1, T, S), 1.0 / S)
    for b in range(B):
        for t in range(T):
            if 0 <= key[b, t] < S:
                weights[b, 0, t] = 0.0
                weights[b, 0, t, key[b, t]] = 1.0
    return weights


def softmax_over_allowed(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Weights of scores (B, H, T, S) over the allowed keys only; rows with no key are zero."""
    return torch.softmax(scores.masked_fill(~allowed[:, None], -1e9), -1) * allowed.any(-1)[:, None, :, None]


# ----------------------------------------------------------------------------- masks and targets

def test_allowed_keys_marks_real_queries_real_keys_and_the_past():
    q, k = torch.tensor([3, 2]), torch.tensor([2, 4])
    allowed = head_roles.allowed_keys(q, k)
    assert allowed.shape == (2, 3, 4)
    assert allowed[0].int().tolist() == [[1, 1, 0, 0]] * 3
    assert allowed[1].int().tolist() == [[1, 1, 1, 1]] * 2 + [[0, 0, 0, 0]]
    causal = head_roles.allowed_keys(torch.tensor([3]), torch.tensor([3]), causal=True)
    assert causal[0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_offset_targets_are_the_shifted_diagonal_where_allowed():
    allowed = head_roles.allowed_keys(torch.tensor([4]), torch.tensor([4]))
    previous = head_roles.offset_targets(allowed, -1)[0]
    assert previous.nonzero().tolist() == [[1, 0], [2, 1], [3, 2]]  # the first query has no previous key
    assert head_roles.offset_targets(allowed, 1)[0].nonzero().tolist() == [[0, 1], [1, 2], [2, 3]]
    assert head_roles.first_key_targets(allowed)[0].nonzero().tolist() == [[t, 0] for t in range(4)]


def test_alignment_targets_point_at_the_translated_words():
    targets = head_roles.alignment_targets(PAIRS[:3], 20, 12)
    for b, (src, _) in enumerate(PAIRS[:3]):
        for t, word in enumerate(alignment.translation_alignment(src)):
            expected = [] if word.source is None else [word.source]
            assert targets[b, t].nonzero().flatten().tolist() == expected


# ----------------------------------------------------------------------------- scores of known heads

def test_a_head_on_the_previous_token_scores_one_and_nothing_else():
    lengths = torch.tensor([6, 4, 9])
    allowed = head_roles.allowed_keys(lengths, lengths, causal=True)
    t = torch.arange(9).expand(3, 9)
    weights = one_hot_rows(allowed, t - 1)  # (B, 1, T, S)
    score = {o: head_roles.argmax_share(weights, allowed, head_roles.offset_targets(allowed, o)).item()
             for o in (-1, 0)}
    assert score == {-1: 1.0, 0: 0.0}
    on_self = one_hot_rows(allowed, t)
    assert head_roles.argmax_share(on_self, allowed, head_roles.offset_targets(allowed, 0)).item() == 1.0


def test_a_head_that_looks_at_random_scores_its_chance_level():
    torch.manual_seed(0)
    lengths = torch.randint(5, 13, (400,))
    for causal in (False, True):
        allowed = head_roles.allowed_keys(lengths, lengths, causal=causal)
        targets = head_roles.offset_targets(allowed, -1)
        weights = softmax_over_allowed(torch.randn(400, 2, 12, 12), allowed)  # (B, H, T, S)
        chance = head_roles.chance_share(allowed, targets)
        share = head_roles.argmax_share(weights, allowed, targets)
        assert share.shape == (2,)
        assert (share - chance).abs().max() < 0.03, (share, chance)


def test_chance_is_one_over_the_number_of_keys():
    allowed = head_roles.allowed_keys(torch.tensor([4]), torch.tensor([5]))
    assert head_roles.chance_share(allowed, head_roles.offset_targets(allowed, 0)) == pytest.approx(1 / 5)
    causal = head_roles.allowed_keys(torch.tensor([4]), torch.tensor([4]), causal=True)
    # the first query has a single key and is not counted; then 1/2, 1/3, 1/4
    assert head_roles.chance_share(causal, head_roles.offset_targets(causal, -1)) == \
        pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


def test_a_row_with_one_key_is_not_counted():
    allowed = head_roles.allowed_keys(torch.tensor([3]), torch.tensor([3]), causal=True)
    rows = head_roles.counted_rows(allowed, head_roles.first_key_targets(allowed))
    assert rows.tolist() == [[False, True, True]]


def test_argmax_share_on_alignments_equals_alignment_accuracy():
    torch.manual_seed(1)
    src_len = torch.tensor([len(s) for s, _ in PAIRS])
    tgt_len = torch.tensor([len(t) + 1 for _, t in PAIRS])
    allowed = head_roles.allowed_keys(tgt_len, src_len)
    weights = softmax_over_allowed(3 * torch.randn(len(PAIRS), 3, *allowed.shape[1:]), allowed)
    targets = head_roles.alignment_targets(PAIRS, *allowed.shape[1:]) & allowed
    share = head_roles.argmax_share(weights, allowed, targets)
    expected = [alignment.alignment_accuracy(weights[:, h], PAIRS)["all"] for h in range(3)]
    assert share.tolist() == pytest.approx(expected)
    assert head_roles.argmax_share(weights[None], allowed, targets).shape == (1, 3)  # a layer axis


def test_entropy_of_uniform_and_of_one_hot_heads():
    lengths = torch.tensor([5, 8])
    allowed = head_roles.allowed_keys(lengths, lengths, causal=True)
    uniform = allowed[:, None].float() / allowed.sum(-1, keepdim=True)[:, None].clamp_min(1)
    expected = sum(math.log(t + 1) for n in (5, 8) for t in range(1, n)) / (4 + 7)
    assert head_roles.uniform_entropy(allowed) == pytest.approx(expected)
    assert head_roles.mean_entropy(uniform, allowed).item() == pytest.approx(expected)
    sharp = one_hot_rows(allowed, torch.zeros(2, 8, dtype=torch.long))
    assert head_roles.mean_entropy(sharp, allowed).item() == pytest.approx(0.0, abs=1e-6)


def test_best_head_counts_from_one():
    assert head_roles.best_head(torch.tensor([[0.1, 0.2], [0.9, 0.3]])) == (2, 1, pytest.approx(0.9))


# ----------------------------------------------------------------------------- summaries of hand-built scores

def hand_built_stats(aligned: list[list[float]], encoder_self: float = 0.5) -> head_roles.HeadStats:
    """Scores of a 2-layer, 2-head model: cross-attention as given; every other share at chance,
    except "encoder: itself" (``encoder_self`` for head 1 of each layer, chance for head 2)."""
    chance = {name: 0.1 for name in head_roles.STATISTICS}
    shares = {name: torch.full((2, 2), 0.1) for name in head_roles.STATISTICS}
    shares["cross: aligned word"] = torch.tensor(aligned)
    shares["encoder: itself"] = torch.tensor([[encoder_self, 0.1], [encoder_self, 0.1]])
    shares["encoder: next word"] = torch.tensor([[0.1, 0.3], [0.1, 0.3]])
    entropy = {kind: torch.full((2, 2), 1.0) for kind in head_roles.KINDS}
    return head_roles.HeadStats(shares, chance, entropy, {kind: 2.0 for kind in head_roles.KINDS})


def test_strongest_roles_pick_the_statistic_furthest_above_chance():
    stats = hand_built_stats([[0.2, 0.3], [0.8, 0.6]])
    assert head_roles.strongest_roles(stats, "encoder self-attention") == \
        [["encoder: itself", "encoder: next word"]] * 2
    assert head_roles.role_share(stats, "encoder: itself") == 0.5
    assert head_roles.role_share(stats, "encoder: next word") == 0.5
    assert head_roles.entropy_ratio(stats, "cross-attention").tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_summary_reads_the_best_head_and_the_same_head_untrained():
    trained = hand_built_stats([[0.2, 0.3], [0.8, 0.6]])
    init = hand_built_stats([[0.15, 0.05], [0.02, 0.12]])
    found = head_roles.summary(trained, init)
    assert (found["best layer"], found["best head"]) == (2, 1)
    assert found["best head aligned, trained"] == pytest.approx(0.8)
    assert found["best head aligned, init"] == pytest.approx(0.02)  # layer 2, head 1, not the best init head
    assert found["best head aligned, any init head"] == pytest.approx(0.15)
    assert found["last layer weakest aligned"] == pytest.approx(0.6)
    assert found["first layer strongest aligned"] == pytest.approx(0.3)
    assert found["encoder heads on itself"] == 0.5
    assert found["mean entropy ratio, trained"] == pytest.approx(0.5)


def test_head_table_prints_every_head_trained_and_untrained():
    trained = hand_built_stats([[0.2, 0.3], [0.8, 0.6]])
    init = hand_built_stats([[0.15, 0.05], [0.02, 0.12]])
    lines = head_roles.head_table(trained, init, "cross-attention").splitlines()
    assert lines[0] == "cross-attention: trained | at initialisation"
    assert [" ".join(line.split()[:2]) for line in lines[3:]] == ["L1 H1", "L1 H2", "L2 H1", "L2 H2"]
    assert lines[5].split()[2:5] == ["0.80", "|", "0.02"]
    with pytest.raises(ValueError, match="kind to be one of"):
        head_roles.head_table(trained, init, "self-attention")


def test_example_pair_prefers_a_relative_clause_of_the_right_length():
    pairs = [(["a"] * 5, ["x"]), (["b"] * 9, ["y"]), (["c"] * 8 + ["who"], ["z"])]
    assert head_roles.example_pair(pairs) == pairs[2]
    assert head_roles.example_pair(pairs[:2]) == pairs[1]
    assert head_roles.example_pair(pairs[:1]) == pairs[0]
    with pytest.raises(ValueError, match="at least one pair"):
        head_roles.example_pair([])


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises_a_clear_error():
    allowed = head_roles.allowed_keys(torch.tensor([3]), torch.tensor([4]))
    targets = head_roles.offset_targets(allowed, 0)
    with pytest.raises(ValueError, match=r"weights \(\.\.\., B, H, T, S\) = \(\.\.\., 1, H, 3, 4\)"):
        head_roles.argmax_share(torch.rand(1, 2, 4, 3), allowed, targets)
    with pytest.raises(ValueError, match="boolean tensor"):
        head_roles.mean_entropy(torch.rand(1, 2, 3, 4), allowed.float())
    with pytest.raises(ValueError, match="boolean targets"):
        head_roles.argmax_share(torch.rand(1, 2, 3, 4), allowed, targets.float())
    with pytest.raises(ValueError, match="one query and one key length per sentence"):
        head_roles.allowed_keys(torch.tensor([3, 4]), torch.tensor([4]))
    with pytest.raises(ValueError, match="int offset"):
        head_roles.offset_targets(allowed, 0.5)
    with pytest.raises(ValueError, match="T >= "):
        head_roles.alignment_targets(PAIRS[:1], 2, 2)
    with pytest.raises(ValueError, match="with 2 dimensions"):
        head_roles.best_head(torch.rand(4))
    with pytest.raises(ValueError, match="steps to be a positive int"):
        replace(TINY, steps=0)
    with pytest.raises(TypeError, match="expects a HeadsConfig"):
        head_roles.train_translator({"steps": 3})
    with pytest.raises(TypeError, match="expects a Transformer"):
        head_roles.attention_maps(torch.nn.Linear(2, 2), PAIRS[:1], *task_vocabs("translate"))


# ----------------------------------------------------------------------------- the model and its maps

@pytest.fixture(scope="module")
def translator():
    return head_roles.train_translator(TINY, seed=2)


def test_a_tiny_training_run_is_deterministic_on_a_seed(translator):
    again = head_roles.train_translator(TINY, seed=2)
    assert again.history.losses == translator.history.losses
    assert all(torch.equal(a, b) for a, b in zip(again.model.parameters(), translator.model.parameters(),
                                                 strict=True))
    other = head_roles.train_translator(TINY, seed=3)
    assert other.history.losses != translator.history.losses


def test_init_is_the_untrained_start_of_the_trained_model(translator):
    fresh = race.build_model("Transformer", translator.data, 2)
    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))

    assert same(fresh, translator.init) and not same(fresh, translator.model)


def test_attention_maps_sum_to_one_over_allowed_keys(translator):
    en, ko = task_vocabs("translate")
    maps = head_roles.attention_maps(translator.model, PAIRS[:7], en, ko)
    assert set(maps) == set(head_roles.KINDS)
    for kind, m in maps.items():
        L, B, H, T, S = m.weights.shape
        assert (L, B, H) == (2, 7, 4) and m.allowed.shape == (B, T, S), kind
        rows = m.allowed.any(-1)  # (B, T) real queries
        sums = m.weights.sum(-1)  # (L, B, H, T)
        assert torch.allclose(sums.permute(1, 3, 0, 2)[rows], torch.tensor(1.0)), kind
        assert m.weights.masked_select(~m.allowed[:, None] & rows[:, None, :, None]).abs().max() == 0, kind


def test_head_statistics_scores_every_head_with_its_chance(translator):
    en, ko = task_vocabs("translate")
    stats = head_roles.head_statistics(translator.model, PAIRS[:20], en, ko)
    assert set(stats.shares) == set(head_roles.STATISTICS)
    for name, share in stats.shares.items():
        assert share.shape == (2, 4) and ((share >= 0) & (share <= 1)).all(), name
        assert 0 < stats.chance[name] < 0.5, name
    for kind, entropy in stats.entropy.items():
        assert entropy.shape == (2, 4) and (entropy <= stats.uniform[kind] + 1e-5).all(), kind


# ----------------------------------------------------------------------------- figures

def test_head_bars_figure_draws_every_head_trained_and_untrained(translator):
    en, ko = task_vocabs("translate")
    trained = head_roles.head_statistics(translator.model, PAIRS[:20], en, ko)
    init = head_roles.head_statistics(translator.init, PAIRS[:20], en, ko)
    names = ["cross: aligned word", "decoder: previous token"]
    fig = head_roles.head_bars_figure(trained, init, names)
    assert isinstance(fig, Figure)
    first = fig.axes[0]
    assert first.get_title() == names[0] and len(first.patches) == 2 * 8  # 8 heads, two bars each
    heights = [p.get_height() for p in first.patches[:8]]
    assert heights == pytest.approx(trained.shares[names[0]].flatten().tolist())
    with pytest.raises(ValueError, match="each name"):
        head_roles.head_bars_figure(trained, init, ["no such statistic"])


@pytest.mark.parametrize("kind", head_roles.KINDS)
def test_head_pair_figure_draws_hangul_and_a_colour_bar(translator, kind):
    en, ko = task_vocabs("translate")
    pair = PAIRS[5]
    trained = head_roles.sentence_maps(translator.model, pair, en, ko)
    init = head_roles.sentence_maps(translator.init, pair, en, ko)
    fig = head_roles.head_pair_figure(trained, init, kind, layer=2, head=4)
    assert len(fig.axes) == 3  # trained, initialisation, colour bar
    left = fig.axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(left).float(), trained[kind].layers[1][3])
    boxes = len(fig.axes[0].patches)
    assert boxes == (sum(w.source is not None for w in alignment.translation_alignment(pair[0]))
                     if kind == "cross-attention" else 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png")
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_head_pair_figure_refuses_bad_choices(translator):
    en, ko = task_vocabs("translate")
    maps = head_roles.sentence_maps(translator.model, PAIRS[0], en, ko)
    other = head_roles.sentence_maps(translator.init, PAIRS[1], en, ko)
    with pytest.raises(ValueError, match="kind to be one of"):
        head_roles.head_pair_figure(maps, maps, "attention", 1, 1)
    with pytest.raises(ValueError, match=r"layer \(counted from 1\) to be an int in \[1, 2\]"):
        head_roles.head_pair_figure(maps, maps, "cross-attention", 0, 1)
    with pytest.raises(ValueError, match=r"head \(counted from 1\) to be an int in \[1, 4\]"):
        head_roles.head_pair_figure(maps, maps, "cross-attention", 1, 5)
    with pytest.raises(ValueError, match="same sentence"):
        head_roles.head_pair_figure(maps, other, "cross-attention", 1, 1)
