"""Old import paths of the modules that moved in 0.3, kept for that release only (CHANGELOG lists
them): ``import cmim_hf.trainer`` gives the module :mod:`cmim_hf.training.trainer` itself."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias_moved_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) the module ``new``, with a DeprecationWarning."""
    warnings.warn(
        f"{old} moved to {new}; the old path will be removed in 0.4", DeprecationWarning, stacklevel=3
    )
    sys.modules[old] = importlib.import_module(new)
