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
from helpers import tiny_config  # noqa: E402

import cmim_hf  # noqa: E402
from cmim_hf import CMIMForConditionalGeneration  # noqa: E402


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
