"""bf16 compute: the dtype rule, its fallback, and bf16 training / embedding against float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset
from helpers import MOSES_SAMPLE, SMILES, tiny_config

import cmim_hf.precision as precision
from cmim_hf import CMIMEmbedder, CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.cli import main as cmim
from cmim_hf.precision import PrecisionFallbackWarning, resolve_compute_dtype
from cmim_hf.training.trainer import CMIMDataCollator, CMIMTrainer, CMIMTrainingArguments

needs_native_bf16 = pytest.mark.skipif(
    not precision.cpu_has_native_bf16(), reason="this CPU has no AVX512-BF16/AMX"
)


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)


def test_dtype_names_and_refusals() -> None:
    assert resolve_compute_dtype(None, "cpu") == torch.float32
    assert resolve_compute_dtype("float32", "cpu") == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_compute_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="torch.float32 or torch.bfloat16"):
        resolve_compute_dtype(torch.float16, "cpu")


def test_bf16_falls_back_to_float32_with_one_warning(cpu_without_bf16) -> None:
    with pytest.warns(PrecisionFallbackWarning, match="no AVX512-BF16/AMX: computing in float32"):
        assert resolve_compute_dtype(torch.bfloat16, "cpu") == torch.float32


def _embedder(dtype) -> CMIMEmbedder:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config())
    return CMIMEmbedder(model, normalize=False, progress=False, dtype=dtype)


@needs_native_bf16
def test_bf16_embeddings_are_float32_and_close_to_float32() -> None:
    reference = _embedder(torch.float32).embed(SMILES)
    embedder = _embedder("bfloat16")
    assert embedder.compute_dtype == torch.bfloat16
    assert next(embedder.model.parameters()).dtype == torch.float32  # autocast: weights untouched
    bf16 = embedder.embed(SMILES)
    assert bf16.dtype == np.float32 and bf16.shape == reference.shape
    assert not np.array_equal(bf16, reference)  # the matmuls did run in bf16
    cosine = (bf16 * reference).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.999


def test_embedder_fallback_is_exactly_float32(cpu_without_bf16) -> None:
    reference = _embedder(None).embed(SMILES)
    with pytest.warns(PrecisionFallbackWarning):
        fallback = _embedder(torch.bfloat16)
    np.testing.assert_array_equal(fallback.embed(SMILES), reference)


def _one_step_trainer(tmp_path: Path, tokenizer, bf16: bool) -> CMIMTrainer:
    torch.manual_seed(0)
    args = CMIMTrainingArguments(
        output_dir=str(tmp_path / ("bf16" if bf16 else "fp32")),
        per_device_train_batch_size=len(SMILES),
        max_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=bf16,
        seed=0,
        latent_warmup_steps=0,
    )
    return CMIMTrainer(
        model=CMIMForConditionalGeneration(tiny_config()),
        args=args,
        train_dataset=Dataset.from_dict({"smiles": SMILES}),
        data_collator=CMIMDataCollator(tokenizer),
        processing_class=tokenizer,
    )


@needs_native_bf16
def test_bf16_training_step_computes_float32_losses_close_to_float32(tmp_path, tokenizer) -> None:
    losses = {}
    for bf16 in (False, True):
        trainer = _one_step_trainer(tmp_path, tokenizer, bf16)
        batch = CMIMDataCollator(tokenizer)([{"smiles": s} for s in SMILES])
        model = trainer.accelerator.prepare_model(trainer.model).train()  # as train() does: autocast
        loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
        assert loss.dtype == torch.float32 and outputs.logits.dtype == torch.float32
        loss.backward()
        assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
        losses[bf16] = loss.item()
    assert losses[True] != losses[False]  # autocast was on
    assert losses[True] == pytest.approx(losses[False], rel=0.02)


def _corpus(tmp_path: Path) -> Path:
    rows = pd.read_csv(MOSES_SAMPLE, nrows=32)
    path = tmp_path / "train.csv"
    rows.to_csv(path, index=False)
    return path


TINY = ["--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64"]
TINY += ["--num-attention-heads", "2", "--batch-size", "8", "--max-steps", "2", "--prior-molecules", "0"]


@needs_native_bf16
def test_pretrain_bf16_trains_in_bf16(tmp_path) -> None:
    run = tmp_path / "run"
    assert (
        cmim(["pretrain", "--train-file", str(_corpus(tmp_path)), "--output-dir", str(run), "--bf16", *TINY])
        == 0
    )
    assert torch.load(run / "checkpoint-2" / "training_args.bin", weights_only=False).bf16 is True
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert all(np.isfinite(entry["loss"]) for entry in state["log_history"] if "loss" in entry)


def test_pretrain_bf16_without_hardware_says_so_and_trains_float32(
    tmp_path, capsys, cpu_without_bf16
) -> None:
    run = tmp_path / "run"
    assert (
        cmim(["pretrain", "--train-file", str(_corpus(tmp_path)), "--output-dir", str(run), "--bf16", *TINY])
        == 0
    )
    err = capsys.readouterr().err
    assert "cmim pretrain: note: bf16 asked for, but this CPU has no AVX512-BF16/AMX" in err
    trained_with = torch.load(run / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert trained_with.bf16 is False


def test_embed_dtype_option(tmp_path, capsys, cpu_without_bf16) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"smiles": SMILES}).to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    argv = [
        "embed",
        str(source),
        "-o",
        str(out),
        "--model",
        "shipped",
        "--no-progress",
        "--dtype",
        "bfloat16",
    ]
    assert cmim(argv) == 0
    assert "cmim embed: note: bf16 asked for, but this CPU has no AVX512-BF16/AMX" in capsys.readouterr().err
    assert len(pd.read_parquet(out)) == len(SMILES)


@needs_native_bf16
def test_pipeline_dtype_bfloat16_computes_in_bf16(tmp_path) -> None:
    from transformers import pipeline

    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config())
    model.save_pretrained(tmp_path)
    CMIMTokenizer().save_pretrained(tmp_path)
    fp32 = pipeline("feature-extraction", model=str(tmp_path), trust_remote_code=True)
    bf16 = pipeline("feature-extraction", model=str(tmp_path), trust_remote_code=True, dtype=torch.bfloat16)
    assert bf16.compute_dtype == torch.bfloat16 and bf16.model.dtype == torch.float32
    reference = np.array(fp32(SMILES, normalize=False))
    vectors = np.array(bf16(SMILES, normalize=False))
    assert vectors.dtype == reference.dtype and vectors.shape == reference.shape
    assert not np.array_equal(vectors, reference)
    cosine = (
        (vectors * reference).sum(-1) / np.linalg.norm(vectors, axis=-1) / np.linalg.norm(reference, axis=-1)
    )
    assert cosine.min() > 0.99  # weights loaded in bf16 too


@needs_native_bf16
def test_generation_commands_decode_in_bf16(tmp_path) -> None:
    out = tmp_path / "recon.csv"
    source = tmp_path / "in.csv"
    pd.DataFrame({"smiles": SMILES[:3]}).to_csv(source, index=False)
    argv = ["reconstruct", str(source), "-o", str(out), "--model", "shipped", "--dtype", "bfloat16"]
    assert cmim(argv) == 0
    assert len(pd.read_csv(out)) == 3


def test_generation_dtype_falls_back_with_a_note(tmp_path, capsys, cpu_without_bf16) -> None:
    out = tmp_path / "samples.csv"
    assert cmim(["sample", "-n", "2", "-o", str(out), "--model", "shipped", "--dtype", "bfloat16"]) == 0
    assert "cmim sample: note: bf16 asked for, but this CPU has no AVX512-BF16/AMX" in capsys.readouterr().err
