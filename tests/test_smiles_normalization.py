"""SMILES written as the checkpoint was trained (issue 12, item 3): the config records the scheme;
the embedder, the pipeline, the benchmark featurizer and generation apply it by default."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers import tiny_config
from transformers import pipeline

import cmim_hf
from cmim_hf import CMIMConfig, CMIMEmbedder, CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.chem import InvalidSmilesError, normalize_smiles
from cmim_hf.evaluation.featurizers import CheckpointFeaturizer
from cmim_hf.generation import encode_smiles
from cmim_hf.models.cmim.pipelines import InformativeFeatureExtractionPipeline, normalize_for_model
from cmim_hf.training.corpus import load_smiles_corpus, tokenize_corpus
from cmim_hf.training.pretrain import main as pretrain_main

STEREO = "N[C@@H](C)C(=O)O"  # L-alanine written with stereo, not canonical
NO_STEREO_CANONICAL = "CC(N)C(=O)O"
STEREO_CANONICAL = "C[C@H](N)C(=O)O"


def test_normalize_smiles_schemes() -> None:
    assert normalize_smiles(STEREO, "none") == STEREO
    assert normalize_smiles(STEREO, "canonical") == STEREO_CANONICAL
    assert normalize_smiles(STEREO, "canonical_nostereo") == NO_STEREO_CANONICAL
    for scheme in ("none", "canonical", "canonical_nostereo"):
        assert normalize_for_model(STEREO, scheme) == normalize_smiles(STEREO, scheme)
        with pytest.raises(InvalidSmilesError):
            normalize_smiles("C1CC", scheme)
    assert normalize_for_model(STEREO, None) == STEREO
    with pytest.raises(ValueError, match="cannot parse"):
        normalize_for_model("C1CC", "canonical")
    with pytest.raises(ValueError, match="unknown SMILES normalization"):
        normalize_smiles("CCO", "inchi")
    with pytest.raises(ValueError, match="smiles_normalization"):
        CMIMConfig(smiles_normalization="inchi")


@pytest.fixture(scope="module")
def nostereo_model() -> CMIMForConditionalGeneration:
    torch.manual_seed(0)
    return CMIMForConditionalGeneration(tiny_config(smiles_normalization="canonical_nostereo")).eval()


def test_isotope_labels_survive_every_scheme(nostereo_model) -> None:
    """[13CH3]O is not methanol (issue 13, case 7): normalizing keeps the label, so a vocabulary
    without it flags the molecule instead of embedding it as CO."""
    deuterated = "[2H]C([2H])([2H])[C@H](N)C"
    for scheme in ("canonical", "canonical_nostereo"):
        assert normalize_smiles("[13CH3]O", scheme) == normalize_for_model("[13CH3]O", scheme) == "[13CH3]O"
    assert normalize_smiles(deuterated, "canonical_nostereo") == "[2H]C([2H])([2H])C(C)N"
    assert normalize_for_model(deuterated, "canonical_nostereo") == "[2H]C([2H])([2H])C(C)N"
    with pytest.warns(UserWarning, match=r"outside the vocabulary: \[13CH3\]"):
        features = CMIMEmbedder(nostereo_model, on_invalid="nan").embed(["[13CH3]O", "[14CH3]O", "CO"])
    assert np.isnan(features[:2]).all() and np.isfinite(features[2]).all()


def test_embedder_and_featurizer_apply_the_checkpoint_scheme(nostereo_model, tmp_path) -> None:
    as_trained = CMIMEmbedder(nostereo_model, normalize=False).embed([NO_STEREO_CANONICAL])
    np.testing.assert_allclose(CMIMEmbedder(nostereo_model).embed([STEREO]), as_trained, atol=1e-6)
    raw = CMIMEmbedder(nostereo_model, normalize=False).embed([STEREO])
    assert not np.allclose(raw, as_trained, atol=1e-3)
    canonical = CMIMEmbedder(nostereo_model, normalize="canonical").embed([STEREO])
    np.testing.assert_allclose(
        canonical, CMIMEmbedder(nostereo_model, normalize=False).embed([STEREO_CANONICAL]), atol=1e-6
    )
    with pytest.raises(ValueError, match="normalize must be"):
        CMIMEmbedder(nostereo_model, normalize="inchi")

    nostereo_model.save_pretrained(tmp_path / "ckpt")
    CMIMTokenizer().save_pretrained(tmp_path / "ckpt")
    featurized = CheckpointFeaturizer(tmp_path / "ckpt")([STEREO])
    np.testing.assert_allclose(featurized, as_trained, atol=1e-5)
    unnormalized = CheckpointFeaturizer(tmp_path / "ckpt", normalize=False)
    np.testing.assert_allclose(unnormalized([STEREO]), raw, atol=1e-5)
    assert "normalize=False" in repr(unnormalized)


def test_pipeline_applies_the_checkpoint_scheme(nostereo_model) -> None:
    extractor = InformativeFeatureExtractionPipeline(model=nostereo_model, tokenizer=CMIMTokenizer())
    as_trained = extractor(NO_STEREO_CANONICAL, return_tensors=True)
    assert torch.allclose(extractor(STEREO, return_tensors=True), as_trained, atol=1e-6)
    assert not torch.allclose(extractor(STEREO, return_tensors=True, normalize=False), as_trained, atol=1e-3)


def test_generation_encodes_normalized_smiles(nostereo_model, tokenizer) -> None:
    codes = encode_smiles(nostereo_model, tokenizer, [STEREO, NO_STEREO_CANONICAL])
    assert torch.allclose(codes[0], codes[1], atol=1e-6)


def test_shipped_checkpoint_states_its_training_smiles() -> None:
    with open(f"{cmim_hf.DEFAULT_CHECKPOINT}/config.json", encoding="utf-8") as handle:
        assert json.load(handle)["smiles_normalization"] == "canonical_nostereo"  # MOSES
    extractor = pipeline("feature-extraction", model=cmim_hf.DEFAULT_CHECKPOINT, trust_remote_code=True)
    assert np.allclose(extractor(STEREO), extractor(NO_STEREO_CANONICAL), atol=1e-6)


def test_pretrain_normalizes_the_corpus_and_records_it(tmp_path) -> None:
    corpus = tmp_path / "train.csv"
    rows = [STEREO, "OCC", "c1ccccc1O", "CCN", "C1CC", "CC(=O)O", "CCCl", "OC(C)C"] * 2
    with open(corpus, "w", newline="") as handle:
        csv.writer(handle).writerows([["smiles"], *[[r] for r in rows]])
    out = tmp_path / "run"
    tiny = [
        "--hidden-size",
        "16",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--num-attention-heads",
        "2",
    ]
    argv = ["--train-file", str(corpus), "--output-dir", str(out), "--max-steps", "1", "--batch-size", "4"]
    assert (
        pretrain_main([*argv, *tiny, "--ffn-dim", "32", "--smiles-normalization", "canonical_nostereo"]) == 0
    )
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["smiles_normalization"] == "canonical_nostereo"
    with open(out / "skipped_train_smiles.csv") as handle:
        assert [row["smiles"] for row in csv.DictReader(handle)] == ["C1CC", "C1CC"]  # as given

    usable, skipped = tokenize_corpus(
        load_smiles_corpus(corpus), CMIMTokenizer(), normalization="canonical_nostereo"
    )
    assert list(usable["smiles"])[:4] == [NO_STEREO_CANONICAL, "CCO", "Oc1ccccc1", "CCN"]
    assert usable["input_ids"][1] == CMIMTokenizer()("CCO")["input_ids"]
    assert [row["row"] for row in skipped] == [4, 12]
