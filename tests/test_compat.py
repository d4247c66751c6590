"""The 0.1 module paths still import in 0.2, as the moved modules themselves, with a warning."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import cmim_hf
from cmim_hf._compat import MOVED_MODULES

PACKAGE = Path(cmim_hf.__file__).resolve().parent

IMPORT_EVERY_OLD_PATH = """
import importlib, json, sys, warnings
from cmim_hf._compat import MOVED_MODULES
report = {}
for old, new in MOVED_MODULES.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    report[old] = {
        "same": module is importlib.import_module(new),
        "warned": [str(w.message) for w in caught if w.category is DeprecationWarning],
    }
print(json.dumps(report))
"""


def test_every_old_path_is_the_new_module_with_a_warning() -> None:
    """In a fresh interpreter: each old path gives the very module of its new path, and says where."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_OLD_PATH], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert set(report) == set(MOVED_MODULES)
    for old, new in MOVED_MODULES.items():
        assert report[old]["same"], old
        assert report[old]["warned"] == [f"{old} moved to {new}; the old path will be removed in 0.3"]


def test_names_import_from_an_old_path() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from cmim_hf.modeling_cmim import CMIMForConditionalGeneration
        from cmim_hf.trainer import CMIMTrainer
    from cmim_hf.training.trainer import CMIMTrainer as moved

    assert CMIMTrainer is moved
    assert CMIMForConditionalGeneration is cmim_hf.CMIMForConditionalGeneration


def test_no_file_stands_at_an_old_path() -> None:
    for old in MOVED_MODULES:
        relative = Path(*old.split(".")[1:])
        assert not (PACKAGE / relative).with_suffix(".py").exists(), old
