"""The ``cmim`` command (also ``python -m cmim_hf.cli``).

    cmim embed IN.csv --smiles-col smiles -o OUT.parquet    informative embeddings of every row
    cmim pretrain --train-file CORPUS --output-dir DIR      pre-train cMIM / MIM / InfoNCE / AE
    cmim benchmark --model ecfp4 --tasks esol --out DIR     MoleculeNet probes, reports, plots
    cmim finetune --model DIR --tasks esol --out DIR        fine-tune with a property head
    cmim sample -n 100 -o samples.csv                       molecules from the prior / near seeds
    cmim reconstruct in.csv -o out.csv                      encode and decode back, with metrics
    cmim optimize in.csv --score qed -o best.csv            latent-space property optimisation
    cmim interpolate CCO c1ccccc1O -o path.csv --image path.png   the path between two molecules
    cmim fit-prior train.csv --model DIR                    the aggregate posterior of a checkpoint
    cmim evaluate-samples samples.csv -o metrics.json       MOSES metrics of any generator's SMILES

Exit codes: 0 ok; 2 a bad file, column, option or checkpoint (one line, naming it); 1 a bug
(with its traceback).
"""

# One module of this package per subcommand (``embed`` -> cmim_hf/cli/embed.py), each with
# ``add_arguments(parser)`` and ``run(args) -> int``; options several commands share are declared
# once, in options.py. A command raises; cmim_hf.errors.run_with_error_boundary is the one place
# that catches and prints. Only the module of the subcommand being run is imported, so that
# `cmim --help` does not import torch.

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from types import ModuleType

SUBCOMMANDS: dict[str, str] = {
    "embed": "embed a CSV/Parquet SMILES column into Parquet (every row kept, invalid rows flagged)",
    "pretrain": "pre-train a cMIM model on a SMILES corpus",
    "benchmark": "evaluate featurizers on MoleculeNet or your CSV with probe models",
    "finetune": "fine-tune a cMIM checkpoint on MoleculeNet or your CSV (stock Trainer)",
    "sample": "generate molecules from the prior or around seed molecules (CSV/JSON)",
    "reconstruct": "encode molecules (z = mu) and decode them back: exact match, validity, similarity",
    "optimize": "property-guided CMA-ES search in latent space around seed molecules",
    "interpolate": "decode the path between the latent codes of two molecules (CSV/JSON, optional image)",
    "fit-prior": "fit the aggregate posterior (the default sampling prior) of a checkpoint to training molecules",
    "evaluate-samples": "MOSES metrics (Valid, Unique, FCD, SNN, Frag, Scaf, IntDiv, Filters, Novelty) of any SMILES file",
}
"""Subcommand -> its one-line help; its module is ``cmim_hf.cli.<name with _ for ->``."""


def command_module(name: str) -> ModuleType:
    """The module of the subcommand ``name`` (imported now)."""
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")


def build_parser(
    argv: list[str],
) -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    """The parser, and the ``run`` function of the subcommand ``argv`` names (if any): only that
    subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="cmim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    requested = next((a for a in argv if not a.startswith("-")), None)
    runners = {}
    for name, help_text in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == requested:
            module = command_module(name)
            module.add_arguments(subparser)
            runners[name] = module.run
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    """Run ``cmim`` with ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, runners = build_parser(argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    from cmim_hf.errors import run_with_error_boundary

    return run_with_error_boundary(args.command, runners[args.command], args)
