"""Tests of CMIMConfig and the cMIM encoder-decoder (tiny models built from configs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from clean_python import run_without_cmim_hf
from helpers import SMILES, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

from cmim_hf import (
    CMIMConfig,
    CMIMEncoderOutput,
    CMIMForConditionalGeneration,
    CMIMModel,
    prepare_decoder_inputs,
)

ESOL = (
    Path(__file__).resolve().parents[1] / "cmim_hf" / "package_data" / "moleculenet" / "delaney-processed.csv"
)


def esol_smiles(n: int) -> list[str]:
    with open(ESOL, newline="") as handle:
        return [row["smiles"].strip() for _, row in zip(range(n), csv.DictReader(handle))]


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hidden_size", 30, "divisible by num_attention_heads"),
        ("num_latents", 0, "num_latents must be a positive integer"),
        ("posterior", "gaussian", "posterior must be one of"),
        ("dropout", 1.5, r"dropout must be in \[0, 1\)"),
        ("logvar_min", 1.0, "logvar_min must be negative"),
        ("activation_function", "tanh", "activation_function must be one of"),
        ("pad_token_id", 10_000, "pad_token_id must be a token id"),
    ],
)
def test_invalid_config_values_raise(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def test_config_generic_names_and_latent_default() -> None:
    config = CMIMConfig(hidden_size=64, encoder_layers=3, decoder_layers=2, num_attention_heads=8)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 8)
    assert config.d_model == 64
    assert config.latent_size == 64
    assert CMIMConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


# --- shapes and outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("num_latents", [1, 4])
def test_output_shapes(tokenizer, num_latents: int) -> None:
    config = tiny_config(num_latents=num_latents, latent_size=16)
    model = CMIMForConditionalGeneration(config).eval()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    batch_size, length = batch["input_ids"].shape
    out = model(**batch, return_loss=True, output_hidden_states=True)

    assert out.logits.shape == (batch_size, length - 1, config.vocab_size)
    for code in (out.z, out.z_mean, out.z_logvar):
        assert code.shape == (batch_size, num_latents, 16)
    assert torch.equal(out.z, out.z_mean)  # eval: z = mu
    assert out.encoder_last_hidden_state.shape == (batch_size, length, 32)
    assert len(out.encoder_hidden_states) == config.encoder_layers + 1
    assert len(out.decoder_hidden_states) == config.decoder_layers + 1
    assert all(h.shape == (batch_size, length - 1, 32) for h in out.decoder_hidden_states)
    assert torch.equal(out.decoder_attention_mask, batch["attention_mask"][:, 1:])
    assert out.loss.ndim == 0 and out.loss.item() > 0

    base = CMIMModel(config).eval()
    base.load_state_dict(model.model.state_dict())
    base_out = base(**batch)
    assert torch.allclose(base_out.last_hidden_state, out.decoder_hidden_states[-1], atol=1e-6)


def test_prepare_decoder_inputs_layout() -> None:
    input_ids = torch.tensor([[1, 7, 8, 9, 2], [1, 7, 2, 0, 0]])
    mask = (input_ids != 0).long()
    decoder_input_ids, decoder_mask, labels = prepare_decoder_inputs(
        input_ids, mask, bos_token_id=1, pad_token_id=0
    )
    assert decoder_input_ids.tolist() == [[1, 7, 8, 9], [1, 7, 2, 0]]
    assert decoder_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert labels.tolist() == [[7, 8, 9, 2], [7, 2, -100, -100]]
    with pytest.raises(ValueError, match="right-padded"):
        prepare_decoder_inputs(input_ids.flip(1), mask.flip(1), bos_token_id=1, pad_token_id=0)


def test_loss_is_per_sequence_mean_of_token_cross_entropy(tiny_model, tokenizer) -> None:
    batch = tokenizer(SMILES[:3], padding=True, return_tensors="pt")
    out = tiny_model(**batch, return_loss=True)
    _, _, labels = prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)
    per_sequence = []
    for logits_row, labels_row in zip(out.logits, labels):
        keep = labels_row != -100
        log_probs = torch.log_softmax(logits_row[keep].double(), dim=-1)
        per_sequence.append(-log_probs[torch.arange(int(keep.sum())), labels_row[keep]].mean())
    assert torch.allclose(out.loss.double(), torch.stack(per_sequence).mean(), atol=1e-5)


def test_training_mode_samples_z_and_respects_logvar_floor(tokenizer) -> None:
    model = CMIMForConditionalGeneration(tiny_config(logvar_min=-2.0)).train()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    out = model(**batch)
    assert not torch.equal(out.z, out.z_mean)
    assert out.z_logvar.min().item() >= -2.0


def test_sampled_posterior_draws_one_logvar_per_molecule(tokenizer) -> None:
    model = CMIMForConditionalGeneration(tiny_config(posterior="sampled", num_latents=2)).train()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    logvar = model(**batch).z_logvar
    assert logvar.min() >= -6.0 and logvar.max() <= 0.0
    assert torch.equal(logvar, logvar[:, :1, :1].expand_as(logvar))  # constant within a molecule
    assert logvar[:, 0, 0].unique().numel() == len(SMILES)
    model.eval()
    assert torch.equal(model(**batch).z_logvar, torch.full_like(logvar, -6.0))


# --- batch / padding invariance ------------------------------------------------------------------


def test_outputs_do_not_depend_on_padding_or_batch(tiny_model, tokenizer) -> None:
    molecule = "CCO"
    alone = tokenizer([molecule], return_tensors="pt")
    batched = tokenizer([SMILES[2], molecule, SMILES[6]], padding=True, return_tensors="pt")
    assert batched["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        single = tiny_model(**alone, output_hidden_states=True)
        many = tiny_model(**batched, output_hidden_states=True)
    n = single.logits.shape[1]
    assert torch.allclose(single.z_mean[0], many.z_mean[1], atol=1e-5)
    assert torch.allclose(single.logits[0], many.logits[1, :n], atol=1e-5)
    for h_single, h_many in zip(single.decoder_hidden_states, many.decoder_hidden_states):
        assert torch.allclose(h_single[0], h_many[1, :n], atol=1e-5)
    assert torch.allclose(
        single.encoder_last_hidden_state[0], many.encoder_last_hidden_state[1, : n + 1], atol=1e-5
    )


def test_eager_and_sdpa_agree(tokenizer) -> None:
    torch.manual_seed(0)
    sdpa = CMIMForConditionalGeneration(tiny_config()).eval()
    eager = CMIMForConditionalGeneration(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(sdpa(**batch).logits, eager(**batch).logits, atol=1e-5)


def test_attention_weights_have_the_documented_shapes(tokenizer) -> None:
    """output_attentions (eager): encoder (B, h, T, T), decoder self (B, h, S, S), cross (B, h, S, K);
    each row a distribution, and the decoder's causal (nothing above the diagonal)."""
    model = CMIMForConditionalGeneration(tiny_config(num_latents=3, attn_implementation="eager")).eval()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    (b, t), s, heads = batch["input_ids"].shape, out.logits.shape[1], 4
    assert [a.shape for a in out.encoder_attentions] == [(b, heads, t, t)] * 2
    assert [a.shape for a in out.decoder_attentions] == [(b, heads, s, s)] * 2
    assert [a.shape for a in out.cross_attentions] == [(b, heads, s, 3)] * 2
    for weights in (*out.encoder_attentions, *out.decoder_attentions, *out.cross_attentions):
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5)
    assert out.decoder_attentions[0].triu(diagonal=1).abs().max() == 0
    assert model(**batch).encoder_attentions is None


def test_tuple_outputs_inputs_embeds_and_the_old_cache_name(tiny_model, tokenizer) -> None:
    """return_dict=False gives the output's fields as a tuple; inputs_embeds and
    decoder_inputs_embeds give what the ids give; past_key_values= is cache= with a warning."""
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    decoder_input_ids, _, _ = prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)
    with torch.no_grad():
        as_dict = tiny_model(**batch)
        as_tuple = tiny_model(**batch, return_dict=False)
        embed = tiny_model.get_input_embeddings()
        from_embeds = tiny_model(
            inputs_embeds=embed(batch["input_ids"]),
            attention_mask=batch["attention_mask"],
            decoder_inputs_embeds=embed(decoder_input_ids),
        )
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], as_dict.logits)
    assert torch.allclose(from_embeds.logits, as_dict.logits, atol=1e-6)
    with pytest.warns(FutureWarning, match="past_key_values"):
        tiny_model(**batch, past_key_values=None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_an_argument'"):
        tiny_model(**batch, not_an_argument=1)


# --- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("posterior", ["learned", "sampled"])
def test_gradients_reach_every_parameter(tokenizer, posterior: str) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(posterior=posterior, num_latents=2)).train()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    out = model(**batch, return_loss=True)
    (out.loss + out.z_mean.square().mean() + out.z_logvar.mean()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_gradient_checkpointing_gives_same_gradients(tokenizer) -> None:
    torch.manual_seed(0)
    plain = CMIMForConditionalGeneration(tiny_config()).train()
    checkpointed = CMIMForConditionalGeneration(tiny_config()).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    for model in (plain, checkpointed):
        torch.manual_seed(1)  # same posterior noise
        model(**batch, return_loss=True).loss.backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


# --- generation ---------------------------------------------------------------------------------


def test_generate_returns_valid_ids_and_stops_at_eos(tiny_model, tokenizer) -> None:
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    # Make <eos> the likeliest token after three generated tokens, so stopping is exercised.
    with torch.no_grad():
        tiny_model.lm_head.weight.mul_(0.0)
    generated = tiny_model.generate(**batch, max_new_tokens=20, do_sample=False)
    assert generated.shape[0] == len(SMILES)
    assert generated.min() >= 0 and generated.max() < tiny_model.config.vocab_size
    assert (generated[:, 0] == tokenizer.bos_token_id).all()

    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] += (
            10.0 * model.lm_head.weight[tokenizer.eos_token_id].sign()
        )
    generated = model.generate(**batch, max_new_tokens=20, do_sample=False)
    for row in generated.tolist():
        assert tokenizer.eos_token_id in row
        after_eos = row[row.index(tokenizer.eos_token_id) + 1 :]
        assert all(token == tokenizer.pad_token_id for token in after_eos)


def test_cached_and_uncached_greedy_and_beam_agree(tiny_model, tokenizer) -> None:
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    for num_beams in (1, 3):
        kwargs = dict(max_new_tokens=12, do_sample=False, num_beams=num_beams)
        cached = tiny_model.generate(**batch, use_cache=True, **kwargs)
        uncached = tiny_model.generate(**batch, use_cache=False, **kwargs)
        assert torch.equal(cached, uncached)


def test_decode_latents_matches_generate_from_inputs(tiny_model, tokenizer) -> None:
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    z_mean = tiny_model.encode(**batch).z_mean
    from_latents = tiny_model.decode_latents(z_mean, max_new_tokens=12, do_sample=False)
    from_inputs = tiny_model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert torch.equal(from_latents, from_inputs)
    explicit = tiny_model.generate(
        encoder_outputs=CMIMEncoderOutput(last_hidden_state=z_mean), max_new_tokens=12, do_sample=False
    )
    assert torch.equal(explicit, from_inputs)
    with pytest.raises(ValueError, match="z must have shape"):
        tiny_model.decode_latents(torch.zeros(2, 32))


def test_overlong_input_raises(tiny_model) -> None:
    too_long = torch.ones(1, tiny_model.config.max_position_embeddings + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        tiny_model(input_ids=too_long)


def test_tiny_model_overfits_32_molecules_to_exact_greedy_reconstruction(tokenizer) -> None:
    """Proves the encoder -> latent -> decoder path carries each molecule's information."""
    smiles = esol_smiles(32)
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(hidden_size=64, ffn_dim=128, num_latents=4))
    batch = tokenizer(smiles, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    exact = 0.0
    for step in range(1, 801):
        model.train()
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25:
            continue
        model.eval()
        with torch.no_grad():  # cheap check first: every token right under teacher forcing
            out = model(**batch)
        _, _, labels = prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)
        if not ((out.logits.argmax(-1) == labels) | (labels == -100)).all():
            continue
        generated = model.generate(**batch, max_new_tokens=batch["input_ids"].shape[1], do_sample=False)
        decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
        exact = sum(d == s for d, s in zip(decoded, smiles)) / len(smiles)
        if exact == 1.0:
            break
    assert exact == 1.0, f"greedy exact match {exact:.2f} after {step} steps"


# --- save / load / Auto classes / remote code -----------------------------------------------------


def test_save_load_round_trip_gives_identical_outputs(tiny_model, tokenizer, tmp_path: Path) -> None:
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = CMIMForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = tiny_model(**batch), loaded(**batch)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.z_mean, b.z_mean)
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()


def test_auto_classes_round_trip(tiny_model, tokenizer, tmp_path: Path) -> None:
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), CMIMConfig)
    seq2seq = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    base = AutoModel.from_pretrained(tmp_path).eval()
    auto_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(seq2seq, CMIMForConditionalGeneration) and isinstance(base, CMIMModel)
    batch = auto_tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = tiny_model(**batch, output_hidden_states=True)
        assert torch.equal(seq2seq(**batch).logits, expected.logits)
        assert torch.equal(base(**batch).last_hidden_state, expected.decoder_hidden_states[-1])


REMOTE_MODEL_CHECK = """
import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer
path = sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(path, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
batch = tokenizer(json.loads(sys.argv[3]), padding=True, return_tensors="pt")
with torch.no_grad():
    out = model(**batch)
generated = model.generate(**batch, max_new_tokens=8, do_sample=False)
print(json.dumps({"z_mean": out.z_mean.tolist(), "generated": generated.tolist(), "base": type(base).__name__}))
"""


def test_trust_remote_code_load_without_cmim_hf(tiny_model, tokenizer, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    tiny_model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    for name in ("configuration_cmim.py", "modeling_cmim.py", "tokenization_cmim.py"):
        assert (checkpoint / name).is_file(), name
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert set(auto_map) >= {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}

    stdout = run_without_cmim_hf(REMOTE_MODEL_CHECK, [str(checkpoint), json.dumps(SMILES)], tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected_z = tiny_model(**batch).z_mean
    expected_ids = tiny_model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert torch.allclose(torch.tensor(result["z_mean"]), expected_z, atol=1e-6)
    assert result["generated"] == expected_ids.tolist()
    assert result["base"] == "CMIMModel"


def test_model_loss_agrees_with_losses_module(tiny_model, tokenizer) -> None:
    """modeling_cmim keeps its own copy of the per-sequence CE (remote code must be self-contained)."""
    from cmim_hf.models.cmim.modeling_cmim import reconstruction_cross_entropy
    from cmim_hf.training.losses import sequence_cross_entropy

    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    logits = tiny_model(**batch).logits
    _, _, labels = prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)
    assert torch.allclose(
        reconstruction_cross_entropy(logits, labels), sequence_cross_entropy(logits, labels)
    )
