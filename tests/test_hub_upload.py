"""Every way up to the Hub keeps the measured card: tested at huggingface_hub's boundary.

This machine has no network. ``HfApi.create_repo`` and ``HfApi.create_commit`` are replaced by
recorders (every upload path of transformers and huggingface_hub ends in ``create_commit`` once
``upload_folder`` takes its single-commit path), and the Hub answers "no card yet" to
``ModelCard.load``: what the recorder holds is exactly what would have been uploaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.hf_api
import pytest
import torch
from datasets import Dataset
from helpers import SMILES, tiny_config
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.hf_api import CommitInfo, RepoUrl

import cmim_hf
from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.generation import AGGREGATE_POSTERIOR_FILE
from cmim_hf.model_card import save_for_hub
from cmim_hf.training.trainer import CMIMDataCollator, CMIMTrainer, CMIMTrainingArguments

REMOTE_CODE = (
    "configuration_cmim.py",
    "modeling_cmim.py",
    "pooling.py",
    "pipelines.py",
    "tokenization_cmim.py",
)
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture
def hub(monkeypatch) -> dict[str, bytes]:
    """The files of every commit, by their path in the repo."""
    uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            source = operation.path_or_fileobj
            uploaded[operation.path_in_repo] = (
                Path(source).read_bytes() if isinstance(source, str) else source
            )
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/0",
            commit_message="",
            commit_description="",
            oid="0" * 40,
        )

    def no_card_yet(cls, *args, **kwargs):
        raise EntryNotFoundError("no README.md in a new repo")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda self, content, **kwargs: None)  # a server check
    # upload_folder's streamed multi-commit path (with hf_xet) talks to the server while it plans;
    # its single-commit path hands the same files to create_commit
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    monkeypatch.setattr(ModelCard, "load", classmethod(no_card_yet))
    return uploaded


def assert_complete_checkpoint(uploaded: dict[str, bytes]) -> None:
    missing = [
        name for name in (*CHECKPOINT_FILES, *REMOTE_CODE, AGGREGATE_POSTERIOR_FILE) if name not in uploaded
    ]
    assert not missing, f"not uploaded: {missing}"


def test_model_push_to_hub_uploads_the_measured_card_prior_and_tokenizer(hub) -> None:
    shipped = Path(cmim_hf.DEFAULT_CHECKPOINT)
    model = CMIMForConditionalGeneration.from_pretrained(shipped)
    model.push_to_hub("user/cmim-moses")
    assert hub["README.md"] == (shipped / "README.md").read_bytes()
    assert_complete_checkpoint(hub)
    assert hub[AGGREGATE_POSTERIOR_FILE] == (shipped / AGGREGATE_POSTERIOR_FILE).read_bytes()


def test_changed_weights_are_not_pushed_with_the_old_card(hub) -> None:
    model = CMIMForConditionalGeneration.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)  # e.g. fine-tuned in memory
    model.push_to_hub("user/cmim-finetuned")
    shipped_card = (Path(cmim_hf.DEFAULT_CHECKPOINT) / "README.md").read_bytes()
    assert "README.md" in hub and hub["README.md"] != shipped_card
    assert AGGREGATE_POSTERIOR_FILE not in hub


def test_documented_upload_of_a_saved_folder_keeps_the_card(hub, tmp_path) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config())
    results = {"reconstruction": {"dataset": "MOSES test", "molecules": 7, "exact_match": 0.5}}
    folder = save_for_hub(model, CMIMTokenizer(), tmp_path / "hub", results=results, model_name="tiny")
    HfApi().upload_folder(repo_id="user/tiny", folder_path=str(folder))
    assert hub["README.md"] == (folder / "README.md").read_bytes()
    assert b"0.5" in hub["README.md"]
    assert all(name in hub for name in (*CHECKPOINT_FILES, *REMOTE_CODE))


def test_trainer_push_to_hub_uploads_the_measured_card_and_a_fitted_prior(hub, tmp_path, tokenizer) -> None:
    torch.manual_seed(0)
    args = CMIMTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        hub_model_id="user/cmim-run",
    )
    trainer = CMIMTrainer(
        model=CMIMForConditionalGeneration(tiny_config()),
        args=args,
        train_dataset=Dataset.from_dict({"smiles": SMILES}),
        data_collator=CMIMDataCollator(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.push_to_hub()
    card = hub["README.md"].decode()
    assert "optimizer steps" in card and "cmim" in card  # the cMIM card of the run, not a template
    assert_complete_checkpoint(hub)
    shutil.rmtree(tmp_path / "run")
