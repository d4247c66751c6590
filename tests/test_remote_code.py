"""The remote code a checkpoint carries is generated from ``cmim_hf/models/cmim``, not kept by hand.

``cmim_hf/pretrained/*.py`` must be byte-identical to their sources: editing one without the other
fails here. Refresh the shipped copies with::

    python -c "from cmim_hf.registration import save_remote_code; save_remote_code('cmim_hf/pretrained')"
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from clean_python import run_without_cmim_hf
from helpers import SMILES, tiny_config
from transformers.dynamic_module_utils import get_relative_import_files

import cmim_hf
from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.registration import remote_code_drift, remote_code_sources, save_remote_code

SHIPPED = Path(cmim_hf.DEFAULT_CHECKPOINT)
SOURCE = Path(cmim_hf.__file__).resolve().parent / "models" / "cmim"
REFRESH = (
    "python -c \"from cmim_hf.registration import save_remote_code; save_remote_code('cmim_hf/pretrained')\""
)


def code_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.py"))


def needed_code_files(folder: Path) -> set[str]:
    """The files of the modules that ``folder``'s config.json (``auto_map``, ``custom_pipelines``)
    and tokenizer_config.json (``auto_map``) name, with the modules they import relatively, as
    Transformers resolves them when it loads the folder with ``trust_remote_code=True``."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    references = [
        *config["auto_map"].values(),
        *(entry["impl"] for entry in config["custom_pipelines"].values()),
        *(name for name in tokenizer_config["auto_map"]["AutoTokenizer"] if name),
    ]
    named = {f"{reference.split('.')[0]}.py" for reference in references}
    imported = {Path(path).name for name in named for path in get_relative_import_files(folder / name)}
    return named | imported


def test_the_sources_are_the_model_package() -> None:
    sources = remote_code_sources()
    assert set(sources) == {
        "configuration_cmim.py",
        "modeling_cmim.py",
        "pipelines.py",
        "pooling.py",
        "smiles_normalization.py",
        "tokenization_cmim.py",
    }
    assert all(path.parent == SOURCE for path in sources.values())


REPO_CHECKPOINTS = sorted(
    config.parent
    for config in (SHIPPED.parents[1] / "model_cards").rglob("config.json")
    if "auto_map" in json.loads(config.read_text())
)


@pytest.mark.parametrize("folder", [SHIPPED, *REPO_CHECKPOINTS], ids=lambda f: f.name)
def test_checkpoint_code_is_its_source_byte_for_byte(folder: Path) -> None:
    """The shipped checkpoint and every checkpoint under model_cards/ that names remote code."""
    assert remote_code_drift(folder) == [], f"the remote code of {folder} drifted; refresh it with {REFRESH}"


def test_shipped_code_is_complete() -> None:
    """Every module the shipped configs name and every module those import is there, and no other."""
    assert code_files(SHIPPED) == sorted(needed_code_files(SHIPPED)) == list(remote_code_sources())


def test_a_drifted_copy_is_reported_and_refreshed(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    shutil.copytree(SHIPPED, folder)
    with open(folder / "pooling.py", "a", encoding="utf-8") as handle:
        handle.write("# edited by hand\n")
    (folder / "tokenization_cmim.py").unlink()
    assert remote_code_drift(folder) == [
        f"{folder / 'pooling.py'}: differs from {SOURCE / 'pooling.py'}",
        f"{folder / 'tokenization_cmim.py'}: missing (source {SOURCE / 'tokenization_cmim.py'})",
    ]

    untouched = {name: (folder / name).read_bytes() for name in ("config.json", "tokenizer_config.json")}
    written = save_remote_code(folder)
    assert [path.name for path in written] == list(remote_code_sources())
    assert remote_code_drift(folder) == []
    for name, source in remote_code_sources().items():
        assert (folder / name).read_bytes() == source.read_bytes(), name
    assert {name: (folder / name).read_bytes() for name in untouched} == untouched


REMOTE_LOAD = """
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
folder, smiles = sys.argv[2], json.loads(sys.argv[3])
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(folder, trust_remote_code=True)
modules = {type(config).__module__, type(tokenizer).__module__, type(model).__module__}
assert all(module.startswith("transformers_modules.") for module in modules), modules
batch = tokenizer(smiles, padding=True, return_tensors="pt")
with torch.no_grad():
    z_mean = model(**batch).z_mean
extractor = pipeline("feature-extraction", model=folder, trust_remote_code=True, device=-1)
generator = pipeline("cmim-generation", model=folder, trust_remote_code=True, device=-1, max_new_tokens=4)
print(json.dumps({
    "z_mean": z_mean.tolist(),
    "base": type(base).__name__,
    "vector_size": len(extractor(smiles[0])),
    "generated": sorted(generator(smiles[0])),
}))
"""


def test_save_pretrained_writes_the_same_code_and_it_loads_without_cmim_hf(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    assert code_files(folder) == list(remote_code_sources())
    CMIMTokenizer().save_pretrained(folder)
    assert remote_code_drift(folder) == []
    assert sorted(needed_code_files(folder)) == code_files(folder)

    tokenizer_only = tmp_path / "tokenizer"
    CMIMTokenizer().save_pretrained(tokenizer_only)
    for name in code_files(tokenizer_only):
        assert (tokenizer_only / name).read_bytes() == (SOURCE / name).read_bytes(), name

    smiles = SMILES[:3]
    stdout = run_without_cmim_hf(REMOTE_LOAD, [str(folder), json.dumps(smiles)], tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    batch = CMIMTokenizer()(smiles, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).z_mean
    assert torch.allclose(torch.tensor(result["z_mean"]), expected, atol=1e-6)
    assert result["base"] == "CMIMModel"
    assert result["vector_size"] > 0
    assert result["generated"] == ["input", "smiles", "valid"]
