"""The options that several ``cmim`` commands share, each declared here once, and the options that
mirror the fields of a dataclass (:class:`FieldOption`), whose type, default and help come from the
field.

Every help text names its default itself where one matters, so that it reads the same under any
help formatter. This module imports nothing heavy: what it needs of torch or the evaluation package
it imports when a command declares its options.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cmim_hf import DEFAULT_CHECKPOINT, resolve_checkpoint

EXIT_CODES = "exit codes: 0 ok, 2 a bad file, column, checkpoint or option (one line naming it), 1 a bug (with its traceback)"
DEFAULT_TASKS = "esol,freesolv,lipo"


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


def describe(parser: argparse.ArgumentParser, examples: str) -> None:
    """Give ``parser`` an epilog: ``examples`` (raw text), then the exit codes every command shares."""
    parser.formatter_class = DefaultsHelpFormatter
    parser.epilog = f"{examples}\n\n{EXIT_CODES}" if examples else EXIT_CODES


# ---------------------------------------------------------------------------------------------
# Options of several commands
# ---------------------------------------------------------------------------------------------


def add_input(parser: argparse.ArgumentParser, what: str) -> None:
    """The positional input table: CSV (optionally gzipped) or Parquet holding ``what``."""
    parser.add_argument("input", type=Path, help=f"CSV (.csv, .csv.gz) or Parquet file of {what}")


def add_output(parser: argparse.ArgumentParser, what: str) -> None:
    """``-o/--output``, the output file (required)."""
    parser.add_argument("-o", "--output", type=Path, required=True, help=f"output file: {what}")


def add_overwrite(parser: argparse.ArgumentParser, what: str = "existing output files") -> None:
    """``--overwrite``: without it a command refuses to replace what it would write."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} (refused otherwise)")


def add_smiles_col(
    parser: Any, of: str = "the input", default: str | None = None, aliases: Sequence[str] = ()
) -> None:
    """``--smiles-col``: the SMILES column of ``of``; by default the one rule of
    :func:`cmim_hf.io.smiles_column` (the column named smiles, else mol, in any case)."""
    rule = f"default: {default}" if default else "default: the column named 'smiles', else 'mol', in any case"
    parser.add_argument(
        "--smiles-col", *aliases, dest="smiles_col", default=default, help=f"SMILES column of {of} ({rule})"
    )


def add_model(parser: argparse.ArgumentParser, what: str = "a cMIM model") -> None:
    """``--model``: a checkpoint folder, a Hub id or ``shipped`` (also the default), given to the
    command as the checkpoint's path or id (:func:`cmim_hf.resolve_checkpoint`)."""
    parser.add_argument(
        "--model",
        type=resolve_checkpoint,
        default=DEFAULT_CHECKPOINT,
        metavar="PATH|shipped",
        help=f"checkpoint folder or Hub id of {what}, or 'shipped' "
        "(default: the checkpoint shipped in cmim_hf/pretrained)",
    )


def add_batch_size(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--batch-size``: ``what`` (e.g. molecules per forward pass)."""
    parser.add_argument("--batch-size", type=int, default=default, help=f"{what} (default: {default})")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``: a torch device, by default CUDA where there is one."""
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def add_dtype(parser: argparse.ArgumentParser) -> None:
    """``--dtype``: the compute precision (:mod:`cmim_hf.precision`)."""
    from cmim_hf.precision import COMPUTE_DTYPES

    parser.add_argument(
        "--dtype",
        choices=tuple(COMPUTE_DTYPES),
        default="float32",
        help="compute precision: bfloat16 runs the matmuls in bf16 (autocast; float32 weights and "
        "outputs) where the CPU/GPU has fast bf16, and falls back to float32 with a note elsewhere "
        "(default: float32)",
    )


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ---------------------------------------------------------------------------------------------
# The task options of `cmim benchmark` and `cmim finetune`
# ---------------------------------------------------------------------------------------------


def add_task_options(parser: argparse.ArgumentParser, seeds: int, out: Path) -> None:
    """The tasks to run (built-in ones and the user's --csv), how they are split and where the
    reports go: read back by :func:`tasks_from_args`."""
    from cmim_hf.evaluation.tasks import BUILTIN_TASKS, SPLIT_KINDS, TASK_TYPES

    parser.add_argument(
        "--tasks", action="append", metavar="T1,T2",
        help=f"built-in tasks (default: {DEFAULT_TASKS}, or none with --csv); any of {','.join(BUILTIN_TASKS)}. "
        "Terms of each data set: cmim_hf/package_data/README.md (SIDER's own terms are often non-commercial)",
    )  # fmt: skip
    parser.add_argument(
        "--csv", type=Path, metavar="PATH", help="your own CSV or Parquet file as an extra task"
    )
    add_smiles_col(parser, "--csv", default="smiles")
    parser.add_argument(
        "--label-col", action="append", metavar="COL", help="label column of --csv; repeat for multi-task"
    )
    parser.add_argument("--task", choices=TASK_TYPES, help="task type of --csv")
    parser.add_argument("--task-name", help="name of the --csv task in reports (default: file stem)")
    parser.add_argument(
        "--split",
        choices=SPLIT_KINDS,
        default="random",
        help="how each task is split into train/valid/test (default: random)",
    )
    parser.add_argument(
        "--seeds", type=int, default=seeds, help=f"number of seeds 0..N-1, a split each (default: {seeds})"
    )
    parser.add_argument("--out", type=Path, default=out, help=f"output folder (default: {out})")
    parser.add_argument("--max-molecules", type=int, help="seeded subsample of each task (quick runs)")
    parser.add_argument(
        "--data-dir", type=Path, help="folder of the MoleculeNet files (default: shipped copy)"
    )


def comma_list(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values, dropping blanks."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def tasks_from_args(args: argparse.Namespace) -> list[Any]:
    """The tasks of :func:`add_task_options`: built-in task names, then the --csv task if given.

    Raises:
        DataError: --csv without --label-col and --task, or those options without --csv; or what
            :func:`cmim_hf.evaluation.tasks.load_table_task` raises for the --csv file.
    """
    from cmim_hf.evaluation.tasks import DataError, load_table_task

    csv_options = args.label_col or args.task or args.task_name
    if args.csv is None:
        if csv_options:
            raise DataError("--label-col/--task/--task-name need --csv")
        return comma_list(args.tasks or [DEFAULT_TASKS])
    if not args.label_col or not args.task:
        raise DataError("--csv needs --label-col (one or more) and --task regression|classification")
    csv_task = load_table_task(
        args.csv, args.smiles_col, comma_list(args.label_col), args.task, name=args.task_name
    )
    return [*comma_list(args.tasks), csv_task]


# ---------------------------------------------------------------------------------------------
# Options that mirror dataclass fields
# ---------------------------------------------------------------------------------------------


_FROM_FIELD: Any = object()  # FieldOption.default: the field's own


@dataclasses.dataclass(frozen=True)
class FieldOption:
    """A command-line option that sets the dataclass field ``field``.

    Its type is the field's (``int | None`` gives ``int``; a bool field gives a flag); its default
    and help are the field's unless given here. ``flag`` is ``--field-name`` unless given, and the
    parsed value lands under the flag's name (``--max-length`` -> ``args.max_length``).
    """

    field: str
    flag: str = ""
    default: Any = _FROM_FIELD
    help: str = ""
    choices: Sequence[Any] | None = None
    metavar: str | None = None
    type: Callable[[str], Any] | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


_SCALAR_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _scalar_type(annotation: Any) -> type:
    """``int``, ``float``, ``str`` or ``bool``: the one type of an annotation besides None (``str``
    for anything else, e.g. ``SchedulerType | str``). Annotations may be strings."""
    if isinstance(annotation, str):
        names = [part.strip() for part in annotation.split("|")]
    else:
        names = [getattr(a, "__name__", str(a)) for a in typing.get_args(annotation) or (annotation,)]
    names = [name for name in names if name not in ("None", "NoneType")]
    return _SCALAR_TYPES.get(names[0], str) if len(names) == 1 else str


def add_field_options(parser: Any, cls: type, options: Sequence[FieldOption]) -> None:
    """Add one option per :class:`FieldOption` of the dataclass ``cls`` to ``parser`` (or group)."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    for option in options:
        field = fields[option.field]
        default = field.default if option.default is _FROM_FIELD else option.default
        help_text = option.help or field.metadata.get("help", "")
        kind = option.type or _scalar_type(field.type)
        if kind is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(option.option, action=action, default=default, help=help_text)
            continue
        parser.add_argument(
            option.option,
            type=kind,
            default=default,
            choices=option.choices,
            metavar=option.metavar,
            help=help_text,
        )


def field_values(args: argparse.Namespace, options: Sequence[FieldOption]) -> dict[str, Any]:
    """The parsed values of ``options`` by field name: keyword arguments of their dataclass."""
    return {option.field: getattr(args, option.dest) for option in options}
