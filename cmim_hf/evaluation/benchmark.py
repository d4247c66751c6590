"""The downstream benchmark: featurizers x tasks x seeds x probes under one protocol.

Protocol, identical for every featurizer (so rows are comparable):

1. Load the task; check every SMILES with RDKit; invalid rows are reported (file row, SMILES,
   RDKit's reason) and dropped before any featurizer runs.
2. Split the valid molecules (``random``, ``scaffold`` or ``scaffold_random``; 80/10/10 by
   default). The split of a (task, seed) pair is shared by all featurizers and probes.
   ``scaffold`` is deterministic: its seeds only vary the probes' randomness.
3. Model selection pool = train + valid. Hyper-parameters are chosen by 3-fold inner CV on the
   pool (folds grouped by scaffold for scaffold splits), the best setting is refitted on the
   pool, and the test part is predicted once.
4. Each label column is its own probe, trained on the pool rows where it is present.
   Classification labels whose test part lacks a class are skipped; a fold's metric is the
   mean over the scored labels. Metrics: RMSE, MAE, R2 or ROC-AUC, PR-AUC (local
   ``evaluate`` modules). Reports give mean and std (ddof=0) over seeds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cmim_hf.chem import validate_smiles
from cmim_hf.evaluation.featurizers import Featurizer, featurize, resolve_featurizer
from cmim_hf.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metric
from cmim_hf.evaluation.probes import PROBE_NAMES, ProbeError, fit_probe, positive_scores
from cmim_hf.evaluation.reports import plot_parity, plot_pca, summarize, write_reports
from cmim_hf.evaluation.tasks import (
    DEFAULT_FRACTIONS,
    SPLIT_KINDS,
    DataError,
    MoleculeTask,
    Split,
    load_task,
    make_split,
    scaffold_keys,
)

__all__ = ["BenchmarkResults", "evaluate_fold", "run_benchmark", "task_record"]


@dataclass
class BenchmarkResults:
    """Everything a benchmark run produced.

    Attributes:
        config: the run configuration.
        tasks: per task: type, source, label names, row counts and invalid rows.
        featurizers: per featurizer and task: feature dimension, non-finite count, seconds.
        folds: one record per (task, featurizer, probe, seed) with metrics, per-label metrics,
            chosen hyper-parameters and sizes.
        summary: mean/std over seeds per (task, featurizer, probe, metric).
        files: paths of the written JSON, Markdown and PNG files.
    """

    config: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    featurizers: dict[str, dict[str, Any]]
    folds: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    files: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields."""
        return {
            "config": self.config,
            "tasks": self.tasks,
            "featurizers": self.featurizers,
            "folds": self.folds,
            "summary": self.summary,
            "files": self.files,
        }

    def mean(self, task: str, featurizer: str, probe: str, metric: str) -> float:
        """Mean over seeds of one metric (NaN if absent)."""
        for s in self.summary:
            if (s["task"], s["featurizer"], s["probe"], s["metric"]) == (task, featurizer, probe, metric):
                return s["mean"]
        return float("nan")


def _metric_names(task_type: str) -> tuple[str, ...]:
    return REGRESSION_METRICS if task_type == "regression" else CLASSIFICATION_METRICS


def skip_reason(task_type: str, y_pool: np.ndarray, y_test: np.ndarray) -> str | None:
    """Why a label cannot be scored in this fold, or None."""
    if len(y_test) == 0 or len(y_pool) == 0:
        return "no labelled molecules in the pool or test part"
    if task_type == "classification":
        if len(np.unique(y_test)) < 2:
            return "test part holds a single class"
        if len(np.unique(y_pool)) < 2:
            return "training pool holds a single class"
    return None


def evaluate_fold(
    X: np.ndarray,
    labels: np.ndarray,
    task_type: str,
    split: Split,
    probe: str,
    seed: int,
    groups: np.ndarray | None = None,
    n_jobs: int = 1,
    label_names: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Fit ``probe`` on train+valid of one split and score the test part once.

    Args:
        X: features of the valid molecules (N, D).
        labels: (N, T) labels, NaN = missing.
        task_type: ``"regression"`` or ``"classification"``.
        split: positions into X.
        probe: probe name.
        seed: probe seed.
        groups: scaffold key per molecule for grouped inner CV (None: ungrouped).
        n_jobs: parallel jobs.
        label_names: keys of the per-label records (default: column numbers as strings).

    Returns:
        (record with ``metrics`` (mean over scored labels) and, keyed by label name,
        ``per_label`` metrics, ``best_params``, ``cv_score`` and ``skipped`` reasons;
        test (y_true, y_pred) per scored label column index).
    """
    names = list(label_names) if label_names is not None else [str(t) for t in range(labels.shape[1])]
    pool = np.concatenate([split.train, split.valid])
    metric_names = _metric_names(task_type)
    per_label: dict[str, dict[str, float]] = {}
    best_params: dict[str, dict[str, Any]] = {}
    cv_scores: dict[str, float] = {}
    skipped: dict[str, str] = {}
    predictions: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t in range(labels.shape[1]):
        pool_t = pool[~np.isnan(labels[pool, t])]
        test_t = split.test[~np.isnan(labels[split.test, t])]
        y_pool, y_test = labels[pool_t, t], labels[test_t, t]
        reason = skip_reason(task_type, y_pool, y_test)
        if reason:
            skipped[names[t]] = reason
            continue
        fit = fit_probe(
            probe,
            task_type,
            X[pool_t],
            y_pool,
            seed=seed,
            groups=None if groups is None else groups[pool_t],
            n_jobs=n_jobs,
        )
        if task_type == "regression":
            y_pred = np.asarray(fit.estimator.predict(X[test_t]), dtype=np.float64)
        else:
            y_pred = positive_scores(fit.estimator, X[test_t])
        per_label[names[t]] = {m: compute_metric(m, y_pred, y_test) for m in metric_names}
        best_params[names[t]] = fit.best_params
        cv_scores[names[t]] = fit.cv_score
        predictions[t] = (y_test, y_pred)
    return fold_record(per_label, metric_names, skipped, best_params, cv_scores), predictions


def fold_record(
    per_label: dict[str, dict[str, float]],
    metric_names: Sequence[str],
    skipped: dict[str, str],
    best_params: dict[str, Any] | None = None,
    cv_scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One fold's JSON record: each metric averaged over the scored labels (NaN when none was)."""
    metrics = {
        m: float(np.mean([v[m] for v in per_label.values()])) if per_label else float("nan")
        for m in metric_names
    }
    return {
        "metrics": metrics,
        "n_labels_scored": len(per_label),
        "per_label": per_label,
        "best_params": best_params or {},
        "cv_score": cv_scores or {},
        "skipped": skipped,
    }


def prepare_task(
    task: str | MoleculeTask, max_molecules: int | None, data_dir: str | Path | None
) -> tuple[MoleculeTask, list[dict[str, Any]]]:
    """Load (and optionally subsample) a task; drop invalid SMILES and report them by file row."""
    loaded = load_task(task, data_dir=data_dir) if isinstance(task, str) else task
    if max_molecules is not None:
        loaded = loaded.subsample(max_molecules, seed=0)
    report = validate_smiles(loaded.smiles)
    invalid = [
        {"row": int(loaded.row_ids[r.index]), "smiles": r.smiles, "reason": r.reason} for r in report.invalid
    ]
    return loaded.select(report.valid_indices), invalid


def prepare_tasks(
    tasks: Sequence[str | MoleculeTask], max_molecules: int | None, data_dir: str | Path | None
) -> list[tuple[MoleculeTask, list[dict[str, Any]]]]:
    """:func:`prepare_task` for each task, refusing two tasks of one name: their folds would be
    averaged into one row and their plots written to one file.

    Raises:
        DataError: naming the clash and both sources.
    """
    prepared = [prepare_task(task, max_molecules, data_dir) for task in tasks]
    sources: dict[str, str] = {}
    for task, _ in prepared:
        if task.name in sources:
            raise DataError(
                f"two tasks are named {task.name!r} ({sources[task.name]} and {task.source}): "
                "give the --csv task another --task-name"
            )
        sources[task.name] = task.source
    return prepared


def task_record(task: MoleculeTask, invalid: list[dict[str, Any]]) -> dict[str, Any]:
    """A task's entry in ``BenchmarkResults.tasks`` (the benchmark's and fine-tuning's): its type,
    source and label names, the molecules kept and the invalid rows :func:`prepare_task` dropped."""
    return {
        "task_type": task.task_type,
        "source": task.source,
        "label_names": task.label_names,
        "n_valid": len(task),
        "n_invalid": len(invalid),
        "invalid_rows": invalid,
    }


def _describe(spec: str | Featurizer) -> str:
    """A featurizer's spec string, function name or repr, for the config record."""
    if isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", None) or repr(spec)


def as_seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise DataError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    return [int(s) for s in seeds]


def _check_config(split: str, probes: Sequence[str], featurizers: Mapping[str, Any]) -> None:
    if split not in SPLIT_KINDS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_KINDS)}")
    unknown = [p for p in probes if p not in PROBE_NAMES]
    if unknown or not probes:
        raise ProbeError(f"unknown probe(s) {unknown}; choose from {', '.join(PROBE_NAMES)}")
    if not featurizers:
        raise DataError("at least one featurizer is required")


def _run_seeds(
    task: MoleculeTask,
    X: np.ndarray,
    feat_name: str,
    probe: str,
    split: str,
    splits: Mapping[int, Split],
    keys: np.ndarray | None,
    n_jobs: int,
    bar: tqdm,
) -> tuple[list[dict[str, Any]], tuple[np.ndarray, np.ndarray] | None]:
    """Fold records of one (task, featurizer, probe) over all seeds, and the pooled test
    (y_true, y_pred) of the first label for the parity plot (None if it was never scored)."""
    folds: list[dict[str, Any]] = []
    pooled: list[tuple[np.ndarray, np.ndarray]] = []
    for seed, fold_split in splits.items():
        bar.set_postfix_str(f"{task.name} | {feat_name} | {probe} | seed {seed}")
        start = time.perf_counter()
        record, predictions = evaluate_fold(
            X, task.labels, task.task_type, fold_split, probe, seed, keys, n_jobs, task.label_names
        )
        n_train, n_valid, n_test = fold_split.sizes()
        folds.append(
            {"task": task.name, "featurizer": feat_name, "probe": probe, "seed": seed, "split": split,
             "n_train": n_train, "n_valid": n_valid, "n_test": n_test,
             **record, "seconds": time.perf_counter() - start}
        )  # fmt: skip
        if 0 in predictions:
            pooled.append(predictions[0])
        bar.update(1)
    if not pooled:
        return folds, None
    return folds, (np.concatenate([p[0] for p in pooled]), np.concatenate([p[1] for p in pooled]))


def run_benchmark(
    featurizers: Mapping[str, str | Featurizer],
    tasks: Sequence[str | MoleculeTask],
    split: str = "random",
    seeds: int | Sequence[int] = 5,
    probes: Sequence[str] = ("svm",),
    out_dir: str | Path | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_molecules: int | None = None,
    data_dir: str | Path | None = None,
    n_jobs: int = 1,
    plots: bool = True,
    progress: bool = True,
) -> BenchmarkResults:
    """Run the benchmark protocol (module docstring) and write its reports.

    Args:
        featurizers: column name -> ``"ecfp4"``, ``"descriptors"``, a cMIM checkpoint folder,
            or any callable ``list[str] -> np.ndarray (N, D)``.
        tasks: built-in task names (:data:`cmim_hf.evaluation.tasks.BUILTIN_TASKS`) or loaded tasks.
        split: ``"random"``, ``"scaffold"`` or ``"scaffold_random"``.
        seeds: number of seeds (0..n-1) or explicit seeds.
        probes: probe names (:data:`cmim_hf.evaluation.probes.PROBE_NAMES`).
        out_dir: where ``results.json``, ``results.md`` and the PNGs go (None: nothing written).
        fractions: train/valid/test fractions.
        max_molecules: seeded subsample of each task before validation (for quick runs).
        data_dir: folder of the built-in MoleculeNet files (default: shipped copy).
        n_jobs: parallel jobs for the inner CV / random forest.
        plots: write the PNG plots.
        progress: show a tqdm progress bar.

    Raises:
        DataError, ProbeError, FeaturizerError: bad configuration (before any work is done).
        FeaturizerRuntimeError: a featurizer fails or returns a wrongly shaped array.
    """
    seed_list = as_seed_list(seeds)
    _check_config(split, probes, featurizers)
    resolved = {name: resolve_featurizer(spec) for name, spec in featurizers.items()}
    prepared = prepare_tasks(tasks, max_molecules, data_dir)
    config = {
        "featurizers": {name: _describe(spec) for name, spec in featurizers.items()},
        "tasks": [t.name for t, _ in prepared],
        "split": split,
        "seeds": seed_list,
        "probes": list(probes),
        "fractions": list(fractions),
        "model_selection": "3-fold inner CV on train+valid (grouped by scaffold for scaffold splits), refit on train+valid, test scored once",
        "max_molecules": max_molecules,
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    task_info: dict[str, dict[str, Any]] = {}
    feat_info: dict[str, dict[str, Any]] = {name: {} for name in resolved}
    folds: list[dict[str, Any]] = []
    files: dict[str, Any] = {"parity": {}, "pca": {}}
    total = len(prepared) * len(resolved) * len(probes) * len(seed_list)
    bar = tqdm(total=total, desc="benchmark", disable=not progress, unit="fold")
    for task, invalid in prepared:
        task_info[task.name] = task_record(task, invalid)
        keys = None if split == "random" else np.asarray(scaffold_keys(task.smiles), dtype=object)
        splits = {seed: make_split(split, task.smiles, seed, fractions, scaffolds=keys) for seed in seed_list}
        features: dict[str, np.ndarray] = {}
        parity: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for feat_name, featurizer in resolved.items():
            bar.set_postfix_str(f"{task.name} | featurizing {feat_name}")
            start = time.perf_counter()
            X = featurize(featurizer, task.smiles, name=feat_name)
            seconds = time.perf_counter() - start
            feat_info[feat_name][task.name] = {
                "dim": int(X.shape[1]),
                "n_nonfinite": int(np.isnan(X).sum()),
                "seconds": seconds,
            }
            features[feat_name] = X
            for probe in probes:
                probe_folds, pooled = _run_seeds(task, X, feat_name, probe, split, splits, keys, n_jobs, bar)
                folds.extend(probe_folds)
                if pooled is not None:
                    parity[f"{feat_name} / {probe}"] = pooled
        if out is not None and plots:
            _write_task_plots(out, task, features, parity, files)
    bar.close()
    summary = summarize(folds)
    results = BenchmarkResults(config, task_info, feat_info, folds, summary, files)
    if out is not None:
        write_reports(results, out)
    return results


def _write_task_plots(
    out: Path,
    task: MoleculeTask,
    features: Mapping[str, np.ndarray],
    parity: Mapping[str, tuple[np.ndarray, np.ndarray]],
    files: dict[str, Any],
) -> None:
    """PCA map of every featurizer (first label) and, for regression, the parity plot."""
    plottable = {name: X for name, X in features.items() if X.shape[1] >= 2}
    if plottable:
        path = out / f"pca_{task.name}.png"
        plot_pca(task.name, plottable, task.labels[:, 0], task.task_type, task.label_names[0], path)
        files["pca"][task.name] = str(path)
    if task.task_type == "regression" and parity:
        path = out / f"parity_{task.name}.png"
        plot_parity(task.name, parity, path)
        files["parity"][task.name] = str(path)
