"""What the ``cmim`` command reports in one line and what it reports with a traceback.

An :class:`InputError` is a failure caused by what the user gave: a file, a column, an option, a
checkpoint. Every such error of the package derives from it (and from ``ValueError``, so library
callers can keep catching that). The ``cmim`` entry point prints ``cmim <command>: error: <message>``
for these and for missing or unreadable paths, and exits 2; anything else is a bug and keeps its
traceback (exit 1). This module imports nothing heavy: the entry point reads it on every failure.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["InputError", "is_input_error", "one_line", "run_with_error_boundary"]

EXIT_OK, EXIT_BUG, EXIT_INPUT = 0, 1, 2

# Paths the user named that do not exist or cannot be opened are input errors too.
_PATH_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class InputError(ValueError):
    """A failure caused by the user's file, column, option or checkpoint (the message names it)."""


def is_input_error(error: BaseException) -> bool:
    """True for failures the user can fix from the message alone (exit code 2)."""
    return isinstance(error, (InputError, *_PATH_ERRORS))


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message (``KeyError`` quotes stripped), or its type's name."""
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    message = message.strip()
    return message.splitlines()[0] if message else type(error).__name__


def run_with_error_boundary(name: str, command: Callable[[Any], int], args: Any) -> int:
    """Run one ``cmim`` subcommand: its exit code; input errors in one line (2); bugs with their
    traceback (1)."""
    try:
        return command(args)
    except Exception as error:
        if is_input_error(error):
            print(f"cmim {name}: error: {one_line(error)}", file=sys.stderr)
            return EXIT_INPUT
        traceback.print_exc()
        print(
            f"cmim {name}: unexpected error ({type(error).__name__}), a bug: the traceback above shows where",
            file=sys.stderr,
        )
        return EXIT_BUG
