"""Grammar-constrained decoding (``cmim_hf.generation.grammar``) on a checkpoint: validity of
aggregate-prior samples and of reconstructions of MOSES test molecules with and without
``grammar_constrained``, why the remaining invalid decodes fail (RDKit's first error message:
syntax, kekulization, valence, aromaticity), and what the option costs in time.

Decoding is greedy with the CLI's defaults (batches of 256, at most 256 new tokens, seed 0, the
checkpoint's aggregate posterior), so the molecules are the ones these commands write:

    python -m cmim_hf.cli sample -n 1000 -o samples.csv [--constrained]
    python -m cmim_hf.cli reconstruct first500.csv -o reconstructions.csv [--constrained]

Time: wall time of each decode call, its decode steps (the longest decode of each batch, as every
row of a batch waits for it), and the processor's own time, measured by replaying the constrained
decodes through a fresh processor batch by batch and step by step as ``generate`` calls it.

    python benchmarks/constrained_decoding.py --json benchmarks/results/constrained_decoding.json
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from common import MOSES_SAMPLE, argument_parser, command_line, publish, read_smiles

from cmim_hf import DEFAULT_CHECKPOINT, chem
from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.evaluation.reports import markdown_table
from cmim_hf.generation import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    AggregatePosterior,
    GenerationResult,
    fraction_unique,
    reconstruct,
    sample_prior,
)
from cmim_hf.generation.grammar import SmilesGrammarLogitsProcessor
from cmim_hf.models.cmim.tokenization_cmim import split_smiles

FAILURE_KINDS = ("syntax", "kekulization", "valence", "aromaticity", "other")
TABLE_COLUMNS = ("decodes", "grammar", "valid", "syntax", "syntax, ended", "kekulization", "valence",
                 "aromaticity", "other", "cut off", "decode steps", "wall s", "processor s")  # fmt: skip


def failure(smiles: str) -> tuple[str, str] | None:
    """(kind, RDKit's message with numbers as N) for an invalid SMILES, None for a valid one."""
    try:
        chem.parse_smiles(smiles)
    except chem.InvalidSmilesError as err:
        reason = err.reason
        if reason.startswith("SMILES Parse Error: "):
            return "syntax", re.sub(
                r"\d+", "N", re.split(r":| for input", reason[len("SMILES Parse Error: ") :])[0]
            )
        if not smiles.strip():
            return "syntax", reason
        if reason.startswith("Can't kekulize"):
            return "kekulization", "can't kekulize"
        if "valence" in reason:
            return "valence", "explicit valence too high"
        return ("aromaticity" if "aromatic" in reason else "other"), re.sub(r"\d+", "N", reason)
    return None


def decode_report(smiles: list[str], max_new_tokens: int, seconds: float, steps: int) -> dict[str, Any]:
    """Validity, the failures by kind (and syntax failures by message), decodes cut off at
    ``max_new_tokens`` (no <eos>), syntax errors among the others, wall time and decode steps."""
    found = [failure(s) for s in smiles]
    failures = [f for f in found if f is not None]
    lengths = [len(split_smiles(s)) for s in smiles]
    ended = [n < max_new_tokens for n in lengths]
    return {
        "molecules": len(smiles),
        "validity": 1 - len(failures) / len(smiles),
        "uniqueness": fraction_unique(smiles),
        "invalid": {kind: sum(k == kind for k, _ in failures) for kind in FAILURE_KINDS},
        "syntax_messages": dict(Counter(m for k, m in failures if k == "syntax").most_common()),
        "cut_off_at_max_new_tokens": len(smiles) - sum(ended),
        "syntax_errors_ended_with_eos": sum(
            f is not None and f[0] == "syntax" and e for f, e in zip(found, ended)
        ),
        "mean_tokens": sum(lengths) / len(lengths),
        "seconds": seconds,
        "decode_steps": steps,
    }


def decode_steps(smiles: list[str], max_new_tokens: int, batch_size: int) -> int:
    """Generate steps of a greedy decode run: per batch, its longest decode plus <eos> (capped)."""
    lengths = [len(split_smiles(s)) + 1 for s in smiles]
    return sum(
        min(max(lengths[start : start + batch_size]), max_new_tokens)
        for start in range(0, len(lengths), batch_size)
    )


def processor_seconds(smiles: list[str], tokenizer: Any, max_new_tokens: int, batch_size: int) -> float:
    """Time a fresh processor takes over the decodes ``smiles``, called as ``generate`` calls it:
    each batch's prefixes step by step, finished rows padded."""
    processor = SmilesGrammarLogitsProcessor(tokenizer)
    spent = 0.0
    for start in range(0, len(smiles), batch_size):
        rows = []
        for s in smiles[start : start + batch_size]:
            ids = tokenizer.convert_tokens_to_ids(split_smiles(s))[:max_new_tokens]
            rows.append(
                [
                    tokenizer.bos_token_id,
                    *ids,
                    *([tokenizer.eos_token_id] if len(ids) < max_new_tokens else []),
                ]
            )
        width = max(map(len, rows))
        batch = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
        scores = torch.zeros(len(batch), len(tokenizer))
        for step in range(1, width):
            begin = time.perf_counter()
            processor(batch[:, :step], scores)
            spent += time.perf_counter() - begin
    return spent


def compare(plain: list[str], constrained: list[str]) -> dict[str, int]:
    """How the option changed the decodes (greedy decoding only changes those that break the grammar)."""
    plain_valid = [failure(s) is None for s in plain]
    constrained_valid = [failure(s) is None for s in constrained]
    return {
        "valid_unconstrained_decodes_unchanged": sum(
            ok and a == b for a, b, ok in zip(plain, constrained, plain_valid)
        ),
        "valid_unconstrained_decodes": sum(plain_valid),
        "invalid_made_valid": sum(not a and b for a, b in zip(plain_valid, constrained_valid)),
        "valid_made_invalid": sum(a and not b for a, b in zip(plain_valid, constrained_valid)),
    }


def run_both(name: str, decode: Any, args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """Decode with and without the grammar (``decode(constrained) -> (smiles, extra)``)."""
    record: dict[str, Any] = {}
    decodes = {}
    for constrained in (False, True):
        begin = time.perf_counter()
        smiles, extra = decode(constrained)
        seconds = time.perf_counter() - begin
        steps = decode_steps(smiles, args.max_new_tokens, args.batch_size)
        key = "constrained" if constrained else "unconstrained"
        record[key] = {**decode_report(smiles, args.max_new_tokens, seconds, steps), **extra}
        decodes[key] = smiles
        print(f"{name} {key}: validity {record[key]['validity']:.3f}, {seconds:.1f} s", file=sys.stderr)
    record["constrained"]["processor_seconds"] = processor_seconds(
        decodes["constrained"], tokenizer, args.max_new_tokens, args.batch_size
    )
    record["changes"] = compare(decodes["unconstrained"], decodes["constrained"])
    return record


def _table_row(row: dict[str, Any], label: str, key: str) -> list[str]:
    invalid = [row["invalid"]["syntax"], row["syntax_errors_ended_with_eos"]]
    invalid += [row["invalid"][kind] for kind in FAILURE_KINDS[1:]]
    processor = f"{row['processor_seconds']:.1f}" if "processor_seconds" in row else ""
    return [
        f"{label} ({row['molecules']})", "on" if key == "constrained" else "off", f"{row['validity']:.3f}",
        *map(str, invalid), str(row["cut_off_at_max_new_tokens"]), str(row["decode_steps"]),
        f"{row['seconds']:.1f}", processor,
    ]  # fmt: skip


def markdown(record: dict[str, Any]) -> str:
    """The record as Markdown: the decodes table, the syntax errors left, the time and the changes."""
    rows = [
        _table_row(record[name][key], label, key)
        for name, label in (("prior", "aggregate prior"), ("reconstruction", "reconstruction"))
        for key in ("unconstrained", "constrained")
    ]
    lines = [
        f"Command: `{record['command']}`",
        "",
        "The molecules are those of `python -m cmim_hf.cli sample -n 1000 -o samples.csv [--constrained]` "
        "and `python -m cmim_hf.cli reconstruct first500.csv -o reconstructions.csv [--constrained]` "
        "(first500.csv: the first 500 rows of `cmim_hf/package_data/moses/moses_test_first5000.csv`).",
        "",
        f"Checkpoint `{record['model']}` ({record['sampler']} samples), greedy decoding, batches of {record['batch_size']}, at most "
        f"{record['max_new_tokens']} new tokens, {record['threads']} thread(s), CPU load average "
        f"{record['load_average'][0]:.1f} before / {record['load_average'][1]:.1f} after (shared machine).",
        "",
        "Invalid decodes by RDKit's error; *cut off*: decodes that reached the token limit without "
        "<eos> (invalid unless complete by chance); *syntax, ended*: syntax errors among decodes that "
        "ended with <eos>.",
        "",
        markdown_table(TABLE_COLUMNS, rows),
    ]
    lines += [
        "",
        "Exact reconstructions: "
        + ", ".join(
            f"{key} {record['reconstruction'][key]['exact_match']:.3f}"
            for key in ("unconstrained", "constrained")
        ),
        "",
        "Syntax errors left (RDKit's message, numbers as N):",
        "",
    ]
    for name in ("prior", "reconstruction"):
        for key in ("unconstrained", "constrained"):
            messages = record[name][key]["syntax_messages"]
            shown = "; ".join(f"{m}: {n}" for m, n in messages.items()) or "none"
            lines.append(f"- {name}, {key}: {shown}")
    lines += [
        "",
        "Time (wall seconds include the model; decode steps: the longest decode of each batch):",
        "",
    ]
    for name in ("prior", "reconstruction"):
        off, on = record[name]["unconstrained"], record[name]["constrained"]
        lines.append(
            f"- {name}: the processor takes {1000 * on['processor_seconds'] / on['decode_steps']:.1f} ms per "
            f"step of {record['batch_size']} rows ({on['processor_seconds'] / on['seconds']:.1%} of the "
            f"constrained wall time), against {1000 * off['seconds'] / off['decode_steps']:.0f} ms of wall "
            f"time per step unconstrained. Steps grow {off['decode_steps']} -> {on['decode_steps']}: "
            f"{on['cut_off_at_max_new_tokens']} decodes cannot end and run to the token limit"
        )
    lines += ["", "Changes made by the option:", ""]
    for name in ("prior", "reconstruction"):
        changes = record[name]["changes"]
        lines.append(
            f"- {name}: {changes['valid_unconstrained_decodes_unchanged']} of the "
            f"{changes['valid_unconstrained_decodes']} valid unconstrained decodes unchanged; "
            f"{changes['invalid_made_valid']} invalid made valid, {changes['valid_made_invalid']} valid made invalid"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--model", default=DEFAULT_CHECKPOINT, help="cMIM checkpoint folder (default: shipped)"
    )
    parser.add_argument("--samples", type=int, default=1000, help="aggregate-prior codes to decode")
    parser.add_argument(
        "--reconstructions", type=int, default=500, help="first MOSES test molecules to reconstruct"
    )
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="longest decode")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="codes decoded per batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the record here (and the table next to it, .md)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    model, tokenizer = load_model_for_generation(args.model, device="cpu")
    prior = AggregatePosterior.load(args.model)
    options = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}

    def sample(constrained: bool) -> tuple[list[str], dict[str, Any]]:
        result: GenerationResult = sample_prior(
            model, tokenizer, args.samples, prior=prior, grammar_constrained=constrained, **options
        )
        return result.smiles, {}

    molecules = read_smiles(MOSES_SAMPLE, limit=args.reconstructions)

    def reconstruct_molecules(constrained: bool) -> tuple[list[str], dict[str, Any]]:
        result = reconstruct(model, tokenizer, molecules, grammar_constrained=constrained, **options)
        return result.smiles, {"exact_match": result.exact_match}

    record = {
        "command": command_line(__file__, argv),
        "model": os.path.relpath(args.model) if Path(args.model).is_dir() else str(args.model),
        "sampler": "aggregate posterior" if prior is not None else "standard normal",
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "prior": run_both("prior", sample, args, tokenizer),
    }
    record["reconstruction"] = run_both("reconstruction", reconstruct_molecules, args, tokenizer)
    record["load_average"] = [load_before, os.getloadavg()[0]]
    publish(record, args.json, markdown(record))
    return record


if __name__ == "__main__":
    main()
