"""What the generation functions return: the decoded SMILES with one RDKit validity flag each, and
what each kind of result adds (reconstruction metrics, seed similarities, optimisation scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cmim_hf.generation.metrics import fraction_valid


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
