"""CMIMForSequenceClassification: losses against hand computations, gradients, features, loading
from pre-trained checkpoints, Auto classes, trust_remote_code and peft LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clean_python import run_without_cmim_hf
from helpers import SMILES, tiny_config
from transformers import AutoModelForSequenceClassification

from cmim_hf import CMIMForConditionalGeneration, CMIMModel, compute_embeddings
from cmim_hf.models.cmim.modeling_cmim import CMIMForSequenceClassification, sequence_classification_loss

NAN = float("nan")


def classifier(**overrides) -> CMIMForSequenceClassification:
    torch.manual_seed(0)
    return CMIMForSequenceClassification(tiny_config(**overrides)).eval()


@pytest.fixture
def batch(tokenizer) -> dict[str, torch.Tensor]:
    return dict(tokenizer(SMILES[:4], padding=True, return_tensors="pt"))


def test_regression_loss_masks_missing_targets(batch) -> None:
    model = classifier(num_labels=2, problem_type="regression")
    labels = torch.tensor([[1.0, NAN], [0.5, -2.0], [NAN, NAN], [3.0, 0.0]])
    out = model(**batch, labels=labels)
    logits = out.logits.detach()
    present = ~torch.isnan(labels)
    expected = ((logits[present] - labels[present]) ** 2).sum() / present.sum()
    assert out.logits.shape == (4, 2)
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_single_label_loss_ignores_missing_classes(batch) -> None:
    model = classifier(num_labels=3, problem_type="single_label_classification")
    class_ids = torch.tensor([2, -100, 0, 1])
    out = model(**batch, labels=class_ids)
    log_probs = torch.log_softmax(out.logits.detach(), dim=-1)
    expected = -(log_probs[0, 2] + log_probs[2, 0] + log_probs[3, 1]) / 3
    assert torch.allclose(out.loss, expected, atol=1e-6)
    as_floats = model(**batch, labels=torch.tensor([2.0, NAN, 0.0, 1.0]))  # NaN = missing
    assert torch.allclose(as_floats.loss, expected, atol=1e-6)


def test_multi_label_loss_masks_nan_labels(batch) -> None:
    model = classifier(num_labels=3, problem_type="multi_label_classification")
    labels = torch.tensor([[1.0, NAN, 0.0], [NAN, NAN, 1.0], [0.0, 1.0, NAN], [1.0, 1.0, 1.0]])
    out = model(**batch, labels=labels)
    p = torch.sigmoid(out.logits.detach())
    present = ~torch.isnan(labels)
    y = labels.nan_to_num(0.0)
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    expected = bce[present].sum() / present.sum()
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_all_labels_missing_gives_zero_loss_with_graph(batch) -> None:
    model = classifier(num_labels=2, problem_type="multi_label_classification")
    out = model(**batch, labels=torch.full((4, 2), NAN))
    assert out.loss.item() == 0.0 and out.loss.requires_grad


@pytest.mark.parametrize(
    ("num_labels", "labels", "expected"),
    [
        (1, torch.tensor([0.5, 1.0, 2.0, NAN]), "regression"),
        (3, torch.tensor([0, 2, 1, 1]), "single_label_classification"),
        (3, torch.ones(4, 3), "multi_label_classification"),
    ],
)
def test_problem_type_inferred_from_labels(
    batch, num_labels: int, labels: torch.Tensor, expected: str
) -> None:
    model = classifier(num_labels=num_labels)
    assert torch.isfinite(model(**batch, labels=labels).loss)
    assert model.config.problem_type == expected


def test_unknown_problem_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="problem_type"):
        sequence_classification_loss(torch.zeros(2, 1), torch.zeros(2, 1), "ranking")


@pytest.mark.parametrize("features", ["informative", "latent"])
def test_gradients_reach_the_encoder(batch, features: str) -> None:
    model = classifier(num_labels=2, problem_type="regression", classifier_features=features).train()
    model(**batch, labels=torch.randn(4, 2)).loss.backward()
    encoder = model.model.encoder
    for param in (
        encoder.embed_tokens.weight,
        encoder.layers[0].self_attn.q_proj.weight,
        encoder.bottleneck.queries,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0
    decoder_grad = model.model.decoder.layers[0].ffn.fc1.weight.grad
    if features == "informative":
        assert decoder_grad is not None and decoder_grad.abs().sum() > 0
    else:
        assert decoder_grad is None


def test_features_are_the_frozen_embeddings(tiny_model, batch) -> None:
    """A classifier built from a cMIM reads exactly the embeddings the harness probes."""
    informative = CMIMForSequenceClassification(tiny_model.config)
    informative.model.load_state_dict(tiny_model.model.state_dict())
    latent = CMIMForSequenceClassification(tiny_config(classifier_features="latent"))
    latent.model.load_state_dict(tiny_model.model.state_dict())
    with torch.no_grad():
        got = informative.eval()(**batch).features
        mu = latent.eval()(**batch).features
        expected = compute_embeddings(tiny_model, batch["input_ids"], batch["attention_mask"])
        expected_mu = compute_embeddings(
            tiny_model, batch["input_ids"], batch["attention_mask"], source="latent"
        )
    assert got.shape == (4, tiny_model.config.latent_size + tiny_model.config.hidden_size)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(mu, expected_mu, atol=1e-6)


def test_left_padding_gives_the_same_logits(tokenizer, batch) -> None:
    model = classifier(num_labels=2)
    left = tokenizer.pad({"input_ids": [ids[m.bool()].tolist() for ids, m in zip(batch["input_ids"], batch["attention_mask"])]},
                         padding_side="left", return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        assert torch.allclose(model(**left).logits, model(**batch).logits, atol=1e-5)


def test_default_head_options_and_bad_features() -> None:
    assert CMIMForSequenceClassification(tiny_config()).classifier_features == "informative"
    with pytest.raises(ValueError, match="classifier_features"):
        tiny_config(classifier_features="encoder")


def test_save_load_round_trip_and_auto_class(tokenizer, batch, tmp_path: Path) -> None:
    model = classifier(num_labels=3, problem_type="multi_label_classification", classifier_features="latent")
    model.save_pretrained(tmp_path)
    reloaded = CMIMForSequenceClassification.from_pretrained(tmp_path).eval()
    auto = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(auto, CMIMForSequenceClassification)
    assert auto.config.problem_type == "multi_label_classification" and auto.classifier_features == "latent"
    with torch.no_grad():
        expected = model(**batch).logits
        assert torch.equal(reloaded(**batch).logits, expected)
        assert torch.equal(auto(**batch).logits, expected)


@pytest.mark.parametrize("source", [CMIMForConditionalGeneration, CMIMModel])
def test_fresh_head_on_a_pretrained_checkpoint(source, tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = source(tiny_config())
    pretrained.save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=12, problem_type="multi_label_classification"
    )
    assert isinstance(model, CMIMForSequenceClassification) and model.num_labels == 12
    backbone = pretrained.model if source is CMIMForConditionalGeneration else pretrained
    for name, value in backbone.state_dict().items():
        assert torch.equal(model.model.state_dict()[name], value), name
    assert model.classifier.out_proj.weight.shape == (12, model.config.hidden_size)
    assert model.classifier.out_proj.weight.std() > 0  # initialised, not left empty


REMOTE_CLASSIFIER_CHECK = """
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
finetuned, pretrained = sys.argv[2], sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(finetuned, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(finetuned, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
fresh = AutoModelForSequenceClassification.from_pretrained(pretrained, trust_remote_code=True, num_labels=5)
batch = tokenizer(json.loads(sys.argv[4]), padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
print(json.dumps({"logits": logits.tolist(), "fresh": [type(fresh).__name__, fresh.num_labels]}))
"""


def test_trust_remote_code_without_cmim_hf(tiny_model, tokenizer, tmp_path: Path) -> None:
    finetuned, pretrained = tmp_path / "finetuned", tmp_path / "pretrained"
    model = classifier(num_labels=2, problem_type="regression")
    model.save_pretrained(finetuned)
    tokenizer.save_pretrained(finetuned)
    tiny_model.save_pretrained(pretrained)
    for folder in (finetuned, pretrained):
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert auto_map["AutoModelForSequenceClassification"] == "modeling_cmim.CMIMForSequenceClassification"
    assert (finetuned / "pooling.py").is_file()

    stdout = run_without_cmim_hf(
        REMOTE_CLASSIFIER_CHECK, [str(finetuned), str(pretrained), json.dumps(SMILES)], tmp_path
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = model(**tokenizer(SMILES, padding=True, return_tensors="pt")).logits
    assert torch.allclose(torch.tensor(result["logits"]), expected, atol=1e-6)
    assert result["fresh"] == ["CMIMForSequenceClassification", 5]


# PEFT itself reads the deprecated `is_gradient_checkpointing` (peft/peft_model.py), not our code
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_peft_lora_adapters(batch, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    model = classifier(num_labels=2, problem_type="regression")
    lora = peft.get_peft_model(
        model, peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    assert any("lora_A" in name for name in trainable) and any("classifier" in name for name in trainable)
    assert not any("embed_tokens" in name or "fc1" in name for name in trainable)

    lora.train()
    lora(**batch, labels=torch.randn(4, 2)).loss.backward()
    lora_grads = [p.grad for name, p in lora.named_parameters() if "lora_B" in name]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.add_(0.1)  # B starts at zero: make the adapter change the outputs
    lora.eval()
    with torch.no_grad():
        expected = lora(**batch).logits
    lora.save_pretrained(tmp_path)
    reloaded = peft.PeftModel.from_pretrained(
        classifier(num_labels=2, problem_type="regression"), tmp_path
    ).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, expected, atol=1e-6)
        assert not torch.allclose(
            classifier(num_labels=2, problem_type="regression")(**batch).logits, expected
        )
