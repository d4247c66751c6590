"""Atom-level SMILES tokenizer for cMIM, on the Transformers 5.x `tokenizers` backend.

This file is copied next to saved checkpoints (`register_for_auto_class`) and loaded with
`trust_remote_code=True` where `cmim_hf` is not installed, so it imports only the standard library,
`tokenizers`, `transformers` and `.smiles_normalization` (RDKit only when normalizing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import BatchEncoding
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.tokenization_utils_tokenizers import TokenizersBackend
from transformers.utils import logging

from .smiles_normalization import SMILES_NORMALIZATION_SCHEMES, normalize_for_model, visible_mismatch

logger = logging.get_logger(__name__)

__all__ = [
    "SMILES_REGEX",
    "SPECIAL_TOKENS",
    "CMIMTokenizer",
    "build_vocab",
    "split_smiles",
    "vocabulary_fingerprint",
]

# Schwaller et al., ACS Cent. Sci. 2019, 5, 1572 ("Molecular Transformer"): one token per bracket
# atom, two-letter organic-subset atom (Br, Cl), bond, branch, ring-bond number (%nn two-digit).
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)

# Fixed ids (docs/CONTRACTS.md): <pad>=0, <bos>=1, <eos>=2, <unk>=3, <mask>=4.
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>", "<mask>")

DEFAULT_VOCAB_FILE = Path(__file__).with_name("vocab.json")

_SMILES_PATTERN = re.compile(SMILES_REGEX)


def split_smiles(smiles: str) -> list[str]:
    """Split a SMILES into atom-level tokens exactly as `CMIMTokenizer`'s pre-tokenizer does.

    Leading/trailing whitespace is stripped (whitespace ends a SMILES); any run of characters the
    regex does not match becomes one token of its own (it maps to `<unk>` unless in the vocabulary).
    """
    smiles = smiles.strip()
    tokens: list[str] = []
    end = 0
    for match in _SMILES_PATTERN.finditer(smiles):
        if match.start() > end:
            tokens.append(smiles[end : match.start()])
        tokens.append(match.group())
        end = match.end()
    if end < len(smiles):
        tokens.append(smiles[end:])
    return tokens


def vocabulary_fingerprint(tokenizer: Any) -> str:
    """First 16 hex digits of the sha256 of a tokenizer's (token, id) pairs: equal iff two tokenizers
    map every token to the same id (a reordered vocabulary gets another fingerprint)."""
    pairs = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()[:16]


def build_vocab(smiles: Iterable[str], min_frequency: int = 1) -> dict[str, int]:
    """Build a token -> id vocabulary from a SMILES corpus.

    Special tokens come first with their fixed ids, then every token seen at least `min_frequency`
    times, by descending frequency then lexicographically, so the result is deterministic.
    """
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    counts: Counter[str] = Counter()
    for s in smiles:
        counts.update(split_smiles(s))
    for special in SPECIAL_TOKENS:
        counts.pop(special, None)
    kept = sorted((tok for tok, n in counts.items() if n >= min_frequency), key=lambda t: (-counts[t], t))
    return {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *kept])}


def _load_vocab(vocab: str | os.PathLike | dict[str, int] | None) -> dict[str, int]:
    """Return `vocab` as a dict, reading a JSON file (default: the vocabulary shipped with cmim_hf)."""
    if isinstance(vocab, dict):
        return dict(vocab)
    path = Path(vocab) if vocab is not None else DEFAULT_VOCAB_FILE
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class CMIMTokenizer(TokenizersBackend):
    """Atom-level SMILES tokenizer: regex pre-tokenizer, WordLevel vocabulary, `<bos> ... <eos>`.

    `CMIMTokenizer()` loads the vocabulary shipped with cmim_hf. Sequences longer than
    `model_max_length` (tokens including `<bos>`/`<eos>`) raise a `ValueError` unless
    `truncation=True` is passed; truncation keeps `<eos>` last.

    Args:
        vocab: token -> id dict or path to a JSON file of one; default: the shipped `vocab.json`.
        model_max_length: longest accepted sequence; match the model's `max_position_embeddings`.
        pad_token, bos_token, eos_token, unk_token, mask_token: must sit at ids 0-4 in `vocab`.
        smiles_normalization: how the model's training SMILES were written ("canonical",
            "canonical_nostereo" or "none"; a checkpoint's tokenizer_config.json records it). Inputs
            that visibly differ (stereo marks for "canonical_nostereo", several fragments) get one
            warning while `normalize` is off.
        normalize: rewrite every input (and `text_target`) as `smiles_normalization` says before
            tokenizing (RDKit; an unparsable SMILES raises ValueError naming it). Off by default, so
            that `decode(encode(x)) == x`. Saved in tokenizer_config.json, so a tokenizer saved with
            it on gives Transformers' stock scripts (`--tokenizer_name`) the model's SMILES.

    Example:
        >>> tok = CMIMTokenizer()
        >>> ids = tok("c1ccccc1Cl")["input_ids"]
        >>> tok.decode(ids, skip_special_tokens=True)
        'c1ccccc1Cl'
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]
    model = WordLevel

    def __init__(
        self,
        vocab: str | os.PathLike | dict[str, int] | None = None,
        model_max_length: int = 512,
        pad_token: str = "<pad>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
        mask_token: str = "<mask>",
        smiles_normalization: str | None = None,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        if smiles_normalization not in (None, *SMILES_NORMALIZATION_SCHEMES):
            raise ValueError(
                f"smiles_normalization must be one of {SMILES_NORMALIZATION_SCHEMES}, got {smiles_normalization!r}"
            )
        if normalize and smiles_normalization in (None, "none"):
            raise ValueError(
                "normalize=True needs smiles_normalization ('canonical' or 'canonical_nostereo')"
            )
        self.smiles_normalization = smiles_normalization
        self.normalize = normalize
        self._warned_about_form = False
        for flag in ("add_bos_token", "add_eos_token"):
            if (value := kwargs.pop(flag, True)) is not True:
                raise ValueError(
                    f"CMIMTokenizer always adds <bos>/<eos> (docs/CONTRACTS.md); got {flag}={value!r}"
                )
        # On reload the special tokens arrive as `AddedToken`: the backend wants plain strings.
        specials = [str(t) for t in (pad_token, bos_token, eos_token, unk_token, mask_token)]
        vocab = _load_vocab(vocab)
        expected = {tok: i for i, tok in enumerate(specials)}
        wrong = {tok: vocab.get(tok) for tok, i in expected.items() if vocab.get(tok) != i}
        if wrong:
            raise ValueError(f"special tokens must have ids {expected} in the vocabulary; got {wrong}")
        self._tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token=specials[3]))
        self._tokenizer.normalizer = normalizers.Strip()
        self._tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_REGEX), behavior="isolated")
        self._tokenizer.decoder = decoders.Fuse()
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(
            model_max_length=model_max_length,
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            mask_token=mask_token,
            add_bos_token=True,
            add_eos_token=True,
            smiles_normalization=smiles_normalization,
            normalize=normalize,
            **kwargs,
        )

    def _switch_to_target_mode(self) -> None:
        """``text_target=`` SMILES are decoder labels, ``x + [<eos>]`` without ``<bos>``: the decoder
        reads ``shift_tokens_right(labels)``, which starts from ``decoder_start_token_id`` (``<bos>``)."""
        self.add_bos_token = False

    def _switch_to_input_mode(self) -> None:
        self.add_bos_token = True

    def unknown_tokens(self, smiles: str) -> list[str]:
        """Tokens of `smiles` that are not in the vocabulary (each maps to `<unk>`), in order."""
        backend = self.backend_tokenizer
        pieces = backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(smiles))
        return [piece for piece, _ in pieces if backend.model.token_to_id(piece) is None]

    def _encode_plus(
        self,
        text: Any,
        text_pair: Any = None,
        truncation_strategy: TruncationStrategy = TruncationStrategy.DO_NOT_TRUNCATE,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Encode as the base class does (after normalizing the SMILES if asked, or warning once when
        they visibly differ from the model's), but raise instead of silently returning over-long
        sequences."""
        if self.normalize:
            text = self._rewrite(text)
            text_pair = self._rewrite(text_pair)
        elif not self._warned_about_form:
            self._warn_if_visibly_unnormalized(text)
        encoded = super()._encode_plus(
            text, text_pair=text_pair, truncation_strategy=truncation_strategy, **kwargs
        )
        if truncation_strategy != TruncationStrategy.DO_NOT_TRUNCATE:
            return encoded
        batched = isinstance(text, (list, tuple)) and not (
            kwargs.get("is_split_into_words") and text and isinstance(text[0], str)
        )
        for index, encoding in enumerate(encoded.encodings):
            length = sum(encoding.attention_mask)
            if length > self.model_max_length:
                item = text[index] if batched else text
                where = f"SMILES at batch index {index}" if batched else "SMILES"
                shown = repr(item) if len(str(item)) <= 120 else repr(str(item)[:117]) + "..."
                raise ValueError(
                    f"{where} {shown} has {length} tokens, more than "
                    f"model_max_length={self.model_max_length}. Pass truncation=True to truncate it "
                    "explicitly, or use a tokenizer and model with a larger max length."
                )
        return encoded

    def _rewrite(self, text: Any) -> Any:
        """A SMILES or list of SMILES written as ``smiles_normalization`` says; other inputs as given."""
        if isinstance(text, str):
            return normalize_for_model(text, self.smiles_normalization)
        if isinstance(text, (list, tuple)) and all(isinstance(item, str) for item in text):
            return [normalize_for_model(item, self.smiles_normalization) for item in text]
        return text

    def _warn_if_visibly_unnormalized(self, text: Any) -> None:
        """One warning (per tokenizer) for the first input that visibly is not in the model's form."""
        for item in [text] if isinstance(text, str) else text if isinstance(text, (list, tuple)) else []:
            reason = visible_mismatch(item, self.smiles_normalization)
            if reason is not None:
                self._warned_about_form = True
                logger.warning(
                    f"the SMILES {item!r} {reason}, but this model was trained on {self.smiles_normalization} "
                    "SMILES; load the tokenizer with normalize=True (AutoTokenizer.from_pretrained(..., "
                    "normalize=True)) to rewrite inputs as the model read them"
                )
                return

    def _eventual_warn_about_too_long_sequence(
        self, ids: list[int], max_length: int | None, verbose: bool
    ) -> None:
        """No-op: over-long untruncated inputs raise in `_encode_plus` instead of logging a warning."""
