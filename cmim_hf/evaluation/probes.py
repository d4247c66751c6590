"""Downstream probes (scikit-learn) with hyper-parameters chosen by inner cross-validation.

Every probe is a pipeline ``median imputation -> scaling -> estimator`` fitted on
the model-selection pool only (the benchmark passes train + valid); regression targets are
standardised too (``TransformedTargetRegressor``), so SVR's epsilon and the MLP see unit-scale
targets. SVM and kNN also let the inner CV choose standardised or raw features (see
:func:`_scale_options`). The grid search uses K-fold CV inside the pool (stratified for classification,
grouped by scaffold when groups are given), then refits the best setting on the whole pool.
The caller predicts the test part once with the refitted model.

Probes: ``svm`` (RBF SVR/SVC), ``rf`` (random forest), ``ridge`` (ridge / logistic
regression), ``knn`` (k nearest neighbours, distance-weighted), ``mlp`` (one hidden layer of
256, early stopping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from cmim_hf.errors import InputError

__all__ = ["PROBE_NAMES", "ProbeError", "ProbeFit", "build_probe", "fit_probe", "positive_scores"]

PROBE_NAMES: tuple[str, ...] = ("svm", "rf", "ridge", "knn", "mlp")
INNER_FOLDS = 3


class ProbeError(InputError):
    """Unknown probe name or a pool that cannot be fitted."""


@dataclass(frozen=True)
class ProbeFit:
    """A probe refitted on the whole pool with the best hyper-parameters.

    Attributes:
        estimator: the fitted estimator.
        best_params: chosen grid values (short names, e.g. ``{"C": 10.0}``).
        cv_score: mean inner-CV score of the best setting (neg. RMSE or ROC-AUC; NaN if no CV).
        n_folds: inner folds used (0 when the pool was too small to search).
    """

    estimator: BaseEstimator
    best_params: dict[str, Any]
    cv_score: float
    n_folds: int


def _scale_options(name: str) -> list[Any]:
    """Feature scaling step(s) a probe may use; two options means inner CV chooses.

    Distance-based probes (SVM, kNN) search standardised vs raw features: standardising
    binary fingerprints inflates rare bits and hurts them (ESOL ECFP4 SVR RMSE 1.25 vs 0.98),
    while continuous embeddings usually need it. Trees never scale; ridge and MLP always do.
    """
    if name in {"svm", "knn"}:
        return [StandardScaler(), "passthrough"]
    if name == "rf":
        return ["passthrough"]
    return [StandardScaler()]


def _estimator_and_grid(name: str, task_type: str, seed: int, n_jobs: int) -> tuple[BaseEstimator, dict]:
    """(bare estimator, grid of its own parameters)."""
    regression = task_type == "regression"
    if name == "svm":
        return (SVR(kernel="rbf") if regression else SVC(kernel="rbf")), {"C": [1.0, 10.0]}
    if name == "rf":
        cls = RandomForestRegressor if regression else RandomForestClassifier
        return cls(n_estimators=300, n_jobs=n_jobs, random_state=seed), {"max_features": ["sqrt", 0.1]}
    if name == "ridge":
        if regression:
            return Ridge(), {"alpha": [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]}
        return LogisticRegression(max_iter=2000), {"C": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]}
    if name == "knn":
        cls = KNeighborsRegressor if regression else KNeighborsClassifier
        return cls(weights="distance"), {"n_neighbors": [3, 5, 10, 20]}
    if name == "mlp":
        cls = MLPRegressor if regression else MLPClassifier
        est = cls(hidden_layer_sizes=(256,), early_stopping=True, max_iter=300, random_state=seed)
        return est, {"alpha": [0.1, 1.0, 10.0]}
    raise ProbeError(f"unknown probe {name!r}; choose one of {', '.join(PROBE_NAMES)}")


def build_probe(
    name: str, task_type: str, seed: int = 0, n_jobs: int = 1
) -> tuple[BaseEstimator, dict[str, list[Any]]]:
    """Unfitted probe pipeline and its hyper-parameter grid (keys prefixed for the pipeline).

    The pipeline is ``impute -> scale -> model`` (regression: inside a target-standardising
    ``TransformedTargetRegressor``).

    Args:
        name: one of :data:`PROBE_NAMES`.
        task_type: ``"regression"`` or ``"classification"``.
        seed: random state of stochastic estimators.
        n_jobs: threads of the random forest.
    """
    estimator, grid = _estimator_and_grid(name, task_type, seed, n_jobs)
    scales = _scale_options(name)
    pipeline: BaseEstimator = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", scales[0]),
            ("model", estimator),
        ]
    )
    full_grid: dict[str, list[Any]] = {f"model__{key}": values for key, values in grid.items()}
    if len(scales) > 1:
        full_grid["scale"] = scales
    if task_type == "regression":
        pipeline = TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())
        full_grid = {f"regressor__{key}": values for key, values in full_grid.items()}
    return pipeline, full_grid


def _inner_cv(task_type: str, y: np.ndarray, groups: np.ndarray | None, seed: int) -> tuple[Any, int]:
    """Inner CV splitter for the pool and its number of folds (0 = too small to search)."""
    n_folds = min(INNER_FOLDS, len(y))  # a pool smaller than the folds searches with fewer
    if task_type == "classification":
        n_folds = min(n_folds, int(np.bincount(y.astype(int), minlength=2).min()))
    if groups is not None:
        n_folds = min(n_folds, len(np.unique(groups)))
    if n_folds < 2:
        return None, 0
    if task_type == "classification":
        if groups is not None:
            return StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed), n_folds
        return StratifiedKFold(n_folds, shuffle=True, random_state=seed), n_folds
    if groups is not None:
        return GroupKFold(n_folds, shuffle=True, random_state=seed), n_folds
    return KFold(n_folds, shuffle=True, random_state=seed), n_folds


def fit_probe(
    name: str,
    task_type: str,
    X: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    groups: np.ndarray | None = None,
    n_jobs: int = 1,
) -> ProbeFit:
    """Choose hyper-parameters by inner CV on (X, y) and refit on all of it.

    Args:
        name: probe name (:data:`PROBE_NAMES`).
        task_type: ``"regression"`` or ``"classification"`` (y in {0, 1}).
        X: pool features (n, D), NaN allowed (imputed).
        y: pool labels (n,), no NaN.
        seed: seed of the CV shuffling and of the estimator.
        groups: scaffold keys of the pool rows for grouped inner CV (None: ungrouped).
        n_jobs: parallel jobs of the grid search (and random forest threads).

    Raises:
        ProbeError: for classification pools with a single class.
    """
    if task_type == "classification" and len(np.unique(y)) < 2:
        raise ProbeError("the training pool holds a single class")
    estimator, grid = build_probe(name, task_type, seed, n_jobs=n_jobs)
    cv, n_folds = _inner_cv(task_type, y, groups, seed)
    if cv is None:
        fitted = clone(estimator).fit(X, y)
        return ProbeFit(fitted, {}, float("nan"), 0)
    scoring = "roc_auc" if task_type == "classification" else "neg_root_mean_squared_error"
    search_jobs = 1 if name == "rf" else n_jobs  # the forest already uses n_jobs threads
    search = GridSearchCV(estimator, grid, scoring=scoring, cv=cv, n_jobs=search_jobs, refit=True)
    search.fit(X, y, groups=groups)
    best = {key.rsplit("__", 1)[-1]: _json_value(value) for key, value in search.best_params_.items()}
    return ProbeFit(search.best_estimator_, best, float(search.best_score_), n_folds)


def _json_value(value: Any) -> Any:
    """Numpy scalars to Python scalars and estimators to class names, for JSON reports."""
    if isinstance(value, BaseEstimator):
        return type(value).__name__
    return value.item() if isinstance(value, np.generic) else value


def positive_scores(estimator: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """Ranking scores of the positive class (decision function, else probability)."""
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)
