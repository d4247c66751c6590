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

A checkpoint folder carries the remote code of these classes (the files of
``cmim_hf/models/cmim/`` that its ``auto_map`` and ``custom_pipelines`` name, and what they import
relatively), so that ``trust_remote_code=True`` loads it where ``cmim_hf`` is not installed.
``save_pretrained`` writes them with Transformers' ``custom_object_save``; ``save_remote_code``
does the same for an existing folder (e.g. ``cmim_hf/pretrained``) and ``remote_code_drift``
says which of a folder's files differ from their sources.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from pathlib import Path
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
        from transformers import AutoConfig, AutoTokenizer

        from cmim_hf.models.cmim.configuration_cmim import CMIMConfig
        from cmim_hf.models.cmim.pipelines import register_pipelines
        from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer

        AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
        AutoTokenizer.register(CMIMConfig, tokenizer_class=CMIMTokenizer, exist_ok=True)
        for auto_class, model_class in _auto_model_classes().items():
            auto_class.register(CMIMConfig, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)
        CMIMConfig.register_for_auto_class()
        CMIMTokenizer.register_for_auto_class("AutoTokenizer")
        register_pipelines()
        _registered = True


def _auto_model_classes() -> dict[type, type]:
    """Transformers' Auto model class -> the cMIM class registered for it."""
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    from cmim_hf.models.cmim.modeling_cmim import (
        CMIMForConditionalGeneration,
        CMIMForSequenceClassification,
        CMIMModel,
    )

    return {
        AutoModel: CMIMModel,
        AutoModelForSeq2SeqLM: CMIMForConditionalGeneration,
        AutoModelForSequenceClassification: CMIMForSequenceClassification,
    }


def remote_code_classes() -> tuple[type, ...]:
    """The classes a cMIM checkpoint names for remote code: the config and model classes of its
    config.json ``auto_map``, the tokenizer of tokenizer_config.json's ``auto_map`` and the
    pipelines of config.json's ``custom_pipelines``."""
    from cmim_hf.models.cmim.configuration_cmim import CMIMConfig
    from cmim_hf.models.cmim.pipelines import CMIMGenerationPipeline, InformativeFeatureExtractionPipeline
    from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer

    return (
        CMIMConfig,
        *_auto_model_classes().values(),
        CMIMTokenizer,
        InformativeFeatureExtractionPipeline,
        CMIMGenerationPipeline,
    )


def remote_code_sources() -> dict[str, Path]:
    """File name -> source file of every module a cMIM checkpoint carries: the modules of
    :func:`remote_code_classes` and, recursively, the modules they import relatively, found as
    ``custom_object_save`` finds them. Sorted by name."""
    from transformers.dynamic_module_utils import get_relative_import_files

    sources: dict[str, Path] = {}
    for cls in remote_code_classes():
        module_file = Path(sys.modules[cls.__module__].__file__)
        for path in (module_file, *map(Path, get_relative_import_files(module_file))):
            sources[path.name] = path
    return dict(sorted(sources.items()))


def save_remote_code(folder: str | os.PathLike) -> list[Path]:
    """Write the remote-code files of a cMIM checkpoint into ``folder``, replacing those there.

    Each class of :func:`remote_code_classes` goes through Transformers' ``custom_object_save``
    (what ``save_pretrained`` calls for a registered class), which copies its module and the
    modules it imports relatively, so ``folder`` ends up with exactly the files
    ``save_pretrained`` writes. config.json, tokenizer_config.json and the weights are left as they
    are (their ``auto_map`` and ``custom_pipelines`` name these files by module, not by content).

    Returns:
        the files written, sorted.

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
    """
    from transformers.dynamic_module_utils import custom_object_save

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a checkpoint folder")
    written: set[Path] = set()
    for cls in remote_code_classes():
        written.update(Path(path) for path in custom_object_save(cls, folder))
    return sorted(written)


def remote_code_drift(folder: str | os.PathLike) -> list[str]:
    """One line for each remote-code file of ``folder`` that is missing or differs, byte for byte,
    from its source in ``cmim_hf/models/cmim`` (see :func:`remote_code_sources`); empty when the
    folder carries exactly this code. :func:`save_remote_code` repairs what it lists."""
    folder = Path(folder)
    drift = []
    for name, source in remote_code_sources().items():
        copy = folder / name
        if not copy.is_file():
            drift.append(f"{copy}: missing (source {source})")
        elif copy.read_bytes() != source.read_bytes():
            drift.append(f"{copy}: differs from {source}")
    return drift


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
