"""Pre-training throughput of cMIM on one accelerator, in one go: molecules/s and model FLOPs
utilisation (MFU), with bf16 autocast, SDPA attention and optional ``torch.compile``.

One step = ``zero_grad`` + forward + ``CMIMTrainer.compute_loss`` (reconstruction + A-MIM latent +
cMIM contrastive, latent weight 1) + backward + ``AdamW.step``, on ``CMIMDataCollator`` batches of
shuffled MOSES molecules (``cmim_hf/package_data/moses/moses_test_first5000.csv``). Timed with
``torch.cuda.synchronize`` around every step on a GPU; warm-up steps (and compilation) are
discarded.

FLOPs: ``torch.utils.flop_counter`` over one forward + backward of every timed batch, counted before
the timing (matmuls and attention, 2 per multiply-add; see ``train_throughput.py``). MFU = counted
FLOPs / step time / the device's peak: ``--peak-tflops``, else the dense bf16 (or TF32 for
``--precision fp32``) peak of a known GPU (table below, from NVIDIA's data sheets), else, on a CPU,
the measured fp32 ``torch.mm`` rate.

    python benchmarks/gpu_throughput.py --json gpu_throughput.json                # defaults below
    python benchmarks/gpu_throughput.py --compile --batch-size 1024 --json ...    # compiled, larger
    python benchmarks/gpu_throughput.py --cpu-smoke                               # reduced CPU mode (tests)

Defaults: d=512, 6+6 layers, 8 heads, FFN 2048, K=4 latents of 32, batch 512, bf16, 30 timed steps.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common
import torch
from train_throughput import count_step_flops, load_batches, matmul_peak_gflops

from cmim_hf import CMIMTokenizer
from cmim_hf.evaluation.reports import write_json

# Dense peak TFLOP/s per GPU (NVIDIA data sheets, SXM where there are variants): bf16, TF32.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "fp32": 494.7},
    "H100": {"bf16": 989.4, "fp32": 494.7},
    "A100": {"bf16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.1, "fp32": 183.0},
    "L4": {"bf16": 121.0, "fp32": 60.0},
    "A10": {"bf16": 125.0, "fp32": 62.5},
}
CPU_SMOKE = ["--device", "cpu", "--precision", "fp32", "--hidden-size", "32", "--layers", "1", "--heads", "2",
             "--ffn-dim", "64", "--num-latents", "2", "--latent-size", "8", "--batch-size", "8", "--steps", "3",
             "--warmup", "1", "--peak-seconds", "0.2"]  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="autocast dtype")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    common.add_size_options(parser, hidden_size=512, layers=6, heads=8, ffn_dim=2048)
    parser.add_argument("--num-latents", type=int, default=4)
    parser.add_argument("--latent-size", type=int, default=32)
    common.add_step_options(parser, batch_size=512, steps=30, warmup=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    parser.add_argument("--peak-seconds", type=float, default=3.0, help="CPU: duration of the matmul peak")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--cpu-smoke", action="store_true", help="reduced CPU mode: a tiny model, 3 steps")
    args = parser.parse_args(argv)
    if args.cpu_smoke:  # its settings first: options given with it still apply
        args = parser.parse_args([*CPU_SMOKE, *(argv if argv is not None else sys.argv[1:])])
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("need --steps >= 1, --warmup >= 0 and --batch-size >= 1")
    return args


def peak_flops(device: torch.device, precision: str, given_tflops: float | None, cpu_seconds: float) -> dict:
    """The device's peak FLOP/s for MFU and where it comes from."""
    if given_tflops is not None:
        return {"flops": given_tflops * 1e12, "source": "--peak-tflops"}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAK_TFLOPS.items():
            if key in name:
                return {"flops": peaks[precision] * 1e12, "source": f"{key} {precision} data sheet"}
        return {"flops": None, "source": f"unknown GPU {name!r}: pass --peak-tflops"}
    measured = matmul_peak_gflops(1024, cpu_seconds)
    return {"flops": measured["mean"] * 1e9, "source": "measured fp32 torch.mm (1024 x 1024)"}


def build(args: argparse.Namespace, tokenizer: CMIMTokenizer, device: torch.device, workdir: str):
    """The model on ``device`` (compiled if asked) and its CMIMTrainer loss path."""
    model = common.random_cmim(
        tokenizer, args.hidden_size, args.layers, args.heads, args.ffn_dim, seed=args.seed,
        num_latents=args.num_latents, latent_size=args.latent_size, attn_implementation="sdpa",
    )  # fmt: skip
    loss_fn, _ = common.cmim_training_loss(model.train(), workdir, device)  # the trainer places the model
    model.to(device)
    runnable = torch.compile(model) if args.compile else model
    return model, runnable, loss_fn


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = CMIMTokenizer()
    batches = [
        {k: v.to(device) for k, v in batch.items()}
        for batch in load_batches(tokenizer, args.data, args.batch_size, args.warmup + args.steps, args.seed)
    ]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with tempfile.TemporaryDirectory() as workdir:
        model, runnable, loss_fn = build(args, tokenizer, device, workdir)
        with autocast:
            flops = [count_step_flops(model, loss_fn, batch) for batch in batches[args.warmup :]]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        times = []
        for number, batch in enumerate(batches):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(runnable, batch)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if number >= args.warmup:
                times.append(time.perf_counter() - start)
    peak = peak_flops(device, args.precision, args.peak_tflops, args.peak_seconds)
    timed = batches[args.warmup :]
    seconds = sum(times)
    achieved = sum(flops) / seconds
    results = {
        "command": common.command_line(__file__, argv),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "precision": args.precision,
        "compiled": args.compile,
        "attention": model.config._attn_implementation,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": args.batch_size,
        "timed_steps": len(times),
        "median_step_s": statistics.median(times),
        "molecules_per_s": args.batch_size * len(times) / seconds,
        "tokens_per_s": sum(int(b["attention_mask"].sum()) for b in timed) / seconds,
        "gflop_per_step": sum(flops) / len(flops) / 1e9,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": peak["flops"] / 1e12 if peak["flops"] else None,
        "peak_source": peak["source"],
        "mfu": achieved / peak["flops"] if peak["flops"] else None,
        "last_loss": float(loss.detach()),
    }
    if args.json is not None:
        write_json(results, args.json)
    mfu = f"{results['mfu']:.1%}" if results["mfu"] is not None else "n/a"
    print(
        f"{results['device']}, {args.precision}{', compiled' if args.compile else ''}: "
        f"{results['molecules_per_s']:.0f} molecules/s, {results['achieved_tflops']:.2f} TFLOP/s, MFU {mfu} "
        f"({results['peak_source']})"
    )
    return results


if __name__ == "__main__":
    main()
