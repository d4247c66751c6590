"""The generative figures of a cMIM checkpoint: reconstruction, prior and neighbourhood sampling,
and how many latent directions its codes use (one protocol for the comparison and the card)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.generation.metrics import fraction_novel, fraction_unique
from cmim_hf.generation.sampling import (
    AggregatePosterior,
    encode_smiles,
    reconstruct,
    sample_neighbourhood,
    sample_prior,
)
from cmim_hf.training.latent_stats import latent_activity


def generative_metrics(
    model_dir: str | os.PathLike,
    held_out: Sequence[str],
    n_samples: int = 1000,
    radius: float = 0.5,
    seed: int = 0,
    novelty_reference: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Greedy reconstruction (z = mu) of ``held_out``; validity and uniqueness of ``n_samples`` prior
    samples, from the checkpoint's aggregate posterior (its default sampler) and from N(0, I);
    validity of 10 samples around each of the first ``n_samples // 10`` held-out molecules;
    active units and participation ratio of the held-out codes; novelty of the prior samples
    against ``novelty_reference`` (e.g. the training molecules) when given."""
    model, tokenizer = load_model_for_generation(str(model_dir))
    held_out = list(held_out)
    rec = reconstruct(model, tokenizer, held_out)
    aggregate = AggregatePosterior.load(model_dir)
    prior = sample_prior(model, tokenizer, n_samples, seed=seed, prior=aggregate)
    standard = sample_prior(model, tokenizer, n_samples, seed=seed) if aggregate else prior
    seeds = held_out[: max(1, n_samples // 10)]
    neighbours = sample_neighbourhood(model, tokenizer, seeds, n_per_seed=10, radius=radius, seed=seed)
    metrics: dict[str, Any] = {
        "reconstruction_molecules": len(held_out),
        "reconstruction_exact_match": sum(rec.exact) / len(rec.exact),
        "reconstruction_validity": rec.validity,
        "reconstruction_mean_tanimoto": float(np.nanmean(rec.similarity)),
        "prior_samples": len(prior.smiles),
        "prior": "aggregate posterior" if aggregate else "standard normal",
        "prior_validity": prior.validity,
        "prior_uniqueness": fraction_unique(prior.smiles),
        "standard_prior_validity": standard.validity,
        "standard_prior_uniqueness": fraction_unique(standard.smiles),
        "neighbourhood_samples": len(neighbours.smiles),
        "neighbourhood_radius": radius,
        "neighbourhood_validity": neighbours.validity,
        **latent_activity(encode_smiles(model, tokenizer, held_out)),
    }
    if novelty_reference is not None:
        metrics["prior_novelty"] = fraction_novel(prior.smiles, novelty_reference)
        metrics["standard_prior_novelty"] = fraction_novel(standard.smiles, novelty_reference)
    return metrics


__all__ = ["generative_metrics"]
