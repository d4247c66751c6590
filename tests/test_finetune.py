"""cmim_hf.training.finetune and `cmim finetune`: stock-Trainer fine-tuning end to end on a tiny model, the harness's
splits, invalid-row handling and JSON format, target scaling, merging with benchmark results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import SMILES, tiny_config

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.cli import main as cmim
from cmim_hf.evaluation import run_benchmark
from cmim_hf.evaluation.tasks import DataError, load_table_task, load_task, make_split
from cmim_hf.models.cmim.modeling_cmim import CMIMForSequenceClassification
from cmim_hf.training.finetune import (
    FinetuneSettings,
    MoleculeLabelCollator,
    _fold_target_scaling,
    finetune,
    load_results,
    merge_results,
)


def main(argv: list[str]) -> int:
    return cmim(["finetune", *argv])


FAST = ["--epochs", "2", "--batch-size", "16", "--no-plots"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_cmim")
    torch.manual_seed(0)
    CMIMForConditionalGeneration(tiny_config()).save_pretrained(path)
    CMIMTokenizer().save_pretrained(path)
    return path


def atom_counts(smiles: list[str]) -> np.ndarray:
    """A cheap featurizer for a frozen-probe run to merge with."""
    return np.array([[s.count(a) for a in "CNOcn"] for s in smiles], dtype=np.float32)


def test_script_finetunes_esol_and_writes_harness_json(checkpoint: Path, tmp_path: Path) -> None:
    bench = run_benchmark(
        {"atoms": atom_counts}, ["esol"], seeds=[0], probes=["ridge"], out_dir=tmp_path / "bench",
        max_molecules=60, plots=False, progress=False,
    )  # fmt: skip
    out = tmp_path / "ft"
    code = main(
        ["--model", str(checkpoint), "--tasks", "esol", "--max-molecules", "60", "--seeds", "1",
         "--out", str(out), "--compare", str(tmp_path / "bench" / "results.json"), "--save-model", *FAST]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"config", "tasks", "featurizers", "folds", "summary", "files"}
    (fold,) = results["folds"]
    assert set(bench.folds[0]) <= set(fold)  # every key of a harness fold record
    assert (fold["featurizer"], fold["probe"], fold["task"]) == (
        f"{checkpoint.name}[informative]",
        "finetune",
        "esol",
    )
    assert (fold["n_train"], fold["n_valid"], fold["n_test"]) == (
        bench.folds[0]["n_train"], bench.folds[0]["n_valid"], bench.folds[0]["n_test"],
    )  # fmt: skip
    assert np.isfinite(fold["metrics"]["rmse"]) and fold["training"]["problem_type"] == "regression"
    assert {s["metric"] for s in results["summary"]} == {"rmse", "mae", "r2"}

    comparison = (out / "comparison.md").read_text()
    assert "| ridge | rmse |" in comparison and "| finetune | rmse |" in comparison
    merged = load_results(out / "comparison.json")
    assert {(s["featurizer"], s["probe"]) for s in merged.summary} == {
        ("atoms", "ridge"), (f"{checkpoint.name}[informative]", "finetune"),
    }  # fmt: skip

    with pytest.raises(DataError, match="overlap"):
        merge_results(merged, load_results(out / "results.json"))

    saved = CMIMForSequenceClassification.from_pretrained(out / "models" / "esol" / "seed0").eval()
    task = load_task("esol").subsample(60, seed=0)
    test_rows = make_split("random", task.smiles, 0).test
    batch = CMIMTokenizer()([task.smiles[i] for i in test_rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = saved(**batch).logits[:, 0].numpy()
    rmse = np.sqrt(np.mean((predictions - task.labels[test_rows, 0]) ** 2))
    assert rmse == pytest.approx(fold["metrics"]["rmse"], rel=1e-4)  # the saved model predicts in log(mol/L)


def test_csv_multitask_with_invalid_and_missing_labels(checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    smiles = (SMILES * 6)[:40]
    labels = rng.integers(0, 2, size=(40, 2)).astype(float)
    labels[rng.random((40, 2)) < 0.25] = np.nan
    frame = pd.DataFrame({"smi": smiles, "a": labels[:, 0], "b": labels[:, 1]})
    frame.loc[3, "smi"] = "C1CC"  # unclosed ring
    frame.loc[5, "smi"] = "C" * 200  # valid but longer than the tiny model's 128 positions
    csv = tmp_path / "mine.csv"
    frame.to_csv(csv, index=False)
    task = load_table_task(csv, "smi", ["a", "b"], "classification")

    results = finetune(
        checkpoint, [task], split="scaffold", seeds=[0, 1], out_dir=tmp_path / "out",
        settings=FinetuneSettings(classifier_features="latent", epochs=2, batch_size=8), plots=False,
    )  # fmt: skip
    bench = run_benchmark({"atoms": atom_counts}, [task], split="scaffold", seeds=[0], probes=["ridge"],
                          plots=False, progress=False)  # fmt: skip
    info = results.tasks["mine"]
    assert info["invalid_rows"] == bench.tasks["mine"]["invalid_rows"]
    assert [r["row"] for r in info["invalid_rows"]] == [3]
    assert [r["row"] for r in info["too_long_rows"]] == [5]
    assert len(results.folds) == 2
    for fold in results.folds:
        assert fold["training"]["problem_type"] == "multi_label_classification"
        assert fold["n_labels_scored"] + len(fold["skipped"]) == 2
        assert np.isfinite(fold["training"]["best_valid_loss"])
    assert json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["mine"]["n_invalid"] == 1


def test_bad_arguments_exit_with_usage_error(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["--model", str(checkpoint), "--tasks", "nope", "--out", str(tmp_path), *FAST]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert main(["--model", str(checkpoint), "--label-col", "y", "--out", str(tmp_path), *FAST]) == 2


def test_target_scaling_is_folded_into_the_head(tokenizer) -> None:
    torch.manual_seed(0)
    model = CMIMForSequenceClassification(tiny_config(num_labels=2, problem_type="regression")).eval()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
        _fold_target_scaling(model, np.array([1.0, -3.0]), np.array([2.0, 0.5]))
        after = model(**batch).logits
    assert torch.allclose(after, before * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -3.0]), atol=1e-5)


def test_collator_shapes(tokenizer) -> None:
    features = [{"input_ids": tokenizer(s)["input_ids"], "labels": [1.0, float("nan")]} for s in SMILES[:3]]
    batch = MoleculeLabelCollator(tokenizer)(features)
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["labels"].shape == (3, 2)
    assert torch.isnan(batch["labels"][:, 1]).all()
    single = MoleculeLabelCollator(tokenizer, single_label=True)(features)
    assert single["labels"].shape == (3,)
