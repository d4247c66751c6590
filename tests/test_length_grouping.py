"""benchmarks/length_grouping.py: padding of random vs length-grouped pre-training batches."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "length_grouping.py"


def load_script():
    spec = importlib.util.spec_from_file_location("length_grouping", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_padding_fraction_hand_computed() -> None:
    script = load_script()
    masks = [torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]), torch.tensor([[1, 1], [1, 1]])]
    assert script.padding_fraction(masks) == pytest.approx(3 / 12)
    assert script.padding_fraction([]) == 0.0


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
    assert load_script().main([*argv, "--threads", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    random, grouped = results["random"], results["group_by_length"]
    assert random["padding_fraction"] > 0.1  # MOSES lengths vary: ~20% of random slots are padding
    assert grouped["padding_fraction"] < 0.03
    assert grouped["mean_padded_length"] < random["mean_padded_length"]
    assert random["molecules_per_s"] > 0 and grouped["molecules_per_s"] > 0
