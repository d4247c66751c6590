"""Training throughput of cMIM (objective "cmim") against BART of the same size, on the same batches.

One training step = ``zero_grad`` + forward + loss + backward + ``AdamW.step``, timed with
``time.perf_counter``. cMIM runs its real loss path: the model forward and
``CMIMTrainer.compute_loss`` (the trainer's per-molecule combination of reconstruction, A-MIM latent
and cMIM contrastive terms; latent weight 1, i.e. after warm-up). BART is
``BartForConditionalGeneration`` with the same hidden size, encoder/decoder layers, heads, FFN width,
vocabulary, maximum positions, dropout and activation (gelu), and both libraries' default
attention and activation dropouts (0, the same for both: equal configs are equal work), reading the same
``input_ids``/``attention_mask``; its decoder input is the shift of the same ``labels`` (BART's own
``shift_tokens_right``) and its loss is its built-in token cross-entropy.

Batches: MOSES molecules (``cmim_hf/package_data/moses/moses_test_first5000.csv``, shuffled with ``--seed``)
tokenized and right-padded by ``CMIMDataCollator`` (CMIMTokenizer). Both models see batch ``i`` at
step ``i``; the steps alternate (cMIM, BART), (BART, cMIM), ... so that slow drifts of the machine
hit both alike; the first ``--warmup`` steps of each are discarded.

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward, i.e. 2 FLOPs per
multiply-add of every matmul (``mm``/``addmm``/``bmm``) and of the attention kernels (the CPU flash
kernel is registered below with PyTorch's SDPA formulas: ``4 B h Tq Tk d`` forward,
``10 B h Tq Tk d`` backward, dense, i.e. causal masking is not discounted). This is the usual
``~6 * (parameters in matmuls) * tokens + attention`` of a training step; elementwise ops,
softmax, LayerNorm, the embedding lookups and the optimizer are not counted. Every matmul's size
is linear in the padded length ``T`` and attention is quadratic, so for the fixed batch size the
count is exactly ``a + b T + c T^2``: it is measured at three synthetic lengths, fitted, and checked
against a direct count of the first (untimed) warm-up batch. Achieved GFLOP/s = counted FLOPs of the
timed steps / their time; it is compared with the fp32 ``torch.mm`` rate of the same machine and
thread count (``--peak-size`` square matrices for ``--peak-seconds``).

    python benchmarks/train_throughput.py [--hidden-size 256 --layers 4 --heads 4 --ffn-dim 1024]
        [--batch-size 128] [--steps 10] [--warmup 2] [--threads N] [--json OUT] [--profile 3]

Target (issue 3, section 5): cMIM >= 0.95x BART molecules/s on CPU at the defaults.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    add_size_options,
    add_step_options,
    argument_parser,
    cmim_training_loss,
    command_line,
    random_cmim,
    read_smiles,
)
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import BartConfig, BartForConditionalGeneration

from cmim_hf import CMIMConfig, CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.evaluation.reports import write_json
from cmim_hf.training.trainer import CMIMDataCollator

TARGET_RATIO = 0.95

Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.nn.Module, Batch], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Arguments and data
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: d=256, 4+4 layers, 4 heads, FFN 1024, batch 128)."""
    parser = argument_parser(__doc__)
    add_size_options(parser, hidden_size=256, layers=4, heads=4, ffn_dim=1024)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-positions", type=int, default=512)
    add_step_options(parser, batch_size=128, steps=10, warmup=2, per=" per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--peak-size", type=int, default=2048, help="n of the n x n fp32 matmul peak")
    parser.add_argument("--peak-seconds", type=float, default=3.0)
    parser.add_argument("--no-flops", action="store_true", help="skip FLOP counting and the matmul peak")
    parser.add_argument(
        "--profile", type=int, default=0, help="after timing, profile N steps of each model (torch.profiler)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("need --steps >= 1, --warmup >= 0 and --batch-size >= 1")
    return args


def load_batches(
    tokenizer: CMIMTokenizer, path: Path, batch_size: int, n_batches: int, seed: int
) -> list[Batch]:
    """``n_batches`` collated batches of ``batch_size`` shuffled molecules (cycling if needed).

    Each batch is ``CMIMDataCollator``'s: ``input_ids``/``attention_mask`` (B, T) and ``labels``
    (B, T-1), padded to the batch's longest molecule.
    """
    smiles = read_smiles(path)
    order = np.random.default_rng(seed).permutation(len(smiles))
    needed = batch_size * n_batches
    chosen = [smiles[order[i % len(order)]] for i in range(needed)]
    collator = CMIMDataCollator(tokenizer)
    return [
        collator([{"smiles": s} for s in chosen[i : i + batch_size]]) for i in range(0, needed, batch_size)
    ]


# ---------------------------------------------------------------------------------------------
# Models and their loss paths
# ---------------------------------------------------------------------------------------------


# cMIM's config fields under BART's names; the other fields compared share their names.
BART_NAMES = {
    "hidden_size": ("d_model",),
    "num_attention_heads": ("encoder_attention_heads", "decoder_attention_heads"),
    "ffn_dim": ("encoder_ffn_dim", "decoder_ffn_dim"),
}
SHARED_FIELDS = ("vocab_size", "encoder_layers", "decoder_layers", "activation_function", "dropout",
                 "max_position_embeddings", "pad_token_id", "bos_token_id", "eos_token_id",
                 "decoder_start_token_id")  # fmt: skip


def bart_config(cmim: CMIMConfig) -> BartConfig:
    """BART with ``cmim``'s sizes, vocabulary, positions, dropout, activation and special tokens
    (each library's defaults otherwise), without a cache or a forced final ``<eos>``."""
    values = {name: getattr(cmim, name) for name in SHARED_FIELDS}
    values.update({bart: getattr(cmim, name) for name, barts in BART_NAMES.items() for bart in barts})
    return BartConfig(**values, forced_eos_token_id=None, use_cache=False)


def build_models(
    args: argparse.Namespace, tokenizer: CMIMTokenizer
) -> tuple[CMIMForConditionalGeneration, BartForConditionalGeneration]:
    """A seeded random cMIM and a BART of the same sizes, both in training mode."""
    cmim = random_cmim(
        tokenizer, args.hidden_size, args.layers, args.heads, args.ffn_dim, seed=args.seed,
        dropout=args.dropout, max_position_embeddings=args.max_positions,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    bart = BartForConditionalGeneration(bart_config(cmim.config))
    return cmim.train(), bart.train()


def bart_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """BART's built-in loss; its decoder reads ``shift_tokens_right(labels)``."""
    return model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        use_cache=False,
    ).loss


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, batch: Batch
) -> float:
    """One timed optimizer step; returns its wall time in seconds."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# FLOPs and the matmul peak
# ---------------------------------------------------------------------------------------------


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# PyTorch's flop counter knows the CUDA attention kernels only; add the CPU flash kernel.
CPU_SDPA_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def count_step_flops(model: torch.nn.Module, loss_fn: LossFn, batch: Batch) -> int:
    """Matmul + attention FLOPs of one forward + backward on ``batch`` (gradients are cleared)."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS)
    with counter:
        loss_fn(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def synthetic_batch(tokenizer: CMIMTokenizer, batch_size: int, length: int, seed: int = 0) -> Batch:
    """An unpadded (B, length) batch ``<bos> x <eos>`` of random ordinary tokens, collated like a real one."""
    generator = torch.Generator().manual_seed(seed)
    first_ordinary = max(tokenizer.all_special_ids) + 1
    input_ids = torch.randint(first_ordinary, len(tokenizer), (batch_size, length), generator=generator)
    input_ids[:, 0] = tokenizer.bos_token_id
    input_ids[:, -1] = tokenizer.eos_token_id
    return CMIMDataCollator(tokenizer)([{"input_ids": row.tolist()} for row in input_ids])


def fit_flops_per_length(
    model: torch.nn.Module, loss_fn: LossFn, tokenizer: CMIMTokenizer, batch_size: int, lengths: Sequence[int]
) -> np.ndarray:
    """Coefficients ``(c, b, a)`` of FLOPs(T) = a + b T + c T^2 (``np.polyval`` order) for this batch size."""
    counts = [count_step_flops(model, loss_fn, synthetic_batch(tokenizer, batch_size, t)) for t in lengths]
    return np.polyfit(np.asarray(lengths, dtype=np.float64), np.asarray(counts, dtype=np.float64), 2)


def matmul_peak_gflops(n: int, seconds: float) -> dict[str, float]:
    """fp32 ``torch.mm`` of two n x n matrices, repeated for ``seconds``: GFLOP/s over the whole
    window (``mean``) and of the fastest call (``best``), at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=out)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    flops = 2.0 * n**3
    return {
        "mean": flops * len(times) / sum(times) / 1e9,
        "best": flops / min(times) / 1e9,
        "calls": len(times),
    }


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------


def profile_steps(
    models: dict[str, tuple[torch.nn.Module, LossFn]],
    optimizers: dict[str, torch.optim.Optimizer],
    batches: list[Batch],
    row_limit: int = 30,
) -> str:
    """Side-by-side ``torch.profiler`` self-CPU time per op, in ms per step, of every model.

    The models' steps alternate over ``batches`` as in the timed loop (each step in its own
    profiler), so that load changes of the machine hit all models alike.
    """
    from torch.profiler import ProfilerActivity, profile

    per_op: dict[str, dict[str, float]] = {name: {} for name in models}
    calls: dict[str, dict[str, int]] = {name: {} for name in models}
    for step, batch in enumerate(batches):
        order = list(models) if step % 2 == 0 else list(models)[::-1]
        for name in order:
            model, loss_fn = models[name]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train_step(model, optimizers[name], loss_fn, batch)
            for event in prof.key_averages():
                per_op[name][event.key] = per_op[name].get(event.key, 0.0) + event.self_cpu_time_total
                calls[name][event.key] = calls[name].get(event.key, 0) + event.count
    names = list(models)
    ops = sorted(
        {op for name in names for op in per_op[name]},
        key=lambda op: -max(per_op[name].get(op, 0.0) for name in names),
    )
    n = len(batches)
    header = f"{'op (self CPU ms / step, calls / step)':58s}" + "".join(f"{name:>20s}" for name in names)
    lines = [f"--- profile over {n} steps of each model ---", header]
    for op in ops[:row_limit]:
        cells = "".join(
            f"{per_op[name].get(op, 0.0) / 1e3 / n:12.1f} ({calls[name].get(op, 0) / n:4.0f})"
            for name in names
        )
        lines.append(f"{op[:58]:58s}{cells}")
    totals = "".join(f"{sum(per_op[name].values()) / 1e3 / n:20.1f}" for name in names)
    lines.append(f"{'total self CPU':58s}{totals}")
    return "\n".join(lines)


def _model_result(
    times: list[float], molecules: int, flops: float | None, peak: float | None, model: torch.nn.Module
) -> dict[str, Any]:
    total = sum(times)
    result: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "molecules_per_s": molecules / total,
        "step_s_median": statistics.median(times),
        "step_s": times,
        "flops_per_step_mean": None,
        "gflops_per_s": None,
        "fraction_of_matmul_peak": None,
    }
    if flops is not None:
        result["flops_per_step_mean"] = flops / len(times)
        result["gflops_per_s"] = flops / total / 1e9
        if peak:
            result["fraction_of_matmul_peak"] = result["gflops_per_s"] / peak
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a summary and return the results (also written to ``--json``)."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()

    tokenizer = CMIMTokenizer()
    n_steps = args.warmup + args.steps
    batches = load_batches(tokenizer, args.data, args.batch_size, n_steps, args.seed)
    cmim, bart = build_models(args, tokenizer)

    with tempfile.TemporaryDirectory() as workdir:
        cmim_loss, _trainer = cmim_training_loss(cmim, workdir)
        torch.set_num_threads(threads)  # in case the Trainer's setup touched it
        models: dict[str, tuple[torch.nn.Module, LossFn]] = {
            "cmim": (cmim, cmim_loss),
            "bart": (bart, bart_loss),
        }
        optimizers = {
            name: torch.optim.AdamW(model.parameters(), lr=args.lr) for name, (model, _) in models.items()
        }

        fits: dict[str, np.ndarray] = {}
        flop_check: dict[str, float] = {}
        peak: dict[str, float] | None = None
        if not args.no_flops:
            lengths = (8, 16, 24)
            for name, (model, loss_fn) in models.items():
                fits[name] = fit_flops_per_length(model, loss_fn, tokenizer, args.batch_size, lengths)
                direct = count_step_flops(model, loss_fn, batches[0])
                fitted = float(np.polyval(fits[name], batches[0]["input_ids"].shape[1]))
                flop_check[name] = abs(fitted - direct) / direct
            peak = matmul_peak_gflops(args.peak_size, args.peak_seconds)

        times: dict[str, list[float]] = {name: [] for name in models}
        flops: dict[str, float] = dict.fromkeys(models, 0.0)
        molecules = 0
        for step, batch in enumerate(batches):
            order = list(models) if step % 2 == 0 else list(models)[::-1]
            for name in order:
                model, loss_fn = models[name]
                elapsed = train_step(model, optimizers[name], loss_fn, batch)
                if step >= args.warmup:
                    times[name].append(elapsed)
                    if fits:
                        flops[name] += float(np.polyval(fits[name], batch["input_ids"].shape[1]))
            if step >= args.warmup:
                molecules += batch["input_ids"].shape[0]

        profile_table = None
        if args.profile:
            profile_table = profile_steps(models, optimizers, batches[-args.profile :])

    load_after = os.getloadavg()
    peak_rate = peak["mean"] if peak else None
    per_model = {
        name: _model_result(times[name], molecules, flops[name] if fits else None, peak_rate, models[name][0])
        for name in models
    }
    timed_batches = batches[args.warmup :]
    ratio = per_model["cmim"]["molecules_per_s"] / per_model["bart"]["molecules_per_s"]
    results: dict[str, Any] = {
        "command": command_line(__file__, argv),
        "config": {
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "heads": args.heads,
            "ffn_dim": args.ffn_dim,
            "dropout": args.dropout,
            "vocab_size": len(tokenizer),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": threads,
            "attn_implementation": {
                name: model.config._attn_implementation for name, (model, _) in models.items()
            },
        },
        "data": {
            "file": str(args.data),
            "timed_molecules_per_model": molecules,
            "mean_padded_length": float(np.mean([b["input_ids"].shape[1] for b in timed_batches])),
            "mean_tokens_per_molecule": float(
                np.mean(
                    [b["attention_mask"].sum().item() / b["attention_mask"].shape[0] for b in timed_batches]
                )
            ),
        },
        "cmim": per_model["cmim"],
        "bart": per_model["bart"],
        "ratio_cmim_over_bart": ratio,
        # Per batch, BART's step time / cMIM's: robust to load spikes that hit single steps.
        "ratio_median_of_paired_steps": statistics.median(
            b / c for c, b in zip(per_model["cmim"]["step_s"], per_model["bart"]["step_s"])
        ),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
        "matmul_peak_gflops": peak,
        "flop_fit_rel_error": flop_check or None,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
    }
    print(format_summary(results))
    if profile_table is not None:
        print(profile_table)
    if args.json is not None:
        write_json(results, args.json)
    return results


def format_summary(results: dict[str, Any]) -> str:
    """Human-readable summary of :func:`main`'s results."""
    cfg, data = results["config"], results["data"]
    lines = [
        f"d={cfg['hidden_size']} layers={cfg['layers']}+{cfg['layers']} heads={cfg['heads']} "
        f"ffn={cfg['ffn_dim']} vocab={cfg['vocab_size']} batch={cfg['batch_size']} "
        f"threads={cfg['threads']} steps={cfg['steps']} (+{cfg['warmup']} warm-up) "
        f"mean padded length={data['mean_padded_length']:.1f}",
    ]
    for name in ("cmim", "bart"):
        r = results[name]
        line = (
            f"{name:5s} params={r['parameters'] / 1e6:.2f}M  molecules/s={r['molecules_per_s']:.1f}  "
            f"median step={r['step_s_median'] * 1e3:.0f} ms"
        )
        if r["gflops_per_s"] is not None:
            line += f"  GFLOP/step={r['flops_per_step_mean'] / 1e9:.1f}  GFLOP/s={r['gflops_per_s']:.1f}"
            if r["fraction_of_matmul_peak"] is not None:
                line += f" ({100 * r['fraction_of_matmul_peak']:.0f}% of matmul peak)"
        lines.append(line)
    lines.append(
        f"ratio cMIM/BART = {results['ratio_cmim_over_bart']:.3f} "
        f"(target >= {results['target_ratio']}: {'met' if results['target_met'] else 'NOT met'}); "
        f"median over batches of the paired per-step ratio = {results['ratio_median_of_paired_steps']:.3f}"
    )
    peak = results["matmul_peak_gflops"]
    if peak:
        lines.append(f"fp32 matmul peak: {peak['mean']:.1f} GFLOP/s (best call {peak['best']:.1f})")
    if results["flop_fit_rel_error"]:
        errors = ", ".join(f"{k} {v:.1e}" for k, v in results["flop_fit_rel_error"].items())
        lines.append(f"FLOP fit vs direct count on a real batch, relative error: {errors}")
    lines.append(
        "load average before/after: "
        + " / ".join(
            " ".join(f"{x:.2f}" for x in results[k]) for k in ("load_average_before", "load_average_after")
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
