"""Generation with a cMIM model: reconstruct, sample, explore, interpolate and optimise molecules.

Every function takes a :class:`~cmim_hf.CMIMForConditionalGeneration` (or any model with the
same ``encode`` / ``decode_latents`` / ``config.num_latents`` / ``config.latent_size`` interface)
and its tokenizer, runs in batches on the model's device with the model in eval mode (its
training flag is restored afterwards), and returns a dataclass with the decoded SMILES and one
RDKit validity flag per molecule. Latent codes are (N, K, L) float32 CPU tensors.

Decoding is greedy (``num_beams=1``) or beam search: given the latent codes the output is
deterministic, and the random latent codes of :func:`sample_prior` and
:func:`sample_neighbourhood` come from a private ``torch.Generator`` seeded with ``seed``.
``grammar_constrained=True`` (every decoding function) masks, at each step, the tokens that would
make the SMILES syntactically impossible (:class:`cmim_hf.smiles_grammar.SmilesGrammarLogitsProcessor`:
unbalanced parentheses, unclosed rings, misplaced bonds ...); valences and aromaticity stay unchecked.
Input molecules are encoded with z = mu (the posterior mean). Invalid input SMILES raise
:class:`cmim_hf.chem.InvalidSmilesError` naming the molecule and its position.

:func:`optimize` searches the latent space around each seed molecule with CMA-ES (the ``cma``
package) for molecules with a higher score; decodes RDKit rejects (or that the scoring function
cannot score) get a penalty instead of stopping the search.

The set metrics (:func:`fraction_valid`, :func:`fraction_unique`, :func:`fraction_novel`) and
:func:`tanimoto_similarity` are the pure functions behind the local ``evaluate`` metrics
``validity``, ``uniqueness``, ``novelty`` and ``tanimoto_similarity``.

Bounded memory: :func:`iter_sample_prior`, :func:`iter_sample_neighbourhood`,
:func:`iter_interpolate` and :func:`iter_optimize` yield their results one batch (one seed for
the search) at a time, so memory does not grow with the number of molecules asked for;
:class:`SetMetrics` computes validity, uniqueness and novelty of such a stream keeping 8 bytes
per distinct molecule. Their random codes are the ones the one-call functions draw: torch's CPU
generator gives the same normal values whether they are drawn at once or in pieces of multiples
of 16 values (the last piece whole), which is how they are drawn here, whatever the batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from . import chem
from .errors import InputError, one_line
from .latent_stats import fit_gaussian, gaussian_sampling_factor, sample_gaussian
from .outputs import atomic_output
from .smiles_grammar import SmilesGrammarLogitsProcessor

__all__ = [
    "CheckpointError",
    "check_checkpoint_folder",
    "check_tokenizer_matches",
    "load_model_for_generation",
    "GenerationResult",
    "ReconstructionResult",
    "NeighbourhoodResult",
    "InterpolationResult",
    "OptimizedMolecule",
    "OptimizationResult",
    "encode_posterior",
    "encode_smiles",
    "decode_latents",
    "reconstruct",
    "sample_prior",
    "iter_sample_prior",
    "AggregatePosterior",
    "AGGREGATE_POSTERIOR_FILE",
    "fit_aggregate_posterior",
    "sample_neighbourhood",
    "iter_sample_neighbourhood",
    "interpolate",
    "iter_interpolate",
    "interpolation_path",
    "optimize",
    "iter_optimize",
    "descriptor_score",
    "tanimoto_similarity",
    "fraction_valid",
    "fraction_unique",
    "canonical_reference",
    "fraction_novel",
    "DistinctCounter",
    "SetMetrics",
]

InterpolationMethod = Literal["linear", "slerp"]
INTERPOLATION_METHODS: tuple[str, ...] = ("linear", "slerp")
DEFAULT_BATCH_SIZE = 256
# Longest default decode. A code far from every training code can decode without <eos> until the
# position table ends (1,023 tokens for a 1,024-position model); every molecule in a batch then
# waits for it. Drug-like molecules (MOSES, MoleculeNet) need far fewer tokens.
DEFAULT_MAX_NEW_TOKENS = 256
# Neighbourhood radius: 0.53 of the shipped v2 model's samples are valid at 0.1 (mean Tanimoto 0.67 to
# the seed), 0.10 at 0.5 (model_cards/cmim-moses-small-v2/sampler_sweep.md).
DEFAULT_RADIUS = 0.1


# ---------------------------------------------------------------------------------------------
# Loading a checkpoint
# ---------------------------------------------------------------------------------------------

TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json")


class CheckpointError(InputError, OSError):
    """A checkpoint that cannot be used: the message names the folder and the missing or bad file."""


def check_checkpoint_folder(folder: str | os.PathLike) -> None:
    """Check that a local folder holds a loadable model + tokenizer checkpoint, without loading it.

    Checks config.json (present, a JSON object with ``model_type``), the safetensors weights
    (``model.safetensors``, or ``model.safetensors.index.json`` and every shard it lists, each
    with a readable header covering the whole file) and the tokenizer files.

    Raises:
        CheckpointError: naming the first missing or unreadable file.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint folder: config.json is missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{config_path} has no model_type: not a Transformers model config")

    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            shards = sorted(set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{index_path} is not a valid safetensors index ({err})") from None
    else:
        shards = ["model.safetensors"]
    for shard in shards:
        path = folder / shard
        if not path.is_file():
            raise CheckpointError(f"{folder} is incomplete: the weights file {shard} is missing")
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except SafetensorError as err:
            raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None

    for name in TOKENIZER_FILES:
        if not (folder / name).is_file():
            raise CheckpointError(
                f"{folder} is incomplete: the tokenizer file {name} is missing (tokenizer.save_pretrained(folder))"
            )


def load_weights_strictly(
    model_class: Any, name_or_path: str | os.PathLike, fresh: Sequence[str] = (), **kwargs: Any
) -> PreTrainedModel:
    """``model_class.from_pretrained`` that refuses weights which do not fit the class.

    Transformers initialises a parameter missing from the checkpoint at random with only a logged
    table as warning: features from such a model would be silently wrong. Here a missing or
    differently shaped parameter is an error naming the checkpoint; parameters the checkpoint has
    and the class does not use are allowed (a language-model head read by a base model).

    Args:
        fresh: name prefixes allowed to start fresh (a new task head, e.g. ``"classifier."``).

    Raises:
        CheckpointError: the checkpoint cannot be read, or its weights do not fit ``model_class``.
    """
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load report is replaced by the one-line error below
    try:
        model, info = model_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        mismatch = "ignore_mismatched_sizes" in str(err)
        detail = (
            "parameter shapes differ from the architecture its config names" if mismatch else one_line(err)
        )
        raise CheckpointError(f"cannot load the model from {name_or_path}: {detail}") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(tuple(fresh)))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        kind = f"{type(model).__name__} (model_type {model.config.model_type!r})"
        problems = [f"{len(missing)} parameters missing"] if missing else []
        problems += [f"{len(mismatched)} of another shape"] if mismatched else []
        raise CheckpointError(
            f"the weights in {name_or_path} do not fit {kind}: {', '.join(problems)}, "
            f"e.g. {(missing or mismatched)[0]}"
        )
    return model


def check_tokenizer_matches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Refuse a tokenizer that does not fit the model: more tokens than its embedding has rows,
    special tokens at other ids, or (when the config records it) another vocabulary than the one it
    was trained with.

    Raises:
        CheckpointError: naming ``source`` and the mismatch.
    """
    from .tokenization_cmim import vocabulary_fingerprint

    config = model.config
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise CheckpointError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens, the model's embedding only {rows} rows"
        )
    for name in ("pad", "bos", "eos", "unk"):
        model_id, tokenizer_id = (
            getattr(config, f"{name}_token_id", None),
            getattr(tokenizer, f"{name}_token_id"),
        )
        if model_id is not None and tokenizer_id is not None and model_id != tokenizer_id:
            raise CheckpointError(
                f"{source}: the tokenizer's {name} token has id {tokenizer_id}, the model's {model_id}"
            )
    expected = getattr(config, "vocab_fingerprint", None)
    found = vocabulary_fingerprint(tokenizer) if expected else None
    if found != expected:
        raise CheckpointError(
            f"{source}: the tokenizer's vocabulary is not the one the model was trained with "
            f"(fingerprint {found}, the config records {expected})"
        )


def load_model_for_generation(
    name_or_path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a cMIM checkpoint (float32, eval mode) and its tokenizer from a folder or a Hub id.

    A local folder is checked first with :func:`check_checkpoint_folder`.

    Args:
        device: torch device (default: cuda if available, else cpu).

    Raises:
        CheckpointError: missing/corrupt files, a model that is not a cMIM model, or any loading
            failure (first line of the underlying error).
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    local = Path(name_or_path).expanduser()
    if local.exists() or str(name_or_path).startswith((".", "/", "~")):
        check_checkpoint_folder(local)
        name_or_path = str(local)
        model_type = json.loads((local / "config.json").read_text(encoding="utf-8"))["model_type"]
        if model_type != "cmim":  # refused before its weights are read into another architecture
            raise CheckpointError(f"{name_or_path} is not a cMIM model (model_type {model_type!r})")
    model = load_weights_strictly(AutoModelForSeq2SeqLM, name_or_path, dtype=torch.float32)
    if not (hasattr(model, "decode_latents") and hasattr(model, "encode")):
        raise CheckpointError(f"{name_or_path} is not a cMIM model (model_type {model.config.model_type!r})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot load the tokenizer from {name_or_path}: {one_line(err)}") from None
    check_tokenizer_matches(model, tokenizer, str(name_or_path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


# ---------------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------------


@dataclass
class GenerationResult:
    """Molecules decoded from latent codes.

    Attributes:
        smiles: N decoded SMILES (as the tokenizer decodes them; may be empty or invalid).
        valid: N flags, True where RDKit parses and sanitises the SMILES.
        latents: (N, K, L) float32 CPU tensor, the code each molecule was decoded from.
    """

    smiles: list[str]
    valid: list[bool]
    latents: torch.Tensor

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def validity(self) -> float:
        """Fraction of valid molecules (0.0 for no molecules)."""
        return fraction_valid(self.smiles)

    @property
    def valid_smiles(self) -> list[str]:
        """The valid decoded SMILES, in order."""
        return [s for s, ok in zip(self.smiles, self.valid) if ok]

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per molecule (for CSV/JSON output)."""
        return [{"smiles": s, "valid": ok} for s, ok in zip(self.smiles, self.valid)]


@dataclass
class ReconstructionResult(GenerationResult):
    """Reconstructions of input molecules decoded from z = mu.

    Attributes:
        inputs: the N input SMILES.
        exact: N flags, True where the reconstruction is valid and has the input's canonical SMILES.
        similarity: (N,) ECFP4 Tanimoto similarity of each reconstruction to its input (NaN if invalid).
    """

    inputs: list[str] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def exact_match(self) -> float:
        """Fraction of inputs reconstructed exactly (canonical SMILES equality)."""
        return float(np.mean(self.exact)) if self.exact else 0.0

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {"input": i, "smiles": s, "valid": ok, "exact": e, "similarity": _finite_or_none(sim)}
            for i, s, ok, e, sim in zip(self.inputs, self.smiles, self.valid, self.exact, self.similarity)
        ]


@dataclass
class NeighbourhoodResult(GenerationResult):
    """Molecules decoded from Gaussian perturbations of seed molecules' latent codes.

    Attributes:
        seeds: the S seed SMILES.
        seed_index: N indices into ``seeds``: the seed each molecule was sampled around.
        similarity: (N,) ECFP4 Tanimoto similarity to its seed (NaN where the sample is invalid).
    """

    seeds: list[str] = field(default_factory=list)
    seed_index: list[int] = field(default_factory=list)
    similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "seed_index": i,
                "seed": self.seeds[i],
                "smiles": s,
                "valid": ok,
                "similarity": _finite_or_none(sim),
            }
            for i, s, ok, sim in zip(self.seed_index, self.smiles, self.valid, self.similarity)
        ]


@dataclass
class InterpolationResult(GenerationResult):
    """Molecules decoded along a path between the latent codes of two molecules.

    Attributes:
        start / end: the two end-point SMILES.
        t: N path positions in [0, 1] (0 = ``start``'s code, 1 = ``end``'s code).
        method: ``"linear"`` or ``"slerp"``.
    """

    start: str = ""
    end: str = ""
    t: list[float] = field(default_factory=list)
    method: str = "linear"

    def to_records(self) -> list[dict[str, Any]]:
        return [{"t": t, "smiles": s, "valid": ok} for t, s, ok in zip(self.t, self.smiles, self.valid)]


@dataclass(frozen=True)
class OptimizedMolecule:
    """One distinct valid molecule found by :func:`optimize`.

    Attributes:
        smiles: canonical SMILES.
        score: ``score_fn(smiles)``.
        similarity: ECFP4 Tanimoto similarity to the seed molecule.
        objective: what the search maximised: ``score + similarity_weight * similarity``.
    """

    smiles: str
    score: float
    similarity: float
    objective: float


@dataclass
class OptimizationResult:
    """Outcome of the latent-space search around one seed molecule.

    Attributes:
        seed: the seed SMILES as given.
        seed_score: ``score_fn`` of the seed's canonical SMILES.
        molecules: every distinct valid molecule decoded during the search (only the ``top_k`` best
            when :func:`optimize` is given ``top_k``), best objective first.
        n_evaluated: latent codes decoded (population size x iterations).
        n_penalized: decodes that got the penalty (invalid SMILES, or a score that raised or was
            not finite).
        history: best objective among each iteration's population.
        any_improved: whether any molecule decoded during the search scored strictly higher than
            the seed (also when ``molecules`` keeps only the best few; default: judged from
            ``molecules``).
    """

    seed: str
    seed_score: float
    molecules: list[OptimizedMolecule]
    n_evaluated: int
    n_penalized: int
    history: list[float]
    any_improved: bool | None = None

    def __post_init__(self) -> None:
        if self.any_improved is None:
            self.any_improved = bool(self.improved)

    @property
    def best(self) -> OptimizedMolecule | None:
        """The molecule with the highest objective, or None if no decode was valid."""
        return self.molecules[0] if self.molecules else None

    @property
    def improved(self) -> list[OptimizedMolecule]:
        """Molecules scoring strictly higher than the seed, best objective first."""
        return [m for m in self.molecules if m.score > self.seed_score]

    def to_records(self, top_k: int | None = None) -> list[dict[str, Any]]:
        """One dict per molecule (the ``top_k`` best, or all), with the seed's SMILES and score."""
        return [
            {
                "seed": self.seed,
                "seed_score": self.seed_score,
                "rank": rank,
                "smiles": m.smiles,
                "score": m.score,
                "improvement": m.score - self.seed_score,
                "similarity": m.similarity,
                "objective": m.objective,
            }
            for rank, m in enumerate(self.molecules[:top_k], start=1)
        ]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Chemistry metrics (pure functions; the evaluate modules wrap them)
# ---------------------------------------------------------------------------------------------


def tanimoto_similarity(smiles: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Row-wise ECFP4 (2048 bits) Tanimoto similarity of ``smiles[i]`` to ``references[i]``.

    Returns:
        (N,) float64; NaN where either molecule is invalid; 0.0 when both fingerprints are empty
        (RDKit's convention).
    """
    if len(smiles) != len(references):
        raise ValueError(f"{len(smiles)} molecules for {len(references)} references")
    similarity = np.full(len(smiles), np.nan)
    rows = [
        i
        for i, (a, b) in enumerate(zip(smiles, references))
        if chem.is_valid_smiles(a) and chem.is_valid_smiles(b)
    ]
    if rows:
        fa = chem.ecfp4([smiles[i] for i in rows]).astype(bool)
        fb = chem.ecfp4([references[i] for i in rows]).astype(bool)
        intersection = (fa & fb).sum(axis=1)
        union = (fa | fb).sum(axis=1)
        similarity[rows] = np.divide(intersection, union, out=np.zeros(len(rows)), where=union > 0)
    return similarity


def _canonical_valid(smiles: Sequence[str]) -> list[str]:
    """Canonical SMILES of the valid entries, in order (invalid ones dropped)."""
    return [chem.canonicalize(s) for s in smiles if chem.is_valid_smiles(s)]


def fraction_valid(smiles: Sequence[str]) -> float:
    """Fraction of SMILES that RDKit parses and sanitises (0.0 for an empty list)."""
    return sum(chem.is_valid_smiles(s) for s in smiles) / len(smiles) if smiles else 0.0


def fraction_unique(smiles: Sequence[str]) -> float:
    """Distinct canonical SMILES among the valid ones / number of valid ones (0.0 if none is valid)."""
    canonical = _canonical_valid(smiles)
    return len(set(canonical)) / len(canonical) if canonical else 0.0


def canonical_reference(reference: Sequence[str]) -> frozenset[str]:
    """The canonical SMILES of ``reference`` (e.g. the training set), computed once for several
    :func:`fraction_novel` calls.

    Raises:
        InvalidSmilesError: for an invalid reference SMILES (with its row).
    """
    for index, s in enumerate(reference):
        chem.parse_smiles(s, index=index)
    return frozenset(chem.canonicalize(s) for s in reference)


def fraction_novel(smiles: Sequence[str], reference: Sequence[str] | frozenset[str]) -> float:
    """Fraction of the distinct valid molecules whose canonical SMILES is not in ``reference``
    (e.g. the training set; a frozenset from :func:`canonical_reference` is used as it is);
    0.0 if none is valid (MOSES's definition).

    Raises:
        InvalidSmilesError: for an invalid reference SMILES (with its row).
    """
    known = reference if isinstance(reference, frozenset) else canonical_reference(reference)
    distinct = set(_canonical_valid(smiles))
    return len(distinct - known) / len(distinct) if distinct else 0.0


class DistinctCounter:
    """Counts the distinct strings among those added, keeping 8 bytes per distinct string (a 64-bit
    BLAKE2b hash) instead of the strings: about 8 MB for a million distinct molecules. Two strings
    with the same hash count once; among a million distinct strings that happens with probability
    about 3e-8."""

    _MERGE_AT = 65536  # hashes waiting before they are merged into the sorted distinct ones

    def __init__(self) -> None:
        self._distinct = np.zeros(0, dtype=np.uint64)
        self._pending: list[np.ndarray] = []
        self._waiting = 0

    def add(self, strings: Iterable[str]) -> None:
        """Count ``strings`` (any iterable of str)."""
        digests = b"".join(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest() for s in strings)
        if digests:
            self._pending.append(np.frombuffer(digests, dtype=np.uint64))
            self._waiting += len(self._pending[-1])
            if self._waiting >= max(self._MERGE_AT, len(self._distinct)):
                self._merge()

    def _merge(self) -> None:
        if self._pending:
            self._distinct = np.unique(np.concatenate([self._distinct, *self._pending]))
            self._pending, self._waiting = [], 0

    def __len__(self) -> int:
        self._merge()
        return len(self._distinct)


class SetMetrics:
    """Validity, uniqueness and novelty (as :func:`fraction_valid`, :func:`fraction_unique` and
    :func:`fraction_novel`) of molecules seen batch by batch, in memory that grows only with the
    distinct valid molecules (8 bytes each, see :class:`DistinctCounter`).

    Args:
        reference: canonical SMILES of the reference molecules (:func:`canonical_reference`), for
            :attr:`novelty`; None for no novelty.
    """

    def __init__(self, reference: frozenset[str] | None = None) -> None:
        self.reference = reference
        self.molecules = 0
        self.valid = 0
        self._distinct = DistinctCounter()
        self._novel = DistinctCounter()

    def update(self, smiles: Sequence[str], valid: Sequence[bool] | None = None) -> None:
        """Count a batch of decoded SMILES (``valid``: their RDKit flags, computed when None)."""
        valid = _validity(smiles) if valid is None else valid
        canonical = [chem.canonicalize(s) for s, ok in zip(smiles, valid) if ok]
        self.molecules += len(smiles)
        self.valid += len(canonical)
        self._distinct.add(canonical)
        if self.reference is not None:
            self._novel.add(c for c in canonical if c not in self.reference)

    @property
    def validity(self) -> float:
        """Fraction of the molecules that are valid (0.0 for none)."""
        return self.valid / self.molecules if self.molecules else 0.0

    @property
    def uniqueness(self) -> float:
        """Distinct canonical SMILES among the valid molecules / valid molecules (0.0 if none)."""
        return len(self._distinct) / self.valid if self.valid else 0.0

    @property
    def novelty(self) -> float:
        """Fraction of the distinct valid molecules not in the reference (0.0 if none is valid).

        Raises:
            ValueError: without a reference.
        """
        if self.reference is None:
            raise ValueError("novelty needs reference molecules: SetMetrics(reference=...)")
        distinct = len(self._distinct)
        return len(self._novel) / distinct if distinct else 0.0


# ---------------------------------------------------------------------------------------------
# Encoding and decoding
# ---------------------------------------------------------------------------------------------


@contextmanager
def _inference(model: PreTrainedModel) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _as_list(smiles: str | Sequence[str]) -> list[str]:
    return [smiles] if isinstance(smiles, str) else list(smiles)


def encode_posterior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: str | Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior q(z|x) of molecules: N SMILES -> (mu, log-variance), each (N, K, L) float32 on the
    CPU. Each SMILES is first written as the checkpoint's training SMILES were
    (``config.smiles_normalization``).

    Raises:
        InvalidSmilesError: for the first SMILES RDKit rejects (naming it and its position).
        ValueError: for a SMILES with more tokens than the model's ``max_position_embeddings``.
    """
    smiles = _as_list(smiles)
    for index, s in enumerate(smiles):
        chem.parse_smiles(s, index=index)
    scheme = getattr(model.config, "smiles_normalization", None) or "none"
    smiles = [chem.normalize_smiles(s, scheme) for s in smiles]
    limit = model.config.max_position_embeddings
    for index, ids in enumerate(tokenizer(smiles)["input_ids"]):
        if len(ids) > limit:
            raise ValueError(
                f"SMILES at row {index} ({smiles[index]!r}) has {len(ids)} tokens; the model reads at most {limit}"
            )
    means, logvars = [], []
    with _inference(model):
        for part in _batches(len(smiles), batch_size):
            batch = tokenizer(smiles[part], padding=True, return_tensors="pt").to(model.device)
            posterior = model.encode(batch["input_ids"], batch["attention_mask"])
            means.append(posterior.z_mean.float().cpu())
            logvars.append(posterior.z_logvar.float().cpu())
    if not means:
        empty = torch.zeros(0, model.config.num_latents, model.config.latent_size)
        return empty, empty.clone()
    return torch.cat(means), torch.cat(logvars)


def encode_smiles(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: str | Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Posterior means mu of molecules: N SMILES -> (N, K, L) float32 CPU tensor (see
    :func:`encode_posterior`, which also gives the log-variances and raises the same errors)."""
    return encode_posterior(model, tokenizer, smiles, batch_size)[0]


def decode_latents(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    z: torch.Tensor,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> list[str]:
    """Decode latent codes (N, K, L) to N SMILES strings (greedy or beam search, no sampling).

    Args:
        max_new_tokens: longest decode (default: ``DEFAULT_MAX_NEW_TOKENS`` = 256), never more than
            the position table holds (``max_position_embeddings - 1``).
        grammar_constrained: never decode a token that makes the SMILES syntactically impossible
            (:class:`~cmim_hf.smiles_grammar.SmilesGrammarLogitsProcessor`). A code whose decode
            would end with a ring or branch open then decodes up to ``max_new_tokens``.
    """
    max_new_tokens = min(max_new_tokens or DEFAULT_MAX_NEW_TOKENS, model.config.max_position_embeddings - 1)
    processors = (
        LogitsProcessorList([SmilesGrammarLogitsProcessor(tokenizer)]) if grammar_constrained else None
    )
    smiles: list[str] = []
    with _inference(model):
        for part in _batches(len(z), batch_size):
            ids = model.decode_latents(
                z[part],
                num_beams=num_beams,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                logits_processor=processors,
            )
            smiles += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return smiles


def _validity(smiles: Sequence[str]) -> list[bool]:
    return [chem.is_valid_smiles(s) for s in smiles]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


class _NormalStream:
    """The ``total`` standard normal values of one ``torch.randn(total, generator=generator)``
    call, handed out in pieces of any size without drawing them all.

    Torch's CPU generator fills a tensor of 16 values or more with uniforms and turns each group
    of 16 into normals (Box-Muller), redrawing the last 16 when the size is not a multiple of 16.
    Drawing pieces whose sizes are multiples of 16, with whatever is left drawn whole as the last
    piece, therefore gives the same values as the one call (``test_normal_stream_matches_one_draw``
    checks it). At most ``count + 31`` values are drawn at once.
    """

    def __init__(self, total: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> None:
        self.left = total
        self.generator = generator
        self.dtype = dtype
        self.buffer = torch.zeros(0, dtype=dtype)

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` values, (count,) of ``dtype``."""
        if count > len(self.buffer) + self.left:
            raise ValueError(f"{count} values asked for, {len(self.buffer) + self.left} left")
        if count > len(self.buffer):
            size = min(self.left, -(-(count - len(self.buffer)) // 16) * 16)
            if self.left - size < 16:  # a last piece under 16 values would be drawn another way
                size = self.left
            piece = torch.randn(size, generator=self.generator, dtype=self.dtype)
            self.left -= size
            self.buffer = torch.cat([self.buffer, piece]) if len(self.buffer) else piece
        values, self.buffer = self.buffer[:count], self.buffer[count:].clone()
        return values


def _concat_results(pieces: list[Any], empty: Any) -> Any:
    """One result from per-batch results of the same type (lists joined, tensors and arrays
    concatenated, other fields taken from the first piece); ``empty`` when there are none."""
    if not pieces:
        return empty
    joined = {}
    for item in dataclasses.fields(pieces[0]):
        values = [getattr(piece, item.name) for piece in pieces]
        if isinstance(values[0], torch.Tensor):
            joined[item.name] = torch.cat(values)
        elif isinstance(values[0], np.ndarray):
            joined[item.name] = np.concatenate(values)
        elif isinstance(values[0], list) and item.name != "seeds":
            joined[item.name] = [value for part in values for value in part]
        else:
            joined[item.name] = values[0]
    return type(pieces[0])(**joined)


# ---------------------------------------------------------------------------------------------
# Reconstruction, sampling, interpolation
# ---------------------------------------------------------------------------------------------


def reconstruct(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: str | Sequence[str],
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> ReconstructionResult:
    """Encode molecules (z = mu) and decode them back (``grammar_constrained``: as :func:`decode_latents`).

    Raises:
        InvalidSmilesError: for an invalid input SMILES (naming it and its position).
    """
    inputs = _as_list(smiles)
    z = encode_smiles(model, tokenizer, inputs, batch_size)
    decoded = decode_latents(model, tokenizer, z, num_beams, max_new_tokens, batch_size, grammar_constrained)
    valid = _validity(decoded)
    exact = [ok and chem.canonicalize(d) == chem.canonicalize(i) for d, i, ok in zip(decoded, inputs, valid)]
    return ReconstructionResult(
        smiles=decoded,
        valid=valid,
        latents=z,
        inputs=inputs,
        exact=exact,
        similarity=tanimoto_similarity(decoded, inputs),
    )


AGGREGATE_POSTERIOR_FILE = "aggregate_posterior.safetensors"


@dataclass
class AggregatePosterior:
    """The aggregate posterior of a checkpoint: a Gaussian N(mean, covariance) fitted to the posterior
    means of ``molecules`` training molecules, stored next to the weights as
    ``aggregate_posterior.safetensors``. Codes drawn from it lie where real codes lie; codes drawn
    from N(0, I) mostly do not (the latent uses a few directions at a smaller scale).

    mean: (D,) float64, D = K * L; covariance: (D, D) float64.
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    molecules: int
    source: str = ""

    def sample(self, n: int, shape: tuple[int, int], generator: torch.Generator, scale: float = 1.0):
        """``n`` codes (n, K, L) float32 from N(mean, scale^2 covariance)."""
        draws = sample_gaussian(self.mean, gaussian_sampling_factor(self.covariance), n, generator, scale)
        return draws.reshape(n, *shape)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/aggregate_posterior.safetensors`` (through a temporary file and a rename)."""
        from safetensors.torch import save_file

        path = Path(folder) / AGGREGATE_POSTERIOR_FILE
        tensors = {
            "mean": self.mean.double().contiguous(),
            "covariance": self.covariance.double().contiguous(),
        }
        metadata = {"molecules": str(self.molecules), "source": self.source}
        with atomic_output(path, wait=True) as partial:
            save_file(tensors, str(partial), metadata=metadata)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(partial, 0o666 & ~umask)  # like any file the user writes, not safetensors' mode
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> AggregatePosterior | None:
        """The aggregate posterior stored in a checkpoint folder, or None if it has none.

        Raises:
            CheckpointError: for an unreadable file.
        """
        from safetensors import SafetensorError, safe_open

        path = Path(folder) / AGGREGATE_POSTERIOR_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                mean, covariance = handle.get_tensor("mean"), handle.get_tensor("covariance")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None
        return cls(mean, covariance, int(metadata.get("molecules", 0)), metadata.get("source", ""))


def fit_aggregate_posterior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    smiles: Sequence[str],
    source: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> AggregatePosterior:
    """Fit N(mean, covariance) to the posterior means (z = mu) of valid training molecules.

    Raises:
        InvalidSmilesError / ValueError: as :func:`encode_smiles` (filter the molecules first).
    """
    codes = encode_smiles(model, tokenizer, smiles, batch_size)
    mean, covariance = fit_gaussian(codes)
    return AggregatePosterior(mean, covariance, len(codes), source)


def sample_prior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    scale: float = 1.0,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    prior: AggregatePosterior | None = None,
    grammar_constrained: bool = False,
) -> GenerationResult:
    """Decode ``n`` codes drawn from ``prior`` (an :class:`AggregatePosterior`, with its covariance
    scaled by ``scale^2``) or, when it is None, from N(0, scale^2 I). ``scale`` < 1 trades diversity
    for validity; ``grammar_constrained``: as :func:`decode_latents`. The same molecules for any
    ``batch_size``; :func:`iter_sample_prior` gives them batch by batch."""
    pieces = iter_sample_prior(
        model, tokenizer, n, scale, seed, num_beams, max_new_tokens, batch_size, prior, grammar_constrained
    )
    shape = (model.config.num_latents, model.config.latent_size)
    return _concat_results(list(pieces), GenerationResult([], [], torch.zeros(0, *shape)))


def iter_sample_prior(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    scale: float = 1.0,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    prior: AggregatePosterior | None = None,
    grammar_constrained: bool = False,
) -> Iterator[GenerationResult]:
    """:func:`sample_prior` one batch at a time: a :class:`GenerationResult` for each ``batch_size``
    codes, drawn just before they are decoded, so memory does not grow with ``n``. Together the
    batches are :func:`sample_prior`'s molecules and codes, whatever ``batch_size``.

    Raises:
        ValueError: for a negative ``n`` or ``scale``, or a prior of another dimension (at the call).
    """
    if n < 0 or scale < 0:
        raise ValueError(f"n and scale must be non-negative, got n={n}, scale={scale}")
    shape = (model.config.num_latents, model.config.latent_size)
    dims = shape[0] * shape[1]
    if prior is not None and prior.mean.numel() != dims:
        raise ValueError(f"the aggregate posterior has {prior.mean.numel()} dimensions, the model {shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def batches() -> Iterator[GenerationResult]:
        if prior is None:
            noise = _NormalStream(n * dims, _generator(seed), torch.float32)
        else:  # as AggregatePosterior.sample: float64 standard normals through the Cholesky factor
            mean, factor = prior.mean.double(), gaussian_sampling_factor(prior.covariance).double()
            noise = _NormalStream(n * dims, _generator(seed), torch.float64)
        for part in _batches(n, batch_size):
            count = part.stop - part.start
            if prior is None:
                z = scale * noise.take(count * dims).reshape(count, *shape)
            else:
                draws = noise.take(count * dims).reshape(count, dims)
                z = (mean + scale * draws @ factor.T).float().reshape(count, *shape)
            decoded = decode_latents(
                model, tokenizer, z, num_beams, max_new_tokens, batch_size, grammar_constrained
            )
            yield GenerationResult(smiles=decoded, valid=_validity(decoded), latents=z)

    return batches()


def sample_neighbourhood(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: str | Sequence[str],
    n_per_seed: int,
    radius: float = DEFAULT_RADIUS,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> NeighbourhoodResult:
    """Decode ``n_per_seed`` codes mu(seed) + radius * N(0, I) around each seed molecule.

    Molecules come grouped by seed (all samples of seed 0 first); ``grammar_constrained``: as
    :func:`decode_latents`. The same molecules for any ``batch_size``;
    :func:`iter_sample_neighbourhood` gives them batch by batch.

    Raises:
        InvalidSmilesError: for an invalid seed SMILES (naming it and its position).
    """
    pieces = iter_sample_neighbourhood(
        model,
        tokenizer,
        seeds,
        n_per_seed,
        radius,
        seed,
        num_beams,
        max_new_tokens,
        batch_size,
        grammar_constrained,
    )
    shape = (model.config.num_latents, model.config.latent_size)
    empty = NeighbourhoodResult([], [], torch.zeros(0, *shape), seeds=_as_list(seeds))
    return _concat_results(list(pieces), empty)


def iter_sample_neighbourhood(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: str | Sequence[str],
    n_per_seed: int,
    radius: float = DEFAULT_RADIUS,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> Iterator[NeighbourhoodResult]:
    """:func:`sample_neighbourhood` one batch at a time: a :class:`NeighbourhoodResult` (every seed,
    ``seed_index`` into them) for each ``batch_size`` molecules, so memory grows with the number
    of seeds but not with ``n_per_seed``. Together the batches are :func:`sample_neighbourhood`'s
    result, whatever ``batch_size``.

    Raises:
        InvalidSmilesError: for an invalid seed SMILES (at the call).
    """
    if n_per_seed < 0 or radius < 0:
        raise ValueError(f"n_per_seed and radius must be non-negative, got {n_per_seed}, {radius}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seed_smiles = _as_list(seeds)
    mu = encode_smiles(model, tokenizer, seed_smiles, batch_size)  # (S, K, L)
    shape, dims = mu.shape[1:], mu[0].numel() if len(mu) else 0

    def batches() -> Iterator[NeighbourhoodResult]:
        # the noise of all S * n codes, seed-major, in the order one (S, n, K, L) draw gives it
        noise = _NormalStream(len(seed_smiles) * n_per_seed * dims, _generator(seed), torch.float32)
        for part in _batches(len(seed_smiles) * n_per_seed, batch_size):
            seed_index = [j // n_per_seed for j in range(part.start, part.stop)]
            count = len(seed_index)
            z = mu[seed_index] + radius * noise.take(count * dims).reshape(count, *shape)
            decoded = decode_latents(
                model, tokenizer, z, num_beams, max_new_tokens, batch_size, grammar_constrained
            )
            yield NeighbourhoodResult(
                smiles=decoded,
                valid=_validity(decoded),
                latents=z,
                seeds=seed_smiles,
                seed_index=seed_index,
                similarity=tanimoto_similarity(decoded, [seed_smiles[i] for i in seed_index]),
            )

    return batches()


def interpolation_path(
    z_start: torch.Tensor, z_end: torch.Tensor, t: torch.Tensor, method: InterpolationMethod = "linear"
) -> torch.Tensor:
    """Points between two codes: (K, L), (K, L), t (N,) -> (N, K, L).

    ``"slerp"`` moves along the great circle between the flattened codes (Shoemake 1985; the
    usual choice for Gaussian latents) and falls back to linear for (anti)parallel codes.
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}")
    a, b = z_start.double().flatten(), z_end.double().flatten()  # (K*L,)
    t = t.double().unsqueeze(1)  # (N, 1)
    cos_omega = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos_omega.clamp(-1.0, 1.0))
    if method == "linear" or torch.sin(omega).abs() < 1e-6:
        path = (1 - t) * a + t * b
    else:
        path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return path.reshape(-1, *z_start.shape).to(z_start.dtype)


def interpolate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    start: str,
    end: str,
    steps: int = 10,
    method: InterpolationMethod = "linear",
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> InterpolationResult:
    """Decode ``steps`` evenly spaced points (end points included) between the codes mu(start)
    and mu(end), along a straight line (``"linear"``) or a great circle (``"slerp"``);
    ``grammar_constrained``: as :func:`decode_latents`.

    Raises:
        InvalidSmilesError: if ``start`` or ``end`` is invalid.
    """
    pieces = iter_interpolate(
        model,
        tokenizer,
        start,
        end,
        steps,
        method,
        num_beams,
        max_new_tokens,
        batch_size,
        grammar_constrained,
    )
    return _concat_results(list(pieces), None)


def iter_interpolate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    start: str,
    end: str,
    steps: int = 10,
    method: InterpolationMethod = "linear",
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
) -> Iterator[InterpolationResult]:
    """:func:`interpolate` one batch at a time: an :class:`InterpolationResult` for each
    ``batch_size`` points of the path (its ``t`` those points' positions). Only the positions
    (4 bytes a step) are computed for the whole path at once, as one ``torch.linspace``.

    Raises:
        ValueError / InvalidSmilesError: as :func:`interpolate` (at the call).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the two end points), got {steps}")
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mu = encode_smiles(model, tokenizer, [start, end], batch_size)
    t = torch.linspace(0.0, 1.0, steps)

    def batches() -> Iterator[InterpolationResult]:
        for part in _batches(steps, batch_size):
            z = interpolation_path(mu[0], mu[1], t[part], method)
            decoded = decode_latents(
                model, tokenizer, z, num_beams, max_new_tokens, batch_size, grammar_constrained
            )
            yield InterpolationResult(
                smiles=decoded,
                valid=_validity(decoded),
                latents=z,
                start=start,
                end=end,
                t=t[part].tolist(),
                method=method,
            )

    return batches()


# ---------------------------------------------------------------------------------------------
# Property-guided optimisation
# ---------------------------------------------------------------------------------------------


def descriptor_score(name: str) -> Callable[[str], float]:
    """A scoring function returning one RDKit descriptor (e.g. ``"qed"``, ``"MolLogP"``, ``"TPSA"``;
    see :func:`cmim_hf.chem.descriptor_names`; the name is matched case-insensitively)."""
    names = chem.descriptor_names()
    matches = [i for i, n in enumerate(names) if n.lower() == name.lower()]
    if not matches:
        raise ValueError(f"unknown RDKit descriptor {name!r}; e.g. qed, MolLogP, TPSA, MolWt")
    column = names[matches[0]]

    def score(smiles: str) -> float:
        return chem.rdkit_descriptor(smiles, column)

    score.__name__ = column
    return score


def _safe_score(score_fn: Callable[[str], float], smiles: str) -> float | None:
    """``score_fn(smiles)`` as a float, or None if it raises or is not finite."""
    try:
        value = float(score_fn(smiles))
    except Exception:  # a user scoring function failing on one decode must not stop the search
        return None
    return value if math.isfinite(value) else None


def optimize(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: str | Sequence[str],
    score_fn: Callable[[str], float],
    iterations: int = 10,
    population_size: int | None = None,
    sigma: float = 0.5,
    similarity_weight: float = 0.0,
    invalid_penalty: float = -1000.0,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
    top_k: int | None = None,
) -> list[OptimizationResult]:
    """Search the latent space around each seed molecule for molecules with a higher score.

    For each seed, CMA-ES starts at mu(seed) with step size ``sigma`` (prior units) and, for
    ``iterations`` rounds, decodes a population of codes (one batch) and maximises
    ``score_fn(smiles) + similarity_weight * tanimoto(smiles, seed)``. Decodes that are invalid,
    or whose score raises or is not finite, get ``invalid_penalty`` (CMA-ES only uses ranks, so
    any value below the valid objectives works).

    Args:
        score_fn: SMILES (canonical) -> float, higher is better, e.g. :func:`descriptor_score`.
        population_size: codes per round (default: CMA-ES's 4 + 3 ln(K * L)).
        seed: seeds the CMA-ES sampler (seed i uses ``seed + i``); same seed, same result.
        grammar_constrained: as :func:`decode_latents`.
        top_k: keep only the ``top_k`` best distinct molecules of each seed (and score at most
            ``SCORE_CACHE_SIZE`` recent distinct molecules from memory), so memory does not grow
            with ``iterations``; None (default) keeps every distinct molecule. With a deterministic
            ``score_fn`` the search and the best molecules are the same either way.

    Returns:
        One :class:`OptimizationResult` per seed molecule (:func:`iter_optimize` yields them one
        at a time).

    Raises:
        InvalidSmilesError: for an invalid seed SMILES (naming it and its position).
        Exception: whatever ``score_fn`` raises on a seed molecule.
    """
    return list(
        iter_optimize(
            model,
            tokenizer,
            seeds,
            score_fn,
            iterations,
            population_size,
            sigma,
            similarity_weight,
            invalid_penalty,
            seed,
            num_beams,
            max_new_tokens,
            batch_size,
            grammar_constrained,
            top_k,
        )
    )


# Distinct molecules whose score :func:`iter_optimize` remembers when it keeps only the best few;
# a molecule decoded again after that many others is scored again.
SCORE_CACHE_SIZE = 65536


def iter_optimize(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: str | Sequence[str],
    score_fn: Callable[[str], float],
    iterations: int = 10,
    population_size: int | None = None,
    sigma: float = 0.5,
    similarity_weight: float = 0.0,
    invalid_penalty: float = -1000.0,
    seed: int = 0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    grammar_constrained: bool = False,
    top_k: int | None = None,
) -> Iterator[OptimizationResult]:
    """:func:`optimize`, yielding each seed's :class:`OptimizationResult` when its search ends.

    Raises:
        ValueError / InvalidSmilesError: as :func:`optimize` (at the call, for the seeds).
    """
    if iterations < 1 or sigma <= 0:
        raise ValueError(f"iterations must be >= 1 and sigma > 0, got {iterations}, {sigma}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be positive or None, got {top_k}")
    seed_smiles = _as_list(seeds)
    mu = encode_smiles(model, tokenizer, seed_smiles, batch_size)  # (S, K, L); validates the seeds

    def searches() -> Iterator[OptimizationResult]:
        for index, (seed_text, seed_code) in enumerate(zip(seed_smiles, mu)):
            yield _optimize_one(
                model,
                tokenizer,
                seed_text,
                seed_code,
                score_fn,
                iterations,
                population_size,
                sigma,
                similarity_weight,
                invalid_penalty,
                seed + index,
                (num_beams, max_new_tokens, batch_size, grammar_constrained),
                top_k,
            )

    return searches()


def _optimize_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seed_text: str,
    seed_code: torch.Tensor,
    score_fn: Callable[[str], float],
    iterations: int,
    population_size: int | None,
    sigma: float,
    similarity_weight: float,
    invalid_penalty: float,
    rng_seed: int,
    decoding: tuple[int, int | None, int, bool],
    top_k: int | None,
) -> OptimizationResult:
    """The CMA-ES search around one seed molecule (see :func:`optimize`)."""
    import cma

    canonical_seed = chem.canonicalize(seed_text)
    seed_score = float(score_fn(canonical_seed))
    rng = np.random.default_rng(rng_seed)
    options: dict[str, Any] = {
        "seed": np.nan,  # leave numpy's global RNG alone: sampling goes through `randn`
        "randn": lambda lam, dim, rng=rng: rng.standard_normal((lam, dim)),
        "verbose": -9,
        "verb_disp": 0,
        "verb_log": 0,
    }
    if population_size is not None:
        options["popsize"] = population_size
    strategy = cma.CMAEvolutionStrategy(seed_code.double().flatten().numpy(), sigma, options)
    scored: dict[str, OptimizedMolecule | None] = {}  # canonical SMILES -> molecule (None: penalized)
    kept: dict[str, OptimizedMolecule] = {}  # every distinct valid molecule, or the top_k best
    any_improved = False
    n_evaluated = n_penalized = 0
    history = []
    for _ in range(iterations):
        candidates = strategy.ask()
        z = torch.as_tensor(np.stack(candidates), dtype=torch.float32).reshape(-1, *seed_code.shape)
        decoded = decode_latents(model, tokenizer, z, *decoding)
        objectives = []
        for smiles in decoded:
            molecule = _score_decode(smiles, canonical_seed, score_fn, similarity_weight, scored)
            if top_k is not None and len(scored) > SCORE_CACHE_SIZE:
                del scored[next(iter(scored))]  # the oldest
            n_penalized += molecule is None
            objectives.append(invalid_penalty if molecule is None else molecule.objective)
            if molecule is not None:
                any_improved = any_improved or molecule.score > seed_score
                _keep_best(kept, molecule, top_k)
        n_evaluated += len(decoded)
        history.append(max(objectives))
        strategy.tell(candidates, [-o for o in objectives])  # CMA-ES minimises
    molecules = sorted(kept.values(), key=_rank_key)
    return OptimizationResult(
        seed_text, seed_score, molecules, n_evaluated, n_penalized, history, any_improved=any_improved
    )


def _rank_key(molecule: OptimizedMolecule) -> tuple[float, str]:
    return (-molecule.objective, molecule.smiles)


def _keep_best(kept: dict[str, OptimizedMolecule], molecule: OptimizedMolecule, top_k: int | None) -> None:
    """Add ``molecule`` to ``kept`` (distinct canonical SMILES), then drop the worst beyond ``top_k``."""
    if molecule.smiles in kept:
        return
    kept[molecule.smiles] = molecule
    if top_k is not None and len(kept) > top_k:
        del kept[max(kept.values(), key=_rank_key).smiles]


def _score_decode(
    smiles: str,
    canonical_seed: str,
    score_fn: Callable[[str], float],
    similarity_weight: float,
    found: dict[str, OptimizedMolecule | None],
) -> OptimizedMolecule | None:
    """Score one decode, cached by canonical SMILES in ``found``; None if it gets the penalty."""
    if not chem.is_valid_smiles(smiles):
        return None
    canonical = chem.canonicalize(smiles)
    if canonical not in found:
        score = _safe_score(score_fn, canonical)
        if score is None:
            found[canonical] = None
        else:
            similarity = float(tanimoto_similarity([canonical], [canonical_seed])[0])
            objective = score + similarity_weight * similarity
            found[canonical] = OptimizedMolecule(canonical, score, similarity, objective)
    return found[canonical]
