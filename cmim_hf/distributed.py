"""Process groups for multi-process pre-training and embedding: this process's rank, a gloo group
for the small syncs of sharded embedding, and leaving a gloo group cleanly.

Two failures were seen at the end of two-process CPU runs, after every rank had done its work:
- **abort at exit**: a gloo group left to interpreter exit aborts a finished rank ("terminate
  called without an active exception", exit code -6), and the launcher reports the run failed;
- **deadlock**: after a collective completes, a gloo worker thread still drops its work objects,
  and freeing their Python-owned tensors needs the GIL. The group's destructor waits for the
  workers while the main thread holds the GIL, so a worker still dropping work never finishes
  (``~ProcessGroupGloo`` against ``runLoop`` in ``~AsyncBarrierWork``; once in 20 runs). Gloo has no
  ``shutdown`` that joins its workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

GLOO_SETTLE_S = 1.0
"""Seconds the main thread gives gloo's worker threads, without the GIL, to drop finished work."""


def destroy_process_group_safely() -> None:
    """Destroy the default process group, after letting gloo's workers finish with the GIL free."""
    import torch.distributed as dist

    time.sleep(GLOO_SETTLE_S)
    dist.destroy_process_group()


def leave_process_group() -> None:
    """In a multi-process run: wait for every rank at a barrier, then destroy the process group
    (:func:`destroy_process_group_safely`). Nothing to do in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        destroy_process_group_safely()


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) from torch.distributed, or from the torchrun / accelerate environment
    variables (``RANK``, ``WORLD_SIZE``) before a group exists; (0, 1) in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@contextmanager
def gloo_process_group(world: int) -> Iterator[None]:
    """Make sure a process group exists while the block runs when ``world`` > 1 (gloo: only used
    for small syncs); one created here is destroyed after it (:func:`destroy_process_group_safely`)."""
    import torch.distributed as dist

    created = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        created = True
    try:
        yield
    finally:
        if created:
            destroy_process_group_safely()
