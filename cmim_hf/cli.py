"""The ``cmim`` command: a thin layer over the library.

    cmim embed IN.csv --smiles-col smiles -o OUT.parquet    informative embeddings of every row
    cmim pretrain --train-file CORPUS --output-dir DIR      pre-train cMIM / MIM / InfoNCE / AE
    cmim benchmark --model ecfp4 --tasks esol --out DIR     MoleculeNet probes, reports, plots
    cmim finetune --model DIR --tasks esol --out DIR        fine-tune with a property head
    cmim sample -n 100 -o samples.csv                       molecules from the prior / near seeds
    cmim reconstruct in.csv -o out.csv                      encode and decode back, with metrics
    cmim optimize --seeds in.csv --score qed -o best.csv    latent-space property optimisation
    cmim interpolate CCO c1ccccc1O -o path.csv --image path.png   the path between two molecules
    cmim evaluate-samples samples.csv -o metrics.json       MOSES metrics of any generator's SMILES

Exit codes: 0 ok; 2 a bad file, column, option or checkpoint (one line, naming it); 1 a bug
(with its traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _embed(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from cmim_hf.embed_cli import add_embed_arguments, run_embed_command

    add_embed_arguments(parser)
    return run_embed_command


def _pretrain(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from cmim_hf.training.pretrain import add_pretrain_arguments, run_pretrain_command

    add_pretrain_arguments(parser)
    return run_pretrain_command


def _benchmark(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from cmim_hf.evaluation.cli import add_benchmark_arguments, run_benchmark_command

    add_benchmark_arguments(parser)
    return run_benchmark_command


def _finetune(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from cmim_hf.training.finetune import add_finetune_arguments, run_finetune_command

    add_finetune_arguments(parser)
    return run_finetune_command


def _generation_command(
    name: str,
) -> Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    def setup(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
        from cmim_hf import generation_cli

        function_name = name.replace("-", "_")
        getattr(generation_cli, f"add_{function_name}_arguments")(parser)
        return getattr(generation_cli, f"run_{function_name}_command")

    return setup


def _evaluate_samples(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from cmim_hf.evaluation.samples_cli import add_evaluate_samples_arguments, run_evaluate_samples_command

    add_evaluate_samples_arguments(parser)
    return run_evaluate_samples_command


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default once: appended as "(default: X)" only when its help does not already
    speak of a default and the default is a value (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if (
            "default" in help_text
            or action.default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


SUBCOMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]]
] = {
    "embed": (
        "embed a CSV/Parquet SMILES column into Parquet (every row kept, invalid rows flagged)",
        _embed,
    ),
    "pretrain": ("pre-train a cMIM model on a SMILES corpus", _pretrain),
    "benchmark": ("evaluate featurizers on MoleculeNet or your CSV with probe models", _benchmark),
    "finetune": ("fine-tune a cMIM checkpoint on MoleculeNet or your CSV (stock Trainer)", _finetune),
    "sample": (
        "generate molecules from the prior or around seed molecules (CSV/JSON)",
        _generation_command("sample"),
    ),
    "reconstruct": (
        "encode molecules (z = mu) and decode them back: exact match, validity, similarity",
        _generation_command("reconstruct"),
    ),
    "optimize": (
        "property-guided CMA-ES search in latent space around seed molecules",
        _generation_command("optimize"),
    ),
    "interpolate": (
        "decode the path between the latent codes of two molecules (CSV/JSON, optional image)",
        _generation_command("interpolate"),
    ),
    "fit-prior": (
        "fit the aggregate posterior (the default sampling prior) of a checkpoint to training molecules",
        _generation_command("fit-prior"),
    ),
    "evaluate-samples": (
        "MOSES metrics (Valid, Unique, FCD, SNN, Frag, Scaf, IntDiv, Filters, Novelty) of any SMILES file",
        _evaluate_samples,
    ),
}


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    """The parser; only the subcommand being run imports its (heavy) module."""
    parser = argparse.ArgumentParser(
        prog="cmim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    requested = next((a for a in argv if not a.startswith("-")), None)
    runners = {}
    for name, (help_text, setup) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=DefaultsHelpFormatter,
        )
        if name == requested:
            runners[name] = setup(subparser)
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, runners = build_parser(argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    from cmim_hf.errors import run_with_error_boundary

    return run_with_error_boundary(args.command, runners[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
