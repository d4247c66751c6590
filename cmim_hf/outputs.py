"""One output rule for every command: nothing a user has is destroyed or silently replaced.

- An output that equals one of the command's inputs is refused (:class:`OutputError`).
- An existing output is refused unless the caller says ``overwrite`` (``--overwrite``).
- Results are written to a temporary file in the target's folder and moved into place only when
  complete (:func:`atomic_output`), so an interrupted or failed run leaves the previous output whole.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cmim_hf.errors import InputError

__all__ = [
    "OutputError",
    "check_output_path",
    "check_output_folder",
    "check_writable_target",
    "atomic_output",
    "commit_output",
    "output_lock",
    "partial_path",
]


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
    """``output`` as a Path, after refusing an output that is one of ``inputs``, that can never be
    written (:func:`check_writable_target`) or, without ``overwrite``, that exists already.

    Raises:
        OutputError: naming the path and what to do.
    """
    output = Path(output)
    for source in inputs:
        if source is not None and (
            _same_file(output, Path(source)) or output.resolve() == Path(source).resolve()
        ):
            raise OutputError(f"the output {output} is the input {source}: choose another output path")
    check_writable_target(output)
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


def partial_path(path: Path) -> Path:
    """A temporary name next to ``path``, unique to this process and call: two writers of one output
    never write into the same file. It keeps ``path``'s suffixes, so writers that infer a format or a
    compression from the name (``.csv.gz``, ``.parquet``) write what the final name says."""
    return path.with_name(
        f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}{''.join(path.suffixes)}"
    )


@contextmanager
def output_lock(path: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold the write lock of ``path`` (an ``flock`` on ``.<name>.lock`` beside it, removed on
    release) for the block; ``wait`` for another holder instead of failing (a cache that two
    processes may write with the same content).

    Raises:
        OutputError: another process holds it (naming the output): a second writer fails at once
            instead of racing the first one.
    """
    path = Path(path)
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        handle = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise OutputError(
                f"another process is writing {path}; wait for it to finish or choose another output"
            ) from None
        try:  # the holder before us may have removed the lock file between our open and our lock
            if os.stat(lock_path).st_ino == os.fstat(handle).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(handle)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while still held: a waiter that opened it retries
        os.close(handle)


def check_writable_target(path: Path) -> None:
    """Refuse, before any work, an output that can never be written: a folder in its place or a
    folder (its nearest existing ancestor) that this user cannot write into.

    Raises:
        OutputError: naming the path.
    """
    if path.is_dir():
        raise OutputError(f"the output {path} is a folder: give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the folder {folder} is read-only for this user")


def commit_output(partial: Path, path: Path, overwrite: bool = True) -> None:
    """Move the complete result ``partial`` to ``path`` in one step. Without ``overwrite`` an output
    that exists by now (written by a process that did not take the lock) is kept and
    :class:`OutputError` raised; atomically where the file system has hard links."""
    if overwrite:
        os.replace(partial, path)
        return
    try:
        os.link(partial, path)  # fails, atomically, if path exists
    except FileExistsError:
        raise OutputError(f"{path} appeared while this command ran; pass --overwrite to replace it") from None
    except OSError:  # a file system without hard links: check, then move
        if path.exists():
            raise OutputError(
                f"{path} appeared while this command ran; pass --overwrite to replace it"
            ) from None
        os.replace(partial, path)


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = True, wait: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds it is moved to ``path``
    (atomically, on the same file system), when it fails or is interrupted it is removed and
    ``path`` is untouched.

    The block holds ``path``'s write lock (:func:`output_lock`), so a concurrent second writer fails
    with one line (or, with ``wait``, waits for the first); with ``overwrite=False`` an output that appeared while the block ran (written by
    a process that did not take the lock) is not replaced.

    Raises:
        OutputError: a folder in ``path``'s place, a read-only folder, another writer, or (without
            ``overwrite``) an output that exists when the result is complete.
    """
    path = Path(path)
    check_writable_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    with output_lock(path, wait):
        try:
            yield partial
            commit_output(partial, path, overwrite)
        finally:
            partial.unlink(missing_ok=True)
