"""Retrieval recall / median rank / MRR on a hand-made matrix with several positives."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

from omnifuse.metrics import image_text_retrieval, rerank_top_k, retrieval_metrics

# 3 images x 6 texts; image i owns texts 2i and 2i+1.
SIMILARITY = torch.tensor(
    [
        [0.9, 0.1, 0.8, 0.2, 0.3, 0.0],  # best positive 0.9 -> rank 1
        [0.7, 0.6, 0.1, 0.5, 0.2, 0.3],  # best positive 0.5, beaten by 0.7, 0.6 -> rank 3
        [0.4, 0.3, 0.2, 0.1, 0.0, 0.35],  # best positive 0.35, beaten by 0.4 -> rank 2
    ]
)
POSITIVES = [[0, 1], [2, 3], [4, 5]]


def test_image_to_text_hand_computed() -> None:
    result = retrieval_metrics(SIMILARITY, POSITIVES, ks=(1, 2, 5))
    assert result.ranks.tolist() == [1, 3, 2]
    assert result.recall == pytest.approx({1: 1 / 3, 2: 2 / 3, 5: 1.0}, abs=1e-9)
    assert result.median_rank == 2.0
    assert result.mean_reciprocal_rank == pytest.approx((1 + 1 / 3 + 1 / 2) / 3, abs=1e-9)


def test_both_directions_hand_computed() -> None:
    scalars = image_text_retrieval(SIMILARITY, POSITIVES, ks=(1, 5)).scalars()
    # text -> image ranks (columns): 1, 3, 3, 1, 3, 1
    assert scalars["t2i/recall@1"] == pytest.approx(0.5, abs=1e-9)
    assert scalars["t2i/recall@5"] == pytest.approx(1.0, abs=1e-9)
    assert scalars["t2i/median_rank"] == pytest.approx(2.0, abs=1e-9)
    assert scalars["t2i/mrr"] == pytest.approx((3 + 3 * (1 / 3)) / 6, abs=1e-9)
    assert scalars["i2t/recall@1"] == pytest.approx(1 / 3, abs=1e-9)


def test_bool_relevance_matrix_equals_index_lists() -> None:
    relevance = torch.zeros(3, 6, dtype=torch.bool)
    for image, texts in enumerate(POSITIVES):
        relevance[image, texts] = True
    from_matrix = image_text_retrieval(SIMILARITY, relevance).scalars()
    assert from_matrix == image_text_retrieval(SIMILARITY, POSITIVES).scalars()
    assert image_text_retrieval(SIMILARITY, relevance.numpy()).scalars() == from_matrix


def test_ties_count_against_the_query() -> None:
    result = retrieval_metrics(torch.ones(3, 6), POSITIVES, ks=(1, 5))
    assert result.ranks.tolist() == [5, 5, 5]  # 4 negatives tie with the positives
    assert result.recall[1] == 0.0


def test_agrees_with_torchmetrics_on_random_scores() -> None:
    scores = torch.rand(8, 40, generator=torch.Generator().manual_seed(1))
    positives = [[5 * q + j for j in range(5)] for q in range(8)]
    relevance = torch.zeros_like(scores, dtype=torch.bool)
    for query, texts in enumerate(positives):
        relevance[query, texts] = True
    indexes = torch.arange(8).unsqueeze(1).expand(8, 40)
    ours = retrieval_metrics(scores, positives, ks=(1, 5, 10))
    for k in (1, 5, 10):
        expected = RetrievalHitRate(top_k=k)(
            scores.flatten(), relevance.flatten(), indexes.flatten()
        )
        assert ours.recall[k] == pytest.approx(float(expected), abs=1e-6)
    mrr = RetrievalMRR()(scores.flatten(), relevance.flatten(), indexes.flatten())
    assert ours.mean_reciprocal_rank == pytest.approx(float(mrr), abs=1e-6)


@pytest.mark.parametrize(
    ("positives", "similarity", "match"),
    [
        ([[0], [], [4]], SIMILARITY, "query 1 has no positive candidate"),
        ([[0], [7], [4]], SIMILARITY, r"positives\[1\] contains 7"),
        ([[0], [2]], SIMILARITY, "positives for 2 queries, but there are 3"),
        (POSITIVES, torch.full((3, 6), float("nan")), "NaN"),
        (POSITIVES, torch.ones(3), r"\[N_images, N_texts\]"),
    ],
)
def test_bad_input_is_rejected(positives: object, similarity: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        image_text_retrieval(similarity, positives)  # type: ignore[arg-type]


def test_text_without_image_is_rejected() -> None:
    with pytest.raises(ValueError, match="query 5 has no positive"):
        image_text_retrieval(SIMILARITY, [[0, 1], [2, 3], [4]])


def test_rerank_top_k_reorders_only_the_top_candidates() -> None:
    similarity = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.2, 0.6, 0.5, 0.1]])
    # The second stage prefers higher candidate indices.
    pair_scores_seen: list[tuple[int, int]] = []

    def pair_scores(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        pair_scores_seen.extend(zip(queries.tolist(), candidates.tolist(), strict=True))
        return candidates.double()

    reranked = rerank_top_k(similarity, 2, pair_scores)
    # Query 0: top 2 by similarity are candidates 0, 1 -> reordered 1 above 0; 3 and 2 below.
    assert reranked[0].argsort(descending=True).tolist() == [1, 0, 3, 2]
    assert reranked[1].argsort(descending=True).tolist() == [2, 1, 0, 3]
    assert sorted(pair_scores_seen) == [(0, 0), (0, 1), (1, 1), (1, 2)]
    # A positive beyond the top k keeps its first-stage rank.
    assert retrieval_metrics(reranked, [[3], [0]]).ranks.tolist() == [3, 3]


def test_rerank_top_k_beyond_the_candidates_reranks_everything() -> None:
    similarity = torch.tensor([[0.3, 0.2, 0.1]])
    reranked = rerank_top_k(similarity, 10, lambda q, c: -c.double())
    assert reranked[0].argsort(descending=True).tolist() == [0, 1, 2]
    reranked = rerank_top_k(similarity, 10, lambda q, c: c.double())
    assert reranked[0].argsort(descending=True).tolist() == [2, 1, 0]
