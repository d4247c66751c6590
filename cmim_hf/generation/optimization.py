"""Property-guided optimisation: CMA-ES (the ``cma`` package) in the latent space around seed
molecules; decodes RDKit rejects or the score cannot score get a penalty instead of stopping it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cmim_hf import chem
from cmim_hf.generation import sampling
from cmim_hf.generation.metrics import tanimoto_similarity
from cmim_hf.generation.results import OptimizationResult, OptimizedMolecule
from cmim_hf.generation.sampling import DEFAULT_BATCH_SIZE, _as_list, encode_smiles, one_call_form


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
    sigma: float | None = None,
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
    if sigma is None:
        sigma = model.config.exploration_radius
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


@one_call_form(iter_optimize)
def optimize(pieces: list[OptimizationResult], arguments: dict[str, Any]) -> list[OptimizationResult]:
    """Search the latent space around each seed molecule for molecules with a higher score.

    For each seed, CMA-ES starts at mu(seed) with step size ``sigma`` (prior units; None: the
    checkpoint's ``config.exploration_radius``, 2 posterior floor stds) and, for
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
    return pieces


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
        decoded = sampling.decode_latents(  # looked up at call time: tests replace it
            model, tokenizer, z, *decoding
        )
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
