"""Shared fixtures: the shipped tokenizer, tiny models and checkpoints built from configs (no
download), one torch thread for a module; the functions behind them are in helpers.py."""

from __future__ import annotations

import os
import shutil
import tempfile

# Tests never write into the user's Hugging Face cache: a temporary HF_HOME for this session (and
# every process it starts), set before transformers reads it.
_HF_HOME = tempfile.mkdtemp(prefix="cmim-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import save_tiny_checkpoint, tiny_config  # noqa: E402

import cmim_hf  # noqa: E402
from cmim_hf import CMIMForConditionalGeneration  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return cmim_hf.CMIMTokenizer()


@pytest.fixture
def tiny_model() -> CMIMForConditionalGeneration:
    torch.manual_seed(0)
    return CMIMForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder of a random tiny cMIM model (seed 0) and the shipped tokenizer."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny models run fastest so, and the CI box is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _remove_temporary_hf_home():
    yield
    shutil.rmtree(_HF_HOME, ignore_errors=True)
