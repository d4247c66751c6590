"""Local ``evaluate`` metrics: RMSE, MAE, R2 (regression), ROC-AUC and PR-AUC (classification) for
the benchmark; for generation, reconstruction (of token ids) and validity, uniqueness, novelty and
Tanimoto similarity (over the functions of :mod:`cmim_hf.generation.metrics`).

Each metric is a folder ``<name>/<name>.py`` holding an ``evaluate.Metric`` subclass, so it loads
offline with ``evaluate.load(metric_path(name))`` as well as by direct import, e.g.
``from cmim_hf.evaluation.metrics.rmse.rmse import RMSE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import evaluate

from cmim_hf.evaluation.metrics.mae.mae import MAE
from cmim_hf.evaluation.metrics.novelty.novelty import Novelty
from cmim_hf.evaluation.metrics.pr_auc.pr_auc import PRAUC
from cmim_hf.evaluation.metrics.r2.r2 import R2
from cmim_hf.evaluation.metrics.reconstruction.reconstruction import Reconstruction
from cmim_hf.evaluation.metrics.rmse.rmse import RMSE
from cmim_hf.evaluation.metrics.roc_auc.roc_auc import ROCAUC
from cmim_hf.evaluation.metrics.tanimoto_similarity.tanimoto_similarity import TanimotoSimilarity
from cmim_hf.evaluation.metrics.uniqueness.uniqueness import Uniqueness
from cmim_hf.evaluation.metrics.validity.validity import Validity

__all__ = [
    "METRICS_DIR",
    "REGRESSION_METRICS",
    "CLASSIFICATION_METRICS",
    "RMSE",
    "MAE",
    "R2",
    "ROCAUC",
    "PRAUC",
    "Reconstruction",
    "Validity",
    "Uniqueness",
    "Novelty",
    "TanimotoSimilarity",
    "metric_path",
    "load_metric",
    "compute_metric",
]

METRICS_DIR = Path(__file__).resolve().parent
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
CLASSIFICATION_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc")
_CLASSES: dict[str, type[evaluate.Metric]] = {
    "rmse": RMSE,
    "mae": MAE,
    "r2": R2,
    "roc_auc": ROCAUC,
    "pr_auc": PRAUC,
    "reconstruction": Reconstruction,
    "validity": Validity,
    "uniqueness": Uniqueness,
    "novelty": Novelty,
    "tanimoto_similarity": TanimotoSimilarity,
}


def metric_path(name: str) -> str:
    """Folder of the local metric ``name``, for ``evaluate.load``."""
    if name not in _CLASSES:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(_CLASSES)}")
    return str(METRICS_DIR / name)


def load_metric(name: str) -> evaluate.EvaluationModule:
    """``evaluate.load`` of the local metric ``name`` (no network)."""
    return evaluate.load(metric_path(name))


@cache
def _instance(name: str) -> evaluate.Metric:
    return _CLASSES[name](keep_in_memory=True)


def compute_metric(name: str, predictions: Sequence[float], references: Sequence[float]) -> float:
    """Value of metric ``name`` on one set of predictions (an in-memory metric instance)."""
    if name not in _CLASSES:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(_CLASSES)}")
    return float(_instance(name).compute(predictions=list(predictions), references=list(references))[name])
