"""Smoke test of benchmarks/train_throughput.py: tiny models, a few steps, all reported fields."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import train_throughput  # noqa: E402


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return train_throughput


TINY = [
    "--hidden-size", "32", "--layers", "1", "--heads", "2", "--ffn-dim", "64",
    "--batch-size", "4", "--steps", "2", "--warmup", "1", "--threads", "1",
    "--peak-size", "128", "--peak-seconds", "0.05",
]  # fmt: skip


def test_main_reports_all_fields(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "result.json"
    results = bench.main([*TINY, "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    printed = capsys.readouterr().out
    assert "ratio cMIM/BART" in printed and "matmul peak" in printed and "GFLOP/s" in printed

    assert results["config"]["threads"] == 1
    assert results["data"]["timed_molecules_per_model"] == 2 * 4
    for name in ("cmim", "bart"):
        r = results[name]
        assert len(r["step_s"]) == 2 and all(t > 0 for t in r["step_s"])
        assert r["molecules_per_s"] == pytest.approx(8 / sum(r["step_s"]))
        assert r["parameters"] > 0
        assert r["flops_per_step_mean"] > 0 and r["gflops_per_s"] > 0
        assert 0 < r["fraction_of_matmul_peak"] < math.inf
    assert results["ratio_cmim_over_bart"] == pytest.approx(
        results["cmim"]["molecules_per_s"] / results["bart"]["molecules_per_s"]
    )
    paired = sorted(b / c for c, b in zip(results["cmim"]["step_s"], results["bart"]["step_s"]))
    assert results["ratio_median_of_paired_steps"] == pytest.approx(sum(paired) / 2)
    assert results["target_met"] == (results["ratio_cmim_over_bart"] >= 0.95)
    assert results["matmul_peak_gflops"]["mean"] > 0
    # The quadratic-in-length FLOP fit reproduces a direct count on a real, padded batch.
    assert all(err < 1e-6 for err in results["flop_fit_rel_error"].values())
    assert len(results["load_average_before"]) == 3


def test_same_sizes_and_counted_attention(bench: ModuleType) -> None:
    """BART mirrors cMIM's sizes; the CPU attention kernel's FLOPs are counted."""
    import torch

    from cmim_hf import CMIMTokenizer

    args = bench.parse_args(TINY)
    tokenizer = CMIMTokenizer()
    cmim, bart = bench.build_models(args, tokenizer)
    assert bart.config.d_model == cmim.config.hidden_size == 32
    assert bart.config.encoder_layers == bart.config.decoder_layers == cmim.config.encoder_layers == 1
    assert bart.config.encoder_ffn_dim == cmim.config.ffn_dim == 64
    assert bart.config.vocab_size == cmim.config.vocab_size == len(tokenizer)
    # Library defaults on both sides: BART's three dropouts are cMIM's three dropouts.
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        assert getattr(bart.config, name) == getattr(cmim.config, name), name

    batch = bench.synthetic_batch(tokenizer, 2, 10)
    assert batch["input_ids"].shape == (2, 10) and batch["labels"].shape == (2, 9)
    with_attention = bench.count_step_flops(bart, bench.bart_loss, batch)
    counter = torch.utils.flop_counter.FlopCounterMode(display=False)
    with counter:
        bench.bart_loss(bart, batch).backward()
    bart.zero_grad(set_to_none=True)
    if bart.config._attn_implementation == "sdpa":
        assert with_attention > counter.get_total_flops()
    else:
        assert with_attention == counter.get_total_flops()
