"""The cmim-generation pipeline (reconstruct, sample, neighbours) on tiny checkpoints and the
shipped one, in process, without cmim_hf installed and without RDKit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from clean_python import run_without_cmim_hf
from helpers import save_tiny_checkpoint, tiny_config
from transformers import Pipeline, pipeline

import cmim_hf
from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.generation import AggregatePosterior, sample_neighbourhood, sample_prior
from cmim_hf.models.cmim.pipelines import (
    CUSTOM_PIPELINES,
    GENERATION_TASK,
    CMIMGenerationPipeline,
    register_pipelines,
)

SHIPPED = Path(cmim_hf.DEFAULT_CHECKPOINT)
INPUTS = ["CCO", "c1ccccc1", "CC(=O)O", "N[C@@H](C)C(=O)O", "Clc1ccc(Br)cc1"]
MAX_NEW_TOKENS = 16  # random tiny models rarely emit <eos>: keep their decodes short
# MOSES test molecules the shipped checkpoint reconstructs exactly (greedy, z = mu).
MOSES_EXACT = [
    "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O",
    "Clc1ccccc1-c1nc(-c2ccncc2)no1",
    "Cc1nc2c(OCc3ccccc3)cccn2c1CC#N",
    "O=C1c2cccnc2CN1Cc1ccccc1Cl",
    "O=C(NC1CCc2ccccc2C1)c1ccncc1",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random cMIM checkpoint (weights spread enough to decode varied SMILES); saving it
    names both pipelines in its config.json."""
    return save_tiny_checkpoint(
        tmp_path_factory.mktemp("tiny_cmim"), init_std=0.1, smiles_normalization="canonical_nostereo"
    )


@pytest.fixture(scope="module")
def generator(checkpoint: Path) -> Pipeline:
    return pipeline(
        GENERATION_TASK,
        model=str(checkpoint),
        trust_remote_code=True,
        device=-1,
        max_new_tokens=MAX_NEW_TOKENS,
    )


def test_checkpoint_names_both_pipelines_and_the_task_is_registered(checkpoint: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["custom_pipelines"] == CUSTOM_PIPELINES
    assert config["custom_pipelines"][GENERATION_TASK]["impl"] == "pipelines.CMIMGenerationPipeline"
    register_pipelines()
    model = CMIMForConditionalGeneration.from_pretrained(checkpoint).eval()
    in_process = pipeline(GENERATION_TASK, model=model, tokenizer=CMIMTokenizer(), device=-1)
    assert type(in_process) is CMIMGenerationPipeline
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline(GENERATION_TASK, model=str(checkpoint), device=-1)
    with pytest.raises(RuntimeError, match="multiple tasks"):  # two pipelines: name the task
        pipeline(model=str(checkpoint), trust_remote_code=True, device=-1)


def test_shipped_checkpoint_names_both_pipelines() -> None:
    """(Its pipelines.py is this module byte for byte: tests/test_remote_code.py.)"""
    assert json.loads((SHIPPED / "config.json").read_text())["custom_pipelines"] == CUSTOM_PIPELINES


def test_reconstruct_gives_one_output_per_input_in_order(generator: Pipeline) -> None:
    one_by_one = [generator(smiles) for smiles in INPUTS]
    assert all(set(output) == {"input", "smiles", "valid"} for output in one_by_one)
    assert [output["input"] for output in one_by_one] == INPUTS
    assert all(isinstance(output["valid"], bool) for output in one_by_one)
    assert len({output["smiles"] for output in one_by_one}) > 1  # the tiny model tells inputs apart
    for batch_size in (1, 2, 64):
        assert generator(INPUTS, batch_size=batch_size) == one_by_one
    assert generator(INPUTS, mode="reconstruct") == one_by_one


def test_inputs_are_normalized_as_the_checkpoint_was_trained(generator: Pipeline) -> None:
    as_trained = generator("CC(N)C(=O)O")["smiles"]
    assert generator("N[C@@H](C)C(=O)O") == {
        "input": "N[C@@H](C)C(=O)O",
        "smiles": as_trained,
        "valid": generator("CC(N)C(=O)O")["valid"],
    }


def test_an_unreadable_input_gets_an_error_and_the_others_are_generated(generator: Pipeline) -> None:
    too_long = "C" * 200  # the tiny model reads 128 positions
    outputs = generator(["CCO", "C1CC", too_long, None, "c1ccccc1"], batch_size=2)
    assert outputs[0] == generator("CCO") and outputs[4] == generator("c1ccccc1")
    assert outputs[1] == {"input": "C1CC", "error": "RDKit cannot parse the SMILES 'C1CC'"}
    assert outputs[2]["input"] == too_long and "tokens; the model reads at most 128" in outputs[2]["error"]
    assert outputs[3] == {"input": None, "error": "expected a SMILES string, got NoneType"}


def test_sampling_repeats_with_its_seed_and_matches_the_library(generator: Pipeline) -> None:
    samples = generator(num_samples=6, seed=0)
    assert len(samples) == 6 and all(set(sample) == {"smiles", "valid"} for sample in samples)
    assert generator(num_samples=6, seed=0, batch_size=4) == samples
    assert generator(mode="sample", num_samples=6, seed=0, batch_size=1) == samples
    assert generator(num_samples=6, seed=1) != samples
    library = sample_prior(generator.model, generator.tokenizer, 6, seed=0, max_new_tokens=MAX_NEW_TOKENS)
    assert [sample["smiles"] for sample in samples] == library.smiles  # no prior file: N(0, I)
    with pytest.raises(ValueError, match="takes no inputs"):
        generator("CCO", mode="sample")
    with pytest.raises(ValueError, match="needs SMILES inputs"):
        generator(mode="neighbours")


def test_sampling_draws_from_the_checkpoint_aggregate_posterior(checkpoint: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(checkpoint, tmp_path / "with_prior"))
    dims = tiny_config().num_latents * tiny_config().latent_size
    torch.manual_seed(1)
    direction = torch.randn(dims, 1, dtype=torch.float64)  # rank 1: the Cholesky factor needs jitter
    AggregatePosterior(torch.full((dims,), 2.0, dtype=torch.float64), direction @ direction.T, 10).save(
        folder
    )
    with_prior = pipeline(
        GENERATION_TASK, model=str(folder), trust_remote_code=True, device=-1, max_new_tokens=MAX_NEW_TOKENS
    )
    samples = [sample["smiles"] for sample in with_prior(num_samples=5, seed=3)]
    prior = AggregatePosterior.load(folder)
    library = sample_prior(
        with_prior.model, with_prior.tokenizer, 5, seed=3, prior=prior, max_new_tokens=MAX_NEW_TOKENS
    )
    assert samples == library.smiles
    assert (
        samples
        != sample_prior(
            with_prior.model, with_prior.tokenizer, 5, seed=3, max_new_tokens=MAX_NEW_TOKENS
        ).smiles
    )


def test_neighbours_at_radius_zero_are_the_reconstruction(generator: Pipeline) -> None:
    outputs = generator(INPUTS, mode="neighbours", num_samples=3, radius=0.0, batch_size=2)
    for output, reconstruction in zip(outputs, generator(INPUTS), strict=True):
        assert output == {
            "input": reconstruction["input"],
            "smiles": [reconstruction["smiles"]] * 3,
            "valid": [reconstruction["valid"]] * 3,
        }


def test_neighbours_repeat_with_their_seed_and_match_the_library(generator: Pipeline) -> None:
    outputs = generator(INPUTS, mode="neighbours", num_samples=4, radius=0.5, seed=7)
    assert [output["input"] for output in outputs] == INPUTS
    assert all(len(output["smiles"]) == len(output["valid"]) == 4 for output in outputs)
    assert generator(INPUTS, mode="neighbours", num_samples=4, radius=0.5, seed=7, batch_size=1) == outputs
    assert generator(INPUTS[0], mode="neighbours", num_samples=4, radius=0.5, seed=7) == outputs[0]
    library = sample_neighbourhood(
        generator.model, generator.tokenizer, INPUTS, 4, radius=0.5, seed=7, max_new_tokens=MAX_NEW_TOKENS
    )
    assert [smiles for output in outputs for smiles in output["smiles"]] == library.smiles


def test_neighbours_default_to_the_checkpoints_exploration_radius(generator: Pipeline) -> None:
    radius = generator.model.config.exploration_radius
    default = generator(INPUTS, mode="neighbours", num_samples=3, seed=2)
    assert default == generator(INPUTS, mode="neighbours", num_samples=3, radius=radius, seed=2)
    assert default != generator(INPUTS, mode="neighbours", num_samples=3, radius=4 * radius, seed=2)


def test_shipped_checkpoint_reconstructs_moses_molecules() -> None:
    shipped = pipeline(GENERATION_TASK, model=str(SHIPPED), trust_remote_code=True, device=-1)
    outputs = shipped(MOSES_EXACT, batch_size=4)
    assert [output["smiles"] for output in outputs] == MOSES_EXACT
    assert all(output["valid"] for output in outputs)


# Run in a subprocess where `import cmim_hf` fails: argv[2] a checkpoint folder, argv[3] inputs.
GENERATE_WITHOUT_CMIM_HF = f"""
from transformers import pipeline
generator = pipeline(
    {GENERATION_TASK!r}, model=sys.argv[2], trust_remote_code=True, device=-1, max_new_tokens={MAX_NEW_TOKENS}
)
inputs = json.loads(sys.argv[3])
print(json.dumps({{
    "class": type(generator).__module__,
    "reconstruct": generator(inputs, batch_size=2),
    "sample": generator(num_samples=3, seed=0),
    "neighbours": generator(inputs, mode="neighbours", num_samples=2, radius=0.3, seed=0),
}}))
"""


def test_generation_pipeline_loads_without_cmim_hf(
    checkpoint: Path, generator: Pipeline, tmp_path: Path
) -> None:
    inputs = INPUTS[:3]
    stdout = run_without_cmim_hf(GENERATE_WITHOUT_CMIM_HF, [str(checkpoint), json.dumps(inputs)], tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["class"].startswith("transformers_modules.")
    assert result["reconstruct"] == generator(inputs)
    assert result["sample"] == generator(num_samples=3, seed=0)
    assert result["neighbours"] == generator(inputs, mode="neighbours", num_samples=2, radius=0.3, seed=0)


# Both pipelines with RDKit blocked (and cmim_hf absent); counts the log records that warn about it.
BOTH_PIPELINES_WITHOUT_RDKIT = f"""
import logging
sys.modules["rdkit"] = None  # `import rdkit` now raises ImportError
warnings = []
class Recorder(logging.Handler):
    def emit(self, record):
        if "RDKit is not installed" in record.getMessage():
            warnings.append(record.getMessage())
logging.getLogger().addHandler(Recorder())
from transformers import pipeline
folder, inputs = sys.argv[2], json.loads(sys.argv[3])
extractor = pipeline("feature-extraction", model=folder, trust_remote_code=True, device=-1)
generator = pipeline(
    {GENERATION_TASK!r}, model=folder, trust_remote_code=True, device=-1, max_new_tokens={MAX_NEW_TOKENS}
)
vectors = extractor(inputs) + extractor(inputs)
print(json.dumps({{
    "warnings": warnings,
    "vectors": vectors[: len(inputs)],
    "reconstruct": generator(inputs) + generator(inputs[:1]),
    "sample": generator(num_samples=2),
}}))
"""


def test_pipelines_work_without_rdkit_with_one_warning(
    checkpoint: Path, generator: Pipeline, tmp_path: Path
) -> None:
    inputs = ["N[C@@H](C)C(=O)O", "CCO"]
    stdout = run_without_cmim_hf(
        BOTH_PIPELINES_WITHOUT_RDKIT, [str(checkpoint), json.dumps(inputs)], tmp_path
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    assert len(result["warnings"]) == 1, result["warnings"]
    assert "used as written" in result["warnings"][0] and "pip install rdkit" in result["warnings"][0]
    as_written = [{**output, "valid": None} for output in generator(inputs + inputs[:1], normalize=False)]
    assert result["reconstruct"] == as_written
    assert all(sample["valid"] is None for sample in result["sample"])
    extractor = pipeline("feature-extraction", model=str(checkpoint), trust_remote_code=True, device=-1)
    expected = extractor(inputs, normalize=False)
    torch.testing.assert_close(torch.tensor(result["vectors"]), torch.tensor(expected), atol=1e-5, rtol=0)
