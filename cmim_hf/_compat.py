"""Old import paths and names of what moved or was renamed in 0.2, kept for that release only
(CHANGELOG lists them): ``import cmim_hf.trainer`` gives the module :mod:`cmim_hf.training.trainer`
itself, and ``cmim_hf.evaluation.CMIMFeaturizer`` the class now named ``CheckpointFeaturizer``."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from typing import Any


def alias_moved_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) the module ``new``, with a DeprecationWarning."""
    warnings.warn(
        f"{old} moved to {new}; the old path will be removed in 0.3", DeprecationWarning, stacklevel=3
    )
    sys.modules[old] = importlib.import_module(new)


def renamed_name(module: str, old: str, new: str, value: Any) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module`` that gives ``value`` (now called ``new``) for the
    old name ``old``, with a DeprecationWarning, and raises AttributeError for any other name."""

    def __getattr__(name: str) -> Any:
        if name != old:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{old} is now {module}.{new}; the old name will be removed in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
