"""Fine-tuning a cMIM checkpoint on molecular property data with the stock ``Trainer``.

The whole model (encoder, decoder when the head reads the informative embedding, and a fresh
:class:`~cmim_hf.models.cmim.modeling_cmim.CMIMForSequenceClassification` head) is trained on a built-in
MoleculeNet task or a user CSV/Parquet file under the benchmark harness's protocol, so that the
results sit beside the frozen-embedding rows of ``cmim benchmark``:

1. Invalid SMILES are reported and dropped exactly as in the harness
   (:func:`cmim_hf.evaluation.benchmark.prepare_task`), and the valid molecules are split with
   the harness's splits (:func:`cmim_hf.evaluation.tasks.make_split`: same seeds, same parts). Molecules longer
   than the model's ``max_position_embeddings`` are then left out of their part and listed under
   ``too_long_rows``.
2. Per seed: train on the train part with early stopping on the validation loss (the best epoch is
   restored), then predict the test part once. Regression targets are standardised with the
   train part's mean and std for training; the scaling is folded into the last layer afterwards,
   so the model predicts in the task's units.
3. Each label column is scored on its present test labels with the package's local ``evaluate``
   metrics (RMSE, MAE, R2 or ROC-AUC, PR-AUC); a classification label whose test part holds one
   class is skipped, as in the harness.
4. ``results.json`` / ``results.md`` use the harness's format with probe ``"finetune"`` and the
   featurizer column ``<checkpoint name>[<informative|latent>]``, the column name of the frozen
   embedding: :func:`merge_results` puts a ``cmim benchmark`` run and a fine-tuning run in one
   table.

Label handling: regression tasks use ``problem_type="regression"`` (one output per label);
single-column classification tasks a two-class ``"single_label_classification"`` head;
multi-column classification tasks (Tox21, SIDER, ClinTox) ``"multi_label_classification"``.
Missing labels (NaN) stay NaN and are masked out of the loss.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from cmim_hf.checkpoints import CheckpointError, check_checkpoint_folder, load_weights_strictly
from cmim_hf.cli._legacy import command_main
from cmim_hf.errors import one_line
from cmim_hf.evaluation.benchmark import (
    BenchmarkResults,
    as_seed_list,
    fold_record,
    prepare_tasks,
    skip_reason,
    task_record,
)
from cmim_hf.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metric
from cmim_hf.evaluation.reports import RESULT_FILES, plot_parity, summarize, write_reports
from cmim_hf.evaluation.tasks import (
    DEFAULT_FRACTIONS,
    SPLIT_KINDS,
    DataError,
    MoleculeTask,
    Split,
    make_split,
    scaffold_keys,
)
from cmim_hf.models.cmim.configuration_cmim import CLASSIFIER_FEATURES
from cmim_hf.models.cmim.modeling_cmim import CMIMForSequenceClassification

__all__ = [
    "FINETUNE_PROBE",
    "FinetuneSettings",
    "MoleculeLabelCollator",
    "finetune",
    "finetune_split",
    "load_results",
    "merge_results",
    "problem_type_for",
    "write_reports",
]

FINETUNE_PROBE = "finetune"
"""The ``probe`` name of fine-tuned rows in the harness's result format."""
FINETUNE_OUTPUTS = (*RESULT_FILES, "comparison.json", "comparison.md", "models")
"""What ``cmim finetune`` writes into --out (an earlier run's are replaced only with --overwrite)."""


@dataclass
class FinetuneSettings:
    """Hyper-parameters of one fine-tuning run (recorded in ``results.json``).

    Attributes:
        classifier_features: what the head reads, ``"informative"`` or ``"latent"``.
        classifier_dropout: dropout of the head (None: the checkpoint's ``dropout``).
        learning_rate, weight_decay: AdamW settings (linear decay to 0 over ``epochs``).
        epochs: most epochs to train.
        batch_size: molecules per optimizer step.
        patience: epochs without a better validation loss before stopping.
        warmup_ratio: fraction of the steps with a linear learning-rate warm-up, in [0, 1).
        max_grad_norm: gradient clipping.
    """

    classifier_features: str = "informative"
    classifier_dropout: float | None = None
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    epochs: int = 30
    batch_size: int = 32
    patience: int = 5
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.classifier_features not in CLASSIFIER_FEATURES:
            raise DataError(
                f"classifier_features must be one of {CLASSIFIER_FEATURES}, got {self.classifier_features!r}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise DataError("epochs, batch_size and patience must be positive")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise DataError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def problem_type_for(task: MoleculeTask) -> tuple[str, int]:
    """(problem_type, num_labels) of the head for a task (see the module docstring)."""
    n_labels = len(task.label_names)
    if task.task_type == "regression":
        return "regression", n_labels
    if n_labels == 1:
        return "single_label_classification", 2
    return "multi_label_classification", n_labels


@dataclass
class MoleculeLabelCollator:
    """Features ``{"input_ids": list[int], "labels": list[float]}`` -> a right-padded batch.

    Returns ``input_ids``/``attention_mask`` (B, T) and float ``labels``: (B, C) for
    regression / multi-label heads, (B,) for a single-label head (``single_label=True``);
    NaN marks a missing label.
    """

    tokenizer: PreTrainedTokenizerBase
    single_label: bool = False

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")
        labels = torch.tensor([list(f["labels"]) for f in features], dtype=torch.float32)  # (B, C)
        if self.single_label:
            labels = labels[:, 0]  # (B,)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


def _load_tokenizer(model_name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """The checkpoint's own tokenizer. A local folder is checked first: a missing or damaged
    config, weights or tokenizer file is a :class:`CheckpointError` naming it (never a silent
    fallback to the shipped vocabulary)."""
    if Path(model_name_or_path).is_dir():
        check_checkpoint_folder(model_name_or_path)
    try:
        return AutoTokenizer.from_pretrained(model_name_or_path)
    except (OSError, ValueError, KeyError) as err:  # a Hub id that does not load, a config it cannot read
        raise CheckpointError(
            f"cannot load the tokenizer from {model_name_or_path}: {one_line(err)}"
        ) from None


def _load_config(model_name_or_path: str | Path) -> Any:
    """The checkpoint's config (:class:`CheckpointError` naming it if it does not load)."""
    try:
        return AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"cannot read the model config of {model_name_or_path}: {one_line(err)}"
        ) from None


def _load_model(
    model_name_or_path: str | Path, task: MoleculeTask, settings: FinetuneSettings
) -> CMIMForSequenceClassification:
    """A cMIM checkpoint with a fresh head for ``task`` (float32)."""
    problem_type, num_labels = problem_type_for(task)
    config = _load_config(model_name_or_path)
    if getattr(config, "model_type", None) != "cmim":
        raise DataError(f"{model_name_or_path} is not a cMIM checkpoint (model_type {config.model_type!r})")
    config.num_labels = num_labels
    config.problem_type = problem_type
    if problem_type != "single_label_classification":
        config.id2label = dict(enumerate(task.label_names))
        config.label2id = {name: i for i, name in enumerate(task.label_names)}
    config.classifier_features = settings.classifier_features
    config.classifier_dropout = settings.classifier_dropout
    return load_weights_strictly(  # only the new head starts fresh
        CMIMForSequenceClassification,
        model_name_or_path,
        fresh=("classifier.",),
        config=config,
        dtype=torch.float32,
    )


def _tokenize(
    task: MoleculeTask, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Token ids of every molecule and the rows longer than ``max_length`` tokens (file row, SMILES, reason)."""
    # Truncating at max_length + 1 tells over-long molecules apart without tokenizing them whole.
    token_ids = tokenizer(task.smiles, truncation=True, max_length=max_length + 1)["input_ids"]
    too_long = [
        {
            "row": int(task.row_ids[i]),
            "smiles": task.smiles[i],
            "reason": f"too long: more than {max_length} tokens",
        }
        for i, ids in enumerate(token_ids)
        if len(ids) > max_length
    ]
    return token_ids, too_long


def _records(token_ids: Sequence[list[int]], labels: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    """Dataset items ``{"input_ids", "labels"}`` of the molecules at ``rows``."""
    return [{"input_ids": token_ids[i], "labels": labels[i].tolist()} for i in rows]


def _fits(token_ids: Sequence[list[int]], rows: np.ndarray, max_length: int) -> np.ndarray:
    """The positions of ``rows`` whose molecules fit the model."""
    return np.asarray([i for i in rows if len(token_ids[i]) <= max_length], dtype=np.int64)


def _fold_target_scaling(model: CMIMForSequenceClassification, mean: np.ndarray, std: np.ndarray) -> None:
    """Make a head trained on standardised targets predict ``std * y + mean`` (C targets), in place."""
    out_proj = model.classifier.out_proj
    scale = torch.as_tensor(std, dtype=out_proj.weight.dtype, device=out_proj.weight.device)  # (C,)
    shift = torch.as_tensor(mean, dtype=out_proj.weight.dtype, device=out_proj.weight.device)  # (C,)
    with torch.no_grad():
        out_proj.weight.mul_(scale[:, None])  # (C, H)
        out_proj.bias.mul_(scale).add_(shift)  # (C,)


@torch.no_grad()
def _predict(
    model: CMIMForSequenceClassification,
    collator: MoleculeLabelCollator,
    items: Sequence[dict[str, Any]],
    batch_size: int,
) -> np.ndarray:
    """Logits (N, num_labels) of ``items`` in order, float64."""
    model.eval()
    outputs = []
    for start in range(0, len(items), batch_size):
        batch = collator(items[start : start + batch_size])
        logits = model(
            input_ids=batch["input_ids"].to(model.device),
            attention_mask=batch["attention_mask"].to(model.device),
        ).logits
        outputs.append(logits.float().cpu().numpy())
    return np.concatenate(outputs).astype(np.float64) if outputs else np.zeros((0, model.num_labels))


def _label_scores(logits: np.ndarray, problem_type: str, column: int) -> np.ndarray:
    """Predictions of one label column: the value (regression) or a ranking score (log-odds)."""
    if problem_type == "single_label_classification":
        return logits[:, 1] - logits[:, 0]
    return logits[:, column]


def _score_test(
    task: MoleculeTask, test_rows: np.ndarray, logits: np.ndarray, problem_type: str, pool_rows: np.ndarray
) -> tuple[dict[str, Any], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Per-label test metrics in the harness's fold format (see ``evaluate_fold``)."""
    metric_names = REGRESSION_METRICS if task.task_type == "regression" else CLASSIFICATION_METRICS
    per_label: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    predictions: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t, name in enumerate(task.label_names):
        present = ~np.isnan(task.labels[test_rows, t])
        y_test = task.labels[test_rows[present], t]
        y_pool = task.labels[pool_rows, t]
        reason = skip_reason(task.task_type, y_pool[~np.isnan(y_pool)], y_test)
        if reason:
            skipped[name] = reason
            continue
        y_pred = _label_scores(logits, problem_type, t)[present]
        per_label[name] = {m: compute_metric(m, y_pred, y_test) for m in metric_names}
        predictions[t] = (y_test, y_pred)
    record = fold_record(per_label, metric_names, skipped)
    return record, predictions


def finetune_split(
    model_name_or_path: str | Path,
    task: MoleculeTask,
    split: Split,
    seed: int,
    settings: FinetuneSettings,
    tokenizer: PreTrainedTokenizerBase,
    token_ids: Sequence[list[int]],
    max_length: int,
    progress: bool = False,
) -> tuple[CMIMForSequenceClassification, dict[str, Any], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Fine-tune on one split's train part, stop early on its valid part, score its test part.

    Args:
        model_name_or_path: cMIM checkpoint.
        task: the valid molecules of a task; ``split`` holds positions into it.
        split: train / valid / test positions.
        seed: seed of the head initialisation, data order and dropout.
        settings: hyper-parameters.
        tokenizer: the checkpoint's tokenizer.
        token_ids: token ids of every molecule of ``task``.
        max_length: longest token sequence the model reads; longer molecules are left out.
        progress: show the Trainer's progress bars.

    Returns:
        (fine-tuned model predicting in the task's units, fold record without task/seed keys,
        test (y_true, y_pred) per scored label column).
    """
    problem_type, _ = problem_type_for(task)
    train_rows, valid_rows, test_rows = (
        _fits(token_ids, part, max_length) for part in (split.train, split.valid, split.test)
    )
    if len(train_rows) == 0 or len(valid_rows) == 0 or len(test_rows) == 0:
        raise DataError(
            f"{task.name}: the train, valid and test parts must all hold molecules, got {split.sizes()}"
        )
    labels = task.labels
    mean = std = None
    if problem_type == "regression":
        mean = np.nanmean(labels[train_rows], axis=0)  # (C,)
        std = np.nanstd(labels[train_rows], axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        mean = np.nan_to_num(mean)
        labels = (labels - mean) / std
    train_items, valid_items, test_items = (
        _records(token_ids, labels, rows) for rows in (train_rows, valid_rows, test_rows)
    )
    collator = MoleculeLabelCollator(tokenizer, single_label=problem_type == "single_label_classification")

    set_seed(seed)
    model = _load_model(model_name_or_path, task, settings)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cmim-finetune-") as work_dir:
        args = TrainingArguments(
            output_dir=work_dir,
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=2 * settings.batch_size,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a fraction of the steps
            max_grad_norm=settings.max_grad_norm,
            eval_strategy="epoch",
            save_strategy="epoch",
            logging_strategy="epoch",
            save_total_limit=1,
            save_only_model=True,
            load_best_model_at_end=True,
            metric_for_best_model="loss",
            greater_is_better=False,
            prediction_loss_only=True,
            remove_unused_columns=False,
            dataloader_pin_memory=torch.cuda.is_available(),
            seed=seed,
            data_seed=seed,
            report_to="none",
            disable_tqdm=not progress,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_items,
            eval_dataset=valid_items,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience)],
        )
        if not progress:
            trainer.remove_callback(PrinterCallback)  # the per-epoch losses stay in trainer.state
        trainer.train()
        state = trainer.state
        model = trainer.model
    train_seconds = time.perf_counter() - start
    if mean is not None:
        _fold_target_scaling(model, mean, std)
    logits = _predict(model, collator, test_items, 2 * settings.batch_size)
    record, predictions = _score_test(
        task, test_rows, logits, problem_type, np.concatenate([train_rows, valid_rows])
    )
    steps_per_epoch = max(1, -(-len(train_items) // settings.batch_size))
    record["training"] = {
        "problem_type": problem_type,
        "epochs_run": float(state.epoch or 0.0),
        "best_epoch": (state.best_global_step or 0) / steps_per_epoch,
        "best_valid_loss": state.best_metric,
        "valid_loss_per_epoch": [log["eval_loss"] for log in state.log_history if "eval_loss" in log],
        "train_seconds": train_seconds,
    }
    record["n_train"], record["n_valid"], record["n_test"] = len(train_rows), len(valid_rows), len(test_rows)
    return model, record, predictions


def finetune(
    model_name_or_path: str | Path,
    tasks: Sequence[str | MoleculeTask],
    split: str = "random",
    seeds: int | Sequence[int] = 3,
    settings: FinetuneSettings | None = None,
    out_dir: str | Path | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_molecules: int | None = None,
    data_dir: str | Path | None = None,
    save_models: bool = False,
    plots: bool = True,
    progress: bool = False,
) -> BenchmarkResults:
    """Fine-tune a cMIM checkpoint on each task and seed under the harness's protocol.

    Args:
        model_name_or_path: cMIM checkpoint folder (or Hub id).
        tasks: built-in task names (:data:`cmim_hf.evaluation.tasks.BUILTIN_TASKS`) or loaded tasks.
        split: ``"random"``, ``"scaffold"`` or ``"scaffold_random"``.
        seeds: number of seeds (0..n-1) or explicit seeds; each gives a split and a training run.
        settings: hyper-parameters (defaults: :class:`FinetuneSettings`).
        out_dir: where ``results.json``, ``results.md``, the parity plots and the saved models go
            (None: nothing written).
        fractions: train/valid/test fractions.
        max_molecules: seeded subsample of each task before validation (for quick runs).
        data_dir: folder of the built-in MoleculeNet files (default: shipped copy).
        save_models: save each fine-tuned model and its tokenizer to
            ``out_dir/models/<task>/seed<seed>`` (they predict in the task's units).
        plots: write parity plots of regression tasks.
        progress: show the Trainer's progress bars.

    Returns:
        :class:`~cmim_hf.evaluation.benchmark.BenchmarkResults` with probe ``"finetune"``.

    Raises:
        DataError: bad split, seeds, settings or task, or a checkpoint that is not a cMIM model.
        CheckpointError: a checkpoint that is missing, damaged or does not load.
    """
    settings = settings or FinetuneSettings()
    seed_list = as_seed_list(seeds)
    if split not in SPLIT_KINDS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_KINDS)}")
    if save_models and out_dir is None:
        raise DataError("save_models needs out_dir")
    tokenizer = _load_tokenizer(model_name_or_path)
    max_length = int(_load_config(model_name_or_path).max_position_embeddings)
    prepared = prepare_tasks(tasks, max_molecules, data_dir)
    featurizer = f"{Path(str(model_name_or_path)).name}[{settings.classifier_features}]"
    config = {
        "featurizers": {
            featurizer: f"fine-tuned {model_name_or_path} ({settings.classifier_features} features)"
        },
        "tasks": [t.name for t, _ in prepared],
        "split": split,
        "seeds": seed_list,
        "probes": [FINETUNE_PROBE],
        "fractions": list(fractions),
        "model_selection": "whole model fine-tuned on train, early stopping on valid loss (best epoch restored), test scored once",
        "max_molecules": max_molecules,
        "finetune": asdict(settings),
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    task_info: dict[str, dict[str, Any]] = {}
    feat_info: dict[str, dict[str, Any]] = {featurizer: {}}
    folds: list[dict[str, Any]] = []
    files: dict[str, Any] = {"parity": {}, "pca": {}, "models": {}}
    for task, invalid in prepared:
        token_ids, too_long = _tokenize(task, tokenizer, max_length)
        task_info[task.name] = {**task_record(task, invalid), "too_long_rows": too_long}
        keys = None if split == "random" else np.asarray(scaffold_keys(task.smiles), dtype=object)
        task_start = time.perf_counter()
        pooled_true: list[np.ndarray] = []
        pooled_pred: list[np.ndarray] = []
        for seed in seed_list:
            start = time.perf_counter()
            model, record, predictions = finetune_split(
                model_name_or_path,
                task,
                make_split(split, task.smiles, seed, fractions, scaffolds=keys),
                seed,
                settings,
                tokenizer,
                token_ids,
                max_length,
                progress,
            )
            folds.append(
                {"task": task.name, "featurizer": featurizer, "probe": FINETUNE_PROBE, "seed": seed, "split": split,
                 **record, "seconds": time.perf_counter() - start}
            )  # fmt: skip
            if 0 in predictions:
                pooled_true.append(predictions[0][0])
                pooled_pred.append(predictions[0][1])
            if save_models:
                model_dir = out / "models" / task.name / f"seed{seed}"
                model.save_pretrained(model_dir)
                tokenizer.save_pretrained(model_dir)
                files["models"].setdefault(task.name, {})[str(seed)] = str(model_dir)
        feat_info[featurizer][task.name] = {
            "dim": int(model.classifier.norm.normalized_shape[0]),
            "n_nonfinite": 0,
            "seconds": time.perf_counter() - task_start,
        }
        if out is not None and plots and task.task_type == "regression" and pooled_true:
            path = out / f"parity_{task.name}.png"
            panel = {
                f"{featurizer} / {FINETUNE_PROBE}": (np.concatenate(pooled_true), np.concatenate(pooled_pred))
            }
            plot_parity(task.name, panel, path)
            files["parity"][task.name] = str(path)
    results = BenchmarkResults(config, task_info, feat_info, folds, summarize(folds), files)
    if out is not None:
        write_reports(results, out)
    return results


def load_results(path: str | Path) -> BenchmarkResults:
    """Read a ``results.json`` written by ``cmim benchmark`` or ``cmim finetune``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return BenchmarkResults(
        data["config"],
        data["tasks"],
        data["featurizers"],
        data["folds"],
        data["summary"],
        data.get("files", {}),
    )


def merge_results(*results: BenchmarkResults) -> BenchmarkResults:
    """One report of several runs on the same split protocol (e.g. frozen probes and fine-tuning).

    Featurizers, probes, tasks and seeds are united in order of appearance, folds concatenated and
    the summary recomputed; task records come from the first run that has the task.

    Raises:
        DataError: no results, runs with different splits or fractions, or the same
            (task, featurizer, probe, seed) fold in two runs.
    """
    if not results:
        raise DataError("nothing to merge")
    first = results[0].config
    for other in results[1:]:
        if (other.config["split"], list(other.config["fractions"])) != (
            first["split"],
            list(first["fractions"]),
        ):
            raise DataError(
                f"cannot merge runs with different splits: {first['split']} {first['fractions']} vs "
                f"{other.config['split']} {other.config['fractions']}"
            )

    def union(key: str) -> list[Any]:
        return list(dict.fromkeys(item for r in results for item in r.config[key]))

    config = {
        **first,
        "featurizers": {name: desc for r in results for name, desc in r.config["featurizers"].items()},
        "tasks": union("tasks"),
        "seeds": union("seeds"),
        "probes": union("probes"),
        "merged_configs": [r.config for r in results],
    }
    tasks: dict[str, dict[str, Any]] = {}
    featurizers: dict[str, dict[str, Any]] = {}
    for r in results:
        for name, info in r.tasks.items():
            tasks.setdefault(name, info)
        for name, per_task in r.featurizers.items():
            featurizers.setdefault(name, {}).update(per_task)
    folds = [fold for r in results for fold in r.folds]
    keys = [(f["task"], f["featurizer"], f["probe"], f["seed"]) for f in folds]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise DataError(f"runs overlap in (task, featurizer, probe, seed): {duplicates[:3]}")
    return BenchmarkResults(config, tasks, featurizers, folds, summarize(folds), {})


main = command_main("finetune", old=f"{__name__}.main")
"""``cmim finetune`` with ``argv`` (default: ``sys.argv[1:]``); kept for 0.2 only (see CHANGELOG)."""


if __name__ == "__main__":
    sys.exit(main())
