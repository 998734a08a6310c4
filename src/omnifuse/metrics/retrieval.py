"""Cross-modal retrieval metrics from a similarity matrix: recall@K, median rank and MRR.

Every query may have several positive candidates (e.g. five captions per image). A query's rank
is the 1-based position of its best-scored positive among all candidates; ties with negatives
count against the query (pessimistic), so a collapsed model with constant scores gets rank
``1 + number of negatives`` instead of a perfect score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from omnifuse.metrics._common import ArrayLike, as_tensor

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class RetrievalResult:
    """Retrieval metrics for one query direction.

    Attributes:
        recall: ``{K: fraction of queries with a positive in the top K}`` (R@K / hit rate).
        median_rank: Median over queries of the best positive's 1-based rank (mean of the two
            middle ranks for an even number of queries).
        mean_reciprocal_rank: Mean over queries of ``1 / rank``.
        ranks: Long tensor [N_queries] of the ranks.
    """

    recall: dict[int, float]
    median_rank: float
    mean_reciprocal_rank: float
    ranks: torch.Tensor

    def scalars(self, prefix: str = "") -> dict[str, float | None]:
        """Flat view: ``<prefix>recall@K``, ``<prefix>median_rank``, ``<prefix>mrr``."""
        out: dict[str, float | None] = {f"{prefix}recall@{k}": v for k, v in self.recall.items()}
        out[f"{prefix}median_rank"] = self.median_rank
        out[f"{prefix}mrr"] = self.mean_reciprocal_rank
        return out


@dataclass(frozen=True)
class ImageTextRetrievalResult:
    """Both directions of image-text retrieval.

    Attributes:
        image_to_text: Images are the queries, texts the candidates.
        text_to_image: Texts are the queries, images the candidates.
    """

    image_to_text: RetrievalResult
    text_to_image: RetrievalResult

    def scalars(self) -> dict[str, float | None]:
        """Flat view with ``i2t/`` and ``t2i/`` prefixes, e.g. ``i2t/recall@1``."""
        return {**self.image_to_text.scalars("i2t/"), **self.text_to_image.scalars("t2i/")}


def relevance_matrix(
    positives: ArrayLike | Sequence[Sequence[int]], num_queries: int, num_candidates: int
) -> torch.Tensor:
    """Builds the boolean relevance matrix [N_queries, N_candidates].

    Args:
        positives: Either already a boolean matrix [N_queries, N_candidates], or per query a list
            of positive candidate indices (lists may differ in length).
        num_queries: N_queries.
        num_candidates: N_candidates.

    Returns:
        Bool tensor, True where the candidate is a positive of the query.
    """
    if _is_bool_matrix(positives):
        matrix = as_tensor(positives, "positives").bool()
    else:
        matrix = _indices_to_matrix(positives, num_queries, num_candidates)
    if tuple(matrix.shape) != (num_queries, num_candidates):
        raise ValueError(
            f"relevance matrix has shape {tuple(matrix.shape)}, expected "
            f"{(num_queries, num_candidates)} (queries x candidates)"
        )
    return matrix


def _is_bool_matrix(positives: object) -> bool:
    """True for a bool tensor/array or a list of lists of bools."""
    if hasattr(positives, "dtype"):
        return str(positives.dtype) in ("bool", "torch.bool")
    rows = list(positives) if isinstance(positives, Sequence) else []
    return len(rows) > 0 and all(
        isinstance(row, Sequence) and len(row) > 0 and all(isinstance(v, bool) for v in row)
        for row in rows
    )


def _indices_to_matrix(
    positives: ArrayLike | Sequence[Sequence[int]], num_queries: int, num_candidates: int
) -> torch.Tensor:
    rows = positives.tolist() if isinstance(positives, torch.Tensor | np.ndarray) else positives
    if len(rows) != num_queries:
        raise ValueError(f"got positives for {len(rows)} queries, but there are {num_queries}")
    matrix = torch.zeros(num_queries, num_candidates, dtype=torch.bool)
    for query, row in enumerate(rows):
        for index in [row] if isinstance(row, int) else row:
            # bool is an int subclass: reject it so a mistyped mask is not read as indices 0/1.
            valid = isinstance(index, int) and not isinstance(index, bool)
            if not valid or not 0 <= index < num_candidates:
                raise ValueError(
                    f"positives[{query}] contains {index!r}; candidate indices must be ints in "
                    f"0..{num_candidates - 1}"
                )
            matrix[query, index] = True
    return matrix


def positive_ranks(similarity: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's best-scored positive (ties with negatives count against).

    Args:
        similarity: Scores [N_queries, N_candidates]; higher means more similar.
        relevance: Bool [N_queries, N_candidates].

    Returns:
        Long tensor [N_queries].
    """
    missing = (~relevance.any(dim=1)).nonzero().flatten()
    if missing.numel() > 0:
        raise ValueError(f"query {int(missing[0])} has no positive candidate; ranks are undefined")
    best_positive = similarity.masked_fill(~relevance, float("-inf")).amax(dim=1, keepdim=True)
    beaten_by = (similarity >= best_positive) & ~relevance  # [N_queries, N_candidates]
    return beaten_by.sum(dim=1) + 1


def retrieval_metrics(
    similarity: ArrayLike,
    positives: ArrayLike | Sequence[Sequence[int]],
    ks: Sequence[int] = DEFAULT_KS,
) -> RetrievalResult:
    """Recall@K, median rank and mean reciprocal rank for one query direction.

    Args:
        similarity: Scores [N_queries, N_candidates].
        positives: Per query the positive candidate indices, or a bool matrix of the same shape.
        ks: Cut-offs K (a K at or above N_candidates trivially gives recall 1).

    Returns:
        The metrics.
    """
    scores = as_tensor(similarity, "similarity").double()
    if scores.ndim != 2 or scores.numel() == 0:
        raise ValueError(
            f"similarity must be a non-empty matrix [N_queries, N_candidates], "
            f"got shape {tuple(scores.shape)}"
        )
    if torch.isnan(scores).any():
        raise ValueError("similarity contains NaN; ranks would be meaningless")
    if any(k < 1 for k in ks):
        raise ValueError(f"every K must be >= 1, got ks={tuple(ks)}")
    ranks = positive_ranks(scores, relevance_matrix(positives, *scores.shape))
    return RetrievalResult(
        recall={k: float((ranks <= k).double().mean()) for k in ks},
        median_rank=float(ranks.double().quantile(0.5)),  # mean of the middle two if even
        mean_reciprocal_rank=float((1.0 / ranks.double()).mean()),
        ranks=ranks,
    )


def image_text_retrieval(
    similarity: ArrayLike,
    positives: ArrayLike | Sequence[Sequence[int]],
    ks: Sequence[int] = DEFAULT_KS,
) -> ImageTextRetrievalResult:
    """Image->text and text->image retrieval from one image-text similarity matrix.

    Args:
        similarity: Scores [N_images, N_texts].
        positives: Per image its matching text indices (e.g. its 5 captions), or a bool
            relevance matrix [N_images, N_texts]. Every text must match at least one image.
        ks: Cut-offs K for recall@K.

    Returns:
        Metrics for both directions; text->image uses the transposed matrices.
    """
    scores = as_tensor(similarity, "similarity")
    if scores.ndim != 2:
        raise ValueError(f"similarity must be [N_images, N_texts], got {tuple(scores.shape)}")
    relevance = relevance_matrix(positives, *scores.shape)
    return ImageTextRetrievalResult(
        image_to_text=retrieval_metrics(scores, relevance, ks),
        text_to_image=retrieval_metrics(scores.T, relevance.T, ks),
    )


def rerank_top_k(
    similarity: torch.Tensor,
    top_k: int,
    pair_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Re-score each query's ``top_k`` most similar candidates (ALBEF/BLIP re-ranking).

    Args:
        similarity: Scores [N_queries, N_candidates] of the first-stage ranker.
        top_k: Candidates per query to re-score (capped at N_candidates).
        pair_scores: ``(queries [P], candidates [P]) -> [P]`` scores of the given pairs (e.g. a
            matching head's logit on the fused pair); higher means a better match.

    Returns:
        Scores [N_queries, N_candidates]: each query's top ``top_k`` carry their new scores,
        lifted above every other candidate, which keep their first-stage order below them (a
        positive the first stage ranked beyond ``top_k`` keeps its rank).
    """
    scores = as_tensor(similarity, "similarity").double()
    k = min(top_k, scores.shape[1])
    top = scores.topk(k, dim=1).indices  # [N_q, k]
    queries = torch.arange(scores.shape[0]).unsqueeze(1).expand_as(top)
    rescored = pair_scores(queries.reshape(-1), top.reshape(-1)).double().reshape(top.shape)
    lift = scores.max() - rescored.min() + 1.0
    return scores.scatter(1, top, rescored + lift)
