"""The pretrained checkpoint shipped in the package: complete, small, offline, and as good as its card says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from clean_python import HUB_USER_CHECK, run_without_cmim_hf
from helpers import SMILES, moses_smiles
from transformers import AutoConfig, AutoModel, AutoTokenizer, pipeline

import cmim_hf
from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.embedding import CMIMEmbedder
from cmim_hf.generation import reconstruct
from cmim_hf.model_card import check_hub_folder

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = Path(cmim_hf.DEFAULT_CHECKPOINT)
GRID = ROOT / "model_cards" / "dense_latent" / "frontier.json"
sys.path.insert(0, str(ROOT / "benchmarks"))  # as the scripts run
import ship_v3  # noqa: E402


def test_checkpoint_is_complete_and_small() -> None:
    assert CHECKPOINT.parent == Path(cmim_hf.__file__).parent
    check_hub_folder(CHECKPOINT)
    size = sum(path.stat().st_size for path in CHECKPOINT.rglob("*") if path.is_file())
    assert size <= 25 * 2**20


def test_auto_classes_and_pipeline_load_the_default_checkpoint() -> None:
    config = AutoConfig.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)
    assert config.model_type == "cmim"
    tokenizer = AutoTokenizer.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)
    model = AutoModel.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT, dtype=torch.float32).eval()
    assert isinstance(tokenizer, cmim_hf.CMIMTokenizer) and isinstance(model, cmim_hf.CMIMModel)
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        z_mean = model(**batch).z_mean
    assert z_mean.shape == (len(SMILES), config.num_latents, config.latent_size)

    extractor = pipeline("feature-extraction", model=cmim_hf.DEFAULT_CHECKPOINT, trust_remote_code=True)
    vectors = torch.tensor([list(v) for v in extractor(SMILES)])
    expected = CMIMEmbedder(cmim_hf.DEFAULT_CHECKPOINT).embed(SMILES)
    assert vectors.shape == expected.shape
    assert torch.allclose(vectors, torch.from_numpy(expected), atol=1e-5)


def test_loads_offline_without_cmim_hf(tmp_path: Path) -> None:
    stdout = run_without_cmim_hf(HUB_USER_CHECK, [str(CHECKPOINT), json.dumps(SMILES[:3])], tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["model"] == "CMIMModel"
    expected = CMIMEmbedder(cmim_hf.DEFAULT_CHECKPOINT).embed(SMILES[:3])
    assert torch.allclose(torch.tensor(result["vectors"]), torch.from_numpy(expected), atol=1e-5)


def test_cli_embeds_with_the_default_checkpoint(tmp_path: Path) -> None:
    pd.DataFrame({"smiles": SMILES}).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.parquet"
    subprocess.run(
        [sys.executable, "-m", "cmim_hf.cli", "embed", str(tmp_path / "in.csv"), "-o", str(out)], check=True
    )
    table = pd.read_parquet(out)
    assert len(table) == len(SMILES) and table["valid"].all()


def test_reconstruction_matches_the_recorded_figure() -> None:
    """Greedy reconstruction of the same held-out molecules gives the exact-match rate on the card."""
    grid = json.loads(GRID.read_text())
    recorded, n = grid["rows"]["v3"]["exact_reconstruction"], grid["reconstruct"]
    held_out = moses_smiles(n)
    model, tokenizer = load_model_for_generation(cmim_hf.DEFAULT_CHECKPOINT)
    exact = sum(reconstruct(model, tokenizer, held_out).exact) / n
    assert abs(exact - recorded) <= 2 / n
    card = (CHECKPOINT / "README.md").read_text()
    assert f"| exact_match | {recorded:.4f} |" in card


def test_card_states_the_trade_off_its_records_give() -> None:
    """The card's v3-against-v2 table is the one ``benchmarks/ship_v3.py`` builds from the records."""
    title, _, body = ship_v3.trade_off_section(ship_v3.gather()).partition("\n")
    card = (CHECKPOINT / "README.md").read_text()
    assert f"### {title[2:]}\n{body.rstrip()}" in card
    figures = ship_v3.gather()
    assert figures["v3"]["exact"] >= figures["v2"]["exact"] - 0.05  # the fallback rule it was shipped under
    assert figures["v3"]["moses"]["Valid"] > figures["v2"]["moses"]["Valid"]
    for task, metric in ship_v3.DOWNSTREAM:
        (v3_mean, _), (v2_mean, v2_std) = figures["v3"]["downstream"][task], figures["v2"]["downstream"][task]
        worse_by = v3_mean - v2_mean if metric == "rmse" else v2_mean - v3_mean
        assert worse_by <= v2_std, task


def test_readme_usage_example_runs() -> None:
    """The README's "Using it" code runs as written on the shipped checkpoint."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using it") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["features"].shape == (2, len(namespace["vector"]))
    assert namespace["posterior"].z_mean.shape[0] == 2
