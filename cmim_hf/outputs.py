"""One output rule for every command: nothing a user has is destroyed or silently replaced.

- An output that equals one of the command's inputs is refused (:class:`OutputError`).
- An existing output is refused unless the caller says ``overwrite`` (``--overwrite``).
- Results are written to a temporary file in the target's folder and moved into place only when
  complete (:func:`atomic_output`), so an interrupted or failed run leaves the previous output whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

__all__ = ["OutputError", "check_output_path", "check_output_folder", "atomic_output"]


class OutputError(InputError):
    """An output path that would destroy or silently replace a file (the message names it)."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False
) -> Path:
    """``output`` as a Path, after refusing an output that is one of ``inputs`` or, without
    ``overwrite``, that exists already.

    Raises:
        OutputError: naming the path and what to do.
    """
    output = Path(output)
    for source in inputs:
        if source is not None and (
            _same_file(output, Path(source)) or output.resolve() == Path(source).resolve()
        ):
            raise OutputError(f"the output {output} is the input {source}: choose another output path")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists; pass --overwrite to replace it")
    return output


def check_output_folder(folder: str | os.PathLike, written: Iterable[str], overwrite: bool = False) -> Path:
    """``folder`` as a Path, after refusing, without ``overwrite``, a folder that already holds any
    of the files or sub-folders ``written`` that the command writes there (an earlier run's results).

    Raises:
        OutputError: naming the folder and what it holds.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the output folder {folder} is a file: choose another --out")
    present = [name for name in written if (folder / name).exists()]
    if present and not overwrite:
        raise OutputError(
            f"{folder} holds an earlier run's {', '.join(present)}; pass --overwrite to replace them "
            "or choose another --out"
        )
    return folder


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds it is renamed to ``path``
    (atomically, on the same file system), when it fails it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
