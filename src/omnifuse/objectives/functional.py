"""Pure functions behind the objectives: tensors in, named outputs out; no parameters, no state.

Shape letters: ``B`` batch (this rank), ``N`` gathered batch or token count, ``D`` embedding width,
``L`` sequence length, ``V`` vocabulary size, ``P`` values per patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# The masking utilities moved to omnifuse.layers.masking (encoders use them too); these names keep
# working from here for code written against the old location.
from omnifuse.layers.masking import FramePatches as FramePatches
from omnifuse.layers.masking import RandomMasking as RandomMasking
from omnifuse.layers.masking import frames_to_patches as frames_to_patches
from omnifuse.layers.masking import patchify as patchify
from omnifuse.layers.masking import random_masking as random_masking
from omnifuse.layers.masking import take_tokens as take_tokens
from omnifuse.layers.masking import unpatchify as unpatchify
from omnifuse.layers.masking import unshuffle_tokens as unshuffle_tokens
from omnifuse.types import IGNORE_INDEX as IGNORE_INDEX  # re-exported for the objectives


class ContrastiveOutput(NamedTuple):
    """Result of :func:`contrastive_loss`.

    Attributes:
        loss: scalar, mean of the a->b and b->a cross-entropies.
        logits_ab: ``[B, N]`` scaled cosine similarity of local ``a`` rows to all ``b`` rows.
        logits_ba: ``[B, N]`` scaled cosine similarity of local ``b`` rows to all ``a`` rows.
        accuracy: scalar, share of rows (both directions) whose top column is a positive.
        logit_scale: scalar, the scale used (``1 / temperature``).
    """

    loss: Tensor
    logits_ab: Tensor
    logits_ba: Tensor
    accuracy: Tensor
    logit_scale: Tensor


class MatchingOutput(NamedTuple):
    """Result of :func:`matching_loss`: scalar ``loss`` and ``accuracy``, ``[N]`` ``scores``
    (the matched-class logit, or the single logit for ``[N]`` input)."""

    loss: Tensor
    accuracy: Tensor
    scores: Tensor


class MatchingPairs(NamedTuple):
    """Pairs for a matching head (:func:`sample_matching_pairs`), each ``[3B]`` long.

    Attributes:
        index_a: row of side ``a`` in each pair.
        index_b: row of side ``b`` in each pair.
        labels: 1 for a true pair, 0 for a mined negative.
    """

    index_a: Tensor
    index_b: Tensor
    labels: Tensor


class MaskedTokens(NamedTuple):
    """Result of :func:`mask_tokens`: ``[B, L]`` ``input_ids`` to feed the model and ``labels``
    (the original id where a token was selected, :data:`IGNORE_INDEX` elsewhere)."""

    input_ids: Tensor
    labels: Tensor


class TokenLossOutput(NamedTuple):
    """Result of :func:`mlm_loss` and :func:`lm_loss` (all scalars).

    Attributes:
        loss: mean cross-entropy over counted tokens (label smoothing included).
        accuracy: share of counted tokens whose argmax is the target (no gradient).
        perplexity: ``exp`` of the mean negative log-likelihood without smoothing (no gradient).
        num_tokens: how many tokens were counted.
    """

    loss: Tensor
    accuracy: Tensor
    perplexity: Tensor
    num_tokens: Tensor


class ReconstructionOutput(NamedTuple):
    """Result of :func:`mae_loss`: scalar ``loss`` and ``num_masked`` (tokens counted)."""

    loss: Tensor
    num_masked: Tensor


class TeacherForcing(NamedTuple):
    """Result of :func:`shift_for_teacher_forcing`, each ``[B, L]``.

    Attributes:
        decoder_input: ``bos_id`` followed by ``ids[:, :-1]``.
        targets: ``ids`` with padding replaced by :data:`IGNORE_INDEX`; position ``t`` is the
            token the decoder must predict after reading ``decoder_input[:, : t + 1]``.
        decoder_mask: bool, True where ``decoder_input`` is BOS or a real token.
    """

    decoder_input: Tensor
    targets: Tensor
    decoder_mask: Tensor


# --------------------------------------------------------------------------- contrastive


def _positive_targets(mask: Tensor) -> Tensor:
    """``[B, N]`` bool positives -> soft targets spreading each row's mass over its positives."""
    weights = mask.float()
    return weights / weights.sum(dim=1, keepdim=True)


def _hit_rate(logits: Tensor, positives: Tensor) -> Tensor:
    """Share of rows whose argmax column is a positive: ``[B, N]`` x2 -> scalar."""
    top = logits.argmax(dim=1, keepdim=True)
    return positives.gather(1, top).float().mean()


def _check_embeddings(a: Tensor, b: Tensor, all_a: Tensor, all_b: Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"embeddings must both be [B, D]; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if all_a.shape != all_b.shape or all_a.shape[1:] != a.shape[1:]:
        raise ValueError(
            f"gathered embeddings must both be [N, {a.shape[1]}]; "
            f"got {tuple(all_a.shape)} and {tuple(all_b.shape)}"
        )


def contrastive_loss(
    embeddings_a: Tensor,
    embeddings_b: Tensor,
    logit_scale: Tensor | float,
    *,
    all_a: Tensor | None = None,
    all_b: Tensor | None = None,
    offset: int = 0,
    positive_mask: Tensor | None = None,
) -> ContrastiveOutput:
    """Symmetric InfoNCE (CLIP) over cosine similarities of two embedding sets.

    Row ``i`` of ``a`` and row ``i`` of ``b`` are a pair. Each side is L2-normalised here, so raw
    projections can be passed. Each local row is scored against every gathered row of the other
    side; its target is its pair (at gathered column ``offset + i``), or, with ``positive_mask``,
    an even split over all its positives (ALBEF/BLIP soft targets, e.g. one caption twice).

    Args:
        embeddings_a: ``[B, D]`` this rank's side-``a`` embeddings.
        embeddings_b: ``[B, D]`` this rank's side-``b`` embeddings.
        logit_scale: ``1 / temperature``; a scalar tensor to learn it.
        all_a: ``[N, D]`` side ``a`` gathered over ranks; None means ``embeddings_a``.
        all_b: ``[N, D]`` side ``b`` gathered over ranks; None means ``embeddings_b``.
        offset: column of this rank's first row in ``all_a``/``all_b``.
        positive_mask: ``[N, N]`` bool over gathered rows, True where ``a_i`` and ``b_j`` match;
            each true pair ``(i, i)`` counts as positive whether or not it is set.

    Returns:
        :class:`ContrastiveOutput`; its loss is the mean over local rows, so the mean over
        equal-sized ranks equals the full-batch loss.
    """
    all_a = embeddings_a if all_a is None else all_a
    all_b = embeddings_b if all_b is None else all_b
    _check_embeddings(embeddings_a, embeddings_b, all_a, all_b)
    batch, total = embeddings_a.shape[0], all_a.shape[0]
    if offset < 0 or offset + batch > total:
        raise ValueError(
            f"offset {offset} + batch {batch} must lie within the {total} gathered rows"
        )
    scale = torch.as_tensor(logit_scale, dtype=embeddings_a.dtype, device=embeddings_a.device)
    a, b = F.normalize(embeddings_a, dim=-1), F.normalize(embeddings_b, dim=-1)
    logits_ab = scale * a @ F.normalize(all_b, dim=-1).T  # (B, N)
    logits_ba = scale * b @ F.normalize(all_a, dim=-1).T  # (B, N)
    rows = torch.arange(batch, device=a.device)
    pos = torch.zeros(batch, total, dtype=torch.bool, device=a.device)
    pos[rows, rows + offset] = True
    if positive_mask is None:
        targets_ab: Tensor = rows + offset
        targets_ba: Tensor = targets_ab
        pos_ab = pos_ba = pos
    else:
        if positive_mask.shape != (total, total):
            raise ValueError(
                f"positive_mask must be [{total}, {total}]; got {tuple(positive_mask.shape)}"
            )
        local = slice(offset, offset + batch)
        pos_ab, pos_ba = positive_mask[local].bool() | pos, positive_mask[:, local].T.bool() | pos
        targets_ab, targets_ba = _positive_targets(pos_ab), _positive_targets(pos_ba)
    loss = (F.cross_entropy(logits_ab, targets_ab) + F.cross_entropy(logits_ba, targets_ba)) / 2
    with torch.no_grad():
        accuracy = (_hit_rate(logits_ab, pos_ab) + _hit_rate(logits_ba, pos_ba)) / 2
    return ContrastiveOutput(loss, logits_ab, logits_ba, accuracy, scale)


# --------------------------------------------------------------------------- matching


def mine_hard_negatives(
    similarity: Tensor,
    generator: torch.Generator | None = None,
    *,
    positive_mask: Tensor | None = None,
    offset: int = 0,
) -> Tensor:
    """Sample one negative column per row with probability ``softmax(similarity)`` over negatives.

    As in ALBEF/BLIP: harder (more similar) negatives are drawn more often, and a positive is
    never drawn. Pass scaled logits (e.g. :attr:`ContrastiveOutput.logits_ab`) so the contrastive
    temperature sets how peaked the sampling is. No gradient flows through the choice.

    Args:
        similarity: ``[B, N]`` scores of each row against every candidate column.
        generator: random source; its device must match ``similarity``'s.
        positive_mask: ``[B, N]`` bool, True at columns that must never be drawn; None means
            only column ``offset + i`` for row ``i``.
        offset: column of row 0's positive when ``positive_mask`` is None.

    Returns:
        ``[B]`` long column indices.
    """
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be [B, N]; got {tuple(similarity.shape)}")
    batch, total = similarity.shape
    if positive_mask is None:
        if offset < 0 or offset + batch > total:
            raise ValueError(f"offset {offset} + batch {batch} must lie within {total} columns")
        positive_mask = torch.zeros(batch, total, dtype=torch.bool, device=similarity.device)
        rows = torch.arange(batch, device=similarity.device)
        positive_mask[rows, rows + offset] = True
    elif positive_mask.shape != similarity.shape:
        raise ValueError(
            f"positive_mask {tuple(positive_mask.shape)} must match similarity {(batch, total)}"
        )
    empty = positive_mask.all(dim=1)
    if bool(empty.any()):
        bad = empty.nonzero().flatten().tolist()
        raise ValueError(f"rows {bad} have no negative column to sample; need N > 1 candidates")
    with torch.no_grad():
        logits = similarity.float().masked_fill(positive_mask.bool(), float("-inf"))
        probs = logits.softmax(dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def sample_matching_pairs(
    logits_ab: Tensor, logits_ba: Tensor | None = None, generator: torch.Generator | None = None
) -> MatchingPairs:
    """Build the ITM batch of ALBEF/BLIP: every true pair plus one hard negative per side.

    Args:
        logits_ab: ``[B, B]`` scores of ``a`` rows against ``b`` rows (true pairs on the diagonal).
        logits_ba: ``[B, B]`` scores of ``b`` rows against ``a`` rows; None means ``logits_ab.T``.
        generator: random source for :func:`mine_hard_negatives`.

    Returns:
        :class:`MatchingPairs` ordered as ``[B true pairs, B (a_i, hard b), B (hard a, b_i)]``.
    """
    if logits_ab.ndim != 2 or logits_ab.shape[0] != logits_ab.shape[1]:
        raise ValueError(f"logits_ab must be square [B, B]; got {tuple(logits_ab.shape)}")
    logits_ba = logits_ab.T if logits_ba is None else logits_ba
    rows = torch.arange(logits_ab.shape[0], device=logits_ab.device)
    hard_b = mine_hard_negatives(logits_ab, generator)
    hard_a = mine_hard_negatives(logits_ba, generator)
    labels = torch.cat([torch.ones_like(rows), torch.zeros_like(rows), torch.zeros_like(rows)])
    return MatchingPairs(torch.cat([rows, rows, hard_a]), torch.cat([rows, hard_b, rows]), labels)


def matching_loss(logits: Tensor, labels: Tensor) -> MatchingOutput:
    """Binary matched/unmatched loss for a matching (ITM) head.

    Args:
        logits: ``[N, 2]`` class logits (class 1 = matched; cross-entropy) or ``[N]`` / ``[N, 1]``
            single logits (binary cross-entropy).
        labels: ``[N]`` with 1 for matched and 0 for unmatched.

    Returns:
        :class:`MatchingOutput`.
    """
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits.squeeze(1)
    if not (logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 2)):
        raise ValueError(f"logits must be [N, 2], [N, 1] or [N]; got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be [{logits.shape[0]}]; got {tuple(labels.shape)}")
    if logits.ndim == 2:
        loss = F.cross_entropy(logits, labels.long())
        predicted, scores = logits.argmax(dim=1), logits[:, 1]
    else:
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        predicted, scores = (logits > 0).long(), logits
    accuracy = (predicted == labels.long()).float().mean().detach()
    return MatchingOutput(loss, accuracy, scores)


# --------------------------------------------------------------------------- token losses


def _token_loss(
    logits: Tensor, targets: Tensor, ignore_index: int, smoothing: float
) -> TokenLossOutput:
    """Cross-entropy averaged over tokens whose target is not ``ignore_index``.

    ``[..., V]`` logits and ``[...]`` targets. With no counted token the loss is a zero that
    still carries a graph (``F.cross_entropy``'s mean would be NaN).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a vocab dim"
        )
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    counted = flat_targets != ignore_index
    count = counted.sum()
    denom = count.clamp(min=1).to(logits.dtype)
    loss = F.cross_entropy(
        flat_logits,
        flat_targets,
        ignore_index=ignore_index,
        reduction="sum",
        label_smoothing=smoothing,
    )
    with torch.no_grad():
        nll = (
            loss
            if smoothing == 0.0
            else F.cross_entropy(
                flat_logits, flat_targets, ignore_index=ignore_index, reduction="sum"
            )
        )
        hits = (flat_logits.argmax(dim=-1) == flat_targets) & counted
        accuracy = hits.sum() / denom
        perplexity = torch.exp(nll / denom)
    return TokenLossOutput(loss / denom, accuracy, perplexity, count)


def mask_tokens(
    input_ids: Tensor,
    attention_mask: Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> MaskedTokens:
    """Select tokens for masked language modelling with BERT's 80/10/10 rule.

    Each real, non-special token is selected with ``probability``; a row with such tokens but no
    selection gets one chosen uniformly, so no row yields an empty loss. A selected token becomes
    ``mask_id`` 80% of the time, a random non-special token 10%, and stays unchanged 10%.

    Args:
        input_ids: ``[B, L]`` token ids.
        attention_mask: ``[B, L]`` bool, True at real tokens; padding is never selected.
        mask_id: id of the mask token.
        vocab_size: ids are ``0 .. vocab_size - 1``; random replacements come from there.
        special_ids: ids never selected nor used as replacements (CLS, SEP, PAD, MASK, ...).
        probability: selection rate in ``(0, 1]``.
        generator: random source on ``input_ids``'s device.

    Returns:
        :class:`MaskedTokens`.
    """
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"probability must be in (0, 1]; got {probability}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id {mask_id} is outside the vocabulary 0..{vocab_size - 1}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} must match "
            f"input_ids {tuple(input_ids.shape)}"
        )
    device = input_ids.device
    specials = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype, device=device)
    ordinary = torch.arange(vocab_size, device=device)
    ordinary = ordinary[~torch.isin(ordinary, specials)]
    if ordinary.numel() == 0:
        raise ValueError(f"all {vocab_size} ids are special; no token can replace a masked one")
    candidates = attention_mask.bool() & ~torch.isin(input_ids, specials)
    draw = torch.rand(input_ids.shape, generator=generator, device=device)
    selected = candidates & (draw < probability)
    # Rows with candidates but no selection: the smallest draw among candidates is uniform.
    starved = candidates.any(dim=1) & ~selected.any(dim=1)
    forced = draw.masked_fill(~candidates, 2.0).argmin(dim=1)
    selected[starved, forced[starved]] = True
    action = torch.rand(input_ids.shape, generator=generator, device=device)
    pick = torch.randint(ordinary.numel(), input_ids.shape, generator=generator, device=device)
    masked = input_ids.masked_fill(selected & (action < 0.8), mask_id)
    swap = selected & (action >= 0.8) & (action < 0.9)
    masked = torch.where(swap, ordinary[pick].to(input_ids.dtype), masked)
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
    return MaskedTokens(masked, labels)


def mlm_loss(logits: Tensor, labels: Tensor) -> TokenLossOutput:
    """Cross-entropy over the tokens :func:`mask_tokens` selected.

    Args:
        logits: ``[B, L, V]`` predictions at every position.
        labels: ``[B, L]`` original ids at selected positions, :data:`IGNORE_INDEX` elsewhere.
    """
    return _token_loss(logits, labels, IGNORE_INDEX, 0.0)


def shift_for_teacher_forcing(
    ids: Tensor, bos_id: int, pad_id: int, attention_mask: Tensor | None = None
) -> TeacherForcing:
    """Turn target sequences into decoder inputs and aligned targets for teacher forcing.

    ``ids`` must not start with BOS (drop it first if the tokenizer adds one) and should end
    with EOS, so the decoder learns to stop. The shift happens here, so :func:`lm_loss` compares
    position ``t`` of the logits with position ``t`` of ``targets`` without shifting again.

    Args:
        ids: ``[B, L]`` target token ids, right-padded.
        bos_id: id fed to the decoder before the first target.
        pad_id: padding id in ``ids``; ignored when ``attention_mask`` is given.
        attention_mask: ``[B, L]`` bool, True at real tokens; needed when ``pad_id`` is also a
            real token (e.g. pad = EOS), since otherwise every ``pad_id`` counts as padding.

    Returns:
        :class:`TeacherForcing`.
    """
    if ids.ndim != 2:
        raise ValueError(f"ids must be [B, L]; got {tuple(ids.shape)}")
    valid = ids != pad_id if attention_mask is None else attention_mask.bool()
    if valid.shape != ids.shape:
        raise ValueError(f"attention_mask {tuple(valid.shape)} must match ids {tuple(ids.shape)}")
    bos = ids.new_full((ids.shape[0], 1), bos_id)
    decoder_input = torch.cat([bos, ids[:, :-1]], dim=1)
    decoder_mask = torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1)
    decoder_input = decoder_input.masked_fill(~decoder_mask, pad_id)
    return TeacherForcing(decoder_input, ids.masked_fill(~valid, IGNORE_INDEX), decoder_mask)


def lm_loss(
    logits: Tensor,
    targets: Tensor,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> TokenLossOutput:
    """Teacher-forced next-token loss for captioning / generative decoders.

    The caller shifts (see :func:`shift_for_teacher_forcing`): ``logits[:, t]`` is scored against
    ``targets[:, t]``. Pass ``ignore_index=pad_id`` to score unshifted, padded ids directly.

    Args:
        logits: ``[B, L, V]``.
        targets: ``[B, L]`` next-token ids; ``ignore_index`` positions are skipped.
        ignore_index: target value that is not scored.
        label_smoothing: in ``[0, 1)``; affects the loss, not the reported perplexity.

    Returns:
        :class:`TokenLossOutput` with loss, token accuracy and perplexity.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
    return _token_loss(logits, targets, ignore_index, label_smoothing)


def mae_loss(
    pred: Tensor, target: Tensor, mask: Tensor, norm_target: bool = True, eps: float = 1e-6
) -> ReconstructionOutput:
    """Mean squared error over hidden tokens only (MAE).

    Args:
        pred: ``[B, N, P]`` reconstructions.
        target: ``[B, N, P]`` e.g. :func:`~omnifuse.layers.masking.patchify` output.
        mask: ``[B, N]`` bool, True at hidden tokens, the only ones scored.
        norm_target: normalise each target patch by its own mean and (unbiased) variance, as
            MAE's ``norm_pix_loss``; needs ``P >= 2``.
        eps: added to the variance.

    Returns:
        :class:`ReconstructionOutput`; the loss is 0 (with a graph) when nothing is hidden.
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be equal [B, N, P]"
        )
    if mask.shape != pred.shape[:2]:
        raise ValueError(
            f"mask must be [{pred.shape[0]}, {pred.shape[1]}]; got {tuple(mask.shape)}"
        )
    if norm_target:
        if target.shape[-1] < 2:
            raise ValueError(
                "norm_target needs at least 2 values per patch; pass norm_target=False"
            )
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_token = (pred - target).pow(2).mean(dim=-1)  # (B, N)
    weights = mask.to(per_token.dtype)
    count = mask.sum()
    return ReconstructionOutput((per_token * weights).sum() / count.clamp(min=1), count)
