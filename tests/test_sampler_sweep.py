"""benchmarks/sampler_sweep.py on a tiny saved checkpoint: one row per sampler setting, the
posterior's width by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import SMILES, tiny_config

import cmim_hf
from cmim_hf.generation import encode_posterior, encode_smiles, fit_aggregate_posterior

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import sampler_sweep  # noqa: E402


def test_posterior_width_by_hand() -> None:
    logvar = torch.tensor([[-6.0, -6.0], [0.0, -2.0]])
    width = sampler_sweep.posterior_width(logvar, floor=-6.0)
    expected_sigma = (2 * torch.exp(torch.tensor(-3.0)) + 1 + torch.exp(torch.tensor(-1.0))) / 4
    assert width["mean_sigma"] == pytest.approx(float(expected_sigma))
    assert width["share_at_floor"] == 0.5
    assert "share_at_floor" not in sampler_sweep.posterior_width(logvar, floor=None)


def test_encode_posterior_agrees_with_encode_smiles(tokenizer) -> None:
    torch.manual_seed(0)
    model = cmim_hf.CMIMForConditionalGeneration(tiny_config()).eval()
    mu, logvar = encode_posterior(model, tokenizer, SMILES)
    assert mu.shape == logvar.shape == (len(SMILES), 1, 32)
    assert torch.equal(mu, encode_smiles(model, tokenizer, SMILES))
    assert logvar.min() >= model.config.logvar_min
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(logvar, model.encode(**batch).z_logvar, atol=1e-5, rtol=0)


def test_sweep_writes_one_row_per_setting(tmp_path: Path, tokenizer) -> None:
    torch.manual_seed(0)
    model = cmim_hf.CMIMForConditionalGeneration(tiny_config(init_std=0.5, max_position_embeddings=32)).eval()
    fit_aggregate_posterior(model, tokenizer, SMILES).save(tmp_path)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    corpus = tmp_path / "molecules.csv"
    pd.DataFrame({"smiles": SMILES}).to_csv(corpus, index=False)
    out = tmp_path / "sweep.json"
    record = sampler_sweep.main(
        [
            "--model",
            str(tmp_path),
            "--eval-file",
            str(corpus),
            "--n",
            "10",
            "--scales",
            "1,0.5",
            "--radii",
            "0.1",
            "--novelty-reference",
            str(corpus),
            "--json",
            str(out),
        ]  # fmt: skip
    )
    assert [(r["sampler"], r["spread"]) for r in record["rows"]] == [
        ("aggregate", 1.0), ("standard normal", 1.0), ("aggregate", 0.5), ("standard normal", 0.5),
        ("neighbourhood", 0.1),
    ]  # fmt: skip
    for row in record["rows"]:
        assert row["samples"] == 10
        assert all(0.0 <= row[key] <= 1.0 for key in ("validity", "uniqueness", "novelty"))
    _, logvar = encode_posterior(model, tokenizer, SMILES)
    assert record["posterior"]["mean_sigma"] == pytest.approx(float(torch.exp(0.5 * logvar).mean()))
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert out.with_suffix(".md").read_text().count("\n| ") == 2 + 5  # header, separator and five rows
