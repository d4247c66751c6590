"""Tests of cmim_hf.model_card: card rendering from measured results, the Hub folder, the trainer's card."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from clean_python import HUB_USER_CHECK, run_without_cmim_hf
from helpers import SMILES, make_trainer, tiny_config
from huggingface_hub import ModelCard

from cmim_hf import CMIMForConditionalGeneration, compute_embeddings
from cmim_hf.checkpoints import CheckpointError
from cmim_hf.model_card import (
    UNMEASURED,
    check_hub_folder,
    create_cmim_model_card,
    render_model_card,
    save_for_hub,
    write_model_card,
)

RESULTS = {
    "training": {"dataset": "MOSES train", "molecules": 1000, "objective": "cmim", "steps": 20},
    "reconstruction": {
        "dataset": "MOSES test",
        "molecules": 50,
        "exact_match": 0.625,
        "token_accuracy": 0.9375,
    },
    "sampling": {"molecules": 40, "scale": 1.0, "validity": 0.875, "uniqueness": 0.5},
}


def benchmark_json() -> dict:
    """A results.json in the harness's layout (BenchmarkResults.to_dict()), with made-up test values."""
    summary = []
    for featurizer, rmse in (("ecfp4", 1.25), ("cmim", 1.125)):
        summary.append(
            {
                "task": "esol",
                "featurizer": featurizer,
                "probe": "svm",
                "metric": "rmse",
                "mean": rmse,
                "std": 0.0625,
                "n": 3,
            }
        )
    return {
        "config": {
            "featurizers": {"ecfp4": "ecfp4", "cmim": "runs/cmim"},
            "tasks": ["esol"],
            "split": "scaffold",
            "seeds": [0, 1, 2],
            "probes": ["svm"],
            "fractions": [0.8, 0.1, 0.1],
        },
        "tasks": {"esol": {"task_type": "regression", "n_valid": 1128, "n_invalid": 0, "label_names": ["y"]}},
        "featurizers": {},
        "folds": [],
        "summary": summary,
        "files": {},
    }


def numbers(text: str) -> set[str]:
    """Decimal numbers in a text (to check that no number is invented)."""
    return set(re.findall(r"\d+\.\d+", text))


def test_card_without_results_says_not_measured() -> None:
    card = render_model_card(model_name="cmim-test")
    text = str(card)
    assert text.count(UNMEASURED) == 3  # reconstruction, sampling, downstream
    assert card.data.eval_results is None and "model-index" not in text
    assert "# cmim-test" in text and "## Intended use" in text and "## Limitations" in text
    assert "## Training data\n\nnot recorded yet" in text
    body = text.split("\n---\n", 1)[1].split("## License")[0]  # metadata: license apache-2.0
    assert numbers(body) == set(), "no number without a measurement"


def test_card_with_results_and_benchmark_path(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(benchmark_json()))
    card = render_model_card(
        {**RESULTS, "benchmark": str(path)},
        model_name="cmim-test",
        repo_id="someone/cmim-test",
        config=tiny_config().to_dict(),
        parameters=12345,
        license="apache-2.0",
    )
    text = str(card)
    assert UNMEASURED not in text
    assert "| exact_match | 0.6250 |" in text and "| validity | 0.8750 |" in text
    assert "MOSES test" in text and "| hidden size | 32 |" in text and "12,345" in text
    assert "| svm | rmse | 1.250 ± 0.062 | 1.125 ± 0.062 |" in text  # the harness's own table format
    assert 'model="someone/cmim-test"' in text and "# cmim-test" in text

    reloaded = ModelCard(text)  # the YAML metadata parses, as the Hub would parse it
    assert reloaded.data.license == "apache-2.0" and reloaded.data.datasets == ["MOSES train"]
    entries = {(e.task_type, e.metric_type): e.metric_value for e in reloaded.data.eval_results}
    assert entries == {
        ("text2text-generation", "exact_match"): 0.625,
        ("text2text-generation", "token_accuracy"): 0.9375,
        ("text-generation", "validity"): 0.875,
        ("text-generation", "uniqueness"): 0.5,
        ("tabular-regression", "rmse"): 1.125,  # the model's own column only, not the baseline
    }


def test_partial_results_and_bad_inputs(tmp_path: Path) -> None:
    text = str(render_model_card({"sampling": {"molecules": 10, "validity": 0.5}}))
    assert text.count(UNMEASURED) == 2 and "| validity | 0.5000 |" in text
    with pytest.raises(FileNotFoundError, match="benchmark results"):
        render_model_card({"benchmark": tmp_path / "missing.json"})
    with pytest.raises(FileNotFoundError, match="template"):
        render_model_card(template_path=tmp_path / "missing.md")
    benchmark = benchmark_json()
    benchmark["config"]["featurizers"]["other"] = "x"  # two candidate columns: name the model's
    card = render_model_card({"benchmark": benchmark, "benchmark_featurizer": "cmim"})
    assert [e.metric_value for e in card.data.eval_results] == [1.125]
    with pytest.raises(ValueError, match="not in the benchmark"):
        render_model_card({"benchmark": benchmark, "benchmark_featurizer": "nope"})
    path = write_model_card(tmp_path / "card", RESULTS, model_name="x")
    assert path.name == "README.md" and "| exact_match | 0.6250 |" in path.read_text()


def test_hub_folder_loads_without_cmim_hf(tokenizer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    folder = save_for_hub(model, tokenizer, tmp_path / "hub", RESULTS, model_name="cmim-tiny")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    assert "| exact_match | 0.6250 |" in (folder / "README.md").read_text()

    stdout = run_without_cmim_hf(HUB_USER_CHECK, [str(folder), json.dumps(SMILES[:3])], tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["model"] == "CMIMModel"
    batch = tokenizer(SMILES[:3], padding=True, return_tensors="pt")
    expected = compute_embeddings(model, batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(torch.tensor(result["vectors"]), expected, atol=1e-5)

    (folder / "pooling.py").unlink()
    with pytest.raises(CheckpointError, match="pooling.py is missing"):
        check_hub_folder(folder)


def test_trainer_card_uses_the_runs_measurements(tokenizer, tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tokenizer, eval_molecules=SMILES[:4])
    trainer.train()
    metrics = trainer.evaluate()
    path = create_cmim_model_card(trainer, results={"sampling": {"validity": 0.25}}, license="mit")
    text = path.read_text()
    assert path == tmp_path / "out" / "README.md"
    assert f"| exact_match | {metrics['eval_exact_match']:.4f} |" in text
    assert f"| token_accuracy | {metrics['eval_token_accuracy']:.4f} |" in text
    assert "molecules: 4" in text and "| objective | cmim |" in text and "| molecules | 7 |" in text
    assert "| validity | 0.2500 |" in text and text.count(UNMEASURED) == 1  # only downstream
    assert ModelCard(text).data.license == "mit"


def test_comparison_reproduce_and_limitations_sections() -> None:
    benchmark = benchmark_json()
    benchmark["config"]["model_selection"] = "3-fold inner CV"
    claims = [
        {"claim": "cmim beats ecfp4", "split": "scaffold", "probe": "svm", "wins": 1, "compared": 1,
         "required": 1, "met": True}
    ]  # fmt: skip
    results = {
        "comparison": {"benchmarks": {"scaffold": benchmark}, "featurizers": ["ecfp4", "cmim"],
                       "probes": ["svm"], "claims": claims},
        "reproduce": "python benchmarks/paper_comparison.py --max-steps 7",
        "limitations": ["Trained for 7 steps only."],
    }  # fmt: skip
    text = str(render_model_card(results))
    assert "#### SVM probe" in text and "| featurizer | esol scaffold (rmse ↓) |" in text
    assert "| cmim | **1.125 ± 0.062** |" in text and "| ecfp4 | 1.250 ± 0.062 |" in text
    assert "| cmim beats ecfp4 | scaffold | svm | 1 of 1 | 1 | yes |" in text
    assert "```bash\npython benchmarks/paper_comparison.py --max-steps 7\n```" in text
    assert "## Limitations\n\n- Trained for 7 steps only.\n- Trained on" in text
    plain = str(render_model_card({}))
    assert "produced by:" not in plain and "## Limitations\n\n- Trained on" in plain


def test_model_index_labels_each_probe_and_split() -> None:
    """Issue 13, case 13: SVM and MLP numbers, and random and scaffold splits, are separate entries
    with their own labels after the Hub's grouping (task type, dataset, config, split)."""
    benchmarks = []
    for split, offset in (("random", 0.0), ("scaffold", 0.5)):
        benchmark = benchmark_json()
        benchmark["config"]["split"] = split
        mlp = [dict(record, probe="mlp", mean=record["mean"] + 0.25) for record in benchmark["summary"]]
        benchmark["summary"] = [dict(r, mean=r["mean"] + offset) for r in benchmark["summary"] + mlp]
        benchmarks.append(benchmark)
    text = str(render_model_card({"benchmark": benchmarks, "benchmark_featurizer": "cmim"}))
    reloaded = ModelCard(text)
    entries = {
        (e.task_name, e.dataset_config, e.dataset_split): e.metric_value for e in reloaded.data.eval_results
    }
    assert entries == {
        (
            "esol (svm probe on frozen embeddings, random split)",
            "svm probe",
            "random split, test part",
        ): 1.125,
        (
            "esol (mlp probe on frozen embeddings, random split)",
            "mlp probe",
            "random split, test part",
        ): 1.375,
        (
            "esol (svm probe on frozen embeddings, scaffold split)",
            "svm probe",
            "scaffold split, test part",
        ): 1.625,
        (
            "esol (mlp probe on frozen embeddings, scaffold split)",
            "mlp probe",
            "scaffold split, test part",
        ): 1.875,
    }
