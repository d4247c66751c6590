"""Comparison helpers over benchmark result dicts (merging, headline tables, the paper's claims)."""

import pytest

from cmim_hf.evaluation.comparison import (
    check_claim,
    claims_table,
    count_wins,
    headline_table,
    merge_benchmark_results,
    paper_claims,
    select_featurizers,
)

TASKS = {"esol": "regression", "freesolv": "regression", "lipo": "regression", "bace": "classification"}


def _results(values: dict[str, dict[str, float]], split: str = "random") -> dict:
    """A results dict with one headline record per (featurizer, task); ``values[featurizer][task]``."""
    summary = []
    for featurizer, per_task in values.items():
        for task, mean in per_task.items():
            metric = "rmse" if TASKS[task] == "regression" else "roc_auc"
            summary.append(
                {"task": task, "featurizer": featurizer, "probe": "svm", "metric": metric,
                 "mean": mean, "std": 0.1, "n": 5}
            )  # fmt: skip
            summary.append(
                {"task": task, "featurizer": featurizer, "probe": "svm", "metric": "mae",
                 "mean": -1.0, "std": 0.0, "n": 5}
            )  # fmt: skip
    return {
        "config": {"featurizers": {f: f for f in values}, "tasks": list(TASKS), "split": split,
                   "seeds": [0, 1], "probes": ["svm"], "fractions": [0.8, 0.1, 0.1], "max_molecules": None},
        "tasks": {task: {"task_type": kind} for task, kind in TASKS.items()},
        "featurizers": {f: {} for f in values},
        "folds": [{"featurizer": f, "probe": "svm"} for f in values],
        "summary": summary,
        "files": {},
    }  # fmt: skip


def test_merge_concatenates_featurizers_and_rejects_protocol_mismatch():
    a = _results({"ECFP4": {"esol": 1.0}})
    b = _results({"cmim mu": {"esol": 0.9}})
    merged = merge_benchmark_results([a, b])
    assert list(merged["config"]["featurizers"]) == ["ECFP4", "cmim mu"]
    assert len(merged["summary"]) == len(a["summary"]) + len(b["summary"])
    assert len(merged["folds"]) == 2
    with pytest.raises(ValueError, match="split"):
        merge_benchmark_results([a, _results({"mim mu": {"esol": 1.0}}, split="scaffold")])
    with pytest.raises(ValueError, match="more than one run"):
        merge_benchmark_results([a, a])


def test_count_wins_uses_the_direction_of_each_metric():
    results = _results(
        {"a": {"esol": 0.8, "freesolv": 2.0, "lipo": 0.7, "bace": 0.9},
         "b": {"esol": 0.9, "freesolv": 1.5, "lipo": 0.7, "bace": 0.8}}
    )  # fmt: skip
    # esol: lower RMSE wins; freesolv: loses; lipo: a tie is not a win; bace: higher AUC wins.
    assert count_wins(results, list(TASKS), "svm", "a", "b") == (2, 4)
    assert count_wins(results, list(TASKS), "svm", "b", "a") == (1, 4)
    assert count_wins(results, list(TASKS), "mlp", "a", "b") == (0, 0)


def test_headline_table_rows_columns_and_bold_best():
    results = _results({"ECFP4": {"esol": 1.0, "bace": 0.85}, "cmim mu": {"esol": 0.9}})
    table = headline_table({"random": results}, "svm", ["ECFP4", "cmim mu"]).splitlines()
    assert table[0].startswith("| featurizer | esol random (rmse ↓) | freesolv random (rmse ↓)")
    assert "bace random (roc_auc ↑)" in table[0]
    assert table[2] == "| ECFP4 | 1.000 ± 0.100 | n/a | n/a | **0.850 ± 0.100** |"
    assert table[3] == "| cmim mu | **0.900 ± 0.100** | n/a | n/a | n/a |"


def test_paper_claims_counts_and_thresholds():
    good = {"esol": 0.8, "freesolv": 1.0, "lipo": 0.9, "bace": 0.9}
    bad = {"esol": 1.2, "freesolv": 2.0, "lipo": 1.1, "bace": 0.7}
    results = _results(
        {"ECFP4": {"esol": 1.0, "freesolv": 0.5, "lipo": 1.0, "bace": 0.8},
         "cmim informative": good, "cmim mu": bad, "mim informative": bad, "mim mu": good,
         "infonce informative": good, "infonce mu": bad}
    )  # fmt: skip
    claims = {c["claim"]: c for c in paper_claims(results, "random", "svm")}
    assert (
        claims["cmim informative beats ECFP4"]["wins"],
        claims["cmim informative beats ECFP4"]["met"],
    ) == (
        2,
        True,
    )
    assert claims["cmim informative beats ECFP4"]["compared"] == 3  # the paper's three tasks only
    assert claims["cmim informative beats mim informative"]["met"]
    assert not claims["cmim informative beats infonce informative"]["met"]  # equal everywhere: 0 wins
    assert claims["cmim informative beats cmim mu"]["wins"] == 4
    assert not claims["mim informative beats mim mu"]["met"]
    assert claims["infonce informative beats infonce mu"]["required"] == 3
    table = claims_table(list(claims.values()))
    assert "| cmim informative beats ECFP4 | random | svm | 2 of 3 | 2 | yes |" in table


def test_a_claim_with_nothing_measured_is_not_met():
    results = _results({"a": {"esol": 1.0}})
    assert check_claim(results, "x", "random", "svm", ["esol"], "a", "missing", 1)["met"] is False


def test_select_featurizers_keeps_and_renames_rows_for_a_before_after_table():
    before = _results({"ECFP4": {"esol": 0.9}, "cmim mu": {"esol": 1.4}, "cmim informative": {"esol": 0.8}})
    after = _results({"ECFP4": {"esol": 0.9}, "cmim mu": {"esol": 1.0}, "cmim informative": {"esol": 0.7}})
    kept = select_featurizers(
        before, {"cmim mu": "first cmim mu", "cmim informative": "first cmim informative"}
    )
    assert list(kept["featurizers"]) == ["first cmim mu", "first cmim informative"]
    assert {r["featurizer"] for r in kept["summary"]} == {"first cmim mu", "first cmim informative"}
    assert [f["featurizer"] for f in kept["folds"]] == ["first cmim mu", "first cmim informative"]
    assert before["summary"][0]["featurizer"] == "ECFP4"  # the input is not modified
    merged = merge_benchmark_results([after, kept])
    table = headline_table({"random": merged}, "svm", ["cmim mu", "first cmim mu"])
    assert "| first cmim mu | 1.400 ± 0.100 |" in table and "| cmim mu | **1.000 ± 0.100** |" in table
    with pytest.raises(KeyError, match="not in these results"):
        select_featurizers(before, {"mim mu": "x"})


def test_select_featurizers_drops_probes_the_new_run_did_not_use():
    before = _results({"cmim mu": {"esol": 1.4}})
    before["config"]["probes"] = ["svm", "mlp"]
    before["summary"] += [{**r, "probe": "mlp", "mean": 2.0} for r in before["summary"]]
    before["folds"] += [{**f, "probe": "mlp"} for f in before["folds"]]
    after = _results({"cmim mu": {"esol": 1.0}})
    with pytest.raises(ValueError, match="different probes"):
        merge_benchmark_results([after, select_featurizers(before, {"cmim mu": "first cmim mu"})])
    kept = select_featurizers(before, {"cmim mu": "first cmim mu"}, probes=["svm"])
    assert kept["config"]["probes"] == ["svm"]
    assert {r["probe"] for r in kept["summary"]} == {"svm"} and len(kept["summary"]) == 2
    assert [f["probe"] for f in kept["folds"]] == ["svm"]
    merged = merge_benchmark_results([after, kept])
    assert "| first cmim mu | **1.400 ± 0.100** |" in headline_table(
        {"random": merged}, "svm", ["first cmim mu"]
    )
    with pytest.raises(KeyError, match="probe"):
        select_featurizers(before, {"cmim mu": "x"}, probes=["knn"])
