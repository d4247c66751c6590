"""Tests of the atom-level SMILES tokenizer (`cmim_hf.models.cmim.tokenization_cmim`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from clean_python import run_without_cmim_hf
from tokenizers import AddedToken
from transformers import AutoConfig, AutoTokenizer

import cmim_hf
from cmim_hf.models.cmim.configuration_cmim import CMIMConfig
from cmim_hf.models.cmim.tokenization_cmim import (
    DEFAULT_VOCAB_FILE,
    SPECIAL_TOKENS,
    CMIMTokenizer,
    build_vocab,
    split_smiles,
)
from cmim_hf.models.cmim.tokenization_cmim import logger as tokenization_logger

MOLECULENET_DIR = Path(__file__).resolve().parents[1] / "cmim_hf" / "package_data" / "moleculenet"
MOLECULENET_FILES = (
    "BBBP.csv",
    "HIV.csv",
    "Lipophilicity.csv",
    "SAMPL.csv",
    "bace.csv",
    "clintox.csv",
    "delaney-processed.csv",
    "sider.csv",
    "tox21.csv",
)
MOLECULENET_ROWS = 61402  # sum of the rows of the nine files (cmim_hf/package_data/README.md)
# decoded == SMILES exactly, except these rows whose SMILES end in a space (whitespace ends a SMILES;
# the tokenizer strips it, so they decode to the stripped SMILES).
MOLECULENET_TRAILING_WHITESPACE = 212  # all in delaney-processed.csv

TRICKY = [
    ("CCl", ["C", "Cl"]),
    ("ClCBr", ["Cl", "C", "Br"]),
    ("BrC(Cl)=O", ["Br", "C", "(", "Cl", ")", "=", "O"]),
    ("c1ccc2[nH]ccc2c1", ["c", "1", "c", "c", "c", "2", "[nH]", "c", "c", "c", "2", "c", "1"]),
    ("C[N+](C)(C)C.[Cl-]", ["C", "[N+]", "(", "C", ")", "(", "C", ")", "C", ".", "[Cl-]"]),
    ("[Gd+3]", ["[Gd+3]"]),
    ("[18F]c1ccccc1", ["[18F]", "c", "1", "c", "c", "c", "c", "c", "1"]),
    ("C[C@@H](O)[C@H](N)C", ["C", "[C@@H]", "(", "O", ")", "[C@H]", "(", "N", ")", "C"]),
    ("F/C=C\\F", ["F", "/", "C", "=", "C", "\\", "F"]),
    ("C%10CC%10", ["C", "%10", "C", "C", "%10"]),
    ("C12CC1C2", ["C", "1", "2", "C", "C", "1", "C", "2"]),
    ("CC#N", ["C", "C", "#", "N"]),
    ("O=[N+]([O-])c1ccccc1", ["O", "=", "[N+]", "(", "[O-]", ")", "c", "1", "c", "c", "c", "c", "c", "1"]),
    ("*C(=O)O", ["*", "C", "(", "=", "O", ")", "O"]),
]


@pytest.fixture(scope="module")
def tok() -> CMIMTokenizer:
    return CMIMTokenizer()


@pytest.fixture(scope="module")
def moleculenet() -> dict[str, list[str]]:
    """file name -> SMILES column (named `mol` in bace.csv, `smiles` elsewhere)."""
    out = {}
    for name in MOLECULENET_FILES:
        with open(MOLECULENET_DIR / name, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            column = "mol" if name == "bace.csv" else "smiles"
            out[name] = [row[column] for row in reader]
    return out


@pytest.mark.parametrize(("smiles", "expected"), TRICKY)
def test_regex_splits(tok: CMIMTokenizer, smiles: str, expected: list[str]) -> None:
    assert split_smiles(smiles) == expected  # stdlib regex, used by build_vocab
    assert tok.tokenize(smiles) == expected  # the backend's Rust regex
    assert tok.unknown_tokens(smiles) == []


def test_special_token_ids_follow_contract(tok: CMIMTokenizer) -> None:
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert (tok.unk_token_id, tok.mask_token_id) == (3, 4)
    assert sorted(tok.all_special_ids) == [0, 1, 2, 3, 4]


def test_bos_eos_added_and_decode_has_no_spaces(tok: CMIMTokenizer) -> None:
    ids = tok("C[C@@H](Cl)c1ccccc1Br")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.convert_ids_to_tokens(ids)[1:4] == ["C", "[C@@H]", "("]
    assert tok.decode(ids, skip_special_tokens=True) == "C[C@@H](Cl)c1ccccc1Br"
    assert tok.decode(ids) == "<bos>C[C@@H](Cl)c1ccccc1Br<eos>"
    assert tok("CCO", add_special_tokens=False)["input_ids"] == tok.convert_tokens_to_ids(["C", "C", "O"])


def test_shipped_vocab_is_default_and_deterministic(tok: CMIMTokenizer) -> None:
    shipped = json.loads(DEFAULT_VOCAB_FILE.read_text(encoding="utf-8"))
    assert tok.get_vocab() == shipped
    assert list(shipped)[:5] == list(SPECIAL_TOKENS)
    assert sorted(shipped.values()) == list(range(len(shipped)))
    assert len(tok) == tok.vocab_size == len(shipped)


def test_config_vocab_matches_tokenizer(tok: CMIMTokenizer) -> None:
    config = CMIMConfig()
    assert config.vocab_size == len(tok)
    assert config.max_position_embeddings == tok.model_max_length
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)


def test_moleculenet_round_trip(moleculenet: dict[str, list[str]]) -> None:
    """Every SMILES of the nine MoleculeNet files decodes back to itself, and none is out of vocabulary."""
    tok = CMIMTokenizer(model_max_length=4096)  # 18 HIV/BBBP/... molecules exceed 512 tokens
    checked = oov = stripped = 0
    failures: list[tuple[str, str, str]] = []
    for name, smiles in moleculenet.items():
        ids = tok(smiles)["input_ids"]
        decoded = tok.batch_decode(ids, skip_special_tokens=True)
        for s, s_ids, s_decoded in zip(smiles, ids, decoded, strict=True):
            checked += 1
            if tok.unk_token_id in s_ids:
                oov += 1
                assert tok.unknown_tokens(s), s
                continue
            stripped += s != s.strip()
            if s_decoded != s.strip():
                failures.append((name, s, s_decoded))
    print(f"MoleculeNet round trip: {checked} molecules, {oov} with OOV tokens, {len(failures)} failures")
    assert checked == MOLECULENET_ROWS
    assert failures == []
    assert oov == 0
    assert stripped == MOLECULENET_TRAILING_WHITESPACE


def test_unknown_tokens_map_to_unk_and_are_counted(tok: CMIMTokenizer) -> None:
    smiles = "CC[Zz]C(Q)[Zz]"
    ids = tok(smiles)["input_ids"]
    assert ids.count(tok.unk_token_id) == 3
    assert tok.unknown_tokens(smiles) == ["[Zz]", "Q", "[Zz]"]
    assert tok.unknown_tokens("c1ccccc1") == []
    assert tok.decode(ids, skip_special_tokens=True) == "CCC()"  # <unk> is special: dropped


def test_over_length_raises_unless_truncation(tok: CMIMTokenizer) -> None:
    assert tok.model_max_length == 512
    long = "C" * 600  # 602 tokens with <bos>/<eos>
    with pytest.raises(ValueError, match=r"SMILES 'C+'\.\.\. has 602 tokens, more than model_max_length=512"):
        tok(long)
    with pytest.raises(ValueError, match=r"batch index 1 .* has 602 tokens"):
        tok(["CCO", long], padding=True)
    ok = tok("C" * 510)["input_ids"]  # exactly model_max_length tokens is fine
    assert len(ok) == 512

    ids = tok(long, truncation=True)["input_ids"]
    assert len(ids) == 512 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    batch = tok(["CCO", long], truncation=True, max_length=10, padding=True)["input_ids"]
    assert [len(x) for x in batch] == [10, 10]
    assert batch[1][-1] == tok.eos_token_id
    assert tok.decode(batch[1], skip_special_tokens=True) == "C" * 8

    small = CMIMTokenizer(model_max_length=8)
    with pytest.raises(ValueError, match="model_max_length=8"):
        small("c1ccccc1O")


def test_batch_padding(tok: CMIMTokenizer) -> None:
    batch = tok(["CCO", "c1ccccc1", "C"], padding=True, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (3, 10)
    assert batch["input_ids"][0].tolist() == [
        1,
        *tok.convert_tokens_to_ids(["C", "C", "O"]),
        2,
        0,
        0,
        0,
        0,
        0,
    ]
    assert batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 5
    assert batch["attention_mask"][1].tolist() == [1] * 10
    assert batch["attention_mask"].sum(1).tolist() == [5, 10, 3]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()


def test_added_token_specials_accepted() -> None:
    tok = CMIMTokenizer(
        pad_token=AddedToken("<pad>", special=True), unk_token=AddedToken("<unk>", special=True)
    )
    assert tok("C[Zz]")["input_ids"] == [1, tok.convert_tokens_to_ids("C"), 3, 2]


def test_bad_vocab_and_flags_raise() -> None:
    with pytest.raises(
        ValueError, match=r"must have ids \{'<pad>': 0, '<bos>': 1.*got \{'<pad>': 1, '<bos>': 0\}"
    ):
        CMIMTokenizer(vocab={"<bos>": 0, "<pad>": 1, "<eos>": 2, "<unk>": 3, "<mask>": 4, "C": 5})
    with pytest.raises(ValueError, match="always adds <bos>/<eos>"):
        CMIMTokenizer(add_eos_token=False)


def test_auto_tokenizer_round_trip(tok: CMIMTokenizer, tmp_path: Path) -> None:
    AutoConfig.register("cmim", CMIMConfig, exist_ok=True)
    AutoTokenizer.register(CMIMConfig, tokenizer_class=CMIMTokenizer, exist_ok=True)
    CMIMConfig().save_pretrained(tmp_path)
    CMIMTokenizer(model_max_length=256).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is CMIMTokenizer
    assert loaded.model_max_length == 256
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.all_special_tokens == tok.all_special_tokens
    smiles = ["C[C@@H](Cl)c1ccc2[nH]ccc2c1Br", "CC%10CC%10.[Gd+3]"]
    assert loaded(smiles, padding=True)["input_ids"] == tok(smiles, padding=True)["input_ids"]
    assert loaded.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    with pytest.raises(ValueError, match="model_max_length=256"):
        loaded("C" * 300)


REMOTE_CHECK = """
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[2], trust_remote_code=True)
assert type(tok).__module__.startswith("transformers_modules."), type(tok).__module__
ids = tok(json.loads(sys.argv[3]), padding=True)["input_ids"]
try:
    tok("C" * 600)
    raise SystemExit("over-length input did not raise")
except ValueError:
    pass
print(json.dumps({"ids": ids, "decoded": tok.batch_decode(ids, skip_special_tokens=True),
                  "unknown": tok.unknown_tokens("C[Zz]C"), "max_len": tok.model_max_length}))
"""


def test_trust_remote_code_in_clean_process(tok: CMIMTokenizer, tmp_path: Path) -> None:
    save_dir = tmp_path / "ckpt"
    CMIMTokenizer.register_for_auto_class("AutoTokenizer")
    tok.save_pretrained(save_dir)
    assert (save_dir / "tokenization_cmim.py").is_file()
    smiles = ["C[C@@H](Cl)c1ccc2[nH]ccc2c1Br", "F/C=C\\F", "CC%10CC%10"]
    stdout = run_without_cmim_hf(REMOTE_CHECK, [str(save_dir), json.dumps(smiles)], tmp_path)
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["ids"] == tok(smiles, padding=True)["input_ids"]
    assert out["decoded"] == smiles
    assert out["unknown"] == ["[Zz]"]
    assert out["max_len"] == 512


def test_build_vocab_is_deterministic() -> None:
    corpus = ["CCO", "c1ccccc1Cl", "CC(=O)O", "[Na+].[Cl-]"]
    vocab = build_vocab(corpus)
    assert list(vocab)[:5] == list(SPECIAL_TOKENS)
    assert list(vocab.values()) == list(range(len(vocab)))
    # by count (c: 6, C: 4, O: 3, "1": 2), then the count-1 tokens in lexicographic order
    assert list(vocab)[5:] == ["c", "C", "O", "1", "(", ")", ".", "=", "Cl", "[Cl-]", "[Na+]"]
    assert build_vocab(reversed(corpus)) == vocab
    assert "[Na+]" not in build_vocab(corpus, min_frequency=2)
    with pytest.raises(ValueError, match="min_frequency"):
        build_vocab(corpus, min_frequency=0)
    small = CMIMTokenizer(vocab=vocab)
    assert small.decode(small("CC(=O)O")["input_ids"], skip_special_tokens=True) == "CC(=O)O"


STEREO_ALANINE = "C[C@H](N)C(=O)O"


def test_normalization_is_off_by_default_and_warns_once(monkeypatch) -> None:
    """decode(encode(x)) stays exact; one warning names the first visibly unnormalized input."""
    warnings: list[str] = []
    monkeypatch.setattr(tokenization_logger, "warning", warnings.append)
    tok = CMIMTokenizer(smiles_normalization="canonical_nostereo")
    ids = tok([STEREO_ALANINE, "CC.Cl"])["input_ids"]
    assert tok.batch_decode(ids, skip_special_tokens=True) == [STEREO_ALANINE, "CC.Cl"]
    tok("F/C=C/F")
    assert len(warnings) == 1
    assert repr(STEREO_ALANINE) in warnings[0] and "normalize=True" in warnings[0]
    CMIMTokenizer(smiles_normalization="canonical")(STEREO_ALANINE)  # stereo is that form
    CMIMTokenizer()(STEREO_ALANINE)  # the form is unknown: nothing to compare with
    assert len(warnings) == 1


def test_normalize_rewrites_inputs_and_targets_and_survives_saving(tmp_path: Path) -> None:
    tok = CMIMTokenizer(smiles_normalization="canonical_nostereo", normalize=True)
    batch = tok([STEREO_ALANINE, "C(C)O"], text_target=["N[C@@H](C)C(O)=O", "OCC"])
    assert tok.batch_decode(batch["input_ids"], skip_special_tokens=True) == ["CC(N)C(=O)O", "CCO"]
    assert tok.batch_decode(batch["labels"], skip_special_tokens=True) == ["CC(N)C(=O)O", "CCO"]
    with pytest.raises(ValueError, match="cannot parse the SMILES 'C1CC'"):
        tok("C1CC")
    tok.save_pretrained(tmp_path)  # what a stock script's --tokenizer_name then loads
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.normalize and reloaded.smiles_normalization == "canonical_nostereo"
    assert reloaded.decode(reloaded(STEREO_ALANINE)["input_ids"], skip_special_tokens=True) == "CC(N)C(=O)O"


def test_shipped_tokenizer_knows_its_form_and_normalizes_on_request() -> None:
    shipped = AutoTokenizer.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)
    assert shipped.smiles_normalization == "canonical_nostereo" and not shipped.normalize
    normalizing = AutoTokenizer.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT, normalize=True)
    assert (
        normalizing.decode(normalizing(STEREO_ALANINE)["input_ids"], skip_special_tokens=True)
        == "CC(N)C(=O)O"
    )


def test_normalization_options_are_checked() -> None:
    with pytest.raises(ValueError, match="smiles_normalization must be one of"):
        CMIMTokenizer(smiles_normalization="inchi")
    with pytest.raises(ValueError, match="normalize=True needs smiles_normalization"):
        CMIMTokenizer(normalize=True)
