"""The command functions' names of 0.1, kept for 0.2 only (CHANGELOG lists them): the
old modules ``cmim_hf.embed_cli``, ``cmim_hf.generation_cli``, ``cmim_hf.evaluation.cli`` and
``cmim_hf.evaluation.samples_cli``, and ``main`` of ``cmim_hf.training.pretrain`` and
``cmim_hf.training.finetune``, give the commands through these functions. This module imports
nothing heavy."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable


def warn_moved(old: str, new: str) -> None:
    """A DeprecationWarning for the import of the old module ``old``."""
    warnings.warn(
        f"{old} moved to {new}; the old path will be removed in 0.3", DeprecationWarning, stacklevel=3
    )


def command_functions(
    command: str,
) -> tuple[Callable[[argparse.ArgumentParser], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    """``add_<command>_arguments(parser)`` (returns the parser) and ``run_<command>_command(args)``,
    which reports an error as ``cmim <command>`` does and returns the exit code."""
    from cmim_hf.cli import command_module
    from cmim_hf.errors import run_with_error_boundary

    module = command_module(command)

    def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        module.add_arguments(parser)
        return parser

    def run_command(args: argparse.Namespace) -> int:
        return run_with_error_boundary(command, module.run, args)

    return add_arguments, run_command


def command_main(command: str, old: str = "") -> Callable[[list[str] | None], int]:
    """``main(argv)``: ``cmim <command> *argv`` (default: ``sys.argv[1:]``), its exit code; called
    by its ``old`` name, with a DeprecationWarning."""

    def main(argv: list[str] | None = None) -> int:
        from cmim_hf.cli import main as cmim

        if old:
            warnings.warn(
                f"{old} is cmim_hf.cli.main([{command!r}, ...]); it will be removed in 0.3",
                DeprecationWarning,
                stacklevel=2,
            )
        return cmim([command, *(sys.argv[1:] if argv is None else argv)])

    return main
