"""What the ``cmim`` command reports in one line and what it reports with a traceback.

An :class:`InputError` is a failure caused by what the user gave: a file, a column, an option, a
checkpoint. Every such error of the package derives from it (and from ``ValueError``, so library
callers can keep catching that); :class:`UsageError` is the one for option values and combinations.
The commands raise; :func:`run_with_error_boundary`, through which the ``cmim`` entry point runs
every subcommand, is the only place that catches and prints. It prints ``cmim <command>: error:
<message>`` for input errors and for missing or unreadable paths, and exits 2; anything else is a
bug and keeps its traceback (exit 1). A ``ValueError`` that is not an :class:`InputError` is a bug
too. A full disk, a read-only file system or a quota is the user's environment, not a bug: one
line and exit 2 too. SIGINT and SIGTERM end a command with ``cmim <command>: interrupted`` and the
shell's codes 130 and 143, after every ``finally`` (temporary files removed) has run. This module
imports nothing heavy: the entry point reads it on every run.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

__all__ = [
    "InputError",
    "Interrupted",
    "UsageError",
    "is_input_error",
    "one_line",
    "raise_interrupted",
    "run_with_error_boundary",
]

EXIT_OK, EXIT_BUG, EXIT_INPUT = 0, 1, 2

# Paths the user named that do not exist or cannot be opened are input errors too.
_PATH_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


# Failures of the user's machine rather than of the code: a full disk, a quota, a read-only mount.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}
_ENVIRONMENT_WORDS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
}


class InputError(ValueError):
    """A failure caused by the user's file, column, option or checkpoint (the message names it)."""


class UsageError(InputError):
    """An option value or a combination of options that cannot work (the message names the options)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (``signum``); ``detail`` says what was kept (a resumable checkpoint).

    A ``KeyboardInterrupt``, so no ``except Exception`` swallows it and every ``finally`` runs."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def raise_interrupted(signum: int, frame: object = None) -> None:
    """Signal handler: raise :class:`Interrupted` where the main thread is."""
    raise Interrupted(signum)


def is_input_error(error: BaseException) -> bool:
    """True for failures the user can fix from the message alone (exit code 2): their input, or
    their machine (a full disk, a quota, a read-only file system)."""
    return isinstance(error, (InputError, *_PATH_ERRORS)) or (
        isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS
    )


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message (``KeyError`` quotes stripped), or its type's name."""
    if isinstance(error, OSError) and error.errno in _ENVIRONMENT_WORDS:
        where = f" while writing {error.filename}" if error.filename else ""
        return f"{_ENVIRONMENT_WORDS[error.errno]}{where}: free space or choose another output"
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    message = message.strip()
    return message.splitlines()[0] if message else type(error).__name__


def run_with_error_boundary(name: str, command: Callable[[Any], int], args: Any) -> int:
    """Run one ``cmim`` subcommand: its exit code; input errors in one line (2); bugs with their
    traceback (1); SIGINT/SIGTERM in one line (130/143)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        previous = {
            signum: signal.signal(signum, raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)
        }
    try:
        return command(args)
    except KeyboardInterrupt as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        detail = f"; {stop.detail}" if isinstance(stop, Interrupted) and stop.detail else ""
        print(f"cmim {name}: interrupted{detail}", file=sys.stderr)
        return 128 + signum
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
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
