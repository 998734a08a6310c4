"""Classification metrics: accuracy, macro-F1, confusion matrix and per-class accuracy.

All counting is done by ``torchmetrics.functional.classification``; this module only turns
logits into labels, infers the number of classes and packages the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
)

from omnifuse.metrics._common import ArrayLike, as_tensor, check_same_length


@dataclass(frozen=True)
class ClassificationResult:
    """Classification metrics over one evaluation set.

    Attributes:
        accuracy: Fraction of samples whose predicted label equals the reference (micro average).
        macro_f1: Unweighted mean of per-class F1 over the classes that occur in the predictions
            or references (torchmetrics drops classes with no true/false positives/negatives).
        per_class_accuracy: Per class, the fraction of its reference samples predicted correctly
            (recall); ``None`` for classes without reference samples. Length ``num_classes``.
        confusion_matrix: Counts [num_classes, num_classes]; rows are references, columns are
            predictions (``confusion_matrix[i, j]`` = samples of class i predicted as j).
        class_names: Optional names used as keys by :meth:`scalars`.
    """

    accuracy: float
    macro_f1: float
    per_class_accuracy: list[float | None]
    confusion_matrix: torch.Tensor
    class_names: list[str] | None = None

    def scalars(self) -> dict[str, float | None]:
        """Flat ``{name: value}`` view; per-class keys are ``per_class_accuracy/<name>``."""
        names = self.class_names or [str(i) for i in range(len(self.per_class_accuracy))]
        out: dict[str, float | None] = {"accuracy": self.accuracy, "macro_f1": self.macro_f1}
        for name, value in zip(names, self.per_class_accuracy, strict=True):
            out[f"per_class_accuracy/{name}"] = value
        return out


def _to_labels(predictions: ArrayLike) -> tuple[torch.Tensor, int | None]:
    """Returns predicted labels [N] and, for logits [N, C], the class count C."""
    tensor = as_tensor(predictions, "predictions")
    if tensor.ndim == 2:
        return tensor.argmax(dim=-1), tensor.shape[-1]
    if tensor.ndim != 1:
        raise ValueError(
            f"predictions must be labels [N] or logits [N, C], got shape {tuple(tensor.shape)}"
        )
    return tensor, None


def _check_labels(labels: torch.Tensor, name: str, num_classes: int) -> torch.Tensor:
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels, got dtype {labels.dtype}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel() > 0:
        raise ValueError(
            f"{name} contains label {int(bad[0])}, outside the valid range 0..{num_classes - 1}"
        )
    return labels.long()


def _prepare(
    predictions: ArrayLike, references: ArrayLike, num_classes: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validates inputs; returns predicted labels [N], reference labels [N] and the class count."""
    preds, logit_classes = _to_labels(predictions)
    target = as_tensor(references, "references")
    if target.ndim != 1:
        raise ValueError(f"references must be labels [N], got shape {tuple(target.shape)}")
    check_same_length(preds, target)
    if num_classes is None and logit_classes is not None:
        num_classes = logit_classes
    elif num_classes is None:
        num_classes = max(int(preds.max()), int(target.max())) + 1
    elif logit_classes is not None and logit_classes != num_classes:
        raise ValueError(f"logits have {logit_classes} classes but num_classes={num_classes}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    preds = _check_labels(preds, "predictions", num_classes)
    return preds, _check_labels(target, "references", num_classes), num_classes


def confusion_matrix(
    predictions: ArrayLike, references: ArrayLike, num_classes: int | None = None
) -> torch.Tensor:
    """Confusion counts for plotting.

    Args:
        predictions: Predicted labels [N] or logits [N, C].
        references: Reference labels [N].
        num_classes: Class count; inferred from the logits or the largest label when ``None``.

    Returns:
        Long tensor [C, C]; rows are references, columns predictions.
    """
    preds, target, num_classes = _prepare(predictions, references, num_classes)
    return multiclass_confusion_matrix(preds, target, num_classes=num_classes)


def classification_metrics(
    predictions: ArrayLike,
    references: ArrayLike,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> ClassificationResult:
    """Accuracy, macro-F1, per-class accuracy and the confusion matrix.

    Args:
        predictions: Predicted labels [N] or logits / probabilities [N, C] (argmax is taken).
        references: Reference labels [N] in ``0..C-1``.
        num_classes: Class count C; inferred from the logits or the largest label when ``None``
            (pass it explicitly when some classes may be absent from a small evaluation set).
        class_names: Optional C names used as keys of :meth:`ClassificationResult.scalars`.

    Returns:
        The metrics.
    """
    preds, target, num_classes = _prepare(predictions, references, num_classes)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"got {len(class_names)} class_names for {num_classes} classes")
    matrix = multiclass_confusion_matrix(preds, target, num_classes=num_classes)
    # Accuracies as exact fractions of the matrix's integer counts: torchmetrics' float32 gives
    # 475 of 500 as 0.94999999, which fails a ">= 0.95" target that 475/500 meets.
    correct, support = matrix.diagonal().tolist(), matrix.sum(dim=1).tolist()
    macro_f1 = multiclass_f1_score(preds, target, num_classes=num_classes, average="macro")
    return ClassificationResult(
        accuracy=sum(correct) / max(1, sum(support)),
        macro_f1=float(macro_f1),
        # Classes without samples get None (torchmetrics reports 0), kept out of plots/means.
        per_class_accuracy=[
            hits / count if count > 0 else None
            for hits, count in zip(correct, support, strict=True)
        ],
        confusion_matrix=matrix,
        class_names=None if class_names is None else list(class_names),
    )
