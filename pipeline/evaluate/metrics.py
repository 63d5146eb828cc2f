"""Classification and language-model metrics, computed from plain arrays."""

from __future__ import annotations

import numpy as np

from ..models.runtime import perplexity as perplexity  # re-exported: one clamp, one place


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: rows are true labels, columns predicted labels."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined, as scikit-learn's zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, macro-F1 (over classes present in y_true or y_pred), per-class scores, confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    pc = per_class(cm)
    present = (cm.sum(0) + cm.sum(1)) > 0
    return {
        "n": len(y_true),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(pc["f1"][present].mean()) if present.any() else 0.0,
        "per_class": {k: v.tolist() for k, v in pc.items()},
        "confusion": cm.tolist(),
    }


def majority_baseline(train_labels: np.ndarray, n_test: int) -> np.ndarray:
    """Predict the most frequent training label (smallest id on ties) for every test example."""
    counts = np.bincount(np.asarray(train_labels), minlength=1)
    return np.full(n_test, int(counts.argmax()), dtype=np.int64)
