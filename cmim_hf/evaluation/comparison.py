"""Model comparison over benchmark results: merged runs, headline tables and the paper's claims.

Pure functions over ``BenchmarkResults.to_dict()`` dicts, so a comparison can be re-rendered from
saved JSON without re-running anything. The headline metric of a task is RMSE (lower is better)
for regression and ROC-AUC (higher is better) for classification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cmim_hf.evaluation.reports import format_cell

__all__ = [
    "PAPER_TASKS",
    "HEADLINE_METRICS",
    "merge_benchmark_results",
    "select_featurizers",
    "headline_value",
    "headline_table",
    "count_wins",
    "check_claim",
    "paper_claims",
    "claims_table",
    "batch_size_spread",
    "more_robust",
]

# task type -> (metric, higher_is_better)
PAPER_TASKS = ("esol", "freesolv", "lipo")
HEADLINE_METRICS: dict[str, tuple[str, bool]] = {
    "regression": ("rmse", False),
    "classification": ("roc_auc", True),
}


def merge_benchmark_results(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One results dict from runs of the same tasks/split/seeds/probes on different featurizers.

    Raises:
        ValueError: the runs differ in protocol (split, seeds, probes, fractions, tasks) or
            share a featurizer name.
    """
    if not parts:
        raise ValueError("nothing to merge")
    protocol_keys = ("tasks", "split", "seeds", "probes", "fractions", "max_molecules")
    first = parts[0]["config"]
    merged: dict[str, Any] = {
        "config": {**first, "featurizers": {}},
        "tasks": dict(parts[0]["tasks"]),
        "featurizers": {},
        "folds": [],
        "summary": [],
        "files": {},
    }
    for part in parts:
        config = part["config"]
        differing = [key for key in protocol_keys if config.get(key) != first.get(key)]
        if differing:
            raise ValueError(f"cannot merge benchmark runs with different {', '.join(differing)}")
        shared = set(config["featurizers"]) & set(merged["config"]["featurizers"])
        if shared:
            raise ValueError(f"featurizer(s) {sorted(shared)} appear in more than one run")
        merged["config"]["featurizers"].update(config["featurizers"])
        merged["featurizers"].update(part["featurizers"])
        merged["folds"] += part["folds"]
        merged["summary"] += part["summary"]
    return merged


def select_featurizers(
    results: Mapping[str, Any], names: Mapping[str, str], probes: Sequence[str] | None = None
) -> dict[str, Any]:
    """A copy of a results dict with only the featurizers in ``names`` (old name -> new name), renamed,
    e.g. to put a previous checkpoint's rows next to a new one's; with ``probes``, only those probes'
    folds and summaries (to merge with a run that used fewer probes).

    Raises:
        KeyError: a name or probe the results do not have.
    """
    missing = sorted(set(names) - set(results["featurizers"]))
    if missing:
        raise KeyError(f"featurizer(s) {missing} not in these results")
    kept_probes = list(results["config"]["probes"] if probes is None else probes)
    missing = sorted(set(kept_probes) - set(results["config"]["probes"]))
    if missing:
        raise KeyError(f"probe(s) {missing} not in these results")

    def kept(row: Mapping[str, Any]) -> bool:
        return row["featurizer"] in names and row["probe"] in kept_probes

    return {
        **results,
        "config": {
            **results["config"],
            "probes": kept_probes,
            "featurizers": {new: results["config"]["featurizers"][old] for old, new in names.items()},
        },
        "featurizers": {new: results["featurizers"][old] for old, new in names.items()},
        "folds": [{**f, "featurizer": names[f["featurizer"]]} for f in results["folds"] if kept(f)],
        "summary": [{**r, "featurizer": names[r["featurizer"]]} for r in results["summary"] if kept(r)],
    }


def headline_value(
    results: Mapping[str, Any], task: str, featurizer: str, probe: str
) -> dict[str, Any] | None:
    """The summary record of a task's headline metric, or None when it was not measured."""
    metric, _ = HEADLINE_METRICS[results["tasks"][task]["task_type"]]
    for record in results["summary"]:
        key = (record["task"], record["featurizer"], record["probe"], record["metric"])
        if key == (task, featurizer, probe, metric) and record["n"] > 0 and math.isfinite(record["mean"]):
            return record
    return None


def headline_table(
    results_by_split: Mapping[str, Mapping[str, Any]], probe: str, featurizers: Sequence[str]
) -> str:
    """Markdown: one row per featurizer, one column per (task, split); the best cell is bold.

    Args:
        results_by_split: split name -> merged results dict.
        probe: the probe whose numbers are shown.
        featurizers: row order.
    """
    columns = [(split, task) for split, results in results_by_split.items() for task in results["tasks"]]
    header = ["featurizer"]
    for split, task in columns:
        metric, higher = HEADLINE_METRICS[results_by_split[split]["tasks"][task]["task_type"]]
        header.append(f"{task} {split} ({metric} {'↑' if higher else '↓'})")
    cells = {
        (split, task, featurizer): headline_value(results_by_split[split], task, featurizer, probe)
        for split, task in columns
        for featurizer in featurizers
    }
    best = {}
    for split, task in columns:
        _, higher = HEADLINE_METRICS[results_by_split[split]["tasks"][task]["task_type"]]
        means = [cells[split, task, f]["mean"] for f in featurizers if cells[split, task, f]]
        if means:
            best[split, task] = max(means) if higher else min(means)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for featurizer in featurizers:
        row = [featurizer]
        for split, task in columns:
            record = cells[split, task, featurizer]
            if record is None:
                row.append("n/a")
                continue
            text = format_cell(record["mean"], record["std"], record["n"])
            row.append(f"**{text}**" if record["mean"] == best.get((split, task)) else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def count_wins(
    results: Mapping[str, Any], tasks: Sequence[str], probe: str, challenger: str, reference: str
) -> tuple[int, int]:
    """(tasks where ``challenger`` beats ``reference`` on the headline mean, tasks with both measured)."""
    wins = compared = 0
    for task in tasks:
        a = headline_value(results, task, challenger, probe)
        b = headline_value(results, task, reference, probe)
        if a is None or b is None:
            continue
        _, higher = HEADLINE_METRICS[results["tasks"][task]["task_type"]]
        compared += 1
        wins += a["mean"] > b["mean"] if higher else a["mean"] < b["mean"]
    return wins, compared


def check_claim(
    results: Mapping[str, Any],
    text: str,
    split: str,
    probe: str,
    tasks: Sequence[str],
    challenger: str,
    reference: str,
    required: int,
) -> dict[str, Any]:
    """Check "``challenger`` beats ``reference`` on at least ``required`` of ``tasks``".

    Returns:
        ``claim, split, probe, wins, compared, required, met``.
    """
    wins, compared = count_wins(results, tasks, probe, challenger, reference)
    met = compared > 0 and wins >= required
    return {"claim": text, "split": split, "probe": probe, "wins": wins, "compared": compared,
            "required": required, "met": met}  # fmt: skip


def paper_claims(
    results: Mapping[str, Any],
    split: str,
    probe: str,
    paper_tasks: Sequence[str] = PAPER_TASKS,
    baseline: str = "ECFP4",
) -> list[dict[str, Any]]:
    """The cMIM paper's claims on one split/probe, for featurizers named ``"<objective> mu"`` and
    ``"<objective> informative"`` (objectives cmim, mim, infonce) next to ``baseline``.

    1. cMIM informative beats the baseline on at least 2 of the paper's three regression tasks.
    2. cMIM beats MIM, and cMIM beats InfoNCE (informative embeddings; a majority of all tasks).
    3. For each model, informative beats mu on a majority of all tasks.
    """
    tasks = list(results["tasks"])
    majority = len(tasks) // 2 + 1
    on_paper = [t for t in paper_tasks if t in tasks]
    claims = [
        check_claim(results, f"cmim informative beats {baseline}", split, probe, on_paper,
                    "cmim informative", baseline, min(2, len(on_paper))),
    ]  # fmt: skip
    for other in ("mim", "infonce"):
        claims.append(
            check_claim(results, f"cmim informative beats {other} informative", split, probe, tasks,
                        "cmim informative", f"{other} informative", majority)
        )  # fmt: skip
    for model in ("cmim", "mim", "infonce"):
        claims.append(
            check_claim(results, f"{model} informative beats {model} mu", split, probe, tasks,
                        f"{model} informative", f"{model} mu", majority)
        )  # fmt: skip
    return claims


def claims_table(claims: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of checked claims."""
    lines = ["| claim | split | probe | tasks won | needed | met |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append(
            f"| {c['claim']} | {c['split']} | {c['probe']} | {c['wins']} of {c['compared']} | "
            f"{c['required']} | {'yes' if c['met'] else 'no'} |"
        )
    return "\n".join(lines)


def batch_size_spread(
    results: Mapping[str, Any], rows: Mapping[int, str], probe: str = "svm"
) -> dict[str, dict[str, float]]:
    """How much a model's downstream numbers move with the pre-training batch size.

    Args:
        results: merged benchmark results holding one featurizer per batch size.
        rows: batch size -> featurizer name (one objective and one embedding kind).
        probe: the probe whose headline metric is compared.
    Returns:
        task -> ``{"range": max - min of the headline means over batch sizes, "relative": range /
        |mean over batch sizes|, "best_batch_size", "worst_batch_size"}``; tasks with a batch
        size not measured are left out.
    """
    spread = {}
    for task, info in results["tasks"].items():
        _, higher = HEADLINE_METRICS[info["task_type"]]
        values = {size: headline_value(results, task, name, probe) for size, name in rows.items()}
        if any(record is None for record in values.values()):
            continue
        means = {size: record["mean"] for size, record in values.items()}
        ranked = sorted(means, key=means.get, reverse=higher)
        average = sum(means.values()) / len(means)
        width = max(means.values()) - min(means.values())
        spread[task] = {
            "range": width,
            "relative": width / abs(average) if average else math.inf,
            "best_batch_size": ranked[0],
            "worst_batch_size": ranked[-1],
        }
    return spread


def more_robust(
    spread_a: Mapping[str, Mapping[str, float]], spread_b: Mapping[str, Mapping[str, float]]
) -> int:
    """Tasks (measured for both) on which A's relative spread over batch sizes is smaller than B's."""
    return sum(
        spread_a[task]["relative"] < spread_b[task]["relative"] for task in spread_a if task in spread_b
    )
