"""Old import paths and names of what moved or was renamed in 0.2, kept for that release only
(CHANGELOG lists them): ``import cmim_hf.trainer`` gives the module :mod:`cmim_hf.training.trainer`
itself, and ``cmim_hf.evaluation.CMIMFeaturizer`` the class now named ``CheckpointFeaturizer``."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

MOVED_MODULES: dict[str, str] = {
    **{
        f"cmim_hf.{name}": f"cmim_hf.models.cmim.{name}"
        for name in (
            "configuration_cmim",
            "modeling_cmim",
            "tokenization_cmim",
            "pooling",
            "pipelines",
            "smiles_normalization",
        )
    },
    **{
        f"cmim_hf.{name}": f"cmim_hf.training.{name}"
        for name in ("losses", "trainer", "latent_stats", "corpus", "streaming", "pretrain", "finetune")
    },
    "cmim_hf.data": "cmim_hf.evaluation.tasks",
    "cmim_hf.smiles_grammar": "cmim_hf.generation.grammar",
}
"""Old module path (0.1) -> where the module lives now."""


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path of :data:`MOVED_MODULES` as the new module itself (the same object, so
    classes, ``isinstance`` and pickles agree), with a DeprecationWarning. No file stands at the old
    path: the package's folders show only where things live now."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path will be removed in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its new name."""


def install_moved_module_finder() -> None:
    """Put :class:`MovedModuleFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())


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
