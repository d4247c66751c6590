"""Teaching transformers about cMIM without importing transformers when ``cmim_hf`` is imported.

``import cmim_hf`` must stay cheap (the ``cmim`` command starts in well under a second), yet
``import cmim_hf; AutoModel.from_pretrained(folder)`` must find the cMIM classes. Registration
therefore waits until the program uses transformers' Auto machinery:

- if ``transformers.models.auto.configuration_auto`` is already loaded when ``cmim_hf`` is
  imported, everything is registered at once;
- otherwise an import hook counts the ``transformers.*`` and ``cmim_hf.*`` modules being
  executed and registers when the outermost of those imports has finished and the Auto
  configuration module is loaded. Registering from inside an import would meet
  half-initialised modules (``transformers.modeling_layers`` imports ``AutoModel``, for one).

``register_auto_classes()`` may also be called directly; it is idempotent.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType

_AUTO_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
_TRACKED_PREFIXES = ("transformers.", "cmim_hf.")

_registered = False
_registration_lock = threading.RLock()


def register_auto_classes() -> None:
    """Register cMIM with AutoConfig, AutoTokenizer, the Auto model classes and the pipeline
    registry, and mark the classes for ``save_pretrained``'s remote-code ``auto_map``."""
    global _registered
    with _registration_lock:
        if _registered:
            return
        _uninstall_hook()
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForSeq2SeqLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        from cmim_hf.models.cmim.configuration_cmim import CMIMConfig
        from cmim_hf.models.cmim.modeling_cmim import (
            CMIMForConditionalGeneration,
            CMIMForSequenceClassification,
            CMIMModel,
        )
        from cmim_hf.models.cmim.pipelines import register_pipelines
        from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer

        AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
        AutoTokenizer.register(CMIMConfig, tokenizer_class=CMIMTokenizer, exist_ok=True)
        model_classes = {
            AutoModel: CMIMModel,
            AutoModelForSeq2SeqLM: CMIMForConditionalGeneration,
            AutoModelForSequenceClassification: CMIMForSequenceClassification,
        }
        for auto_class, model_class in model_classes.items():
            auto_class.register(CMIMConfig, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)
        CMIMConfig.register_for_auto_class()
        CMIMTokenizer.register_for_auto_class("AutoTokenizer")
        register_pipelines()
        _registered = True


class _RegisterAfterImports(importlib.abc.MetaPathFinder):
    """Wraps the loaders of ``transformers.*`` and ``cmim_hf.*`` source modules to count how many
    are executing in this thread; registers once that count is back to zero and the Auto
    configuration module has been loaded."""

    def __init__(self) -> None:
        self._depth = threading.local()

    def find_spec(self, fullname: str, path, target: ModuleType | None = None):
        if not fullname.startswith(_TRACKED_PREFIXES):
            return None
        spec = _spec_from_other_finders(self, fullname, path, target)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader.exec_module = self._counting(spec.loader.exec_module)
        return spec

    def _counting(self, exec_module):
        def exec_and_count(module: ModuleType) -> None:
            self._depth.value = getattr(self._depth, "value", 0) + 1
            try:
                exec_module(module)
            finally:
                self._depth.value -= 1
            if self._depth.value == 0 and _AUTO_CONFIG_MODULE in sys.modules:
                register_auto_classes()

        return exec_and_count


def _spec_from_other_finders(hook: _RegisterAfterImports, fullname: str, path, target):
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if finder is hook or find_spec is None:
            continue
        spec = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


_hook: _RegisterAfterImports | None = None


def _uninstall_hook() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def register_when_transformers_is_used() -> None:
    """Register now if transformers' Auto classes are loaded, else as soon as they are."""
    global _hook
    if _AUTO_CONFIG_MODULE in sys.modules:
        register_auto_classes()
    elif _hook is None:
        _hook = _RegisterAfterImports()
        sys.meta_path.insert(0, _hook)
