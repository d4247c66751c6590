"""BART's ``labels`` contract: the decoder reads ``shift_tokens_right(labels)``, of any length."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from rdkit import Chem

from cmim_hf import CMIMForConditionalGeneration
from cmim_hf.models.cmim.modeling_cmim import prepare_decoder_inputs, shift_tokens_right

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "cmim_hf" / "pretrained"


def test_text_target_gives_labels_without_bos(tokenizer) -> None:
    encoded = tokenizer(["CCO"], text_target=["c1ccccc1"])
    assert encoded["input_ids"][0] == tokenizer("CCO")["input_ids"]
    target = tokenizer("c1ccccc1")["input_ids"]
    assert encoded["labels"][0] == target[1:]  # x + [<eos>]
    assert tokenizer("CCO")["input_ids"][0] == tokenizer.bos_token_id  # input mode restored


def test_labels_of_another_length_drive_the_decoder(tiny_model, tokenizer) -> None:
    batch = tokenizer(["CCO", "c1ccccc1"], padding=True, return_tensors="pt")  # T = 8
    labels = tokenizer(text_target=["CC(=O)Oc1ccccc1C(=O)O", "N"], padding=True, return_tensors="pt")[
        "input_ids"
    ]
    labels = labels.masked_fill(labels == tokenizer.pad_token_id, -100)  # S = 22
    out = tiny_model(**batch, labels=labels)
    assert out.logits.shape == (2, labels.shape[1], tiny_model.config.vocab_size)

    decoder_input_ids = shift_tokens_right(
        labels, tokenizer.pad_token_id, tiny_model.config.decoder_start_token_id
    )
    explicit = tiny_model(**batch, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(out.logits, explicit.logits)
    keep = labels != -100
    by_hand = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep], reduction="none")
    per_sequence = torch.stack([by_hand[: keep[0].sum()].mean(), by_hand[keep[0].sum() :].mean()])
    torch.testing.assert_close(out.loss, per_sequence.mean())
    assert out.decoder_attention_mask.tolist() == keep.long().tolist()


def test_autoencoding_labels_match_teacher_forcing(tiny_model, tokenizer) -> None:
    """A pre-training batch (labels = x + [<eos>]) gives the same result both ways."""
    batch = tokenizer(["CCO", "CC(=O)Oc1ccccc1C(=O)O"], padding=True, return_tensors="pt")
    _, _, labels = prepare_decoder_inputs(batch["input_ids"], batch["attention_mask"], 1, 0)
    with_labels = tiny_model(**batch, labels=labels)
    teacher_forced = tiny_model(**batch, return_loss=True)
    torch.testing.assert_close(with_labels.logits, teacher_forced.logits)
    torch.testing.assert_close(with_labels.loss, teacher_forced.loss)


def _kekule_to_canonical_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` (Kekulé SMILES, canonical aromatic SMILES) pairs from the shipped MOSES sample, with
    source and target of different token lengths."""
    import pandas as pd

    pairs = []
    for smiles in pd.read_csv(REPO / "cmim_hf" / "package_data" / "moses" / "moses_test_first5000.csv")[
        "SMILES"
    ]:
        mol = Chem.MolFromSmiles(smiles)
        Chem.Kekulize(mol, clearAromaticFlags=True)
        source = Chem.MolToSmiles(mol, kekuleSmiles=True)
        if 8 < len(smiles) < 25 and len(source) != len(smiles) + 1:
            pairs.append((source, smiles))
        if len(pairs) == n:
            return pairs
    raise AssertionError("not enough pairs")


def test_finetuning_overfits_16_pairs_to_exact_output(tokenizer) -> None:
    """Kekulé -> canonical SMILES, 16 pairs of different lengths, fine-tuned from the shipped
    checkpoint through the labels contract (z = mu, as in a deterministic phase), then generated
    greedily from the inputs."""
    torch.manual_seed(0)
    pairs = _kekule_to_canonical_pairs(16)
    model = CMIMForConditionalGeneration.from_pretrained(SHIPPED)
    batch = tokenizer(
        [s for s, _ in pairs], text_target=[t for _, t in pairs], padding=True, return_tensors="pt"
    )
    labels = batch.pop("labels")
    labels = labels.masked_fill(labels == tokenizer.pad_token_id, -100)
    assert labels.shape[1] != batch["input_ids"].shape[1] - 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(100):
        loss = model(**batch, labels=labels, sample_latent=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    generated = model.generate(**batch, max_new_tokens=40, num_beams=1, do_sample=False)
    assert tokenizer.batch_decode(generated, skip_special_tokens=True) == [t for _, t in pairs]


def _load_example():
    spec = importlib.util.spec_from_file_location(
        "finetune_seq2seq", REPO / "examples" / "finetune_seq2seq.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seq2seq_trainer_example_runs_and_keeps_existing_output(tmp_path: Path) -> None:
    example = _load_example()
    out = tmp_path / "run"
    argv = ["--out", str(out), "--train-molecules", "32", "--eval-molecules", "8", "--max-steps", "2",
            "--batch-size", "8"]  # fmt: skip
    assert example.main(argv) == 0
    results = json.loads((out / "seq2seq_results.json").read_text())
    assert results["steps"] == 2 and results["eval_molecules"] == 8
    assert 0.0 <= results["exact_match_after"] <= 1.0
    assert (out / "final" / "model.safetensors").is_file()
    assert example.main(argv) == 2  # an existing run folder is kept without --overwrite
    assert (out / "seq2seq_results.json").is_file()


def test_randomized_pairs_name_the_bad_row() -> None:
    example = _load_example()
    pairs = example.randomized_pairs(["CCO", "c1ccccc1O"], seed=0)
    assert [Chem.CanonSmiles(p["source"]) for p in pairs] == [p["target"] for p in pairs]
    with pytest.raises(ValueError, match="row 1"):
        example.randomized_pairs(["CCO", "C1CC"], seed=0)
