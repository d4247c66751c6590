"""benchmarks/dense_latent.py: the neighbourhood summary and the choice of the radius, by hand."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import dense_latent  # noqa: E402


@pytest.fixture(scope="module")
def grid():
    return dense_latent


def test_neighbourhood_summary_counts_valid_unique_and_similarity(grid) -> None:
    result = SimpleNamespace(
        smiles=["CCO", "CCO", "CCN", "C1CC", "c1ccccc1", "c1ccccc1O"],
        valid=[True, True, True, False, True, True],
        seed_index=[0, 0, 0, 1, 1, 1],
        similarity=np.array([1.0, 1.0, 0.2, np.nan, 0.5, 0.3]),
    )
    summary = grid.neighbourhood_at(result, n_seeds=2)
    assert summary["valid"] == pytest.approx(5 / 6)
    assert summary["unique"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # distinct valid / samples, per seed
    assert summary["tanimoto_to_seed"] == pytest.approx(3.0 / 5)


def test_radius_in_band_is_closest_to_the_middle(grid) -> None:
    rows = {r: {"tanimoto_to_seed": t} for r, t in ((0.1, 0.8), (0.2, 0.65), (0.3, 0.5), (0.5, 0.3))}
    assert grid.radius_in_band(rows) == 0.3
    assert grid.radius_in_band({0.1: {"tanimoto_to_seed": 0.9}}) is None
