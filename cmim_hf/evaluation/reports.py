"""Benchmark reports: summary statistics, JSON, a Markdown comparison table and PNG plots.

Plots use ``matplotlib.figure.Figure`` directly (no pyplot state, no display needed).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from cmim_hf.outputs import atomic_output

__all__ = [
    "summarize",
    "format_cell",
    "markdown_report",
    "markdown_table",
    "write_json",
    "write_text",
    "write_reports",
    "RESULT_FILES",
    "plot_parity",
    "plot_pca",
]

RESULT_FILES = ("results.json", "results.md")
"""What ``write_reports`` puts in a run folder: a folder holding either has an earlier run's results."""

PCA_MAX_POINTS = 3000


def summarize(folds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and population std (``ddof=0``) over seeds of every metric.

    Args:
        folds: fold records with keys ``task, featurizer, probe, seed, metrics``.

    Returns:
        One record per (task, featurizer, probe, metric): ``mean, std, n`` (NaN folds are skipped).
    """
    groups: dict[tuple[str, str, str, str], list[float]] = {}
    for fold in folds:
        for metric, value in fold["metrics"].items():
            groups.setdefault((fold["task"], fold["featurizer"], fold["probe"], metric), []).append(value)
    summary = []
    for (task, featurizer, probe, metric), values in groups.items():
        finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
        summary.append(
            {
                "task": task,
                "featurizer": featurizer,
                "probe": probe,
                "metric": metric,
                "mean": float(finite.mean()) if finite.size else float("nan"),
                "std": float(finite.std()) if finite.size else float("nan"),
                "n": int(finite.size),
            }
        )
    return summary


def format_cell(mean: float, std: float, n: int) -> str:
    """``"1.234 ± 0.056"``; ``"n/a"`` when no fold produced a value."""
    if n == 0 or not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table of ``rows`` (cells already formatted) under ``header``."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def markdown_report(
    summary: Sequence[Mapping[str, Any]],
    featurizers: Sequence[str],
    task_info: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
) -> str:
    """Markdown with one table per task: rows (probe, metric), one column per featurizer.

    Args:
        summary: output of :func:`summarize`.
        featurizers: column order.
        task_info: per task ``task_type, n_valid, n_invalid, label_names``.
        config: run configuration (split, seeds, fractions, probes).
    """
    cells = {(s["task"], s["featurizer"], s["probe"], s["metric"]): s for s in summary}
    lines = [
        "# Benchmark results",
        "",
        f"Split `{config['split']}` {'/'.join(str(f) for f in config['fractions'])}, "
        f"seeds {config['seeds']}, probes {', '.join(config['probes'])}; "
        "mean ± std (ddof=0) over seeds of the test-part metric. "
        "Multi-task: mean over labels (classification: labels with both classes in the test part).",
        "",
    ]
    for task, info in task_info.items():
        lines += [
            f"## {task} ({info['task_type']}, {info['n_valid']} molecules, {info['n_invalid']} invalid "
            f"SMILES excluded, {len(info['label_names'])} label(s))",
            "",
            "| probe | metric | " + " | ".join(featurizers) + " |",
            "|---|---|" + "---|" * len(featurizers),
        ]
        metrics = dict.fromkeys(key[3] for key in cells if key[0] == task)
        for probe in config["probes"]:
            for metric in metrics:
                row = []
                for featurizer in featurizers:
                    s = cells.get((task, featurizer, probe, metric))
                    row.append(format_cell(s["mean"], s["std"], s["n"]) if s else "n/a")
                lines.append(f"| {probe} | {metric} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """Numpy types and NaN to JSON-safe Python values (NaN -> null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` through a temporary file, so a failure leaves the old file whole."""
    with atomic_output(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented JSON (NaN as ``null``), atomically."""
    return write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n", path)


def write_reports(results: Any, out_dir: str | Path, stem: str = "results") -> None:
    """Write ``<stem>.md`` and ``<stem>.json`` of a ``BenchmarkResults`` into ``out_dir``, each
    atomically (the JSON lists the written files)."""
    out = Path(out_dir)
    order = list(results.config["featurizers"])
    results.files["markdown"] = str(out / f"{stem}.md")
    results.files["json"] = str(out / f"{stem}.json")
    write_text(
        markdown_report(results.summary, order, results.tasks, results.config) + "\n", out / f"{stem}.md"
    )
    write_json(results.to_dict(), out / f"{stem}.json")


def _grid(n_panels: int, width: float = 4.0) -> tuple[Figure, list[Any]]:
    """A figure with ``n_panels`` square axes on a grid of at most 4 columns."""
    n_cols = min(4, n_panels)
    n_rows = -(-n_panels // n_cols)
    fig = Figure(figsize=(width * n_cols, width * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def plot_parity(task: str, panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Parity plot, one panel per (featurizer, probe) label: predicted vs measured test values.

    Args:
        task: task name for the title.
        panels: panel title -> (y_true, y_pred), test parts of all seeds pooled.
        path: PNG path.
    """
    fig, axes = _grid(len(panels))
    for ax, (title, (y_true, y_pred)) in zip(axes, panels.items(), strict=True):
        rmse = float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
        lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.scatter(y_true, y_pred, s=8, alpha=0.5)
        ax.set(
            xlabel="measured", ylabel="predicted", title=f"{title}\npooled RMSE {rmse:.3f}", aspect="equal"
        )
    fig.suptitle(f"{task}: test predictions (all seeds)")
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_pca(
    task: str,
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    task_type: str,
    label_name: str,
    path: str | Path,
    seed: int = 0,
) -> Path:
    """2-D PCA map of each featurizer's (imputed, standardised) features, coloured by one label.

    At most :data:`PCA_MAX_POINTS` molecules (a seeded subsample) are drawn; NaN labels are grey.
    """
    n = len(labels)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, PCA_MAX_POINTS), replace=False))
    y = labels[rows]
    fig, axes = _grid(len(features))
    for ax, (name, X) in zip(axes, features.items(), strict=True):
        Z = StandardScaler().fit_transform(
            SimpleImputer(strategy="median", keep_empty_features=True).fit_transform(X[rows])
        )
        pca = PCA(n_components=2, random_state=seed)
        P = pca.fit_transform(Z)
        missing = np.isnan(y)
        ax.scatter(P[missing, 0], P[missing, 1], s=6, c="lightgrey")
        cmap = "viridis" if task_type == "regression" else "coolwarm"
        points = ax.scatter(P[~missing, 0], P[~missing, 1], s=6, c=y[~missing], cmap=cmap, alpha=0.7)
        fig.colorbar(points, ax=ax, label=textwrap.shorten(label_name, width=30, placeholder="..."))
        var = pca.explained_variance_ratio_
        ax.set(title=name, xlabel=f"PC1 ({var[0]:.0%})", ylabel=f"PC2 ({var[1]:.0%})")
    fig.suptitle(f"{task}: PCA of standardised features")
    fig.savefig(path, dpi=100)
    return Path(path)
