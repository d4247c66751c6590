"""The one error boundary of ``cmim`` (:func:`cmim_hf.errors.run_with_error_boundary`): inside every
subcommand, a ``ValueError`` (a bug) exits 1 with its traceback, and an ``InputError`` exits 2 with
exactly one line; no other place of the package prints an error, and a command catches only to
raise again."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pandas as pd
import pytest

import cmim_hf
from cmim_hf.cli import SUBCOMMANDS, main
from cmim_hf.errors import InputError

PACKAGE = Path(cmim_hf.__file__).parent

# Each command with arguments that pass its own checks, and a function it calls afterwards (a
# library function where the command reaches one before loading a model), made to fail below.
CASES: dict[str, tuple[list[str], str]] = {
    "embed": (["embed", "IN", "-o", "OUT.parquet"], "cmim_hf.cli.embed.file_smiles_column"),
    "pretrain": (
        ["pretrain", "--train-file", "IN", "--output-dir", "OUT"],
        "cmim_hf.training.pretrain.check_run_inputs",
    ),
    "benchmark": (
        ["benchmark", "--model", "ecfp4", "--tasks", "esol", "--out", "OUT"],
        "cmim_hf.cli.benchmark.run_benchmark",
    ),
    "finetune": (["finetune", "--tasks", "esol", "--out", "OUT"], "cmim_hf.cli.finetune.finetune"),
    "sample": (["sample", "-n", "2", "-o", "OUT.csv"], "cmim_hf.cli.generate.load"),
    "reconstruct": (["reconstruct", "IN", "-o", "OUT.csv"], "cmim_hf.cli.generate.load"),
    "optimize": (["optimize", "IN", "-o", "OUT.csv"], "cmim_hf.cli.generate.load"),
    "interpolate": (["interpolate", "CCO", "CCN", "-o", "OUT.csv"], "cmim_hf.cli.generate.load"),
    "fit-prior": (["fit-prior", "IN", "--model", "OUT"], "cmim_hf.cli.generate.load"),
    "evaluate-samples": (
        ["evaluate-samples", "IN", "-o", "OUT.json"],
        "cmim_hf.cli.evaluate_samples.read_smiles_file",
    ),
}


def test_every_command_is_covered() -> None:
    assert set(CASES) == set(SUBCOMMANDS)


def _run_failing(command: str, error: Exception, tmp_path: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``cmim <command>`` with CASES' function raising ``error``; the exit code and stderr."""
    table = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN"]}).to_csv(table, index=False)
    (tmp_path / "out").mkdir()  # fit-prior's checkpoint folder; an empty run folder for the others
    argv, target = CASES[command]
    argv = [str(table) if a == "IN" else a.replace("OUT", str(tmp_path / "out")) for a in argv]
    module, _, name = target.rpartition(".")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module(module), name, fail)
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_value_error_in_a_command_is_a_bug_with_its_traceback(
    command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    code, err = _run_failing(command, ValueError("boom"), tmp_path, monkeypatch, capsys)
    assert code == 1, err
    assert "Traceback" in err and "ValueError: boom" in err, err
    assert err.strip().splitlines()[-1].startswith(f"cmim {command}: unexpected error (ValueError)"), err


@pytest.mark.parametrize("command", sorted(CASES))
def test_an_input_error_in_a_command_is_one_line(command: str, tmp_path: Path, monkeypatch, capsys) -> None:
    code, err = _run_failing(
        command, InputError("the input is bad\nsecond line"), tmp_path, monkeypatch, capsys
    )
    assert code == 2, err
    assert err.strip().splitlines() == [f"cmim {command}: error: the input is bad"], err


def test_only_the_boundary_prints_errors() -> None:
    """The text ': error: ' stands in cmim_hf/errors.py alone."""
    hits = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if ": error: " in path.read_text(encoding="utf-8")
    )
    assert hits == ["errors.py"]


def test_commands_catch_only_to_raise_again() -> None:
    """Every ``except`` in the command modules raises (a more precise error): none prints or exits."""
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler):
                assert any(isinstance(inner, ast.Raise) for inner in ast.walk(node)), (
                    f"{path.name}:{node.lineno}"
                )


@pytest.mark.parametrize(
    "old, names",
    [
        ("cmim_hf.embed_cli", ["add_embed_arguments", "run_embed_command", "main"]),
        (
            "cmim_hf.evaluation.cli",
            ["add_benchmark_arguments", "run_benchmark_command", "main", "tasks_from_args"],
        ),
        (
            "cmim_hf.evaluation.samples_cli",
            ["add_evaluate_samples_arguments", "run_evaluate_samples_command"],
        ),
        (
            "cmim_hf.generation_cli",
            ["add_fit_prior_arguments", "run_sample_command", "resolve_score", "UsageError"],
        ),
    ],
)
def test_the_old_command_modules_keep_their_names(old: str, names: list[str]) -> None:
    module = importlib.import_module(old)
    assert all(callable(getattr(module, name)) for name in names)


def test_an_old_run_command_reports_through_the_boundary(tmp_path: Path, capsys) -> None:
    """``run_<command>_command`` of the old modules returns the exit code and prints one line."""
    import argparse

    from cmim_hf.generation_cli import add_reconstruct_arguments, run_reconstruct_command

    args = add_reconstruct_arguments(argparse.ArgumentParser()).parse_args(
        [str(tmp_path / "absent.csv"), "-o", str(tmp_path / "out.csv")]
    )
    assert run_reconstruct_command(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cmim reconstruct: error: input file not found: {tmp_path / 'absent.csv'}"
    ]
