"""How cMIM checkpoints handle molecules longer than any they were trained on (issue 12, item 6).

For every valid molecule of the built-in MoleculeNet tasks (deduplicated, normalized as each
checkpoint's config says), bucketed by token count: how many the model can encode at all (its
``max_position_embeddings``), and the teacher-forced reconstruction token accuracy with z = mu (the
decoder's view of the molecule behind the informative embedding). MOSES, the pre-training
corpus, has at most 56 tokens per molecule, so every longer molecule is outside training.

    python benchmarks/length_generalization.py --model learned=runs/latent_pilots/learned-1024/final \
        --model rotary=runs/latent_pilots/rotary-1024/final --json runs/length_generalization.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from common import argument_parser, command_line, publish

from cmim_hf import chem
from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.evaluation.reports import markdown_table
from cmim_hf.evaluation.tasks import BUILTIN_TASKS, load_task
from cmim_hf.models.cmim.modeling_cmim import prepare_decoder_inputs

BUCKETS = ((1, 56), (57, 128), (129, 256), (257, 100_000))  # token counts incl. <bos>/<eos>


def task_molecules(tasks: list[str]) -> list[str]:
    """The distinct RDKit-valid SMILES of the tasks, in first-seen order."""
    seen: dict[str, None] = {}
    for name in tasks:
        for smiles in load_task(name).smiles:
            if chem.is_valid_smiles(smiles):
                seen.setdefault(smiles, None)
    return list(seen)


@torch.no_grad()
def measure(model: Any, tokenizer: Any, molecules: list[str], batch_size: int) -> dict[str, Any]:
    scheme = getattr(model.config, "smiles_normalization", None) or "none"
    written = [chem.normalize_smiles(s, scheme) for s in molecules]
    ids = tokenizer(written, truncation=True, max_length=10**6)["input_ids"]  # count, never cut
    limit = model.config.max_position_embeddings
    report: dict[str, Any] = {"max_position_embeddings": limit, "smiles_normalization": scheme, "buckets": {}}
    for low, high in BUCKETS:
        members = sorted(
            (i for i, row in enumerate(ids) if low <= len(row) <= high), key=lambda i: len(ids[i])
        )
        readable = [i for i in members if len(ids[i]) <= limit]
        correct = total = exact = 0
        for start in range(0, len(readable), batch_size):
            rows = [{"input_ids": ids[i]} for i in readable[start : start + batch_size]]
            batch = tokenizer.pad(rows, return_tensors="pt").to(model.device)
            logits = model(**batch).logits
            _, _, labels = prepare_decoder_inputs(
                batch["input_ids"], batch["attention_mask"], tokenizer.bos_token_id, tokenizer.pad_token_id
            )
            keep = labels != -100
            right = (logits.argmax(-1) == labels) & keep
            correct += int(right.sum())
            total += int(keep.sum())
            exact += int((right.sum(1) == keep.sum(1)).sum())
        report["buckets"][f"{low}-{high if high < 100_000 else 'max'}"] = {
            "molecules": len(members),
            "encodable": len(readable),
            "token_accuracy": correct / total if total else None,
            "exact_match": exact / len(readable) if readable else None,
        }
    return report


def markdown(results: dict[str, Any]) -> str:
    """One row per model; per bucket, encodable / all molecules and the token accuracy."""
    models = results["models"]
    buckets = list(next(iter(models.values()))["buckets"])

    def cell(values: dict[str, Any]) -> str:
        accuracy = values["token_accuracy"]
        return f"{values['encodable']}/{values['molecules']}, " + (
            "—" if accuracy is None else f"{accuracy:.3f}"
        )

    header = ["model", *(f"{bucket} tokens: encodable, token acc." for bucket in buckets)]
    rows = [
        [name, *(cell(report["buckets"][bucket]) for bucket in buckets)] for name, report in models.items()
    ]
    return markdown_table(header, rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=PATH", help="checkpoint to measure"
    )
    parser.add_argument("--tasks", default=",".join(BUILTIN_TASKS), help="comma-separated built-in tasks")
    parser.add_argument("--batch-size", type=int, default=32, help="molecules per forward pass")
    parser.add_argument("--json", type=Path, help="also write the results (and a .md table beside it)")
    args = parser.parse_args(argv)
    molecules = task_molecules(args.tasks.split(","))
    command = command_line(__file__, argv)
    results: dict[str, Any] = {"command": command, "molecules": len(molecules), "models": {}}
    for spec in args.model:
        name, _, path = spec.partition("=")
        model, tokenizer = load_model_for_generation(path, device="cpu")
        results["models"][name] = {"path": path, **measure(model, tokenizer, molecules, args.batch_size)}
    publish(results, args.json, f"`{command}`\n\n{markdown(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
