"""Tests of cmim_hf.generation.grammar: the grammar-constrained decoding LogitsProcessor."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import torch
from clean_python import run_without_cmim_hf
from helpers import moses_smiles, tiny_config
from rdkit import Chem, rdBase
from transformers import LogitsProcessor, LogitsProcessorList

import cmim_hf
from cmim_hf import CMIMForConditionalGeneration, chem
from cmim_hf.evaluation.tasks import BUILTIN_TASKS, MOLECULENET_DIR
from cmim_hf.generation.grammar import SmilesGrammarLogitsProcessor, TokenKind, classify_token
from cmim_hf.models.cmim.tokenization_cmim import split_smiles


@pytest.fixture(scope="module")
def processor(tokenizer) -> SmilesGrammarLogitsProcessor:
    return SmilesGrammarLogitsProcessor(tokenizer)


def parses(smiles: str) -> bool:
    """Independent syntax check: RDKit parses ``smiles`` (no sanitisation: valences are not syntax)."""
    with rdBase.BlockLogs():
        return smiles != "" and Chem.MolFromSmiles(smiles, sanitize=False) is not None


def allowed_after(processor: SmilesGrammarLogitsProcessor, tokenizer, prefix: str) -> set[str]:
    """The tokens the processor allows after the SMILES prefix ``prefix``."""
    ids = [tokenizer.bos_token_id, *tokenizer.convert_tokens_to_ids(split_smiles(prefix))]
    scores = processor(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))
    return set(tokenizer.convert_ids_to_tokens(torch.isfinite(scores[0]).nonzero().flatten().tolist()))


# --- hand-made prefixes -------------------------------------------------------------------------

FORBIDDEN = [
    ("", ")", "close paren before the first atom"),
    ("", "(", "open paren at the start"),
    ("", "=", "bond before the first atom"),
    ("", "1", "ring label before the first atom"),
    ("", ".", "dot at the start"),
    ("", "<eos>", "empty SMILES"),
    ("C", ")", "close paren with none open"),
    ("C(C)", ")", "close paren with none open after a branch"),
    ("C(", "(", "open paren right after an open paren"),
    ("C(", ")", "empty branch"),
    ("C(", "1", "ring label right after an open paren"),
    ("C(", ".", "dot right after an open paren"),
    ("C(C=", ")", "bond before a close paren"),
    ("C=", "#", "bond after a bond"),
    ("C=", "(", "bond before an open paren"),
    ("C=", ".", "bond before a dot"),
    ("C=", "<eos>", "bond at the end"),
    ("C(=", "1", "ring label after '(' and a bond"),
    ("C1CC", "<eos>", "end with a ring open"),
    ("C(C", "<eos>", "end with a branch open"),
    ("C1", "1", "ring closing on the atom that opened it"),
    ("C1(C)", "1", "ring closing on its opening atom after a branch"),
    ("C1C", "1", "ring closure duplicating the chain bond"),
    ("C12CCC1", "2", "ring closure duplicating a ring bond"),
    ("C(C1)", "1", "ring closure duplicating a branch bond"),
    ("C.", "1", "ring label right after a dot"),
    ("C.", "=", "bond right after a dot"),
    ("C.", ".", "two dots"),
    ("C.", "<eos>", "dot at the end"),
    ("C\\\\", "\\", "three backslashes"),
    ("C", "<pad>", "special token"),
    ("C", "<bos>", "special token"),
    ("C", "<unk>", "special token"),
    ("C", "<mask>", "special token"),
]


@pytest.mark.parametrize(("prefix", "token", "why"), FORBIDDEN, ids=[case[2] for case in FORBIDDEN])
def test_forbidden_tokens(processor, tokenizer, prefix: str, token: str, why: str) -> None:
    allowed = allowed_after(processor, tokenizer, prefix)
    assert token not in allowed, why
    assert "C" in allowed or token == "<eos>", "an atom is always possible"


# (prefix, token, a completion RDKit parses): syntax the rules must keep allowing.
ALLOWED = [
    ("C(C)", "1", "CC1"),  # ring label after ')': on the branch's atom
    ("C", "=", "C"),
    ("C=", "1", "CCC1"),
    ("C(", "=", "O)C"),
    ("C\\", "\\", "C"),  # RDKit reads a doubled backslash as one
    ("C1CC", "1", ""),
    ("C1", "2", "CC1C2"),
    ("C(C", ".", "C)C"),  # a dot inside a branch
    ("C1.C", "1", ""),  # a ring bond across a dot
    ("C(C)", "(", "C)C"),
    ("C1CC1", "<eos>", ""),
    ("C(C)", "<eos>", ""),
    ("C=1CCCCC", "#", "1"),  # RDKit accepts conflicting ring-bond symbols
    ("C", "%10", "CC%10"),
    ("[nH]1cc", "c", "c1"),
]


@pytest.mark.parametrize(("prefix", "token", "rest"), ALLOWED)
def test_allowed_tokens(processor, tokenizer, prefix: str, token: str, rest: str) -> None:
    assert token in allowed_after(processor, tokenizer, prefix)
    assert parses(prefix + ("" if token == "<eos>" else token) + rest)


def test_token_classification() -> None:
    kinds = {
        token: classify_token(token) for token in ("[nH]", "Cl", "c", "*", "%10", "7", "\\", "/", "~", "+")
    }
    assert kinds == {
        "[nH]": TokenKind.ATOM,
        "Cl": TokenKind.ATOM,
        "c": TokenKind.ATOM,
        "*": TokenKind.ATOM,
        "%10": TokenKind.RING_LABEL,
        "7": TokenKind.RING_LABEL,
        "\\": TokenKind.BACKSLASH,
        "/": TokenKind.BOND,
        "~": TokenKind.INVALID,
        "+": TokenKind.INVALID,
    }


# --- gold sequences: teacher forcing never meets a forbidden gold token -------------------------


def assert_gold_tokens_allowed(
    processor: SmilesGrammarLogitsProcessor, tokenizer, smiles: Sequence[str]
) -> int:
    """Replay each SMILES token by token through the processor (batched, as in ``generate``) and
    assert every gold next token, ``<eos>`` included, is allowed. Molecules with tokens outside the
    vocabulary are skipped (the tokenizer cannot write them). Returns the number of molecules replayed."""
    known = []
    for s in smiles:
        ids = tokenizer.convert_tokens_to_ids(split_smiles(s))
        if tokenizer.unk_token_id not in ids:
            known.append([tokenizer.bos_token_id, *ids, tokenizer.eos_token_id])
    known.sort(key=len)
    for start in range(0, len(known), 1024):
        chunk = known[start : start + 1024]
        width = max(map(len, chunk))
        batch = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in chunk])
        for step in range(1, width):
            scores = processor(batch[:, :step], torch.zeros(len(batch), len(tokenizer)))
            gold_allowed = torch.isfinite(scores.gather(1, batch[:, step : step + 1]))[:, 0]
            if not gold_allowed.all():
                row = int((~gold_allowed).nonzero()[0])
                tokens = tokenizer.convert_ids_to_tokens(batch[row, : step + 1].tolist())
                pytest.fail(f"gold token refused: {tokenizer.decode(chunk[row][1:-1])} at {tokens}")
    return len(known)


def test_gold_moses_tokens_are_allowed(tokenizer) -> None:
    smiles = moses_smiles()
    assert assert_gold_tokens_allowed(SmilesGrammarLogitsProcessor(tokenizer), tokenizer, smiles) == 5000


@pytest.mark.slow
def test_gold_moleculenet_tokens_are_allowed(tokenizer) -> None:
    """Every MoleculeNet molecule RDKit reads, as written in the files (stereo, charges, doubled
    backslashes ...) and normalized as the shipped checkpoint's tokenizer expects
    (``config.smiles_normalization``): ~100,000 distinct SMILES, minutes."""
    files = sorted({(spec.filename, spec.smiles_column) for spec in BUILTIN_TASKS.values()})
    raw = {
        s.strip()
        for name, column in files
        for s in pd.read_csv(MOLECULENET_DIR / name)[column].dropna().astype(str)
    }
    valid = {s for s in raw if chem.is_valid_smiles(s)}
    assert len(valid) > 0.99 * len(raw)
    scheme = json.loads((Path(cmim_hf.DEFAULT_CHECKPOINT) / "config.json").read_text())[
        "smiles_normalization"
    ]
    smiles = sorted(valid | {chem.normalize_smiles(s, scheme) for s in valid})
    replayed = assert_gold_tokens_allowed(SmilesGrammarLogitsProcessor(tokenizer), tokenizer, smiles)
    assert replayed > 0.99 * len(smiles)


# --- state tracking ------------------------------------------------------------------------------


def test_states_follow_reordered_and_duplicated_rows(processor, tokenizer) -> None:
    """Beam search reorders and duplicates rows between steps: every row's state must still be its
    own prefix's (the incremental states equal a parse from scratch)."""
    molecules = ["CC(=O)Oc1ccccc1C(=O)O", "C1CC2(CC1)OCCO2", "C/C=C\\\\C", "c1ccccc1.Cl", "C(C)(C)1CC1"]
    batch = tokenizer(molecules, padding=True, return_tensors="pt")["input_ids"]
    generator = torch.Generator().manual_seed(0)
    fresh = SmilesGrammarLogitsProcessor(tokenizer)
    from_scratch = []
    parse = fresh.parse
    fresh.parse = lambda token_ids: from_scratch.append(token_ids) or parse(token_ids)
    for step in range(1, batch.shape[1] + 1):
        rows = torch.randint(0, len(molecules), (8,), generator=generator)
        prefixes = batch[rows, :step]
        expected = [processor.parse(prefix[1:].tolist()) for prefix in prefixes]
        assert fresh.states(prefixes) == expected
    assert len(from_scratch) < 2 * batch.shape[1], "most rows advance their parent's state by one token"
    assert all(state is None for state in fresh.states(batch))  # finished rows: unconstrained


def test_finished_rows_are_left_alone(processor, tokenizer) -> None:
    ids = tokenizer(["CC", "C(C)"], padding=True, return_tensors="pt")["input_ids"]  # CC ends with <pad>
    scores = torch.randn(2, len(tokenizer))
    out = processor(ids, scores)
    assert torch.equal(out[0], scores[0])
    assert torch.equal(out[1], scores[1])  # the last token is <eos>


# --- generation ------------------------------------------------------------------------------------


class SyntaxThenEndBias(LogitsProcessor):
    """Pushes a random model towards syntax tokens and, more with every step, towards <eos>: without
    the grammar it then stops in the middle of rings and branches."""

    def __init__(self, tokenizer) -> None:
        self.bias = torch.zeros(len(tokenizer))
        for token, index in tokenizer.get_vocab().items():
            if classify_token(token) not in (TokenKind.ATOM, TokenKind.INVALID):
                self.bias[index] = 2.0
        self.eos_token_id = tokenizer.eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores + self.bias.to(scores.dtype)
        scores[:, self.eos_token_id] += 0.3 * input_ids.shape[1]
        return scores


@pytest.mark.parametrize(("num_beams", "do_sample"), [(1, False), (3, False), (1, True)])
def test_generate_with_the_processor_only_ends_complete_smiles(
    tokenizer, num_beams: int, do_sample: bool
) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(init_std=0.5)).eval()
    z = torch.randn(50, 1, 32, generator=torch.Generator().manual_seed(0))
    decodes = {}
    for constrained in (False, True):
        processors = [SyntaxThenEndBias(tokenizer)]
        if constrained:
            processors.append(SmilesGrammarLogitsProcessor(tokenizer))
        torch.manual_seed(0)
        ids = model.decode_latents(
            z,
            num_beams=num_beams,
            do_sample=do_sample,
            max_new_tokens=120,
            logits_processor=LogitsProcessorList(processors),
        )
        ended = [bool((row == tokenizer.eos_token_id).any()) for row in ids]
        decodes[constrained] = [
            s for s, done in zip(tokenizer.batch_decode(ids, skip_special_tokens=True), ended) if done
        ]
    assert sum(map(parses, decodes[False])) < 0.5 * len(decodes[False]), "the test must be able to fail"
    assert len(decodes[True]) >= 25
    assert all(map(parses, decodes[True])), [s for s in decodes[True] if not parses(s)]


WALK_TOKENS = [
    "<pad>",
    "<bos>",
    "<eos>",
    "C",
    "c",
    "[nH]",
    "Cl",
    "(",
    ")",
    "=",
    "#",
    "/",
    "\\",
    ".",
    "1",
    "2",
    "%10",
]


def test_random_walks_through_the_allowed_tokens_parse() -> None:
    """1,000 decodes of a random "model" over a small vocabulary dense in syntax (random scores,
    masked, argmax; <eos> more likely with every step): every complete one parses."""
    vocab = {token: index for index, token in enumerate(WALK_TOKENS)}
    processor = SmilesGrammarLogitsProcessor(vocab)
    generator = torch.Generator().manual_seed(0)
    ids = torch.full((1000, 1), vocab["<bos>"])
    for step in range(120):
        scores = torch.rand(len(ids), len(vocab), generator=generator)
        scores[:, vocab["<eos>"]] += 0.05 * step
        next_ids = processor(ids, scores).argmax(-1)
        next_ids[(ids == vocab["<eos>"]).any(-1) | (ids == vocab["<pad>"]).any(-1)] = vocab["<pad>"]
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
    complete = [
        "".join(WALK_TOKENS[i] for i in row[1 : row.index(vocab["<eos>"])])
        for row in ids.tolist()
        if vocab["<eos>"] in row
    ]
    assert len(complete) > 600
    assert sum("(" in s for s in complete) > 100 and sum("%10" in s for s in complete) > 100
    assert all(map(parses, complete)), [s for s in complete if not parses(s)]


def test_imports_and_runs_without_cmim_hf(tokenizer, tmp_path: Path) -> None:
    """The file copied alone (as into a checkpoint's remote-code folder) works from a plain vocabulary."""
    shutil.copy(Path(cmim_hf.__file__).parent / "generation" / "grammar.py", tmp_path / "smiles_grammar.py")
    code = """
import torch
sys.path.insert(0, ".")
from smiles_grammar import SmilesGrammarLogitsProcessor
vocab = json.loads(sys.argv[2])
processor = SmilesGrammarLogitsProcessor(vocab)
ids = torch.tensor([[vocab["<bos>"], vocab["C"], vocab["("]]])
scores = processor(ids, torch.zeros(1, len(vocab)))
print(json.dumps(sorted(t for t, i in vocab.items() if scores[0, i] > float("-inf"))))
"""
    allowed = json.loads(run_without_cmim_hf(code, [json.dumps(tokenizer.get_vocab())], tmp_path))
    assert allowed == sorted(allowed_after(SmilesGrammarLogitsProcessor(tokenizer), tokenizer, "C("))
    assert "C" in allowed and "=" in allowed and ")" not in allowed
