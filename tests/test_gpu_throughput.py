"""benchmarks/gpu_throughput.py in its reduced CPU mode: every reported field, with fp32 and with
bf16 autocast (the GPU run's settings, on the CPU)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import gpu_throughput  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    return gpu_throughput


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_smoke_reports_throughput_and_mfu(bench, precision: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = bench.main(["--cpu-smoke", "--precision", precision, "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["precision"] == precision and result["attention"] == "sdpa" and result["timed_steps"] == 3
    assert result["molecules_per_s"] > 0 and result["tokens_per_s"] > result["molecules_per_s"]
    assert result["gflop_per_step"] > 0 and 0 < result["mfu"] <= 1
    assert result["peak_source"].startswith("measured") and math.isfinite(result["last_loss"])


def test_known_gpus_have_a_peak(bench) -> None:
    import torch

    assert bench.peak_flops(torch.device("cpu"), "bf16", 100.0, 0.1) == {
        "flops": 1e14,
        "source": "--peak-tflops",
    }
    assert all(set(peaks) == {"bf16", "fp32"} for peaks in bench.PEAK_TFLOPS.values())
