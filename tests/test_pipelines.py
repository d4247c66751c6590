"""The informative feature-extraction pipeline on tiny cMIM, T5 and BART models (no download)."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import moses_smiles, tiny_config
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BartModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    T5Model,
    pipeline,
)
from transformers.pipelines import PIPELINE_REGISTRY, FeatureExtractionPipeline

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.models.cmim.pipelines import (
    INFORMATIVE_TASK,
    CMIMGenerationPipeline,
    InformativeFeatureExtractionPipeline,
    add_pipeline_to_checkpoint,
    compute_embeddings,
    register_pipelines,
    teacher_forcing_inputs,
)

SMILES_64 = moses_smiles(64)
CHARS = list("CNOSPFIBrlcnosp()[]=#+-0123456789@H/\\%.")
KINDS = ["cmim", "t5", "t5-lm", "bart", "bart-lm"]
pytestmark = pytest.mark.usefixtures("one_thread")


def char_tokenizer(specials: list[str], template: str, **special_tokens: str) -> PreTrainedTokenizerFast:
    """A one-character-per-token tokenizer whose post-processor applies `template`."""
    vocab = {token: i for i, token in enumerate(specials + CHARS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    used = [(token, vocab[token]) for token in specials if token in template]
    backend.post_processor = processors.TemplateProcessing(single=template, special_tokens=used)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **special_tokens)


def build(kind: str) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A tiny randomly initialised model of `kind` and its tokenizer, in eval mode."""
    torch.manual_seed(0)
    if kind == "cmim":
        return CMIMForConditionalGeneration(tiny_config()).eval(), CMIMTokenizer()
    if kind.startswith("t5"):
        tokenizer = char_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>", pad_token="<pad>", eos_token="</s>")
        config = T5Config(
            vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, dropout_rate=0.0
        )
        model_class = T5ForConditionalGeneration if kind == "t5-lm" else T5Model
        return model_class(config).eval(), tokenizer
    tokenizer = char_tokenizer(
        ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>", bos_token="<s>", pad_token="<pad>", eos_token="</s>"
    )
    config = BartConfig(
        vocab_size=64,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=128,
        dropout=0.0,
    )
    model_class = BartForConditionalGeneration if kind == "bart-lm" else BartModel
    return model_class(config).eval(), tokenizer


def extractor(kind: str, **options) -> InformativeFeatureExtractionPipeline:
    model, tokenizer = build(kind)
    return InformativeFeatureExtractionPipeline(model=model, tokenizer=tokenizer, device=-1, **options)


@pytest.mark.parametrize("kind", KINDS)
def test_embeddings_do_not_depend_on_the_batch(kind: str) -> None:
    pipe = extractor(kind)
    alone = np.array([pipe(smiles, return_tensors="np") for smiles in SMILES_64])  # (64, D)
    assert alone.dtype == np.float32 and np.isfinite(alone).all()
    for batch_size in (7, 64):
        batched = np.array(pipe(SMILES_64, batch_size=batch_size))
        np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)
    order = list(range(64))
    random.Random(0).shuffle(order)
    shuffled = np.array(pipe([SMILES_64[i] for i in order], batch_size=7))
    np.testing.assert_allclose(shuffled, alone[order], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["cmim", "bart"])
def test_left_padding_tokenizer_gives_the_same_vectors(kind: str) -> None:
    pipe = extractor(kind)
    right = np.array(pipe(SMILES_64[:16], batch_size=16))
    pipe.tokenizer.padding_side = "left"
    left = np.array(pipe(SMILES_64[:16], batch_size=16))
    np.testing.assert_allclose(left, right, rtol=0, atol=1e-5)


def test_output_types() -> None:
    pipe = extractor("t5")
    as_list = pipe("CCO")
    assert isinstance(as_list, list) and all(isinstance(x, float) for x in as_list)
    as_torch = pipe("CCO", return_tensors=True)
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (16,) and as_torch.dtype == torch.float32
    as_numpy = pipe("CCO", return_tensors="np")
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (16,)
    np.testing.assert_allclose(as_numpy, as_list, atol=1e-7)
    assert len(pipe(["CCO", "CCN"])) == 2


@pytest.mark.parametrize(
    ("options", "dim"),
    [
        ({}, 32 + 32),  # [mu, mean of the last decoder layer]
        ({"include_latent": False}, 32),
        ({"source": "latent"}, 32),
        ({"source": "encoder"}, 32),
        ({"layers": "concat"}, 32 + 2 * 32),
        ({"layers": "mean", "pooling": "eos"}, 32 + 32),
        ({"layers": [0, -1], "pooling": "first", "include_latent": False}, 2 * 32),
    ],
)
def test_cmim_embedding_sizes(options: dict, dim: int) -> None:
    assert len(extractor("cmim")("CCO", **options)) == dim


def test_cmim_default_is_mu_then_mean_pooled_decoder_by_hand() -> None:
    model, tokenizer = build("cmim")
    encoded = tokenizer(["CC(=O)O"], return_tensors="pt")
    outputs = model(**encoded, output_hidden_states=True)
    expected = torch.cat([outputs.z_mean.flatten(1), outputs.decoder_hidden_states[-1].mean(dim=1)], dim=-1)
    got = InformativeFeatureExtractionPipeline(model=model, tokenizer=tokenizer, device=-1)(
        "CC(=O)O", return_tensors=True
    )
    torch.testing.assert_close(got, expected[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_generic_decoder_reads_start_token_plus_input(kind: str) -> None:
    """The decoder input matches the models' own label shifting, and pooling is by hand."""
    model, tokenizer = build(kind)
    encoded = tokenizer(["CCO"], return_tensors="pt")
    start = 0 if kind == "t5" else model.config.decoder_start_token_id
    decoder_input_ids, _ = teacher_forcing_inputs(encoded["input_ids"], encoded["attention_mask"], start, 0)
    if kind == "t5":  # T5's own shift: [decoder_start=pad=0] + input[:-1]
        reference = torch.cat(
            [torch.zeros_like(encoded["input_ids"][:, :1]), encoded["input_ids"][:, :-1]], dim=1
        )
    else:
        from transformers.models.bart.modeling_bart import shift_tokens_right

        reference = shift_tokens_right(encoded["input_ids"], model.config.pad_token_id, start)
    torch.testing.assert_close(decoder_input_ids, reference)
    outputs = model(**encoded, decoder_input_ids=reference, output_hidden_states=True)
    got = compute_embeddings(
        model, encoded["input_ids"], encoded["attention_mask"], pad_token_id=tokenizer.pad_token_id
    )
    torch.testing.assert_close(got, outputs.decoder_hidden_states[-1].mean(dim=1), rtol=0, atol=1e-6)
    encoder = compute_embeddings(model, encoded["input_ids"], encoded["attention_mask"], source="encoder")
    torch.testing.assert_close(encoder, outputs.encoder_last_hidden_state.mean(dim=1), rtol=0, atol=1e-6)


def test_deterministic_and_eval_mode_even_for_a_training_model() -> None:
    model, tokenizer = build("cmim")
    model.train()
    pipe = InformativeFeatureExtractionPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert not model.training
    np.testing.assert_array_equal(pipe("CCO", return_tensors="np"), pipe("CCO", return_tensors="np"))


def test_half_precision_model_is_embedded_in_float32() -> None:
    model, tokenizer = build("bart")
    expected = InformativeFeatureExtractionPipeline(model=model, tokenizer=tokenizer, device=-1)("CCO")
    pipe = InformativeFeatureExtractionPipeline(
        model=model.to(torch.bfloat16), tokenizer=tokenizer, device=-1
    )
    assert pipe.model.dtype == torch.float32
    np.testing.assert_allclose(pipe("CCO"), expected, atol=0.05)  # weights went through bf16 once


def test_latent_options_need_a_cmim_model() -> None:
    pipe = extractor("t5")
    with pytest.raises(ValueError, match="cMIM"):
        pipe("CCO", source="latent")
    with pytest.raises(ValueError, match="cMIM"):
        pipe("CCO", include_latent=True)
    with pytest.raises(ValueError, match="pooling"):
        pipe("CCO", pooling="max")
    with pytest.raises(TypeError, match="unexpected"):
        pipe("CCO", poolng="mean")


def test_registration_keeps_the_stock_task() -> None:
    stock = PIPELINE_REGISTRY.supported_tasks["feature-extraction"]["impl"]
    register_pipelines()
    register_pipelines()
    assert (
        PIPELINE_REGISTRY.supported_tasks["feature-extraction"]["impl"] == stock
    )  # a lazy "module.Class" string
    assert PIPELINE_REGISTRY.supported_tasks[INFORMATIVE_TASK]["impl"] is InformativeFeatureExtractionPipeline
    model, tokenizer = build("bart")
    by_task = pipeline(INFORMATIVE_TASK, model=model, tokenizer=tokenizer, device=-1)
    by_class = pipeline(
        "feature-extraction",
        model=model,
        tokenizer=tokenizer,
        device=-1,
        pipeline_class=InformativeFeatureExtractionPipeline,
    )
    assert type(by_task) is type(by_class) is InformativeFeatureExtractionPipeline
    np.testing.assert_allclose(by_task("CCO"), by_class("CCO"), atol=1e-7)
    assert (
        type(pipeline("feature-extraction", model=model, tokenizer=tokenizer, device=-1))
        is FeatureExtractionPipeline
    )


@pytest.fixture
def cmim_checkpoint(tmp_path: Path) -> Path:
    """A cMIM checkpoint folder as the trainer saves it, plus the pipeline entry."""
    model, tokenizer = build("cmim")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    add_pipeline_to_checkpoint(tmp_path)
    return tmp_path


def test_checkpoint_names_the_pipeline_for_feature_extraction(cmim_checkpoint: Path) -> None:
    config = json.loads((cmim_checkpoint / "config.json").read_text())
    assert (
        config["custom_pipelines"]["feature-extraction"]["impl"]
        == "pipelines.InformativeFeatureExtractionPipeline"
    )
    assert (cmim_checkpoint / "pipelines.py").is_file() and (cmim_checkpoint / "pooling.py").is_file()
    expected = extractor("cmim")(SMILES_64[:5], batch_size=5)
    for pipe in (
        pipeline("feature-extraction", model=str(cmim_checkpoint), trust_remote_code=True, device=-1),
        pipeline(INFORMATIVE_TASK, model=str(cmim_checkpoint), device=-1),
    ):
        assert type(pipe).__name__ == "InformativeFeatureExtractionPipeline"
        assert pipe.model.dtype == torch.float32
        np.testing.assert_allclose(pipe(SMILES_64[:5], batch_size=2), expected, atol=1e-5)
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("feature-extraction", model=str(cmim_checkpoint), device=-1)


def test_pipeline_save_pretrained_writes_the_feature_extraction_entry(tmp_path: Path) -> None:
    register_pipelines()
    model, tokenizer = build("t5-lm")
    InformativeFeatureExtractionPipeline(model=model, tokenizer=tokenizer, device=-1).save_pretrained(
        tmp_path
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert list(config["custom_pipelines"]) == ["feature-extraction"]
    pipe = pipeline("feature-extraction", model=str(tmp_path), trust_remote_code=True, device=-1)
    assert len(pipe("CCO")) == 16


def test_checkpoint_pipeline_loads_without_cmim_hf(cmim_checkpoint: Path, tmp_path_factory) -> None:
    """In a fresh interpreter where `import cmim_hf` fails, the copied pipeline code still loads."""
    script = (
        "import sys, json\n"
        "sys.modules['cmim_hf'] = None  # make `import cmim_hf` fail\n"
        "from transformers import pipeline\n"
        f"pipe = pipeline('feature-extraction', model={str(cmim_checkpoint)!r}, trust_remote_code=True, device=-1)\n"
        "print(json.dumps(pipe(['CCO', 'c1ccccc1'], batch_size=2)))\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path_factory.mktemp("modules")), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    vectors = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(vectors, extractor("cmim")(["CCO", "c1ccccc1"]), atol=1e-5)


BAD_ROWS = {1: "C1CC", 3: "not a smiles", 4: "C" * 300, 6: None}  # unclosed ring, words, too long, not text


def with_bad_rows(good: list[str]) -> list:
    """`good` with `BAD_ROWS` inserted at their indices."""
    rows: list = list(good)
    for index, bad in BAD_ROWS.items():
        rows.insert(index, bad)
    return rows


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_on_invalid_nan_gives_one_row_per_input_and_names_the_bad_rows(batch_size: int) -> None:
    pipe = extractor("cmim")
    good = SMILES_64[:4]
    rows = with_bad_rows(good)
    with pytest.warns(UserWarning) as caught:
        out = pipe(rows, batch_size=batch_size, on_invalid="nan", return_tensors="np")
    assert len(out) == len(rows) == 8
    assert all(vector.shape == (64,) and vector.dtype == np.float32 for vector in out)
    messages = [str(w.message) for w in caught]
    for index, bad in BAD_ROWS.items():
        assert np.isnan(out[index]).all()
        assert any(f"row {index}" in m and repr(bad)[:20] in m for m in messages), (index, messages)
    alone = [pipe(smiles, return_tensors="np") for smiles in good]
    kept = [vector for index, vector in enumerate(out) if index not in BAD_ROWS]
    np.testing.assert_allclose(np.array(kept), np.array(alone), rtol=0, atol=1e-5)


def test_on_invalid_nan_keeps_the_output_type_and_works_for_one_input() -> None:
    pipe = extractor("cmim", on_invalid="nan")
    with pytest.warns(UserWarning, match="C1CC"):
        as_list = pipe("C1CC")
    assert isinstance(as_list, list) and len(as_list) == 64 and all(np.isnan(as_list))
    with pytest.warns(UserWarning, match="row 0"):
        (as_torch,) = pipe(["C1CC"], return_tensors=True)
    assert as_torch.shape == (64,) and as_torch.dtype == torch.float32 and as_torch.isnan().all()


def test_an_invalid_row_raises_by_default_naming_the_row_and_the_smiles() -> None:
    pipe = extractor("cmim")
    with pytest.raises(ValueError, match=r"row 2\b.*'C1CC'"):
        pipe(["CCO", "CCN", "C1CC", "CCC"], batch_size=2)
    with pytest.raises(ValueError, match=r"row 1\b.*tokens"):
        pipe(["CCO", "C" * 300], batch_size=2)
    with pytest.raises(ValueError, match="on_invalid"):
        pipe(["CCO"], on_invalid="skip")  # a pipeline keeps one output per input


def test_generic_models_are_not_checked_with_rdkit() -> None:
    """Any seq2seq model may read text that is not SMILES: only cMIM inputs are checked."""
    assert len(extractor("bart")(["C1CC", "not a smiles"])) == 2


@pytest.mark.parametrize("kind", ["cmim", "t5"])
def test_an_empty_list_gives_an_empty_list(kind: str) -> None:
    pipe = extractor(kind)
    assert pipe([]) == []
    assert pipe([], batch_size=4, on_invalid="nan") == []


def test_generation_pipeline_gives_an_empty_list_for_no_inputs() -> None:
    model, tokenizer = build("cmim")
    generator = CMIMGenerationPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert generator([]) == []
    assert generator([], mode="neighbours", num_samples=2) == []
