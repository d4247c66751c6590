"""Leaving a gloo process group cleanly, for multi-process pre-training and embedding.

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

import time

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
