"""Smoke test of the issue-7 comparison driver on a tiny model and a few molecules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from cmim_hf import CMIMForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import paper_comparison  # noqa: E402
from common import MOSES_SAMPLE as MOSES  # noqa: E402


def test_comparison_runs_end_to_end_ships_and_resumes(tmp_path) -> None:
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("\n".join(MOSES.read_text().splitlines()[:65]) + "\n")
    argv = [
        "--train-file", str(corpus), "--eval-file", str(corpus), "--out", str(tmp_path / "cmp"),
        "--max-steps", "2", "--batch-size", "8", "--save-steps", "1", "--n-reconstruct", "8",
        "--n-samples", "10", "--tasks", "esol", "--splits", "random", "--seeds", "1", "--probes", "ridge",
        "--max-molecules", "80", "--parallel", "--ship", str(tmp_path / "shipped"),
        "--results", str(tmp_path / "results"), "--",
        "--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64",
        "--num-attention-heads", "2", "--max-length", "64", "--logging-steps", "1",
    ]  # fmt: skip
    record = paper_comparison.main(argv)
    assert set(record["pretraining"]) == {"cmim", "mim", "infonce"}
    for objective in ("cmim", "mim", "infonce"):
        assert record["pretraining"][objective]["steps"] == 2
        assert [entry["step"] for entry in record["pretraining"][objective]["loss_curve"]] == [1, 2]
        generation = record["generation"][objective]
        assert generation["reconstruction_molecules"] == 8 and 0.0 <= generation["prior_validity"] <= 1.0
    columns = record["downstream"]["random"]["featurizers"]
    assert "ECFP4" in columns and "cmim informative" in columns and "infonce mu" in columns
    saved = json.loads((tmp_path / "results" / "comparison_results.json").read_text())
    assert saved["generation"] == json.loads(json.dumps(record["generation"]))
    claims = {(c["claim"], c["split"], c["probe"]) for c in record["claims"]}
    assert ("cmim informative beats ECFP4", "random", "ridge") in claims and len(claims) == 6

    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "#### RIDGE probe" in card and "| cmim informative beats ECFP4 | random | ridge |" in card
    assert "python benchmarks/paper_comparison.py" in card
    model = CMIMForConditionalGeneration.from_pretrained(tmp_path / "shipped")
    trained = CMIMForConditionalGeneration.from_pretrained(tmp_path / "cmp" / "cmim" / "final")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))

    # A rerun reuses the finished models, their generation figures and the cached benchmark runs:
    # same numbers, nothing retrained or re-measured.
    final = tmp_path / "cmp" / "cmim" / "final" / "model.safetensors"
    cached_generation = tmp_path / "cmp" / "cmim" / "generation_metrics.json"
    mtimes = final.stat().st_mtime_ns, cached_generation.stat().st_mtime_ns
    again = paper_comparison.main(argv)
    assert (final.stat().st_mtime_ns, cached_generation.stat().st_mtime_ns) == mtimes
    assert again["downstream"]["random"]["summary"] == record["downstream"]["random"]["summary"]
    assert again["generation"] == record["generation"]

    # The shipped folder carries the aggregate posterior (the sampler's default prior).
    assert (tmp_path / "shipped" / "aggregate_posterior.safetensors").is_file()
    assert record["generation"]["cmim"]["prior"] == "aggregate posterior"
    assert {"active_units", "participation_ratio", "standard_prior_validity"} <= set(
        record["generation"]["cmim"]
    )

    # Before/after: a previous comparison's cmim rows join the tables and the card, labelled.
    baseline_generation = tmp_path / "first_generation.json"
    baseline_generation.write_text(json.dumps(record["generation"]["cmim"]))
    baseline = ["--baseline", str(tmp_path / "results" / "comparison_results.json")]
    baseline += ["--baseline-generation", str(baseline_generation), "--baseline-label", "v0.1"]
    split = argv.index("--")
    with_baseline = paper_comparison.main([*argv[:split], *baseline, *argv[split:]])
    columns = with_baseline["downstream"]["random"]["featurizers"]
    assert "v0.1 cmim informative" in columns and "v0.1 cmim mu" in columns and "cmim mu" in columns
    assert with_baseline["generation"]["v0.1 cmim"] == json.loads(baseline_generation.read_text())
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "| v0.1 cmim informative |" in card
    assert "| v0.1 cmim |" in (tmp_path / "results" / "comparison.md").read_text()

    # Re-rendering the card from the saved record needs no training.
    (tmp_path / "shipped" / "README.md").unlink()
    paper_comparison.main(["--rerender-card", str(tmp_path / "results" / "comparison_results.json"),
                        "--ship", str(tmp_path / "shipped")])  # fmt: skip
    assert "| v0.1 cmim informative |" in (tmp_path / "shipped" / "README.md").read_text()

    # A sampler sweep of the model becomes a limitation on the card, with its numbers and command.
    sweep = {
        "command": "python benchmarks/sampler_sweep.py --n 10",
        "posterior": {"mean_sigma": 0.05, "share_at_floor": 1.0},
        "rows": [
            {"sampler": "aggregate", "spread": 1.0, "samples": 10, "validity": 0.1},
            {"sampler": "aggregate", "spread": 0.5, "samples": 10, "validity": 0.2},
            {"sampler": "neighbourhood", "spread": 0.05, "samples": 10, "validity": 0.7},
        ],
    }
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    # ... and a benchmark report joins the Evaluation section, its title one level down.
    (tmp_path / "report.md").write_text(
        "# Batch-size robustness\n\n| run | esol |\n|---|---|\n| b32 | 0.75 |\n"
    )
    paper_comparison.main(["--rerender-card", str(tmp_path / "results" / "comparison_results.json"),
                        "--ship", str(tmp_path / "shipped"), "--sampler-sweep", str(tmp_path / "sweep.json"),
                        "--card-extra", str(tmp_path / "report.md")])  # fmt: skip
    card = (tmp_path / "shipped" / "README.md").read_text()
    evaluation = card.split("## Evaluation")[1].split("## Intended use")[0]
    assert "\n### Batch-size robustness\n\n| run | esol |\n|---|---|\n| b32 | 0.75 |\n" in evaluation
    (tmp_path / "report.md").write_text("no title\n")
    with pytest.raises(ValueError, match="title"):
        paper_comparison.main(["--rerender-card", str(tmp_path / "results" / "comparison_results.json"),
                            "--ship", str(tmp_path / "shipped"), "--card-extra", str(tmp_path / "report.md")])  # fmt: skip
    limitations = card.split("## Limitations")[1]
    assert "mean sigma 0.050, 100% of log-variances at the floor" in limitations
    assert "aggregate: 0.10 at 1, 0.20 at 0.5; neighbourhood: 0.70 at 0.05" in limitations
    assert "`python benchmarks/sampler_sweep.py --n 10`" in limitations
