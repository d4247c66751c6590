"""benchmarks/length_grouping.py: padding of random vs length-grouped pre-training batches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import length_grouping  # noqa: E402


def test_padding_fraction_hand_computed() -> None:
    masks = [torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]), torch.tensor([[1, 1], [1, 1]])]
    assert length_grouping.padding_fraction(masks) == pytest.approx(3 / 12)
    assert length_grouping.padding_fraction([]) == 0.0


def test_grouped_batches_pad_less_than_random_ones(tmp_path) -> None:
    out = tmp_path / "grouping.json"
    argv = [
        "--molecules",
        "1600",
        "--batch-size",
        "32",
        "--padding-batches",
        "50",
        "--steps",
        "2",
        "--warmup",
        "0",
    ]
    assert length_grouping.main([*argv, "--threads", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    random, grouped = results["random"], results["group_by_length"]
    assert random["padding_fraction"] > 0.1  # MOSES lengths vary: ~20% of random slots are padding
    assert grouped["padding_fraction"] < 0.03
    assert grouped["mean_padded_length"] < random["mean_padded_length"]
    assert random["molecules_per_s"] > 0 and grouped["molecules_per_s"] > 0
