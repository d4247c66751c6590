"""Statistics of latent codes across molecules, as pure tensor functions.

- Active units (Burda et al. 2016): the number of latent dimensions whose variance of E[z|x]
  (the posterior mean mu) across molecules exceeds a threshold (0.01 by default).
- Participation ratio: ``(sum_i lambda_i)^2 / sum_i lambda_i^2`` over the eigenvalues of the
  covariance of mu: the effective number of directions the codes spread over (1 when all variance
  lies on one axis, D when it is spread evenly over D orthogonal directions).

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


def participation_ratio(z_mean: Tensor) -> float:
    """Effective number of directions of ``z_mean`` (N, ...): ``tr(C)^2 / tr(C^2)`` of the covariance C
    (0 for identical codes)."""
    centred = _flat_float64(z_mean)
    centred = centred - centred.mean(dim=0)
    covariance = centred.T @ centred / (centred.shape[0] - 1)
    trace_squared = (covariance * covariance).sum()  # tr(C^2) = ||C||_F^2 for symmetric C
    return 0.0 if trace_squared == 0 else float(torch.trace(covariance) ** 2 / trace_squared)


def latent_activity(z_mean: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> dict[str, float]:
    """``{"active_units", "participation_ratio", "latent_dims"}`` of ``z_mean`` (N, ...)."""
    return {
        "active_units": active_units(z_mean, threshold),
        "participation_ratio": participation_ratio(z_mean),
        "latent_dims": int(z_mean[0].numel()),
    }


__all__ = ["ACTIVE_UNIT_THRESHOLD", "active_units", "latent_activity", "participation_ratio"]
