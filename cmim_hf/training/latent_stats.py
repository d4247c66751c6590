"""Statistics of latent codes across molecules, as pure tensor functions.

- Active units (Burda et al. 2016): the number of latent dimensions whose variance of E[z|x]
  (the posterior mean mu) across molecules exceeds a threshold (0.01 by default).
- Active directions: the same count along the principal axes of the codes (eigenvalues of the
  covariance of mu above the threshold), which no rotation of the latent space changes.
- Participation ratio: ``(sum_i lambda_i)^2 / sum_i lambda_i^2`` over the eigenvalues of the
  covariance of mu: the effective number of directions the codes spread over (1 when all variance
  lies on one axis, D when it is spread evenly over D orthogonal directions).

- The aggregate posterior: a Gaussian N(m, C) fitted to the codes of the training molecules, the
  distribution that :func:`cmim_hf.generation.sample_prior` draws from by default (codes drawn
  from N(0, I) lie far off the manifold the codes actually occupy).

Codes are ``(N, K, L)`` or ``(N, D)``; every function flattens all dimensions but the first.
"""

from __future__ import annotations

import torch
from torch import Tensor

ACTIVE_UNIT_THRESHOLD = 0.01


def _flat_float64(z_mean: Tensor) -> Tensor:
    if z_mean.dim() < 2 or z_mean.shape[0] < 2:
        raise ValueError(f"need codes of at least 2 molecules as (N, ...), got shape {tuple(z_mean.shape)}")
    return z_mean.detach().reshape(z_mean.shape[0], -1).double()


def active_units(z_mean: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of dimensions of ``z_mean`` (N, ...) whose variance across the N molecules
    (unbiased) exceeds ``threshold``."""
    return int((_flat_float64(z_mean).var(dim=0) > threshold).sum())


def fit_gaussian(codes: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) (float64) of ``codes`` (N, ...) flattened to D."""
    flat = _flat_float64(codes)
    mean = flat.mean(dim=0)
    centred = flat - mean
    return mean, centred.T @ centred / (flat.shape[0] - 1)


def active_directions(z_mean: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of principal directions of ``z_mean`` (N, ...) whose variance across molecules exceeds
    ``threshold``: the eigenvalues of the covariance above it. Unlike :func:`active_units` it does not
    depend on the axes (a code spread over a few oblique directions counts those few)."""
    eigenvalues = torch.linalg.eigvalsh(fit_gaussian(z_mean)[1])
    return int((eigenvalues > threshold).sum())


def participation_ratio(z_mean: Tensor) -> float:
    """Effective number of directions of ``z_mean`` (N, ...): ``tr(C)^2 / tr(C^2)`` of the covariance C
    (0 for identical codes)."""
    covariance = fit_gaussian(z_mean)[1]
    trace_squared = (covariance * covariance).sum()  # tr(C^2) = ||C||_F^2 for symmetric C
    return 0.0 if trace_squared == 0 else float(torch.trace(covariance) ** 2 / trace_squared)


def latent_activity(z_mean: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> dict[str, float]:
    """``{"active_units", "active_directions", "participation_ratio", "latent_dims"}`` of ``z_mean``."""
    return {
        "active_units": active_units(z_mean, threshold),
        "active_directions": active_directions(z_mean, threshold),
        "participation_ratio": participation_ratio(z_mean),
        "latent_dims": int(z_mean[0].numel()),
    }


# ---------------------------------------------------------------------------------------------
# The aggregate posterior: a Gaussian fitted to the codes of the training molecules
# ---------------------------------------------------------------------------------------------


def gaussian_sampling_factor(covariance: Tensor, jitter: float = 1e-6) -> Tensor:
    """A (D, D) lower-triangular L with L L^T = covariance (+ ``jitter`` * I when it is singular,
    e.g. fitted to fewer molecules than dimensions or with dead dimensions)."""
    covariance = covariance.double()
    factor, info = torch.linalg.cholesky_ex(covariance)
    if info != 0:
        eye = torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
        factor = torch.linalg.cholesky(covariance + jitter * eye)
    return factor


def sample_gaussian(
    mean: Tensor, factor: Tensor, n: int, generator: torch.Generator, scale: float = 1.0
) -> Tensor:
    """``n`` draws (n, D) float32 of N(mean, scale^2 L L^T) with ``factor`` L from
    :func:`gaussian_sampling_factor`; the standard normals come from ``generator``."""
    noise = torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64)
    return (mean.double() + scale * noise @ factor.double().T).float()


__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "active_directions",
    "active_units",
    "fit_gaussian",
    "gaussian_sampling_factor",
    "latent_activity",
    "participation_ratio",
    "sample_gaussian",
]
