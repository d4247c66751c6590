"""benchmarks/qed_optimization.py: seed choice, the constrained score, the success rule and the
summary by hand, and a tiny random model end to end (2 seeds, 8 decodes each, then --append)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import tiny_config

import cmim_hf
from cmim_hf.generation import OptimizationResult, OptimizedMolecule, descriptor_score, tanimoto_similarity

# From benchmarks/data/qed_seeds_200.csv: QED 0.728, 0.778 (in [0.7, 0.8))
IN_RANGE = ["O=C(c1cn2ccsc2n1)N1CC=C(c2ccccc2)CC1", "Cc1nc(C)c(C(=O)Nc2nc(-c3ccc(F)cc3)cs2)s1"]
OUT_OF_RANGE = ["CCO", "CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1"]  # QED 0.41, 0.55, 0.44


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import qed_optimization as bench  # noqa: E402


def test_select_seeds_takes_molecules_in_range_in_a_seeded_order() -> None:
    molecules = [OUT_OF_RANGE[0], IN_RANGE[0], "C1CC", OUT_OF_RANGE[1], IN_RANGE[1], OUT_OF_RANGE[2]]
    chosen = bench.select_seeds(molecules, 2, seed=3)
    assert {s.smiles for s in chosen} == set(IN_RANGE)
    assert [molecules[s.source_row] for s in chosen] == [s.smiles for s in chosen]
    assert all(0.7 <= s.qed < 0.8 for s in chosen)
    assert bench.select_seeds(molecules, 2, seed=3) == chosen
    first_seeds = {bench.select_seeds(molecules, 1, seed=s)[0].smiles for s in range(10)}
    assert first_seeds == set(IN_RANGE)  # the order depends on the seed
    with pytest.raises(ValueError, match="only 2 of 6 molecules"):
        bench.select_seeds(molecules, 3, seed=0)


def test_constrained_qed_is_qed_when_similar_else_below_zero() -> None:
    seed = IN_RANGE[0]
    score = bench.constrained_qed(seed)
    assert score(seed) == pytest.approx(descriptor_score("qed")(seed))
    assert score(seed) == pytest.approx(0.7280192108613053)
    similarity = tanimoto_similarity(["CCO"], [seed])[0]
    assert similarity < 0.4
    assert score("CCO") == pytest.approx(similarity - 1.0)
    assert bench.constrained_qed(seed, threshold=0.0)("CCO") == pytest.approx(bench.qed("CCO"))


@pytest.mark.parametrize(
    ("qed", "similarity", "success"),
    [(0.9, 0.4, True), (0.95, 1.0, True), (0.8999, 0.9, False), (0.95, 0.3999, False)],
)
def test_success_rule(qed: float, similarity: float, success: bool) -> None:
    assert bench.is_success(qed, similarity) is success


def _result(seed_qed: float, molecules: list[tuple[str, float, float]], penalized: int) -> OptimizationResult:
    found = [OptimizedMolecule(smiles, score, similarity, score) for smiles, score, similarity in molecules]
    return OptimizationResult("C", seed_qed, found, 8, penalized, [])


def test_seed_outcomes_and_summary_by_hand() -> None:
    outcomes = [
        # a success: the best feasible molecule (QED 0.93, similarity 0.5); the 0.95 one is too far
        bench.seed_outcome(_result(0.75, [("A", 0.93, 0.5), ("B", 0.8, 0.9), ("C", -0.65, 0.35)], 2)),
        # only a too-dissimilar decode: no feasible molecule, improvement 0
        bench.seed_outcome(_result(0.72, [("D", -0.7, 0.3)], 7)),
        # feasible, below the seed's QED: improvement negative
        bench.seed_outcome(_result(0.78, [("E", 0.76, 0.6)], 0)),
    ]
    assert [o["success"] for o in outcomes] == [True, False, False]
    assert [o["best_smiles"] for o in outcomes] == ["A", None, "E"]
    assert [o["improvement"] for o in outcomes] == pytest.approx([0.18, 0.0, -0.02])
    assert [o["valid_decodes"] for o in outcomes] == [6, 1, 8]
    summary = bench.summarize(outcomes)
    assert summary["successes"] == 1
    assert summary["success_rate"] == pytest.approx(1 / 3)
    assert summary["success_rate_error"] == pytest.approx((1 / 3) ** 0.5 / 3**0.5)  # std 0.577 / sqrt(3)
    assert summary["mean_improvement"] == pytest.approx(0.16 / 3)
    assert summary["success_similarity"] == pytest.approx(0.5)
    assert summary["seeds_with_feasible"] == 2
    assert summary["valid_decode_fraction"] == pytest.approx(15 / 24)


def test_summary_without_successes() -> None:
    summary = bench.summarize([bench.seed_outcome(_result(0.7, [], 8))])
    assert summary["success_rate"] == 0.0 and summary["success_similarity"] is None
    assert summary["valid_decode_fraction"] == 0.0


def test_parse_model() -> None:
    assert bench.parse_model("v2=shipped") == ("v2", "shipped")
    assert bench.parse_model("/tmp/ckpt") == ("/tmp/ckpt", "/tmp/ckpt")


def test_append_replaces_a_label_and_refuses_other_settings() -> None:
    settings = bench.SearchSettings("seeds.csv", "abc", 2, 8, 4, 0.1, 64, 0)
    first = bench.merge_runs(None, settings, [{"label": "a", "n": 1}, {"label": "b", "n": 1}])
    appended = bench.merge_runs(json.loads(json.dumps(first)), settings, [{"label": "a", "n": 2}])
    assert [(r["label"], r["n"]) for r in appended["runs"]] == [("b", 1), ("a", 2)]
    moved = bench.SearchSettings("/elsewhere/seeds.csv", "abc", 2, 8, 4, 0.1, 64, 0)
    assert bench.merge_runs(first, moved, [])["settings"]["seeds_file"] == "seeds.csv"
    with pytest.raises(ValueError, match="other settings .budget"):
        bench.merge_runs(first, bench.SearchSettings("seeds.csv", "abc", 2, 16, 4, 0.1, 64, 0), [])


def test_tiny_model_end_to_end_then_append(tmp_path: Path, tokenizer) -> None:
    torch.manual_seed(0)
    model = cmim_hf.CMIMForConditionalGeneration(tiny_config(max_position_embeddings=64)).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    molecules = tmp_path / "molecules.csv"
    pd.DataFrame({"smiles": OUT_OF_RANGE + IN_RANGE}).to_csv(molecules, index=False)
    seeds, results, table = tmp_path / "seeds.csv", tmp_path / "results.json", tmp_path / "README.md"
    common = ["--seeds", str(seeds), "--budget", "8", "--population", "4", "--json", str(results)]
    common += ["--markdown", str(table)]
    args = ["--eval-file", str(molecules), "--n-seeds", "2", "--model", f"tiny={tmp_path / 'model'}"]
    record = bench.main(args + common)
    assert set(pd.read_csv(seeds)["smiles"]) == set(IN_RANGE)
    (run,) = record["runs"]
    assert run["summary"]["seeds"] == 2 and run["summary"]["decodes"] == 16
    assert [o["decodes"] for o in run["outcomes"]] == [8, 8]
    assert 0.0 <= run["summary"]["valid_decode_fraction"] <= 1.0
    assert run["architecture"].startswith("K=1 latents of 32, d=32, 2+2 layers")
    assert run["command"].startswith("python benchmarks/qed_optimization.py --eval-file")

    bench.main(["--model", f"again={tmp_path / 'model'}", "--append"] + common)
    saved = json.loads(results.read_text())
    assert [r["label"] for r in saved["runs"]] == ["tiny", "again"]
    assert saved["runs"][1]["outcomes"] == run["outcomes"]  # same seeds, same search
    rows = [line for line in table.read_text().splitlines() if line.startswith(("| tiny ", "| again "))]
    assert len(rows) == 2
    with pytest.raises(SystemExit):
        bench.main(["--model", "x=shipped"] + common[:2] + ["--budget", "10", "--population", "4"])
