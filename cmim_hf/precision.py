"""Compute precision: bfloat16 where the hardware runs it fast, float32 elsewhere.

bf16 here means autocast: the weights stay float32 and matmuls (linear layers, attention) run in
bfloat16, while softmax, LayerNorm, losses and reductions stay float32 (PyTorch's autocast
policy). On CPUs with AVX512-BF16 or AMX this is several times the float32 matmul rate; on CPUs
without them bf16 is emulated and slower than float32, so a bf16 request falls back to float32
with one warning that says so.
"""

from __future__ import annotations

import functools
import sys
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

COMPUTE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Names accepted for ``dtype`` options (``--dtype`` on the command line)."""

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionFallbackWarning(UserWarning):
    """bf16 was asked for on hardware without fast bf16: float32 is used instead."""


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matmul instructions (AVX512-BF16 or AMX-BF16).

    Read from ``/proc/cpuinfo`` on Linux; elsewhere oneDNN's own check is used."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set()
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
        return any(flag in flags for flag in _NATIVE_BF16_FLAGS)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fast_bf16_available(device: torch.device | str) -> bool:
    """True when ``device`` runs bf16 matmuls natively (a bf16-capable GPU, or such a CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_compute_dtype(dtype: torch.dtype | str | None, device: torch.device | str) -> torch.dtype:
    """The dtype to compute in on ``device``: ``dtype`` (a torch dtype or a name of
    :data:`COMPUTE_DTYPES`; None means float32), or float32 with a
    :class:`PrecisionFallbackWarning` where bf16 was asked for but is not fast there.

    Raises:
        ValueError: for a dtype other than float32 / bfloat16.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in COMPUTE_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}")
        dtype = COMPUTE_DTYPES[dtype]
    if dtype not in COMPUTE_DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if dtype == torch.bfloat16 and not fast_bf16_available(device):
        warnings.warn(bf16_fallback_message(device), PrecisionFallbackWarning, stacklevel=2)
        return torch.float32
    return dtype


def bf16_fallback_message(device: torch.device | str) -> str:
    """The one line that says bf16 is not used on ``device``."""
    what = "this CPU has no AVX512-BF16/AMX" if torch.device(device).type == "cpu" else f"{device} lacks bf16"
    return f"bf16 asked for, but {what}: computing in float32 instead"


def autocast_to(dtype: torch.dtype, device: torch.device | str) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def command_compute_dtype(name: str, device: torch.device | str, command: str) -> torch.dtype:
    """:func:`resolve_compute_dtype` for a ``cmim`` command: a fallback to float32 is said in one
    line on stderr (``cmim <command>: note: ...``) instead of a Python warning."""
    dtype = COMPUTE_DTYPES[name]
    if dtype == torch.bfloat16 and not fast_bf16_available(device):
        print(f"cmim {command}: note: {bf16_fallback_message(device)}", file=sys.stderr)
        return torch.float32
    return dtype
