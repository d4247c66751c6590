"""Tests of CMIMTrainingArguments, CMIMDataCollator and CMIMTrainer."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SMILES, make_args, make_trainer, tiny_config

from cmim_hf import CMIMForConditionalGeneration, prepare_decoder_inputs
from cmim_hf.training.losses import amim_latent_loss, cmim_contrastive_loss, sequence_cross_entropy
from cmim_hf.training.trainer import (
    CMIMDataCollator,
    CMIMTrainer,
    floor_sigma_at,
    parse_floor_schedule,
)

TESTS_DIR = Path(__file__).resolve().parent


def test_invalid_arguments_raise(tmp_path) -> None:
    with pytest.raises(ValueError, match="objective must be one of"):
        make_args(tmp_path, objective="vae")
    with pytest.raises(ValueError, match="temperature must be positive"):
        make_args(tmp_path, temperature=0.0)
    with pytest.raises(ValueError, match="latent_reduction"):
        make_args(tmp_path, latent_reduction="max")


def test_collator_from_smiles_and_from_ids_agree(tokenizer) -> None:
    collator = CMIMDataCollator(tokenizer)
    from_smiles = collator([{"smiles": s} for s in SMILES])
    from_ids = collator([{"input_ids": tokenizer(s)["input_ids"]} for s in SMILES])
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(from_smiles[key], from_ids[key])
    batch = from_smiles
    assert batch["labels"].shape == (len(SMILES), batch["input_ids"].shape[1] - 1)
    assert torch.equal(
        batch["labels"], prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)[2]
    )
    with pytest.raises(ValueError, match="'input_ids' or a 'smiles'"):
        collator([{"text": "CCO"}])


@pytest.mark.parametrize("objective", ["cmim", "mim", "infonce", "ae"])
def test_compute_loss_combines_weighted_components(tmp_path, tokenizer, monkeypatch, objective) -> None:
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # z = mu: both InfoNCE samples equal
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        objective=objective,
        reconstruction_weight=0.7,
        latent_weight=0.3,
        contrastive_weight=2.0,
        latent_warmup_steps=4,
    )
    trainer.state.global_step = 1  # latent weight 0.3 * 1/4
    model = trainer.model.train()
    batch = CMIMDataCollator(tokenizer)([{"smiles": s} for s in SMILES])
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)

    reconstruction = sequence_cross_entropy(outputs.logits, batch["labels"]).mean()
    expected = 0.7 * reconstruction
    if objective != "ae":
        expected = expected + 0.075 * amim_latent_loss(outputs.z, outputs.z_mean, outputs.z_logvar).mean()
    if objective == "cmim":
        expected = expected + 2.0 * cmim_contrastive_loss(outputs.z, 0.1).mean()
    if objective == "infonce":  # identical positives: -log softmax of the self-similarity 1/tau
        codes = torch.nn.functional.normalize(outputs.z.flatten(1), dim=1)
        logits = codes @ codes.T / 0.1
        expected = expected + 2.0 * (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def final_parameters(trainer: CMIMTrainer) -> dict[str, torch.Tensor]:
    trainer.train()
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def test_gradient_accumulation_equals_one_big_batch(tmp_path, tokenizer, monkeypatch) -> None:
    """objective 'ae': GA=2 x 4 molecules gives the SGD step of one batch of 8 (also with a
    ragged last micro-batch: 5 + 3 molecules normalised by 8, not per micro-batch)."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    molecules = SMILES + ["CCN"]
    torch.manual_seed(0)
    start = CMIMForConditionalGeneration(tiny_config()).state_dict()

    def run(batch_size: int, accumulation: int) -> dict[str, torch.Tensor]:
        model = CMIMForConditionalGeneration(tiny_config())
        model.load_state_dict(start)
        trainer = make_trainer(
            tmp_path / f"{batch_size}x{accumulation}",
            tokenizer,
            model=model,
            molecules=molecules,
            objective="ae",
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
        )
        return final_parameters(trainer)

    big, accumulated, ragged = run(8, 1), run(4, 2), run(5, 2)
    assert any(not torch.equal(big[n], start[n]) for n in big)
    for name in big:
        assert torch.allclose(big[name], accumulated[name], atol=1e-6), name
        assert torch.allclose(big[name], ragged[name], atol=1e-6), name


def test_training_logs_step_averaged_components(tmp_path, tokenizer) -> None:
    molecules = SMILES + ["CCN"]  # equal batches: the Trainer's loss is a mean of batch means
    trainer = make_trainer(
        tmp_path, tokenizer, molecules=molecules, max_steps=4, logging_steps=2, per_device_train_batch_size=2
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss/total" in entry]
    assert [entry["step"] for entry in logs] == [2, 4]
    for entry in logs:
        assert set(entry) >= {"loss/reconstruction", "loss/latent", "loss/contrastive", "latent_weight"}
        assert entry["loss/reconstruction"] > 0 and entry["loss/contrastive"] >= 0
        assert entry["loss/total"] == pytest.approx(entry["loss"], rel=1e-3)


def test_floor_schedule_is_piecewise_linear() -> None:
    schedule = parse_floor_schedule("10:0.1, 20:0.1, 30:0.3")
    assert schedule == [(10, 0.1), (20, 0.1), (30, 0.3)]
    steps = (0, 10, 15, 20, 25, 30, 1000)
    assert [floor_sigma_at(schedule, s) for s in steps] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.3])


@pytest.mark.parametrize(
    "text, message",
    [("0:0.1,0:0.2", "steps must increase"), ("0:1.5", "0 < SIGMA < 1"), ("0.1", "is not STEP:SIGMA")],
)
def test_floor_schedule_rejects_malformed_points(tmp_path, text, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, posterior_floor_schedule=text)


def test_training_follows_the_floor_schedule(tmp_path, tokenizer) -> None:
    """Each step clamps the posterior at the schedule's sigma; the log and the saved config show it."""
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        max_steps=3,
        per_device_train_batch_size=2,
        posterior_floor_schedule="0:0.1,2:0.3",
    )
    floors = []
    encoder_forward = trainer.model.model.encoder.forward

    def recording_forward(*args, **kwargs):
        output = encoder_forward(*args, **kwargs)
        floors.append(output.z_logvar.min().item())
        return output

    trainer.model.model.encoder.forward = recording_forward
    trainer.train()
    # steps 0, 1, 2 train at sigma 0.1, 0.2, 0.3; every posterior sits at its floor (a fresh model)
    assert floors == pytest.approx([2 * math.log(0.1), 2 * math.log(0.2), 2 * math.log(0.3)], abs=1e-5)
    logged = [e["posterior_floor_sigma"] for e in trainer.state.log_history if "posterior_floor_sigma" in e]
    assert logged == pytest.approx([0.1, 0.2, 0.3])
    trainer.save_model(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["logvar_min"] == pytest.approx(2 * math.log(0.3))


def test_evaluate_reports_greedy_reconstruction_accuracy(tmp_path, tokenizer) -> None:
    trainer = make_trainer(tmp_path, tokenizer)
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_token_accuracy", "eval_exact_match"} <= set(metrics)

    model = trainer.model.eval()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = model(**batch).logits.argmax(-1)
        generated = model.generate(**batch, max_new_tokens=batch["input_ids"].shape[1], do_sample=False)
    _, _, labels = prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)
    keep = labels != -100
    assert metrics["eval_token_accuracy"] == pytest.approx(
        (predictions[keep] == labels[keep]).float().mean().item()
    )
    greedy = tokenizer.batch_decode(generated, skip_special_tokens=True)
    assert metrics["eval_exact_match"] == pytest.approx(
        sum(g == s for g, s in zip(greedy, SMILES)) / len(SMILES)
    )


def test_reconstruction_metric_hand_computed() -> None:
    from cmim_hf.evaluation.metrics import load_metric

    metric = load_metric("reconstruction")
    result = metric.compute(predictions=[[5, 6, 2], [5, 7, 2], [9]], references=[[5, 6, 2], [5, 6, 2], [9]])
    assert result == {"token_accuracy": pytest.approx(6 / 7), "exact_match": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="molecule 0"):
        metric.compute(predictions=[[5]], references=[[5, 6]])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_cmim_step_equals_single_process(tmp_path) -> None:
    """torchrun, 2 CPU processes (gloo), negatives gathered: the loss and the SGD update (hence the
    gradients) of per-process batches of 4 equal one process on the batch of 8."""
    worker = str(TESTS_DIR / "_ddp_trainer_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    single, double = tmp_path / "single.json", tmp_path / "double.json"
    subprocess.run(
        [sys.executable, worker, str(single)], env=env, check=True, timeout=300, capture_output=True
    )
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    result = subprocess.run(
        [*launch, worker, str(double)], env=env, timeout=300, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]

    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert one["loss_total"] > 0
    assert two["loss_total"] == pytest.approx(one["loss_total"], abs=1e-6)
    for name, values in one["params"].items():
        assert torch.allclose(torch.tensor(values), torch.tensor(two["params"][name]), atol=1e-6), name
