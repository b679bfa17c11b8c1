"""Checks for solutions/03_attention_for_seq2seq: additive attention, masked dot attention, one
step of the attention decoder, and a prediction about padded attention.

Masks follow the course's convention: boolean, True at the real (non-padding) source tokens.
Every call of the learner's function goes through ``call`` (in-place changes of the inputs are
rejected), and every comparison is dtype-safe (``close``, ``compare``). References are computed
in float64 and compared with the answer's float32, so an answer computed in float64 inside and
cast back passes.

Shapes: B batch, S source length, H the decoder's state size (the query), Dk the encoder
state size (the keys), A the size of the additive scoring layer, D the embedding size,
V vocabulary.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from ..attention import DotProductAttention, dot_product_attention
from ..seq2seq import DecoderState, Encoded, RNNDecoder, last_real_state
from ._core import CheckFailed, CheckResult, as_float, call, close, compare, fmt_shape, run_check, unpack

__all__ = ["check_additive_attention", "check_masked_dot_attention", "check_attention_decoder_step",
           "check_weight_per_token_prediction"]

# The package's own answers to tasks 1 and 2, switched off while the learner's function runs.
FORBID = {"additive_attention": ("transformer_course.attention:additive_attention",
                                 "transformer_course.attention:AdditiveAttention"),
          "masked_dot_attention": ("transformer_course.attention:dot_product_attention",
                                   "transformer_course.attention:DotProductAttention")}


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=dim)


def _attend(weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The context: each example's keys averaged with its weights, (B, S), (B, S, Dk) -> (B, Dk)."""
    return (weights[:, None, :] @ keys)[:, 0]  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)


def _swapped(task: str, first: object, second: object, shapes: tuple[tuple, tuple], names: tuple[str, str],
             where: str) -> None:
    """CheckFailed when the two results come in the wrong order (each has the other's shape)."""
    if (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor) and shapes[0] != shapes[1]
            and first.shape == shapes[1] and second.shape == shapes[0]):
        raise CheckFailed(f"{task}: {where} you returned ({names[1]}, {names[0]}), swapped: the first "
                          f"result has the shape of the {names[1]}, {fmt_shape(shapes[1])}; return them "
                          f"in the order ({names[0]}, {names[1]}).")


def _well_formed(task: str, got: object, ref: torch.Tensor, what: str) -> torch.Tensor:
    """``got`` as a tensor of ``ref``'s shape and dtype, or CheckFailed with compare's message."""
    if not isinstance(got, torch.Tensor) or got.shape != ref.shape or got.dtype != ref.dtype:
        compare(task, got, ref, what=what)  # names the type, the shape or the dtype
    return got


def _diagnose_weights(task: str, w: object, scores: torch.Tensor, mask: torch.Tensor | None,
                      what: str, dtype: torch.dtype = torch.float32) -> None:
    """Name the usual mistakes in the weights (B, S) made from ``scores`` (B, S, float64)."""
    ref = _masked_softmax(scores, mask)
    w = _well_formed(task, w, ref.to(dtype), what)
    if close(w, ref):
        if mask is not None:
            _leak(task, w, mask)
        return
    if mask is not None:
        if close(w, torch.softmax(scores, -1)):  # before the sign: padding that wins everywhere looks flipped
            raise CheckFailed(f"{task}: the mask is ignored: padding positions still get weight. Fill "
                              "their scores with -inf before the softmax "
                              "(scores.masked_fill(~mask, float('-inf'))).")
        partial = mask.any(1) & (~mask).any(1)  # rows with real tokens and padding
        flipped = _masked_softmax(scores, ~mask)
        if partial.any() and close(w[partial].nan_to_num(0.0), flipped[partial]):
            raise CheckFailed(f"{task}: the mask has the wrong sign: you blocked the real tokens and "
                              "kept the padding. The mask is True at the real tokens; fill the scores "
                              "where it is False: scores.masked_fill(~mask, float('-inf')).")
    nan_rows = torch.isnan(w).any(-1)
    if nan_rows.any():
        rows = nan_rows.nonzero()[:, 0].tolist()
        mistake = _nan_mistake(scores.to(dtype), mask, nan_rows) if mask is not None else None
        if mistake == "overflow":
            raise CheckFailed(f"{task}: {what}: the weights of rows {rows} are NaN: exp of the padding's "
                              "scores overflows to inf before you multiply by the mask (inf * 0 is NaN); "
                              "subtracting the maximum of the real scores does not help where the padding "
                              "scores more than about 88 above it. Fill the padding with -inf (or use "
                              "torch.where(mask, ..., 0)) before exp.")
        if mistake == "renormalised":
            raise CheckFailed(f"{task}: {what}: the weights of rows {rows} are NaN: you took the softmax "
                              "over every position, then zeroed the padding and divided by the sum. That "
                              "is right on paper, but where the padding scores far above a row's real "
                              "tokens, their weights underflow to 0 and the division is 0 / 0. Fill the "
                              "padding scores with -inf BEFORE the softmax.")
        raise CheckFailed(f"{task}: {what}: the weights of rows {rows} are NaN. If you wrote the softmax by "
                          "hand, subtract each row's own maximum before exp (scores.max(dim=-1, "
                          "keepdim=True)): exp overflows for scores above about 88, and a row whose "
                          "scores all lie far below the batch's maximum underflows to 0 / 0. Or use "
                          "torch.softmax.")
    if not torch.isfinite(w).all():
        compare(task, w, ref, what=what)  # reports the infinity
    if scores.shape[0] > 1 and close(w, _masked_softmax(scores, mask, dim=0)):
        raise CheckFailed(f"{task}: the weights sum to 1 over the batch (axis 0), not over the source "
                          "positions: take the softmax over the last axis (dim=-1), one distribution "
                          "per example.")
    if mask is not None:
        if close(w, torch.softmax(scores, -1).masked_fill(~mask, 0.0)):
            raise CheckFailed(f"{task}: you applied the mask after the softmax, so each row's weights no "
                              "longer sum to 1. Fill the padding scores with -inf BEFORE the softmax.")
        if close(w, torch.softmax(scores * mask, -1)):
            raise CheckFailed(f"{task}: you gave the padding a score of 0 (by multiplying the scores by "
                              "the mask, or filling with 0), not -inf: in a row whose real scores are "
                              "below 0 the padding wins. Fill the padding scores with -inf before the "
                              "softmax.")
        _leak(task, w, mask)
    sums = w.double().sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise CheckFailed(f"{task}: each example's weights should sum to 1 over the source positions, "
                          f"but they sum to between {sums.min():.4g} and {sums.max():.4g}: did you "
                          "forget the softmax?")
    compare(task, w, ref.to(dtype), what=what)


def _nan_mistake(scores: torch.Tensor, mask: torch.Tensor, nan_rows: torch.Tensor) -> str | None:
    """Which masked softmax gives NaN in exactly ``nan_rows``, and no other of the usual ones does?

    "renormalised": softmax over every position, masked and renormalised (0 / 0 where the
    padding scores far above the real tokens); "overflow": exp(scores - the real scores'
    maximum) times the mask (exp overflows at the padding, inf * 0); None when neither, or when
    the softmax written by hand without each row's maximum (one maximum for the batch, or
    none) gives NaN in the same rows on these inputs.
    """
    def rows(e: torch.Tensor) -> torch.Tensor:
        return torch.isnan(e / e.sum(-1, keepdim=True)).any(-1)

    filled = scores.masked_fill(~mask, float("-inf"))
    candidates = {"renormalised": torch.softmax(scores, -1) * mask,
                  "overflow": (scores - filled.amax(-1, keepdim=True)).exp() * mask}
    by_hand = [(filled - filled.max()).exp(), filled.exp(), scores.exp() * mask]  # batch maximum, no maximum
    if any(torch.equal(rows(e), nan_rows) for e in by_hand):
        return None
    found = [name for name, e in candidates.items() if torch.equal(rows(e), nan_rows)]
    return found[0] if len(found) == 1 else None


def _leak(task: str, w: torch.Tensor, mask: torch.Tensor) -> None:
    """Padding must get exactly zero weight: a large finite fill (-100) is not enough."""
    leaked = w.masked_select(~mask).abs()
    if leaked.numel() and leaked.max() > 0:
        raise CheckFailed(f"{task}: padding positions get weight up to {leaked.max():.3g}; they must get "
                          "exactly 0. A finite fill such as -100 loses to a row whose real scores are even "
                          "lower: fill with float('-inf') before the softmax.")


# ----------------------------------------------------------------------------- task 1: additive

def check_additive_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, w_query, w_key, v) -> (context, weights)``: Bahdanau's attention."""
    task = "additive_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(303)
        # (B, S, H, Dk, A, scale of v): the last case has large scores (up to about 100), so a
        # softmax written without subtracting the row's maximum overflows.
        cases = [(3, 5, 4, 6, 7, 1.0), (1, 4, 8, 8, 8, 1.0), (4, 7, 6, 5, 3, 1.0), (5, 6, 3, 4, 9, 25.0)]
        for B, S, H, Dk, A, scale in cases:
            query, keys = torch.randn(B, H, generator=g), torch.randn(B, S, Dk, generator=g)
            w_query, w_key = torch.randn(A, H, generator=g), torch.randn(A, Dk, generator=g)
            v = torch.randn(A, generator=g) * scale
            args = (query, keys, w_query, w_key, v)
            result = call(task, fn, *(a.clone() for a in args), forbid=FORBID[task])
            context, w = unpack(task, result, ["context", "weights"])
            where = (f"for query {fmt_shape(query.shape)}, keys {fmt_shape(keys.shape)}, w_query "
                     f"{fmt_shape(w_query.shape)}, w_key {fmt_shape(w_key.shape)}")
            _swapped(task, context, w, ((B, Dk), (B, S)), ("context", "weights"), where)
            q, k, wq, wk, v64 = (a.double() for a in args)
            hidden = (q @ wq.T)[:, None, :] + k @ wk.T  # (B, 1, A) + (B, S, A)
            scores = torch.tanh(hidden) @ v64  # (B, S)
            if close(w, torch.softmax(hidden @ v64, -1)):
                raise CheckFailed(f"{task}: {where} you forgot the tanh: the score is "
                                  "v . tanh(W_q q + W_k k_s), a small network with one hidden layer.")
            tanh = torch.tanh(hidden)  # (B, S, A)
            if any(close(w, torch.softmax(tanh, axis) @ v64) for axis in (-1, 1)):
                raise CheckFailed(f"{task}: {where} you took the softmax of the tanh layer (B, S, A), "
                                  "before multiplying by v, so the weights do not sum to 1. The score "
                                  "comes first, e_s = v . tanh(W_q q + W_k k_s), one number per source "
                                  "position; then the softmax over the positions s.")
            _diagnose_weights(task, w, scores, None, f"the tensor of weights {where}")
            ref_w = torch.softmax(scores, -1)
            if close(context, _attend(ref_w, k @ wk.T)):
                raise CheckFailed(f"{task}: {where} the context averages the projected keys W_k k_s; "
                                  "it should average the encoder states themselves: "
                                  "context = sum_s weights_s * keys_s.")
            if isinstance(context, torch.Tensor) and context.shape == (B, A) and A != Dk:
                raise CheckFailed(f"{task}: {where} the context has shape {fmt_shape(context.shape)}, "
                                  f"the size A = {A} of the scoring layer; it is a weighted average "
                                  f"of the keys, shape (B, Dk) = ({B}, {Dk}).")
            if close(context, k.sum(1)) or close(context, k.mean(1)):
                raise CheckFailed(f"{task}: {where} the context is the plain sum or mean of the keys; "
                                  "weight each key by its attention weight: "
                                  "context = sum_s weights_s * keys_s.")
            compare(task, context, _attend(ref_w, k).float(), what=f"the context {where}")
        return f"{len(cases)} random inputs with H, Dk and A different, one with large scores"

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 2: masked dot

def _padded_keys(g: torch.Generator, query: torch.Tensor, lengths: list[int], rows: dict[str, int],
                 pad_keys: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """Keys (B, S, H) and their mask (B, S) for ``lengths``; ``rows`` separate right from nearly right.

    - ``rows["far"]``: every real key points against the query (scores about -150, far below
      the rest of the batch) and every padding key along it (scores about +100): a mask that
      is ignored, multiplied in, or filled with a finite constant gives the padding weight
      there, and a softmax that subtracts the batch's maximum instead of the row's gives NaN;
    - ``rows["high"]``: random real keys, padding keys along the query (scores about +150): a
      softmax over every position, masked and renormalised afterwards, gives 0 / 0 there;
    - ``rows["big"]`` (a full row): one real key scores 92, above exp's float32 range, so a
      softmax without any maximum subtracted overflows there and only there;
    - ``rows["edge"]``: random real keys, padding keys that score 92 above the best of them:
      exp(scores - the real maximum) overflows at the padding (and times the mask gives NaN),
      while a softmax over every position still gives the real tokens tiny nonzero weights
      (float32 reaches down to about 1e-45), so the two mistakes are told apart.
    """
    B, H = query.shape
    S = max(lengths)
    mask = torch.arange(S) < torch.tensor(lengths)[:, None]  # (B, S)
    keys = torch.randn(B, S, H, generator=g)
    if pad_keys == "zeros":  # as the package's encoder leaves them
        keys = keys * mask[..., None]

    def along(b: int) -> torch.Tensor:  # (H,) a key whose dot product with query[b] is 1
        return query[b] / query[b].norm().square()

    if "far" in rows:
        b = rows["far"]
        noise = torch.randn(S, H, generator=g) * 0.3
        keys[b] = torch.where(mask[b, :, None], -150.0 * along(b) + noise, 100.0 * along(b) + noise)
    if "high" in rows:
        b = rows["high"]
        keys[b] = torch.where(mask[b, :, None], keys[b], 150.0 * along(b))
    if "big" in rows:
        keys[rows["big"], 0] = 92.0 * along(rows["big"])
    if "edge" in rows:
        b = rows["edge"]
        best = (keys[b] @ query[b]).masked_fill(~mask[b], float("-inf")).max()
        keys[b] = torch.where(mask[b, :, None], keys[b], (best + 92.0) * along(b))
    return keys, mask


def check_masked_dot_attention(fn: Callable) -> CheckResult:
    """Check ``fn(query, keys, mask) -> (context, weights)``: Luong's dot attention, padding masked."""
    task = "masked_dot_attention"

    def body() -> str:
        g = torch.Generator().manual_seed(304)
        # (lengths, rows that separate right from nearly right (see _padded_keys), padding keys):
        # full rows, rows of a single token
        cases = [([6, 3, 1, 4], {"big": 0, "far": 1, "edge": 2, "high": 3}, "random"),
                 ([9, 2, 5], {}, "random"), ([3, 1], {}, "random"), ([5, 4, 1, 2, 5], {"far": 3}, "zeros")]
        for i, (lengths, rows, pad_keys) in enumerate(cases):
            H = (5, 16, 4, 6)[i]
            query = torch.randn(len(lengths), H, generator=g)
            keys, mask = _padded_keys(g, query, lengths, rows, pad_keys)
            result = call(task, fn, query.clone(), keys.clone(), mask.clone(), forbid=FORBID[task])
            context, w = unpack(task, result, ["context", "weights"])
            where = f"for query {fmt_shape(query.shape)}, keys {fmt_shape(keys.shape)}, lengths {lengths}"
            _swapped(task, context, w, ((len(lengths), H), tuple(mask.shape)), ("context", "weights"), where)
            q, k = query.double(), keys.double()
            scores = (k @ q[:, :, None])[..., 0]  # (B, S, H) @ (B, H, 1) -> (B, S)
            if close(w, _masked_softmax(scores / math.sqrt(H), mask)):
                raise CheckFailed(f"{task}: {where} you divided the scores by sqrt(H): Luong's dot score "
                                  "is the plain dot product q . k_s (the scaled version comes in "
                                  "notebook 04).")
            _diagnose_weights(task, w, scores, mask, f"the tensor of weights {where}")
            ref_w = _masked_softmax(scores, mask)
            if close(context, _attend(torch.softmax(scores, -1), k)):
                raise CheckFailed(f"{task}: {where} the context uses unmasked weights: average the keys "
                                  "with the masked weights you return.")
            if close(context, (k * mask[..., None]).sum(1)) or close(context, k.sum(1)):
                raise CheckFailed(f"{task}: {where} the context is a plain sum of the keys; weight each "
                                  "key by its attention weight: context = sum_s weights_s * keys_s.")
            compare(task, context, _attend(ref_w, k).float(), what=f"the context {where}")
        return (f"{len(cases)} padded batches (full rows, rows of a single token, rows whose real keys "
                "score far below their padding, a score of 92)")

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 3: one decoder step

def _decoder(V: int, D: int, H: int, seed: int) -> tuple[RNNDecoder, nn.Embedding, nn.GRUCell]:
    """A random RNNDecoder with dot attention, and the GRUCell that holds a copy of its GRU's weights."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        decoder = RNNDecoder(V, D, H, DotProductAttention(H)).eval()
        cell = nn.GRUCell(D + H, H)
    finally:
        torch.random.set_rng_state(state)
    with torch.no_grad():  # nn.GRU's weight_ih_l0 ... are nn.GRUCell's weight_ih ...
        cell.load_state_dict({name.removesuffix("_l0"): w for name, w in decoder.rnn.state_dict().items()})
    return decoder, decoder.embed, cell


@torch.no_grad()
def _reference_step(decoder: RNNDecoder, tokens: torch.Tensor, hidden: torch.Tensor,
                    enc_outputs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's RNNDecoder.step in float64: the new state s_t (B, H) and the weights (B, S)."""
    decoder = copy.deepcopy(decoder).double()
    lengths = mask.sum(1)
    encoded = Encoded(enc_outputs.double(), last_real_state(enc_outputs.double(), lengths), mask)
    _, state = decoder.step(tokens, DecoderState(hidden.double(), encoded))
    return state.hidden, state.weights


@torch.no_grad()
def _diagnose_new_state(task: str, got: torch.Tensor, cell: nn.GRUCell, emb: torch.Tensor,
                        hidden: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
                        where: str) -> None:
    """Name the usual mistakes in s_t (weights already right); all in float64."""
    cell = copy.deepcopy(cell).double()
    context = _attend(weights, keys)  # (B, H)
    if close(got, cell(torch.cat([emb, context], -1), hidden)):
        return
    if close(got, hidden):
        raise CheckFailed(f"{task}: {where} you returned the previous state unchanged; the new state is "
                          "the GRU cell's output, cell(x, hidden).")
    if close(got, context):
        raise CheckFailed(f"{task}: {where} you returned the context vector as the new state; return the "
                          "GRU cell's output s_t = cell([embedding; context], hidden).")
    if close(got, cell(torch.cat([context, emb], -1), hidden)):
        raise CheckFailed(f"{task}: {where} you fed the GRU cell [context; embedding]; the decoder's GRU "
                          "reads [embedding; context], the embedding first (RNNDecoder.step: "
                          "torch.cat([self.embed(tokens), context], dim=-1)).")
    if close(got, cell(torch.cat([emb, context], -1))):
        raise CheckFailed(f"{task}: {where} you called the cell without the previous state, so it started "
                          "from zeros: pass it, cell(x, hidden).")
    wrong_contexts = {
        "the encoder's last real state (notebook 02's context vector, without attention)":
            last_real_state(keys, mask.sum(1)),
        "the unmasked attention context (padding included)": _attend(torch.softmax(
            (keys @ hidden[:, :, None])[..., 0], -1), keys),
        "the plain mean of the encoder states": keys.mean(1),
        "the decoder's state itself": hidden,
    }
    for name, wrong in wrong_contexts.items():
        if close(got, cell(torch.cat([emb, wrong], -1), hidden)):
            raise CheckFailed(f"{task}: {where} the GRU cell was fed {name} as the context; feed it the "
                              "attention context, the encoder states averaged with your weights.")


def _check_step_gradients(task: str, fn: Callable, tokens: torch.Tensor, hidden: torch.Tensor,
                          enc_outputs: torch.Tensor, mask: torch.Tensor, embed: nn.Embedding,
                          cell: nn.GRUCell, where: str, g: torch.Generator) -> None:
    """The step trains the decoder and the encoder: the new state's gradients must match the reference's.

    The learner's step runs again on a previous state and encoder states that require grad;
    the gradient of (new_hidden * u).sum(), for a random u, with respect to them, to the
    embedding's and to the GRU cell's weights is compared with the float64 reference's.
    """
    why = ("The values are right, but this step is used for training: the loss backpropagates through "
           "the new state into the GRU cell, the embedding, the previous state and, through the "
           "attention, the encoder.")
    hidden_in, enc_in = hidden.clone().requires_grad_(True), enc_outputs.clone().requires_grad_(True)
    result = call(task, fn, tokens.clone(), hidden_in, enc_in, mask.clone(), embed, cell)
    new_hidden, _ = unpack(task, result, ["new_hidden", "weights"])
    if not new_hidden.requires_grad:
        raise CheckFailed(f"{task}: {where} the new state carries no gradient: it was computed under "
                          f"torch.no_grad(), or detached. {why} Compute without torch.no_grad() and "
                          "without .detach().")
    # the encoder states first: a cut in the attention also changes the gradient of hidden (the query)
    names = ["enc_outputs", "hidden", "embed.weight", *(f"cell.{n}" for n, _ in cell.named_parameters())]
    leaves = [enc_in, hidden_in, embed.weight, *cell.parameters()]
    up = torch.randn(new_hidden.shape, generator=g)
    grads = torch.autograd.grad((new_hidden * up).sum(), leaves, allow_unused=True)

    cell64 = copy.deepcopy(cell).double()
    ref_leaves = [enc_outputs.double().requires_grad_(True), hidden.double().requires_grad_(True),
                  embed.weight.detach().double().requires_grad_(True), *cell64.parameters()]
    k, h, emb_w = ref_leaves[:3]
    weights = _masked_softmax((k @ h[:, :, None])[..., 0], mask)  # (B, S)
    ref_new = cell64(torch.cat([nn.functional.embedding(tokens, emb_w), _attend(weights, k)], -1), h)
    ref_grads = torch.autograd.grad((ref_new * up.double()).sum(), ref_leaves)

    for name, grad, ref in zip(names, grads, ref_grads, strict=True):
        path = {"enc_outputs": " (a .detach(), .data, .item() or numpy on the attention's scores, weights or "
                               "context cuts the path from the new state back to the encoder)",
                "hidden": " (a .detach() on the previous state, or on the scores it makes, cuts the path "
                          "back to the earlier steps)"}.get(name, "")
        if grad is None:
            raise CheckFailed(f"{task}: {where} no gradient reaches {name} from the new state{path}. {why}")
        if not close(grad, ref, atol=1e-4, rtol=1e-3):
            err = (grad.detach().double() - ref).abs().max().item()
            raise CheckFailed(f"{task}: {where} the gradient of the new state with respect to {name} differs "
                              f"from the reference (largest error {err:.3g}): part of the step is cut from "
                              f"the graph{path or ' (a .detach() or .data somewhere?)'}. {why}")


def check_attention_decoder_step(fn: Callable) -> CheckResult:
    """Check ``fn(tokens, hidden, enc_outputs, mask, embed, cell) -> (new_hidden, weights)``.

    One step of the attention decoder (``seq2seq.RNNDecoder.step`` with dot attention), compared
    with the package's step, whose GRU weights are copied into ``cell``.
    """
    task = "attention_decoder_step"

    def body() -> str:
        g = torch.Generator().manual_seed(305)
        # (lengths, D, H, rows that separate right from nearly right (see _padded_keys), padding
        # keys); V = 11 target tokens
        cases = [([7, 1, 4, 6, 3], 6, 6, {"big": 0, "edge": 1, "high": 2, "far": 3}, "random"),
                 ([5, 2, 5, 1], 3, 8, {}, "zeros"), ([4, 6, 2], 5, 4, {"far": 2}, "zeros")]
        for i, (lengths, D, H, rows, pad_keys) in enumerate(cases):
            decoder, embed, cell = _decoder(11, D, H, seed=350 + i)
            B = len(lengths)
            tokens = torch.randint(1, 11, (B,), generator=g)  # (B,)
            hidden = torch.randn(B, H, generator=g)  # (B, H) s_{t-1}
            enc_outputs, mask = _padded_keys(g, hidden, lengths, rows, pad_keys)  # (B, S, H), (B, S)
            where = (f"(B={B}, S={mask.shape[1]}, D={D}, H={H}, source lengths {lengths})")
            result = call(task, fn, tokens.clone(), hidden.clone(), enc_outputs.clone(), mask.clone(),
                          embed, cell)
            new_hidden, w = unpack(task, result, ["new_hidden", "weights"])
            ref_hidden, ref_w = _reference_step(decoder, tokens, hidden, enc_outputs, mask)
            if (isinstance(new_hidden, torch.Tensor) and isinstance(w, torch.Tensor)
                    and new_hidden.shape == ref_w.shape and w.shape == ref_hidden.shape):
                raise CheckFailed(f"{task}: {where} you returned (weights, new_hidden); return them in the "
                                  "order (new_hidden, weights).")
            q, k = hidden.double(), enc_outputs.double()
            scores = (k @ q[:, :, None])[..., 0]  # (B, S, H) @ (B, H, 1) -> (B, S)
            with torch.no_grad():
                emb = embed(tokens).double()  # (B, D)
            if D == H and close(w, _masked_softmax((k @ emb[:, :, None])[..., 0], mask)):
                raise CheckFailed(f"{task}: {where} you scored the encoder states with the token's "
                                  "embedding; the query is the decoder's previous state, hidden = s_{t-1}.")
            if close(w, _masked_softmax(scores / math.sqrt(H), mask)):
                raise CheckFailed(f"{task}: {where} the scores are divided by sqrt(H): the decoder's dot "
                                  "attention is the plain dot product hidden . enc_outputs[:, s].")
            new_states = [ref_hidden]  # the query should be s_{t-1}; Luong's later variant uses s_t
            if isinstance(new_hidden, torch.Tensor) and new_hidden.shape == ref_hidden.shape:
                new_states.append(new_hidden.detach().double())
            if not close(w, ref_w) and any(close(w, _masked_softmax((k @ s[:, :, None])[..., 0], mask))
                                           for s in new_states):
                raise CheckFailed(f"{task}: {where} you computed the weights from the new state s_t; the "
                                  "query is the previous state s_{t-1}, not the new one: attend with "
                                  "`hidden` first, then feed the context to the cell.")
            try:
                _diagnose_weights(task, w, scores, mask, f"the tensor of weights {where}")
            except CheckFailed as err:
                raise CheckFailed(f"{err} (If your step calls masked_dot_attention from task 2, make that "
                                  "task's check pass first.)") from None
            _well_formed(task, new_hidden, ref_hidden.float(), f"the new state {where}")
            _diagnose_new_state(task, new_hidden, cell, emb, q, k, mask, ref_w, where)
            compare(task, new_hidden, ref_hidden.float(), what=f"the new state {where}")
            _check_step_gradients(task, fn, tokens, hidden, enc_outputs, mask, embed, cell, where, g)
        return (f"{len(cases)} padded batches against RNNDecoder.step (D = H and D != H, single-token "
                "rows, rows whose padding scores far above their real tokens): values and gradients")

    return run_check(task, body)


# ----------------------------------------------------------------------------- task 4: a prediction

def check_weight_per_token_prediction(fn: Callable[[], float]) -> CheckResult:
    """Check ``fn() -> float``: the weight of each real token when all scores are equal, n=5 of L=7."""
    task = "weight_per_token_prediction"

    def body() -> str:
        n, L = 5, 7
        got = as_float(task, call(task, fn), "your prediction")
        g = torch.Generator().manual_seed(306)
        keys = torch.randn(1, L, 4, generator=g)  # (1, L, H)
        mask = torch.arange(L)[None, :] < n  # (1, L): n real tokens, then padding
        _, weights = dot_product_attention(torch.zeros(1, 4), keys, mask)  # a zero query: equal scores
        truth = weights[0, 0].item()
        if abs(got - truth) <= 0.01:
            return (f"n = {n} real tokens of L = {L} (equal scores give each real token {truth:.3g}; "
                    f"yours {got:.3g}, within 0.01)")
        wrong = [(1 / L, f"that is 1/L = 1/{L}: the weight spread over all {L} positions, padding "
                         f"included. The mask removes the padding BEFORE the softmax, so the {n} real "
                         "tokens share the whole weight of 1."),
                 (0.0, "0 is the weight of each padding position, not of the real tokens."),
                 (1.0, f"1 is what the {n} real tokens get together; equal scores split it equally."),
                 (n / L, f"that is {n}/{L}, the fraction of real positions, not a weight.")]
        for value, why in wrong:
            if abs(got - value) <= 0.01:
                raise CheckFailed(f"{task}: your prediction {got:.3g}: {why}")
        raise CheckFailed(f"{task}: your prediction {got:.3g} is not what equal scores give. With every "
                          "score equal, the softmax gives every allowed position the same weight, and the "
                          "weights of a row sum to 1.")

    return run_check(task, body)
