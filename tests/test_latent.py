"""An informative latent (issue 12): the posterior starts at its floor, active units and the
participation ratio are measured, and each anti-collapse training option does what it says."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import SMILES, make_trainer, tiny_config

from cmim_hf import CMIMForConditionalGeneration
from cmim_hf.checkpoints import CheckpointError
from cmim_hf.generation import (
    AGGREGATE_POSTERIOR_FILE,
    AggregatePosterior,
    encode_smiles,
    fit_aggregate_posterior,
    sample_prior,
)
from cmim_hf.training.latent_stats import (
    active_directions,
    active_units,
    fit_gaussian,
    gaussian_sampling_factor,
    latent_activity,
    participation_ratio,
    sample_gaussian,
)
from cmim_hf.training.losses import amim_latent_loss
from cmim_hf.training.trainer import CMIMDataCollator, CMIMTrainingArguments

# --- initialisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("logvar_min", [-6.0, -12.0])
def test_posterior_starts_at_its_floor(tokenizer, logvar_min: float) -> None:
    """With the default linear init log sigma^2 ~ 0: sigma ~ 1 buries the ~0.1 spread of mu in noise
    and the decoder learns to ignore z. The model must start with sigma at its floor."""
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(hidden_size=128, logvar_min=logvar_min)).eval()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    out = model.encode(**batch)
    assert out.z_logvar.mean().item() == pytest.approx(logvar_min, abs=0.5)
    sigma = torch.exp(0.5 * out.z_logvar).mean().item()
    spread = out.z_mean.std(dim=0).mean().item()
    assert sigma < spread, f"posterior noise {sigma:.3f} exceeds the spread of mu {spread:.3f}"


def test_loaded_checkpoint_keeps_its_posterior_bias(tmp_path, tokenizer) -> None:
    model = CMIMForConditionalGeneration(tiny_config())
    with torch.no_grad():
        model.model.encoder.bottleneck.posterior_proj.bias.fill_(-1.5)
    model.save_pretrained(tmp_path)
    loaded = CMIMForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.all(loaded.model.encoder.bottleneck.posterior_proj.bias == -1.5)


def test_sample_latent_overrides_the_mode(tokenizer) -> None:
    model = CMIMForConditionalGeneration(tiny_config()).train()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    deterministic = model(**batch, sample_latent=False)
    assert torch.equal(deterministic.z, deterministic.z_mean)
    model.eval()
    sampled = model(**batch, sample_latent=True)
    assert not torch.equal(sampled.z, sampled.z_mean)


# --- active units and participation ratio --------------------------------------------------------


def test_active_units_and_participation_ratio_hand_computed() -> None:
    generator = torch.Generator().manual_seed(0)
    standard = torch.randn(20000, 6, generator=generator, dtype=torch.float64)
    standard = (standard - standard.mean(0)) / standard.std(0)  # exact unit variances
    # variances 4, 1, 0.02 (active), 0.005, 0 and 1e-4 (inactive)
    scales = torch.tensor([2.0, 1.0, math.sqrt(0.02), math.sqrt(0.005), 0.0, 0.01], dtype=torch.float64)
    codes = (standard * scales).reshape(20000, 2, 3)  # (N, K, L) is flattened
    assert active_units(codes) == 3
    assert active_units(codes, threshold=0.5) == 2
    variances = scales**2  # nearly uncorrelated columns: eigenvalues ~ the variances
    expected = float(variances.sum() ** 2 / (variances**2).sum())
    assert participation_ratio(codes) == pytest.approx(expected, rel=0.02)
    assert active_directions(codes) == 3
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))[0]
    rotated = codes.reshape(20000, 6) @ rotation  # oblique axes: counts per axis change, not per direction
    assert active_directions(rotated) == 3 and active_units(rotated) > 3


def test_participation_ratio_limits() -> None:
    generator = torch.Generator().manual_seed(1)
    isotropic = torch.randn(50000, 8, generator=generator)
    assert participation_ratio(isotropic) == pytest.approx(8.0, rel=0.02)
    on_a_line = torch.randn(100, 1, generator=generator) * torch.tensor([[1.0, -2.0, 0.5]])
    assert participation_ratio(on_a_line) == pytest.approx(1.0, abs=1e-6)
    assert participation_ratio(torch.ones(10, 4)) == 0.0
    assert latent_activity(torch.ones(10, 2, 4)) == {
        "active_units": 0,
        "active_directions": 0,
        "participation_ratio": 0.0,
        "latent_dims": 8,
    }
    with pytest.raises(ValueError, match="at least 2 molecules"):
        active_units(torch.ones(1, 4))


# --- free nats -----------------------------------------------------------------------------------


def test_free_nats_floor_the_prior_pull_hand_computed() -> None:
    z_mean = torch.tensor([[0.5, -3.0]], requires_grad=True)
    logvar = torch.full((1, 2), -6.0)
    z = z_mean.detach().clone().requires_grad_(True)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + (z - z_mean) ** 2 * torch.exp(-logvar))
    floor = 0.25
    pull = 0.25 * math.log(2 * math.pi) + torch.clamp(0.25 * z**2, min=floor)
    expected = (-0.5 * log_q + pull).mean(dim=1)
    loss = amim_latent_loss(z, z_mean, logvar, free_nats=floor)
    assert torch.allclose(loss, expected)
    loss.sum().backward()
    # inside the free region (|0.5| < 1) the prior exerts no pull; outside it pulls as usual
    assert z.grad[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert z.grad[0, 1].item() == pytest.approx(0.5 * -3.0 / 2, rel=1e-5)  # d(z^2/4)/dz, mean of 2 dims
    plain = amim_latent_loss(z, z_mean, logvar)
    assert torch.allclose(amim_latent_loss(z, z_mean, logvar, free_nats=0.0), plain)
    with pytest.raises(ValueError, match="free_nats"):
        amim_latent_loss(z, z_mean, logvar, free_nats=-1.0)


# --- trainer options -----------------------------------------------------------------------------


def test_deterministic_phase_decodes_the_mean(tmp_path, tokenizer) -> None:
    trainer = make_trainer(tmp_path, tokenizer, deterministic_steps=2)
    batch = CMIMDataCollator(tokenizer)([{"smiles": s} for s in SMILES])
    model = trainer.model.train()
    for step, deterministic in [(0, True), (1, True), (2, False)]:
        trainer.state.global_step = step
        _, outputs = trainer.compute_loss(model, batch, return_outputs=True)
        assert torch.equal(outputs.z, outputs.z_mean) == deterministic, step


def test_posterior_head_gets_its_own_learning_rate(tmp_path, tokenizer) -> None:
    trainer = make_trainer(
        tmp_path, tokenizer, learning_rate=1e-3, posterior_lr_multiplier=10.0, optim="adamw_torch"
    )
    optimizer = trainer.create_optimizer()
    head = {id(p) for p in trainer.model.model.encoder.bottleneck.posterior_proj.parameters()}
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(rates) == sum(1 for _ in trainer.model.parameters())  # every parameter exactly once
    assert [rates[i] for i in head] == pytest.approx([1e-2, 1e-2])  # weight and bias
    assert sorted({rate for i, rate in rates.items() if i not in head}) == pytest.approx([1e-3])


def test_decoder_token_dropout_masks_tokens_but_not_bos_padding_or_labels(tmp_path, tokenizer) -> None:
    trainer = make_trainer(tmp_path, tokenizer, decoder_token_dropout=0.5)
    batch = CMIMDataCollator(tokenizer)([{"smiles": s} for s in SMILES * 8])
    torch.manual_seed(0)
    dropped = trainer._dropped_decoder_inputs(batch)
    ids, mask = dropped["decoder_input_ids"], dropped["decoder_attention_mask"]
    masked = ids == tokenizer.mask_token_id
    assert not masked[:, 0].any() and (ids[:, 0] == tokenizer.bos_token_id).all()
    assert not masked[mask == 0].any()
    fraction = masked[:, 1:][mask[:, 1:] == 1].float().mean().item()
    assert fraction == pytest.approx(0.5, abs=0.05)
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch)
    assert torch.isfinite(loss)


def test_evaluation_reports_active_units(tmp_path, tokenizer) -> None:
    trainer = make_trainer(tmp_path, tokenizer)
    metrics = trainer.evaluate()
    model = trainer.model.eval()
    with torch.no_grad():
        z_mean = model.encode(**tokenizer(SMILES, padding=True, return_tensors="pt")).z_mean
    assert metrics["eval_active_units"] == active_units(z_mean)
    assert metrics["eval_participation_ratio"] == pytest.approx(participation_ratio(z_mean), rel=1e-4)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("deterministic_steps", -1, "deterministic_steps"),
        ("latent_free_nats", -0.1, "latent_free_nats"),
        ("posterior_lr_multiplier", 0.0, "posterior_lr_multiplier"),
        ("decoder_token_dropout", 1.0, "decoder_token_dropout"),
    ],
)
def test_invalid_latent_options_raise(tmp_path, field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CMIMTrainingArguments(output_dir=str(tmp_path), report_to="none", **{field: value})


# --- aggregate posterior -------------------------------------------------------------------------


def test_fit_and_sample_gaussian_recover_mean_and_covariance() -> None:
    generator = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.3, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    codes = torch.randn(50000, 3, generator=generator, dtype=torch.float64) @ mixing.T + 2.0
    mean, covariance = fit_gaussian(codes.reshape(50000, 1, 3))
    assert torch.allclose(mean, torch.full((3,), 2.0, dtype=torch.float64), atol=0.02)
    assert torch.allclose(covariance, mixing @ mixing.T, atol=0.02)
    factor = gaussian_sampling_factor(covariance)  # singular (a dead dimension): jitter, no failure
    draws = sample_gaussian(mean, factor, 50000, torch.Generator().manual_seed(1), scale=0.5)
    assert draws.shape == (50000, 3) and draws.dtype == torch.float32
    assert torch.allclose(draws.double().mean(0), mean, atol=0.02)
    assert torch.allclose(torch.cov(draws.double().T), 0.25 * covariance, atol=0.02)


def test_aggregate_posterior_round_trip_and_prior_sampling(tmp_path, tokenizer) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(num_latents=2, latent_size=4)).eval()
    prior = fit_aggregate_posterior(model, tokenizer, SMILES, source="conftest")
    codes = encode_smiles(model, tokenizer, SMILES).reshape(len(SMILES), -1).double()
    assert prior.molecules == len(SMILES) and prior.mean.shape == (8,)
    assert torch.allclose(prior.mean, codes.mean(0)) and torch.allclose(prior.covariance, torch.cov(codes.T))

    assert AggregatePosterior.load(tmp_path) is None
    path = prior.save(tmp_path)
    assert path.name == AGGREGATE_POSTERIOR_FILE and not list(tmp_path.glob("*.partial"))
    loaded = AggregatePosterior.load(tmp_path)
    assert torch.equal(loaded.mean, prior.mean) and torch.equal(loaded.covariance, prior.covariance)
    assert (loaded.molecules, loaded.source) == (len(SMILES), "conftest")

    sampled = sample_prior(model, tokenizer, 4, seed=3, prior=loaded, max_new_tokens=4)
    expected = loaded.sample(4, (2, 4), torch.Generator().manual_seed(3))
    assert torch.equal(sampled.latents, expected)
    standard = sample_prior(model, tokenizer, 4, seed=3, max_new_tokens=4)
    assert torch.equal(standard.latents, torch.randn(4, 2, 4, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="dimensions"):
        sample_prior(CMIMForConditionalGeneration(tiny_config()), tokenizer, 2, prior=loaded)
    (tmp_path / AGGREGATE_POSTERIOR_FILE).write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="corrupt"):
        AggregatePosterior.load(tmp_path)


def test_evaluation_reads_every_molecule_when_training_drops_the_last_batch(tmp_path, tokenizer) -> None:
    whole = make_trainer(tmp_path / "a", tokenizer, per_device_eval_batch_size=64).evaluate()
    dropping = make_trainer(
        tmp_path / "b", tokenizer, per_device_eval_batch_size=64, dataloader_drop_last=True
    ).evaluate()  # 7 held-out molecules, fewer than one batch: nothing may be dropped
    assert dropping["eval_token_accuracy"] == pytest.approx(whole["eval_token_accuracy"])
    assert dropping["eval_active_units"] == whole["eval_active_units"]
