"""Transformers' own common model tests, fetched at test time (never copied into this repository).

``load_common_tests()`` downloads the source distribution of the installed transformers version
with pip into a temporary folder, unpacks its ``tests/*.py`` as the package
``transformers_common_tests`` and puts it on ``sys.path``. The sdist lacks the generation and
export mixins that ``test_modeling_common`` imports (replaced by empty classes: those tests are not
run; generation has its own in ``tests/test_generation.py``), the data file of the config tests
(replaced by every common ``PreTrainedConfig`` field with a value other than its default) and the
tiny Hub models of the pipeline tests (an empty summary: every pipeline test skips itself).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"
STAND_INS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {'output_hidden_states': True, 'return_dict': False, 'dtype': 'float16', "
        "'chunk_size_feed_forward': 5, 'id2label': {0: 'label'}, 'label2id': {'label': 0}, "
        "'problem_type': 'regression'}\n"
    ),
}


class CommonTestsUnavailable(RuntimeError):
    """The sdist could not be downloaded or unpacked (no package index reachable)."""


def load_common_tests() -> Path:
    """Download and unpack the common tests of the installed transformers; returns their folder."""
    root = Path(tempfile.mkdtemp(prefix="transformers-common-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    requirement = f"transformers=={transformers.__version__}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-cache-dir",
               "--no-binary", ":all:", requirement, "--dest", str(root)]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = getattr(error, "stderr", "") or ""
        raise CommonTestsUnavailable(f"pip download {requirement} failed: {stderr.strip()[-500:]}") from None
    sdist = next(root.glob("transformers-*.tar.gz"))
    package = root / PACKAGE
    package.mkdir()
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                (package / parts[2]).write_bytes(archive.extractfile(member).read())
    if not (package / "test_modeling_common.py").is_file():
        raise CommonTestsUnavailable(f"{sdist.name} has no tests/test_modeling_common.py")
    (package / "__init__.py").write_text("")
    for path, source in STAND_INS.items():
        module = package / path
        module.parent.mkdir(exist_ok=True)
        (module.parent / "__init__.py").write_text("")
        module.write_text(source)
    # test_pipeline_mixin reads the installed transformers through <root>/src/transformers/__init__.py
    # (``direct_transformers_import`` runs that file, then returns the module already imported)
    (root / "src" / "transformers").mkdir(parents=True)
    (root / "src" / "transformers" / "__init__.py").write_text("# the installed transformers is used\n")
    tiny_models = root / "tiny_models" / "reports"
    tiny_models.mkdir(parents=True)
    (tiny_models / "tiny_model_summary.json").write_text("{}")
    os.environ["TRANSFORMERS_TINY_MODEL_PATH"] = str(tiny_models.parent)
    sys.path.insert(0, str(root))
    return package
