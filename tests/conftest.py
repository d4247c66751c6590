"""Shared fixtures: tiny models built from configs (no download), a few real molecules."""

from __future__ import annotations

import os
import shutil
import tempfile

# Tests never write into the user's Hugging Face cache: a temporary HF_HOME for this session (and
# every process it starts), set before transformers reads it.
_HF_HOME = tempfile.mkdtemp(prefix="cmim-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import cmim_hf  # noqa: E402
from cmim_hf import CMIMConfig, CMIMForConditionalGeneration  # noqa: E402

SMILES = [
    "CCO",
    "c1ccccc1",
    "CC(=O)Oc1ccccc1C(=O)O",
    "C[C@@H](N)C(=O)O",
    "Clc1ccc(Br)cc1",
    "O=C1CCCN1",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
]


def tiny_config(**overrides) -> CMIMConfig:
    """A ~50k-parameter cMIM config with the shipped vocabulary size."""
    values = dict(
        vocab_size=len(cmim_hf.CMIMTokenizer()),
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        dropout=0.0,
        max_position_embeddings=128,
    )
    values.update(overrides)
    return CMIMConfig(**values)


@pytest.fixture(scope="session")
def tokenizer():
    return cmim_hf.CMIMTokenizer()


@pytest.fixture
def tiny_model() -> CMIMForConditionalGeneration:
    torch.manual_seed(0)
    return CMIMForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="session", autouse=True)
def _remove_temporary_hf_home():
    yield
    shutil.rmtree(_HF_HOME, ignore_errors=True)
