"""Model cards from measured results, and the folder that goes to the Hugging Face Hub.

:func:`render_model_card` fills ``cmim_hf/templates/model_card.md`` from a results dict; every number in
the card comes from that dict (or the benchmark harness's JSON), and a section without results
says "not measured yet". The ``model-index`` metadata lists the same numbers. The results dict
(every key optional)::

    {
        "training": {"dataset": "MOSES train", "molecules": 1584663, "objective": "cmim", "steps": 50000},
        "reconstruction": {"dataset": "MOSES test", "molecules": 5000, "decoding": "greedy",
                           "exact_match": 0.71, "token_accuracy": 0.98, "validity": 0.99},
        "sampling": {"molecules": 1000, "scale": 1.0, "validity": 0.93, "uniqueness": 0.99, "novelty": 0.97},
        "benchmark": BenchmarkResults.to_dict() or the path of its results.json, or a list (one per split),
        "benchmark_featurizer": "cmim",   # the benchmark column that is this model (for model-index)
        "comparison": {"benchmarks": {"random": merged results dict, ...}, "featurizers": [...],
                       "probes": ["svm", ...], "claims": [...]},  # replaces the harness tables
        "reproduce": "python benchmarks/paper_comparison.py ...",  # the command behind the numbers
        "limitations": ["what limits this checkpoint", ...],  # listed before the generic ones
        "extra_sections": ["# Title\n\nmarkdown made by a benchmark script", ...],  # after downstream
    }

:func:`save_for_hub` writes the complete folder (safetensors weights, config, tokenizer, the
remote-code files incl. ``pipelines.py`` / ``pooling.py`` / ``smiles_normalization.py``, README.md) and checks it with
:func:`check_hub_folder`. Publishing is then one command (huggingface_hub >= 1.0; log in first
with ``hf auth login``)::

    hf upload <user>/<model-name> <folder> .

(equivalently ``HfApi().upload_folder(repo_id=..., folder_path=folder)``). A model loaded from such
a folder can also ``model.push_to_hub(repo_id)``: while its weights are the folder's, the upload
carries the folder's card, tokenizer and aggregate posterior (``CMIMPreTrainedModel``), not
Transformers' template card.

:func:`create_cmim_model_card` is ``CMIMTrainer.create_model_card``: ``CMIMTrainer.push_to_hub``
calls it before uploading ``output_dir``, with an aggregate posterior fitted to the training set.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from cmim_hf.checkpoints import CheckpointError, check_checkpoint_folder
from cmim_hf.registration import remote_code_sources

__all__ = [
    "UNMEASURED",
    "PROJECT_LICENSE",
    "DEFAULT_TEMPLATE",
    "HUB_FILES",
    "load_benchmark",
    "render_model_card",
    "write_model_card",
    "save_for_hub",
    "check_hub_folder",
    "create_cmim_model_card",
]

UNMEASURED = "not measured yet"
PROJECT_LICENSE = "apache-2.0"  # the license of cmim_hf, its code and the checkpoints it ships
LICENSE_NAMES = {"apache-2.0": "Apache License 2.0", "mit": "MIT License"}
DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
# Besides these, a Hub folder carries the remote code (registration.remote_code_sources()).
HUB_FILES: tuple[str, ...] = ("config.json", "tokenizer.json", "tokenizer_config.json", "README.md")
TAGS: tuple[str, ...] = ("cmim", "chemistry", "molecules", "smiles", "feature-extraction", "custom_code")
# Keys of a results section that describe the measurement rather than being a metric.
CONTEXT_KEYS: tuple[str, ...] = (
    "dataset",
    "split",
    "molecules",
    "decoding",
    "prior",
    "scale",
    "reference",
    "notes",
)
ARCHITECTURE_FIELDS: tuple[tuple[str, str], ...] = (
    ("hidden_size", "hidden size"),
    ("encoder_layers", "encoder layers"),
    ("decoder_layers", "decoder layers"),
    ("num_attention_heads", "attention heads"),
    ("ffn_dim", "feed-forward size"),
    ("num_latents", "latent vectors (K)"),
    ("latent_size", "latent size (L)"),
    ("posterior", "posterior"),
    ("vocab_size", "vocabulary size"),
    ("max_position_embeddings", "max tokens per SMILES"),
)
_TASK_TYPES = {"regression": "tabular-regression", "classification": "tabular-classification"}
_BASELINE_FEATURIZERS = ("ecfp4", "descriptors")


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def _metrics(section: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric metrics of a results section (context keys excluded)."""
    return {
        name: float(value)
        for name, value in section.items()
        if name not in CONTEXT_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def _metric_table(section: Mapping[str, Any] | None) -> str:
    """A "| metric | value |" table with a line describing the measurement, or UNMEASURED."""
    metrics = _metrics(section or {})
    if not metrics:
        return UNMEASURED
    context = "; ".join(f"{key}: {_format_value(section[key])}" for key in CONTEXT_KEYS if key in section)
    lines = [f"Measured on {context}." if context else "", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_format_value(value)} |" for name, value in metrics.items()]
    return "\n".join(lines).strip()


def _key_value_table(values: Mapping[str, Any]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {_format_value(v)} |" for k, v in values.items())])


def load_benchmark(benchmark: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any] | None:
    """The benchmark harness's results (``BenchmarkResults.to_dict()``) from a dict or a JSON path."""
    if benchmark is None or isinstance(benchmark, Mapping):
        return dict(benchmark) if benchmark is not None else None
    path = Path(benchmark)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark results not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_benchmarks(value: Any) -> list[dict[str, Any]]:
    """``results["benchmark"]``: one benchmark (dict or JSON path) or a list of them (e.g. one per split)."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [load_benchmark(item) for item in items]


def _benchmark_featurizer(benchmark: Mapping[str, Any], name: str | None) -> str | None:
    """The benchmark column that is this model: ``name``, else the only non-baseline featurizer."""
    featurizers = list(benchmark.get("config", {}).get("featurizers", {}))
    if name is not None:
        if name not in featurizers:
            raise ValueError(f"featurizer {name!r} is not in the benchmark results ({featurizers})")
        return name
    candidates = [f for f in featurizers if f not in _BASELINE_FEATURIZERS]
    return candidates[0] if len(candidates) == 1 else None


def _downstream_section(benchmark: Mapping[str, Any] | None) -> str:
    """The harness's own Markdown tables (headings demoted), or UNMEASURED."""
    if not benchmark or not benchmark.get("summary"):
        return UNMEASURED
    from cmim_hf.evaluation.reports import markdown_report

    config = benchmark["config"]
    report = markdown_report(benchmark["summary"], list(config["featurizers"]), benchmark["tasks"], config)
    lines = report.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("####" + line[2:] if line.startswith("## ") else line for line in lines).strip()


def _comparison_section(comparison: Mapping[str, Any]) -> str:
    """Headline tables (one per probe) of a multi-model comparison, and its checked claims."""
    from cmim_hf.evaluation.comparison import claims_table, headline_table

    benchmarks = comparison["benchmarks"]
    config = next(iter(benchmarks.values()))["config"]
    parts = [
        f"Frozen embeddings, probes with {config['model_selection']}. Each cell: mean ± std (ddof=0) "
        "over the seeds of the test-part metric "
        + "; ".join(f"{split} split seeds {b['config']['seeds']}" for split, b in benchmarks.items())
        + ". Bold: best in the column."
    ]
    for probe in comparison["probes"]:
        parts += [f"#### {probe.upper()} probe", headline_table(benchmarks, probe, comparison["featurizers"])]
    if comparison.get("claims"):
        parts += ["#### The paper's claims, checked", claims_table(comparison["claims"])]
    return "\n\n".join(parts)


def _eval_results(results: Mapping[str, Any], benchmarks: list[dict[str, Any]]) -> list[EvalResult]:
    """``model-index`` entries for every measured number (every benchmark: e.g. random and scaffold)."""
    entries = []
    for section, task_type, task_name, default_dataset in (
        ("reconstruction", "text2text-generation", "SMILES reconstruction (z = mu)", "held-out SMILES"),
        ("sampling", "text-generation", "Sampling from the prior", "prior samples"),
    ):
        values = results.get(section) or {}
        dataset = str(values.get("dataset", default_dataset))
        for metric, value in _metrics(values).items():
            entries.append(
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=dataset,
                    dataset_name=dataset,
                    metric_type=metric,
                    metric_name=metric,
                    metric_value=value,
                )
            )
    for benchmark in benchmarks:
        featurizer = _benchmark_featurizer(benchmark, results.get("benchmark_featurizer"))
        if featurizer is not None:
            entries.extend(_benchmark_eval_results(benchmark, featurizer))
    return entries


def _benchmark_eval_results(benchmark: Mapping[str, Any], featurizer: str) -> list[EvalResult]:
    """One entry per task, probe and metric of ``featurizer``'s column. The probe is the dataset
    config and the split the dataset split: the Hub groups results by (task type, dataset, config,
    split), so SVM and MLP numbers, and random and scaffold splits, each get their own label."""
    entries = []
    split = benchmark["config"].get("split")
    for record in benchmark["summary"]:
        if record["featurizer"] != featurizer or not math.isfinite(record["mean"]) or record["n"] == 0:
            continue
        task_type = benchmark["tasks"].get(record["task"], {}).get("task_type", "regression")
        entries.append(
            EvalResult(
                task_type=_TASK_TYPES.get(task_type, task_type),
                task_name=f"{record['task']} ({record['probe']} probe on frozen embeddings"
                + (f", {split} split)" if split else ")"),
                dataset_type=f"moleculenet/{record['task']}",
                dataset_name=f"MoleculeNet {record['task']}",
                dataset_config=f"{record['probe']} probe",
                dataset_split=f"{split} split, test part" if split else None,
                metric_type=record["metric"],
                metric_name=f"{record['metric']} (mean of {record['n']} seeds)",
                metric_value=record["mean"],
            )
        )
    return entries


def render_model_card(
    results: Mapping[str, Any] | None = None,
    *,
    model_name: str = "cmim",
    repo_id: str | None = None,
    config: Mapping[str, Any] | None = None,
    parameters: int | None = None,
    license: str = PROJECT_LICENSE,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """Render the model card from measured results.

    Args:
        results: see the module docstring; absent sections render as "not measured yet".
        model_name: title and ``model-index`` name.
        repo_id: Hub id used in the usage examples (default: ``model_name``).
        config: the model config as a dict (``model.config.to_dict()``), for the architecture table.
        parameters: number of parameters, shown with the architecture.
        license: Hub license identifier of the weights and code (default: the project's, Apache-2.0).
        template_path: Jinja template (default: ``cmim_hf/templates/model_card.md``).

    Returns:
        a ``huggingface_hub.ModelCard`` (``str(card)`` is the README text; ``card.save(path)``).
    """
    results = dict(results or {})
    template = Path(template_path) if template_path is not None else DEFAULT_TEMPLATE
    if not template.is_file():
        raise FileNotFoundError(f"model card template not found: {template}")
    benchmarks = load_benchmarks(results.get("benchmark"))
    benchmark = benchmarks[0] if benchmarks else None  # the card's downstream table
    training = dict(results.get("training") or {})
    datasets = [training["dataset"]] if isinstance(training.get("dataset"), str) else None

    architecture = {label: config[key] for key, label in ARCHITECTURE_FIELDS if config and key in config}
    if parameters is not None:
        architecture["parameters"] = parameters
    data_keys = ("dataset", "molecules", "dataset_license")
    training_data = {k: training[k] for k in data_keys if k in training}
    procedure = {k: v for k, v in training.items() if k not in data_keys}

    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=list(TAGS),
        license=license,
        datasets=datasets,
        eval_results=_eval_results(results, benchmarks) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,  # card_data moves it into model-index when there are eval results
        repo_id=repo_id or model_name,
        architecture=_key_value_table(architecture) if architecture else "not recorded",
        training_data=_key_value_table(training_data) if training_data else "not recorded yet",
        training_procedure=_key_value_table(procedure) if procedure else "not recorded yet",
        reconstruction=_metric_table(results.get("reconstruction")),
        sampling=_metric_table(results.get("sampling")),
        downstream=(
            _comparison_section(results["comparison"])
            if results.get("comparison")
            else _downstream_section(benchmark)
        ),
        reproduce=f"Every number below was produced by:\n\n```bash\n{results['reproduce']}\n```"
        if results.get("reproduce")
        else "",
        limitations="".join(f"- {item}\n" for item in results.get("limitations", ())),
        extra_sections="".join(_extra_section(text) for text in results.get("extra_sections", ())),
        smiles_normalization=(config or {}).get("smiles_normalization") or "none",
        license_name=LICENSE_NAMES.get(license, license),
        license_id=license,
        dataset_license=training.get("dataset_license", "see the training data above"),
    )


def _extra_section(markdown: str) -> str:
    """A report written by a benchmark script (its first line a ``# `` title), as a subsection of
    the card's Evaluation section."""
    title, _, body = markdown.strip().partition("\n")
    if not title.startswith("# "):
        raise ValueError(f"an extra card section starts with a '# ' title, got {title!r}")
    return f"\n### {title[2:]}\n{body}\n"


def write_model_card(
    folder: str | os.PathLike, results: Mapping[str, Any] | None = None, **kwargs: Any
) -> Path:
    """Render the card (see :func:`render_model_card` for ``kwargs``) into ``folder/README.md``."""
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    render_model_card(results, **kwargs).save(path)
    return path


def check_hub_folder(folder: str | os.PathLike) -> Path:
    """Check that ``folder`` is complete for the Hub: loadable checkpoint (see
    :func:`cmim_hf.checkpoints.check_checkpoint_folder`), remote-code files, card, and a config
    that maps the Auto classes and the feature-extraction pipeline to the remote code.

    Raises:
        CheckpointError: naming the first missing or bad file.
    """
    folder = Path(folder)
    check_checkpoint_folder(folder)
    for name in (*HUB_FILES, *remote_code_sources()):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not ready for the Hub: {name} is missing")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in ("auto_map", "custom_pipelines"):
        if not config.get(key):
            raise CheckpointError(
                f"{folder / 'config.json'} has no {key}: save the model with cmim_hf imported"
            )
    return folder


def save_for_hub(
    model: Any,
    tokenizer: Any,
    folder: str | os.PathLike,
    results: Mapping[str, Any] | None = None,
    aggregate_posterior: Any | None = None,
    **card_kwargs: Any,
) -> Path:
    """Write everything the Hub repo needs into ``folder`` and check it.

    Saves the model (safetensors, config, remote code, the feature-extraction pipeline), the
    tokenizer and, if given, the :class:`cmim_hf.generation.AggregatePosterior` (the default
    sampling prior), renders the card from ``results`` into README.md (``card_kwargs`` go to
    :func:`render_model_card`; the architecture and parameter count come from the model), then
    runs :func:`check_hub_folder`. Publish with ``hf upload <user>/<model-name> <folder> .``.

    Returns:
        the folder.
    """
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if aggregate_posterior is not None:
        aggregate_posterior.save(folder)
    card_kwargs.setdefault("config", model.config.to_dict())
    card_kwargs.setdefault("parameters", model.num_parameters())
    write_model_card(folder, results, **card_kwargs)
    return check_hub_folder(folder)


def create_cmim_model_card(
    trainer: Any,
    results: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    license: str = PROJECT_LICENSE,
    dataset: str | list[str] | None = None,
    **_trainer_kwargs: Any,
) -> Path | None:
    """``CMIMTrainer.create_model_card``: write ``output_dir/README.md`` from what the run measured.

    Training details come from the trainer's arguments and state; reconstruction metrics from the
    latest evaluation in ``trainer.state.log_history`` (``eval_exact_match``,
    ``eval_token_accuracy``); ``results`` adds or overrides sections (sampling, benchmark, ...).
    Other keyword arguments ``Trainer.push_to_hub`` passes (language, tags, tasks, ...) are
    accepted and not used.

    Returns:
        the README path, or None on processes other than the main one.
    """
    if not trainer.is_world_process_zero():
        return None
    args = trainer.args
    training: dict[str, Any] = {}
    if dataset is not None:
        training["dataset"] = dataset if isinstance(dataset, str) else ", ".join(dataset)
    train_dataset = getattr(trainer, "train_dataset", None)
    if train_dataset is not None and hasattr(train_dataset, "__len__"):
        training["molecules"] = len(train_dataset)
    training.update(
        {
            "objective": getattr(args, "objective", "reconstruction only"),
            "optimizer steps": trainer.state.global_step,
            "epochs": round(float(trainer.state.epoch or 0.0), 3),
            "learning rate": args.learning_rate,
            "batch size (global)": args.per_device_train_batch_size
            * args.gradient_accumulation_steps
            * max(1, args.world_size),
        }
    )
    for name in ("latent_weight", "contrastive_weight", "temperature", "latent_warmup_steps"):
        if hasattr(args, name):
            training[name.replace("_", " ")] = getattr(args, name)

    measured: dict[str, Any] = {"training": training}
    evaluations = [log for log in trainer.state.log_history if "eval_exact_match" in log]
    if evaluations:
        latest = evaluations[-1]
        reconstruction: dict[str, Any] = {"dataset": "evaluation split", "decoding": "greedy, z = mu"}
        eval_dataset = getattr(trainer, "eval_dataset", None)
        if eval_dataset is not None and hasattr(eval_dataset, "__len__"):
            reconstruction["molecules"] = len(eval_dataset)
        for key in ("exact_match", "token_accuracy"):
            if f"eval_{key}" in latest:
                reconstruction[key] = latest[f"eval_{key}"]
        measured["reconstruction"] = reconstruction
    measured.update(results or {})

    model = trainer.model
    return write_model_card(
        args.output_dir,
        measured,
        model_name=model_name or Path(args.output_dir).name,
        repo_id=args.hub_model_id,
        config=model.config.to_dict(),
        parameters=model.num_parameters(),
        license=license,
    )
