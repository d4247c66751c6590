"""What several test files share: a few real molecules and the shipped MOSES sample, a tiny config
and checkpoint, running the `cmim` console script, and a tiny CMIMTrainer. Fixtures stay in
conftest.py; no test file imports another."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset

import cmim_hf
from cmim_hf import CMIMConfig, CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.training.trainer import CMIMDataCollator, CMIMTrainer, CMIMTrainingArguments

SMILES = [
    "CCO",
    "c1ccccc1",
    "CC(=O)Oc1ccccc1C(=O)O",
    "C[C@@H](N)C(=O)O",
    "Clc1ccc(Br)cc1",
    "O=C1CCCN1",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
]
MOSES_SAMPLE = Path(cmim_hf.__file__).parent / "package_data" / "moses" / "moses_test_first5000.csv"
"""The first 5,000 molecules of MOSES' test set, shipped in the package (column ``SMILES``)."""


def moses_smiles(n: int | None = None) -> list[str]:
    """The first ``n`` SMILES of :data:`MOSES_SAMPLE` (all 5,000 for None)."""
    return pd.read_csv(MOSES_SAMPLE, nrows=n)["SMILES"].tolist()


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


def save_tiny_checkpoint(folder: Path, **config) -> Path:
    """A checkpoint folder of a random tiny cMIM model (seed 0, :func:`tiny_config` with ``config``)
    and the shipped tokenizer."""
    torch.manual_seed(0)
    CMIMForConditionalGeneration(tiny_config(**config)).save_pretrained(folder)
    CMIMTokenizer().save_pretrained(folder)
    return folder


def cmim_executable() -> str:
    """The `cmim` console script of this environment (PATH first, then next to the interpreter)."""
    found = shutil.which("cmim") or str(Path(sys.executable).with_name("cmim"))
    assert Path(found).is_file(), "the cmim console script is not installed (pip install -e .)"
    return found


def start_cmim(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    return subprocess.Popen(
        [cmim_executable(), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def make_args(tmp_path: Path, **overrides) -> CMIMTrainingArguments:
    """One SGD step on the CPU into ``tmp_path/out``, nothing saved or reported (``overrides`` win)."""
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        max_steps=1,
        learning_rate=0.1,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        latent_warmup_steps=0,
    )
    values.update(overrides)
    return CMIMTrainingArguments(**values)


def make_trainer(
    tmp_path, tokenizer, model=None, molecules=SMILES, eval_molecules=None, **overrides
) -> CMIMTrainer:
    """A CMIMTrainer of :func:`make_args` on ``molecules`` (evaluated on ``eval_molecules``, by default
    the same); ``model`` by default a tiny one (seed 0)."""
    if model is None:
        torch.manual_seed(0)
        model = CMIMForConditionalGeneration(tiny_config())
    return CMIMTrainer(
        model=model,
        args=make_args(tmp_path, **overrides),
        train_dataset=Dataset.from_dict({"smiles": list(molecules)}),
        eval_dataset=Dataset.from_dict(
            {"smiles": list(molecules if eval_molecules is None else eval_molecules)}
        ),
        data_collator=CMIMDataCollator(tokenizer),
        processing_class=tokenizer,
    )
