"""Rotary positions (issue 12, item 6): the RoPE maths, and a rotary cMIM model that keeps every
contract of the learned-position one (padding and batch invariance, cached decoding, save/load)."""

from __future__ import annotations

import pytest
import torch
from helpers import SMILES, tiny_config

from cmim_hf import CMIMForConditionalGeneration
from cmim_hf.models.cmim.modeling_cmim import apply_rotary, rotary_cos_sin


def test_rotary_scores_depend_only_on_relative_position() -> None:
    generator = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 1, 1, 1, 8, generator=generator)
    cos, sin = rotary_cos_sin(torch.arange(40), 8, 10000.0, torch.float64)

    def score(m: int, n: int) -> float:
        q = apply_rotary(query.double(), cos[m], sin[m])
        k = apply_rotary(key.double(), cos[n], sin[n])
        return float((q * k).sum())

    assert score(3, 1) == pytest.approx(score(30, 28), abs=1e-6)  # angles in float32
    assert score(7, 7) == pytest.approx(float((query.double() * key.double()).sum()), abs=1e-6)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    rotated = apply_rotary(query.double(), cos[5], sin[5])
    assert torch.linalg.norm(rotated) == pytest.approx(torch.linalg.norm(query.double()).item())  # a rotation


@pytest.fixture
def rotary_model() -> CMIMForConditionalGeneration:
    torch.manual_seed(0)
    return CMIMForConditionalGeneration(tiny_config(position_embedding_type="rotary")).eval()


def test_rotary_model_has_no_position_parameters(rotary_model) -> None:
    names = [name for name, _ in rotary_model.named_parameters()]
    assert not any("embed_positions" in name for name in names)
    learned = CMIMForConditionalGeneration(tiny_config())
    assert learned.num_parameters() - rotary_model.num_parameters() == 2 * 128 * 32
    with pytest.raises(ValueError, match="even head size"):
        tiny_config(position_embedding_type="rotary", hidden_size=36, num_attention_heads=4)


def test_rotary_outputs_do_not_depend_on_padding_or_batch(rotary_model, tokenizer) -> None:
    alone = tokenizer(["CCO"], return_tensors="pt")
    batched = tokenizer([SMILES[2], "CCO", SMILES[6]], padding=True, return_tensors="pt")
    with torch.no_grad():
        single, many = rotary_model(**alone), rotary_model(**batched)
    n = single.logits.shape[1]
    assert torch.allclose(single.z_mean[0], many.z_mean[1], atol=1e-5)
    assert torch.allclose(single.logits[0], many.logits[1, :n], atol=1e-5)


def test_rotary_cached_decoding_and_save_load(rotary_model, tokenizer, tmp_path) -> None:
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    kwargs = dict(max_new_tokens=12, do_sample=False)
    cached = rotary_model.generate(**batch, use_cache=True, **kwargs)
    assert torch.equal(cached, rotary_model.generate(**batch, use_cache=False, **kwargs))
    rotary_model.save_pretrained(tmp_path)
    loaded = CMIMForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.position_embedding_type == "rotary"
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, rotary_model(**batch).logits)


def test_rotary_gradients_reach_every_parameter(rotary_model, tokenizer) -> None:
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    rotary_model.train()(**batch, return_loss=True).loss.backward()
    for name, parameter in rotary_model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
