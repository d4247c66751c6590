"""Tests of cmim_hf.evaluation: local metrics, probes, featurizers, the harness end to end and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import evaluate
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from cmim_hf.cli import main
from cmim_hf.cli.benchmark import featurizers_from_args
from cmim_hf.evaluation import (
    FeaturizerError,
    FeaturizerRuntimeError,
    ProbeError,
    build_probe,
    compute_metric,
    featurize,
    fit_probe,
    metric_path,
    resolve_featurizer,
    run_benchmark,
)
from cmim_hf.evaluation.metrics import PRAUC, RMSE
from cmim_hf.evaluation.tasks import DataError, MoleculeTask, load_table_task, load_task

INVALID = ["C1CC", "O=N([O-])C1=CC=C1"]


# ----------------------------------------------------------------------------- metrics


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    labels = (rng.random(50) > 0.6).astype(int)
    return {"y": y, "pred": y + rng.normal(scale=0.5, size=50), "labels": labels, "probs": rng.random(50)}


def test_metrics_match_sklearn(scores: dict[str, np.ndarray]) -> None:
    y, pred, labels, probs = scores["y"], scores["pred"], scores["labels"], scores["probs"]
    assert compute_metric("rmse", pred, y) == pytest.approx(np.sqrt(mean_squared_error(y, pred)))
    assert compute_metric("mae", pred, y) == pytest.approx(mean_absolute_error(y, pred))
    assert compute_metric("r2", pred, y) == pytest.approx(r2_score(y, pred))
    assert compute_metric("roc_auc", probs, labels) == pytest.approx(roc_auc_score(labels, probs))
    assert compute_metric("pr_auc", probs, labels) == pytest.approx(average_precision_score(labels, probs))


@pytest.mark.filterwarnings("error")
def test_r2_of_one_molecule_is_nan_without_a_warning() -> None:
    """A test fold of one molecule (a tiny --csv table): R^2 is undefined, reported as nan."""
    assert np.isnan(compute_metric("r2", np.array([1.0]), np.array([2.0])))


def test_metrics_load_offline_with_evaluate_and_directly(scores: dict[str, np.ndarray]) -> None:
    metric = evaluate.load(metric_path("rmse"))
    assert isinstance(metric, evaluate.Metric)
    value = metric.compute(predictions=scores["pred"].tolist(), references=scores["y"].tolist())["rmse"]
    assert value == pytest.approx(compute_metric("rmse", scores["pred"], scores["y"]))
    assert RMSE(keep_in_memory=True).compute(predictions=[1.0, 2.0], references=[1.0, 3.0])[
        "rmse"
    ] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(ValueError, match="both classes"):
        PRAUC(keep_in_memory=True).compute(predictions=[0.1, 0.2], references=[1, 1])
    with pytest.raises(ValueError, match="unknown metric"):
        metric_path("accuracy")


# ----------------------------------------------------------------------------- probes


@pytest.mark.parametrize("probe", ["svm", "rf", "ridge", "knn", "mlp"])
@pytest.mark.parametrize("task_type", ["regression", "classification"])
def test_probe_grids_are_valid_parameters(probe: str, task_type: str) -> None:
    estimator, grid = build_probe(probe, task_type)
    params = estimator.get_params()
    assert grid and all(key in params for key in grid)


def test_fit_probe_learns_and_reports_choice() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5))
    y = X[:, 0] * 2.0 + rng.normal(scale=0.1, size=90)
    fit = fit_probe("ridge", "regression", X, y, seed=0)
    assert fit.n_folds == 3 and "alpha" in fit.best_params
    assert np.corrcoef(fit.estimator.predict(X), y)[0, 1] > 0.95
    groups = np.repeat(np.arange(9), 10)
    fit = fit_probe("svm", "classification", X, (y > 0).astype(int), groups=groups)
    assert set(fit.best_params) == {"C", "scale"}
    with pytest.raises(ProbeError, match="single class"):
        fit_probe("svm", "classification", X, np.ones(90))
    with pytest.raises(ProbeError, match="unknown probe"):
        build_probe("xgboost", "regression")


# ----------------------------------------------------------------------------- featurizers


def test_resolve_and_check_featurizers(tmp_path: Path) -> None:
    assert resolve_featurizer("ECFP4")(["CCO"]).shape == (1, 2048)
    with pytest.raises(FeaturizerError, match="unknown featurizer"):
        resolve_featurizer(str(tmp_path / "no_such_checkpoint"))
    with pytest.raises(FeaturizerRuntimeError, match="shape"):
        featurize(lambda s: np.zeros(len(s)), ["CCO", "CC"], "flat")
    out = featurize(lambda s: np.array([[1.0, np.inf], [2.0, 3.0]]), ["CCO", "CC"])
    assert out.dtype == np.float32 and np.isnan(out[0, 1])


# ----------------------------------------------------------------------------- harness


def length_features(smiles: list[str]) -> np.ndarray:
    """A toy embedding function: simple string statistics (N, 4)."""
    return np.array([[len(s), s.count("c"), s.count("O"), s.count("N")] for s in smiles], dtype=np.float32)


@pytest.fixture(scope="module")
def esol_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("esol")
    results = run_benchmark(
        {"ecfp4": "ecfp4", "toy": length_features},
        ["esol"],
        split="random",
        seeds=2,
        probes=["ridge"],
        out_dir=out,
        max_molecules=150,
        progress=False,
    )
    return results, out


def test_harness_writes_json_markdown_png(esol_run) -> None:
    results, out = esol_run
    for name in ("results.json", "results.md", "parity_esol.png", "pca_esol.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["seeds"] == [0, 1] and data["config"]["split"] == "random"
    assert data["config"]["featurizers"] == {"ecfp4": "ecfp4", "toy": "length_features"}
    assert len(data["folds"]) == 4
    fold = data["folds"][0]
    assert (fold["n_train"], fold["n_valid"], fold["n_test"]) == (120, 15, 15)
    assert set(fold["metrics"]) == {"rmse", "mae", "r2"}
    assert data["featurizers"]["toy"]["esol"]["dim"] == 4
    markdown = (out / "results.md").read_text()
    assert "| probe | metric | ecfp4 | toy |" in markdown
    for s in data["summary"]:
        values = [f["metrics"][s["metric"]] for f in data["folds"] if f["featurizer"] == s["featurizer"]]
        assert s["mean"] == pytest.approx(np.mean(values)) and s["std"] == pytest.approx(np.std(values))
        assert f"{s['mean']:.3f} ± {s['std']:.3f}" in markdown
    assert results.mean("esol", "ecfp4", "ridge", "rmse") == pytest.approx(
        next(s["mean"] for s in data["summary"] if (s["featurizer"], s["metric"]) == ("ecfp4", "rmse"))
    )


def test_harness_shares_splits_across_featurizers(esol_run) -> None:
    results, _ = esol_run
    by_seed = {}
    for fold in results.folds:
        by_seed.setdefault(fold["seed"], set()).add((fold["n_train"], fold["n_valid"], fold["n_test"]))
    assert all(len(sizes) == 1 for sizes in by_seed.values())


def test_multitask_classification_scaffold(tmp_path: Path) -> None:
    task = load_task("clintox").subsample(250, seed=1)
    results = run_benchmark(
        {"ecfp4": "ecfp4"},
        [task],
        split="scaffold_random",
        seeds=1,
        probes=["knn"],
        out_dir=tmp_path,
        progress=False,
    )
    fold = results.folds[0]
    assert set(fold["metrics"]) == {"roc_auc", "pr_auc"}
    assert 1 <= fold["n_labels_scored"] <= 2
    assert fold["n_labels_scored"] + len(fold["skipped"]) == 2
    scored = [v["roc_auc"] for v in fold["per_label"].values()]
    assert fold["metrics"]["roc_auc"] == pytest.approx(np.mean(scored))
    assert (tmp_path / "pca_clintox.png").is_file() and not (tmp_path / "parity_clintox.png").exists()


@pytest.fixture
def csv_with_invalid(tmp_path: Path) -> Path:
    esol = load_task("esol").subsample(60, seed=0)
    smiles = list(esol.smiles)
    smiles[5], smiles[40] = INVALID
    frame = pd.DataFrame({"SMILES": smiles, "logS": esol.labels[:, 0]})
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    return path


def test_invalid_smiles_reported_and_excluded_for_every_featurizer(
    csv_with_invalid: Path, tmp_path: Path
) -> None:
    seen: list[list[str]] = []

    def recording(smiles: list[str]) -> np.ndarray:
        seen.append(list(smiles))
        return length_features(smiles)

    task = load_table_task(csv_with_invalid, "SMILES", ["logS"], "regression")
    results = run_benchmark(
        {"ecfp4": "ecfp4", "descriptors": "descriptors", "rec": recording},
        [task],
        split="scaffold",
        seeds=1,
        probes=["ridge"],
        out_dir=tmp_path / "out",
        plots=False,
        progress=False,
    )
    info = results.tasks["mine"]
    assert [row["row"] for row in info["invalid_rows"]] == [5, 40]
    assert [row["smiles"] for row in info["invalid_rows"]] == INVALID
    assert "unclosed ring" in info["invalid_rows"][0]["reason"]
    assert info["n_valid"] == 58
    assert len(seen) == 1 and len(seen[0]) == 58 and not set(INVALID) & set(seen[0])
    assert {f["n_train"] + f["n_valid"] + f["n_test"] for f in results.folds} == {58}
    assert {name: v["mine"]["dim"] for name, v in results.featurizers.items()}["ecfp4"] == 2048
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["tasks"]["mine"]["invalid_rows"][1]["row"] == 40


def test_run_benchmark_rejects_bad_config() -> None:
    with pytest.raises(ProbeError):
        run_benchmark({"ecfp4": "ecfp4"}, ["esol"], probes=["boosting"], progress=False)
    with pytest.raises(DataError):
        run_benchmark({"ecfp4": "ecfp4"}, ["esol"], split="time", progress=False)
    with pytest.raises(DataError):
        run_benchmark({"ecfp4": "ecfp4"}, ["nope"], progress=False)
    task = MoleculeTask("t", "regression", ["CCO", "CC"], np.zeros((2, 1)), ["y"], "memory")
    with pytest.raises(FeaturizerRuntimeError):
        run_benchmark({"bad": lambda s: np.zeros((1, 3))}, [task], seeds=1, progress=False)


# ----------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    return main(["benchmark", *argv])


def test_cli_runs_on_user_csv(
    csv_with_invalid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = [
        "--csv",
        str(csv_with_invalid),
        "--smiles-col",
        "SMILES",
        "--label-col",
        "logS",
        "--task",
        "regression",
    ]
    code = _cli([*argv, "--seeds", "1", "--probe", "ridge", "--out", str(out), "--no-progress", "--no-plots"])
    assert code == 0
    assert (out / "results.json").is_file() and "| probe | metric | ecfp4 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "nope"], "unknown task"),
        (["--csv", "absent.csv", "--label-col", "y", "--task", "regression"], "not found"),
        (["--label-col", "y"], "need --csv"),
        (["--model", "no_such_model_dir"], "neither"),
        (["--probe", "boosting"], "unknown probe"),
        (["--seeds", "0"], "seeds"),
    ],
)
def test_cli_user_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmim benchmark: error: ") and message in err and err.count("\n") == 1


def test_cli_missing_column_exits_2(csv_with_invalid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--csv", str(csv_with_invalid), "--label-col", "logS", "--task", "regression"]
    assert _cli(argv) == 2
    assert "['smiles']" in capsys.readouterr().err


def test_harness_end_to_end_with_a_tiny_random_cmim_checkpoint(tmp_path: Path) -> None:
    """`cmim benchmark --model <checkpoint folder>` path: informative and latent columns beside ECFP4."""
    import torch
    from helpers import tiny_config

    from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny"
    CMIMForConditionalGeneration(tiny_config()).save_pretrained(checkpoint)
    CMIMTokenizer().save_pretrained(checkpoint)
    out = tmp_path / "report"
    argv = [
        "--model",
        "ecfp4",
        "--model",
        str(checkpoint),
        "--embedding",
        "informative",
        "--embedding",
        "latent",
    ]
    argv += [
        "--tasks",
        "esol",
        "--seeds",
        "1",
        "--probe",
        "ridge",
        "--max-molecules",
        "120",
        "--out",
        str(out),
    ]
    argv += ["--no-progress"]
    assert _cli(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert len(results["featurizers"]) == 3
    rmse = [row["mean"] for row in results["summary"] if row["metric"] == "rmse"]
    assert len(rmse) == 3 and all(np.isfinite(rmse)) and all(value > 0 for value in rmse)
    table = (out / "results.md").read_text()
    assert all(name in table for name in results["featurizers"])
    assert (out / "parity_esol.png").is_file()


def test_cmim_featurizer_keeps_too_long_molecules_as_nan_rows(tmp_path: Path) -> None:
    """A molecule longer than the model's positions gets a NaN row (with a warning), not a crash."""
    import torch
    from helpers import tiny_config

    from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
    from cmim_hf.evaluation.featurizers import CheckpointFeaturizer, featurize

    torch.manual_seed(0)
    checkpoint = tmp_path / "short"
    CMIMForConditionalGeneration(tiny_config(max_position_embeddings=16)).save_pretrained(checkpoint)
    CMIMTokenizer().save_pretrained(checkpoint)
    smiles = ["CCO", "C" * 40, "c1ccccc1"]
    with pytest.warns(UserWarning, match=r"1 invalid SMILES kept as NaN rows: row 1 .*too long"):
        X = featurize(CheckpointFeaturizer(checkpoint, embedding="latent"), smiles)
    assert X.shape == (3, 32)
    assert np.isnan(X[1]).all() and np.isfinite(X[[0, 2]]).all()


def test_shipped_is_the_short_name_of_the_shipped_checkpoint() -> None:
    featurizers = featurizers_from_args(["shipped", "ecfp4"], ["informative", "latent"], 8)
    assert list(featurizers) == ["shipped[informative]", "shipped[latent]", "ecfp4"]


def test_a_user_task_named_like_a_built_in_one_is_refused(
    csv_with_invalid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23, defect 3: ``--tasks esol --csv my.csv --task-name esol`` used to exit 0 with the
    folds of two data sets averaged into one "esol" row."""
    out = tmp_path / "out"
    argv = ["--tasks", "esol", "--csv", str(csv_with_invalid), "--smiles-col", "SMILES", "--label-col", "logS",
            "--task", "regression", "--task-name", "esol", "--out", str(out), "--no-progress"]  # fmt: skip
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two tasks are named 'esol'" in err and str(csv_with_invalid) in err
    assert not (out / "results.json").exists()
