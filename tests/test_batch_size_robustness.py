"""benchmarks/batch_size_robustness.py end to end on tiny models, and its spread arithmetic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from cmim_hf.evaluation.comparison import batch_size_spread, more_robust

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import batch_size_robustness as study  # noqa: E402
from common import MOSES_SAMPLE as MOSES  # noqa: E402


def _results(values: dict[str, float], task_type: str = "regression") -> dict:
    metric = "rmse" if task_type == "regression" else "roc_auc"
    summary = [{"task": "t", "featurizer": name, "probe": "svm", "metric": metric, "mean": value, "std": 0.0,
                "n": 3} for name, value in values.items()]  # fmt: skip
    return {"tasks": {"t": {"task_type": task_type}}, "summary": summary}


def test_spread_by_hand() -> None:
    results = _results({"a32": 1.0, "a128": 1.2, "a512": 1.4, "b32": 1.0, "b128": 1.0, "b512": 1.1})
    a = batch_size_spread(results, {32: "a32", 128: "a128", 512: "a512"})
    b = batch_size_spread(results, {32: "b32", 128: "b128", 512: "b512"})
    assert a["t"]["range"] == pytest.approx(0.4) and a["t"]["relative"] == pytest.approx(0.4 / 1.2)
    assert (a["t"]["best_batch_size"], a["t"]["worst_batch_size"]) == (32, 512)  # RMSE: lower is better
    assert more_robust(b, a) == 1 and more_robust(a, b) == 0
    auc = batch_size_spread(_results({"x": 0.7, "y": 0.9}, "classification"), {32: "x", 512: "y"})
    assert auc["t"]["best_batch_size"] == 512
    assert batch_size_spread(results, {32: "a32", 64: "missing"}) == {}


def test_study_runs_end_to_end_on_tiny_models(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.csv"
    pd.read_csv(MOSES, nrows=300).to_csv(corpus, index=False)
    argv = ["--train-file", str(corpus), "--eval-file", str(corpus), "--out", str(tmp_path / "out"),
            "--batch-sizes", "8,16", "--molecules", "64", "--n-eval", "32", "--parallel", "2", "--tasks", "esol",
            "--seeds", "1", "--max-molecules", "60", "--n-jobs", "1", "--results", str(tmp_path / "card"), "--",
            "--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64",
            "--num-attention-heads", "2", "--max-length", "64", "--prior-molecules", "0", "--num-proc", "1"]  # fmt: skip
    record = study.main(argv)
    assert {name: run["steps"] for name, run in record["runs"].items()} == {
        "cmim_b8": 8, "infonce_b8": 8, "cmim_b16": 4, "infonce_b16": 4,
    }  # fmt: skip
    assert all(run["molecules_seen"] == 64 for run in record["runs"].values())
    assert set(record["spread"]) == {"cmim informative", "cmim mu", "infonce informative", "infonce mu"}
    assert set(record["spread"]["cmim mu"]) == {"esol"} and len(record["verdicts"]) == 2
    saved = json.loads((tmp_path / "card" / "batch_size_results.json").read_text())
    assert saved["batch_sizes"] == [8, 16]
    assert "| cmim_b16 |" in (tmp_path / "card" / "batch_size.md").read_text()
